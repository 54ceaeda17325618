//! Token-sized chunking with `text-splitter`, measured by the embedding model's own tokenizer.
use std::path::Path;

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::detect::ContentType;
use crate::parse::Extracted;

/// all-MiniLM-L6-v2 reads at most 256 tokens, two of which are [CLS] and [SEP].
pub const MODEL_MAX_TOKENS: usize = 256;
pub const MAX_CHUNK_TOKENS: usize = MODEL_MAX_TOKENS - 2;
/// No chunk is longer than this many bytes, whatever its token count: 254 tokens of any real
/// text fit in a few KB, and every chunk is stored twice and shown in results.
pub const MAX_CHUNK_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub ordinal: u32,
    pub text: String,
    /// Byte offsets into [`Extracted::text`].
    pub start: usize,
    pub end: usize,
    pub page: Option<u32>,
    pub heading_path: Vec<String>,
}

pub struct Chunker {
    tokenizer: Tokenizer,
    text: TextSplitter<Tokenizer>,
    markdown: MarkdownSplitter<Tokenizer>,
    max_tokens: usize,
}

impl Chunker {
    /// `max_tokens` is clamped to what the model can read, so no chunk is ever truncated.
    pub fn from_tokenizer_file(path: &Path, max_tokens: usize) -> Result<Self, String> {
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))?;
        // tokenizer.json ships with truncation/padding for inference; sizes must be exact.
        tokenizer.with_truncation(None).map_err(|e| e.to_string())?;
        tokenizer.with_padding(None);
        let max_tokens = max_tokens.clamp(16, MAX_CHUNK_TOKENS);
        let config = || ChunkConfig::new(max_tokens).with_sizer(tokenizer.clone());
        Ok(Self {
            text: TextSplitter::new(config()),
            markdown: MarkdownSplitter::new(config()),
            tokenizer,
            max_tokens,
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens the model sees for `text`, without special tokens.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len())
            .unwrap_or(usize::MAX)
    }

    pub fn chunk(&self, doc: &Extracted, content_type: ContentType) -> Vec<Chunk> {
        let mut out = Vec::new();
        for section in &doc.sections {
            let body = &doc.text[section.range.clone()];
            let pieces: Vec<(usize, &str)> = match content_type {
                ContentType::Markdown => self.markdown.chunk_indices(body).collect(),
                _ => self.text.chunk_indices(body).collect(),
            };
            for (offset, piece) in pieces {
                if piece.trim().is_empty() {
                    continue;
                }
                // A token can be any length (a 2 MB "word" is one [UNK]): bytes are capped too.
                let mut from = 0;
                while from < piece.len() {
                    let to = crate::floor_char_boundary(piece, from + MAX_CHUNK_BYTES);
                    let start = section.range.start + offset + from;
                    out.push(Chunk {
                        ordinal: out.len() as u32,
                        text: piece[from..to].to_string(),
                        start,
                        end: start + (to - from),
                        page: section.page,
                        heading_path: section.heading_path.clone(),
                    });
                    from = to;
                }
            }
        }
        out
    }
}

/// The text the dense leg embeds for a chunk: the chunk under its document title and heading
/// path, since a chunk cut from the middle of a section otherwise loses what it is about.
pub fn embedding_text(title: &str, heading_path: &[String], text: &str) -> String {
    let mut out = String::with_capacity(title.len() + text.len() + 8);
    for part in std::iter::once(title).chain(heading_path.iter().map(String::as_str)) {
        // Markdown and HTML chunks often start with their own heading: do not say it twice.
        if !part.trim().is_empty() && !text.starts_with(part) && !out.contains(part) {
            out.push_str(part.trim());
            out.push('\n');
        }
    }
    out.push_str(text);
    out
}

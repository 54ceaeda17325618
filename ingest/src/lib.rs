//! Tenantry's ingestion pipeline: detect a document's type, extract its text with structure
//! (PDF pages, Markdown and HTML heading paths), split it into token-sized chunks with the
//! embedding model's own tokenizer, and embed those chunks.
//!
//! Everything here is synchronous CPU work; the server runs it on blocking threads.
//! Nothing here knows about tenants, HTTP or storage.

pub mod chunk;
pub mod detect;
pub mod embed;
pub mod error;
pub mod hostile;
pub mod parse;
mod pdfcheck;
pub mod pdflayout;
pub mod sandbox;

pub use chunk::{Chunk, Chunker};
pub use detect::{detect, ContentType};
pub use embed::{Embedder, EmbedderConfig, FastEmbedder, Lane, ModelSource};
pub use error::{IngestError, IngestErrorCode};
pub use parse::{parse, pdf_outline, Extracted, OutlineEntry, ParseLimits, Section};
pub use sandbox::{Parsed, Sandbox, SandboxConfig};

/// The largest character boundary of `s` at or below byte `index` (clamped to `s.len()`):
/// where a byte budget may cut a string without splitting a character.
pub fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

//! The extractive generator: the answer is made of the context sentences that best support the
//! question, each quoted verbatim with its citation. Offline and deterministic; no LLM.
use std::collections::HashSet;
use std::sync::Arc;

use tenantry_ingest::embed::cosine;

use super::{BoxFuture, ContextChunk, Generated, GenerationError, GenerationInput, Generator};
use crate::query::Retriever;

/// Sentences quoted at most.
const MAX_SENTENCES: usize = 3;
/// Sentences read from the context at most (in context order).
const MAX_CANDIDATES: usize = 48;
/// Sentences embedded at most: each costs about 8 ms of CPU on this model, which is most of an
/// extractive answer's latency. The ones sharing most words with the question are embedded
/// (context order breaks ties), plus the sentences right after a chosen question or heading.
const MAX_EMBEDDED: usize = 12;
/// Sentences right after a question or heading that matches are usually its answer (FAQs,
/// manuals): they score at least the anchor's score minus this.
const ANCHOR_MARGIN: f32 = 0.1;
/// How many sentences after an anchor inherit its score.
const ANCHOR_REACH: usize = 2;
/// Weight of lexical overlap next to cosine similarity. Cosine alone prefers sentences that
/// paraphrase the question's topic; overlap rewards ones that contain the asked-about terms.
const OVERLAP_WEIGHT: f32 = 0.3;
/// Besides the best sentence, quote others only if nearly as good: one strong sentence beats
/// three loosely related ones.
const SELECT_MARGIN: f32 = 0.08;

/// Offsets and text of the sentences of `text`. Splits after `.`, `!`, `?` followed by
/// whitespace and a capital, digit, quote or bracket; at blank lines; and before lines that start
/// a list item or heading. Other line breaks (PDF and wrapped text) do not end a sentence.
pub fn sentences(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let boundary = match b {
            b'\n' => line_break_ends_sentence(text, i).then_some(i + 1),
            b'.' | b'!' | b'?' => {
                // "e.g. x", "1.5", "..." do not end a sentence; ". Next" and ".\n" do.
                match (bytes.get(i + 1).copied(), bytes.get(i + 2).copied()) {
                    (None, _) | (Some(b' ' | b'\t' | b'\n'), None) => Some(i + 1),
                    (Some(b' ' | b'\t' | b'\n'), Some(c))
                        if c.is_ascii_uppercase()
                            || c.is_ascii_digit()
                            || matches!(c, b'"' | b'\'' | b'(' | b'[' | b'\n' | b'-' | b'*') =>
                    {
                        Some(i + 1)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(end) = boundary {
            if end > start {
                push_sentence(text, start, end, &mut out);
                start = end;
            }
        }
    }
    push_sentence(text, start, text.len(), &mut out);
    out
}

/// A line break at `i` ends a sentence around list items, headings and table rows, before a
/// blank line, and after a line ending in `:`.
fn line_break_ends_sentence(text: &str, i: usize) -> bool {
    let before = text[..i].trim_end_matches([' ', '\t']);
    let line = &before[before.rfind('\n').map_or(0, |j| j + 1)..];
    before.ends_with(':') || starts_block(line) || {
        let next = text[i + 1..].trim_start_matches([' ', '\t']);
        next.is_empty() || next.starts_with('\n') || starts_block(next)
    }
}

/// A line that is a list item, heading, table row or quote.
fn starts_block(line: &str) -> bool {
    let line = line.trim_start();
    match line.chars().next() {
        Some('-' | '*' | '\u{2022}' | '#' | '|' | '>') => true,
        Some(c) if c.is_ascii_digit() => {
            let rest = line.trim_start_matches(|c: char| c.is_ascii_digit());
            rest.starts_with(". ") || rest.starts_with(") ")
        }
        _ => false,
    }
}

fn push_sentence<'a>(text: &'a str, start: usize, end: usize, out: &mut Vec<(usize, &'a str)>) {
    let s = &text[start..end];
    let trimmed = s.trim();
    if !trimmed.is_empty() {
        let lead = s.len() - s.trim_start().len();
        out.push((start + lead, trimmed));
    }
}

/// Lower-cased content words (no stop words, at least two characters).
pub fn content_terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2)
        .map(str::to_lowercase)
        .filter(|w| !crate::storage::lexical::is_stop_word(w))
        .collect()
}

/// Share of the question's content terms that `sentence` contains.
pub fn overlap(question: &HashSet<String>, sentence: &str) -> f32 {
    if question.is_empty() {
        return 0.0;
    }
    let terms = content_terms(sentence);
    question.iter().filter(|t| terms.contains(*t)).count() as f32 / question.len() as f32
}

/// A question or heading: it names a topic but answers nothing, so it is never quoted; the
/// sentences after it may be its answer.
fn is_anchor(s: &str) -> bool {
    let letters: Vec<char> = s.chars().filter(|c| c.is_alphabetic()).collect();
    s.ends_with('?')
        || s.starts_with('#')
        || (letters.len() >= 4 && letters.iter().all(|c| c.is_uppercase()))
}

pub struct Extractive {
    /// Embeds candidate sentences on the query lane, in the caller's turn.
    pub retriever: Arc<Retriever>,
    pub ctx: crate::domain::TenantCtx,
}

/// Text that is mostly not words (tables of contents with dot leaders, numbers, code) says
/// nothing quotable.
fn mostly_words(s: &str) -> bool {
    let visible = s.chars().filter(|c| !c.is_whitespace()).count();
    let letters = s.chars().filter(|c| c.is_alphabetic()).count();
    letters * 10 >= visible * 6
}

/// Chunks are cut by tokens, so their first sentence may be a fragment.
fn fragment(s: &str, first: bool) -> bool {
    first && s.chars().next().is_some_and(char::is_lowercase)
}

/// Ends like a statement. Text cut at a line break (a chunk's end, PDF layout, a code block
/// after "using"), headings and list intros ending in ":" state nothing complete.
fn complete(s: &str) -> bool {
    s.trim_end_matches(['"', '\'', ')', '\u{2019}', '\u{201d}'])
        .ends_with(['.', '!'])
}

struct Candidate {
    chunk: usize,
    offset: usize,
    text: String,
    score: f32,
    anchor: bool,
}

impl Generator for Extractive {
    fn generate<'a>(
        &'a self,
        input: &'a GenerationInput,
        emit: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<Generated, GenerationError>> {
        Box::pin(async move {
            let mut candidates: Vec<Candidate> = input
                .context
                .iter()
                .enumerate()
                .flat_map(|(ci, c): (usize, &ContextChunk)| {
                    sentences(&c.text)
                        .into_iter()
                        .enumerate()
                        .filter(|(i, (_, s))| {
                            s.split_whitespace().count() >= 3
                                && mostly_words(s)
                                && !fragment(s, *i == 0)
                        })
                        .map(move |(_, (offset, s))| Candidate {
                            chunk: ci,
                            offset,
                            text: s.to_string(),
                            score: 0.0,
                            anchor: is_anchor(s),
                        })
                })
                .take(MAX_CANDIDATES)
                .collect();
            if candidates.is_empty() {
                return Ok(Generated::default());
            }
            let q_terms = content_terms(&input.question);
            candidates = shortlist(candidates, &q_terms);
            // Halves on two query sessions at once: one answer's latency, not its CPU, halves.
            let half = candidates.len().div_ceil(2);
            let parts = candidates.chunks(half).map(|part| {
                let texts: Vec<String> = part.iter().map(|c| c.text.clone()).collect();
                let (retriever, ctx) = (self.retriever.clone(), self.ctx.clone());
                crate::runtime::blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    retriever.embed_query(&ctx, &refs)
                })
            });
            let mut vectors = Vec::with_capacity(candidates.len());
            for part in futures_util::future::join_all(parts).await {
                vectors.extend(part.map_err(|e| GenerationError::Internal(e.to_string()))?);
            }
            for (c, v) in candidates.iter_mut().zip(&vectors) {
                c.score =
                    cosine(&input.question_vector, v) + OVERLAP_WEIGHT * overlap(&q_terms, &c.text);
            }
            let mut anchor: Option<(usize, f32, usize)> = None; // (chunk, score, sentences since)
            for c in candidates.iter_mut() {
                if c.anchor {
                    anchor = Some((c.chunk, c.score, 0));
                    continue;
                }
                if let Some((chunk, score, since)) = anchor.as_mut() {
                    if *chunk == c.chunk && *since < ANCHOR_REACH {
                        c.score = c.score.max(*score - ANCHOR_MARGIN);
                        *since += 1;
                    }
                }
            }
            let quotable: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| {
                    !c.anchor && complete(&c.text) && c.text.split_whitespace().count() >= 4
                })
                .collect();
            let best = quotable.iter().map(|c| c.score).fold(f32::MIN, f32::max);
            let mut chosen: Vec<&Candidate> = quotable
                .into_iter()
                .filter(|c| c.score >= best - SELECT_MARGIN)
                .collect();
            chosen.sort_by(|a, b| b.score.total_cmp(&a.score));
            chosen.truncate(MAX_SENTENCES);
            // Read in document order: by context rank, then position in the chunk.
            chosen.sort_by_key(|c| (c.chunk, c.offset));
            let mut text = String::new();
            let mut quotes = Vec::new();
            for c in chosen {
                let n = input.context[c.chunk].n;
                let sentence = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
                let piece = format!("{}{sentence} [{n}]", if text.is_empty() { "" } else { " " });
                emit(&piece);
                text.push_str(&piece);
                quotes.push((n, c.text.clone(), c.score));
            }
            Ok(Generated { text, quotes })
        })
    }
}

/// The candidates worth embedding, in context order: the [`MAX_EMBEDDED`] with the most
/// question words, and the followers of any anchor among them.
fn shortlist(candidates: Vec<Candidate>, q_terms: &HashSet<String>) -> Vec<Candidate> {
    let mut order: Vec<(usize, f32)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (i, overlap(q_terms, &c.text)))
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut keep = vec![false; candidates.len()];
    for &(i, _) in order.iter().take(MAX_EMBEDDED) {
        keep[i] = true;
        if candidates[i].anchor {
            let followers = (i + 1..candidates.len())
                .take_while(|&j| candidates[j].chunk == candidates[i].chunk)
                .filter(|&j| !candidates[j].anchor)
                .take(ANCHOR_REACH);
            for j in followers {
                keep[j] = true;
            }
        }
    }
    candidates
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_ends_and_lines_not_at_abbreviations() {
        let text = "Use apt-get, e.g. apt-get install x. Version 1.5 works!\n- a list item\nWhy? Because\nof wrapping.\n\nNew: one";
        let got: Vec<&str> = sentences(text).into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            got,
            vec![
                "Use apt-get, e.g. apt-get install x.",
                "Version 1.5 works!",
                "- a list item",
                "Why?",
                "Because\nof wrapping.",
                "New: one"
            ]
        );
        for (offset, s) in sentences(text) {
            assert_eq!(&text[offset..offset + s.len()], s);
        }
    }

    #[test]
    fn overlap_counts_content_terms_only() {
        let q = content_terms("How do I install the kernel?");
        assert_eq!(
            q,
            HashSet::from(["install".to_string(), "kernel".to_string()])
        );
        assert_eq!(overlap(&q, "To install a new kernel, run apt."), 1.0);
        assert_eq!(overlap(&q, "Kernels are great."), 0.0);
    }
}

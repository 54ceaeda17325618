//! Grounding checks the engine applies to every generated answer, whatever wrote it:
//! citation markers `[n]` that point at no context chunk are removed (also mid-stream, before the
//! text leaves the server), and an answer counts as grounded only if it cites something and
//! every sentence that states something is covered by a marker.
use std::collections::BTreeSet;

/// The sentinel LLM generators are told to answer with when the context does not answer.
pub const NOT_FOUND_SENTINEL: &str = "NOT_FOUND";

/// Streaming filter over generated text: keeps valid `[n]` / `[n, m]` markers, drops invalid
/// numbers (and a marker left empty), and holds back the opening until it is clear the answer
/// is not the not-found sentinel. Pieces in, cleaned pieces out; the concatenation of the output
/// equals [`clean`] of the concatenated input.
#[derive(Debug)]
pub struct MarkerFilter {
    max_n: usize,
    pending: String,
    in_marker: bool,
    opening: Option<String>,
    not_found: bool,
}

/// A marker longer than this is not a marker; it is passed through as text.
const MAX_MARKER: usize = 24;

impl MarkerFilter {
    pub fn new(max_n: usize) -> Self {
        Self {
            max_n,
            pending: String::new(),
            in_marker: false,
            opening: Some(String::new()),
            not_found: false,
        }
    }

    /// True once the text turned out to be the not-found sentinel; nothing is emitted then.
    pub fn is_not_found(&self) -> bool {
        self.not_found
    }

    pub fn push(&mut self, piece: &str) -> String {
        let mut out = String::new();
        for ch in piece.chars() {
            self.feed(ch, &mut out);
        }
        self.gate(out, false)
    }

    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if self.in_marker {
            out.push_str(&std::mem::take(&mut self.pending));
            self.in_marker = false;
        }
        self.gate(out, true)
    }

    fn feed(&mut self, ch: char, out: &mut String) {
        if !self.in_marker {
            if ch == '[' {
                self.in_marker = true;
                self.pending.push(ch);
            } else {
                out.push(ch);
            }
            return;
        }
        self.pending.push(ch);
        let body_ok = ch.is_ascii_digit() || ch == ',' || ch == ' ';
        if ch == ']' {
            out.push_str(&self.resolve_marker());
            self.pending.clear();
            self.in_marker = false;
        } else if !body_ok || self.pending.len() > MAX_MARKER {
            // Not a citation marker after all ("[see below]", "[a]"): plain text.
            let text = std::mem::take(&mut self.pending);
            self.in_marker = false;
            let mut chars = text.chars();
            out.push(chars.next().unwrap_or('['));
            for c in chars {
                self.feed(c, out);
            }
        }
    }

    /// `pending` is a whole `[...]`; keep it with only its valid numbers, or drop it.
    fn resolve_marker(&self) -> String {
        let body = &self.pending[1..self.pending.len() - 1];
        if body.trim().is_empty() {
            return self.pending.clone();
        }
        let mut valid = Vec::new();
        for part in body.split(',') {
            match part.trim().parse::<usize>() {
                Ok(n) if (1..=self.max_n).contains(&n) => valid.push(n.to_string()),
                Ok(_) => {}
                Err(_) => return self.pending.clone(),
            }
        }
        if valid.is_empty() {
            String::new()
        } else {
            format!("[{}]", valid.join(", "))
        }
    }

    fn gate(&mut self, out: String, last: bool) -> String {
        if self.not_found {
            return String::new();
        }
        let Some(mut held) = self.opening.take() else {
            return out;
        };
        held.push_str(&out);
        let trimmed = held.trim_start();
        if trimmed.starts_with(NOT_FOUND_SENTINEL) {
            self.not_found = true;
            return String::new();
        }
        if !last && NOT_FOUND_SENTINEL.starts_with(trimmed) {
            self.opening = Some(held);
            return String::new();
        }
        held
    }
}

/// The whole-text form of [`MarkerFilter`]: `(cleaned text, was it the not-found sentinel)`.
pub fn clean(text: &str, max_n: usize) -> (String, bool) {
    let mut f = MarkerFilter::new(max_n);
    let mut out = f.push(text);
    out.push_str(&f.finish());
    (out, f.is_not_found())
}

/// Marker numbers in (already cleaned) text.
pub fn markers(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        rest = &rest[i + 1..];
        let Some(j) = rest.find(']') else { break };
        let body = &rest[..j];
        if !body.trim().is_empty()
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        {
            out.extend(
                body.split(',')
                    .filter_map(|p| p.trim().parse::<usize>().ok()),
            );
        }
    }
    out
}

/// A sentence of an answer and the citation numbers that cover it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoveredSentence {
    pub text: String,
    pub cited: BTreeSet<usize>,
}

/// Splits an answer into sentences (per paragraph or list item). A marker covers its own
/// sentence and the uncited sentences just before it in the same paragraph, the way people
/// write "A. B. [1]"; a marker that opens a paragraph ("[1] A. B.") covers the paragraph.
pub fn coverage(text: &str) -> Vec<CoveredSentence> {
    let mut out = Vec::new();
    for para in text.split('\n').filter(|p| !p.trim().is_empty()) {
        let sentences = super::extractive::sentences(para);
        let start = out.len();
        for (_, s) in sentences {
            out.push(CoveredSentence {
                text: s.to_string(),
                cited: markers(s).into_iter().collect(),
            });
        }
        let mut carry: BTreeSet<usize> = BTreeSet::new();
        for s in out[start..].iter_mut().rev() {
            if s.cited.is_empty() {
                s.cited = carry.clone();
            } else {
                carry = s.cited.clone();
            }
        }
        let leading = para.trim_start().starts_with('[')
            && out.get(start).is_some_and(|s| !s.cited.is_empty());
        if leading {
            let opening = markers(&out[start].text[..out[start].text.find(']').unwrap_or(0) + 1]);
            for s in out[start..].iter_mut().filter(|s| s.cited.is_empty()) {
                s.cited = opening.iter().copied().collect();
            }
        }
    }
    out
}

/// A sentence that states something: four words or more, markers aside.
fn is_claim(s: &CoveredSentence) -> bool {
    s.text
        .split_whitespace()
        .filter(|w| !(w.starts_with('[') && markers(w).len() == 1))
        .count()
        >= 4
}

/// Sentences that state something without any covering citation.
pub fn uncited_claims(sentences: &[CoveredSentence]) -> usize {
    sentences
        .iter()
        .filter(|s| s.cited.is_empty() && is_claim(s))
        .count()
}

/// Whether the answer states anything at all ("[1] [2]" does not).
pub fn has_claims(sentences: &[CoveredSentence]) -> bool {
    sentences.iter().any(is_claim)
}

/// Share of a sentence's content words that must occur in a chunk for the engine to cite that
/// chunk for it. High enough that an invented sentence does not borrow a citation from a chunk
/// on the same topic; low enough for a light paraphrase.
pub const ATTRIBUTION_MIN_OVERLAP: f32 = 0.6;

/// Streaming stage after [`MarkerFilter`] for LLM output: holds text until a sentence is
/// complete, and gives a claim the model left uncited the marker of the packed chunk that
/// contains most of its words (if one contains enough). Small models often write a correct,
/// copied sentence without its marker; the engine can check that sentence against the chunks
/// itself. What no chunk supports stays uncited, and the answer is then not grounded.
pub struct Attributor {
    /// Content words of each packed chunk (with its title and heading), by citation number.
    chunks: Vec<(usize, std::collections::HashSet<String>)>,
    buf: String,
}

impl Attributor {
    pub fn new(chunks: Vec<(usize, std::collections::HashSet<String>)>) -> Self {
        Self {
            chunks,
            buf: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        // A sentence ends at one of these, decided by at most the two bytes after it: when
        // none is in the new text or just before it, nothing new can be complete. Skipping the
        // re-split keeps a stream of tiny pieces linear, not quadratic.
        let recent = tenantry_ingest::floor_char_boundary(
            &self.buf,
            self.buf.len().saturating_sub(text.len() + 2),
        );
        if !self.buf[recent..].contains(['.', '!', '?', '\n']) {
            return String::new();
        }
        let sentences = super::extractive::sentences(&self.buf);
        // Everything before the last sentence is complete (the last may still grow).
        let Some(&(last_start, _)) = sentences.last() else {
            return String::new();
        };
        if sentences.len() < 2 {
            return String::new();
        }
        let done: String = self.buf.drain(..last_start).collect();
        self.attribute(&done)
    }

    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.buf);
        self.attribute(&rest)
    }

    /// `text` is whole sentences with their separators; returns it with markers added.
    fn attribute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        let mut pos = 0;
        for (start, sentence) in super::extractive::sentences(text) {
            let end = start + sentence.len();
            out.push_str(&text[pos..start]);
            pos = end;
            let claim = sentence.split_whitespace().count() >= 4;
            if !claim || !markers(sentence).is_empty() {
                out.push_str(sentence);
                continue;
            }
            let words = super::extractive::content_terms(sentence);
            let best = self
                .chunks
                .iter()
                .map(|(n, terms)| {
                    let hit = words.iter().filter(|w| terms.contains(*w)).count();
                    (*n, hit, hit as f32 / words.len().max(1) as f32)
                })
                .filter(|&(_, hit, share)| hit >= 2 && share >= ATTRIBUTION_MIN_OVERLAP)
                .max_by(|a, b| a.2.total_cmp(&b.2).then(b.0.cmp(&a.0)));
            match best {
                Some((n, _, _)) => {
                    // Before the final punctuation: "… lists [2]."
                    let body = sentence.trim_end_matches(['.', '!', '?', ':', ';']);
                    out.push_str(body);
                    out.push_str(&format!(" [{n}]"));
                    out.push_str(&sentence[body.len()..]);
                }
                None => out.push_str(sentence),
            }
        }
        out.push_str(&text[pos..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(pieces: &[&str], max_n: usize) -> String {
        let mut f = MarkerFilter::new(max_n);
        let mut out: String = pieces.iter().map(|p| f.push(p)).collect();
        out.push_str(&f.finish());
        out
    }

    #[test]
    fn invalid_markers_are_removed_even_split_across_pieces() {
        let text = "Use apt [1]. Or dpkg [7]. Both [2, 9] work [see below] [a].";
        let want = "Use apt [1]. Or dpkg . Both [2] work [see below] [a].";
        assert_eq!(clean(text, 3).0, want);
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        assert_eq!(streamed(&pieces, 3), want);
        assert_eq!(
            streamed(&["Use apt [", "1", "]. [0", "]"], 3),
            "Use apt [1]. "
        );
        assert_eq!(markers(want), vec![1, 2]);
    }

    #[test]
    fn the_not_found_sentinel_is_recognised_when_streamed() {
        assert!(clean("  NOT_FOUND", 3).1);
        let mut f = MarkerFilter::new(3);
        assert_eq!(f.push("NOT_"), "");
        assert_eq!(f.push("FOUND."), "");
        assert!(f.is_not_found());
        assert_eq!(streamed(&["NO", "T really [1]"], 3), "NOT really [1]");
        assert_eq!(streamed(&["No"], 3), "No");
    }

    #[test]
    fn uncited_sentences_get_the_chunk_that_contains_them() {
        let terms = |t: &str| super::super::extractive::content_terms(t);
        let chunks = vec![
            (
                1,
                terms("Meeting notes. The fog horn failed twice during the storm."),
            ),
            (
                2,
                terms("A replacement diaphragm was ordered from the mainland supplier."),
            ),
        ];
        let mut a = Attributor::new(chunks);
        let mut out = String::new();
        for piece in [
            "The fog horn failed twice",
            " in the storm. A new diaphragm was ordered",
            " from the supplier. The ",
            "keeper then retired to a farm.",
            " Yes [1].",
        ] {
            out.push_str(&a.push(piece));
        }
        out.push_str(&a.finish());
        assert_eq!(
            out,
            "The fog horn failed twice in the storm [1]. A new diaphragm was ordered from the supplier [2]. The keeper then retired to a farm. Yes [1]."
        );
    }

    #[test]
    fn a_marker_covers_the_sentences_before_it_in_its_paragraph() {
        let c = coverage(
            "Debian uses apt. It resolves dependencies [1].\nIt is also fast and reliable.",
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].cited, BTreeSet::from([1]));
        assert_eq!(c[1].cited, BTreeSet::from([1]));
        assert!(c[2].cited.is_empty());
        assert_eq!(uncited_claims(&c), 1);
        assert_eq!(uncited_claims(&coverage("Yes [2].")), 0);
        let c = coverage("[1] The keeper reported the failure. A diaphragm was ordered.\nNo source here for this one.");
        assert_eq!(c[1].cited, BTreeSet::from([1]));
        assert_eq!(uncited_claims(&c), 1);
        assert!(!has_claims(&coverage("[1] [2]")));
        assert!(has_claims(&coverage("[1] The keeper reported it.")));
    }
}

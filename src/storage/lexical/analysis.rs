//! The one text analysis both lexical backends share, so a chunk has the same terms whether
//! tantivy or a Qdrant sparse vector holds them; and BM25 as sparse vectors for the cluster.
//!
//! In the cluster, a chunk's sparse vector holds each term's BM25 term-frequency part
//! `tf (k1 + 1) / (tf + k1 (1 - b + b len / avg_len))` under the term's id, with a fixed
//! `avg_len`, so a chunk's weights never depend on any other chunk. The query's vector holds 1
//! per term; Qdrant multiplies by the IDF it computes over the tenant's own points (see
//! `storage::qdrant`). The sum is BM25 with the tenant's statistics.
use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};
use tantivy::schema::Field;
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};

/// English BM25 analysis: words, lower-cased, stop words dropped (they carry no evidence and
/// clutter highlighted snippets), Porter-stemmed.
pub const ANALYZER: &str = "tenantry_en";

/// The general-purpose English stop list of NLTK (179 words), not Lucene's 33: users ask
/// questions, and question and pronoun words ("how", "do", "I", "my", "can") match many chunks
/// without saying what the question is about. Whole-entry BM25 on two FAQ sets (debian-faq and
/// the Python FAQ) gained 0.09 and 0.06 nDCG@10 from it. Indexes written with the shorter list
/// stay valid: the extra indexed words are simply never queried.
const STOP_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
    "d",
    "ll",
    "m",
    "o",
    "re",
    "ve",
    "y",
    "ain",
    "aren",
    "couldn",
    "didn",
    "doesn",
    "hadn",
    "hasn",
    "haven",
    "isn",
    "ma",
    "mightn",
    "mustn",
    "needn",
    "shan",
    "shouldn",
    "wasn",
    "weren",
    "won",
    "wouldn",
];

/// Whether a lower-cased word is on the BM25 stop list (answers use the same notion of
/// "carries no evidence").
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// tantivy's BM25 constants.
const K1: f32 = 1.2;
const B: f32 = 0.75;
/// Title terms count half, as the tantivy leg's query parser boosts the title field.
const TITLE_WEIGHT: f32 = 0.5;

/// The analysed terms of `text`, in order.
pub fn terms(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// A term's index in the sparse vector space: 32 bits of its SHA-256. Two terms share an id
/// with probability about n^2 / 2^33 in a vocabulary of n terms; a collision only merges their
/// statistics.
pub fn term_id(term: &str) -> u32 {
    let d = Sha256::digest(term.as_bytes());
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// A sparse vector: strictly increasing indices and their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Sparse {
    fn from_map(m: HashMap<u32, f32>) -> Self {
        let mut pairs: Vec<(u32, f32)> = m.into_iter().collect();
        pairs.sort_unstable_by_key(|p| p.0);
        let (indices, values) = pairs.into_iter().unzip();
        Self { indices, values }
    }
}

fn tf_parts(terms: &[String], avg_len: f32) -> HashMap<u32, f32> {
    let mut tf: HashMap<u32, f32> = HashMap::new();
    for t in terms {
        *tf.entry(term_id(t)).or_default() += 1.0;
    }
    let norm = K1 * (1.0 - B + B * terms.len() as f32 / avg_len.max(1.0));
    tf.into_iter()
        .map(|(id, f)| (id, f * (K1 + 1.0) / (f + norm)))
        .collect()
}

/// A chunk's BM25 document vector: its text's term-frequency parts plus half its title's.
pub fn document_vector(title: &str, text: &str, avg_len: f32) -> Sparse {
    let mut m = tf_parts(&terms(text), avg_len);
    for (id, w) in tf_parts(&terms(title), avg_len) {
        *m.entry(id).or_default() += TITLE_WEIGHT * w;
    }
    Sparse::from_map(m)
}

/// A query's vector: 1 per distinct term (the server multiplies by the term's IDF).
pub fn query_vector(text: &str) -> Sparse {
    Sparse::from_map(terms(text).iter().map(|t| (term_id(t), 1.0)).collect())
}

/// HTML snippets of `texts` (at most 240 characters) with the query's terms in `<b>`; `None`
/// where no term occurs. For the backends that keep no tantivy index to ask.
pub fn snippets(query: &str, texts: &[&str]) -> Vec<Option<String>> {
    let terms: BTreeMap<String, f32> = terms(query).into_iter().map(|t| (t, 1.0)).collect();
    let gen = SnippetGenerator::new(terms, analyzer(), Field::from_field_id(0), 240);
    texts
        .iter()
        .map(|t| {
            let s = gen.snippet(t);
            (!s.highlighted().is_empty()).then(|| s.to_html())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bm25_weights_match_hand_computation() {
        // "running dogs run": stems run, dog, run -> run twice, dog once; 3 terms.
        let v = document_vector("", "running dogs run", 3.0);
        let norm = K1; // len == avg_len
        let w = |tf: f32| tf * (K1 + 1.0) / (tf + norm);
        let mut expect = vec![(term_id("run"), w(2.0)), (term_id("dog"), w(1.0))];
        expect.sort_by_key(|p| p.0);
        assert_eq!(v.indices, expect.iter().map(|p| p.0).collect::<Vec<_>>());
        for (got, (_, e)) in v.values.iter().zip(&expect) {
            assert!((got - e).abs() < 1e-6);
        }
        // Stop words carry nothing; the query has one entry per distinct term.
        let q = query_vector("how do I run the dog, the dog?");
        assert_eq!(q.indices.len(), 2);
        assert!(q.values.iter().all(|v| *v == 1.0));
    }

    #[test]
    fn snippets_highlight_stemmed_terms() {
        let s = snippets("running", &["She runs daily.", "Nothing here."]);
        assert_eq!(s[0].as_deref(), Some("She <b>runs</b> daily"));
        assert_eq!(s[1], None);
    }
}

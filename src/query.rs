//! Tenant-scoped hybrid retrieval: both legs for the caller's tenant only, a visibility check
//! against the catalog (only live versions), reciprocal rank fusion, snippets. A [`Retriever`]
//! is built from the storage seams and the embedder; it knows nothing of the engine.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tenantry_ingest::embed::{cosine, QueryActivity};
use tenantry_ingest::{Chunker, Embedder, Lane};

use crate::config::QueryConfig;
use crate::domain::{
    ChunkFilter, ChunkKey, FusionMethod, FusionOverrides, LegHit, Mode, StoredChunk,
    MAX_QUERY_CHARS, MAX_TOP_K,
};
use crate::domain::{DocId, TenantCtx};
use crate::error::{InternalError, Result, UserError};
use crate::fairq::FairPermits;
use crate::runtime::blocking;
use crate::storage::catalog::Catalog;
use crate::storage::lexical::LexicalStore;
use crate::storage::vector::VectorStore;
use crate::usage::{Meter, Metric};

#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub top_k: usize,
    pub mode: Mode,
    pub filter: ChunkFilter,
    pub fusion: FusionOverrides,
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub chunk: StoredChunk,
    /// Fused score in hybrid mode; the leg's own score otherwise (BM25, or cosine in document
    /// context: see [`in_document_context`]).
    pub score: f32,
    /// 1-based rank in each leg's candidate list, when the chunk was in it.
    pub dense_rank: Option<usize>,
    pub bm25_rank: Option<usize>,
    /// HTML with matched terms in `<b>`; the chunk's opening when no term matches.
    pub snippet: String,
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub embed_ms: f64,
    pub dense_ms: f64,
    pub bm25_ms: f64,
    pub fuse_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub hits: Vec<Hit>,
    pub timings: Timings,
    /// The query's embedding, when the dense leg ran.
    pub query_vector: Option<Vec<f32>>,
    /// Cosine similarity of the best visible chunk of the dense leg: the evidence answers are
    /// gated on (see `answer::evidence`).
    pub best_dense: Option<f32>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

impl Query {
    pub fn validate(&self) -> Result<(), UserError> {
        if self.text.trim().is_empty() {
            return Err(UserError::Invalid("query must not be empty".into()));
        }
        if self.text.chars().count() > MAX_QUERY_CHARS {
            return Err(UserError::Invalid(format!(
                "query is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        if !(1..=MAX_TOP_K).contains(&self.top_k) {
            return Err(UserError::Invalid(format!(
                "top_k must be between 1 and {MAX_TOP_K}"
            )));
        }
        let f = &self.fusion;
        if f.rrf_k.is_some_and(|k| k.is_nan() || k <= 0.0)
            || [f.dense_weight, f.bm25_weight]
                .iter()
                .flatten()
                .any(|w| w.is_nan() || *w < 0.0)
        {
            return Err(UserError::Invalid(
                "fusion: rrf_k must be > 0 and weights >= 0".into(),
            ));
        }
        if f.opening_weight.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
            return Err(UserError::Invalid(
                "fusion: opening_weight must be between 0 and 1".into(),
            ));
        }
        if f.candidates_per_leg
            .is_some_and(|c| !(1..=1000).contains(&c))
        {
            return Err(UserError::Invalid(
                "fusion: candidates_per_leg must be between 1 and 1000".into(),
            ));
        }
        Ok(())
    }
}

/// Weighted reciprocal rank fusion: `score = sum over legs of weight / (k + rank)`.
/// Inputs are best-first lists of keys; ties keep first-seen order (dense leg first).
pub fn rrf<K: Clone + Eq + std::hash::Hash>(legs: &[(&[K], f32)], k: f32) -> Vec<(K, f32)> {
    let mut fused = Fused::default();
    for (list, weight) in legs {
        for (i, key) in list.iter().enumerate() {
            fused.add(key, weight / (k + (i + 1) as f32));
        }
    }
    fused.ranked()
}

/// Per-key sums of the legs' contributions; ties keep first-seen order.
struct Fused<K> {
    scores: HashMap<K, (f32, usize)>,
}

impl<K> Default for Fused<K> {
    fn default() -> Self {
        Self {
            scores: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + std::hash::Hash> Fused<K> {
    fn add(&mut self, key: &K, contribution: f32) {
        let seen = self.scores.len();
        self.scores.entry(key.clone()).or_insert((0.0, seen)).0 += contribution;
    }

    fn ranked(self) -> Vec<(K, f32)> {
        let mut out: Vec<(K, f32, usize)> = self
            .scores
            .into_iter()
            .map(|(key, (s, o))| (key, s, o))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
        out.into_iter().map(|(key, s, _)| (key, s)).collect()
    }
}

/// Per-leg score normalisation followed by a weighted sum. `floor` is the leg's lowest
/// possible score (used by [`FusionMethod::Convex`]). A key missing from a leg gets 0 from it.
/// One leg for [`score_fusion`]: best-first `(key, score)`, its weight, its lowest possible score.
pub type ScoredLeg<'a, K> = (&'a [(K, f32)], f32, f32);

pub fn score_fusion<K: Clone + Eq + std::hash::Hash>(
    method: FusionMethod,
    legs: &[ScoredLeg<'_, K>],
) -> Vec<(K, f32)> {
    let mut fused = Fused::default();
    for (list, weight, floor) in legs {
        if list.is_empty() {
            continue;
        }
        let n = list.len() as f32;
        let (lo, hi) = match method {
            FusionMethod::Dbsf => {
                let mean = list.iter().map(|(_, s)| s).sum::<f32>() / n;
                let sd = (list.iter().map(|(_, s)| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
                (mean - 3.0 * sd, mean + 3.0 * sd)
            }
            _ => (
                *floor,
                list.iter().map(|(_, s)| *s).fold(f32::MIN, f32::max),
            ),
        };
        let span = (hi - lo).max(f32::EPSILON);
        for (key, s) in list.iter() {
            fused.add(key, weight * ((s - lo) / span).clamp(0.0, 1.0));
        }
    }
    fused.ranked()
}

type Key = (String, u64, u32);

/// Dense scores in the context of each chunk's document: `(1 - w) * cos(query, chunk) +
/// w * cos(query, the document's opening chunk)`, best first.
///
/// A chunk is judged together with the document it comes from, as passage-level retrieval has
/// long done (Callan 1994; Bendersky & Kurland 2008: interpolate the best passage's score with
/// the document's). A document's opening (title, headings, first passage) is where it says
/// what it is about, and it is embedded already. Without it, a long document's later chunks
/// are many extra draws at a high similarity to any query, and they outrank the short
/// document that answers it. The opening's own score is unchanged; one-chunk documents too.
pub fn in_document_context(
    query: &[f32],
    mut hits: Vec<LegHit>,
    w: f32,
    openings: impl FnOnce(&[ChunkKey]) -> Result<Vec<Option<Vec<f32>>>>,
) -> Result<Vec<LegHit>> {
    let doc = |h: &LegHit| (h.chunk.doc_id.clone(), h.chunk.version);
    let mut opening: HashMap<(DocId, u64), f32> = hits
        .iter()
        .filter(|h| h.chunk.ordinal == 0)
        .map(|h| (doc(h), h.score))
        .collect();
    let mut asked = HashSet::new();
    let missing: Vec<ChunkKey> = hits
        .iter()
        .map(doc)
        .filter(|d| !opening.contains_key(d) && asked.insert(d.clone()))
        .map(|(id, version)| (id, version, 0))
        .collect();
    if !missing.is_empty() {
        let vectors = openings(&missing)?;
        for ((id, version, _), v) in missing.into_iter().zip(vectors) {
            if let Some(v) = v {
                opening.insert((id, version), cosine(query, &v));
            }
        }
    }
    for h in &mut hits {
        // A missing opening (not expected) leaves the chunk's own score.
        let o = opening.get(&doc(h)).copied().unwrap_or(h.score);
        h.score = (1.0 - w) * h.score + w * o;
    }
    hits.sort_by(by_score_then_chunk);
    Ok(hits)
}

fn by_score_then_chunk(a: &LegHit, b: &LegHit) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| key(&a.chunk).cmp(&key(&b.chunk)))
}

fn key(c: &StoredChunk) -> Key {
    (c.doc_id.as_str().to_string(), c.version, c.ordinal)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn opening(text: &str, max: usize) -> String {
    let end = text
        .char_indices()
        .nth(max)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    escape(&text[..end])
}

/// Runs tenant-scoped searches over the storage seams.
pub struct Retriever {
    catalog: Arc<dyn Catalog>,
    vectors: Arc<dyn VectorStore>,
    lexical: Arc<dyn LexicalStore>,
    embedder: Arc<dyn Embedder>,
    /// The model's tokenizer: query tokens are metered as embedding usage.
    tokens: Arc<Chunker>,
    meter: Arc<Meter>,
    /// Where queries report that they run: ingestion yields cores to them.
    activity: Arc<QueryActivity>,
    /// One per query model session, handed out round-robin between tenants.
    permits: FairPermits,
    config: QueryConfig,
}

impl Retriever {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        catalog: Arc<dyn Catalog>,
        vectors: Arc<dyn VectorStore>,
        lexical: Arc<dyn LexicalStore>,
        embedder: Arc<dyn Embedder>,
        tokens: Arc<Chunker>,
        meter: Arc<Meter>,
        activity: Arc<QueryActivity>,
        config: QueryConfig,
    ) -> Self {
        let sessions = match config.embed_sessions {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Self {
            catalog,
            vectors,
            lexical,
            embedder,
            tokens,
            meter,
            activity,
            permits: FairPermits::new(sessions),
            config,
        }
    }

    /// Embed texts on the query lane, in the tenant's turn for a model session. Blocking.
    pub fn embed_query(&self, ctx: &TenantCtx, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let _turn = self.permits.acquire(ctx.tenant());
        Ok(self
            .embedder
            .embed(Lane::Query, texts)
            .map_err(|e| InternalError::Embedding(e.to_string()))?)
    }

    pub async fn search(self: &Arc<Self>, ctx: &TenantCtx, q: Query) -> Result<QueryOutput> {
        run(self, ctx, q).await
    }
}

async fn run(retriever: &Arc<Retriever>, ctx: &TenantCtx, q: Query) -> Result<QueryOutput> {
    q.validate()?;
    let _running = retriever.activity.enter();
    let total = Instant::now();
    let cfg = &retriever.config;
    let candidates = q
        .fusion
        .candidates_per_leg
        .unwrap_or(cfg.candidates_per_leg)
        .max(q.top_k);
    let mut timings = Timings::default();

    let dense = async {
        if q.mode == Mode::Bm25 {
            return Ok((vec![], None, 0.0, 0.0));
        }
        let (e, c, text, filter) = (
            retriever.clone(),
            ctx.clone(),
            q.text.clone(),
            q.filter.clone(),
        );
        blocking(move || {
            let t = Instant::now();
            let v = e.embed_query(&c, &[text.as_str()])?;
            let embed_ms = ms(t);
            // Metered here, on the blocking pool, where the text is tokenised anyway.
            let tokens = e.tokens.count_tokens(&text) as u64;
            e.meter.add(c.tenant(), Metric::EmbeddingTokens, tokens);
            let t = Instant::now();
            let hits = e.vectors.search(&c, &v[0], &filter, candidates)?;
            let vector = v.into_iter().next();
            Ok((hits, vector, embed_ms, ms(t)))
        })
        .await
    };
    let lexical = async {
        if q.mode == Mode::Dense {
            return Ok((vec![], 0.0));
        }
        let (e, c, text, filter) = (
            retriever.clone(),
            ctx.clone(),
            q.text.clone(),
            q.filter.clone(),
        );
        blocking(move || {
            let t = Instant::now();
            let hits = e.lexical.search(&c, &text, &filter, candidates)?;
            Ok((hits, ms(t)))
        })
        .await
    };
    let (dense, lexical) = tokio::join!(dense, lexical);
    let (dense_hits, query_vector, embed_ms, dense_ms) = dense?;
    let (bm25_hits, bm25_ms) = lexical?;
    timings.embed_ms = embed_ms;
    timings.dense_ms = dense_ms;
    timings.bm25_ms = bm25_ms;

    let (e, c) = (retriever.clone(), ctx.clone());
    let (text, mode, top_k, fusion) = (q.text.clone(), q.mode, q.top_k, q.fusion.clone());
    let vector = query_vector.clone();
    let (hits, best_dense, fuse_ms) = blocking(move || {
        let t = Instant::now();
        let cfg = &e.config;
        // Only chunks of each document's live version are visible: a version being written,
        // replaced or deleted never shows, in either leg.
        let mut ids: Vec<&str> = dense_hits
            .iter()
            .chain(&bm25_hits)
            .map(|h| h.chunk.doc_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let live = e.catalog.live_documents(c.tenant(), &ids)?;
        // Visible hits take the document's title and metadata from the catalog: the legs keep
        // them once per document there, not per chunk.
        // Equal scores are ordered by chunk, so a tie ranks the same on every backend and
        // every run (a store returns ties in whatever order it holds them).
        let visible = |hits: &[LegHit]| -> Vec<LegHit> {
            let mut out: Vec<LegHit> = hits
                .iter()
                .filter_map(|h| {
                    let doc = live.get(h.chunk.doc_id.as_str())?;
                    (doc.version == h.chunk.version).then(|| {
                        let mut h = h.clone();
                        h.chunk.title.clone_from(&doc.title);
                        h.chunk.metadata.clone_from(&doc.metadata);
                        h
                    })
                })
                .collect();
            out.sort_by(by_score_then_chunk);
            out
        };
        let dense_hits = visible(&dense_hits);
        let bm25_hits = visible(&bm25_hits);
        // Answers are gated on the best chunk's own similarity, before document context.
        let best_dense = dense_hits.first().map(|h| h.score);
        let w = fusion.opening_weight.unwrap_or(cfg.opening_weight);
        let dense_hits = match &vector {
            Some(v) if w > 0.0 => {
                in_document_context(v, dense_hits, w, |keys| Ok(e.vectors.vectors(&c, keys)?))?
            }
            _ => dense_hits,
        };

        let dense_keys: Vec<Key> = dense_hits.iter().map(|h| key(&h.chunk)).collect();
        let bm25_keys: Vec<Key> = bm25_hits.iter().map(|h| key(&h.chunk)).collect();
        let rank_of = |keys: &[Key]| -> HashMap<Key, usize> {
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.clone(), i + 1))
                .collect()
        };
        let (dense_rank, bm25_rank) = (rank_of(&dense_keys), rank_of(&bm25_keys));
        let mut by_key: HashMap<Key, StoredChunk> = HashMap::new();
        for h in dense_hits.iter().chain(&bm25_hits) {
            by_key
                .entry(key(&h.chunk))
                .or_insert_with(|| h.chunk.clone());
        }
        let ranked: Vec<(Key, f32)> = match mode {
            Mode::Dense => dense_hits
                .iter()
                .map(|h| (key(&h.chunk), h.score))
                .collect(),
            Mode::Bm25 => bm25_hits.iter().map(|h| (key(&h.chunk), h.score)).collect(),
            Mode::Hybrid => {
                let (wd, wb) = (
                    fusion.dense_weight.unwrap_or(cfg.dense_weight),
                    fusion.bm25_weight.unwrap_or(cfg.bm25_weight),
                );
                match fusion.method.unwrap_or(cfg.fusion) {
                    FusionMethod::Rrf => rrf(
                        &[(&dense_keys, wd), (&bm25_keys, wb)],
                        fusion.rrf_k.unwrap_or(cfg.rrf_k),
                    ),
                    method => {
                        let scored = |hits: &[LegHit]| -> Vec<(Key, f32)> {
                            hits.iter().map(|h| (key(&h.chunk), h.score)).collect()
                        };
                        let (d, b) = (scored(&dense_hits), scored(&bm25_hits));
                        score_fusion(method, &[(&d, wd, -1.0), (&b, wb, 0.0)])
                    }
                }
            }
        };
        let top: Vec<(Key, f32)> = ranked.into_iter().take(top_k).collect();
        let texts: Vec<&str> = top.iter().map(|(k, _)| by_key[k].text.as_str()).collect();
        let snippets = e.lexical.snippets(&c, &text, &texts)?;
        let hits = top
            .iter()
            .zip(snippets)
            .map(|((k, score), snippet)| {
                let chunk = by_key[k].clone();
                Hit {
                    snippet: snippet.unwrap_or_else(|| opening(&chunk.text, 240)),
                    chunk,
                    score: *score,
                    dense_rank: dense_rank.get(k).copied(),
                    bm25_rank: bm25_rank.get(k).copied(),
                }
            })
            .collect::<Vec<_>>();
        Ok((hits, best_dense, ms(t)))
    })
    .await?;
    timings.fuse_ms = fuse_ms;
    timings.total_ms = ms(total);
    Ok(QueryOutput {
        hits,
        timings,
        query_vector,
        best_dense,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_matches_hand_computation() {
        let a = ["x", "y", "z"];
        let b = ["y", "w"];
        let out = rrf(&[(&a[..], 1.0), (&b[..], 1.0)], 60.0);
        let score = |k: &str| out.iter().find(|(key, _)| *key == k).unwrap().1;
        assert!((score("y") - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert!((score("x") - 1.0 / 61.0).abs() < 1e-7);
        assert_eq!(out[0].0, "y");
        assert_eq!(out.len(), 4);
        // A zero weight removes a leg's influence entirely.
        let out = rrf(&[(&a[..], 1.0), (&b[..], 0.0)], 60.0);
        assert_eq!(
            out.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec!["x", "y", "z", "w"]
        );
    }

    fn hit(doc: &str, ordinal: u32, score: f32) -> LegHit {
        let mut chunk = crate::domain::test_chunk(doc, ordinal, "");
        chunk.version = 3;
        LegHit { chunk, score }
    }

    #[test]
    fn document_context_matches_hand_computation() {
        let query = [1.0, 0.0];
        let hits = vec![hit("a", 1, 0.8), hit("b", 2, 0.7), hit("b", 0, 0.6)];
        let mut asked = vec![];
        let out = in_document_context(&query, hits, 0.5, |keys| {
            asked = keys.to_vec();
            // a's opening: cosine 0.2 with the query.
            Ok(vec![Some(vec![0.2, 0.98])])
        })
        .unwrap();
        // Only the opening not among the candidates is fetched, at the hit's version.
        assert_eq!(asked.len(), 1);
        assert_eq!((asked[0].0.as_str(), asked[0].1, asked[0].2), ("a", 3, 0));
        // b#2: (0.7 + 0.6) / 2; b#0 is its own opening; a#1: (0.8 + 0.2) / 2.
        let got: Vec<(String, u32, f32)> = out
            .iter()
            .map(|h| (h.chunk.doc_id.to_string(), h.chunk.ordinal, h.score))
            .collect();
        let expect = [("b", 2, 0.65), ("b", 0, 0.6), ("a", 1, 0.5)];
        assert_eq!(got.len(), expect.len());
        for ((d, o, s), (ed, eo, es)) in got.iter().zip(expect) {
            assert_eq!((d.as_str(), *o), (ed, eo));
            assert!((s - es).abs() < 1e-6, "{d}#{o}: {s} vs {es}");
        }
        // Weight 0 is the chunk alone.
        let out = in_document_context(&query, vec![hit("a", 1, 0.8)], 0.0, |_| {
            Ok(vec![Some(vec![0.0, 1.0])])
        })
        .unwrap();
        assert_eq!(out[0].score, 0.8);
    }

    #[test]
    fn convex_fusion_matches_hand_computation() {
        let dense = [("a", 0.5), ("b", 0.0)];
        let bm25 = [("b", 4.0), ("c", 2.0)];
        let out = score_fusion(
            FusionMethod::Convex,
            &[(&dense[..], 1.0, -1.0), (&bm25[..], 1.0, 0.0)],
        );
        // a: (0.5+1)/1.5 = 1; b: (0+1)/1.5 + 4/4; c: 2/4.
        let expect = [("b", 1.0 / 1.5 + 1.0), ("a", 1.0), ("c", 0.5)];
        for ((k, s), (ek, es)) in out.iter().zip(expect) {
            assert_eq!(*k, ek);
            assert!((s - es).abs() < 1e-6, "{k}: {s} vs {es}");
        }
    }
}

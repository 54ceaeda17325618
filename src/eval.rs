//! Retrieval quality on a BEIR-layout dataset (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`).
//! Relevance is judged per document: a document is retrieved at the rank of its best chunk.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::ChunkFilter;
use crate::domain::{DocId, TenantCtx};
use crate::domain::{FusionMethod, FusionOverrides, Mode, MAX_TOP_K};
use crate::engine::{Engine, Upload};
use crate::error::{InternalError, Result, UserError};
use crate::query::Query;
use crate::storage::catalog::JobStatus;

#[derive(Debug, Clone, Deserialize)]
pub struct CorpusDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueryItem {
    #[serde(rename = "_id")]
    pub id: String,
    pub text: String,
}

pub struct Dataset {
    pub corpus: Vec<CorpusDoc>,
    /// Only queries that have judgements, in file order.
    pub queries: Vec<QueryItem>,
    pub qrels: HashMap<String, HashMap<String, u32>>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UserError::Invalid(format!("{}: {e}", path.display())))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                UserError::Invalid(format!("{}:{}: {e}", path.display(), i + 1)).into()
            })
        })
        .collect()
}

impl Dataset {
    pub fn load(dir: &Path, split: &str) -> Result<Self> {
        let corpus: Vec<CorpusDoc> = read_jsonl(&dir.join("corpus.jsonl"))?;
        let queries: Vec<QueryItem> = read_jsonl(&dir.join("queries.jsonl"))?;
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let text = std::fs::read_to_string(&qrels_path)
            .map_err(|e| UserError::Invalid(format!("{}: {e}", qrels_path.display())))?;
        let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 3 || (i == 0 && cols[2].parse::<u32>().is_err()) {
                continue; // header
            }
            let grade: u32 = cols[2].trim().parse().map_err(|_| {
                UserError::Invalid(format!("{}:{}: bad score", qrels_path.display(), i + 1))
            })?;
            qrels
                .entry(cols[0].to_string())
                .or_default()
                .insert(cols[1].to_string(), grade);
        }
        let queries = queries
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect();
        Ok(Self {
            corpus,
            queries,
            qrels,
        })
    }
}

/// nDCG@k with linear gains (BEIR / pytrec_eval convention).
pub fn ndcg_at(k: usize, ranked: &[String], rels: &HashMap<String, u32>) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| *rels.get(d).unwrap_or(&0) as f64 / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<u32> = rels.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| *g as f64 / (i as f64 + 2.0).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Fraction of the relevant documents found in the top k.
pub fn recall_at(k: usize, ranked: &[String], rels: &HashMap<String, u32>) -> f64 {
    let relevant: HashSet<&String> = rels
        .iter()
        .filter(|(_, g)| **g > 0)
        .map(|(d, _)| d)
        .collect();
    if relevant.is_empty() {
        return 0.0;
    }
    ranked
        .iter()
        .take(k)
        .filter(|d| relevant.contains(d))
        .count() as f64
        / relevant.len() as f64
}

/// Reciprocal rank of the first relevant document within the top k.
pub fn mrr_at(k: usize, ranked: &[String], rels: &HashMap<String, u32>) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| rels.get(d).is_some_and(|g| *g > 0))
        .map(|i| 1.0 / (i as f64 + 1.0))
        .unwrap_or(0.0)
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub mode: Mode,
    pub fusion: FusionOverrides,
}

/// Every mode, and hybrid with each fusion method the engine supports; the `chunk alone`
/// variants switch document context off (`opening_weight` 0) to show what it adds.
pub fn standard_variants() -> Vec<Variant> {
    let variant = |name: &str, mode: Mode, fusion: FusionOverrides| Variant {
        name: name.into(),
        mode,
        fusion,
    };
    let hybrid = |name: &str, method: FusionMethod, k: f32, wd: f32, wb: f32| {
        variant(
            name,
            Mode::Hybrid,
            FusionOverrides {
                method: Some(method),
                rrf_k: Some(k),
                dense_weight: Some(wd),
                bm25_weight: Some(wb),
                ..Default::default()
            },
        )
    };
    let alone = FusionOverrides {
        opening_weight: Some(0.0),
        ..Default::default()
    };
    vec![
        variant("bm25", Mode::Bm25, FusionOverrides::default()),
        variant("dense", Mode::Dense, FusionOverrides::default()),
        variant("dense, chunk alone", Mode::Dense, alone.clone()),
        variant("hybrid (default)", Mode::Hybrid, FusionOverrides::default()),
        variant("hybrid, chunk alone", Mode::Hybrid, alone),
        hybrid("hybrid rrf k=5 2:1", FusionMethod::Rrf, 5.0, 2.0, 1.0),
        hybrid("hybrid rrf k=60 2:1", FusionMethod::Rrf, 60.0, 2.0, 1.0),
        hybrid("hybrid rrf k=60 1:1", FusionMethod::Rrf, 60.0, 1.0, 1.0),
        hybrid("hybrid dbsf 1:1", FusionMethod::Dbsf, 60.0, 1.0, 1.0),
        hybrid("hybrid convex 1:1", FusionMethod::Convex, 60.0, 1.0, 1.0),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub variant: String,
    pub queries: usize,
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    /// Per query (in dataset order): documents best-first with their best chunk's score.
    #[serde(skip)]
    pub run: Vec<(String, Vec<(String, f32)>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: String,
    pub documents: usize,
    pub chunks: u64,
    pub rows: Vec<Row>,
}

/// Unique documents in the order of their best chunk, each with that chunk's score.
pub fn documents_in_rank_order<S>(
    chunk_docs: impl IntoIterator<Item = (String, S)>,
) -> Vec<(String, S)> {
    let mut seen = HashSet::new();
    chunk_docs
        .into_iter()
        .filter(|(d, _)| seen.insert(d.clone()))
        .collect()
}

/// Queue every upload, then wait for all of them; any failed document fails the evaluation.
pub async fn ingest_all(
    engine: &Arc<Engine>,
    ctx: &TenantCtx,
    uploads: Vec<Upload>,
) -> Result<Vec<DocId>> {
    let mut jobs = Vec::with_capacity(uploads.len());
    for upload in uploads {
        jobs.push(engine.submit(ctx, upload).await?.job_id);
    }
    let mut docs = Vec::with_capacity(jobs.len());
    for job in jobs {
        let j = engine
            .wait_job(ctx, &job, Duration::from_secs(3600))
            .await?;
        if j.status != JobStatus::Succeeded {
            let (code, msg) = j.error.unwrap_or_default();
            return Err(InternalError::Other(format!(
                "corpus document {} failed: {code} {msg}",
                j.doc_id
            ))
            .into());
        }
        docs.push(j.doc_id);
    }
    Ok(docs)
}

/// Ingest the corpus into `ctx`'s tenant (which should be empty) and score every variant.
pub async fn run(
    engine: &Arc<Engine>,
    ctx: &TenantCtx,
    name: &str,
    data: &Dataset,
    variants: &[Variant],
) -> Result<Report> {
    let uploads = data
        .corpus
        .iter()
        .map(|d| {
            Ok(Upload {
                doc_id: Some(DocId::parse(&d.id)?),
                title: Some(d.title.clone()),
                declared_type: Some("text/plain".into()),
                bytes: d.text.clone().into_bytes(),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    ingest_all(engine, ctx, uploads).await?;
    let mut chunks = 0;
    let mut after = None;
    loop {
        let page = engine.documents(ctx, 1000, after.clone()).await?;
        chunks += page.iter().map(|d| d.chunk_count).sum::<u64>();
        match page.last() {
            Some(d) if page.len() == 1000 => after = Some(d.id.to_string()),
            _ => break,
        }
    }
    let mut rows = Vec::new();
    for v in variants {
        let (mut ndcg, mut r10, mut r100, mut mrr) = (0.0, 0.0, 0.0, 0.0);
        let mut run = Vec::with_capacity(data.queries.len());
        for q in &data.queries {
            let out = engine
                .query(
                    ctx,
                    Query {
                        text: q.text.clone(),
                        top_k: MAX_TOP_K,
                        mode: v.mode,
                        filter: ChunkFilter::default(),
                        fusion: v.fusion.clone(),
                    },
                )
                .await?;
            let scored = documents_in_rank_order(
                out.hits
                    .into_iter()
                    .map(|h| (h.chunk.doc_id.to_string(), h.score)),
            );
            let ranked: Vec<String> = scored.iter().map(|(d, _)| d.clone()).collect();
            let rels = &data.qrels[&q.id];
            ndcg += ndcg_at(10, &ranked, rels);
            r10 += recall_at(10, &ranked, rels);
            r100 += recall_at(100, &ranked, rels);
            mrr += mrr_at(10, &ranked, rels);
            run.push((q.id.clone(), scored));
        }
        let n = data.queries.len().max(1) as f64;
        rows.push(Row {
            variant: v.name.clone(),
            queries: data.queries.len(),
            ndcg_at_10: ndcg / n,
            recall_at_10: r10 / n,
            recall_at_100: r100 / n,
            mrr_at_10: mrr / n,
            run,
        });
    }
    Ok(Report {
        dataset: name.into(),
        documents: data.corpus.len(),
        chunks,
        rows,
    })
}

impl Report {
    pub fn table(&self) -> String {
        let mut s = format!(
            "dataset {} — {} documents, {} chunks, {} queries\n",
            self.dataset,
            self.documents,
            self.chunks,
            self.rows.first().map(|r| r.queries).unwrap_or(0)
        );
        s += &format!(
            "| {:<22} | {:>7} | {:>9} | {:>10} | {:>6} |\n",
            "mode", "nDCG@10", "recall@10", "recall@100", "MRR@10"
        );
        s += &format!(
            "|{:-<24}|{:->9}|{:->11}|{:->12}|{:->8}|\n",
            "", "", "", "", ""
        );
        for r in &self.rows {
            s += &format!(
                "| {:<22} | {:>7.4} | {:>9.4} | {:>10.4} | {:>6.4} |\n",
                r.variant, r.ndcg_at_10, r.recall_at_10, r.recall_at_100, r.mrr_at_10
            );
        }
        s
    }
}

/// The rankings in TREC run format (`qid Q0 docid rank score tag`), one file per variant, so
/// `trec_eval` or a notebook can analyse them.
pub fn trec_run(row: &Row) -> String {
    let tag: String = row
        .variant
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut s = String::new();
    for (qid, docs) in &row.run {
        for (i, (doc, score)) in docs.iter().enumerate() {
            s += &format!("{qid} Q0 {doc} {} {score} {tag}\n", i + 1);
        }
    }
    s
}

/// Queries per variant are independent of each other, so results are deterministic for a given
/// model and corpus; BTreeMap keeps JSON output stable.
pub fn as_json(report: &Report) -> serde_json::Value {
    let rows: BTreeMap<String, &Row> = report.rows.iter().map(|r| (r.variant.clone(), r)).collect();
    serde_json::json!({ "dataset": report.dataset, "documents": report.documents, "chunks": report.chunks, "variants": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // One relevant document at rank 3: nDCG = 1/log2(4) = 0.5, MRR = 1/3.
        let r = rels(&[("c", 1)]);
        let run = ranked(&["a", "b", "c", "d"]);
        assert!((ndcg_at(10, &run, &r) - 0.5).abs() < 1e-12);
        assert!((mrr_at(10, &run, &r) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(recall_at(2, &run, &r), 0.0);
        assert_eq!(recall_at(10, &run, &r), 1.0);
        // Graded: rels a=2, d=1; run [a, b, d]. DCG = 2 + 1/log2(4) = 2.5; IDCG = 2 + 1/log2(3).
        let r = rels(&[("a", 2), ("d", 1)]);
        let run = ranked(&["a", "b", "d"]);
        let expected = 2.5 / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(10, &run, &r) - expected).abs() < 1e-12);
        assert_eq!(recall_at(1, &run, &r), 0.5);
        assert_eq!(mrr_at(10, &run, &r), 1.0);
        // Nothing relevant retrieved.
        assert_eq!(ndcg_at(10, &ranked(&["x"]), &r), 0.0);
    }

    #[test]
    fn a_document_ranks_at_its_best_chunk() {
        let chunks = ranked(&["d2", "d1", "d2", "d3", "d1"]);
        let docs = documents_in_rank_order(chunks.into_iter().zip(1..));
        assert_eq!(
            docs,
            vec![("d2".into(), 1), ("d1".into(), 2), ("d3".into(), 4)]
        );
    }

    #[test]
    fn loads_the_beir_fixture() {
        let d = Dataset::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/beir-tiny"),
            "test",
        )
        .unwrap();
        assert_eq!((d.corpus.len(), d.queries.len()), (4, 3));
        assert_eq!(d.qrels["q2"]["d2"], 2);
    }
}

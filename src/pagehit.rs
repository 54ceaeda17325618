//! PDF page-hit evaluation (`tenantry eval-pages`): questions whose answer pages are known,
//! taken from the PDFs' own outlines (the bookmarks the authoring tool wrote, independent of
//! Tenantry's text extraction), asked in every mode, with the PDF clean-up off and on.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tenantry_ingest::OutlineEntry;

use crate::config::Config;
use crate::domain::{ChunkFilter, DocId, FusionOverrides, Mode, TenantCtx, TenantId};
use crate::engine::{Engine, Upload};
use crate::error::{InternalError, Result};
use crate::query::Query;

/// A question and the pages of the section that answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageQuestion {
    pub doc: String,
    pub question: String,
    pub first_page: u32,
    pub last_page: u32,
}

/// The outline entries that are questions (their title ends with `?`, section number dropped);
/// each is answered from its page to the page where the next entry starts.
pub fn page_questions(doc: &str, outline: &[OutlineEntry]) -> Vec<PageQuestion> {
    let mut out = Vec::new();
    for (i, e) in outline.iter().enumerate() {
        let title = e.title.trim();
        if !title.ends_with('?') {
            continue;
        }
        // "12.5 How do I report a bug in Debian?" -> "How do I report a bug in Debian?"
        let question = match title.split_once(' ') {
            Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit() || c == '.') => rest.trim(),
            _ => title,
        };
        let next = outline[i + 1..]
            .iter()
            .map(|n| n.page)
            .find(|&p| p >= e.page)
            .unwrap_or(e.page);
        out.push(PageQuestion {
            doc: doc.to_string(),
            question: question.to_string(),
            first_page: e.page,
            last_page: next.max(e.page),
        });
    }
    out
}

/// One mode with the clean-up off or on.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct PageRow {
    pub cleanup: bool,
    pub mode: String,
    pub questions: usize,
    pub chunks: u64,
    /// The first hit is on an answer page.
    pub hit_at_1: f64,
    /// An answer page is among the first three hits.
    pub hit_at_3: f64,
    /// Reciprocal rank of the first hit on an answer page, within 10.
    pub mrr_at_10: f64,
    /// Questions whose first hit is a front-matter page (before the first outline entry:
    /// title, contents).
    pub front_matter_first: usize,
    /// Front-matter pages among all questions' first three hits.
    pub front_matter_top3: usize,
}

/// Scores one ranked list of (document, page) hits for a question.
pub fn score(
    q: &PageQuestion,
    hits: &[(String, Option<u32>)],
    front_end: &dyn Fn(&str) -> u32,
) -> (bool, bool, f64, bool, usize) {
    let answers = |(d, p): &(String, Option<u32>)| {
        *d == q.doc && p.is_some_and(|p| (q.first_page..=q.last_page).contains(&p))
    };
    let front = |(d, p): &(String, Option<u32>)| p.is_some_and(|p| p < front_end(d));
    let rank = hits.iter().take(10).position(answers);
    (
        rank == Some(0),
        rank.is_some_and(|r| r < 3),
        rank.map_or(0.0, |r| 1.0 / (r as f64 + 1.0)),
        hits.first().is_some_and(front),
        hits.iter().take(3).filter(|h| front(h)).count(),
    )
}

pub struct PagesReport {
    pub documents: Vec<(String, usize)>,
    pub rows: Vec<PageRow>,
}

/// Ingests `pdfs` into a scratch data directory twice (PDF clean-up off, then on) and asks
/// every outline question in bm25, dense and hybrid mode.
pub async fn run(config: Config, pdfs: &[PathBuf]) -> Result<PagesReport> {
    let mut docs = Vec::new();
    let mut questions = Vec::new();
    let mut front: std::collections::HashMap<String, u32> = Default::default();
    for path in pdfs {
        let bytes = std::fs::read(path)
            .map_err(|e| InternalError::Other(format!("{}: {e}", path.display())))?;
        let id: String = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let outline = tenantry_ingest::pdf_outline(&bytes)
            .map_err(|e| InternalError::Other(format!("{}: {e}", path.display())))?;
        let qs = page_questions(&id, &outline);
        front.insert(
            id.clone(),
            outline.iter().map(|e| e.page).min().unwrap_or(0),
        );
        docs.push((id, bytes, qs.len()));
        questions.extend(qs);
    }
    let mut rows = Vec::new();
    for cleanup in [false, true] {
        let scratch = tempfile::tempdir().map_err(|e| InternalError::Other(e.to_string()))?;
        let mut cfg = config.clone();
        cfg.data_dir = scratch.path().to_path_buf();
        cfg.ingest.pdf_layout_cleanup = cleanup;
        cfg.ingest.tenant_queue_max = docs.len() + 1;
        cfg.ingest.queue_capacity = docs.len() + 1;
        let engine = crate::runtime::blocking(move || Engine::open(cfg)).await?;
        engine.start().await?;
        let tenant = TenantId::parse("eval-pages")?;
        engine.create_tenant(tenant.clone()).await?;
        let ctx = TenantCtx::operator(tenant);
        let chunks = ingest(&engine, &ctx, &docs).await?;
        for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
            let mut row = PageRow {
                cleanup,
                mode: format!("{mode:?}").to_lowercase(),
                questions: questions.len(),
                chunks,
                ..Default::default()
            };
            for q in &questions {
                let out = engine
                    .query(
                        &ctx,
                        Query {
                            text: q.question.clone(),
                            top_k: 10,
                            mode,
                            filter: ChunkFilter::default(),
                            fusion: FusionOverrides::default(),
                        },
                    )
                    .await?;
                let hits: Vec<(String, Option<u32>)> = out
                    .hits
                    .iter()
                    .map(|h| (h.chunk.doc_id.to_string(), h.chunk.page))
                    .collect();
                let front_end = |d: &str| front.get(d).copied().unwrap_or(0);
                let (h1, h3, rr, f1, f3) = score(q, &hits, &front_end);
                row.hit_at_1 += f64::from(u8::from(h1));
                row.hit_at_3 += f64::from(u8::from(h3));
                row.mrr_at_10 += rr;
                row.front_matter_first += usize::from(f1);
                row.front_matter_top3 += f3;
            }
            let n = questions.len().max(1) as f64;
            row.hit_at_1 /= n;
            row.hit_at_3 /= n;
            row.mrr_at_10 /= n;
            rows.push(row);
        }
        // The scratch directory goes next: nothing of this engine may still be writing.
        engine.begin_drain();
        if !engine.wait_idle(Duration::from_secs(600)).await {
            tracing::warn!("a job still ran 10 minutes after the evaluation ended");
        }
        drop(engine);
        drop(scratch);
    }
    Ok(PagesReport {
        documents: docs.into_iter().map(|(id, _, n)| (id, n)).collect(),
        rows,
    })
}

async fn ingest(
    engine: &Arc<Engine>,
    ctx: &TenantCtx,
    docs: &[(String, Vec<u8>, usize)],
) -> Result<u64> {
    let uploads = docs
        .iter()
        .map(|(id, bytes, _)| {
            Ok(Upload {
                doc_id: Some(DocId::parse(id)?),
                declared_type: Some("application/pdf".into()),
                file_name: Some(format!("{id}.pdf")),
                bytes: bytes.clone(),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut chunks = 0;
    for id in crate::eval::ingest_all(engine, ctx, uploads).await? {
        chunks += engine.document(ctx, &id).await?.chunk_count;
    }
    Ok(chunks)
}

impl PagesReport {
    pub fn table(&self) -> String {
        let docs: Vec<String> = self
            .documents
            .iter()
            .map(|(d, n)| format!("{d} ({n} questions)"))
            .collect();
        let mut s = format!(
            "PDF page hits: {}\n| clean-up | mode   | chunks | hit@1  | hit@3  | MRR@10 | contents page first | contents pages in top 3 |\n\
             |----------|--------|--------|--------|--------|--------|---------------------|-------------------------|\n",
            docs.join(", ")
        );
        for r in &self.rows {
            s += &format!(
                "| {:<8} | {:<6} | {:>6} | {:>6.3} | {:>6.3} | {:>6.3} | {:>19} | {:>23} |\n",
                if r.cleanup { "on" } else { "off" },
                r.mode,
                r.chunks,
                r.hit_at_1,
                r.hit_at_3,
                r.mrr_at_10,
                format!("{} of {}", r.front_matter_first, r.questions),
                format!("{} of {}", r.front_matter_top3, 3 * r.questions),
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: usize, title: &str, page: u32) -> OutlineEntry {
        OutlineEntry {
            level,
            title: title.into(),
            page,
        }
    }

    #[test]
    fn questions_come_from_the_outline_with_their_section_pages() {
        let outline = [
            entry(1, "12 Getting support", 60),
            entry(2, "12.5 How do I report a bug in Debian?", 64),
            entry(2, "12.6 What is Debian's bug tracker?", 66),
            entry(2, "What about this one?", 66),
        ];
        let qs = page_questions("faq", &outline);
        assert_eq!(qs.len(), 3);
        assert_eq!(qs[0].question, "How do I report a bug in Debian?");
        assert_eq!((qs[0].first_page, qs[0].last_page), (64, 66));
        assert_eq!((qs[1].first_page, qs[1].last_page), (66, 66));
        assert_eq!(qs[2].question, "What about this one?");
        assert_eq!((qs[2].first_page, qs[2].last_page), (66, 66));
    }

    #[test]
    fn hits_count_on_answer_pages_and_front_matter_is_counted() {
        let q = PageQuestion {
            doc: "faq".into(),
            question: "?".into(),
            first_page: 64,
            last_page: 65,
        };
        let front = |_: &str| 7;
        let hits = |v: &[(&str, u32)]| -> Vec<(String, Option<u32>)> {
            v.iter().map(|(d, p)| (d.to_string(), Some(*p))).collect()
        };
        assert_eq!(
            score(&q, &hits(&[("faq", 6), ("faq", 65)]), &front),
            (false, true, 0.5, true, 1)
        );
        assert_eq!(
            score(&q, &hits(&[("faq", 64)]), &front),
            (true, true, 1.0, false, 0)
        );
        // The right page of another document is no hit.
        assert_eq!(
            score(
                &q,
                &hits(&[("other", 64), ("faq", 3), ("faq", 4), ("faq", 64)]),
                &front
            ),
            (false, false, 0.25, false, 2)
        );
    }
}

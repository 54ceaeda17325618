//! `tenantry bench`: latency, throughput and scale of the HTTP API, next to the in-process
//! baselines that give the numbers meaning (raw query embedding and index search, raw embedder
//! throughput on the same text). Traffic goes to loopback only, and every loop is bounded in
//! requests and in time.
//!
//! Self-started mode (the default) loads the data in-process into a persistent bench directory,
//! then starts `tenantry serve` on it as a child process and drives it over HTTP. A corpus is
//! ingested once into a template tenant; the bench tenants get subsets of the same documents
//! through the normal pipeline, with embeddings looked up in the template's cache
//! ([`Engine::seed_embeddings_from`]), so a 1,000-tenant load does not embed 1,000 times and a
//! re-run embeds nothing.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tenantry_ingest::{ContentType, Lane};

use crate::config::{Config, StorageBackend};
use crate::domain::ChunkFilter;
use crate::domain::Mode;
use crate::domain::{DocId, TenantCtx, TenantId};
use crate::engine::{Engine, Upload};
use crate::error::{InternalError, Result, UserError};
use crate::storage::catalog::JobStatus;
use crate::storage::qdrant::QdrantStore;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Drive an already running server instead of starting one (`--url`).
    pub url: Option<String>,
    pub admin_key: Option<String>,
    pub corpus: PathBuf,
    pub queries: PathBuf,
    pub tenants: usize,
    pub chunks_per_tenant: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: usize,
    pub modes: Vec<Target>,
    pub cold_tenants: usize,
    /// Documents used for the ingestion-vs-raw-embedder measurement.
    pub ingest_docs: usize,
    /// The server binary for self-started mode (normally this executable).
    pub server_exe: PathBuf,
    /// Configuration flags passed on to the server (model, runtime, overrides).
    pub server_args: Vec<std::ffi::OsString>,
    /// Seconds per phase of the noisy-neighbour run (0: skip it).
    pub noisy_seconds: f64,
    /// On a Qdrant cluster: promote the first bench tenant to its own shard key while it is
    /// queried, and time it.
    pub promote: bool,
    /// Client counts for a hybrid run each after the mode runs (QPS and latency against
    /// concurrency); empty: none.
    pub sweep: Vec<usize>,
}

/// A tenant moved to its own shard key while it was queried.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PromotionResult {
    pub tenant: String,
    pub points: u64,
    /// False when the tenant had been promoted by an earlier run (nothing moved).
    pub moved: bool,
    pub seconds: f64,
    /// The tenant's hybrid queries during the promotion.
    pub queries: usize,
    pub errors: usize,
    pub latency: Latency,
}

/// A quiet tenant's latency alone and while another tenant floods the server with queries and
/// uploads, once under the flooder's rate limits and once with its limits lifted.
#[derive(Debug, Clone, Serialize, Default)]
pub struct NoisyResult {
    pub seconds_per_phase: f64,
    pub flooder_clients: usize,
    /// The flooder's limits in the limited phase.
    pub flooder_query_per_sec: f64,
    pub flooder_ingest_per_sec: f64,
    pub quiet_alone: Latency,
    pub quiet_alone_qps: f64,
    /// The flooder at its limits, waiting `Retry-After` when refused (a heavy, well-behaved
    /// client), with its uploads.
    pub quiet_flood_polite: Latency,
    pub quiet_flood_polite_qps: f64,
    pub p99_ratio_polite: f64,
    /// The flooder at its limits, retrying refused queries at once (hostile: the cost of
    /// refusing thousands of requests a second on the same two cores).
    pub quiet_flood_limited: Latency,
    pub quiet_flood_limited_qps: f64,
    pub quiet_flood_unlimited: Latency,
    pub quiet_flood_unlimited_qps: f64,
    /// Flooder's queries answered / refused with 429 in the hostile limited phase.
    pub flooder_ok: usize,
    pub flooder_limited: usize,
    pub flooder_uploads_accepted: usize,
    pub flooder_uploads_refused: usize,
    /// Flooder's answered queries per second with its limits lifted.
    pub flooder_unlimited_qps: f64,
    /// One upload of the quiet tenant (`wait=true`, new text), alone and during the limited
    /// flood: the ingestion queue serves tenants in turn, so it waits for at most one flooder job.
    pub quiet_upload_alone_ms: f64,
    pub quiet_upload_flooded_ms: f64,
    /// Quiet p99 while flooded (limited) / alone.
    pub p99_ratio_limited: f64,
    pub p99_ratio_unlimited: f64,
}

/// Hybrid queries of the bench tenants idle and while another tenant's large ingestion runs,
/// at 1 and 8 clients.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestLoadResult {
    pub seconds_per_phase: f64,
    pub documents: usize,
    pub chunks: u64,
    pub rows: Vec<IngestLoadRow>,
    /// Whether the ingestion still ran when the last loaded phase ended (else the loaded
    /// figures are partly idle ones).
    pub outlasted_queries: bool,
    /// The ingestion's chunks/s from the first upload to the last job's end (queries ran during
    /// part of it).
    pub ingest_chunks_per_s: f64,
    pub ingest_seconds: f64,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestLoadRow {
    pub clients: usize,
    pub idle: Latency,
    pub idle_qps: f64,
    pub ingesting: Latency,
    pub ingesting_qps: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: *samples.last().unwrap(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub mode: String,
    /// Closed-loop clients.
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub qps: f64,
    pub latency: Latency,
    /// `p50 / baseline_ms`; the baseline is the in-process critical path of the same mode.
    pub baseline_ms: Option<f64>,
    pub overhead_ratio: Option<f64>,
    pub server_rss_mib: Option<f64>,
    /// CPU time taken by the hypervisor during the run, in percent: a noisy-machine warning.
    pub cpu_steal_pct: Option<f64>,
    /// Every answered request's latency, for the report's distribution (not in the JSON).
    #[serde(skip)]
    pub samples_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Baselines {
    /// Raw query embedding (one query, in-process), p50.
    pub embed_query_ms: f64,
    /// Raw index searches for one warm tenant, in-process, p50.
    pub dense_search_ms: Option<f64>,
    pub bm25_search_ms: Option<f64>,
    /// On a Qdrant cluster: one warm tenant's dense search as this client sees it, and as the
    /// server reports spending on it (p50); the rest is network, gRPC and (de)serialisation.
    pub cluster_dense_client_ms: Option<f64>,
    pub cluster_dense_server_ms: Option<f64>,
    /// The bare model on the ingestion documents' chunk texts, in its fastest layout of those
    /// tried (sessions x threads, batch size; texts sorted by length): the best this machine
    /// does with this model.
    pub raw_embed_passages_per_s: f64,
    /// That layout, e.g. `2 sessions x 1 thread, batch 1`.
    pub raw_embed_layout: String,
    /// Every layout tried: (layout, passages/s).
    pub raw_embed_tried: Vec<(String, f64)>,
    /// The best layout again, right after the ingestion measurement.
    pub raw_embed_again_passages_per_s: f64,
    /// Parsing and chunking the ingestion documents one after the other in the sandbox
    /// (what ingestion does besides embedding and indexing).
    pub parse_chunk_s: f64,
    /// The same documents through the ingestion pipeline (parse, chunk, embed, index, commit).
    pub ingest_chunks_per_s: f64,
    pub ingest_ratio: f64,
    pub ingest_chunks: usize,
    pub first_ingest_s: f64,
    pub reingest_s: f64,
    /// First ingest time / re-ingest (unchanged documents) time.
    pub reingest_speedup: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub tenants: usize,
    pub chunks_per_tenant: f64,
    pub total_chunks: u64,
    pub concurrency: usize,
    pub load_seconds: f64,
    /// Passages the model embedded while loading (0 on a re-run: everything is cached).
    pub embedded_during_load: Option<u64>,
    pub baselines: Baselines,
    pub cold_first_query: Latency,
    pub warm_query: Latency,
    pub runs: Vec<LoadResult>,
    /// Hybrid at each of `--sweep`'s client counts.
    pub sweep: Vec<LoadResult>,
    pub noisy: Option<NoisyResult>,
    pub ingest_load: Option<IngestLoadResult>,
    pub promotion: Option<PromotionResult>,
    pub server_peak_rss_mib: Option<f64>,
}

/// What a load run sends: `/v1/query` in one mode, or `/v1/answer` (the tenant's default
/// generator, extractive unless configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Query(Mode),
    Answer,
}

impl Target {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hybrid" => Self::Query(Mode::Hybrid),
            "dense" => Self::Query(Mode::Dense),
            "bm25" => Self::Query(Mode::Bm25),
            "answer" => Self::Answer,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Query(Mode::Hybrid) => "hybrid",
            Self::Query(Mode::Dense) => "dense",
            Self::Query(Mode::Bm25) => "bm25",
            Self::Answer => "answer",
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn bench_err(msg: impl Into<String>) -> crate::error::EngineError {
    InternalError::Other(msg.into()).into()
}

/// A document of the bench corpus: files under `dir` that Tenantry can ingest, sorted by path;
/// names starting with `.` or `_` are skipped.
#[derive(Debug, Clone)]
pub struct CorpusDoc {
    pub id: DocId,
    pub bytes: Vec<u8>,
    pub content_type: ContentType,
}

fn from_extension(ext: &str) -> Option<ContentType> {
    match ext.to_ascii_lowercase().as_str() {
        "pdf" => Some(ContentType::Pdf),
        "md" | "markdown" => Some(ContentType::Markdown),
        "html" | "htm" => Some(ContentType::Html),
        "txt" => Some(ContentType::Text),
        _ => None,
    }
}

pub fn load_corpus(dir: &Path) -> Result<Vec<CorpusDoc>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| UserError::Invalid(format!("corpus {}: {e}", d.display())))?;
        for e in entries.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
            if hidden {
                // `_sources`, `_static`, `.git`: build inputs and tooling, not documents.
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Some(ct) = p
                .extension()
                .and_then(|x| x.to_str())
                .and_then(from_extension)
            {
                files.push((p, ct));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(files.len());
    for (p, ct) in files {
        let bytes = std::fs::read(&p).map_err(|e| bench_err(format!("{}: {e}", p.display())))?;
        if bytes.is_empty() {
            continue;
        }
        let rel = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        out.push(CorpusDoc {
            id: DocId::parse(&rel)?,
            bytes,
            content_type: ct,
        });
    }
    if out.is_empty() {
        return Err(UserError::Invalid(format!(
            "corpus {} has no .md, .html, .txt or .pdf files",
            dir.display()
        ))
        .into());
    }
    Ok(out)
}

/// Queries from a BEIR `queries.jsonl` (`text` field) or a plain file with one query per line.
pub fn load_queries(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UserError::Invalid(format!("queries {}: {e}", path.display())))?;
    let out: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(String::from))
                .unwrap_or_else(|| l.to_string())
        })
        .collect();
    if out.is_empty() {
        return Err(UserError::Invalid(format!("no queries in {}", path.display())).into());
    }
    Ok(out)
}

/// Where tenant `i`'s documents start in the corpus: spread so tenants hold different subsets.
fn first_document(i: usize, n: usize) -> usize {
    (i * 7919) % n.max(1)
}

/// Which template documents tenant `i` holds: consecutive documents (wrapping) from an offset
/// that depends on `i`, until `target` chunks are reached. Deterministic.
pub fn tenant_documents(i: usize, chunk_counts: &[u64], target: u64) -> Vec<usize> {
    let n = chunk_counts.len();
    let start = first_document(i, n);
    let mut out = Vec::new();
    let mut total = 0;
    for k in 0..n {
        if total >= target {
            break;
        }
        let d = (start + k) % n;
        out.push(d);
        total += chunk_counts[d];
    }
    out
}

fn tenant_name(i: usize) -> TenantId {
    TenantId::parse(&format!("bench-{i:05}")).expect("valid tenant id")
}

const TEMPLATE: &str = "bench-template";
const INGEST_PROBE: &str = "bench-ingest";

async fn ingest_all(
    engine: &Arc<Engine>,
    ctx: &TenantCtx,
    docs: &[&CorpusDoc],
) -> Result<Vec<u64>> {
    let mut jobs = Vec::new();
    for d in docs {
        let upload = Upload {
            doc_id: Some(d.id.clone()),
            title: None,
            declared_type: Some(d.content_type.mime().to_string()),
            file_name: Some(d.id.as_str().to_string()),
            bytes: d.bytes.clone(),
            ..Default::default()
        };
        jobs.push(engine.submit(ctx, upload).await?.job_id);
    }
    for job in &jobs {
        let j = engine
            .wait_job(ctx, job, Duration::from_secs(24 * 3600))
            .await?;
        if j.status != JobStatus::Succeeded {
            // A corpus may hold files with no text; they are left out, not fatal.
            let (code, _) = j.error.unwrap_or_default();
            tracing::warn!(document = %j.doc_id, %code, "bench: document skipped");
        }
    }
    let mut counts = Vec::with_capacity(docs.len());
    for d in docs {
        let chunks = match engine.document(ctx, &d.id).await {
            Ok(doc) if doc.live_version.is_some() => doc.chunk_count,
            _ => 0,
        };
        counts.push(chunks);
    }
    Ok(counts)
}

/// The bare model in every layout worth trying on this machine: one session per core with one
/// thread each, and one session on every core, at batch sizes 1, 4 and 16 (length-sorted).
fn raw_embedder_layouts(
    config: &tenantry_ingest::EmbedderConfig,
    texts: &[String],
) -> Result<Vec<(tenantry_ingest::embed::RawLayout, String, f64)>> {
    use tenantry_ingest::embed::{raw_throughput, RawLayout};
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shapes = vec![(cores, 1)];
    if cores > 1 {
        shapes.push((1, cores));
    }
    let mut out = Vec::new();
    for (sessions, threads) in shapes {
        for batch in [1, 4, 16] {
            let layout = RawLayout {
                sessions,
                threads,
                batch,
            };
            let rate = raw_throughput(config, &refs, layout).map_err(InternalError::Embedding)?;
            out.push((
                layout,
                format!("{sessions} sessions x {threads} threads, batch {batch}"),
                rate,
            ));
        }
    }
    Ok(out)
}

async fn tenant_exists(engine: &Arc<Engine>, tenant: &TenantId) -> Result<bool> {
    let (e, t) = (engine.clone(), tenant.clone());
    crate::runtime::blocking(move || e.catalog.tenant_exists(&t)).await
}

/// What the in-process phase hands to the HTTP phase.
struct Prepared {
    keys: Vec<String>,
    admin_key: String,
    embedded_during_load: Option<u64>,
    total_chunks: u64,
    load_seconds: f64,
    baselines: Baselines,
}

/// Loads tenants and measures the in-process baselines (self-started mode).
async fn prepare_in_process(
    config: Config,
    opts: &BenchOptions,
    corpus: &[CorpusDoc],
    queries: &[String],
) -> Result<Prepared> {
    // Opening may connect to PostgreSQL, whose client must not run on the async runtime.
    let engine = crate::runtime::blocking(move || Engine::open(config)).await?;
    engine.start().await?;
    let mut b = Baselines::default();

    // Ingestion against the raw embedder on the same chunk texts.
    let (mut probe_docs, mut texts) = (Vec::new(), Vec::new());
    let parsing = Instant::now();
    for d in corpus {
        if probe_docs.len() >= opts.ingest_docs.max(1) {
            break;
        }
        if let Ok((_, t)) = engine.contextual_chunks(&d.bytes, d.content_type, d.id.as_str()) {
            texts.extend(t);
            probe_docs.push(d);
        }
    }
    b.parse_chunk_s = parsing.elapsed().as_secs_f64();
    let ecfg = crate::engine::embedder_config(engine.config());
    let texts = Arc::new(texts);
    let (cfg2, texts2) = (ecfg.clone(), texts.clone());
    let tried = tokio::task::spawn_blocking(move || raw_embedder_layouts(&cfg2, &texts2))
        .await
        .map_err(|e| bench_err(e.to_string()))??;
    let (best_layout, best_label, best_rate) = tried
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .cloned()
        .ok_or_else(|| bench_err("no layout of the bare model ran"))?;
    b.raw_embed_layout = best_label;
    b.raw_embed_passages_per_s = best_rate;
    b.raw_embed_tried = tried.into_iter().map(|(_, l, r)| (l, r)).collect();
    let probe = TenantId::parse(INGEST_PROBE)?;
    if tenant_exists(&engine, &probe).await? {
        engine.delete_tenant(probe.clone()).await?;
    }
    engine.create_tenant(probe.clone()).await?;
    let probe_ctx = TenantCtx::operator(probe.clone());
    let t = Instant::now();
    let counts = ingest_all(&engine, &probe_ctx, &probe_docs).await?;
    b.first_ingest_s = t.elapsed().as_secs_f64();
    b.ingest_chunks = counts.iter().sum::<u64>() as usize;
    b.ingest_chunks_per_s = b.ingest_chunks as f64 / b.first_ingest_s;
    // The machine's speed drifts within a run: the best layout runs again right after the
    // ingestion, and the faster of its two runs is the baseline.
    let again = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        tenantry_ingest::embed::raw_throughput(&ecfg, &refs, best_layout)
    })
    .await
    .map_err(|e| bench_err(e.to_string()))?
    .map_err(InternalError::Embedding)?;
    b.raw_embed_again_passages_per_s = again;
    b.raw_embed_passages_per_s = b.raw_embed_passages_per_s.max(again);
    b.ingest_ratio = b.ingest_chunks_per_s / b.raw_embed_passages_per_s;
    let t = Instant::now();
    ingest_all(&engine, &probe_ctx, &probe_docs).await?;
    b.reingest_s = t.elapsed().as_secs_f64();
    b.reingest_speedup = b.first_ingest_s / b.reingest_s.max(1e-9);
    engine.delete_tenant(probe).await?;

    // The template tenant embeds the corpus once; later runs find it unchanged.
    let load = Instant::now();
    let embedded_before = engine.embedded_texts();
    let template = TenantId::parse(TEMPLATE)?;
    if !tenant_exists(&engine, &template).await? {
        engine.create_tenant(template.clone()).await?;
    }
    let template_ctx = TenantCtx::operator(template.clone());
    tracing::info!(
        documents = corpus.len(),
        "bench: loading the template tenant"
    );
    let all: Vec<&CorpusDoc> = corpus.iter().collect();
    let counts = ingest_all(&engine, &template_ctx, &all).await?;
    let eligible: Vec<usize> = (0..counts.len()).filter(|&d| counts[d] > 0).collect();
    let eligible_counts: Vec<u64> = eligible.iter().map(|&d| counts[d]).collect();
    if eligible.is_empty() {
        return Err(bench_err("no corpus document could be ingested"));
    }

    engine.seed_embeddings_from(Some(template));
    let mut keys = Vec::with_capacity(opts.tenants);
    let mut total_chunks = 0;
    for i in 0..opts.tenants {
        let tenant = tenant_name(i);
        let key = if tenant_exists(&engine, &tenant).await? {
            engine
                .create_key(tenant.clone(), crate::domain::Role::Writer, "bench".into())
                .await?
        } else {
            engine.create_tenant(tenant.clone()).await?
        };
        keys.push(key.token);
        let picks = tenant_documents(i, &eligible_counts, opts.chunks_per_tenant);
        let docs: Vec<&CorpusDoc> = picks.iter().map(|&d| &corpus[eligible[d]]).collect();
        total_chunks += ingest_all(&engine, &TenantCtx::operator(tenant), &docs)
            .await?
            .iter()
            .sum::<u64>();
        if (i + 1) % 100 == 0 {
            tracing::info!(tenants = i + 1, "bench: tenants loaded");
        }
    }
    engine.seed_embeddings_from(None);
    // Measure a settled index, as a server sees it once its background optimiser has caught up.
    let e2 = engine.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        while e2.vectors.maintain()? && Instant::now() < deadline {}
        Ok(())
    })
    .await
    .map_err(|e| bench_err(e.to_string()))??;
    let load_seconds = load.elapsed().as_secs_f64();
    let embedded_during_load = Some(engine.embedded_texts() - embedded_before);

    // Raw baselines: the query embedding, and each leg's search on a warm tenant.
    let ctx = TenantCtx::operator(tenant_name(0));
    let (e2, qs) = (engine.clone(), queries.to_vec());
    let (embed_ms, dense, bm25) = tokio::task::spawn_blocking(move || -> Result<_> {
        let (embed_ms, vectors) = query_embedding_p50(&*e2.embedder, &qs)?;
        let (mut dense, mut bm25) = (vec![], vec![]);
        let filter = ChunkFilter::default();
        let candidates = e2.config.query.candidates_per_leg;
        for round in 0..2 {
            for (q, v) in qs.iter().zip(&vectors) {
                let t = Instant::now();
                e2.vectors.search(&ctx, v, &filter, candidates)?;
                let dense_ms = ms(t);
                let t = Instant::now();
                e2.lexical.search(&ctx, q, &filter, candidates)?;
                if round == 1 {
                    dense.push(dense_ms);
                    bm25.push(ms(t));
                }
            }
        }
        Ok((embed_ms, dense, bm25))
    })
    .await
    .map_err(|e| bench_err(e.to_string()))??;
    b.embed_query_ms = embed_ms;
    b.dense_search_ms = Some(Latency::of(dense).p50_ms);
    b.bm25_search_ms = Some(Latency::of(bm25).p50_ms);
    if engine.config.storage.backend == StorageBackend::Qdrant {
        let (qcfg, e2, qs) = (
            engine.config.qdrant.clone(),
            engine.clone(),
            queries.to_vec(),
        );
        let candidates = engine.config.query.candidates_per_leg;
        let (client, server) = tokio::task::spawn_blocking(move || -> Result<_> {
            let store = QdrantStore::connect_existing(&qcfg)?;
            let ctx = TenantCtx::operator(tenant_name(0));
            let (_, vectors) = query_embedding_p50(&*e2.embedder, &qs)?;
            let (mut client, mut server) = (vec![], vec![]);
            for v in &vectors {
                let (c, s) = store.timed_dense_search(&ctx, v, candidates)?;
                client.push(c);
                server.push(s);
            }
            Ok((client, server))
        })
        .await
        .map_err(|e| bench_err(e.to_string()))??;
        b.cluster_dense_client_ms = Some(Latency::of(client).p50_ms);
        b.cluster_dense_server_ms = Some(Latency::of(server).p50_ms);
    }
    engine.begin_drain();
    engine.flush();
    // The server child needs the directory's locks: wait for background tasks (a long index
    // optimisation holds the engine) to let go of the last other handle.
    let deadline = Instant::now() + Duration::from_secs(1800);
    while Arc::strong_count(&engine) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let engine_admin_key = engine.admin_key().to_string();
    drop(engine);
    Ok(Prepared {
        keys,
        admin_key: engine_admin_key,
        embedded_during_load,
        total_chunks,
        load_seconds,
        baselines: b,
    })
}

/// p50 of embedding each of the first 100 queries alone, and their vectors. Two rounds: the
/// first warms caches and the model session and is not counted.
fn query_embedding_p50(
    e: &dyn tenantry_ingest::Embedder,
    queries: &[String],
) -> Result<(f64, Vec<Vec<f32>>)> {
    let (mut lat, mut vectors) = (Vec::new(), Vec::new());
    for round in 0..2 {
        vectors.clear();
        for q in queries.iter().take(100) {
            let t = Instant::now();
            let v = e
                .embed(Lane::Query, &[q.as_str()])
                .map_err(|e| InternalError::Embedding(e.to_string()))?;
            if round == 1 {
                lat.push(ms(t));
            }
            vectors.extend(v);
        }
    }
    Ok((Latency::of(lat).p50_ms, vectors))
}

/// Query embedding with a model loaded in this process (for `--url`, where the server's
/// indexes are out of reach).
async fn raw_query_embedding(config: &Config, queries: &[String]) -> Result<f64> {
    let (cfg, qs) = (crate::engine::embedder_config(config), queries.to_vec());
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let e = tenantry_ingest::FastEmbedder::new(&cfg).map_err(InternalError::Embedding)?;
        Ok(query_embedding_p50(&e, &qs)?.0)
    })
    .await
    .map_err(|e| bench_err(e.to_string()))?
}

/// The in-process critical path of a mode: hybrid runs its legs in parallel. Answers have none
/// (their cost is the generator's).
fn baseline_of(target: Target, b: &Baselines) -> Option<f64> {
    let dense = b.dense_search_ms.map(|d| b.embed_query_ms + d);
    match target {
        Target::Query(Mode::Dense) => dense,
        Target::Query(Mode::Bm25) => b.bm25_search_ms,
        Target::Query(Mode::Hybrid) => Some(dense?.max(b.bm25_search_ms?)),
        Target::Answer => None,
    }
}

/// (steal, total) jiffies of all CPUs: on a shared VM, time the hypervisor gave to others.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((*v.get(7)?, v.iter().take(8).sum()))
}

fn steal_pct(before: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, cpu_jiffies()?);
    (t1 > t0).then(|| 100.0 * (s1 - s0) as f64 / (t1 - t0) as f64)
}

fn rss_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A `tenantry serve` child process on a free loopback port, stopped with SIGTERM on drop.
struct Server {
    child: std::process::Child,
    url: String,
}

impl Server {
    async fn start(exe: &Path, args: &[std::ffi::OsString], data_dir: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| bench_err(format!("no free port: {e}")))?
            .port();
        let child = std::process::Command::new(exe)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            // Load tests are not rate limited unless the flags say so (they come after).
            .args([
                "--set",
                "limits.query_per_sec=0",
                "--set",
                "limits.ingest_per_sec=0",
            ])
            .args(args)
            .env("TENANTRY_LOG", "warn,tantivy=error,qdrant_edge=error")
            .spawn()
            .map_err(|e| bench_err(format!("cannot start {}: {e}", exe.display())))?;
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut server = server;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(bench_err(format!("the bench server exited: {status}")));
            }
            if let Ok(r) = client.get(format!("{}/readyz", server.url)).send().await {
                if r.status().is_success() {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err(bench_err("the bench server did not become ready in 120 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn query_once(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    query: &str,
    target: Target,
) -> std::result::Result<f64, String> {
    let t = Instant::now();
    let (path, body) = match target {
        Target::Query(_) => (
            "query",
            serde_json::json!({ "query": query, "top_k": 10, "mode": target.name() }),
        ),
        Target::Answer => ("answer", serde_json::json!({ "question": query })),
    };
    let r = client
        .post(format!("{url}/v1/{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    r.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(ms(t))
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// Closed loop: `concurrency` clients, each sending its next request when the last one returns,
/// until `duration` or `max_requests` is reached.
/// One hybrid query per tenant, from `concurrency` clients; bounded by the number of tenants.
async fn warm_every_tenant(url: &str, keys: &[String], queries: &[String], concurrency: usize) {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, url, keys, queries, next) = (
                client.clone(),
                url.to_string(),
                keys.to_vec(),
                queries.to_vec(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(key) = keys.get(i) else { break };
                    let q = &queries[i % queries.len()];
                    let _ = query_once(&client, &url, key, q, Target::Query(Mode::Hybrid)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn closed_loop(
    urls: &[String],
    keys: &[String],
    queries: &[String],
    mode: Target,
    opts: &BenchOptions,
) -> (Vec<f64>, usize, f64) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..opts.concurrency.max(1) {
        // Client c talks to node c mod N, as a balancer spreading connections would.
        let (client, url, keys, queries, issued) = (
            client.clone(),
            urls[c % urls.len()].clone(),
            keys.to_vec(),
            queries.to_vec(),
            issued.clone(),
        );
        let (deadline, max) = (start + opts.duration, opts.max_requests);
        tasks.push(tokio::spawn(async move {
            let mut rng =
                0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline
                && issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < max
            {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let key = &keys[(rng % keys.len() as u64) as usize];
                let q = &queries[((rng >> 32) % queries.len() as u64) as usize];
                match query_once(&client, &url, key, q, mode).await {
                    Ok(ms) => lat.push(ms),
                    Err(e) => {
                        if errors == 0 {
                            tracing::warn!(error = %e, "bench: request failed");
                        }
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    (all, errors, start.elapsed().as_secs_f64())
}

/// Creates tenants and uploads their documents through the HTTP API of a running server.
async fn prepare_remote(
    url: &str,
    admin_key: &str,
    opts: &BenchOptions,
    corpus: &[CorpusDoc],
) -> Result<Prepared> {
    let client = reqwest::Client::new();
    let fail = |e: reqwest::Error| bench_err(format!("{url}: {e}"));
    let load = Instant::now();
    let mut keys = Vec::new();
    let mut total_chunks = 0;
    for i in 0..opts.tenants {
        let tenant = tenant_name(i);
        let r = client
            .post(format!("{url}/v1/tenants"))
            .bearer_auth(admin_key)
            .json(&serde_json::json!({ "id": tenant.as_str() }))
            .send()
            .await
            .map_err(fail)?;
        let r = if r.status() == reqwest::StatusCode::CONFLICT {
            client
                .post(format!("{url}/v1/tenants/{}/keys", tenant.as_str()))
                .bearer_auth(admin_key)
                .send()
                .await
                .map_err(fail)?
        } else {
            r
        };
        if !r.status().is_success() {
            return Err(bench_err(format!("creating {tenant}: HTTP {}", r.status())));
        }
        let v: serde_json::Value = r.json().await.map_err(fail)?;
        let key = v["api_key"].as_str().unwrap_or_default().to_string();
        // Without in-process access the server embeds every tenant's documents itself.
        let mut docs_left = opts.chunks_per_tenant;
        let start = first_document(i, corpus.len());
        for k in 0..corpus.len() {
            if docs_left == 0 {
                break;
            }
            let d = &corpus[(start + k) % corpus.len()];
            let form = upload_form(d, d.id.as_str().to_string(), d.bytes.clone());
            let r = client
                .post(format!("{url}/v1/documents?wait=true"))
                .bearer_auth(&key)
                .multipart(form)
                .send()
                .await
                .map_err(fail)?;
            if r.status().is_client_error() {
                // A corpus may hold files with no text; they are left out, not fatal.
                tracing::warn!(document = %d.id, status = %r.status(), "bench: document skipped");
                continue;
            }
            if !r.status().is_success() {
                return Err(bench_err(format!(
                    "uploading {}: HTTP {}",
                    d.id,
                    r.status()
                )));
            }
            let r = client
                .get(format!("{url}/v1/documents/{}", urlencode(d.id.as_str())))
                .bearer_auth(&key)
                .send()
                .await
                .map_err(fail)?;
            let v: serde_json::Value = r.json().await.map_err(fail)?;
            let chunks = v["chunk_count"].as_u64().unwrap_or(0);
            total_chunks += chunks;
            docs_left = docs_left.saturating_sub(chunks.max(1));
        }
        keys.push(key);
    }
    Ok(Prepared {
        keys,
        admin_key: admin_key.to_string(),
        embedded_during_load: None,
        total_chunks,
        load_seconds: load.elapsed().as_secs_f64(),
        baselines: Baselines::default(),
    })
}

/// The multipart upload of a corpus document's `bytes` as document `id`.
fn upload_form(doc: &CorpusDoc, id: String, bytes: Vec<u8>) -> reqwest::multipart::Form {
    let file = reqwest::multipart::Part::bytes(bytes)
        .file_name(doc.id.as_str().to_string())
        .mime_str(doc.content_type.mime())
        .expect("a corpus type's MIME string parses");
    reqwest::multipart::Form::new()
        .text("id", id)
        .part("file", file)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(config: Config, opts: BenchOptions) -> Result<BenchReport> {
    let corpus = load_corpus(&opts.corpus)?;
    let queries = load_queries(&opts.queries)?;
    if opts.tenants == 0 || opts.tenants > 10_000 {
        return Err(UserError::Invalid("--tenants must be between 1 and 10000".into()).into());
    }
    let data_dir = config.data_dir.clone();
    let cluster = (config.storage.backend == StorageBackend::Qdrant).then(|| config.qdrant.clone());
    let (prepared, server) = match (&opts.url, &opts.admin_key) {
        (Some(url), Some(admin)) => {
            let host = url
                .trim_start_matches("http://")
                .split(['/', ':'])
                .next()
                .unwrap_or_default();
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Err(UserError::Invalid(
                    "--url must be a loopback address: the bench sends load".into(),
                )
                .into());
            }
            let mut p = prepare_remote(url, admin, &opts, &corpus).await?;
            p.baselines.embed_query_ms = raw_query_embedding(&config, &queries).await?;
            (p, None)
        }
        (Some(_), None) => {
            return Err(UserError::Invalid("--url needs --admin-key".into()).into());
        }
        _ => {
            let mut config = config;
            // The whole corpus is queued at once; the per-tenant fairness cap is for shared servers.
            config.ingest.tenant_queue_max = corpus.len() + 1;
            config.ingest.queue_capacity = corpus.len() + 1;
            let p = prepare_in_process(config, &opts, &corpus, &queries).await?;
            let server = Server::start(&opts.server_exe, &opts.server_args, &data_dir).await?;
            (p, Some(server))
        }
    };
    let url = match (&server, &opts.url) {
        (Some(s), _) => s.url.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => unreachable!("one of the two modes"),
    };
    let pid = server.as_ref().map(|s| s.child.id());

    // Cold: the first query a tenant gets after the server started; warm: the same again.
    let client = reqwest::Client::new();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let n_cold = opts.cold_tenants.min(prepared.keys.len());
    for (i, key) in prepared.keys.iter().rev().take(n_cold).enumerate() {
        let q = &queries[i % queries.len()];
        cold.push(
            query_once(&client, &url, key, q, Target::Query(Mode::Hybrid))
                .await
                .map_err(bench_err)?,
        );
        warm.push(
            query_once(&client, &url, key, q, Target::Query(Mode::Hybrid))
                .await
                .map_err(bench_err)?,
        );
    }

    // Every tenant answers once before the loops, so they measure warm tenants (as a server
    // that has been up for a while serves them); cold starts are the measurement above.
    warm_every_tenant(&url, &prepared.keys, &queries, opts.concurrency).await;

    let urls = std::slice::from_ref(&url);
    let keys = &prepared.keys;
    // A server driven with --url has no in-process baseline (its indexes are out of reach).
    let baseline = |mode| baseline_of(mode, &prepared.baselines).filter(|_| server.is_some());
    let mut runs = Vec::new();
    for &mode in &opts.modes {
        runs.push(measured_run(urls, keys, &queries, mode, &opts, baseline(mode), pid).await);
    }
    let mut sweep = Vec::new();
    let hybrid = Target::Query(Mode::Hybrid);
    for &clients in &opts.sweep {
        let o = BenchOptions {
            concurrency: clients.max(1),
            ..opts.clone()
        };
        sweep.push(measured_run(urls, keys, &queries, hybrid, &o, baseline(hybrid), pid).await);
    }
    let noisy = if opts.noisy_seconds > 0.0 && !prepared.keys.is_empty() {
        Some(noisy_neighbour(&url, &prepared, &queries, &corpus, &opts).await?)
    } else {
        None
    };
    let ingest_load = if opts.noisy_seconds > 0.0 && !prepared.keys.is_empty() {
        Some(queries_while_ingesting(&url, &prepared, &queries, &corpus, &opts).await?)
    } else {
        None
    };
    let promotion = match (&cluster, prepared.keys.first()) {
        (Some(q), Some(key)) if opts.promote => {
            Some(promote_while_querying(q, &url, key, &queries).await?)
        }
        _ => None,
    };
    let server_peak_rss_mib = pid.and_then(|p| rss_mib(p, "VmHWM:"));
    drop(server);
    Ok(BenchReport {
        tenants: opts.tenants,
        chunks_per_tenant: prepared.total_chunks as f64 / opts.tenants as f64,
        total_chunks: prepared.total_chunks,
        concurrency: opts.concurrency,
        load_seconds: prepared.load_seconds,
        embedded_during_load: prepared.embedded_during_load,
        baselines: prepared.baselines,
        cold_first_query: Latency::of(cold),
        warm_query: Latency::of(warm),
        runs,
        sweep,
        noisy,
        ingest_load,
        promotion,
        server_peak_rss_mib,
    })
}

/// One closed-loop run of `mode` from `opts.concurrency` clients, after a short warm-up so it
/// does not pay for everyone's page faults: QPS, latency, CPU steal, `p50 / baseline_ms` when
/// there is a baseline, and the server's RSS when its pid is known.
async fn measured_run(
    urls: &[String],
    keys: &[String],
    queries: &[String],
    mode: Target,
    opts: &BenchOptions,
    baseline_ms: Option<f64>,
    pid: Option<u32>,
) -> LoadResult {
    let warmup = BenchOptions {
        duration: Duration::from_millis(300).min(opts.duration),
        max_requests: 20,
        ..opts.clone()
    };
    closed_loop(urls, keys, queries, mode, &warmup).await;
    let jiffies = cpu_jiffies();
    let (lat, errors, secs) = closed_loop(urls, keys, queries, mode, opts).await;
    let cpu_steal_pct = steal_pct(jiffies);
    let latency = Latency::of(lat.clone());
    LoadResult {
        mode: mode.name().into(),
        concurrency: opts.concurrency,
        requests: lat.len() + errors,
        errors,
        seconds: secs,
        qps: lat.len() as f64 / secs.max(1e-9),
        overhead_ratio: baseline_ms.map(|b| latency.p50_ms / b.max(1e-9)),
        baseline_ms,
        latency,
        server_rss_mib: pid.and_then(|p| rss_mib(p, "VmRSS:")),
        cpu_steal_pct,
        samples_ms: lat,
    }
}

/// Promote the first bench tenant on the cluster while one client queries it (hybrid, closed
/// loop): what a promotion costs in time, and what its tenant sees meanwhile.
async fn promote_while_querying(
    qcfg: &crate::config::QdrantConfig,
    url: &str,
    key: &str,
    queries: &[String],
) -> Result<PromotionResult> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tenant = tenant_name(0);
    let q = qcfg.clone();
    let t2 = tenant.clone();
    let (store, points) = tokio::task::spawn_blocking(move || -> Result<_> {
        let store = QdrantStore::connect_existing(&q)?;
        let points = store.count(&t2)?;
        Ok((Arc::new(store), points))
    })
    .await
    .map_err(|e| bench_err(e.to_string()))??;
    let stop = Arc::new(AtomicBool::new(false));
    let querier = {
        let (stop, url, key, qs) = (
            stop.clone(),
            url.to_string(),
            key.to_string(),
            queries.to_vec(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut lat, mut errors, mut i) = (vec![], 0, 0);
            while !stop.load(Ordering::SeqCst) {
                match query_once(
                    &client,
                    &url,
                    &key,
                    &qs[i % qs.len()],
                    Target::Query(Mode::Hybrid),
                )
                .await
                {
                    Ok(ms) => lat.push(ms),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        })
    };
    let t = Instant::now();
    let (s2, t2) = (store.clone(), tenant.clone());
    let moved = tokio::task::spawn_blocking(move || s2.promote(&t2)).await;
    let seconds = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let (lat, errors) = querier.await.map_err(|e| bench_err(e.to_string()))?;
    let moved = moved.map_err(|e| bench_err(e.to_string()))??;
    Ok(PromotionResult {
        tenant: tenant.to_string(),
        points,
        moved,
        seconds,
        queries: lat.len() + errors,
        errors,
        latency: Latency::of(lat),
    })
}

const FLOODER: &str = "bench-flooder";

async fn admin_call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    admin: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let r = client
        .request(method, url)
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .map_err(|e| bench_err(format!("{url}: {e}")))?;
    let status = r.status();
    let v = r.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(bench_err(format!("{url}: HTTP {status} {v}")))
    }
}

/// Creates tenant `id` (deleting what an earlier run left of it) and returns its key.
async fn fresh_tenant(
    client: &reqwest::Client,
    url: &str,
    admin: &str,
    id: &str,
) -> Result<String> {
    let _ = client
        .delete(format!("{url}/v1/tenants/{id}"))
        .bearer_auth(admin)
        .send()
        .await;
    let created = admin_call(
        client,
        reqwest::Method::POST,
        &format!("{url}/v1/tenants"),
        admin,
        serde_json::json!({ "id": id }),
    )
    .await?;
    Ok(created["api_key"].as_str().unwrap_or_default().to_string())
}

/// One client of the quiet tenant, hybrid queries, for `secs`.
async fn quiet_client(
    url: String,
    key: String,
    queries: Vec<String>,
    secs: f64,
) -> (Vec<f64>, f64) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let start = Instant::now();
    let (mut lat, mut i) = (Vec::new(), 0usize);
    while start.elapsed().as_secs_f64() < secs && i < 100_000 {
        let q = &queries[(i * 7) % queries.len()];
        if let Ok(ms) = query_once(&client, &url, &key, q, Target::Query(Mode::Hybrid)).await {
            lat.push(ms);
        }
        i += 1;
    }
    let qps = lat.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    (lat, qps)
}

/// One document upload with `wait=true` (new text each time); its wall time in ms.
async fn timed_upload(
    url: String,
    key: String,
    doc: CorpusDoc,
    id: String,
    delay: f64,
) -> std::result::Result<f64, String> {
    tokio::time::sleep(Duration::from_secs_f64(delay)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("HTTP client");
    let mut bytes = doc.bytes.clone();
    if !matches!(doc.content_type, ContentType::Pdf) {
        bytes.extend(format!("\n\nprobe {id}\n").as_bytes());
    }
    let form = upload_form(&doc, id.clone(), bytes);
    let t = Instant::now();
    let r = client
        .post(format!("{url}/v1/documents?wait=true"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await;
    let r = r.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    let took = ms(t);
    if !status.is_success() {
        return Err(format!(
            "probe upload: HTTP {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let _ = client
        .delete(format!("{url}/v1/documents/{id}"))
        .bearer_auth(&key)
        .send()
        .await;
    Ok(took)
}

/// One phase of the flooding tenant.
struct Flood {
    url: String,
    key: String,
    queries: Vec<String>,
    docs: Vec<CorpusDoc>,
    clients: usize,
    secs: f64,
    /// Makes every upload's text new, so each one is real work.
    nonce: u64,
    /// Wait `Retry-After` when refused, or retry at once.
    polite: bool,
}

/// What the flooder got: (queries ok, queries refused, uploads accepted, uploads refused).
async fn flood(f: Flood) -> (usize, usize, usize, usize) {
    let Flood {
        url,
        key,
        queries,
        docs,
        clients,
        secs,
        nonce,
        polite,
    } = f;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, key, queries) =
            (client.clone(), url.clone(), key.clone(), queries.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut i) = (0, 0, c);
            while start.elapsed().as_secs_f64() < secs && i < 1_000_000 {
                let q = &queries[i % queries.len()];
                let r = client
                    .post(format!("{url}/v1/query"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({ "query": q, "top_k": 10 }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                    }
                    Ok(r) => {
                        refused += 1;
                        let wait: f64 = r
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(1.0);
                        let _ = r.bytes().await;
                        if polite {
                            let left = (secs - start.elapsed().as_secs_f64()).max(0.0);
                            tokio::time::sleep(Duration::from_secs_f64(wait.min(left))).await;
                        }
                    }
                    Err(_) => refused += 1,
                }
                i += clients;
            }
            (ok, refused)
        }));
    }
    // One uploader: new text every time (a nonce line), so every upload is real work.
    let uploader = tokio::spawn(async move {
        let (mut accepted, mut refused, mut i) = (0, 0, 0usize);
        while start.elapsed().as_secs_f64() < secs && !docs.is_empty() && i < 100_000 {
            let d = &docs[i % docs.len()];
            let mut bytes = d.bytes.clone();
            if !matches!(d.content_type, ContentType::Pdf) {
                bytes.extend(format!("\n\nflood {nonce}-{i}\n").as_bytes());
            }
            let form = upload_form(d, format!("flood-{nonce}-{i}"), bytes);
            let r = client
                .post(format!("{url}/v1/documents"))
                .bearer_auth(&key)
                .multipart(form)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => accepted += 1,
                _ => {
                    refused += 1;
                    // Refused (429/503): a real client backs off briefly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            i += 1;
        }
        (accepted, refused)
    });
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        if let Ok((o, r)) = t.await {
            ok += o;
            refused += r;
        }
    }
    let (up_ok, up_refused) = uploader.await.unwrap_or((0, 0));
    (ok, refused, up_ok, up_refused)
}

/// The noisy-neighbour run: the quiet tenant alone, then next to a flooder under its rate limits,
/// then next to the same flooder with its limits lifted. The flooder is a fresh tenant, deleted
/// at the end (so each run embeds its uploads anew).
async fn noisy_neighbour(
    url: &str,
    prepared: &Prepared,
    queries: &[String],
    corpus: &[CorpusDoc],
    opts: &BenchOptions,
) -> Result<NoisyResult> {
    let client = reqwest::Client::new();
    let admin = prepared.admin_key.as_str();
    let secs = opts.noisy_seconds;
    let clients = opts.concurrency.max(2) * 2;
    let (q_rate, i_rate) = (20.0, 2.0);
    let flood_key = fresh_tenant(&client, url, admin, FLOODER).await?;
    let limits_url = format!("{url}/v1/tenants/{FLOODER}/limits");
    admin_call(&client, reqwest::Method::PUT, &limits_url, admin, serde_json::json!({
        "query_per_sec": q_rate, "query_burst": q_rate as u32, "ingest_per_sec": i_rate, "ingest_burst": 5
    })).await?;
    let quiet = prepared.keys[0].clone();
    let docs: Vec<CorpusDoc> = corpus.iter().take(8).cloned().collect();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);

    let probe = docs
        .iter()
        .find(|d| !matches!(d.content_type, ContentType::Pdf))
        .or(docs.first())
        .cloned()
        .ok_or_else(|| bench_err("the corpus is empty"))?;
    let upload = |tag: &str| {
        tokio::spawn(timed_upload(
            url.into(),
            quiet.clone(),
            probe.clone(),
            format!("probe-{nonce}-{tag}"),
            secs / 3.0,
        ))
    };
    let upload_alone = upload("a");
    let (alone, alone_qps) = quiet_client(url.into(), quiet.clone(), queries.to_vec(), secs).await;
    let quiet_upload_alone_ms = upload_alone
        .await
        .map_err(|e| bench_err(e.to_string()))?
        .map_err(bench_err)?;
    let upload_flooded = upload("b");
    let phase = |n: u64, polite: bool| {
        let q = tokio::spawn(quiet_client(
            url.into(),
            quiet.clone(),
            queries.to_vec(),
            secs,
        ));
        let f = tokio::spawn(flood(Flood {
            url: url.into(),
            key: flood_key.clone(),
            queries: queries.to_vec(),
            docs: docs.clone(),
            clients,
            secs,
            nonce: nonce ^ n,
            polite,
        }));
        async move { (q.await, f.await) }
    };
    let (q, f) = phase(1, true).await;
    let ((polite, polite_qps), (_, _, up_ok, up_refused)) = (
        q.map_err(|e| bench_err(e.to_string()))?,
        f.map_err(|e| bench_err(e.to_string()))?,
    );
    let quiet_upload_flooded_ms = upload_flooded
        .await
        .map_err(|e| bench_err(e.to_string()))?
        .map_err(bench_err)?;
    let (q, f) = phase(3, false).await;
    let ((limited, limited_qps), (f_ok, f_refused, ..)) = (
        q.map_err(|e| bench_err(e.to_string()))?,
        f.map_err(|e| bench_err(e.to_string()))?,
    );
    admin_call(
        &client,
        reqwest::Method::PUT,
        &limits_url,
        admin,
        serde_json::json!({
            "query_per_sec": 0.0, "ingest_per_sec": 0.0
        }),
    )
    .await?;
    let (q, f) = phase(2, false).await;
    let ((unlimited, unlimited_qps), (f2_ok, ..)) = (
        q.map_err(|e| bench_err(e.to_string()))?,
        f.map_err(|e| bench_err(e.to_string()))?,
    );
    let _ = client
        .delete(format!("{url}/v1/tenants/{FLOODER}"))
        .bearer_auth(admin)
        .send()
        .await;
    let polite = Latency::of(polite);
    let (alone, limited, unlimited) = (
        Latency::of(alone),
        Latency::of(limited),
        Latency::of(unlimited),
    );
    Ok(NoisyResult {
        seconds_per_phase: secs,
        flooder_clients: clients,
        flooder_query_per_sec: q_rate,
        flooder_ingest_per_sec: i_rate,
        p99_ratio_limited: limited.p99_ms / alone.p99_ms.max(1e-9),
        p99_ratio_unlimited: unlimited.p99_ms / alone.p99_ms.max(1e-9),
        p99_ratio_polite: polite.p99_ms / alone.p99_ms.max(1e-9),
        quiet_flood_polite: polite,
        quiet_flood_polite_qps: polite_qps,
        quiet_alone: alone,
        quiet_alone_qps: alone_qps,
        quiet_flood_limited: limited,
        quiet_flood_limited_qps: limited_qps,
        quiet_flood_unlimited: unlimited,
        quiet_flood_unlimited_qps: unlimited_qps,
        flooder_ok: f_ok,
        flooder_limited: f_refused,
        flooder_uploads_accepted: up_ok,
        flooder_uploads_refused: up_refused,
        flooder_unlimited_qps: f2_ok as f64 / secs.max(1e-9),
        quiet_upload_alone_ms,
        quiet_upload_flooded_ms,
    })
}

const INGESTER: &str = "bench-ingester";

/// Uploads `docs` (document i to node i mod N) without waiting: the job ids, and how many
/// uploads were refused (a 4xx, a full queue: documents that were not ingested).
async fn submit_all(
    client: &reqwest::Client,
    urls: &[String],
    key: &str,
    docs: &[&CorpusDoc],
) -> Result<(Vec<String>, usize)> {
    let (mut jobs, mut refused) = (Vec::new(), 0);
    for (i, d) in docs.iter().enumerate() {
        let v: serde_json::Value = client
            .post(format!("{}/v1/documents", urls[i % urls.len()]))
            .bearer_auth(key)
            .multipart(upload_form(d, d.id.as_str().to_string(), d.bytes.clone()))
            .send()
            .await
            .map_err(|e| bench_err(format!("bench upload: {e}")))?
            .json()
            .await
            .unwrap_or_default();
        match v["job_id"].as_str() {
            Some(j) => jobs.push(j.to_string()),
            None => refused += 1,
        }
    }
    Ok((jobs, refused))
}

/// How a set of jobs ended.
struct JobsEnded {
    /// Chunks of the jobs that succeeded.
    chunks: u64,
    failed: usize,
    /// Whether any job was still open at its first poll.
    waited: bool,
}

/// Follows every job (job i on node i mod N) to its end. A job that never ends, or a server
/// that stops answering, ends the bench with an error.
async fn wait_jobs(
    client: &reqwest::Client,
    urls: &[String],
    key: &str,
    jobs: &[String],
) -> Result<JobsEnded> {
    let fail = |e: reqwest::Error| bench_err(format!("bench job poll: {e}"));
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut ended = JobsEnded {
        chunks: 0,
        failed: 0,
        waited: false,
    };
    for (i, job) in jobs.iter().enumerate() {
        loop {
            if Instant::now() > deadline {
                return Err(bench_err(format!("job {job} did not end within an hour")));
            }
            let v: serde_json::Value = client
                .get(format!("{}/v1/jobs/{job}", urls[i % urls.len()]))
                .bearer_auth(key)
                .send()
                .await
                .map_err(fail)?
                .json()
                .await
                .map_err(fail)?;
            match v["status"].as_str() {
                Some("succeeded") => ended.chunks += v["chunks_done"].as_u64().unwrap_or(0),
                Some("failed") => ended.failed += 1,
                _ => {
                    ended.waited = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            break;
        }
    }
    Ok(ended)
}

/// Hybrid queries over the bench tenants at 1 and 8 clients, idle, then while a fresh tenant
/// ingests the whole corpus (nothing cached), with the server's own ingestion settings.
async fn queries_while_ingesting(
    url: &str,
    prepared: &Prepared,
    queries: &[String],
    corpus: &[CorpusDoc],
    opts: &BenchOptions,
) -> Result<IngestLoadResult> {
    let client = reqwest::Client::new();
    let admin = prepared.admin_key.as_str();
    let secs = opts.noisy_seconds;
    let urls = [url.to_string()];
    let phase = |clients: usize| BenchOptions {
        concurrency: clients,
        duration: Duration::from_secs_f64(secs),
        ..opts.clone()
    };
    let mut rows = Vec::new();
    for clients in [1, 8] {
        let (lat, _, t) = closed_loop(
            &urls,
            &prepared.keys,
            queries,
            Target::Query(Mode::Hybrid),
            &phase(clients),
        )
        .await;
        rows.push(IngestLoadRow {
            clients,
            idle_qps: lat.len() as f64 / t.max(1e-9),
            idle: Latency::of(lat),
            ..Default::default()
        });
    }
    let key = fresh_tenant(&client, url, admin, INGESTER).await?;
    admin_call(
        &client,
        reqwest::Method::PUT,
        &format!("{url}/v1/tenants/{INGESTER}/limits"),
        admin,
        serde_json::json!({"ingest_per_sec": 0.0}),
    )
    .await?;
    // The tenant's queue cap bounds one upload burst; a larger corpus is cut there.
    let docs: Vec<&CorpusDoc> = corpus.iter().take(60).collect();
    let started = Instant::now();
    let (jobs, refused) = submit_all(&client, &urls, &key, &docs).await?;
    for row in &mut rows {
        let (lat, _, t) = closed_loop(
            &urls,
            &prepared.keys,
            queries,
            Target::Query(Mode::Hybrid),
            &phase(row.clients),
        )
        .await;
        row.ingesting_qps = lat.len() as f64 / t.max(1e-9);
        row.ingesting = Latency::of(lat);
        row.p50_ratio = row.ingesting.p50_ms / row.idle.p50_ms.max(1e-9);
        row.p99_ratio = row.ingesting.p99_ms / row.idle.p99_ms.max(1e-9);
    }
    // Polled after the last loaded phase: a job still open means the ingestion outlasted the
    // queries.
    let ended = wait_jobs(&client, &urls, &key, &jobs).await?;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let (chunks, failed, outlasted) = (ended.chunks, ended.failed + refused, ended.waited);
    let _ = client
        .delete(format!("{url}/v1/tenants/{INGESTER}"))
        .bearer_auth(admin)
        .send()
        .await;
    Ok(IngestLoadResult {
        seconds_per_phase: secs,
        documents: docs.len(),
        chunks,
        rows,
        outlasted_queries: outlasted,
        ingest_chunks_per_s: chunks as f64 / ingest_seconds.max(1e-9),
        ingest_seconds,
        failed,
    })
}

impl BenchReport {
    pub fn table(&self) -> String {
        let b = &self.baselines;
        let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.1}{unit}"));
        let mut s = format!(
            "{} tenants, {:.0} chunks per tenant ({} in all), {} clients; load took {:.1} s\n",
            self.tenants,
            self.chunks_per_tenant,
            self.total_chunks,
            self.concurrency,
            self.load_seconds
        );
        s +=
            &format!(
            "| {:<6} | {:>8} | {:>6} | {:>7} | {:>7} | {:>7} | {:>7} | {:>8} | {:>8} | {:>8} | {:>5} |\n",
            "mode", "requests", "errors", "QPS", "p50 ms", "p95 ms", "p99 ms", "max ms", "base ms",
            "p50/base", "steal"
        );
        s += &format!(
            "|{:-<8}|{:->10}|{:->8}|{:->9}|{:->9}|{:->9}|{:->9}|{:->10}|{:->10}|{:->10}|{:->7}|\n",
            "", "", "", "", "", "", "", "", "", "", ""
        );
        for r in &self.runs {
            s += &format!(
                "| {:<6} | {:>8} | {:>6} | {:>7.1} | {:>7.2} | {:>7.2} | {:>7.2} | {:>8.2} | {:>8} | {:>8} | {:>5} |\n",
                r.mode,
                r.requests,
                r.errors,
                r.qps,
                r.latency.p50_ms,
                r.latency.p95_ms,
                r.latency.p99_ms,
                r.latency.max_ms,
                opt(r.baseline_ms, ""),
                r.overhead_ratio.map_or("n/a".into(), |v| format!("{v:.2}x")),
                r.cpu_steal_pct.map_or("n/a".into(), |v| format!("{v:.0}%")),
            );
        }
        if !self.sweep.is_empty() {
            s += "hybrid against concurrency:\n| clients | requests | errors |     QPS |  p50 ms |  p99 ms |\n|--------:|---------:|-------:|--------:|--------:|--------:|\n";
            for r in &self.sweep {
                s += &format!(
                    "| {:>7} | {:>8} | {:>6} | {:>7.1} | {:>7.2} | {:>7.2} |\n",
                    r.concurrency, r.requests, r.errors, r.qps, r.latency.p50_ms, r.latency.p99_ms
                );
            }
        }
        s += &format!(
            "baselines (in-process p50): query embedding {:.2} ms, dense search {}, BM25 search {}\n",
            b.embed_query_ms,
            opt(b.dense_search_ms, " ms"),
            opt(b.bm25_search_ms, " ms")
        );
        if !b.raw_embed_tried.is_empty() {
            let tried: Vec<String> = b
                .raw_embed_tried
                .iter()
                .map(|(l, r)| format!("{l}: {r:.1}"))
                .collect();
            s += &format!(
                "bare model, passages/s: {}; the best again after the ingestion: {:.1}\n",
                tried.join("; "),
                b.raw_embed_again_passages_per_s
            );
        }
        if b.ingest_chunks > 0 {
            s += &format!(
                "ingestion: {:.1} chunks/s vs the bare model's best {:.1} passages/s ({}) on the same {} chunks ({:.2}x; \
                 parsing and chunking them alone took {:.1} s); \
                 re-ingest of unchanged documents {:.3} s vs {:.1} s first ({:.0}x faster)\n",
                b.ingest_chunks_per_s,
                b.raw_embed_passages_per_s,
                b.raw_embed_layout,
                b.ingest_chunks,
                b.ingest_ratio,
                b.parse_chunk_s,
                b.reingest_s,
                b.first_ingest_s,
                b.reingest_speedup
            );
        }
        s += &format!(
            "first query of a cold tenant: p50 {:.1} ms, max {:.1} ms; warm: p50 {:.1} ms\n",
            self.cold_first_query.p50_ms, self.cold_first_query.max_ms, self.warm_query.p50_ms
        );
        if let Some(n) = &self.noisy {
            s += &format!(
                "noisy neighbour ({:.0} s per phase; the flooder runs {} query clients and one uploader):\n\
                 | quiet tenant, 1 client   | p50 ms | p99 ms |  QPS  | p99 / alone |\n\
                 |--------------------------|--------|--------|-------|-------------|\n\
                 | alone                    | {:>6.1} | {:>6.1} | {:>5.1} |       1.00x |\n\
                 | flooder at limits, polite| {:>6.1} | {:>6.1} | {:>5.1} | {:>10.2}x |\n\
                 | flooder at limits, hostile| {:>5.1} | {:>6.1} | {:>5.1} | {:>10.2}x |\n\
                 | flooder without limits   | {:>6.1} | {:>6.1} | {:>5.1} | {:>10.2}x |\n\
                 flooder limited to {} queries/s and {} uploads/s; hostile: {} queries answered, {} refused (429); \
                 polite: {} uploads accepted, {} refused; without limits it got {:.1} queries/s\n\
                 quiet tenant's upload (wait=true): {:.0} ms alone, {:.0} ms during the polite flood\n",
                n.seconds_per_phase,
                n.flooder_clients,
                n.quiet_alone.p50_ms, n.quiet_alone.p99_ms, n.quiet_alone_qps,
                n.quiet_flood_polite.p50_ms, n.quiet_flood_polite.p99_ms, n.quiet_flood_polite_qps, n.p99_ratio_polite,
                n.quiet_flood_limited.p50_ms, n.quiet_flood_limited.p99_ms, n.quiet_flood_limited_qps, n.p99_ratio_limited,
                n.quiet_flood_unlimited.p50_ms, n.quiet_flood_unlimited.p99_ms, n.quiet_flood_unlimited_qps, n.p99_ratio_unlimited,
                n.flooder_query_per_sec, n.flooder_ingest_per_sec, n.flooder_ok, n.flooder_limited,
                n.flooder_uploads_accepted, n.flooder_uploads_refused, n.flooder_unlimited_qps,
                n.quiet_upload_alone_ms, n.quiet_upload_flooded_ms,
            );
        }
        if let Some(l) = &self.ingest_load {
            s += &format!(
                "hybrid queries while another tenant ingests {} documents ({} chunks, {:.1} chunks/s over {:.0} s, {} failed; \
                 ingestion {} the queries), {:.0} s per phase:\n\
                 | clients | idle p50 ms | idle p99 ms | idle QPS | ingesting p50 ms | ingesting p99 ms | ingesting QPS | p50 ratio | p99 ratio |\n\
                 |---------|-------------|-------------|----------|------------------|------------------|---------------|-----------|-----------|\n",
                l.documents, l.chunks, l.ingest_chunks_per_s, l.ingest_seconds, l.failed,
                if l.outlasted_queries { "outlasted" } else { "ended before" },
                l.seconds_per_phase
            );
            for r in &l.rows {
                s += &format!(
                    "| {:>7} | {:>11.1} | {:>11.1} | {:>8.1} | {:>16.1} | {:>16.1} | {:>13.1} | {:>8.2}x | {:>8.2}x |\n",
                    r.clients, r.idle.p50_ms, r.idle.p99_ms, r.idle_qps, r.ingesting.p50_ms,
                    r.ingesting.p99_ms, r.ingesting_qps, r.p50_ratio, r.p99_ratio
                );
            }
        }
        s += &format!(
            "server RSS: {} after the runs, peak {}\n",
            opt(self.runs.last().and_then(|r| r.server_rss_mib), " MiB"),
            opt(self.server_peak_rss_mib, " MiB")
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms),
            (51.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(vec![]).max_ms, 0.0);
    }

    #[test]
    fn tenants_get_deterministic_document_subsets() {
        let counts = [10, 50, 100, 5];
        let a = tenant_documents(3, &counts, 60);
        assert_eq!(a, tenant_documents(3, &counts, 60));
        assert!(a.iter().map(|&d| counts[d]).sum::<u64>() >= 60);
        // More chunks than the corpus holds: every document once.
        let mut all = tenant_documents(1, &counts, 1_000);
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3]);
    }

    #[test]
    fn hybrid_baseline_is_the_slower_parallel_leg() {
        let b = Baselines {
            embed_query_ms: 5.0,
            dense_search_ms: Some(1.0),
            bm25_search_ms: Some(2.0),
            ..Default::default()
        };
        assert_eq!(baseline_of(Target::Query(Mode::Hybrid), &b), Some(6.0));
        assert_eq!(baseline_of(Target::Query(Mode::Bm25), &b), Some(2.0));
        assert_eq!(baseline_of(Target::Answer, &b), None);
    }
}

/// `tenantry bench --backend qdrant`: the same bench on the embedded backend and on the
/// cluster, in one run, per client count.
#[derive(Debug, Clone, Serialize)]
pub struct BackendComparison {
    /// (backend, clients, report)
    pub runs: Vec<(String, usize, BenchReport)>,
}

impl BackendComparison {
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let hybrid = |r: &BenchReport| r.runs.iter().find(|l| l.mode == "hybrid").cloned();
        let _ = writeln!(
            out,
            "\nbackend comparison (same corpus, tenants and queries; ratio = qdrant / embedded)\n"
        );
        let _ = writeln!(
            out,
            "| clients | backend | hybrid QPS | p50 ms | p99 ms | cold first query p50 ms | ingestion chunks/s | load s |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        let mut clients: Vec<usize> = self.runs.iter().map(|(_, c, _)| *c).collect();
        clients.sort_unstable();
        clients.dedup();
        for c in clients {
            let of = |b: &str| {
                self.runs
                    .iter()
                    .find(|(name, cc, _)| name == b && *cc == c)
                    .map(|(_, _, r)| r)
            };
            for b in ["embedded", "qdrant"] {
                let Some(r) = of(b) else { continue };
                let h = hybrid(r);
                let _ = writeln!(
                    out,
                    "| {c} | {b} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
                    h.as_ref().map_or(0.0, |h| h.qps),
                    h.as_ref().map_or(0.0, |h| h.latency.p50_ms),
                    h.as_ref().map_or(0.0, |h| h.latency.p99_ms),
                    r.cold_first_query.p50_ms,
                    r.baselines.ingest_chunks_per_s,
                    r.load_seconds,
                );
            }
            if let (Some(e), Some(q)) = (of("embedded"), of("qdrant")) {
                if let (Some(he), Some(hq)) = (hybrid(e), hybrid(q)) {
                    let _ = writeln!(
                        out,
                        "| {c} | ratio | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x | |",
                        hq.qps / he.qps.max(1e-9),
                        hq.latency.p50_ms / he.latency.p50_ms.max(1e-9),
                        hq.latency.p99_ms / he.latency.p99_ms.max(1e-9),
                        q.cold_first_query.p50_ms / e.cold_first_query.p50_ms.max(1e-9),
                        q.baselines.ingest_chunks_per_s / e.baselines.ingest_chunks_per_s.max(1e-9),
                    );
                }
            }
        }
        for (_, _, r) in self.runs.iter().filter(|(b, _, _)| b == "qdrant") {
            if let Some(p) = &r.promotion {
                let _ = writeln!(
                    out,
                    "\npromotion of {} ({} points{}): {:.2} s; its hybrid queries meanwhile: {} ({} errors), p50 {:.2} ms, p99 {:.2} ms",
                    p.tenant,
                    p.points,
                    if p.moved { "" } else { ", already promoted by an earlier run" },
                    p.seconds,
                    p.queries,
                    p.errors,
                    p.latency.p50_ms,
                    p.latency.p99_ms,
                );
            }
        }
        if let Some((_, _, q)) = self.runs.iter().find(|(b, _, _)| b == "qdrant") {
            let (e, b) = (
                &q.baselines,
                self.runs.iter().find(|(b, _, _)| b == "embedded"),
            );
            let _ = writeln!(
                out,
                "\nwhere a cluster dense search goes (one warm tenant, p50): {:.2} ms at the client, of which {:.2} ms searching in the server; {:.2} ms network, gRPC and (de)serialisation. Embedded, in-process: {:.2} ms. BM25 leg: {:.2} ms cluster, {:.2} ms embedded.",
                e.cluster_dense_client_ms.unwrap_or(0.0),
                e.cluster_dense_server_ms.unwrap_or(0.0),
                e.cluster_dense_client_ms.unwrap_or(0.0) - e.cluster_dense_server_ms.unwrap_or(0.0),
                b.and_then(|(_, _, r)| r.baselines.dense_search_ms).unwrap_or(0.0),
                e.bm25_search_ms.unwrap_or(0.0),
                b.and_then(|(_, _, r)| r.baselines.bm25_search_ms).unwrap_or(0.0),
            );
        }
        out
    }
}

/// One row of `tenantry bench --nodes`: N `tenantry serve` processes sharing the deployment.
#[derive(Debug, Clone, Serialize)]
pub struct NodesResult {
    pub nodes: usize,
    pub clients: usize,
    pub hybrid: LoadResult,
    /// Documents uploaded through the nodes in turn, chunks they made, and the time from the
    /// first upload until every job was final.
    pub ingest_docs: usize,
    pub ingest_chunks: u64,
    pub ingest_seconds: f64,
    pub ingest_chunks_per_s: f64,
    /// Jobs that did not succeed.
    pub ingest_failed: usize,
    /// Resident memory of each node after the run.
    pub node_rss_mib: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodesReport {
    pub tenants: usize,
    pub total_chunks: u64,
    pub cores: usize,
    /// The in-process baselines measured before the servers start (same run).
    pub baselines: Baselines,
    pub rows: Vec<NodesResult>,
}

impl NodesReport {
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "\nnodes (tenantry serve processes on one PostgreSQL catalog and one Qdrant cluster; {} tenants, {} chunks; {} cores for everything)\n\n",
            self.tenants, self.total_chunks, self.cores
        );
        let _ = writeln!(
            out,
            "| nodes | clients | hybrid QPS | p50 ms | p99 ms | errors | ingestion chunks/s | ingested | failed | node RSS MiB |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        let first = self.rows.first();
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.2} | {:.2} | {} | {:.1} | {} docs, {} chunks | {} | {} |",
                r.nodes,
                r.clients,
                r.hybrid.qps,
                r.hybrid.latency.p50_ms,
                r.hybrid.latency.p99_ms,
                r.hybrid.errors,
                r.ingest_chunks_per_s,
                r.ingest_docs,
                r.ingest_chunks,
                r.ingest_failed,
                r.node_rss_mib
                    .iter()
                    .map(|m| format!("{m:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
            );
        }
        if let Some(f) = first {
            for r in self.rows.iter().skip(1) {
                let _ = writeln!(
                    out,
                    "{} nodes against 1: hybrid QPS {:.2}x, p50 {:.2}x, ingestion {:.2}x",
                    r.nodes,
                    r.hybrid.qps / f.hybrid.qps.max(1e-9),
                    r.hybrid.latency.p50_ms / f.hybrid.latency.p50_ms.max(1e-9),
                    r.ingest_chunks_per_s / f.ingest_chunks_per_s.max(1e-9),
                );
            }
        }
        let b = &self.baselines;
        let _ = writeln!(
            out,
            "baselines (in-process, same run): query embedding p50 {:.2} ms; raw embedder {:.1} passages/s",
            b.embed_query_ms, b.raw_embed_passages_per_s
        );
        out
    }
}

/// `tenantry bench --nodes 1,2,3`: load the bench tenants once into the shared deployment
/// (PostgreSQL catalog, Qdrant cluster), then for each count start that many `tenantry serve`
/// processes on loopback and measure hybrid queries (clients spread over the nodes) and
/// ingestion (uploads spread over the nodes, jobs claimed by any node's workers).
pub async fn nodes_scaling(
    config: Config,
    opts: BenchOptions,
    levels: &[usize],
) -> Result<NodesReport> {
    use crate::config::CatalogBackend;
    if config.catalog.backend != CatalogBackend::Postgres
        || config.storage.backend != StorageBackend::Qdrant
    {
        return Err(UserError::Invalid(
            "--nodes needs a shared deployment: catalog.backend = \"postgres\" and storage.backend = \"qdrant\""
                .into(),
        )
        .into());
    }
    if levels.is_empty() || levels.iter().any(|&n| n == 0 || n > 16) {
        return Err(UserError::Invalid("--nodes: counts between 1 and 16".into()).into());
    }
    let corpus = load_corpus(&opts.corpus)?;
    let queries = load_queries(&opts.queries)?;
    let data_dir = config.data_dir.clone();
    let mut cfg = config.clone();
    cfg.ingest.tenant_queue_max = corpus.len() + 1;
    cfg.ingest.queue_capacity = corpus.len() + 1;
    let prepared = prepare_in_process(cfg, &opts, &corpus, &queries).await?;
    let probe: Vec<&CorpusDoc> = corpus.iter().take(opts.ingest_docs.max(1)).collect();
    let mut rows = Vec::new();
    for &n in levels {
        eprintln!("bench: {n} node(s)");
        let mut servers = Vec::new();
        for i in 0..n {
            let dir = data_dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&dir)?;
            servers.push(Server::start(&opts.server_exe, &opts.server_args, &dir).await?);
        }
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        // Every tenant answers once through some node before the loop (warm tenants).
        for (i, url) in urls.iter().enumerate() {
            let keys: Vec<String> = prepared
                .keys
                .iter()
                .skip(i)
                .step_by(urls.len())
                .cloned()
                .collect();
            warm_every_tenant(url, &keys, &queries, opts.concurrency).await;
        }
        let hybrid = measured_run(
            &urls,
            &prepared.keys,
            &queries,
            Target::Query(Mode::Hybrid),
            &opts,
            None,
            None,
        )
        .await;
        let (chunks, ingest_seconds, failed) =
            ingest_through(&urls, &prepared.admin_key, &probe, n).await?;
        rows.push(NodesResult {
            nodes: n,
            clients: opts.concurrency,
            hybrid,
            ingest_docs: probe.len(),
            ingest_chunks: chunks,
            ingest_seconds,
            ingest_chunks_per_s: chunks as f64 / ingest_seconds.max(1e-9),
            ingest_failed: failed,
            node_rss_mib: servers
                .iter()
                .filter_map(|s| rss_mib(s.child.id(), "VmRSS:"))
                .collect(),
        });
        drop(servers);
    }
    Ok(NodesReport {
        tenants: opts.tenants,
        total_chunks: prepared.total_chunks,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        baselines: prepared.baselines,
        rows,
    })
}

/// Upload `docs` to a fresh tenant through the nodes in turn (no waiting), then wait for every
/// job: (chunks, seconds from the first upload to the last job's end, documents refused or
/// whose job did not succeed). The
/// tenant is new, so its embedding cache is empty: every chunk is embedded.
async fn ingest_through(
    urls: &[String],
    admin_key: &str,
    docs: &[&CorpusDoc],
    n: usize,
) -> Result<(u64, f64, usize)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| bench_err(e.to_string()))?;
    let tenant = format!("bench-nodes-{n}-{}", std::process::id());
    let created = admin_call(
        &client,
        reqwest::Method::POST,
        &format!("{}/v1/tenants", urls[0]),
        admin_key,
        serde_json::json!({ "id": tenant }),
    )
    .await?;
    let key = created["api_key"].as_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let (jobs, refused) = submit_all(&client, urls, &key, docs).await?;
    let ended = wait_jobs(&client, urls, &key, &jobs).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (chunks, failed) = (ended.chunks, ended.failed + refused);
    let _ = client
        .delete(format!("{}/v1/tenants/{tenant}", urls[0]))
        .bearer_auth(admin_key)
        .send()
        .await;
    Ok((chunks, seconds, failed))
}

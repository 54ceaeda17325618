//! The engine: tenants, documents, ingestion jobs and retrieval, as typed calls. It knows
//! nothing of HTTP. Tenant-scoped calls take a [`TenantCtx`] first.
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tenantry_ingest::{
    detect, Chunker, ContentType, Embedder, EmbedderConfig, FastEmbedder, IngestError, Lane,
    ModelSource, ParseLimits, Sandbox, SandboxConfig,
};
use tokio::sync::oneshot;

use crate::auth::{AuthError, JwtVerifier};
use crate::config::{CatalogBackend, Config, StorageBackend};
pub use crate::domain::Principal;
use crate::domain::Role;
use crate::domain::{DocId, TenantCtx, TenantId};
use crate::domain::{Footprint, StoredChunk};
use crate::error::{EngineError, InternalError, Result, UserError};
use crate::fairq::FairQueue;
use crate::keys;
use crate::limits::{Class, Limits, TenantLimits};
use crate::metrics::{Gauges, Metrics};
use crate::query::{Query, QueryOutput, Retriever};
use crate::runtime::blocking;
use crate::storage::catalog::{
    Catalog, CommitOutcome, DocumentRecord, JobRecord, KeyRecord, NewUpload, PostgresCatalog,
    SqliteCatalog, UploadOutcome,
};
use crate::storage::lexical::{LexicalStore, TantivyLexicalStore};
use crate::storage::qdrant::QdrantStore;
use crate::storage::vector::{EdgeVectorStore, VectorStore};
use crate::usage::{Meter, Metric};

mod governor;
mod ingest;
mod tenants;

pub use governor::{DayUsage, Governor, UsageReport};
pub use ingest::{Submitted, Upload, MAX_FILTER_TERM_BYTES};
pub use tenants::CreatedKey;

const MAX_ATTEMPTS: u32 = 3;

pub struct Engine {
    pub(crate) config: Config,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) lexical: Arc<dyn LexicalStore>,
    pub(crate) vectors: Arc<dyn VectorStore>,
    pub(crate) embedder: Arc<dyn Embedder>,
    /// Tenant-scoped search over the same seams.
    pub(crate) retriever: Arc<Retriever>,
    chunker: Arc<Chunker>,
    /// Parses and chunks untrusted documents in child processes.
    sandbox: Sandbox,
    blobs: PathBuf,
    admin_key: String,
    /// Per-tenant FIFOs served round-robin; shared with the workers, which hold no engine
    /// handle while they wait.
    queue: Arc<FairQueue>,
    workers_started: AtomicBool,
    /// Per tenant: jobs hold it shared, tenant deletion exclusively.
    tenant_gates: Mutex<HashMap<TenantId, Arc<std::sync::RwLock<()>>>>,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    draining: AtomicBool,
    embedded_texts: AtomicU64,
    embedding_seed: std::sync::RwLock<Option<TenantId>>,
    /// Outgoing calls to LLM endpoints the admin set or allow-listed.
    pub(crate) http: reqwest::Client,
    /// Outgoing calls to endpoints a tenant_admin set: public addresses only.
    pub(crate) http_public: reqwest::Client,
    /// Serialises generator-config updates (the sealed key's URL check is read-compare-write).
    pub(crate) config_writes: Mutex<()>,
    pub(crate) master_key: crate::secrets::MasterKey,
    jwt: Option<JwtVerifier>,
    /// Limits, usage and metrics.
    pub(crate) governor: Governor,
    running_jobs: AtomicUsize,
    /// Export streams running, per tenant and in all.
    pub(crate) exports: Arc<crate::limits::ConcurrencyCap>,
}

/// Both retrieval legs, on the configured backend.
fn open_legs(
    config: &Config,
    data: &Path,
    dim: usize,
) -> Result<(Arc<dyn VectorStore>, Arc<dyn LexicalStore>)> {
    let idle = Duration::from_secs(config.storage.tenant_idle_secs);
    Ok(match config.storage.backend {
        StorageBackend::Embedded => (
            Arc::new(EdgeVectorStore::open(&data.join("vectors"), dim, idle)?),
            Arc::new(TantivyLexicalStore::new(data.join("lexical"), idle)?),
        ),
        StorageBackend::Qdrant => {
            let store = Arc::new(QdrantStore::open(&config.qdrant, dim)?);
            (store.clone(), store)
        }
    })
}

/// Raise this thread's nice value (Linux: per thread). Lowering priority needs no privilege.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if rc != 0 {
            tracing::warn!(nice, "could not lower the ingestion thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.queue.close();
    }
}

fn read_or_create_admin_key(config: &Config) -> Result<String> {
    if !config.admin_key.is_empty() {
        return Ok(config.admin_key.clone());
    }
    let path = config.admin_key_file();
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Ok(k.trim().to_string());
    }
    let key = format!("adm_{}", keys::generate().token.trim_start_matches("tny_"));
    // Owner-only from the first byte: no window in which the file exists with looser bits.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, key.as_bytes())?;
    tracing::warn!(path = %path.display(), "no admin key configured: generated one");
    Ok(key)
}

/// The data directory holds every tenant's documents: owner-only, also when it already existed
/// with looser bits.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(path)
}

impl Engine {
    /// Open (or create) the data directory and load the model. Blocking; call before serving.
    pub fn open(config: Config) -> Result<Arc<Self>> {
        let data = config.data_dir.clone();
        create_private_dir(&data)?;
        let blobs = data.join("blobs");
        std::fs::create_dir_all(&blobs)?;
        let embedder =
            FastEmbedder::new(&embedder_config(&config)).map_err(InternalError::Embedding)?;
        let chunker = Chunker::from_tokenizer_file(
            &config.model_dir.join("tokenizer.json"),
            config.ingest.chunk_tokens,
        )
        .map_err(InternalError::Embedding)?;
        let sandbox = Sandbox::new(sandbox_config(&config)?);
        sandbox.probe().map_err(InternalError::Other)?;
        let catalog: Arc<dyn Catalog> = match config.catalog.backend {
            CatalogBackend::Sqlite => Arc::new(SqliteCatalog::open(&data.join("catalog.sqlite3"))?),
            CatalogBackend::Postgres => Arc::new(PostgresCatalog::connect(&config.postgres)?),
        };
        let (vectors, lexical) = open_legs(&config, &data, embedder.dim())?;
        let embedder: Arc<dyn Embedder> = Arc::new(embedder);
        let chunker = Arc::new(chunker);
        let meter = Arc::new(Meter::default());
        let retriever = Arc::new(Retriever::new(
            catalog.clone(),
            vectors.clone(),
            lexical.clone(),
            embedder.clone(),
            chunker.clone(),
            meter.clone(),
            config.query.clone(),
        ));
        let admin_key = read_or_create_admin_key(&config)?;
        let queue = Arc::new(FairQueue::new(config.ingest.queue_capacity));
        let master_key = crate::secrets::MasterKey::from_hex(&config.master_key)
            .map_err(|e| InternalError::Other(e.to_string()))?;
        let jwt = JwtVerifier::from_config(&config.jwt).map_err(InternalError::Other)?;
        let metrics = Metrics::new(&config.metrics);
        let exports = Arc::new(crate::limits::ConcurrencyCap::new(
            config.http.exports_per_tenant,
            config.http.exports_total,
        ));
        // Never follow redirects: a redirect would take a request (and its key) elsewhere than
        // the URL that was checked.
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(config.answer.connect_timeout_secs))
                .redirect(reqwest::redirect::Policy::none())
        };
        let http = client()
            .build()
            .map_err(|e| InternalError::Other(format!("http client: {e}")))?;
        // No proxy either: a proxy resolves names itself, past the public-only resolver.
        let http_public = client()
            .no_proxy()
            .dns_resolver(Arc::new(crate::egress::PublicOnly))
            .build()
            .map_err(|e| InternalError::Other(format!("http client: {e}")))?;
        let governor = Governor::new(catalog.clone(), config.limits, meter, metrics);
        Ok(Arc::new(Self {
            governor,
            config,
            catalog,
            lexical,
            vectors,
            embedder,
            retriever,
            chunker,
            sandbox,
            blobs,
            admin_key,
            queue,
            workers_started: AtomicBool::new(false),
            tenant_gates: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            embedded_texts: AtomicU64::new(0),
            embedding_seed: std::sync::RwLock::new(None),
            http,
            http_public,
            config_writes: Mutex::new(()),
            master_key,
            jwt,
            running_jobs: AtomicUsize::new(0),
            exports,
        }))
    }

    fn tenant_gate(&self, tenant: &TenantId) -> Arc<std::sync::RwLock<()>> {
        self.tenant_gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.clone())
            .or_default()
            .clone()
    }

    /// Tokens of `text` by the embedding model's tokenizer (the one count the engine has).
    pub(crate) fn count_tokens(&self, text: &str) -> usize {
        self.chunker.count_tokens(text)
    }

    /// Dimensions of the embedding model's vectors.
    pub fn embedding_dim(&self) -> usize {
        self.embedder.dim()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// Start ingestion workers and background maintenance, and resume jobs a previous process
    /// left unfinished. Call once, inside a tokio runtime.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        if self.workers_started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Ingestion runs on its own threads, not the blocking pool that queries use, at a lower
        // CPU priority: a tenant's uploads never take CPU from another tenant's queries while
        // queries wait. Workers hold a Weak: dropping the last Engine handle closes the queue,
        // which stops them.
        for i in 0..self.config.ingest.workers {
            let (weak, queue) = (Arc::downgrade(self), self.queue.clone());
            let nice = self.config.ingest.nice;
            std::thread::Builder::new()
                .name(format!("tenantry-ingest-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    while let Some(job_id) = queue.pop() {
                        let Some(me) = weak.upgrade() else { break };
                        // Draining: the job stays queued in the catalog; the next start runs it.
                        if me.draining.load(Ordering::SeqCst) {
                            continue;
                        }
                        me.running_jobs.fetch_add(1, Ordering::SeqCst);
                        if let Err(e) = me.run_job(&job_id) {
                            tracing::error!(job_id = %job_id, error = %e, "ingestion job crashed");
                        }
                        me.running_jobs.fetch_sub(1, Ordering::SeqCst);
                        me.notify(&job_id);
                    }
                })?;
        }
        let me = self.clone();
        for (tenant, id) in blocking(move || me.recover()).await? {
            // Acknowledged jobs are owed a run whatever the capacity.
            self.queue.push_unbounded(&tenant, id);
        }
        // Maintenance (index optimisation is the heaviest CPU work after embedding) runs at
        // the ingestion threads' priority too, off the blocking pool that queries use.
        let weak = Arc::downgrade(self);
        let period = Duration::from_secs(self.config.storage.optimize_interval_secs.max(1));
        let nice = self.config.ingest.nice;
        std::thread::Builder::new()
            .name("tenantry-maintain".into())
            .spawn(move || {
                lower_priority(nice);
                loop {
                    std::thread::sleep(period);
                    let Some(m) = weak.upgrade() else { break };
                    if m.draining.load(Ordering::SeqCst) {
                        break;
                    }
                    m.governor.flush_usage();
                    m.lexical.close_idle();
                    if let Err(e) = m.vectors.maintain() {
                        tracing::warn!(error = %e, "vector store maintenance failed");
                    }
                    m.vectors.close_idle();
                }
            })
            .map_err(|e| InternalError::Other(format!("maintenance thread: {e}")))?;
        Ok(())
    }

    /// Finish what a crash left: garbage from interrupted or replaced versions, and jobs that
    /// were acknowledged (202) but not finished. Returns the jobs to run again.
    fn recover(&self) -> Result<Vec<(TenantId, String)>> {
        self.run_gc()?;
        let mut resume = Vec::new();
        for job in self.catalog.unfinished_jobs()? {
            let blob = self.blobs.join(&job.id);
            if blob.exists() && job.attempts < MAX_ATTEMPTS {
                tracing::info!(job_id = %job.id, attempts = job.attempts, "resuming interrupted ingestion job");
                resume.push((job.tenant, job.id));
            } else {
                let reason = if blob.exists() {
                    "ingestion was interrupted too many times"
                } else {
                    "ingestion was interrupted and its upload is gone"
                };
                self.catalog.fail_job(&job, "interrupted", reason)?;
                let _ = std::fs::remove_file(blob);
            }
        }
        self.run_gc()?;
        Ok(resume)
    }

    /// Chunks embedded by ingestion since start (cache misses only).
    pub fn embedded_texts(&self) -> u64 {
        self.embedded_texts.load(Ordering::Relaxed)
    }

    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
    }

    /// Ready to serve: not draining and the catalog answers. (The model and the indexes are
    /// loaded before an `Engine` exists at all.)
    pub async fn readiness(self: &Arc<Self>) -> std::result::Result<(), &'static str> {
        if !self.is_ready() {
            return Err("draining");
        }
        let me = self.clone();
        match blocking(move || Ok((me.catalog.ping(), me.vectors.health()))).await {
            Ok((Ok(()), Ok(()))) => Ok(()),
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, "readiness: catalog unavailable");
                Err("storage unavailable")
            }
            Ok((_, Err(e))) => {
                tracing::warn!(error = %e, "readiness: vector store unavailable");
                Err("storage unavailable")
            }
            Err(e) => {
                tracing::error!(error = %e, "readiness check failed");
                Err("storage unavailable")
            }
        }
    }

    /// Wait until no ingestion job runs, or `deadline` passes; true if idle.
    pub async fn wait_idle(&self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while self.running_jobs.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Make everything durable (usage counters, vector WAL); tantivy and SQLite commit as they go.
    pub fn flush(&self) {
        self.governor.flush_usage();
        self.vectors.flush();
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        self.governor.render_metrics(&Gauges {
            queue_depth: self.queue.len(),
            open_tenants: self.lexical.open_count(),
            open_vector_shards: self.vectors.open_count(),
            draining: self.draining.load(Ordering::SeqCst),
        })
    }

    /// Count an API error against the tenant (by stable code; never a message).
    pub fn meter_error(&self, tenant: &TenantId, code: &'static str) {
        self.governor.meter_error(tenant, code);
    }

    pub fn observe_request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        tenant: Option<&TenantId>,
        elapsed: Duration,
    ) {
        self.governor
            .observe_request(route, method, status, tenant, elapsed);
    }

    pub async fn query(self: &Arc<Self>, ctx: &TenantCtx, q: Query) -> Result<QueryOutput> {
        self.governor.meter.add(ctx.tenant(), Metric::Queries, 1);
        self.retriever.search(ctx, q).await
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
}

/// The parse worker a configuration names: `ingest.sandbox.worker`, or this program.
fn sandbox_config(config: &Config) -> Result<SandboxConfig> {
    let s = &config.ingest.sandbox;
    let program = if s.worker.as_os_str().is_empty() {
        std::env::current_exe()?
    } else {
        s.worker.clone()
    };
    let max_text_bytes = s.max_text_mb << 20;
    Ok(SandboxConfig {
        program,
        args: vec!["parse-worker".into()],
        tokenizer: std::path::absolute(config.model_dir.join("tokenizer.json"))?,
        chunk_tokens: config.ingest.chunk_tokens,
        limits: ParseLimits {
            max_depth: s.max_depth,
            max_heading_bytes: s.max_heading_bytes,
            max_decompressed_bytes: s.max_decompressed_mb << 20,
            max_text_bytes,
        },
        timeout: Duration::from_secs(s.timeout_secs.max(1)),
        memory_bytes: s.memory_mb << 20,
        // The text twice (chunks and their embedding texts), JSON-escaped, plus headings.
        max_reply_bytes: max_text_bytes * 8 + (1 << 20),
    })
}

/// The embedding model a configuration names.
pub(crate) fn embedder_config(config: &Config) -> EmbedderConfig {
    let source = if config.hub_model.is_empty() {
        ModelSource::Local(config.model_dir.clone())
    } else {
        ModelSource::Hub(config.hub_model.clone())
    };
    EmbedderConfig {
        source,
        ort_dylib: Some(config.ort_dylib.clone()),
        max_length: tenantry_ingest::chunk::MODEL_MAX_TOKENS,
        batch_size: config.ingest.embed_batch,
        intra_threads: config.ingest.embed_threads,
        query_sessions: config.query.embed_sessions,
        query_threads: config.query.embed_threads,
    }
}

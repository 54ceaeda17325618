//! The engine: tenants, documents, ingestion jobs and retrieval, as typed calls. It knows
//! nothing of HTTP. Tenant-scoped calls take a [`TenantCtx`] first.
use std::collections::{HashMap, HashSet};
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
use crate::keys;
use crate::limits::{Class, Limits, TenantLimits};
use crate::metrics::{Gauges, Metrics};
use crate::query::{Query, QueryOutput, Retriever};
use crate::runtime::blocking;
use crate::storage::catalog::{
    Catalog, CommitOutcome, DocumentRecord, JobPage, JobProgress, JobRecord, JobStage, KeyRecord,
    NewUpload, NodeInfo, Payload, PostgresCatalog, QueueCaps, SqliteCatalog, UploadOutcome,
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

/// Claims of one job (runs that storage ended, or that died with their node) before it fails.
const MAX_ATTEMPTS: u32 = 10;
/// How often a node renews its jobs' leases and records that it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A worker with nothing to claim looks again this often (or at once when this node accepts
/// an upload): the latency with which another node's upload starts here.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Reports larger than this are not served to the console (the server reads one whole).
const MAX_REPORT_BYTES: u64 = 32 << 20;

fn report_name_ok(name: &str) -> bool {
    name.len() <= 200
        && name.ends_with(".html")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

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
    /// Uploads of jobs accepted by an older version, which kept them as files here.
    legacy_blobs: PathBuf,
    admin_key: String,
    /// This node, as the shared job queue and the heartbeat know it.
    node: NodeInfo,
    /// Jobs this node runs, whose leases its heartbeat renews.
    held: Mutex<HashSet<String>>,
    /// Wakes idle workers; shared with them, who hold no engine handle while they wait.
    wake: Arc<Wake>,
    /// Queued and running jobs of the deployment, as of the last heartbeat.
    queue_depth: AtomicU64,
    workers_started: AtomicBool,
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

/// Raise this thread's nice value (Linux: per thread), so queries win the CPU.
fn lower_priority(nice: i32) {
    if !tenantry_ingest::embed::lower_thread_priority(nice) {
        tracing::warn!(nice, "could not lower the ingestion thread's priority");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.wake.close();
    }
}

/// Idle workers wait here for an upload of this node, a timeout (another node's upload), or
/// the end.
#[derive(Default)]
struct Wake {
    state: Mutex<(u64, bool)>,
    cond: std::sync::Condvar,
}

impl Wake {
    fn notify(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
        self.cond.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.cond.notify_all();
    }

    /// Wait up to `timeout` for a notification; false once closed.
    fn wait(&self, timeout: Duration) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.1 {
            return false;
        }
        let seen = s.0;
        let s = self
            .cond
            .wait_timeout_while(s, timeout, |s| s.0 == seen && !s.1)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        !s.1
    }
}

/// A name for this node: configured, or host, process and a random suffix.
fn node_info(config: &Config) -> NodeInfo {
    let id = if config.catalog.node_id.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        format!("{host}-{}-{suffix}", std::process::id())
    } else {
        config.catalog.node_id.clone()
    };
    NodeInfo {
        id,
        addr: config.listen.to_string(),
        started_at: crate::domain::now(),
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
        let legacy_blobs = data.join("blobs");
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
        let activity = embedder.query_activity();
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
            activity,
            config.query.clone(),
        ));
        let admin_key = read_or_create_admin_key(&config)?;
        let node = node_info(&config);
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
            legacy_blobs,
            admin_key,
            node,
            held: Mutex::new(HashSet::new()),
            wake: Arc::new(Wake::default()),
            queue_depth: AtomicU64::new(0),
            workers_started: AtomicBool::new(false),
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

    /// This node's name in the job queue.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// The lease of the jobs this node runs. Without the heartbeat (an operator command that
    /// opened the engine without starting it) nothing renews a lease: take a day.
    pub(crate) fn lease(&self) -> Duration {
        if self.workers_started.load(Ordering::SeqCst) {
            Duration::from_secs(self.config.catalog.job_lease_secs)
        } else {
            Duration::from_secs(24 * 3600)
        }
    }

    pub(crate) fn held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a job waits for its tenant's gate, and a delete for the tenant's jobs.
    pub(crate) fn gate_wait(&self) -> Duration {
        Duration::from_secs(self.config.ingest.job_timeout_secs + 60)
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

    /// Start ingestion workers, the heartbeat and background maintenance. Call once, inside a
    /// tokio runtime.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        if self.workers_started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let me = self.clone();
        blocking(move || me.recover()).await?;
        // Ingestion runs on its own threads, not the blocking pool that queries use, at a lower
        // CPU priority: a tenant's uploads never take CPU from another tenant's queries while
        // queries wait. Workers claim from the catalog's queue, which every node shares, and
        // hold a Weak while idle: dropping the last Engine handle stops them.
        for i in 0..self.config.ingest.workers {
            let (weak, wake) = (Arc::downgrade(self), self.wake.clone());
            let nice = self.config.ingest.nice;
            std::thread::Builder::new()
                .name(format!("tenantry-ingest-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        let Some(me) = weak.upgrade() else { break };
                        // Counted as running while it claims: a drain that sees no running
                        // job has no claim in flight that it would fail to hand back.
                        me.running_jobs.fetch_add(1, Ordering::SeqCst);
                        let claimed = if me.draining.load(Ordering::SeqCst) {
                            Ok(None)
                        } else {
                            me.catalog.claim_job(&me.node.id, me.lease())
                        };
                        match claimed {
                            Ok(Some(job)) => {
                                me.run_claimed(job);
                                me.running_jobs.fetch_sub(1, Ordering::SeqCst);
                                continue;
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "claiming a job failed"),
                        }
                        me.running_jobs.fetch_sub(1, Ordering::SeqCst);
                        drop(me);
                        if !wake.wait(IDLE_POLL) {
                            break;
                        }
                    }
                })?;
        }
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("tenantry-heartbeat".into())
            .spawn(move || loop {
                let Some(me) = weak.upgrade() else { break };
                me.heartbeat();
                drop(me);
                std::thread::sleep(HEARTBEAT);
            })
            .map_err(|e| InternalError::Other(format!("heartbeat thread: {e}")))?;
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

    /// Renew the leases of this node's jobs, record that it is alive, and learn how many
    /// nodes share the deployment (rate limits are split between them) and how deep the
    /// queue is. A failure is logged and retried at the next beat; leases outlive several.
    fn heartbeat(&self) {
        let held: Vec<String> = self.held().iter().cloned().collect();
        if let Err(e) = self
            .catalog
            .renew_leases(&self.node.id, &held, self.lease())
        {
            tracing::warn!(error = %e, "renewing job leases failed");
        }
        match self.catalog.heartbeat(&self.node, HEARTBEAT * 3) {
            Ok(n) => {
                if n > 1 && self.config.storage.backend == StorageBackend::Embedded {
                    // Each node's legs are its own directory: a job claimed here is searchable
                    // only here. One node per catalog, or both legs on a Qdrant cluster.
                    tracing::error!(
                        nodes = n,
                        "several nodes share this catalog but storage.backend = \"embedded\": \
                         each node would hold other nodes' documents only in part; use \
                         storage.backend = \"qdrant\""
                    );
                }
                self.governor.set_nodes(n)
            }
            Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
        }
        if let Ok(n) = self.catalog.queue_depth() {
            self.queue_depth.store(n, Ordering::Relaxed);
        }
        // Deletes that could not finish (their node died, or jobs held the tenant too long).
        if let Ok(drops) = self.catalog.pending_drops() {
            for t in drops {
                if let Err(e) = self.finish_drop(&t, Duration::ZERO) {
                    tracing::debug!(tenant = %t, error = %e, "tenant removal still waiting");
                }
            }
        }
    }

    /// Finish what a crash left: garbage from interrupted or replaced versions; with a catalog
    /// only this process opens, the jobs the previous process held are claimable at once
    /// (with a shared one, their leases expire).
    fn recover(&self) -> Result<()> {
        self.run_gc()?;
        if self.config.catalog.backend == CatalogBackend::Sqlite {
            let n = self.catalog.expire_leases()?;
            if n > 0 {
                tracing::info!(jobs = n, "resuming interrupted ingestion jobs");
            }
            // Upload files an older version kept, whose jobs are over.
            let unfinished: HashSet<String> = self
                .catalog
                .unfinished_jobs()?
                .into_iter()
                .map(|j| j.id)
                .collect();
            if let Ok(files) = std::fs::read_dir(&self.legacy_blobs) {
                for f in files.flatten() {
                    if !unfinished.contains(&*f.file_name().to_string_lossy()) {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
        }
        self.heartbeat();
        Ok(())
    }

    /// Stop claiming jobs; hand the ones still running back to the queue for other nodes (or
    /// the next start), claimable at once. Their runs here end without writing anything: the
    /// catalog no longer counts this node as their holder.
    pub fn hand_back_jobs(&self) {
        self.begin_drain();
        let held: Vec<String> = self.held().drain().collect();
        for id in held {
            match self.catalog.release_job(&id, &self.node.id, Duration::ZERO) {
                Ok(_) => tracing::info!(job_id = %id, "job handed back to the queue"),
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "handing a job back failed; its lease will expire")
                }
            }
        }
        if let Err(e) = self.catalog.leave(&self.node.id) {
            tracing::warn!(error = %e, "leaving the node list failed");
        }
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

    /// Ingestion jobs running (or being claimed) on this node now.
    pub fn running_jobs(&self) -> usize {
        self.running_jobs.load(Ordering::SeqCst)
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
    /// Callable from async code too: the work runs on a plain thread (a synchronous
    /// PostgreSQL client must not run on a runtime thread).
    pub fn flush(&self) {
        let work = || {
            self.governor.flush_usage();
            self.vectors.flush();
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(work);
            });
        } else {
            work();
        }
    }

    /// The folder of bench and eval reports the operator's console shows.
    pub fn reports_dir(&self) -> PathBuf {
        match self.config.console.reports_dir.as_str() {
            "" => self.config.data_dir.join("reports"),
            dir => PathBuf::from(dir),
        }
    }

    /// The reports (`*.html` directly in the reports folder), newest first: name, bytes and
    /// modification time (Unix seconds). No folder: none.
    pub async fn reports(&self) -> Result<Vec<(String, u64, i64)>> {
        let dir = self.reports_dir();
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(e.into()),
            };
            let mut out = vec![];
            for e in entries {
                // An entry removed while the folder is read is simply not listed.
                let Ok(e) = e else { continue };
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() || !report_name_ok(&name) {
                    continue;
                }
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                out.push((name, meta.len(), modified));
            }
            out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            Ok(out)
        })
        .await
    }

    /// One report's bytes, by a name `reports` lists (nothing outside the folder is
    /// reachable: the name is one plain file name ending in `.html`, and a symlink is refused).
    pub async fn report(&self, name: &str) -> Result<Vec<u8>> {
        if !report_name_ok(name) {
            return Err(UserError::NotFound("report").into());
        }
        let path = self.reports_dir().join(name);
        blocking(move || {
            use std::io::Read as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            // O_NOFOLLOW: a symlink fails to open, so what is checked is what is read.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            let file = match file {
                Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => f,
                _ => return Err(UserError::NotFound("report").into()),
            };
            let mut body = Vec::new();
            file.take(MAX_REPORT_BYTES + 1).read_to_end(&mut body)?;
            if body.len() as u64 > MAX_REPORT_BYTES {
                return Err(UserError::Invalid(format!(
                    "the report is over {MAX_REPORT_BYTES} bytes, more than the console shows"
                ))
                .into());
            }
            Ok(body)
        })
        .await
    }

    /// Each tenant's last minutes on this node (see `Metrics::recent`).
    pub fn recent_stats(
        &self,
        minutes: u64,
    ) -> std::collections::BTreeMap<String, Vec<crate::metrics::MinuteStats>> {
        self.governor.metrics.recent(minutes)
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        self.governor.render_metrics(&Gauges {
            node: &self.node.id,
            queue_depth: self.queue_depth.load(Ordering::Relaxed) as usize,
            running_jobs: self.running_jobs.load(Ordering::SeqCst),
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
            clean_pdf_layout: config.ingest.pdf_layout_cleanup,
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
        ingest_sessions: config.ingest.embed_sessions,
        ingest_sessions_busy: config.ingest.embed_sessions_busy,
        ingest_nice: config.ingest.nice,
        query_sessions: config.query.embed_sessions,
        query_threads: config.query.embed_threads,
    }
}

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

pub use crate::auth::Principal;
use crate::auth::{AuthError, JwtVerifier, Role};
use crate::catalog::{
    Catalog, CommitOutcome, DocumentRecord, JobRecord, KeyRecord, NewUpload, UploadOutcome,
};
use crate::config::Config;
use crate::error::{EngineError, InternalError, Result, UserError};
use crate::fairq::{FairPermits, FairQueue};
use crate::keys;
use crate::lexical::LexicalStore;
use crate::limits::{Class, Limits, RateLimiter, TenantLimits};
use crate::metrics::{Gauges, Metrics};
use crate::query::{self, Query, QueryOutput};
use crate::store::{Footprint, StoredChunk};
use crate::tenant::{DocId, TenantCtx, TenantId};
use crate::usage::{Meter, Metric};
use crate::vector::{EdgeVectorStore, VectorStore};

/// A document as submitted by a tenant.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    pub doc_id: Option<DocId>,
    pub title: Option<String>,
    pub declared_type: Option<String>,
    pub file_name: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Submitted {
    pub doc_id: DocId,
    pub job_id: String,
}

pub struct CreatedKey {
    pub key: KeyRecord,
    /// The whole bearer token; shown once, never stored.
    pub token: String,
}

/// Counters of one UTC day.
#[derive(Debug, Clone, Default)]
pub struct DayUsage {
    pub day: String,
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// What a tenant used by day, and what it stores now.
#[derive(Debug, Clone, Default)]
pub struct UsageReport {
    pub days: Vec<DayUsage>,
    pub documents: u64,
    pub bytes: u64,
    pub chunks: u64,
}

const MAX_ATTEMPTS: u32 = 3;

pub struct Engine {
    pub(crate) config: Config,
    pub(crate) catalog: Catalog,
    pub(crate) lexical: LexicalStore,
    pub(crate) vectors: Box<dyn VectorStore>,
    pub(crate) embedder: Box<dyn Embedder>,
    chunker: Chunker,
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
    limiter: RateLimiter,
    pub(crate) meter: Meter,
    pub(crate) metrics: Metrics,
    running_jobs: AtomicUsize,
    /// Export streams running, per tenant and in all.
    pub(crate) exports: Arc<crate::limits::ConcurrencyCap>,
    /// One per query model session, handed out round-robin between tenants.
    pub(crate) query_permits: FairPermits,
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

/// Run blocking work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    // The request's span (request id, tenant) follows the work onto the blocking pool.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| {
            EngineError::Internal(InternalError::Other(format!("blocking task failed: {e}")))
        })?
}

fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

fn too_large(field: impl Into<String>, size: usize, limit: usize) -> Result<(), UserError> {
    if size > limit {
        return Err(UserError::FieldTooLarge {
            field: field.into(),
            size,
            limit,
        });
    }
    Ok(())
}

fn validate_metadata(
    m: &serde_json::Map<String, serde_json::Value>,
    limits: &crate::config::IngestConfig,
) -> Result<(), UserError> {
    if m.len() > 64 {
        return Err(UserError::Invalid(
            "metadata may have at most 64 keys".into(),
        ));
    }
    for (k, v) in m {
        let key_ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !key_ok {
            return Err(UserError::Invalid(format!(
                "metadata key {k:?}: use 1-64 characters of A-Z, a-z, 0-9, '_', '-', '.'"
            )));
        }
        let scalar_or_list = match v {
            serde_json::Value::Array(items) => {
                items.len() <= 64 && items.iter().all(|i| crate::store::scalar(i).is_some())
            }
            other => crate::store::scalar(other).is_some() || other.is_null(),
        };
        if !scalar_or_list {
            return Err(UserError::Invalid(format!(
                "metadata {k:?}: values must be strings, numbers, booleans or lists of at most 64 of them"
            )));
        }
        let strings = match v {
            serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        };
        for s in strings.iter().filter_map(|s| s.as_str()) {
            too_large(
                format!("metadata value of {k:?}"),
                s.len(),
                limits.max_metadata_value_bytes,
            )?;
        }
    }
    let total = serde_json::to_string(m).map_or(usize::MAX, |s| s.len());
    too_large("metadata", total, limits.max_metadata_bytes)?;
    // Every chunk carries the filter terms (a list repeats its key per item): bound them too.
    let terms: usize = crate::store::metadata_terms(m)
        .iter()
        .map(String::len)
        .sum();
    too_large("metadata filter terms", terms, MAX_FILTER_TERM_BYTES)
}

/// Bytes of `key=value` filter terms each chunk of a document indexes in both legs (terms over
/// 64 bytes count as their 33-byte hash).
pub const MAX_FILTER_TERM_BYTES: usize = 2048;

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
        let catalog = Catalog::open(&data.join("catalog.sqlite3"))?;
        let lexical = LexicalStore::new(
            data.join("lexical"),
            Duration::from_secs(config.storage.tenant_idle_secs),
        )?;
        let vectors = EdgeVectorStore::open(
            &data.join("vectors"),
            embedder.dim(),
            Duration::from_secs(config.storage.tenant_idle_secs),
        )?;
        let admin_key = read_or_create_admin_key(&config)?;
        let queue = Arc::new(FairQueue::new(config.ingest.queue_capacity));
        let master_key = crate::secrets::MasterKey::from_hex(&config.master_key)
            .map_err(|e| InternalError::Other(e.to_string()))?;
        let jwt = JwtVerifier::from_config(&config.jwt).map_err(InternalError::Other)?;
        let metrics = Metrics::new(&config.metrics);
        let config_query_sessions = config.query.embed_sessions;
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
            .dns_resolver(Arc::new(crate::answer::egress::PublicOnly))
            .build()
            .map_err(|e| InternalError::Other(format!("http client: {e}")))?;
        Ok(Arc::new(Self {
            config,
            catalog,
            lexical,
            vectors: Box::new(vectors),
            embedder: Box::new(embedder),
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
            limiter: RateLimiter::default(),
            meter: Meter::default(),
            metrics,
            running_jobs: AtomicUsize::new(0),
            exports,
            query_permits: FairPermits::new(match config_query_sessions {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            }),
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
                    m.flush_usage();
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
        match blocking(move || me.catalog.ping()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "readiness: catalog unavailable");
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
        self.flush_usage();
        self.vectors.flush();
    }

    fn flush_usage(&self) {
        let rows = self.meter.take();
        if let Err(e) = self.catalog.add_usage(&rows) {
            tracing::warn!(error = %e, "usage counters not written; will retry");
            self.meter.restore(rows);
        }
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&Gauges {
            queue_depth: self.queue.len(),
            open_tenants: self.lexical.open_count(),
            open_vector_shards: self.vectors.open_count(),
            draining: self.draining.load(Ordering::SeqCst),
        })
    }

    /// Count an API error against the tenant (by stable code; never a message).
    pub fn meter_error(&self, tenant: &TenantId, code: &'static str) {
        self.meter.add(tenant, Metric::Error(code), 1);
    }

    pub fn observe_request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        tenant: Option<&TenantId>,
        elapsed: Duration,
    ) {
        self.metrics.request(route, method, status, tenant, elapsed);
    }

    // ---- auth and tenants (admin) ----

    /// Who a bearer credential is: the admin key, a tenant API key, or a JWT. Revoked keys fail
    /// on the next request (no cache).
    pub async fn authenticate(
        self: &Arc<Self>,
        token: &str,
    ) -> Result<std::result::Result<Principal, AuthError>> {
        if keys::ct_eq(token.as_bytes(), self.admin_key.as_bytes()) {
            return Ok(Ok(Principal::Admin));
        }
        if let Some((key_id, secret)) = keys::split(token) {
            let (key_id, hash) = (key_id.to_string(), keys::hash(secret));
            let me = self.clone();
            return blocking(move || {
                Ok(match me.catalog.key(&key_id)? {
                    Some((k, stored)) if keys::ct_eq(&stored, &hash) => Ok(Principal::Tenant(
                        TenantCtx::authenticated(k.tenant, format!("key:{}", k.id)),
                        k.role,
                    )),
                    _ => Err(AuthError::InvalidKey),
                })
            })
            .await;
        }
        if token.split('.').count() != 3 {
            return Ok(Err(AuthError::InvalidKey));
        }
        let Some(jwt) = &self.jwt else {
            return Ok(Err(AuthError::InvalidToken("JWT is not configured")));
        };
        let (tenant, role, issued_at, subject) = match jwt.verify(token) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let me = self.clone();
        blocking(move || {
            // A tenant id can be deleted and created again: a token issued before this
            // tenant existed was issued for another one, and never works for this one.
            Ok(match me.catalog.tenant_created_at(&tenant)? {
                Some(created) if issued_at >= created => Ok(Principal::Tenant(
                    TenantCtx::authenticated(tenant, format!("jwt:{subject}")),
                    role,
                )),
                Some(_) => Err(AuthError::InvalidToken(
                    "token issued before its tenant was created",
                )),
                None => Err(AuthError::InvalidToken("unknown tenant")),
            })
        })
        .await
    }

    pub async fn create_tenant(self: &Arc<Self>, tenant: TenantId) -> Result<CreatedKey> {
        let me = self.clone();
        blocking(move || {
            me.catalog.create_tenant(&tenant)?;
            me.new_key(&tenant, Role::TenantAdmin, "initial")
        })
        .await
    }

    fn new_key(&self, tenant: &TenantId, role: Role, name: &str) -> Result<CreatedKey> {
        let k = keys::generate();
        let key = KeyRecord {
            id: k.key_id,
            tenant: tenant.clone(),
            role,
            name: name.to_string(),
            created_at: crate::catalog::now(),
        };
        self.catalog.insert_key(&key, &k.hash)?;
        Ok(CreatedKey {
            key,
            token: k.token,
        })
    }

    /// A new key for the tenant (the admin, or the tenant's own `tenant_admin`).
    pub async fn create_key(
        self: &Arc<Self>,
        tenant: TenantId,
        role: Role,
        name: String,
    ) -> Result<CreatedKey> {
        if name.len() > 128 || name.chars().any(char::is_control) {
            return Err(UserError::Invalid(
                "key name: at most 128 characters, no control characters".into(),
            )
            .into());
        }
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            me.new_key(&tenant, role, &name)
        })
        .await
    }

    pub async fn list_keys(self: &Arc<Self>, tenant: TenantId) -> Result<Vec<KeyRecord>> {
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            me.catalog.keys_of(&tenant)
        })
        .await
    }

    /// Revoke a key. `scope` is the caller's tenant (a `tenant_admin`), or `None` for the admin;
    /// another tenant's key is "not found", exactly like a key that does not exist.
    pub async fn revoke_key(
        self: &Arc<Self>,
        scope: Option<TenantCtx>,
        key_id: String,
    ) -> Result<()> {
        let me = self.clone();
        blocking(move || {
            if me
                .catalog
                .revoke_key(&key_id, scope.as_ref().map(TenantCtx::tenant))?
            {
                Ok(())
            } else {
                Err(UserError::NotFound("key").into())
            }
        })
        .await
    }

    /// Replace a key by a new secret with the same role and name; the old one stops working.
    pub async fn rotate_key(
        self: &Arc<Self>,
        scope: Option<TenantCtx>,
        key_id: String,
    ) -> Result<CreatedKey> {
        let me = self.clone();
        blocking(move || {
            let k = keys::generate();
            let tenant = scope.as_ref().map(TenantCtx::tenant);
            match me.catalog.rotate_key(&key_id, tenant, &k.key_id, &k.hash)? {
                Some(key) => Ok(CreatedKey {
                    key,
                    token: k.token,
                }),
                None => Err(UserError::NotFound("key").into()),
            }
        })
        .await
    }

    // ---- limits and usage ----

    /// The tenant's limits in force (configured defaults under its overrides).
    pub async fn limits(self: &Arc<Self>, tenant: &TenantId) -> Result<Limits> {
        if let Some(l) = self.limiter.cached(tenant) {
            return Ok(l);
        }
        let (me, t) = (self.clone(), tenant.clone());
        blocking(move || me.load_limits(&t)).await
    }

    pub(crate) fn load_limits(&self, tenant: &TenantId) -> Result<Limits> {
        let over = self.tenant_overrides(tenant)?;
        let l = Limits::resolve(&self.config.limits, &over);
        self.limiter.remember(tenant, l);
        Ok(l)
    }

    fn tenant_overrides(&self, tenant: &TenantId) -> Result<TenantLimits> {
        Ok(match self.catalog.tenant_limits(tenant)? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| InternalError::Other(format!("stored limits: {e}")))?,
            None => TenantLimits::default(),
        })
    }

    /// (overrides, limits in force) of a tenant.
    pub async fn tenant_limits(
        self: &Arc<Self>,
        tenant: TenantId,
    ) -> Result<(TenantLimits, Limits)> {
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            let over = me.tenant_overrides(&tenant)?;
            Ok((over.clone(), Limits::resolve(&me.config.limits, &over)))
        })
        .await
    }

    /// Replace a tenant's overrides (admin).
    pub async fn put_tenant_limits(
        self: &Arc<Self>,
        tenant: TenantId,
        over: TenantLimits,
    ) -> Result<Limits> {
        over.validate().map_err(UserError::Invalid)?;
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            let json =
                serde_json::to_string(&over).map_err(|e| InternalError::Other(e.to_string()))?;
            me.catalog.put_tenant_limits(&tenant, &json)?;
            me.limiter.forget(&tenant);
            me.load_limits(&tenant)
        })
        .await
    }

    /// Take a token from the tenant's bucket for `class`, or refuse with when to retry.
    pub async fn admit(self: &Arc<Self>, ctx: &TenantCtx, class: Class) -> Result<()> {
        let limits = self.limits(ctx.tenant()).await?;
        self.limiter
            .take(ctx.tenant(), class, &limits)
            .map_err(|retry_after_secs| UserError::RateLimited { retry_after_secs }.into())
    }

    /// What the tenant stores now: (documents, bytes, chunks).
    pub async fn stored(self: &Arc<Self>, tenant: TenantId) -> Result<(u64, u64, u64)> {
        let me = self.clone();
        blocking(move || me.catalog.stored_totals(&tenant)).await
    }

    /// Usage by day (`from..=to`, `YYYY-MM-DD`) and what the tenant stores now.
    pub async fn usage(
        self: &Arc<Self>,
        tenant: TenantId,
        from: String,
        to: String,
    ) -> Result<UsageReport> {
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            me.flush_usage();
            let mut report = UsageReport::default();
            for (day, metric, value) in me.catalog.usage(&tenant, &from, &to)? {
                if report.days.last().is_none_or(|d| d.day != day) {
                    report.days.push(DayUsage {
                        day: day.clone(),
                        ..Default::default()
                    });
                }
                if let Some(d) = report.days.last_mut() {
                    d.counters.insert(metric, value);
                }
            }
            (report.documents, report.bytes, report.chunks) = me.catalog.stored_totals(&tenant)?;
            Ok(report)
        })
        .await
    }

    pub async fn list_tenants(self: &Arc<Self>) -> Result<Vec<(TenantId, i64, u64)>> {
        let me = self.clone();
        blocking(move || me.catalog.list_tenants()).await
    }

    /// Remove a tenant and all its data: catalog rows, keys, vectors, lexical index, uploads.
    pub async fn delete_tenant(self: &Arc<Self>, tenant: TenantId) -> Result<()> {
        let me = self.clone();
        blocking(move || {
            if !me.catalog.tenant_exists(&tenant)? {
                return Err(UserError::NotFound("tenant").into());
            }
            // No new job of the tenant starts; wait for running ones to finish.
            me.queue.remove_tenant(&tenant);
            let gate = me.tenant_gate(&tenant);
            let _gate = gate.write().unwrap_or_else(|p| p.into_inner());
            for job in me
                .catalog
                .unfinished_jobs()?
                .into_iter()
                .filter(|j| j.tenant == tenant)
            {
                let _ = std::fs::remove_file(me.blobs.join(&job.id));
            }
            me.catalog.delete_tenant(&tenant)?;
            me.vectors.drop_tenant(&tenant)?;
            me.lexical.drop_tenant(&tenant)?;
            me.vectors.flush();
            me.limiter.forget(&tenant);
            me.meter.forget(&tenant);
            me.metrics.forget_tenant(&tenant);
            Ok(())
        })
        .await
    }

    // ---- documents and jobs (tenant) ----

    /// Validate and durably accept a document; its job runs in the background.
    pub async fn submit(self: &Arc<Self>, ctx: &TenantCtx, upload: Upload) -> Result<Submitted> {
        if !self.is_ready() {
            return Err(EngineError::Unavailable {
                reason: "shutting down",
                retry_after_secs: 5,
            });
        }
        validate_metadata(&upload.metadata, &self.config.ingest)?;
        if upload.bytes.is_empty() {
            return Err(UserError::Document {
                code: tenantry_ingest::IngestErrorCode::EmptyDocument,
                message: "document is empty".into(),
            }
            .into());
        }
        let content_type = match detect(
            upload.declared_type.as_deref(),
            upload.file_name.as_deref(),
            &upload.bytes,
        ) {
            Ok(t) => t,
            Err(IngestError::Unsupported(what)) => {
                return Err(UserError::UnsupportedMediaType(what).into())
            }
            // Claims to be a PDF but is not one: accepted, and its job fails with pdf_corrupt.
            Err(_) => ContentType::Pdf,
        };
        let doc_id = upload.doc_id.clone().unwrap_or_else(DocId::generate);
        let title = upload
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| upload.file_name.clone())
            .unwrap_or_else(|| doc_id.to_string());
        too_large("title", title.len(), self.config.ingest.max_title_bytes)?;
        let job_id = uuid::Uuid::new_v4().to_string();
        let new = NewUpload {
            job_id: job_id.clone(),
            doc_id: doc_id.clone(),
            title,
            content_type: content_type.mime().to_string(),
            content_hash: content_hash(&upload.bytes),
            metadata: upload.metadata,
            byte_size: upload.bytes.len() as u64,
        };
        let me = self.clone();
        let ctx2 = ctx.clone();
        let bytes = upload.bytes;
        let max_queued = self.config.ingest.tenant_queue_max;
        let quota = self.limits(ctx.tenant()).await?.quota();
        let outcome = blocking(move || {
            if !me.catalog.tenant_exists(ctx2.tenant())? {
                return Err(UserError::NotFound("tenant").into());
            }
            if me.catalog.queued_jobs_of(ctx2.tenant())? >= max_queued {
                return Err(UserError::TenantQueueFull {
                    retry_after_secs: 5,
                }
                .into());
            }
            // The upload is on disk before the job is acknowledged, so a crash cannot lose it.
            let blob = me.blobs.join(&new.job_id);
            std::fs::write(&blob, &bytes)?;
            let outcome = me.catalog.accept_upload(ctx2.tenant(), &new, &quota);
            if !matches!(outcome, Ok(UploadOutcome::Queued { .. })) {
                let _ = std::fs::remove_file(&blob);
            }
            outcome
        })
        .await?;
        if let UploadOutcome::Queued { .. } = outcome {
            if !self.queue.push(ctx.tenant(), job_id.clone()) {
                // Persisted but not queued: fail the job and tell the client to slow down.
                tracing::warn!(job_id = %job_id, "ingestion queue full");
                let me = self.clone();
                let jid = job_id.clone();
                blocking(move || {
                    if let Some(job) = me.catalog.job_by_id(&jid)? {
                        me.catalog.fail_job(
                            &job,
                            "queue_full",
                            "the ingestion queue was full; upload again later",
                        )?;
                    }
                    let _ = std::fs::remove_file(me.blobs.join(&jid));
                    me.run_gc()
                })
                .await?;
                return Err(EngineError::Unavailable {
                    reason: "ingestion queue full",
                    retry_after_secs: 5,
                });
            }
        }
        Ok(Submitted { doc_id, job_id })
    }

    fn notify(&self, job_id: &str) {
        let waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job_id);
        for w in waiters.into_iter().flatten() {
            let _ = w.send(());
        }
    }

    /// Wait until the job is final (or `timeout` passes) and return it.
    pub async fn wait_job(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        job_id: &str,
        timeout: Duration,
    ) -> Result<JobRecord> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job_id.to_string())
            .or_default()
            .push(tx);
        let job = self.job(ctx, job_id).await?;
        if job.status.is_final() {
            self.notify(job_id);
            return Ok(job);
        }
        let _ = tokio::time::timeout(timeout, rx).await;
        self.job(ctx, job_id).await
    }

    pub async fn job(self: &Arc<Self>, ctx: &TenantCtx, job_id: &str) -> Result<JobRecord> {
        let (me, ctx, id) = (self.clone(), ctx.clone(), job_id.to_string());
        blocking(move || {
            me.catalog
                .job(ctx.tenant(), &id)?
                .ok_or_else(|| UserError::NotFound("job").into())
        })
        .await
    }

    pub async fn document(self: &Arc<Self>, ctx: &TenantCtx, id: &DocId) -> Result<DocumentRecord> {
        let (me, ctx, id) = (self.clone(), ctx.clone(), id.clone());
        blocking(move || {
            me.catalog
                .document(ctx.tenant(), &id)?
                .ok_or_else(|| UserError::NotFound("document").into())
        })
        .await
    }

    pub async fn documents(
        self: &Arc<Self>,
        ctx: &TenantCtx,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<DocumentRecord>> {
        let (me, ctx) = (self.clone(), ctx.clone());
        blocking(move || me.catalog.documents(ctx.tenant(), limit, after.as_deref())).await
    }

    /// Hide the document at once; its chunks leave both legs right after.
    pub async fn delete_document(self: &Arc<Self>, ctx: &TenantCtx, id: &DocId) -> Result<()> {
        let (me, ctx, id) = (self.clone(), ctx.clone(), id.clone());
        blocking(move || {
            if !me.catalog.delete_document(ctx.tenant(), &id)? {
                return Err(UserError::NotFound("document").into());
            }
            me.run_gc()
        })
        .await
    }

    /// Remove chunks of replaced, deleted or failed versions from both legs.
    pub(crate) fn run_gc(&self) -> Result<()> {
        for task in self.catalog.pending_gc()? {
            let ctx = TenantCtx::system(task.tenant.clone());
            self.lexical
                .delete_versions(&ctx, &task.doc, task.versions.clone())?;
            self.vectors
                .delete_versions(&ctx, &task.doc, task.versions.clone())?;
            self.catalog.gc_done(&task)?;
        }
        Ok(())
    }

    /// Run one ingestion job to its end. Blocking. Every failure becomes the job's error; a
    /// panic anywhere in the pipeline is caught here.
    fn run_job(&self, job_id: &str) -> Result<()> {
        let Some(job) = self.catalog.job_by_id(job_id)? else {
            return Ok(());
        };
        // Shared with the tenant's other jobs, exclusive with its deletion: a job never writes
        // into a tenant that is being, or has been, deleted.
        let gate = self.tenant_gate(&job.tenant);
        let _gate = gate.read().unwrap_or_else(|p| p.into_inner());
        // Read again under the gate: a delete that came first removed the row.
        let Some(job) = self.catalog.job_by_id(job_id)? else {
            return Ok(());
        };
        if job.status.is_final() {
            return Ok(());
        }
        self.catalog.mark_running(job_id)?;
        let span = tracing::info_span!("job", job_id, tenant = %job.tenant);
        let _entered = span.enter();
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.index_version(&job)));
        let blob = self.blobs.join(job_id);
        match outcome {
            Ok(Ok(footprint)) => {
                let n = footprint.chunks;
                let quota = self.load_limits(&job.tenant)?.quota();
                let committed = self.catalog.commit_job(&job, footprint, &quota)?;
                match committed {
                    CommitOutcome::Committed => {
                        self.metrics.job("succeeded");
                        self.meter.add(&job.tenant, Metric::DocumentsIngested, 1);
                        self.meter.add(&job.tenant, Metric::ChunksIngested, n);
                    }
                    CommitOutcome::Superseded => self.metrics.job("superseded"),
                    CommitOutcome::QuotaExceeded { .. } => self.metrics.job("quota_exceeded"),
                }
                tracing::debug!(
                    job_id,
                    chunks = n,
                    ms = started.elapsed().as_millis() as u64,
                    superseded = (committed == CommitOutcome::Superseded),
                    "ingestion job done"
                );
            }
            Ok(Err(JobError::Document(e))) => {
                self.metrics.job("failed");
                tracing::info!(job_id, code = e.code().as_str(), "document rejected");
                self.catalog
                    .fail_job(&job, e.code().as_str(), &e.to_string())?;
            }
            Ok(Err(JobError::Engine(e))) => {
                self.metrics.job("failed");
                tracing::error!(job_id, error = %e, "ingestion job failed");
                self.catalog.fail_job(
                    &job,
                    "internal_error",
                    "internal error while indexing; see server logs",
                )?;
            }
            Err(_) => {
                self.metrics.job("failed");
                tracing::error!(job_id, "ingestion job panicked");
                self.catalog.fail_job(
                    &job,
                    "internal_error",
                    "internal error while indexing; see server logs",
                )?;
            }
        }
        let _ = std::fs::remove_file(blob);
        self.run_gc()
    }

    /// Parse, chunk, embed (through the cache) and write one version to both legs. The version
    /// stays invisible until the catalog commits it.
    fn index_version(&self, job: &JobRecord) -> Result<Footprint, JobError> {
        let deadline = Instant::now() + Duration::from_secs(self.config.ingest.job_timeout_secs);
        let bytes = std::fs::read(self.blobs.join(&job.id)).map_err(EngineError::from)?;
        let ct = ContentType::from_mime(&job.content_type).unwrap_or(ContentType::Text);
        let (chunks, contextual) = self.contextual_chunks(&bytes, ct, &job.title)?;
        let ctx = TenantCtx::system(job.tenant.clone());
        let texts: Vec<&str> = contextual.iter().map(String::as_str).collect();
        let vectors = self.embed_cached(&ctx, (&job.doc_id, job.version), &texts, deadline)?;
        let stored: Vec<StoredChunk> = chunks
            .iter()
            .map(|c| StoredChunk {
                doc_id: job.doc_id.clone(),
                version: job.version,
                ordinal: c.ordinal,
                title: job.title.clone(),
                text: c.text.clone(),
                content_type: job.content_type.clone(),
                page: c.page,
                heading_path: c.heading_path.clone(),
                metadata: job.metadata.clone(),
                start: c.start as u64,
                end: c.end as u64,
            })
            .collect();
        // A retried job may have written part of this version before: start clean.
        let v = job.version..job.version + 1;
        self.lexical.delete_versions(&ctx, &job.doc_id, v.clone())?;
        self.vectors
            .delete_versions(&ctx, &job.doc_id, v)
            .map_err(EngineError::from)?;
        let points: Vec<(StoredChunk, Vec<f32>)> = stored.iter().cloned().zip(vectors).collect();
        self.vectors
            .upsert(&ctx, &points)
            .map_err(EngineError::from)?;
        self.lexical.add(&ctx, &stored)?;
        Ok(Footprint::of(&stored, self.embedder.dim()))
    }

    /// Parse and chunk a document in the sandboxed worker; also returns the text the dense leg
    /// embeds for each chunk (`tenantry_ingest::chunk::embedding_text`).
    pub(crate) fn contextual_chunks(
        &self,
        bytes: &[u8],
        ct: ContentType,
        title: &str,
    ) -> Result<(Vec<tenantry_ingest::chunk::Chunk>, Vec<String>), JobError> {
        let parsed = self.sandbox.run(bytes, ct, title)?;
        Ok((parsed.chunks, parsed.contextual))
    }

    /// Benchmark loading only (`tenantry bench`, in-process, on its own data directory): embeddings
    /// missing from a tenant's cache are looked up in `source`'s cache before the model is run.
    /// The server never calls this: sharing a cache across tenants would let one tenant learn
    /// from timing what another has stored.
    pub fn seed_embeddings_from(&self, source: Option<TenantId>) {
        *self
            .embedding_seed
            .write()
            .unwrap_or_else(|p| p.into_inner()) = source;
    }

    /// Embed with the tenant's cache: unchanged text is never embedded twice.
    pub(crate) fn embed_cached(
        &self,
        ctx: &TenantCtx,
        owner: (&DocId, u64),
        texts: &[&str],
        deadline: Instant,
    ) -> Result<Vec<Vec<f32>>, JobError> {
        let model = self.embedder.model_id().as_bytes();
        let hashes: Vec<[u8; 32]> = texts
            .iter()
            .map(|t| {
                let mut h = Sha256::new();
                h.update(model);
                h.update([0]);
                h.update(t.as_bytes());
                h.finalize().into()
            })
            .collect();
        let mut cached = self.catalog.claim_cached(ctx.tenant(), owner, &hashes)?;
        let seed = self
            .embedding_seed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(seed) = seed {
            let unseen: Vec<[u8; 32]> = hashes
                .iter()
                .filter(|h| !cached.contains_key(*h))
                .copied()
                .collect();
            cached.extend(self.catalog.cached_vectors(&seed, &unseen)?);
        }
        let missing: Vec<usize> = (0..texts.len())
            .filter(|i| !cached.contains_key(&hashes[*i]))
            .collect();
        for batch in missing.chunks(32) {
            // Checked between batches: a job overruns its budget by one batch at most.
            if Instant::now() >= deadline {
                return Err(IngestError::JobTimeout(self.config.ingest.job_timeout_secs).into());
            }
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            self.embedded_texts
                .fetch_add(inputs.len() as u64, Ordering::Relaxed);
            let tokens: usize = inputs.iter().map(|t| self.count_tokens(t)).sum();
            self.meter
                .add(ctx.tenant(), Metric::EmbeddingTokens, tokens as u64);
            let started = Instant::now();
            let out = self
                .embedder
                .embed(Lane::Ingest, &inputs)
                .map_err(|e| EngineError::from(InternalError::Embedding(e.to_string())))?;
            self.metrics.embed_batch(started.elapsed());
            let items: Vec<([u8; 32], &[f32])> = batch
                .iter()
                .zip(&out)
                .map(|(&i, v)| (hashes[i], v.as_slice()))
                .collect();
            self.catalog.cache_vectors(ctx.tenant(), owner, &items)?;
            for (&i, v) in batch.iter().zip(out) {
                cached.insert(hashes[i], v);
            }
        }
        Ok(hashes
            .iter()
            .map(|h| cached.get(h).cloned().unwrap_or_default())
            .collect())
    }

    // ---- retrieval ----

    pub async fn query(self: &Arc<Self>, ctx: &TenantCtx, q: Query) -> Result<QueryOutput> {
        self.meter.add(ctx.tenant(), Metric::Queries, 1);
        query::run(self, ctx, q).await
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

pub(crate) enum JobError {
    Document(IngestError),
    Engine(EngineError),
}

impl From<IngestError> for JobError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Embedding(m) => Self::Engine(InternalError::Embedding(m).into()),
            other => Self::Document(other),
        }
    }
}

impl From<EngineError> for JobError {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

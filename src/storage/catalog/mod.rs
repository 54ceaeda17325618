//! The catalog seam: tenants, hashed API keys, documents and their versions, jobs, pending
//! garbage collection, usage, threads, tenant configuration and the per-tenant embedding cache.
//!
//! A document's chunks carry a version. Readers only see chunks of a document's `live_version`,
//! which changes in one transaction when a job commits: that is what makes a document atomic
//! across both retrieval legs and across crashes.
mod pg;
mod sqlite;

pub use pg::PostgresCatalog;
pub use sqlite::{SqliteCatalog, OCCUPIED_BYTES};

use std::collections::HashMap;

use crate::domain::{DocId, Footprint, TenantId};
use crate::error::{EngineError, Result, UserError};

/// One question and answer of a conversation thread, as stored.
#[derive(Debug, Clone)]
pub struct TurnRecord {
    pub seq: u32,
    pub question: String,
    /// The self-contained question retrieval actually ran.
    pub standalone: String,
    pub answer: String,
    /// The citations as JSON (see `answer::Citation`).
    pub citations: String,
    pub grounded: bool,
    pub code: Option<String>,
    pub created_at: i64,
}

/// A conversation thread as listed: its first question stands for it.
#[derive(Debug, Clone)]
pub struct ThreadSummary {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub turns: u32,
    pub first_question: String,
}

/// A page of jobs, newest first, and where the next page starts (opaque to callers).
#[derive(Debug, Clone, Default)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    pub next: Option<String>,
}

/// An API key as listed: never its secret or hash.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: TenantId,
    pub role: crate::domain::Role,
    pub name: String,
    pub created_at: i64,
}

/// Storage quotas of one tenant; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quota {
    pub max_documents: Option<u64>,
    /// Bytes the tenant occupies: see [`OCCUPIED_BYTES`].
    pub max_bytes: Option<u64>,
    pub max_chunks: Option<u64>,
}

impl Quota {
    /// The quota an upload breaks, if any. The catalogs count inside the accepting transaction
    /// and pass `documents` (live and pending) when `max_documents` is set, and `other_bytes`
    /// (occupied without this document) when `max_bytes` is set.
    fn refuse_upload(
        &self,
        new_document: bool,
        byte_size: u64,
        documents: Option<u64>,
        other_bytes: Option<u64>,
    ) -> Option<UserError> {
        if let (Some(max), Some(docs)) = (self.max_documents, documents) {
            if new_document && docs >= max {
                return Some(UserError::QuotaExceeded {
                    what: "documents",
                    limit: max,
                });
            }
        }
        if let (Some(max), Some(others)) = (self.max_bytes, other_bytes) {
            // The upload's own size stands in for its footprint until it commits (checked
            // again there).
            if others + byte_size > max {
                return Some(UserError::QuotaExceeded {
                    what: "bytes",
                    limit: max,
                });
            }
        }
        None
    }

    /// The quota committing a version of `footprint` breaks, if any, as (what, limit, the job's
    /// error message). `other_chunks` and `other_bytes` (the tenant's other documents) are
    /// given when `max_chunks` and `max_bytes` are set.
    fn refuse_commit(
        &self,
        footprint: Footprint,
        other_chunks: Option<u64>,
        other_bytes: Option<u64>,
    ) -> Option<(&'static str, u64, String)> {
        let chunks = footprint.chunks;
        if let (Some(max), Some(others)) = (self.max_chunks, other_chunks) {
            if others + chunks > max {
                return Some(("chunks", max, format!("this document's {chunks} chunks would take the tenant past its quota of {max} chunks")));
            }
        }
        if let (Some(max), Some(others)) = (self.max_bytes, other_bytes) {
            if others + footprint.bytes > max {
                return Some(("bytes", max, format!(
                    "this document occupies {} bytes once indexed, which would take the tenant past its quota of {max} bytes",
                    footprint.bytes
                )));
            }
        }
        None
    }
}

/// Columns the row readers of both catalogs expect, in their order.
const KEY_COLS: &str = "id, tenant, role, name, created_at";
const DOC_COLS: &str = "id, title, content_type, content_hash, metadata, byte_size, chunk_count, live_version, status, created_at, updated_at";
const JOB_COLS: &str = "id, tenant, doc_id, version, status, title, content_type, content_hash, metadata, byte_size, attempts, error_code, error_message, created_at, updated_at, node, stage, chunks_done, chunks_total";

/// `rows` holds up to `limit + 1` jobs: one more than the page means there is a next page,
/// which starts after the page's last job. The cursor is that job's id (random): a sequence
/// number would count every tenant's uploads in between.
fn page_of(mut rows: Vec<JobRecord>, limit: usize) -> JobPage {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|j| j.id.clone())
    } else {
        None
    };
    JobPage { jobs: rows, next }
}

fn meta_json(m: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(m.clone()).to_string()
}

fn meta_parse(s: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(s).unwrap_or_default()
}

/// A cached vector as stored: little-endian f32s.
fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A tenant's stored generator configuration.
#[derive(Debug, Clone)]
pub struct StoredTenantConfig {
    pub settings: String,
    pub sealed_key: Option<crate::secrets::Sealed>,
    pub key_fingerprint: Option<String>,
    pub updated_at: i64,
}

/// What a config update does to the stored API key.
pub enum KeyUpdate {
    Keep,
    Clear,
    Set {
        sealed: crate::secrets::Sealed,
        fingerprint: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocStatus {
    /// No version is live yet; a job is queued or running.
    Pending,
    Ready,
    /// No version is live and the last job failed.
    Failed,
    Deleted,
}

impl DocStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            "deleted" => Self::Deleted,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Queued,
        }
    }
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A document's live version and the fields every result of it carries.
#[derive(Debug, Clone)]
pub struct LiveDocument {
    pub version: u64,
    pub title: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct DocumentRecord {
    pub id: DocId,
    pub title: String,
    pub content_type: String,
    pub content_hash: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub byte_size: u64,
    pub chunk_count: u64,
    pub live_version: Option<u64>,
    pub status: DocStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub tenant: TenantId,
    pub doc_id: DocId,
    pub version: u64,
    pub status: JobStatus,
    pub title: String,
    pub content_type: String,
    pub content_hash: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub byte_size: u64,
    pub attempts: u32,
    pub error: Option<(String, String)>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The node whose lease the job runs under, while it runs.
    pub node: Option<String>,
    /// Where the running job is, as its worker last reported.
    pub progress: JobProgress,
}

/// What a running job reports: its stage, and chunks embedded (or found in the embedding
/// cache) of the chunks its document made, once parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub stage: Option<JobStage>,
    pub chunks_done: u64,
    pub chunks_total: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStage {
    /// The sandboxed worker parses the document and cuts it into chunks (one step there).
    Parsing,
    Embedding,
    /// Writing the version to both legs and committing it.
    Indexing,
}

impl JobStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parsing => "parsing",
            Self::Embedding => "embedding",
            Self::Indexing => "indexing",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "parsing" => Self::Parsing,
            "embedding" => Self::Embedding,
            "indexing" => Self::Indexing,
            _ => return None,
        })
    }
}

fn progress_of(stage: Option<String>, done: Option<i64>, total: Option<i64>) -> JobProgress {
    JobProgress {
        stage: stage.as_deref().and_then(JobStage::parse),
        chunks_done: done.unwrap_or(0).max(0) as u64,
        chunks_total: total.map(|t| t.max(0) as u64),
    }
}

/// Chunks of `doc` whose version is in `versions` must be removed from both legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcTask {
    pub tenant: TenantId,
    pub doc: DocId,
    pub versions: std::ops::Range<u64>,
}

/// What an upload asks for.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub job_id: String,
    pub doc_id: DocId,
    pub title: String,
    pub content_type: String,
    pub content_hash: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub byte_size: u64,
    pub payload: Payload,
}

/// Who runs an accepted upload's job.
#[derive(Clone)]
pub enum Payload {
    /// Queue it for any node's workers; the bytes stay in the catalog until the job ends, so
    /// whichever node claims it can read them.
    Bytes(Vec<u8>),
    /// The caller runs it itself (an archive import, whose chunks come with their vectors):
    /// the job starts running, held by `node` for `lease`.
    HeldBy {
        node: String,
        lease: std::time::Duration,
    },
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::HeldBy { node, .. } => write!(f, "HeldBy({node})"),
        }
    }
}

/// Bounds on unfinished jobs, checked in the accepting transaction (queued uploads only).
#[derive(Debug, Clone, Copy)]
pub struct QueueCaps {
    /// Queued and running jobs of one tenant (429 past it).
    pub per_tenant: usize,
    /// Queued and running jobs of the whole deployment (503 past it).
    pub total: usize,
}

impl QueueCaps {
    /// The cap an upload would break given the counts, as the error to return.
    fn refuse(&self, tenant_jobs: u64, all_jobs: u64) -> Option<EngineError> {
        if tenant_jobs >= self.per_tenant as u64 {
            return Some(
                UserError::TenantQueueFull {
                    retry_after_secs: 5,
                }
                .into(),
            );
        }
        (all_jobs >= self.total as u64).then_some(EngineError::Unavailable {
            reason: "ingestion queue full",
            retry_after_secs: 5,
        })
    }
}

/// Held while a job of the tenant runs (shared) or while the tenant is deleted (exclusive);
/// released when dropped. Across nodes when the catalog is shared.
pub struct TenantGate {
    _held: Box<dyn Send>,
}

/// The in-process tenant gates of a catalog no other process shares (a reader-writer lock per
/// tenant that hands out owned guards).
#[derive(Default)]
pub struct LocalGates {
    /// Per tenant: readers holding it, or -1 for the writer.
    held: std::sync::Mutex<HashMap<TenantId, i64>>,
    changed: std::sync::Condvar,
}

struct LocalGuard {
    gates: std::sync::Arc<LocalGates>,
    tenant: TenantId,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        let mut held = self.gates.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.tenant) {
            if *n > 1 {
                *n -= 1;
            } else {
                held.remove(&self.tenant);
            }
        }
        drop(held);
        self.gates.changed.notify_all();
    }
}

impl LocalGates {
    /// Wait up to `wait` for the tenant's gate. A waiting writer does not stop new readers:
    /// the engine deletes the tenant's jobs before it asks, so no new reader comes.
    pub fn acquire(
        self: &std::sync::Arc<Self>,
        tenant: &TenantId,
        exclusive: bool,
        wait: std::time::Duration,
    ) -> Result<TenantGate> {
        let deadline = std::time::Instant::now() + wait;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let n = held.get(tenant).copied().unwrap_or(0);
            let free = if exclusive { n == 0 } else { n >= 0 };
            if free {
                held.insert(tenant.clone(), if exclusive { -1 } else { n + 1 });
                return Ok(TenantGate {
                    _held: Box::new(LocalGuard {
                        gates: self.clone(),
                        tenant: tenant.clone(),
                    }),
                });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(tenant_busy());
            }
            held = self
                .changed
                .wait_timeout(held, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Whether a job row (`status`, `node`, `attempts`) is still `job`'s to end: unfinished and,
/// when `job` names a node, running under that node's same claim (a node that lost a lease and
/// claimed the job again holds the new claim, not the old one). Both catalogs decide with it,
/// under the job row's lock.
fn still_held(job: &JobRecord, status: &str, node: Option<&str>, attempts: u32) -> bool {
    !JobStatus::parse(status).is_final()
        && (job.node.is_none()
            || (status == "running" && node == job.node.as_deref() && attempts == job.attempts))
}

fn tenant_busy() -> EngineError {
    EngineError::Unavailable {
        reason: "the tenant is busy (ingestion or deletion); try again",
        retry_after_secs: 5,
    }
}

/// A node of the deployment, as its heartbeat records it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    /// Where it listens (for operators; nothing connects to it through the catalog).
    pub addr: String,
    pub started_at: i64,
}

#[derive(Debug)]
pub enum UploadOutcome {
    /// A job was queued for this version.
    Queued { version: u64 },
    /// Same content, title and metadata as the live version: nothing to do (job already succeeded).
    Unchanged,
}

/// How a job ended, as committed.
#[derive(Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The tenant's chunk or byte quota would be exceeded; the job failed and its version is
    /// garbage.
    QuotaExceeded {
        what: &'static str,
        limit: u64,
    },
    /// A newer upload or a delete of the same document came first; this version never shows.
    Superseded,
    /// The committing node no longer holds the job (its lease expired and another node took
    /// it, or the node handed it back): nothing was written; the holder finishes it.
    NotHeld,
}

/// The transactional store every node of a deployment shares.
///
/// Contract: each method is one transaction (all or nothing) and durable when it returns `Ok`;
/// tenant-scoped methods read and change only rows of the tenant they are given. Methods block
/// (call them from blocking threads). Quotas are checked inside the transaction that would
/// exceed them (`accept_upload`, `commit_job`), so concurrent writers cannot both pass a check.
pub trait Catalog: Send + Sync {
    fn create_tenant(&self, tenant: &TenantId) -> Result<()>;

    /// A trivial read: the catalog is reachable and readable.
    fn ping(&self) -> Result<()>;

    /// When the tenant was created (seconds), if it exists.
    fn tenant_created_at(&self, tenant: &TenantId) -> Result<Option<i64>>;

    fn tenant_exists(&self, tenant: &TenantId) -> Result<bool>;

    /// (id, created_at, live documents) for every tenant.
    fn list_tenants(&self) -> Result<Vec<(TenantId, i64, u64)>>;

    /// Removes every catalog row of the tenant in one transaction, and records that its data
    /// must leave both legs (see [`Catalog::pending_drops`]).
    fn delete_tenant(&self, tenant: &TenantId) -> Result<bool>;

    /// Deleted tenants whose data may still be in the legs: any node finishes the removal.
    fn pending_drops(&self) -> Result<Vec<TenantId>>;

    /// The tenant's data is gone from both legs.
    fn drop_done(&self, tenant: &TenantId) -> Result<()>;

    fn insert_key(&self, key: &KeyRecord, hash: &[u8]) -> Result<()>;

    /// The key and its secret's hash.
    fn key(&self, key_id: &str) -> Result<Option<(KeyRecord, Vec<u8>)>>;

    fn keys_of(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>>;

    /// Delete a key; with `tenant`, only if it belongs to that tenant.
    fn revoke_key(&self, key_id: &str, tenant: Option<&TenantId>) -> Result<bool>;

    /// Replace a key by a new one with the same tenant, role and name, in one transaction: the
    /// old secret stops working when the new one starts.
    fn rotate_key(
        &self,
        old_id: &str,
        tenant: Option<&TenantId>,
        new_id: &str,
        hash: &[u8],
    ) -> Result<Option<KeyRecord>>;

    fn tenant_limits(&self, tenant: &TenantId) -> Result<Option<String>>;

    fn put_tenant_limits(&self, tenant: &TenantId, json: &str) -> Result<()>;

    /// What the tenant stores now: (live documents, occupied bytes, chunks). The bytes are what
    /// `max_bytes` is checked against ([`OCCUPIED_BYTES`]).
    fn stored_totals(&self, tenant: &TenantId) -> Result<(u64, u64, u64)>;

    /// Whether the tenant already occupies `max_bytes` or more (a conversation turn is refused).
    fn at_byte_quota(&self, tenant: &TenantId, max_bytes: u64) -> Result<bool>;

    /// Add counters (tenant, day, metric, delta) in one transaction.
    fn add_usage(&self, rows: &[(TenantId, String, String, u64)]) -> Result<()>;

    /// (day, metric, value) rows of the tenant with `from <= day <= to` (YYYY-MM-DD).
    fn usage(&self, tenant: &TenantId, from: &str, to: &str) -> Result<Vec<(String, String, u64)>>;

    /// Who owns the tenant's thread, if it exists.
    fn thread_owner(&self, tenant: &TenantId, thread: &str) -> Result<Option<String>>;

    /// The thread's turns, oldest first (at most the `last` most recent ones); `None` if the
    /// tenant has no such thread of `owner`'s.
    fn thread(
        &self,
        tenant: &TenantId,
        owner: &str,
        thread: &str,
        last: Option<usize>,
    ) -> Result<Option<(i64, Vec<TurnRecord>)>>;

    /// Append a turn, creating the thread (owned by `owner`) on first use; `None` when the
    /// thread belongs to someone else.
    fn append_turn(
        &self,
        tenant: &TenantId,
        owner: &str,
        thread: &str,
        turn: &TurnRecord,
    ) -> Result<Option<u32>>;

    fn delete_thread(&self, tenant: &TenantId, owner: &str, thread: &str) -> Result<bool>;

    /// The owner's threads in the tenant, most recently updated first.
    fn threads(&self, tenant: &TenantId, owner: &str, limit: usize) -> Result<Vec<ThreadSummary>>;

    fn tenant_config(&self, tenant: &TenantId) -> Result<Option<StoredTenantConfig>>;

    fn put_tenant_config(&self, tenant: &TenantId, settings: &str, key: KeyUpdate) -> Result<()>;

    /// Record an upload: allocate the next version of the document and queue its job with the
    /// uploaded bytes (or start it held by the caller, see [`Payload`]), in one transaction,
    /// unless the live version already has this exact content, title and metadata. Quotas and
    /// `caps` are checked in that transaction.
    fn accept_upload(
        &self,
        tenant: &TenantId,
        up: &NewUpload,
        quota: &Quota,
        caps: &QueueCaps,
    ) -> Result<UploadOutcome>;

    /// The bytes of an unfinished job's upload (removed when the job ends).
    fn upload(&self, job_id: &str) -> Result<Option<Vec<u8>>>;

    fn job(&self, tenant: &TenantId, job_id: &str) -> Result<Option<JobRecord>>;

    fn job_by_id(&self, job_id: &str) -> Result<Option<JobRecord>>;

    /// Jobs queued or running.
    fn unfinished_jobs(&self) -> Result<Vec<JobRecord>>;

    /// Jobs newest first (by submission): one tenant's, or with `None` every tenant's (the
    /// operator's view). `before` is a page's `next` (a job id in the same scope); one that
    /// names no job there gives an empty page, an empty one the first page.
    fn recent_jobs(
        &self,
        tenant: Option<&TenantId>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<JobPage>;

    /// Queued and running jobs of the whole deployment.
    fn queue_depth(&self) -> Result<u64>;

    // ---- the durable job queue every node's workers share ----

    /// Claim the next job for `node`: a queued job whose delay has passed, or a running job
    /// whose lease expired (its node died or stalled). Fair across tenants: the tenant served
    /// least recently first, then its oldest job. The attempt is counted and the lease set in
    /// the claiming transaction, before anything runs, so a job that kills its node is not
    /// retried forever. Concurrent claims (other nodes) never get the same job.
    fn claim_job(&self, node: &str, lease: std::time::Duration) -> Result<Option<JobRecord>>;

    /// Extend the leases of `jobs` that `node` still holds (its heartbeat); returns how many.
    fn renew_leases(
        &self,
        node: &str,
        jobs: &[String],
        lease: std::time::Duration,
    ) -> Result<usize>;

    /// Record the progress of a job `job.node` holds (under its claim); a no-op otherwise.
    fn report_progress(&self, job: &JobRecord, progress: &JobProgress) -> Result<()>;

    /// Hand a running job of `node` back to the queue, claimable after `delay` (storage did not
    /// answer; or at once when the node drains). False if `node` no longer holds it.
    fn release_job(&self, job_id: &str, node: &str, delay: std::time::Duration) -> Result<bool>;

    /// Make every running job claimable now. Only for a catalog no other node shares, at start:
    /// the jobs a crashed previous process held.
    fn expire_leases(&self) -> Result<usize>;

    /// The tenant's gate, waiting up to `wait` for it: shared by the tenant's running jobs,
    /// exclusive for its deletion, across every node that shares the catalog.
    fn tenant_gate(
        &self,
        tenant: &TenantId,
        exclusive: bool,
        wait: std::time::Duration,
    ) -> Result<TenantGate>;

    /// Record `node`'s heartbeat; returns how many nodes (this one included) beat within
    /// `alive`.
    fn heartbeat(&self, node: &NodeInfo, alive: std::time::Duration) -> Result<usize>;

    /// Forget a node that stops.
    fn leave(&self, node: &str) -> Result<()>;

    /// Make `job`'s version the live one, atomically, if it is still the newest upload of its
    /// document and (when `job.node` is set) that node still holds the job. Queues garbage
    /// collection of older versions in the same transaction; the upload's bytes go.
    fn commit_job(
        &self,
        job: &JobRecord,
        footprint: Footprint,
        quota: &Quota,
    ) -> Result<CommitOutcome>;

    /// End the job as failed (its version is garbage, its upload goes); false, with nothing
    /// written, when `job.node` is set and that node no longer holds it.
    fn fail_job(&self, job: &JobRecord, code: &str, message: &str) -> Result<bool>;

    fn document(&self, tenant: &TenantId, id: &DocId) -> Result<Option<DocumentRecord>>;

    fn documents(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<DocumentRecord>>;

    /// Hide a document at once and queue removal of all its chunks. Pending jobs become stale.
    fn delete_document(&self, tenant: &TenantId, id: &DocId) -> Result<bool>;

    /// Live version of each given document that has one.
    /// The live version of each of `ids` that has one, with the fields results show (kept
    /// once per document here, never per chunk in the legs).
    fn live_documents(
        &self,
        tenant: &TenantId,
        ids: &[&str],
    ) -> Result<HashMap<String, LiveDocument>>;

    fn pending_gc(&self) -> Result<Vec<GcTask>>;

    /// The task's chunks are gone from both legs: forget it, and the cached embeddings that
    /// belonged to those versions (a live version that shared one claimed it when it was built).
    fn gc_done(&self, task: &GcTask) -> Result<()>;

    fn cached_vectors(
        &self,
        tenant: &TenantId,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<f32>>>;

    /// Store new embeddings, owned by the version `owner` that computed them.
    fn cache_vectors(
        &self,
        tenant: &TenantId,
        owner: (&DocId, u64),
        items: &[([u8; 32], &[f32])],
    ) -> Result<()>;

    /// The tenant's cached embeddings of `hashes`, handed over to `owner` as they are read, so
    /// that collecting the version that first computed them does not drop them while `owner`
    /// uses them.
    fn claim_cached(
        &self,
        tenant: &TenantId,
        owner: (&DocId, u64),
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<f32>>>;
}

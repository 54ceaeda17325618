//! Both retrieval legs on a Qdrant cluster through `qdrant-client` (gRPC): one collection per
//! deployment, one point per chunk holding its dense vector (`dense`), its BM25 sparse vector
//! (`bm25`) and its payload.
//!
//! Tenancy, as Qdrant recommends it (tiered multitenancy, Qdrant 1.16+):
//! - custom sharding: small tenants share the fallback shard key `shared`; a tenant promoted
//!   past `qdrant.promote_chunks` (or by `tenantry tenants promote`) has its own shard key, so
//!   its points live in exactly one shard key either way. Every call names the tenant's key
//!   with `shared` as fallback, so routing needs no lookup;
//! - a `tenant_id` keyword index with `is_tenant: true` and per-tenant HNSW graphs
//!   (`payload_m`, global `m = 0`);
//! - every read and write carries a `tenant_id` filter, and every returned point's tenant is
//!   checked again.
//!
//! BM25 statistics per tenant: the `bm25` vector has Qdrant's IDF modifier, and every lexical
//! query sets the IDF corpus (Qdrant 1.19) to the tenant's own points. Qdrant computes IDF per
//! shard; because a tenant's points are all in one shard key (one shard by default), the
//! statistics are exactly the tenant's. Term-frequency weights are computed here
//! (`lexical::analysis`) with a fixed average length, so no weight depends on another document.
//!
//! The client is async; the storage seams are blocking. The store owns a small runtime that
//! drives the gRPC connections, and blocking callers wait on it. Every operation is
//! idempotent (upsert by id, delete by filter, update vectors by id), so transient failures
//! (a node restarting, a leader election, a shard moving) are retried on the next node with a
//! bounded backoff; after `qdrant.attempts` the caller gets `StorageUnavailable` (503).
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use qdrant_client::qdrant::update_collection_cluster_setup_request::Operation;
use qdrant_client::qdrant::{
    point_id::PointIdOptions, shard_key, vector_output, Condition, CountPointsBuilder,
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, CreateShardKeyBuilder,
    CreateShardKeyRequestBuilder, DeletePointsBuilder, DeleteShardKeyRequestBuilder, Distance,
    FieldType, Filter, GetPointsBuilder, HnswConfigDiffBuilder, IdfParamsBuilder,
    KeywordIndexParamsBuilder, ListShardKeysRequest, Modifier, NamedVectors, PointId, PointStruct,
    PointVectors, Query, QueryPointsBuilder, Range as QRange, ReplicaState, ReplicatePointsBuilder,
    ScrollPointsBuilder, SearchParamsBuilder, ShardKeySelector, ShardKeySelectorBuilder,
    ShardingMethod, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
    UpdateCollectionClusterSetupRequestBuilder, UpdatePointVectorsBuilder, UpsertPointsBuilder,
    Value as QValue, Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::qdrant::{PayloadIncludeSelector, VectorsSelector};
use qdrant_client::{Qdrant, QdrantError};
use serde_json::Value;

use super::lexical::{analysis, LexicalStore};
use super::vector::{
    chunk_from_payload, chunk_payload, owned_by, point_uuid, VResult, VectorStore,
};
use crate::config::QdrantConfig;
use crate::domain::{ChunkFilter, ChunkKey, DocId, LegHit, StoredChunk, TenantCtx, TenantId};
use crate::error::{InternalError, Result};

const DENSE: &str = "dense";
const SPARSE: &str = "bm25";
/// The shard key small tenants share.
pub const SHARED_KEY: &str = "shared";
/// Points per write request: bounded messages, and a failed batch costs one retry.
const BATCH: usize = 128;
/// Deadline of long operations (deletes by filter, index creation), in request timeouts.
const LONG_FACTOR: u64 = 12;

fn err(e: impl std::fmt::Display) -> InternalError {
    InternalError::Vector(e.to_string())
}

/// The shard key a promoted tenant owns.
fn tenant_key(tenant: &TenantId) -> String {
    format!("tenant.{}", tenant.as_str())
}

/// Whether an error may go away on its own (and the idempotent operation be retried).
fn transient(e: &QdrantError) -> bool {
    use tonic::Code;
    match e {
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Unknown
                | Code::Cancelled
                // Raised while shards move ("Local shard ... not found") or a peer is down.
                | Code::Internal
        ),
        QdrantError::ResourceExhaustedError { .. } => true,
        QdrantError::Io(_) => true,
        _ => false,
    }
}

fn already_exists(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::AlreadyExists || status.message().contains("already exists")
}

pub struct QdrantStore {
    clients: Vec<Qdrant>,
    /// The node tried first; moves on when a node fails.
    preferred: AtomicUsize,
    /// Drives the gRPC connections. An `Option` so that `Drop` can shut it down without
    /// blocking: the store may be dropped on an async thread, where dropping a runtime panics.
    rt: Option<tokio::runtime::Runtime>,
    collection: String,
    cfg: QdrantConfig,
    dim: usize,
    /// Tenants written since the last maintenance pass: the candidates for promotion.
    written: Mutex<HashSet<TenantId>>,
}

impl QdrantStore {
    /// Connect and make sure the deployment's collection exists with its layout. Blocking.
    pub fn open(cfg: &QdrantConfig, dim: usize) -> VResult<Self> {
        let store = Self::connect(cfg, dim)?;
        store.ensure_collection()?;
        Ok(store)
    }

    /// Connect to an existing deployment's collection (operator commands that need no model).
    pub fn connect_existing(cfg: &QdrantConfig) -> VResult<Self> {
        let store = Self::connect(cfg, 0)?;
        let name = store.collection.clone();
        let exists = store.call("collection_exists", |c| {
            let name = name.clone();
            async move { c.collection_exists(name).await }
        })?;
        if !exists {
            return Err(err(format!(
                "no collection {} on the cluster: start `tenantry serve` with storage.backend = \"qdrant\" first",
                store.collection
            )));
        }
        Ok(store)
    }

    fn connect(cfg: &QdrantConfig, dim: usize) -> VResult<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tenantry-qdrant")
            .enable_all()
            .build()
            .map_err(err)?;
        let mut clients = vec![];
        for url in cfg.url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let mut b = Qdrant::from_url(url)
                .timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
                .connect_timeout(Duration::from_secs(cfg.timeout_secs.clamp(1, 5)))
                .skip_compatibility_check();
            if !cfg.api_key.expose().is_empty() {
                b = b.api_key(cfg.api_key.expose().to_string());
            }
            // The channel is made inside the runtime that will drive it.
            let _guard = rt.enter();
            clients.push(b.build().map_err(err)?);
        }
        if clients.is_empty() {
            return Err(err("qdrant.url names no node"));
        }
        Ok(Self {
            clients,
            preferred: AtomicUsize::new(0),
            rt: Some(rt),
            collection: format!("{}_chunks", cfg.collection_prefix),
            cfg: cfg.clone(),
            dim,
            written: Mutex::new(HashSet::new()),
        })
    }

    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Run one idempotent operation with bounded retries across the nodes.
    fn call<T, F, Fut>(&self, what: &str, f: F) -> VResult<T>
    where
        T: Send + 'static,
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>> + Send + 'static,
    {
        let deadline = Duration::from_secs(self.cfg.timeout_secs.max(1));
        self.call_with(what, self.cfg.attempts.max(1), deadline, f)
    }

    /// An operation that must not run twice (it starts a shard transfer): one attempt.
    fn call_once<T, F, Fut>(&self, what: &str, f: F) -> VResult<T>
    where
        T: Send + 'static,
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>> + Send + 'static,
    {
        let deadline = Duration::from_secs(self.cfg.timeout_secs.max(1));
        self.call_with(what, 1, deadline, f)
    }

    /// A long server-side operation (a delete by filter over a whole tenant): a longer deadline.
    fn call_long<T, F, Fut>(&self, what: &str, f: F) -> VResult<T>
    where
        T: Send + 'static,
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>> + Send + 'static,
    {
        let deadline = Duration::from_secs(self.cfg.timeout_secs.max(1) * LONG_FACTOR);
        self.call_with(what, self.cfg.attempts.max(1), deadline, f)
    }

    fn call_with<T, F, Fut>(
        &self,
        what: &str,
        attempts: u32,
        deadline: Duration,
        f: F,
    ) -> VResult<T>
    where
        T: Send + 'static,
        F: Fn(Qdrant) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>> + Send + 'static,
    {
        let Some(rt) = self.rt.as_ref() else {
            return Err(err("qdrant store is shut down"));
        };
        // Waiting on this runtime from one of its own threads would wait forever.
        if tokio::runtime::Handle::try_current().is_ok_and(|h| h.id() == rt.handle().id()) {
            return Err(err(format!("{what}: called from the client's own runtime")));
        }
        let mut last = String::new();
        for attempt in 0..attempts {
            let node = self.preferred.load(Ordering::Relaxed) % self.clients.len();
            let fut = f(self.clients[node].clone());
            // Spawned, not `block_on`: callers may be any thread, even one inside a runtime.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            rt.spawn(async move {
                let _ = tx.send(tokio::time::timeout(deadline, fut).await);
            });
            match rx.recv_timeout(deadline + Duration::from_secs(1)) {
                Ok(Ok(Ok(v))) => return Ok(v),
                Ok(Ok(Err(e))) if !transient(&e) => return Err(err(format!("{what}: {e}"))),
                Ok(Ok(Err(e))) => last = e.to_string(),
                Ok(Err(_)) | Err(_) => last = format!("no answer within {deadline:?}"),
            }
            tracing::warn!(what, node, attempt, error = %last, "qdrant: transient failure; retrying");
            self.preferred.store(node + 1, Ordering::Relaxed);
            if attempt + 1 < attempts {
                std::thread::sleep(Duration::from_millis(100 << attempt.min(4)));
            }
        }
        Err(InternalError::StorageUnavailable(format!(
            "{what}: {last} (after {attempts} attempts)"
        )))
    }

    fn ensure_collection(&self) -> VResult<()> {
        let name = self.collection.clone();
        let exists = self.call("collection_exists", |c| {
            let name = name.clone();
            async move { c.collection_exists(name).await }
        })?;
        if !exists {
            let cfg = self.cfg.clone();
            let dim = self.dim as u64;
            let created = self.call("create_collection", |c| {
                let (name, cfg) = (name.clone(), cfg.clone());
                async move {
                    let mut vectors = VectorsConfigBuilder::default();
                    vectors.add_named_vector_params(
                        DENSE,
                        VectorParamsBuilder::new(dim, Distance::Cosine).on_disk(true),
                    );
                    let mut sparse = SparseVectorsConfigBuilder::default();
                    sparse.add_named_vector_params(
                        SPARSE,
                        SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
                    );
                    let r = c
                        .create_collection(
                            CreateCollectionBuilder::new(name)
                                .vectors_config(vectors)
                                .sparse_vectors_config(sparse)
                                // Per-tenant graphs only: a global graph would mix tenants.
                                .hnsw_config(
                                    HnswConfigDiffBuilder::default()
                                        .m(0)
                                        .payload_m(cfg.payload_m),
                                )
                                .sharding_method(ShardingMethod::Custom.into())
                                // One shard per shard key: IDF is per shard, and a promotion's
                                // point copy needs one shard on each side.
                                .shard_number(1)
                                .replication_factor(cfg.replication_factor.max(1))
                                .write_consistency_factor(cfg.write_consistency_factor.max(1))
                                .on_disk_payload(true),
                        )
                        .await;
                    match r {
                        Ok(_) => Ok(true),
                        // Another node created it first.
                        Err(QdrantError::ResponseError { status }) if already_exists(&status) => {
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                }
            })?;
            if created {
                tracing::info!(collection = %self.collection, "qdrant: created the collection");
            }
        }
        self.ensure_shard_key(SHARED_KEY, None)?;
        // Payload indexes: idempotent on the server.
        let fields: [(&str, FieldType, bool); 5] = [
            ("tenant_id", FieldType::Keyword, true),
            ("doc_id", FieldType::Keyword, false),
            ("version", FieldType::Integer, false),
            ("meta", FieldType::Keyword, false),
            ("content_type", FieldType::Keyword, false),
        ];
        for (field, ty, is_tenant) in fields {
            self.call_long("create_field_index", |c| {
                let name = name.clone();
                async move {
                    let mut b = CreateFieldIndexCollectionBuilder::new(name, field, ty).wait(true);
                    if is_tenant {
                        b = b.field_index_params(
                            KeywordIndexParamsBuilder::default().is_tenant(true),
                        );
                    }
                    c.create_field_index(b).await.map(|_| ())
                }
            })?;
        }
        Ok(())
    }

    fn shard_keys(&self) -> VResult<HashSet<String>> {
        let name = self.collection.clone();
        let keys = self.call("list_shard_keys", |c| {
            let name = name.clone();
            async move {
                c.list_shard_keys(ListShardKeysRequest {
                    collection_name: name,
                })
                .await
            }
        })?;
        Ok(keys
            .shard_keys
            .into_iter()
            .filter_map(|k| match k.key.and_then(|k| k.key) {
                Some(shard_key::Key::Keyword(s)) => Some(s),
                _ => None,
            })
            .collect())
    }

    /// Create a shard key unless it exists. `Some(state)` creates it with one replica in that
    /// state (a promotion target); `None` with the configured replication.
    fn ensure_shard_key(&self, key: &str, state: Option<ReplicaState>) -> VResult<()> {
        if self.shard_keys()?.contains(key) {
            return Ok(());
        }
        let (name, key) = (self.collection.clone(), key.to_string());
        let replicas = self.cfg.replication_factor.max(1);
        self.call("create_shard_key", |c| {
            let (name, key) = (name.clone(), key.clone());
            async move {
                let mut k = CreateShardKeyBuilder::default()
                    .shard_key(key)
                    .shards_number(1);
                k = match state {
                    Some(s) => k.replication_factor(1).initial_state(s),
                    None => k.replication_factor(replicas),
                };
                match c
                    .create_shard_key(CreateShardKeyRequestBuilder::new(name).request(k))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(QdrantError::ResponseError { status }) if already_exists(&status) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
    }

    /// Routes to the tenant's own shard key when it has one, else to the shared one.
    fn selector(tenant: &TenantId) -> ShardKeySelector {
        ShardKeySelectorBuilder::with_shard_key(tenant_key(tenant))
            .fallback(SHARED_KEY)
            .build()
    }

    fn tenant_filter(tenant: &TenantId, extra: Vec<Condition>) -> Filter {
        let mut must = vec![Condition::matches("tenant_id", tenant.as_str().to_string())];
        must.extend(extra);
        Filter::must(must)
    }

    fn chunk_conditions(filter: &ChunkFilter) -> Vec<Condition> {
        let mut c = vec![];
        if !filter.doc_ids.is_empty() {
            c.push(Condition::matches(
                "doc_id",
                filter
                    .doc_ids
                    .iter()
                    .map(|d| d.as_str().to_string())
                    .collect::<Vec<_>>(),
            ));
        }
        if !filter.content_types.is_empty() {
            c.push(Condition::matches(
                "content_type",
                filter.content_types.clone(),
            ));
        }
        for term in &filter.metadata {
            c.push(Condition::matches("meta", term.clone()));
        }
        c
    }

    fn versions_filter(tenant: &TenantId, doc: &DocId, versions: &Range<u64>) -> Filter {
        Self::tenant_filter(
            tenant,
            vec![
                Condition::matches("doc_id", doc.as_str().to_string()),
                Condition::range(
                    "version",
                    QRange {
                        gte: Some(versions.start as f64),
                        lt: Some(versions.end as f64),
                        ..Default::default()
                    },
                ),
            ],
        )
    }

    fn delete_by_filter(&self, tenant: &TenantId, filter: Filter) -> VResult<()> {
        self.delete_in(Self::selector(tenant), filter)
    }

    /// Delete by filter in the shard keys `sel` names (long: a whole tenant may match).
    fn delete_in(&self, sel: ShardKeySelector, filter: Filter) -> VResult<()> {
        let name = self.collection.clone();
        self.call_long("delete_points", |c| {
            let (name, filter, sel) = (name.clone(), filter.clone(), sel.clone());
            async move {
                c.delete_points(
                    DeletePointsBuilder::new(name)
                        .points(filter)
                        .shard_key_selector(sel)
                        .wait(true),
                )
                .await
                .map(|_| ())
            }
        })
    }

    /// Points of the tenant in the shard keys `sel` names.
    fn count_in(&self, tenant: &TenantId, sel: ShardKeySelector) -> VResult<u64> {
        let name = self.collection.clone();
        let filter = Self::tenant_filter(tenant, vec![]);
        self.call("count", |c| {
            let (name, filter, sel) = (name.clone(), filter.clone(), sel.clone());
            async move {
                c.count(
                    CountPointsBuilder::new(name)
                        .filter(filter)
                        .exact(true)
                        .shard_key_selector(sel),
                )
                .await
                .map(|r| r.result.map_or(0, |r| r.count))
            }
        })
    }

    fn only(key: &str) -> ShardKeySelector {
        ShardKeySelectorBuilder::with_shard_key(key.to_string()).build()
    }

    /// Points of the tenant (in whichever shard key holds it).
    pub fn count(&self, tenant: &TenantId) -> VResult<u64> {
        self.count_in(tenant, Self::selector(tenant))
    }

    /// Whether the tenant has its own shard key.
    pub fn is_promoted(&self, tenant: &TenantId) -> VResult<bool> {
        Ok(self.shard_keys()?.contains(&tenant_key(tenant)))
    }

    /// Move a tenant from the shared shard key to its own, online: the new key is created with
    /// one replica in `Partial` state and Qdrant copies the tenant's points into it; until the
    /// key is readable, reads and writes keep going to `shared` (writes reach the copy too).
    /// Then the remaining replicas are added, and once the key holds at least as many of the
    /// tenant's points as `shared`, the copies in `shared` are deleted. Resumable: a run that
    /// stopped half-way continues from the key's state; a failed copy (a `Dead` replica) drops
    /// the key, so the next run starts over. Returns false if the tenant already had its own
    /// key and nothing was left to do.
    pub fn promote(&self, tenant: &TenantId) -> VResult<bool> {
        let key = tenant_key(tenant);
        let filter = Self::tenant_filter(tenant, vec![]);
        let existed = self.shard_keys()?.contains(&key);
        if existed {
            let states = self.replicas(&key)?;
            if states
                .iter()
                .any(|(_, _, s)| *s == ReplicaState::Dead as i32)
            {
                self.delete_key(&key)?;
                return Err(InternalError::StorageUnavailable(format!(
                    "promotion of {tenant}: the copy failed; its shard key was dropped, try again"
                )));
            }
        } else {
            self.ensure_shard_key(&key, Some(ReplicaState::Partial))?;
            let name = self.collection.clone();
            self.call_once("replicate_points", |c| {
                let (name, key, filter) = (name.clone(), key.clone(), filter.clone());
                async move {
                    c.update_collection_cluster_setup(
                        UpdateCollectionClusterSetupRequestBuilder::new(
                            name,
                            Operation::ReplicatePoints(
                                ReplicatePointsBuilder::new(SHARED_KEY, key)
                                    .filter(filter)
                                    .build(),
                            ),
                        ),
                    )
                    .await
                    .map(|_| ())
                }
            })?;
        }
        self.wait_key_active(&key)?;
        self.add_replicas(&key)?;
        let (moved, left) = (
            self.count_in(tenant, Self::only(&key))?,
            self.count_in(tenant, Self::only(SHARED_KEY))?,
        );
        if left == 0 {
            return Ok(!existed);
        }
        if moved < left {
            return Err(err(format!(
                "promotion of {tenant}: its key holds {moved} points, shared still {left}; not deleting"
            )));
        }
        // Reads already go to the tenant's key: the copies in `shared` are garbage.
        self.delete_in(Self::only(SHARED_KEY), filter)?;
        tracing::info!(tenant = %tenant, points = moved, "qdrant: tenant promoted to its own shard key");
        Ok(true)
    }

    fn delete_key(&self, key: &str) -> VResult<()> {
        let (name, key) = (self.collection.clone(), key.to_string());
        self.call_long("delete_shard_key", |c| {
            let (name, key) = (name.clone(), key.clone());
            async move {
                c.delete_shard_key(DeleteShardKeyRequestBuilder::new(name).key(key))
                    .await
                    .map(|_| ())
            }
        })
    }

    /// Replica states of a shard key's shards: (shard id, peer id, state) for every replica.
    fn replicas(&self, key: &str) -> VResult<Vec<(u32, u64, i32)>> {
        let name = self.collection.clone();
        let info = self.call("collection_cluster_info", |c| {
            let name = name.clone();
            async move { c.collection_cluster_info(name).await }
        })?;
        let matches = |k: &Option<qdrant_client::qdrant::ShardKey>| matches!(k.as_ref().and_then(|k| k.key.as_ref()), Some(shard_key::Key::Keyword(s)) if s == key);
        let mut out = vec![];
        for s in info.local_shards.iter().filter(|s| matches(&s.shard_key)) {
            out.push((s.shard_id, info.peer_id, s.state));
        }
        for s in info.remote_shards.iter().filter(|s| matches(&s.shard_key)) {
            out.push((s.shard_id, s.peer_id, s.state));
        }
        Ok(out)
    }

    fn wait_key_active(&self, key: &str) -> VResult<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        loop {
            let r = self.replicas(key)?;
            if !r.is_empty() && r.iter().all(|(_, _, s)| *s == ReplicaState::Active as i32) {
                return Ok(());
            }
            if r.iter().any(|(_, _, s)| *s == ReplicaState::Dead as i32) {
                return Err(InternalError::StorageUnavailable(format!(
                    "shard key {key} has a dead replica: {r:?}"
                )));
            }
            if std::time::Instant::now() > deadline {
                return Err(err(format!("shard key {key} did not become active: {r:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Bring a promoted key to the configured replication, on peers that hold none of it yet.
    fn add_replicas(&self, key: &str) -> VResult<()> {
        let want = self.cfg.replication_factor.max(1) as usize;
        let name = self.collection.clone();
        let peers: Vec<u64> = {
            let info = self.call("collection_cluster_info", |c| {
                let name = name.clone();
                async move { c.collection_cluster_info(name).await }
            })?;
            let mut p: Vec<u64> = info.remote_shards.iter().map(|s| s.peer_id).collect();
            p.push(info.peer_id);
            p.sort_unstable();
            p.dedup();
            p
        };
        let replicas = self.replicas(key)?;
        let mut shards: HashMap<u32, Vec<u64>> = HashMap::new();
        for (shard, peer, _) in &replicas {
            shards.entry(*shard).or_default().push(*peer);
        }
        for (shard, holders) in shards {
            let from = holders[0];
            for to in peers
                .iter()
                .filter(|p| !holders.contains(p))
                .take(want.saturating_sub(holders.len()))
            {
                let to = *to;
                self.call_once("replicate_shard", |c| {
                    let name = name.clone();
                    async move {
                        c.update_collection_cluster_setup(
                            UpdateCollectionClusterSetupRequestBuilder::new(
                                name,
                                qdrant_client::qdrant::ReplicateShardBuilder::new(shard, from, to),
                            ),
                        )
                        .await
                        .map(|_| ())
                    }
                })?;
            }
        }
        self.wait_key_active(key)
    }

    fn upsert_dense(&self, ctx: &TenantCtx, points: &[(StoredChunk, Vec<f32>)]) -> VResult<()> {
        let tenant = ctx.tenant();
        for batch in points.chunks(BATCH) {
            let list: Vec<PointStruct> = batch
                .iter()
                .map(|(c, v)| {
                    PointStruct::new(
                        point_id(tenant, &c.doc_id, c.version, c.ordinal),
                        NamedVectors::default().add_vector(DENSE, Vector::new_dense(v.clone())),
                        payload(tenant, c),
                    )
                })
                .collect();
            let (name, sel) = (self.collection.clone(), Self::selector(tenant));
            self.call("upsert_points", |c| {
                let (name, list, sel) = (name.clone(), list.clone(), sel.clone());
                async move {
                    c.upsert_points(
                        UpsertPointsBuilder::new(name, list)
                            .shard_key_selector(sel)
                            .wait(true),
                    )
                    .await
                    .map(|_| ())
                }
            })?;
        }
        lock(&self.written).insert(tenant.clone());
        Ok(())
    }

    fn query_leg(
        &self,
        ctx: &TenantCtx,
        using: &str,
        query: VectorInput,
        filter: &ChunkFilter,
        limit: usize,
        tenant_idf: bool,
    ) -> VResult<(Vec<LegHit>, f64)> {
        let tenant = ctx.tenant();
        let f = Self::tenant_filter(tenant, Self::chunk_conditions(filter));
        let (name, sel) = (self.collection.clone(), Self::selector(tenant));
        let corpus = Self::tenant_filter(tenant, vec![]);
        let using = using.to_string();
        let res = self.call("query", |c| {
            let (name, sel, f, q, using, corpus) = (
                name.clone(),
                sel.clone(),
                f.clone(),
                query.clone(),
                using.clone(),
                corpus.clone(),
            );
            async move {
                let mut b = QueryPointsBuilder::new(name)
                    .query(Query::new_nearest(q))
                    .using(using)
                    .filter(f)
                    .limit(limit.max(1) as u64)
                    .with_payload(true)
                    .shard_key_selector(sel);
                if tenant_idf {
                    b = b.params(
                        SearchParamsBuilder::default().idf(IdfParamsBuilder::new().corpus(corpus)),
                    );
                }
                c.query(b).await
            }
        })?;
        let mut out = Vec::with_capacity(res.result.len());
        for p in res.result {
            let json = owned_json(tenant, &p.payload)?;
            out.push(LegHit {
                chunk: chunk_from_payload(&json).ok_or_else(unreadable)?,
                score: p.score,
            });
        }
        Ok((out, res.time * 1000.0))
    }

    /// One dense search, timed: (milliseconds seen by this client, milliseconds the server
    /// reports spending on it). The difference is the network, gRPC and (de)serialisation; the
    /// bench reports both.
    pub fn timed_dense_search(
        &self,
        ctx: &TenantCtx,
        vector: &[f32],
        limit: usize,
    ) -> VResult<(f64, f64)> {
        let t = std::time::Instant::now();
        let (_, server_ms) = self.query_leg(
            ctx,
            DENSE,
            VectorInput::new_dense(vector.to_vec()),
            &ChunkFilter::default(),
            limit,
            false,
        )?;
        Ok((t.elapsed().as_secs_f64() * 1000.0, server_ms))
    }
}

impl Drop for QdrantStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn point_id(tenant: &TenantId, doc: &DocId, version: u64, ordinal: u32) -> PointId {
    let b = point_uuid(tenant, doc, version, ordinal);
    let h = hex::encode(b);
    PointId::from(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn payload(tenant: &TenantId, c: &StoredChunk) -> qdrant_client::Payload {
    // A JSON object always converts; an empty payload would be a point no filter finds.
    qdrant_client::Payload::try_from(Value::Object(chunk_payload(tenant, c)))
        .expect("a JSON object is a payload")
}

/// A returned point's payload as JSON, checked to be the tenant's.
fn owned_json(
    tenant: &TenantId,
    p: &HashMap<String, QValue>,
) -> VResult<serde_json::Map<String, Value>> {
    let json = p
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    owned_by(&json, tenant)?;
    Ok(json)
}

fn unreadable() -> InternalError {
    err("a point without a readable payload or vector")
}

fn dense_of(v: Option<qdrant_client::qdrant::VectorsOutput>) -> Option<Vec<f32>> {
    match v?.get_vector_by_name(DENSE)? {
        vector_output::Vector::Dense(d) => Some(d.data),
        _ => None,
    }
}

fn id_string(id: &Option<PointId>) -> Option<String> {
    match id.as_ref()?.point_id_options.as_ref()? {
        PointIdOptions::Uuid(u) => Some(u.clone()),
        PointIdOptions::Num(n) => Some(n.to_string()),
    }
}

impl QdrantStore {
    /// The tenant's points of `keys`, each read by `read`, in the order asked (`None` where
    /// absent; a point `read` cannot read is an error). Every point's payload tenant is checked
    /// before it is read.
    fn by_keys<T>(
        &self,
        tenant: &TenantId,
        keys: &[ChunkKey],
        whole_payload: bool,
        vector: bool,
        read: impl Fn(
            &serde_json::Map<String, Value>,
            qdrant_client::qdrant::RetrievedPoint,
        ) -> Option<T>,
    ) -> VResult<Vec<Option<T>>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<PointId> = keys
            .iter()
            .map(|(d, v, o)| point_id(tenant, d, *v, *o))
            .collect();
        let wanted: Vec<Option<String>> = ids.iter().map(|i| id_string(&Some(i.clone()))).collect();
        let (name, sel) = (self.collection.clone(), Self::selector(tenant));
        let res = self.call("get_points", |c| {
            let (name, ids, sel) = (name.clone(), ids.clone(), sel.clone());
            async move {
                let mut b = GetPointsBuilder::new(name, ids).shard_key_selector(sel);
                b = if whole_payload {
                    b.with_payload(true)
                } else {
                    b.with_payload(PayloadIncludeSelector {
                        fields: vec!["tenant_id".to_string()],
                    })
                };
                if vector {
                    b = b.with_vectors(VectorsSelector {
                        names: vec![DENSE.to_string()],
                    });
                }
                c.get_points(b).await
            }
        })?;
        let mut by_id: HashMap<String, T> = HashMap::new();
        for p in res.result {
            let json = owned_json(tenant, &p.payload)?;
            if let Some(id) = id_string(&p.id) {
                let v = read(&json, p).ok_or_else(unreadable)?;
                by_id.insert(id, v);
            }
        }
        Ok(wanted
            .into_iter()
            .map(|id| id.and_then(|id| by_id.remove(&id)))
            .collect())
    }
}

impl VectorStore for QdrantStore {
    fn upsert(&self, ctx: &TenantCtx, points: &[(StoredChunk, Vec<f32>)]) -> VResult<()> {
        self.upsert_dense(ctx, points)
    }

    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> VResult<()> {
        self.delete_by_filter(
            ctx.tenant(),
            Self::versions_filter(ctx.tenant(), doc, &versions),
        )
    }

    fn search(
        &self,
        ctx: &TenantCtx,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: usize,
    ) -> VResult<Vec<LegHit>> {
        Ok(self
            .query_leg(
                ctx,
                DENSE,
                VectorInput::new_dense(vector.to_vec()),
                filter,
                limit,
                false,
            )?
            .0)
    }

    fn vectors(&self, ctx: &TenantCtx, keys: &[ChunkKey]) -> VResult<Vec<Option<Vec<f32>>>> {
        // The payload's tenant only, to check ownership: the rest costs more than the vectors.
        self.by_keys(ctx.tenant(), keys, false, true, |_, p| dense_of(p.vectors))
    }

    fn stored_chunks(
        &self,
        ctx: &TenantCtx,
        keys: &[ChunkKey],
    ) -> VResult<Vec<Option<StoredChunk>>> {
        self.by_keys(ctx.tenant(), keys, true, false, |json, _| {
            chunk_from_payload(json)
        })
    }

    fn chunks(
        &self,
        ctx: &TenantCtx,
        doc: &DocId,
        version: u64,
    ) -> VResult<Vec<(StoredChunk, Vec<f32>)>> {
        let tenant = ctx.tenant();
        let filter = Self::versions_filter(tenant, doc, &(version..version + 1));
        let (name, sel) = (self.collection.clone(), Self::selector(tenant));
        let mut out = vec![];
        let mut offset: Option<PointId> = None;
        loop {
            let res = self.call("scroll", |c| {
                let (name, filter, sel, offset) =
                    (name.clone(), filter.clone(), sel.clone(), offset.clone());
                async move {
                    let mut b = ScrollPointsBuilder::new(name)
                        .filter(filter)
                        .limit(256)
                        .with_payload(true)
                        .with_vectors(VectorsSelector {
                            names: vec![DENSE.to_string()],
                        })
                        .shard_key_selector(sel);
                    if let Some(o) = offset {
                        b = b.offset(o);
                    }
                    c.scroll(b).await
                }
            })?;
            for p in res.result {
                let json = owned_json(tenant, &p.payload)?;
                let chunk = chunk_from_payload(&json).ok_or_else(unreadable)?;
                out.push((chunk, dense_of(p.vectors).ok_or_else(unreadable)?));
            }
            match res.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        out.sort_by_key(|(c, _)| c.ordinal);
        Ok(out)
    }

    fn drop_tenant(&self, tenant: &TenantId) -> VResult<()> {
        let filter = Self::tenant_filter(tenant, vec![]);
        // Both keys explicitly: a promotion that stopped half-way leaves points in each.
        self.delete_in(Self::only(SHARED_KEY), filter.clone())?;
        let key = tenant_key(tenant);
        if self.shard_keys()?.contains(&key) {
            self.delete_in(Self::only(&key), filter)?;
            self.delete_key(&key)?;
        }
        lock(&self.written).remove(tenant);
        Ok(())
    }

    /// Promotes tenants written since the last pass that are past `qdrant.promote_chunks`.
    fn maintain(&self) -> VResult<bool> {
        if self.cfg.promote_chunks == 0 {
            return Ok(false);
        }
        let tenants: Vec<TenantId> = lock(&self.written).drain().collect();
        let mut promoted = false;
        for (i, t) in tenants.iter().enumerate() {
            let step = self.count(t).and_then(|n| {
                if n > self.cfg.promote_chunks {
                    self.promote(t)
                } else {
                    Ok(false)
                }
            });
            match step {
                Ok(p) => promoted |= p,
                Err(e) => {
                    // The rest stay candidates for the next pass.
                    lock(&self.written).extend(tenants[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        Ok(promoted)
    }

    fn close_idle(&self) -> usize {
        0
    }

    fn open_count(&self) -> usize {
        0
    }

    /// Writes wait for the cluster's acknowledgement; there is nothing to flush.
    fn flush(&self) {}

    /// Some node answers a health check (one try per node, no backoff: `/readyz` is polled).
    fn health(&self) -> VResult<()> {
        let deadline = Duration::from_secs(self.cfg.timeout_secs.clamp(1, 3));
        self.call_with(
            "health_check",
            self.clients.len() as u32,
            deadline,
            |c| async move { c.health_check().await.map(|_| ()) },
        )
    }
}

impl LexicalStore for QdrantStore {
    /// Sets the `bm25` vector of the chunks' points, which the dense leg's upsert created (the
    /// engine writes the dense leg first); a missing point is an error, never a silent skip.
    fn add(&self, ctx: &TenantCtx, chunks: &[StoredChunk]) -> Result<()> {
        let tenant = ctx.tenant();
        for batch in chunks.chunks(BATCH) {
            let points: Vec<PointVectors> = batch
                .iter()
                .map(|c| {
                    let s = analysis::document_vector(&c.title, &c.text, self.cfg.bm25_avg_len);
                    PointVectors {
                        id: Some(point_id(tenant, &c.doc_id, c.version, c.ordinal)),
                        vectors: Some(
                            NamedVectors::default()
                                .add_vector(SPARSE, Vector::new_sparse(s.indices, s.values))
                                .into(),
                        ),
                    }
                })
                .collect();
            let (name, sel) = (self.collection.clone(), Self::selector(tenant));
            self.call("update_vectors", |c| {
                let (name, points, sel) = (name.clone(), points.clone(), sel.clone());
                async move {
                    c.update_vectors(
                        UpdatePointVectorsBuilder::new(name, points)
                            .shard_key_selector(sel)
                            .wait(true),
                    )
                    .await
                    .map(|_| ())
                }
            })?;
        }
        Ok(())
    }

    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> Result<()> {
        Ok(VectorStore::delete_versions(self, ctx, doc, versions)?)
    }

    fn drop_tenant(&self, tenant: &TenantId) -> Result<()> {
        Ok(VectorStore::drop_tenant(self, tenant)?)
    }

    fn close_idle(&self) -> usize {
        0
    }

    fn open_count(&self) -> usize {
        0
    }

    fn search(
        &self,
        ctx: &TenantCtx,
        query: &str,
        filter: &ChunkFilter,
        limit: usize,
    ) -> Result<Vec<LegHit>> {
        let q = analysis::query_vector(query);
        if q.indices.is_empty() {
            return Ok(vec![]);
        }
        Ok(self
            .query_leg(
                ctx,
                SPARSE,
                VectorInput::new_sparse(q.indices, q.values),
                filter,
                limit,
                true,
            )?
            .0)
    }

    fn snippets(
        &self,
        _ctx: &TenantCtx,
        query: &str,
        texts: &[&str],
    ) -> Result<Vec<Option<String>>> {
        Ok(analysis::snippets(query, texts))
    }
}

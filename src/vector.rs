//! Dense leg. [`VectorStore`] is the seam between the embedded store (qdrant-edge, default) and
//! a Qdrant cluster (qdrant-client) for deployments that outgrow one machine.
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::{
    Condition, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParams,
    FieldCondition, FieldIndexOperations, Filter, HnswIndexConfig, JsonPath, Match, NamedQuery,
    Payload, PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations,
    PointOperations, PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, ScrollRequest,
    UpdateOperation, VectorInternal, VectorPersisted, VectorStructInternal, VectorStructPersisted,
    WalOptions, WithPayloadInterface, WithVector,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::InternalError;
use crate::store::{ChunkFilter, LegHit, StoredChunk};
use crate::tenant::{DocId, TenantCtx, TenantId};

type VResult<T> = Result<T, InternalError>;

/// Stores chunk vectors with their payload and searches them, always within one tenant.
///
/// Contract: every tenant-scoped call takes the caller's [`TenantCtx`] first and must only read
/// or change that tenant's points, whatever the filter says. Writes are durable against a
/// process crash when the call returns. `search` returns at most `limit` hits, best first, with
/// cosine similarity as score. Implementations are `Send + Sync` and called from blocking
/// threads; they may block.
pub trait VectorStore: Send + Sync {
    fn upsert(&self, ctx: &TenantCtx, points: &[(StoredChunk, Vec<f32>)]) -> VResult<()>;
    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> VResult<()>;
    fn search(
        &self,
        ctx: &TenantCtx,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: usize,
    ) -> VResult<Vec<LegHit>>;
    /// Every chunk of one version of a document, with its vector, in ordinal order (export).
    fn chunks(
        &self,
        ctx: &TenantCtx,
        doc: &DocId,
        version: u64,
    ) -> VResult<Vec<(StoredChunk, Vec<f32>)>>;
    /// Operator action: remove every point of a tenant and the storage that held them, so no
    /// byte of the tenant's payloads or vectors stays behind.
    fn drop_tenant(&self, tenant: &TenantId) -> VResult<()>;
    /// Background maintenance (index building); never called on the request path.
    fn maintain(&self) -> VResult<bool>;
    /// Release what tenants idle for the configured period hold in memory; they reopen on
    /// their next call. Returns how many were released.
    fn close_idle(&self) -> usize;
    /// Tenants whose vectors are held open now.
    fn open_count(&self) -> usize;
    fn flush(&self);
}

const VECTOR: &str = "dense";
/// Shards of the per-tenant layout live here, one directory per tenant.
const TENANTS_DIR: &str = "tenants";
/// Small WAL segments: a tenant's shard preallocates its WAL, and there may be thousands.
/// One record (256 points with payloads) is well under this.
const WAL_SEGMENT_BYTES: usize = 8 * 1024 * 1024;

/// qdrant-edge with one shard per tenant, opened on first use and closed when idle.
///
/// A shard per tenant, not one shared shard with an `is_tenant` index, because deleting a
/// tenant must remove its data, not mark it: qdrant-edge keeps deleted points' payloads in
/// freed pages and in its WAL until an optimiser or a WAL rotation happens to overwrite them,
/// and it offers no way to force that for one tenant. Here a tenant delete is a directory
/// removal. It also keeps one tenant's writes and optimiser runs off every other tenant's
/// segments, and lets a cold tenant hold no vector memory at all. (qdrant-edge 0.7 builds
/// thread pools only while indexing, so an open shard costs no threads.)
pub struct EdgeVectorStore {
    root: PathBuf,
    dim: usize,
    idle: Duration,
    open: Mutex<HashMap<TenantId, Arc<TenantShard>>>,
}

struct TenantShard {
    shard: EdgeShard,
    last_used: Mutex<Instant>,
    /// Written since its last optimisation; a dirty shard is optimised before it is closed.
    dirty: AtomicBool,
}

fn err(e: impl std::fmt::Display) -> InternalError {
    InternalError::Vector(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A top-level payload key (our keys are plain identifiers, so no parsing is needed).
fn key_path(key: &str) -> JsonPath {
    JsonPath {
        first_key: key.to_string(),
        rest: vec![],
    }
}

fn keyword(key: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(
        key_path(key),
        Match::from(value.to_string()),
    ))
}

fn any_of(key: &str, values: Vec<String>) -> Condition {
    Condition::Field(FieldCondition::new_match(
        key_path(key),
        Match::from(values),
    ))
}

/// Defence in depth: a shard holds one tenant, and every request still filters by it.
fn tenant_filter(tenant: &TenantId) -> Filter {
    Filter::new_must(keyword("tenant_id", tenant.as_str()))
}

/// Deterministic point id: a hash, not a counter, so ids say nothing about other tenants.
fn point_id(tenant: &TenantId, c: &StoredChunk) -> PointId {
    let mut h = Sha256::new();
    for part in [tenant.as_str().as_bytes(), c.doc_id.as_str().as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(c.version.to_le_bytes());
    h.update(c.ordinal.to_le_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    PointId::Uuid(Uuid::from_bytes(bytes))
}

fn update(shard: &EdgeShard, op: UpdateOperation) -> VResult<()> {
    shard.update(op).map(|_| ()).map_err(err)
}

/// Create a tenant's shard with its payload indexes, in a temporary directory renamed into
/// place, so a crash never leaves a shard without its indexes.
fn create_shard(dir: &Path, dim: usize) -> VResult<EdgeShard> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("shard");
    let tmp = dir.with_file_name(format!(".{name}.creating"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(err)?;
    }
    std::fs::create_dir_all(&tmp).map_err(err)?;
    {
        let config = EdgeConfigBuilder::new()
            .vector(
                VECTOR,
                EdgeVectorParams::builder(dim, Distance::Cosine).build(),
            )
            .hnsw_config(HnswIndexConfig::default())
            .wal_options(WalOptions {
                segment_capacity: WAL_SEGMENT_BYTES,
                ..WalOptions::default()
            })
            .build();
        let shard = EdgeShard::new(&tmp, config).map_err(err)?;
        let index = |name: &str, schema: PayloadFieldSchema| {
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                field_name: key_path(name),
                field_schema: Some(schema),
            }))
        };
        for kw in ["tenant_id", "doc_id", "content_type", "meta"] {
            update(
                &shard,
                index(
                    kw,
                    PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword),
                ),
            )?;
        }
        update(
            &shard,
            index(
                "version",
                PayloadFieldSchema::FieldType(PayloadSchemaType::Integer),
            ),
        )?;
        // Dropped (and flushed) here: the directory moves while no handle is open.
    }
    std::fs::rename(&tmp, dir).map_err(err)?;
    EdgeShard::load(dir, None).map_err(err)
}

impl EdgeVectorStore {
    /// Open the store under `path`. A data directory from before per-tenant shards (one shard
    /// at `path` itself) is split into per-tenant shards first.
    pub fn open(path: &Path, dim: usize, idle: Duration) -> VResult<Self> {
        let root = path.join(TENANTS_DIR);
        std::fs::create_dir_all(&root).map_err(err)?;
        // Half-created shards from a crash are rebuilt from scratch on next use.
        for entry in std::fs::read_dir(&root).map_err(err)?.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".creating") {
                std::fs::remove_dir_all(entry.path()).map_err(err)?;
            }
        }
        let store = Self {
            root,
            dim,
            idle,
            open: Mutex::new(HashMap::new()),
        };
        if path.join("edge_config.json").exists() {
            store.migrate_shared_shard(path)?;
        }
        Ok(store)
    }

    fn dir(&self, tenant: &TenantId) -> PathBuf {
        self.root.join(tenant.as_str())
    }

    /// The tenant's shard, opened on first use. `create: false` returns `None` for a tenant
    /// that never stored a vector, so reads never create directories.
    fn get(&self, tenant: &TenantId, create: bool) -> VResult<Option<Arc<TenantShard>>> {
        let mut open = lock(&self.open);
        if let Some(s) = open.get(tenant) {
            *lock(&s.last_used) = Instant::now();
            return Ok(Some(s.clone()));
        }
        let dir = self.dir(tenant);
        let shard = if dir.join("edge_config.json").exists() {
            EdgeShard::load(&dir, None).map_err(err)?
        } else if create {
            create_shard(&dir, self.dim)?
        } else {
            return Ok(None);
        };
        let s = Arc::new(TenantShard {
            shard,
            last_used: Mutex::new(Instant::now()),
            // It may have been closed (or the process stopped) before its last optimisation.
            dirty: AtomicBool::new(true),
        });
        open.insert(tenant.clone(), s.clone());
        Ok(Some(s))
    }

    /// Move every point of the old shared shard at `path` into its tenant's shard, then
    /// remove the shared shard. Idempotent (point ids are deterministic), so a crash midway
    /// only repeats work.
    fn migrate_shared_shard(&self, path: &Path) -> VResult<()> {
        let shared = EdgeShard::load(path, None).map_err(err)?;
        let mut moved = 0usize;
        let mut offset = None;
        loop {
            let (records, next) = shared
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(256),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(true),
                    order_by: None,
                })
                .map_err(err)?;
            let mut by_tenant: HashMap<TenantId, Vec<PointStructPersisted>> = HashMap::new();
            for r in records {
                let (Some(payload), Some(vector)) = (r.payload, r.vector.and_then(dense)) else {
                    continue;
                };
                let Some(tenant) = payload
                    .0
                    .get("tenant_id")
                    .and_then(Value::as_str)
                    .and_then(|t| TenantId::parse(t).ok())
                else {
                    continue;
                };
                by_tenant
                    .entry(tenant)
                    .or_default()
                    .push(point(r.id, vector, payload));
            }
            for (tenant, points) in by_tenant {
                moved += points.len();
                let s = self.get(&tenant, true)?.expect("created");
                upsert_points(&s.shard, points)?;
            }
            match next {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
        drop(shared);
        self.flush();
        for name in ["segments", "temp_segments", "wal", "edge_config.json"] {
            let p = path.join(name);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(err)?;
            } else if p.exists() {
                std::fs::remove_file(&p).map_err(err)?;
            }
        }
        tracing::info!(
            points = moved,
            "split the shared vector shard into per-tenant shards"
        );
        Ok(())
    }

    /// Close shards unused for the idle period (dirty ones wait for their optimisation).
    pub fn close_idle(&self) -> usize {
        let mut open = lock(&self.open);
        let before = open.len();
        let idle = self.idle;
        // A shard in use elsewhere (Arc held) stays open; dropping one flushes it, under the
        // lock, so it is never reopened before it is closed.
        open.retain(|_, s| {
            Arc::strong_count(s) > 1
                || s.dirty.load(Ordering::SeqCst)
                || lock(&s.last_used).elapsed() < idle
        });
        before - open.len()
    }

    pub fn open_count(&self) -> usize {
        lock(&self.open).len()
    }
}

fn dense(v: VectorStructInternal) -> Option<Vec<f32>> {
    match v {
        VectorStructInternal::Named(mut m) => match m.remove(VECTOR) {
            Some(VectorInternal::Dense(v)) => Some(v),
            _ => None,
        },
        VectorStructInternal::Single(v) => Some(v),
        _ => None,
    }
}

fn point(id: PointId, vector: Vec<f32>, payload: Payload) -> PointStructPersisted {
    PointStructPersisted {
        id,
        vector: VectorStructPersisted::Named(HashMap::from([(
            VECTOR.to_string(),
            VectorPersisted::Dense(vector),
        )])),
        payload: Some(payload),
    }
}

fn upsert_points(shard: &EdgeShard, points: Vec<PointStructPersisted>) -> VResult<()> {
    update(
        shard,
        UpdateOperation::PointOperation(PointOperations::UpsertPoints(
            PointInsertOperations::PointsList(points),
        )),
    )
}

fn payload(tenant: &TenantId, c: &StoredChunk) -> Payload {
    let v = json!({
        "tenant_id": tenant.as_str(),
        "doc_id": c.doc_id.as_str(),
        "version": c.version,
        "ordinal": c.ordinal,
        "title": c.title,
        "text": c.text,
        "content_type": c.content_type,
        "page": c.page,
        "heading_path": c.heading_path,
        "metadata": Value::Object(c.metadata.clone()),
        "meta": c.metadata_terms(),
        "start": c.start,
        "end": c.end,
    });
    match v {
        Value::Object(m) => Payload(m),
        _ => unreachable!("json! object"),
    }
}

fn from_payload(p: &Payload) -> Option<StoredChunk> {
    let m = &p.0;
    let s = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let u = |k: &str| m.get(k).and_then(Value::as_u64);
    Some(StoredChunk {
        doc_id: DocId::parse(m.get("doc_id")?.as_str()?).ok()?,
        version: u("version")?,
        ordinal: u("ordinal")? as u32,
        title: s("title"),
        text: s("text"),
        content_type: s("content_type"),
        page: u("page").map(|p| p as u32),
        heading_path: serde_json::from_value(m.get("heading_path").cloned().unwrap_or(Value::Null))
            .unwrap_or_default(),
        metadata: m
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        start: u("start").unwrap_or(0),
        end: u("end").unwrap_or(0),
    })
}

impl VectorStore for EdgeVectorStore {
    fn upsert(&self, ctx: &TenantCtx, points: &[(StoredChunk, Vec<f32>)]) -> VResult<()> {
        if points.is_empty() {
            return Ok(());
        }
        let s = self.get(ctx.tenant(), true)?.expect("created");
        s.dirty.store(true, Ordering::SeqCst);
        // Bounded batches keep each WAL record small.
        for batch in points.chunks(256) {
            let list = batch
                .iter()
                .map(|(c, v)| {
                    point(
                        point_id(ctx.tenant(), c),
                        v.clone(),
                        payload(ctx.tenant(), c),
                    )
                })
                .collect();
            upsert_points(&s.shard, list)?;
        }
        Ok(())
    }

    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> VResult<()> {
        let Some(s) = self.get(ctx.tenant(), false)? else {
            return Ok(());
        };
        s.dirty.store(true, Ordering::SeqCst);
        let mut filter = tenant_filter(ctx.tenant());
        let range = qdrant_edge::Range {
            gte: Some(OrderedFloat(versions.start as f64)),
            lt: Some(OrderedFloat(versions.end as f64)),
            gt: None,
            lte: None,
        };
        filter.must.get_or_insert_with(Vec::new).extend([
            keyword("doc_id", doc.as_str()),
            Condition::Field(FieldCondition::new_range(key_path("version"), range)),
        ]);
        update(
            &s.shard,
            UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter)),
        )
    }

    fn search(
        &self,
        ctx: &TenantCtx,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: usize,
    ) -> VResult<Vec<LegHit>> {
        let Some(s) = self.get(ctx.tenant(), false)? else {
            return Ok(Vec::new());
        };
        // The tenant condition is added here, not by callers: no filter can widen it.
        let mut f = tenant_filter(ctx.tenant());
        let must = f.must.get_or_insert_with(Vec::new);
        if !filter.doc_ids.is_empty() {
            must.push(any_of(
                "doc_id",
                filter
                    .doc_ids
                    .iter()
                    .map(|d| d.as_str().to_string())
                    .collect(),
            ));
        }
        if !filter.content_types.is_empty() {
            must.push(any_of("content_type", filter.content_types.clone()));
        }
        for m in &filter.metadata {
            must.push(keyword("meta", m));
        }
        let request = QueryRequest {
            prefetches: vec![],
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                query: VectorInternal::Dense(vector.to_vec()),
                using: Some(VECTOR.to_string()),
            }))),
            filter: Some(f),
            score_threshold: None,
            limit: limit.max(1),
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let points = s.shard.query(request).map_err(err)?;
        Ok(points
            .into_iter()
            .filter_map(|p| {
                Some(LegHit {
                    chunk: from_payload(p.payload.as_ref()?)?,
                    score: p.score,
                })
            })
            .collect())
    }

    fn chunks(
        &self,
        ctx: &TenantCtx,
        doc: &DocId,
        version: u64,
    ) -> VResult<Vec<(StoredChunk, Vec<f32>)>> {
        let Some(s) = self.get(ctx.tenant(), false)? else {
            return Ok(Vec::new());
        };
        let mut filter = tenant_filter(ctx.tenant());
        let range = qdrant_edge::Range {
            gte: Some(OrderedFloat(version as f64)),
            lt: Some(OrderedFloat((version + 1) as f64)),
            gt: None,
            lte: None,
        };
        filter.must.get_or_insert_with(Vec::new).extend([
            keyword("doc_id", doc.as_str()),
            Condition::Field(FieldCondition::new_range(key_path("version"), range)),
        ]);
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (records, next) = s
                .shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(256),
                    filter: Some(filter.clone()),
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(true),
                    order_by: None,
                })
                .map_err(err)?;
            for r in records {
                let chunk = r.payload.as_ref().and_then(from_payload);
                match (chunk, r.vector.and_then(dense)) {
                    (Some(c), Some(v)) => out.push((c, v)),
                    _ => return Err(err("a stored point has no payload or vector")),
                }
            }
            match next {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
        out.sort_by_key(|(c, _)| c.ordinal);
        Ok(out)
    }

    fn drop_tenant(&self, tenant: &TenantId) -> VResult<()> {
        // The map stays locked until the directory is gone, so nothing reopens the shard
        // in between. Requests already holding it finish first (they take milliseconds).
        let mut open = lock(&self.open);
        if let Some(mut s) = open.remove(tenant) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match Arc::try_unwrap(s) {
                    Ok(shard) => {
                        drop(shard);
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        s = shared;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(shared) => {
                        open.insert(tenant.clone(), shared);
                        return Err(err("the tenant's vector shard stayed in use for 30 s"));
                    }
                }
            }
        }
        let dir = self.dir(tenant);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(err)?;
        }
        Ok(())
    }

    fn maintain(&self) -> VResult<bool> {
        let dirty: Vec<Arc<TenantShard>> = lock(&self.open)
            .values()
            .filter(|s| s.dirty.load(Ordering::SeqCst))
            .cloned()
            .collect();
        let mut any = false;
        for s in dirty {
            s.dirty.store(false, Ordering::SeqCst);
            match s.shard.optimize() {
                Ok(changed) => any |= changed,
                Err(e) => {
                    s.dirty.store(true, Ordering::SeqCst);
                    return Err(err(e));
                }
            }
        }
        Ok(any)
    }

    fn close_idle(&self) -> usize {
        EdgeVectorStore::close_idle(self)
    }

    fn open_count(&self) -> usize {
        EdgeVectorStore::open_count(self)
    }

    fn flush(&self) {
        let open: Vec<Arc<TenantShard>> = lock(&self.open).values().cloned().collect();
        for s in open {
            s.shard.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(doc: &str, text: &str) -> StoredChunk {
        StoredChunk {
            doc_id: DocId::parse(doc).unwrap(),
            version: 1,
            ordinal: 0,
            title: String::new(),
            text: text.to_string(),
            content_type: "text/plain".into(),
            page: None,
            heading_path: vec![],
            metadata: Default::default(),
            start: 0,
            end: text.len() as u64,
        }
    }

    fn ctx(t: &str) -> TenantCtx {
        TenantCtx::operator(TenantId::parse(t).unwrap())
    }

    fn texts(store: &EdgeVectorStore, t: &str) -> Vec<String> {
        store
            .search(&ctx(t), &[1.0, 0.0, 0.0, 0.0], &ChunkFilter::default(), 10)
            .unwrap()
            .into_iter()
            .map(|h| h.chunk.text)
            .collect()
    }

    /// A data directory from before per-tenant shards: one shared shard at `vectors/`.
    #[test]
    fn shared_shard_is_split_per_tenant_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors");
        {
            std::fs::create_dir_all(&path).unwrap();
            let config = EdgeConfigBuilder::new()
                .vector(
                    VECTOR,
                    EdgeVectorParams::builder(4, Distance::Cosine).build(),
                )
                .build();
            let shared = EdgeShard::new(&path, config).unwrap();
            for (t, text) in [("a", "alpha text"), ("b", "beta text")] {
                let c = chunk("d1", text);
                let tenant = TenantId::parse(t).unwrap();
                let p = point(
                    point_id(&tenant, &c),
                    vec![1.0, 0.0, 0.0, 0.0],
                    payload(&tenant, &c),
                );
                upsert_points(&shared, vec![p]).unwrap();
            }
        }
        let store = EdgeVectorStore::open(&path, 4, Duration::from_secs(60)).unwrap();
        assert_eq!(texts(&store, "a"), ["alpha text"]);
        assert_eq!(texts(&store, "b"), ["beta text"]);
        assert!(!path.join("edge_config.json").exists());
        assert!(!path.join("segments").exists());
        // Dropping a tenant removes its shard directory, and with it every byte it stored.
        store.drop_tenant(&TenantId::parse("a").unwrap()).unwrap();
        assert!(!path.join(TENANTS_DIR).join("a").exists());
        assert_eq!(texts(&store, "a"), Vec::<String>::new());
        assert_eq!(texts(&store, "b"), ["beta text"]);
    }

    #[test]
    fn idle_shards_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeVectorStore::open(dir.path(), 4, Duration::ZERO).unwrap();
        let c = chunk("d1", "gamma");
        store
            .upsert(&ctx("a"), &[(c, vec![1.0, 0.0, 0.0, 0.0])])
            .unwrap();
        // Reads of a tenant without vectors create nothing.
        assert_eq!(texts(&store, "nobody"), Vec::<String>::new());
        assert!(!dir.path().join(TENANTS_DIR).join("nobody").exists());
        assert_eq!(store.open_count(), 1);
        // Dirty shards are optimised before they close.
        assert_eq!(store.close_idle(), 0);
        store.maintain().unwrap();
        assert_eq!(store.close_idle(), 1);
        assert_eq!(store.open_count(), 0);
        assert_eq!(texts(&store, "a"), ["gamma"]);
    }
}

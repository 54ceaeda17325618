//! The dense leg on qdrant-edge (the embedded default): Qdrant's own engine in-process.
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
    PointOperations, PointStructPersisted, QueryEnum, QueryRequest, Record, ScoringQuery,
    ScrollRequest, UpdateOperation, VectorInternal, VectorPersisted, VectorStructInternal,
    VectorStructPersisted, WalOptions, WithPayloadInterface, WithVector,
};
use serde_json::Value;

use super::{chunk_from_payload, chunk_payload, VResult, VectorStore};
use crate::domain::{ChunkFilter, ChunkKey, LegHit, StoredChunk};
use crate::domain::{DocId, TenantCtx, TenantId};
use crate::error::InternalError;

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
    /// The map lock is held only to find a tenant's slot; opening a shard (tens of
    /// milliseconds) holds just that slot, so cold tenants do not queue behind each other.
    open: Mutex<HashMap<TenantId, Arc<Slot>>>,
    /// Tenants opened since the process started. A shard is only closed when optimised, so
    /// only its first open in a process may find it not optimised (the last process stopped).
    seen: Mutex<std::collections::HashSet<TenantId>>,
}

#[derive(Default)]
struct Slot {
    shard: Mutex<Option<Arc<TenantShard>>>,
}

struct TenantShard {
    shard: EdgeShard,
    /// Serialises writes, optimisation and flushes of this shard: qdrant-edge's `flush`
    /// panics if it finds the WAL or segment lock taken.
    writing: Mutex<()>,
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

/// The shard is the tenant's (its directory comes from the `TenantCtx`), so no condition on
/// the tenant is needed to scope a request; results are still checked by [`owned_by`].
fn scoped_filter() -> Filter {
    Filter {
        must: Some(Vec::new()),
        ..Default::default()
    }
}

/// The points of some versions of one document.
fn versions_filter(doc: &DocId, versions: Range<u64>) -> Filter {
    let range = qdrant_edge::Range {
        gte: Some(OrderedFloat(versions.start as f64)),
        lt: Some(OrderedFloat(versions.end as f64)),
        gt: None,
        lte: None,
    };
    Filter {
        must: Some(vec![
            keyword("doc_id", doc.as_str()),
            Condition::Field(FieldCondition::new_range(key_path("version"), range)),
        ]),
        ..Default::default()
    }
}

/// Deterministic point id: a hash, not a counter, so ids say nothing about other tenants.
fn point_id(tenant: &TenantId, c: &StoredChunk) -> PointId {
    key_point_id(tenant, &c.doc_id, c.version, c.ordinal)
}

fn key_point_id(tenant: &TenantId, doc: &DocId, version: u64, ordinal: u32) -> PointId {
    PointId::Uuid(Uuid::from_bytes(super::point_uuid(
        tenant, doc, version, ordinal,
    )))
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
            // On disk: paged in on use. In RAM, qdrant-edge prefaults each segment's whole
            // 32 MiB vector chunk when a shard opens, which is 13 GiB for 1,000 small tenants.
            .vector(
                VECTOR,
                EdgeVectorParams::builder(dim, Distance::Cosine)
                    .on_disk(true)
                    .build(),
            )
            .on_disk_payload(true)
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
        // One payload index. Each index carries flag files that every open scans (about
        // 4 ms apiece); `doc_id` bounds deletes and exports to one document, and the other
        // conditions are checked on the few points that remain or on candidates.
        update(
            &shard,
            index(
                "doc_id",
                PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword),
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
            seen: Mutex::new(Default::default()),
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
        let dir = self.dir(tenant);
        let slot = {
            let mut open = lock(&self.open);
            match open.get(tenant) {
                Some(slot) => slot.clone(),
                None if !create && !dir.join("edge_config.json").exists() => return Ok(None),
                None => open.entry(tenant.clone()).or_default().clone(),
            }
        };
        let mut held = lock(&slot.shard);
        if let Some(s) = held.as_ref() {
            *lock(&s.last_used) = Instant::now();
            return Ok(Some(s.clone()));
        }
        // An empty slot left behind (a failed open, a read of a tenant without vectors) is
        // removed by `close_idle`.
        let shard = if dir.join("edge_config.json").exists() {
            EdgeShard::load(&dir, None).map_err(err)?
        } else if create {
            create_shard(&dir, self.dim)?
        } else {
            return Ok(None);
        };
        let s = Arc::new(TenantShard {
            shard,
            writing: Mutex::new(()),
            last_used: Mutex::new(Instant::now()),
            dirty: AtomicBool::new(lock(&self.seen).insert(tenant.clone())),
        });
        *held = Some(s.clone());
        Ok(Some(s))
    }

    /// The open shards, for maintenance; a slot busy opening is skipped.
    fn open_shards(&self) -> Vec<Arc<TenantShard>> {
        lock(&self.open)
            .values()
            .filter_map(|slot| slot.shard.try_lock().ok().and_then(|s| s.clone()))
            .collect()
    }

    /// Move every point of the old shared shard at `path` into its tenant's shard, then
    /// remove the shared shard. Idempotent (point ids are deterministic), so a crash midway
    /// only repeats work.
    fn migrate_shared_shard(&self, path: &Path) -> VResult<()> {
        let shared = EdgeShard::load(path, None).map_err(err)?;
        let mut moved = 0usize;
        for_each_page(&shared, None, |records| {
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
            Ok(())
        })?;
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
}

/// Every point matching `filter`, with payload and vector, a page of 256 at a time.
fn for_each_page(
    shard: &EdgeShard,
    filter: Option<Filter>,
    mut page: impl FnMut(Vec<Record>) -> VResult<()>,
) -> VResult<()> {
    let mut offset = None;
    loop {
        let (records, next) = shard
            .scroll(ScrollRequest {
                offset,
                limit: Some(256),
                filter: filter.clone(),
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            })
            .map_err(err)?;
        page(records)?;
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(()),
        }
    }
}

/// The value behind `arc` once no one else holds it (requests take milliseconds).
fn unwrap_when_unused<T>(mut arc: Arc<T>, deadline: Instant) -> VResult<T> {
    loop {
        match Arc::try_unwrap(arc) {
            Ok(v) => return Ok(v),
            Err(shared) if Instant::now() < deadline => {
                arc = shared;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return Err(err("the tenant's vector shard stayed in use for 30 s")),
        }
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
    Payload(chunk_payload(tenant, c))
}

fn from_payload(p: &Payload) -> Option<StoredChunk> {
    chunk_from_payload(&p.0)
}

fn owned_by(payload: &Payload, tenant: &TenantId) -> VResult<()> {
    super::owned_by(&payload.0, tenant)
}

impl EdgeVectorStore {
    /// The points of `keys`, each read by `read`, in the order asked (`None` where absent).
    /// The ids derive from the caller's tenant and are looked up in the caller's shard, so
    /// they cannot name another tenant's point.
    fn by_keys<T>(
        &self,
        ctx: &TenantCtx,
        keys: &[ChunkKey],
        payload: bool,
        vector: bool,
        read: impl Fn(Record) -> VResult<T>,
    ) -> VResult<Vec<Option<T>>> {
        let Some(s) = self.get(ctx.tenant(), false)? else {
            return Ok(keys.iter().map(|_| None).collect());
        };
        let ids: Vec<PointId> = keys
            .iter()
            .map(|(doc, version, ordinal)| key_point_id(ctx.tenant(), doc, *version, *ordinal))
            .collect();
        let records = s
            .shard
            .retrieve(
                &ids,
                Some(WithPayloadInterface::Bool(payload)),
                Some(WithVector::Bool(vector)),
            )
            .map_err(err)?;
        let mut found: HashMap<PointId, T> = HashMap::with_capacity(records.len());
        for r in records {
            let id = r.id;
            found.insert(id, read(r)?);
        }
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }
}

impl VectorStore for EdgeVectorStore {
    fn upsert(&self, ctx: &TenantCtx, points: &[(StoredChunk, Vec<f32>)]) -> VResult<()> {
        if points.is_empty() {
            return Ok(());
        }
        let s = self.get(ctx.tenant(), true)?.expect("created");
        let _writing = lock(&s.writing);
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
        // qdrant-edge 0.7 writes its WAL but does not replay it on load, so the segment files
        // themselves must reach the disk before the catalog makes the version live (a killed
        // process keeps them in the page cache; a power cut would not).
        s.shard.flush();
        Ok(())
    }

    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> VResult<()> {
        let Some(s) = self.get(ctx.tenant(), false)? else {
            return Ok(());
        };
        s.dirty.store(true, Ordering::SeqCst);
        let filter = versions_filter(doc, versions);
        let _writing = lock(&s.writing);
        update(
            &s.shard,
            UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter)),
        )?;
        s.shard.flush();
        Ok(())
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
        // The shard is chosen here from the context, not by callers: no filter can widen it.
        let mut f = scoped_filter();
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
            // No conditions: an unfiltered search, which lets qdrant skip filter planning.
            filter: f.must.as_ref().is_some_and(|m| !m.is_empty()).then_some(f),
            score_threshold: None,
            limit: limit.max(1),
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let points = s.shard.query(request).map_err(err)?;
        let mut hits = Vec::with_capacity(points.len());
        for p in points {
            let payload = p
                .payload
                .as_ref()
                .ok_or_else(|| err("a point has no payload"))?;
            owned_by(payload, ctx.tenant())?;
            if let Some(chunk) = from_payload(payload) {
                hits.push(LegHit {
                    chunk,
                    score: p.score,
                });
            }
        }
        Ok(hits)
    }

    fn vectors(&self, ctx: &TenantCtx, keys: &[ChunkKey]) -> VResult<Vec<Option<Vec<f32>>>> {
        // No payload: reading it costs more than the vectors.
        self.by_keys(ctx, keys, false, true, |r| {
            r.vector
                .and_then(dense)
                .ok_or_else(|| err("a stored point has no vector"))
        })
    }

    fn stored_chunks(
        &self,
        ctx: &TenantCtx,
        keys: &[ChunkKey],
    ) -> VResult<Vec<Option<StoredChunk>>> {
        self.by_keys(ctx, keys, true, false, |r| {
            let p = r
                .payload
                .as_ref()
                .ok_or_else(|| err("a stored point has no payload"))?;
            owned_by(p, ctx.tenant())?;
            from_payload(p).ok_or_else(|| err("a stored point's payload is unreadable"))
        })
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
        let filter = versions_filter(doc, version..version + 1);
        let mut out = Vec::new();
        for_each_page(&s.shard, Some(filter), |records| {
            for r in records {
                if let Some(p) = &r.payload {
                    owned_by(p, ctx.tenant())?;
                }
                let chunk = r.payload.as_ref().and_then(from_payload);
                match (chunk, r.vector.and_then(dense)) {
                    (Some(c), Some(v)) => out.push((c, v)),
                    _ => return Err(err("a stored point has no payload or vector")),
                }
            }
            Ok(())
        })?;
        out.sort_by_key(|(c, _)| c.ordinal);
        Ok(out)
    }

    fn drop_tenant(&self, tenant: &TenantId) -> VResult<()> {
        // The map stays locked until the directory is gone, so nothing reopens the shard
        // in between. Requests already holding it finish first (they take milliseconds).
        let mut open = lock(&self.open);
        if let Some(slot) = open.remove(tenant) {
            let deadline = Instant::now() + Duration::from_secs(30);
            let slot = unwrap_when_unused(slot, deadline)?;
            let shard = slot.shard.into_inner().unwrap_or_else(|p| p.into_inner());
            if let Some(shard) = shard {
                drop(unwrap_when_unused(shard, deadline)?);
            }
        }
        lock(&self.seen).remove(tenant);
        let dir = self.dir(tenant);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(err)?;
        }
        Ok(())
    }

    fn maintain(&self) -> VResult<bool> {
        let dirty: Vec<Arc<TenantShard>> = self
            .open_shards()
            .into_iter()
            .filter(|s| s.dirty.load(Ordering::SeqCst))
            .collect();
        let mut any = false;
        for s in dirty {
            let _writing = lock(&s.writing);
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

    /// Close shards unused for the idle period (dirty ones wait for their optimisation).
    fn close_idle(&self) -> usize {
        let mut open = lock(&self.open);
        let idle = self.idle;
        let mut closed = 0;
        // A slot or shard in use elsewhere (Arc held) stays open. Dropping a shard flushes it
        // under the map lock, so it is never reopened before it is closed.
        open.retain(|_, slot| {
            if Arc::strong_count(slot) > 1 {
                return true;
            }
            let Ok(held) = slot.shard.try_lock() else {
                return true;
            };
            let keep = held.as_ref().is_some_and(|s| {
                Arc::strong_count(s) > 1
                    || s.dirty.load(Ordering::SeqCst)
                    || lock(&s.last_used).elapsed() < idle
            });
            closed += usize::from(!keep && held.is_some());
            keep
        });
        closed
    }

    fn open_count(&self) -> usize {
        lock(&self.open)
            .values()
            .filter(|slot| slot.shard.try_lock().map_or(true, |s| s.is_some()))
            .count()
    }

    fn flush(&self) {
        for s in self.open_shards() {
            let _writing = lock(&s.writing);
            s.shard.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::test_chunk;

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

    /// A point carries its chunk's own fields and the filter terms, never the document's title
    /// or metadata values (kept once, in the catalog); a long value is a hashed term.
    #[test]
    fn payload_keeps_no_per_document_field() {
        let mut c = test_chunk("d", 0, "body text");
        c.title = "T".repeat(1000);
        c.metadata.insert("lang".into(), "en".into());
        c.metadata.insert("blob".into(), "x".repeat(900).into());
        let p = payload(&TenantId::parse("t").unwrap(), &c);
        let bytes = serde_json::to_string(&p.0).unwrap();
        assert!(
            !bytes.contains("TTTT") && !bytes.contains("xxxx"),
            "{bytes}"
        );
        assert!(bytes.contains("lang=en"), "{bytes}");
        assert!(bytes.len() < 400, "{} bytes: {bytes}", bytes.len());
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
                let c = test_chunk("d1", 0, text);
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
        let c = test_chunk("d1", 0, "gamma");
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
        // Reopened clean (it was optimised before closing), so it can close again at once.
        assert_eq!(store.close_idle(), 1);
    }
}

//! Dense leg. [`VectorStore`] is the seam between the embedded store (qdrant-edge, default) and
//! a Qdrant cluster (qdrant-client) for deployments that outgrow one machine.
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::{
    Condition, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParams,
    FieldCondition, FieldIndexOperations, Filter, HnswIndexConfig, JsonPath, KeywordIndexParams,
    Match, NamedQuery, Payload, PayloadFieldSchema, PayloadSchemaParams, PayloadSchemaType,
    PointId, PointInsertOperations, PointOperations, PointStructPersisted, QueryEnum, QueryRequest,
    ScoringQuery, ScrollRequest, UpdateOperation, VectorInternal, VectorPersisted,
    VectorStructInternal, VectorStructPersisted, WithPayloadInterface, WithVector,
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
    /// Operator action: remove every point of a tenant.
    fn drop_tenant(&self, tenant: &TenantId) -> VResult<()>;
    /// Background maintenance (index building); never called on the request path.
    fn maintain(&self) -> VResult<bool>;
    fn flush(&self);
}

const VECTOR: &str = "dense";

/// qdrant-edge: one shard for all tenants with a tenant keyword index (`is_tenant`) and
/// per-tenant HNSW graphs (`payload_m`, global `m = 0`) — Qdrant's multitenancy layout.
/// One shard, because each shard owns a thread pool.
pub struct EdgeVectorStore {
    shard: EdgeShard,
}

fn err(e: impl std::fmt::Display) -> InternalError {
    InternalError::Vector(e.to_string())
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

impl EdgeVectorStore {
    pub fn open(path: &Path, dim: usize) -> VResult<Self> {
        let exists = path.join("edge_config.json").exists();
        let shard = if exists {
            EdgeShard::load(path, None).map_err(err)?
        } else {
            std::fs::create_dir_all(path).map_err(err)?;
            let hnsw = HnswIndexConfig {
                m: 0,
                payload_m: Some(16),
                ..Default::default()
            };
            let config = EdgeConfigBuilder::new()
                .vector(
                    VECTOR,
                    EdgeVectorParams::builder(dim, Distance::Cosine).build(),
                )
                .hnsw_config(hnsw)
                .build();
            let shard = EdgeShard::new(path, config).map_err(err)?;
            let index = |name: &str, schema: PayloadFieldSchema| {
                UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(
                    CreateIndex {
                        field_name: key_path(name),
                        field_schema: Some(schema),
                    },
                ))
            };
            let tenant_kw =
                PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
                    is_tenant: Some(true),
                    ..Default::default()
                }));
            shard.update(index("tenant_id", tenant_kw)).map_err(err)?;
            for kw in ["doc_id", "content_type", "meta"] {
                shard
                    .update(index(
                        kw,
                        PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword),
                    ))
                    .map_err(err)?;
            }
            shard
                .update(index(
                    "version",
                    PayloadFieldSchema::FieldType(PayloadSchemaType::Integer),
                ))
                .map_err(err)?;
            shard
        };
        Ok(Self { shard })
    }
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
        // Bounded batches keep each WAL record small.
        for batch in points.chunks(256) {
            let list = batch
                .iter()
                .map(|(c, v)| PointStructPersisted {
                    id: point_id(ctx.tenant(), c),
                    vector: VectorStructPersisted::Named(HashMap::from([(
                        VECTOR.to_string(),
                        VectorPersisted::Dense(v.clone()),
                    )])),
                    payload: Some(payload(ctx.tenant(), c)),
                })
                .collect();
            let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                PointInsertOperations::PointsList(list),
            ));
            self.shard.update(op).map_err(err)?;
        }
        Ok(())
    }

    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> VResult<()> {
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
        self.shard
            .update(UpdateOperation::PointOperation(
                PointOperations::DeletePointsByFilter(filter),
            ))
            .map_err(err)
    }

    fn search(
        &self,
        ctx: &TenantCtx,
        vector: &[f32],
        filter: &ChunkFilter,
        limit: usize,
    ) -> VResult<Vec<LegHit>> {
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
        let points = self.shard.query(request).map_err(err)?;
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
            let (records, next) = self
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
                let vector = match r.vector {
                    Some(VectorStructInternal::Named(mut m)) => match m.remove(VECTOR) {
                        Some(VectorInternal::Dense(v)) => Some(v),
                        _ => None,
                    },
                    Some(VectorStructInternal::Single(v)) => Some(v),
                    _ => None,
                };
                match (chunk, vector) {
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
        self.shard
            .update(UpdateOperation::PointOperation(
                PointOperations::DeletePointsByFilter(tenant_filter(tenant)),
            ))
            .map_err(err)
    }

    fn maintain(&self) -> VResult<bool> {
        self.shard.optimize().map_err(err)
    }

    fn flush(&self) {
        self.shard.flush();
    }
}

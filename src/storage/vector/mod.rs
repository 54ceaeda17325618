//! The dense (vector) leg seam. [`EdgeVectorStore`] is the embedded default (qdrant-edge);
//! a Qdrant cluster (qdrant-client) is the implementation for deployments that outgrow one
//! machine.
mod edge;

use std::ops::Range;

use crate::domain::{ChunkFilter, ChunkKey, DocId, LegHit, StoredChunk, TenantCtx, TenantId};
use crate::error::InternalError;
pub use edge::EdgeVectorStore;

pub(crate) type VResult<T> = Result<T, InternalError>;

/// The payload every vector backend stores with a chunk's point. The filterable terms only: the
/// title and metadata are the document's, kept once in the catalog (points written before this
/// carry them too; they are ignored).
pub(crate) fn chunk_payload(
    tenant: &TenantId,
    c: &StoredChunk,
) -> serde_json::Map<String, serde_json::Value> {
    let v = serde_json::json!({
        "tenant_id": tenant.as_str(),
        "doc_id": c.doc_id.as_str(),
        "version": c.version,
        "ordinal": c.ordinal,
        "text": c.text,
        "content_type": c.content_type,
        "page": c.page,
        "heading_path": c.heading_path,
        "meta": c.metadata_terms(),
        "start": c.start,
        "end": c.end,
    });
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("json! object"),
    }
}

/// The chunk a payload written by [`chunk_payload`] describes; `None` if it is not one.
pub(crate) fn chunk_from_payload(
    m: &serde_json::Map<String, serde_json::Value>,
) -> Option<StoredChunk> {
    use serde_json::Value;
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
        title: String::new(),
        text: s("text"),
        content_type: s("content_type"),
        page: u("page").map(|p| p as u32),
        heading_path: serde_json::from_value(m.get("heading_path").cloned().unwrap_or(Value::Null))
            .unwrap_or_default(),
        metadata: Default::default(),
        start: u("start").unwrap_or(0),
        end: u("end").unwrap_or(0),
    })
}

/// Defence in depth on what leaves a store: every point carries its tenant, and a point of
/// another tenant among a tenant's results is an internal error, never a result.
pub(crate) fn owned_by(
    m: &serde_json::Map<String, serde_json::Value>,
    tenant: &TenantId,
) -> VResult<()> {
    match m.get("tenant_id").and_then(serde_json::Value::as_str) {
        Some(t) if t == tenant.as_str() => Ok(()),
        _ => Err(InternalError::Vector(
            "a point returned for a tenant belongs to another tenant".into(),
        )),
    }
}

/// A chunk's point id in every vector backend: a hash of its identity, not a counter, so ids say
/// nothing about other tenants and a retried write lands on the same point.
pub(crate) fn point_uuid(tenant: &TenantId, doc: &DocId, version: u64, ordinal: u32) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [tenant.as_str().as_bytes(), doc.as_str().as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(version.to_le_bytes());
    h.update(ordinal.to_le_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes
}

/// Stores chunk vectors with their payload and searches them, always within one tenant.
///
/// Contract: every tenant-scoped call takes the caller's [`TenantCtx`] first and must only read
/// or change that tenant's points, whatever the filter says. Writes are on disk (fsynced) when
/// the call returns. `search` returns at most `limit` hits, best first, with
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
    /// The stored vectors of these chunks, in the order asked; `None` where no such chunk is
    /// stored.
    fn vectors(&self, ctx: &TenantCtx, keys: &[ChunkKey]) -> VResult<Vec<Option<Vec<f32>>>>;
    /// The stored chunks (payload, no vector) of these keys, in the order asked; `None` where
    /// no such chunk is stored. Work is bounded by `keys`, unlike `chunks`.
    fn stored_chunks(
        &self,
        ctx: &TenantCtx,
        keys: &[ChunkKey],
    ) -> VResult<Vec<Option<StoredChunk>>>;
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
    /// Whether the store can serve requests now (`/readyz`). Embedded stores always can.
    fn health(&self) -> VResult<()> {
        Ok(())
    }
}

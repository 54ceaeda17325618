//! The lexical (BM25) leg seam.
//!
//! BM25 statistics (document count, document frequencies, average length) are per tenant in
//! every implementation: scores computed over a shared corpus would let one tenant's text skew,
//! and reveal itself through, another tenant's scores.
pub mod analysis;
mod tantivy;

use std::ops::Range;

pub use self::analysis::is_stop_word;
pub use self::tantivy::TantivyLexicalStore;
use crate::domain::{ChunkFilter, DocId, LegHit, StoredChunk, TenantCtx, TenantId};
use crate::error::Result;

/// Indexes chunk text and searches it by BM25, always within one tenant.
///
/// Contract: every tenant-scoped call takes the caller's [`TenantCtx`] first and reads or
/// changes only that tenant's chunks, whatever the filter says; scores use that tenant's
/// statistics only. Writes are durable and visible to `search` when the call returns.
/// Implementations are `Send + Sync`, called from blocking threads, and may block.
pub trait LexicalStore: Send + Sync {
    /// Index chunks (one version of a document).
    fn add(&self, ctx: &TenantCtx, chunks: &[StoredChunk]) -> Result<()>;

    /// Remove every chunk of `doc` whose version is in `versions`.
    fn delete_versions(&self, ctx: &TenantCtx, doc: &DocId, versions: Range<u64>) -> Result<()>;

    /// Operator action: remove every chunk of a tenant and the storage that held it.
    fn drop_tenant(&self, tenant: &TenantId) -> Result<()>;

    /// Release what tenants idle for the configured period hold in memory; returns how many.
    fn close_idle(&self) -> usize;

    /// Tenants whose index is open now.
    fn open_count(&self) -> usize;

    /// Top `limit` chunks of the caller's tenant by BM25.
    fn search(
        &self,
        ctx: &TenantCtx,
        query: &str,
        filter: &ChunkFilter,
        limit: usize,
    ) -> Result<Vec<LegHit>>;

    /// HTML snippets of `texts` with the query's terms in `<b>`; `None` where nothing matches.
    fn snippets(&self, ctx: &TenantCtx, query: &str, texts: &[&str])
        -> Result<Vec<Option<String>>>;
}

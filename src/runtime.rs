//! The edge between async and CPU work: request handlers hand CPU work (parsing, embedding,
//! SQLite, tantivy, vector search) to the blocking pool through here, so no runtime thread runs it.
use crate::error::{EngineError, InternalError, Result};

/// Run blocking work off the async runtime.
pub async fn blocking<T: Send + 'static>(
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

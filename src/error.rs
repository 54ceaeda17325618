//! Engine errors, split by who is at fault. The HTTP layer maps them onto the one catalogue of
//! API error codes in `api::error`.
use tenantry_ingest::IngestErrorCode;
use thiserror::Error;

/// The caller can fix these.
#[derive(Debug, Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A per-document field past its configured cap (`ingest.max_*_bytes`).
    #[error("{field} is {size} bytes; at most {limit} are allowed")]
    FieldTooLarge {
        field: String,
        size: usize,
        limit: usize,
    },
    #[error("{0}")]
    Conflict(String),
    /// The caller's role may not do this (beyond what the role extractors check).
    #[error("{0}")]
    Forbidden(String),
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    /// The document's job failed: its bytes could not be turned into text.
    #[error("{message}")]
    Document {
        code: IngestErrorCode,
        message: String,
    },
    #[error("this tenant has no openai generator configured (PUT /v1/tenants/{{id}}/config)")]
    GeneratorNotConfigured,
    #[error("model {0:?} is not on this tenant's allow-list")]
    ModelNotAllowed(String),
    #[error("quota exceeded: this tenant may store at most {limit} {what}")]
    QuotaExceeded { what: &'static str, limit: u64 },
    #[error("rate limit exceeded for this tenant; retry later")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many queued documents for this tenant; retry later")]
    TenantQueueFull { retry_after_secs: u64 },
}

/// Our fault or the machine's; details go to logs, never to the client.
#[derive(Debug, Error)]
pub enum InternalError {
    #[error("catalog: {0}")]
    Catalog(#[from] rusqlite::Error),
    #[error("lexical index: {0}")]
    Lexical(#[from] tantivy::TantivyError),
    #[error("vector store: {0}")]
    Vector(String),
    /// A storage backend (a Qdrant cluster) did not answer after bounded retries: the request
    /// may succeed later (503 with `Retry-After`), nothing is half-done.
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    #[error("embedding: {0}")]
    Embedding(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Internal(#[from] InternalError),
    /// Temporary: the ingestion queue is full or the engine is shutting down.
    #[error("service unavailable: {reason}")]
    Unavailable {
        reason: &'static str,
        retry_after_secs: u64,
    },
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<tantivy::TantivyError> for EngineError {
    fn from(e: tantivy::TantivyError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        Self::Internal(e.into())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

//! Domain types at the bottom of the crate: ids and the tenant context, roles, chunks as the
//! storage legs hold them, and the vocabulary of a search. Nothing here imports upward.
mod chunk;
mod role;
mod search;
mod tenant;

pub use chunk::*;
pub use role::*;
pub use search::*;
pub use tenant::*;

/// Milliseconds since the Unix epoch: job leases and the queue's turns need more than seconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch: the one clock of records, tokens and jobs.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

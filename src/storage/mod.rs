//! Storage, in layers: one trait per seam, its implementations beside it.
//!
//! - [`catalog::Catalog`]: tenants, keys, documents and versions, jobs, usage, threads, configs
//!   (SQLite embedded).
//! - [`vector::VectorStore`]: the dense leg (qdrant-edge embedded).
//! - [`lexical::LexicalStore`]: the BM25 leg (tantivy embedded).
//!
//! [`qdrant::QdrantStore`] implements both legs on a Qdrant cluster (one point per chunk).
//!
//! Nothing here knows the engine, HTTP or the other seams; storage imports only `domain`,
//! `config`, `error` and `secrets` (sealed keys are stored, never opened, here).
pub mod catalog;
pub mod lexical;
pub mod qdrant;
pub mod vector;

//! Tenantry: a multi-tenant RAG retrieval engine. See ARCHITECTURE.md for the map.
pub mod answer;
pub mod api;
pub mod bench;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod error;
pub mod eval;
pub mod keys;
pub mod lexical;
pub mod query;
pub mod secrets;
pub mod store;
pub mod tenant;
pub mod vector;

pub use engine::Engine;

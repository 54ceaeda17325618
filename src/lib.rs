//! Tenantry: a multi-tenant RAG retrieval engine. See ARCHITECTURE.md for the map.
pub mod answer;
pub mod api;
pub mod archive;
pub mod auth;
pub mod bench;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fairq;
pub mod keys;
pub mod lexical;
pub mod limits;
pub mod metrics;
pub mod query;
pub mod secrets;
pub mod store;
pub mod tenant;
pub mod usage;
pub mod vector;

pub use engine::Engine;

//! Tenantry: a multi-tenant RAG retrieval engine. See ARCHITECTURE.md for the map.
pub mod answer;
pub mod api;
pub mod archive;
pub mod auth;
pub mod bench;
pub mod config;
pub mod domain;
pub mod egress;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fairq;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod pagehit;
pub mod query;
pub mod report;
pub mod runtime;
pub mod secrets;
pub mod storage;
pub mod usage;

pub use engine::Engine;

//! Integration tests of the `tenantry` crate: the real router (`oneshot`) and the real binary on
//! loopback, with the real model, real tantivy and real qdrant-edge.
mod answer;
mod architecture;
mod cli;
mod cluster;
mod common;
mod conformance;
mod console;
mod container;
mod crash;
mod fuzz;
mod hostile;
mod http;
mod ingestion;
mod isolation;
mod lifecycle;
mod nodes;
mod openapi;
mod operations;
mod pg;
mod queue;
mod roles;
mod tls;

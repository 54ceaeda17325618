//! Isolation as a property: random sequences of ingest / delete / get / list / job / query
//! operations across tenants that share document ids and near-identical text, checked after every
//! step against a simple in-memory model. Nothing may cross tenants, in any mode or endpoint.
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use crate::common::*;

const TENANTS: usize = 3;
const DOCS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Put {
        tenant: usize,
        doc: usize,
        variant: u8,
    },
    Delete {
        tenant: usize,
        doc: usize,
    },
    Get {
        tenant: usize,
        doc: usize,
    },
    List {
        tenant: usize,
    },
    /// `tenant` asks for the n-th job ever created (any tenant's).
    Job {
        tenant: usize,
        nth: usize,
    },
    /// `tenant` searches for the marker of (owner, doc) in one mode.
    Query {
        tenant: usize,
        owner: usize,
        doc: usize,
        mode: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TENANTS;
    let d = 0..DOCS;
    prop_oneof![
        4 => (t.clone(), d.clone(), 0u8..3).prop_map(|(tenant, doc, variant)| Op::Put { tenant, doc, variant }),
        1 => (t.clone(), d.clone()).prop_map(|(tenant, doc)| Op::Delete { tenant, doc }),
        1 => (t.clone(), d.clone()).prop_map(|(tenant, doc)| Op::Get { tenant, doc }),
        1 => t.clone().prop_map(|tenant| Op::List { tenant }),
        1 => (t.clone(), 0usize..40).prop_map(|(tenant, nth)| Op::Job { tenant, nth }),
        4 => (t.clone(), t, d, 0usize..3).prop_map(|(tenant, owner, doc, mode)| Op::Query { tenant, owner, doc, mode }),
    ]
}

/// A made-up word that the BM25 analyser keeps whole and that only this version contains.
fn marker(case: usize, tenant: usize, doc: usize, variant: u8) -> String {
    let letters = |n: usize| -> String {
        format!("{n}")
            .bytes()
            .map(|b| (b'a' + (b - b'0')) as char)
            .collect()
    };
    format!(
        "qx{}t{}d{}v{}",
        letters(case),
        letters(tenant),
        letters(doc),
        letters(variant as usize)
    )
}

fn text(marker: &str, variant: u8) -> String {
    // Near-duplicates across tenants and versions: only the marker tells them apart.
    let topics = ["ferry schedules", "tide tables", "harbour fees"];
    format!(
        "Harbour notice {marker}. The shared harbour manual describes ferry schedules, tide tables and harbour fees; this page covers {}.",
        topics[variant as usize % 3]
    )
}

async fn run_case(app: &TestApp, case: usize, ops: Vec<Op>) {
    let mut keys = Vec::new();
    for t in 0..TENANTS {
        keys.push(app.tenant(&format!("c{case}-t{t}")).await);
    }
    let mut model: HashMap<(usize, usize), String> = HashMap::new();
    let mut jobs: Vec<(usize, String)> = Vec::new();
    let modes = ["hybrid", "dense", "bm25"];
    for op in ops {
        match op {
            Op::Put {
                tenant,
                doc,
                variant,
            } => {
                let m = marker(case, tenant, doc, variant);
                let body = json!({"id": format!("d{doc}"), "title": m, "text": text(&m, variant)});
                let r = app
                    .call("POST", "/v1/documents", &keys[tenant], Some(body))
                    .await;
                assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
                let job = r.body["job_id"].as_str().unwrap().to_string();
                let done = app
                    .engine
                    .wait_job(
                        &tenantry::domain::TenantCtx::operator(
                            tenantry::domain::TenantId::parse(&format!("c{case}-t{tenant}"))
                                .unwrap(),
                        ),
                        &job,
                        std::time::Duration::from_secs(120),
                    )
                    .await
                    .unwrap();
                assert_eq!(done.status.as_str(), "succeeded", "{:?}", done.error);
                jobs.push((tenant, job));
                model.insert((tenant, doc), m);
            }
            Op::Delete { tenant, doc } => {
                let r = app
                    .call(
                        "DELETE",
                        &format!("/v1/documents/d{doc}"),
                        &keys[tenant],
                        None,
                    )
                    .await;
                let expected = if model.remove(&(tenant, doc)).is_some() {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::NOT_FOUND
                };
                assert_eq!(r.status, expected);
            }
            Op::Get { tenant, doc } => {
                let r = app
                    .call("GET", &format!("/v1/documents/d{doc}"), &keys[tenant], None)
                    .await;
                match model.get(&(tenant, doc)) {
                    Some(m) => assert_eq!(
                        (r.status, r.body["title"].as_str()),
                        (StatusCode::OK, Some(m.as_str()))
                    ),
                    None => assert_eq!(
                        (r.status, r.body["error"]["code"].as_str()),
                        (StatusCode::NOT_FOUND, Some("not_found"))
                    ),
                }
            }
            Op::List { tenant } => {
                let r = app.call("GET", "/v1/documents", &keys[tenant], None).await;
                let got: BTreeSet<String> = r.body["documents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["title"].as_str().unwrap().to_string())
                    .collect();
                let want: BTreeSet<String> = model
                    .iter()
                    .filter(|((t, _), _)| *t == tenant)
                    .map(|(_, m)| m.clone())
                    .collect();
                assert_eq!(got, want);
            }
            Op::Job { tenant, nth } => {
                let Some((owner, job)) = jobs.get(nth % jobs.len().max(1)).cloned() else {
                    continue;
                };
                let r = app
                    .call("GET", &format!("/v1/jobs/{job}"), &keys[tenant], None)
                    .await;
                let expected = if owner == tenant {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                };
                assert_eq!(
                    r.status, expected,
                    "job of tenant {owner} asked by {tenant}"
                );
            }
            Op::Query {
                tenant,
                owner,
                doc,
                mode,
            } => {
                let target = model
                    .get(&(owner, doc))
                    .cloned()
                    .unwrap_or_else(|| marker(case, owner, doc, 0));
                let r = app
                    .query(
                        &keys[tenant],
                        &format!("{target} harbour notice"),
                        modes[mode],
                        20,
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK);
                let results = r.body["results"].as_array().unwrap();
                for hit in results {
                    let id = hit["document_id"].as_str().unwrap();
                    let d: usize = id.trim_start_matches('d').parse().unwrap();
                    let m = model.get(&(tenant, d)).unwrap_or_else(|| {
                        panic!("tenant {tenant} saw {id}, which it does not have")
                    });
                    assert!(
                        hit["text"].as_str().unwrap().contains(m.as_str()),
                        "tenant {tenant} saw text that is not its live {id}"
                    );
                }
                let own: usize = model.keys().filter(|(t, _)| *t == tenant).count();
                assert_eq!(
                    results.len(),
                    own.min(20),
                    "{}: every live chunk of the tenant is a candidate",
                    modes[mode]
                );
                if owner == tenant && model.contains_key(&(owner, doc)) && modes[mode] == "bm25" {
                    assert_eq!(
                        results[0]["document_id"],
                        format!("d{doc}"),
                        "own marker ranks first in bm25"
                    );
                }
            }
        }
    }
}

fn check_isolation(extra: Vec<String>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let app = rt.block_on(app_with(&extra));
    let case = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 10,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 5..30), |ops| {
            let n = case.fetch_add(1, Ordering::SeqCst);
            rt.block_on(run_case(&app, n, ops));
            Ok(())
        })
        .unwrap();
}

#[test]
fn no_operation_sequence_crosses_tenants() {
    check_isolation(vec![]);
}

#[test]
fn no_operation_sequence_crosses_tenants_on_a_qdrant_cluster() {
    let Some(cluster) = crate::cluster::cluster_or_skip("isolation on a qdrant cluster") else {
        return;
    };
    check_isolation(cluster.overrides(2));
}

#[test]
fn no_operation_sequence_crosses_tenants_with_a_postgres_catalog() {
    let pg = crate::pg::Postgres::start();
    check_isolation(pg.overrides());
}

//! One conformance suite, every storage backend: the same requests against the real router on
//! the embedded backend (qdrant-edge + tantivy) and on a real 3-node Qdrant cluster. What the
//! suite checks is what a tenant can observe: modes and fusion, filters, re-ingest, delete,
//! export/import, answers, BM25 scores that depend on the tenant's own documents only, and
//! (in `isolation.rs`, run on both backends too) the isolation property.
use std::io::BufReader;

use axum::http::StatusCode;
use serde_json::{json, Value};
use tenantry::domain::{TenantCtx, TenantId};

use crate::cluster::cluster_or_skip;
use crate::common::*;

const DOCS: &[(&str, &str, &str)] = &[
    (
        "ferry",
        "Ferry timetable",
        "The morning ferry to the island leaves the harbour at seven. Tickets are sold on board.",
    ),
    (
        "glacier",
        "Glacier walks",
        "Guided glacier walks start at the visitor centre. Crampons and helmets are provided.",
    ),
    (
        "bakery",
        "Bakery hours",
        "The village bakery opens at six and sells rye bread, cinnamon buns and coffee.",
    ),
    (
        "museum",
        "Maritime museum",
        "The maritime museum shows old fishing boats, ship models and a lighthouse lens.",
    ),
];

fn hits(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    doc_ids(r)
}

async fn search(app: &TestApp, key: &str, body: Value) -> Resp {
    app.call("POST", "/v1/query", key, Some(body)).await
}

async fn put(app: &TestApp, key: &str, id: &str, title: &str, text: &str, meta: Value) {
    let r = app
        .call(
            "POST",
            "/v1/documents?wait=true",
            key,
            Some(json!({"id": id, "title": title, "text": text, "metadata": meta})),
        )
        .await;
    assert!(r.status.is_success(), "{id}: {:?}", r.body);
    assert_eq!(r.body["status"], "ready", "{id}: {:?}", r.body);
}

/// Every check of the suite on one app (a fresh data directory, and for the cluster a fresh
/// collection).
async fn suite(app: &TestApp) {
    let a = app.tenant("acme").await;
    let b = app.tenant("bravo").await;
    for (i, (id, title, text)) in DOCS.iter().enumerate() {
        let lang = if i % 2 == 0 { "en" } else { "de" };
        put(app, &a, id, title, text, json!({"lang": lang, "n": i})).await;
    }
    put(app, &b, "b-first", "", "Bravo's first note.", json!({})).await;

    // Jobs, newest first, a page at a time; a tenant sees its own, the operator everyone's.
    let r = app.call("GET", "/v1/jobs?limit=3", &a, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let docs_of = |r: &Resp| -> Vec<String> {
        r.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["document_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(docs_of(&r), ["museum", "bakery", "glacier"]);
    assert!(r.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == "succeeded"));
    let next = r.body["next_before"]
        .as_str()
        .expect("a second page")
        .to_string();
    let r = app
        .call("GET", &format!("/v1/jobs?limit=3&before={next}"), &a, None)
        .await;
    assert_eq!(docs_of(&r), ["ferry"], "{:?}", r.body);
    assert!(r.body.get("next_before").is_none(), "{:?}", r.body);
    let r = app.call("GET", "/v1/jobs", &b, None).await;
    assert_eq!(docs_of(&r), ["b-first"]);
    // The cursor is a job id of the caller's own: no sequence shared with other tenants; an
    // unknown cursor, another tenant's included, gives an empty page.
    assert!(next.parse::<i64>().is_err(), "{next}");
    for (key, cursor) in [(&a, "x"), (&b, next.as_str())] {
        let r = app
            .call("GET", &format!("/v1/jobs?before={cursor}"), key, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["jobs"], json!([]), "{:?}", r.body);
    }
    let r = app.call("GET", "/v1/queue?limit=5", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let recent: Vec<(String, String)> = r.body["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["tenant"].as_str().unwrap().to_string(),
                j["document_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        recent,
        [
            ("bravo", "b-first"),
            ("acme", "museum"),
            ("acme", "bakery"),
            ("acme", "glacier"),
            ("acme", "ferry")
        ]
        .map(|(t, d)| (t.to_string(), d.to_string()))
    );
    assert_eq!(r.body["unfinished"], json!([]));
    // A document's chunks in reading order; another tenant's document does not exist.
    let r = app
        .call("GET", "/v1/documents/ferry/chunks", &a, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["total"], 1, "{:?}", r.body);
    assert_eq!(r.body["chunks"][0]["ordinal"], 0);
    assert!(r.body["chunks"][0]["text"]
        .as_str()
        .unwrap()
        .contains("morning ferry"));
    let r = app
        .call("GET", "/v1/documents/ferry/chunks", &b, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let r = app.call("DELETE", "/v1/documents/b-first", &b, None).await;
    assert!(r.status.is_success(), "{:?}", r.body);

    // Modes and fusion: the document a question is about comes first in each.
    for mode in ["hybrid", "dense", "bm25"] {
        let r = app.query(&a, "when does the ferry leave", mode, 3).await;
        assert_eq!(hits(&r)[0], "ferry", "{mode}: {:?}", r.body);
        let hit = &r.body["results"][0];
        assert!(hit["score"].as_f64().unwrap() > 0.0, "{mode}: {hit}");
    }
    let r = app.query(&a, "crampons helmets", "bm25", 3).await;
    assert_eq!(
        hits(&r),
        vec!["glacier"],
        "BM25 matches only documents with the terms"
    );
    let snippet = r.body["results"][0]["snippet"].as_str().unwrap();
    assert!(snippet.contains("<b>Crampons</b>"), "{snippet}");
    for method in ["rrf", "dbsf", "convex"] {
        let r = search(
            app,
            &a,
            json!({"query": "rye bread and cinnamon buns", "fusion": {"method": method}}),
        )
        .await;
        assert_eq!(hits(&r)[0], "bakery", "{method}: {:?}", r.body);
        let top = &r.body["results"][0];
        assert_eq!(top["dense_rank"], 1, "{method}: {top}");
        assert_eq!(top["bm25_rank"], 1, "{method}: {top}");
    }

    // Filters, in every mode.
    for mode in ["hybrid", "dense", "bm25"] {
        let q = "island harbour museum boats glacier";
        let by_doc = search(
            app,
            &a,
            json!({"query": q, "mode": mode, "filter": {"document_ids": ["museum"]}}),
        )
        .await;
        assert_eq!(hits(&by_doc), vec!["museum"], "{mode}");
        let by_meta = search(
            app,
            &a,
            json!({"query": q, "mode": mode, "filter": {"metadata": {"lang": "de"}}}),
        )
        .await;
        let got = hits(&by_meta);
        assert!(!got.is_empty(), "{mode}");
        assert!(
            got.iter().all(|d| d == "glacier" || d == "museum"),
            "{mode}: {got:?}"
        );
    }

    // Export, then import into a new tenant on the same backend: the same results (before A
    // replaces or deletes anything, so both have the same statistics).
    let r = app.call("GET", "/v1/export", &a, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let archive = match &r.body {
        Value::String(s) => s.clone(),
        other => panic!("export body: {other}"),
    };
    let c = app.tenant("charlie").await;
    let engine = app.engine.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let ctx = TenantCtx::operator(TenantId::parse("charlie").unwrap());
        engine.import_tenant(&ctx, &mut BufReader::new(archive.as_bytes()))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(summary.documents, 4);
    // Queries whose BM25 scores have no ties (tied chunks may come in either order).
    for (mode, q) in ["bm25", "dense", "hybrid"].into_iter().flat_map(|m| {
        [
            (m, "guided glacier walks with crampons"),
            (m, "island ferry tickets"),
        ]
    }) {
        let (ra, rc) = (
            app.query(&a, q, mode, 10).await,
            app.query(&c, q, mode, 10).await,
        );
        // Chunk ids carry the version, which the import numbers afresh: compare the rest.
        let strip = |r: &Resp| -> Vec<(String, String, i64)> {
            r.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h["document_id"].as_str().unwrap().to_string(),
                        h["text"].as_str().unwrap().to_string(),
                        (h["score"].as_f64().unwrap() * 1e4).round() as i64,
                    )
                })
                .collect()
        };
        assert!(!strip(&ra).is_empty(), "{mode} {q}");
        assert_eq!(strip(&ra), strip(&rc), "{mode} {q}");
    }

    // Re-ingest: the new version replaces the old one in both legs at once.
    put(
        app,
        &a,
        "bakery",
        "Bakery hours",
        "The village bakery now opens at five and sells sourdough pretzels.",
        json!({}),
    )
    .await;
    for mode in ["dense", "bm25"] {
        let r = app.query(&a, "sourdough pretzels", mode, 5).await;
        assert_eq!(hits(&r)[0], "bakery", "{mode}");
        let text = r.body["results"][0]["text"].as_str().unwrap();
        assert!(text.contains("pretzels"), "{mode}: {text}");
        let old = app.query(&a, "cinnamon buns rye", mode, 10).await;
        assert!(
            old.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| !h["text"].as_str().unwrap().contains("cinnamon")),
            "{mode}: the replaced version is still visible"
        );
    }

    // Tenant B, with the same document ids and similar text, sees only its own.
    put(
        app,
        &b,
        "ferry",
        "Ferry",
        "The evening ferry leaves at nine.",
        json!({}),
    )
    .await;
    let r = app
        .query(&b, "when does the ferry leave", "hybrid", 10)
        .await;
    assert_eq!(hits(&r), vec!["ferry"]);
    assert!(r.body["results"][0]["text"]
        .as_str()
        .unwrap()
        .contains("nine"));

    // BM25 statistics are the tenant's own: another tenant's documents with the query's terms
    // leave A's scores exactly as they were.
    let scores = |r: &Resp| -> Vec<(String, f64)> {
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["chunk_id"].as_str().unwrap().to_string(),
                    h["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let q = json!({"query": "glacier museum lighthouse walks", "mode": "bm25", "top_k": 10});
    let before = scores(&search(app, &a, q.clone()).await);
    assert!(before.len() >= 2, "{before:?}");
    for i in 0..30 {
        let text = format!(
            "Lighthouse number {i} stands on a cliff; glacier walks and museum visits nearby."
        );
        put(app, &b, &format!("b{i}"), "", &text, json!({})).await;
    }
    let after = scores(&search(app, &a, q).await);
    assert_eq!(before.len(), after.len());
    for ((c1, s1), (c2, s2)) in before.iter().zip(&after) {
        assert_eq!(c1, c2);
        assert!(
            (s1 - s2).abs() <= 1e-6 * s1.abs().max(1.0),
            "tenant A's BM25 score of {c1} moved from {s1} to {s2} when tenant B added documents"
        );
    }

    // Delete: gone from both legs and the catalog.
    let r = app.call("DELETE", "/v1/documents/museum", &a, None).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    for mode in ["hybrid", "dense", "bm25"] {
        let r = app
            .query(&a, "maritime museum fishing boats", mode, 10)
            .await;
        assert!(!hits(&r).contains(&"museum".to_string()), "{mode}");
    }
    let r = app.call("GET", "/v1/documents/museum", &a, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Answers: grounded with citations, or an honest refusal.
    let r = app
        .call(
            "POST",
            "/v1/answer",
            &a,
            Some(json!({"question": "What is provided on the guided glacier walks?"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["grounded"], true, "{:?}", r.body);
    assert_eq!(
        r.body["citations"][0]["document_id"], "glacier",
        "{:?}",
        r.body
    );
    let r = app
        .call(
            "POST",
            "/v1/answer",
            &a,
            Some(json!({"question": "How do I configure a Kubernetes ingress controller?"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["grounded"], false, "{:?}", r.body);

    // Threads: the caller's own, most recently updated first.
    for (thread, q) in [
        ("t-bread", "When does the bakery open?"),
        ("t-ferry", "When does the ferry leave?"),
    ] {
        let r = app
            .call(
                "POST",
                "/v1/answer",
                &a,
                Some(json!({"question": q, "thread_id": thread})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let r = app.call("GET", "/v1/threads", &a, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let threads = r.body["threads"].as_array().unwrap();
    let mut ids: Vec<_> = threads.iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["t-bread", "t-ferry"], "{threads:?}");
    assert!(threads[0]["updated_at"].as_i64() >= threads[1]["updated_at"].as_i64());
    let ferry = threads.iter().find(|t| t["id"] == "t-ferry").unwrap();
    assert_eq!(ferry["turns"], 1);
    assert_eq!(ferry["first_question"], "When does the ferry leave?");
    let r = app.call("GET", "/v1/threads", &b, None).await;
    assert_eq!(r.body["threads"], json!([]), "{:?}", r.body);
    // A thread is its key's: another key of the same tenant lists none of them.
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/keys",
            ADMIN,
            Some(json!({"role": "reader"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let colleague = r.body["api_key"].as_str().unwrap().to_string();
    let r = app.call("GET", "/v1/threads", &colleague, None).await;
    assert_eq!(r.body["threads"], json!([]), "{:?}", r.body);
}

fn run(extra: Vec<String>) {
    run_over(extra, Vec::new());
}

/// The suite on an in-process engine configured by `extra`; with `nodes`, its requests go to
/// them in turn.
fn run_over(extra: Vec<String>, nodes: Vec<crate::common::Server>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut app = app_with(&extra).await;
        app.nodes = nodes;
        suite(&app).await;
        // Servers stop (blocking waits) outside the runtime.
        std::mem::take(&mut app.nodes)
    });
}

#[test]
fn conformance_embedded() {
    run(vec![]);
}

#[test]
fn conformance_qdrant_cluster() {
    let Some(cluster) = cluster_or_skip("conformance_qdrant_cluster") else {
        return;
    };
    run(cluster.overrides(2));
}

#[test]
fn conformance_postgres_catalog() {
    let pg = crate::pg::Postgres::start();
    run(pg.overrides());
}

/// The deployment of the cluster issues: catalog on PostgreSQL, both legs on the Qdrant cluster.
#[test]
fn conformance_postgres_and_qdrant_cluster() {
    let Some(cluster) = cluster_or_skip("conformance_postgres_and_qdrant_cluster") else {
        return;
    };
    let pg = crate::pg::Postgres::start();
    let mut extra = cluster.overrides(2);
    extra.extend(pg.overrides());
    run(extra);
}

/// The same suite against three `tenantry serve` processes sharing PostgreSQL and the Qdrant
/// cluster, each request to the next node: a document uploaded through one node is waited for
/// through another, searched through a third, deleted through the first. (The archive import
/// runs on the suite's in-process node of the same deployment.)
#[test]
fn conformance_over_three_nodes() {
    let Some(cluster) = cluster_or_skip("conformance_over_three_nodes") else {
        return;
    };
    let pg = crate::pg::Postgres::start();
    let cluster_overrides = cluster.overrides(2);
    let o = crate::nodes::shared(&pg, &cluster_overrides);
    let (servers, _dirs): (Vec<_>, Vec<_>) = (0..3)
        .map(|_| crate::nodes::node(&o))
        .map(|n| (n.server, n._dir))
        .unzip();
    let mut extra = cluster_overrides;
    extra.extend(pg.overrides());
    run_over(extra, servers);
}

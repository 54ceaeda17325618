use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn reingest_replaces_and_unchanged_content_is_not_reembedded() {
    let app = app().await;
    let key = app.tenant("acme").await;
    assert_eq!(
        app.put_text(&key, "d", "Quartzite cliffs line the northern fjord.")
            .await
            .status,
        StatusCode::OK
    );
    let embedded = app.engine.embedded_texts();
    assert!(embedded >= 1);
    // Same content again: the job succeeds without embedding anything.
    let r = app
        .put_text(&key, "d", "Quartzite cliffs line the northern fjord.")
        .await;
    assert_eq!(
        (r.status, r.body["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    assert_eq!(app.engine.embedded_texts(), embedded);
    // Same text, other metadata: re-indexed, but vectors come from the cache.
    let body = json!({"id": "d", "text": "Quartzite cliffs line the northern fjord.", "metadata": {"region": "north"}});
    let r = app
        .call("POST", "/v1/documents?wait=true", &key, Some(body))
        .await;
    assert_eq!(
        (
            r.body["version"].as_u64(),
            r.body["metadata"]["region"].as_str()
        ),
        (Some(2), Some("north"))
    );
    assert_eq!(app.engine.embedded_texts(), embedded);
    // New content replaces the old version in both legs.
    let r = app
        .put_text(&key, "d", "Basalt columns stand on the southern beach.")
        .await;
    assert_eq!(r.body["version"].as_u64(), Some(3));
    for mode in ["bm25", "dense", "hybrid"] {
        let r = app.query(&key, "quartzite cliffs fjord", mode, 10).await;
        for hit in r.body["results"].as_array().unwrap() {
            assert!(
                !hit["text"].as_str().unwrap().contains("Quartzite"),
                "{mode}: old version visible"
            );
        }
        let r = app.query(&key, "basalt columns beach", mode, 10).await;
        assert_eq!(doc_ids(&r), vec!["d"], "{mode}");
    }
    let r = app.call("GET", "/v1/documents", &key, None).await;
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);
}

// ---- the real binary on loopback: restart and kill -9 ----

#[test]
fn restart_keeps_acknowledged_documents_and_kill_9_leaves_nothing_half_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (s, body) = server.call(
        reqwest::Method::POST,
        "/v1/tenants",
        ADMIN,
        Some(json!({"id": "acme"})),
    );
    assert_eq!(s, 201);
    let key = body["api_key"].as_str().unwrap().to_string();
    server.ingest_text(
        &key,
        "ack",
        "Acknowledged documents survive restarts and crashes.",
    );

    // Graceful restart.
    server.sigterm();
    let server = Server::start(dir.path());
    assert_eq!(
        server.query_ids(&key, "acknowledged documents survive")[0],
        "ack"
    );

    // Acknowledged just before the kill below, with no shutdown flush: both legs must keep it.
    server.ingest_text(&key, "crash", "Walruses hum quietly beneath the pack ice.");

    // kill -9 in the middle of a long ingestion job (the 73-page Debian FAQ).
    let pdf = std::fs::read(provisioned("docs/debian-faq/debian-faq.en.pdf")).unwrap();
    let (s, body) = server.upload_pdf(&key, "faq", pdf, false);
    assert_eq!(s, 202, "{body}");
    let job = body["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = server.call(reqwest::Method::GET, &format!("/v1/jobs/{job}"), &key, None);
        if j["status"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline && j["status"] == "queued",
            "job should be running: {j}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();

    let server = Server::start(dir.path());
    for mode in ["dense", "bm25"] {
        let ids = server.query_ids_in(&key, "walruses humming under the ice", mode);
        assert_eq!(
            ids.first().map(String::as_str),
            Some("crash"),
            "{mode}: {ids:?}"
        );
    }
    // Before the resumed job finishes, the document is not half visible; after, it is whole.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let ids = server.query_ids(&key, "Debian FAQ bug report package");
        let (_, j) = server.call(reqwest::Method::GET, &format!("/v1/jobs/{job}"), &key, None);
        if j["status"] == "succeeded" {
            break;
        }
        assert!(
            !ids.contains(&"faq".to_string()) || j["status"] == "succeeded",
            "half-indexed document visible: {j}"
        );
        assert!(j["status"] == "queued" || j["status"] == "running", "{j}");
        assert!(Instant::now() < deadline, "resumed job did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, doc) = server.call(reqwest::Method::GET, "/v1/documents/faq", &key, None);
    assert_eq!(doc["status"], "ready");
    assert!(server
        .query_ids(&key, "How do I report a bug in Debian?")
        .contains(&"faq".to_string()));
    assert_eq!(
        server.query_ids(&key, "acknowledged documents survive")[0],
        "ack"
    );
    server.sigterm();
}

//! Running it as a SaaS: quotas, rate limits, export/import, hard delete, and the real binary's
//! logs, metrics and usage under a test that greps them for content.
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

async fn set_limits(app: &TestApp, tenant: &str, limits: Value) {
    let r = app
        .call(
            "PUT",
            &format!("/v1/tenants/{tenant}/limits"),
            ADMIN,
            Some(limits),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

#[tokio::test]
async fn quotas_refuse_whole_documents_and_store_nothing_partial() {
    let app = app().await;
    let key = app.tenant("a").await;
    let other = app.tenant("b").await;
    set_limits(
        &app,
        "a",
        json!({"max_documents": 2, "max_bytes": 20000, "max_chunks": 6}),
    )
    .await;
    let r = app.call("GET", "/v1/tenants/a/limits", &key, None).await;
    assert_eq!(r.body["effective"]["max_documents"], 2);
    assert_eq!(r.body["overrides"]["max_documents"], 2);
    assert!(r.body["overrides"].get("query_per_sec").is_none());

    assert_eq!(
        app.put_text(&key, "d1", "First note about ferns.")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.put_text(&key, "d2", "Second note about mosses.")
            .await
            .status,
        StatusCode::OK
    );
    // A third document: 409 quota_exceeded. Replacing an existing one is not a new document.
    let r = app.put_text(&key, "d3", "Third note about lichens.").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    assert_eq!(
        app.put_text(&key, "d2", "Second note, now about liverworts.")
            .await
            .status,
        StatusCode::OK
    );
    // Stored bytes: 413 quota_exceeded.
    let r = app
        .put_text(&key, "d1", &"Ferns grow in shade. ".repeat(1000))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    // Chunks: known only after chunking; the job fails with quota_exceeded and its chunks never
    // show in either leg.
    app.call("DELETE", "/v1/documents/d2", &key, None).await;
    let long: String = (0..40)
        .map(|i| {
            format!(
                "Paragraph {i} on the gametophyte generation of bryophytes and their spores.\n\n"
            )
        })
        .collect();
    let long = format!(
        "{long}{}",
        "Sporophytes depend on gametophytes. ".repeat(40)
    );
    let r = app
        .put_text(&key, "big", &long[..3900.min(long.len())])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    for mode in ["bm25", "dense"] {
        let ids = doc_ids(
            &app.query(&key, "gametophyte generation of bryophytes", mode, 10)
                .await,
        );
        assert!(!ids.contains(&"big".to_string()), "{mode}: {ids:?}");
    }
    let r = app.call("GET", "/v1/tenants/a/limits", &key, None).await;
    assert_eq!(r.body["stored"]["documents"], 1, "{:?}", r.body);
    // Another tenant's defaults are untouched.
    assert_eq!(
        app.put_text(&other, "big", &long).await.status,
        StatusCode::OK
    );
    // Only the admin sets limits.
    let r = app
        .call("PUT", "/v1/tenants/a/limits", &key, Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn stored_bytes(app: &TestApp, tenant: &str) -> u64 {
    let r = app
        .call("GET", &format!("/v1/tenants/{tenant}/limits"), ADMIN, None)
        .await;
    r.body["stored"]["bytes"].as_u64().unwrap()
}

/// `max_bytes` counts what a document occupies once indexed (both legs, vectors, cache), not
/// its upload's size; per-document fields are not multiplied by the chunk count; the cache goes
/// with the versions that used it.
#[tokio::test]
async fn byte_quota_counts_what_is_stored_not_what_was_uploaded() {
    let app = app().await;
    let key = app.tenant("f").await;
    let text: String = (0..60)
        .map(|i| {
            format!("Section {i}: glaciers carve fjords, and tides shape the coast of island {i}. ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
        .repeat(4);
    let upload = text.len() as u64;
    let r = app.put_text(&key, "a", &text).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let chunks = r.body["chunk_count"].as_u64().unwrap();
    let plain = stored_bytes(&app, "f").await;
    // Text in both legs, a 384-d vector per chunk in the vector leg and in the cache.
    assert!(
        plain > 2 * upload + chunks * 2 * 1536,
        "{plain} for {upload} uploaded, {chunks} chunks"
    );
    assert!(
        plain < 3 * upload + chunks * 4096,
        "{plain} for {upload} uploaded, {chunks} chunks"
    );

    // The same text with 8 KB of metadata: the metadata is stored once, its filter terms per
    // chunk are hashed, so the footprint grows by a few times 8 KB, not by chunks x 8 KB.
    let meta: serde_json::Map<String, Value> = (0..7)
        .map(|i| (format!("k{i}"), Value::String(format!("{i}").repeat(1000))))
        .collect();
    let r = app
        .call(
            "POST",
            "/v1/documents?wait=true",
            &key,
            Some(json!({"id": "a", "text": text, "metadata": meta})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let with_meta = stored_bytes(&app, "f").await;
    assert!(
        with_meta - plain < 40_000,
        "8 KB of metadata on {chunks} chunks added {} bytes",
        with_meta - plain
    );
    // Filters still match long values (by their hash), and results carry the metadata.
    for (value, expect) in [("3".repeat(1000), vec!["a"]), ("3".repeat(999), vec![])] {
        let r = app
            .call(
                "POST",
                "/v1/query",
                &key,
                Some(json!({"query": "fjords", "filter": {"metadata": {"k3": value}}})),
            )
            .await;
        let mut ids = doc_ids(&r);
        ids.dedup();
        assert_eq!(ids, expect, "{:?}", r.body);
        if !expect.is_empty() {
            assert_eq!(r.body["results"][0]["metadata"]["k3"], value);
        }
    }

    // Deleted: the legs and the embedding cache are empty; what is left are two job records.
    let r = app.call("DELETE", "/v1/documents/a", &key, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let after = stored_bytes(&app, "f").await;
    assert!(
        after < 12_000,
        "{after} bytes left after the only document was deleted"
    );

    // A quota the upload's size fits under but its footprint does not: refused at commit, and
    // nothing of it shows.
    let other = app.tenant("g").await;
    set_limits(&app, "g", json!({"max_bytes": 2 * upload})).await;
    let r = app.put_text(&other, "a", &text).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    assert!(doc_ids(&app.query(&other, "fjords", "hybrid", 5).await).is_empty());
}

#[tokio::test]
async fn rate_limits_are_per_tenant_and_per_class_with_retry_after() {
    let app = app().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    set_limits(
        &app,
        "a",
        json!({"query_per_sec": 0.2, "query_burst": 3, "ingest_per_sec": 0.2, "ingest_burst": 1}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.query(&a, "ferns", "bm25", 3).await.status,
            StatusCode::OK
        );
    }
    let r = app.query(&a, "ferns", "bm25", 3).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limited");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    // Answers share the query bucket.
    let r = app
        .call(
            "POST",
            "/v1/answer",
            &a,
            Some(json!({"question": "ferns?"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Ingestion has its own bucket; b is not affected by a.
    assert_eq!(
        app.put_text(&a, "d1", "Ferns.").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.put_text(&a, "d2", "Mosses.").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..5 {
        assert_eq!(
            app.query(&b, "ferns", "bm25", 3).await.status,
            StatusCode::OK
        );
    }
    // Refusals are metered by code, without content.
    let r = app.call("GET", "/v1/usage", &a, None).await;
    let day = &r.body["days"][0]["counters"];
    assert_eq!(day["errors.rate_limited"], 3, "{:?}", r.body);
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

fn paths_naming(dir: &Path, name: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().and_then(|n| n.to_str()) == Some(name) {
                hits.push(p.display().to_string());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    hits
}

#[tokio::test]
async fn tenant_delete_is_a_hard_delete() {
    let app = app().await;
    let a = app.tenant("doomed").await;
    let b = app.tenant("keeper").await;
    let (mark_a, mark_b) = ("vermilionquokka", "ultramarinewombat");
    for (key, mark) in [(&a, mark_a), (&b, mark_b)] {
        let text = format!("The {mark} ledger lists every {mark} sighting.");
        assert_eq!(
            app.put_text(key, "ledger", &text).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.query(key, mark, "hybrid", 3).await.status,
            StatusCode::OK
        );
        app.call(
            "POST",
            "/v1/answer",
            key,
            Some(json!({"question": format!("Where is the {mark}?"), "thread_id": "t1"})),
        )
        .await;
    }
    // Jobs queued and running while the tenant is deleted must not bring any of it back.
    for i in 0..6 {
        let text = format!(
            "Queued note {i}: the {mark_a} migrates in spring.\n\n{}",
            "More words. ".repeat(200)
        );
        let r = app
            .call(
                "POST",
                "/v1/documents",
                &a,
                Some(json!({"id": format!("q{i}"), "text": text})),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    }
    let r = app.call("DELETE", "/v1/tenants/doomed", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        app.engine
            .wait_idle(std::time::Duration::from_secs(60))
            .await
    );
    app.engine.flush();
    let data = app.dir.path();
    assert!(
        paths_naming(data, "doomed").is_empty(),
        "{:?}",
        paths_naming(data, "doomed")
    );
    // Catalog (secure_delete, vacuumed), lexical index, vector shard and uploads: no file
    // anywhere holds its text.
    assert_eq!(
        files_containing(data, mark_a),
        Vec::<String>::new(),
        "deleted text is still on disk"
    );
    // The check can see text: the other tenant's is still there, in both legs.
    let kept = files_containing(data, mark_b);
    for leg in ["lexical", "vectors"] {
        let dir = data.join(leg).display().to_string();
        assert!(kept.iter().any(|p| p.starts_with(&dir)), "{leg}: {kept:?}");
    }
    // And its key, documents and threads are gone from the API.
    assert_eq!(
        app.call("GET", "/v1/documents", &a, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app.call("GET", "/v1/tenants", ADMIN, None).await;
    assert!(!r.body.to_string().contains("doomed"));
    // The id can be reused from scratch.
    let again = app.tenant("doomed").await;
    let r = app.query(&again, mark_a, "hybrid", 3).await;
    assert_eq!(doc_ids(&r), Vec::<String>::new());
}

#[tokio::test]
async fn export_then_import_into_another_deployment_gives_identical_results() {
    let src =
        app_with(&["master_key=5f3c1d2e4b6a79880a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778"])
            .await;
    let key = src.tenant("acme").await;
    for (id, file, ct) in [
        ("guide", "guide.md", "text/markdown"),
        ("page", "page.html", "text/html"),
        ("notes", "notes.txt", "text/plain"),
        ("pdf", "three-pages.pdf", "application/pdf"),
    ] {
        let r = src.upload(&key, id, file, ct, &fixture(file)).await;
        assert_eq!(r.status, StatusCode::OK, "{id}: {:?}", r.body);
    }
    let r = src
        .call("PUT", "/v1/tenants/acme/config", ADMIN, Some(json!({
            "default_generator": "extractive",
            "openai": {"base_url": "http://127.0.0.1:9/v1", "allowed_models": ["m"], "api_key": "sk-exportsecret-123"}
        })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = src.call("GET", "/v1/export", &key, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    let archive = match &r.body {
        Value::String(s) => s.clone(),
        other => panic!("export body: {other}"),
    };
    assert!(
        !archive.contains("sk-exportsecret-123"),
        "the upstream key was exported"
    );
    let lines: Vec<Value> = archive
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["kind"], "tenantry-export");
    assert_eq!(lines.last().unwrap()["kind"], "end");
    assert_eq!(lines.last().unwrap()["documents"], 4);
    // A reader cannot export.
    let (reader, _) = {
        let r = src
            .call(
                "POST",
                "/v1/tenants/acme/keys",
                &key,
                Some(json!({"role": "reader"})),
            )
            .await;
        (r.body["api_key"].as_str().unwrap().to_string(), ())
    };
    assert_eq!(
        src.call("GET", "/v1/export", &reader, None).await.status,
        StatusCode::FORBIDDEN
    );

    // Import with the CLI into another data directory (another deployment).
    let target = tempfile::tempdir().unwrap();
    let file = target.path().join("acme.ndjson");
    std::fs::write(&file, &archive).unwrap();
    let data = target.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(model_flags())
        .args(["import", "--tenant", "acme2", file.to_str().unwrap()])
        .env("TENANTRY_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported 4 documents"), "{stdout}");
    let dst_key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tenant_admin key: "))
        .unwrap()
        .to_string();
    // Importing twice changes nothing.
    let again = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(model_flags())
        .args(["import", "--tenant", "acme2", file.to_str().unwrap()])
        .env("TENANTRY_LOG", "error")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("imported 0 documents"));

    let dst_dir = tempfile::TempDir::new().unwrap();
    std::fs::remove_dir(dst_dir.path()).unwrap();
    std::fs::rename(&data, dst_dir.path()).unwrap();
    let dst = app_in(dst_dir, &[]).await;
    let strip = |r: &Resp| -> Vec<(String, String, i64)> {
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["chunk_id"].as_str().unwrap().to_string(),
                    h["text"].as_str().unwrap().to_string(),
                    (h["score"].as_f64().unwrap() * 1e4).round() as i64,
                )
            })
            .collect()
    };
    let mut compared = 0;
    for q in [
        "installation steps",
        "what is on page two",
        "meeting notes budget",
        "heading section guide",
    ] {
        for mode in ["hybrid", "dense", "bm25"] {
            let a = src.query(&key, q, mode, 10).await;
            let b = dst.query(&dst_key, q, mode, 10).await;
            assert_eq!(strip(&a), strip(&b), "{q} / {mode}");
            compared += strip(&a).len();
        }
    }
    assert!(
        compared > 20,
        "the comparison saw too few results: {compared}"
    );
    let docs_a = src.call("GET", "/v1/documents", &key, None).await.body["documents"].clone();
    let docs_b = dst.call("GET", "/v1/documents", &dst_key, None).await.body["documents"].clone();
    let meta = |d: &Value| -> Vec<(Value, Value, Value, Value)> {
        d.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["id"].clone(),
                    x["title"].clone(),
                    x["content_hash"].clone(),
                    x["chunk_count"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(meta(&docs_a), meta(&docs_b));
    let r = dst
        .call("GET", "/v1/tenants/acme2/config", &dst_key, None)
        .await;
    assert_eq!(
        r.body["openai"]["allowed_models"],
        json!(["m"]),
        "{:?}",
        r.body
    );
    assert!(
        r.body["openai"]["api_key_fingerprint"].is_null(),
        "{:?}",
        r.body
    );

    // A truncated archive is refused.
    let cut: String = archive.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, cut).unwrap();
    let r = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["--data-dir", target.path().join("other").to_str().unwrap()])
        .args(model_flags())
        .args(["import", "--tenant", "x", file.to_str().unwrap()])
        .env("TENANTRY_LOG", "error")
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("archive"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}

// ---- the real binary: logs, metrics and usage carry no content; graceful shutdown ----

struct Child {
    child: std::process::Child,
    base: String,
}

fn start(data: &Path, log: &Path) -> Child {
    let port = free_port();
    let mut child = serve_command(data, port)
        .env("TENANTRY_LOG_FORMAT", "json")
        // Everything this crate logs, at every level.
        .env("TENANTRY_LOG", "info,tenantry=trace")
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reqwest::blocking::get(format!("{base}/readyz")).is_ok_and(|r| r.status().is_success()) {
            return Child { child, base };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "server did not become ready: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Child {
    fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, String) {
        let client = reqwest::blocking::Client::new();
        let mut req = client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("x-request-id", format!("it-{}", path.len()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }
}

#[test]
fn no_content_in_logs_metrics_or_usage_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let s = start(&data, &log);
    let (doc_mark, query_mark, answer_mark) =
        ("cobaltpangolin", "saffronaxolotl", "magentacassowary");
    let (st, body) = s.call("POST", "/v1/tenants", ADMIN, Some(json!({"id": "acme"})));
    assert_eq!(st, 201, "{body}");
    let key = serde_json::from_str::<Value>(&body).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    let text =
        format!("The {doc_mark} archive opens at nine. Every {doc_mark} visitor signs the book.");
    let (st, body) = s.call(
        "POST",
        "/v1/documents?wait=true",
        &key,
        Some(json!({"id": "d1", "text": text, "title": format!("{doc_mark} hours")})),
    );
    assert_eq!(st, 200, "{body}");
    let (st, body) = s.call(
        "POST",
        "/v1/query",
        &key,
        Some(json!({"query": format!("{query_mark} {doc_mark} opening")})),
    );
    assert_eq!(st, 200);
    assert!(body.contains(doc_mark));
    let (st, body) = s.call(
        "POST",
        "/v1/answer",
        &key,
        Some(json!({"question": format!("When does the {doc_mark} archive open, {answer_mark}?")})),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(s.call("GET", "/v1/documents/nope", &key, None).0, 404);
    assert_eq!(
        s.call(
            "POST",
            "/v1/query",
            &key,
            Some(json!({"query": format!("{query_mark} {doc_mark}"), "top_k": 0}))
        )
        .0,
        400
    );

    let (st, metrics) = s.call("GET", "/metrics", ADMIN, None);
    assert_eq!(st, 200);
    assert_eq!(s.call("GET", "/metrics", &key, None).0, 403);
    let (st, usage) = s.call("GET", "/v1/usage", &key, None);
    assert_eq!(st, 200, "{usage}");
    let (st, admin_usage) = s.call("GET", "/v1/tenants/acme/usage", ADMIN, None);
    assert_eq!(st, 200);

    // Graceful shutdown: SIGTERM, exit 0.
    let mut s = s;
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    let status = s.child.wait().unwrap();
    assert!(status.success(), "SIGTERM exit: {status}");
    let mut logs = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    logs.push_str(&std::fs::read_to_string(log.with_extension("out")).unwrap());

    for (what, text) in [
        ("logs", &logs),
        ("metrics", &metrics),
        ("usage", &usage),
        ("admin usage", &admin_usage),
    ] {
        for mark in [doc_mark, query_mark, answer_mark] {
            assert!(!text.contains(mark), "{what} contain {mark}:\n{text}");
        }
    }
    // The usage says what happened, in counts.
    let u: Value = serde_json::from_str(&usage).unwrap();
    let day = &u["days"][0]["counters"];
    assert_eq!(day["documents_ingested"], 1, "{u}");
    assert_eq!(day["answers"], 1, "{u}");
    assert!(day["queries"].as_u64().unwrap() >= 1);
    assert!(day["chunks_ingested"].as_u64().unwrap() >= 1);
    assert!(day["embedding_tokens"].as_u64().unwrap() > 10);
    assert_eq!(day["errors.not_found"], 1, "{u}");
    assert_eq!(day["errors.invalid_request"], 1, "{u}");
    assert_eq!(u["stored"]["documents"], 1);
    assert_eq!(
        serde_json::from_str::<Value>(&admin_usage).unwrap()["days"],
        u["days"]
    );
    // Metrics: by route template, status and tenant, plus the pipeline's own series.
    for series in [
        "tenantry_http_requests_total{route=\"/v1/query\",method=\"POST\",status=\"200\",tenant=\"acme\"} 1",
        "tenantry_http_requests_total{route=\"/v1/documents/{id}\",method=\"GET\",status=\"404\",tenant=\"acme\"} 1",
        "tenantry_ingest_jobs_total{outcome=\"succeeded\"} 1",
        "tenantry_http_request_duration_seconds_bucket{route=\"/v1/query\",method=\"POST\",tenant=\"acme\",le=\"+Inf\"}",
        "tenantry_embed_batch_seconds_count ",
        "tenantry_ingest_queue_depth 0",
        "tenantry_open_tenants 1",
    ] {
        assert!(metrics.contains(series), "missing {series}:\n{metrics}");
    }
    // Every line of a request carries its id, and the tenant once authenticated.
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let request_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request" && l["span"]["route"] == "/v1/query")
        .collect();
    assert!(!request_lines.is_empty(), "no request log lines:\n{logs}");
    for l in &request_lines {
        assert_eq!(l["span"]["tenant"], "acme", "{l}");
        assert!(
            l["span"]["request_id"].as_str().unwrap().starts_with("it-"),
            "{l}"
        );
    }
    // Background ingestion logs under a job span with the tenant.
    let job_line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "ingestion job done")
        .unwrap_or_else(|| panic!("no job line:\n{logs}"));
    assert_eq!(job_line["span"]["tenant"], "acme", "{job_line}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "stopped"),
        "{logs}"
    );
}

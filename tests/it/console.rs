//! The web console's files and their headers, through the real router. (What the console does
//! in a browser is the browser tests' business.)
use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn the_console_is_served_same_origin_under_a_strict_policy() {
    let app = app().await;
    for (path, mime) in [
        ("/console", "text/html"),
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = app.call("GET", path, "", None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let h = |k: &str| r.headers[k].to_str().unwrap().to_string();
        assert!(
            h("content-type").starts_with(mime),
            "{path}: {}",
            h("content-type")
        );
        let csp = h("content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "no-referrer");
    }
    let html = app.call("GET", "/console", "", None).await.body;
    let html = html.as_str().unwrap();
    // No inline script or style (the policy would block them anyway), nothing from elsewhere.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"/console/").count()
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    // Tenant data is only ever set as text.
    let js = app.call("GET", "/console/app.js", "", None).await.body;
    let js = js.as_str().unwrap();
    for banned in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "localStorage",
        "document.cookie",
    ] {
        assert!(!js.contains(banned), "app.js uses {banned}");
    }
    assert_eq!(
        app.call("GET", "/console/nope.js", "", None).await.status,
        StatusCode::NOT_FOUND
    );
    // Off means gone.
    let off = app_with(&["console.enabled=false"]).await;
    assert_eq!(
        off.call("GET", "/console", "", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn whoami_says_whose_credential_it_is() {
    let app = app().await;
    let key = app.tenant("acme").await;
    let r = app.call("GET", "/v1/whoami", &key, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["kind"], "tenant");
    assert_eq!(r.body["tenant"], "acme");
    assert_eq!(r.body["role"], "tenant_admin");
    let r = app.call("GET", "/v1/whoami", ADMIN, None).await;
    assert_eq!(
        (r.body["kind"].as_str(), r.body["tenant"].is_null()),
        (Some("admin"), true)
    );
    let r = app.call("GET", "/v1/whoami", "tny_not_a_key", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Reports are the operator's, served from the reports folder only, under a sandbox policy.
#[tokio::test]
async fn reports_are_the_operators_and_nothing_outside_their_folder() {
    let app = app().await;
    let a = app.tenant("a").await;
    let dir = app.dir.path().join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bench.html"), "<!doctype html><p>bench</p>").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a report").unwrap();
    let outside = app.dir.path().join("secret.html");
    std::fs::write(&outside, "<p>outside</p>").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.html")).unwrap();

    let r = app.call("GET", "/v1/reports", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let names: Vec<&str> = r.body["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bench.html"], "only plain *.html files are listed");
    let r = app.call("GET", "/v1/reports/bench.html", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "<!doctype html><p>bench</p>");
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("sandbox;") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    for path in [
        "/v1/reports/link.html",
        "/v1/reports/notes.txt",
        "/v1/reports/..%2Fsecret.html",
        "/v1/reports/.hidden.html",
    ] {
        let r = app.call("GET", path, ADMIN, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {:?}", r.body);
    }
    for path in ["/v1/reports", "/v1/reports/bench.html"] {
        let r = app.call("GET", path, &a, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
}

/// A document's chunks come a page at a time, in reading order, each page reading only its
/// own chunks.
#[tokio::test]
async fn a_documents_chunks_page_in_reading_order() {
    let app = app().await;
    let a = app.tenant("a").await;
    let text: String = (0..60)
        .map(|i| format!("Paragraph {i} tells of lighthouse keeper number {i} and the long winter nights at the northern cape.\n\n"))
        .collect();
    let r = app.put_text(&a, "long", &text).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let total = r.body["chunk_count"].as_u64().unwrap() as usize;
    assert!(total >= 4, "{total} chunks");
    let mut seen = vec![];
    let mut offset = 0;
    while offset < total {
        let r = app
            .call(
                "GET",
                &format!("/v1/documents/long/chunks?offset={offset}&limit=3"),
                &a,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["total"], total);
        assert_eq!(r.body["offset"], offset);
        let chunks = r.body["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 3.min(total - offset));
        seen.extend(
            chunks
                .iter()
                .map(|c| c["ordinal"].as_u64().unwrap() as usize),
        );
        offset += 3;
    }
    assert_eq!(seen, (0..total).collect::<Vec<_>>());
    let r = app
        .call(
            "GET",
            &format!("/v1/documents/long/chunks?offset={}", total + 5),
            &a,
            None,
        )
        .await;
    assert_eq!(r.body["chunks"], serde_json::json!([]), "{:?}", r.body);
    for bad in ["limit=0", "limit=1001"] {
        let r = app
            .call("GET", &format!("/v1/documents/long/chunks?{bad}"), &a, None)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// The operator's latency and error history comes from the server's own request metrics, per
/// tenant and minute.
#[tokio::test]
async fn the_operator_sees_each_tenants_recent_latency_and_errors() {
    let app = app().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    assert_eq!(
        app.put_text(&a, "d", "Quiet harbours and lighthouses.")
            .await
            .status,
        StatusCode::OK
    );
    for _ in 0..5 {
        assert_eq!(
            app.query(&a, "lighthouse", "hybrid", 3).await.status,
            StatusCode::OK
        );
    }
    let r = app.call("GET", "/v1/documents/missing", &b, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.call("GET", "/v1/stats?minutes=5", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["minutes"], 5);
    let tenant = |id: &str| {
        r.body["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {:?}", r.body))
            .clone()
    };
    let sum = |t: &serde_json::Value, k: &str| -> u64 {
        t["minutes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[k].as_u64().unwrap())
            .sum()
    };
    let ta = tenant("a");
    assert_eq!(sum(&ta, "queries"), 5, "{ta}");
    assert_eq!(sum(&ta, "client_errors") + sum(&ta, "server_errors"), 0);
    let last = ta["minutes"].as_array().unwrap().last().unwrap().clone();
    let p50 = last["query_p50_ms"].as_f64().unwrap();
    let p99 = last["query_p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{last}");
    let tb = tenant("b");
    assert_eq!(sum(&tb, "client_errors"), 1, "{tb}");
    assert_eq!(sum(&tb, "queries"), 0);
    for bad in ["/v1/stats?minutes=0", "/v1/stats?minutes=181"] {
        let r = app.call("GET", bad, ADMIN, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// The console in a real headless browser (Debian's `chromium` and `chromium-driver`,
/// selenium from PyPI, all installed by `make setup`) against the real server:
/// tests/browser/console.py walks every page as a tenant, a second tenant and the operator (see
/// its checks); a document titled `<img src=x onerror=alert(1)>` renders as text. Screenshots
/// of every page go to target/console-screenshots.
#[test]
fn the_console_in_a_real_browser() {
    let python = provisioned("venv/bin/python3");
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run `make setup` (Debian packages chromium and chromium-driver)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // A report in the server's reports folder, as `--report` writes them, for the operator.
    let reports = dir.path().join("data/reports");
    std::fs::create_dir_all(&reports).unwrap();
    let chart = tenantry::report::bar_chart(
        "nDCG@10 by mode",
        &[("dense".into(), 0.86), ("hybrid".into(), 0.87)],
        Some(1.0),
    );
    std::fs::write(
        reports.join("eval-sample.html"),
        tenantry::report::page("Retrieval quality: sample", &chart),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"));
    let shots = root().join("target/console-screenshots");
    let out = std::process::Command::new(python)
        .arg(root().join("tests/browser/console.py"))
        .args([server.base.as_str(), ADMIN])
        .arg(&shots)
        .arg(root().join("fixtures/docs/three-pages.pdf"))
        .arg(root().join("fixtures/docs/guide.md"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser test failed:\n{text}");
    assert!(text.contains("every check passed"), "{text}");
    for page in [
        "01-sign-in",
        "02-documents",
        "04-jobs",
        "06-answer",
        "11-operator-tenants",
        "12-operator-activity",
        "13-operator-queue",
        "14-operator-tenant",
        "15-operator-report",
        "16-phone-activity",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}");
    }
}

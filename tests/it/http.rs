use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn auth_errors_and_admin_boundaries() {
    let app = app().await;
    let key = app.tenant("acme").await;
    let r = app
        .send(Request::get("/v1/documents").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let r = app
        .call(
            "GET",
            "/v1/documents",
            "tny_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A tenant key cannot administer; the admin key is not a tenant.
    assert_eq!(
        app.call("GET", "/v1/tenants", &key, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("GET", "/v1/documents", ADMIN, None).await.status,
        StatusCode::FORBIDDEN
    );
    // Keys: a second key works; revocation takes effect on the next request.
    let r = app.call("POST", "/v1/tenants/acme/keys", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (second, key_id) = (
        r.body["api_key"].as_str().unwrap().to_string(),
        r.body["key_id"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        app.call("GET", "/v1/documents", &second, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("DELETE", &format!("/v1/keys/{key_id}"), ADMIN, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call("GET", "/v1/documents", &second, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("GET", "/v1/documents", &key, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("POST", "/v1/tenants/nobody/keys", ADMIN, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn tenant_admin_lifecycle() {
    let app = app().await;
    let key = app.tenant("acme").await;
    let r = app
        .call("POST", "/v1/tenants", ADMIN, Some(json!({"id": "acme"})))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let r = app
        .call(
            "POST",
            "/v1/tenants",
            ADMIN,
            Some(json!({"id": "Not Valid"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert_eq!(
        app.put_text(&key, "d1", "The harbour master keeps the tide tables.")
            .await
            .status,
        StatusCode::OK
    );
    let r = app.call("GET", "/v1/tenants", ADMIN, None).await;
    assert_eq!(
        r.body["tenants"],
        json!([{"id": "acme", "created_at": r.body["tenants"][0]["created_at"], "documents": 1}])
    );
    assert_eq!(
        app.call("DELETE", "/v1/tenants/acme", ADMIN, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call("GET", "/v1/documents", &key, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("DELETE", "/v1/tenants/acme", ADMIN, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Re-created under the same name, the tenant starts empty.
    let key = app.tenant("acme").await;
    let r = app.query(&key, "harbour tide tables", "hybrid", 5).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(doc_ids(&r).is_empty(), "{:?}", r.body);
}

#[tokio::test]
async fn request_validation_uses_the_catalogue() {
    let app = app().await;
    let key = app.tenant("acme").await;
    for top_k in [0, 101] {
        let r = app
            .call(
                "POST",
                "/v1/query",
                &key,
                Some(json!({"query": "x", "top_k": top_k})),
            )
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{top_k}"
        );
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("top_k"));
    }
    let r = app
        .call(
            "POST",
            "/v1/query",
            &key,
            Some(json!({"query": "x", "mode": "psychic"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .call(
            "POST",
            "/v1/query",
            &key,
            Some(json!({"query": "x", "tenant": "other"})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields (like a tenant) are refused"
    );
    let req = Request::post("/v1/query")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    let r = app.send(req.body(Body::from("{not json")).unwrap()).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let r = app.call("GET", "/v1/nothing-here", &key, None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(
        app.call("GET", "/healthz", "", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("GET", "/readyz", "", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn async_jobs_documents_and_filters() {
    let app = app().await;
    let key = app.tenant("acme").await;
    let r = app
        .call(
            "POST",
            "/v1/documents",
            &key,
            Some(json!({"id": "ferry", "title": "Ferry timetable", "text": "The morning ferry to the island leaves at seven.", "metadata": {"lang": "en", "year": 2024}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["document_id"], "ferry");
    let job = r.body["job_id"].as_str().unwrap().to_string();
    let mut status = String::new();
    for _ in 0..600 {
        let j = app
            .call("GET", &format!("/v1/jobs/{job}"), &key, None)
            .await;
        status = j.body["status"].as_str().unwrap().to_string();
        if status == "succeeded" || status == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded");
    let md = app
        .call("POST", "/v1/documents?wait=true", &key, Some(json!({"id": "guide", "text": String::from_utf8(fixture("guide.md")).unwrap(), "content_type": "text/markdown", "metadata": {"lang": "de"}})))
        .await;
    assert_eq!(md.status, StatusCode::OK, "{:?}", md.body);
    assert_eq!(md.body["status"], "ready");
    assert!(md.body["chunk_count"].as_u64().unwrap() >= 1);

    let d = app.call("GET", "/v1/documents/ferry", &key, None).await;
    assert_eq!(
        (
            d.body["title"].as_str(),
            d.body["status"].as_str(),
            d.body["version"].as_u64()
        ),
        (Some("Ferry timetable"), Some("ready"), Some(1))
    );
    let list = app.call("GET", "/v1/documents", &key, None).await;
    assert_eq!(list.body["documents"].as_array().unwrap().len(), 2);

    // Result shape.
    let r = app
        .query(&key, "when does the ferry leave", "hybrid", 5)
        .await;
    let top = &r.body["results"][0];
    assert_eq!(top["document_id"], "ferry");
    assert_eq!(top["title"], "Ferry timetable");
    assert!(
        top["snippet"].as_str().unwrap().contains("<b>ferry</b>"),
        "{top}"
    );
    assert!(top["dense_rank"].is_u64() && top["bm25_rank"].is_u64() && top["score"].is_f64());
    assert!(top["chunk_id"].as_str().unwrap().starts_with("ferry#"));
    for k in ["embed", "dense", "bm25", "fuse", "total"] {
        assert!(r.body["timings_ms"][k].is_f64(), "{k}");
    }
    let r = app.query(&key, "installation healthz", "bm25", 5).await;
    assert!(r.body["results"][0]["heading_path"]
        .as_array()
        .is_some_and(|h| !h.is_empty()));

    // Filters restrict both legs.
    for (filter, expect) in [
        (json!({"metadata": {"lang": "de"}}), vec!["guide"]),
        (json!({"metadata": {"year": 2024}}), vec!["ferry"]),
        (json!({"document_ids": ["guide"]}), vec!["guide"]),
        (json!({"content_types": ["text/plain"]}), vec!["ferry"]),
    ] {
        for mode in ["hybrid", "dense", "bm25"] {
            let r = app
                .call(
                    "POST",
                    "/v1/query",
                    &key,
                    Some(json!({"query": "ferry install server", "mode": mode, "filter": filter})),
                )
                .await;
            let mut ids = doc_ids(&r);
            ids.dedup();
            assert_eq!(ids, expect, "{mode} {filter}");
        }
    }

    assert_eq!(
        app.call("DELETE", "/v1/documents/ferry", &key, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call("GET", "/v1/documents/ferry", &key, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call("DELETE", "/v1/documents/ferry", &key, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    for mode in ["dense", "bm25", "hybrid"] {
        assert!(
            !doc_ids(&app.query(&key, "morning ferry island", mode, 10).await)
                .contains(&"ferry".to_string()),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn any_method_string_is_one_metric_label_and_fields_are_capped() {
    let app = app().await;
    let key = app.tenant("acme").await;
    // Unauthenticated requests with junk methods: each would otherwise be a new series.
    for i in 0..50 {
        let method = format!("JUNK{i}{}", "X".repeat(2000));
        let req = Request::builder()
            .method(axum::http::Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/v1/documents")
            .body(Body::empty())
            .unwrap();
        app.send(req).await;
    }
    let r = app.call("GET", "/metrics", ADMIN, None).await;
    let text = r.body.as_str().unwrap().to_string();
    assert!(!text.contains("JUNK"), "a junk method became a label");
    assert!(text.contains("method=\"other\""));
    assert!(text.len() < 200_000, "{} bytes of metrics", text.len());

    // Upload fields every chunk repeats are capped, with a code.
    let many: serde_json::Map<String, serde_json::Value> = (0..60)
        .map(|i| (format!("k{i}"), json!("v".repeat(500))))
        .collect();
    for body in [
        json!({"id": "d", "text": "hello", "title": "t".repeat(2000)}),
        json!({"id": "d", "text": "hello", "metadata": {"k": "v".repeat(200_000)}}),
        json!({"id": "d", "text": "hello", "metadata": many}),
    ] {
        let r = app.call("POST", "/v1/documents", &key, Some(body)).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("field_too_large")),
            "{:?}",
            r.body
        );
    }
    // Nothing was stored for any of them.
    let r = app.call("GET", "/v1/documents", &key, None).await;
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_data_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = {
        let mut c = config(&data, &[]);
        c.admin_key = String::new();
        c
    };
    let engine = tokio::task::spawn_blocking(move || tenantry::Engine::open(cfg))
        .await
        .unwrap()
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("admin_key")), 0o600);
    drop(engine);
}

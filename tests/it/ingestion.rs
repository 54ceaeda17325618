use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn real_documents_of_every_type() {
    let app = app().await;
    let key = app.tenant("docs").await;
    let pdf = std::fs::read(provisioned("docs/debian-faq/debian-faq.en.pdf")).unwrap();
    let r = app
        .upload(
            &key,
            "debian-faq",
            "debian-faq.en.pdf",
            "application/pdf",
            &pdf,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["content_type"], "application/pdf");
    assert!(r.body["chunk_count"].as_u64().unwrap() > 100);
    let html = std::fs::read(provisioned("docs/python-tutorial/errors.html")).unwrap();
    // Declared as octet-stream: the type comes from the content.
    let r = app
        .upload(
            &key,
            "py-errors",
            "errors.html",
            "application/octet-stream",
            &html,
        )
        .await;
    assert_eq!(
        (r.status, r.body["content_type"].as_str()),
        (StatusCode::OK, Some("text/html")),
        "{:?}",
        r.body
    );
    assert_eq!(
        app.upload(
            &key,
            "guide",
            "guide.md",
            "text/markdown",
            &fixture("guide.md")
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        app.upload(
            &key,
            "notes",
            "notes.txt",
            "text/plain",
            &fixture("notes.txt")
        )
        .await
        .status,
        StatusCode::OK
    );
    // A PDF sent as text/plain is still a PDF (magic bytes win).
    let r = app
        .upload(
            &key,
            "volcanoes",
            "volcanoes.txt",
            "text/plain",
            &fixture("three-pages.pdf"),
        )
        .await;
    assert_eq!(r.body["content_type"], "application/pdf");

    let r = app
        .query(&key, "How do I report a bug in Debian?", "hybrid", 5)
        .await;
    let top = &r.body["results"][0];
    assert_eq!(top["document_id"], "debian-faq");
    assert!(top["page"].as_u64().is_some_and(|p| p >= 1), "{top}");
    let r = app
        .query(&key, "handling exceptions with try except", "hybrid", 3)
        .await;
    assert_eq!(r.body["results"][0]["document_id"], "py-errors");
    assert!(!r.body["results"][0]["heading_path"]
        .as_array()
        .unwrap()
        .is_empty());
    let r = app
        .query(&key, "largest glacier by volume", "hybrid", 3)
        .await;
    assert_eq!(
        (
            r.body["results"][0]["document_id"].as_str(),
            r.body["results"][0]["page"].as_u64()
        ),
        (Some("volcanoes"), Some(3))
    );
    let r = app.query(&key, "fog horn lighthouse", "bm25", 3).await;
    assert_eq!(r.body["results"][0]["document_id"], "notes");
}

#[tokio::test]
async fn bad_input_gets_its_code_and_loses_nothing() {
    let app = app_with(&["max_body_bytes=262144"]).await;
    let key = app.tenant("victim").await;
    let other = app.tenant("bystander").await;
    assert_eq!(
        app.put_text(&key, "keep", "The lighthouse lamp is cleaned every Sunday.")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.put_text(&other, "theirs", "Sunday markets sell smoked fish.")
            .await
            .status,
        StatusCode::OK
    );

    // pdf-parse@1.1.1's corrupt PDF ("failed parsing cross reference table").
    let corrupt = std::fs::read(provisioned("docs/pdf-parse/03-invalid.pdf")).unwrap();
    let random: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761).rotate_left(7) >> 3) as u8)
        .collect();
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "corrupt.pdf",
            "application/pdf",
            corrupt,
            StatusCode::UNPROCESSABLE_ENTITY,
            "pdf_corrupt",
        ),
        (
            "scan.pdf",
            "application/pdf",
            fixture("no-text.pdf"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "pdf_no_text",
        ),
        (
            "empty.txt",
            "text/plain",
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_document",
        ),
        (
            "noise.bin",
            "application/octet-stream",
            random,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_utf8",
        ),
        (
            "image.png",
            "image/png",
            b"\x89PNG\r\n\x1a\n0000".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "sheet.xlsx",
            "application/vnd.ms-excel",
            b"a,b".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "huge.txt",
            "text/plain",
            vec![b'a'; 300_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (name, ct, bytes, status, code) in cases {
        let r = app.upload(&key, name, name, ct, &bytes).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {:?}",
            r.body
        );
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Oversized JSON bodies get the same answer.
    let big = "word ".repeat(60_000);
    let r = app
        .call("POST", "/v1/documents", &key, Some(json!({"text": big})))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_body_bytes"));

    // Failed documents are visible as failed, with their job's error.
    let d = app
        .call("GET", "/v1/documents/corrupt.pdf", &key, None)
        .await;
    assert_eq!(d.body["status"], "failed");
    // Nothing else was lost.
    assert_eq!(
        doc_ids(
            &app.query(&key, "lighthouse lamp cleaned", "hybrid", 3)
                .await
        )[0],
        "keep"
    );
    assert_eq!(
        doc_ids(&app.query(&other, "smoked fish market", "hybrid", 3).await)[0],
        "theirs"
    );
    assert_eq!(
        app.call("GET", "/healthz", "", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.put_text(&key, "after", "Ingestion still works after bad input.")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn one_tenant_cannot_fill_the_ingestion_queue() {
    let app = app_with(&["ingest.tenant_queue_max=1"]).await;
    let key = app.tenant("busy").await;
    let other = app.tenant("quiet").await;
    let pdf = std::fs::read(provisioned("docs/debian-faq/debian-faq.en.pdf")).unwrap();
    let form = |id: &str| json!({"id": id, "text": "A short note about tides."});
    // A long job occupies the tenant's single slot...
    let r = app
        .multipart(&key, "faq", "faq.pdf", "application/pdf", &pdf, false)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // ...so its next upload is refused with 429 and Retry-After, while another tenant is served.
    let r = app
        .call("POST", "/v1/documents", &key, Some(form("n1")))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("tenant_queue_full"))
    );
    assert!(r.headers.get("retry-after").is_some());
    let r = app
        .call("POST", "/v1/documents?wait=true", &other, Some(form("n1")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// A running job says where it is: its stage, and chunks done of the document's total, going
/// only forward; a finished job keeps its counts and has no stage.
#[tokio::test]
async fn a_running_job_reports_its_stage_and_chunks() {
    let app = app().await;
    let key = app.tenant("progress").await;
    let text: String = (0..400)
        .map(|i| {
            format!(
                "Paragraph {i}: the progress report of batch {i} lists valve {i}, gauge {}, \
                 and the inspector who checked shelf {} on day {}.",
                i * 3,
                i % 7,
                i % 31
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let r = app
        .call(
            "POST",
            "/v1/documents",
            &key,
            Some(json!({"id": "long", "text": text})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let job = r.body["job_id"].as_str().unwrap().to_string();
    let (mut seen, mut last_done) = (Vec::new(), 0u64);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let fin = loop {
        let j = app
            .call("GET", &format!("/v1/jobs/{job}"), &key, None)
            .await;
        assert_eq!(j.status, StatusCode::OK, "{:?}", j.body);
        let b = j.body;
        if matches!(b["status"].as_str(), Some("succeeded" | "failed")) {
            break b;
        }
        let done = b["chunks_done"].as_u64().unwrap();
        if b["status"] == "running" {
            assert!(done >= last_done, "chunks_done only grows: {b}");
            last_done = done;
            if let Some(stage) = b["stage"].as_str() {
                seen.push((stage.to_string(), done, b["chunks_total"].as_u64()));
            }
        }
        assert!(std::time::Instant::now() < deadline, "{b}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(fin["status"], "succeeded", "{fin}");
    assert!(fin.get("stage").is_none(), "{fin}");
    let doc = app.call("GET", "/v1/documents/long", &key, None).await;
    let n = doc.body["chunk_count"].as_u64().unwrap();
    assert!(n > 40, "more than one embedding batch: {:?}", doc.body);
    assert_eq!(
        (fin["chunks_done"].as_u64(), fin["chunks_total"].as_u64()),
        (Some(n), Some(n))
    );
    assert!(
        seen.iter()
            .any(|(s, d, t)| s == "embedding" && *t == Some(n) && *d > 0 && *d < n),
        "embedding seen part-way: {seen:?}"
    );
    let order = ["parsing", "embedding", "indexing"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|(s, _, _)| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "stages in order: {seen:?}"
    );
}

//! The hostile-input suite against the real server: every document class that once killed,
//! stalled or bloated the process, uploaded by one tenant while another tenant queries. For
//! each: the server stays the same process, the job ends with its code within its budget, the
//! server's RSS stays bounded, and the quiet tenant's query p50 after is within 3x of before.
use std::time::{Duration, Instant};

use serde_json::json;
use tenantry_ingest::hostile;

use crate::common::*;

/// Per-document wall clock the suite runs the sandbox with (the default is 60 s).
const PARSE_TIMEOUT_SECS: u64 = 15;

fn p50_ms(server: &Server, key: &str, rounds: usize) -> f64 {
    let mut ms: Vec<f64> = (0..rounds)
        .map(|i| {
            let started = Instant::now();
            let (s, body) = server.call(
                reqwest::Method::POST,
                "/v1/query",
                key,
                Some(json!({"query": format!("how do glaciers carve fjords {i}"), "top_k": 5})),
            );
            assert_eq!(s, 200, "{body}");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

struct Case {
    name: &'static str,
    file_name: &'static str,
    mime: &'static str,
    bytes: Vec<u8>,
    /// The job's error code; `None`: the document is accepted.
    code: Option<&'static str>,
}

fn case(
    name: &'static str,
    file_name: &'static str,
    mime: &'static str,
    bytes: Vec<u8>,
    code: Option<&'static str>,
) -> Case {
    Case {
        name,
        file_name,
        mime,
        bytes,
        code,
    }
}

fn cases() -> Vec<Case> {
    const PDF: &str = "application/pdf";
    const HTML: &str = "text/html";
    const MD: &str = "text/markdown";
    const TOO_COMPLEX: Option<&str> = Some("document_too_complex");
    vec![
        // Finding 1 and its class: cyclic and deep PDF object graphs.
        case(
            "pdf: self-drawing form (the report)",
            "a.pdf",
            PDF,
            hostile::pdf_self_drawing_form(),
            TOO_COMPLEX,
        ),
        case(
            "pdf: form cycle of three",
            "a.pdf",
            PDF,
            hostile::pdf_form_cycle(),
            TOO_COMPLEX,
        ),
        case(
            "pdf: form chain 1,000 deep",
            "a.pdf",
            PDF,
            hostile::pdf_deep_forms(1000),
            TOO_COMPLEX,
        ),
        case(
            "pdf: page tree parent cycle",
            "a.pdf",
            PDF,
            hostile::pdf_parent_cycle(),
            TOO_COMPLEX,
        ),
        case(
            "pdf: parent cycle through a reference",
            "a.pdf",
            PDF,
            hostile::pdf_parent_cycle_through_reference(),
            TOO_COMPLEX,
        ),
        case(
            "pdf: form inheriting the page's resources",
            "a.pdf",
            PDF,
            hostile::pdf_inherited_form_cycle(),
            TOO_COMPLEX,
        ),
        case(
            "pdf: forms fanning out to 2^40 draws",
            "a.pdf",
            PDF,
            hostile::pdf_form_fan_out(40),
            TOO_COMPLEX,
        ),
        // The object parser's own recursion: lopdf bounds its nesting, so the page object fails
        // to parse and the page has no text (the sandbox would catch an overflow otherwise).
        case(
            "pdf: arrays nested 200,000 deep",
            "a.pdf",
            PDF,
            hostile::pdf_deep_arrays(200_000),
            Some("pdf_no_text"),
        ),
        // Finding 3: compression bombs (1 GiB of spaces in about 1 MB).
        case(
            "pdf: flate bomb to 1 GiB",
            "a.pdf",
            PDF,
            hostile::pdf_flate_bomb(1 << 30),
            Some("decompressed_too_large"),
        ),
        // Finding 2 and its class: deep nesting in every format.
        case(
            "html: 100,000 nested div (the report)",
            "a.html",
            HTML,
            hostile::html_nested("div", 100_000),
            TOO_COMPLEX,
        ),
        case(
            "html: 100,000 nested span",
            "a.html",
            HTML,
            hostile::html_nested("span", 100_000),
            TOO_COMPLEX,
        ),
        case(
            "html: 50,000 nested blockquote",
            "a.html",
            HTML,
            hostile::html_nested("blockquote", 50_000),
            TOO_COMPLEX,
        ),
        case(
            "markdown: 100,000 nested quotes and lists",
            "a.md",
            MD,
            hostile::markdown_nested(100_000),
            TOO_COMPLEX,
        ),
        // Finding 4: a 200 KB heading is cut, not copied into every chunk.
        case(
            "markdown: 200 KB heading",
            "a.md",
            MD,
            hostile::markdown_huge_heading(200_000, 41_000),
            None,
        ),
        // Huge single tokens: nothing to split on.
        case(
            "text: one 2 MB word",
            "a.txt",
            "text/plain",
            hostile::huge_token(2 << 20),
            None,
        ),
    ]
}

#[test]
fn hostile_documents_fail_their_own_job_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = PARSE_TIMEOUT_SECS.to_string();
    let mut server = Server::start_with(
        dir.path(),
        &[("TENANTRY_INGEST__SANDBOX__TIMEOUT_SECS", timeout.as_str())],
    );
    let quiet = server.create_tenant("quiet");
    let mallory = server.create_tenant("mallory");
    for (id, text) in [
        (
            "fjords",
            "Glaciers carve fjords into the coast over many ice ages.",
        ),
        (
            "tides",
            "Tides rise and fall twice a day along the northern shore.",
        ),
    ] {
        server.ingest_text(&quiet, id, text);
    }
    let before = p50_ms(&server, &quiet, 30);
    let rss_before = server.rss();
    let mut rss_peak = rss_before;
    let mut report = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let started = Instant::now();
        let size = c.bytes.len();
        let (status, body) = server.upload(
            &mallory,
            &format!("h{i}"),
            c.file_name,
            c.mime,
            c.bytes,
            true,
        );
        let took = started.elapsed();
        server.assert_alive();
        let rss = server.rss();
        rss_peak = rss_peak.max(rss);
        match c.code {
            Some(code) => {
                assert_eq!(status, 422, "{}: {body}", c.name);
                assert_eq!(body["error"]["code"], code, "{}: {body}", c.name);
            }
            None => assert_eq!(status, 200, "{}: {body}", c.name),
        }
        // Its budget: the parse deadline, plus embedding what was accepted.
        assert!(
            took < Duration::from_secs(PARSE_TIMEOUT_SECS + 60),
            "{}: {took:?}",
            c.name
        );
        let outcome = match body["error"]["code"].as_str() {
            Some(code) => code.to_string(),
            None => format!("accepted, {} chunks", body["chunk_count"]),
        };
        report.push(format!(
            "{:<45} {:>9} B  {:>6} ms  RSS {:>4} MB  {outcome}",
            c.name,
            size,
            took.as_millis(),
            rss >> 20,
        ));
    }
    // Accepted hostile documents are stored once per chunk, not amplified: the 200 KB heading
    // is cut to ingest.sandbox.max_heading_bytes in every chunk.
    let chunks_of = |name: &str| {
        let i = cases()
            .iter()
            .position(|c| c.name.starts_with(name))
            .unwrap();
        let (_, doc) = server.call(
            reqwest::Method::GET,
            &format!("/v1/documents/h{i}"),
            &mallory,
            None,
        );
        doc["chunk_count"].as_u64().unwrap_or(0)
    };
    let chunks = chunks_of("markdown: 200 KB heading");
    assert!((1..100).contains(&chunks), "{chunks} chunks");
    // A 2 MB word is one token but not one 2 MB chunk: chunks are capped in bytes too.
    let chunks = chunks_of("text: one 2 MB word");
    assert!(chunks >= 256, "{chunks} chunks");

    let after = p50_ms(&server, &quiet, 30);
    eprintln!("hostile-input suite:\n  {}", report.join("\n  "));
    eprintln!(
        "  server RSS {} MB before, peak {} MB; quiet tenant p50 {before:.1} ms before, {after:.1} ms after",
        rss_before >> 20,
        rss_peak >> 20
    );
    // Noise floor: a few milliseconds either way on a loaded 2-core machine is not a regression.
    assert!(
        after <= 3.0 * before.max(5.0),
        "p50 {before:.1} -> {after:.1} ms"
    );
    assert!(
        rss_peak < rss_before + (600 << 20),
        "RSS grew from {} to {} MB",
        rss_before >> 20,
        rss_peak >> 20
    );
    // The quiet tenant's documents are untouched.
    assert_eq!(
        server.query_ids(&quiet, "glaciers carve fjords")[0],
        "fjords"
    );
    server.sigterm();
}

/// Slow and idle connections cannot hold the server: headers have a deadline (which also ends
/// idle keep-alive connections) and connections beyond the cap wait in the accept queue
/// until one of them is gone.
#[test]
fn slow_and_idle_connections_are_bounded() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        dir.path(),
        &[
            ("TENANTRY_HTTP__HEADER_TIMEOUT_SECS", "1"),
            ("TENANTRY_HTTP__MAX_CONNECTIONS", "4"),
        ],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    // Four connections, each sending half a request and then trickling a byte at a time.
    let mut slow: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    // A fifth client is served once the server has dropped the slow ones.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let waiter = std::thread::spawn(move || {
        let r = client.get(format!("http://{addr}/healthz")).send();
        (r.map(|r| r.status().as_u16()), started.elapsed())
    });
    for _ in 0..10 {
        for s in &mut slow {
            let _ = s.write_all(b"X");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        // The server answers 408 or just closes; either way the connection ends.
        let n = s.read_to_end(&mut buf);
        assert!(n.is_ok(), "a slow connection was still open: {n:?}");
    }
    let (status, waited) = waiter.join().unwrap();
    assert_eq!(status.unwrap(), 200);
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    server.assert_alive();
    server.sigterm();
}

/// A document that parses quickly but would hold an ingestion worker for long (many chunks to
/// embed) fails with `job_timeout` at its budget; the tenant's other documents stay, and the
/// worker takes the next job.
#[tokio::test]
async fn a_job_past_its_budget_fails_with_job_timeout() {
    let app = app_with(&["ingest.job_timeout_secs=1"]).await;
    let key = app.tenant("slow").await;
    let r = app
        .put_text(&key, "small", "Glaciers carve fjords into the coast.")
        .await;
    assert_eq!(r.status, axum::http::StatusCode::OK, "{:?}", r.body);
    let long: String = (0..400)
        .map(|i| {
            format!("Paragraph {i} about tides, moraines and the coast of island number {i}. ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
        .repeat(3);
    let started = Instant::now();
    let r = app.put_text(&key, "long", &long).await;
    let took = started.elapsed();
    assert_eq!(r.status.as_u16(), 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "job_timeout", "{:?}", r.body);
    // The budget is checked between embedding batches: one batch past it at most.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(
        doc_ids(&app.query(&key, "glaciers fjords", "hybrid", 5).await),
        vec!["small".to_string()]
    );
    let r = app.put_text(&key, "next", "Tides rise twice a day.").await;
    assert_eq!(r.status, axum::http::StatusCode::OK, "{:?}", r.body);
}

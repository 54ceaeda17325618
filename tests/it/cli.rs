//! The operator CLI on a data directory: tenants, keys, ingest (files and directories), query.
use std::process::Command;

use crate::common::*;

fn tenantry(data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(model_flags())
        .args(args)
        .env("TENANTRY_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn operator_commands_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, out) = tenantry(&data, &["tenants", "create", "acme"]);
    assert!(ok && out.contains("api key: tny_"), "{out}");
    let (ok, out) = tenantry(
        &data,
        &["ingest", "--tenant", "nobody", "fixtures/docs/notes.txt"],
    );
    assert!(!ok && out.contains("tenants create nobody"), "{out}");
    let docs = root().join("fixtures/docs");
    let (ok, out) = tenantry(
        &data,
        &["ingest", "--tenant", "acme", docs.to_str().unwrap()],
    );
    // no-text.pdf fails with its code; the rest succeed and the summary says so.
    assert!(!ok, "a failed document makes the exit status non-zero");
    assert!(
        out.contains("ingested 4 documents")
            && out.contains("1 failed")
            && out.contains("pdf_no_text"),
        "{out}"
    );
    // Without a terminal, progress comes as lines; the last one counts every chunk.
    let last = out
        .lines()
        .rfind(|l| l.starts_with("ingesting: "))
        .unwrap_or_else(|| panic!("no progress line: {out}"));
    let counts = last["ingesting: ".len()..].split(' ').next().unwrap();
    let (done, total) = counts.split_once('/').unwrap();
    assert!(done == total && total != "0", "{last}");
    assert!(last.contains("5/5 files done"), "{last}");
    let (ok, out) = tenantry(
        &data,
        &[
            "query",
            "--tenant",
            "acme",
            "fog horn lighthouse",
            "--top-k",
            "2",
        ],
    );
    assert!(
        ok && out.lines().next().unwrap_or("").contains("notes.txt"),
        "{out}"
    );
    let (ok, out) = tenantry(&data, &["tenants", "list"]);
    assert!(ok && out.contains("acme\t4 documents"), "{out}");
    let (ok, out) = tenantry(&data, &["keys", "create", "--tenant", "acme"]);
    let key_id = out
        .lines()
        .find_map(|l| l.strip_prefix("key id:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    assert!(ok && !key_id.is_empty(), "{out}");
    assert!(tenantry(&data, &["keys", "revoke", &key_id]).0);
    let (ok, out) = tenantry(&data, &["tenants", "delete", "acme"]);
    assert!(ok, "{out}");
    assert!(
        !data.join("lexical/acme").exists(),
        "tenant delete removes its lexical index"
    );
}

#[test]
fn eval_reports_every_variant_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unused");
    let dataset = root().join("fixtures/beir-tiny");
    let html = dir.path().join("eval.html");
    let run = |n: usize| {
        let out = dir.path().join(format!("eval{n}.json"));
        let (ok, text) = tenantry(
            &data,
            &[
                "eval",
                dataset.to_str().unwrap(),
                "--json",
                out.to_str().unwrap(),
                "--report",
                html.to_str().unwrap(),
            ],
        );
        assert!(
            ok && text.contains("nDCG@10") && text.contains("3 queries"),
            "{text}"
        );
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out).unwrap()).unwrap()
    };
    let first = run(1);
    let variants = first["variants"].as_object().unwrap();
    for name in [
        "bm25",
        "dense",
        "dense, chunk alone",
        "hybrid (default)",
        "hybrid dbsf 1:1",
        "hybrid convex 1:1",
    ] {
        let row = &variants[name];
        for metric in ["ndcg_at_10", "recall_at_10", "recall_at_100", "mrr_at_10"] {
            let v = row[metric].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{name} {metric} {v}");
        }
    }
    // Four unambiguous documents: dense retrieval gets every first hit right.
    assert_eq!(variants["dense"]["mrr_at_10"].as_f64(), Some(1.0));
    // The HTML report holds its charts with their data: one bar per variant and chart (nDCG@10,
    // recall@10, MRR@10), and dense's MRR bar is 1.
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 3, "{page}");
    assert_eq!(
        page.matches("data-value=").count(),
        3 * variants.len(),
        "{page}"
    );
    assert!(page.contains("<title>dense: 1.0000</title>"), "{page}");
    assert!(!page.contains("<script"), "{page}");
    assert_eq!(run(2), first, "two runs give identical numbers");
    assert!(
        !data.exists(),
        "eval works in a scratch directory, not the data directory"
    );
}

fn bench(data: &std::path::Path, json: &std::path::Path) -> serde_json::Value {
    let (ok, out) = tenantry(
        data,
        &[
            "bench",
            "--corpus",
            "fixtures/docs",
            "--queries",
            "fixtures/beir-tiny/queries.jsonl",
            "--tenants",
            "3",
            "--chunks-per-tenant",
            "20",
            "--concurrency",
            "2",
            "--duration",
            "0.5",
            "--cold-tenants",
            "2",
            "--ingest-docs",
            "1",
            "--noisy-seconds",
            "1",
            "--sweep",
            "1,2",
            "--json",
            json.to_str().unwrap(),
            "--report",
            json.with_extension("html").to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("| hybrid |") && out.contains("cold tenant"),
        "{out}"
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

/// A tiny `tenantry bench` (a few seconds), so the command cannot rot; its numbers are not
/// checked against targets: benches never fail the suite on speed.
#[test]
fn bench_runs_small_and_reuses_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (data, json) = (dir.path().join("bench"), dir.path().join("bench.json"));
    let first = bench(&data, &json);
    assert_eq!(first["tenants"], 3);
    assert!(first["total_chunks"].as_u64().unwrap() >= 3);
    assert!(first["embedded_during_load"].as_u64().unwrap() > 0);
    let runs = first["runs"].as_array().unwrap();
    let modes: Vec<&str> = runs.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["hybrid", "dense", "bm25", "answer"]);
    for r in runs {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
        let l = &r["latency"];
        assert!(l["p50_ms"].as_f64().unwrap() <= l["max_ms"].as_f64().unwrap());
        assert!(r["server_rss_mib"].as_f64().unwrap() > 0.0, "{r}");
        if r["mode"] == "answer" {
            // Answers have no in-process baseline: their cost is the generator's.
            assert!(r["overhead_ratio"].is_null(), "{r}");
        } else {
            assert!(r["overhead_ratio"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    let b = &first["baselines"];
    for k in [
        "embed_query_ms",
        "raw_embed_passages_per_s",
        "ingest_chunks_per_s",
    ] {
        assert!(b[k].as_f64().unwrap() > 0.0, "{k}: {b}");
    }
    // The bare model is tried in every layout (one session per core and one on all cores, at
    // batch 1, 4 and 16), and the best is the baseline.
    let tried = b["raw_embed_tried"].as_array().unwrap();
    assert!(tried.len() >= 3, "{b}");
    let best = tried
        .iter()
        .map(|t| t[1].as_f64().unwrap())
        .fold(0.0, f64::max);
    // ... and runs again after the ingestion: the faster of the two is the baseline.
    let again = b["raw_embed_again_passages_per_s"].as_f64().unwrap();
    assert_eq!(
        b["raw_embed_passages_per_s"].as_f64().unwrap(),
        best.max(again),
        "{b}"
    );
    assert!(b["parse_chunk_s"].as_f64().unwrap() > 0.0, "{b}");
    assert!(first["cold_first_query"]["p50_ms"].as_f64().unwrap() > 0.0);
    // Queries idle and while another tenant ingests the corpus, at 1 and 8 clients.
    let l = &first["ingest_load"];
    let rows = l["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{l}");
    for r in rows {
        assert!(r["idle"]["p99_ms"].as_f64().unwrap() > 0.0, "{l}");
        assert!(r["ingesting"]["p99_ms"].as_f64().unwrap() > 0.0, "{l}");
    }
    // fixtures/docs holds one PDF without text (pdf_no_text); the rest ingest.
    assert_eq!(l["failed"], 1, "{l}");
    assert!(l["chunks"].as_u64().unwrap() > 0, "{l}");
    // The noisy-neighbour run: the flooder hits its query limit (20/s over a 1 s phase with
    // more clients than that allows) and the quiet tenant keeps being answered.
    let n = &first["noisy"];
    assert!(n["quiet_alone"]["p99_ms"].as_f64().unwrap() > 0.0, "{n}");
    assert!(
        n["quiet_flood_limited"]["p99_ms"].as_f64().unwrap() > 0.0,
        "{n}"
    );
    assert!(
        n["quiet_flood_unlimited"]["p99_ms"].as_f64().unwrap() > 0.0,
        "{n}"
    );
    assert!(n["flooder_ok"].as_u64().unwrap() > 0, "{n}");
    assert!(n["flooder_uploads_accepted"].as_u64().unwrap() > 0, "{n}");
    // The HTML report holds its charts with their data: a latency CDF line per mode drawn from
    // every answered request, QPS per mode, the noisy-neighbour phases, the ingestion-load rows.
    let page = std::fs::read_to_string(json.with_extension("html")).unwrap();
    // CDF lines: 4 modes, then 2 client counts; QPS and p50/p99 against clients: 3 lines.
    assert_eq!(page.matches("<polyline").count(), 4 + 3 + 2, "{page}");
    let sweep = first["sweep"].as_array().unwrap();
    let clients: Vec<u64> = sweep
        .iter()
        .map(|r| r["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(clients, [1, 2]);
    let qps_points: Vec<String> = sweep
        .iter()
        .map(|r| format!("{}:{:.3}", r["concurrency"], r["qps"].as_f64().unwrap()))
        .collect();
    assert!(
        page.contains(&format!("data-points=\"{}\"", qps_points.join(" "))),
        "no QPS line through {qps_points:?}"
    );
    for r in runs.iter().chain(sweep) {
        let answered = r["requests"].as_u64().unwrap() - r["errors"].as_u64().unwrap();
        assert!(
            page.contains(&format!("data-samples=\"{answered}\"")),
            "{} has no line of {answered} samples",
            r["mode"]
        );
    }
    // QPS (4 modes), noisy phases (4), idle/ingesting at 1 and 8 clients (4).
    assert_eq!(page.matches("data-value=").count(), 12, "{page}");
    assert!(!page.contains("<script"), "{page}");
    // A re-run finds every tenant loaded and embeds nothing.
    let second = bench(&data, &json);
    assert_eq!(second["embedded_during_load"], 0);
    assert_eq!(second["total_chunks"], first["total_chunks"]);
}

#[test]
fn key_limit_and_usage_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(tenantry(&data, &["tenants", "create", "acme"]).0);
    let (ok, out) = tenantry(
        &data,
        &[
            "keys", "create", "--tenant", "acme", "--role", "writer", "--name", "ci",
        ],
    );
    assert!(ok && out.contains("role:    writer"), "{out}");
    let key_id = out
        .lines()
        .find_map(|l| l.strip_prefix("key id:  "))
        .unwrap()
        .to_string();
    let (ok, out) = tenantry(&data, &["keys", "list", "--tenant", "acme"]);
    assert!(
        ok && out.contains(&format!("tny_{key_id}_")) && out.contains("writer\t"),
        "{out}"
    );
    assert!(
        !out.contains("api key"),
        "a listing never shows secrets: {out}"
    );
    let (ok, out) = tenantry(&data, &["keys", "rotate", &key_id]);
    assert!(ok && out.contains("api key: tny_"), "{out}");
    let (ok, out) = tenantry(&data, &["keys", "list", "--tenant", "acme"]);
    assert!(
        ok && !out.contains(&key_id),
        "the rotated key is gone: {out}"
    );
    let (ok, out) = tenantry(
        &data,
        &["keys", "create", "--tenant", "acme", "--role", "admin"],
    );
    assert!(!ok && out.contains("unknown role"), "{out}");

    let (ok, out) = tenantry(
        &data,
        &[
            "limits",
            "--tenant",
            "acme",
            r#"{"max_documents":1,"query_per_sec":5}"#,
        ],
    );
    assert!(
        ok && out.contains("max documents: 1") && out.contains("queries: 5/s"),
        "{out}"
    );
    let (ok, out) = tenantry(&data, &["limits", "--tenant", "acme", r#"{"bogus":1}"#]);
    assert!(!ok, "unknown fields are refused: {out}");
    assert!(
        tenantry(
            &data,
            &["ingest", "--tenant", "acme", "fixtures/docs/notes.txt"]
        )
        .0
    );
    let (ok, out) = tenantry(&data, &["usage", "--tenant", "acme"]);
    assert!(ok && out.contains("documents_ingested\t1"), "{out}");
    assert!(out.contains("stored now: 1 documents"), "{out}");
}

/// Configuration mistakes fail at start, in one line, naming what is wrong; a typo in a
/// `TENANTRY_*` variable is one of them (it used to change nothing and say nothing).
#[test]
fn configuration_mistakes_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["--data-dir", dir.path().join("d").to_str().unwrap()])
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[("TENANTRY_QUERY__RRF_KK", "3")], &["tenants", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TENANTRY_QUERY__RRF_KK"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    let (code, err) = run(&[], &["--set", "query.nope=1", "tenants", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("query.nope"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("backtrace"), "{err}");
    // More sessions kept busy under queries than there are would never yield to queries.
    let (code, err) = run(
        &[
            ("TENANTRY_INGEST__EMBED_SESSIONS", "1"),
            ("TENANTRY_INGEST__EMBED_SESSIONS_BUSY", "2"),
        ],
        &["tenants", "list"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("embed_sessions_busy <= embed_sessions"),
        "{err}"
    );
}

/// `ingest`, `query` and `answer` against a running server (`--url`/`--key`, or
/// `TENANTRY_URL`/`TENANTRY_API_KEY`): uploads go out a few at a time, a 429 is waited out
/// (the tenant may upload one document a second here), and the summary says what failed and why.
#[test]
fn the_cli_is_a_client_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::common::Server::start(&dir.path().join("server"));
    let key = server.create_tenant("remote");
    let (st, body) = server.call(
        reqwest::Method::PUT,
        "/v1/tenants/remote/limits",
        crate::common::ADMIN,
        Some(serde_json::json!({"ingest_per_sec": 1.0, "ingest_burst": 1})),
    );
    assert_eq!(st, 200, "{body}");
    let docs = root().join("fixtures/docs");
    let local = dir.path().join("unused");
    let started = std::time::Instant::now();
    let (ok, out) = tenantry(
        &local,
        &[
            "ingest",
            "--url",
            &server.base,
            "--key",
            &key,
            "--concurrency",
            "4",
            docs.to_str().unwrap(),
        ],
    );
    assert!(
        !ok,
        "a failed document makes the exit status non-zero: {out}"
    );
    assert!(
        out.contains("ingested 4 documents")
            && out.contains("1 failed")
            && out.contains("no-text.pdf: pdf_no_text"),
        "{out}"
    );
    assert!(
        out.contains("ingesting: ") && out.contains("5/5 files done"),
        "{out}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(3),
        "five uploads at one a second were paced by 429 + Retry-After"
    );
    // The environment instead of flags; the tenant is the key's.
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["query", "fog horn lighthouse", "--top-k", "2"])
        .env("TENANTRY_URL", &server.base)
        .env("TENANTRY_API_KEY", &key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().next().unwrap_or("").contains("notes.txt"),
        "{text}"
    );
    let (ok, out) = tenantry(
        &local,
        &[
            "answer",
            "--url",
            &server.base,
            "--key",
            &key,
            "What is the boiling point of tungsten?",
        ],
    );
    assert!(ok && out.contains("(not grounded: no_evidence)"), "{out}");
    let (ok, out) = tenantry(&local, &["query", "--url", &server.base, "anything"]);
    assert!(!ok && out.contains("--url needs an API key"), "{out}");
    let (ok, out) = tenantry(
        &local,
        &[
            "query",
            "--url",
            &server.base,
            "--key",
            "tny_nope_nope",
            "anything",
        ],
    );
    assert!(!ok && out.contains("invalid"), "{out}");
}

//! Several `tenantry serve` processes sharing one deployment: the catalog and job queue on a
//! real PostgreSQL, both retrieval legs on a real 3-node Qdrant cluster. Any node serves any
//! tenant; a node that dies mid-job loses nothing acknowledged and shows nothing half-written;
//! PostgreSQL restarting costs 503s with Retry-After, never data; a key revoked through one
//! node fails on the others at their next request; rate limits are split between the nodes.
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::cluster::cluster_or_skip;
use crate::common::{env_of, Server, ADMIN};
use crate::pg::Postgres;

/// A node on its own (throwaway) data directory, configured by `overrides`.
pub struct Node {
    pub server: Server,
    pub _dir: tempfile::TempDir,
}

pub fn node(overrides: &[String]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let env = env_of(overrides);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Node {
        server: Server::start_with(dir.path(), &env),
        _dir: dir,
    }
}

/// The deployment's settings every node of a test shares.
pub fn shared(pg: &Postgres, extra: &[String]) -> Vec<String> {
    let mut o = pg.overrides();
    o.extend([
        "limits.query_per_sec=0".to_string(),
        "limits.ingest_per_sec=0".to_string(),
    ]);
    o.extend(extra.iter().cloned());
    o
}

/// A document of about `paragraphs` chunks, each paragraph its own words.
fn long_text(tag: &str, paragraphs: usize) -> String {
    (0..paragraphs)
        .map(|i| {
            format!(
                "Section {i} of the {tag} handbook. The {tag} procedure number {i} covers \
                 calibration step {i}, the maintenance window {i} and the escalation path for \
                 incident class {i}. Operators record reading {i} in the {tag} ledger before \
                 the next shift, and the supervisor signs page {i} of the audit trail. \
                 Component {i} is replaced every {} days; spare part {i} is kept in cabinet {}.",
                i * 7 + 3,
                i % 13
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Upload a text document without waiting: its job's id.
fn submit(s: &Server, key: &str, id: &str, text: String) -> String {
    let (st, body) = s.call(
        Method::POST,
        "/v1/documents",
        key,
        Some(json!({"id": id, "text": text})),
    );
    assert_eq!(st, 202, "{body}");
    body["job_id"].as_str().unwrap().to_string()
}

/// Wait (up to a minute) until one of `jobs` runs.
fn wait_running(s: &Server, key: &str, jobs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !jobs.iter().any(|j| job(s, key, j)["status"] == "running") {
        assert!(Instant::now() < deadline, "no job started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn job(s: &Server, key: &str, id: &str) -> Value {
    let (st, body) = s.call(Method::GET, &format!("/v1/jobs/{id}"), key, None);
    assert_eq!(st, 200, "{body}");
    body
}

/// Wait until every job is final (on whatever node runs it); returns them by id.
fn wait_final(s: &Server, key: &str, jobs: &[String], within: Duration) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    loop {
        let all: HashMap<String, Value> =
            jobs.iter().map(|j| (j.clone(), job(s, key, j))).collect();
        if all
            .values()
            .all(|j| matches!(j["status"].as_str(), Some("succeeded" | "failed")))
        {
            return all;
        }
        assert!(Instant::now() < deadline, "jobs not final in time: {all:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every live document's chunks, as the export reads them from both legs: (doc -> ordinals).
fn exported(s: &Server, key: &str) -> BTreeMap<String, Vec<u64>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let text = client
        .get(format!("{}/v1/export", s.base))
        .bearer_auth(key)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["kind"].as_str() {
            Some("document") => current = v["id"].as_str().unwrap().to_string(),
            Some("chunk") => out
                .entry(current.clone())
                .or_default()
                .push(v["ordinal"].as_u64().unwrap()),
            _ => {}
        }
    }
    out
}

/// Every document is ready with exactly its committed chunks, once each, in both legs.
fn assert_whole(s: &Server, key: &str, docs: &[&str]) {
    let chunks = exported(s, key);
    for d in docs {
        let (st, doc) = s.call(Method::GET, &format!("/v1/documents/{d}"), key, None);
        assert_eq!(st, 200, "{doc}");
        assert_eq!(doc["status"], "ready", "{doc}");
        let n = doc["chunk_count"].as_u64().unwrap();
        let mut ords = chunks.get(*d).cloned().unwrap_or_default();
        ords.sort();
        assert_eq!(
            ords,
            (0..n).collect::<Vec<_>>(),
            "document {d}: its committed chunks, each once"
        );
    }
}

#[test]
fn a_key_revoked_through_one_node_fails_on_another_and_rate_limits_are_split() {
    // The catalog is all this needs: each node keeps its own embedded legs.
    let pg = Postgres::start();
    let o = shared(&pg, &[]);
    let (a, b) = (node(&o), node(&o));
    let (a, b) = (&a.server, &b.server);
    let admin_key = a.create_tenant("nodes-revoke");
    let (st, created) = a.call(
        Method::POST,
        "/v1/tenants/nodes-revoke/keys",
        &admin_key,
        Some(json!({"role": "reader", "name": "laptop"})),
    );
    assert_eq!(st, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_string();
    let key_id = created["key_id"].as_str().unwrap().to_string();
    let list = |s: &Server| s.call(Method::GET, "/v1/documents", &key, None).0;
    assert_eq!((list(a), list(b)), (200, 200), "a key made on A works on B");
    let (st, body) = a.call(
        Method::DELETE,
        &format!("/v1/keys/{key_id}"),
        &admin_key,
        None,
    );
    assert_eq!(st, 204, "{body}");
    assert_eq!(
        list(b),
        401,
        "revoked on A: B refuses it at the next request"
    );
    assert_eq!(list(a), 401);

    // Rate limits: each of the two nodes admits half of the tenant's burst.
    std::thread::sleep(Duration::from_secs(3)); // both heartbeats have seen two nodes
    let mut ids = Vec::new();
    for s in [a, b] {
        let text = reqwest::blocking::Client::new()
            .get(format!("{}/metrics", s.base))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(text.contains("\ntenantry_nodes 2\n"), "{text}");
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("tenantry_node_info{node=\""))
            .unwrap()
            .to_string();
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each node's /metrics is its own");
    let (st, body) = a.call(
        Method::PUT,
        "/v1/tenants/nodes-revoke/limits",
        ADMIN,
        Some(json!({"query_per_sec": 0.01, "query_burst": 4})),
    );
    assert_eq!(st, 200, "{body}");
    let query = |s: &Server| {
        s.call(
            Method::POST,
            "/v1/query",
            &admin_key,
            Some(json!({"query": "anything", "mode": "bm25"})),
        )
        .0
    };
    let statuses: Vec<u16> = (0..10)
        .map(|i| query(if i % 2 == 0 { a } else { b }))
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        admitted, 4,
        "a burst of 4 across two nodes is 4 in all, 2 per node: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 429)),
        "{statuses:?}"
    );
}

#[test]
fn a_node_killed_mid_job_loses_nothing_and_shows_nothing_half_written() {
    let Some(cluster) = cluster_or_skip("a_node_killed_mid_job_loses_nothing") else {
        return;
    };
    let pg = Postgres::start();
    let mut extra = cluster.overrides(2);
    extra.push("catalog.job_lease_secs=8".into());
    extra.push("postgres.connect_timeout_secs=2".into());
    let o = shared(&pg, &extra);
    let a = node(&o);
    let key = a.server.create_tenant("nodes-kill");
    let docs = ["k1", "k2", "k3"];
    let jobs: Vec<String> = docs
        .iter()
        .enumerate()
        // About 100 chunks each: long enough to be running when A dies, now that ingestion
        // embeds on every core.
        .map(|(i, d)| submit(&a.server, &key, d, long_text(&format!("kill{i}"), 200)))
        .collect();
    // Kill A while it runs jobs.
    wait_running(&a.server, &key, &jobs);
    std::thread::sleep(Duration::from_millis(1500));
    let running: Vec<String> = jobs
        .iter()
        .filter(|j| job(&a.server, &key, j)["status"] == "running")
        .cloned()
        .collect();
    assert!(!running.is_empty(), "A holds running jobs when it dies");
    let Node { server, _dir } = a;
    server.kill9();
    let killed_at = Instant::now();

    // B takes them over once their leases expire, with the attempt counted. Meanwhile a
    // search never shows a document whose version is not committed.
    let b = node(&o);
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let hits = b
            .server
            .query_ids_in(&key, "calibration maintenance", "bm25");
        let all: HashMap<String, Value> = jobs
            .iter()
            .map(|j| (j.clone(), job(&b.server, &key, j)))
            .collect();
        for h in &hits {
            let (st, doc) = b
                .server
                .call(Method::GET, &format!("/v1/documents/{h}"), &key, None);
            assert_eq!((st, doc["status"].as_str()), (200, Some("ready")), "{doc}");
        }
        if all
            .values()
            .all(|j| j["status"] == "succeeded" || j["status"] == "failed")
        {
            break all;
        }
        assert!(Instant::now() < deadline, "jobs not final in time: {all:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for j in &jobs {
        assert_eq!(done[j]["status"], "succeeded", "{:?}", done[j]);
        assert!(
            matches!(done[j]["attempts"].as_u64(), Some(1 | 2)),
            "{:?}",
            done[j]
        );
    }
    // A job sampled as running may have finished just before the kill; not all of them.
    assert!(
        running.iter().any(|j| done[j]["attempts"] == 2),
        "an interrupted run is counted: {done:?}"
    );
    println!(
        "node killed with {} running jobs; all {} succeeded on another node {:.1} s later",
        running.len(),
        jobs.len(),
        killed_at.elapsed().as_secs_f64()
    );
    assert_whole(&b.server, &key, &docs);
    let hits = b.server.query_ids_in(&key, "kill1", "bm25");
    assert_eq!(hits.first().map(String::as_str), Some("k2"), "{hits:?}");
}

#[test]
fn a_draining_node_hands_its_jobs_back_at_once() {
    let Some(cluster) = cluster_or_skip("a_draining_node_hands_its_jobs_back_at_once") else {
        return;
    };
    let pg = Postgres::start();
    let mut extra = cluster.overrides(2);
    // A lease far longer than the test: only a hand-back lets B run the job in time.
    extra.push("catalog.job_lease_secs=600".into());
    extra.push("shutdown_deadline_secs=1".into());
    extra.push("ingest.workers=1".into());
    let o = shared(&pg, &extra);
    let a = node(&o);
    let key = a.server.create_tenant("nodes-drain");
    let id = submit(&a.server, &key, "big", long_text("drain", 300));
    wait_running(&a.server, &key, std::slice::from_ref(&id));
    let b = node(&o);
    let Node { server, _dir } = a;
    server.sigterm();
    let done = wait_final(
        &b.server,
        &key,
        std::slice::from_ref(&id),
        Duration::from_secs(300),
    );
    assert_eq!(done[&id]["status"], "succeeded", "{:?}", done[&id]);
    assert_eq!(done[&id]["attempts"], 2, "{:?}", done[&id]);
    assert_whole(&b.server, &key, &["big"]);
}

#[test]
fn postgres_restarting_costs_503s_never_data() {
    let Some(cluster) = cluster_or_skip("postgres_restarting_costs_503s_never_data") else {
        return;
    };
    let pg = Postgres::start();
    let mut extra = cluster.overrides(2);
    extra.push("postgres.connect_timeout_secs=2".into());
    let o = shared(&pg, &extra);
    let (a, b) = (node(&o), node(&o));
    let key = a.server.create_tenant("nodes-pg");
    b.server.ingest_text(&key, "seed", &long_text("seed", 3));
    let docs: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    let jobs: Vec<String> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| submit(&a.server, &key, d, long_text(&format!("pg{i}"), 60)))
        .collect();
    // Queries on both nodes all along; PostgreSQL restarts under them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bases = [a.server.base.clone(), b.server.base.clone()];
    let prober = {
        let (stop, key) = (stop.clone(), key.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = client
                    .post(format!("{}/v1/query", bases[i % 2]))
                    .bearer_auth(&key)
                    .json(&json!({"query": "maintenance window", "mode": "hybrid"}))
                    .send()
                    .expect("a node answers every request");
                let st = r.status().as_u16();
                if st == 503 {
                    assert!(
                        r.headers().get("retry-after").is_some(),
                        "503 says when to retry"
                    );
                }
                *seen.entry(st).or_default() += 1;
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let unfinished = jobs
        .iter()
        .filter(|j| {
            !matches!(
                job(&b.server, &key, j)["status"].as_str(),
                Some("succeeded" | "failed")
            )
        })
        .count();
    assert!(
        unfinished > 0,
        "ingestion is still going when PostgreSQL stops"
    );
    pg.stop();
    std::thread::sleep(Duration::from_secs(4));
    let (st, body) = a.server.call(Method::GET, "/v1/documents", &key, None);
    assert_eq!(st, 503, "{body}");
    pg.restart();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = prober.join().unwrap();
    println!("query statuses while PostgreSQL restarted: {seen:?}");
    assert!(
        seen.keys().all(|s| matches!(s, 200 | 503)),
        "only answers or 503: {seen:?}"
    );
    assert!(
        seen.contains_key(&503) && seen.contains_key(&200),
        "{seen:?}"
    );
    let done = wait_final(&b.server, &key, &jobs, Duration::from_secs(300));
    for j in &jobs {
        assert_eq!(done[j]["status"], "succeeded", "{:?}", done[j]);
    }
    let mut all: Vec<&str> = docs.iter().map(String::as_str).collect();
    all.push("seed");
    assert_whole(&a.server, &key, &all);
}

/// `tenantry bench --nodes` runs against a real shared deployment (small, to check that it
/// measures; the numbers are in the README), and refuses a deployment nodes cannot share.
#[test]
fn bench_drives_one_and_two_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("nodes.json");
    let run = |env: &[(String, String)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .current_dir(crate::common::root())
            .args(["--data-dir", dir.path().join("bench").to_str().unwrap()])
            .args(crate::common::model_flags())
            .args([
                "bench",
                "--corpus",
                "fixtures/docs",
                "--queries",
                "fixtures/beir-tiny/queries.jsonl",
                "--tenants",
                "2",
                "--chunks-per-tenant",
                "20",
                "--concurrency",
                "2",
                "--duration",
                "0.5",
                "--ingest-docs",
                "2",
                "--modes",
                "hybrid",
                "--nodes",
                "1,2",
                "--json",
                json_path.to_str().unwrap(),
            ])
            .env("TENANTRY_LOG", "error")
            .env("TENANTRY_ADMIN_KEY", ADMIN)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("--nodes needs a shared deployment"),
        "{text}"
    );
    let Some(cluster) = cluster_or_skip("bench_drives_one_and_two_nodes") else {
        return;
    };
    let pg = Postgres::start();
    let mut o = pg.overrides();
    o.extend(cluster.overrides(2));
    let out = run(&env_of(&o));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    for (r, n) in rows.iter().zip([1, 2]) {
        assert_eq!(r["nodes"], n, "{r}");
        assert_eq!(r["hybrid"]["errors"], 0, "{r}");
        assert!(r["hybrid"]["qps"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ingest_chunks"].as_u64().unwrap() > 0, "{r}");
        // The first two fixtures: guide.md, and no-text.pdf, which fails (pdf_no_text).
        assert_eq!(r["ingest_failed"], 1, "{r}");
        assert_eq!(r["node_rss_mib"].as_array().unwrap().len(), n, "{r}");
    }
}

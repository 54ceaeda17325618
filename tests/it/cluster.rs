//! A real 3-node Qdrant cluster on loopback for the cluster-backend tests. The server binary
//! comes from `QDRANT_BIN` or a `qdrant` on `PATH` (README: "Running on a Qdrant cluster");
//! without one, cluster tests print SKIPPED and return, the one skip the project allows.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::free_port;

/// The Qdrant server binary, if this machine has one: `QDRANT_BIN`, a `qdrant` on `PATH`, or
/// one placed at `~/.cache/qdrant/bin/qdrant` (README: "Running on a Qdrant cluster").
pub fn qdrant_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QDRANT_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "QDRANT_BIN={} is not a file (README: \"Running on a Qdrant cluster\")",
            p.display()
        );
        return Some(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("qdrant"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from(std::env::var_os("HOME")?).join(".cache/qdrant/bin/qdrant");
        p.is_file().then_some(p)
    })
}

/// The cluster for a test, or None after printing why the test is skipped. Cluster tests take
/// turns (three nodes each on two cores would starve each other's timeouts).
pub fn cluster_or_skip(test: &str) -> Option<Cluster> {
    match qdrant_bin() {
        Some(bin) => {
            static TURN: Mutex<()> = Mutex::new(());
            let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
            let mut c = Cluster::start(&bin, 3);
            c.turn = Some(turn);
            Some(c)
        }
        None => {
            // Straight to the stderr handle: libtest captures eprint!, and a skip must show.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("SKIPPED {test}: no Qdrant server (set QDRANT_BIN; see README)\n")
                    .as_bytes(),
            );
            None
        }
    }
}

struct Node {
    child: Option<Child>,
    http: u16,
    grpc: u16,
    p2p: u16,
    dir: PathBuf,
}

/// Qdrant nodes started by this test, in a scratch directory, stopped by pid on drop.
pub struct Cluster {
    /// Held for the test's lifetime; dropped after the nodes are stopped.
    turn: Option<MutexGuard<'static, ()>>,
    bin: PathBuf,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(bin: &Path, n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            turn: None,
            bin: bin.to_path_buf(),
            nodes: (0..n)
                .map(|i| Node {
                    child: None,
                    http: free_port(),
                    grpc: free_port(),
                    p2p: free_port(),
                    dir: dir.path().join(format!("node{i}")),
                })
                .collect(),
            _dir: dir,
        };
        for i in 0..n {
            c.spawn(i);
            c.wait_ready(i);
        }
        c.wait_peers(n);
        c
    }

    fn spawn(&mut self, i: usize) {
        let first_p2p = self.nodes[0].p2p;
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.dir).unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&node.dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", node.http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", node.grpc.to_string())
            .env("QDRANT__CLUSTER__ENABLED", "true")
            .env("QDRANT__CLUSTER__P2P__PORT", node.p2p.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", node.dir.join("storage"))
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                node.dir.join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .args(["--uri", &format!("http://127.0.0.1:{}", node.p2p)])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(node.dir.join("stderr.log")).unwrap(),
            ));
        if i > 0 {
            cmd.args(["--bootstrap", &format!("http://127.0.0.1:{first_p2p}")]);
        }
        node.child = Some(cmd.spawn().unwrap());
    }

    fn get(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let r = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.nodes[i].http))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().ok().or(Some(serde_json::Value::Null))
    }

    fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.get(i, "/readyz").is_some() {
                return;
            }
            if let Some(Ok(Some(status))) = self.nodes[i].child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(self.nodes[i].dir.join("stderr.log"))
                    .unwrap_or_default();
                panic!("qdrant node {i} exited with {status}: {log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("qdrant node {i} did not become ready");
    }

    fn wait_peers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let peers = self
                .get(0, "/cluster")
                .and_then(|c| c["result"]["peers"].as_object().map(|p| p.len()));
            if peers == Some(n) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the qdrant cluster did not form {n} peers");
    }

    /// gRPC URLs of every node, as `qdrant.url` takes them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.grpc))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Config overrides for an engine on this cluster, in its own collection.
    pub fn overrides(&self, replication: u32) -> Vec<String> {
        self.backend(replication).0
    }

    /// (config overrides, collection name) for an engine in its own collection.
    pub fn backend(&self, replication: u32) -> (Vec<String>, String) {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        (
            vec![
                "storage.backend=qdrant".into(),
                format!("qdrant.url={}", self.url()),
                format!("qdrant.collection_prefix={prefix}"),
                format!("qdrant.replication_factor={replication}"),
                // Fault tests kill a node for seconds: give requests room to fail over.
                "qdrant.timeout_secs=5".into(),
                "qdrant.attempts=6".into(),
            ],
            format!("{prefix}_chunks"),
        )
    }

    /// Every replica of the collection's shards, as (state) strings, seen from node `i`.
    pub fn replica_states(&self, i: usize, collection: &str) -> Vec<String> {
        let Some(c) = self.get(i, &format!("/collections/{collection}/cluster")) else {
            return vec![];
        };
        let r = &c["result"];
        ["local_shards", "remote_shards"]
            .iter()
            .flat_map(|k| r[k].as_array().cloned().unwrap_or_default())
            .map(|s| s["state"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// The shard keys holding replicas of the collection, seen from node `i`.
    pub fn shard_keys(&self, i: usize, collection: &str) -> Vec<String> {
        let Some(c) = self.get(i, &format!("/collections/{collection}/cluster")) else {
            return vec![];
        };
        let r = &c["result"];
        let mut keys: Vec<String> = ["local_shards", "remote_shards"]
            .iter()
            .flat_map(|k| r[k].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s["shard_key"].as_str().map(str::to_string))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Wait until every replica of the collection is Active again (after a node came back).
    pub fn wait_all_active(&self, collection: &str, expect: usize) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            // The view of the node that stayed up longest; node 2 is never killed by the tests.
            let states = self.replica_states(2, collection);
            if states.len() == expect && states.iter().all(|s| s == "Active") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not recover: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Kill node `i` by its pid (SIGKILL): no goodbye to its peers.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start every node again at once (one node alone has no quorum to become ready).
    pub fn restart_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
            self.spawn(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_ready(i);
        }
        self.wait_peers(self.nodes.len());
    }

    /// Start node `i` again on its ports and storage; it rejoins the cluster.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        self.turn.take();
    }
}

/// With replication 2, one node killed by pid while a tenant queries and uploads: every query
/// answers, every acknowledged document is found once the node is back, and nothing of a
/// version shows before its commit.
#[test]
fn a_killed_node_costs_no_answer_and_no_acknowledged_document() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let Some(mut cluster) = cluster_or_skip("qdrant node failure") else {
        return;
    };
    let (overrides, collection) = cluster.backend(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let extra: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let app = Arc::new(rt.block_on(crate::common::app_with(&extra)));
    let key = rt.block_on(app.tenant("acme"));
    let marker = |i: usize| format!("zq{i}x{}", "v".repeat(i % 3 + 1));
    let put = |i: usize| {
        let (app, key) = (app.clone(), key.clone());
        let text = format!("Ledger entry {i} records the shipment {}.", marker(i));
        rt.block_on(async move { app.put_text(&key, &format!("d{i}"), &text).await })
    };
    for i in 0..10 {
        let r = put(i);
        assert_eq!(r.body["status"], "ready", "{:?}", r.body);
    }

    // Queries all through the outage, on the runtime's threads.
    let stop = Arc::new(AtomicBool::new(false));
    let querier = {
        let (app, key, stop) = (app.clone(), key.clone(), stop.clone());
        rt.spawn(async move {
            let (mut ok, mut failed) = (0, vec![]);
            while !stop.load(Ordering::SeqCst) {
                for mode in ["dense", "bm25"] {
                    let r = app.query(&key, "ledger shipment", mode, 5).await;
                    if r.status == axum::http::StatusCode::OK {
                        ok += 1;
                    } else {
                        failed.push((r.status, r.body.to_string()));
                    }
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // The node the engine talks to first.
    cluster.kill(0);
    let mut acknowledged = vec![];
    for i in 10..20 {
        let r = put(i);
        if r.body["status"] == "ready" {
            acknowledged.push(i);
        } else {
            eprintln!("upload d{i} during the outage: {:?}", r.body);
        }
    }
    cluster.restart(0);
    cluster.wait_all_active(&collection, 2);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = rt.block_on(querier).unwrap();
    assert!(
        ok > 0 && failed.is_empty(),
        "{ok} queries answered; failed: {failed:?}"
    );
    assert!(
        acknowledged.len() >= 8,
        "uploads during the outage mostly failed: {acknowledged:?}"
    );
    for i in (0..10).chain(acknowledged) {
        let id = format!("d{i}");
        // The lexical leg by its unique term; the dense leg restricted to the document (the
        // markers are not words an embedding tells apart).
        let r = rt.block_on(app.query(&key, &marker(i), "bm25", 3));
        assert_eq!(
            crate::common::doc_ids(&r),
            vec![id.clone()],
            "bm25: {:?}",
            r.body
        );
        let r = rt.block_on(app.call(
            "POST",
            "/v1/query",
            &key,
            Some(serde_json::json!({"query": "ledger shipment", "mode": "dense", "filter": {"document_ids": [id]}})),
        ));
        assert_eq!(
            crate::common::doc_ids(&r),
            vec![id.clone()],
            "dense: {:?}",
            r.body
        );
    }

    // The whole cluster down: a clear 503 with Retry-After within the retry budget, never a
    // hang or a 500; /readyz says so; and it answers again when the cluster is back.
    for i in 0..3 {
        cluster.kill(i);
    }
    for mode in ["dense", "bm25"] {
        let started = Instant::now();
        let r = rt.block_on(app.query(&key, "ledger shipment", mode, 3));
        assert_eq!(
            r.status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            r.body
        );
        assert_eq!(r.body["error"]["code"], "unavailable", "{:?}", r.body);
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
    }
    let r = rt.block_on(app.call("GET", "/readyz", "", None));
    assert_eq!(
        r.status,
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        r.body
    );
    cluster.restart_all();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = rt.block_on(app.query(&key, &marker(3), "bm25", 3));
        if r.status == axum::http::StatusCode::OK {
            assert_eq!(crate::common::doc_ids(&r), vec!["d3".to_string()]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer after the cluster came back: {:?}",
            r.body
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `tenantry migrate --to qdrant` moves an embedded data directory's tenants into the cluster
/// (twice: the second run does nothing), the server then answers from the cluster as before,
/// and `tenantry tenants promote` moves a tenant to its own shard key while it is queried.
#[test]
fn migrate_then_promote_while_answering() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let Some(cluster) = cluster_or_skip("migration and promotion") else {
        return;
    };
    let (overrides, _) = cluster.backend(2);
    let env: Vec<(String, String)> = overrides
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (
                format!("TENANTRY_{}", k.replace('.', "__").to_uppercase()),
                v.to_string(),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let queries = [
        "ferry timetable",
        "glacier crampons",
        "bakery bread",
        "museum boats",
    ];
    let texts = [
        "The morning ferry leaves the harbour at seven; tickets on board.",
        "Guided glacier walks: crampons and helmets are provided.",
        "The bakery sells rye bread and cinnamon buns from six.",
        "The maritime museum shows fishing boats and a lighthouse lens.",
    ];
    let top = |app: &crate::common::TestApp, key: &str, mode: &str| -> Vec<Vec<String>> {
        queries
            .iter()
            .map(|q| crate::common::doc_ids(&rt.block_on(app.query(key, q, mode, 3))))
            .collect()
    };
    // An embedded deployment with two tenants.
    let (key_a, before) = {
        let app = rt.block_on(crate::common::app_in(
            tempfile::TempDir::new_in(&data).unwrap(),
            &[],
        ));
        let a = rt.block_on(app.tenant("acme"));
        let b = rt.block_on(app.tenant("bravo"));
        for (i, t) in texts.iter().enumerate() {
            for key in [&a, &b] {
                let r = rt.block_on(app.put_text(key, &format!("d{i}"), t));
                assert_eq!(r.body["status"], "ready", "{:?}", r.body);
            }
        }
        let before = (top(&app, &a, "dense"), top(&app, &a, "bm25"));
        app.engine.flush();
        // The engine closes its data directory; the directory itself stays for the migration.
        let crate::common::TestApp {
            engine,
            router,
            dir,
            ..
        } = app;
        drop((router, engine));
        (a, (before, dir))
    };
    let ((dense_before, bm25_before), data_tmp) = before;
    let data_dir = data_tmp.path().to_path_buf();
    let migrate = || {
        let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(crate::common::model_flags())
            .args(["migrate", "--to", "qdrant"])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TENANTRY_ADMIN_KEY", crate::common::ADMIN)
            .env("TENANTRY_LOG", "error")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = migrate();
    assert!(first.contains("migrated 2 tenants (8 documents"), "{first}");
    let second = migrate();
    assert!(second.contains("migrated 0 tenants"), "{second}");
    assert!(second.contains("2 already done"), "{second}");

    // The same data directory (catalog, keys) on the cluster.
    let mut extra: Vec<&str> = overrides.iter().map(String::as_str).collect();
    extra.push("qdrant.promote_chunks=0");
    let app = Arc::new(rt.block_on(crate::common::app_in(data_tmp, &extra)));
    assert_eq!(top(&app, &key_a, "dense"), dense_before);
    let bm25_cluster = top(&app, &key_a, "bm25");
    for (q, (c, e)) in queries.iter().zip(bm25_cluster.iter().zip(&bm25_before)) {
        assert_eq!(c.first(), e.first(), "bm25 top document for {q:?}");
    }
    let scores = |app: &crate::common::TestApp| -> Vec<String> {
        let r = rt.block_on(app.query(&key_a, "glacier crampons bakery", "bm25", 5));
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{} {:.5}", h["chunk_id"], h["score"].as_f64().unwrap()))
            .collect()
    };
    let scores_before = scores(&app);

    // Promote acme while it is queried.
    let stop = Arc::new(AtomicBool::new(false));
    let querier = {
        let (app, key, stop) = (app.clone(), key_a.clone(), stop.clone());
        rt.spawn(async move {
            let (mut ok, mut failed) = (0, vec![]);
            while !stop.load(Ordering::SeqCst) {
                let r = app.query(&key, "ferry timetable", "hybrid", 3).await;
                if r.status == axum::http::StatusCode::OK
                    && crate::common::doc_ids(&r).first().map(String::as_str) == Some("d0")
                {
                    ok += 1;
                } else {
                    failed.push(r.body.to_string());
                }
            }
            (ok, failed)
        })
    };
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(crate::common::model_flags())
        .args(["tenants", "promote", "acme"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("TENANTRY_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("promoted tenant acme: 4 chunks"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = rt.block_on(querier).unwrap();
    assert!(
        ok > 0 && failed.is_empty(),
        "{ok} answered during the promotion; failed: {failed:?}"
    );
    // Its own shard key, the same answers and the same BM25 statistics (the tenant's own).
    assert_eq!(scores(&app), scores_before);
    assert_eq!(top(&app, &key_a, "dense"), dense_before);
}

/// The maintenance task promotes a tenant past `qdrant.promote_chunks` by itself; a small
/// tenant stays in the shared key; the promoted tenant's answers and BM25 scores do not change.
#[test]
fn a_growing_tenant_is_promoted_by_the_maintenance_task() {
    let Some(cluster) = cluster_or_skip("automatic promotion") else {
        return;
    };
    let (mut overrides, collection) = cluster.backend(1);
    overrides.push("qdrant.promote_chunks=3".into());
    overrides.push("storage.optimize_interval_secs=1".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let extra: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let app = rt.block_on(crate::common::app_with(&extra));
    let (big, small) = (
        rt.block_on(app.tenant("big")),
        rt.block_on(app.tenant("small")),
    );
    let scores = || -> Vec<String> {
        let r = rt.block_on(app.query(&big, "harbour ferry timetable", "bm25", 5));
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{} {:.5}", h["chunk_id"], h["score"].as_f64().unwrap()))
            .collect()
    };
    rt.block_on(app.put_text(&small, "s0", "A small tenant's only ferry note."));
    for i in 0..5 {
        let text = format!("Harbour note {i}: the ferry timetable changes in week {i}.");
        let r = rt.block_on(app.put_text(&big, &format!("d{i}"), &text));
        assert_eq!(r.body["status"], "ready", "{:?}", r.body);
    }
    let before = scores();
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = Instant::now();
    while !cluster
        .shard_keys(0, &collection)
        .contains(&"tenant.big".to_string())
    {
        assert!(
            Instant::now() < deadline,
            "not promoted: {:?}",
            cluster.shard_keys(0, &collection)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("promoted after {:?}", started.elapsed());
    // The shared key keeps the small tenant, and the copies of the big one go from it.
    let keys = cluster.shard_keys(0, &collection);
    assert!(!keys.contains(&"tenant.small".to_string()), "{keys:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while scores() != before {
        assert!(Instant::now() < deadline, "{:?} != {before:?}", scores());
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = rt.block_on(app.query(&small, "ferry note", "hybrid", 5));
    assert_eq!(crate::common::doc_ids(&r), vec!["s0".to_string()]);
}

//! The kill -9 sweep: a child server killed at 20 seeded random points while it ingests,
//! deletes a document or deletes a tenant. After every restart: nothing acknowledged is lost,
//! nothing is half visible (a ready document answers in both legs, an unready one in neither),
//! and nothing of a deleted document or tenant comes back.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const SUBJECTS: &[&str] = &[
    "lighthouse",
    "glacier",
    "orchard",
    "volcano",
    "harbour",
    "meadow",
    "canyon",
    "lagoon",
    "tundra",
    "savanna",
    "reef",
    "delta",
];
const VERBS: &[&str] = &["guards", "shapes", "feeds", "warms", "hides", "shelters"];
const OBJECTS: &[&str] = &[
    "the fishing fleet",
    "migrating geese",
    "ancient cedars",
    "copper mines",
    "salt marshes",
    "mountain goats",
];

/// What the clients were told, and so what must hold after any crash.
#[derive(Default)]
struct Ledger {
    /// Documents whose upload was acknowledged (202), with their text.
    acknowledged: BTreeMap<String, String>,
    /// Documents whose delete was acknowledged (204).
    deleted: Vec<String>,
    /// Documents whose delete was sent but not acknowledged: either outcome is allowed.
    uncertain: Vec<String>,
    /// Tenants whose delete was acknowledged, with a key they had.
    deleted_tenants: Vec<(String, String)>,
}

fn sentence(rng: &mut Rng, marker: &str) -> String {
    format!(
        "The {} {} {} near {marker} every season.",
        SUBJECTS[rng.below(SUBJECTS.len())],
        VERBS[rng.below(VERBS.len())],
        OBJECTS[rng.below(OBJECTS.len())]
    )
}

fn ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|h| h["document_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn query(server: &Server, key: &str, q: &str, mode: &str) -> Vec<String> {
    let (s, body) = server.call(
        reqwest::Method::POST,
        "/v1/query",
        key,
        Some(json!({"query": q, "mode": mode, "top_k": 50})),
    );
    assert_eq!(s, 200, "{body}");
    ids(&body)
}

/// After a restart: wait for the resumed jobs, then check every promise in the ledger.
fn check(server: &Server, data: &std::path::Path, key: &str, ledger: &Ledger, round: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let docs = loop {
        let (s, body) = server.call(reqwest::Method::GET, "/v1/documents?limit=1000", key, None);
        assert_eq!(s, 200, "{body}");
        let docs: BTreeMap<String, String> = body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_string(),
                    d["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let settled = docs.values().all(|s| s != "pending");
        if settled {
            break docs;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: jobs never settled: {docs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (id, text) in &ledger.acknowledged {
        let status = docs.get(id).map(String::as_str);
        if ledger.deleted.contains(id) {
            assert_ne!(status, Some("ready"), "round {round}: deleted {id} is back");
        } else if !ledger.uncertain.contains(id) {
            assert_eq!(
                status,
                Some("ready"),
                "round {round}: acknowledged document {id} lost: {docs:?}"
            );
        }
        // Ready answers in both legs; anything else in neither.
        let marker = text.split_whitespace().nth(5).unwrap();
        if status == Some("ready") {
            assert!(
                query(server, key, marker, "bm25").contains(id),
                "round {round}: {id} missing from BM25"
            );
            assert!(
                query(server, key, text, "dense").contains(id),
                "round {round}: {id} missing from the dense leg"
            );
        } else {
            for mode in ["bm25", "dense", "hybrid"] {
                let q = if mode == "bm25" {
                    marker
                } else {
                    text.as_str()
                };
                assert!(
                    !query(server, key, q, mode).contains(id),
                    "round {round}: {id} ({status:?}) visible in {mode}"
                );
            }
        }
    }
    for (tenant, tenant_key) in &ledger.deleted_tenants {
        let (s, _) = server.call(reqwest::Method::GET, "/v1/documents", tenant_key, None);
        assert_eq!(
            s, 401,
            "round {round}: a key of deleted tenant {tenant} works"
        );
        let (_, list) = server.call(reqwest::Method::GET, "/v1/tenants", ADMIN, None);
        assert!(
            !list.to_string().contains(&format!("\"{tenant}\"")),
            "round {round}: deleted tenant {tenant} is back"
        );
        for leg in ["lexical", "vectors/tenants"] {
            let dir = data.join(leg).join(tenant);
            assert!(!dir.exists(), "round {round}: {} is back", dir.display());
        }
    }
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_resurrects_nothing() {
    let rounds: usize = env_or("TENANTRY_CRASH_ROUNDS", 20);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ledger = Ledger::default();
    let mut server = Server::start(dir.path());
    let key = server.create_tenant("keep");
    let mut next_doc = 0;
    for round in 0..rounds {
        // A tenant with content, to be deleted this round (if the dice say so).
        let doomed = format!("doomed-{round}");
        let doomed_key = server.create_tenant(&doomed);
        server.ingest_text(
            &doomed_key,
            "d",
            &format!("Doomed tenant {round} keeps a ledger."),
        );
        // Some settled state first, so deletes have something to remove.
        let id = format!("doc{next_doc}");
        next_doc += 1;
        let text = sentence(&mut rng, &format!("zq{round}x{next_doc}"));
        server.ingest_text(&key, &id, &text);
        ledger.acknowledged.insert(id, text);

        let op = rng.below(3);
        let delay = Duration::from_millis(rng.below(1200) as u64);
        let base = server.base.clone();
        let (k, dk) = (key.clone(), doomed_key.clone());
        let target = ledger
            .acknowledged
            .keys()
            .filter(|d| !ledger.deleted.contains(d))
            .nth(rng.below(ledger.acknowledged.len().max(1)))
            .cloned();
        let mut uploads: Vec<(String, String)> = Vec::new();
        for _ in 0..3 {
            let id = format!("doc{next_doc}");
            next_doc += 1;
            uploads.push((id, sentence(&mut rng, &format!("zq{round}x{next_doc}"))));
        }
        let doomed_name = doomed.clone();
        // The operation runs on its own thread; the kill lands wherever it is.
        let worker = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut acked: Vec<(&'static str, String, String)> = Vec::new();
            match op {
                0 => {
                    for (id, text) in uploads {
                        let r = client
                            .post(format!("{base}/v1/documents"))
                            .bearer_auth(&k)
                            .json(&json!({"id": id, "text": text}))
                            .send();
                        match r {
                            Ok(r) if r.status().as_u16() == 202 => acked.push(("upload", id, text)),
                            _ => break,
                        }
                    }
                }
                1 => {
                    if let Some(id) = target {
                        let r = client
                            .delete(format!("{base}/v1/documents/{id}"))
                            .bearer_auth(&k)
                            .send();
                        if r.is_ok_and(|r| r.status().as_u16() == 204) {
                            acked.push(("delete", id, String::new()));
                        } else {
                            acked.push(("maybe-delete", id, String::new()));
                        }
                    }
                }
                _ => {
                    let r = client
                        .delete(format!("{base}/v1/tenants/{doomed_name}"))
                        .bearer_auth(ADMIN)
                        .send();
                    if r.is_ok_and(|r| r.status().as_u16() == 204) {
                        acked.push(("tenant", doomed_name, dk));
                    }
                }
            }
            acked
        });
        std::thread::sleep(delay);
        server.kill9();
        for (what, a, b) in worker.join().unwrap() {
            match what {
                "upload" => {
                    ledger.acknowledged.insert(a, b);
                }
                "delete" => ledger.deleted.push(a),
                "maybe-delete" => ledger.uncertain.push(a),
                _ => ledger.deleted_tenants.push((a, b)),
            }
        }
        server = Server::start(dir.path());
        check(&server, dir.path(), &key, &ledger, round);
    }
    eprintln!(
        "kill -9 sweep: {rounds} rounds, {} acknowledged uploads, {} document deletes, {} tenant deletes",
        ledger.acknowledged.len(),
        ledger.deleted.len(),
        ledger.deleted_tenants.len()
    );
    server.sigterm();
}

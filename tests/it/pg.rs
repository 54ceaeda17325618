//! A real PostgreSQL server for the tests, from Debian's `postgresql` package, started by the
//! project's own script (`scripts/pg-scratch.sh`) in a scratch directory on a loopback port and
//! stopped when the handle drops. PostgreSQL is always there (`make setup` installs it), so
//! these tests never skip: a missing server fails with how to get one.
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

pub struct Postgres {
    dir: tempfile::TempDir,
    pub url: String,
}

fn script() -> PathBuf {
    root().join("scripts/pg-scratch.sh")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(script()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/pg-scratch.sh {args:?} failed (PostgreSQL comes from Debian's `postgresql` package: `make setup` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Postgres {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pg = dir.path().join("pg");
        let port = free_port().to_string();
        let url = run(&["start", pg.to_str().unwrap(), &port]);
        assert!(url.starts_with("postgresql://"), "{url}");
        Self { dir, url }
    }

    fn pg_dir(&self) -> String {
        self.dir.path().join("pg").display().to_string()
    }

    /// Fast shutdown then start on the same port (what an operator's restart does).
    pub fn restart(&self) {
        run(&["restart", &self.pg_dir()]);
    }

    pub fn stop(&self) {
        run(&["stop", &self.pg_dir()]);
    }

    /// Config overrides that put the catalog on this server.
    pub fn overrides(&self) -> Vec<String> {
        vec![
            "catalog.backend=postgres".into(),
            format!("postgres.url={}", self.url),
        ]
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.pg_dir()])
            .output();
    }
}

/// PostgreSQL stopped under a running engine: requests get 503 `unavailable` with Retry-After
/// (never a hang or a 500), /readyz says so, and everything answers again after the restart,
/// with nothing lost.
#[test]
fn a_stopped_postgres_is_a_503_and_nothing_is_lost() {
    use axum::http::StatusCode;
    use std::time::{Duration, Instant};

    let pg = Postgres::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let extra = pg.overrides();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let app = rt.block_on(app_with(&extra));
    let key = rt.block_on(app.tenant("acme"));
    let r = rt.block_on(app.call(
        "POST",
        "/v1/documents?wait=true",
        &key,
        Some(serde_json::json!({"id": "tide", "text": "The tide table lists high water at the harbour."})),
    ));
    assert_eq!(r.body["status"], "ready", "{:?}", r.body);

    pg.stop();
    let started = Instant::now();
    let r = rt.block_on(app.query(&key, "high water harbour", "hybrid", 3));
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "unavailable", "{:?}", r.body);
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let r = rt.block_on(app.call("GET", "/readyz", "", None));
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);

    pg.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rt.block_on(app.query(&key, "high water harbour", "hybrid", 3));
        if r.status == StatusCode::OK {
            assert_eq!(doc_ids(&r), vec!["tide".to_string()], "{:?}", r.body);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer after the restart: {:?}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = rt.block_on(app.call("GET", "/readyz", "", None));
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// `tenantry migrate-catalog --to postgres` copies an embedded data directory's catalog; the
/// server then runs on PostgreSQL with the same tenants, keys and documents, and a second run
/// copies nothing.
#[test]
fn migrate_catalog_copies_an_sqlite_catalog_once() {
    use std::process::Command;
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["--data-dir", data.to_str().unwrap()])
            .args(model_flags())
            .args(args)
            .env("TENANTRY_LOG", "error")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let created = cli(&["tenants", "create", "acme"], &[]);
    let key = created
        .lines()
        .find_map(|l| l.strip_prefix("api key: "))
        .unwrap()
        .to_string();
    let notes = root().join("fixtures/docs/notes.txt");
    cli(
        &["ingest", "--tenant", "acme", notes.to_str().unwrap()],
        &[],
    );
    let pg_env = [("TENANTRY_POSTGRES__URL", pg.url.as_str())];
    let out = cli(&["migrate-catalog", "--to", "postgres"], &pg_env);
    assert!(
        out.contains("tenants 1") && out.contains("api_keys 1"),
        "{out}"
    );
    let out = cli(&["migrate-catalog", "--to", "postgres"], &pg_env);
    assert!(out.contains("copied 0 rows"), "{out}");

    // The same data directory (its legs) with the catalog on PostgreSQL.
    let server = Server::start_with(
        &data,
        &[
            ("TENANTRY_CATALOG__BACKEND", "postgres"),
            ("TENANTRY_POSTGRES__URL", &pg.url),
        ],
    );
    let (status, body) = server.call(
        reqwest::Method::POST,
        "/v1/query",
        &key,
        Some(serde_json::json!({"query": "fog horn lighthouse", "top_k": 1})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["title"], "notes.txt", "{body}");
}

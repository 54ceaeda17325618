use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tenantry::config::{Config, ConfigFlags};
use tenantry::Engine;
use tower::ServiceExt;

pub const ADMIN: &str = "adm_test_key_0123456789abcdef";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Something `make setup` installs; missing means fail loudly with the fix.
pub fn provisioned(rel: &str) -> PathBuf {
    let p = root().join(".tenantry").join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `make setup` (or `make test`, which runs it)",
        p.display()
    );
    p
}

/// Flags that point the `tenantry` binary at the provisioned model and ONNX Runtime.
pub fn model_flags() -> [String; 4] {
    [
        "--model-dir".into(),
        provisioned("model/all-MiniLM-L6-v2").display().to_string(),
        "--ort-dylib".into(),
        provisioned("ort/libonnxruntime.so.1.24.4")
            .display()
            .to_string(),
    ]
}

/// A test knob from the environment (more rounds, another seed), or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("fixtures/docs").join(name)).unwrap()
}

pub fn config(data_dir: &Path, extra: &[&str]) -> Config {
    // Rate limits have their own tests; elsewhere they would only make timing matter.
    let mut overrides: Vec<String> = vec![
        format!("admin_key={ADMIN}"),
        "limits.query_per_sec=0".into(),
        "limits.ingest_per_sec=0".into(),
        // In-process engines run inside the test harness: the parse worker is the real binary.
        format!("ingest.sandbox.worker={}", env!("CARGO_BIN_EXE_tenantry")),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    let flags = ConfigFlags {
        data_dir: Some(data_dir.to_path_buf()),
        model_dir: Some(provisioned("model/all-MiniLM-L6-v2")),
        ort_dylib: Some(provisioned("ort/libonnxruntime.so.1.24.4")),
        overrides,
        ..Default::default()
    };
    Config::load(&flags, std::iter::empty(), None).unwrap()
}

pub struct TestApp {
    /// Dropped first: a test that saw its job succeed may end while the worker still collects
    /// the old version's garbage in the data directory the test is about to delete.
    pub _idle: IdleOnDrop,
    pub engine: Arc<Engine>,
    pub router: axum::Router,
    pub dir: tempfile::TempDir,
    /// When set, requests go over HTTP to these `tenantry serve` nodes in turn (each request
    /// to the next node) instead of through `router`.
    pub nodes: Vec<Server>,
    pub next: std::sync::atomic::AtomicUsize,
}

/// Drains the engine and waits (up to a minute) for its running jobs when dropped.
pub struct IdleOnDrop(pub Arc<Engine>);

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        self.0.begin_drain();
        let end = Instant::now() + Duration::from_secs(60);
        while self.0.running_jobs() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `key=value` configuration overrides as the `TENANTRY_*` variables a node process reads.
pub fn env_of(overrides: &[String]) -> Vec<(String, String)> {
    overrides
        .iter()
        .map(|o| {
            let (k, v) = o.split_once('=').unwrap();
            (
                format!("TENANTRY_{}", k.to_ascii_uppercase().replace('.', "__")),
                v.to_string(),
            )
        })
        .collect()
}

pub async fn app_with(extra: &[&str]) -> TestApp {
    app_in(tempfile::tempdir().unwrap(), extra).await
}

/// An app on a given data directory (kept alive by the app).
pub async fn app_in(dir: tempfile::TempDir, extra: &[&str]) -> TestApp {
    // Errors are always shown: a 500 in a test is otherwise unexplained, since the body is
    // generic by design. TENANTRY_TEST_LOG widens the filter.
    let filter = std::env::var("TENANTRY_TEST_LOG").unwrap_or_else(|_| "error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let cfg = config(dir.path(), extra);
    let engine = tokio::task::spawn_blocking(move || Engine::open(cfg))
        .await
        .unwrap()
        .unwrap();
    engine.start().await.unwrap();
    TestApp {
        _idle: IdleOnDrop(engine.clone()),
        router: tenantry::api::router(engine.clone()),
        engine,
        dir,
        nodes: Vec::new(),
        next: Default::default(),
    }
}

pub async fn app() -> TestApp {
    app_with(&[]).await
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let (status, headers, bytes) = if self.nodes.is_empty() {
            let resp = self.router.clone().oneshot(req).await.unwrap();
            let (status, headers) = (resp.status(), resp.headers().clone());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, bytes)
        } else {
            self.send_to_node(req).await
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// The request over HTTP to the next node: its status, headers and body.
    async fn send_to_node(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % self.nodes.len();
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
        let mut rb = client.request(method, format!("{}{path}", self.nodes[i].base));
        for (k, v) in &parts.headers {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
        let resp = rb.body(bytes.to_vec()).send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let mut headers = axum::http::HeaderMap::new();
        for (k, v) in resp.headers() {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        let bytes = resp.bytes().await.unwrap();
        (status, headers, bytes)
    }

    pub async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"));
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    pub async fn tenant(&self, id: &str) -> String {
        let r = self
            .call(
                "POST",
                "/v1/tenants",
                ADMIN,
                Some(serde_json::json!({ "id": id })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["api_key"].as_str().unwrap().to_string()
    }

    /// Multipart upload with `?wait=true`.
    pub async fn upload(
        &self,
        key: &str,
        id: &str,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Resp {
        self.multipart(key, id, file_name, content_type, bytes, true)
            .await
    }

    pub async fn multipart(
        &self,
        key: &str,
        id: &str,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
        wait: bool,
    ) -> Resp {
        let boundary = "tenantry-test-boundary-7d1f";
        let mut body = Vec::new();
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n{id}\r\n")
                .as_bytes(),
        );
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n")
                .as_bytes(),
        );
        body.extend(bytes);
        body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = Request::builder()
            .method("POST")
            .uri(format!("/v1/documents?wait={wait}"))
            .header("authorization", format!("Bearer {key}"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    pub async fn put_text(&self, key: &str, id: &str, text: &str) -> Resp {
        self.call(
            "POST",
            "/v1/documents?wait=true",
            key,
            Some(serde_json::json!({ "id": id, "text": text })),
        )
        .await
    }

    pub async fn query(&self, key: &str, q: &str, mode: &str, top_k: usize) -> Resp {
        self.call(
            "POST",
            "/v1/query",
            key,
            Some(serde_json::json!({ "query": q, "mode": mode, "top_k": top_k })),
        )
        .await
    }
}

pub fn doc_ids(r: &Resp) -> Vec<String> {
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["document_id"].as_str().unwrap().to_string())
        .collect()
}

/// The real `tenantry serve` binary on a free loopback port.
pub struct Server {
    pub child: Child,
    pub base: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tenantry serve` on `data` and a loopback port, with the provisioned model and the test
/// admin key.
pub fn serve_command(data: &Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tenantry"));
    c.args([
        "--data-dir",
        data.to_str().unwrap(),
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .args(model_flags())
    .env("TENANTRY_ADMIN_KEY", ADMIN);
    c
}

impl Server {
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    /// With extra `TENANTRY_*` environment variables.
    pub fn start_with(data: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = serve_command(data, port)
            .env("TENANTRY_LOG", "warn,qdrant_edge=error")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking::get(format!("{}/readyz", s.base)) {
                if r.status().is_success() {
                    return s;
                }
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                let mut err = String::new();
                s.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("server exited with {status}: {err}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not become ready");
    }

    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        let mut req = client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    pub fn upload_pdf(&self, key: &str, id: &str, bytes: Vec<u8>, wait: bool) -> (u16, Value) {
        self.upload(key, id, "doc.pdf", "application/pdf", bytes, wait)
    }

    /// A multipart upload (`file`, `id`).
    pub fn upload(
        &self,
        key: &str,
        id: &str,
        file_name: &str,
        mime: &str,
        bytes: Vec<u8>,
        wait: bool,
    ) -> (u16, Value) {
        let form = reqwest::blocking::multipart::Form::new()
            .text("id", id.to_string())
            .part(
                "file",
                reqwest::blocking::multipart::Part::bytes(bytes)
                    .file_name(file_name.to_string())
                    .mime_str(mime)
                    .unwrap(),
            );
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        let resp = client
            .post(format!("{}/v1/documents?wait={wait}", self.base))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// The server's resident set (Linux), in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// Still the same process, still running.
    pub fn assert_alive(&mut self) {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "the server process died"
        );
    }

    pub fn create_tenant(&self, id: &str) -> String {
        let (s, body) = self.call(
            reqwest::Method::POST,
            "/v1/tenants",
            ADMIN,
            Some(json!({ "id": id })),
        );
        assert_eq!(s, 201, "{body}");
        body["api_key"].as_str().unwrap().to_string()
    }

    /// Ingest a text document and wait until it is searchable (200).
    pub fn ingest_text(&self, key: &str, id: &str, text: &str) {
        let (s, body) = self.call(
            reqwest::Method::POST,
            "/v1/documents?wait=true",
            key,
            Some(json!({"id": id, "text": text})),
        );
        assert_eq!(s, 200, "{body}");
    }

    pub fn query_ids(&self, key: &str, q: &str) -> Vec<String> {
        self.query_ids_in(key, q, "hybrid")
    }

    pub fn query_ids_in(&self, key: &str, q: &str, mode: &str) -> Vec<String> {
        let (s, body) = self.call(
            reqwest::Method::POST,
            "/v1/query",
            key,
            Some(json!({"query": q, "top_k": 20, "mode": mode})),
        );
        assert_eq!(s, 200, "{body}");
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["document_id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn sigterm(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(
            status.success(),
            "graceful shutdown exits 0, got {status}: {err}"
        );
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

/// A server a test did not stop (it failed, or it only needed the server for a while) does not
/// outlive the test.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// xorshift64: small and seedable, so a randomised test is the same test every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

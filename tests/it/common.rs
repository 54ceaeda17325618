use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
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

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("fixtures/docs").join(name)).unwrap()
}

pub fn config(data_dir: &Path, extra: &[&str]) -> Config {
    // Rate limits have their own tests; elsewhere they would only make timing matter.
    let mut overrides: Vec<String> = vec![
        format!("admin_key={ADMIN}"),
        "limits.query_per_sec=0".into(),
        "limits.ingest_per_sec=0".into(),
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
    pub engine: Arc<Engine>,
    pub router: axum::Router,
    pub dir: tempfile::TempDir,
}

pub async fn app_with(extra: &[&str]) -> TestApp {
    app_in(tempfile::tempdir().unwrap(), extra).await
}

/// An app on a given data directory (kept alive by the app).
pub async fn app_in(dir: tempfile::TempDir, extra: &[&str]) -> TestApp {
    let cfg = config(dir.path(), extra);
    let engine = tokio::task::spawn_blocking(move || Engine::open(cfg))
        .await
        .unwrap()
        .unwrap();
    engine.start().await.unwrap();
    TestApp {
        router: tenantry::api::router(engine.clone()),
        engine,
        dir,
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
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
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

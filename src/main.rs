//! `tenantry` command line: the server, and operator commands on a local data directory.
mod progress;
mod remote;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tenantry::config::{Config, ConfigFlags, LogFormat, StorageBackend};
use tenantry::domain::ChunkFilter;
use tenantry::domain::Role;
use tenantry::domain::{DocId, TenantCtx, TenantId};
use tenantry::domain::{FusionOverrides, Mode};
use tenantry::engine::Upload;
use tenantry::query::Query;
use tenantry::storage::catalog::JobStatus;
use tenantry::storage::qdrant::QdrantStore;
use tenantry::Engine;

#[derive(Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Multi-tenant RAG retrieval engine"
)]
struct Cli {
    #[command(flatten)]
    flags: ConfigFlags,
    #[command(subcommand)]
    command: Command,
}

/// A running server to talk to instead of the data directory.
#[derive(Args, Debug, Clone)]
struct RemoteArgs {
    /// The server's base URL (e.g. https://rag.example.com); the tenant is the key's.
    #[arg(long, env = "TENANTRY_URL")]
    url: Option<String>,
    /// A tenant API key (writer for ingest, reader for query and answer).
    #[arg(long, env = "TENANTRY_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Ingest files or directories into a tenant (operator command on the data directory;
    /// the server must not be running on it — use the HTTP API then).
    Ingest {
        /// The tenant (on the data directory); with --url the key's tenant.
        #[arg(long, required_unless_present = "url")]
        tenant: Option<String>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
        /// With --url: uploads in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Query a tenant from the command line.
    Query {
        #[arg(long, required_unless_present = "url")]
        tenant: Option<String>,
        question: String,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// hybrid, dense or bm25.
        #[arg(long, default_value = "hybrid")]
        mode: String,
    },
    /// A grounded answer with citations, from the command line (the tenant's default generator).
    Answer {
        #[arg(long, required_unless_present = "url")]
        tenant: Option<String>,
        question: String,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Chunks retrieved as context (default from config: answer.top_k).
        #[arg(long)]
        top_k: Option<usize>,
    },
    /// Manage tenants.
    Tenants {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Retrieval quality on a BEIR-layout dataset (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv):
    /// ingests the corpus into a fresh, temporary data directory and reports nDCG@10,
    /// recall@10, recall@100 and MRR@10 for every mode and fusion variant.
    Eval {
        dataset: PathBuf,
        #[arg(long, default_value = "test")]
        split: String,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write one TREC run file per mode into this directory.
        #[arg(long)]
        runs: Option<PathBuf>,
        /// Also write a self-contained HTML page: the table and a bar chart per metric.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// PDF page hits: questions from the PDFs' outlines (bookmarks ending in `?`), whose answer
    /// pages are known, asked in every mode with the PDF clean-up off and then on. Scratch
    /// data directories; nothing else is touched.
    EvalPages {
        #[arg(default_values = [".tenantry/docs/debian-faq/debian-faq.en.pdf", ".tenantry/docs/r-manuals/R-FAQ.pdf"])]
        pdfs: Vec<PathBuf>,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Exit 0 when this configuration's server answers GET /healthz within 2 s (the
    /// container's HEALTHCHECK: no curl needed in the image).
    Healthcheck {
        /// Base URL (default: http://<listen>, 127.0.0.1 for an unspecified address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Measure latency, throughput and scale over HTTP, next to in-process baselines. Without
    /// --url it loads a persistent bench directory (--data-dir, default .tenantry/bench) and
    /// starts its own server on loopback.
    Bench {
        /// A running server to drive instead (loopback only); needs --admin-key.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, env = "TENANTRY_BENCH_ADMIN_KEY")]
        admin_key: Option<String>,
        /// Directory of documents (.md, .html, .txt, .pdf) spread over the tenants.
        #[arg(long, default_value = ".tenantry/docs/python-tutorial")]
        corpus: PathBuf,
        /// Queries: BEIR queries.jsonl or one per line.
        #[arg(long, default_value = ".tenantry/eval/python-faq/queries.jsonl")]
        queries: PathBuf,
        #[arg(long, default_value_t = 10)]
        tenants: usize,
        #[arg(long, default_value_t = 200)]
        chunks_per_tenant: u64,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Seconds of load per mode.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Requests per mode at most.
        #[arg(long, default_value_t = 100_000)]
        max_requests: usize,
        /// Comma-separated: hybrid, dense, bm25 (POST /v1/query) and answer (POST /v1/answer).
        #[arg(long, default_value = "hybrid,dense,bm25,answer")]
        modes: String,
        /// Tenants whose first query after the start is timed (cold) and then repeated (warm).
        #[arg(long, default_value_t = 10)]
        cold_tenants: usize,
        /// Documents for the ingestion-vs-raw-embedder measurement.
        #[arg(long, default_value_t = 4)]
        ingest_docs: usize,
        /// Seconds per phase of the noisy-neighbour run (quiet tenant alone, then next to a
        /// flooding tenant with and without its rate limits); 0 skips it.
        #[arg(long, default_value_t = 10.0)]
        noisy_seconds: f64,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write a self-contained HTML page with the latency distributions and phases.
        #[arg(long)]
        report: Option<PathBuf>,
        /// `qdrant`: run the bench on the embedded backend and then on the Qdrant cluster of
        /// `[qdrant]` (its own bench directory `<data-dir>-qdrant` and collection
        /// `<prefix>_bench_chunks`), at each of --clients, and print both with their ratio.
        #[arg(long)]
        backend: Option<String>,
        /// Client counts for --backend, comma-separated.
        #[arg(long, default_value = "1,8")]
        clients: String,
        /// Client counts (comma-separated, e.g. `1,2,4,8,16`): after the mode runs, hybrid at
        /// each, for QPS and latency against concurrency.
        #[arg(long)]
        sweep: Option<String>,
        /// Node counts, comma-separated (e.g. `1,2,3`): on a shared deployment
        /// (`catalog.backend = "postgres"`, `storage.backend = "qdrant"`), start that many
        /// `tenantry serve` processes and measure hybrid queries and ingestion spread over them.
        #[arg(long)]
        nodes: Option<String>,
    },
    /// Write a tenant's archive (documents, chunks with vectors, metadata, configuration; no
    /// secrets) as NDJSON. Operator command on the data directory; over HTTP: GET /v1/export.
    Export {
        #[arg(long)]
        tenant: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Restore an archive made by `export` (or GET /v1/export) into a tenant of this data
    /// directory; the tenant is created, with a tenant_admin key printed, if it does not exist.
    Import {
        #[arg(long)]
        tenant: String,
        archive: PathBuf,
    },
    /// A tenant's limits in force. With a JSON object (the body of PUT /v1/tenants/{id}/limits,
    /// e.g. '{"max_documents":1000,"query_per_sec":5}'), its overrides are replaced first.
    Limits {
        #[arg(long)]
        tenant: String,
        set: Option<String>,
    },
    /// A tenant's usage by UTC day (as GET /v1/tenants/{id}/usage) and what it stores now.
    Usage {
        #[arg(long)]
        tenant: String,
        /// First day, YYYY-MM-DD (default: 30 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (default: today, UTC).
        #[arg(long)]
        to: Option<String>,
    },
    /// Copy both retrieval legs of every tenant from the embedded stores of this data
    /// directory into the Qdrant cluster of `[qdrant]`, keeping the catalog (tenants, keys,
    /// documents). Resumable and idempotent; run with the server stopped, then set
    /// storage.backend = "qdrant".
    Migrate {
        /// The target backend; only "qdrant".
        #[arg(long)]
        to: String,
    },
    /// Copy this data directory's SQLite catalog (tenants, keys, documents and versions, jobs,
    /// usage, threads, configurations) into the PostgreSQL database of `[postgres]`, in one
    /// transaction; rows already there are kept, so a rerun copies nothing. Run with the server
    /// stopped and no unfinished jobs, then set catalog.backend = "postgres".
    MigrateCatalog {
        /// The target catalog; only "postgres".
        #[arg(long)]
        to: String,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
}

#[derive(Subcommand)]
enum TenantAction {
    Create {
        id: String,
    },
    List,
    Delete {
        id: String,
    },
    /// Give a tenant its own shard key on the Qdrant cluster (storage.backend = "qdrant"),
    /// moved online while it keeps answering. Works beside a running `tenantry serve`.
    Promote {
        id: String,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// A new key; its secret is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        /// reader, writer or tenant_admin.
        #[arg(long, default_value = "reader")]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// A tenant's keys (ids, roles, names; never secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Replace a key's secret; the old one stops working at once.
    Rotate {
        key_id: String,
    },
    Revoke {
        key_id: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTRY_LOG")
        .unwrap_or_else(|_| "info,tantivy=warn,qdrant_edge=error".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// `tenantry tenants promote`: only the cluster is needed, not the data directory, so it works
/// beside a running server.
async fn promote_tenant(config: Config, id: String) -> anyhow::Result<()> {
    if config.storage.backend != StorageBackend::Qdrant {
        anyhow::bail!("promotion is for storage.backend = \"qdrant\" (this deployment is embedded: every tenant has its own shard already)");
    }
    let tenant = TenantId::parse(&id)?;
    let qcfg = config.qdrant.clone();
    let moved = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<u64>> {
        let store = QdrantStore::connect_existing(&qcfg)?;
        let points = store.count(&tenant)?;
        if points == 0 {
            anyhow::bail!("tenant {tenant} has no chunks on the cluster");
        }
        Ok(store.promote(&tenant)?.then_some(points))
    })
    .await??;
    match moved {
        Some(n) => println!("promoted tenant {id}: {n} chunks now in its own shard key"),
        None => println!("tenant {id} already has its own shard key"),
    }
    Ok(())
}

fn open(config: Config) -> anyhow::Result<Arc<Engine>> {
    let dir = config.data_dir.clone();
    Engine::open(config).with_context(|| {
        format!(
            "cannot open data directory {} (is `tenantry serve` using it? then use the HTTP API)",
            dir.display()
        )
    })
}

/// The configuration flags of this invocation, for a child `tenantry serve`.
fn server_args(f: &tenantry::config::ConfigFlags) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    for (flag, value) in [
        ("--config", &f.config),
        ("--model-dir", &f.model_dir),
        ("--ort-dylib", &f.ort_dylib),
    ] {
        if let Some(v) = value {
            out.push(flag.into());
            out.push(v.into());
        }
    }
    for o in &f.overrides {
        out.push("--set".into());
        out.push(o.into());
    }
    out
}

fn parse_mode(s: &str) -> anyhow::Result<Mode> {
    Ok(match s {
        "hybrid" => Mode::Hybrid,
        "dense" => Mode::Dense,
        "bm25" => Mode::Bm25,
        other => bail!("unknown mode {other:?} (hybrid, dense, bm25)"),
    })
}

fn main() -> std::process::ExitCode {
    // The parse worker (see tenantry_ingest::sandbox) starts before anything else: no runtime,
    // no config, no logging; one document in, one reply out.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "parse-worker")
    {
        std::process::exit(tenantry_ingest::sandbox::worker_main());
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run()));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // One line, whatever RUST_BACKTRACE says: the cause chain is the message.
        Err(e) => {
            eprintln!("tenantry: {e:#}");
            if e.is::<tenantry::config::ConfigError>() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // Everything this process creates (catalog, indexes, blobs, exports) is owner-only.
    #[cfg(unix)]
    // SAFETY: umask only replaces the process's file-mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        print!("{}", tenantry::api::openapi_json_string());
        return Ok(());
    }
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    let config = Config::load(&cli.flags, std::env::vars(), listen)?;
    init_logging(config.log_format);
    match cli.command {
        Command::Serve { .. } => serve(config).await,
        Command::Healthcheck { url } => {
            let base = url.unwrap_or_else(|| {
                let mut addr = config.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if config.tls.enabled() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{addr}")
            });
            // Liveness of this very host, not its identity: the certificate is for the name
            // clients use, which the local address is not.
            let status = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(2))
                .danger_accept_invalid_certs(true)
                .build()?
                .get(format!("{}/healthz", base.trim_end_matches('/')))
                .send()
                .await
                .with_context(|| format!("{base}/healthz"))?
                .status();
            if !status.is_success() {
                bail!("{base}/healthz: {status}");
            }
            Ok(())
        }
        Command::Ingest {
            tenant,
            paths,
            remote,
            concurrency,
        } => match remote.url {
            Some(url) => {
                let files = collect_files(&paths)?;
                remote::ingest(
                    remote::Remote::new(&url, remote.key.as_deref())?,
                    files,
                    concurrency,
                )
                .await
            }
            None => {
                ingest(
                    config,
                    TenantId::parse(&tenant.unwrap_or_default())?,
                    &paths,
                )
                .await
            }
        },
        Command::Query {
            tenant,
            question,
            top_k,
            mode,
            remote,
        } => {
            if let Some(url) = remote.url {
                let r = remote::Remote::new(&url, remote.key.as_deref())?;
                return remote::query(r, question, top_k, mode).await;
            }
            let engine = open(config)?;
            let ctx = TenantCtx::operator(TenantId::parse(&tenant.unwrap_or_default())?);
            let q = Query {
                text: question,
                top_k,
                mode: parse_mode(&mode)?,
                filter: ChunkFilter::default(),
                fusion: FusionOverrides::default(),
            };
            let out = engine.query(&ctx, q).await?;
            for (i, h) in out.hits.iter().enumerate() {
                let place = match (h.chunk.page, h.chunk.heading_path.is_empty()) {
                    (Some(p), _) => format!("page {p}"),
                    (None, false) => h.chunk.heading_path.join(" > "),
                    _ => String::new(),
                };
                println!(
                    "{:>2}. [{:.4}] {} — {}\n    {}",
                    i + 1,
                    h.score,
                    h.chunk.title,
                    place,
                    h.snippet.replace('\n', " ")
                );
            }
            println!(
                "({} results in {:.1} ms)",
                out.hits.len(),
                out.timings.total_ms
            );
            engine.flush();
            Ok(())
        }
        Command::Limits { tenant, set } => {
            let engine = open(config)?;
            let id = TenantId::parse(&tenant)?;
            if let Some(json) = set {
                let over: tenantry::limits::TenantLimits = serde_json::from_str(&json)
                    .context("limits: expected a JSON object of overrides")?;
                engine.put_tenant_limits(id.clone(), over).await?;
            }
            let (over, l) = engine.tenant_limits(id.clone()).await?;
            let (docs, bytes, chunks) = engine.stored(id).await?;
            println!(
                "queries: {}/s (burst {})\nuploads: {}/s (burst {})\nmax documents: {}\nmax bytes: {}\nmax chunks: {}\n(0 = unlimited)",
                l.query_per_sec, l.query_burst, l.ingest_per_sec, l.ingest_burst, l.max_documents, l.max_bytes, l.max_chunks
            );
            println!("overrides: {}", serde_json::to_string(&over)?);
            println!("stored: {docs} documents, {bytes} bytes, {chunks} chunks");
            engine.flush();
            Ok(())
        }
        Command::Usage { tenant, from, to } => {
            let engine = open(config)?;
            let to = to.unwrap_or_else(tenantry::usage::today);
            let from = match from {
                Some(f) => f,
                None => tenantry::usage::civil_date(
                    tenantry::usage::days_since_epoch(&to).context("--to: expected YYYY-MM-DD")?
                        - 30,
                ),
            };
            let report = engine.usage(TenantId::parse(&tenant)?, from, to).await?;
            for d in &report.days {
                for (metric, value) in &d.counters {
                    println!("{}\t{metric}\t{value}", d.day);
                }
            }
            println!(
                "stored now: {} documents, {} bytes, {} chunks",
                report.documents, report.bytes, report.chunks
            );
            Ok(())
        }
        Command::Export { tenant, out } => {
            let engine = open(config)?;
            let ctx = TenantCtx::operator(TenantId::parse(&tenant)?);
            let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut w: Box<dyn std::io::Write> = match &out {
                    Some(p) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(p).with_context(|| p.display().to_string())?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                Ok(engine.export_tenant(&ctx, &mut w)?)
            })
            .await??;
            eprintln!(
                "exported {} documents, {} chunks",
                summary.documents, summary.chunks
            );
            Ok(())
        }
        Command::Import { tenant, archive } => {
            let engine = open(config)?;
            let id = TenantId::parse(&tenant)?;
            if !engine
                .list_tenants()
                .await?
                .iter()
                .any(|(t, _, _)| *t == id)
            {
                let key = engine.create_tenant(id.clone()).await?;
                println!("created tenant {id}\ntenant_admin key: {}", key.token);
            }
            let ctx = TenantCtx::operator(id);
            let e2 = engine.clone();
            let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let f =
                    std::fs::File::open(&archive).with_context(|| archive.display().to_string())?;
                Ok(e2.import_tenant(&ctx, &mut std::io::BufReader::new(f))?)
            })
            .await??;
            engine.flush();
            println!(
                "imported {} documents ({} chunks); {} already present",
                summary.documents, summary.chunks, summary.unchanged
            );
            Ok(())
        }
        Command::Answer {
            tenant,
            question,
            top_k,
            remote,
        } => {
            if let Some(url) = remote.url {
                let r = remote::Remote::new(&url, remote.key.as_deref())?;
                return remote::answer(r, question, top_k).await;
            }
            let engine = open(config)?;
            let ctx = TenantCtx::operator(TenantId::parse(&tenant.unwrap_or_default())?);
            let req = tenantry::answer::AnswerRequest {
                question,
                top_k,
                mode: tenantry::domain::Mode::Hybrid,
                filter: ChunkFilter::default(),
                thread: None,
                generator: None,
                model: None,
            };
            let prepared = engine.prepare_answer(&ctx, req, true).await?;
            let answer = prepared
                .run(&mut |piece: &str| {
                    use std::io::Write;
                    print!("{piece}");
                    let _ = std::io::stdout().flush();
                })
                .await?;
            println!();
            for c in &answer.citations {
                let place = match (c.page, &c.heading) {
                    (Some(p), _) => format!("page {p}"),
                    (None, Some(h)) => h.clone(),
                    _ => String::new(),
                };
                println!(
                    "  [{}] {} — {}\n      \"{}\"",
                    c.n,
                    c.title,
                    place,
                    c.quote.replace('\n', " ")
                );
            }
            match answer.code {
                None => println!("(grounded; {:.0} ms)", answer.timings.total_ms),
                Some(code) => println!(
                    "(not grounded: {}; {:.0} ms)",
                    code.as_str(),
                    answer.timings.total_ms
                ),
            }
            engine.flush();
            Ok(())
        }
        Command::Migrate { to } => {
            if to != "qdrant" {
                anyhow::bail!("--to {to}: the only target is qdrant");
            }
            let mut source = config.clone();
            source.storage.backend = StorageBackend::Embedded;
            let progress = config.data_dir.join("migrate-qdrant.progress");
            let engine = open(source)?;
            let (qcfg, e2) = (config.qdrant.clone(), engine.clone());
            let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let store = QdrantStore::open(&qcfg, e2.embedding_dim())
                    .context("cannot reach the Qdrant cluster of [qdrant]")?;
                Ok(e2.migrate_legs(&store, &store, &progress)?)
            })
            .await??;
            println!(
                "migrated {} tenants ({} documents, {} chunks) into collection {}_chunks; {} already done by an earlier run",
                summary.tenants,
                summary.documents,
                summary.chunks,
                config.qdrant.collection_prefix,
                summary.skipped_tenants
            );
            println!("now set storage.backend = \"qdrant\" (or TENANTRY_STORAGE__BACKEND=qdrant) and start the server");
            Ok(())
        }
        Command::MigrateCatalog { to } => {
            if to != "postgres" {
                anyhow::bail!("--to {to}: the only target is postgres");
            }
            let source = config.data_dir.join("catalog.sqlite3");
            if !source.exists() {
                anyhow::bail!("{}: no SQLite catalog to copy", source.display());
            }
            let pg = config.postgres.clone();
            let copied = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let target = tenantry::storage::catalog::PostgresCatalog::connect(&pg)
                    .context("cannot reach the PostgreSQL server of [postgres]")?;
                Ok(target.import_sqlite(&source)?)
            })
            .await??;
            let total: u64 = copied.iter().map(|(_, n)| n).sum();
            let detail: Vec<String> = copied
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            println!(
                "copied {total} rows into PostgreSQL{}",
                if detail.is_empty() {
                    " (everything was there already)".to_string()
                } else {
                    format!(": {}", detail.join(", "))
                }
            );
            println!("now set catalog.backend = \"postgres\" (or TENANTRY_CATALOG__BACKEND=postgres) and start the server");
            Ok(())
        }
        Command::Tenants {
            action: TenantAction::Promote { id },
        } => promote_tenant(config, id).await,
        Command::Tenants { action } => {
            let engine = open(config)?;
            match action {
                TenantAction::Create { id } => {
                    let key = engine.create_tenant(TenantId::parse(&id)?).await?;
                    println!(
                        "created tenant {id}\nkey id:  {}\napi key: {}",
                        key.key.id, key.token
                    );
                }
                TenantAction::List => {
                    for (id, _, docs) in engine.list_tenants().await? {
                        println!("{id}\t{docs} documents");
                    }
                }
                TenantAction::Delete { id } => {
                    engine.delete_tenant(TenantId::parse(&id)?).await?;
                    println!("deleted tenant {id}");
                }
                TenantAction::Promote { .. } => bail!("promote runs without the data directory"),
            }
            engine.flush();
            Ok(())
        }
        Command::Keys { action } => {
            let engine = open(config)?;
            match action {
                KeyAction::Create { tenant, role, name } => {
                    let role = Role::parse(&role).with_context(|| {
                        format!("unknown role {role:?} (reader, writer, tenant_admin)")
                    })?;
                    let key = engine
                        .create_key(TenantId::parse(&tenant)?, role, name)
                        .await?;
                    println!(
                        "key id:  {}\nrole:    {role}\napi key: {}",
                        key.key.id, key.token
                    );
                }
                KeyAction::List { tenant } => {
                    for k in engine.list_keys(TenantId::parse(&tenant)?).await? {
                        println!("tny_{}_…\t{}\t{}\t{}", k.id, k.role, k.created_at, k.name);
                    }
                }
                KeyAction::Rotate { key_id } => {
                    let key = engine.rotate_key(None, key_id.clone()).await?;
                    println!(
                        "rotated {key_id}\nkey id:  {}\napi key: {}",
                        key.key.id, key.token
                    );
                }
                KeyAction::Revoke { key_id } => {
                    engine.revoke_key(None, key_id.clone()).await?;
                    println!("revoked {key_id}");
                }
            }
            Ok(())
        }
        Command::Eval {
            dataset,
            split,
            json,
            runs,
            report,
        } => {
            eval(
                config,
                &dataset,
                &split,
                json.as_deref(),
                runs.as_deref(),
                report.as_deref(),
            )
            .await
        }
        Command::EvalPages { pdfs, json } => {
            let report = tenantry::pagehit::run(config, &pdfs).await?;
            print!("{}", report.table());
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_string_pretty(&report.rows)? + "\n")?;
            }
            Ok(())
        }
        Command::Bench {
            url,
            admin_key,
            corpus,
            queries,
            tenants,
            chunks_per_tenant,
            concurrency,
            duration,
            max_requests,
            modes,
            cold_tenants,
            ingest_docs,
            noisy_seconds,
            json,
            report: html,
            backend,
            clients,
            sweep,
            nodes,
        } => {
            let mut config = config;
            if cli.flags.data_dir.is_none() {
                config.data_dir = PathBuf::from(".tenantry/bench");
            }
            let opts = tenantry::bench::BenchOptions {
                url,
                admin_key,
                corpus,
                queries,
                tenants,
                chunks_per_tenant,
                concurrency,
                duration: std::time::Duration::from_secs_f64(duration.max(0.0)),
                max_requests,
                modes: modes
                    .split(',')
                    .map(|m| {
                        tenantry::bench::Target::parse(m.trim()).ok_or_else(|| {
                            anyhow::anyhow!("unknown mode {m:?} (hybrid, dense, bm25, answer)")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                cold_tenants,
                ingest_docs,
                server_exe: std::env::current_exe()?,
                server_args: server_args(&cli.flags),
                noisy_seconds,
                promote: false,
                sweep: match sweep {
                    None => vec![],
                    Some(s) => s
                        .split(',')
                        .map(|c| c.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--sweep: comma-separated numbers")?,
                },
            };
            if let Some(nodes) = nodes {
                let levels: Vec<usize> = nodes
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--nodes: comma-separated numbers")?;
                let report = tenantry::bench::nodes_scaling(config, opts, &levels).await?;
                print!("{}", report.table());
                if let Some(path) = json {
                    std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
                }
                return Ok(());
            }
            if let Some(backend) = backend {
                if backend != "qdrant" {
                    bail!("--backend {backend}: the comparison is with qdrant");
                }
                let levels: Vec<usize> = clients
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--clients: comma-separated numbers")?;
                let mut runs = vec![];
                for (name, kind) in [
                    ("embedded", StorageBackend::Embedded),
                    ("qdrant", StorageBackend::Qdrant),
                ] {
                    let mut cfg = config.clone();
                    let mut o = opts.clone();
                    cfg.storage.backend = kind;
                    if kind == StorageBackend::Qdrant {
                        let mut dir = cfg.data_dir.clone().into_os_string();
                        dir.push("-qdrant");
                        cfg.data_dir = dir.into();
                        cfg.qdrant.collection_prefix =
                            format!("{}_bench", cfg.qdrant.collection_prefix);
                        for kv in [
                            "storage.backend=qdrant".to_string(),
                            format!("qdrant.collection_prefix={}", cfg.qdrant.collection_prefix),
                        ] {
                            o.server_args.push("--set".into());
                            o.server_args.push(kv.into());
                        }
                    }
                    for (i, &c) in levels.iter().enumerate() {
                        o.concurrency = c;
                        // Once, after the last load run: the promotion is not undone.
                        o.promote = kind == StorageBackend::Qdrant && i + 1 == levels.len();
                        eprintln!("bench: {name} backend, {c} clients");
                        runs.push((
                            name.to_string(),
                            c,
                            tenantry::bench::run(cfg.clone(), o.clone()).await?,
                        ));
                    }
                }
                let cmp = tenantry::bench::BackendComparison { runs };
                for (name, c, r) in &cmp.runs {
                    println!("\n## {name}, {c} clients\n{}", r.table());
                }
                print!("{}", cmp.table());
                if let Some(path) = json {
                    std::fs::write(path, serde_json::to_string_pretty(&cmp)? + "\n")?;
                }
                return Ok(());
            }
            let report = tenantry::bench::run(config, opts).await?;
            print!("{}", report.table());
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
            }
            if let Some(path) = html {
                std::fs::write(path, tenantry::report::bench_html(&report))?;
            }
            Ok(())
        }
        Command::Openapi => unreachable!(),
    }
}

async fn eval(
    mut config: Config,
    dataset: &std::path::Path,
    split: &str,
    json: Option<&std::path::Path>,
    runs: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let data = tenantry::eval::Dataset::load(dataset, split)?;
    let scratch = tempfile::tempdir()?;
    config.data_dir = scratch.path().to_path_buf();
    // The whole corpus is queued at once; the per-tenant fairness cap is for shared servers.
    config.ingest.tenant_queue_max = data.corpus.len() + 1;
    config.ingest.queue_capacity = data.corpus.len() + 1;
    let engine = open(config)?;
    engine.start().await?;
    let tenant = TenantId::parse("eval")?;
    engine.create_tenant(tenant.clone()).await?;
    let name = dataset
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report = tenantry::eval::run(
        &engine,
        &TenantCtx::operator(tenant),
        &name,
        &data,
        &tenantry::eval::standard_variants(),
    )
    .await?;
    print!("{}", report.table());
    if let Some(path) = json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&tenantry::eval::as_json(&report))? + "\n",
        )?;
    }
    if let Some(path) = html {
        std::fs::write(path, tenantry::report::eval_html(&report))?;
    }
    if let Some(dir) = runs {
        std::fs::create_dir_all(dir)?;
        for (i, row) in report.rows.iter().enumerate() {
            std::fs::write(
                dir.join(format!("{i:02}.run")),
                tenantry::eval::trec_run(row),
            )?;
        }
    }
    Ok(())
}

/// SIGHUP: read the certificate and key again (renewed by an operator or an ACME client); a
/// bad pair is logged and the current one stays.
fn reload_on_sighup(certs: Arc<tenantry::api::serve::TlsCerts>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the certificate reloads only on restart");
            return;
        };
        while hup.recv().await.is_some() {
            match certs.reload() {
                Ok(()) => tracing::info!("tls: certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "tls: reload failed; keeping the current certificate")
                }
            }
        }
    });
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let http = config.http.clone();
    let tls_files = config.tls.clone();
    // Before the model loads: a bad certificate fails the start at once.
    let tls = if tls_files.enabled() {
        let certs = Arc::new(
            tenantry::api::serve::TlsCerts::load(&tls_files).map_err(|e| anyhow::anyhow!(e))?,
        );
        reload_on_sighup(certs.clone());
        Some(certs)
    } else {
        None
    };
    raise_open_files(http.max_connections);
    let deadline = Duration::from_secs(config.shutdown_deadline_secs);
    let engine = tokio::task::spawn_blocking(move || open(config)).await??;
    engine.start().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, tls = tls_files.enabled(), data_dir = %engine.data_dir().display(), "tenantry serving");
    let app = tenantry::api::router(engine.clone());
    let drain = engine.clone();
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<Instant>();
    let signalled_at = Arc::new(std::sync::OnceLock::new());
    let at = signalled_at.clone();
    let server = tenantry::api::serve::serve(listener, app, &http, tls, async move {
        shutdown_signal().await;
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "shutting down: draining"
        );
        drain.begin_drain();
        let now = *at.get_or_init(Instant::now);
        let _ = signalled_tx.send(now);
    });
    // Stop accepting at the signal; open requests (a long answer stream) get until the deadline.
    let deadline_passed = async {
        match signalled_rx.await {
            Ok(at) => tokio::time::sleep_until((at + deadline).into()).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = server => {},
        _ = deadline_passed => tracing::warn!("shutdown deadline passed; closing open connections"),
    }
    // Running ingestion jobs finish within what is left; queued ones stay queued in the catalog
    // for the other nodes, or the next start. Jobs still running at the deadline are handed
    // back to the queue at once.
    let left = deadline.saturating_sub(signalled_at.get_or_init(Instant::now).elapsed());
    if !engine.wait_idle(left).await {
        tracing::warn!("ingestion jobs still running at the deadline; handing them back");
    }
    let handing = engine.clone();
    tokio::task::spawn_blocking(move || handing.hand_back_jobs()).await?;
    engine.flush();
    tracing::info!("stopped");
    Ok(())
}

/// Every connection, index file and parse-worker pipe is a descriptor: take the hard limit
/// (the usual soft 1,024 would run out before `http.max_connections`), and say so when
/// connections could still starve everything else.
fn raise_open_files(max_connections: usize) {
    #[cfg(unix)]
    // SAFETY: plain getrlimit/setrlimit on this process with a stack-allocated struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            if (max_connections as u64).saturating_mul(2) > lim.rlim_cur {
                tracing::warn!(
                    max_connections,
                    open_files = lim.rlim_cur,
                    "http.max_connections is more than half the open-file limit"
                );
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Files to ingest with their document ids: a file's name, or its path inside a given directory.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<_> = std::fs::read_dir(&dir)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for e in entries {
                    if e.is_dir() {
                        stack.push(e);
                    } else {
                        let id = e
                            .strip_prefix(p)
                            .unwrap_or(&e)
                            .to_string_lossy()
                            .into_owned();
                        out.push((e, id));
                    }
                }
            }
        } else if p.is_file() {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((p.clone(), name));
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(out)
}

async fn ingest(mut config: Config, tenant: TenantId, paths: &[PathBuf]) -> anyhow::Result<()> {
    let files = collect_files(paths)?;
    config.ingest.tenant_queue_max = config.ingest.tenant_queue_max.max(files.len() + 1);
    config.ingest.queue_capacity = config.ingest.queue_capacity.max(files.len() + 1);
    // Opening may connect to PostgreSQL, whose client must not run on the async runtime.
    let engine = tokio::task::spawn_blocking(move || open(config)).await??;
    engine.start().await?;
    if !engine
        .list_tenants()
        .await?
        .iter()
        .any(|(t, _, _)| *t == tenant)
    {
        bail!("no tenant {tenant}: create it first with `tenantry tenants create {tenant}`");
    }
    let ctx = TenantCtx::operator(tenant);
    let started = Instant::now();
    let (mut ok, mut failed, mut chunks) = (0usize, Vec::new(), 0u64);
    // Every file is queued at once (the operator's own command is not held to the per-tenant
    // cap, which is for shared servers), then the bar follows chunks across all of them: the
    // total grows as documents are parsed.
    let mut jobs = Vec::new();
    for (f, id) in &files {
        let upload = Upload {
            doc_id: Some(DocId::parse(id)?),
            title: f.file_name().map(|n| n.to_string_lossy().into_owned()),
            file_name: f.file_name().map(|n| n.to_string_lossy().into_owned()),
            bytes: std::fs::read(f)?,
            ..Default::default()
        };
        match engine.submit(&ctx, upload).await {
            Err(e) => failed.push((f.clone(), e.to_string())),
            Ok(s) => jobs.push((f.clone(), s)),
        }
    }
    let mut progress = progress::ChunkProgress::new(started);
    let mut finished: Vec<(PathBuf, tenantry::storage::catalog::JobRecord, DocId)> = Vec::new();
    loop {
        let (mut done, mut total) = (0u64, 0u64);
        let mut still = Vec::new();
        for (f, s) in jobs.drain(..) {
            let job = engine.job(&ctx, &s.job_id).await?;
            if job.status.is_final() {
                finished.push((f, job, s.doc_id));
            } else {
                done += job.progress.chunks_done;
                total += job.progress.chunks_total.unwrap_or(0);
                still.push((f, s));
            }
        }
        jobs = still;
        for (_, j, _) in &finished {
            done += j.progress.chunks_total.unwrap_or(j.progress.chunks_done);
            total += j.progress.chunks_total.unwrap_or(j.progress.chunks_done);
        }
        progress.show(done, total, finished.len(), finished.len() + jobs.len());
        if jobs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    progress.finish();
    for (f, job, doc_id) in finished {
        match job.status {
            JobStatus::Succeeded => {
                ok += 1;
                chunks += engine
                    .document(&ctx, &doc_id)
                    .await
                    .map(|d| d.chunk_count)
                    .unwrap_or(0);
            }
            _ => {
                let (code, msg) = job
                    .error
                    .unwrap_or_else(|| ("unknown".into(), "job did not finish".into()));
                failed.push((f, format!("{code}: {msg}")));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {ok} documents ({chunks} chunks) in {secs:.1} s; {} failed",
        failed.len()
    );
    for (f, why) in &failed {
        println!("  FAILED {}: {why}", f.display());
    }
    engine.flush();
    if failed.is_empty() {
        Ok(())
    } else {
        std::process::exit(2)
    }
}

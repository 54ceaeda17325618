//! criterion benches of the engine's hot paths: rank fusion, chunking, BM25 search, tenant-
//! filtered dense search, and embedding at several batch sizes. Inputs are checked-in fixtures or
//! generated deterministically. Run with `cargo bench` after `make setup` (chunking and embedding
//! use the real tokenizer and model).
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenantry::domain::{ChunkFilter, StoredChunk};
use tenantry::domain::{DocId, TenantCtx, TenantId};
use tenantry::query::rrf;
use tenantry::storage::lexical::{LexicalStore, TantivyLexicalStore};
use tenantry::storage::vector::{EdgeVectorStore, VectorStore};
use tenantry_ingest::{
    parse, Chunker, ContentType, Embedder, EmbedderConfig, FastEmbedder, Lane, ModelSource,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn provisioned(rel: &str) -> PathBuf {
    let p = root().join(".tenantry").join(rel);
    assert!(p.exists(), "{} missing: run `make setup`", p.display());
    p
}

/// Deterministic xorshift, so every run benches the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    /// A random L2-normalised 384-dimensional vector (the model's dimension).
    fn vector(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..384).map(|_| self.unit()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}

/// Text with a skewed (Zipf-like) word distribution over a synthetic vocabulary.
fn text(rng: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|_| {
            let r = (rng.next() % 10_000) as f64 / 10_000.0;
            format!("w{}", (r * r * r * 5000.0) as u32)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn chunk(doc: usize, ordinal: u32, text: String) -> StoredChunk {
    StoredChunk {
        doc_id: DocId::parse(&format!("doc{doc}")).unwrap(),
        version: 1,
        ordinal,
        title: format!("Document {doc}"),
        text,
        content_type: "text/plain".into(),
        page: None,
        heading_path: vec![],
        metadata: Default::default(),
        start: 0,
        end: 0,
    }
}

/// One search per iteration, cycling through the queries.
fn cycle<Q, R>(c: &mut Criterion, group: &str, queries: &[Q], mut search: impl FnMut(&Q) -> R) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("top50", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            search(&queries[i])
        })
    });
    g.finish();
}

fn fusion(c: &mut Criterion) {
    let mut g = c.benchmark_group("rrf");
    for n in [10usize, 50, 200] {
        // Two legs that overlap by half.
        let a: Vec<u32> = (0..n as u32).collect();
        let b: Vec<u32> = (n as u32 / 2..n as u32 * 3 / 2).rev().collect();
        g.throughput(Throughput::Elements(2 * n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| rrf(&[(&a[..], 2.0), (&b[..], 1.0)], 1.0))
        });
    }
    g.finish();
}

fn chunking(c: &mut Criterion) {
    let chunker =
        Chunker::from_tokenizer_file(&provisioned("model/all-MiniLM-L6-v2/tokenizer.json"), 200)
            .unwrap();
    let md = std::fs::read_to_string(root().join("fixtures/docs/guide.md"))
        .unwrap()
        .repeat(40);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(md.len() as u64));
    for ct in [ContentType::Markdown, ContentType::Text] {
        let extracted = parse(md.as_bytes(), ct, &tenantry_ingest::ParseLimits::default()).unwrap();
        g.bench_function(ct.mime(), |b| b.iter(|| chunker.chunk(&extracted, ct)));
    }
    g.finish();
}

fn bm25(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        TantivyLexicalStore::new(dir.path().to_path_buf(), Duration::from_secs(3600)).unwrap();
    let ctx = TenantCtx::operator(TenantId::parse("bench").unwrap());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let chunks: Vec<StoredChunk> = (0..10_000)
        .map(|i| chunk(i / 4, (i % 4) as u32, text(&mut rng, 120)))
        .collect();
    store.add(&ctx, &chunks).unwrap();
    let queries: Vec<String> = (0..64).map(|_| text(&mut rng, 6)).collect();
    cycle(c, "bm25_10k_chunks", &queries, |q| {
        store.search(&ctx, q, &ChunkFilter::default(), 50).unwrap()
    });
}

fn dense(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeVectorStore::open(
        &dir.path().join("vectors"),
        384,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    // 20 tenants x 1,000 chunks, a shard each; searches go to one tenant (and filter by it).
    for t in 0..20 {
        let ctx = TenantCtx::operator(TenantId::parse(&format!("t{t}")).unwrap());
        let points: Vec<(StoredChunk, Vec<f32>)> = (0..1000)
            .map(|i| (chunk(i, 0, String::new()), rng.vector()))
            .collect();
        store.upsert(&ctx, &points).unwrap();
    }
    store.maintain().unwrap();
    let ctx = TenantCtx::operator(TenantId::parse("t7").unwrap());
    let queries: Vec<Vec<f32>> = (0..64).map(|_| rng.vector()).collect();
    cycle(c, "dense_tenant_1k_of_20k_points", &queries, |q| {
        store.search(&ctx, q, &ChunkFilter::default(), 50).unwrap()
    });
}

/// A cold tenant's first dense search: open its shard (closed as idle), then search it.
fn dense_cold(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EdgeVectorStore::open(&dir.path().join("vectors"), 384, std::time::Duration::ZERO).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    // A typical small tenant: 220 chunks.
    let ctx = TenantCtx::operator(TenantId::parse("cold").unwrap());
    let points: Vec<(StoredChunk, Vec<f32>)> = (0..220)
        .map(|i| (chunk(i, 0, String::new()), rng.vector()))
        .collect();
    store.upsert(&ctx, &points).unwrap();
    store.maintain().unwrap();
    let q = rng.vector();
    let mut g = c.benchmark_group("dense_cold_tenant_220_points");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.bench_function("open_and_search", |b| {
        b.iter(|| {
            assert_eq!(store.close_idle(), 1);
            store.search(&ctx, &q, &ChunkFilter::default(), 50).unwrap()
        })
    });
    g.finish();
}

fn embedding(c: &mut Criterion) {
    let text = std::fs::read_to_string(root().join("fixtures/docs/guide.md")).unwrap();
    let passages: Vec<String> = (0..32).map(|i| format!("{i}. {text}")).collect();
    let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("embedding_32_passages");
    g.sample_size(10);
    g.throughput(Throughput::Elements(refs.len() as u64));
    for batch in [1usize, 8, 16, 32] {
        let e = FastEmbedder::new(&EmbedderConfig {
            source: ModelSource::Local(provisioned("model/all-MiniLM-L6-v2")),
            ort_dylib: Some(provisioned("ort/libonnxruntime.so.1.24.4")),
            max_length: 256,
            batch_size: batch,
            intra_threads: 1,
            ingest_sessions: 0,
            ingest_sessions_busy: 1,
            ingest_nice: 0,
            query_sessions: 2,
            query_threads: 1,
        })
        .unwrap();
        g.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, _| {
            b.iter(|| e.embed(Lane::Ingest, &refs).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, fusion, chunking, bm25, dense, dense_cold, embedding);
criterion_main!(benches);

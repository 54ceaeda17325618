//! criterion benches for the engine's CPU paths that need no model: rank fusion and chunking.
//! Run with `cargo bench` after `make setup` (chunking uses the model's real tokenizer).
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenantry::query::rrf;
use tenantry_ingest::{parse, Chunker, ContentType};

fn fusion(c: &mut Criterion) {
    let mut g = c.benchmark_group("rrf");
    for n in [10usize, 50, 200] {
        // Two legs that overlap by half, deterministic.
        let a: Vec<u32> = (0..n as u32).collect();
        let b: Vec<u32> = (n as u32 / 2..n as u32 * 3 / 2).rev().collect();
        g.throughput(Throughput::Elements(2 * n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| rrf(&[(&a[..], 1.0), (&b[..], 1.0)], 60.0))
        });
    }
    g.finish();
}

fn chunking(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tokenizer = root.join(".tenantry/model/all-MiniLM-L6-v2/tokenizer.json");
    assert!(
        tokenizer.exists(),
        "{} missing: run `make setup`",
        tokenizer.display()
    );
    let chunker = Chunker::from_tokenizer_file(&tokenizer, 200).unwrap();
    let md = std::fs::read_to_string(root.join("fixtures/docs/guide.md"))
        .unwrap()
        .repeat(40);
    let extracted = parse(md.as_bytes(), ContentType::Markdown).unwrap();
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(md.len() as u64));
    g.bench_function("markdown", |b| {
        b.iter(|| chunker.chunk(&extracted, ContentType::Markdown))
    });
    let txt = parse(md.as_bytes(), ContentType::Text).unwrap();
    g.bench_function("text", |b| {
        b.iter(|| chunker.chunk(&txt, ContentType::Text))
    });
    g.finish();
}

criterion_group!(benches, fusion, chunking);
criterion_main!(benches);

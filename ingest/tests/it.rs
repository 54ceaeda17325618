//! Ingestion pipeline against real inputs: the real tokenizer and model from `make setup`,
//! real PDFs and HTML from Debian/npm packages, and golden chunk fixtures.
use std::path::{Path, PathBuf};

use tenantry_ingest::{
    chunk::MAX_CHUNK_TOKENS, detect, parse, Chunk, Chunker, ContentType, Embedder, EmbedderConfig,
    FastEmbedder, IngestErrorCode, Lane, ModelSource, ParseLimits,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Something `make setup` installs. Missing means the test cannot run: fail, saying how to fix.
fn provisioned(rel: &str) -> PathBuf {
    let p = root().join(".tenantry").join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `make setup` (or `make test`, which runs it)",
        p.display()
    );
    p
}

fn model_dir() -> PathBuf {
    std::env::var_os("TENANTRY_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| provisioned("model/all-MiniLM-L6-v2"))
}

fn chunker(max_tokens: usize) -> Chunker {
    Chunker::from_tokenizer_file(&model_dir().join("tokenizer.json"), max_tokens).unwrap()
}

fn ingest_file(path: &Path, max_tokens: usize) -> (ContentType, String, Vec<Chunk>) {
    let bytes = std::fs::read(path).unwrap();
    let ct = detect(None, path.file_name().and_then(|n| n.to_str()), &bytes).unwrap();
    let extracted = parse(&bytes, ct, &ParseLimits::default()).unwrap();
    let c = chunker(max_tokens);
    let chunks = c.chunk(&extracted, ct);
    check_invariants(&c, &extracted.text, &chunks);
    (ct, extracted.text, chunks)
}

fn check_invariants(c: &Chunker, text: &str, chunks: &[Chunk]) {
    assert!(!chunks.is_empty());
    for (i, ch) in chunks.iter().enumerate() {
        assert_eq!(ch.ordinal as usize, i);
        assert_eq!(
            &text[ch.start..ch.end],
            ch.text,
            "offsets must point into the extracted text"
        );
        let n = c.count_tokens(&ch.text);
        assert!(
            n <= c.max_tokens(),
            "chunk {i} has {n} tokens > {}",
            c.max_tokens()
        );
        if i > 0 {
            assert!(
                ch.start >= chunks[i - 1].end,
                "chunks are ordered and disjoint"
            );
        }
    }
}

#[test]
fn golden_chunks_of_small_documents() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for path in [
        "docs/guide.md",
        "docs/page.html",
        "docs/notes.txt",
        "docs/three-pages.pdf",
        // Contents and index pages dropped, running header and page numbers gone, "equiv-" /
        // "alent" joined, pages numbered as printed on the physical pages.
        "pdf/layout.pdf",
    ] {
        let name = path.rsplit('/').next().unwrap();
        let (ct, _, chunks) = ingest_file(&root().join("fixtures").join(path), 24);
        let actual = serde_json::to_string_pretty(
            &serde_json::json!({ "content_type": ct.mime(), "chunks": chunks }),
        )
        .unwrap()
            + "\n";
        let golden = root().join("fixtures/golden").join(format!("{name}.json"));
        if update {
            std::fs::write(&golden, &actual).unwrap();
        } else {
            let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                panic!(
                    "{} missing: run with UPDATE_GOLDEN=1 and review it",
                    golden.display()
                )
            });
            // Compare as JSON values: key order depends on serde_json features that cargo unifies
            // differently for `-p` and `--workspace` builds.
            let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
            if expected != serde_json::from_str::<serde_json::Value>(&actual).unwrap() {
                mismatches.push(format!("{name}: got\n{actual}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden chunk mismatch (UPDATE_GOLDEN=1 rewrites after review):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn fixture_structure_is_what_a_reader_sees() {
    let (_, _, pdf) = ingest_file(&root().join("fixtures/docs/three-pages.pdf"), 200);
    let pages: Vec<u32> = pdf.iter().filter_map(|c| c.page).collect();
    // Page 2 is blank: the glacier text is on physical page 3.
    assert!(
        pages.contains(&1) && pages.contains(&3) && !pages.contains(&2),
        "{pages:?}"
    );
    assert!(pdf
        .iter()
        .any(|c| c.page == Some(3) && c.text.contains("Vatnajokull")));

    let (_, text, html) = ingest_file(&root().join("fixtures/docs/page.html"), 200);
    for banned in [
        "do not index",
        "Sidebar link",
        "Copyright",
        "font-family",
        "Home",
    ] {
        assert!(!text.contains(banned), "{banned:?} leaked into {text:?}");
    }
    assert!(html
        .iter()
        .any(|c| c.heading_path == ["Bird notes", "Feeding"] && c.text.contains("sand eels")));

    let (_, _, md) = ingest_file(&root().join("fixtures/docs/guide.md"), 200);
    assert!(md.iter().any(|c| c.heading_path
        == [
            "Tenantry field guide",
            "Installation",
            "Checking the install"
        ]));
    assert!(md.iter().any(|c| c.heading_path == ["Appendix"]));
}

#[test]
fn real_debian_faq_pdf_keeps_physical_pages() {
    let path = provisioned("docs/debian-faq/debian-faq.en.pdf");
    let (ct, _, chunks) = ingest_file(&path, MAX_CHUNK_TOKENS);
    assert_eq!(ct, ContentType::Pdf);
    let max_page = chunks.iter().filter_map(|c| c.page).max().unwrap();
    assert!(
        (60..=73).contains(&max_page),
        "the FAQ PDF has 73 physical pages, last text page {max_page}"
    );
    assert!(chunks.len() > 100, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.page.is_some_and(|p| p >= 1)));
}

/// The page-hit evaluation takes answer pages from the outline; they must be the physical pages
/// that chunks carry, or every hit would be off by the front matter.
#[test]
fn real_pdf_outlines_point_at_the_pages_chunks_carry() {
    let path = provisioned("docs/debian-faq/debian-faq.en.pdf");
    let outline = tenantry_ingest::pdf_outline(&std::fs::read(&path).unwrap()).unwrap();
    let bug = outline
        .iter()
        .find(|e| e.title.ends_with("How do I report a bug in Debian?"))
        .expect("the FAQ's outline has its questions");
    let (_, _, chunks) = ingest_file(&path, MAX_CHUNK_TOKENS);
    assert!(
        chunks.iter().any(
            |c| c.page == Some(bug.page) && c.text.contains("How do I report a bug in Debian?")
        ),
        "no chunk on page {} holds the question",
        bug.page
    );
    let r = provisioned("docs/r-manuals/R-FAQ.pdf");
    let r_outline = tenantry_ingest::pdf_outline(&std::fs::read(r).unwrap()).unwrap();
    assert_eq!(
        r_outline.iter().filter(|e| e.title.ends_with('?')).count(),
        75
    );
    // A PDF without an outline has none, not an error.
    let plain = provisioned("docs/pdf-parse/01-valid.pdf");
    assert!(tenantry_ingest::pdf_outline(&std::fs::read(plain).unwrap())
        .unwrap()
        .is_empty());
}

#[test]
fn real_python_docs_html_drops_navigation() {
    let path = provisioned("docs/python-tutorial/controlflow.html");
    let (ct, text, chunks) = ingest_file(&path, MAX_CHUNK_TOKENS);
    assert_eq!(ct, ContentType::Html);
    for banned in [
        "Previous topic",
        "Next topic",
        "Show Source",
        "Quick search",
        "Report a Bug",
        "Table of Contents",
        "Navigation",
    ] {
        let at = text.find(banned);
        assert!(
            at.is_none(),
            "navigation text {banned:?} leaked: {:?}",
            at.map(|i| &text[i.saturating_sub(80)..(i + 80).min(text.len())])
        );
    }
    assert!(chunks.iter().any(|c| c
        .heading_path
        .iter()
        .any(|h| h.contains("Defining Functions"))));
}

#[test]
fn real_pdfs_from_pdf_parse_and_its_corrupt_file() {
    let dir = provisioned("docs/pdf-parse");
    let (mut parsed, mut corrupt) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let result = detect(None, Some(&name), &bytes)
            .and_then(|ct| parse(&bytes, ct, &ParseLimits::default()));
        // pdf-parse ships one corrupt PDF, 03-invalid.pdf.
        if name.contains("invalid") {
            corrupt += 1;
            assert_eq!(
                result.unwrap_err().code(),
                IngestErrorCode::PdfCorrupt,
                "{name}"
            );
        } else if let Ok(e) = result {
            parsed += 1;
            assert!(e.sections.iter().all(|s| s.page.is_some()));
        }
    }
    assert_eq!(corrupt, 1, "the corrupt PDF was checked");
    assert!(
        parsed >= 3,
        "at least three of pdf-parse's real PDFs extract ({parsed})"
    );
}

#[test]
fn bad_inputs_fail_with_stable_codes() {
    let no_text = std::fs::read(root().join("fixtures/docs/no-text.pdf")).unwrap();
    assert_eq!(
        parse(&no_text, ContentType::Pdf, &ParseLimits::default())
            .unwrap_err()
            .code(),
        IngestErrorCode::PdfNoText
    );
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let code = detect(None, None, &random)
        .and_then(|ct| parse(&random, ct, &ParseLimits::default()))
        .unwrap_err()
        .code();
    assert!(
        matches!(
            code,
            IngestErrorCode::InvalidUtf8 | IngestErrorCode::UnsupportedMediaType
        ),
        "{code:?}"
    );
    assert_eq!(
        parse(b"", ContentType::Text, &ParseLimits::default())
            .unwrap_err()
            .code(),
        IngestErrorCode::EmptyDocument
    );
    assert_eq!(
        parse(
            b"<html><script>x</script></html>",
            ContentType::Html,
            &ParseLimits::default()
        )
        .unwrap_err()
        .code(),
        IngestErrorCode::EmptyDocument
    );
}

#[test]
fn real_embeddings_are_normalised_and_meaningful() {
    let ort = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| provisioned("ort/libonnxruntime.so.1.24.4"));
    let e = FastEmbedder::new(&EmbedderConfig {
        source: ModelSource::Local(model_dir()),
        ort_dylib: Some(ort),
        max_length: 256,
        batch_size: 8,
        intra_threads: 1,
        ingest_sessions: 2,
        ingest_sessions_busy: 1,
        ingest_nice: 0,
        query_sessions: 2,
        query_threads: 1,
    })
    .unwrap();
    assert_eq!(e.dim(), 384);
    let v = e
        .embed(
            Lane::Ingest,
            &[
                "How do I upgrade Debian?",
                "Upgrading a Debian system to a new release",
                "Puffins eat sand eels",
            ],
        )
        .unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for x in &v {
        assert!((dot(x, x) - 1.0).abs() < 1e-3);
    }
    assert!(
        dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.2,
        "related sentences must be closer"
    );
    // Same text, same vector, on either lane: what makes caching by content hash sound.
    let again = e.embed(Lane::Query, &["How do I upgrade Debian?"]).unwrap();
    assert!(dot(&again[0], &v[0]) > 0.9999);
    // Concurrent queries run on the session pool; each caller gets its own vectors back.
    let questions: Vec<String> = (0..12)
        .map(|i| format!("question number {i} about package {}", i * 7))
        .collect();
    let alone: Vec<Vec<f32>> = questions
        .iter()
        .map(|q| e.embed(Lane::Query, &[q.as_str()]).unwrap().remove(0))
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = questions
            .chunks(2)
            .map(|pair| {
                let e = &e;
                s.spawn(move || {
                    let refs: Vec<&str> = pair.iter().map(String::as_str).collect();
                    e.embed(Lane::Query, &refs).unwrap()
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            for (j, v) in h.join().unwrap().iter().enumerate() {
                assert!(dot(v, &alone[2 * i + j]) > 0.9999, "query {}", 2 * i + j);
            }
        }
    });
    // Ingestion callers share one queue served by both sessions; texts of different callers
    // are embedded together, and each caller gets its own vectors back, in order, also while
    // queries hold all but one session back.
    let running = e.query_activity().enter();
    std::thread::scope(|s| {
        let handles: Vec<_> = questions
            .chunks(5)
            .map(|part| {
                let e = &e;
                s.spawn(move || {
                    let refs: Vec<&str> = part.iter().map(String::as_str).collect();
                    e.embed(Lane::Ingest, &refs).unwrap()
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            for (j, v) in h.join().unwrap().iter().enumerate() {
                assert!(dot(v, &alone[5 * i + j]) > 0.9999, "text {}", 5 * i + j);
            }
        }
    });
    drop(running);
    assert_eq!(e.embed(Lane::Ingest, &[] as &[&str]).unwrap().len(), 0);
}

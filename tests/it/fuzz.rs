//! A bounded fuzzing run over the parsers, through the same sandbox the server uses: mutations
//! of real PDFs, HTML, Markdown and text (seeded, so a run is repeatable), plus every input that
//! once failed (`fixtures/fuzz-regressions/`). Every case must end with a stable code or
//! chunks; a worker that dies unexplained (`parser_crashed`) fails the run, and its input is
//! written to `target/fuzz-failures/` to be kept as a regression fixture.
//!
//! `TENANTRY_FUZZ_CASES` (default 3000) and `TENANTRY_FUZZ_SEED` change the run.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tenantry_ingest::{detect, hostile, ContentType, ParseLimits, Sandbox, SandboxConfig};

use crate::common::*;

const TOKENS: &[&[u8]] = &[
    b"<div>",
    b"</div>",
    b"<table><tr><td>",
    b"<h1>",
    b"</h1>",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"<svg><math>",
    b"&#x0;",
    b"&amp",
    b"# ",
    b"> ",
    b"- ",
    b"```",
    b"[x]: <",
    b"|---|",
    b"obj",
    b"endobj",
    b"stream\n",
    b"endstream",
    b"<<",
    b">>",
    b"[",
    b"]",
    b"/Type /Page",
    b"/Filter /FlateDecode",
    b"/Length 999999",
    b"0 R",
    b"1 0 R",
    b"/Fm0 Do",
    b"BT",
    b"ET",
    b"Tj",
    b"(",
    b")",
    b"\x00",
    b"\xff\xfe",
    b"\xe2\x80\xae",
    b"\n\n",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = out.len().max(1);
        match rng.below(8) {
            0 => {
                // Flip a byte.
                if !out.is_empty() {
                    let i = rng.below(out.len());
                    out[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(len).min(out.len());
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(i..i, t.iter().copied());
            }
            2 => {
                // Delete a run.
                let i = rng.below(len).min(out.len());
                let n = rng.below(64).min(out.len() - i);
                out.drain(i..i + n);
            }
            3 => {
                // Duplicate a run many times (nesting, repetition).
                let i = rng.below(len).min(out.len());
                let n = (1 + rng.below(32)).min(out.len() - i);
                let piece = out[i..i + n].to_vec();
                let times = 1 + rng.below(200);
                for _ in 0..times {
                    out.splice(i..i, piece.iter().copied());
                }
            }
            4 => {
                // Splice in part of another seed.
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + rng.below(256)).min(other.len());
                    let i = rng.below(len).min(out.len());
                    out.splice(i..i, other[a..b].iter().copied());
                }
            }
            5 => {
                // Truncate.
                let keep = rng.below(len);
                out.truncate(keep);
            }
            6 => {
                // Replace a digit run (object numbers, lengths, offsets).
                if let Some(i) = (0..out.len())
                    .skip(rng.below(len))
                    .find(|&i| out[i].is_ascii_digit())
                {
                    let n = rng.next() % 1_000_000;
                    out.splice(i..i + 1, n.to_string().into_bytes());
                }
            }
            _ => {
                let i = rng.below(len).min(out.len());
                let byte = (rng.next() & 0xff) as u8;
                out.insert(i, byte);
            }
        }
    }
    out
}

fn seeds() -> Vec<(String, ContentType, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| {
        if let Ok(ct) = detect(None, Some(&name), &bytes) {
            out.push((name, ct, bytes));
        }
    };
    for name in [
        "three-pages.pdf",
        "no-text.pdf",
        "page.html",
        "guide.md",
        "notes.txt",
    ] {
        add(name.to_string(), fixture(name));
    }
    for name in ["03-invalid.pdf", "04-valid.pdf"] {
        let p = provisioned(&format!("docs/pdf-parse/{name}"));
        add(name.to_string(), std::fs::read(p).unwrap());
    }
    let html = provisioned("docs/python-tutorial");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&html)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    pages.sort();
    for p in pages.into_iter().take(3) {
        add(
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&p).unwrap(),
        );
    }
    add("forms.pdf".into(), hostile::pdf_deep_forms(3));
    add("cycle.pdf".into(), hostile::pdf_self_drawing_form());
    add("nested.html".into(), hostile::html_nested("div", 50));
    add("nested.md".into(), hostile::markdown_nested(20));
    out
}

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        program: env!("CARGO_BIN_EXE_tenantry").into(),
        args: vec!["parse-worker".into()],
        tokenizer: provisioned("model/all-MiniLM-L6-v2/tokenizer.json"),
        chunk_tokens: 200,
        limits: ParseLimits::default(),
        timeout: Duration::from_secs(10),
        memory_bytes: 1 << 30,
        max_reply_bytes: 64 << 20,
    })
}

#[test]
fn parsers_survive_mutated_real_documents() {
    let cases: usize = env_or("TENANTRY_FUZZ_CASES", 3000);
    let seed: u64 = env_or("TENANTRY_FUZZ_SEED", 0x7e4a_47c1_2026_1201);
    let seeds = seeds();
    let sandbox = sandbox();
    let regressions = root().join("fixtures/fuzz-regressions");
    let mut inputs: Vec<(String, ContentType, Vec<u8>)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&regressions) {
        for e in dir {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            let ct = detect(None, Some(&name), &bytes).unwrap_or(ContentType::Text);
            inputs.push((name, ct, bytes));
        }
    }
    let replayed = inputs.len();
    let mut rng = Rng(seed | 1);
    for i in 0..cases {
        let (name, ct, bytes) = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())].2;
        inputs.push((
            format!("case{i}-{name}"),
            *ct,
            mutate(&mut rng, bytes, other),
        ));
    }

    let outcomes: Mutex<BTreeMap<&'static str, usize>> = Mutex::new(BTreeMap::new());
    let crashes: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let slowest = Mutex::new(Duration::ZERO);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((name, ct, bytes)) = inputs.get(i) else {
                    break;
                };
                let t = Instant::now();
                let code = match sandbox.run(bytes, *ct, name) {
                    Ok(_) => "ok",
                    Err(e) => e.code().as_str(),
                };
                let took = t.elapsed();
                {
                    let mut slow = slowest.lock().unwrap();
                    *slow = (*slow).max(took);
                }
                *outcomes.lock().unwrap().entry(code).or_default() += 1;
                if code == "parser_crashed" {
                    let dir = root().join("target/fuzz-failures");
                    std::fs::create_dir_all(&dir).unwrap();
                    let ext = match ct {
                        ContentType::Pdf => "pdf",
                        ContentType::Html => "html",
                        ContentType::Markdown => "md",
                        ContentType::Text => "txt",
                    };
                    let path = dir.join(format!("{}.{ext}", name.replace('.', "_")));
                    std::fs::write(&path, bytes).unwrap();
                    crashes.lock().unwrap().push(path.display().to_string());
                }
            });
        }
    });
    eprintln!(
        "fuzz: {} cases ({replayed} regressions, {cases} mutations of {} seeds, seed {seed}) in {:.1} s, slowest {:.2} s: {:?}",
        inputs.len(),
        seeds.len(),
        started.elapsed().as_secs_f64(),
        slowest.lock().unwrap().as_secs_f64(),
        outcomes.lock().unwrap()
    );
    let crashes = crashes.into_inner().unwrap();
    assert!(
        crashes.is_empty(),
        "the parse worker crashed on {} inputs; fix, then keep them in fixtures/fuzz-regressions/: {crashes:?}",
        crashes.len()
    );
}

/// A worker inherits no descriptor of the server's: a shard's WAL lock or an index lock held
/// by an idle worker would make the server's own reopen of it fail. (Checked through /proc:
/// other tests in this process spawn servers that may inherit the file below themselves.)
#[test]
fn workers_hold_none_of_the_servers_files() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let held = std::fs::File::create(&path).unwrap();
    // Like a library that opens without O_CLOEXEC.
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe {
        libc::fcntl(held.as_raw_fd(), libc::F_SETFD, 0);
    }
    let sandbox = sandbox();
    // The worker is spawned now, and stays idle (alive) in the pool afterwards.
    assert!(sandbox.run(b"hello", ContentType::Text, "t").is_ok());
    let me = std::process::id().to_string();
    let mut workers = 0;
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = proc_dir.path();
        let cmdline = std::fs::read(pid.join("cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(pid.join("status")).unwrap_or_default();
        let child_of_me = status
            .lines()
            .any(|l| l.strip_prefix("PPid:").is_some_and(|v| v.trim() == me));
        if !child_of_me || !cmdline.windows(12).any(|w| w == b"parse-worker") {
            continue;
        }
        workers += 1;
        for fd in std::fs::read_dir(pid.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            assert_ne!(target, path, "a parse worker holds the server's file");
        }
    }
    assert!(workers >= 1, "no parse worker found under /proc");
    drop(held);
}

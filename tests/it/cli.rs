//! The operator CLI on a data directory: tenants, keys, ingest (files and directories), query.
use std::process::Command;

use crate::common::*;

fn tenantry(data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(model_flags())
        .args(args)
        .env("TENANTRY_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn operator_commands_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, out) = tenantry(&data, &["tenants", "create", "acme"]);
    assert!(ok && out.contains("api key: tny_"), "{out}");
    let (ok, out) = tenantry(
        &data,
        &["ingest", "--tenant", "nobody", "fixtures/docs/notes.txt"],
    );
    assert!(!ok && out.contains("tenants create nobody"), "{out}");
    let docs = root().join("fixtures/docs");
    let (ok, out) = tenantry(
        &data,
        &["ingest", "--tenant", "acme", docs.to_str().unwrap()],
    );
    // no-text.pdf fails with its code; the rest succeed and the summary says so.
    assert!(!ok, "a failed document makes the exit status non-zero");
    assert!(
        out.contains("ingested 4 documents")
            && out.contains("1 failed")
            && out.contains("pdf_no_text"),
        "{out}"
    );
    let (ok, out) = tenantry(
        &data,
        &[
            "query",
            "--tenant",
            "acme",
            "fog horn lighthouse",
            "--top-k",
            "2",
        ],
    );
    assert!(
        ok && out.lines().next().unwrap_or("").contains("notes.txt"),
        "{out}"
    );
    let (ok, out) = tenantry(&data, &["tenants", "list"]);
    assert!(ok && out.contains("acme\t4 documents"), "{out}");
    let (ok, out) = tenantry(&data, &["keys", "create", "--tenant", "acme"]);
    let key_id = out
        .lines()
        .find_map(|l| l.strip_prefix("key id:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    assert!(ok && !key_id.is_empty(), "{out}");
    assert!(tenantry(&data, &["keys", "revoke", &key_id]).0);
    let (ok, out) = tenantry(&data, &["tenants", "delete", "acme"]);
    assert!(ok, "{out}");
    assert!(
        !data.join("lexical/acme").exists(),
        "tenant delete removes its lexical index"
    );
}

#[test]
fn eval_reports_every_variant_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unused");
    let dataset = root().join("fixtures/beir-tiny");
    let run = |n: usize| {
        let out = dir.path().join(format!("eval{n}.json"));
        let (ok, text) = tenantry(
            &data,
            &[
                "eval",
                dataset.to_str().unwrap(),
                "--json",
                out.to_str().unwrap(),
            ],
        );
        assert!(
            ok && text.contains("nDCG@10") && text.contains("3 queries"),
            "{text}"
        );
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out).unwrap()).unwrap()
    };
    let first = run(1);
    let variants = first["variants"].as_object().unwrap();
    for name in [
        "bm25",
        "dense",
        "hybrid (default)",
        "hybrid dbsf 1:1",
        "hybrid convex 1:1",
    ] {
        let row = &variants[name];
        for metric in ["ndcg_at_10", "recall_at_10", "recall_at_100", "mrr_at_10"] {
            let v = row[metric].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{name} {metric} {v}");
        }
    }
    // Four unambiguous documents: dense retrieval gets every first hit right.
    assert_eq!(variants["dense"]["mrr_at_10"].as_f64(), Some(1.0));
    assert_eq!(run(2), first, "two runs give identical numbers");
    assert!(
        !data.exists(),
        "eval works in a scratch directory, not the data directory"
    );
}

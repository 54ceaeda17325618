//! The operator CLI on a data directory: tenants, keys, ingest (files and directories), query.
use std::process::Command;

use crate::common::*;

fn tenantry(data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args([
            "--model-dir",
            provisioned("model/all-MiniLM-L6-v2").to_str().unwrap(),
        ])
        .args([
            "--ort-dylib",
            provisioned("ort/libonnxruntime.so.1.24.4")
                .to_str()
                .unwrap(),
        ])
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

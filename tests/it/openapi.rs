#[test]
fn committed_openapi_document_is_current() {
    let path = crate::common::root().join("schemas/openapi.json");
    let current = tenantry::api::openapi_json_string();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "schemas/openapi.json is stale: run `make openapi` and commit it"
    );
}

/// Schemathesis (installed by `make setup`) against the running server, with a tenant key and
/// with the admin key: every operation, valid and invalid inputs, every check. A failure is
/// either a server error or a place where `schemas/openapi.json` does not tell the truth.
#[test]
fn schemathesis_finds_no_failures() {
    use crate::common::{provisioned, Server, ADMIN};
    let st = provisioned("venv/bin/schemathesis");
    let dir = tempfile::tempdir().unwrap();
    // Rate limits answer 429 (documented) and would only cut the run short.
    let server = Server::start_with(
        dir.path(),
        &[
            ("TENANTRY_LIMITS__QUERY_PER_SEC", "0"),
            ("TENANTRY_LIMITS__INGEST_PER_SEC", "0"),
        ],
    );
    let tenant = server.create_tenant("acme");
    server.ingest_text(
        &tenant,
        "fjords",
        "Glaciers carve fjords into the coast over many ice ages.",
    );
    let schema = crate::common::root().join("schemas/openapi.json");
    let reports = dir.path().join("schemathesis");
    let mut failed = Vec::new();
    // Coverage and fuzzing phases: valid and invalid inputs, every check. Stateful phase (links
    // between operations: a created resource must be readable, a deleted one gone): every check
    // but negative-data rejection, which Schemathesis 4.32.5 misapplies there (it reported a
    // POST /v1/documents it generated as positive, with a valid PDF and a surrogate-pair escape
    // in the multipart metadata, as "schema-violating request accepted" while naming no violated
    // constraint); negative inputs are what the first two phases generate.
    let runs: [(&str, &[&str]); 2] = [
        ("coverage,fuzzing", &[]),
        ("stateful", &["--exclude-checks", "negative_data_rejection"]),
    ];
    for (who, key) in [("tenant", tenant.as_str()), ("admin", ADMIN)] {
        for (phases, extra) in runs {
            let out = std::process::Command::new(&st)
                .arg("--config-file")
                .arg(crate::common::root().join("schemas/schemathesis.toml"))
                .arg("run")
                .arg(&schema)
                .args(["--url", &server.base])
                .args(["--header", &format!("Authorization: Bearer {key}")])
                .args(["--phases", phases, "--checks", "all"])
                .args(extra)
                .args(["--max-examples", "10", "--seed", "20261201"])
                // One worker: CPython 3.11's parser is not thread-safe for Hypothesis's lambda
                // descriptions ("AST constructor recursion depth mismatch" with two).
                .args(["--workers", "1", "--request-timeout", "60"])
                .args(["--generation-database", "none", "--no-color"])
                .arg("--report-dir")
                .arg(reports.join(who))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let summary: Vec<&str> = stdout
                .lines()
                .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failed"))
                .collect();
            println!(
                "schemathesis ({who} key, {phases}): {}",
                summary.join(" | ")
            );
            if !out.status.success() {
                failed.push(format!(
                    "--- {who} key, {phases} ---\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "Schemathesis failures:\n{}",
        failed.join("\n")
    );
}

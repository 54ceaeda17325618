//! The container recipe (`Containerfile`), checked without a container engine (none runs on
//! these machines): hadolint lints it, and its runtime stage runs against a scratch root: the
//! files its `COPY --from=build` lines name are copied where it puts them, the server starts
//! with exactly the recipe's `ENV` (paths moved under the scratch root) plus secrets mounted as
//! files, as the recipe's non-root `USER`, with everything but the data directory read-only,
//! and the recipe's own `HEALTHCHECK` command must pass.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

struct Runtime {
    copies: Vec<(String, String)>,
    env: BTreeMap<String, String>,
    user: Option<(u32, u32)>,
    healthcheck: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

/// Instructions of the last stage, continuation lines joined, comments dropped.
fn runtime_stage(text: &str) -> Runtime {
    let mut lines: Vec<String> = vec![];
    let mut cur = String::new();
    for raw in text.lines() {
        let l = raw.trim();
        if l.starts_with('#') || (l.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(l);
            lines.push(std::mem::take(&mut cur));
        }
    }
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    let json = |s: &str| -> Vec<String> {
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("exec form expected: {s}: {e}"))
    };
    let mut rt = Runtime {
        copies: vec![],
        env: BTreeMap::new(),
        user: None,
        healthcheck: vec![],
        entrypoint: vec![],
        cmd: vec![],
    };
    for l in &lines[last_from + 1..] {
        let (op, rest) = l.split_once(' ').unwrap_or((l, ""));
        match op {
            "COPY" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                assert_eq!(parts[0], "--from=build", "{l}");
                rt.copies.push((parts[1].to_string(), parts[2].to_string()));
            }
            "ENV" => {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').expect("ENV key=value");
                    rt.env.insert(k.to_string(), v.to_string());
                }
            }
            "USER" => {
                let (u, g) = rest.split_once(':').unwrap_or((rest, rest));
                rt.user = Some((u.parse().unwrap(), g.parse().unwrap()));
            }
            "HEALTHCHECK" => {
                let cmd = rest.split_once("CMD").expect("HEALTHCHECK CMD").1;
                rt.healthcheck = json(cmd);
            }
            "ENTRYPOINT" => rt.entrypoint = json(rest),
            "CMD" => rt.cmd = json(rest),
            _ => {}
        }
    }
    rt
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

fn chmod_tree(p: &Path, dir_mode: u32, file_mode: Option<u32>) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(p).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chmod_tree(&e.unwrap().path(), dir_mode, file_mode);
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    } else if let Some(m) = file_mode {
        let exec = meta.permissions().mode() & 0o111 != 0;
        let mode = if exec { m | 0o111 } else { m };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[test]
fn containerfile_lints_clean() {
    let hadolint = provisioned("venv/bin/hadolint");
    let out = Command::new(hadolint)
        .arg(root().join("Containerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn containerfile_runtime_stage_serves_from_a_read_only_root() {
    let rt = runtime_stage(&std::fs::read_to_string(root().join("Containerfile")).unwrap());
    let (uid, gid) = rt.user.expect("the recipe names a USER");
    assert_ne!(uid, 0, "the image runs as a non-root user");
    let scratch = tempfile::tempdir().unwrap();
    let sroot = scratch.path().join("root");
    for (src, dst) in &rt.copies {
        let from = root().join(
            src.strip_prefix("/src/")
                .expect("build paths are under /src"),
        );
        let from = if src.ends_with("target/release/tenantry") {
            PathBuf::from(env!("CARGO_BIN_EXE_tenantry"))
        } else {
            from
        };
        copy_tree(&from, &sroot.join(dst.trim_start_matches('/')));
    }
    let inside = |p: &str| sroot.join(p.trim_start_matches('/'));
    let data = inside(&rt.env["TENANTRY_DATA_DIR"]);
    std::fs::create_dir_all(&data).unwrap();
    // Secrets are mounted as files, named by TENANTRY_<KEY>_FILE.
    let secrets = scratch.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let admin = "adm_container_check_0123456789abcdef";
    std::fs::write(secrets.join("admin_key"), format!("{admin}\n")).unwrap();
    std::fs::write(secrets.join("master_key"), format!("{}\n", "ab".repeat(32))).unwrap();

    // SAFETY: geteuid only reads the process credentials.
    let is_root = unsafe { libc::geteuid() } == 0;
    // Read-only everywhere but the data directory: what `--read-only` gives the container.
    chmod_tree(&sroot, 0o555, Some(0o444));
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["admin_key", "master_key"] {
            std::fs::set_permissions(secrets.join(f), std::fs::Permissions::from_mode(0o444))
                .unwrap();
        }
    }
    if is_root {
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
    }

    let port = free_port();
    let mut env: Vec<(String, String)> = rt
        .env
        .iter()
        .map(|(k, v)| {
            let v = if k == "TENANTRY_LISTEN" {
                format!("127.0.0.1:{port}")
            } else if v.starts_with('/') {
                inside(v).display().to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    env.push((
        "TENANTRY_ADMIN_KEY_FILE".into(),
        secrets.join("admin_key").display().to_string(),
    ));
    env.push((
        "TENANTRY_MASTER_KEY_FILE".into(),
        secrets.join("master_key").display().to_string(),
    ));
    env.push(("TENANTRY_LOG".into(), "warn".into()));
    let command = |argv: &[String]| {
        let exe = inside(&argv[0]);
        let mut c = if is_root {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "--",
            ])
            .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().cloned())
            .current_dir("/");
        c
    };
    let argv: Vec<String> = rt.entrypoint.iter().chain(&rt.cmd).cloned().collect();
    let mut server = command(&argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ok = command(&rt.healthcheck)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if ok {
            break;
        }
        if let Ok(Some(status)) = server.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the server exited ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "HEALTHCHECK never passed");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The admin key came from the mounted secret file.
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/tenants"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"id": "boxed"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let _ = server.kill();
    let _ = server.wait();
    // Everything the server wrote is in the data directory.
    assert!(data.join("catalog.sqlite3").exists());
    chmod_tree(&sroot, 0o755, None);
}

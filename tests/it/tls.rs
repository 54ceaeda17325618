//! HTTPS in `tenantry serve`: a self-signed certificate made by the test (openssl), a client that
//! trusts only it, plain HTTP refused on the TLS port, the container's health check over TLS,
//! and SIGHUP: a renewed certificate serves new connections, a broken one is refused and the
//! current one stays.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A test CA and a server certificate it signs for 127.0.0.1 (rustls, like browsers, refuses a
/// CA certificate used as the server's own). Returns the CA's PEM, which clients trust.
fn make_cert(dir: &Path, name: &str) -> Vec<u8> {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's openssl package) makes the test certificates");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = format!("{name}-ca");
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    let subj = format!("/CN=tenantry test CA {name}");
    let mut args = vec![
        "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &ca_key,
    ];
    args.extend(ec);
    args.extend(["-out", &ca_crt]);
    openssl(&args);
    let (csr, key, crt) = (
        format!("{name}.csr"),
        format!("{name}.key"),
        format!("{name}.crt"),
    );
    let mut args = vec![
        "req",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &csr,
    ];
    args.extend(ec);
    openssl(&args);
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &crt,
    ]);
    std::fs::read(dir.join(ca_crt)).unwrap()
}

/// Put `name`'s pair where the server reads its certificate.
fn install(dir: &Path, name: &str) {
    for ext in ["crt", "key"] {
        std::fs::copy(
            dir.join(format!("{name}.{ext}")),
            dir.join(format!("server.{ext}")),
        )
        .unwrap();
    }
}

fn client(trusted: &[u8]) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(trusted).unwrap())
        // A new connection (and handshake) per request: what SIGHUP changes.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hup(child: &Child) {
    // SAFETY: kill only sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
}

#[test]
fn https_with_a_certificate_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    let first = make_cert(certs, "first");
    let renewed = make_cert(certs, "renewed");
    install(certs, "first");
    let port = free_port();
    let tls_env = [
        ("TENANTRY_TLS__CERT_FILE", certs.join("server.crt")),
        ("TENANTRY_TLS__KEY_FILE", certs.join("server.key")),
    ];
    let server = Kill(
        serve_command(&certs.join("data"), port)
            .envs(tls_env.iter().map(|(k, v)| (k, v.as_os_str())))
            .env("TENANTRY_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client(&first)
        .get(&url)
        .send()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "no HTTPS answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send();
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // The container's HEALTHCHECK command speaks TLS when TLS is configured.
    let status = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("healthcheck")
        .envs(tls_env.iter().map(|(k, v)| (k, v.as_os_str())))
        .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
        .status()
        .unwrap();
    assert!(status.success());
    // A client that trusts only the renewed certificate fails until the reload.
    assert!(client(&renewed).get(&url).send().is_err());

    install(certs, "renewed");
    hup(&server.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client(&renewed)
        .get(&url)
        .send()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        client(&first).get(&url).send().is_err(),
        "the old certificate is gone"
    );

    // A broken certificate file: the reload is refused and the current certificate stays.
    std::fs::write(certs.join("server.crt"), "not a certificate").unwrap();
    hup(&server.0);
    std::thread::sleep(Duration::from_millis(500));
    let r = client(&renewed).get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_bad_certificate_fails_the_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.crt"), "junk").unwrap();
    std::fs::write(dir.path().join("x.key"), "junk").unwrap();
    let out = serve_command(&dir.path().join("data"), free_port())
        .env("TENANTRY_TLS__CERT_FILE", dir.path().join("x.crt"))
        .env("TENANTRY_TLS__KEY_FILE", dir.path().join("x.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls.cert_file"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

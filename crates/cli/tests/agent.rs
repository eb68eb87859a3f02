//! End-to-end tests of `steward cert` and `steward agent` against the real binary over HTTPS:
//! the agent keeps short-lived certificates and a certificate-bound token fresh while the server
//! is stopped and restarted; files on disk are never partial and are renewed before expiry.
// In tests a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use steward_crypto::x509;

const BIN: &str = env!("CARGO_BIN_EXE_steward");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `steward serve` (HTTPS, the default) and waits until it answers with its own CA.
async fn serve(data: &Path, port: u16) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(bundle) = std::fs::read_to_string(data.join("ca-bundle.pem")) {
            let c = reqwest::Client::builder()
                .tls_certs_only(reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap())
                .build()
                .unwrap();
            if let Ok(r) = c
                .get(format!("https://127.0.0.1:{port}/healthz"))
                .send()
                .await
                && r.status().is_success()
            {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cli(creds: &Path, cache: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--credentials")
        .arg(creds)
        .args(args)
        .env("STEWARD_CACHE_DIR", cache)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A workload with a credentials file: (identity id, credentials path).
fn workload(data: &Path, cache: &Path, name: &str) -> (String, PathBuf) {
    let admin = data.join("admin-credentials.json");
    let (ok, out, err) = cli(
        &admin,
        cache,
        &[
            "--json",
            "owner",
            "add",
            &format!("team-{name}"),
            "--contact",
            "a@example.com",
        ],
    );
    assert!(ok, "{err}");
    let owner = json_of(&out)["id"].as_str().unwrap().to_owned();
    let (ok, out, err) = cli(
        &admin,
        cache,
        &[
            "--json",
            "identity",
            "create",
            name,
            "--kind",
            "workload",
            "--owner",
            &owner,
            "--env",
            "prod",
            "--purpose",
            "agent test",
            "--expires",
            "30d",
            "--scope",
            "app:read",
            "--default-scope",
            "app:read",
        ],
    );
    assert!(ok, "{err}");
    let id = json_of(&out)["id"].as_str().unwrap().to_owned();
    let file = data.with_extension(format!("{name}.json"));
    let (ok, _, err) = cli(
        &admin,
        cache,
        &["credential", "create", &id, "--out", file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let creds = json_of(&std::fs::read_to_string(&file).unwrap());
    assert!(
        creds["ca_bundle"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE"),
        "the bundle is passed on"
    );
    (id, file)
}

/// Reads cert.pem and key.pem; panics if either is ever partial. Returns the leaf summary.
fn read_whole(dir: &Path) -> Option<x509::CertSummary> {
    let cert = std::fs::read_to_string(dir.join("cert.pem")).ok()?;
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----")
            && key.trim_end().ends_with("-----END PRIVATE KEY-----"),
        "partial key.pem: {key:?}"
    );
    let ders = x509::certificates_from_pem_or_der(cert.as_bytes())
        .unwrap_or_else(|e| panic!("partial cert.pem ({e}): {cert:?}"));
    assert_eq!(ders.len(), 2, "leaf + issuing CA");
    Some(x509::parse_certificate(&ders[0]).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_issue_and_renew_write_usable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let _srv = serve(&data, free_port()).await;
    let (_, creds) = workload(&data, &cache, "issuer-app");
    let out_dir = tmp.path().join("certs");
    let (ok, out, err) = cli(
        &creds,
        &cache,
        &[
            "--json",
            "cert",
            "issue",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--ttl",
            "10m",
        ],
    );
    assert!(ok, "{err}");
    let v = json_of(&out);
    assert!(
        v["spiffe_id"]
            .as_str()
            .unwrap()
            .ends_with("/prod/workload/issuer-app")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out_dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let first = read_whole(&out_dir).unwrap();
    let o = Command::new("openssl")
        .args(["verify", "-CAfile", "bundle.pem", "cert.pem"])
        .current_dir(&out_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let (ok, _, err) = cli(
        &creds,
        &cache,
        &["cert", "renew", "--out-dir", out_dir.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let second = read_whole(&out_dir).unwrap();
    assert_ne!(first.serial, second.serial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_files_fresh_across_a_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let port = free_port();
    let srv = serve(&data, port).await;
    let (_, creds) = workload(&data, &cache, "agent-app");
    let dir = tmp.path().join("agent");
    let hook_log = tmp.path().join("hook.log");
    let agent_log = std::fs::File::create(tmp.path().join("agent.log")).unwrap();
    let _agent = Proc(
        Command::new(BIN)
            .arg("--credentials")
            .arg(&creds)
            .args([
                "agent",
                "--out-dir",
                dir.to_str().unwrap(),
                "--ttl",
                "8",
                "--max-backoff-secs",
                "1",
                "--reload",
                &format!("echo reloaded >> {}", hook_log.display()),
            ])
            .stdout(Stdio::null())
            .stderr(agent_log)
            .spawn()
            .unwrap(),
    );
    // Watch the files: every read must be whole; record when each new certificate appears.
    let mut seen: Vec<(x509::CertSummary, time::OffsetDateTime)> = vec![];
    let watch = |until: Instant, seen: &mut Vec<(x509::CertSummary, time::OffsetDateTime)>| {
        while Instant::now() < until {
            if let Some(s) = read_whole(&dir)
                && seen.last().is_none_or(|(l, _)| l.serial != s.serial)
            {
                seen.push((s, time::OffsetDateTime::now_utc()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    watch(Instant::now() + Duration::from_secs(14), &mut seen);
    // Issued for 8 s (notBefore backdated by a minute), renewed 3.2–4.8 s after issuance: about
    // four certificates in 14 s, and never a renewal loop.
    assert!(
        (3..=8).contains(&seen.len()),
        "renewed at about half the lifetime: {} certificates",
        seen.len()
    );
    for w in seen.windows(2) {
        assert!(
            w[1].1 < w[0].0.not_after,
            "renewed before expiry: {:?} vs {:?}",
            w[1].1,
            w[0].0.not_after
        );
    }
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    // Stop the server long enough for the certificate to expire; the agent retries meanwhile.
    drop(srv);
    // A renewal already answered before the kill may still be writing its files: let it land.
    watch(Instant::now() + Duration::from_secs(1), &mut seen);
    let before = seen.len();
    watch(Instant::now() + Duration::from_secs(10), &mut seen);
    assert_eq!(seen.len(), before, "nothing new while the server is down");
    assert!(
        seen.last().unwrap().0.not_after < time::OffsetDateTime::now_utc(),
        "the certificate expired meanwhile"
    );
    let _srv = serve(&data, port).await;
    // Generous: on a loaded CI machine the debug server's first requests can be slow.
    let deadline = Instant::now() + Duration::from_secs(45);
    while seen.len() == before && Instant::now() < deadline {
        watch(Instant::now() + Duration::from_millis(200), &mut seen);
    }
    let (last, _) = seen.last().unwrap();
    assert!(
        last.not_after > time::OffsetDateTime::now_utc(),
        "re-authenticated after the restart: {last:?}\nagent log:\n{}",
        std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default()
    );
    let hooks = std::fs::read_to_string(&hook_log).unwrap();
    assert!(
        hooks.lines().count() >= 3,
        "the reload hook ran after renewals: {hooks:?}"
    );
    // The token on disk is certificate-bound to the certificate on disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&steward_crypto::b64::url_decode(payload).unwrap()).unwrap();
    assert!(claims["cnf"]["x5t#S256"].is_string(), "{claims}");
}

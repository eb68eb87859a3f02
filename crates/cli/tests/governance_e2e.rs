//! The governance commands of the real `steward` binary against a real server: `findings --run`,
//! `findings` (table and JSON), `findings accept`, `identity right-size`, `identity risk` and
//! `report` in every format.
// In tests a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_steward");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(data: &Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--insecure-http"])
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Server(cmd.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/healthz")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, url)
}

fn cli(data: &Path, url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--credentials")
        .arg(data.join("admin-credentials.json"))
        .args(["--server", url])
        .args(args)
        .env("STEWARD_CACHE_DIR", data.with_extension("cache"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

#[tokio::test]
async fn findings_right_size_risk_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, url) = serve(&data).await;
    let owner: Value = serde_json::from_str(&ok(cli(
        &data,
        &url,
        &[
            "--json",
            "owner",
            "add",
            "team-payments",
            "--contact",
            "p@example.com",
        ],
    )))
    .unwrap();
    let owner = owner["id"].as_str().unwrap();
    let app: Value = serde_json::from_str(&ok(cli(
        &data,
        &url,
        &[
            "--json",
            "identity",
            "create",
            "payments-api",
            "--kind",
            "workload",
            "--owner",
            owner,
            "--env",
            "prod",
            "--purpose",
            "charges cards",
            "--expires",
            "90d",
            "--scope",
            "payments:read",
            "--scope",
            "payments:admin",
            "--allow-source",
            "10.0.0.0/8",
        ],
    )))
    .unwrap();
    assert_eq!(
        app["allowed_source_cidrs"],
        serde_json::json!(["10.0.0.0/8"])
    );
    let app = app["id"].as_str().unwrap();

    let run = ok(cli(&data, &url, &["findings", "--run"]));
    assert!(run.contains("raised"), "{run}");
    let table = ok(cli(&data, &url, &["findings", "--identity", app]));
    assert!(table.contains("wildcard_or_admin_scope_in_prod"), "{table}");
    assert!(table.contains("NHI5:2025"));
    let list: Value = serde_json::from_str(&ok(cli(
        &data,
        &url,
        &[
            "--json",
            "findings",
            "--type",
            "wildcard_or_admin_scope_in_prod",
            "--all",
        ],
    )))
    .unwrap();
    let mine: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["identity_id"] == app)
        .collect();
    assert_eq!(mine.len(), 1);
    let fid = mine[0]["id"].as_str().unwrap();
    let accepted: Value = serde_json::from_str(&ok(cli(
        &data,
        &url,
        &[
            "--json",
            "findings",
            "accept",
            fid,
            "--until",
            "30d",
            "--reason",
            "break-glass role",
        ],
    )))
    .unwrap();
    assert_eq!(accepted["status"], "accepted");

    let rs = ok(cli(&data, &url, &["identity", "right-size", app]));
    assert!(
        rs.contains("too_young") && rs.contains("Nothing to reduce"),
        "{rs}"
    );
    let rs: Value = serde_json::from_str(&ok(cli(
        &data,
        &url,
        &["--json", "identity", "right-size", app, "--apply"],
    )))
    .unwrap();
    assert_eq!(rs["applied"], false);
    let risk = ok(cli(&data, &url, &["identity", "risk", app]));
    assert!(risk.contains("wildcard_or_admin_scope_in_prod"), "{risk}");

    let md = ok(cli(&data, &url, &["report"]));
    assert!(md.starts_with("# Steward posture report"), "{md}");
    let out = dir.path().join("report.html");
    ok(cli(
        &data,
        &url,
        &["report", "--format", "html", "--out", out.to_str().unwrap()],
    ));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"));
    let json: Value =
        serde_json::from_str(&ok(cli(&data, &url, &["report", "--format", "json"]))).unwrap();
    assert_eq!(json["findings"]["accepted"], 1);
    let bad = cli(&data, &url, &["report", "--format", "pdf"]);
    assert_ne!(bad.0, 0);
}

//! The real `steward` binary against a real server: `steward review|jit|exception`, the
//! vendor-wide `identity retire --vendor` and `identity offboarding`, in JSON and table output.
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
    let child = Command::new(BIN)
        .args(["serve", "--insecure-http", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{url}/healthz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Server(child), url)
}

/// Runs the CLI as the bootstrap admin; returns (exit code, stdout, stderr).
fn cli(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--credentials")
        .arg(data.join("admin-credentials.json"))
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

/// Runs the CLI with `--json`, which must succeed; returns the parsed output.
fn json(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = cli(data, &all);
    assert_eq!(code, 0, "steward {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("steward {args:?}: {e}: {out}"))
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn review_jit_exception_and_vendor_retire_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _url) = serve(&data).await;

    let owner = s(
        &json(
            &data,
            &["owner", "add", "team-cli", "--contact", "cli@example.com"],
        ),
        "id",
    );
    let app = s(
        &json(
            &data,
            &[
                "identity",
                "create",
                "cli-app",
                "--kind",
                "workload",
                "--owner",
                &owner,
                "--env",
                "staging",
                "--purpose",
                "cli test",
                "--expires",
                "30d",
                "--scope",
                "a:read",
                "--scope",
                "a:write",
            ],
        ),
        "id",
    );

    // Reviews: create, show (table), decide, export as CSV.
    let review = json(
        &data,
        &[
            "review",
            "create",
            "cli review",
            "--deadline",
            "7d",
            "--env",
            "staging",
        ],
    );
    assert_eq!(review["items_total"], 1);
    let rid = s(&review, "id");
    let (code, table, _) = cli(&data, &["review", "show", &rid]);
    assert_eq!(code, 0);
    assert!(
        table.contains("DECISION") && table.contains("cli-app"),
        "{table}"
    );
    let item = json(
        &data,
        &[
            "review",
            "decide",
            &rid,
            "--identity",
            &app,
            "--decision",
            "reduce",
            "--scope",
            "a:read",
            "--justification",
            "read only",
        ],
    );
    assert_eq!(item["outcome"], "scopes_reduced");
    let (code, csv, _) = cli(&data, &["review", "export", &rid, "--format", "csv"]);
    assert_eq!(code, 0);
    assert!(csv.starts_with("review_id,review_name,"), "{csv}");
    assert_eq!(csv.lines().count(), 2);
    let (code, table, _) = cli(&data, &["review", "list"]);
    assert_eq!(code, 0);
    assert!(table.contains("cli review"), "{table}");

    // JIT: the requester cannot approve their own request.
    let g = json(
        &data,
        &[
            "jit",
            "request",
            &app,
            "--scope",
            "a:admin",
            "--duration",
            "30m",
            "--reason",
            "incident",
        ],
    );
    assert_eq!(g["status"], "pending");
    assert_eq!(g["duration_secs"], 1800);
    let (code, _, err) = cli(&data, &["jit", "approve", &s(&g, "id")]);
    assert_eq!(code, 1);
    assert!(err.contains("separation_of_duties"), "{err}");
    let (code, table, _) = cli(&data, &["jit", "list", "--status", "pending"]);
    assert_eq!(code, 0);
    assert!(table.contains("a:admin"), "{table}");
    let denied = json(
        &data,
        &["jit", "deny", &s(&g, "id"), "--reason", "withdrawn"],
    );
    assert_eq!(denied["status"], "denied");

    // Exceptions: a request waits for someone else.
    let x = json(
        &data,
        &[
            "exception",
            "request",
            &app,
            "--for",
            "dormant",
            "--reason",
            "batch job",
            "--expires",
            "10d",
        ],
    );
    assert_eq!(x["status"], "pending");
    let pending = json(&data, &["exception", "list", "--status", "pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    let (code, _, err) = cli(&data, &["exception", "approve", &s(&x, "id")]);
    assert_eq!(code, 1);
    assert!(err.contains("separation_of_duties"), "{err}");

    // Vendor-wide retire, then the offboarding evidence.
    let vid = s(
        &json(
            &data,
            &[
                "identity",
                "create",
                "acme-sync",
                "--kind",
                "integration",
                "--owner",
                &owner,
                "--env",
                "staging",
                "--purpose",
                "acme sync",
                "--expires",
                "30d",
                "--vendor",
                "acme",
            ],
        ),
        "id",
    );
    let key = json(&data, &["credential", "create", &vid]);
    let out = json(
        &data,
        &[
            "identity",
            "retire",
            "--vendor",
            "acme",
            "--reason",
            "acme breach",
        ],
    );
    assert_eq!(out["offboarded"].as_array().unwrap().len(), 1);
    let ev = json(&data, &["identity", "offboarding", &vid]);
    assert_eq!(ev["credentials_revoked"][0], key["id"]);
    assert_eq!(ev["reason"], "acme breach");
    let (code, _, err) = cli(&data, &["identity", "retire"]);
    assert_ne!(code, 0, "an id or --vendor is required: {err}");
}

//! End-to-end test of the real `steward` binary for federation: `steward trust-policy
//! create|list|show|update|explain|delete` (tables and `--json`) and `steward token-exchange`.
// In tests a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_steward");

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(data: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--insecure-http"])
        .args([
            "--max-delegation-depth",
            "2",
            "--jwks-cache-ttl-secs",
            "120",
        ])
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    Server { child, url }
}

fn cli(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--credentials")
        .arg(data.join("admin-credentials.json"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(data: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (code, out, err) = cli(data, &a);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("{args:?} printed no JSON: {out}"))
}

#[tokio::test]
async fn trust_policy_commands_and_token_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data).await;
    let owner = json_of(
        &data,
        &["owner", "add", "team-ci", "--contact", "ci@example.com"],
    );
    let ident = json_of(
        &data,
        &[
            "identity",
            "create",
            "deployer",
            "--kind",
            "pipeline",
            "--owner",
            owner["id"].as_str().unwrap(),
            "--env",
            "prod",
            "--purpose",
            "deploys",
            "--expires",
            "30d",
            "--scope",
            "deploy:read",
        ],
    );
    let id = ident["id"].as_str().unwrap();
    // --may-act reaches the identity.
    let agent = json_of(
        &data,
        &[
            "identity",
            "create",
            "agent",
            "--kind",
            "agent",
            "--owner",
            owner["id"].as_str().unwrap(),
            "--env",
            "prod",
            "--purpose",
            "acts",
            "--expires",
            "30d",
        ],
    );
    let updated = json_of(
        &data,
        &[
            "identity",
            "update",
            id,
            "--may-act",
            agent["id"].as_str().unwrap(),
        ],
    );
    assert_eq!(updated["may_act"], json!([agent["id"]]));

    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        json!({"name": "gh", "preset": "github_actions", "audiences": ["https://steward.test"],
               "identity": id, "allow": [{"conditions": [{"claim": "repository", "equals": "octo-org/app"}]}]})
        .to_string(),
    )
    .unwrap();
    let created = json_of(
        &data,
        &["trust-policy", "create", "--file", policy.to_str().unwrap()],
    );
    let pid = created["id"].as_str().unwrap();
    assert_eq!(
        created["issuer"],
        "https://token.actions.githubusercontent.com"
    );
    // A policy that does not pin the repository is refused with the reason.
    std::fs::write(
        &policy,
        json!({"name": "loose", "preset": "github_actions", "audiences": ["a"], "identity": id,
               "allow": [{"conditions": [{"claim": "ref", "equals": "refs/heads/main"}]}]})
        .to_string(),
    )
    .unwrap();
    let (code, _, err) = cli(
        &data,
        &["trust-policy", "create", "--file", policy.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("must pin the repository or its owner"),
        "{err}"
    );

    let list = json_of(&data, &["trust-policy", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (code, table, _) = cli(&data, &["trust-policy", "list"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("ID") && table.contains("github_actions"),
        "{table}"
    );
    assert_eq!(json_of(&data, &["trust-policy", "show", pid])["name"], "gh");
    let off = json_of(&data, &["trust-policy", "update", pid, "--disable"]);
    assert_eq!(
        (off["enabled"].as_bool(), off["version"].as_i64()),
        (Some(false), Some(2))
    );

    // Explain a token from another issuer: refused (exit 2), with the failing check.
    let admin_token = dir.path().join("admin.jwt");
    let (code, tok, err) = cli(&data, &["token"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(&admin_token, tok.trim()).unwrap();
    let (code, out, _) = cli(
        &data,
        &[
            "trust-policy",
            "explain",
            pid,
            "--token",
            admin_token.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        out.starts_with("REFUSED") && out.contains("issuer"),
        "{out}"
    );
    let (code, out, _) = cli(
        &data,
        &[
            "--json",
            "trust-policy",
            "explain",
            pid,
            "--token",
            admin_token.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["checks"][0]["check"], "issuer");

    // token-exchange: down-scope the admin's own token (no client credentials needed).
    let (code, out, err) = cli(
        &data,
        &[
            "--json",
            "--server",
            &server.url,
            "token-exchange",
            "--subject-token",
            admin_token.to_str().unwrap(),
            "--subject-token-type",
            "access_token",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let (code, _, err) = cli(
        &data,
        &[
            "--server",
            &server.url,
            "token-exchange",
            "--subject-token",
            admin_token.to_str().unwrap(),
            "--subject-token-type",
            "access_token",
            "--scope",
            "steward:read",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("invalid_scope"), "{err}");

    let (code, out, _) = cli(&data, &["trust-policy", "delete", pid]);
    assert_eq!(code, 0);
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(json_of(&data, &["trust-policy", "list"]), json!([]));
}

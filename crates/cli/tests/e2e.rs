//! End-to-end tests of the real `steward` binary: audit-log tampering caught by `steward audit verify`,
//! and a SIGKILL in the middle of a stream of writes losing nothing that was acknowledged.
// In tests a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_steward");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

async fn serve(data: &Path, port: u16) -> Server {
    let log = std::fs::File::create(data.with_extension(format!("log-{port}"))).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // These tests talk plain HTTP on loopback; HTTPS is covered by tests/agent.rs.
        .arg("--insecure-http")
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
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

/// Runs the CLI; returns (exit code, stdout, stderr).
fn cli(data: &Path, server: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.arg("--credentials")
        .arg(data.join("admin-credentials.json"));
    if let Some(s) = server {
        c.args(["--server", s]);
    }
    let out = c
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

async fn sql(data: &Path, statements: &[&str]) {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.join("steward.db"))
        .connect()
        .await
        .unwrap();
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(*s))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn audit_verify_catches_every_kind_of_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let srv = serve(&data, free_port()).await;
    let (code, out, err) = cli(
        &data,
        None,
        &[
            "--json",
            "owner",
            "add",
            "team-a",
            "--contact",
            "a@example.com",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let owner: Value = serde_json::from_str(&out).unwrap();
    let owner = owner["id"].as_str().unwrap().to_owned();
    for n in 0..6 {
        let name = format!("svc-{n}");
        let (code, out, err) = cli(
            &data,
            None,
            &[
                "identity",
                "create",
                &name,
                "--kind",
                "workload",
                "--owner",
                &owner,
                "--env",
                "prod",
                "--purpose",
                "test",
                "--expires",
                "30d",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, cp, err) = cli(&data, None, &["audit", "checkpoint"]);
    assert_eq!(code, 0, "{err}");
    let cp_path = tmp.path().join("checkpoint.json");
    std::fs::write(&cp_path, &cp).unwrap();
    let size = serde_json::from_str::<Value>(&cp).unwrap()["size"]
        .as_u64()
        .unwrap();
    assert!(size >= 10, "log has {size} records");
    drop(srv);
    let cp_arg = cp_path.to_str().unwrap();
    // The untouched log verifies.
    let (code, out, err) = cli(
        &data,
        None,
        &[
            "audit",
            "verify",
            "--data-dir",
            data.to_str().unwrap(),
            "--checkpoint",
            cp_arg,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit log OK"), "{out}");
    let cases: Vec<(&str, Vec<String>, u64, &str)> = vec![
        (
            "edited",
            vec!["UPDATE audit SET reason = 'nothing to see' WHERE seq = 4".into()],
            4,
            "modified",
        ),
        (
            "deleted",
            vec!["DELETE FROM audit WHERE seq = 5".into()],
            5,
            "missing",
        ),
        (
            "reordered",
            vec![
                "UPDATE audit SET seq = -1 WHERE seq = 6".into(),
                "UPDATE audit SET seq = 6 WHERE seq = 7".into(),
                "UPDATE audit SET seq = 7 WHERE seq = -1".into(),
            ],
            6,
            "",
        ),
        (
            "truncated",
            vec![
                format!("DELETE FROM audit WHERE seq >= {}", size - 1),
                format!(
                    "UPDATE audit_head SET size = {}, chain_hash = (SELECT chain_hash FROM audit WHERE seq = {})",
                    size - 2,
                    size - 2
                ),
            ],
            size - 1,
            "truncated",
        ),
    ];
    for (name, stmts, bad_seq, word) in cases {
        let copy = tmp.path().join(format!("tampered-{name}"));
        copy_dir(&data, &copy);
        let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
        sql(&copy, &refs).await;
        let (code, out, err) = cli(
            &copy,
            None,
            &[
                "audit",
                "verify",
                "--data-dir",
                copy.to_str().unwrap(),
                "--checkpoint",
                cp_arg,
            ],
        );
        assert_eq!(code, 2, "{name}: verify must fail: {out}{err}");
        assert!(
            out.contains(&format!("FAILED at seq {bad_seq}")),
            "{name}: {out}"
        );
        assert!(out.contains(word), "{name}: {out}");
    }
}

#[tokio::test]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut srv = serve(&data, port).await;
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("admin-credentials.json")).unwrap(),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let token_url = format!("{}/oauth2/token", srv.url);
    let tok: Value = http
        .post(&token_url)
        .basic_auth(
            creds["client_id"].as_str().unwrap(),
            creds["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tok["access_token"].as_str().unwrap().to_owned();
    let base = srv.url.clone();
    let owner: Value = http
        .post(format!("{base}/v1/owners"))
        .bearer_auth(&token)
        .json(&json!({"name": "crash", "kind": "team", "contact": "c@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let owner = owner["id"].as_str().unwrap().to_owned();
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = vec![];
    for w in 0..8 {
        let (http, base, token, owner, expires, acked) = (
            http.clone(),
            base.clone(),
            token.clone(),
            owner.clone(),
            expires.clone(),
            acked.clone(),
        );
        writers.push(tokio::spawn(async move {
            for n in 0..2000 {
                let body = json!({"name": format!("w{w}-{n}"), "kind": "workload", "owner": owner, "purpose": "crash test",
                    "environment": "prod", "expires_at": expires});
                match http.post(format!("{base}/v1/identities")).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                        let v: Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => return,
                        };
                        acked.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let a few hundred writes land, then kill -9 mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} writes were acknowledged",
        acked.len()
    );
    drop(srv);
    // Restart on the same data and check every acknowledged write and its audit record.
    let srv = serve(&data, port).await;
    let tok: Value = http
        .post(format!("{}/oauth2/token", srv.url))
        .basic_auth(
            creds["client_id"].as_str().unwrap(),
            creds["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tok["access_token"].as_str().unwrap().to_owned();
    let mut audited = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/audit?action=identity.create&limit=1000", srv.url);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in page["items"].as_array().unwrap() {
            audited.insert(r["identity_id"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for id in &acked {
        let r = http
            .get(format!("{}/v1/identities/{id}", srv.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::OK,
            "acknowledged identity {id} lost"
        );
        assert!(
            audited.contains(id),
            "acknowledged identity {id} has no audit record"
        );
    }
    drop(srv);
    let (code, out, err) = cli(
        &data,
        None,
        &["audit", "verify", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
}

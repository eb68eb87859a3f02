//! Crash under load: the real `steward serve` issues tokens to many concurrent clients while
//! identities and credentials are being created, is killed with SIGKILL mid-load, and restarts.
//! Every token a client received has its audit record (matched by `jti`), every acknowledged
//! identity and credential is still there with its record, and `steward audit verify` passes.
//! Runs on SQLite and on PostgreSQL (unless `STEWARD_SKIP_POSTGRES=1`).
// In tests a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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

async fn serve(data: &Path, port: u16, database_url: Option<&str>) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--insecure-http")
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(u) = database_url {
        cmd.args(["--database-url", u]);
    }
    let child = cmd.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/readyz")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, url }
}

/// The `jti` claim of a compact JWT (base64url payload, no padding).
fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let mut bits = 0u32;
    let mut n = 0;
    let mut bytes = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            bytes.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["jti"].as_str().unwrap().to_owned()
}

async fn token(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> Option<String> {
    let r = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .ok()?;
    if r.status() != reqwest::StatusCode::OK {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["access_token"].as_str().map(str::to_owned)
}

async fn post(http: &reqwest::Client, url: String, bearer: &str, body: Value) -> Option<Value> {
    let r = http
        .post(url)
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .ok()?;
    if r.status() != reqwest::StatusCode::CREATED {
        return None;
    }
    r.json().await.ok()
}

/// What clients were told succeeded before the kill.
#[derive(Default)]
struct Acked {
    jtis: Vec<String>,
    /// identity id → credential ids
    identities: HashMap<String, Vec<String>>,
}

async fn crash_under_load(database_url: Option<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let srv = serve(&data, port, database_url.as_deref()).await;
    let base = srv.url.clone();
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("admin-credentials.json")).unwrap(),
    )
    .unwrap();
    let (admin_id, admin_secret) = (
        creds["client_id"].as_str().unwrap().to_owned(),
        creds["client_secret"].as_str().unwrap().to_owned(),
    );
    let http = reqwest::Client::new();
    let admin = token(&http, &base, &admin_id, &admin_secret).await.unwrap();
    let owner = post(
        &http,
        format!("{base}/v1/owners"),
        &admin,
        json!({"name": "crash", "kind": "team", "contact": "c@example.com"}),
    )
    .await
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let new_identity = move |name: String| {
        json!({"name": name, "kind": "workload", "owner": owner, "purpose": "crash test",
               "environment": "prod", "expires_at": expires})
    };
    // The workload whose tokens the load clients ask for.
    let workload = post(
        &http,
        format!("{base}/v1/identities"),
        &admin,
        new_identity("load".into()),
    )
    .await
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = post(
        &http,
        format!("{base}/v1/identities/{workload}/credentials"),
        &admin,
        json!({"type": "api_key"}),
    )
    .await
    .unwrap();
    let secret = key["client_secret"].as_str().unwrap().to_owned();

    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut load = tokio::task::JoinSet::new();
    // 32 token clients...
    for _ in 0..32 {
        let (http, base, id, secret, acked) = (
            http.clone(),
            base.clone(),
            workload.clone(),
            secret.clone(),
            acked.clone(),
        );
        load.spawn(async move {
            while let Some(t) = token(&http, &base, &id, &secret).await {
                acked.lock().unwrap().jtis.push(jti_of(&t));
            }
        });
    }
    // ...and 4 writers creating identities, each with an API key.
    for w in 0..4 {
        let (http, base, admin, acked) = (http.clone(), base.clone(), admin.clone(), acked.clone());
        let new_identity = new_identity.clone();
        load.spawn(async move {
            for n in 0.. {
                let Some(i) = post(
                    &http,
                    format!("{base}/v1/identities"),
                    &admin,
                    new_identity(format!("w{w}-{n}")),
                )
                .await
                else {
                    return;
                };
                let id = i["id"].as_str().unwrap().to_owned();
                acked.lock().unwrap().identities.insert(id.clone(), vec![]);
                let Some(c) = post(
                    &http,
                    format!("{base}/v1/identities/{id}/credentials"),
                    &admin,
                    json!({"type": "api_key"}),
                )
                .await
                else {
                    return;
                };
                let cid = c["id"].as_str().unwrap().to_owned();
                acked
                    .lock()
                    .unwrap()
                    .identities
                    .get_mut(&id)
                    .unwrap()
                    .push(cid);
            }
        });
    }
    // Under full load, kill -9.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (t, i) = {
            let a = acked.lock().unwrap();
            (a.jtis.len(), a.identities.len())
        };
        if t >= 1500 && i >= 40 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "load too slow: {t} tokens, {i} identities"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut srv = srv;
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    load.join_all().await;
    drop(srv);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "killed after {} tokens, {} identities acknowledged",
        acked.jtis.len(),
        acked.identities.len()
    );

    // Restart on the same data: it serves again, and every acknowledged change is there.
    let srv = serve(&data, port, database_url.as_deref()).await;
    let admin = token(&http, &srv.url, &admin_id, &admin_secret)
        .await
        .unwrap();
    for (id, creds) in &acked.identities {
        let r = http
            .get(format!("{}/v1/identities/{id}/credentials", srv.url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::OK,
            "acknowledged identity {id} lost"
        );
        let listed: Value = r.json().await.unwrap();
        let listed: HashSet<&str> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        for c in creds {
            assert!(
                listed.contains(c.as_str()),
                "acknowledged credential {c} lost"
            );
        }
    }
    // The restarted node issues tokens again for the same workload.
    assert!(token(&http, &srv.url, &workload, &secret).await.is_some());
    drop(srv);

    // Offline, straight from the database: every received token and every acknowledged change
    // has its audit record.
    let url = database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data.join("steward.db").display()));
    let store = steward_store::open(&url).await.unwrap();
    let head = store.audit_head().await.unwrap();
    let mut issued = HashSet::new();
    let mut targets = HashSet::new();
    let mut from = 1;
    loop {
        let batch = store.audit_range(from, 5000).await.unwrap();
        let Some(last) = batch.last() else { break };
        from = last.seq + 1;
        for r in &batch {
            match r.event.action.as_str() {
                "token.issue" => {
                    if let Some(j) = r.event.details["jti"].as_str() {
                        issued.insert(j.to_owned());
                    }
                }
                "identity.create" | "credential.create" => {
                    targets.insert(r.event.target.clone().unwrap_or_default());
                }
                _ => {}
            }
        }
    }
    assert_eq!(from - 1, head.size, "audit records up to the head");
    for j in &acked.jtis {
        assert!(issued.contains(j), "token {j} was received but not audited");
    }
    for (id, creds) in &acked.identities {
        assert!(targets.contains(&format!("identity:{id}")), "identity {id}");
        for c in creds {
            assert!(
                targets.contains(&format!("credential:{c}")),
                "credential {c}"
            );
        }
    }
    drop(store);
    let mut verify = Command::new(BIN);
    verify.args(["audit", "verify", "--data-dir"]).arg(&data);
    if let Some(u) = &database_url {
        verify.args(["--database-url", u]);
    }
    let out = verify.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_token_load_loses_nothing_acknowledged_sqlite() {
    crash_under_load(None).await;
}

/// A fresh PostgreSQL database (dropped afterwards), or `None` when PostgreSQL is skipped.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> Option<Self> {
        use sqlx::Connection;
        if std::env::var("STEWARD_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            return None;
        }
        let admin = std::env::var("STEWARD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL at STEWARD_TEST_DATABASE_URL (or set STEWARD_SKIP_POSTGRES=1)");
        let name = format!("steward_crash_{}", std::process::id());
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let _ = conn.close().await;
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("STEWARD_TEST_DATABASE_URL has no database path"),
        };
        Some(Self { admin, name, url })
    }

    async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_token_load_loses_nothing_acknowledged_postgres() {
    let Some(db) = PgDb::create().await else {
        eprintln!("skipping: STEWARD_SKIP_POSTGRES=1");
        return;
    };
    crash_under_load(Some(db.url.clone())).await;
    db.drop_now().await;
}

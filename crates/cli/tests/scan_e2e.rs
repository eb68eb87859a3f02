//! End-to-end test of `steward scan` with the real binary: a live key planted in a file is found,
//! reported with `--report-to`, revoked by the server, and no longer gets a token.
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
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--insecure-http", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
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

async fn token(url: &str, id: &str, secret: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn admin(url: &str, tok: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// Creates an identity with `scopes` and an API key; returns (client id, secret).
async fn identity(
    url: &str,
    tok: &str,
    owner: &str,
    name: &str,
    scopes: &[&str],
) -> (String, String) {
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let i = admin(
        url,
        tok,
        "/v1/identities",
        json!({"name": name, "kind": "workload", "owner": owner, "purpose": "scan e2e",
               "environment": "prod", "expires_at": expires, "scopes": scopes,
               "default_scopes": scopes, "audiences": []}),
    )
    .await;
    let id = i["id"].as_str().unwrap().to_owned();
    let c = admin(
        url,
        tok,
        &format!("/v1/identities/{id}/credentials"),
        json!({"type": "api_key"}),
    )
    .await;
    (id, c["client_secret"].as_str().unwrap().to_owned())
}

fn steward(args: &[&str], creds: &Path, cache: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--credentials")
        .arg(creds)
        .args(args)
        .env("STEWARD_CACHE_DIR", cache)
        .env_remove("STEWARD_SERVER")
        .env_remove("STEWARD_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn scan_report_to_revokes_the_planted_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data).await;
    let url = server.url.clone();
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("admin-credentials.json")).unwrap(),
    )
    .unwrap();
    let (s, t) = token(
        &url,
        creds["client_id"].as_str().unwrap(),
        creds["client_secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let admin_token = t["access_token"].as_str().unwrap().to_owned();
    let owner = admin(
        &url,
        &admin_token,
        "/v1/owners",
        json!({"name": "team-ci", "kind": "team", "contact": "ci@example.com"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (reporter_id, reporter_secret) = identity(
        &url,
        &admin_token,
        &owner,
        "ci-scanner",
        &["steward:leaks:report"],
    )
    .await;
    let (victim_id, victim_secret) = identity(
        &url,
        &admin_token,
        &owner,
        "payments-api",
        &["payments:read"],
    )
    .await;
    assert_eq!(token(&url, &victim_id, &victim_secret).await.0, 200);

    // The reporter's credentials file, as `steward credential create --out` writes it.
    let reporter_creds = dir.path().join("scanner-credentials.json");
    std::fs::write(
        &reporter_creds,
        serde_json::to_vec(&json!({
            "client_id": reporter_id, "client_secret": reporter_secret,
            "issuer": url, "token_endpoint": format!("{url}/oauth2/token"),
        }))
        .unwrap(),
    )
    .unwrap();

    // A repository with the live key committed in a config file, and a look-alike.
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("config")).unwrap();
    std::fs::write(
        repo.join("config/prod.env"),
        format!("DATABASE_URL=postgres://db/payments\nSTEWARD_CLIENT_SECRET={victim_secret}\n"),
    )
    .unwrap();
    let mut fake = victim_secret.clone().into_bytes();
    fake[12] = if fake[12] == b'a' { b'b' } else { b'a' };
    std::fs::write(
        repo.join("README.md"),
        format!("Keys look like `{}`.\n", String::from_utf8(fake).unwrap()),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let repo_s = repo.to_str().unwrap();

    // SARIF for CI: exit 1, the finding located, never the key itself.
    let (code, out, err) = steward(
        &["scan", repo_s, "--format", "sarif"],
        &reporter_creds,
        &cache,
    );
    assert_eq!(code, 1, "{err}");
    let sarif: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{out}");
    assert_eq!(results[0]["ruleId"], "steward-api-key");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    assert!(!out.contains(&victim_secret) && !err.contains(&victim_secret));

    // Report it: the server revokes it at once.
    let (code, out, err) = steward(
        &["scan", repo_s, "--format", "json", "--report-to", &url],
        &reporter_creds,
        &cache,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 revoked"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
    assert!(!out.contains(&victim_secret) && !err.contains(&victim_secret));

    let (s, v) = token(&url, &victim_id, &victim_secret).await;
    assert_eq!(s, 401, "the reported key no longer gets a token: {v}");

    // Reporting again is harmless; a clean tree exits 0.
    let (code, _, err) = steward(
        &["scan", repo_s, "--report-to", &url],
        &reporter_creds,
        &cache,
    );
    assert_eq!(code, 1);
    assert!(err.contains("1 already revoked"), "{err}");
    std::fs::remove_file(repo.join("config/prod.env")).unwrap();
    let (code, out, err) = steward(&["scan", repo_s], &reporter_creds, &cache);
    assert_eq!(code, 0, "{out}{err}");

    // Errors are exit 2, distinct from findings.
    let (code, _, _) = steward(
        &["scan", "/nonexistent/steward-scan"],
        &reporter_creds,
        &cache,
    );
    assert_eq!(code, 2);
}

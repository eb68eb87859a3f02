//! Two real nodes on one real PostgreSQL: a change made on node A takes effect on node B within
//! one second (LISTEN/NOTIFY invalidates B's caches), with no cache TTL to lean on.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{TestServer, drop_pg_database, fresh_pg_database};

const ISSUER: &str = "https://steward.cluster.test";

async fn introspect(http: &reqwest::Client, base: &str, admin: &str, token: &str) -> bool {
    let v: Value = http
        .post(format!("{base}/oauth2/introspect"))
        .bearer_auth(admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["active"] == true
}

async fn token_status(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> StatusCode {
    http.post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
}

/// Polls until `done` holds; returns how long it took (panics after 5 s).
async fn within<F, Fut>(mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "change never reached the other node"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn changes_on_one_node_take_effect_on_the_other_within_a_second() {
    let (url, db) = fresh_pg_database().await;
    let a = TestServer::start_with(|c| {
        c.database_url = Some(url.clone());
        c.issuer = Some(ISSUER.into());
    })
    .await;
    let master = std::fs::read_to_string(a.dir.path().join("master.key")).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b = steward_server::start(
        steward_server::ServerConfig {
            data_dir: b_dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: Some(url.clone()),
            issuer: Some(ISSUER.into()),
            // Plain HTTP on loopback, like node A in the harness: this test is about the cache.
            insecure_http: true,
            ..Default::default()
        },
        steward_server::StartOptions {
            master_key: Some(master.trim().to_owned()),
            clock: None,
        },
    )
    .await
    .expect("node B starts on the same database");
    assert!(
        b.admin_credentials.is_none(),
        "only the first node bootstraps"
    );
    let b_url = b.base_url();
    let http = reqwest::Client::new();

    // A workload, and a token for it issued by node B (so B caches identity and credential).
    let (id, secret) = a.workload("svc").await;
    let (_, v, _) = a.token_basic(&id, &secret, &[]).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        token_status(&http, &b_url, &id, &secret).await,
        StatusCode::OK
    );
    let admin = a.admin_token().await;
    assert!(
        introspect(&http, &b_url, &admin, &token).await,
        "node B accepts node A's token"
    );

    // Suspend on A: B's introspection and token endpoint follow within a second.
    let (s, _) = a
        .api(Method::POST, &format!("/v1/identities/{id}/suspend"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let took = within(|| async { !introspect(&http, &b_url, &admin, &token).await }).await;
    assert!(
        took < Duration::from_secs(1),
        "suspension took {took:?} to reach node B"
    );
    assert_eq!(
        token_status(&http, &b_url, &id, &secret).await,
        StatusCode::UNAUTHORIZED
    );

    // Resume, then revoke a credential on A: B refuses it within a second.
    a.api(Method::POST, &format!("/v1/identities/{id}/resume"), None)
        .await;
    within(|| async { token_status(&http, &b_url, &id, &secret).await == StatusCode::OK }).await;
    let (_, creds) = a
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/credentials"),
            None,
        )
        .await;
    let cid = creds["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = a
        .api(
            Method::DELETE,
            &format!("/v1/identities/{id}/credentials/{cid}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let took = within(|| async {
        token_status(&http, &b_url, &id, &secret).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        took < Duration::from_secs(1),
        "revocation took {took:?} to reach node B"
    );

    // Revoke one token on A (RFC 7009): B answers revocation checks from memory once warm, and
    // its mirror follows A's notice within a second. A token of a credential revoked on A goes
    // inactive on B too (B caches credentials by id for token verification).
    let (id2, secret2) = a.workload("svc2").await;
    let fresh = |id: String, secret: String| {
        let a = &a;
        async move {
            let (_, v, _) = a.token_basic(&id, &secret, &[]).await;
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let doomed = fresh(id2.clone(), secret2.clone()).await;
    let kept = fresh(id2.clone(), secret2.clone()).await;
    assert!(introspect(&http, &b_url, &admin, &doomed).await);
    assert!(introspect(&http, &b_url, &admin, &kept).await);
    let s = http
        .post(a.url("/oauth2/revoke"))
        .basic_auth(&id2, Some(&secret2))
        .form(&[("token", doomed.as_str())])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
    let took = within(|| async { !introspect(&http, &b_url, &admin, &doomed).await }).await;
    assert!(
        took < Duration::from_secs(1),
        "token revocation took {took:?} to reach node B"
    );
    assert!(
        introspect(&http, &b_url, &admin, &kept).await,
        "revoking one token leaves the others active"
    );
    let (_, creds) = a
        .api(
            Method::GET,
            &format!("/v1/identities/{id2}/credentials"),
            None,
        )
        .await;
    let cid2 = creds["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = a
        .api(
            Method::DELETE,
            &format!("/v1/identities/{id2}/credentials/{cid2}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let took = within(|| async { !introspect(&http, &b_url, &admin, &kept).await }).await;
    assert!(
        took < Duration::from_secs(1),
        "credential revocation took {took:?} to deactivate its token on node B"
    );

    b.shutdown().await;
    drop(a);
    drop_pg_database(&db).await;
}

//! `POST /v1/leaks`: partner signatures (valid, invalid, unknown key), the steward:leaks:report
//! token path, per-entry replies, revocation that takes effect at once, findings, audit and webhook.

use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_core::apikey::{ApiKey, KeyType};
use steward_server::service::leaks::LeakReportKey;
use steward_store::{FindingQuery, FindingStatus};

use crate::harness::TestServer;

fn partner_key() -> (EcdsaKeyPair, String) {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let pem = steward_crypto::ecdsa::EcdsaP256PublicKey::from_point(kp.public_key().as_ref())
        .unwrap()
        .to_pem();
    (kp, pem)
}

fn sign(kp: &EcdsaKeyPair, body: &[u8]) -> String {
    steward_crypto::b64::std_encode(kp.sign(&SystemRandom::new(), body).unwrap().as_ref())
}

/// A syntactically valid Steward key that this server never issued.
fn foreign_key() -> String {
    ApiKey::generate(KeyType::ClientSecret, &mut steward_crypto::rand::fill)
        .expose_secret()
        .to_owned()
}

fn bad_checksum(key: &str) -> String {
    let mut b = key.as_bytes().to_vec();
    b[10] = if b[10] == b'a' { b'b' } else { b'a' };
    String::from_utf8(b).unwrap()
}

async fn post_signed(
    t: &TestServer,
    key_id: &str,
    sig: &str,
    body: &[u8],
) -> (StatusCode, Value, String) {
    let resp = t
        .http
        .post(t.url("/v1/leaks"))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", key_id)
        .header("Github-Public-Key-Signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn labels(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn signed_report_revokes_at_once_and_replies_per_entry() {
    let (kp, pem) = partner_key();
    let t = TestServer::start_with(|c| {
        c.leak_report_keys = vec![LeakReportKey {
            key_id: "gh-key-1".into(),
            pem: pem.clone(),
        }];
    })
    .await;
    let (id, secret) = t.workload("leaky").await;
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::OK);

    let body = serde_json::to_vec(&json!([
        {"token": secret, "type": "steward_api_key", "url": "https://github.com/acme/app/blob/main/.env", "source": "content"},
        {"token": secret, "type": "steward_api_key", "url": "https://github.com/acme/app/commit/1", "source": "commit"},
        {"token": bad_checksum(&secret), "type": "steward_api_key", "url": "https://x.invalid", "source": "content"},
        {"token": foreign_key(), "type": "steward_api_key", "url": "https://x.invalid", "source": "content"},
        {"token": "ghp_notours", "type": "github_token", "url": "https://x.invalid", "source": "content"},
    ]))
    .unwrap();
    let (s, v, text) = post_signed(&t, "gh-key-1", &sign(&kp, &body), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        labels(&v),
        [
            "revoked",
            "already_revoked",
            "not_ours",
            "not_ours",
            "not_ours"
        ]
    );
    assert_eq!(v[0]["token_type"], "steward_api_key");
    assert_eq!(v[4]["token_type"], "github_token");
    assert!(
        !text.contains(&secret[6..]),
        "the reply never echoes a token"
    );

    // The key no longer gets a token: revoked, and the cache did not keep it alive.
    let (s, v, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");

    // One open NHI2:2025 finding on the identity, with where it leaked, and no secret in it.
    let findings = t
        .server
        .state
        .store
        .list_findings(&FindingQuery {
            identity_id: Some(id.parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(
        (f.kind.as_str(), f.owasp_nhi.as_str(), f.status),
        ("secret_leaked", "NHI2:2025", FindingStatus::Open)
    );
    assert!(f.nist_csf.starts_with("PR.AA-0"));
    let evidence = f.evidence.to_string();
    assert!(evidence.contains("https://github.com/acme/app/blob/main/.env"));
    assert!(evidence.contains("https://github.com/acme/app/commit/1"));
    assert!(!evidence.contains(&secret[6..]));

    // Audited: the revocation, the finding, and the report; no secret anywhere in the log.
    let audit = t.audit("").await;
    let actions: Vec<&str> = audit.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in [
        "credential.revoke",
        "finding.raise",
        "finding.update",
        "leak.report",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    let revoke = audit
        .iter()
        .find(|e| e["action"] == "credential.revoke")
        .unwrap();
    assert_eq!(revoke["actor"], "partner:gh-key-1");
    assert!(
        !serde_json::to_string(&audit)
            .unwrap()
            .contains(&secret[6..])
    );
}

#[tokio::test]
async fn bad_signatures_get_401_and_revoke_nothing() {
    let (kp, pem) = partner_key();
    let (other, _) = partner_key();
    let t = TestServer::start_with(|c| {
        c.leak_report_keys = vec![LeakReportKey {
            key_id: "gh-key-1".into(),
            pem: pem.clone(),
        }];
    })
    .await;
    let (id, secret) = t.workload("safe").await;
    let body = serde_json::to_vec(
        &json!([{"token": secret, "type": "steward_api_key", "url": "u", "source": "content"}]),
    )
    .unwrap();
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");

    // Signed by another key; signature over other bytes; unknown key id; garbage; no signature.
    let cases = [
        ("gh-key-1", sign(&other, &body), body.clone()),
        ("gh-key-1", sign(&kp, &body), tampered),
        ("gh-key-2", sign(&kp, &body), body.clone()),
        ("gh-key-1", "!!not base64!!".to_owned(), body.clone()),
        ("gh-key-1", String::new(), body.clone()),
    ];
    for (key_id, sig, b) in &cases {
        let (s, v, _) = post_signed(&t, key_id, sig, b).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{key_id}: {v}");
        assert_eq!(v["error"], "unauthorized");
    }
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::OK, "nothing was revoked");
    let refused = t.audit("action=leak.report").await;
    assert_eq!(refused.len(), cases.len());
    assert!(refused.iter().all(|e| e["outcome"] == "failure"));
}

#[tokio::test]
async fn token_path_needs_the_leaks_scope() {
    let t = TestServer::start().await;
    let owner = t.create_owner("secops").await;
    let reporter = t
        .create_identity(
            &owner,
            "leak-reporter",
            json!({"scopes": ["steward:leaks:report"], "default_scopes": ["steward:leaks:report"],
                   "audiences": []}),
        )
        .await;
    let rid = reporter["id"].as_str().unwrap().to_owned();
    let (_, rsecret) = t.api_key(&rid).await;
    let (s, v, _) = t.token_basic(&rid, &rsecret, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();

    let (id, secret) = t.workload("victim").await;
    let body = json!([{"token": secret, "type": "steward_api_key", "url": "https://paste.invalid/1", "source": "paste"}]);

    // No credentials at all, and an admin token without the scope.
    let resp = t
        .http
        .post(t.url("/v1/leaks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (s, v) = t.api(Method::POST, "/v1/leaks", Some(body.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = t
        .api_with(&token, Method::POST, "/v1/leaks", Some(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(labels(&v), ["revoked"]);
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Tokens issued from a reported key stop working at once: the reporter reports its own key.
    let own = json!([{"token": rsecret, "type": "steward_api_key", "url": "https://paste.invalid/2", "source": "paste"}]);
    let (s, v) = t
        .api_with(&token, Method::POST, "/v1/leaks", Some(own))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(labels(&v), ["revoked"]);
    let (s, _) = t
        .api_with(&token, Method::POST, "/v1/leaks", Some(json!([])))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v, _) = t.token_basic(&rid, &rsecret, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (_, rsecret2) = t.api_key(&rid).await;
    let (s, v, _) = t.token_basic(&rid, &rsecret2, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();

    // Malformed bodies are refused without quoting them.
    let resp = t
        .http
        .post(t.url("/v1/leaks"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"token\": \"{secret}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(!resp.text().await.unwrap().contains(&secret[6..]));
}

#[tokio::test]
async fn owner_is_notified_by_webhook_without_the_secret() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (kp, pem) = partner_key();
    let t = TestServer::start_with(|c| {
        c.leak_webhook_url = Some(hook.clone());
        c.leak_report_keys = vec![LeakReportKey {
            key_id: "k".into(),
            pem: pem.clone(),
        }];
    })
    .await;
    let (id, secret) = t.workload("notify-me").await;
    let body = serde_json::to_vec(&json!([{"token": secret, "type": "steward_api_key", "url": "https://github.com/acme/x/blob/main/a.env", "source": "content"}])).unwrap();
    let (s, v, _) = post_signed(&t, "k", &sign(&kp, &body), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let mut payload = None;
    for _ in 0..100 {
        if let Some(p) = received.lock().unwrap().first().cloned() {
            payload = Some(p);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let p = payload.expect("webhook called");
    assert_eq!(p["event"], "steward.leak.revoked");
    assert_eq!(p["identity"]["id"], id.as_str());
    assert_eq!(p["owner"]["contact"], "team-notify-me@example.com");
    assert_eq!(p["url"], "https://github.com/acme/x/blob/main/a.env");
    let key = p["credential"]["key"].as_str().unwrap();
    assert!(key.starts_with("stw_k_") && key.ends_with(&secret[secret.len() - 4..]));
    assert!(!p.to_string().contains(&secret[6..secret.len() - 4]));
}

#[tokio::test]
async fn invalid_leak_settings_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = steward_server::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        leak_report_keys: vec![LeakReportKey {
            key_id: "k".into(),
            pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
        }],
        ..Default::default()
    };
    assert!(cfg.validate().is_err());
    let cfg = steward_server::ServerConfig {
        leak_webhook_url: Some("ftp://example.invalid".into()),
        ..Default::default()
    };
    assert!(cfg.validate().is_err());
}

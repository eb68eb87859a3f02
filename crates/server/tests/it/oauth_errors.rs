//! Token-endpoint refusals: each bad request gets its RFC 6749 / 7523 / 9449 error and an audit
//! record naming the reason (and never the secret). Table-driven.

use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::oauth_interop::{assertion, p256_key};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct Case {
    name: &'static str,
    form: Vec<(String, String)>,
    basic: Option<(String, String)>,
    status: StatusCode,
    error: &'static str,
    /// Fragment of the audited reason (None: no audit expected, e.g. malformed requests).
    audit_reason: Option<&'static str>,
}

async fn send(t: &TestServer, c: &Case) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = t.http.post(t.url("/oauth2/token")).form(&c.form);
    if let Some((id, s)) = &c.basic {
        req = req.basic_auth(id, Some(s));
    }
    let r = req.send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, r.json().await.unwrap_or(Value::Null), h)
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn every_refusal_has_its_rfc_error_and_audit_record() {
    let t = TestServer::start_with(|c| c.auth_failure_limit = 1000).await;
    let (id, secret) = t.workload("svc").await;
    // Expired key: one that expires in an hour, then the clock moves two hours.
    let (_, expiring) = {
        let (s, v) = t
            .api(
                Method::POST,
                &format!("/v1/identities/{id}/credentials"),
                Some(json!({"type": "api_key", "expires_at": t_plus(&t, 3600)})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        (
            v["id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    };
    let (revoked_id, revoked) = t.api_key(&id).await;
    t.api(
        Method::DELETE,
        &format!("/v1/identities/{id}/credentials/{revoked_id}"),
        None,
    )
    .await;
    let (sid, ssecret) = t.workload("suspended").await;
    t.api(Method::POST, &format!("/v1/identities/{sid}/suspend"), None)
        .await;
    // A public key for assertion cases.
    let (key, jwk) = p256_key();
    t.api(
        Method::POST,
        &format!("/v1/identities/{id}/credentials"),
        Some(json!({"type": "public_key", "jwk": jwk.clone()})),
    )
    .await;
    let aud = t.url("/oauth2/token");
    let replayed = assertion(&key, &id, &aud, "once", 60);
    let r = t
        .http
        .post(&aud)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", replayed.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(
        json!({"iss": id, "sub": id, "aud": aud, "jti": "n1", "exp": now() + 60})
            .to_string()
            .as_bytes(),
    );
    let alg_none = format!("{header_none}.{claims}.");
    // HS256 "signed" with the registered public key as the MAC secret (key-confusion attack).
    let pub_bytes = serde_json::to_vec(&jwk).unwrap();
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": id, "sub": id, "aud": aud, "jti": "h1", "exp": now() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(&pub_bytes),
    )
    .unwrap();
    let expired_assertion = {
        let c = json!({"iss": id, "sub": id, "aud": aud, "jti": "e1", "iat": now() - 900, "exp": now() - 300});
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &c, &key).unwrap()
    };
    let mut bad_checksum = secret.clone().into_bytes();
    bad_checksum[10] = if bad_checksum[10] == b'A' { b'B' } else { b'A' };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let unknown = {
        // Well-formed (valid checksum) but never issued.
        let body = "stw_k_0123456789ABCDEFGHIJabcdefgh";
        format!("{body}{}", steward_core::apikey::checksum(body.as_bytes()))
    };
    let cc = [("grant_type", "client_credentials")];
    let with_assertion = |a: &str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", a),
        ])
    };
    let basic = |s: &str| Some((id.clone(), s.to_owned()));
    let cases = vec![
        Case {
            name: "wrong secret",
            form: form(&cc),
            basic: basic(&unknown),
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("unknown client secret"),
        },
        Case {
            name: "checksum-invalid key",
            form: form(&cc),
            basic: basic(&bad_checksum),
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("checksum"),
        },
        Case {
            name: "revoked key",
            form: form(&cc),
            basic: basic(&revoked),
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("revoked"),
        },
        Case {
            name: "suspended identity",
            form: form(&cc),
            basic: Some((sid.clone(), ssecret.clone())),
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("suspended"),
        },
        Case {
            name: "scope escalation",
            form: form(&[
                ("grant_type", "client_credentials"),
                ("scope", "payments:read steward:admin"),
            ]),
            basic: basic(&secret),
            status: StatusCode::BAD_REQUEST,
            error: "invalid_scope",
            audit_reason: Some("steward:admin"),
        },
        Case {
            name: "unknown audience",
            form: form(&[
                ("grant_type", "client_credentials"),
                ("resource", "https://evil.example"),
            ]),
            basic: basic(&secret),
            status: StatusCode::BAD_REQUEST,
            error: "invalid_target",
            audit_reason: Some("evil.example"),
        },
        Case {
            name: "replayed assertion",
            form: with_assertion(&replayed),
            basic: None,
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("replayed"),
        },
        Case {
            name: "alg none",
            form: with_assertion(&alg_none),
            basic: None,
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("malformed client assertion"),
        },
        Case {
            name: "HMAC with public key",
            form: with_assertion(&hs),
            basic: None,
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("malformed client assertion"),
        },
        Case {
            name: "expired assertion",
            form: with_assertion(&expired_assertion),
            basic: None,
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("expired"),
        },
        Case {
            name: "unsupported grant",
            form: form(&[("grant_type", "password")]),
            basic: basic(&secret),
            status: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            audit_reason: Some("unsupported_grant_type"),
        },
        Case {
            name: "missing grant",
            form: form(&[("scope", "a")]),
            basic: basic(&secret),
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            audit_reason: None,
        },
        Case {
            name: "repeated parameter",
            form: form(&[
                ("grant_type", "client_credentials"),
                ("scope", "a"),
                ("scope", "b"),
            ]),
            basic: basic(&secret),
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            audit_reason: None,
        },
        Case {
            name: "two auth methods",
            form: form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ]),
            basic: basic(&secret),
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            audit_reason: None,
        },
        Case {
            name: "no client auth",
            form: form(&cc),
            basic: None,
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            audit_reason: Some("no client authentication"),
        },
    ];
    for c in &cases {
        let before = t.audit_size().await;
        let (s, v, h) = send(&t, c).await;
        assert_eq!(s, c.status, "{}: {v}", c.name);
        assert_eq!(v["error"], c.error, "{}: {v}", c.name);
        assert!(v["error_description"].is_string(), "{}", c.name);
        assert_eq!(h["cache-control"], "no-store", "{}", c.name);
        if s == StatusCode::UNAUTHORIZED {
            assert!(
                h.contains_key("www-authenticate"),
                "{}: 401 needs WWW-Authenticate",
                c.name
            );
        }
        let after = t.audit_size().await;
        match c.audit_reason {
            Some(frag) => {
                assert_eq!(after, before + 1, "{}: one audit record", c.name);
                let rec = t
                    .server
                    .state
                    .store
                    .audit_range(after, 1)
                    .await
                    .unwrap()
                    .remove(0);
                assert_eq!(rec.event.action, "token.issue", "{}", c.name);
                assert_ne!(
                    rec.event.outcome,
                    steward_core::Outcome::Success,
                    "{}",
                    c.name
                );
                let reason = rec.event.reason.clone().unwrap_or_default();
                assert!(
                    reason.contains(frag),
                    "{}: audited reason {reason:?} should mention {frag:?}",
                    c.name
                );
                let text = serde_json::to_string(&rec.event).unwrap();
                assert!(
                    !text.contains(&secret) && !text.contains(&bad_checksum[6..]),
                    "{}: secret in audit",
                    c.name
                );
            }
            None => assert_eq!(
                after, before,
                "{}: nothing audited for a malformed request",
                c.name
            ),
        }
    }
    // Expired key: move the clock past its expiry.
    t.clock.advance(time::Duration::hours(2));
    let c = Case {
        name: "expired key",
        form: form(&cc),
        basic: basic(&expiring),
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        audit_reason: None,
    };
    let (s, v, _) = send(&t, &c).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let last = t
        .server
        .state
        .store
        .audit_range(t.audit_size().await, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(last.event.reason.as_deref(), Some("credential has expired"));
    // Oversized request body.
    let big = format!(
        "grant_type=client_credentials&scope={}",
        "a".repeat(100_000)
    );
    let r = t
        .http
        .post(t.url("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[tokio::test]
async fn repeated_failures_lock_out_with_retry_after() {
    let t = TestServer::start_with(|c| c.auth_failure_limit = 3).await;
    let (id, secret) = t.workload("svc").await;
    let body = "stw_k_0123456789ABCDEFGHIJabcdefgh";
    let wrong = format!("{body}{}", steward_core::apikey::checksum(body.as_bytes()));
    for _ in 0..2 {
        assert_eq!(
            t.token_basic(&id, &wrong, &[]).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, v, h) = t.token_basic(&id, &wrong, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(h.contains_key("retry-after"));
    // Locked out: even the right secret is refused until the window passes.
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn t_plus(t: &TestServer, secs: i64) -> String {
    (t.clock_now() + time::Duration::seconds(secs))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A client assertion's `jti` is claimed in the transaction that records the request's outcome,
/// whatever that outcome: an assertion refused for what it asked (a scope beyond the client's,
/// an unsupported grant) is used up all the same, a replay is refused as one whatever it asks,
/// and every outcome is one audit record.
#[tokio::test]
async fn an_assertion_is_used_up_by_the_request_that_presents_it() {
    let t = TestServer::start_with(|c| c.auth_failure_limit = 1000).await;
    let (id, _) = t.workload("svc").await;
    let (key, jwk) = p256_key();
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/credentials"),
            Some(json!({"type": "public_key", "jwk": jwk})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let aud = t.url("/oauth2/token");
    let with = |a: &str, extra: &[(&str, &str)]| {
        let mut f = form(&[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", a),
        ]);
        f.extend(form(extra));
        Case {
            name: "",
            form: f,
            basic: None,
            status: StatusCode::OK,
            error: "",
            audit_reason: None,
        }
    };
    // (assertion, extra parameters, expected status, expected error, fragment of the record).
    type Step<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
        &'a str,
    );
    let denied = assertion(&key, &id, &aud, "denied-first", 60);
    let unsupported = assertion(&key, &id, &aud, "unsupported-first", 60);
    let issued = assertion(&key, &id, &aud, "issued-first", 60);
    let steps: Vec<Step> = vec![
        (
            &denied,
            vec![("grant_type", "client_credentials"), ("scope", "admin:all")],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "invalid_scope",
        ),
        (
            &denied,
            vec![("grant_type", "client_credentials")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "replayed",
        ),
        (
            &unsupported,
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported_grant_type",
        ),
        (
            &unsupported,
            vec![("grant_type", "client_credentials")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "replayed",
        ),
        (
            &issued,
            vec![("grant_type", "client_credentials")],
            StatusCode::OK,
            "",
            "",
        ),
        // A replay is refused as one even when it also asks for too much.
        (
            &issued,
            vec![("grant_type", "client_credentials"), ("scope", "admin:all")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "replayed",
        ),
    ];
    for (n, (a, extra, status, error, reason)) in steps.into_iter().enumerate() {
        let before = t.audit_size().await;
        let (s, v, h) = send(&t, &with(a, &extra)).await;
        assert_eq!(s, status, "step {n}: {v}");
        let after = t.audit_size().await;
        assert_eq!(after, before + 1, "step {n}: one audit record");
        let rec = t
            .server
            .state
            .store
            .audit_range(after, 1)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(rec.event.action, "token.issue", "step {n}");
        assert_eq!(
            rec.event.identity_id.map(|i| i.to_string()),
            Some(id.clone())
        );
        if status == StatusCode::OK {
            assert_eq!(
                rec.event.outcome,
                steward_core::Outcome::Success,
                "step {n}"
            );
            assert!(v["access_token"].is_string(), "step {n}: {v}");
            continue;
        }
        assert_eq!(v["error"], error, "step {n}: {v}");
        if status == StatusCode::UNAUTHORIZED {
            assert!(h.contains_key("www-authenticate"), "step {n}");
        }
        let audited = rec.event.reason.clone().unwrap_or_default();
        assert!(audited.contains(reason), "step {n}: {audited:?}");
    }
}

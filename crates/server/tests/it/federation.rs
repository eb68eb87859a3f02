//! Federation and delegation end to end: a real OIDC issuer of our own on loopback (RSA, EC and
//! Ed25519 keys, JWKS over HTTP) mints GitHub-Actions- and Kubernetes-shaped tokens; Steward
//! exchanges them (RFC 8693) under trust policies, refuses every bad input with the RFC error and
//! an audited precise reason, and builds delegation chains for agents.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestServer;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const AUD: &str = "https://steward.test";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A minimal OIDC issuer: its own keys, a JWKS endpoint on loopback, and a token mint.
pub struct Issuer {
    pub url: String,
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    ec384: EcdsaKeyPair,
    ed: Ed25519KeyPair,
    /// The JWK Set served at `/jwks` (tests rotate keys by editing it).
    pub jwks: Arc<Mutex<Value>>,
    /// Requests served at `/jwks`.
    pub hits: Arc<AtomicUsize>,
    /// When set, `/jwks` answers 503.
    pub down: Arc<AtomicBool>,
}

impl Issuer {
    pub async fn start() -> Self {
        let rng = SystemRandom::new();
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        let ec384 = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        let ed = Ed25519KeyPair::generate().unwrap();
        let jwks = Arc::new(Mutex::new(Value::Null));
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (j, h, d) = (jwks.clone(), hits.clone(), down.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (j, h, d) = (j.clone(), h.clone(), d.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if d.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    let body = j.lock().unwrap().to_string();
                    (axum::http::StatusCode::OK, body)
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        let issuer = Self {
            url,
            rsa,
            ec,
            ec384,
            ed,
            jwks,
            hits,
            down,
        };
        *issuer.jwks.lock().unwrap() = json!({"keys": [
            issuer.public_jwk("rsa-1"), issuer.public_jwk("ec-1"), issuer.public_jwk("ec384-1"), issuer.public_jwk("ed-1"),
        ]});
        issuer
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// The public JWK of the key family named by `kid`'s prefix, under that kid.
    pub fn public_jwk(&self, kid: &str) -> Value {
        if kid.starts_with("rsa") {
            let pk = self.rsa.public_key();
            json!({"kty": "RSA", "kid": kid, "use": "sig",
                "n": b64(pk.modulus().big_endian_without_leading_zero()),
                "e": b64(pk.exponent().big_endian_without_leading_zero())})
        } else if kid.starts_with("ec384") {
            let p = self.ec384.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-384", "kid": kid, "x": b64(&p[1..49]), "y": b64(&p[49..97])})
        } else if kid.starts_with("ec") {
            let p = self.ec.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&p[1..33]), "y": b64(&p[33..65])})
        } else {
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(self.ed.public_key().as_ref())})
        }
    }

    /// A compact JWS over `claims` with `alg` and `kid`, signed by the matching key.
    pub fn mint(&self, alg: &str, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig: Vec<u8> = match alg {
            "RS256" | "PS256" => {
                let enc: &'static dyn signature::RsaEncoding = if alg == "RS256" {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                let mut s = vec![0u8; self.rsa.public_modulus_len()];
                self.rsa.sign(enc, &rng, input.as_bytes(), &mut s).unwrap();
                s
            }
            "ES256" => self
                .ec
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "ES384" => self
                .ec384
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "EdDSA" => self.ed.sign(input.as_bytes()).as_ref().to_vec(),
            other => panic!("cannot mint {other}"),
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn now_of(t: &TestServer) -> i64 {
    t.clock_now().unix_timestamp()
}

/// GitHub-Actions-shaped claims (classic `sub`), valid now.
pub fn github_claims(t: &TestServer, iss: &str) -> Value {
    let now = now_of(t);
    json!({
        "iss": iss, "aud": AUD, "jti": uuid::Uuid::new_v4().to_string(),
        "sub": "repo:octo-org/app:ref:refs/heads/main",
        "repository": "octo-org/app", "repository_owner": "octo-org",
        "repository_id": "101", "repository_owner_id": "202",
        "ref": "refs/heads/main", "environment": "prod", "event_name": "push",
        "job_workflow_ref": "octo-org/app/.github/workflows/deploy.yml@refs/heads/main",
        "iat": now, "nbf": now, "exp": now + 300,
    })
}

fn k8s_claims(t: &TestServer, iss: &str, ns: &str, sa: &str, pod: Option<&str>) -> Value {
    let now = now_of(t);
    let mut k = json!({"namespace": ns, "serviceaccount": {"name": sa, "uid": "6f3c"}});
    if let Some(p) = pod {
        k["pod"] = json!({"name": p, "uid": "a1b2"});
    }
    json!({
        "iss": iss, "aud": [AUD, "https://kubernetes.default.svc"],
        "sub": format!("system:serviceaccount:{ns}:{sa}"), "kubernetes.io": k,
        "iat": now, "nbf": now, "exp": now + 600,
    })
}

fn with(mut v: Value, extra: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
        for (k, x) in b {
            if x.is_null() {
                a.remove(&k);
            } else {
                a.insert(k, x);
            }
        }
    }
    v
}

/// `POST /oauth2/token` with grant_type token-exchange and no client authentication.
pub async fn exchange(t: &TestServer, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut f = vec![("grant_type", EXCHANGE)];
    f.extend_from_slice(form);
    let resp = t
        .http
        .post(t.url("/oauth2/token"))
        .form(&f)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn exchange_jwt(t: &TestServer, token: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut f = vec![("subject_token", token), ("subject_token_type", JWT)];
    f.extend_from_slice(extra);
    exchange(t, &f).await
}

async fn last_exchange_audit(t: &TestServer) -> Value {
    t.audit("action=token.exchange")
        .await
        .last()
        .cloned()
        .expect("an exchange audit record")
}

/// Asserts a refusal: RFC 6749 error code, a generic description, and an audit record whose
/// reason holds `reason`.
async fn assert_refused(t: &TestServer, got: (StatusCode, Value), error: &str, reason: &str) {
    let (s, v) = got;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], error, "{v}");
    let a = last_exchange_audit(t).await;
    assert_ne!(a["outcome"], "success", "{a}");
    let r = a["reason"].as_str().unwrap_or("");
    assert!(
        r.contains(reason),
        "audit reason {r:?} should contain {reason:?}"
    );
    let d = v["error_description"].as_str().unwrap_or("");
    assert!(
        !d.contains(reason),
        "the client must not see the precise reason: {d}"
    );
}

async fn identity(t: &TestServer, owner: &str, name: &str, extra: Value) -> String {
    let i = t.create_identity(owner, name, extra).await;
    i["id"].as_str().unwrap().to_owned()
}

async fn create_policy(t: &TestServer, body: Value) -> Value {
    let (s, v) = t.api(Method::POST, "/v1/trust-policies", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

pub fn github_policy(issuer: &Issuer, identity: &str) -> Value {
    json!({
        "name": "deploy-app", "preset": "github_actions",
        "issuer": issuer.url, "jwks_uri": issuer.jwks_uri(), "audiences": [AUD],
        "identity": identity,
        "allow": [
            {"name": "main", "conditions": [
                {"claim": "repository", "equals": "octo-org/app"},
                {"claim": "ref", "equals": "refs/heads/main"},
            ]},
            {"name": "prod-env", "conditions": [
                {"claim": "repository_owner_id", "equals": "202"},
                {"claim": "environment", "in": ["prod"]},
                {"claim": "event_name", "not": true, "equals": "pull_request"},
            ]},
        ],
    })
}

fn decode_claims(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

async fn introspect(t: &TestServer, token: &str) -> Value {
    let resp = t
        .http
        .post(t.url("/oauth2/introspect"))
        .basic_auth(&t.admin_id, Some(&t.admin_secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn github_actions_tokens_exchange_under_a_trust_policy() {
    let t = TestServer::start().await;
    let iss = Issuer::start().await;
    let owner = t.create_owner("platform").await;
    let ci = identity(
        &t,
        &owner,
        "ci-deployer",
        json!({"scopes": ["deploy:read", "deploy:write"], "default_scopes": ["deploy:read"], "audiences": ["https://deploy.internal"]}),
    )
    .await;
    let p = create_policy(&t, github_policy(&iss, &ci)).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    assert_eq!(p["preset"], "github_actions");
    assert_eq!(
        p["algorithms"],
        json!(["RS256", "PS256", "ES256", "ES384", "EdDSA"])
    );

    // Classic sub, rule 1, each accepted algorithm.
    for (alg, kid) in [
        ("RS256", "rsa-1"),
        ("PS256", "rsa-1"),
        ("ES256", "ec-1"),
        ("ES384", "ec384-1"),
        ("EdDSA", "ed-1"),
    ] {
        let tok = iss.mint(alg, kid, &github_claims(&t, &iss.url));
        let (s, v) = exchange_jwt(&t, &tok, &[]).await;
        assert_eq!(s, StatusCode::OK, "{alg}: {v}");
        assert_eq!(v["issued_token_type"], AT);
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["scope"], "deploy:read", "default scopes apply");
        let claims = decode_claims(v["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], ci);
        assert_eq!(claims["aud"], "https://deploy.internal");
        assert!(claims.get("act").is_none());
    }
    // The JWKS was fetched once and then served from the cache.
    assert_eq!(iss.hits.load(Ordering::SeqCst), 1);

    // Immutable-id sub form through rule 2, asking for a narrower-than-allowed scope set.
    let c = with(
        github_claims(&t, &iss.url),
        json!({"sub": "repo:octo-org@202/app@101:environment:prod", "ref": "refs/heads/feature"}),
    );
    let (s, v) = exchange_jwt(
        &t,
        &iss.mint("RS256", "rsa-1", &c),
        &[("scope", "deploy:write")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "deploy:write");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let a = last_exchange_audit(&t).await;
    assert_eq!(a["outcome"], "success");
    assert_eq!(a["identity_id"], ci);
    assert_eq!(a["details"]["subject"]["trust_policy"], pid);
    assert_eq!(a["details"]["subject"]["rule"], 2);
    assert_eq!(
        a["details"]["subject"]["sub"],
        "repo:octo-org@202/app@101:environment:prod"
    );
    // The exchanged token is a normal Steward token.
    let i = introspect(&t, &token).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], ci);

    // A sub in neither documented form is refused by the preset before any rule.
    let c = with(github_claims(&t, &iss.url), json!({"sub": "octo-org/app"}));
    assert_refused(
        &t,
        exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &c), &[]).await,
        "invalid_grant",
        "preset: GitHub Actions sub",
    )
    .await;
    // The sub's repository must agree with the repository claim.
    let c = with(
        github_claims(&t, &iss.url),
        json!({"repository": "octo-org/other"}),
    );
    assert_refused(
        &t,
        exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &c), &[]).await,
        "invalid_grant",
        "but the repository claim is",
    )
    .await;

    // RFC 8414 metadata advertises the grant.
    let m: Value = t
        .http
        .get(t.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        m["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(EXCHANGE))
    );
}

#[tokio::test]
async fn kubernetes_tokens_and_every_rule_kind() {
    let t = TestServer::start().await;
    let iss = Issuer::start().await;
    let owner = t.create_owner("platform").await;
    let ci = identity(&t, &owner, "k8s-deployer", json!({})).await;
    create_policy(
        &t,
        json!({
            "name": "ci-namespace", "preset": "kubernetes", "issuer": iss.url,
            "jwks_uri": iss.jwks_uri(), "audiences": [AUD], "identity": ci,
            "allow": [{"conditions": [
                {"claim": "sub", "glob": "system:serviceaccount:ci:*"},
                {"claim": "/kubernetes.io/namespace", "equals": "ci"},
                {"claim": "/kubernetes.io/serviceaccount/name", "in": ["deployer", "migrator"]},
                {"claim": "/kubernetes.io/pod/name", "regex": "(deployer|migrator)-[a-z0-9]{5}"},
                {"claim": "/kubernetes.io/pod/name", "not": true, "glob": "*-debug*"},
            ]}],
        }),
    )
    .await;
    let ok = k8s_claims(&t, &iss.url, "ci", "deployer", Some("deployer-7f9k2"));
    let (s, v) = exchange_jwt(&t, &iss.mint("ES256", "ec-1", &ok), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "payments:read");

    // One failing condition of each kind; the audit reason names it.
    let cases = [
        (
            k8s_claims(&t, &iss.url, "ci", "builder", Some("deployer-7f9k2")),
            "does not match in [\"deployer\", \"migrator\"]",
        ),
        (
            k8s_claims(&t, &iss.url, "ci", "deployer", Some("deployer-7f9k2x")),
            "does not match regex",
        ),
        // The negation alone: the pod name passes the regex but is a debug pod.
        (
            k8s_claims(&t, &iss.url, "ci", "migrator", Some("migrator-debug")),
            "matches glob \"*-debug*\", which the rule forbids",
        ),
        (
            k8s_claims(&t, &iss.url, "ci", "deployer", Some("deployer-debug1")),
            "does not match regex",
        ),
        // A missing claim never matches, not even the negated condition.
        (
            k8s_claims(&t, &iss.url, "ci", "deployer", None),
            "claim /kubernetes.io/pod/name is missing",
        ),
        (
            k8s_claims(&t, &iss.url, "prod", "deployer", Some("deployer-7f9k2")),
            "does not match glob \"system:serviceaccount:ci:*\"",
        ),
        // The preset: the sub must agree with the kubernetes.io claims.
        (
            with(ok.clone(), json!({"sub": "system:serviceaccount:ci:other"})),
            "preset: Kubernetes sub names service account",
        ),
        (
            with(ok.clone(), json!({"sub": "system:node:worker-1"})),
            "is not system:serviceaccount:NAMESPACE:NAME",
        ),
    ];
    for (claims, reason) in cases {
        let tok = iss.mint("RS256", "rsa-1", &claims);
        assert_refused(
            &t,
            exchange_jwt(&t, &tok, &[]).await,
            "invalid_grant",
            reason,
        )
        .await;
    }
}

#[tokio::test]
async fn negation_refuses_what_it_names() {
    let t = TestServer::start().await;
    let iss = Issuer::start().await;
    let owner = t.create_owner("platform").await;
    let ci = identity(&t, &owner, "gh", json!({})).await;
    create_policy(&t, github_policy(&iss, &ci)).await;
    // Rule 1 fails (ref), rule 2 fails only on the negated event_name condition.
    let c = with(
        github_claims(&t, &iss.url),
        json!({"ref": "refs/pull/7/merge", "event_name": "pull_request"}),
    );
    assert_refused(
        &t,
        exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &c), &[]).await,
        "invalid_grant",
        "rule 2: claim event_name = \"pull_request\" matches equals \"pull_request\", which the rule forbids",
    )
    .await;
    let c = with(c, json!({"event_name": "push"}));
    let (s, v) = exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &c), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn bad_inputs_are_refused_with_precise_audited_reasons() {
    let t = TestServer::start().await;
    let iss = Issuer::start().await;
    let owner = t.create_owner("platform").await;
    let ci = identity(&t, &owner, "ci", json!({})).await;
    let mut body = github_policy(&iss, &ci);
    body["single_use"] = json!(true);
    body["max_token_age_secs"] = json!(600);
    create_policy(&t, body).await;
    let now = now_of(&t);
    let good = || github_claims(&t, &iss.url);
    let rsa = |c: &Value| iss.mint("RS256", "rsa-1", c);

    // Unknown issuer.
    let other = with(good(), json!({"iss": "https://unknown-issuer.example"}));
    assert_refused(
        &t,
        exchange_jwt(&t, &rsa(&other), &[]).await,
        "invalid_grant",
        "no enabled trust policy for issuer \"https://unknown-issuer.example\"",
    )
    .await;
    // Wrong audience.
    let c = with(good(), json!({"aud": "https://someone-else.example"}));
    assert_refused(&t, exchange_jwt(&t, &rsa(&c), &[]).await, "invalid_grant", "audience: token aud [\"https://someone-else.example\"] names none of the policy's audiences").await;
    // Expired, beyond the skew.
    let c = with(
        good(),
        json!({"iat": now - 400, "nbf": now - 400, "exp": now - 61}),
    );
    assert_refused(
        &t,
        exchange_jwt(&t, &rsa(&c), &[]).await,
        "invalid_grant",
        "expiry: token expired at",
    )
    .await;
    // Not yet valid.
    let c = with(good(), json!({"nbf": now + 120}));
    assert_refused(
        &t,
        exchange_jwt(&t, &rsa(&c), &[]).await,
        "invalid_grant",
        "not_before: token is not valid before",
    )
    .await;
    // Too old for the policy's maximum age.
    let c = with(good(), json!({"iat": now - 3600, "exp": now + 60}));
    assert_refused(
        &t,
        exchange_jwt(&t, &rsa(&c), &[]).await,
        "invalid_grant",
        "max_age: token is 3600 s old",
    )
    .await;
    // Bad signature: the payload changed after signing.
    let tok = rsa(&good());
    let mut parts: Vec<String> = tok.split('.').map(str::to_owned).collect();
    parts[1] = b64(with(good(), json!({"repository": "octo-org/app", "environment": "prod", "sub": "repo:octo-org/app:ref:refs/heads/main", "ref": "refs/heads/main", "extra": 1})).to_string().as_bytes());
    assert_refused(
        &t,
        exchange_jwt(&t, &parts.join("."), &[]).await,
        "invalid_grant",
        "signature: the signature does not verify",
    )
    .await;
    // alg none.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "rsa-1"})
            .to_string()
            .as_bytes()),
        b64(good().to_string().as_bytes())
    );
    assert_refused(
        &t,
        exchange_jwt(&t, &none, &[]).await,
        "invalid_grant",
        "unsigned tokens (alg none) are not accepted",
    )
    .await;
    // HS256 "signed" with the issuer's public key (algorithm confusion).
    let pk = iss.public_jwk("rsa-1");
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"})
            .to_string()
            .as_bytes()),
        b64(good().to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pk.to_string().as_bytes());
    let hs = format!(
        "{input}.{}",
        b64(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref())
    );
    assert_refused(
        &t,
        exchange_jwt(&t, &hs, &[]).await,
        "invalid_grant",
        "symmetric (HMAC) algorithms are not accepted",
    )
    .await;
    // An unknown kid (after a rate-limited refresh attempt).
    let tok = iss.mint("EdDSA", "ed-unknown", &good());
    assert_refused(
        &t,
        exchange_jwt(&t, &tok, &[]).await,
        "invalid_grant",
        "no key with kid \"ed-unknown\"",
    )
    .await;
    // A failing claim rule.
    let c = with(
        good(),
        json!({"repository": "octo-org/other", "sub": "repo:octo-org/other:ref:refs/heads/main", "repository_owner_id": "999"}),
    );
    assert_refused(&t, exchange_jwt(&t, &rsa(&c), &[]).await, "invalid_grant", "rules: no allow rule matched (rule 1: claim repository = \"octo-org/other\" does not match equals \"octo-org/app\"").await;
    // Widening the scope or the audience.
    assert_refused(
        &t,
        exchange_jwt(
            &t,
            &rsa(&good()),
            &[("scope", "payments:read steward:admin")],
        )
        .await,
        "invalid_scope",
        "scope steward:admin is not held by the subject",
    )
    .await;
    assert_refused(
        &t,
        exchange_jwt(
            &t,
            &rsa(&good()),
            &[("audience", "https://elsewhere.internal")],
        )
        .await,
        "invalid_target",
        "audience https://elsewhere.internal is outside the subject's audiences",
    )
    .await;
    // Replay of a single-use token: the first exchange works, the second is refused.
    let once = rsa(&good());
    let (s, v) = exchange_jwt(&t, &once, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_refused(
        &t,
        exchange_jwt(&t, &once, &[]).await,
        "invalid_grant",
        "was already used (trust policy \"deploy-app\" is single-use)",
    )
    .await;
    // A single-use policy needs a jti.
    let c = with(good(), json!({"jti": null}));
    assert_refused(
        &t,
        exchange_jwt(&t, &rsa(&c), &[]).await,
        "invalid_grant",
        "has no jti, but trust policy",
    )
    .await;
    // Missing parameters and unsupported token types are invalid_request.
    let (s, v) = exchange(&t, &[("subject_token_type", JWT)]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert_refused(
        &t,
        exchange(
            &t,
            &[
                ("subject_token", &once),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ],
        )
        .await,
        "invalid_request",
        "subject_token_type \"urn:ietf:params:oauth:token-type:saml2\" is not supported",
    )
    .await;
    // A suspended identity gets no tokens through federation either.
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{ci}/suspend"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_refused(
        &t,
        exchange_jwt(&t, &rsa(&good()), &[]).await,
        "invalid_grant",
        "identity is suspended",
    )
    .await;
    // Failed client authentication is invalid_client, as everywhere.
    let resp = t
        .http
        .post(t.url("/oauth2/token"))
        .basic_auth(&ci, Some("stw_wrong"))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", once.as_str()),
            ("subject_token_type", JWT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jwks_unreachable_cached_keys_ttl_and_rotation() {
    let t = TestServer::start_with(|c| {
        c.federation.jwks_cache_ttl_secs = 300;
        c.federation.jwks_refresh_interval_secs = 30;
    })
    .await;
    let owner = t.create_owner("platform").await;
    let ci = identity(&t, &owner, "ci", json!({})).await;

    // An issuer whose JWKS cannot be reached at all, and nothing cached.
    let dead = "http://127.0.0.1:9";
    let mut body = json!({
        "name": "dead", "issuer": dead, "jwks_uri": format!("{dead}/jwks"), "audiences": [AUD],
        "identity": ci, "allow": [{"conditions": [{"claim": "sub", "equals": "x"}]}],
    });
    create_policy(&t, body.clone()).await;
    let iss = Issuer::start().await;
    let c = with(github_claims(&t, dead), json!({"sub": "x"}));
    assert_refused(&t, exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &c), &[]).await, "invalid_grant", "keys: JWKS http://127.0.0.1:9/jwks is unreachable (connection failed) and no keys are cached").await;

    // A live issuer: keys are fetched once, then cached.
    body["name"] = json!("live");
    body["issuer"] = json!(iss.url);
    body["jwks_uri"] = json!(iss.jwks_uri());
    create_policy(&t, body).await;
    let sub_x = |t: &TestServer| with(github_claims(t, &iss.url), json!({"sub": "x"}));
    let (s, v) = exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &sub_x(&t)), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(iss.hits.load(Ordering::SeqCst), 1);

    // The JWKS goes down: cached keys keep working within their TTL, without fetching.
    iss.down.store(true, Ordering::SeqCst);
    t.clock.advance(time::Duration::seconds(100));
    let (s, v) = exchange_jwt(&t, &iss.mint("EdDSA", "ed-1", &sub_x(&t)), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(iss.hits.load(Ordering::SeqCst), 1);
    // An unknown kid triggers a refresh, which fails: refused, saying so.
    assert_refused(
        &t,
        exchange_jwt(&t, &iss.mint("EdDSA", "ed-2", &sub_x(&t)), &[]).await,
        "invalid_grant",
        "refreshing failed: HTTP status 503",
    )
    .await;
    assert_eq!(iss.hits.load(Ordering::SeqCst), 2);
    // Past the TTL, the cached keys are no longer used.
    t.clock.advance(time::Duration::seconds(250));
    assert_refused(
        &t,
        exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &sub_x(&t)), &[]).await,
        "invalid_grant",
        "is unreachable (HTTP status 503) and the cached keys expired",
    )
    .await;

    // Back up: fresh keys, and a rotated key is picked up by a refresh on its unknown kid.
    iss.down.store(false, Ordering::SeqCst);
    t.clock.advance(time::Duration::seconds(31));
    let (s, v) = exchange_jwt(&t, &iss.mint("RS256", "rsa-1", &sub_x(&t)), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let before = iss.hits.load(Ordering::SeqCst);
    iss.jwks.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(iss.public_jwk("ed-2"));
    t.clock.advance(time::Duration::seconds(31));
    let (s, v) = exchange_jwt(&t, &iss.mint("EdDSA", "ed-2", &sub_x(&t)), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(iss.hits.load(Ordering::SeqCst), before + 1);
    // Refreshes on unknown kids are rate-limited: a burst of forged kids costs no fetches.
    for i in 0..5 {
        let kid = format!("ed-forged-{i}");
        assert_refused(
            &t,
            exchange_jwt(&t, &iss.mint("EdDSA", &kid, &sub_x(&t)), &[]).await,
            "invalid_grant",
            "not refreshed (at most one refresh every 30 s)",
        )
        .await;
    }
    assert_eq!(iss.hits.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn inline_jwks_for_air_gapped_issuers() {
    let t = TestServer::start().await;
    let iss = Issuer::start().await;
    let owner = t.create_owner("platform").await;
    let ci = identity(&t, &owner, "ci", json!({})).await;
    let air = "https://issuer.air-gapped.example";
    let p = create_policy(
        &t,
        json!({
            "name": "air", "issuer": air, "jwks": {"keys": [iss.public_jwk("ec-1")]},
            "audiences": [AUD], "identity": ci, "algorithms": ["ES256"],
            "allow": [{"conditions": [{"claim": "sub", "equals": "batch-job"}]}],
        }),
    )
    .await;
    assert!(p.get("jwks_uri").is_none());
    let c = with(github_claims(&t, air), json!({"sub": "batch-job"}));
    let (s, v) = exchange_jwt(&t, &iss.mint("ES256", "ec-1", &c), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        iss.hits.load(Ordering::SeqCst),
        0,
        "no network for inline keys"
    );
    // The algorithm allow-list narrows per policy.
    let c2 = with(c.clone(), json!({"jti": "other"}));
    let tok = iss.mint("EdDSA", "ec-1", &c2);
    assert_refused(
        &t,
        exchange_jwt(&t, &tok, &[]).await,
        "invalid_grant",
        "algorithm: alg EdDSA is not in the policy's algorithms (ES256)",
    )
    .await;
}

/// Fetches a client_credentials token for `id`.
async fn cc_token(t: &TestServer, id: &str, secret: &str, scope: &str) -> String {
    let (s, v, _) = t.token_basic(id, secret, &[("scope", scope)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn down_scoping_a_steward_token_never_widens() {
    let t = TestServer::start().await;
    let (id, secret) = t.workload("payments-api").await;
    let (_, v, _) = t
        .token_basic(&id, &secret, &[("scope", "payments:read payments:write")])
        .await;
    let original = v["access_token"].as_str().unwrap().to_owned();
    let orig_claims = decode_claims(&original);
    let form = [
        ("subject_token", original.as_str()),
        ("subject_token_type", AT),
        ("scope", "payments:read"),
        ("audience", "https://payments.internal"),
    ];
    let (s, v) = exchange(&t, &form).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "payments:read");
    assert_eq!(v["issued_token_type"], AT);
    let narrowed = v["access_token"].as_str().unwrap().to_owned();
    let c = decode_claims(&narrowed);
    assert_eq!(c["sub"], id);
    assert_eq!(c["aud"], "https://payments.internal");
    assert!(
        c["exp"].as_i64().unwrap() <= orig_claims["exp"].as_i64().unwrap(),
        "never outlives the subject"
    );
    // Down-scoping a down-scoped token works; widening it back does not.
    let (s, _) = exchange(
        &t,
        &[("subject_token", &narrowed), ("subject_token_type", AT)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_refused(
        &t,
        exchange(
            &t,
            &[
                ("subject_token", &narrowed),
                ("subject_token_type", AT),
                ("scope", "payments:write"),
            ],
        )
        .await,
        "invalid_scope",
        "scope payments:write is not held by the subject",
    )
    .await;
    assert_refused(
        &t,
        exchange(
            &t,
            &[
                ("subject_token", &narrowed),
                ("subject_token_type", AT),
                ("audience", "https://ledger.internal"),
            ],
        )
        .await,
        "invalid_target",
        "audience https://ledger.internal is outside the subject's audiences",
    )
    .await;
    // With client authentication, the client becomes the client_id.
    let (s, v) = t.token_basic_exchange(&id, &secret, &original).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        decode_claims(v["access_token"].as_str().unwrap())["client_id"],
        id
    );
    // A revoked subject token cannot be exchanged.
    let resp = t
        .http
        .post(t.url("/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", original.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_refused(
        &t,
        exchange(
            &t,
            &[("subject_token", &original), ("subject_token_type", AT)],
        )
        .await,
        "invalid_grant",
        "subject token: token has been revoked",
    )
    .await;
}

#[tokio::test]
async fn three_hop_agent_delegation_chain() {
    let t = TestServer::start().await;
    let owner = t.create_owner("ai").await;
    let agent = |name: &'static str, scopes: Value| {
        let t = &t;
        let owner = owner.clone();
        async move {
            let id = identity(
                t,
                &owner,
                name,
                json!({"kind": "agent", "scopes": scopes, "default_scopes": [], "audiences": []}),
            )
            .await;
            let (_, secret) = t.api_key(&id).await;
            (id, secret)
        }
    };
    let (a1, s1) = agent(
        "planner",
        json!(["docs:read", "docs:write", "tickets:write"]),
    )
    .await;
    let (a2, s2) = agent("researcher", json!(["docs:read", "docs:write"])).await;
    let (a3, s3) = agent("summarizer", json!(["docs:read", "tickets:write"])).await;
    let (a4, s4) = agent("extra", json!(["docs:read"])).await;
    let (a5, s5) = agent("stranger", json!(["docs:read"])).await;
    let user = identity(
        &t,
        &owner,
        "assistant-frontend",
        json!({"scopes": ["docs:read", "docs:write", "tickets:write", "billing:read"], "default_scopes": [], "audiences": [],
               "may_act": [a1, a2, a3, a4]}),
    )
    .await;
    let (_, us) = t.api_key(&user).await;
    let (s, v) = t
        .api(Method::GET, &format!("/v1/identities/{user}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["may_act"].as_array().unwrap().len(), 4);

    let subject = cc_token(
        &t,
        &user,
        &us,
        "docs:read docs:write tickets:write billing:read",
    )
    .await;
    let t1 = cc_token(&t, &a1, &s1, "docs:read docs:write tickets:write").await;
    let t2 = cc_token(&t, &a2, &s2, "docs:read docs:write").await;
    let t3 = cc_token(&t, &a3, &s3, "docs:read tickets:write").await;
    let t4 = cc_token(&t, &a4, &s4, "docs:read").await;
    let t5 = cc_token(&t, &a5, &s5, "docs:read").await;
    let hop = |subj: String, actor: String, scope: Option<&'static str>| {
        let t = &t;
        async move {
            let mut f = vec![
                ("subject_token", subj.as_str()),
                ("subject_token_type", AT),
                ("actor_token", actor.as_str()),
                ("actor_token_type", AT),
            ];
            if let Some(s) = scope {
                f.push(("scope", s));
            }
            exchange(t, &f).await
        }
    };

    // Hop 1: the planner acts for the user; scopes = subject ∩ actor.
    let (s, v) = hop(subject.clone(), t1.clone(), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "docs:read docs:write tickets:write");
    let h1 = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(decode_claims(&h1)["act"], json!({"sub": a1}));
    // Hop 2: the researcher; request ∩ subject ∩ actor.
    let (s, v) = hop(h1.clone(), t2.clone(), Some("docs:read docs:write")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let h2 = v["access_token"].as_str().unwrap().to_owned();
    // Hop 3: the summarizer asks for docs:read and tickets:write, but the subject (hop 2)
    // holds no tickets:write any more: widening is refused...
    assert_refused(
        &t,
        hop(h2.clone(), t3.clone(), Some("docs:read tickets:write")).await,
        "invalid_scope",
        "scope tickets:write is not held by the subject",
    )
    .await;
    // ...and a scope the actor lacks is dropped by the intersection, leaving nothing: refused.
    assert_refused(
        &t,
        hop(h2.clone(), t3.clone(), Some("docs:write")).await,
        "invalid_scope",
        &format!("none of [\"docs:write\"] is held by actor {a3}"),
    )
    .await;
    let (s, v) = hop(h2.clone(), t3.clone(), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "docs:read");
    let h3 = v["access_token"].as_str().unwrap().to_owned();
    let c3 = decode_claims(&h3);
    assert_eq!(c3["sub"], user);
    assert_eq!(c3["client_id"], a3);
    assert_eq!(c3["scope"], "docs:read");
    assert_eq!(
        c3["act"],
        json!({"sub": a3, "act": {"sub": a2, "act": {"sub": a1}}})
    );
    assert!(c3["exp"].as_i64().unwrap() <= decode_claims(&h2)["exp"].as_i64().unwrap());
    // Introspection shows the whole chain.
    let i = introspect(&t, &h3).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["act"], c3["act"]);
    // The audit log shows each hop's chain, scopes and actor.
    let hops: Vec<Value> = t
        .audit("action=token.exchange&outcome=success")
        .await
        .into_iter()
        .collect();
    assert_eq!(hops.len(), 3);
    let chains: Vec<Value> = hops
        .iter()
        .map(|h| h["details"]["act_chain"].clone())
        .collect();
    assert_eq!(
        chains,
        vec![json!([a1]), json!([a2, a1]), json!([a3, a2, a1])]
    );
    let scopes: Vec<&str> = hops
        .iter()
        .map(|h| h["details"]["scope"].as_str().unwrap())
        .collect();
    assert_eq!(
        scopes,
        vec![
            "docs:read docs:write tickets:write",
            "docs:read docs:write",
            "docs:read"
        ]
    );
    assert!(hops.iter().all(|h| h["identity_id"] == user.as_str()));
    assert_eq!(hops[2]["actor"], a3);
    assert_eq!(hops[2]["details"]["actor"]["identity"], a3);

    // A fourth hop exceeds the default depth of 3.
    assert_refused(
        &t,
        hop(h3.clone(), t4.clone(), None).await,
        "invalid_grant",
        &format!("delegation chain too deep: 4 actors ({a4} <- {a3} <- {a2} <- {a1}), at most 3"),
    )
    .await;
    // An actor the subject does not allow.
    assert_refused(
        &t,
        hop(subject.clone(), t5.clone(), None).await,
        "invalid_grant",
        &format!("actor {a5} is not allowed to act for identity {user} (not in its may_act)"),
    )
    .await;
    // The actor must present its own, undelegated token meant for this server.
    assert_refused(
        &t,
        hop(subject.clone(), h1.clone(), None).await,
        "invalid_grant",
        "is itself delegated",
    )
    .await;
    // actor_token without its type is a malformed request.
    let (s, v) = exchange(
        &t,
        &[
            ("subject_token", &subject),
            ("subject_token_type", AT),
            ("actor_token", &t1),
        ],
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Suspending an actor in the chain ends the delegated tokens at once.
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{a2}/suspend"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(introspect(&t, &h3).await["active"], false);
    assert_eq!(introspect(&t, &h1).await["active"], true);
}

#[tokio::test]
async fn trust_policy_api_validation_crud_and_explain() {
    let t = TestServer::start().await;
    let iss = Issuer::start().await;
    let owner = t.create_owner("platform").await;
    let ci = identity(&t, &owner, "ci", json!({})).await;

    // Validation: clear messages, 400.
    let mut bad = github_policy(&iss, &ci);
    bad["allow"] = json!([{"conditions": [{"claim": "ref", "equals": "refs/heads/main"}]}]);
    let (s, v) = t.api(Method::POST, "/v1/trust-policies", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_request");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("rule 1: a GitHub Actions rule must pin the repository or its owner"),
        "{v}"
    );
    let mut bad = github_policy(&iss, &ci);
    bad["identity"] = json!(uuid::Uuid::now_v7());
    let (s, v) = t.api(Method::POST, "/v1/trust-policies", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"].as_str().unwrap().contains("unknown identity"),
        "{v}"
    );
    let mut bad = github_policy(&iss, &ci);
    bad["allow"][0]["conditions"][0] = json!({"claim": "repository", "equal": "x"});
    let (s, v) = t.api(Method::POST, "/v1/trust-policies", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `equal`"),
        "{v}"
    );
    let mut bad = github_policy(&iss, &ci);
    bad["audiences"] = json!([]);
    let (s, v) = t.api(Method::POST, "/v1/trust-policies", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("at least one audience"),
        "{v}"
    );

    // Create, read, list, conflict on name.
    let p = create_policy(&t, github_policy(&iss, &ci)).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, v) = t
        .api(Method::GET, &format!("/v1/trust-policies/{id}"), None)
        .await;
    assert_eq!((s, &v["name"]), (StatusCode::OK, &json!("deploy-app")));
    let (s, _) = t
        .api(
            Method::POST,
            "/v1/trust-policies",
            Some(github_policy(&iss, &ci)),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, l) = t
        .api(
            Method::GET,
            &format!("/v1/trust-policies?issuer={}", iss.url),
            None,
        )
        .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let (_, l) = t
        .api(
            Method::GET,
            "/v1/trust-policies?issuer=https://nobody.example",
            None,
        )
        .await;
    assert_eq!(l["items"], json!([]));

    // Explain: an accepted token, with each check and each condition.
    let good = iss.mint("RS256", "rsa-1", &github_claims(&t, &iss.url));
    let (s, e) = t
        .api(
            Method::POST,
            &format!("/v1/trust-policies/{id}/explain"),
            Some(json!({"token": good})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["accepted"], true, "{e}");
    assert_eq!(e["matched_rule"], 1);
    assert_eq!(
        e["rules"][0]["conditions"][1]["why"],
        "claim ref = \"refs/heads/main\" equals \"refs/heads/main\""
    );
    let checks: Vec<&str> = e["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        vec![
            "issuer",
            "algorithm",
            "keys",
            "signature",
            "registered_claims",
            "preset",
            "rules",
            "identity"
        ]
    );
    // Explain does not consume the token: it still exchanges.
    let (s, _) = exchange_jwt(&t, &good, &[]).await;
    assert_eq!(s, StatusCode::OK);
    // A refused token: which rule and condition failed, and why.
    let c = with(
        github_claims(&t, &iss.url),
        json!({"ref": "refs/heads/dev", "environment": null}),
    );
    let (_, e) = t
        .api(
            Method::POST,
            &format!("/v1/trust-policies/{id}/explain"),
            Some(json!({"token": iss.mint("RS256", "rsa-1", &c)})),
        )
        .await;
    assert_eq!(e["accepted"], false);
    assert_eq!(e["rules"][0]["matched"], false);
    assert_eq!(e["rules"][0]["conditions"][0]["matched"], true);
    assert_eq!(
        e["rules"][0]["conditions"][1]["why"],
        "claim ref = \"refs/heads/dev\" does not match equals \"refs/heads/main\""
    );
    assert_eq!(
        e["rules"][1]["conditions"][1]["why"],
        "claim environment is missing, so the condition cannot match"
    );
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("rules: no allow rule matched"),
        "{e}"
    );
    // A token that fails before the rules: the failing check, no rule results.
    let c = with(github_claims(&t, &iss.url), json!({"aud": "x"}));
    let (_, e) = t
        .api(
            Method::POST,
            &format!("/v1/trust-policies/{id}/explain"),
            Some(json!({"token": iss.mint("RS256", "rsa-1", &c)})),
        )
        .await;
    assert_eq!(
        e["checks"].as_array().unwrap().last().unwrap()["check"],
        "audience"
    );
    assert_eq!(e["rules"], json!([]));
    let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(b"{}"));
    let (_, e) = t
        .api(
            Method::POST,
            &format!("/v1/trust-policies/{id}/explain"),
            Some(json!({"token": none})),
        )
        .await;
    assert_eq!(e["checks"][0]["check"], "decode");
    assert!(e["reason"].as_str().unwrap().contains("alg none"), "{e}");

    // Patch (JSON merge patch), optimistic version, and the change takes effect at once.
    let (s, v) = t
        .api(
            Method::PATCH,
            &format!("/v1/trust-policies/{id}"),
            Some(json!({"expected_version": 7, "enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = t
        .api(
            Method::PATCH,
            &format!("/v1/trust-policies/{id}"),
            Some(json!({"expected_version": 1, "enabled": false, "description": "paused"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["version"].as_i64(), v["enabled"].as_bool()),
        (Some(2), Some(false))
    );
    let tok = iss.mint("RS256", "rsa-1", &github_claims(&t, &iss.url));
    assert_refused(
        &t,
        exchange_jwt(&t, &tok, &[]).await,
        "invalid_grant",
        "no enabled trust policy",
    )
    .await;
    let (s, v) = t.api(Method::PATCH, &format!("/v1/trust-policies/{id}"), Some(json!({"enabled": true, "allow": [{"conditions": [{"claim": "ref", "equals": "x"}]}]}))).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a patch is validated like a new policy: {v}"
    );
    let (s, _) = t
        .api(
            Method::PATCH,
            &format!("/v1/trust-policies/{id}"),
            Some(json!({"enabled": true, "description": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = exchange_jwt(&t, &tok, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Delete: gone, and its tokens no longer exchange.
    let (s, _) = t
        .api(Method::DELETE, &format!("/v1/trust-policies/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t
        .api(Method::GET, &format!("/v1/trust-policies/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let tok = iss.mint("RS256", "rsa-1", &github_claims(&t, &iss.url));
    assert_refused(
        &t,
        exchange_jwt(&t, &tok, &[]).await,
        "invalid_grant",
        "no enabled trust policy",
    )
    .await;

    // Every change is audited.
    let actions: Vec<String> = t
        .audit("action=trust_policy.")
        .await
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "trust_policy.create",
            "trust_policy.update",
            "trust_policy.update",
            "trust_policy.delete"
        ]
    );
    let updates = t.audit("action=trust_policy.update").await;
    assert_eq!(
        updates[0]["details"]["changes"]["enabled"],
        json!({"before": true, "after": false})
    );

    // The OpenAPI document describes the API.
    let doc: Value = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/trust-policies",
        "/v1/trust-policies/{id}",
        "/v1/trust-policies/{id}/explain",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    // Reads need a token with read scope.
    let plain = identity(&t, &owner, "plain", json!({"audiences": []})).await;
    let (_, secret) = t.api_key(&plain).await;
    let tok = cc_token(&t, &plain, &secret, "payments:read").await;
    let (s, _) = t
        .api_with(&tok, Method::GET, "/v1/trust-policies", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

impl TestServer {
    /// Token exchange of `subject` authenticated with HTTP Basic.
    async fn token_basic_exchange(
        &self,
        id: &str,
        secret: &str,
        subject: &str,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&[
                ("grant_type", EXCHANGE),
                ("subject_token", subject),
                ("subject_token_type", AT),
            ])
            .send()
            .await
            .unwrap();
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }
}

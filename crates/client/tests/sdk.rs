//! The SDK against a real Steward server started in-process (SQLite, loopback HTTP), and the
//! example service protected by the SDK layer. Certificate-bound tokens, which this server does
//! not issue yet, are signed by a test issuer whose JWKS is served over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/protected_service.rs"]
mod example;

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use steward_client::{
    ClientAuth, ClientCertificate, DpopKey, RequireToken, Secret, TokenSource, TokenSourceConfig,
    Verifier, VerifierConfig, certificate_thumbprint,
};
use steward_core::{Clock, ManualClock};
use steward_server::{RunningServer, ServerConfig, StartOptions};

const AUD: &str = "https://payments.internal";

struct Steward {
    server: RunningServer,
    clock: Arc<ManualClock>,
    http: reqwest::Client,
    admin: String,
    _dir: tempfile::TempDir,
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Steward {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            // Plain HTTP on loopback, as in the server's own integration tests.
            insecure_http: true,
            ..Default::default()
        };
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let server = steward_server::start(
            cfg,
            StartOptions {
                master_key: None,
                clock: Some(clock.clone()),
            },
        )
        .await
        .unwrap();
        let creds: Value = serde_json::from_str(
            &std::fs::read_to_string(server.admin_credentials.clone().unwrap()).unwrap(),
        )
        .unwrap();
        let http = reqwest::Client::new();
        let resp: Value = http
            .post(format!("{}/oauth2/token", server.base_url()))
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
        Self {
            admin: resp["access_token"].as_str().unwrap().to_owned(),
            server,
            clock,
            http,
            _dir: dir,
        }
    }

    fn issuer(&self) -> String {
        self.server.base_url()
    }

    fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.issuer()))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A payments workload: (identity id, API key).
    async fn workload(&self, name: &str) -> (String, String) {
        let owner = self
            .post(
                "/v1/owners",
                json!({"name": format!("team-{name}"), "kind": "team", "contact": "t@example.com"}),
            )
            .await;
        let expires = (self.clock.now() + time::Duration::days(30))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let i = self
            .post(
                "/v1/identities",
                json!({"name": name, "kind": "workload", "owner": owner["id"], "purpose": "sdk test",
                   "environment": "prod", "expires_at": expires,
                   "scopes": ["payments:read", "payments:write"], "default_scopes": ["payments:read"],
                   "audiences": [AUD, "https://ledger.internal"]}),
            )
            .await;
        let id = i["id"].as_str().unwrap().to_owned();
        let c = self
            .post(
                &format!("/v1/identities/{id}/credentials"),
                json!({"type": "api_key"}),
            )
            .await;
        (id, c["client_secret"].as_str().unwrap().to_owned())
    }

    fn source(&self, id: &str, secret: &str, scope: &str, aud: &str) -> TokenSource {
        let mut cfg = TokenSourceConfig::new(
            self.token_endpoint(),
            ClientAuth::ApiKey {
                client_id: id.into(),
                secret: Secret::new(secret),
            },
        );
        cfg.scope = Some(scope.into());
        cfg.audience = vec![aud.into()];
        TokenSource::new(cfg).unwrap()
    }

    /// A verifier for `AUD` on the server's manual clock.
    fn verifier(&self) -> Arc<Verifier> {
        let mut cfg = VerifierConfig::new(self.issuer(), AUD);
        let clock = self.clock.clone();
        cfg.clock = Some(Arc::new(move || clock.now().unix_timestamp()));
        Arc::new(Verifier::new(cfg))
    }
}

async fn serve(app: axum::Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.ok() });
    addr
}

async fn call(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    auth: Option<String>,
    dpop: Option<String>,
) -> (StatusCode, String, Value) {
    let mut r = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
    if let Some(a) = auth {
        r = r.header("Authorization", a);
    }
    if let Some(p) = dpop {
        r = r.header("DPoP", p);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let www = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, www, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn example_service_accepts_valid_and_refuses_bad_tokens() {
    let s = Steward::start().await;
    let (id, secret) = s.workload("payments-api").await;
    let addr = serve(example::router(s.verifier())).await;

    let source = s.source(&id, &secret, "payments:read", AUD);
    let tok = source.token().await.unwrap();
    assert_eq!(tok.token_type, "Bearer");
    let (st, _, body) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(tok.authorization()),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["identity"], json!(id));
    assert_eq!(body["environment"], "prod");

    // No token at all.
    let (st, www, _) = call(addr, reqwest::Method::GET, "/balance", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(www.starts_with("Bearer"), "{www}");

    // A token missing the route's scope.
    let (st, www, _) = call(
        addr,
        reqwest::Method::POST,
        "/charge",
        Some(tok.authorization()),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(www.contains("insufficient_scope"), "{www}");
    let writer = s.source(&id, &secret, "payments:write", AUD);
    let w = writer.token().await.unwrap();
    let (st, _, _) = call(
        addr,
        reqwest::Method::POST,
        "/charge",
        Some(w.authorization()),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // A token for another audience.
    let ledger = s.source(&id, &secret, "payments:read", "https://ledger.internal");
    let other = ledger.token().await.unwrap();
    let (st, www, _) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(other.authorization()),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        www.contains("invalid_token") && www.contains("audience"),
        "{www}"
    );

    // A tampered signature.
    let mut bad = tok.token.clone();
    bad.pop();
    bad.push(if tok.token.ends_with('A') { 'B' } else { 'A' });
    let (st, _, _) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(format!("Bearer {bad}")),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // The same valid token once it has expired (default lifetime 600 s, skew 60 s).
    s.clock.advance(time::Duration::seconds(700));
    let (st, www, _) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(tok.authorization()),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(www.contains("expired"), "{www}");
}

#[tokio::test]
async fn token_source_caches_and_fetches_once_under_concurrency() {
    let s = Steward::start().await;
    let (id, secret) = s.workload("busy").await;
    let source = Arc::new(s.source(&id, &secret, "payments:read", AUD));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let src = source.clone();
        tasks.push(tokio::spawn(
            async move { src.token().await.unwrap().token },
        ));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    assert_eq!(
        source.fetch_count(),
        1,
        "one fetch for 32 concurrent callers"
    );
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    source.token().await.unwrap();
    assert_eq!(source.fetch_count(), 1, "cached");
    source.invalidate();
    let again = source.token().await.unwrap();
    assert_eq!(source.fetch_count(), 2);
    assert_ne!(again.token, tokens[0]);

    // A wrong secret is refused at once (no retries for a 401).
    let bad = s.source(&id, "stw_k_notthesecret", "payments:read", AUD);
    let e = bad.token().await.unwrap_err();
    assert!(e.to_string().contains("invalid_client"), "{e}");
    assert_eq!(bad.fetch_count(), 1);
    assert!(!format!("{bad:?}").contains(&secret));

    // An unreachable endpoint is retried with back-off, then reported.
    let mut cfg = TokenSourceConfig::new(
        "http://127.0.0.1:9/oauth2/token",
        ClientAuth::ApiKey {
            client_id: id.clone(),
            secret: Secret::new(secret.clone()),
        },
    );
    cfg.max_retries = 2;
    cfg.backoff = std::time::Duration::from_millis(10);
    let down = TokenSource::new(cfg).unwrap();
    assert!(down.token().await.is_err());
    assert_eq!(down.fetch_count(), 3);
}

#[tokio::test]
async fn private_key_jwt_and_dpop_bound_tokens() {
    let s = Steward::start().await;
    let (id, _) = s.workload("signer").await;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let p = kp.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])});
    s.post(
        &format!("/v1/identities/{id}/credentials"),
        json!({"type": "public_key", "jwk": jwk}),
    )
    .await;
    let dpop = Arc::new(DpopKey::generate().unwrap());
    let mut cfg = TokenSourceConfig::new(
        s.token_endpoint(),
        ClientAuth::PrivateKeyJwt {
            client_id: id.clone(),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            alg: Algorithm::ES256,
            kid: None,
        },
    );
    cfg.audience = vec![AUD.into()];
    cfg.dpop = Some(dpop.clone());
    let source = TokenSource::new(cfg).unwrap();
    let tok = source.token().await.unwrap();
    assert_eq!(tok.token_type, "DPoP");

    let addr = serve(example::router(s.verifier())).await;
    let url = format!("http://{addr}/balance");
    let proof = dpop.proof("GET", &url, Some(&tok.token), None).unwrap();
    let (st, _, body) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(tok.authorization()),
        Some(proof.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // The same proof again is a replay; no proof, or the Bearer scheme, is refused.
    let (st, www, _) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(tok.authorization()),
        Some(proof),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(www.starts_with("DPoP"), "{www}");
    let (st, _, _) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(tok.authorization()),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(format!("Bearer {}", tok.token)),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A proof by another key.
    let other = DpopKey::generate().unwrap();
    let proof = other.proof("GET", &url, Some(&tok.token), None).unwrap();
    let (st, _, _) = call(
        addr,
        reqwest::Method::GET,
        "/balance",
        Some(tok.authorization()),
        Some(proof),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// A test issuer: an ES256 key whose JWKS is served over HTTP, minting certificate-bound tokens.
struct TestIssuer {
    base: String,
    key: EncodingKey,
}

impl TestIssuer {
    async fn start() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let p = kp.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "kid": "test-1", "x": b64(&p[1..33]), "y": b64(&p[33..65])}]});
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let j = jwks.clone();
                async move { axum::Json(j) }
            }),
        );
        let addr = serve(app).await;
        Self {
            base: format!("http://{addr}"),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        }
    }

    fn mint(&self, cnf: Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = Some("test-1".into());
        let claims = json!({"iss": self.base, "sub": "0190c0de-0000-7000-8000-00000000000a",
            "aud": AUD, "exp": now + 300, "iat": now, "nbf": now, "jti": "t1",
            "client_id": "x", "scope": "payments:read", "env": "prod", "kind": "workload", "cnf": cnf});
        jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
    }
}

#[tokio::test]
async fn certificate_bound_token_needs_its_certificate() {
    let issuer = TestIssuer::start().await;
    let verifier = Arc::new(Verifier::new(VerifierConfig::new(issuer.base.clone(), AUD)));
    let cert = b"test client certificate DER".to_vec();
    let token = issuer.mint(json!({"x5t#S256": certificate_thumbprint(&cert)}));

    // Without mutual TLS: no certificate reaches the service.
    let plain = serve(example::router(verifier.clone())).await;
    let (st, www, _) = call(
        plain,
        reqwest::Method::GET,
        "/balance",
        Some(format!("Bearer {token}")),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(www.contains("certificate"), "{www}");

    // Behind a TLS acceptor that hands over the client certificate (simulated here).
    let with_cert = |der: Vec<u8>| {
        example::router(verifier.clone()).layer(axum::middleware::from_fn(
            move |mut req: axum::extract::Request, next: axum::middleware::Next| {
                let der = der.clone();
                async move {
                    req.extensions_mut().insert(ClientCertificate(der));
                    next.run(req).await
                }
            },
        ))
    };
    let good = serve(with_cert(cert.clone())).await;
    let (st, _, body) = call(
        good,
        reqwest::Method::GET,
        "/balance",
        Some(format!("Bearer {token}")),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let wrong = serve(with_cert(b"another certificate".to_vec())).await;
    let (st, _, _) = call(
        wrong,
        reqwest::Method::GET,
        "/balance",
        Some(format!("Bearer {token}")),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // An unbound token from the same issuer is fine without a certificate; HS256 never is.
    let unbound = issuer.mint(Value::Null);
    let (st, _, _) = call(
        plain,
        reqwest::Method::GET,
        "/balance",
        Some(format!("Bearer {unbound}")),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some("test-1".into());
    let forged = jsonwebtoken::encode(
        &h,
        &json!({"iss": issuer.base, "sub": "x", "aud": AUD, "exp": 4_000_000_000i64}),
        &EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    assert!(matches!(
        verifier.verify_bearer(&forged).await,
        Err(steward_client::VerifyError::Algorithm(_))
    ));
}

#[tokio::test]
async fn unknown_kid_refreshes_the_jwks_at_most_once_per_interval() {
    let issuer = TestIssuer::start().await;
    let v = Verifier::new(VerifierConfig::new(issuer.base.clone(), AUD));
    let token = issuer.mint(Value::Null);
    assert!(
        v.verify_bearer(&token).await.is_ok(),
        "first use fetches the JWKS"
    );
    // A token naming a kid the JWKS does not have: refused, and no refetch storm.
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    h.kid = Some("rotated-away".into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let t2 = jsonwebtoken::encode(
        &h,
        &json!({"iss": issuer.base, "sub": "x", "aud": AUD, "exp": now + 60}),
        &issuer.key,
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            v.verify_bearer(&t2).await,
            Err(steward_client::VerifyError::UnknownKey)
        );
    }
    // The layer alone (no example) also protects a route in one line.
    let app = axum::Router::new().route(
        "/x",
        axum::routing::get(|| async { "ok" }).layer(RequireToken::new(Arc::new(v))),
    );
    let addr = serve(app).await;
    let (st, _, _) = call(
        addr,
        reqwest::Method::GET,
        "/x",
        Some(format!("Bearer {token}")),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn a_remembered_token_still_expires_and_a_tampered_one_is_not_remembered() {
    let issuer = TestIssuer::start().await;
    let now = Arc::new(std::sync::atomic::AtomicI64::new(
        time::OffsetDateTime::now_utc().unix_timestamp(),
    ));
    let mut cfg = VerifierConfig::new(issuer.base.clone(), AUD);
    let clock = now.clone();
    cfg.clock = Some(Arc::new(move || {
        clock.load(std::sync::atomic::Ordering::SeqCst)
    }));
    let verifier = Verifier::new(cfg);
    let token = issuer.mint(Value::Null);
    let first = verifier.verify_bearer(&token).await.unwrap();
    let again = verifier.verify_bearer(&token).await.unwrap();
    assert_eq!(first, again);

    // One flipped character in the signature: not the remembered token, and not valid.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(matches!(
        verifier.verify_bearer(&forged).await,
        Err(steward_client::VerifyError::Invalid(_))
    ));

    // Past exp + leeway the remembered token is refused like any other.
    now.fetch_add(300 + 61, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        verifier.verify_bearer(&token).await,
        Err(steward_client::VerifyError::Expired)
    );
}

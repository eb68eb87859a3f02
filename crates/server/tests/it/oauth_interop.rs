//! Interoperability: third-party OAuth2 and JOSE code talks to Steward's token service.
//! The `oauth2` crate fetches tokens; `jsonwebtoken` verifies them against the JWKS and signs assertions and DPoP proofs.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestServer;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A P-256 key pair: (signing key for jsonwebtoken, public JWK).
pub fn p256_key() -> (EncodingKey, Value) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = kp.public_key().as_ref();
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

/// RFC 7638 thumbprint of an EC JWK, computed independently of Steward.
fn ec_thumbprint(jwk: &Value) -> String {
    let canon = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canon.as_bytes()).as_ref())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn assertion(key: &EncodingKey, client: &str, aud: &str, jti: &str, exp_in: i64) -> String {
    let claims = json!({"iss": client, "sub": client, "aud": aud, "jti": jti, "iat": now(), "exp": now() + exp_in});
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key).unwrap()
}

/// Verifies a Steward token with jsonwebtoken against the published JWKS.
async fn verify_independently(t: &TestServer, token: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 typ");
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwks: jsonwebtoken::jwk::JwkSet = t
        .http
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is published");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[&t.base]);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("independent verification")
        .claims
}

#[tokio::test]
async fn oauth2_crate_client_secret_basic_and_jwt_verification() {
    let t = TestServer::start().await;
    let (id, secret) = t.workload("payments-api").await;
    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(t.url("/oauth2/token")).unwrap());
    let http = oauth2::reqwest::Client::new();
    let tok = client
        .exchange_client_credentials()
        .add_scope(Scope::new("payments:write".into()))
        .add_extra_param("resource", "https://payments.internal")
        .request_async(&http)
        .await
        .expect("oauth2 crate gets a token");
    assert_eq!(tok.scopes().unwrap()[0].as_str(), "payments:write");
    let lifetime = tok.expires_in().unwrap().as_secs();
    assert!(
        (590..=600).contains(&lifetime),
        "default lifetime is 10 minutes, got {lifetime}"
    );
    let claims =
        verify_independently(&t, tok.access_token().secret(), "https://payments.internal").await;
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["client_id"], id);
    assert_eq!(claims["scope"], "payments:write");
    assert_eq!(claims["aud"], "https://payments.internal");
    assert_eq!(claims["env"], "prod");
    assert_eq!(claims["kind"], "workload");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    // No scope asked: the defaults, never everything.
    let tok = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    let claims =
        verify_independently(&t, tok.access_token().secret(), "https://ledger.internal").await;
    assert_eq!(claims["scope"], "payments:read");
    // client_secret_post works too.
    let (id2, secret2) = t.workload("ledger").await;
    let r = t
        .http
        .post(t.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id2.as_str()),
            ("client_secret", secret2.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn private_key_jwt_with_oauth2_crate() {
    let t = TestServer::start().await;
    let owner = t.create_owner("ci").await;
    let i = t.create_identity(&owner, "builder", json!({})).await;
    let id = i["id"].as_str().unwrap().to_owned();
    let (key, jwk) = p256_key();
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/credentials"),
            Some(json!({"type": "public_key", "jwk": jwk})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v.get("client_secret").is_none());
    assert_eq!(v["fingerprint"], ec_thumbprint(&jwk));
    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(t.url("/oauth2/token")).unwrap());
    let http = oauth2::reqwest::Client::new();
    let a = assertion(&key, &id, &t.url("/oauth2/token"), "jti-1", 120);
    let tok = client
        .exchange_client_credentials()
        .add_extra_param(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .add_extra_param("client_assertion", a.clone())
        .request_async(&http)
        .await
        .expect("private_key_jwt accepted");
    let claims =
        verify_independently(&t, tok.access_token().secret(), "https://payments.internal").await;
    assert_eq!(claims["sub"], id);
    // The same assertion again is a replay.
    let replay = client
        .exchange_client_credentials()
        .add_extra_param(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .add_extra_param("client_assertion", a)
        .request_async(&http)
        .await;
    assert!(replay.is_err(), "replayed assertion must be refused");
    let recs = t
        .audit(&format!("identity={id}&action=token.issue&outcome=failure"))
        .await;
    assert!(
        recs.iter()
            .any(|r| r["reason"].as_str().unwrap().contains("replayed")),
        "{recs:?}"
    );

    // Keys are cached per identity: a key added now works at once, and a revoked key stops at once.
    let first = v["id"].as_str().unwrap().to_owned();
    let (key2, jwk2) = p256_key();
    let (s, v2) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/credentials"),
            Some(json!({"type": "public_key", "jwk": jwk2})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v2}");
    let send = |a: String| {
        t.http
            .post(t.url("/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", a.as_str()),
            ])
            .send()
    };
    let tok_url = t.url("/oauth2/token");
    let r = send(assertion(&key2, &id, &tok_url, "jti-2", 120))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "new key: {}",
        r.text().await.unwrap()
    );
    let r = send(assertion(&key, &id, &tok_url, "jti-3", 120))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "first key, cached");
    let (s, _) = t
        .api(
            Method::DELETE,
            &format!("/v1/identities/{id}/credentials/{first}"),
            None,
        )
        .await;
    assert!(s.is_success(), "{s}");
    let r = send(assertion(&key, &id, &tok_url, "jti-4", 120))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revoked key");
    let r = send(assertion(&key2, &id, &tok_url, "jti-5", 120))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the other key still works");
}

#[tokio::test]
async fn dpop_bound_token_and_replay() {
    let t = TestServer::start().await;
    let (id, secret) = t.workload("dpop-client").await;
    let (key, jwk) = p256_key();
    let proof = |jti: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(serde_json::from_value(jwk.clone()).unwrap());
        jsonwebtoken::encode(
            &h,
            &json!({"jti": jti, "htm": "POST", "htu": t.url("/oauth2/token"), "iat": now()}),
            &key,
        )
        .unwrap()
    };
    let p = proof("proof-1");
    let send = |p: String| {
        t.http
            .post(t.url("/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .header("DPoP", p)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let r = send(p.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap();
    let claims = verify_independently(&t, token, "https://payments.internal").await;
    assert_eq!(claims["cnf"]["jkt"], ec_thumbprint(&jwk));
    // Replayed proof refused.
    let r = send(p).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_dpop_proof");
    // A proof for another URL is refused.
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(serde_json::from_value(jwk.clone()).unwrap());
    let wrong = jsonwebtoken::encode(
        &h,
        &json!({"jti": "x2", "htm": "POST", "htu": "https://evil.example/token", "iat": now()}),
        &key,
    )
    .unwrap();
    assert_eq!(send(wrong).await.unwrap().status(), StatusCode::BAD_REQUEST);
    // Introspection returns the binding.
    let admin = t.admin_token().await;
    let v: Value = t
        .http
        .post(t.url("/oauth2/introspect"))
        .bearer_auth(&admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "DPoP");
    assert_eq!(v["cnf"]["jkt"], ec_thumbprint(&jwk));
    let _ = proof("unused");
}

async fn introspect(t: &TestServer, token: &str) -> Value {
    let admin = t.admin_token().await;
    t.http
        .post(t.url("/oauth2/introspect"))
        .bearer_auth(&admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn continuous_verification_and_revocation() {
    let t = TestServer::start().await;
    let (id, secret) = t.workload("svc").await;
    let (_, v, _) = t.token_basic(&id, &secret, &[]).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&t, &token).await["active"], true);
    // Introspection requires an authenticated, privileged caller.
    let r = t
        .http
        .post(t.url("/oauth2/introspect"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t
        .http
        .post(t.url("/oauth2/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Suspension: inactive at once, and back after resume.
    t.api(Method::POST, &format!("/v1/identities/{id}/suspend"), None)
        .await;
    assert_eq!(introspect(&t, &token).await, json!({"active": false}));
    let (s, e, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    t.api(Method::POST, &format!("/v1/identities/{id}/resume"), None)
        .await;
    assert_eq!(introspect(&t, &token).await["active"], true);
    // RFC 7009 revocation by the client itself.
    let r = t
        .http
        .post(t.url("/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(introspect(&t, &token).await["active"], false);
    // Revoke every outstanding token of the identity.
    let (_, v, _) = t.token_basic(&id, &secret, &[]).await;
    let t2 = v["access_token"].as_str().unwrap().to_owned();
    t.clock.advance(time::Duration::seconds(1));
    t.api(
        Method::POST,
        &format!("/v1/identities/{id}/revoke-tokens"),
        None,
    )
    .await;
    assert_eq!(introspect(&t, &t2).await["active"], false);
    t.clock.advance(time::Duration::seconds(1));
    let (s, v, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        introspect(&t, v["access_token"].as_str().unwrap()).await["active"],
        true
    );
    // Retire: every credential and token dies.
    t.api(Method::POST, &format!("/v1/identities/{id}/retire"), None)
        .await;
    assert_eq!(
        introspect(&t, v["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, creds) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/credentials"),
            None,
        )
        .await;
    assert!(
        creds["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "revoked"),
        "{creds}"
    );
}

#[tokio::test]
async fn credential_revocation_and_rotation_with_overlap() {
    let t = TestServer::start().await;
    let (id, k1) = t.workload("svc").await;
    let (c2, k2) = t.api_key(&id).await;
    // Revoking one key leaves the other working.
    let (s, _) = t
        .api(
            Method::DELETE,
            &format!("/v1/identities/{id}/credentials/{c2}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        t.token_basic(&id, &k2, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.token_basic(&id, &k1, &[]).await.0, StatusCode::OK);
    // Rotate k1 with a one-hour grace: both work during the overlap, only the successor after.
    let (_, list) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/credentials"),
            None,
        )
        .await;
    let c1 = list["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, rot) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/credentials/{c1}/rotate"),
            Some(json!({"grace_secs": 3600})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rot}");
    let k3 = rot["current"]["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(rot["previous"]["state"], "retiring");
    assert_eq!(t.token_basic(&id, &k1, &[]).await.0, StatusCode::OK);
    assert_eq!(t.token_basic(&id, &k3, &[]).await.0, StatusCode::OK);
    t.clock.advance(time::Duration::seconds(3601));
    assert_eq!(
        t.token_basic(&id, &k1, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.token_basic(&id, &k3, &[]).await.0, StatusCode::OK);
    let recs = t
        .audit(&format!("identity={id}&action=credential.rotate"))
        .await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["details"]["previous"], c1);
    // The identity id never changed.
    let claims = t.token_basic(&id, &k3, &[]).await.1;
    assert!(claims["access_token"].is_string());
}

#[tokio::test]
async fn database_never_holds_an_issued_api_key() {
    let t = TestServer::start().await;
    let mut secrets = vec![t.admin_secret.clone()];
    for n in 0..3 {
        let (id, s) = t.workload(&format!("w{n}")).await;
        t.token_basic(&id, &s, &[]).await;
        secrets.push(s);
    }
    let dump = database_dump(&t).await;
    assert!(
        dump.len() > 10_000,
        "database contents found ({} bytes)",
        dump.len()
    );
    let text = String::from_utf8_lossy(&dump);
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "an API key was found in the database files"
        );
        assert!(
            !text.contains(&s[6..30]),
            "part of an API key was found in the database files"
        );
    }
}

/// Every byte the database holds: the SQLite files, or every row of every PostgreSQL table as JSON.
async fn database_dump(t: &TestServer) -> Vec<u8> {
    let mut dump = Vec::new();
    if let Some(db) = &t.pg_database {
        use sqlx::{ConnectOptions, Row};
        let admin = std::env::var("STEWARD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(db);
        let mut c = url
            .as_str()
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let tables: Vec<String> =
            sqlx::query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
        for table in tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM \"{table}\" t"
            )))
            .fetch_all(&mut c)
            .await
            .unwrap();
            for r in rows {
                dump.extend(r.get::<String, _>(0).into_bytes());
            }
        }
    } else {
        for entry in std::fs::read_dir(t.dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("steward.db")
            {
                dump.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    dump
}

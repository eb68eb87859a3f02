//! Certificates and mutual TLS over real HTTPS on loopback: CSR issuance and its refusals,
//! `openssl verify`, curl and rustls (reqwest) clients with client certificates, certificate-bound
//! tokens checked by jsonwebtoken, handshake refusals with their audit records, suspension at the
//! next handshake, device CAs with mapping rules, the CRL, and CA rollover.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_crypto::x509::{self, KeyAlg, LeafSpec};

use crate::harness::TestServer;

async fn https() -> TestServer {
    TestServer::start_with(|c| c.insecure_http = false).await
}

fn pem(label: &str, der: &[u8]) -> String {
    x509::pem_encode(label, der)
}

/// A client that trusts the server's bundle and presents `identity` (chain + key PEM).
fn mtls_client(t: &TestServer, identity: Option<&str>) -> reqwest::Client {
    let bundle = t.server.state.trust_bundle_pem();
    let mut b = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap());
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// Asks for a certificate with HTTP Basic client credentials; returns (status, body, key PEM).
async fn issue(
    t: &TestServer,
    id: &str,
    secret: &str,
    dns: &[&str],
    extra: Value,
) -> (StatusCode, Value, String) {
    let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
    let kc = x509::generate_key_and_csr(KeyAlg::EcdsaP256, "w", &[], &dns).unwrap();
    let mut body = json!({"csr": kc.csr_pem});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (s, v) = post_csr(t, id, secret, body).await;
    (s, v, kc.key_pem.to_string())
}

async fn post_csr(t: &TestServer, id: &str, secret: &str, body: Value) -> (StatusCode, Value) {
    let r = t
        .http
        .post(t.url("/v1/certificates"))
        .basic_auth(id, Some(secret))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Polls the audit log until a record of `action` about `needle` shows up.
async fn audited(t: &TestServer, query: &str, needle: &str) -> Value {
    for _ in 0..50 {
        let recs = t.audit(query).await;
        if let Some(r) = recs.iter().rev().find(|r| r.to_string().contains(needle)) {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no audit record for {query} mentioning {needle:?}");
}

async fn mtls_token(
    client: &reqwest::Client,
    t: &TestServer,
    client_id: &str,
) -> (StatusCode, Value) {
    let r = client
        .post(t.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn sha256_b64url(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

fn leaf_der(full_chain_pem: &str) -> Vec<u8> {
    x509::certificates_from_pem_or_der(full_chain_pem.as_bytes()).unwrap()[0].clone()
}

/// Verifies a Steward token with jsonwebtoken against the published JWKS; returns its claims.
async fn verify_jwt(t: &TestServer, token: &str) -> Value {
    use jsonwebtoken::{DecodingKey, Validation};
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = t
        .http
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = Validation::new(header.alg);
    // The audience depends on the identity; signature, issuer and expiry are what matter here.
    v.validate_aud = false;
    v.set_issuer(&[t.base.as_str()]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

fn run(cmd: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `run` off the runtime's thread: the server under test shares the test's runtime.
async fn run_async(cmd: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let (cmd, dir) = (cmd.to_owned(), dir.to_owned());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&cmd, &args, &dir)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn https_by_default_and_plain_http_only_on_loopback() {
    let t = https().await;
    assert!(t.base.starts_with("https://"), "{}", t.base);
    let r = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The admin credentials file carries the CA bundle clients must trust.
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(t.server.admin_credentials.as_ref().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(
        creds["ca_bundle"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(creds["issuer"].as_str().unwrap().starts_with("https://"));
    // A client that does not trust the bundle fails the handshake.
    assert!(
        reqwest::Client::new()
            .get(t.url("/healthz"))
            .send()
            .await
            .is_err()
    );
    // insecure_http away from loopback is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let cfg = steward_server::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "0.0.0.0:0".parse().unwrap(),
        insecure_http: true,
        ..Default::default()
    };
    let err = steward_server::start(cfg, Default::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn csr_issuance_interop_and_certificate_bound_token() {
    let t = https().await;
    let owner = t.create_owner("team-api").await;
    let i = t
        .create_identity(
            &owner,
            "api",
            json!({"allowed_dns_names": ["api.internal", "*.svc.internal"]}),
        )
        .await;
    let id = i["id"].as_str().unwrap().to_owned();
    let (_, secret) = t.api_key(&id).await;
    let (s, v, key) = issue(
        &t,
        &id,
        &secret,
        &["api.internal", "x.svc.internal"],
        json!({"server_auth": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["spiffe_id"],
        format!("spiffe://steward.local/prod/workload/api")
    );
    assert_eq!(v["spiffe_id"], i["spiffe_id"]);
    let nb = time::OffsetDateTime::parse(
        v["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let na = time::OffsetDateTime::parse(
        v["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let life = (na - nb).whole_seconds();
    assert!(
        (3600..=3700).contains(&life),
        "default lifetime is one hour: {life}"
    );

    // openssl verifies the chain against the bundle and sees the SANs and EKUs.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bundle.pem"),
        v["trust_bundle"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        v["certificate"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("chain.pem"),
        v["full_chain"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let (ok, out) = run(
        "openssl",
        &["verify", "-CAfile", "bundle.pem", "leaf.pem"],
        dir.path(),
    );
    assert!(ok && out.contains("leaf.pem: OK"), "{out}");
    let (_, text) = run(
        "openssl",
        &["x509", "-in", "leaf.pem", "-noout", "-text"],
        dir.path(),
    );
    assert!(
        text.contains("URI:spiffe://steward.local/prod/workload/api"),
        "{text}"
    );
    assert!(
        text.contains("DNS:api.internal") && text.contains("DNS:x.svc.internal"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Client Authentication")
            && text.contains("TLS Web Server Authentication"),
        "{text}"
    );

    // curl (OpenSSL) with --cert/--key gets a certificate-bound token over mutual TLS.
    let (ok, out) = run_async(
        "curl",
        &[
            "-sS",
            "--max-time",
            "20",
            "--fail-with-body",
            "--cacert",
            "bundle.pem",
            "--cert",
            "chain.pem",
            "--key",
            "key.pem",
            "-d",
            "grant_type=client_credentials",
            "-d",
            &format!("client_id={id}"),
            &t.url("/oauth2/token"),
        ],
        dir.path(),
    )
    .await;
    assert!(ok, "{out}");
    let tok: Value = serde_json::from_str(&out).unwrap();
    let claims = verify_jwt(&t, tok["access_token"].as_str().unwrap()).await;
    let thumb = sha256_b64url(&leaf_der(v["full_chain"].as_str().unwrap()));
    assert_eq!(claims["cnf"]["x5t#S256"], thumb, "{claims}");
    assert_eq!(claims["sub"], id);
    assert!(claims.get("credential_id").is_none(), "{claims}");

    // rustls (reqwest) does the same; introspection returns cnf.
    let identity = format!("{}{}", v["full_chain"].as_str().unwrap(), key);
    let c = mtls_client(&t, Some(&identity));
    let (s, tv) = mtls_token(&c, &t, &id).await;
    assert_eq!(s, StatusCode::OK, "{tv}");
    let at = tv["access_token"].as_str().unwrap();
    let claims = verify_jwt(&t, at).await;
    assert_eq!(claims["cnf"]["x5t#S256"], thumb);
    let admin = t.admin_token().await;
    let r = t
        .http
        .post(t.url("/oauth2/introspect"))
        .bearer_auth(&admin)
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    let intro: Value = r.json().await.unwrap();
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["cnf"]["x5t#S256"], thumb, "{intro}");
    // The issuance is an audit record with serial, identity and not-after.
    let rec = audited(
        &t,
        &format!("action=certificate.issue&identity={id}"),
        v["serial"].as_str().unwrap(),
    )
    .await;
    assert_eq!(rec["outcome"], "success");
    assert_eq!(rec["details"]["not_after"], v["not_after"]);
    // A renewal over mutual TLS, authenticated by the current certificate.
    let kc = x509::generate_key_and_csr(KeyAlg::Ed25519, "w", &[], &[]).unwrap();
    let r = c
        .post(t.url("/v1/certificates"))
        .json(&json!({"csr": kc.csr_pem, "ttl_secs": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let renewed: Value = r.json().await.unwrap();
    assert_eq!(renewed["spiffe_id"], v["spiffe_id"]);
    // A certificate-bound token is refused without its certificate.
    let (s, _) = t.api_with(at, Method::GET, "/v1/ca", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let metadata: Value = t
        .http
        .get(t.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        metadata["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("tls_client_auth"))
    );
}

#[tokio::test]
async fn bad_csrs_are_refused_and_audited() {
    let t = https().await;
    let owner = t.create_owner("team-csr").await;
    let i = t
        .create_identity(
            &owner,
            "csr-app",
            json!({"allowed_dns_names": ["ok.internal"]}),
        )
        .await;
    let id = i["id"].as_str().unwrap().to_owned();
    let (_, secret) = t.api_key(&id).await;
    let other = t.create_identity(&owner, "other-app", json!({})).await;

    // Malformed PEM and DER.
    let (s, v) = post_csr(&t, &id, &secret, json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("malformed"), "{v}");
    let (s, v) = post_csr(&t, &id, &secret, json!({"csr": "MAMCAQA="})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // A CSR whose signature does not verify.
    let kc = x509::generate_key_and_csr(KeyAlg::EcdsaP256, "w", &[], &[]).unwrap();
    let mut der = x509::certificates_from_pem_or_der(
        kc.csr_pem
            .replace("CERTIFICATE REQUEST", "CERTIFICATE")
            .as_bytes(),
    )
    .unwrap()
    .remove(0);
    let n = der.len();
    der[n - 3] ^= 0x44;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let (s, v) = post_csr(&t, &id, &secret, json!({"csr": b64})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("signature"), "{v}");
    audited(
        &t,
        &format!("action=certificate.issue&identity={id}"),
        "signature does not verify",
    )
    .await;
    // A CSR for another identity's SPIFFE ID.
    let kc = x509::generate_key_and_csr(
        KeyAlg::EcdsaP256,
        "w",
        &[other["spiffe_id"].as_str().unwrap().to_owned()],
        &[],
    )
    .unwrap();
    let (s, v) = post_csr(&t, &id, &secret, json!({"csr": kc.csr_pem})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("other-app"), "{v}");
    let rec = audited(
        &t,
        &format!("action=certificate.issue&identity={id}"),
        "other-app",
    )
    .await;
    assert_eq!(rec["outcome"], "denied");
    // DNS names outside the allowance are refused, not dropped.
    let (s, v, _) = issue(
        &t,
        &id,
        &secret,
        &["ok.internal", "evil.example.com"],
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("evil.example.com"),
        "{v}"
    );
    // Lifetimes beyond the maximum.
    let (s, v, _) = issue(&t, &id, &secret, &[], json!({"ttl_secs": 86_401})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // Weak RSA keys and unknown curves (CSRs made by openssl).
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["-newkey", "rsa:1024"], "weak key"),
        (
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
            "curve",
        ),
    ] {
        let mut a = vec![
            "req", "-new", "-nodes", "-subj", "/CN=x", "-keyout", "k.pem", "-out", "r.pem",
        ];
        a.extend(args);
        let (ok, out) = run("openssl", &a, dir.path());
        assert!(ok, "{out}");
        let csr = std::fs::read_to_string(dir.path().join("r.pem")).unwrap();
        let (s, v) = post_csr(&t, &id, &secret, json!({"csr": csr})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
    }
    // No authentication at all.
    let r = t
        .http
        .post(t.url("/v1/certificates"))
        .json(&json!({"csr": kc.csr_pem}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A certificate never outlives its identity.
    let short = t
        .create_identity(&owner, "short-lived", json!({"expires_at": (t.clock_now() + time::Duration::minutes(20)).format(&time::format_description::well_known::Rfc3339).unwrap()}))
        .await;
    let sid = short["id"].as_str().unwrap().to_owned();
    let (_, ssecret) = t.api_key(&sid).await;
    let (s, v, _) = issue(&t, &sid, &ssecret, &[], json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rfc = &time::format_description::well_known::Rfc3339;
    let cert_end = time::OffsetDateTime::parse(v["not_after"].as_str().unwrap(), rfc).unwrap();
    let id_end = time::OffsetDateTime::parse(short["expires_at"].as_str().unwrap(), rfc).unwrap();
    assert!(
        cert_end <= id_end && id_end - cert_end < time::Duration::seconds(1),
        "{v}"
    );
}

/// Issues a leaf from the server's own issuing CA with any validity (for expired / future certs).
fn own_ca_leaf(
    t: &TestServer,
    spiffe: &str,
    nb: time::OffsetDateTime,
    na: time::OffsetDateTime,
) -> String {
    let snap = t.server.state.pki.snapshot();
    let ca = snap.active_issuer(t.clock_now()).unwrap();
    let kc = x509::generate_key_and_csr(KeyAlg::EcdsaP256, "w", &[], &[]).unwrap();
    let csr = x509::parse_csr(kc.csr_pem.as_bytes()).unwrap();
    let der = ca
        .signer
        .as_ref()
        .unwrap()
        .issue_leaf(
            &csr.public_key,
            &LeafSpec {
                common_name: "w",
                organization: "test",
                uri_sans: &[spiffe.to_owned()],
                dns_sans: &[],
                ip_sans: &[],
                client_auth: true,
                server_auth: false,
                not_before: nb,
                not_after: na,
                serial: &x509::random_serial(),
            },
        )
        .unwrap();
    format!(
        "{}{}{}",
        pem("CERTIFICATE", &der),
        pem("CERTIFICATE", &ca.cert_der),
        kc.key_pem.as_str()
    )
}

/// Tries a request with `identity`; returns whether it got an HTTP answer.
async fn handshake_ok(t: &TestServer, identity: &str) -> bool {
    mtls_client(t, Some(identity))
        .get(t.url("/healthz"))
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn bad_client_certificates_fail_the_handshake_and_are_audited() {
    let t = https().await;
    let owner = t.create_owner("team-hs").await;
    let i = t.create_identity(&owner, "hs-app", json!({})).await;
    let id = i["id"].as_str().unwrap().to_owned();
    let spiffe = i["spiffe_id"].as_str().unwrap().to_owned();
    let now = t.clock_now();
    let h = time::Duration::hours(1);

    // Expired.
    let expired = own_ca_leaf(&t, &spiffe, now - 3 * h, now - h);
    assert!(!handshake_ok(&t, &expired).await);
    let rec = audited(&t, "action=mtls.handshake", "expired").await;
    assert_eq!(rec["outcome"], "failure");
    assert_eq!(rec["identity_id"], id.as_str());
    // Not yet valid.
    let future = own_ca_leaf(&t, &spiffe, now + h, now + 2 * h);
    assert!(!handshake_ok(&t, &future).await);
    audited(&t, "action=mtls.handshake", "not valid yet").await;
    // An unknown CA.
    let root = x509::generate_root(KeyAlg::EcdsaP256, "Rogue", "x", now - h, now + h).unwrap();
    let rs = x509::CaSigner::new(&root.cert_der, &root.key_pkcs8).unwrap();
    let leaf = rs
        .issue_with_new_key(
            KeyAlg::EcdsaP256,
            &LeafSpec {
                common_name: "rogue",
                organization: "x",
                uri_sans: std::slice::from_ref(&spiffe),
                dns_sans: &[],
                ip_sans: &[],
                client_auth: true,
                server_auth: false,
                not_before: now - h,
                not_after: now + h,
                serial: &x509::random_serial(),
            },
        )
        .unwrap();
    let rogue = format!(
        "{}{}",
        pem("CERTIFICATE", &leaf.cert_der),
        pem("PRIVATE KEY", &leaf.key_pkcs8)
    );
    assert!(!handshake_ok(&t, &rogue).await);
    audited(&t, "action=mtls.handshake", "not issued by a trusted CA").await;
    // A revoked serial: works, is revoked, fails at the next handshake; the CRL lists it.
    let (_, secret) = t.api_key(&id).await;
    let (s, v, key) = issue(&t, &id, &secret, &[], json!({})).await;
    assert_eq!(s, StatusCode::CREATED);
    let good = format!("{}{}", v["full_chain"].as_str().unwrap(), key);
    assert!(handshake_ok(&t, &good).await);
    let (s, rv) = t
        .api(
            Method::POST,
            "/v1/certificates/revoke",
            Some(json!({"certificate": v["certificate"], "reason": "key compromise"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rv}");
    assert!(!handshake_ok(&t, &good).await);
    audited(&t, "action=mtls.handshake", "is revoked").await;
    let dir = tempfile::tempdir().unwrap();
    let crl = t
        .http
        .get(t.url("/v1/crl?format=pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(dir.path().join("crl.pem"), crl).unwrap();
    std::fs::write(
        dir.path().join("bundle.pem"),
        v["trust_bundle"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        v["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let (ok, out) = run(
        "openssl",
        &[
            "crl",
            "-in",
            "crl.pem",
            "-CAfile",
            "bundle.pem",
            "-noout",
            "-text",
        ],
        dir.path(),
    );
    assert!(ok && out.to_lowercase().contains("verify ok"), "{out}");
    assert!(
        out.to_uppercase()
            .contains(&v["serial"].as_str().unwrap().to_uppercase()),
        "{out}"
    );
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "bundle.pem",
            "leaf.pem",
        ],
        dir.path(),
    );
    assert!(!ok && out.contains("revoked"), "{out}");
    // A chain that is too long (through a registered device CA).
    let dev_root =
        x509::generate_root(KeyAlg::EcdsaP256, "Plant root", "p", now - h, now + 24 * h).unwrap();
    let (s, dca) = t
        .api(
            Method::POST,
            "/v1/device-cas",
            Some(json!({"name": "plant", "certificate": pem("CERTIFICATE", &dev_root.cert_der)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dca}");
    let mut signer = x509::CaSigner::new(&dev_root.cert_der, &dev_root.key_pkcs8).unwrap();
    let mut chain = vec![];
    for n in 0..3 {
        let c = x509::generate_intermediate(
            &signer,
            KeyAlg::EcdsaP256,
            &format!("I{n}"),
            "p",
            now - h,
            now + h,
        )
        .unwrap();
        signer = x509::CaSigner::new(&c.cert_der, &c.key_pkcs8).unwrap();
        chain.push(c.cert_der);
    }
    let leaf = signer
        .issue_with_new_key(
            KeyAlg::EcdsaP256,
            &LeafSpec {
                common_name: "gw-1",
                organization: "p",
                uri_sans: &[],
                dns_sans: &[],
                ip_sans: &[],
                client_auth: true,
                server_auth: false,
                not_before: now - h,
                not_after: now + h,
                serial: &x509::random_serial(),
            },
        )
        .unwrap();
    let mut long = pem("CERTIFICATE", &leaf.cert_der);
    for c in chain.iter().rev() {
        long.push_str(&pem("CERTIFICATE", c));
    }
    long.push_str(&pem("PRIVATE KEY", &leaf.key_pkcs8));
    assert!(!handshake_ok(&t, &long).await);
    audited(&t, "action=mtls.handshake", "too long").await;
    // A certificate without a client (no cert at all) is fine: client certificates are optional.
    assert!(
        mtls_client(&t, None)
            .get(t.url("/healthz"))
            .send()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn suspension_takes_effect_at_the_next_handshake_and_token_request() {
    let t = https().await;
    let (id, secret) = t.workload("suspendee").await;
    let (_, v, key) = issue(&t, &id, &secret, &[], json!({})).await;
    let identity = format!("{}{}", v["full_chain"].as_str().unwrap(), key);
    let c = mtls_client(&t, Some(&identity));
    let (s, _) = mtls_token(&c, &t, &id).await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/suspend"),
            Some(json!({"reason": "incident"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // The open connection's next token request is refused...
    let (s, e) = mtls_token(&c, &t, &id).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    // ...and the very next handshake is refused before any request is served.
    assert!(!handshake_ok(&t, &identity).await);
    let rec = audited(&t, "action=mtls.handshake", "identity is suspended").await;
    assert_eq!(rec["outcome"], "denied");
    assert_eq!(rec["identity_id"], id.as_str());
    // Resumed: accepted again.
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/resume"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(handshake_ok(&t, &identity).await);
}

#[tokio::test]
async fn device_ca_and_mapping_rule_give_a_narrow_token() {
    let t = https().await;
    let owner = t.create_owner("team-iot").await;
    let gw = t
        .create_identity(&owner, "plant1-gateways", json!({"kind": "device", "scopes": ["telemetry:write"], "default_scopes": ["telemetry:write"], "audiences": []}))
        .await;
    let gw_id = gw["id"].as_str().unwrap().to_owned();
    let now = t.clock_now();
    let h = time::Duration::hours(1);
    let root = x509::generate_root(
        KeyAlg::EcdsaP256,
        "Plant 1 devices",
        "Plant 1",
        now - h,
        now + 24 * h,
    )
    .unwrap();
    let (s, dca) = t
        .api(
            Method::POST,
            "/v1/device-cas",
            Some(json!({"name": "plant1", "certificate": pem("CERTIFICATE", &root.cert_der)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dca}");
    let ca_id = dca["id"].as_str().unwrap().to_owned();
    let (s, rule) = t
        .api(
            Method::POST,
            &format!("/v1/device-cas/{ca_id}/rules"),
            Some(json!({"field": "subject_cn", "pattern": "gw-*.plant1", "identity": gw_id})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    let signer = x509::CaSigner::new(&root.cert_der, &root.key_pkcs8).unwrap();
    let device = |cn: &str| {
        let c = signer
            .issue_with_new_key(
                KeyAlg::EcdsaP256,
                &LeafSpec {
                    common_name: cn,
                    organization: "Plant 1",
                    uri_sans: &[],
                    dns_sans: &[],
                    ip_sans: &[],
                    client_auth: true,
                    server_auth: false,
                    not_before: now - h,
                    not_after: now + h,
                    serial: &x509::random_serial(),
                },
            )
            .unwrap();
        (
            format!(
                "{}{}",
                pem("CERTIFICATE", &c.cert_der),
                pem("PRIVATE KEY", &c.key_pkcs8)
            ),
            c.cert_der,
        )
    };
    let (gw7, der) = device("gw-7.plant1");
    let c = mtls_client(&t, Some(&gw7));
    let (s, tok) = mtls_token(&c, &t, &gw_id).await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert_eq!(tok["scope"], "telemetry:write");
    let claims = verify_jwt(&t, tok["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], gw_id);
    assert_eq!(claims["cnf"]["x5t#S256"], sha256_b64url(&der));
    // Asking for more than the identity's scopes is refused.
    let r = c
        .post(t.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "payments:write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A device certificate no rule maps is refused after the handshake, and audited.
    let (stranger, _) = device("printer-3.plant1");
    assert!(!handshake_ok(&t, &stranger).await);
    audited(&t, "action=mtls.handshake", "no mapping rule").await;
    let (s, list) = t
        .api(Method::GET, &format!("/v1/device-cas/{ca_id}/rules"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // The admin API and OpenAPI know the device-CA endpoints.
    let doc: Value = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/v1/device-cas").is_some());
    assert!(doc["paths"].get("/v1/certificates").is_some());
}

#[tokio::test]
async fn ca_rollover_publishes_before_signing_and_bundles_are_standard() {
    let t = https().await;
    let (id, secret) = t.workload("roller").await;
    let get_bundle = || async {
        t.http
            .get(t.url("/v1/trust-bundle"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = get_bundle().await;
    assert_eq!(
        before.matches("BEGIN CERTIFICATE").count(),
        2,
        "root + issuing CA"
    );
    let (s, ca) = t
        .api(
            Method::POST,
            "/v1/ca/rotate",
            Some(json!({"activate_in_secs": 3600})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ca}");
    assert_eq!(ca["active"], false);
    let after = get_bundle().await;
    assert_eq!(
        after.matches("BEGIN CERTIFICATE").count(),
        3,
        "the new issuing CA is published"
    );
    assert!(after.contains(ca["certificate"].as_str().unwrap().lines().nth(1).unwrap()));
    let issuer_of = |v: &Value| {
        x509::parse_certificate(&leaf_der(v["full_chain"].as_str().unwrap()))
            .unwrap()
            .issuer
    };
    let (_, v1, _) = issue(&t, &id, &secret, &[], json!({})).await;
    let new_subject = x509::parse_certificate(
        &x509::certificates_from_pem_or_der(ca["certificate"].as_str().unwrap().as_bytes())
            .unwrap()[0],
    )
    .unwrap()
    .subject;
    assert_ne!(issuer_of(&v1), new_subject, "not signing before activation");
    t.clock.advance(time::Duration::seconds(3601));
    let (s, v2, _) = issue(&t, &id, &secret, &[], json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{v2}");
    assert_eq!(issuer_of(&v2), new_subject, "signing after activation");
    // The SPIFFE bundle format: one x509-svid key per CA certificate.
    let sb: Value = t
        .http
        .get(t.url("/v1/trust-bundle?format=spiffe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = sb["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{sb}");
    assert!(
        keys.iter()
            .all(|k| k["use"] == "x509-svid" && k["x5c"].as_array().unwrap().len() == 1)
    );
    let (s, cas) = t.api(Method::GET, "/v1/ca", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        cas["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["active"] == true)
            .count(),
        1
    );
}

//! One scenario of the suite: a server (HTTPS, as in production) on a fresh SQLite file or a
//! fresh PostgreSQL database, seeded to the wanted number of identities, with its bench clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bytes::Bytes;
use hyper::http::HeaderValue;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use steward_core::{
    AuditEvent, Credential, CredentialKind, Identity, IdentityKind, IdentityStatus, Outcome,
};
use steward_server::service::Ctx;
use steward_server::{RunningServer, ServerConfig, StartOptions};
use steward_store::{Change, Mutation};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::load::{self, Tls};
use crate::requests::{self, FORM};
use crate::{Settings, pgdb, policy_set};

/// A running server and everything the rows need to load it.
pub struct Fixture {
    pub server: RunningServer,
    pub backend: &'static str,
    /// Identities registered before the rows ran.
    pub identities: u64,
    /// Seconds spent seeding the filler identities (bulk insert), and how many.
    pub seeded: (u64, f64),
    pub tls: Tls,
    pub mtls: Tls,
    pub host: HeaderValue,
    pub issuer: String,
    pub owner: Uuid,
    /// `Authorization: Basic …` of each API-key bench client.
    pub basic: Vec<HeaderValue>,
    pub admin_basic: HeaderValue,
    /// The `private_key_jwt` client: its id and Ed25519 key (JWK `kid` "k1").
    pub jwt_client: String,
    pub jwt_key: Arc<Ed25519KeyPair>,
    /// The client id whose certificate `mtls` presents (`tls_client_auth`).
    pub mtls_client: String,
    /// Access tokens of the exchange identity (scopes `deploy:read deploy:write`).
    pub exchange_tokens: Vec<String>,
    /// `{"identity_id": …}` of the policy-labelled bench clients (teams 0..16).
    pub principals: Vec<Value>,
    /// PKCS#10 CSRs (P-256) for the certificate row.
    pub csrs: Vec<String>,
    pg: Option<(sqlx::PgConnection, String)>,
    _dir: tempfile::TempDir,
}

fn ctx() -> Ctx {
    Ctx::system()
}

fn identity_request(
    name: String,
    owner: Uuid,
    scopes: &[&str],
    default: &[&str],
    audiences: &[&str],
    labels: BTreeMap<String, String>,
) -> steward_proto::CreateIdentity {
    let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    steward_proto::CreateIdentity {
        name,
        kind: "workload".into(),
        owner,
        purpose: "bench".into(),
        environment: "prod".into(),
        expires_at: OffsetDateTime::now_utc() + time::Duration::days(30),
        scopes: list(scopes),
        default_scopes: Some(list(default)),
        audiences: list(audiences),
        labels,
        vendor: None,
        token_lifetime_secs: None,
        require_dpop: false,
        allowed_dns_names: vec![],
        may_act: vec![],
        allowed_source_cidrs: vec![],
        review_due_at: None,
    }
}

/// A P-256 key and a CSR for it.
fn key_and_csr() -> Result<steward_crypto::x509::KeyAndCsr, String> {
    steward_crypto::x509::generate_key_and_csr(
        steward_crypto::x509::KeyAlg::EcdsaP256,
        "bench",
        &[],
        &[],
    )
    .map_err(|e| format!("generating a CSR: {e}"))
}

/// A bench client identity with scope `a:read` only, created through the service (audited).
async fn plain_identity(
    server: &RunningServer,
    owner: Uuid,
    name: &str,
) -> Result<Identity, String> {
    server
        .state
        .create_identity(
            &ctx(),
            identity_request(
                name.to_owned(),
                owner,
                &["a:read"],
                &["a:read"],
                &[],
                BTreeMap::new(),
            ),
        )
        .await
        .map_err(|e| format!("creating {name}: {e}"))
}

/// A filler identity of the seeded population, with one API key (nobody holds its secret, but
/// every look-up by hash searches a table and an index of this size).
fn filler(n: u64, owner: Uuid, now: OffsetDateTime) -> (Identity, Credential) {
    let id = Uuid::now_v7();
    let identity = Identity {
        id,
        name: format!("seed-{n:07}"),
        kind: IdentityKind::ALL[(n % 6) as usize],
        owner_id: owner,
        purpose: format!("seeded identity {n}"),
        environment: "prod".into(),
        expires_at: now + time::Duration::days(60),
        scopes: vec!["a:read".into()],
        default_scopes: vec!["a:read".into()],
        audiences: vec![],
        labels: BTreeMap::new(),
        vendor: None,
        status: IdentityStatus::Active,
        status_reason: None,
        token_lifetime_secs: None,
        require_dpop: false,
        tokens_revoked_before: None,
        created_by: "bench-seed".into(),
        approved_by: None,
        approved_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
        allowed_dns_names: vec![],
        may_act: vec![],
        allowed_source_cidrs: vec![],
        review_due_at: None,
    };
    // Ascending (a marker byte, then `n`) so the unique index is built in order: the tree has
    // full size and depth for every look-up, without a random insert per row. Real keys hash to
    // uniformly spread values; nobody holds these.
    let hash = [
        [0xff].as_slice(),
        &n.to_be_bytes(),
        &Uuid::new_v4().into_bytes()[..],
        &[0u8; 7],
    ]
    .concat();
    let credential = Credential {
        id: Uuid::now_v7(),
        identity_id: id,
        kind: CredentialKind::ApiKey,
        fingerprint: steward_crypto::b64::url_encode(&hash[..9]),
        secret_hash: Some(hash),
        jwk: None,
        created_at: now,
        expires_at: now + time::Duration::days(60),
        last_used_at: None,
        revoked_at: None,
        revoke_reason: None,
        rotated_from: None,
        created_by: "bench-seed".into(),
        version: 1,
    };
    (identity, credential)
}

/// Seeds `count` filler identities with `Mutation::BulkInsert`, `batch` per change (one
/// transaction, one audit record each), building the next batch while the store writes the
/// last. Returns the seconds it took.
async fn seed(server: &RunningServer, owner: Uuid, count: u64, batch: u64) -> Result<f64, String> {
    let started = Instant::now();
    let now = OffsetDateTime::now_utc();
    let mut done = 0;
    let mut pending: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    while done < count {
        let n = batch.min(count - done);
        let (identities, credentials): (Vec<_>, Vec<_>) =
            (done..done + n).map(|i| filler(i, owner, now)).unzip();
        let event = AuditEvent::new(now, "bench-seed", "registry.bulk_insert", Outcome::Success)
            .details(json!({"identities": n, "credentials": n}));
        let change = Change::new()
            .with(Mutation::BulkInsert {
                identities,
                credentials,
            })
            .audit(event);
        if let Some(p) = pending.take() {
            p.await.map_err(|e| format!("seeding: {e}"))??;
        }
        let store = server.state.store.clone();
        pending = Some(tokio::spawn(async move {
            store
                .commit(change)
                .await
                .map(drop)
                .map_err(|e| format!("seeding identities {done}..{}: {e}", done + n))
        }));
        done += n;
    }
    if let Some(p) = pending {
        p.await.map_err(|e| format!("seeding: {e}"))??;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn tls_config(bundle: &str, client: Option<(&str, &str)>) -> Result<Tls, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots
            .add(cert.map_err(|e| format!("trust bundle: {e}"))?)
            .map_err(|e| format!("trust bundle: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client chain: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    let name = ServerName::try_from("127.0.0.1").map_err(|e| format!("server name: {e}"))?;
    Ok(Tls {
        config: Arc::new(config),
        name,
    })
}

/// `client_credentials` over HTTPS with Basic auth; the access token.
pub async fn fetch_token(
    addr: SocketAddr,
    tls: &Tls,
    host: &HeaderValue,
    basic: &HeaderValue,
    scope: &str,
) -> Result<String, String> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", scope)
        .finish();
    let req = requests::post("/oauth2/token", host, FORM, Some(basic), Bytes::from(body));
    let (status, body) = load::one_shot_tls(addr, Some(tls), req).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("token response: {e}"))?;
    match v["access_token"].as_str() {
        Some(t) if status.is_success() => Ok(t.to_owned()),
        _ => Err(format!("token request failed: {status}: {v}")),
    }
}

impl Fixture {
    /// `Authorization: Bearer …` for the bootstrap admin (scope `steward:admin`), fresh.
    pub async fn admin_bearer(&self) -> Result<HeaderValue, String> {
        let t = fetch_token(
            self.server.addr,
            &self.tls,
            &self.host,
            &self.admin_basic,
            "steward:admin",
        )
        .await?;
        HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())
    }

    pub async fn shutdown(mut self) {
        if tokio::time::timeout(Duration::from_secs(10), self.server.shutdown())
            .await
            .is_err()
        {
            eprintln!(
                "warning: the {} server did not stop within 10 s",
                self.backend
            );
        }
        if let Some((mut conn, name)) = self.pg.take()
            && let Err(e) = pgdb::drop_pg_database(&mut conn, &name).await
        {
            eprintln!("warning: could not drop {name}: {e}");
        }
    }
}

/// Starts a server on `backend` (`sqlite` or `postgres`) with `scale` identities registered.
pub async fn start(s: &Settings, backend: &'static str, scale: u64) -> Result<Fixture, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let (database_url, pg) = if backend == "postgres" {
        let (conn, name, url) = pgdb::create_pg_database(&s.pg_url).await.map_err(|e| {
            format!(
                "PostgreSQL at {} unreachable or refused: {e}",
                pgdb::redact(&s.pg_url)
            )
        })?;
        (Some(url), Some((conn, name)))
    } else {
        (None, None)
    };
    let cfg = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url,
        // Every request authenticates; the failure limiter must never be what is measured.
        auth_failure_limit: 1_000_000,
        authz: policy_set::schema(),
        ..ServerConfig::default()
    };
    let server = steward_server::start(cfg, StartOptions::default())
        .await
        .map_err(|e| format!("starting the server: {e}"))?;
    let st = &server.state;
    let owner = st
        .create_owner(
            &ctx(),
            steward_proto::CreateOwner {
                name: "bench".into(),
                kind: "team".into(),
                contact: "bench@example.com".into(),
            },
        )
        .await
        .map_err(|e| format!("creating the bench owner: {e}"))?
        .id;

    // The population first, so that every bench client below lives in a table of full size.
    let clients = s.clients.max(policy_set::IDENTITIES) as u64;
    let fixed = st
        .store
        .count_identities()
        .await
        .map_err(|e| e.to_string())?
        + clients
        + 3;
    let fill = scale.saturating_sub(fixed);
    let seed_secs = seed(&server, owner, fill, s.seed_batch).await?;
    if fill > 0 {
        eprintln!(
            "[{backend}] seeded {fill} identities with API keys in {seed_secs:.1} s ({:.0}/s)",
            fill as f64 / seed_secs.max(1e-9)
        );
    }

    for p in policy_set::policies() {
        st.create_policy(
            &ctx(),
            steward_proto::authz::CreatePolicy {
                id: p.id,
                source: p.source,
                description: String::new(),
            },
        )
        .await
        .map_err(|e| format!("creating a policy: {e:?}"))?;
    }

    // API-key clients, labelled with the teams the policies test.
    let scopes = [
        "a:read",
        "docs:read",
        "docs:write",
        "queue:publish",
        "queue:consume",
    ];
    let api_key = || steward_proto::CreateCredential {
        kind: "api_key".into(),
        jwk: None,
        expires_at: None,
    };
    let mut basic = Vec::new();
    let mut principals = Vec::new();
    for i in 0..clients {
        let labels = BTreeMap::from([(
            "team".to_owned(),
            format!("team{}", i % policy_set::IDENTITIES as u64),
        )]);
        let ident = st
            .create_identity(
                &ctx(),
                identity_request(format!("svc-{i}"), owner, &scopes, &["a:read"], &[], labels),
            )
            .await
            .map_err(|e| format!("creating a bench client: {e}"))?;
        let key = st
            .create_credential(&ctx(), ident.id, api_key())
            .await
            .map_err(|e| format!("creating an API key: {e}"))?;
        let secret = key.secret.ok_or("the new API key has no secret")?;
        basic.push(requests::basic(
            &ident.id.to_string(),
            secret.expose_secret(),
        )?);
        if (i as usize) < policy_set::IDENTITIES {
            principals.push(json!({"identity_id": ident.id}));
        }
    }

    // The private_key_jwt client.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
    let jwt_ident = plain_identity(&server, owner, "bench-jwt").await?;
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA",
        "x": steward_crypto::b64::url_encode(pair.public_key().as_ref())});
    st.create_credential(
        &ctx(),
        jwt_ident.id,
        steward_proto::CreateCredential {
            kind: "public_key".into(),
            jwk: Some(jwk),
            expires_at: None,
        },
    )
    .await
    .map_err(|e| format!("registering the JWT client's key: {e}"))?;

    // The mTLS client: a certificate issued by Steward's CA.
    let mtls_ident = plain_identity(&server, owner, "bench-mtls").await?;
    let kc = key_and_csr()?;
    let cert = st
        .issue_certificate(
            &ctx(),
            &mtls_ident,
            "bench",
            steward_proto::IssueCertificate {
                csr: kc.csr_pem.clone(),
                ttl_secs: Some(86_400),
                server_auth: false,
            },
        )
        .await
        .map_err(|e| format!("issuing the mTLS client's certificate: {e}"))?;
    let bundle = st.trust_bundle_pem();
    let tls = tls_config(&bundle, None)?;
    let mtls = tls_config(
        &bundle,
        Some((cert.full_chain.as_str(), kc.key_pem.as_str())),
    )?;
    let mut csrs = vec![kc.csr_pem];
    for _ in 1..64 {
        csrs.push(key_and_csr()?.csr_pem);
    }

    // The exchange identity and tokens to down-scope.
    let host = HeaderValue::from_str(&server.addr.to_string()).map_err(|e| e.to_string())?;
    let ex_ident = st
        .create_identity(
            &ctx(),
            identity_request(
                "bench-exchange".into(),
                owner,
                &["deploy:read", "deploy:write"],
                &["deploy:read"],
                &["https://deploy.internal"],
                BTreeMap::new(),
            ),
        )
        .await
        .map_err(|e| format!("creating the exchange identity: {e}"))?;
    let key = st
        .create_credential(&ctx(), ex_ident.id, api_key())
        .await
        .map_err(|e| format!("creating an API key: {e}"))?;
    let ex_basic = requests::basic(
        &ex_ident.id.to_string(),
        key.secret.ok_or("no secret")?.expose_secret(),
    )?;
    let mut exchange_tokens = Vec::new();
    for _ in 0..64 {
        exchange_tokens.push(
            fetch_token(
                server.addr,
                &tls,
                &host,
                &ex_basic,
                "deploy:read deploy:write",
            )
            .await?,
        );
    }

    let creds_path = server
        .admin_credentials
        .clone()
        .ok_or("the server wrote no admin credentials file (database not fresh?)")?;
    let raw = std::fs::read(&creds_path).map_err(|e| format!("admin credentials: {e}"))?;
    let creds: steward_proto::CredentialsFile =
        serde_json::from_slice(&raw).map_err(|e| format!("admin credentials: {e}"))?;
    let admin_basic = requests::basic(&creds.client_id, &creds.client_secret)?;
    let identities = st
        .store
        .count_identities()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Fixture {
        issuer: st.issuer.clone(),
        backend,
        identities,
        seeded: (fill, seed_secs),
        tls,
        mtls,
        host,
        owner,
        basic,
        admin_basic,
        jwt_client: jwt_ident.id.to_string(),
        jwt_key: Arc::new(pair),
        mtls_client: mtls_ident.id.to_string(),
        exchange_tokens,
        principals,
        csrs,
        pg,
        _dir: dir,
        server,
    })
}

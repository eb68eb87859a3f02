//! Token-exchange benchmark (RFC 8693): GitHub-Actions-shaped external JWTs exchanged under a trust
//! policy with a cached JWKS, and Steward tokens down-scoped, over HTTP on loopback with many
//! concurrent clients, beside the no-op `GET /_noop` measured in the same run.
//! Run: `cargo bench -p steward-server --bench exchange`.
//!
//! The issuer is a real HTTP JWKS endpoint on loopback (fetched once, then cached). Every exchange
//! verifies the signature, registered claims, preset and rules, signs a new token, and
//! group-commits its audit record before answering — as in production. Environment:
//! `STEWARD_BENCH_SECS` (5), `STEWARD_BENCH_WARMUP_SECS` (2), `STEWARD_BENCH_CLIENTS` (64
//! connections), `STEWARD_BENCH_CLIENT_THREADS` (1), `STEWARD_BENCH_SERVER_THREADS` (cores),
//! `STEWARD_BENCH_ROUNDS` (3: every row runs once per round, rounds interleaved, and the table
//! shows the median round and the range). Results go to stdout and `target/bench-results/exchange.md`.

#[allow(dead_code)]
#[path = "http/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "http/requests.rs"]
mod requests;
#[allow(dead_code)]
#[path = "http/row.rs"]
mod row;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::http::HeaderValue;
use hyper::{Method, Request, Uri};
use serde_json::{Value, json};
use steward_server::{ServerConfig, StartOptions};

use load::MakeRequest;

const AUD: &str = "https://steward.bench";
const TOKENS: usize = 512;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// One request kind over several rounds: the median round (by throughput), the range, and
/// the errors of every round.
struct Spread {
    median: row::Row,
    min: f64,
    max: f64,
    errors: u64,
}

impl Spread {
    fn of(mut rounds: Vec<row::Row>) -> Option<Self> {
        rounds.sort_by(|a, b| a.ops.total_cmp(&b.ops));
        let min = rounds.first()?.ops;
        let max = rounds.last()?.ops;
        let errors = rounds.iter().map(|r| r.errors).sum();
        let median = rounds.swap_remove(rounds.len() / 2);
        Some(Self {
            median,
            min,
            max,
            errors,
        })
    }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The allocator the `steward` binary uses, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = run() {
        eprintln!("exchange bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    steward_server::install_crypto_provider();
    let warmup = Duration::from_secs_f64(env_or("STEWARD_BENCH_WARMUP_SECS", 2.0));
    let measure = Duration::from_secs_f64(env_or("STEWARD_BENCH_SECS", 5.0));
    let clients: usize = env_or("STEWARD_BENCH_CLIENTS", 64);
    let client_threads: usize = env_or("STEWARD_BENCH_CLIENT_THREADS", 1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("STEWARD_BENCH_SERVER_THREADS", cores))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    // The external issuer: an RSA and an Ed25519 key, JWKS over HTTP on loopback.
    let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|e| e.to_string())?;
    let ed = Ed25519KeyPair::generate().map_err(|e| e.to_string())?;
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig",
         "n": b64(rsa.public_key().modulus().big_endian_without_leading_zero()),
         "e": b64(rsa.public_key().exponent().big_endian_without_leading_zero())},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64(ed.public_key().as_ref())},
    ]});
    let fetches = Arc::new(AtomicUsize::new(0));
    let issuer_url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (body, f) = (jwks.to_string(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let b = body.clone();
                async move { b }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Ok::<_, String>(url)
    })?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = rt
        .block_on(steward_server::start(
            ServerConfig {
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
                insecure_http: true,
                ..Default::default()
            },
            StartOptions::default(),
        ))
        .map_err(|e| format!("start: {e}"))?;
    let addr = server.addr;
    let base = server.base_url();
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(
            server
                .admin_credentials
                .clone()
                .ok_or("no admin credentials")?,
        )
        .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();

    let steward_tokens: Vec<String> = rt.block_on(async {
        let token = |id: String, secret: String| {
            let (http, url) = (http.clone(), format!("{base}/oauth2/token"));
            async move {
                let v: Value = http
                    .post(url)
                    .basic_auth(id, Some(secret))
                    .form(&[("grant_type", "client_credentials"), ("scope", "deploy:read deploy:write")])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                v["access_token"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or(format!("no token: {v}"))
            }
        };
        let admin: Value = http
            .post(format!("{base}/oauth2/token"))
            .basic_auth(
                creds["client_id"].as_str().unwrap_or_default(),
                creds["client_secret"].as_str(),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let admin = admin["access_token"].as_str().unwrap_or_default().to_owned();
        let api = |path: &str, body: Value| {
            let (http, admin, url) = (http.clone(), admin.clone(), format!("{base}{path}"));
            async move {
                let r = http
                    .post(url)
                    .bearer_auth(admin)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let s = r.status();
                let v: Value = r.json().await.map_err(|e| e.to_string())?;
                if s.is_success() {
                    Ok::<Value, String>(v)
                } else {
                    Err(format!("{s}: {v}"))
                }
            }
        };
        let owner = api(
            "/v1/owners",
            json!({"name": "bench", "kind": "team", "contact": "b@example.com"}),
        )
        .await?;
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string())?;
        let ident = api(
            "/v1/identities",
            json!({"name": "ci-deployer", "kind": "pipeline", "owner": owner["id"], "purpose": "bench",
                "environment": "prod", "expires_at": expires, "scopes": ["deploy:read", "deploy:write"],
                "default_scopes": ["deploy:read"], "audiences": ["https://deploy.internal"]}),
        )
        .await?;
        let id = ident["id"].as_str().unwrap_or_default().to_owned();
        api(
            "/v1/trust-policies",
            json!({"name": "gh-deploy", "preset": "github_actions", "issuer": issuer_url,
                "jwks_uri": format!("{issuer_url}/jwks"), "audiences": [AUD], "identity": id,
                "allow": [
                    {"conditions": [{"claim": "repository", "equals": "octo-org/app"},
                                    {"claim": "ref", "glob": "refs/heads/release/*"}]},
                    {"conditions": [{"claim": "repository_owner_id", "equals": "202"},
                                    {"claim": "environment", "in": ["prod", "staging"]},
                                    {"claim": "event_name", "not": true, "equals": "pull_request"},
                                    {"claim": "job_workflow_ref", "regex": "octo-org/app/\\.github/workflows/[a-z-]+\\.yml@refs/heads/main"}]},
                ]}),
        )
        .await?;
        let key = api(
            &format!("/v1/identities/{id}/credentials"),
            json!({"type": "api_key"}),
        )
        .await?;
        let secret = key["client_secret"].as_str().unwrap_or_default().to_owned();
        let mut out = Vec::new();
        for _ in 0..64 {
            out.push(token(id.clone(), secret.clone()).await?);
        }
        Ok::<_, String>(out)
    })?;

    // Distinct GitHub-shaped tokens (rule 2 matches: the last rule, so every condition runs).
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mint = |alg: &str, kid: &str, i: usize| -> Result<String, String> {
        let claims = json!({
            "iss": issuer_url, "aud": AUD, "jti": format!("jti-{alg}-{i}"),
            "sub": "repo:octo-org@202/app@101:environment:prod",
            "repository": "octo-org/app", "repository_owner": "octo-org",
            "repository_id": "101", "repository_owner_id": "202",
            "ref": "refs/heads/main", "environment": "prod", "event_name": "push",
            "job_workflow_ref": "octo-org/app/.github/workflows/deploy.yml@refs/heads/main",
            "iat": now, "nbf": now, "exp": now + 3600,
        });
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = if alg == "RS256" {
            let mut s = vec![0u8; rsa.public_modulus_len()];
            rsa.sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut s,
            )
            .map_err(|e| e.to_string())?;
            s
        } else {
            ed.sign(input.as_bytes()).as_ref().to_vec()
        };
        Ok(format!("{input}.{}", b64(&sig)))
    };
    let bodies = |alg: &str, kid: &str| -> Result<Arc<Vec<Bytes>>, String> {
        let mut v = Vec::with_capacity(TOKENS);
        for i in 0..TOKENS {
            let t = mint(alg, kid, i)?;
            v.push(Bytes::from(form_encode(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", &t),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ])));
        }
        Ok(Arc::new(v))
    };
    let rs256 = bodies("RS256", "rsa-1")?;
    let eddsa = bodies("EdDSA", "ed-1")?;
    let downscope: Arc<Vec<Bytes>> = Arc::new(
        steward_tokens
            .iter()
            .map(|t| requests::downscope(t, "deploy:read"))
            .collect(),
    );

    let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    let noop = requests::noop(host.clone());
    let exchange = |bodies: Arc<Vec<Bytes>>| -> MakeRequest {
        let host = host.clone();
        Arc::new(move |conn, seq| {
            let idx = (conn as u64).wrapping_mul(7919).wrapping_add(seq) as usize % bodies.len();
            let mut r = Request::new(Full::new(bodies[idx].clone()));
            *r.method_mut() = Method::POST;
            *r.uri_mut() = Uri::from_static("/oauth2/token");
            let h = r.headers_mut();
            h.insert(HOST, host.clone());
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            r
        })
    };

    let setup = row::Setup {
        addr,
        tls: None,
        clients,
        client_threads,
        warmup,
        measure,
    };
    // Each kind runs in every round, rounds interleaved, and the median round is reported: on
    // a shared 2-core machine one window can lose a third of its rate to a neighbour, and
    // interleaving spreads such a spell over every kind instead of sinking one row.
    let kinds: Vec<(&str, MakeRequest)> = vec![
        ("no-op `GET /_noop` (baseline, same run)", noop),
        (
            "token exchange: GitHub Actions JWT, RS256, cached JWKS",
            exchange(rs256),
        ),
        (
            "token exchange: GitHub Actions JWT, EdDSA, cached JWKS",
            exchange(eddsa),
        ),
        (
            "token exchange: down-scoping a Steward token",
            exchange(downscope),
        ),
    ];
    let mut rounds: Vec<Vec<row::Row>> = kinds.iter().map(|_| Vec::new()).collect();
    for _ in 0..env_or("STEWARD_BENCH_ROUNDS", 3usize).max(1) {
        for ((what, make), out) in kinds.iter().zip(rounds.iter_mut()) {
            out.push(row::measure(&rt, &setup, what, make.clone())?);
        }
    }
    let rows: Vec<Spread> = rounds.into_iter().filter_map(Spread::of).collect();
    let jwks_fetches = fetches.load(Ordering::SeqCst);

    let noop = rows.first().map_or(1.0, |r| r.median.ops.max(1.0));
    let mut md = String::from(
        "| measurement | concurrency | exchanges/s (median round) | range over rounds | p50 | p99 | vs no-op |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} ms"));
    for Spread {
        median: r,
        min,
        max,
        errors,
    } in &rows
    {
        let _ = writeln!(
            md,
            "| {} | {clients} | {:.0} | {min:.0}–{max:.0} | {} | {} | {:.0} % |{}",
            r.what,
            r.ops,
            ms(r.p50),
            ms(r.p99),
            r.ops * 100.0 / noop,
            if *errors > 0 {
                format!(" ({errors} errors)")
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        md,
        "\nJWKS fetches during the run: {jwks_fetches} (the key set is cached; {cores} cores)."
    );
    println!("\n{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-results");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("exchange.md"), &md);
    rt.block_on(server.shutdown());
    Ok(())
}

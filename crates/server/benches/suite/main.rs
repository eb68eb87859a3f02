//! The benchmark suite (issue #10): every measured operation of Steward in one run, on SQLite and
//! PostgreSQL, with 1,000 and 1,000,000 registered identities, beside the no-op endpoint of the
//! same server; optionally a fixed-rate soak. Run: `scripts/bench-suite`, or
//! `cargo bench -p steward-server --bench suite [-- --soak SECS] [-- --update-readme]`.
//!
//! The server runs in-process over HTTPS (its default) on a multi-thread Tokio runtime; the load
//! generator (`../http/load.rs`, closed loop, keep-alive connections) runs on its own OS threads
//! on the same cores. Each row is a sanity request, a warm-up and a measured window
//! (`../http/row.rs`). Results: stdout and `target/bench-results/suite.md`; `--update-readme`
//! also replaces the README's table between `<!-- bench-suite:begin -->` and
//! `<!-- bench-suite:end -->`, and `--readme-only` does only that, from the last `suite.md`.
//!
//! Environment: `STEWARD_BENCH_SECS` (measured seconds per row, 5), `STEWARD_BENCH_WARMUP_SECS`
//! (2), `STEWARD_BENCH_CLIENTS` (64 connections), `STEWARD_BENCH_CLIENT_THREADS` (1),
//! `STEWARD_BENCH_SERVER_THREADS` (cores), `STEWARD_BENCH_BACKENDS` (`sqlite,postgres`),
//! `STEWARD_BENCH_SCALES` (`1000,1000000` identities), `STEWARD_BENCH_SEED_BATCH` (20000
//! identities per bulk insert), `STEWARD_BENCH_ONLY` (row keys, e.g. `noop,token-basic`),
//! `STEWARD_TEST_DATABASE_URL` (PostgreSQL server for a fresh database per scenario),
//! `STEWARD_BENCH_SOAK_SAMPLE_SECS` (60), `STEWARD_BENCH_SOAK_FRACTION` (0.7 of the peak).

#[allow(dead_code)]
#[path = "../http/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../http/pgdb.rs"]
mod pgdb;
#[allow(dead_code)]
#[path = "../authz/policy_set.rs"]
mod policy_set;
#[allow(dead_code)]
#[path = "../http/requests.rs"]
mod requests;
#[allow(dead_code)]
#[path = "../http/results.rs"]
mod results;
#[allow(dead_code)]
#[path = "../http/row.rs"]
mod row;

mod fixture;
mod report;
mod soak;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use bytes::Bytes;
use hyper::http::HeaderValue;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use fixture::Fixture;
use load::MakeRequest;
use report::{Measured, Scenario, SoakReport};
use requests::{FORM, JSON, post};
use results::env_or;
use row::Row;

pub struct Settings {
    pub warmup: Duration,
    pub measure: Duration,
    pub clients: usize,
    pub client_threads: usize,
    pub server_threads: usize,
    pub backends: Vec<&'static str>,
    pub scales: Vec<u64>,
    pub only: Vec<String>,
    pub pg_url: String,
    pub seed_batch: u64,
    pub soak: Option<Duration>,
    pub soak_every: Duration,
    pub soak_fraction: f64,
    pub update_readme: bool,
}

fn list(name: &str, default: &str) -> Result<Vec<String>, String> {
    Ok(env_or(name, default.to_owned())?
        .split(',')
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect())
}

impl Settings {
    fn from_env(args: &Args) -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let secs = |name: &str, default: f64| -> Result<Duration, String> {
            let v: f64 = env_or(name, default)?;
            // Bounded so that a row stays well inside an access token's 600 s lifetime.
            if !(0.0..=250.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 250 seconds"));
            }
            Ok(Duration::from_secs_f64(v))
        };
        let mut backends = Vec::new();
        for b in list("STEWARD_BENCH_BACKENDS", "sqlite,postgres")? {
            backends.push(match b.as_str() {
                "sqlite" => "sqlite",
                "postgres" => "postgres",
                other => {
                    return Err(format!(
                        "unknown backend {other:?} in STEWARD_BENCH_BACKENDS"
                    ));
                }
            });
        }
        let scales = list("STEWARD_BENCH_SCALES", "1000,1000000")?
            .iter()
            .map(|v| v.replace('_', "").parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("STEWARD_BENCH_SCALES: {e}"))?;
        let s = Self {
            warmup: secs("STEWARD_BENCH_WARMUP_SECS", 2.0)?,
            measure: secs("STEWARD_BENCH_SECS", 5.0)?,
            clients: env_or("STEWARD_BENCH_CLIENTS", 64)?,
            client_threads: env_or("STEWARD_BENCH_CLIENT_THREADS", 1)?,
            server_threads: env_or("STEWARD_BENCH_SERVER_THREADS", cores)?,
            backends,
            scales,
            only: list("STEWARD_BENCH_ONLY", "")?,
            pg_url: env_or(
                "STEWARD_TEST_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
            )?,
            seed_batch: env_or("STEWARD_BENCH_SEED_BATCH", 20_000)?,
            soak: args.soak,
            soak_every: secs("STEWARD_BENCH_SOAK_SAMPLE_SECS", 60.0)?,
            soak_fraction: env_or("STEWARD_BENCH_SOAK_FRACTION", 0.7)?,
            update_readme: args.update_readme,
        };
        if s.measure.is_zero() || s.soak_every.is_zero() {
            return Err(
                "STEWARD_BENCH_SECS and STEWARD_BENCH_SOAK_SAMPLE_SECS must be positive".into(),
            );
        }
        for (name, v, max) in [
            ("STEWARD_BENCH_CLIENTS", s.clients, 4096),
            ("STEWARD_BENCH_CLIENT_THREADS", s.client_threads, 64),
            ("STEWARD_BENCH_SERVER_THREADS", s.server_threads, 64),
            ("STEWARD_BENCH_SEED_BATCH", s.seed_batch as usize, 200_000),
        ] {
            if v == 0 || v > max {
                return Err(format!("{name} must be between 1 and {max}"));
            }
        }
        if !(0.05..=1.0).contains(&s.soak_fraction) {
            return Err("STEWARD_BENCH_SOAK_FRACTION must be between 0.05 and 1".into());
        }
        Ok(s)
    }

    fn runs(&self, key: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|k| key.starts_with(k.as_str()))
    }

    fn setup(&self, fx: &Fixture, tls: &load::Tls) -> row::Setup {
        row::Setup {
            addr: fx.server.addr,
            tls: Some(tls.clone()),
            clients: self.clients,
            client_threads: self.client_threads,
            warmup: self.warmup,
            measure: self.measure,
        }
    }
}

/// Command-line flags (after `--`); `cargo bench` adds `--bench`, which is ignored.
#[derive(Default)]
struct Args {
    soak: Option<Duration>,
    update_readme: bool,
    readme_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--soak" => {
                let v = it.next().ok_or("--soak takes a number of seconds")?;
                let secs: u64 = v.parse().map_err(|e| format!("--soak {v}: {e}"))?;
                if !(10..=86_400).contains(&secs) {
                    return Err("--soak takes 10 to 86400 seconds".into());
                }
                a.soak = Some(Duration::from_secs(secs));
            }
            "--update-readme" => a.update_readme = true,
            "--readme-only" => a.readme_only = true,
            "--bench" => {}
            other => eprintln!("note: ignoring argument {other:?}"),
        }
    }
    Ok(a)
}

// ---------------------------------------------------------------- requests

/// A `private_key_jwt` client assertion (RFC 7523) with a fresh `jti`.
fn assertion(key: &Ed25519KeyPair, client: &str, aud: &str) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
    let claims = json!({"iss": client, "sub": client, "aud": aud, "iat": now, "exp": now + 300,
        "jti": uuid::Uuid::new_v4().simple().to_string()});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(sig.as_ref()))
}

fn assertion_body(key: &Ed25519KeyPair, client: &str, aud: &str) -> Bytes {
    Bytes::from(
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", &assertion(key, client, aud))
            .finish(),
    )
}

/// `private_key_jwt` token requests. Assertions are single-use, so `pool` of them is signed
/// before the row (the client's signing is not the server's work); past the pool, each request
/// signs its own.
fn token_jwt(fx: &Fixture, pool: usize) -> MakeRequest {
    let (key, client, aud) = (fx.jwt_key.clone(), fx.jwt_client.clone(), fx.issuer.clone());
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..pool)
            .map(|_| assertion_body(&key, &client, &aud))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let host = fx.host.clone();
    Arc::new(move |_, _| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let body = bodies
            .get(i)
            .cloned()
            .unwrap_or_else(|| assertion_body(&key, &client, &aud));
        post("/oauth2/token", &host, FORM, None, body)
    })
}

/// `tls_client_auth` token requests (RFC 8705) on mutual-TLS keep-alive connections.
fn token_mtls(fx: &Fixture) -> MakeRequest {
    let body = Bytes::from(format!(
        "grant_type=client_credentials&client_id={}",
        fx.mtls_client
    ));
    let host = fx.host.clone();
    Arc::new(move |_, _| post("/oauth2/token", &host, FORM, None, body.clone()))
}

/// Form or JSON bodies cycled per request.
fn cycle(
    path: &'static str,
    host: &HeaderValue,
    content_type: &'static str,
    auth: Option<HeaderValue>,
    bodies: Vec<Bytes>,
) -> MakeRequest {
    let (host, bodies) = (host.clone(), Arc::new(bodies));
    Arc::new(move |conn, seq| {
        let idx = (conn as u64).wrapping_mul(7919).wrapping_add(seq) as usize % bodies.len().max(1);
        let body = bodies.get(idx).cloned().unwrap_or_default();
        post(path, &host, content_type, auth.as_ref(), body)
    })
}

fn form(pairs: &[(&str, &str)]) -> Bytes {
    Bytes::from(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish(),
    )
}

// ---------------------------------------------------------------- rows

/// SDK local verification (`steward_client::Verifier`, every check, cache off) of a token this
/// server issued, against its JWKS: in-process on one thread.
fn sdk_verify(rt: &Runtime, s: &Settings, fx: &Fixture) -> Result<Row, String> {
    let (token, jwks) = rt.block_on(async {
        let token = fixture::fetch_token(
            fx.server.addr,
            &fx.tls,
            &fx.host,
            &fx.basic[0],
            "a:read docs:read",
        )
        .await?;
        let mut r = hyper::Request::new(http_body_util::Full::new(Bytes::new()));
        *r.uri_mut() = hyper::Uri::from_static("/.well-known/jwks.json");
        r.headers_mut().insert(hyper::header::HOST, fx.host.clone());
        let (_, body) = load::one_shot_tls(fx.server.addr, Some(&fx.tls), r).await?;
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("JWKS: {e}"))?;
        Ok::<_, String>((token, jwks))
    })?;
    let payload = token.split('.').nth(1).ok_or("the token is not a JWS")?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let aud = match &claims["aud"] {
        Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or_default(),
        v => v.as_str().unwrap_or_default(),
    };
    let mut cfg = steward_client::VerifierConfig::new(fx.issuer.clone(), aud.to_owned());
    cfg.required_scopes = vec!["a:read".into()];
    cfg.verified_cache_capacity = 0;
    let verifier = steward_client::Verifier::with_keys(cfg, &jwks);
    let auth = format!("Bearer {token}");
    let p = steward_client::Presentation {
        authorization: Some(&auth),
        ..Default::default()
    };
    let local = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    local.block_on(async {
        verifier
            .verify(&p)
            .await
            .map_err(|e| format!("SDK verification sanity check: {e}"))?;
        let warm_end = Instant::now() + s.warmup.min(Duration::from_secs(1));
        while Instant::now() < warm_end {
            let _ = verifier.verify(&p).await;
        }
        let mut lat = Vec::new();
        let (mut errors, t0) = (0u64, Instant::now());
        while t0.elapsed() < s.measure {
            let began = Instant::now();
            match verifier.verify(&p).await {
                Ok(_) => lat.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX)),
                Err(_) => errors += 1,
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |q: f64| {
            lat.get(((lat.len().saturating_sub(1)) as f64 * q).round() as usize)
                .map(|us| f64::from(*us) / 1000.0)
        };
        Ok(Row {
            what: "SDK verification".into(),
            ops: lat.len() as f64 / secs,
            p50: pct(0.5),
            p99: pct(0.99),
            errors,
            round_trips: None,
        })
    })
}

/// The row keys, their labels, in order.
pub const ROWS: [(&str, &str); 10] = [
    ("noop", "no-op `GET /_noop` (baseline)"),
    (
        "token-basic",
        "token issuance, API key (`client_secret_basic`)",
    ),
    ("token-jwt", "token issuance, `private_key_jwt`"),
    (
        "token-mtls",
        "token issuance, mTLS (`tls_client_auth`, keep-alive)",
    ),
    ("introspect", "introspection (`POST /oauth2/introspect`)"),
    ("exchange", "token exchange (RFC 8693, down-scoping)"),
    (
        "authorize",
        "authorize (`POST /v1/authorize`, 100 policies)",
    ),
    ("sdk-verify", "SDK verification (in-process, 1 thread)"),
    (
        "certificate",
        "certificate issuance (`POST /v1/certificates`, P-256 CSR)",
    ),
    (
        "identity-create",
        "identity creation (`POST /v1/identities`)",
    ),
];

fn run_scenario(
    rt: &Runtime,
    s: &Settings,
    fx: &Fixture,
    soak: Option<Duration>,
) -> (Vec<Measured>, Option<SoakReport>) {
    let mut out: Vec<Measured> = Vec::new();
    let plain = s.setup(fx, &fx.tls);
    let measure = |key: &'static str, make: Result<MakeRequest, String>, setup: &row::Setup| {
        let label = ROWS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(key, |(_, l)| *l);
        let row = make.and_then(|m| row::measure(rt, setup, label, m));
        if let Err(e) = &row {
            eprintln!(
                "[{} {}] {key}: not measured: {e}",
                fx.backend, fx.identities
            );
        }
        Measured { key, row }
    };
    let bearer = || rt.block_on(fx.admin_bearer());
    for (key, _) in ROWS {
        if !s.runs(key) {
            continue;
        }
        let m = match key {
            "noop" => measure(key, Ok(requests::noop(fx.host.clone())), &plain),
            "token-basic" => measure(
                key,
                Ok(requests::token_request(fx.host.clone(), fx.basic.clone())),
                &plain,
            ),
            "token-jwt" => {
                // Enough single-use assertions for the row at the API-key rate, plus a margin.
                let rate = out
                    .iter()
                    .find(|m| m.key == "token-basic")
                    .and_then(|m| m.row.as_ref().ok())
                    .map_or(10_000.0, |r| r.ops);
                let need = rate * (s.warmup + s.measure).as_secs_f64() * 1.3 + 1000.0;
                measure(key, Ok(token_jwt(fx, (need as usize).min(400_000))), &plain)
            }
            "token-mtls" => measure(key, Ok(token_mtls(fx)), &s.setup(fx, &fx.mtls)),
            "introspect" => {
                let make = bearer().and_then(|b| {
                    let tokens = rt.block_on(async {
                        let mut v = Vec::new();
                        for basic in fx.basic.iter().take(64) {
                            let t = fixture::fetch_token(
                                fx.server.addr,
                                &fx.tls,
                                &fx.host,
                                basic,
                                "a:read",
                            )
                            .await?;
                            v.push(form(&[("token", &t)]));
                        }
                        Ok::<_, String>(v)
                    })?;
                    Ok(cycle("/oauth2/introspect", &fx.host, FORM, Some(b), tokens))
                });
                measure(key, make, &plain)
            }
            "exchange" => {
                let bodies = fx
                    .exchange_tokens
                    .iter()
                    .map(|t| requests::downscope(t, "deploy:read"))
                    .collect();
                measure(
                    key,
                    Ok(cycle("/oauth2/token", &fx.host, FORM, None, bodies)),
                    &plain,
                )
            }
            "authorize" => {
                let make =
                    bearer().map(|b| policy_set::authorize_requests(&fx.host, &b, &fx.principals));
                measure(key, make, &plain)
            }
            "sdk-verify" => Measured {
                key,
                row: sdk_verify(rt, s, fx).inspect_err(|e| eprintln!("sdk-verify: {e}")),
            },
            "certificate" => {
                let bodies = fx
                    .csrs
                    .iter()
                    .map(|c| Bytes::from(json!({"csr": c, "ttl_secs": 3600}).to_string()))
                    .collect();
                let auth = fx.basic.first().cloned();
                measure(
                    key,
                    Ok(cycle("/v1/certificates", &fx.host, JSON, auth, bodies)),
                    &plain,
                )
            }
            "identity-create" => {
                let make =
                    bearer().and_then(|b| requests::create_identity(fx.host.clone(), b, fx.owner));
                measure(key, make, &plain)
            }
            _ => continue,
        };
        out.push(m);
    }

    // The soak: API-key token issuance at a fraction of the peak just measured, open loop.
    let soak = soak.map(|duration| {
        let peak = out
            .iter()
            .find(|m| m.key == "token-basic")
            .and_then(|m| m.row.as_ref().ok())
            .map(|r| r.ops)
            .filter(|r| *r > 0.0);
        let result = peak
            .ok_or_else(|| "the soak needs the token-basic row's peak".to_owned())
            .and_then(|peak| {
                let rate = peak * s.soak_fraction;
                eprintln!(
                    "soak: {:.0} s at {rate:.0} tokens/s ({:.0} % of {peak:.0}/s), sampled every {:.0} s",
                    duration.as_secs_f64(),
                    s.soak_fraction * 100.0,
                    s.soak_every.as_secs_f64()
                );
                let samples = soak::run(soak::Soak {
                    addr: fx.server.addr,
                    tls: Some(fx.tls.clone()),
                    make: requests::token_request(fx.host.clone(), fx.basic.clone()),
                    rate,
                    connections: s.clients,
                    threads: s.client_threads,
                    duration,
                    every: s.soak_every,
                })?;
                Ok((rate, peak, samples))
            });
        SoakReport {
            backend: fx.backend,
            identities: fx.identities,
            every: s.soak_every,
            result,
        }
    });
    (out, soak)
}

fn run(args: &Args) -> Result<(), String> {
    let s = Settings::from_env(args)?;
    steward_server::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.server_threads)
        .thread_name("steward-server")
        .enable_all()
        .build()
        .map_err(|e| format!("server runtime: {e}"))?;
    let mut scenarios = Vec::new();
    let mut soak_report = None;
    let started = Instant::now();
    for &backend in &s.backends {
        for &scale in &s.scales {
            eprintln!("== {backend}, {scale} identities");
            let fx = match rt.block_on(fixture::start(&s, backend, scale)) {
                Ok(fx) => fx,
                Err(e) => {
                    eprintln!("[{backend} {scale}] not run: {e}");
                    scenarios.push(Scenario {
                        backend,
                        scale,
                        identities: 0,
                        seeded: (0, 0.0),
                        rows: Vec::new(),
                        error: Some(e),
                    });
                    continue;
                }
            };
            // The soak runs once, on the first scenario.
            let soak = if soak_report.is_none() { s.soak } else { None };
            let (rows, soaked) = run_scenario(&rt, &s, &fx, soak);
            if soaked.is_some() {
                soak_report = soaked;
            }
            scenarios.push(Scenario {
                backend,
                scale,
                identities: fx.identities,
                seeded: fx.seeded,
                rows,
                error: None,
            });
            rt.block_on(fx.shutdown());
        }
    }
    let md = report::markdown(&s, &scenarios, soak_report.as_ref(), started.elapsed());
    println!("{md}");
    let path = results::results_path("suite.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, &md).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("written to {}", path.display());
    if s.update_readme {
        report::update_readme(&md)?;
    }
    Ok(())
}

/// The allocator the `steward` binary uses, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let result = parse_args().and_then(|args| {
        if args.readme_only {
            let path = results::results_path("suite.md");
            let md = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e} (run the suite first)", path.display()))?;
            report::update_readme(&md)
        } else {
            run(&args)
        }
    });
    if let Err(e) = result {
        eprintln!("bench suite failed: {e}");
        std::process::exit(1);
    }
}

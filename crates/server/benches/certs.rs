//! Certificates and mutual TLS benchmark over HTTPS on loopback, with the audit log on (every
//! issuance and token is a durably committed audit record). Run: `cargo bench -p steward-server --bench certs`.
//!
//! Rows, each against a baseline measured in the same run:
//! - `noop, keep-alive`: GET /_noop on kept-alive HTTPS connections (baseline of the next row);
//! - `certificates`: POST /v1/certificates (Basic client auth, a P-256 CSR) on kept-alive connections;
//! - `noop, new TLS handshake`: a fresh TLS connection per GET /_noop (baseline of the next row);
//! - `mTLS handshake + token`: a fresh mutual-TLS connection per POST /oauth2/token (`tls_client_auth`,
//!   certificate-bound token).
//!
//! The server runs in-process on a multi-thread runtime; the load generator runs on its own OS
//! threads (current-thread runtimes, reqwest over rustls), so both share the machine's cores.
//! Environment: `STEWARD_BENCH_SECS` (default 5), `STEWARD_BENCH_WARMUP_SECS` (1),
//! `STEWARD_BENCH_CLIENTS` (64), `STEWARD_BENCH_CLIENT_THREADS` (1). Results also go to
//! `target/bench-results/certs.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_crypto::x509::{self, KeyAlg};
use steward_server::service::Ctx;
use steward_server::{ServerConfig, StartOptions};

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Fixture {
    base: String,
    bundle: String,
    client_id: String,
    secret: String,
    mtls_identity: String,
    csrs: Vec<String>,
}

async fn setup() -> Result<(steward_server::RunningServer, Fixture, tempfile::TempDir), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cfg = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth_failure_limit: 1_000_000,
        ..ServerConfig::default()
    };
    let server = steward_server::start(cfg, StartOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let s = &server.state;
    let ctx = Ctx::system();
    let owner = s
        .create_owner(
            &ctx,
            steward_proto::CreateOwner {
                name: "bench".into(),
                kind: "team".into(),
                contact: "bench@example.com".into(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let ident = s
        .create_identity(
            &ctx,
            steward_proto::CreateIdentity {
                name: "bench-svc".into(),
                kind: "workload".into(),
                owner: owner.id,
                purpose: "bench".into(),
                environment: "prod".into(),
                expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(30),
                scopes: vec!["a:read".into()],
                default_scopes: Some(vec!["a:read".into()]),
                audiences: vec![],
                labels: Default::default(),
                vendor: None,
                token_lifetime_secs: None,
                require_dpop: false,
                allowed_dns_names: vec![],
                may_act: vec![],
                allowed_source_cidrs: vec![],
                review_due_at: None,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let issued = s
        .create_credential(
            &ctx,
            ident.id,
            steward_proto::CreateCredential {
                kind: "api_key".into(),
                jwk: None,
                expires_at: None,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let secret = issued.secret.ok_or("no secret")?.expose_secret().to_owned();
    let mut csrs = vec![];
    let mut first_key = None;
    for _ in 0..64 {
        let kc = x509::generate_key_and_csr(KeyAlg::EcdsaP256, "bench", &[], &[])
            .map_err(|e| e.to_string())?;
        if first_key.is_none() {
            first_key = Some((kc.key_pem.to_string(), kc.csr_pem.clone()));
        }
        csrs.push(kc.csr_pem);
    }
    let (key, csr) = first_key.ok_or("no key")?;
    let cert = s
        .issue_certificate(
            &ctx,
            &ident,
            "bench",
            steward_proto::IssueCertificate {
                csr,
                ttl_secs: Some(86_400),
                server_auth: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let fx = Fixture {
        base: server.base_url(),
        bundle: s.trust_bundle_pem(),
        client_id: ident.id.to_string(),
        secret,
        mtls_identity: format!("{}{}", cert.full_chain, key),
        csrs,
    };
    Ok((server, fx, dir))
}

type Build = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

struct Row {
    name: &'static str,
    ops: u64,
    errors: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn client(f: &Fixture, identity: bool, reuse: bool) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .http1_only()
        .tls_certs_only(
            reqwest::Certificate::from_pem_bundle(f.bundle.as_bytes())
                .map_err(|e| e.to_string())?,
        )
        .timeout(Duration::from_secs(30));
    if !reuse {
        b = b.pool_max_idle_per_host(0);
    }
    if identity {
        b = b.identity(
            reqwest::Identity::from_pem(f.mtls_identity.as_bytes()).map_err(|e| e.to_string())?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

/// Runs `build` from `clients` concurrent tasks on `threads` OS threads; counts answers with
/// `expect` after the warm-up.
fn run(
    name: &'static str,
    make_client: impl Fn() -> Result<reqwest::Client, String>,
    build: Build,
    expect: u16,
) -> Result<Row, String> {
    let secs = env_u64("STEWARD_BENCH_SECS", 5);
    let warmup = env_u64("STEWARD_BENCH_WARMUP_SECS", 1);
    let clients = env_u64("STEWARD_BENCH_CLIENTS", 64) as usize;
    let threads = env_u64("STEWARD_BENCH_CLIENT_THREADS", 1).max(1) as usize;
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs(warmup);
    let end = measure_from + Duration::from_secs(secs);
    let mut handles = vec![];
    for th in 0..threads {
        let c = make_client()?;
        let build = build.clone();
        let per = clients / threads + usize::from(th < clients % threads);
        handles.push(std::thread::spawn(move || -> (u64, u64, Vec<u32>) {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(_) => return (0, 1, vec![]),
            };
            rt.block_on(async move {
                let mut tasks = vec![];
                for k in 0..per {
                    let (c, build) = (c.clone(), build.clone());
                    tasks.push(tokio::spawn(async move {
                        let (mut ok, mut err, mut lat) = (0u64, 0u64, Vec::with_capacity(8192));
                        tokio::time::sleep_until(start.into()).await;
                        let mut i = k * 7919 + th * 104_729;
                        loop {
                            let t0 = Instant::now();
                            if t0 >= end {
                                break;
                            }
                            i += 1;
                            let r = build(&c, i).send().await;
                            let good = match r {
                                Ok(resp) => {
                                    let st = resp.status().as_u16();
                                    resp.bytes().await.is_ok() && st == expect
                                }
                                Err(_) => false,
                            };
                            let t1 = Instant::now();
                            if t0 >= measure_from && t1 <= end {
                                if good {
                                    ok += 1;
                                    lat.push(
                                        u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX),
                                    );
                                } else {
                                    err += 1;
                                }
                            }
                        }
                        (ok, err, lat)
                    }));
                }
                let (mut ok, mut err, mut lat) = (0, 0, vec![]);
                for t in tasks {
                    if let Ok((o, e, l)) = t.await {
                        ok += o;
                        err += e;
                        lat.extend(l);
                    }
                }
                (ok, err, lat)
            })
        }));
    }
    let (mut ops, mut errors, mut lat) = (0, 0, vec![]);
    for h in handles {
        let (o, e, l) = h.join().map_err(|_| "load thread panicked")?;
        ops += o;
        errors += e;
        lat.extend(l);
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |v| f64::from(*v) / 1000.0)
    };
    let row = Row {
        name,
        ops,
        errors,
        secs: secs as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    };
    eprintln!(
        "{:<28} {:>10.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
        row.name,
        row.rate(),
        row.p50_ms,
        row.p99_ms,
        row.errors
    );
    Ok(row)
}

/// The allocator the `steward` binary uses, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), String> {
    steward_server::install_crypto_provider();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (server, fx, _dir) = rt.block_on(setup())?;
    let fx = Arc::new(fx);
    let f = fx.clone();
    let noop: Build = {
        let url = format!("{}/_noop", f.base);
        Arc::new(move |c, _| c.get(&url))
    };
    let certs: Build = {
        let f = fx.clone();
        let url = format!("{}/v1/certificates", f.base);
        Arc::new(move |c, i| {
            c.post(&url)
                .basic_auth(&f.client_id, Some(&f.secret))
                .json(&serde_json::json!({"csr": f.csrs[i % f.csrs.len()], "ttl_secs": 3600}))
        })
    };
    let token: Build = {
        let f = fx.clone();
        let url = format!("{}/oauth2/token", f.base);
        Arc::new(move |c, _| {
            c.post(&url).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", f.client_id.as_str()),
            ])
        })
    };
    let rows = [
        run(
            "noop, keep-alive",
            || client(&fx, false, true),
            noop.clone(),
            204,
        )?,
        run("certificates", || client(&fx, false, true), certs, 201)?,
        run(
            "noop, new TLS handshake",
            || client(&fx, false, false),
            noop,
            204,
        )?,
        run(
            "mTLS handshake + token",
            || client(&fx, true, false),
            token,
            200,
        )?,
    ];
    let audit = rt
        .block_on(server.state.store.audit_head())
        .map_err(|e| e.to_string())?;
    let mut md = format!(
        "# Certificates and mutual TLS ({} cores, SQLite, audit on; {} audit records written)\n\n\
         | row | ops/s | vs baseline | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|\n",
        cores, audit.size
    );
    for (i, r) in rows.iter().enumerate() {
        let base = if i % 2 == 1 {
            rows[i - 1].rate()
        } else {
            r.rate()
        };
        md.push_str(&format!(
            "| {} | {:.0} | {:.2}× | {:.2} | {:.2} | {} |\n",
            r.name,
            r.rate(),
            r.rate() / base.max(1e-9),
            r.p50_ms,
            r.p99_ms,
            r.errors
        ));
    }
    println!("{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-results");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("certs.md"), &md);
    }
    rt.block_on(server.shutdown());
    Ok(())
}

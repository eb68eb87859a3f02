//! Authorization benchmark: `POST /v1/authorize` decisions per second over HTTP with a realistic
//! set of 100 Cedar policies (plus the guard rails), beside the no-op `GET /_noop` in the same
//! run, and the pure in-process evaluation rate. Run: `cargo bench -p steward-server --bench authz`.
//!
//! Every decision verifies the caller's token and (in the token row) the subject's token, is
//! evaluated, and is group-committed to the audit log before the answer — as in production.
//! Environment: `STEWARD_BENCH_SECS` (5), `STEWARD_BENCH_WARMUP_SECS` (2),
//! `STEWARD_BENCH_CLIENTS` (64 connections), `STEWARD_BENCH_CLIENT_THREADS` (1). Results go to
//! stdout and `target/bench-results/authz.md`.

#[allow(dead_code)]
#[path = "../http/load.rs"]
mod load;
mod policy_set;
#[allow(dead_code)]
#[path = "../http/requests.rs"]
mod requests;
#[allow(dead_code)]
#[path = "../http/row.rs"]
mod row;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::http::HeaderValue;
use serde_json::{Value, json};
use steward_server::{ServerConfig, StartOptions};

use load::MakeRequest;
use policy_set::{IDENTITIES, authorize_requests, policies, request_body, schema};
use row::Row;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The allocator the `steward` binary uses, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = run() {
        eprintln!("authz bench failed: {e}");
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
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = rt
        .block_on(steward_server::start(
            ServerConfig {
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
                insecure_http: true,
                authz: schema(),
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
    let token = |id: String, secret: String, scope: &'static str| {
        let http = http.clone();
        let url = format!("{base}/oauth2/token");
        async move {
            let mut form = vec![("grant_type", "client_credentials")];
            if !scope.is_empty() {
                form.push(("scope", scope));
            }
            let v: Value = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&form)
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
    let (admin, principals_by_token, principals_by_id) = rt.block_on(async {
        let admin = token(
            creds["client_id"].as_str().unwrap_or_default().to_owned(),
            creds["client_secret"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            "",
        )
        .await?;
        let api = |path: String, body: Value| {
            let (http, admin) = (http.clone(), admin.clone());
            let url = format!("{base}{path}");
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
        for p in policies() {
            api(
                "/v1/policies".into(),
                json!({"id": p.id, "source": p.source}),
            )
            .await?;
        }
        let owner = api(
            "/v1/owners".into(),
            json!({"name": "bench", "kind": "team", "contact": "b@example.com"}),
        )
        .await?;
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string())?;
        let mut by_token = Vec::new();
        let mut by_id = Vec::new();
        for i in 0..IDENTITIES {
            let ident = api(
                "/v1/identities".into(),
                json!({"name": format!("svc-{i}"), "kind": "workload", "owner": owner["id"],
                    "purpose": "bench", "environment": "prod", "expires_at": expires,
                    "scopes": ["docs:read", "docs:write", "queue:publish", "queue:consume"],
                    "labels": {"team": format!("team{i}")}}),
            )
            .await?;
            let id = ident["id"].as_str().unwrap_or_default().to_owned();
            let key = api(
                format!("/v1/identities/{id}/credentials"),
                json!({"type": "api_key"}),
            )
            .await?;
            let secret = key["client_secret"].as_str().unwrap_or_default().to_owned();
            let t = token(id.clone(), secret, "docs:read docs:write queue:publish").await?;
            by_token.push(json!({"token": t}));
            by_id.push(json!({"identity_id": id}));
        }
        Ok::<_, String>((admin, by_token, by_id))
    })?;

    let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    let bearer = HeaderValue::from_str(&format!("Bearer {admin}")).map_err(|e| e.to_string())?;
    let noop = requests::noop(host.clone());
    let authorize = |principals: Vec<Value>| authorize_requests(&host, &bearer, &principals);

    let setup = row::Setup {
        addr,
        tls: None,
        clients,
        client_threads,
        warmup,
        measure,
    };
    let run_row = |what: &str, make: MakeRequest| row::measure(&rt, &setup, what, make);
    // `STEWARD_BENCH_ONLY=eval` measures the in-process evaluation only (for profiling).
    let eval_only = std::env::var("STEWARD_BENCH_ONLY").is_ok_and(|v| v == "eval");
    let mut rows = Vec::new();
    if !eval_only {
        rows.push(run_row("no-op `GET /_noop` (baseline, same run)", noop)?);
        rows.push(run_row(
            "`POST /v1/authorize`, subject by access token",
            authorize(principals_by_token),
        )?);
        rows.push(run_row(
            "`POST /v1/authorize`, subject by identity id",
            authorize(principals_by_id.clone()),
        )?);
    }

    // Pure evaluation in-process: the Cedar engine alone, one thread.
    let base = steward_policy::Base::new(schema()).map_err(|e| e.to_string())?;
    let engine = base.compile(&policies()).map_err(|e| e.to_string())?;
    let reqs: Vec<steward_policy::Request> = (0..1000u64)
        .map(|i| {
            let body: Value =
                serde_json::from_slice(&request_body(i, &json!({}))).unwrap_or_default();
            steward_policy::Request {
                principal: steward_policy::Principal {
                    id: format!("id-{}", i % IDENTITIES as u64),
                    name: format!("svc-{}", i % IDENTITIES as u64),
                    kind: "workload".into(),
                    env: "prod".into(),
                    owner: "o".into(),
                    scopes: vec![
                        "docs:read".into(),
                        "docs:write".into(),
                        "queue:publish".into(),
                    ],
                    labels: BTreeMap::from([(
                        "team".into(),
                        format!("team{}", i % IDENTITIES as u64),
                    )]),
                    exceptions: vec![],
                },
                action: body["action"].as_str().unwrap_or_default().to_owned(),
                resource: serde_json::from_value(body["resource"].clone()).unwrap_or_default(),
                context: steward_policy::Context {
                    time: 1_700_000_000,
                    source_ip: body["context"]["source_ip"].as_str().map(str::to_owned),
                    ..Default::default()
                },
            }
        })
        .collect();
    let mut lat = Vec::new();
    let mut allowed = 0u64;
    let end = Instant::now() + measure;
    let mut n = 0usize;
    let t0 = Instant::now();
    while Instant::now() < end {
        let s = Instant::now();
        allowed += u64::from(engine.evaluate(&reqs[n % reqs.len()]).allow);
        lat.push(u32::try_from(s.elapsed().as_micros()).unwrap_or(u32::MAX));
        n += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len().saturating_sub(1)) as f64 * q) as usize)
            .map(|us| f64::from(*us) / 1000.0)
    };
    rows.push(Row {
        what: format!(
            "Cedar evaluation in-process, 1 thread ({} policies + 2 guard rails; {:.0} % allow)",
            policies().len(),
            allowed as f64 * 100.0 / n.max(1) as f64
        ),
        ops: n as f64 / secs,
        p50: pct(0.5),
        p99: pct(0.99),
        errors: 0,
        round_trips: None,
    });

    let noop = rows.first().map_or(1.0, |r| r.ops.max(1.0));
    let mut md = String::from(
        "| measurement | concurrency | decisions/s | p50 | p99 | vs no-op |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} ms"));
    for (i, r) in rows.iter().enumerate() {
        let in_process = i == rows.len() - 1;
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} |{}",
            r.what,
            if in_process {
                "1".into()
            } else {
                clients.to_string()
            },
            r.ops,
            ms(r.p50),
            ms(r.p99),
            if in_process {
                "–".into()
            } else {
                format!("{:.0} %", r.ops * 100.0 / noop)
            },
            if r.errors > 0 {
                format!(" ({} errors)", r.errors)
            } else {
                String::new()
            }
        );
    }
    println!("\n{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-results");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("authz.md"), &md);
    rt.block_on(server.shutdown());
    let _: SocketAddr = addr;
    Ok(())
}

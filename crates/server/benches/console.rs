//! Console benchmark: with 100,000 identities in the store, how long the server takes to render
//! the inventory's first page, filtered and searched pages, a deep page, the overview and an
//! identity page — p50/p99 over many sequential requests through real HTTP on loopback, beside
//! `GET /healthz` measured in the same run as the baseline. Target: the inventory's first page
//! under 200 ms. Run: `cargo bench -p steward-server --bench console`.
//!
//! Environment: `STEWARD_BENCH_IDENTITIES` (100000), `STEWARD_BENCH_REQUESTS` (200 per row),
//! `STEWARD_BENCH_BACKEND` (`sqlite`, or `postgres` on `STEWARD_TEST_DATABASE_URL`, a fresh
//! database dropped afterwards). Results go to stdout and `target/bench-results/console.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use steward_core::{Identity, IdentityKind, IdentityStatus, Owner, OwnerKind, OwnerStatus};
use steward_server::{ServerConfig, StartOptions};
use steward_store::{Change, Mutation};
use time::OffsetDateTime;
use uuid::Uuid;

const OWNERS: usize = 200;
const TARGET_MS: f64 = 200.0;
const ENVIRONMENTS: [&str; 3] = ["prod", "staging", "dev"];

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
        eprintln!("console bench failed: {e}");
        std::process::exit(1);
    }
}

fn owner(n: usize, now: OffsetDateTime) -> Owner {
    Owner {
        id: Uuid::now_v7(),
        name: format!("team-{n:03}"),
        kind: OwnerKind::Team,
        contact: format!("team-{n:03}@example.com"),
        status: OwnerStatus::Active,
        created_at: now,
        departed_at: None,
        version: 1,
    }
}

/// Identity `n`: names `svc-00000`…, spread over kinds, environments and owners; 1 % suspended,
/// 0.5 % retired, 1 % with "batch" in the purpose.
fn identity(n: usize, owners: &[Owner], now: OffsetDateTime) -> Identity {
    let status = if n % 100 == 7 {
        IdentityStatus::Suspended
    } else if n % 200 == 11 {
        IdentityStatus::Retired
    } else {
        IdentityStatus::Active
    };
    Identity {
        id: Uuid::now_v7(),
        name: format!("svc-{n:05}"),
        kind: IdentityKind::ALL[n % IdentityKind::ALL.len()],
        owner_id: owners[n % owners.len()].id,
        purpose: if n % 100 == 3 {
            format!("runs the nightly batch {n}")
        } else {
            format!("serves traffic for service {n}")
        },
        environment: ENVIRONMENTS[n % ENVIRONMENTS.len()].into(),
        expires_at: now + time::Duration::days(30 + (n % 300) as i64),
        scopes: vec!["orders:read".into(), "orders:write".into()],
        default_scopes: vec!["orders:read".into()],
        audiences: vec!["https://orders.internal".into()],
        labels: BTreeMap::from([("tier".to_owned(), (n % 3).to_string())]),
        vendor: None,
        status,
        status_reason: None,
        token_lifetime_secs: None,
        require_dpop: false,
        tokens_revoked_before: None,
        created_by: "bench".into(),
        approved_by: None,
        approved_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
        allowed_dns_names: Vec::new(),
        may_act: Vec::new(),
        allowed_source_cidrs: Vec::new(),
        review_due_at: None,
    }
}

struct Row {
    what: String,
    path: String,
    p50: f64,
    p99: f64,
    mean: f64,
    bytes: usize,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * q).round() as usize]
}

async fn measure(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    what: &str,
    path: &str,
    n: usize,
) -> Result<Row, String> {
    let url = format!("{base}{path}");
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..(n + n / 10 + 1) {
        let start = Instant::now();
        let resp = http
            .get(&url)
            .header("cookie", cookie)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        let elapsed = start.elapsed();
        if !status.is_success() {
            return Err(format!(
                "{path}: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        // The first tenth warms caches and connections; it is not counted.
        if i > n / 10 {
            times.push(elapsed.as_secs_f64() * 1000.0);
            bytes = body.len();
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(Row {
        what: what.into(),
        path: path.into(),
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        mean: times.iter().sum::<f64>() / times.len().max(1) as f64,
        bytes,
    })
}

/// Signs in as the bootstrap admin; returns the session cookie.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
) -> Result<String, String> {
    let form = http
        .get(format!("{base}/ui/signin"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let pre = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("steward_signin="))
        .and_then(|v| v.split(';').next())
        .ok_or("no sign-in cookie")?
        .to_owned();
    let resp = http
        .post(format!("{base}/ui/signin"))
        .header("cookie", format!("steward_signin={pre}"))
        .header("origin", base)
        .form(&[
            ("csrf", pre.as_str()),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("steward_console="))
        .and_then(|v| v.split(';').next())
        .map(|v| format!("steward_console={v}"))
        .ok_or_else(|| format!("sign-in failed: {}", resp.status()))
}

async fn fresh_pg_database() -> Result<(String, String), String> {
    use sqlx::{ConnectOptions, Connection};
    let admin = std::env::var("STEWARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let opts: sqlx::postgres::PgConnectOptions = admin.parse().map_err(|e| format!("{e}"))?;
    let mut conn = opts.connect().await.map_err(|e| e.to_string())?;
    let name = format!("steward_bench_{}", Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).map_err(|e| e.to_string())?;
    url.set_path(&name);
    Ok((url.to_string(), admin))
}

async fn drop_pg_database(admin: &str, name: &str) {
    use sqlx::ConnectOptions;
    if let Ok(opts) = admin.parse::<sqlx::postgres::PgConnectOptions>()
        && let Ok(mut c) = opts.connect().await
    {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await;
    }
}

fn run() -> Result<(), String> {
    steward_server::install_crypto_provider();
    let total: usize = env_or("STEWARD_BENCH_IDENTITIES", 100_000);
    let n: usize = env_or("STEWARD_BENCH_REQUESTS", 200);
    let postgres = std::env::var("STEWARD_BENCH_BACKEND").is_ok_and(|b| b == "postgres");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let pg = if postgres {
            Some(fresh_pg_database().await?)
        } else {
            None
        };
        let server = steward_server::start(
            ServerConfig {
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
                insecure_http: true,
                database_url: pg.as_ref().map(|(u, _)| u.clone()),
                ..Default::default()
            },
            StartOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let creds: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                server
                    .admin_credentials
                    .as_ref()
                    .ok_or("no admin credentials file")?,
            )
            .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let base = server.base_url();

        // Seed: owners, then identities in changes of 1,000.
        let seed_start = Instant::now();
        let now = OffsetDateTime::now_utc();
        let owners: Vec<Owner> = (0..OWNERS).map(|i| owner(i, now)).collect();
        let mut change = Change::new();
        for o in &owners {
            change = change.with(Mutation::InsertOwner(o.clone()));
        }
        server.state.store.commit(change).await.map_err(|e| e.to_string())?;
        let mut sample = None;
        for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
            let mut change = Change::new();
            for &i in chunk {
                let ident = identity(i, &owners, now);
                if i == total / 2 {
                    sample = Some(ident.id);
                }
                change = change.with(Mutation::InsertIdentity(ident));
            }
            server.state.store.commit(change).await.map_err(|e| e.to_string())?;
        }
        let seeded = seed_start.elapsed();
        eprintln!("seeded {total} identities in {:.1} s", seeded.as_secs_f64());
        let sample = sample.ok_or("no sample identity")?;

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| e.to_string())?;
        let cookie = sign_in(
            &http,
            &base,
            creds["client_id"].as_str().unwrap_or_default(),
            creds["client_secret"].as_str().unwrap_or_default(),
        )
        .await?;

        // A deep page: the cursor of the identity in the middle.
        let owner_id = owners[17].id;
        let scenarios: Vec<(&str, String)> = vec![
            ("baseline: GET /healthz", "/healthz".into()),
            ("inventory, first page", "/ui/identities".into()),
            ("inventory, page in the middle (cursor)", format!("/ui/identities?cursor={sample}")),
            ("filter: status=suspended (1 %)", "/ui/identities?status=suspended".into()),
            ("filter: environment=dev, kind=pipeline", "/ui/identities?environment=dev&kind=pipeline".into()),
            ("filter: one owner (0.5 %)", format!("/ui/identities?owner={owner_id}")),
            ("search: name prefix, 10 matches", "/ui/identities?q=svc-0420".into()),
            ("search: name prefix, 1,000 matches", "/ui/identities?q=svc-04".into()),
            ("search: name prefix, no match", "/ui/identities?q=zzz".into()),
            ("search: substring of name or purpose (1 %)", "/ui/identities?q=batch&match=contains".into()),
            ("search: substring, no match (full scan)", "/ui/identities?q=nomatch&match=contains".into()),
            ("prefix + filters", "/ui/identities?q=svc-1&environment=prod&status=active".into()),
            ("overview (counts cached 15 s)", "/ui/overview".into()),
            ("identity detail", format!("/ui/identities/{sample}")),
        ];
        let mut rows = Vec::new();
        for (what, path) in &scenarios {
            let row = measure(&http, &base, &cookie, what, path, n).await?;
            eprintln!("{what}: p50 {:.2} ms, p99 {:.2} ms", row.p50, row.p99);
            rows.push(row);
        }
        // The overview with its cache cold on every request: what the 15 s cache saves.
        let cold_overview = {
            let mut times = Vec::new();
            for _ in 0..10 {
                let stats_start = Instant::now();
                server
                    .state
                    .store
                    .identity_stats(OffsetDateTime::now_utc())
                    .await
                    .map_err(|e| e.to_string())?;
                times.push(stats_start.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            percentile(&times, 0.5)
        };

        let baseline = rows[0].p50;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## Console: server render time with {total} identities ({} backend)\n",
            if postgres { "PostgreSQL" } else { "SQLite" }
        );
        let _ = writeln!(
            md,
            "{n} sequential requests per row over one keep-alive HTTP/1.1 connection on loopback \
             (plus {} warm-up), signed in; times are client-observed, so they include the loopback \
             round trip measured by the baseline row. Seeding took {:.1} s.\n",
            n / 10 + 1,
            seeded.as_secs_f64()
        );
        let _ = writeln!(md, "| page | p50 ms | p99 ms | mean ms | p50 / baseline | size |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for r in &rows {
            let _ = writeln!(
                md,
                "| {} (`{}`) | {:.2} | {:.2} | {:.2} | {:.1}× | {} KiB |",
                r.what,
                r.path,
                r.p50,
                r.p99,
                r.mean,
                r.p50 / baseline,
                r.bytes / 1024
            );
        }
        let first = &rows[1];
        let worst_inventory = rows[1..12]
            .iter()
            .map(|r| r.p99)
            .fold(0.0f64, f64::max);
        let _ = writeln!(
            md,
            "\nIdentity counts grouped by the database (the overview's cache miss): p50 {cold_overview:.1} ms.\n"
        );
        let _ = writeln!(
            md,
            "Target: inventory first page under {TARGET_MS} ms — p99 {:.2} ms: **{}**. Slowest inventory row p99: {:.2} ms.",
            first.p99,
            if first.p99 < TARGET_MS { "met" } else { "MISSED" },
            worst_inventory
        );
        println!("\n{md}");
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-results");
        let _ = std::fs::create_dir_all(&out);
        let file = if postgres { "console-postgres.md" } else { "console.md" };
        let _ = std::fs::write(out.join(file), &md);
        server.shutdown().await;
        if let Some((url, admin)) = pg {
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            drop_pg_database(&admin, &name).await;
        }
        let _ = Duration::ZERO;
        Ok(())
    })
}

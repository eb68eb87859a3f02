//! End-to-end HTTP benchmark of Steward over loopback: the no-op baseline, token issuance and
//! identity creation on SQLite and PostgreSQL. Run: `cargo bench -p steward-server --bench http`.
//!
//! The server runs in-process on a multi-thread Tokio runtime; the load generator runs on separate
//! OS threads with current-thread runtimes (hyper 1 client, one task per keep-alive connection), so
//! both compete for the same cores. Results go to stdout and to `target/bench-results/http.md`.
//!
//! Environment: `STEWARD_BENCH_SECS` (measured seconds per row, default 5), `STEWARD_BENCH_WARMUP_SECS`
//! (default 2), `STEWARD_BENCH_TOKEN_CLIENTS` (64), `STEWARD_BENCH_CREATE_CLIENTS` (32),
//! `STEWARD_BENCH_CLIENT_THREADS` (1), `STEWARD_BENCH_SERVER_THREADS` (available cores),
//! `STEWARD_BENCH_IDENTITIES` (16), `STEWARD_TEST_DATABASE_URL` (PostgreSQL server to create a
//! fresh `steward_bench_<random>` database on), `STEWARD_BENCH_KEEP_DB` (keep that database),
//! `STEWARD_BENCH_ONLY` (comma-separated row keys or prefixes to run: `noop`, `tokens-sqlite`,
//! `identities-sqlite`, `tokens-postgres`, `identities-postgres`, e.g. `tokens` for both backends).

mod load;
mod pgdb;
mod probe;
#[allow(dead_code)]
mod requests;
mod results;

use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::http::HeaderValue;
use steward_server::service::Ctx;
use steward_server::{RunningServer, ServerConfig, StartOptions};
use tokio::runtime::Runtime;
use uuid::Uuid;

use load::{MakeRequest, Plan};
use pgdb::{create_pg_database, drop_pg_database, redact};
use probe::{Commits, Cpu, PgXacts};
use requests::{basic, token_request};
use results::{env_or, ms, results_path, thousands};

const NOOP: &str = "no-op GET /_noop";
const TOKENS: &str = "token issuance";
const IDENTITIES: &str = "identity creation";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Adds what was being done to an error, as a plain message.
trait Context<T> {
    fn context(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: &str) -> Result<T, String> {
        self.ok_or_else(|| what.to_owned())
    }
}

struct Settings {
    warmup: Duration,
    measure: Duration,
    token_clients: usize,
    create_clients: usize,
    client_threads: usize,
    server_threads: usize,
    identities: usize,
    pg_url: String,
    keep_db: bool,
    /// Row keys to run (prefix match), from `STEWARD_BENCH_ONLY`; empty = all.
    only: Vec<String>,
}

fn secs(name: &str, default: f64) -> Result<Duration, String> {
    let v: f64 = env_or(name, default)?;
    // Bounded so that one row stays well inside the admin token's default 600 s lifetime.
    if !(0.0..=250.0).contains(&v) {
        return Err(format!("{name} must be between 0 and 250 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let s = Self {
            warmup: secs("STEWARD_BENCH_WARMUP_SECS", 2.0)?,
            measure: secs("STEWARD_BENCH_SECS", 5.0)?,
            token_clients: env_or("STEWARD_BENCH_TOKEN_CLIENTS", 64)?,
            create_clients: env_or("STEWARD_BENCH_CREATE_CLIENTS", 32)?,
            client_threads: env_or("STEWARD_BENCH_CLIENT_THREADS", 1)?,
            server_threads: env_or("STEWARD_BENCH_SERVER_THREADS", cores)?,
            identities: env_or("STEWARD_BENCH_IDENTITIES", 16)?,
            pg_url: env_or("STEWARD_TEST_DATABASE_URL", DEFAULT_PG_URL.to_owned())?,
            keep_db: env_or("STEWARD_BENCH_KEEP_DB", false)?,
            only: env_or("STEWARD_BENCH_ONLY", String::new())?
                .split(',')
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
        };
        if s.measure.is_zero() {
            return Err("STEWARD_BENCH_SECS must be positive".into());
        }
        for (name, v, max) in [
            ("STEWARD_BENCH_TOKEN_CLIENTS", s.token_clients, 4096),
            ("STEWARD_BENCH_CREATE_CLIENTS", s.create_clients, 4096),
            ("STEWARD_BENCH_CLIENT_THREADS", s.client_threads, 64),
            ("STEWARD_BENCH_SERVER_THREADS", s.server_threads, 64),
            ("STEWARD_BENCH_IDENTITIES", s.identities, 1000),
        ] {
            if v == 0 || v > max {
                return Err(format!("{name} must be between 1 and {max}"));
            }
        }
        Ok(s)
    }

    /// Whether the row with this key (`noop`, `tokens-sqlite`, `identities-postgres`, …) runs.
    fn runs(&self, key: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|k| key.starts_with(k.as_str()))
    }
}

// ---------------------------------------------------------------- fixture

/// A running server with bench identities, their API keys, and the admin's credentials.
struct Fixture {
    server: RunningServer,
    backend: &'static str,
    host: HeaderValue,
    /// `Authorization: Basic …` for each bench identity's API key.
    clients: Vec<HeaderValue>,
    admin_basic: HeaderValue,
    owner: Uuid,
    _dir: tempfile::TempDir,
}

async fn start_fixture(
    backend: &'static str,
    database_url: Option<String>,
    identities: usize,
) -> Result<Fixture, String> {
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let cfg = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url,
        // Every request authenticates; the failure limiter must never be what is measured.
        auth_failure_limit: 1_000_000,
        // Plain HTTP on loopback: this bench measures the service, not TLS.
        insecure_http: true,
        ..ServerConfig::default()
    };
    let server = steward_server::start(cfg, StartOptions::default())
        .await
        .context("starting the server")?;
    let s = &server.state;
    let owner = s
        .create_owner(
            &Ctx::system(),
            steward_proto::CreateOwner {
                name: "bench".into(),
                kind: "team".into(),
                contact: "bench@example.com".into(),
            },
        )
        .await
        .context("creating the bench owner")?;
    let mut clients = Vec::with_capacity(identities);
    for i in 0..identities {
        let ident = s
            .create_identity(
                &Ctx::system(),
                steward_proto::CreateIdentity {
                    name: format!("bench-api-{i}"),
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
            .context("creating a bench identity")?;
        let issued = s
            .create_credential(
                &Ctx::system(),
                ident.id,
                steward_proto::CreateCredential {
                    kind: "api_key".into(),
                    jwk: None,
                    expires_at: None,
                },
            )
            .await
            .context("creating a bench API key")?;
        let secret = issued.secret.context("the new API key has no secret")?;
        clients.push(basic(&ident.id.to_string(), secret.expose_secret())?);
    }
    let creds_path = server
        .admin_credentials
        .clone()
        .context("the server did not write an admin credentials file (database not fresh?)")?;
    let raw = std::fs::read(&creds_path).context("reading the admin credentials file")?;
    let creds: steward_proto::CredentialsFile =
        serde_json::from_slice(&raw).context("parsing the admin credentials file")?;
    let admin_basic = basic(&creds.client_id, &creds.client_secret)?;
    let host =
        HeaderValue::from_str(&server.addr.to_string()).context("building the Host header")?;
    Ok(Fixture {
        server,
        backend,
        host,
        clients,
        admin_basic,
        owner: owner.id,
        _dir: dir,
    })
}

impl Fixture {
    async fn shutdown(self) {
        if tokio::time::timeout(Duration::from_secs(10), self.server.shutdown())
            .await
            .is_err()
        {
            eprintln!(
                "warning: the {} server did not shut down within 10 s",
                self.backend
            );
        }
    }

    fn noop(&self) -> MakeRequest {
        requests::noop(self.host.clone())
    }

    fn token(&self) -> MakeRequest {
        token_request(self.host.clone(), self.clients.clone())
    }

    /// `POST /v1/identities` with a distinct name per request.
    fn create_identity(&self, bearer: HeaderValue) -> Result<MakeRequest, String> {
        requests::create_identity(self.host.clone(), bearer, self.owner)
    }

    /// Gets an admin access token (scope `steward:admin` by default) over HTTP.
    async fn admin_bearer(&self) -> Result<HeaderValue, String> {
        let make = token_request(self.host.clone(), vec![self.admin_basic.clone()]);
        let (status, body) = load::one_shot(self.server.addr, make(0, 0)).await?;
        if !status.is_success() {
            return Err(format!(
                "admin token request failed: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let t: steward_proto::TokenResponse =
            serde_json::from_slice(&body).context("parsing the admin token response")?;
        HeaderValue::from_str(&format!("Bearer {}", t.access_token))
            .context("building the Bearer header")
    }
}

// ---------------------------------------------------------------- measuring

struct Measured {
    ops_per_sec: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    errors: u64,
    error_samples: Vec<String>,
    commits: Commits,
    /// (bench process, whole machine) CPU busy during the window, in % of all cores.
    cpu: Option<(f64, f64)>,
    pg_xacts: Option<i64>,
    ok: u64,
}

struct Row {
    what: &'static str,
    backend: &'static str,
    clients: usize,
    result: Result<Measured, String>,
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// Runs one warm-up + measurement against `addr`, taking server-side counter snapshots at the
/// window's edges while the load is still running.
fn measure(
    rt: &Runtime,
    s: &Settings,
    addr: SocketAddr,
    clients: usize,
    make: MakeRequest,
    mut pg: Option<&mut PgXacts>,
) -> Result<Measured, String> {
    let plan = Plan {
        addr,
        tls: None,
        connections: clients,
        threads: s.client_threads,
        warmup: s.warmup,
        measure: s.measure,
        make,
    };
    let running = load::start(&plan)?;
    sleep_until(running.measure_start);
    let c0 = Commits::now();
    let cpu0 = Cpu::now();
    let x0 = pg.as_deref_mut().and_then(|p| rt.block_on(p.read()));
    sleep_until(running.end);
    let c1 = Commits::now();
    let cpu1 = Cpu::now();
    let x1 = pg.and_then(|p| rt.block_on(p.read()));
    let out = running.join()?;
    let secs = s.measure.as_secs_f64();
    Ok(Measured {
        ops_per_sec: out.ok as f64 / secs,
        p50_ms: out.percentile_ms(0.50),
        p99_ms: out.percentile_ms(0.99),
        errors: out.errors,
        error_samples: out.error_samples,
        commits: c1.since(c0),
        cpu: cpu1.shares_since(cpu0),
        pg_xacts: x0.zip(x1).map(|(a, b)| b - a),
        ok: out.ok,
    })
}

/// Sends one request of the kind about to be measured and checks it succeeds, so a broken setup
/// is reported plainly instead of as a wall of errors.
fn sanity(rt: &Runtime, addr: SocketAddr, make: &MakeRequest, what: &str) -> Result<(), String> {
    let (status, body) = rt.block_on(load::one_shot(addr, make(0, u64::MAX)))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: sanity request failed: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    }
}

fn run_row(
    rt: &Runtime,
    s: &Settings,
    what: &'static str,
    fx: &Fixture,
    clients: usize,
    make: Result<MakeRequest, String>,
    pg: Option<&mut PgXacts>,
) -> Row {
    let result = make.and_then(|make| {
        sanity(rt, fx.server.addr, &make, what)?;
        measure(rt, s, fx.server.addr, clients, make, pg)
    });
    let row = Row {
        what,
        backend: fx.backend,
        clients,
        result,
    };
    match &row.result {
        Ok(m) => eprintln!(
            "{what} [{}]: {:.0} ops/s, p50 {}, p99 {}, errors {}",
            row.backend,
            m.ops_per_sec,
            ms(m.p50_ms),
            ms(m.p99_ms),
            m.errors
        ),
        Err(e) => eprintln!("{what} [{}]: not measured: {e}", row.backend),
    }
    row
}

// ---------------------------------------------------------------- PostgreSQL

// ---------------------------------------------------------------- report

fn report(s: &Settings, rows: &[Row], notes: &[String]) -> String {
    let noop = rows
        .iter()
        .find(|r| r.what == NOOP)
        .and_then(|r| r.result.as_ref().ok())
        .map(|m| m.ops_per_sec);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let secs = s.measure.as_secs_f64();
    let mut md = String::new();
    let _ = writeln!(md, "## Steward HTTP benchmark\n");
    let _ = writeln!(
        md,
        "Generated by `cargo bench -p steward-server --bench http` on {cores} CPU cores. \
         Loopback HTTP/1.1 with keep-alive; {:.1} s warm-up, then {:.1} s measured per row.\n",
        s.warmup.as_secs_f64(),
        secs
    );
    let _ = writeln!(
        md,
        "Placement: the server runs in the bench process on a Tokio multi-thread runtime with {} worker \
         threads (plus the database driver's own threads); the load generator runs on {} separate OS \
         thread(s), each a current-thread Tokio runtime driving its share of the connections with a \
         hyper 1 client, one task per connection sending requests back to back. PostgreSQL, when used, \
         is a server process on the same machine. Client, server and database all share the same cores, \
         so every number includes the client's cost.\n",
        s.server_threads, s.client_threads
    );
    let _ = writeln!(
        md,
        "| measurement | backend | clients | ops/s | p50 | p99 | errors | vs no-op \
         | write txns/s | writes/txn | writer busy | PG xacts/op | CPU bench / machine |"
    );
    let _ = writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        match &r.result {
            Ok(m) => {
                let ratio = noop.filter(|n| *n > 0.0).map_or_else(
                    || "–".into(),
                    |n| format!("{:.0} %", 100.0 * m.ops_per_sec / n),
                );
                let txns = if m.commits.batches == 0 {
                    "0".to_owned()
                } else {
                    thousands(m.commits.batches as f64 / secs)
                };
                let per_txn = if m.commits.batches == 0 {
                    "–".to_owned()
                } else {
                    format!("{:.1}", m.commits.jobs as f64 / m.commits.batches as f64)
                };
                // Share of the window the single writer spent inside transactions, and the mean
                // duration of one.
                let busy = if m.commits.batches == 0 {
                    "–".to_owned()
                } else {
                    format!(
                        "{:.0} % ({:.2} ms/txn)",
                        (100.0 * m.commits.micros as f64 / (secs * 1e6)).min(100.0),
                        m.commits.micros as f64 / 1000.0 / m.commits.batches as f64
                    )
                };
                let xacts = match (m.pg_xacts, m.ok) {
                    (Some(x), ok) if ok > 0 => format!("≈{:.2}", x as f64 / ok as f64),
                    _ => "–".into(),
                };
                let cpu = m.cpu.map_or_else(
                    || "–".into(),
                    |(bench, machine)| format!("{bench:.0} / {machine:.0} %"),
                );
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.what,
                    r.backend,
                    r.clients,
                    thousands(m.ops_per_sec),
                    ms(m.p50_ms),
                    ms(m.p99_ms),
                    m.errors,
                    ratio,
                    txns,
                    per_txn,
                    busy,
                    xacts,
                    cpu
                );
            }
            Err(_) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | not measured (see notes) | – | – | – | – | – | – | – | – | – |",
                    r.what, r.backend, r.clients
                );
            }
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Errors count every non-2xx response and transport failure (warm-up included) and must be 0. \
         \"vs no-op\" is ops/s relative to the no-op row of the same run. \"write txns/s\" and \"writes/txn\" \
         count the store's group-commit transactions and the queued writes each carried, during the window; \
         \"writer busy\" is the share of the window the store's single writer spent inside those transactions \
         (near 100 % means the writer is the bottleneck), with the mean time per transaction. \
         \"PG xacts/op\" is PostgreSQL's committed+rolled-back transaction count for the bench database per \
         successful request (reads run as one-statement transactions, so it approximates database round trips \
         per request for reads, plus a share of each group commit; PostgreSQL flushes these statistics about \
         once a second, hence ≈). \"CPU bench / machine\" is the CPU time of this process (server and load \
         generator) and of the whole machine during the window, in % of all cores: when the machine is much \
         busier than the bench on a SQLite row, something else was competing for the cores and the row is \
         depressed (on PostgreSQL rows the difference includes the PostgreSQL server itself).\n"
    );
    let tokens = rows
        .iter()
        .find(|r| r.what == TOKENS && r.backend == "sqlite")
        .and_then(|r| r.result.as_ref().ok());
    if let (Some(t), Some(n)) = (tokens, noop) {
        let ratio = 100.0 * t.ops_per_sec / n;
        let _ = writeln!(
            md,
            "Targets (reported, not asserted), SQLite token issuance: ≥ 15,000 tokens/s — {} ({}); \
             ≥ 40 % of the no-op rate — {:.0} % ({}).\n",
            thousands(t.ops_per_sec),
            if t.ops_per_sec >= 15_000.0 {
                "met"
            } else {
                "not met"
            },
            ratio,
            if ratio >= 40.0 { "met" } else { "not met" }
        );
    }
    let mut details = vec![];
    for r in rows {
        match &r.result {
            Ok(m) if !m.error_samples.is_empty() => details.push(format!(
                "- {} [{}]: {}",
                r.what,
                r.backend,
                m.error_samples.join(" | ")
            )),
            Err(e) => details.push(format!("- {} [{}]: not measured: {e}", r.what, r.backend)),
            _ => {}
        }
    }
    for r in rows {
        let Ok(Measured {
            cpu: Some((bench, machine)),
            ..
        }) = &r.result
        else {
            continue;
        };
        if r.backend == "sqlite" && machine - bench > 10.0 {
            details.push(format!(
                "- {} [{}]: other processes used about {:.0} % of the machine during this row; \
                 it is likely depressed — re-run on an idle machine",
                r.what,
                r.backend,
                machine - bench
            ));
        }
    }
    details.extend(notes.iter().map(|n| format!("- {n}")));
    if !details.is_empty() {
        let _ = writeln!(md, "Notes:\n");
        for d in details {
            let _ = writeln!(md, "{d}");
        }
        let _ = writeln!(md);
    }
    md
}

// ---------------------------------------------------------------- main

/// Runs the rows of one backend that `STEWARD_BENCH_ONLY` selects.
fn bench_backend(
    rt: &Runtime,
    s: &Settings,
    fx: &Fixture,
    with_noop: bool,
    mut pg: Option<&mut PgXacts>,
    rows: &mut Vec<Row>,
) {
    if with_noop && s.runs("noop") {
        rows.push(run_row(
            rt,
            s,
            NOOP,
            fx,
            s.token_clients,
            Ok(fx.noop()),
            None,
        ));
    }
    if s.runs(&format!("tokens-{}", fx.backend)) {
        let pg = pg.as_deref_mut();
        rows.push(run_row(
            rt,
            s,
            TOKENS,
            fx,
            s.token_clients,
            Ok(fx.token()),
            pg,
        ));
    }
    if s.runs(&format!("identities-{}", fx.backend)) {
        let make = rt
            .block_on(fx.admin_bearer())
            .and_then(|b| fx.create_identity(b));
        rows.push(run_row(rt, s, IDENTITIES, fx, s.create_clients, make, pg));
    }
}

fn run() -> Result<(), String> {
    let s = Settings::from_env()?;
    if !probe::install() {
        eprintln!("note: a tracing subscriber was already installed; commit counters will read 0");
    }
    steward_server::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.server_threads)
        .thread_name("steward-server")
        .enable_all()
        .build()
        .context("building the server runtime")?;
    let mut rows = vec![];
    let mut notes = vec![];
    let mut warnings = 0;

    // SQLite: the no-op baseline, then tokens and identity creation.
    if ["noop", "tokens-sqlite", "identities-sqlite"]
        .iter()
        .any(|k| s.runs(k))
    {
        let fx = rt.block_on(start_fixture("sqlite", None, s.identities))?;
        bench_backend(&rt, &s, &fx, true, None, &mut rows);
        rt.block_on(fx.shutdown());
        warnings = probe::warnings();
    }

    // PostgreSQL, on a fresh database.
    if ["tokens-postgres", "identities-postgres"]
        .iter()
        .any(|k| s.runs(k))
    {
        match rt.block_on(create_pg_database(&s.pg_url)) {
            Err(e) => {
                let line = format!(
                    "skipped: PostgreSQL unreachable at {} ({e})",
                    redact(&s.pg_url)
                );
                println!("{line}");
                notes.push(line);
            }
            Ok((conn, name, db_url)) => {
                let mut stats = PgXacts::new(conn, name.clone());
                match rt.block_on(start_fixture("postgres", Some(db_url), s.identities)) {
                    Ok(fx) => {
                        bench_backend(&rt, &s, &fx, false, Some(&mut stats), &mut rows);
                        rt.block_on(fx.shutdown());
                    }
                    Err(e) => notes.push(format!(
                        "PostgreSQL: could not start the server on database {name}: {e}"
                    )),
                }
                let mut conn = stats.into_conn();
                // Dropping the database makes the stopped server's leftover connections log.
                warnings = probe::warnings();
                if s.keep_db {
                    notes.push(format!(
                        "PostgreSQL database {name} kept (STEWARD_BENCH_KEEP_DB)"
                    ));
                } else if let Err(e) = rt.block_on(drop_pg_database(&mut conn, &name)) {
                    eprintln!("warning: could not drop {name}: {e}");
                }
            }
        }
    }
    if warnings > 0 {
        notes.push(format!(
            "the server logged {warnings} warning(s)/error(s) during the run (see stderr)"
        ));
    }

    let md = report(&s, &rows, &notes);
    println!("{md}");
    let path = results_path("http.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context("creating target/bench-results")?;
    }
    std::fs::write(&path, &md).context("writing the results file")?;
    println!("written to {}", path.display());
    Ok(())
}

/// The allocator the `steward` binary uses, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = run() {
        eprintln!("http bench failed: {e}");
        std::process::exit(1);
    }
}

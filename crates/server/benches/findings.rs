//! The findings job at scale, and its effect on the token path. Run:
//! `cargo bench -p steward-server --bench findings`.
//!
//! For each backend (SQLite, then PostgreSQL on a fresh database) it seeds
//! `STEWARD_BENCH_FINDINGS_IDENTITIES` identities (default 100,000) with credentials, owners and
//! `STEWARD_BENCH_USAGE_DAYS` days of usage (default 90) through direct store mutations in big
//! batches, then times the findings job twice: the first run (an empty findings table: every
//! finding is raised and audited, every risk score written) and a steady-state run (nothing
//! changed). Then it measures token issuance over HTTP (64 keep-alive clients, as the `http`
//! bench) without the job, and with the job running back to back on the server, interleaved
//! (baseline, with job, baseline, with job) and reports the ratio.
//!
//! Environment: `STEWARD_BENCH_FINDINGS_IDENTITIES`, `STEWARD_BENCH_USAGE_DAYS`,
//! `STEWARD_BENCH_SECS` (5), `STEWARD_BENCH_WARMUP_SECS` (2), `STEWARD_BENCH_TOKEN_CLIENTS` (64),
//! `STEWARD_BENCH_SERVER_THREADS` (available cores), `STEWARD_BENCH_ONLY` (`sqlite`, `postgres`),
//! `STEWARD_TEST_DATABASE_URL`. Results: stdout and `target/bench-results/findings.md`.

#[allow(dead_code)]
#[path = "http/load.rs"]
mod load;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::http::HeaderValue;
use hyper::{Method, Request, Uri};
use sqlx::Connection as _;
use steward_core::usage::{SourceKind, day_of};
use steward_core::{
    Credential, CredentialKind, Identity, IdentityKind, IdentityStatus, Owner, OwnerKind,
    OwnerStatus,
};
use steward_server::service::Ctx;
use steward_server::{RunningServer, ServerConfig, StartOptions};
use steward_store::{Change, Mutation, SourceDelta, Store, UsageBatch, UsageDelta};
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;
use uuid::Uuid;

use load::{MakeRequest, Plan};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Identities per seeding change.
const SEED_BATCH: usize = 500;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| format!("{name}={v:?}: {e}")),
        _ => Ok(default),
    }
}

struct Settings {
    identities: usize,
    usage_days: i64,
    warmup: StdDuration,
    measure: StdDuration,
    clients: usize,
    server_threads: usize,
    only: Vec<String>,
    pg_url: String,
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let s = Self {
            identities: env_or("STEWARD_BENCH_FINDINGS_IDENTITIES", 100_000)?,
            usage_days: env_or("STEWARD_BENCH_USAGE_DAYS", 90)?,
            warmup: StdDuration::from_secs_f64(env_or("STEWARD_BENCH_WARMUP_SECS", 2.0)?),
            measure: StdDuration::from_secs_f64(env_or("STEWARD_BENCH_SECS", 5.0)?),
            clients: env_or("STEWARD_BENCH_TOKEN_CLIENTS", 64)?,
            server_threads: env_or("STEWARD_BENCH_SERVER_THREADS", cores)?,
            only: env_or("STEWARD_BENCH_ONLY", String::new())?
                .split(',')
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
            pg_url: env_or("STEWARD_TEST_DATABASE_URL", DEFAULT_PG_URL.to_owned())?,
        };
        if s.identities == 0 || s.usage_days <= 0 || s.clients == 0 || s.measure.is_zero() {
            return Err("identities, usage days, clients and seconds must be positive".into());
        }
        Ok(s)
    }

    fn runs(&self, backend: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|k| backend.starts_with(k.as_str()))
    }
}

trait Context<T> {
    fn context(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

// ---------------------------------------------------------------- seeding

/// A small deterministic generator (xorshift), so every run seeds the same shape.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const KINDS: [IdentityKind; 4] = [
    IdentityKind::Workload,
    IdentityKind::ServiceAccount,
    IdentityKind::Pipeline,
    IdentityKind::Agent,
];

struct Seeded {
    identities: usize,
    credentials: usize,
    usage_rows: usize,
    source_rows: usize,
    secs: f64,
}

fn owner(n: usize, departed: bool, now: OffsetDateTime) -> Owner {
    Owner {
        id: Uuid::now_v7(),
        name: format!("bench-team-{n}"),
        kind: OwnerKind::Team,
        contact: format!("team{n}@example.com"),
        status: if departed {
            OwnerStatus::Departed
        } else {
            OwnerStatus::Active
        },
        created_at: now - Duration::days(400),
        departed_at: departed.then_some(now - Duration::days(10)),
        version: 1,
    }
}

/// Seeds `n` identities (2 % orphaned, 2 % with an admin scope in prod, ~10 % never used, the
/// rest used daily over the window with one of their scopes unused by a third of them), one
/// credential each (70 % API keys of every age), sources (a few browsers and shared keys).
async fn seed(store: &dyn Store, s: &Settings, now: OffsetDateTime) -> Result<Seeded, String> {
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let owners: Vec<Owner> = (0..1000).map(|n| owner(n, n % 50 == 0, now)).collect();
    let mut change = Change::new();
    for o in &owners {
        change = change.with(Mutation::InsertOwner(o.clone()));
    }
    store.commit(change).await.context("seeding owners")?;
    let mut out = Seeded {
        identities: 0,
        credentials: 0,
        usage_rows: 0,
        source_rows: 0,
        secs: 0.0,
    };
    let today = day_of(now);
    let mut n = 0;
    while n < s.identities {
        let batch = SEED_BATCH.min(s.identities - n);
        let mut records = Change::new();
        let mut usage = UsageBatch::default();
        for k in 0..batch {
            let idx = n + k;
            let env = ENVS[idx % 3];
            let created = now - Duration::days(100 + rng.below(200) as i64);
            let mut scopes = vec![
                format!("svc{}:read", idx % 97),
                format!("svc{}:write", idx % 97),
            ];
            if env == "prod" && rng.chance(2) {
                scopes.push("svc:admin".into());
            }
            let audience = format!("https://svc{}.internal", idx % 53);
            let o = &owners[rng.below(owners.len() as u64) as usize];
            let i = Identity {
                id: Uuid::now_v7(),
                name: format!("bench-{idx}"),
                kind: KINDS[idx % KINDS.len()],
                owner_id: o.id,
                purpose: "benchmark identity for the findings job".into(),
                environment: env.into(),
                expires_at: created + Duration::days(365),
                scopes: scopes.clone(),
                default_scopes: vec![scopes[0].clone()],
                audiences: vec![audience.clone()],
                labels: Default::default(),
                vendor: None,
                status: IdentityStatus::Active,
                status_reason: None,
                token_lifetime_secs: None,
                require_dpop: false,
                tokens_revoked_before: None,
                created_by: "bench".into(),
                approved_by: None,
                approved_at: None,
                created_at: created,
                updated_at: created,
                version: 1,
                allowed_dns_names: vec![],
                may_act: vec![],
                allowed_source_cidrs: vec![],
                review_due_at: None,
            };
            let api_key = rng.chance(70);
            let cred_created = now - Duration::days(rng.below(120) as i64);
            let mut hash = Uuid::new_v4().as_bytes().to_vec();
            hash.extend_from_slice(Uuid::new_v4().as_bytes());
            let used = !rng.chance(10);
            let c = Credential {
                id: Uuid::now_v7(),
                identity_id: i.id,
                kind: if api_key {
                    CredentialKind::ApiKey
                } else {
                    CredentialKind::PublicKey
                },
                secret_hash: api_key.then_some(hash),
                jwk: (!api_key)
                    .then(|| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"})),
                fingerprint: format!("fp{idx}"),
                created_at: cred_created,
                expires_at: now + Duration::days(200),
                last_used_at: used.then_some(now - Duration::hours(1)),
                revoked_at: None,
                revoke_reason: None,
                rotated_from: None,
                created_by: "bench".into(),
                version: 1,
            };
            if used {
                let second_unused = rng.chance(33);
                for d in 0..s.usage_days {
                    let day = today - d;
                    let at = now - Duration::days(d) - Duration::hours(1);
                    let mut push = |scope: &str| {
                        usage.scopes.push(UsageDelta {
                            identity_id: i.id,
                            scope: scope.into(),
                            audience: audience.clone(),
                            day,
                            uses: 1 + rng.below(500),
                            first_used: at - Duration::hours(20),
                            last_used: at,
                        });
                    };
                    push(&scopes[0]);
                    if !second_unused && d % 7 == 0 {
                        push(&scopes[1]);
                    }
                }
                let source = |kind, value: String, last: OffsetDateTime| SourceDelta {
                    identity_id: i.id,
                    credential_id: c.id,
                    kind,
                    value,
                    uses: 100,
                    first_seen: now - Duration::days(s.usage_days),
                    last_seen: last,
                };
                usage.sources.push(source(
                    SourceKind::Address,
                    format!("10.{}.{}.{}", idx % 200, (idx / 200) % 250, idx % 7),
                    now - Duration::hours(1),
                ));
                let ua = if rng.chance(2) {
                    "Mozilla/5.0 (Windows NT 10.0) Firefox/121.0".to_owned()
                } else {
                    format!("svc{}/1.{}", idx % 97, idx % 5)
                };
                usage
                    .sources
                    .push(source(SourceKind::UserAgent, ua, now - Duration::hours(1)));
                if rng.chance(1) {
                    for a in 0..12 {
                        usage.sources.push(source(
                            SourceKind::Address,
                            format!("10.250.{}.{a}", idx % 250),
                            now - Duration::hours(2),
                        ));
                    }
                }
            }
            records = records
                .with(Mutation::InsertIdentity(i))
                .with(Mutation::InsertCredential(c));
        }
        out.identities += batch;
        out.credentials += batch;
        out.usage_rows += usage.scopes.len();
        out.source_rows += usage.sources.len();
        store.commit(records).await.context("seeding identities")?;
        store
            .commit(Change::new().with(Mutation::RecordUsage(usage)))
            .await
            .context("seeding usage")?;
        n += batch;
        if n % 20_000 == 0 {
            eprintln!(
                "  seeded {n} identities ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    out.secs = started.elapsed().as_secs_f64();
    Ok(out)
}

// ---------------------------------------------------------------- server and load

struct Fixture {
    server: RunningServer,
    host: HeaderValue,
    clients: Vec<HeaderValue>,
    _dir: tempfile::TempDir,
}

async fn start(database_url: Option<String>) -> Result<Fixture, String> {
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let mut cfg = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url,
        auth_failure_limit: 1_000_000,
        insecure_http: true,
        ..ServerConfig::default()
    };
    // The bench drives the runs itself.
    cfg.findings.interval_secs = 0;
    let server = steward_server::start(cfg, StartOptions::default())
        .await
        .context("starting the server")?;
    let s = &server.state;
    let o = s
        .create_owner(
            &Ctx::system(),
            steward_proto::CreateOwner {
                name: "token-bench".into(),
                kind: "team".into(),
                contact: "bench@example.com".into(),
            },
        )
        .await
        .context("creating the token owner")?;
    let mut clients = vec![];
    for i in 0..16 {
        let ident = s
            .create_identity(
                &Ctx::system(),
                steward_proto::CreateIdentity {
                    name: format!("token-bench-{i}"),
                    kind: "workload".into(),
                    owner: o.id,
                    purpose: "bench".into(),
                    environment: "prod".into(),
                    expires_at: OffsetDateTime::now_utc() + Duration::days(30),
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
            .context("creating a token identity")?;
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
            .context("creating an API key")?;
        let secret = issued.secret.ok_or("no secret")?;
        let enc = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            ident.id,
            secret.expose_secret()
        ));
        clients.push(HeaderValue::from_str(&format!("Basic {enc}")).context("header")?);
    }
    let host = HeaderValue::from_str(&server.addr.to_string()).context("Host header")?;
    Ok(Fixture {
        server,
        host,
        clients,
        _dir: dir,
    })
}

fn token_request(host: HeaderValue, clients: Vec<HeaderValue>) -> MakeRequest {
    let body = Bytes::from_static(b"grant_type=client_credentials");
    Arc::new(move |conn, _| {
        let mut r = Request::new(Full::new(body.clone()));
        *r.method_mut() = Method::POST;
        *r.uri_mut() = Uri::from_static("/oauth2/token");
        let h = r.headers_mut();
        h.insert(HOST, host.clone());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        h.insert(USER_AGENT, HeaderValue::from_static("bench-workload/1.0"));
        if let Some(auth) = clients.get(conn % clients.len().max(1)) {
            h.insert(AUTHORIZATION, auth.clone());
        }
        r
    })
}

/// Tokens per second over one window.
fn tokens_per_sec(s: &Settings, fx: &Fixture) -> Result<(f64, u64), String> {
    let plan = Plan {
        addr: fx.server.addr,
        tls: None,
        connections: s.clients,
        threads: 1,
        warmup: s.warmup,
        measure: s.measure,
        make: token_request(fx.host.clone(), fx.clients.clone()),
    };
    let out = load::start(&plan)?.join()?;
    Ok((out.ok as f64 / s.measure.as_secs_f64(), out.errors))
}

struct Results {
    backend: &'static str,
    seeded: Seeded,
    first_run: (f64, steward_proto::findings::FindingsRunView),
    steady_run: (f64, steward_proto::findings::FindingsRunView),
    baseline: Vec<f64>,
    with_job: Vec<f64>,
    runs_during_load: u64,
    /// Identities the job judged per second while the token load ran (paced).
    judged_per_sec_under_load: Vec<f64>,
    errors: u64,
}

fn bench_backend(
    rt: &Runtime,
    s: &Settings,
    backend: &'static str,
    url: Option<String>,
) -> Result<Results, String> {
    let fx = rt.block_on(start(url))?;
    let state = fx.server.state.clone();
    let now = state.now();
    eprintln!("[{backend}] seeding {} identities…", s.identities);
    let seeded = rt.block_on(seed(state.store.as_ref(), s, now))?;
    eprintln!(
        "[{backend}] seeded in {:.1} s ({} usage rows); running the findings job…",
        seeded.secs, seeded.usage_rows
    );
    let mut ctx = Ctx::system();
    ctx.actor = "bench".into();
    let timed = |ctx: &Ctx| -> Result<(f64, steward_proto::findings::FindingsRunView), String> {
        let t = Instant::now();
        let v = rt
            .block_on(state.run_findings(ctx))
            .context("findings run")?;
        Ok((t.elapsed().as_secs_f64(), v))
    };
    let first_run = timed(&ctx)?;
    eprintln!(
        "[{backend}] first run {:.2} s: {} raised",
        first_run.0, first_run.1.raised
    );
    let steady_run = timed(&ctx)?;
    eprintln!("[{backend}] steady run {:.2} s", steady_run.0);

    let (mut baseline, mut with_job, mut judged_rates) = (vec![], vec![], vec![]);
    let mut errors = 0;
    let runs = Arc::new(AtomicU64::new(0));
    for _round in 0..2 {
        let (b, e) = tokens_per_sec(s, &fx)?;
        baseline.push(b);
        errors += e;
        let stop = Arc::new(AtomicBool::new(false));
        let job = {
            let (state, stop, runs, ctx) = (state.clone(), stop.clone(), runs.clone(), ctx.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if state.run_findings(&ctx).await.is_ok() {
                        runs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let judged_before = state.findings_runtime.identities_judged();
        let t = Instant::now();
        let (w, e) = tokens_per_sec(s, &fx)?;
        let judged = state.findings_runtime.identities_judged() - judged_before;
        let rate = judged as f64 / t.elapsed().as_secs_f64();
        with_job.push(w);
        judged_rates.push(rate);
        errors += e;
        stop.store(true, Ordering::Relaxed);
        // A paced run under load may be far from done: stop it where it is.
        job.abort();
        let _ = rt.block_on(job);
        eprintln!(
            "[{backend}] tokens/s: baseline {b:.0}, with the job running {w:.0}; \
             the job judged {rate:.0} identities/s meanwhile"
        );
    }
    rt.block_on(fx.server.shutdown());
    Ok(Results {
        backend,
        seeded,
        first_run,
        steady_run,
        baseline,
        with_job,
        runs_during_load: runs.load(Ordering::Relaxed),
        judged_per_sec_under_load: judged_rates,
        errors,
    })
}

// ---------------------------------------------------------------- report

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn report(s: &Settings, results: &[Results], notes: &[String]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Findings job over {} identities with {} days of usage; token issuance with and without the job \
         (`cargo bench -p steward-server --bench findings`, {} server threads, {} clients, {:.0} s windows, \
         load generator on the same cores).\n",
        s.identities,
        s.usage_days,
        s.server_threads,
        s.clients,
        s.measure.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| backend | seeding | usage rows | first run (raise all) | findings raised | steady run | target < 10 s |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {:.1} s | {} | {:.2} s | {} | {:.2} s | {} |",
            r.backend,
            r.seeded.secs,
            r.seeded.usage_rows,
            r.first_run.0,
            r.first_run.1.raised,
            r.steady_run.0,
            if r.steady_run.0 < 10.0 && r.first_run.0 < 10.0 {
                "met (both runs)"
            } else if r.steady_run.0 < 10.0 {
                "met (steady run)"
            } else {
                "not met"
            }
        );
    }
    let _ = writeln!(
        md,
        "\n| backend | tokens/s, no job | tokens/s, job running | ratio | identities/s judged under load (paced) | job runs completed under load | errors |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let (b, w) = (mean(&r.baseline), mean(&r.with_job));
        let _ = writeln!(
            md,
            "| {} | {:.0} ({}) | {:.0} ({}) | {:.0} % | {:.0} | {} | {} |",
            r.backend,
            b,
            r.baseline
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            w,
            r.with_job
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            if b > 0.0 { 100.0 * w / b } else { 0.0 },
            mean(&r.judged_per_sec_under_load),
            r.runs_during_load,
            r.errors
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn results_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("bench-results").join("findings.md")
}

fn run() -> Result<(), String> {
    let s = Settings::from_env()?;
    steward_server::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.server_threads)
        .enable_all()
        .build()
        .context("building the server runtime")?;
    let mut results = vec![];
    let mut notes = vec![];
    if s.runs("sqlite") {
        match bench_backend(&rt, &s, "sqlite", None) {
            Ok(r) => results.push(r),
            Err(e) => notes.push(format!("SQLite: not measured: {e}")),
        }
    }
    if s.runs("postgres") {
        let created = rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&s.pg_url)
                .await
                .context("connecting to PostgreSQL")?;
            let name = format!(
                "steward_bench_f_{}",
                &Uuid::new_v4().simple().to_string()[..12]
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .context("CREATE DATABASE")?;
            let mut u = url::Url::parse(&s.pg_url).context("parsing the PostgreSQL URL")?;
            u.set_path(&format!("/{name}"));
            Ok::<_, String>((conn, name, u.to_string()))
        });
        match created {
            Err(e) => notes.push(format!("PostgreSQL: skipped: {e}")),
            Ok((mut conn, name, url)) => {
                match bench_backend(&rt, &s, "postgres", Some(url)) {
                    Ok(r) => results.push(r),
                    Err(e) => notes.push(format!("PostgreSQL: not measured: {e}")),
                }
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) =
                    rt.block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut conn))
                {
                    eprintln!("warning: could not drop {name}: {e}");
                }
            }
        }
    }
    let md = report(&s, &results, &notes);
    println!("{md}");
    let path = results_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context("creating bench-results")?;
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
        eprintln!("findings bench failed: {e}");
        std::process::exit(1);
    }
}

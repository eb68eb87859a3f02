//! Commit throughput and latency of both backends under many concurrent writers: identity
//! creations, audit-only commits and one-time claims. `cargo bench -p steward-store --bench commit`.
//!
//! SQLite runs on a file in a temporary directory. PostgreSQL runs on a fresh database created on
//! the server named by `STEWARD_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and is skipped, with a message, when that server is unreachable. `STEWARD_BENCH_SECS` sets the
//! duration of the timed workloads (default 5).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use steward_core::{
    AuditEvent, Identity, IdentityKind, IdentityStatus, Outcome, Owner, OwnerKind, OwnerStatus,
};
use steward_store::{Change, Mutation, Store};
use time::OffsetDateTime;
use tokio::task::JoinSet;
use uuid::Uuid;

const IDENTITIES: usize = 20_000;
const CREATE_TASKS: usize = 64;

struct Measurement {
    backend: &'static str,
    workload: String,
    tasks: usize,
    ops: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let secs = std::env::var("STEWARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    let timed = Duration::from_secs(secs);
    let mut results = Vec::new();

    let dir = tempfile::tempdir().unwrap();
    let sqlite = steward_store::sqlite::open(dir.path().join("steward.db"))
        .await
        .unwrap();
    results.extend(workloads("sqlite", &sqlite, timed).await);
    drop(sqlite);

    let admin_url = std::env::var("STEWARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await {
        Ok(Ok(mut admin)) => {
            let name = format!("steward_bench_{}", Uuid::new_v4().simple());
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&format!("/{name}"));
            let pg = steward_store::postgres::open(url.as_str()).await.unwrap();
            results.extend(workloads("postgres", &pg, timed).await);
            drop(pg);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let drop_sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::raw_sql(AssertSqlSafe(drop_sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        Ok(Err(e)) => eprintln!("skipping PostgreSQL: cannot connect to {admin_url}: {e}"),
        Err(_) => eprintln!("skipping PostgreSQL: {admin_url} did not answer within 5s"),
    }

    println!();
    println!(
        "{:<9} {:<26} {:>5} {:>8} {:>9} {:>9} {:>9}",
        "backend", "workload", "tasks", "ops", "ops/s", "p50 ms", "p99 ms"
    );
    for mut r in results {
        r.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((r.latencies_us.len() as f64 * p) as usize)
                .min(r.latencies_us.len().saturating_sub(1));
            r.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        println!(
            "{:<9} {:<26} {:>5} {:>8} {:>9.0} {:>9.2} {:>9.2}",
            r.backend,
            r.workload,
            r.tasks,
            r.ops,
            r.ops as f64 / r.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99)
        );
    }
}

async fn workloads(
    backend: &'static str,
    store: &Arc<dyn Store>,
    timed: Duration,
) -> Vec<Measurement> {
    let mut out = vec![create_identities(backend, store).await];
    for tasks in [64, 256] {
        out.push(
            timed_workload(
                backend,
                store,
                "audit-only commit",
                tasks,
                timed,
                |store, n| async move {
                    let e = AuditEvent::new(now(), "bench", "token.issue", Outcome::Success)
                        .target(format!("token:{n}"))
                        .details(serde_json::json!({ "scope": "payments:read", "n": n }));
                    store.commit(Change::audit_only(e)).await.unwrap();
                },
            )
            .await,
        );
    }
    out.push(
        timed_workload(
            backend,
            store,
            "claim_once",
            64,
            timed,
            |store, n| async move {
                let fresh = store
                    .claim_once(
                        "bench",
                        &format!("jti-{n}"),
                        now() + time::Duration::minutes(5),
                    )
                    .await
                    .unwrap();
                assert!(fresh);
            },
        )
        .await,
    );
    out
}

fn now() -> OffsetDateTime {
    steward_core::truncate_micros(OffsetDateTime::now_utc())
}

async fn create_identities(backend: &'static str, store: &Arc<dyn Store>) -> Measurement {
    let owner = Owner {
        id: Uuid::now_v7(),
        name: format!("bench-{}", Uuid::new_v4().simple()),
        kind: OwnerKind::Team,
        contact: "bench@example.com".into(),
        status: OwnerStatus::Active,
        created_at: now(),
        departed_at: None,
        version: 1,
    };
    store
        .commit(Change::new().with(Mutation::InsertOwner(owner.clone())))
        .await
        .unwrap();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for t in 0..CREATE_TASKS {
        let store = Arc::clone(store);
        let owner_id = owner.id;
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            for n in (t..IDENTITIES).step_by(CREATE_TASKS) {
                let identity = bench_identity(owner_id, n);
                let event = AuditEvent::new(
                    identity.created_at,
                    "bench",
                    "identity.create",
                    Outcome::Success,
                )
                .target(format!("identity:{}", identity.id))
                .identity(identity.id)
                .details(serde_json::json!({ "name": identity.name, "kind": "workload" }));
                let change = Change::new()
                    .with(Mutation::InsertIdentity(identity))
                    .audit(event);
                let t0 = Instant::now();
                store.commit(change).await.unwrap();
                latencies.push(t0.elapsed().as_micros() as u64);
            }
            latencies
        });
    }
    let mut latencies_us = Vec::with_capacity(IDENTITIES);
    while let Some(l) = tasks.join_next().await {
        latencies_us.extend(l.unwrap());
    }
    Measurement {
        backend,
        workload: "identity create".into(),
        tasks: CREATE_TASKS,
        ops: IDENTITIES,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

fn bench_identity(owner_id: Uuid, n: usize) -> Identity {
    let now = now();
    Identity {
        id: Uuid::now_v7(),
        name: format!("svc-{n}"),
        kind: IdentityKind::Workload,
        owner_id,
        purpose: "benchmark workload".into(),
        environment: "prod".into(),
        expires_at: now + time::Duration::days(90),
        scopes: vec!["payments:read".into(), "payments:write".into()],
        default_scopes: vec!["payments:read".into()],
        audiences: vec!["https://api.example.com".into()],
        labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        vendor: None,
        status: IdentityStatus::Active,
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
        allowed_dns_names: vec![],
        may_act: vec![],
        allowed_source_cidrs: vec![],
        review_due_at: None,
    }
}

/// Runs `op` in a loop on `tasks` concurrent tasks for `duration`.
async fn timed_workload<F, Fut>(
    backend: &'static str,
    store: &Arc<dyn Store>,
    name: &str,
    tasks: usize,
    duration: Duration,
    op: F,
) -> Measurement
where
    F: Fn(Arc<dyn Store>, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let store = Arc::clone(store);
        let op = op.clone();
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = t as u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                op(Arc::clone(&store), n).await;
                latencies.push(t0.elapsed().as_micros() as u64);
                n += tasks as u64;
            }
            latencies
        });
    }
    let mut latencies_us = Vec::new();
    while let Some(l) = set.join_next().await {
        latencies_us.extend(l.unwrap());
    }
    Measurement {
        backend,
        workload: name.to_owned(),
        tasks,
        ops: latencies_us.len(),
        elapsed: started.elapsed(),
        latencies_us,
    }
}

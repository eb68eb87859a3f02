//! Test harness: a fresh database per test (a temp-dir SQLite file, or a new PostgreSQL database),
//! fixtures for domain records, and a verifier for the audit hash chain.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use steward_core::{
    AuditEvent, Credential, CredentialKind, Identity, IdentityKind, IdentityStatus, Outcome, Owner,
    OwnerKind, OwnerStatus,
};
use steward_crypto::merkle;
use steward_store::{Change, Store, StoreError};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database created for one test, removed when dropped.
pub struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    /// Creates a fresh database; `None` when the backend is skipped on purpose.
    pub async fn create(backend: Backend, test: &str) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create temp dir");
                let url = format!("sqlite://{}", dir.path().join("steward.db").display());
                Some(Self {
                    url,
                    _dir: Some(dir),
                    _pg: None,
                })
            }
            Backend::Postgres => {
                let pg = PgDatabase::create(test).await?;
                Some(Self {
                    url: pg.url.clone(),
                    _dir: None,
                    _pg: Some(pg),
                })
            }
        }
    }

    /// Runs a script directly on the database, outside any store: `sqlite` or `postgres`,
    /// whichever matches the backend.
    pub async fn run_script(&self, sqlite: &'static str, postgres: &'static str) {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("connect to the test database");
            sqlx::raw_sql(sqlite)
                .execute(&mut conn)
                .await
                .expect("run the script");
            let _ = conn.close().await;
        } else {
            let mut conn = PgConnection::connect(&self.url)
                .await
                .expect("connect to the test database");
            sqlx::raw_sql(postgres)
                .execute(&mut conn)
                .await
                .expect("run the script");
            let _ = conn.close().await;
        }
    }

    /// Opens a (further) store instance on this database.
    pub async fn open(&self) -> Arc<dyn Store> {
        steward_store::open(&self.url)
            .await
            .expect("open the test store")
    }
}

/// A PostgreSQL database named `steward_t_<random>`, dropped (forcibly) when this is dropped.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create(test: &str) -> Option<Self> {
        if std::env::var("STEWARD_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipping postgres::{test}: STEWARD_SKIP_POSTGRES=1");
            return None;
        }
        let admin_url = std::env::var("STEWARD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let mut admin = match tokio::time::timeout(
            Duration::from_secs(10),
            PgConnection::connect(&admin_url),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => panic!(
                "PostgreSQL is unreachable at STEWARD_TEST_DATABASE_URL ({}): {e}. \
                 Start it, point STEWARD_TEST_DATABASE_URL at one, or set STEWARD_SKIP_POSTGRES=1 to skip \
                 the postgres conformance tests.",
                redacted(&admin_url)
            ),
            Err(_) => panic!(
                "PostgreSQL at STEWARD_TEST_DATABASE_URL ({}) did not answer within 10s. \
                 Set STEWARD_SKIP_POSTGRES=1 to skip the postgres conformance tests.",
                redacted(&admin_url)
            ),
        };
        let name = format!("steward_t_{}", Uuid::new_v4().simple());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("STEWARD_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Some(Self {
            admin_url,
            name,
            url: url.to_string(),
        })
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(not a valid URL)".into(),
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort, on a thread of its own: this may run while a test panics, and Drop
        // cannot await on the test's runtime.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut admin).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Runs `test` against a fresh store of `backend`.
pub async fn with_store<F, Fut>(backend: Backend, name: &str, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::create(backend, name).await else {
        return;
    };
    let store = db.open().await;
    assert_eq!(
        store.backend(),
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    test(store).await;
}

/// Runs `test` against a fresh database of `backend`, which it may open several times.
pub async fn with_db<F, Fut>(backend: Backend, name: &str, test: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::create(backend, name).await else {
        return;
    };
    test(Arc::new(db)).await;
}

/// Instantiates each listed test for both backends, as `sqlite::<name>` and `postgres::<name>`.
/// `stores` tests take an `Arc<dyn Store>`; `databases` tests take an `Arc<TestDb>`.
#[macro_export]
macro_rules! conformance {
    (stores { $($sm:ident :: $st:ident),* $(,)? } databases { $($dm:ident :: $dt:ident),* $(,)? }) => {
        $crate::conformance!(@backend sqlite, Sqlite, [$($sm::$st),*], [$($dm::$dt),*]);
        $crate::conformance!(@backend postgres, Postgres, [$($sm::$st),*], [$($dm::$dt),*]);
    };
    (@backend $module:ident, $backend:ident, [$($sm:ident :: $st:ident),*], [$($dm:ident :: $dt:ident),*]) => {
        mod $module {
            use $crate::support::{Backend, with_db, with_store};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $st() {
                    with_store(Backend::$backend, stringify!($st), $crate::$sm::$st).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $dt() {
                    with_db(Backend::$backend, stringify!($dt), $crate::$dm::$dt).await;
                }
            )*
        }
    };
}

// ---- fixtures ----

/// A fixed instant with a non-zero microsecond part, to catch precision loss.
pub const T0: OffsetDateTime = datetime!(2031-05-06 07:08:09.123456 UTC);

pub fn at(secs: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(secs)
}

pub fn owner(name: &str) -> Owner {
    Owner {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        kind: OwnerKind::Team,
        contact: format!("{name}@example.com"),
        status: OwnerStatus::Active,
        created_at: T0,
        departed_at: None,
        version: 1,
    }
}

pub fn identity(owner: &Owner, name: &str, environment: &str) -> Identity {
    Identity {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        kind: IdentityKind::Workload,
        owner_id: owner.id,
        purpose: format!("runs {name}"),
        environment: environment.to_owned(),
        expires_at: at(86_400 * 365),
        scopes: vec!["payments:read".into(), "payments:write".into()],
        default_scopes: vec!["payments:read".into()],
        audiences: vec!["https://api.example.com".into()],
        labels: BTreeMap::from([
            ("team".to_owned(), "payments".to_owned()),
            ("tier".to_owned(), "1".to_owned()),
        ]),
        vendor: None,
        status: IdentityStatus::Active,
        status_reason: None,
        token_lifetime_secs: None,
        require_dpop: false,
        tokens_revoked_before: None,
        created_by: "alice".into(),
        approved_by: None,
        approved_at: None,
        created_at: T0,
        updated_at: T0,
        version: 1,
        allowed_dns_names: vec!["payments.internal".into(), "*.payments.internal".into()],
        may_act: vec!["0190a0b0-0000-7000-8000-000000000009".into()],
        allowed_source_cidrs: vec!["10.0.0.0/8".into()],
        review_due_at: None,
    }
}

pub fn api_key(identity: &Identity, secret_hash: &[u8], created_at: OffsetDateTime) -> Credential {
    Credential {
        id: Uuid::now_v7(),
        identity_id: identity.id,
        kind: CredentialKind::ApiKey,
        secret_hash: Some(secret_hash.to_vec()),
        jwk: None,
        fingerprint: format!("fp-{}", &Uuid::new_v4().simple().to_string()[..8]),
        created_at,
        expires_at: created_at + time::Duration::days(90),
        last_used_at: None,
        revoked_at: None,
        revoke_reason: None,
        rotated_from: None,
        created_by: "alice".into(),
        version: 1,
    }
}

pub fn event(action: &str) -> AuditEvent {
    AuditEvent::new(T0, "system", action, Outcome::Success)
}

/// Commits `change`, which must succeed.
pub async fn commit(store: &Arc<dyn Store>, change: Change) -> Vec<u64> {
    store.commit(change).await.expect("commit")
}

pub fn is_conflict(r: &Result<Vec<u64>, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

/// Recomputes the audit hash chain from the stored records and checks it against the stored
/// leaf and chain hashes, `audit_leaf_hashes` and the head. Returns the log size.
pub async fn verify_chain(store: &Arc<dyn Store>) -> u64 {
    let head = store.audit_head().await.expect("audit head");
    let mut prev = [0u8; 32];
    let mut leaves = Vec::new();
    let mut size = 0u64;
    loop {
        let records = store.audit_range(size + 1, 97).await.expect("audit range");
        if records.is_empty() {
            break;
        }
        for r in records {
            assert_eq!(r.seq, size + 1, "sequence numbers are contiguous");
            let leaf = merkle::leaf_hash(&r.event.canonical_bytes(r.seq));
            assert_eq!(leaf, r.leaf_hash, "stored leaf hash of record {}", r.seq);
            let chain = merkle::chain_hash(&prev, &leaf);
            assert_eq!(chain, r.chain_hash, "stored chain hash of record {}", r.seq);
            prev = chain;
            leaves.push(leaf);
            size = r.seq;
        }
    }
    assert_eq!(head.size, size, "head size matches the records");
    assert_eq!(
        head.chain_hash, prev,
        "head chain hash matches the last record"
    );
    assert_eq!(
        store.audit_leaf_hashes(size).await.expect("leaf hashes"),
        leaves
    );
    size
}

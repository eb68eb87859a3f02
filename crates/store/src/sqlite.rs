//! The SQLite backend (the embedded default): its SQL, its driver glue, and opening a database
//! file in WAL mode with one writer connection (the group-commit writer) and a read-only pool.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row as _, Sqlite};
use uuid::Uuid;

use crate::GroupCommit;
use crate::dialect::{
    Arg, AuditAppend, DeferredIdentityIndex, Dialect, Failure, Migration, SqlText, Statements,
    Stmt, UniqueRule, audit_columns, credential_columns, identity_columns, owner_columns,
    signing_key_columns,
};
use crate::engine::SqlStore;
use crate::migrate::MIGRATIONS_TABLE;
use crate::writer::Writer;
use crate::{Store, StoreError};

/// Tuning knobs for [`open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Read-only connections for queries (the writer has its own connection).
    pub read_connections: u32,
    /// How long a statement waits for a lock held by another connection or process.
    pub busy_timeout: Duration,
    /// The most audit records the by-identity audit index may lag behind the log before the
    /// writer adds them, in one transaction (migration 11); the writer shortens its runs while
    /// they hold it up for more than 2 ms. Queries for one identity scan the records not yet
    /// indexed, so a smaller run makes those queries cheaper and index runs more frequent.
    pub audit_index_run: u64,
    /// How the group-commit writer gathers its batches.
    pub group_commit: GroupCommit,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            audit_index_run: AUDIT_INDEX_RUN,
            group_commit: GroupCommit::default(),
        }
    }
}

/// Default for [`SqliteOptions::audit_index_run`], the longest run. A run writes about one index
/// leaf page per identity in it and holds the writer meanwhile: with a few dozen busy identities
/// a run of 4,096 is quick and saves nearly every page indexing on every commit cost; with
/// thousands it would pause the writer for 20–40 ms, so the writer shortens its runs (down to
/// 256 records) while they take longer than 2 ms, and lengthens them again when they are quick.
pub const AUDIT_INDEX_RUN: u64 = 4096;

/// Page cache of the writer's connection (negative: KiB).
const WRITER_CACHE_KIB: &str = "-65536";
/// Page cache of each read connection (negative: KiB).
const READER_CACHE_KIB: &str = "-16384";
/// How much of the database file read connections map into memory.
const READER_MMAP_BYTES: &str = "1073741824";

/// Opens (creating if missing) the Steward database at `path` with default options.
pub async fn open(path: impl AsRef<Path>) -> Result<Arc<dyn Store>, StoreError> {
    open_with(path, SqliteOptions::default()).await
}

/// Opens (creating if missing) the Steward database at `path`: WAL journal, `synchronous=FULL`
/// (a commit is on disk before it is acknowledged), foreign keys enforced, migrations applied.
///
/// A file that is not a SQLite database, or a SQLite database holding other tables but not
/// Steward's, is refused with [`StoreError::Corrupt`] and left untouched. Must be called inside a
/// Tokio runtime: the store's writer task is spawned on it.
pub async fn open_with(
    path: impl AsRef<Path>,
    options: SqliteOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    let path = path.as_ref();
    // One deadline for every connection step of opening, like the busy timeout of a statement.
    let patience = Patience::new(options.busy_timeout);
    refuse_foreign_file(path, patience).await?;

    let base = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true);
    let writer_pool = patience
        .retry_busy(|| {
            SqlitePoolOptions::new()
                .max_connections(1)
                // The writer's only connection: a ping before each batch would be one more
                // round trip to the connection thread; a broken connection shows up as the
                // batch's error anyway.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(
                    base.clone()
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Full)
                        // The writer walks the audit, usage and findings indexes on every batch.
                        .pragma("cache_size", WRITER_CACHE_KIB)
                        // A multi-row insert inside a batch keeps a statement journal (to undo
                        // just that statement); on disk that is a temporary file created,
                        // written and deleted for every batch, several times the cost of the
                        // WAL writes themselves.
                        .pragma("temp_store", "MEMORY"),
                )
        })
        .await
        .map_err(|e| open_error(path, e))?;
    {
        let mut conn = writer_pool
            .acquire()
            .await
            .map_err(|e| open_error(path, e))?;
        crate::migrate::run::<SqliteDialect>(&mut conn)
            .await
            .map_err(|e| not_steward(path, e))?;
    }
    let read_pool = patience
        .retry_busy(|| {
            SqlitePoolOptions::new()
                .max_connections(options.read_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(
                    base.clone()
                        .read_only(true)
                        .pragma("cache_size", READER_CACHE_KIB)
                        // Reads map the file instead of copying each page out of the OS cache
                        // (range reads of the findings job touch hundreds of thousands of pages).
                        .pragma("mmap_size", READER_MMAP_BYTES),
                )
        })
        .await
        .map_err(|e| open_error(path, e))?;
    // An optimization only: without it, audit-only batches go through sqlx like the rest.
    let direct = match crate::direct::DirectAudit::open(path, options.busy_timeout) {
        Ok(direct) => Some(direct),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "audit batches will go through the pooled connection");
            None
        }
    };
    tracing::info!(path = %path.display(), "opened SQLite store");
    let writer = Writer::spawn::<SqliteDialect>(
        writer_pool,
        direct,
        options.audit_index_run,
        options.group_commit,
    );
    Ok(Arc::new(SqlStore::<SqliteDialect>::new(read_pool, writer)))
}

fn open_error(path: &Path, e: sqlx::Error) -> StoreError {
    match crate::ops::db_error::<SqliteDialect>(e) {
        StoreError::Corrupt(m) => {
            StoreError::Corrupt(format!("{} is not a Steward database: {m}", path.display()))
        }
        StoreError::Unavailable(m) | StoreError::Backend(m) => StoreError::Unavailable(format!(
            "cannot open SQLite database {}: {m}",
            path.display()
        )),
        other => other,
    }
}

/// How long opening a database keeps retrying while another process holds a lock on it.
///
/// Most lock waits go through SQLite's busy handler, but not all: switching a new file to WAL,
/// recovering a WAL index, or closing the last connection (which checkpoints and removes the
/// WAL) take locks that a concurrent connect meets as an immediate BUSY. Nodes starting
/// together on one file hit exactly that, so the connection steps of opening retry BUSY with
/// a growing pause until the same deadline the busy timeout gives statements.
#[derive(Debug, Clone, Copy)]
struct Patience {
    deadline: std::time::Instant,
}

impl Patience {
    fn new(busy_timeout: Duration) -> Self {
        Self {
            deadline: std::time::Instant::now() + busy_timeout,
        }
    }

    async fn retry_busy<T, F, Fut>(&self, mut attempt: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut pause = Duration::from_millis(2);
        loop {
            match attempt().await {
                Err(e) if is_busy(&e) && std::time::Instant::now() + pause < self.deadline => {
                    tracing::debug!(error = %e, "database busy while opening; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }
}

/// SQLITE_BUSY in any of its extended forms (the primary code is the low byte).
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

fn not_steward(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Refuses, without modifying it, an existing file that is not a Steward database.
async fn refuse_foreign_file(path: &Path, patience: Patience) -> Result<(), StoreError> {
    match tokio::fs::metadata(path).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "cannot open {}: {e}",
                path.display()
            )));
        }
    }
    // Read-only and without journal-mode changes: a foreign file must not be altered.
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = patience
        .retry_busy(|| SqliteConnection::connect_with(&options))
        .await
        .map_err(|e| open_error(path, e))?;
    let tables: Result<Vec<String>, sqlx::Error> =
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
            .fetch_all(&mut conn)
            .await
            .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect());
    let _ = conn.close().await;
    let tables = tables.map_err(|e| open_error(path, e))?;
    if tables.is_empty() || tables.iter().any(|t| t == MIGRATIONS_TABLE) {
        return Ok(());
    }
    let mut shown: Vec<&str> = tables.iter().map(String::as_str).take(5).collect();
    if tables.len() > shown.len() {
        shown.push("…");
    }
    Err(StoreError::Corrupt(format!(
        "{} is not a Steward database: it holds other tables ({}) and no {MIGRATIONS_TABLE}",
        path.display(),
        shown.join(", ")
    )))
}

/// SQLite's dialect.
pub(crate) struct SqliteDialect;

fn query(stmt: Stmt<'_>) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
    let (q, persistent) = match stmt.sql {
        SqlText::Static(s) => (sqlx::query(s), true),
        SqlText::Built(s) => (sqlx::query(AssertSqlSafe(s)), false),
    };
    stmt.args
        .into_iter()
        .fold(q.persistent(persistent), |q, arg| match arg {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v.map(Cow::into_owned)),
            Arg::Bytes(v) => q.bind(v.map(Cow::into_owned)),
            Arg::Bool(v) => q.bind(v),
            Arg::Uuid(v) => q.bind(v.map(|u| u.hyphenated())),
        })
}

impl Dialect for SqliteDialect {
    type Db = Sqlite;

    const NAME: &'static str = "sqlite";
    const SINGLE_WRITER: bool = true;
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    // SQLite's LIKE ignores ASCII case.
    const ILIKE: &'static str = "LIKE";
    const NOTIFY: Option<&'static str> = None;
    const SQL: &'static Statements = &STATEMENTS;
    const AUTHZ_SQL: &'static crate::authz::AuthzStatements = &crate::authz::SQLITE;
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 1,
            name: "init",
            sql: include_str!("../migrations/sqlite/0001_init.sql"),
        },
        Migration {
            version: 2,
            name: "pki",
            sql: include_str!("../migrations/sqlite/0002_pki.sql"),
        },
        Migration {
            version: 3,
            name: "policies",
            sql: include_str!("../migrations/sqlite/0003_policies.sql"),
        },
        Migration {
            version: 4,
            name: "leaks",
            sql: include_str!("../migrations/sqlite/0004_leaks.sql"),
        },
        Migration {
            version: 5,
            name: "federation",
            sql: include_str!("../migrations/sqlite/0005_federation.sql"),
        },
        Migration {
            version: 6,
            name: "usage_findings",
            sql: include_str!("../migrations/sqlite/0006_usage_findings.sql"),
        },
        Migration {
            version: 7,
            name: "lifecycle",
            sql: include_str!("../migrations/sqlite/0007_lifecycle.sql"),
        },
        Migration {
            version: 8,
            name: "console",
            sql: include_str!("../migrations/sqlite/0008_console.sql"),
        },
        Migration {
            version: 9,
            name: "leases",
            sql: include_str!("../migrations/sqlite/0009_leases.sql"),
        },
        Migration {
            version: 10,
            name: "audit_leaf_index",
            sql: include_str!("../migrations/sqlite/0010_audit_leaf_index.sql"),
        },
        Migration {
            version: 11,
            name: "audit_identity_index",
            sql: include_str!("../migrations/sqlite/0011_audit_identity_index.sql"),
        },
    ];

    fn placeholder(sql: &mut String, _n: usize) {
        sql.push('?');
    }

    async fn exec_script(
        conn: &mut SqliteConnection,
        sql: &'static str,
    ) -> Result<(), sqlx::Error> {
        crate::dialect::count_round_trips(1);
        sqlx::raw_sql(sql).execute(conn).await.map(drop)
    }

    async fn exec(conn: &mut SqliteConnection, stmt: Stmt<'_>) -> Result<u64, sqlx::Error> {
        crate::dialect::count_round_trips(1);
        query(stmt).execute(conn).await.map(|r| r.rows_affected())
    }

    async fn fetch_all(
        conn: &mut SqliteConnection,
        stmt: Stmt<'_>,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        crate::dialect::count_round_trips(1);
        query(stmt).fetch_all(conn).await
    }

    async fn fetch_optional(
        conn: &mut SqliteConnection,
        stmt: Stmt<'_>,
    ) -> Result<Option<SqliteRow>, sqlx::Error> {
        crate::dialect::count_round_trips(1);
        query(stmt).fetch_optional(conn).await
    }

    fn get_int(row: &SqliteRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_text(row: &SqliteRow, col: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_bytes(row: &SqliteRow, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_bool(row: &SqliteRow, col: &str) -> Result<Option<bool>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_uuid(row: &SqliteRow, col: &str) -> Result<Option<Uuid>, sqlx::Error> {
        row.try_get::<Option<String>, _>(col)?
            .map(|s| Uuid::parse_str(&s))
            .transpose()
            .map_err(|e| sqlx::Error::ColumnDecode {
                index: col.to_owned(),
                source: Box::new(e),
            })
    }

    fn classify(err: &dyn sqlx::error::DatabaseError) -> Failure {
        let code = err.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(1);
        classify_code(code, err.message())
    }
}

/// Classifies a SQLite extended result code (https://www.sqlite.org/rescode.html) and its
/// message; shared by the sqlx connections and the writer's direct one.
pub(crate) fn classify_code(code: i32, msg: &str) -> Failure {
    const CONSTRAINT_FOREIGNKEY: i32 = 787;
    const CONSTRAINT_PRIMARYKEY: i32 = 1555;
    const CONSTRAINT_UNIQUE: i32 = 2067;
    match code {
        CONSTRAINT_UNIQUE | CONSTRAINT_PRIMARYKEY => {
            Failure::Unique(if msg.contains("owners.name") {
                UniqueRule::OwnerName
            } else if msg.contains("identities.environment") {
                UniqueRule::IdentityName
            } else if msg.contains("credentials.secret_hash") {
                UniqueRule::CredentialSecret
            } else {
                UniqueRule::Key
            })
        }
        CONSTRAINT_FOREIGNKEY => Failure::ForeignKey,
        _ => match code & 0xff {
            // BUSY, LOCKED: another process held the database past the busy timeout.
            5 | 6 => Failure::Unavailable(format!("the database is locked: {msg}")),
            // PERM, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL
            3 | 7 | 8 | 10 | 13 | 14 | 15 => Failure::Unavailable(msg.to_owned()),
            // CORRUPT, NOTADB
            11 | 26 => Failure::Corrupt(msg.to_owned()),
            _ => Failure::Other(msg.to_owned()),
        },
    }
}

static STATEMENTS: Statements = Statements {
    ping: "SELECT 1",

    insert_owner: concat!(
        "INSERT INTO owners (",
        owner_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_owner: "UPDATE owners SET name = ?, kind = ?, contact = ?, status = ?, created_at = ?, departed_at = ?, \
                   version = ? WHERE id = ? AND version = ?",
    owner_version: "SELECT version FROM owners WHERE id = ?",
    get_owner: concat!("SELECT ", owner_columns!(), " FROM owners WHERE id = ?"),

    insert_identity: concat!(
        "INSERT INTO identities (",
        identity_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_identity: "UPDATE identities SET name = ?, kind = ?, owner_id = ?, purpose = ?, environment = ?, \
                      expires_at = ?, scopes = ?, default_scopes = ?, audiences = ?, labels = ?, vendor = ?, \
                      status = ?, status_reason = ?, token_lifetime_secs = ?, require_dpop = ?, \
                      tokens_revoked_before = ?, created_by = ?, approved_by = ?, approved_at = ?, created_at = ?, \
                      updated_at = ?, version = ?, allowed_dns_names = ?, may_act = ?, allowed_source_cidrs = ?, \
                      review_due_at = ? WHERE id = ? AND version = ?",
    identity_version: "SELECT version FROM identities WHERE id = ?",
    get_identity: concat!(
        "SELECT ",
        identity_columns!(),
        " FROM identities WHERE id = ?"
    ),
    count_identities: "SELECT COUNT(*) AS n FROM identities",

    insert_credential: concat!(
        "INSERT INTO credentials (",
        credential_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    bulk_insert_identities: concat!(
        "INSERT INTO identities (",
        identity_columns!(),
        ") SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13, value ->> 14, value ->> 15, value ->> 16, value ->> 17, value ->> 18, value ->> 19, value ->> 20, value ->> 21, value ->> 22, value ->> 23, value ->> 24, value ->> 25, value ->> 26 FROM json_each(?)"
    ),
    bulk_insert_credentials: concat!(
        "INSERT INTO credentials (",
        credential_columns!(),
        ") SELECT value ->> 0, value ->> 1, value ->> 2, unhex(value ->> 3), value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13 FROM json_each(?)"
    ),
    update_credential: "UPDATE credentials SET identity_id = ?, kind = ?, secret_hash = ?, jwk = ?, fingerprint = ?, \
                        created_at = ?, expires_at = ?, last_used_at = ?, revoked_at = ?, revoke_reason = ?, \
                        rotated_from = ?, created_by = ?, version = ? WHERE id = ? AND version = ?",
    credential_version: "SELECT version FROM credentials WHERE id = ?",
    get_credential: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE id = ?"
    ),
    credential_by_hash: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE secret_hash = ?"
    ),
    credentials_of_identity: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE identity_id = ? ORDER BY created_at, id"
    ),
    revoke_identity_credentials: "UPDATE credentials SET revoked_at = ?, revoke_reason = ?, version = version + 1 \
                                  WHERE identity_id = ? AND (revoked_at IS NULL OR revoked_at > ?)",
    touch_credential: "UPDATE credentials SET last_used_at = ? \
                       WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
    touch_credentials: "UPDATE credentials SET last_used_at = u.t \
                        FROM (SELECT value ->> 0 AS id, value ->> 1 AS t FROM json_each(?)) AS u \
                        WHERE credentials.id = u.id \
                        AND (credentials.last_used_at IS NULL OR credentials.last_used_at < u.t)",

    revoke_token: "INSERT INTO revoked_tokens (jti, identity_id, expires_at) VALUES (?, ?, ?) \
                   ON CONFLICT (jti) DO NOTHING",
    token_revoked: "SELECT 1 FROM revoked_tokens WHERE jti = ?",
    list_revoked_tokens: "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ? \
                          ORDER BY expires_at DESC LIMIT ?",
    // `WHERE true` keeps the upsert's ON from being read as a join constraint.
    claim_many: "INSERT INTO once_values (namespace, value_hash, expires_at) \
     SELECT value ->> 'n', unhex(value ->> 'h'), value ->> 'e' FROM json_each(?) WHERE true \
     ORDER BY 1, 2 \
     ON CONFLICT (namespace, value_hash) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE once_values.expires_at <= ? \
     RETURNING namespace, lower(hex(value_hash)) AS h",
    purge_once_values: "DELETE FROM once_values WHERE (namespace, value_hash) IN \
                        (SELECT namespace, value_hash FROM once_values WHERE expires_at <= ? LIMIT ?)",
    purge_revoked_tokens: "DELETE FROM revoked_tokens WHERE jti IN \
                           (SELECT jti FROM revoked_tokens WHERE expires_at <= ? LIMIT ?)",

    insert_signing_key: concat!(
        "INSERT INTO signing_keys (",
        signing_key_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_signing_key: "UPDATE signing_keys SET activates_at = ?, deactivates_at = ?, publish_until = ? WHERE kid = ?",
    list_signing_keys: concat!(
        "SELECT ",
        signing_key_columns!(),
        " FROM signing_keys ORDER BY activates_at, kid"
    ),

    put_setting: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    insert_setting: "INSERT INTO settings (key, value) VALUES (?, ?)",
    get_setting: "SELECT value FROM settings WHERE key = ?",

    put_checkpoint: "INSERT INTO checkpoints (size, root_hash, note, created_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (size) DO UPDATE SET root_hash = excluded.root_hash, note = excluded.note, \
                     created_at = excluded.created_at",
    latest_checkpoint: "SELECT size, root_hash, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1",

    read_head: "SELECT size, chain_hash FROM audit_head WHERE id = 1",
    // The writer's BEGIN IMMEDIATE already excludes every other writer.
    lock_head: "SELECT size, chain_hash FROM audit_head WHERE id = 1",
    store_head: "UPDATE audit_head SET size = ?, chain_hash = ? WHERE id = 1 AND size = ?",
    // The head update changes one row unless another writer moved the head; then the guard
    // re-inserts the head row, whose key exists, and the script fails before COMMIT. A moved
    // head also collides with the audit rows' sequence numbers, which would fail it earlier.
    // The writer claims in its own transaction on the direct connection (`direct.rs`).
    append_audit_claiming: None,
    append_audit: AuditAppend::Script {
        begin: "BEGIN IMMEDIATE; ",
        head: [
            "; UPDATE audit_head SET size = ",
            ", chain_hash = ",
            " WHERE id = 1 AND size = ",
            "; INSERT INTO audit_head (id, size, chain_hash) SELECT 1, 0, zeroblob(32) \
             WHERE changes() <> 1; COMMIT",
        ],
        rollback: "ROLLBACK",
    },
    insert_audit_values: Some(concat!(
        "INSERT INTO audit (",
        audit_columns!(),
        ") VALUES "
    )),
    insert_audit_json: concat!(
        "INSERT INTO audit (",
        audit_columns!(),
        ") SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
         value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, unhex(value ->> 11), \
         unhex(value ->> 12) FROM json_each(?)"
    ),
    audit_range: concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?"
    ),
    audit_leaf_hashes: "SELECT seq, leaf_hash FROM audit WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
    deferred_identity_index: Some(DeferredIdentityIndex {
        upto: "SELECT upto FROM audit_identity_indexed WHERE id = 1",
        // Sorted by identity, so that each identity's entries land on one or two leaf pages.
        add: "INSERT OR IGNORE INTO audit_identity_index (identity, record) \
              SELECT identity_id, seq FROM audit \
              WHERE seq > (SELECT upto FROM audit_identity_indexed WHERE id = 1) AND seq <= ? \
              AND identity_id IS NOT NULL ORDER BY identity_id, seq",
        advance: "UPDATE audit_identity_indexed SET upto = ? WHERE id = 1 AND upto < ?",
        indexed_head: concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_identity_index JOIN audit ON seq = record WHERE identity = "
        ),
    }),

    migration_lock: None,
    create_migrations_table: "CREATE TABLE IF NOT EXISTS steward_schema_migrations (\
                              version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, checksum BLOB NOT NULL, \
                              applied_at INTEGER NOT NULL) STRICT",
    applied_migrations: "SELECT version, checksum FROM steward_schema_migrations ORDER BY version",
    record_migration: "INSERT INTO steward_schema_migrations (version, name, checksum, applied_at) \
                       VALUES (?, ?, ?, ?)",
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints read leaf hashes by the million; reading them from the table would walk every
    /// column of every record (see migration 10).
    #[tokio::test]
    async fn leaf_hashes_are_read_from_the_covering_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("steward.db");
        let store = open(&path).await.expect("open");
        let options = SqliteConnectOptions::new().filename(&path).read_only(true);
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .expect("connect");
        let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            STATEMENTS.audit_leaf_hashes
        )))
        .bind(0_i64)
        .bind(10_i64)
        .bind(10_i64)
        .fetch_all(&mut conn)
        .await
        .expect("plan")
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        assert!(
            plan.iter()
                .any(|d| d.contains("COVERING INDEX audit_seq_leaf_idx")),
            "{plan:?}"
        );
        drop(store);
    }
}

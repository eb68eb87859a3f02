//! The PostgreSQL backend (shared by several nodes): its SQL, its driver glue, and opening a
//! database with fail-fast connection checks, migrations under an advisory lock, and pools.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Postgres, Row as _};
use uuid::Uuid;

use crate::GroupCommit;
use crate::claims::ClaimBatcher;
use crate::dialect::{
    Arg, AuditAppend, Dialect, Failure, Migration, SqlText, Statements, Stmt, UniqueRule,
    audit_columns, credential_columns, identity_columns, owner_columns, signing_key_columns,
};
use crate::engine::SqlStore;
use crate::writer::Writer;
use crate::{Store, StoreError};

/// Tuning knobs for [`open_with`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Pool size for queries and one-statement writes (the group-commit writer has its own connection).
    pub max_connections: u32,
    /// How long to wait for a connection, at startup and afterwards, before reporting the
    /// database unavailable.
    pub connect_timeout: Duration,
    /// How the group-commit writer gathers its batches. Off by default: a PostgreSQL commit
    /// takes 1.5–2 ms, long enough to fill a batch with about 30 tokens on its own, and a
    /// gathering wait on top cost 10–15 % of the API-key token rate for a few more per batch.
    pub group_commit: GroupCommit,
    /// How the one-time claim batcher gathers its batches (`private_key_jwt` and DPoP `jti`s):
    /// its statements are short, so a brief wait fills them further (the default
    /// [`GroupCommit`]).
    pub claim_batches: GroupCommit,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            group_commit: GroupCommit::OFF,
            claim_batches: GroupCommit::default(),
        }
    }
}

/// Turns Nagle's algorithm off on the new connection (see `nodelay.rs`).
fn no_delay() {
    let n = crate::nodelay::apply();
    tracing::debug!(sockets = n, "TCP_NODELAY set");
}

/// Opens the Steward database at `url` (`postgres://user@host:port/db`) with default options.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, PostgresOptions::default()).await
}

/// Opens the Steward database at `url`: checks the server answers within
/// `options.connect_timeout` (else [`StoreError::Unavailable`]), applies migrations (serialized
/// between nodes by an advisory lock), and starts the store's writer task on the current Tokio
/// runtime. Several processes may open the same database.
pub async fn open_with(url: &str, options: PostgresOptions) -> Result<Arc<dyn Store>, StoreError> {
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?
        .application_name("steward");
    // Named without the password, which must never reach logs or error messages.
    let target = format!(
        "{}:{}/{}",
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or(connect.get_username())
    );

    let mut conn = tokio::time::timeout(
        options.connect_timeout,
        PgConnection::connect_with(&connect),
    )
    .await
    .map_err(|_| {
        StoreError::Unavailable(format!(
            "PostgreSQL at {target} did not answer within {:?}",
            options.connect_timeout
        ))
    })?
    .map_err(|e| {
        StoreError::Unavailable(format!("cannot connect to PostgreSQL at {target}: {e}"))
    })?;
    crate::migrate::run::<PgDialect>(&mut conn).await?;
    let _ = conn.close().await;

    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.connect_timeout)
        // Connections are already checked when they are returned to the pool; checking again on
        // every acquire would add a round trip to every query.
        .test_before_acquire(false)
        .after_connect(|_, _| {
            Box::pin(async {
                no_delay();
                Ok(())
            })
        })
        .connect_lazy_with(connect.clone());
    // The writer and the claim batcher each keep one connection of their own, made and used on
    // their own threads.
    let own_pool = || {
        PgPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.connect_timeout)
            .after_connect(|_, _| {
                Box::pin(async {
                    no_delay();
                    Ok(())
                })
            })
            .connect_lazy_with(connect.clone())
    };
    let writer_pool = own_pool();
    let claim_pool = own_pool();
    tracing::info!(database = %target, "opened PostgreSQL store");
    let writer = Writer::spawn::<PgDialect>(writer_pool, None, 0, options.group_commit);
    let claims = ClaimBatcher::spawn::<PgDialect>(claim_pool, options.claim_batches);
    let hub = Arc::new(NoticeHub {
        url: url.to_owned(),
        tx: tokio::sync::broadcast::channel(4096).0,
        started: std::sync::Once::new(),
    });
    Ok(Arc::new(
        SqlStore::<PgDialect>::new(pool, writer)
            .with_claims(claims)
            .with_notices(hub),
    ))
}

/// PostgreSQL's dialect.
pub(crate) struct PgDialect;

fn query(stmt: Stmt<'_>) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
    let (q, persistent) = match stmt.sql {
        SqlText::Static(s) => (sqlx::query(s), true),
        SqlText::Built(s) => (sqlx::query(AssertSqlSafe(s)), false),
    };
    stmt.args
        .into_iter()
        .fold(q.persistent(persistent), |q, arg| match arg {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v.as_deref()),
            Arg::Bytes(v) => q.bind(v.as_deref()),
            Arg::Bool(v) => q.bind(v),
            Arg::Uuid(v) => q.bind(v),
        })
}

impl Dialect for PgDialect {
    type Db = Postgres;

    const NAME: &'static str = "postgres";
    const SINGLE_WRITER: bool = false;
    const BEGIN: &'static str = "BEGIN";
    const ILIKE: &'static str = "ILIKE";
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify('steward_changes', $1)");
    const SQL: &'static Statements = &STATEMENTS;
    const AUTHZ_SQL: &'static crate::authz::AuthzStatements = &crate::authz::POSTGRES;
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 1,
            name: "init",
            sql: include_str!("../migrations/postgres/0001_init.sql"),
        },
        Migration {
            version: 2,
            name: "pki",
            sql: include_str!("../migrations/postgres/0002_pki.sql"),
        },
        Migration {
            version: 3,
            name: "policies",
            sql: include_str!("../migrations/postgres/0003_policies.sql"),
        },
        Migration {
            version: 4,
            name: "leaks",
            sql: include_str!("../migrations/postgres/0004_leaks.sql"),
        },
        Migration {
            version: 5,
            name: "federation",
            sql: include_str!("../migrations/postgres/0005_federation.sql"),
        },
        Migration {
            version: 6,
            name: "usage_findings",
            sql: include_str!("../migrations/postgres/0006_usage_findings.sql"),
        },
        Migration {
            version: 7,
            name: "lifecycle",
            sql: include_str!("../migrations/postgres/0007_lifecycle.sql"),
        },
        Migration {
            version: 8,
            name: "console",
            sql: include_str!("../migrations/postgres/0008_console.sql"),
        },
        Migration {
            version: 9,
            name: "leases",
            sql: include_str!("../migrations/postgres/0009_leases.sql"),
        },
    ];

    fn placeholder(sql: &mut String, n: usize) {
        sql.push('$');
        sql.push_str(&n.to_string());
    }

    async fn exec_script(conn: &mut PgConnection, sql: &'static str) -> Result<(), sqlx::Error> {
        crate::dialect::count_round_trips(1);
        sqlx::raw_sql(sql).execute(conn).await.map(drop)
    }

    async fn exec(conn: &mut PgConnection, stmt: Stmt<'_>) -> Result<u64, sqlx::Error> {
        crate::dialect::count_round_trips(1);
        query(stmt).execute(conn).await.map(|r| r.rows_affected())
    }

    async fn fetch_all(conn: &mut PgConnection, stmt: Stmt<'_>) -> Result<Vec<PgRow>, sqlx::Error> {
        crate::dialect::count_round_trips(1);
        query(stmt).fetch_all(conn).await
    }

    async fn fetch_optional(
        conn: &mut PgConnection,
        stmt: Stmt<'_>,
    ) -> Result<Option<PgRow>, sqlx::Error> {
        crate::dialect::count_round_trips(1);
        query(stmt).fetch_optional(conn).await
    }

    fn get_int(row: &PgRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_text(row: &PgRow, col: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_bytes(row: &PgRow, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_bool(row: &PgRow, col: &str) -> Result<Option<bool>, sqlx::Error> {
        row.try_get(col)
    }
    fn get_uuid(row: &PgRow, col: &str) -> Result<Option<Uuid>, sqlx::Error> {
        row.try_get(col)
    }

    fn classify(err: &dyn sqlx::error::DatabaseError) -> Failure {
        let code = err.code().unwrap_or_default();
        let msg = err.message();
        match code.as_ref() {
            "23505" => Failure::Unique(match err.constraint() {
                Some("owners_name_key") => UniqueRule::OwnerName,
                Some("identities_environment_name_key") => UniqueRule::IdentityName,
                Some("credentials_secret_hash_key") => UniqueRule::CredentialSecret,
                _ => UniqueRule::Key,
            }),
            "23503" => Failure::ForeignKey,
            // serialization_failure, deadlock_detected, lock_not_available
            "40001" | "40P01" | "55P03" => Failure::Contention,
            // read_only_sql_transaction (e.g. a standby after failover), shutdowns,
            // too_many_connections, out of disk or memory
            "25006" | "57P01" | "57P02" | "57P03" | "53100" | "53200" | "53300" => {
                Failure::Unavailable(msg.to_owned())
            }
            // data_corrupted, index_corrupted
            "XX001" | "XX002" => Failure::Corrupt(msg.to_owned()),
            // connection_exception class
            c if c.starts_with("08") => Failure::Unavailable(msg.to_owned()),
            _ => Failure::Other(msg.to_owned()),
        }
    }
}

/// The one-time claims of a batch (argument `$json`: `[{"n", "h", "e"}]`) as one insert in key
/// order, taking over entries expired at `$now`; without its RETURNING clause.
macro_rules! claim_values {
    ($json:literal, $now:literal) => {
        concat!(
            "INSERT INTO once_values (namespace, value_hash, expires_at) \
             SELECT x.n, decode(x.h, 'hex'), x.e FROM jsonb_to_recordset(",
            $json,
            "::jsonb) AS x(n text, h text, e bigint) ORDER BY x.n, x.h \
             ON CONFLICT (namespace, value_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE once_values.expires_at <= ",
            $now
        )
    };
}

/// The CTEs of an audit append: `ins` inserts the records (`$1`), `upd` moves the head from
/// size `$4` to `$2` with chain hash `$3`. Data-modifying CTEs run whether or not they are
/// referenced, and the statement is atomic: if the head moved (0 rows updated) the division
/// by zero of the final SELECT fails it, insert included. The divisor depends on the CTEs, so
/// the planner cannot fold it into an error up front.
macro_rules! append_audit_ctes {
    () => {
        concat!(
            "ins AS (INSERT INTO audit (",
            audit_columns!(),
            ") SELECT (r ->> 0)::bigint, (r ->> 1)::bigint, r ->> 2, r ->> 3, r ->> 4, (r ->> 5)::uuid, \
             r ->> 6, r ->> 7, r ->> 8, r ->> 9, r ->> 10, decode(r ->> 11, 'hex'), \
             decode(r ->> 12, 'hex') FROM json_array_elements($1::json) AS r RETURNING 1), \
             upd AS (UPDATE audit_head SET size = $2, chain_hash = $3 WHERE id = 1 AND size = $4 \
             RETURNING 1)"
        )
    };
}

static STATEMENTS: Statements = Statements {
    ping: "SELECT 1",

    insert_owner: concat!(
        "INSERT INTO owners (",
        owner_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ),
    update_owner: "UPDATE owners SET name = $1, kind = $2, contact = $3, status = $4, created_at = $5, \
                   departed_at = $6, version = $7 WHERE id = $8 AND version = $9",
    owner_version: "SELECT version FROM owners WHERE id = $1",
    get_owner: concat!("SELECT ", owner_columns!(), " FROM owners WHERE id = $1"),

    insert_identity: concat!(
        "INSERT INTO identities (",
        identity_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
         $21, $22, $23, $24, $25, $26, $27)"
    ),
    update_identity: "UPDATE identities SET name = $1, kind = $2, owner_id = $3, purpose = $4, environment = $5, \
                      expires_at = $6, scopes = $7, default_scopes = $8, audiences = $9, labels = $10, \
                      vendor = $11, status = $12, status_reason = $13, token_lifetime_secs = $14, \
                      require_dpop = $15, tokens_revoked_before = $16, created_by = $17, approved_by = $18, \
                      approved_at = $19, created_at = $20, updated_at = $21, version = $22, \
                      allowed_dns_names = $23, may_act = $24, allowed_source_cidrs = $25, review_due_at = $26 \
                      WHERE id = $27 AND version = $28",
    identity_version: "SELECT version FROM identities WHERE id = $1",
    get_identity: concat!(
        "SELECT ",
        identity_columns!(),
        " FROM identities WHERE id = $1"
    ),
    count_identities: "SELECT COUNT(*) AS n FROM identities",

    insert_credential: concat!(
        "INSERT INTO credentials (",
        credential_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ),
    bulk_insert_identities: concat!(
        "INSERT INTO identities (",
        identity_columns!(),
        ") SELECT (r ->> 0)::uuid, r ->> 1, r ->> 2, (r ->> 3)::uuid, r ->> 4, r ->> 5, (r ->> 6)::bigint, r ->> 7, r ->> 8, r ->> 9, r ->> 10, r ->> 11, r ->> 12, r ->> 13, (r ->> 14)::bigint, (r ->> 15)::boolean, (r ->> 16)::bigint, r ->> 17, r ->> 18, (r ->> 19)::bigint, (r ->> 20)::bigint, (r ->> 21)::bigint, (r ->> 22)::bigint, r ->> 23, r ->> 24, r ->> 25, (r ->> 26)::bigint FROM jsonb_array_elements($1::jsonb) AS r"
    ),
    bulk_insert_credentials: concat!(
        "INSERT INTO credentials (",
        credential_columns!(),
        ") SELECT (r ->> 0)::uuid, (r ->> 1)::uuid, r ->> 2, decode(r ->> 3, 'hex'), r ->> 4, r ->> 5, (r ->> 6)::bigint, (r ->> 7)::bigint, (r ->> 8)::bigint, (r ->> 9)::bigint, r ->> 10, (r ->> 11)::uuid, r ->> 12, (r ->> 13)::bigint FROM jsonb_array_elements($1::jsonb) AS r"
    ),
    update_credential: "UPDATE credentials SET identity_id = $1, kind = $2, secret_hash = $3, jwk = $4, \
                        fingerprint = $5, created_at = $6, expires_at = $7, last_used_at = $8, revoked_at = $9, \
                        revoke_reason = $10, rotated_from = $11, created_by = $12, version = $13 \
                        WHERE id = $14 AND version = $15",
    credential_version: "SELECT version FROM credentials WHERE id = $1",
    get_credential: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE id = $1"
    ),
    credential_by_hash: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE secret_hash = $1"
    ),
    credentials_of_identity: concat!(
        "SELECT ",
        credential_columns!(),
        " FROM credentials WHERE identity_id = $1 ORDER BY created_at, id"
    ),
    revoke_identity_credentials: "UPDATE credentials SET revoked_at = $1, revoke_reason = $2, version = version + 1 \
                                  WHERE identity_id = $3 AND (revoked_at IS NULL OR revoked_at > $4)",
    touch_credential: "UPDATE credentials SET last_used_at = $1 \
                       WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
    touch_credentials: "UPDATE credentials AS c SET last_used_at = u.t \
                        FROM (SELECT (r ->> 0)::uuid AS id, (r ->> 1)::bigint AS t \
                        FROM json_array_elements($1::json) AS r) AS u \
                        WHERE c.id = u.id AND (c.last_used_at IS NULL OR c.last_used_at < u.t)",

    revoke_token: "INSERT INTO revoked_tokens (jti, identity_id, expires_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (jti) DO NOTHING",
    token_revoked: "SELECT 1 FROM revoked_tokens WHERE jti = $1",
    list_revoked_tokens: "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1 \
                          ORDER BY expires_at DESC LIMIT $2",
    // Rows in key order, so that two nodes' batches lock shared keys in the same order.
    claim_many: concat!(
        claim_values!("$1", "$2"),
        " RETURNING namespace, encode(value_hash, 'hex') AS h"
    ),
    purge_once_values: "DELETE FROM once_values WHERE (namespace, value_hash) IN \
                        (SELECT namespace, value_hash FROM once_values WHERE expires_at <= $1 LIMIT $2)",
    purge_revoked_tokens: "DELETE FROM revoked_tokens WHERE jti IN \
                           (SELECT jti FROM revoked_tokens WHERE expires_at <= $1 LIMIT $2)",

    insert_signing_key: concat!(
        "INSERT INTO signing_keys (",
        signing_key_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ),
    update_signing_key: "UPDATE signing_keys SET activates_at = $1, deactivates_at = $2, publish_until = $3 \
                         WHERE kid = $4",
    list_signing_keys: concat!(
        "SELECT ",
        signing_key_columns!(),
        " FROM signing_keys ORDER BY activates_at, kid"
    ),

    put_setting: "INSERT INTO settings (key, value) VALUES ($1, $2) \
                  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    insert_setting: "INSERT INTO settings (key, value) VALUES ($1, $2)",
    get_setting: "SELECT value FROM settings WHERE key = $1",

    put_checkpoint: "INSERT INTO checkpoints (size, root_hash, note, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (size) DO UPDATE SET root_hash = EXCLUDED.root_hash, note = EXCLUDED.note, \
                     created_at = EXCLUDED.created_at",
    latest_checkpoint: "SELECT size, root_hash, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1",

    read_head: "SELECT size, chain_hash FROM audit_head WHERE id = 1",
    // Serializes appends from every node: the next writer waits here, then reads the new head.
    lock_head: "SELECT size, chain_hash FROM audit_head WHERE id = 1 FOR UPDATE",
    store_head: "UPDATE audit_head SET size = $1, chain_hash = $2 WHERE id = 1 AND size = $3",
    append_audit: AuditAppend::Statement(concat!(
        "WITH ",
        append_audit_ctes!(),
        " SELECT 1 / (CASE WHEN (SELECT count(*) FROM upd) = 1 \
         AND (SELECT count(*) FROM ins) = $5 THEN 1 ELSE 0 END) AS ok"
    )),
    // The same with the batch's one-time claims, which must all be fresh: a replay fails the
    // statement (nothing claimed, nothing appended) and the writer reruns the batch on its
    // general path, which claims first and records each outcome. The conditions read `upd`
    // before `cl`, so the head row is normally locked before any claim is taken, the general
    // path's order. PostgreSQL leaves the order of data-modifying CTEs unspecified, though: if
    // two nodes' writers holding the same value ever wait for each other, its deadlock detector
    // fails one statement, which writes nothing, and that batch reruns on the general path.
    append_audit_claiming: Some(concat!(
        "WITH cl AS (",
        claim_values!("$6", "$7"),
        " RETURNING 1), ",
        append_audit_ctes!(),
        " SELECT 1 / (CASE WHEN (SELECT count(*) FROM upd) = 1 \
         AND (SELECT count(*) FROM ins) = $5 AND (SELECT count(*) FROM cl) = $8 \
         THEN 1 ELSE 0 END) AS ok"
    )),
    insert_audit_values: None,
    insert_audit_json: concat!(
        "INSERT INTO audit (",
        audit_columns!(),
        ") SELECT (r ->> 0)::bigint, (r ->> 1)::bigint, r ->> 2, r ->> 3, r ->> 4, (r ->> 5)::uuid, \
         r ->> 6, r ->> 7, r ->> 8, r ->> 9, r ->> 10, decode(r ->> 11, 'hex'), \
         decode(r ->> 12, 'hex') FROM json_array_elements($1::json) AS r"
    ),
    audit_range: concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2"
    ),
    audit_leaf_hashes: "SELECT seq, leaf_hash FROM audit WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
    deferred_identity_index: None,

    // A transaction-scoped advisory lock (key: "steward\0" as a big-endian integer) taken by
    // every node before migrating, so concurrent starts apply each migration once.
    migration_lock: Some("SELECT pg_advisory_xact_lock(8319385975070548992)"),
    create_migrations_table: "CREATE TABLE IF NOT EXISTS steward_schema_migrations (\
                              version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, checksum BYTEA NOT NULL, \
                              applied_at BIGINT NOT NULL)",
    applied_migrations: "SELECT version, checksum FROM steward_schema_migrations ORDER BY version",
    record_migration: "INSERT INTO steward_schema_migrations (version, name, checksum, applied_at) \
                       VALUES ($1, $2, $3, $4)",
};

/// The channel every node LISTENs on.
const NOTICE_CHANNEL: &str = "steward_changes";

/// Fans `LISTEN steward_changes` notifications out to subscribers. The listener starts on the
/// first subscription and stops once the store (the only strong owner of the hub) is dropped.
struct NoticeHub {
    url: String,
    tx: tokio::sync::broadcast::Sender<crate::Notice>,
    started: std::sync::Once,
}

impl crate::NoticeSource for NoticeHub {
    fn subscribe(self: Arc<Self>) -> tokio::sync::broadcast::Receiver<crate::Notice> {
        let rx = self.tx.subscribe();
        self.started.call_once(|| self.start());
        rx
    }
}

impl NoticeHub {
    fn start(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = std::time::Duration::from_millis(100);
            loop {
                let Some(url) = weak.upgrade().map(|h| h.url.clone()) else {
                    return;
                };
                match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut listener) => {
                        if listener.listen(NOTICE_CHANNEL).await.is_ok() {
                            backoff = std::time::Duration::from_millis(100);
                            // Anything committed while we were not listening is unknown.
                            if !send(&weak, crate::Notice::Resync) {
                                return;
                            }
                            loop {
                                match listener.try_recv().await {
                                    Ok(Some(n)) => {
                                        if let Some(notice) = crate::Notice::decode(n.payload())
                                            && !send(&weak, notice)
                                        {
                                            return;
                                        }
                                    }
                                    // The connection dropped and sqlx re-established it.
                                    Ok(None) => {
                                        if !send(&weak, crate::Notice::Resync) {
                                            return;
                                        }
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "change listener lost its connection");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener cannot connect; retrying")
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
        });
    }
}

/// Sends to subscribers; false once the hub is gone (the store was dropped).
fn send(weak: &std::sync::Weak<NoticeHub>, notice: crate::Notice) -> bool {
    match weak.upgrade() {
        Some(h) => {
            let _ = h.tx.send(notice);
            true
        }
        None => false,
    }
}

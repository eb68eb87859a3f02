//! The seam between the shared storage logic and each SQL backend: statements and their bind
//! arguments, the [`Dialect`] trait (SQL text, binding, execution, row access, error classes).

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Database;
use uuid::Uuid;

/// Statements sent to a database by this process (every backend, every store), counting
/// BEGIN, SAVEPOINT, RELEASE and COMMIT: each is one round trip to the database (for SQLite, one
/// hand-off to its connection thread). Benchmarks divide it by operations served.
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// Counts `n` round trips to the database.
pub(crate) fn count_round_trips(n: u64) {
    ROUND_TRIPS.fetch_add(n, Ordering::Relaxed);
}

/// Round trips to a database made by this process so far (see [`ROUND_TRIPS`]).
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

/// A database connection of dialect `D`.
pub(crate) type Conn<D> = <<D as Dialect>::Db as Database>::Connection;
/// A result row of dialect `D`.
pub(crate) type Row<D> = <<D as Dialect>::Db as Database>::Row;

/// One bind argument. Borrowed where the caller already holds the data.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Bytes(Option<Cow<'a, [u8]>>),
    Bool(bool),
    Uuid(Option<Uuid>),
}

/// SQL text: a constant of the backend, or text assembled at run time from constant fragments
/// and placeholders only (never from values, which are always bound).
#[derive(Debug, Clone)]
pub(crate) enum SqlText {
    /// A backend constant; prepared once per connection and cached.
    Static(&'static str),
    /// Built for one query (filtered listings); not cached, so filter combinations cannot
    /// crowd the hot statements out of the statement cache.
    Built(String),
}

impl<'a> Arg<'a> {
    pub(crate) fn int(v: i64) -> Self {
        Self::Int(Some(v))
    }
    pub(crate) fn text(v: &'a str) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
    pub(crate) fn owned(v: String) -> Self {
        Self::Text(Some(Cow::Owned(v)))
    }
    pub(crate) fn uuid(v: Uuid) -> Self {
        Self::Uuid(Some(v))
    }
}

/// A statement and its bind arguments, in placeholder order.
#[derive(Debug, Clone)]
pub(crate) struct Stmt<'a> {
    pub(crate) sql: SqlText,
    pub(crate) args: Vec<Arg<'a>>,
}

impl<'a> Stmt<'a> {
    pub(crate) fn new(sql: &'static str) -> Self {
        Self {
            sql: SqlText::Static(sql),
            args: Vec::new(),
        }
    }
    pub(crate) fn arg(mut self, arg: Arg<'a>) -> Self {
        self.args.push(arg);
        self
    }
    pub(crate) fn int(mut self, v: i64) -> Self {
        self.args.push(Arg::Int(Some(v)));
        self
    }
    pub(crate) fn opt_int(mut self, v: Option<i64>) -> Self {
        self.args.push(Arg::Int(v));
        self
    }
    pub(crate) fn time(self, t: time::OffsetDateTime) -> Self {
        self.int(steward_core::to_micros(t))
    }
    pub(crate) fn opt_time(self, t: Option<time::OffsetDateTime>) -> Self {
        self.opt_int(t.map(steward_core::to_micros))
    }
    pub(crate) fn text(mut self, v: &'a str) -> Self {
        self.args.push(Arg::Text(Some(Cow::Borrowed(v))));
        self
    }
    pub(crate) fn owned_text(mut self, v: String) -> Self {
        self.args.push(Arg::Text(Some(Cow::Owned(v))));
        self
    }
    pub(crate) fn opt_text(mut self, v: Option<&'a str>) -> Self {
        self.args.push(Arg::Text(v.map(Cow::Borrowed)));
        self
    }
    pub(crate) fn bytes(mut self, v: &'a [u8]) -> Self {
        self.args.push(Arg::Bytes(Some(Cow::Borrowed(v))));
        self
    }
    pub(crate) fn opt_bytes(mut self, v: Option<&'a [u8]>) -> Self {
        self.args.push(Arg::Bytes(v.map(Cow::Borrowed)));
        self
    }
    pub(crate) fn flag(mut self, v: bool) -> Self {
        self.args.push(Arg::Bool(v));
        self
    }
    pub(crate) fn uuid(mut self, v: Uuid) -> Self {
        self.args.push(Arg::Uuid(Some(v)));
        self
    }
    pub(crate) fn opt_uuid(mut self, v: Option<Uuid>) -> Self {
        self.args.push(Arg::Uuid(v));
        self
    }
}

/// Builds SQL at run time from constant fragments, with placeholders in the dialect's syntax.
pub(crate) struct SqlBuilder<'a, D: Dialect> {
    sql: String,
    args: Vec<Arg<'a>>,
    _dialect: std::marker::PhantomData<D>,
}

impl<'a, D: Dialect> SqlBuilder<'a, D> {
    pub(crate) fn new(head: &'static str) -> Self {
        Self {
            sql: head.to_owned(),
            args: Vec::new(),
            _dialect: std::marker::PhantomData,
        }
    }
    /// Appends a constant SQL fragment.
    pub(crate) fn sql(&mut self, fragment: &'static str) -> &mut Self {
        self.sql.push_str(fragment);
        self
    }
    /// Appends a placeholder bound to `arg`.
    pub(crate) fn arg(&mut self, arg: Arg<'a>) -> &mut Self {
        self.args.push(arg);
        D::placeholder(&mut self.sql, self.args.len());
        self
    }
    /// Appends `rows` as `(a, b, …), (c, d, …)`, each row the bind arguments of a one-row
    /// statement, in column order: one multi-row `VALUES` list.
    pub(crate) fn values_rows(&mut self, rows: impl IntoIterator<Item = Stmt<'a>>) -> &mut Self {
        for (i, row) in rows.into_iter().enumerate() {
            self.sql(if i == 0 { "(" } else { "), (" });
            for (j, a) in row.args.into_iter().enumerate() {
                if j > 0 {
                    self.sql(", ");
                }
                self.arg(a);
            }
        }
        self.sql(")")
    }

    pub(crate) fn build(self) -> Stmt<'a> {
        Stmt {
            sql: SqlText::Built(self.sql),
            args: self.args,
        }
    }
}

/// The statements of an audit index by identity that the writer fills in runs of records, not on
/// every commit: records at or below the indexed bound are found through the index table, the
/// records above it by scanning the log's tail (see `engine::audit_page`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeferredIdentityIndex {
    /// Returns `upto`, the highest sequence number whose record is indexed.
    pub(crate) upto: &'static str,
    /// Argument: a sequence number `n`. Indexes the records above `upto` up to `n`.
    pub(crate) add: &'static str,
    /// Arguments: `n`, `n`. Moves `upto` forward to `n` (never back).
    pub(crate) advance: &'static str,
    /// `SELECT <audit columns> FROM <index joined to the log> WHERE <index identity> = `: the
    /// head of a query over the indexed part, where `record` names the index's sequence number.
    pub(crate) indexed_head: &'static str,
}

/// A backend's one-round-trip audit append (see `Statements::append_audit`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuditAppend {
    /// One self-contained statement. Arguments: rows (JSON), new size, new chain hash, expected
    /// size, row count; it returns one row when it applied (PostgreSQL).
    Statement(&'static str),
    /// A script run as one command: `begin`, then `insert_audit_values` with the rows, then
    /// `head[0]` new size `head[1]` new chain hash `head[2]` expected size `head[3]`, which
    /// moves the head, fails the script if the head had moved, and commits (SQLite, where one
    /// statement cannot both insert and update, but a connection runs a script in one hand-off).
    /// A failed script leaves its transaction open: the writer rolls it back with `rollback`.
    Script {
        begin: &'static str,
        head: [&'static str; 4],
        rollback: &'static str,
    },
}

/// Which uniqueness rule a write violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UniqueRule {
    OwnerName,
    IdentityName,
    CredentialSecret,
    /// A primary key (or a rule the caller infers from the statement).
    Key,
}

/// What a failed statement means, independently of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Unique(UniqueRule),
    ForeignKey,
    /// Deadlock or serialization failure: retrying may succeed.
    Contention,
    Unavailable(String),
    Corrupt(String),
    Other(String),
}

/// Everything the shared storage code needs from a backend. All SQL text lives in the backends;
/// shared code only combines constant fragments and placeholders.
pub(crate) trait Dialect: Send + Sync + 'static {
    type Db: Database;

    /// `sqlite` or `postgres`.
    const NAME: &'static str;
    /// Whether the database allows a single writer at a time. Then every write, even a
    /// one-statement one, goes through the writer task; otherwise those run directly on the pool.
    const SINGLE_WRITER: bool;
    /// Statement that opens a writer transaction.
    const BEGIN: &'static str;
    /// The case-insensitive LIKE operator.
    const ILIKE: &'static str;
    /// The backend's constant statements.
    const SQL: &'static Statements;
    /// The backend's migrations, in version order.
    const MIGRATIONS: &'static [Migration];
    /// Statement that publishes a [`crate::Notice`] payload to other processes on commit, if the
    /// backend can be shared between processes.
    const NOTIFY: Option<&'static str>;
    /// The backend's authorization statements (policies, exceptions; see `authz.rs`).
    const AUTHZ_SQL: &'static crate::authz::AuthzStatements;

    /// Appends the placeholder for the `n`th (1-based) argument.
    fn placeholder(sql: &mut String, n: usize);

    /// Runs a multi-statement script without arguments (migrations).
    fn exec_script(
        conn: &mut Conn<Self>,
        sql: &'static str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Runs a statement; returns the number of rows affected.
    fn exec(
        conn: &mut Conn<Self>,
        stmt: Stmt<'_>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
    fn fetch_all(
        conn: &mut Conn<Self>,
        stmt: Stmt<'_>,
    ) -> impl Future<Output = Result<Vec<Row<Self>>, sqlx::Error>> + Send;
    fn fetch_optional(
        conn: &mut Conn<Self>,
        stmt: Stmt<'_>,
    ) -> impl Future<Output = Result<Option<Row<Self>>, sqlx::Error>> + Send;

    fn get_int(row: &Row<Self>, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn get_text(row: &Row<Self>, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn get_bytes(row: &Row<Self>, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn get_bool(row: &Row<Self>, col: &str) -> Result<Option<bool>, sqlx::Error>;
    fn get_uuid(row: &Row<Self>, col: &str) -> Result<Option<Uuid>, sqlx::Error>;

    /// Classifies a database error reported by the backend.
    fn classify(err: &dyn sqlx::error::DatabaseError) -> Failure;
}

/// One embedded schema migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// The constant statements every backend provides. Argument order is fixed by the shared code
/// that binds them (see `ops.rs`); each backend writes the SQL in its own dialect.
pub(crate) struct Statements {
    pub(crate) ping: &'static str,

    pub(crate) insert_owner: &'static str,
    pub(crate) update_owner: &'static str,
    pub(crate) owner_version: &'static str,
    pub(crate) get_owner: &'static str,

    pub(crate) insert_identity: &'static str,
    pub(crate) update_identity: &'static str,
    pub(crate) identity_version: &'static str,
    pub(crate) get_identity: &'static str,
    pub(crate) count_identities: &'static str,

    pub(crate) insert_credential: &'static str,
    /// Insert the identities / credentials of one JSON array of rows (`Mutation::BulkInsert`).
    pub(crate) bulk_insert_identities: &'static str,
    pub(crate) bulk_insert_credentials: &'static str,
    pub(crate) update_credential: &'static str,
    pub(crate) credential_version: &'static str,
    pub(crate) get_credential: &'static str,
    pub(crate) credential_by_hash: &'static str,
    pub(crate) credentials_of_identity: &'static str,
    pub(crate) revoke_identity_credentials: &'static str,
    pub(crate) touch_credential: &'static str,
    /// [`Self::touch_credential`] for many credentials from one JSON array of `[id, micros]`.
    pub(crate) touch_credentials: &'static str,

    pub(crate) revoke_token: &'static str,
    pub(crate) token_revoked: &'static str,
    pub(crate) list_revoked_tokens: &'static str,
    /// Many claims in one statement: `$1` a JSON array of `{"n", "h" (hex), "e"}`, `$2` now;
    /// returns the `namespace` and lowercase hex `h` of each fresh claim. Atomic across
    /// processes: the primary key arbitrates, and an expired entry is taken over (`claims.rs`).
    pub(crate) claim_many: &'static str,
    pub(crate) purge_once_values: &'static str,
    pub(crate) purge_revoked_tokens: &'static str,

    pub(crate) insert_signing_key: &'static str,
    pub(crate) update_signing_key: &'static str,
    pub(crate) list_signing_keys: &'static str,

    pub(crate) put_setting: &'static str,
    pub(crate) insert_setting: &'static str,
    pub(crate) get_setting: &'static str,

    pub(crate) put_checkpoint: &'static str,
    pub(crate) latest_checkpoint: &'static str,

    pub(crate) read_head: &'static str,
    /// Reads the head and locks it until the transaction ends (a no-op lock in SQLite, whose
    /// writer transaction already excludes every other writer).
    pub(crate) lock_head: &'static str,
    pub(crate) store_head: &'static str,
    /// Inserts the audit rows of one JSON array (see `ops::insert_audit`).
    pub(crate) insert_audit_json: &'static str,
    /// `INSERT INTO audit (…) VALUES ` where a batch's rows are better bound as one multi-row
    /// VALUES list than unpacked from JSON (SQLite, whose `json_each` re-renders and re-parses
    /// every element once per column); `None` to use `insert_audit_json`.
    pub(crate) insert_audit_values: Option<&'static str>,
    /// How the writer appends a batch of audit records and nothing else in one round trip,
    /// failing as a whole when the head is not where it remembers it (see
    /// `writer::append_audit_only`).
    pub(crate) append_audit: AuditAppend,
    /// `append_audit`'s statement with one-time claims as well (arguments 6 to 8: the
    /// `claim_many` batch, its "now" and how many values it claims), failing as a whole
    /// unless every claim is fresh; `None` where the writer claims on a connection of its own.
    pub(crate) append_audit_claiming: Option<&'static str>,
    pub(crate) audit_range: &'static str,
    pub(crate) audit_leaf_hashes: &'static str,
    /// The by-identity audit index kept off the commit path (SQLite, see
    /// [`DeferredIdentityIndex`]); `None` where the audit table carries a plain
    /// `(identity_id, seq)` index that every append maintains (PostgreSQL).
    pub(crate) deferred_identity_index: Option<DeferredIdentityIndex>,

    /// Taken at the start of the migration transaction so concurrent starts apply migrations once.
    pub(crate) migration_lock: Option<&'static str>,
    pub(crate) create_migrations_table: &'static str,
    pub(crate) applied_migrations: &'static str,
    pub(crate) record_migration: &'static str,
}

/// Column lists shared by both schemas (the column names are identical).
macro_rules! owner_columns {
    () => {
        "id, name, kind, contact, status, created_at, departed_at, version"
    };
}
macro_rules! identity_columns {
    () => {
        "id, name, kind, owner_id, purpose, environment, expires_at, scopes, default_scopes, audiences, \
         labels, vendor, status, status_reason, token_lifetime_secs, require_dpop, tokens_revoked_before, \
         created_by, approved_by, approved_at, created_at, updated_at, version, allowed_dns_names, may_act, \
         allowed_source_cidrs, review_due_at"
    };
}
macro_rules! credential_columns {
    () => {
        "id, identity_id, kind, secret_hash, jwk, fingerprint, created_at, expires_at, last_used_at, \
         revoked_at, revoke_reason, rotated_from, created_by, version"
    };
}
macro_rules! audit_columns {
    () => {
        "seq, time_us, actor, action, target, identity_id, outcome, reason, request_id, source, details, \
         leaf_hash, chain_hash"
    };
}
macro_rules! signing_key_columns {
    () => {
        "kid, alg, sealed_private_key, public_jwk, created_at, activates_at, deactivates_at, publish_until"
    };
}
pub(crate) use {
    audit_columns, credential_columns, identity_columns, owner_columns, signing_key_columns,
};

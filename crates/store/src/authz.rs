//! Authorization storage: versioned Cedar policies, the policy-state head and guard-rail
//! exceptions — records, both backends' SQL for them, their mutations and their reads.

use steward_core::to_micros;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Conn, Dialect, Failure, Row, Stmt};
use crate::ops::{check_text, db_error};
use crate::rows::Cols;
use crate::{Mutation, StoreError};

/// One stored version of one policy. Versions are never updated: every change appends a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// Operator-chosen id (also the Cedar policy id).
    pub id: String,
    /// 1 for the first version, then +1 per change of this policy.
    pub version: i64,
    /// Cedar source text (empty for a deletion).
    pub source: String,
    pub description: String,
    /// This version deletes the policy.
    pub deleted: bool,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// An approved, time-bound exception to a built-in guard rail for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRecord {
    pub id: Uuid,
    pub identity_id: Uuid,
    /// The guard rail's policy id, e.g. `steward.env-isolation`.
    pub guard_rail: String,
    pub requested_by: String,
    /// Must differ from `requested_by` (enforced by the schema too).
    pub approved_by: String,
    pub reason: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Queries over exceptions, in id (creation) order.
#[derive(Debug, Clone, Default)]
pub struct ExceptionQuery {
    pub identity_id: Option<Uuid>,
    /// Only exceptions with `expires_at > active_at`.
    pub active_at: Option<OffsetDateTime>,
}

/// The authorization statements of one backend.
pub(crate) struct AuthzStatements {
    pub(crate) insert_policy: &'static str,
    pub(crate) bump_head: &'static str,
    pub(crate) head_version: &'static str,
    pub(crate) current_policies: &'static str,
    pub(crate) policy_history: &'static str,
    pub(crate) insert_exception: &'static str,
    pub(crate) exceptions_all: &'static str,
    pub(crate) exceptions_of_identity: &'static str,
}

macro_rules! policy_columns {
    () => {
        "policy_id, version, source, description, deleted, created_at, created_by"
    };
}
macro_rules! exception_columns {
    () => {
        "id, identity_id, guard_rail, requested_by, approved_by, reason, created_at, expires_at"
    };
}

pub(crate) static SQLITE: AuthzStatements = AuthzStatements {
    insert_policy: concat!(
        "INSERT INTO policies (",
        policy_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    bump_head: "UPDATE policy_head SET version = version + 1 WHERE id = 1",
    head_version: "SELECT version FROM policy_head WHERE id = 1",
    current_policies: concat!(
        "SELECT ",
        policy_columns!(),
        " FROM policies p WHERE version = (SELECT MAX(version) FROM policies q WHERE q.policy_id = p.policy_id) \
         AND deleted = 0 ORDER BY policy_id"
    ),
    policy_history: concat!(
        "SELECT ",
        policy_columns!(),
        " FROM policies WHERE policy_id = ? ORDER BY version"
    ),
    insert_exception: concat!(
        "INSERT INTO exceptions (",
        exception_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    exceptions_all: concat!(
        "SELECT ",
        exception_columns!(),
        " FROM exceptions WHERE expires_at > ? ORDER BY id LIMIT 100000"
    ),
    exceptions_of_identity: concat!(
        "SELECT ",
        exception_columns!(),
        " FROM exceptions WHERE identity_id = ? AND expires_at > ? ORDER BY id LIMIT 100000"
    ),
};

pub(crate) static POSTGRES: AuthzStatements = AuthzStatements {
    insert_policy: concat!(
        "INSERT INTO policies (",
        policy_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ),
    bump_head: "UPDATE policy_head SET version = version + 1 WHERE id = 1",
    head_version: "SELECT version FROM policy_head WHERE id = 1",
    current_policies: concat!(
        "SELECT ",
        policy_columns!(),
        " FROM policies p WHERE version = (SELECT MAX(version) FROM policies q WHERE q.policy_id = p.policy_id) \
         AND NOT deleted ORDER BY policy_id"
    ),
    policy_history: concat!(
        "SELECT ",
        policy_columns!(),
        " FROM policies WHERE policy_id = $1 ORDER BY version"
    ),
    insert_exception: concat!(
        "INSERT INTO exceptions (",
        exception_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ),
    exceptions_all: concat!(
        "SELECT ",
        exception_columns!(),
        " FROM exceptions WHERE expires_at > $1 ORDER BY id LIMIT 100000"
    ),
    exceptions_of_identity: concat!(
        "SELECT ",
        exception_columns!(),
        " FROM exceptions WHERE identity_id = $1 AND expires_at > $2 ORDER BY id LIMIT 100000"
    ),
};

fn sql<D: Dialect>() -> &'static AuthzStatements {
    D::AUTHZ_SQL
}

/// Applies an authorization mutation; every one also bumps the policy-state head.
pub(crate) async fn apply<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    let s = sql::<D>();
    match m {
        Mutation::InsertPolicyVersion(p) => {
            let stmt = Stmt::new(s.insert_policy)
                .text(&p.id)
                .int(p.version)
                .text(&p.source)
                .text(&p.description)
                .flag(p.deleted)
                .time(p.created_at)
                .text(&p.created_by);
            D::exec(conn, stmt).await.map_err(|e| match unique(&e) {
                true => StoreError::Stale(format!("policy {:?}", p.id)),
                false => db_error::<D>(e),
            })?;
        }
        Mutation::InsertException(x) => {
            let stmt = Stmt::new(s.insert_exception)
                .uuid(x.id)
                .uuid(x.identity_id)
                .text(&x.guard_rail)
                .text(&x.requested_by)
                .text(&x.approved_by)
                .text(&x.reason)
                .time(x.created_at)
                .time(x.expires_at);
            D::exec(conn, stmt)
                .await
                .map_err(|e| match classify::<D>(&e) {
                    Some(Failure::Unique(_)) => StoreError::Conflict(format!(
                        "an exception with id {} already exists",
                        x.id
                    )),
                    Some(Failure::ForeignKey) => {
                        StoreError::NotFound(format!("identity {}", x.identity_id))
                    }
                    _ => db_error::<D>(e),
                })?;
        }
        _ => {
            return Err(StoreError::Backend("not an authorization mutation".into()));
        }
    }
    D::exec(conn, Stmt::new(s.bump_head))
        .await
        .map_err(db_error::<D>)?;
    Ok(())
}

fn classify<D: Dialect>(e: &sqlx::Error) -> Option<Failure> {
    match e {
        sqlx::Error::Database(db) => Some(D::classify(db.as_ref())),
        _ => None,
    }
}

fn unique(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Text checks for the authorization mutations (both backends refuse NUL in TEXT alike).
pub(crate) fn check_text_of(m: &Mutation) -> Result<(), StoreError> {
    match m {
        Mutation::InsertPolicyVersion(p) => {
            check_text("policy id", &p.id)?;
            check_text("policy source", &p.source)?;
            check_text("policy description", &p.description)?;
            check_text("policy created_by", &p.created_by)
        }
        Mutation::InsertException(x) => {
            check_text("exception guard_rail", &x.guard_rail)?;
            check_text("exception requested_by", &x.requested_by)?;
            check_text("exception approved_by", &x.approved_by)?;
            check_text("exception reason", &x.reason)
        }
        _ => Ok(()),
    }
}

fn policy<D: Dialect>(row: &Row<D>) -> Result<PolicyRecord, StoreError> {
    let c = Cols::<D>::new(row, "policies");
    Ok(PolicyRecord {
        id: c.text("policy_id")?,
        version: c.int("version")?,
        source: c.text("source")?,
        description: c.text("description")?,
        deleted: c.flag("deleted")?,
        created_at: c.time("created_at")?,
        created_by: c.text("created_by")?,
    })
}

fn exception<D: Dialect>(row: &Row<D>) -> Result<ExceptionRecord, StoreError> {
    let c = Cols::<D>::new(row, "exceptions");
    Ok(ExceptionRecord {
        id: c.uuid("id")?,
        identity_id: c.uuid("identity_id")?,
        guard_rail: c.text("guard_rail")?,
        requested_by: c.text("requested_by")?,
        approved_by: c.text("approved_by")?,
        reason: c.text("reason")?,
        created_at: c.time("created_at")?,
        expires_at: c.time("expires_at")?,
    })
}

pub(crate) async fn head_version<D: Dialect>(conn: &mut Conn<D>) -> Result<i64, StoreError> {
    let row = D::fetch_optional(conn, Stmt::new(sql::<D>().head_version))
        .await
        .map_err(db_error::<D>)?
        .ok_or_else(|| StoreError::Corrupt("policy_head: the head row is missing".into()))?;
    Cols::<D>::new(&row, "policy_head").int("version")
}

pub(crate) async fn current_policies<D: Dialect>(
    conn: &mut Conn<D>,
) -> Result<Vec<PolicyRecord>, StoreError> {
    let rows = D::fetch_all(conn, Stmt::new(sql::<D>().current_policies))
        .await
        .map_err(db_error::<D>)?;
    rows.iter().map(policy::<D>).collect()
}

pub(crate) async fn policy_history<D: Dialect>(
    conn: &mut Conn<D>,
    id: &str,
) -> Result<Vec<PolicyRecord>, StoreError> {
    let rows = D::fetch_all(conn, Stmt::new(sql::<D>().policy_history).text(id))
        .await
        .map_err(db_error::<D>)?;
    rows.iter().map(policy::<D>).collect()
}

pub(crate) async fn list_exceptions<D: Dialect>(
    conn: &mut Conn<D>,
    q: &ExceptionQuery,
) -> Result<Vec<ExceptionRecord>, StoreError> {
    // Without `active_at`, every exception ever recorded (expires_at > the epoch's start).
    let at = q.active_at.map_or(i64::MIN, to_micros);
    let stmt = match q.identity_id {
        Some(id) => Stmt::new(sql::<D>().exceptions_of_identity)
            .uuid(id)
            .int(at),
        None => Stmt::new(sql::<D>().exceptions_all).int(at),
    };
    let rows = D::fetch_all(conn, stmt).await.map_err(db_error::<D>)?;
    rows.iter().map(exception::<D>).collect()
}

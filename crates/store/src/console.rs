//! Web-console storage: operator sessions shared by every node (stored by the hash of their id only),
//! and the read models the console needs — grouped counts, name-prefix search, newest-first audit.

use steward_core::{AuditRecord, Identity, Outcome, to_micros};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Arg, Conn, Dialect, Failure, Row, SqlBuilder, Stmt, identity_columns};
use crate::ops::{check_text, db_error};
use crate::rows::{self, Cols};
use crate::{AuditQuery, IdentityQuery, Mutation, Page, StoreError};

/// A signed-in console operator's session. The session id itself is never stored: only its keyed
/// hash, so a copy of the database cannot be turned into a working session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Keyed hash (HMAC-SHA256 under a server key) of the session id in the cookie.
    pub id_hash: [u8; 32],
    /// The admin identity that signed in (the actor of everything done in the session).
    pub identity_id: Uuid,
    /// The credential it signed in with; the session ends when that credential stops working.
    pub credential_id: Uuid,
    pub created_at: OffsetDateTime,
    /// Last request seen (recorded at most about once a minute).
    pub last_seen_at: OffsetDateTime,
    /// The session ends at this instant unless a request extends it (idle timeout).
    pub idle_expires_at: OffsetDateTime,
    /// The session ends at this instant whatever happens (absolute timeout).
    pub expires_at: OffsetDateTime,
    /// Source address of the sign-in.
    pub source: Option<String>,
}

impl ConsoleSession {
    /// Whether neither timeout has passed at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }
}

/// Number of identities with one (effective status, kind, environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityStat {
    /// Effective status: `expired` for a live identity past its expiry.
    pub status: String,
    pub kind: String,
    pub environment: String,
    pub count: u64,
}

/// Number of findings with one (type, severity, OWASP NHI id, status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingStat {
    pub kind: String,
    pub severity: String,
    pub owasp_nhi: String,
    pub status: String,
    pub count: u64,
}

/// An inventory search: the filters of [`IdentityQuery`] plus a name prefix matched on an index.
#[derive(Debug, Clone)]
pub struct IdentitySearch {
    pub filter: IdentityQuery,
    /// Names starting with exactly this text (names are lowercase ASCII; compared byte-wise).
    pub name_prefix: Option<String>,
    /// Risk score within this inclusive range (an identity never scored counts as 0).
    pub risk: Option<(u8, u8)>,
}

struct ConsoleStatements {
    insert_session: &'static str,
    touch_session: &'static str,
    delete_session: &'static str,
    purge_sessions: &'static str,
    get_session: &'static str,
    identity_stats: &'static str,
    finding_stats: &'static str,
    audit_seq_at: &'static str,
    count_audit_action: &'static str,
    count_audit_action_outcome: &'static str,
    /// `AND name >= ? AND name < ?` in byte order.
    name_from: &'static str,
    name_to: &'static str,
}

macro_rules! session_columns {
    () => {
        "id_hash, identity_id, credential_id, created_at, last_seen_at, idle_expires_at, expires_at, source"
    };
}

static SQLITE: ConsoleStatements = ConsoleStatements {
    insert_session: concat!(
        "INSERT INTO console_sessions (",
        session_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    touch_session: "UPDATE console_sessions SET last_seen_at = ?, idle_expires_at = ? \
                    WHERE id_hash = ? AND last_seen_at < ?",
    delete_session: "DELETE FROM console_sessions WHERE id_hash = ?",
    purge_sessions: "DELETE FROM console_sessions WHERE expires_at <= ? OR idle_expires_at <= ?",
    get_session: concat!(
        "SELECT ",
        session_columns!(),
        " FROM console_sessions WHERE id_hash = ?"
    ),
    identity_stats: "SELECT CASE WHEN status <> 'retired' AND expires_at <= ? THEN 'expired' ELSE status END \
                     AS status, kind, environment, COUNT(*) AS n FROM identities GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    finding_stats: "SELECT type, severity, owasp_nhi, status, COUNT(*) AS n FROM findings \
                    GROUP BY type, severity, owasp_nhi, status ORDER BY 1, 2, 3, 4",
    audit_seq_at: "SELECT seq FROM audit WHERE time_us >= ? ORDER BY time_us, seq LIMIT 1",
    count_audit_action: "SELECT COUNT(*) AS n FROM audit WHERE action = ? AND seq >= ? AND seq < ?",
    count_audit_action_outcome: "SELECT COUNT(*) AS n FROM audit WHERE action = ? AND seq >= ? AND seq < ? \
                                 AND outcome = ?",
    name_from: " AND name >= ",
    name_to: " AND name < ",
};

static POSTGRES: ConsoleStatements = ConsoleStatements {
    insert_session: concat!(
        "INSERT INTO console_sessions (",
        session_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ),
    touch_session: "UPDATE console_sessions SET last_seen_at = $1, idle_expires_at = $2 \
                    WHERE id_hash = $3 AND last_seen_at < $4",
    delete_session: "DELETE FROM console_sessions WHERE id_hash = $1",
    purge_sessions: "DELETE FROM console_sessions WHERE expires_at <= $1 OR idle_expires_at <= $2",
    get_session: concat!(
        "SELECT ",
        session_columns!(),
        " FROM console_sessions WHERE id_hash = $1"
    ),
    identity_stats: "SELECT CASE WHEN status <> 'retired' AND expires_at <= $1 THEN 'expired' ELSE status END \
                     AS status, kind, environment, COUNT(*) AS n FROM identities GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    finding_stats: "SELECT type, severity, owasp_nhi, status, COUNT(*) AS n FROM findings \
                    GROUP BY type, severity, owasp_nhi, status ORDER BY 1, 2, 3, 4",
    audit_seq_at: "SELECT seq FROM audit WHERE time_us >= $1 ORDER BY time_us, seq LIMIT 1",
    count_audit_action: "SELECT COUNT(*) AS n FROM audit WHERE action = $1 AND seq >= $2 AND seq < $3",
    count_audit_action_outcome: "SELECT COUNT(*) AS n FROM audit WHERE action = $1 AND seq >= $2 AND seq < $3 \
                                 AND outcome = $4",
    // Byte order whatever the database's collation, matching the index on (name COLLATE "C").
    name_from: " AND name COLLATE \"C\" >= ",
    name_to: " AND name COLLATE \"C\" < ",
};

fn sql<D: Dialect>() -> &'static ConsoleStatements {
    if D::NAME == "postgres" {
        &POSTGRES
    } else {
        &SQLITE
    }
}

/// Applies a console mutation inside the writer's transaction.
pub(crate) async fn apply<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    let s = sql::<D>();
    match m {
        Mutation::InsertConsoleSession(c) => {
            let stmt = Stmt::new(s.insert_session)
                .bytes(&c.id_hash)
                .uuid(c.identity_id)
                .uuid(c.credential_id)
                .time(c.created_at)
                .time(c.last_seen_at)
                .time(c.idle_expires_at)
                .time(c.expires_at)
                .opt_text(c.source.as_deref());
            D::exec(conn, stmt).await.map_err(|e| match &e {
                sqlx::Error::Database(db) => match D::classify(db.as_ref()) {
                    Failure::Unique(_) => {
                        StoreError::Conflict("a console session with this id exists".into())
                    }
                    Failure::ForeignKey => {
                        StoreError::NotFound(format!("identity {}", c.identity_id))
                    }
                    _ => db_error::<D>(e),
                },
                _ => db_error::<D>(e),
            })?;
        }
        Mutation::TouchConsoleSession {
            id_hash,
            last_seen_at,
            idle_expires_at,
        } => {
            let stmt = Stmt::new(s.touch_session)
                .time(*last_seen_at)
                .time(*idle_expires_at)
                .bytes(id_hash)
                .time(*last_seen_at);
            D::exec(conn, stmt).await.map_err(db_error::<D>)?;
        }
        Mutation::DeleteConsoleSession { id_hash } => {
            D::exec(conn, Stmt::new(s.delete_session).bytes(id_hash))
                .await
                .map_err(db_error::<D>)?;
        }
        Mutation::PurgeConsoleSessions { now } => {
            D::exec(conn, Stmt::new(s.purge_sessions).time(*now).time(*now))
                .await
                .map_err(db_error::<D>)?;
        }
        _ => return Err(StoreError::Backend("not a console mutation".into())),
    }
    Ok(())
}

/// Text checks for the console mutations.
pub(crate) fn check_text_of(m: &Mutation) -> Result<(), StoreError> {
    match m {
        Mutation::InsertConsoleSession(c) => c
            .source
            .as_deref()
            .map_or(Ok(()), |s| check_text("console session source", s)),
        _ => Ok(()),
    }
}

fn session<D: Dialect>(row: &Row<D>) -> Result<ConsoleSession, StoreError> {
    let c = Cols::<D>::new(row, "console_sessions");
    Ok(ConsoleSession {
        id_hash: c.hash("id_hash")?,
        identity_id: c.uuid("identity_id")?,
        credential_id: c.uuid("credential_id")?,
        created_at: c.time("created_at")?,
        last_seen_at: c.time("last_seen_at")?,
        idle_expires_at: c.time("idle_expires_at")?,
        expires_at: c.time("expires_at")?,
        source: c.opt_text("source")?,
    })
}

pub(crate) async fn get_session<D: Dialect>(
    conn: &mut Conn<D>,
    id_hash: &[u8],
) -> Result<Option<ConsoleSession>, StoreError> {
    D::fetch_optional(conn, Stmt::new(sql::<D>().get_session).bytes(id_hash))
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(session::<D>)
        .transpose()
}

pub(crate) async fn identity_stats<D: Dialect>(
    conn: &mut Conn<D>,
    now: OffsetDateTime,
) -> Result<Vec<IdentityStat>, StoreError> {
    let rows = D::fetch_all(conn, Stmt::new(sql::<D>().identity_stats).time(now))
        .await
        .map_err(db_error::<D>)?;
    rows.iter()
        .map(|row| {
            let c = Cols::<D>::new(row, "identities");
            Ok(IdentityStat {
                status: c.text("status")?,
                kind: c.text("kind")?,
                environment: c.text("environment")?,
                count: c.unsigned("n")?,
            })
        })
        .collect()
}

pub(crate) async fn finding_stats<D: Dialect>(
    conn: &mut Conn<D>,
) -> Result<Vec<FindingStat>, StoreError> {
    let rows = D::fetch_all(conn, Stmt::new(sql::<D>().finding_stats))
        .await
        .map_err(db_error::<D>)?;
    rows.iter()
        .map(|row| {
            let c = Cols::<D>::new(row, "findings");
            Ok(FindingStat {
                kind: c.text("type")?,
                severity: c.text("severity")?,
                owasp_nhi: c.text("owasp_nhi")?,
                status: c.text("status")?,
                count: c.unsigned("n")?,
            })
        })
        .collect()
}

pub(crate) async fn search_identities<D: Dialect>(
    conn: &mut Conn<D>,
    q: &IdentitySearch,
) -> Result<Page<Identity>, StoreError> {
    let s = sql::<D>();
    let size = crate::engine::page_size(q.filter.limit);
    let mut b = SqlBuilder::<D>::new(concat!(
        "SELECT ",
        identity_columns!(),
        " FROM identities WHERE 1 = 1"
    ));
    crate::engine::identity_filters(&mut b, &q.filter);
    if let Some(prefix) = q.name_prefix.as_deref().filter(|p| !p.is_empty()) {
        b.sql(s.name_from).arg(Arg::text(prefix));
        if let Some(to) = crate::engine::prefix_successor(prefix) {
            b.sql(s.name_to).arg(Arg::owned(to));
        }
    }
    match q.risk {
        // Unscored identities have score 0: the lowest band is "nothing scored above it".
        Some((0, hi)) => {
            b.sql(" AND NOT EXISTS (SELECT 1 FROM identity_risk r WHERE r.identity_id = identities.id AND r.score > ")
                .arg(Arg::int(i64::from(hi)))
                .sql(")");
        }
        Some((lo, hi)) => {
            b.sql(" AND EXISTS (SELECT 1 FROM identity_risk r WHERE r.identity_id = identities.id AND r.score >= ")
                .arg(Arg::int(i64::from(lo)))
                .sql(" AND r.score <= ")
                .arg(Arg::int(i64::from(hi)))
                .sql(")");
        }
        None => {}
    }
    if let Some(after) = q.filter.after {
        b.sql(" AND id > ").arg(Arg::uuid(after));
    }
    b.sql(" ORDER BY id LIMIT ")
        .arg(Arg::int(i64::from(size) + 1));
    let rows = D::fetch_all(conn, b.build()).await.map_err(db_error::<D>)?;
    let items = rows
        .iter()
        .map(rows::identity::<D>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::engine::finish_page(items, size, |i| {
        i.id.to_string()
    }))
}

pub(crate) async fn audit_recent<D: Dialect>(
    conn: &mut Conn<D>,
    q: &AuditQuery,
    before_seq: Option<u64>,
) -> Result<Page<AuditRecord>, StoreError> {
    let size = crate::engine::page_size(q.limit);
    let items = crate::engine::audit_page::<D>(conn, q, before_seq, true, size).await?;
    Ok(crate::engine::finish_page(items, size, |r| {
        r.seq.to_string()
    }))
}

pub(crate) async fn audit_seq_at<D: Dialect>(
    conn: &mut Conn<D>,
    at: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    D::fetch_optional(conn, Stmt::new(sql::<D>().audit_seq_at).int(to_micros(at)))
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(|row| Cols::<D>::new(row, "audit").unsigned("seq"))
        .transpose()
}

pub(crate) async fn count_audit_action<D: Dialect>(
    conn: &mut Conn<D>,
    action: &str,
    outcome: Option<Outcome>,
    from_seq: u64,
    to_seq: u64,
) -> Result<u64, StoreError> {
    if to_seq <= from_seq {
        return Ok(0);
    }
    let s = sql::<D>();
    let mut stmt = Stmt::new(match outcome {
        None => s.count_audit_action,
        Some(_) => s.count_audit_action_outcome,
    })
    .text(action)
    .int(saturating_i64(from_seq))
    .int(saturating_i64(to_seq));
    if let Some(o) = outcome {
        stmt = stmt.text(o.as_str());
    }
    let n = D::fetch_optional(conn, stmt)
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(|row| Cols::<D>::new(row, "audit").unsigned("n"))
        .transpose()?;
    Ok(n.unwrap_or(0))
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

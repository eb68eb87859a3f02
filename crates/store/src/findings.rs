//! Findings storage: risks raised on identities (leaked secrets first; governance checks extend
//! it), mapped to OWASP NHI Top 10 and NIST CSF — the record, both backends' SQL, mutations, reads.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Arg, Conn, Dialect, Failure, Row, SqlBuilder, Stmt};
use crate::ops::{check_text, db_error};
use crate::rows::{Cols, to_json};
use crate::{Mutation, Page, StoreError};

/// Where a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingStatus {
    Open,
    Resolved,
    /// Accepted risk (an approved exception).
    Accepted,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Accepted => "accepted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "resolved" => Some(Self::Resolved),
            "accepted" => Some(Self::Accepted),
            _ => None,
        }
    }
}

/// One finding. At most one finding per `dedup_key` is open at a time (a unique rule).
#[derive(Debug, Clone, PartialEq)]
pub struct FindingRecord {
    pub id: Uuid,
    /// The identity at risk (none for findings about the deployment itself).
    pub identity_id: Option<Uuid>,
    /// What was found, e.g. `secret_leaked`.
    pub kind: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    pub status: FindingStatus,
    /// OWASP Non-Human Identities Top 10 id, e.g. `NHI2:2025`.
    pub owasp_nhi: String,
    /// NIST CSF 2.0 outcome, `PR.AA-01` … `PR.AA-05`.
    pub nist_csf: String,
    /// What supports the finding (never a secret).
    pub evidence: serde_json::Value,
    /// Identifies "the same finding" across detections, e.g. `secret_leaked:credential:<id>`.
    pub dedup_key: String,
    pub first_seen: OffsetDateTime,
    pub last_seen: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub version: i64,
}

/// Queries over findings, in id (creation) order.
#[derive(Debug, Clone, Default)]
pub struct FindingQuery {
    pub identity_id: Option<Uuid>,
    pub status: Option<FindingStatus>,
    pub kind: Option<String>,
    pub dedup_key: Option<String>,
    /// Cursor: findings with id greater than this.
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

struct FindingStatements {
    insert: &'static str,
    update: &'static str,
    version: &'static str,
    get: &'static str,
    list_head: &'static str,
}

macro_rules! finding_columns {
    () => {
        "id, identity_id, type, severity, status, owasp_nhi, nist_csf, evidence, dedup_key, \
         first_seen, last_seen, resolved_at, version"
    };
}

static SQLITE: FindingStatements = FindingStatements {
    insert: concat!(
        "INSERT INTO findings (",
        finding_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update: "UPDATE findings SET identity_id = ?, type = ?, severity = ?, status = ?, owasp_nhi = ?, \
             nist_csf = ?, evidence = ?, dedup_key = ?, first_seen = ?, last_seen = ?, resolved_at = ?, \
             version = ? WHERE id = ? AND version = ?",
    version: "SELECT version FROM findings WHERE id = ?",
    get: concat!("SELECT ", finding_columns!(), " FROM findings WHERE id = ?"),
    list_head: concat!("SELECT ", finding_columns!(), " FROM findings WHERE 1 = 1"),
};

static POSTGRES: FindingStatements = FindingStatements {
    insert: concat!(
        "INSERT INTO findings (",
        finding_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ),
    update: "UPDATE findings SET identity_id = $1, type = $2, severity = $3, status = $4, owasp_nhi = $5, \
             nist_csf = $6, evidence = $7, dedup_key = $8, first_seen = $9, last_seen = $10, \
             resolved_at = $11, version = $12 WHERE id = $13 AND version = $14",
    version: "SELECT version FROM findings WHERE id = $1",
    get: concat!(
        "SELECT ",
        finding_columns!(),
        " FROM findings WHERE id = $1"
    ),
    list_head: concat!("SELECT ", finding_columns!(), " FROM findings WHERE 1 = 1"),
};

fn sql<D: Dialect>() -> &'static FindingStatements {
    if D::NAME == "postgres" {
        &POSTGRES
    } else {
        &SQLITE
    }
}

fn fields<'a>(s: Stmt<'a>, f: &'a FindingRecord) -> Result<Stmt<'a>, StoreError> {
    Ok(s.opt_uuid(f.identity_id)
        .text(&f.kind)
        .text(&f.severity)
        .text(f.status.as_str())
        .text(&f.owasp_nhi)
        .text(&f.nist_csf)
        .owned_text(to_json("finding evidence", &f.evidence)?)
        .text(&f.dedup_key)
        .time(f.first_seen)
        .time(f.last_seen)
        .opt_time(f.resolved_at)
        .int(f.version))
}

fn write_error<D: Dialect>(e: sqlx::Error, f: &FindingRecord) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match D::classify(db.as_ref()) {
            Failure::Unique(_) => StoreError::Conflict(format!(
                "an open finding {:?} already exists (or finding {} does)",
                f.dedup_key, f.id
            )),
            Failure::ForeignKey => StoreError::NotFound(format!(
                "identity {}",
                f.identity_id.map(|i| i.to_string()).unwrap_or_default()
            )),
            _ => db_error::<D>(e),
        },
        _ => db_error::<D>(e),
    }
}

/// Applies a finding mutation inside the writer's transaction.
pub(crate) async fn apply<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    let s = sql::<D>();
    match m {
        Mutation::InsertFinding(f) => {
            let stmt = fields(Stmt::new(s.insert).uuid(f.id), f)?;
            D::exec(conn, stmt)
                .await
                .map_err(|e| write_error::<D>(e, f))?;
        }
        Mutation::UpdateFinding {
            finding: f,
            expected_version,
        } => {
            let stmt = fields(Stmt::new(s.update), f)?
                .uuid(f.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt)
                .await
                .map_err(|e| write_error::<D>(e, f))?;
            if n == 0 {
                return Err(
                    match D::fetch_optional(conn, Stmt::new(s.version).uuid(f.id)).await {
                        Ok(Some(_)) => StoreError::Stale(format!("finding {}", f.id)),
                        Ok(None) => StoreError::NotFound(format!("finding {}", f.id)),
                        Err(e) => db_error::<D>(e),
                    },
                );
            }
        }
        _ => return Err(StoreError::Backend("not a finding mutation".into())),
    }
    Ok(())
}

/// Text checks for the finding mutations.
pub(crate) fn check_text_of(m: &Mutation) -> Result<(), StoreError> {
    match m {
        Mutation::InsertFinding(f) | Mutation::UpdateFinding { finding: f, .. } => {
            check_text("finding type", &f.kind)?;
            check_text("finding severity", &f.severity)?;
            check_text("finding owasp_nhi", &f.owasp_nhi)?;
            check_text("finding nist_csf", &f.nist_csf)?;
            check_text("finding dedup_key", &f.dedup_key)
        }
        _ => Ok(()),
    }
}

fn record<D: Dialect>(row: &Row<D>) -> Result<FindingRecord, StoreError> {
    let c = Cols::<D>::new(row, "findings");
    let status = c.text("status")?;
    Ok(FindingRecord {
        id: c.uuid("id")?,
        identity_id: c.opt_uuid("identity_id")?,
        kind: c.text("type")?,
        severity: c.text("severity")?,
        status: FindingStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("findings.status: unknown value {status:?}"))
        })?,
        owasp_nhi: c.text("owasp_nhi")?,
        nist_csf: c.text("nist_csf")?,
        evidence: c.json("evidence")?,
        dedup_key: c.text("dedup_key")?,
        first_seen: c.time("first_seen")?,
        last_seen: c.time("last_seen")?,
        resolved_at: c.opt_time("resolved_at")?,
        version: c.int("version")?,
    })
}

pub(crate) async fn get<D: Dialect>(
    conn: &mut Conn<D>,
    id: Uuid,
) -> Result<Option<FindingRecord>, StoreError> {
    D::fetch_optional(conn, Stmt::new(sql::<D>().get).uuid(id))
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(record::<D>)
        .transpose()
}

pub(crate) async fn list<D: Dialect>(
    conn: &mut Conn<D>,
    q: &FindingQuery,
) -> Result<Page<FindingRecord>, StoreError> {
    let size = crate::engine::page_size(q.limit);
    let mut b = SqlBuilder::<D>::new(sql::<D>().list_head);
    if let Some(i) = q.identity_id {
        b.sql(" AND identity_id = ").arg(Arg::uuid(i));
    }
    if let Some(s) = q.status {
        b.sql(" AND status = ").arg(Arg::text(s.as_str()));
    }
    if let Some(k) = &q.kind {
        b.sql(" AND type = ").arg(Arg::text(k));
    }
    if let Some(k) = &q.dedup_key {
        b.sql(" AND dedup_key = ").arg(Arg::text(k));
    }
    if let Some(a) = q.after {
        b.sql(" AND id > ").arg(Arg::uuid(a));
    }
    b.sql(" ORDER BY id LIMIT ")
        .arg(Arg::int(i64::from(size) + 1));
    let rows = D::fetch_all(conn, b.build()).await.map_err(db_error::<D>)?;
    let items = rows
        .iter()
        .map(record::<D>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::engine::finish_page(items, size, |f| {
        f.id.to_string()
    }))
}

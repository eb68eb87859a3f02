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
    /// For `accepted` findings: until when the risk is accepted (the findings job reopens it after).
    pub accepted_until: Option<OffsetDateTime>,
    /// Why the risk was accepted (or the exception that waives it).
    pub accepted_reason: Option<String>,
    /// Who accepted it.
    pub accepted_by: Option<String>,
}

/// Queries over findings, in id (creation) order.
#[derive(Debug, Clone, Default)]
pub struct FindingQuery {
    pub identity_id: Option<Uuid>,
    pub status: Option<FindingStatus>,
    pub kind: Option<String>,
    pub dedup_key: Option<String>,
    pub severity: Option<String>,
    /// OWASP NHI id, e.g. `NHI5:2025`.
    pub owasp_nhi: Option<String>,
    /// NIST CSF id, e.g. `PR.AA-05`.
    pub nist_csf: Option<String>,
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
         first_seen, last_seen, resolved_at, version, accepted_until, accepted_reason, accepted_by"
    };
}

static SQLITE: FindingStatements = FindingStatements {
    insert: concat!(
        "INSERT INTO findings (",
        finding_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update: "UPDATE findings SET identity_id = ?, type = ?, severity = ?, status = ?, owasp_nhi = ?, \
             nist_csf = ?, evidence = ?, dedup_key = ?, first_seen = ?, last_seen = ?, resolved_at = ?, \
             version = ?, accepted_until = ?, accepted_reason = ?, accepted_by = ? WHERE id = ? AND version = ?",
    version: "SELECT version FROM findings WHERE id = ?",
    get: concat!("SELECT ", finding_columns!(), " FROM findings WHERE id = ?"),
    list_head: concat!("SELECT ", finding_columns!(), " FROM findings WHERE 1 = 1"),
};

static POSTGRES: FindingStatements = FindingStatements {
    insert: concat!(
        "INSERT INTO findings (",
        finding_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ),
    update: "UPDATE findings SET identity_id = $1, type = $2, severity = $3, status = $4, owasp_nhi = $5, \
             nist_csf = $6, evidence = $7, dedup_key = $8, first_seen = $9, last_seen = $10, \
             resolved_at = $11, version = $12, accepted_until = $13, accepted_reason = $14, \
             accepted_by = $15 WHERE id = $16 AND version = $17",
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
        .int(f.version)
        .opt_time(f.accepted_until)
        .opt_text(f.accepted_reason.as_deref())
        .opt_text(f.accepted_by.as_deref()))
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

/// New findings per multi-row insert (16 binds each: far below both backends' limits).
pub(crate) const INSERT_ROWS: usize = 256;

/// Inserts consecutive new findings of one change with one statement (inside the writer's
/// transaction: all or none).
pub(crate) async fn insert_many<D: Dialect>(
    conn: &mut Conn<D>,
    findings: &[&FindingRecord],
) -> Result<(), StoreError> {
    let Some(first) = findings.first() else {
        return Ok(());
    };
    let rows = findings
        .iter()
        .map(|f| fields(Stmt::new("").uuid(f.id), f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut b = SqlBuilder::<D>::new(concat!(
        "INSERT INTO findings (",
        finding_columns!(),
        ") VALUES "
    ));
    b.values_rows(rows);
    D::exec(conn, b.build())
        .await
        .map_err(|e| write_error::<D>(e, first))?;
    Ok(())
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
            check_text("finding dedup_key", &f.dedup_key)?;
            if let Some(r) = &f.accepted_reason {
                check_text("finding accepted_reason", r)?;
            }
            if let Some(b) = &f.accepted_by {
                check_text("finding accepted_by", b)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(crate) fn record<D: Dialect>(row: &Row<D>) -> Result<FindingRecord, StoreError> {
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
        accepted_until: c.opt_time("accepted_until")?,
        accepted_reason: c.opt_text("accepted_reason")?,
        accepted_by: c.opt_text("accepted_by")?,
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
    if let Some(v) = &q.severity {
        b.sql(" AND severity = ").arg(Arg::text(v));
    }
    if let Some(v) = &q.owasp_nhi {
        b.sql(" AND owasp_nhi = ").arg(Arg::text(v));
    }
    if let Some(v) = &q.nist_csf {
        b.sql(" AND nist_csf = ").arg(Arg::text(v));
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

/// Open and accepted findings of the identities with ids in `[first, last]`, by identity, then id.
pub(crate) async fn live_between<D: Dialect>(
    conn: &mut Conn<D>,
    first: Uuid,
    last: Uuid,
) -> Result<Vec<FindingRecord>, StoreError> {
    // SQLite's planner (without statistics) would rather walk every open finding through the
    // status index and sort them, for each page of identities: name the identity index.
    let mut b = SqlBuilder::<D>::new(if D::NAME == "sqlite" {
        concat!(
            "SELECT ",
            finding_columns!(),
            " FROM findings INDEXED BY findings_identity_id_idx WHERE identity_id >= "
        )
    } else {
        concat!(
            "SELECT ",
            finding_columns!(),
            " FROM findings WHERE identity_id >= "
        )
    });
    b.arg(Arg::uuid(first))
        .sql(" AND identity_id <= ")
        .arg(Arg::uuid(last))
        .sql(" AND status IN ('open', 'accepted') ORDER BY identity_id, id");
    let rows = D::fetch_all(conn, b.build()).await.map_err(db_error::<D>)?;
    rows.iter().map(record::<D>).collect()
}

/// How many findings share one (type, severity, status, OWASP id, NIST id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingCount {
    pub kind: String,
    pub severity: String,
    pub status: FindingStatus,
    pub owasp_nhi: String,
    pub nist_csf: String,
    pub count: u64,
}

pub(crate) async fn counts<D: Dialect>(
    conn: &mut Conn<D>,
) -> Result<Vec<FindingCount>, StoreError> {
    let stmt = Stmt::new(
        "SELECT type, severity, status, owasp_nhi, nist_csf, COUNT(*) AS n FROM findings \
         GROUP BY type, severity, status, owasp_nhi, nist_csf ORDER BY type, severity, status",
    );
    let rows = D::fetch_all(conn, stmt).await.map_err(db_error::<D>)?;
    rows.iter()
        .map(|row| {
            let c = Cols::<D>::new(row, "findings");
            let status = c.text("status")?;
            Ok(FindingCount {
                kind: c.text("type")?,
                severity: c.text("severity")?,
                status: FindingStatus::parse(&status).ok_or_else(|| {
                    StoreError::Corrupt(format!("findings.status: unknown value {status:?}"))
                })?,
                owasp_nhi: c.text("owasp_nhi")?,
                nist_csf: c.text("nist_csf")?,
                count: c.unsigned("n")?,
            })
        })
        .collect()
}

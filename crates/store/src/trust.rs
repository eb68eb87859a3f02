//! Trust-policy storage (federation): the record, both backends' SQL, the mutations and reads.
//! The policy document is opaque JSON here; `steward_core::trust` validates and compiles it.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Arg, Conn, Dialect, Failure, Row, SqlBuilder, Stmt};
use crate::ops::{check_text, db_error};
use crate::rows::{Cols, to_json};
use crate::{Mutation, Page, StoreError};

/// One stored trust policy. `name`, `issuer` and `identity_id` repeat fields of `document`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustPolicyRecord {
    pub id: Uuid,
    /// Unique among trust policies.
    pub name: String,
    /// The exact `iss` the policy accepts (the token path looks policies up by it).
    pub issuer: String,
    /// The identity accepted tokens are exchanged for.
    pub identity_id: Uuid,
    /// The full policy document (`steward_core::trust::TrustPolicySpec` as JSON).
    pub document: serde_json::Value,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Optimistic-concurrency version, bumped on every update.
    pub version: i64,
}

/// Queries over trust policies, in id (creation) order.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicyQuery {
    pub issuer: Option<String>,
    pub identity_id: Option<Uuid>,
    /// Cursor: policies with id greater than this.
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

struct TrustStatements {
    insert: &'static str,
    update: &'static str,
    delete: &'static str,
    version: &'static str,
    get: &'static str,
    list_head: &'static str,
}

macro_rules! trust_columns {
    () => {
        "id, name, issuer, identity_id, document, created_by, created_at, updated_at, version"
    };
}

static SQLITE: TrustStatements = TrustStatements {
    insert: concat!(
        "INSERT INTO trust_policies (",
        trust_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update: "UPDATE trust_policies SET name = ?, issuer = ?, identity_id = ?, document = ?, created_by = ?, \
             created_at = ?, updated_at = ?, version = ? WHERE id = ? AND version = ?",
    delete: "DELETE FROM trust_policies WHERE id = ? AND version = ?",
    version: "SELECT version FROM trust_policies WHERE id = ?",
    get: concat!(
        "SELECT ",
        trust_columns!(),
        " FROM trust_policies WHERE id = ?"
    ),
    list_head: concat!(
        "SELECT ",
        trust_columns!(),
        " FROM trust_policies WHERE 1 = 1"
    ),
};

static POSTGRES: TrustStatements = TrustStatements {
    insert: concat!(
        "INSERT INTO trust_policies (",
        trust_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ),
    update: "UPDATE trust_policies SET name = $1, issuer = $2, identity_id = $3, document = $4, \
             created_by = $5, created_at = $6, updated_at = $7, version = $8 WHERE id = $9 AND version = $10",
    delete: "DELETE FROM trust_policies WHERE id = $1 AND version = $2",
    version: "SELECT version FROM trust_policies WHERE id = $1",
    get: concat!(
        "SELECT ",
        trust_columns!(),
        " FROM trust_policies WHERE id = $1"
    ),
    list_head: concat!(
        "SELECT ",
        trust_columns!(),
        " FROM trust_policies WHERE 1 = 1"
    ),
};

fn sql<D: Dialect>() -> &'static TrustStatements {
    if D::NAME == "postgres" {
        &POSTGRES
    } else {
        &SQLITE
    }
}

fn fields<'a>(s: Stmt<'a>, p: &'a TrustPolicyRecord) -> Result<Stmt<'a>, StoreError> {
    Ok(s.text(&p.name)
        .text(&p.issuer)
        .uuid(p.identity_id)
        .owned_text(to_json("trust policy document", &p.document)?)
        .text(&p.created_by)
        .time(p.created_at)
        .time(p.updated_at)
        .int(p.version))
}

fn write_error<D: Dialect>(e: sqlx::Error, p: &TrustPolicyRecord) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match D::classify(db.as_ref()) {
            Failure::Unique(_) => {
                StoreError::Conflict(format!("a trust policy named {:?} already exists", p.name))
            }
            Failure::ForeignKey => StoreError::NotFound(format!("identity {}", p.identity_id)),
            _ => db_error::<D>(e),
        },
        _ => db_error::<D>(e),
    }
}

async fn stale_or_missing<D: Dialect>(conn: &mut Conn<D>, id: Uuid) -> StoreError {
    match D::fetch_optional(conn, Stmt::new(sql::<D>().version).uuid(id)).await {
        Ok(Some(_)) => StoreError::Stale(format!("trust policy {id}")),
        Ok(None) => StoreError::NotFound(format!("trust policy {id}")),
        Err(e) => db_error::<D>(e),
    }
}

/// Applies a trust-policy mutation inside the writer's transaction.
pub(crate) async fn apply<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    let s = sql::<D>();
    match m {
        Mutation::InsertTrustPolicy(p) => {
            let stmt = fields(Stmt::new(s.insert).uuid(p.id), p)?;
            D::exec(conn, stmt)
                .await
                .map_err(|e| write_error::<D>(e, p))?;
        }
        Mutation::UpdateTrustPolicy {
            policy: p,
            expected_version,
        } => {
            let stmt = fields(Stmt::new(s.update), p)?
                .uuid(p.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt)
                .await
                .map_err(|e| write_error::<D>(e, p))?;
            if n == 0 {
                return Err(stale_or_missing::<D>(conn, p.id).await);
            }
        }
        Mutation::DeleteTrustPolicy {
            id,
            expected_version,
        } => {
            let stmt = Stmt::new(s.delete).uuid(*id).int(*expected_version);
            if D::exec(conn, stmt).await.map_err(db_error::<D>)? == 0 {
                return Err(stale_or_missing::<D>(conn, *id).await);
            }
        }
        _ => return Err(StoreError::Backend("not a trust policy mutation".into())),
    }
    Ok(())
}

/// Text checks for the trust-policy mutations.
pub(crate) fn check_text_of(m: &Mutation) -> Result<(), StoreError> {
    match m {
        Mutation::InsertTrustPolicy(p) | Mutation::UpdateTrustPolicy { policy: p, .. } => {
            check_text("trust policy name", &p.name)?;
            check_text("trust policy issuer", &p.issuer)?;
            check_text("trust policy created_by", &p.created_by)
        }
        _ => Ok(()),
    }
}

fn record<D: Dialect>(row: &Row<D>) -> Result<TrustPolicyRecord, StoreError> {
    let c = Cols::<D>::new(row, "trust_policies");
    Ok(TrustPolicyRecord {
        id: c.uuid("id")?,
        name: c.text("name")?,
        issuer: c.text("issuer")?,
        identity_id: c.uuid("identity_id")?,
        document: c.json("document")?,
        created_by: c.text("created_by")?,
        created_at: c.time("created_at")?,
        updated_at: c.time("updated_at")?,
        version: c.int("version")?,
    })
}

pub(crate) async fn get<D: Dialect>(
    conn: &mut Conn<D>,
    id: Uuid,
) -> Result<Option<TrustPolicyRecord>, StoreError> {
    D::fetch_optional(conn, Stmt::new(sql::<D>().get).uuid(id))
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(record::<D>)
        .transpose()
}

pub(crate) async fn list<D: Dialect>(
    conn: &mut Conn<D>,
    q: &TrustPolicyQuery,
) -> Result<Page<TrustPolicyRecord>, StoreError> {
    let size = crate::engine::page_size(q.limit);
    let mut b = SqlBuilder::<D>::new(sql::<D>().list_head);
    if let Some(i) = &q.issuer {
        b.sql(" AND issuer = ").arg(Arg::text(i));
    }
    if let Some(i) = q.identity_id {
        b.sql(" AND identity_id = ").arg(Arg::uuid(i));
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
    Ok(crate::engine::finish_page(items, size, |p| {
        p.id.to_string()
    }))
}

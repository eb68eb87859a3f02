//! PKI storage: CA certificates with sealed keys, device CAs, device mapping rules and the
//! certificate serial deny-list, as typed JSON records of one `pki_objects` table (both backends).

use time::OffsetDateTime;

use crate::dialect::{Conn, Dialect, Failure, Row, Stmt};
use crate::ops::{check_text, db_error};
use crate::rows::{Cols, to_json};
use crate::{Mutation, StoreError};

/// One PKI record. `kind` names the record type (`ca`, `device_ca`, `device_rule`,
/// `revoked_serial`); `body` is its JSON, owned and validated by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct PkiObject {
    pub kind: String,
    pub id: String,
    pub body: serde_json::Value,
    pub created_at: OffsetDateTime,
    /// After this instant the record is dead weight and may be purged (deny-list entries expire
    /// with the certificate they name).
    pub expires_at: Option<OffsetDateTime>,
}

struct PkiStatements {
    upsert: &'static str,
    insert: &'static str,
    delete: &'static str,
    list: &'static str,
}

static SQLITE: PkiStatements = PkiStatements {
    upsert: "INSERT INTO pki_objects (kind, id, body, created_at, expires_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at",
    insert: "INSERT INTO pki_objects (kind, id, body, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    delete: "DELETE FROM pki_objects WHERE kind = ? AND id = ?",
    list: "SELECT kind, id, body, created_at, expires_at FROM pki_objects WHERE kind = ? \
           ORDER BY created_at, id LIMIT 100000",
};

static POSTGRES: PkiStatements = PkiStatements {
    upsert: "INSERT INTO pki_objects (kind, id, body, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at",
    insert: "INSERT INTO pki_objects (kind, id, body, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    delete: "DELETE FROM pki_objects WHERE kind = $1 AND id = $2",
    list: "SELECT kind, id, body, created_at, expires_at FROM pki_objects WHERE kind = $1 \
           ORDER BY created_at, id LIMIT 100000",
};

fn sql<D: Dialect>() -> &'static PkiStatements {
    if D::NAME == "postgres" {
        &POSTGRES
    } else {
        &SQLITE
    }
}

/// Applies a PKI mutation inside the writer's transaction.
pub(crate) async fn apply<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    let s = sql::<D>();
    match m {
        Mutation::PutPkiObject(o) | Mutation::InsertPkiObject(o) => {
            let insert = matches!(m, Mutation::InsertPkiObject(_));
            let stmt = Stmt::new(if insert { s.insert } else { s.upsert })
                .text(&o.kind)
                .text(&o.id)
                .owned_text(to_json("pki body", &o.body)?)
                .time(o.created_at)
                .opt_time(o.expires_at);
            D::exec(conn, stmt).await.map_err(|e| match &e {
                sqlx::Error::Database(db)
                    if matches!(D::classify(db.as_ref()), Failure::Unique(_)) =>
                {
                    StoreError::Conflict(format!("{} {:?} already exists", o.kind, o.id))
                }
                _ => db_error::<D>(e),
            })?;
        }
        Mutation::DeletePkiObject { kind, id } => {
            D::exec(conn, Stmt::new(s.delete).text(kind).text(id))
                .await
                .map_err(db_error::<D>)?;
        }
        _ => return Err(StoreError::Backend("not a PKI mutation".into())),
    }
    Ok(())
}

/// Text checks for the PKI mutations.
pub(crate) fn check_text_of(m: &Mutation) -> Result<(), StoreError> {
    match m {
        Mutation::PutPkiObject(o) | Mutation::InsertPkiObject(o) => {
            check_text("pki kind", &o.kind)?;
            check_text("pki id", &o.id)
        }
        Mutation::DeletePkiObject { kind, id } => {
            check_text("pki kind", kind)?;
            check_text("pki id", id)
        }
        _ => Ok(()),
    }
}

fn object<D: Dialect>(row: &Row<D>) -> Result<PkiObject, StoreError> {
    let c = Cols::<D>::new(row, "pki_objects");
    Ok(PkiObject {
        kind: c.text("kind")?,
        id: c.text("id")?,
        body: c.json("body")?,
        created_at: c.time("created_at")?,
        expires_at: c.opt_time("expires_at")?,
    })
}

/// Every record of `kind`, oldest first (expired ones included; callers filter).
pub(crate) async fn list<D: Dialect>(
    conn: &mut Conn<D>,
    kind: &str,
) -> Result<Vec<PkiObject>, StoreError> {
    let rows = D::fetch_all(conn, Stmt::new(sql::<D>().list).text(kind))
        .await
        .map_err(db_error::<D>)?;
    rows.iter().map(object::<D>).collect()
}

//! The embedded schema migration runner: applies the backend's pending migrations in one
//! transaction at open, recording version, name, checksum and time in `steward_schema_migrations`.

use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::StoreError;
use crate::dialect::{Conn, Dialect, Migration, Stmt};
use crate::ops::db_error;
use crate::rows::Cols;

/// Name of the table recording applied migrations; its presence marks a Steward database.
pub(crate) const MIGRATIONS_TABLE: &str = "steward_schema_migrations";

fn checksum(m: &Migration) -> Vec<u8> {
    Sha256::digest(m.sql.as_bytes()).to_vec()
}

/// Brings the schema up to date. Concurrent callers (several nodes starting at once) serialize
/// on the backend's migration lock, so each migration is applied exactly once.
pub(crate) async fn run<D: Dialect>(conn: &mut Conn<D>) -> Result<(), StoreError> {
    let mut tx = conn.begin_with(D::BEGIN).await.map_err(db_error::<D>)?;
    if let Some(lock) = D::SQL.migration_lock {
        D::exec(&mut tx, Stmt::new(lock))
            .await
            .map_err(db_error::<D>)?;
    }
    D::exec(&mut tx, Stmt::new(D::SQL.create_migrations_table))
        .await
        .map_err(db_error::<D>)?;
    let applied = D::fetch_all(&mut tx, Stmt::new(D::SQL.applied_migrations))
        .await
        .map_err(db_error::<D>)?
        .iter()
        .map(|row| {
            let c = Cols::<D>::new(row, MIGRATIONS_TABLE);
            Ok((c.int("version")?, c.bytes("checksum")?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    let newest_known = D::MIGRATIONS.last().map_or(0, |m| m.version);
    for (version, sum) in &applied {
        let Some(known) = D::MIGRATIONS.iter().find(|m| m.version == *version) else {
            return Err(StoreError::Corrupt(format!(
                "the database schema is at version {version}, newer than this build of Steward knows \
                 (up to {newest_known}); run a newer Steward"
            )));
        };
        if *sum != checksum(known) {
            return Err(StoreError::Corrupt(format!(
                "migration {version} ({}) applied to this database differs from the one built into Steward",
                known.name
            )));
        }
    }

    let now = steward_core::to_micros(time::OffsetDateTime::now_utc());
    for m in D::MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
    {
        D::exec_script(&mut tx, m.sql)
            .await
            .map_err(|e| match db_error::<D>(e) {
                StoreError::Backend(msg) => StoreError::Backend(format!(
                    "migration {} ({}) failed: {msg}",
                    m.version, m.name
                )),
                other => other,
            })?;
        let sum = checksum(m);
        D::exec(
            &mut tx,
            Stmt::new(D::SQL.record_migration)
                .int(m.version)
                .text(m.name)
                .bytes(&sum)
                .int(now),
        )
        .await
        .map_err(db_error::<D>)?;
        tracing::info!(
            backend = D::NAME,
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    tx.commit().await.map_err(db_error::<D>)
}

//! The SQLite writer's direct connection: batches of audit records and one-time claims (token
//! issuance, decisions, refusals, `jti`s) written on the writer's own thread, with no hand-off.
//!
//! sqlx runs every SQLite connection on a worker thread of its own and sends it each command over
//! a channel, so a batch written through sqlx costs two thread wake-ups per command, and on a busy
//! two-core machine each wake-up waits for a core behind the request workers. This connection is
//! opened on the same file (after migrations, in WAL mode, `synchronous = FULL`) and used only by
//! the writer, one batch at a time, so the writer's two connections never write concurrently. A
//! batch here is the same transaction the general path would run: the claims, the rows, then the head moved
//! only if it is still where this writer left it (so another writer on the same file makes the
//! batch write nothing and rerun from a fresh read), then COMMIT, which returns once the WAL is
//! synced. Every other kind of batch keeps going through sqlx.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, params};

use crate::claims::ClaimBatch;
use crate::dialect::audit_columns;
use crate::ops::AuditRow;
use crate::writer::BatchError;
use crate::{AuditHead, StoreError};

const INSERT_AUDIT: &str = concat!(
    "INSERT INTO audit (",
    audit_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
);
const MOVE_HEAD: &str =
    "UPDATE audit_head SET size = ?1, chain_hash = ?2 WHERE id = 1 AND size = ?3";

/// The writer's own SQLite connection for audit-only batches.
pub(crate) struct DirectAudit {
    conn: Connection,
}

impl std::fmt::Debug for DirectAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectAudit").finish_non_exhaustive()
    }
}

impl DirectAudit {
    /// Opens a second write connection to the Steward database at `path`, which must already
    /// exist, be migrated and be in WAL mode.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            // No SQLITE_OPEN_URI: the path is a file name, never a URI or an in-memory database.
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store_error)?;
        conn.busy_timeout(busy_timeout).map_err(store_error)?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
             PRAGMA cache_size = -16384;",
        )
        .map_err(store_error)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(store_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "the database is in {mode} journal mode, not WAL"
            )));
        }
        // Fails here, not on the first batch, if the schema lacks what a batch writes.
        conn.prepare_cached(INSERT_AUDIT).map_err(store_error)?;
        conn.prepare_cached(MOVE_HEAD).map_err(store_error)?;
        Ok(Self { conn })
    }

    /// Runs `claims` (the dialect's `claim_many` statement and its batch), then writes the rows
    /// that `rows` makes from the keys the claims took (as [`ClaimBatch::answers`] reads them)
    /// and moves the head from `previous` to the head it returns, in one durable transaction.
    /// Returns the new head.
    pub(crate) fn append<'a>(
        &mut self,
        claims: Option<(&str, &ClaimBatch)>,
        previous: &AuditHead,
        rows: impl FnOnce(
            &HashSet<(String, String)>,
        ) -> Result<(Vec<AuditRow<'a>>, AuditHead), BatchError>,
    ) -> Result<AuditHead, BatchError> {
        if !self.conn.is_autocommit() {
            // A transaction left open by a failure we could not roll back.
            let _ = self.conn.execute_batch("ROLLBACK");
            if !self.conn.is_autocommit() {
                return Err(BatchError::Aborted(StoreError::Unavailable(
                    "the writer's SQLite connection is stuck in a transaction".into(),
                )));
            }
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| BatchError::Aborted(store_error(e)))?;
        let written = match claims {
            Some((sql, batch)) => self.claim(sql, batch),
            None => Ok(HashSet::new()),
        }
        .and_then(|fresh| rows(&fresh))
        .and_then(|(rows, next)| self.write(&rows, previous, &next).map(|()| next));
        let next = match written {
            Ok(next) => next,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(BatchError::Commit(store_error(e)));
        }
        Ok(next)
    }

    /// The batch's one-time claims, in one statement: the `(namespace, hex hash)` keys taken.
    fn claim(
        &self,
        sql: &str,
        batch: &ClaimBatch,
    ) -> Result<HashSet<(String, String)>, BatchError> {
        let abort = |e| BatchError::Aborted(store_error(e));
        let mut stmt = self.conn.prepare_cached(sql).map_err(abort)?;
        let rows = stmt
            .query_map(params![batch.json, batch.now_us], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(abort)?;
        rows.collect::<Result<HashSet<_>, _>>().map_err(abort)
    }

    /// Runs `add` (argument `upto`) and `advance` (arguments `upto`, `upto`) in one durable
    /// transaction: a run of the by-identity audit index (see `writer::index_identities`), here
    /// on the writer's own thread like the audit batches, so that a run costs no hand-offs, and
    /// the writes of this connection and the sqlx one do not keep invalidating each other's page
    /// cache.
    pub(crate) fn index_run(
        &mut self,
        add: &str,
        advance: &str,
        upto: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(store_error)?;
        let ran = self
            .conn
            .prepare_cached(add)
            .and_then(|mut s| s.execute(params![upto]))
            .and_then(|_| {
                self.conn
                    .prepare_cached(advance)
                    .and_then(|mut s| s.execute(params![upto, upto]))
            })
            .and_then(|_| self.conn.execute_batch("COMMIT"));
        if let Err(e) = ran {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(store_error(e));
        }
        Ok(())
    }

    fn write(
        &self,
        rows: &[AuditRow<'_>],
        previous: &AuditHead,
        next: &AuditHead,
    ) -> Result<(), BatchError> {
        let fail = |e: rusqlite::Error| match e.sqlite_error_code() {
            // A duplicate sequence number: another writer appended.
            Some(ErrorCode::ConstraintViolation) => BatchError::StaleHead,
            _ => BatchError::Aborted(store_error(e)),
        };
        let int = |n: u64, what: &str| crate::ops::to_i64(n, what).map_err(BatchError::Aborted);
        let mut insert = self.conn.prepare_cached(INSERT_AUDIT).map_err(fail)?;
        for r in rows {
            let e = r.event;
            let mut id_buf = uuid::Uuid::encode_buffer();
            let identity = e
                .identity_id
                .map(|id| &*id.hyphenated().encode_lower(&mut id_buf));
            insert
                .execute(params![
                    r.seq,
                    steward_core::to_micros(e.time),
                    e.actor,
                    e.action,
                    e.target,
                    identity,
                    e.outcome.as_str(),
                    e.reason,
                    e.request_id,
                    e.source,
                    r.details,
                    &r.leaf_hash[..],
                    &r.chain_hash[..],
                ])
                .map_err(fail)?;
        }
        let moved = self
            .conn
            .prepare_cached(MOVE_HEAD)
            .map_err(fail)?
            .execute(params![
                int(next.size, "audit size")?,
                &next.chain_hash[..],
                int(previous.size, "audit size")?,
            ])
            .map_err(fail)?;
        if moved != 1 {
            return Err(BatchError::StaleHead);
        }
        Ok(())
    }
}

/// Classifies a SQLite error exactly as the sqlx connections' errors are classified.
fn store_error(e: rusqlite::Error) -> StoreError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
        _ => 1, // SQLITE_ERROR: a failure outside SQLite itself (binding, conversion)
    };
    crate::ops::failure_error(crate::sqlite::classify_code(code, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Change;
    use steward_core::{AuditEvent, Outcome};
    use time::macros::datetime;

    fn event() -> AuditEvent {
        AuditEvent::new(
            datetime!(2026-12-07 12:00 UTC),
            "tester",
            "token.issue",
            Outcome::Success,
        )
    }

    fn row(event: &AuditEvent, seq: i64) -> AuditRow<'_> {
        AuditRow {
            seq,
            event,
            details: "{}",
            leaf_hash: [1; 32],
            chain_hash: [2; 32],
        }
    }

    #[tokio::test]
    async fn a_head_moved_by_another_writer_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("steward.db");
        let store = crate::sqlite::open(&path).await.expect("open");
        store
            .commit(Change::audit_only(event()))
            .await
            .expect("first record");
        let head = store.audit_head().await.expect("head");
        assert_eq!(head.size, 1);
        let mut direct = DirectAudit::open(&path, Duration::from_secs(1)).expect("direct");
        let stale = AuditHead {
            size: 0,
            chain_hash: [0; 32],
        };
        let e = event();

        // The sequence number another writer already used: the row clashes.
        let next = AuditHead {
            size: 1,
            chain_hash: [2; 32],
        };
        assert!(matches!(
            direct.append(None, &stale, |_| Ok((vec![row(&e, 1)], next))),
            Err(BatchError::StaleHead)
        ));
        // A fresh sequence number, but the head is not where this writer left it.
        let next = AuditHead {
            size: 2,
            chain_hash: [2; 32],
        };
        assert!(matches!(
            direct.append(None, &stale, |_| Ok((vec![row(&e, 2)], next))),
            Err(BatchError::StaleHead)
        ));
        assert_eq!(store.audit_head().await.expect("head"), head);
        assert!(store.audit_range(2, 10).await.expect("range").is_empty());

        // From the real head, the same batch commits, and the pooled store sees it.
        direct
            .append(None, &head, |_| Ok((vec![row(&e, 2)], next)))
            .expect("append from the real head");
        assert_eq!(store.audit_head().await.expect("head"), next);
        assert_eq!(store.audit_range(2, 10).await.expect("range").len(), 1);
    }

    #[test]
    fn a_missing_file_is_not_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.db");
        assert!(DirectAudit::open(&path, Duration::from_secs(1)).is_err());
        assert!(!path.exists());
    }
}

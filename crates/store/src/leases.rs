//! Leases: named, time-bounded, fenced ownership of single-node duties in a cluster (key rotation,
//! CA rollover, checkpoints, purges, findings) — the record, both backends' SQL, and the fence check.
//!
//! A lease is one row per name. Acquiring succeeds when the row is missing, expired, or already
//! held by the same holder, in one atomic statement, so two nodes can never both acquire it.
//! `epoch` grows by one whenever the holder changes (or an expired lease is taken again); a
//! holder's writes carry the epoch as a fence ([`crate::Mutation::CheckLease`]) and are refused
//! once someone else has taken the lease over, even if the old holder was paused and does not
//! know yet. Releasing keeps the row (with an expiry in the past), so epochs never repeat.
//!
//! Expiry is judged against the `now` each caller passes: clock skew between nodes can only make a
//! lease change hands early or late, never let two holders write, because the fence is the epoch.

use time::{Duration, OffsetDateTime};

use crate::StoreError;
use crate::dialect::{Conn, Dialect, Row, Stmt};
use crate::ops::{check_text, db_error};
use crate::rows::Cols;

/// Longest lease name or holder accepted.
const MAX_LEN: usize = 200;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The duty, e.g. `signing-keys`.
    pub name: String,
    /// Who holds it (a node's own identifier, unique per process).
    pub holder: String,
    /// Fencing token: grows by one at every change of holder.
    pub epoch: i64,
    /// When the current holder took it (kept across renewals).
    pub acquired_at: OffsetDateTime,
    /// The holder must stop acting at this instant unless it renewed.
    pub expires_at: OffsetDateTime,
}

impl Lease {
    /// Whether the lease is unexpired at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }
}

/// One lease operation; on SQLite the writer task runs it (single writer), elsewhere the pool.
#[derive(Debug)]
pub(crate) enum LeaseOp {
    Acquire {
        name: String,
        holder: String,
        now_us: i64,
        expires_us: i64,
    },
    Renew {
        name: String,
        holder: String,
        epoch: i64,
        expires_us: i64,
    },
    Release {
        name: String,
        holder: String,
        epoch: i64,
    },
}

fn check_name(what: &str, v: &str) -> Result<(), StoreError> {
    if v.is_empty() || v.len() > MAX_LEN {
        return Err(StoreError::Backend(format!(
            "a lease {what} must have 1 to {MAX_LEN} bytes"
        )));
    }
    check_text(what, v)
}

fn expiry(now: OffsetDateTime, ttl: Duration) -> Result<i64, StoreError> {
    if !ttl.is_positive() {
        return Err(StoreError::Backend("a lease ttl must be positive".into()));
    }
    now.checked_add(ttl)
        .map(steward_core::to_micros)
        .ok_or_else(|| StoreError::Backend("lease expiry is out of range".into()))
}

impl LeaseOp {
    pub(crate) fn acquire(
        name: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, StoreError> {
        check_name("name", name)?;
        check_name("holder", holder)?;
        Ok(Self::Acquire {
            name: name.to_owned(),
            holder: holder.to_owned(),
            now_us: steward_core::to_micros(now),
            expires_us: expiry(now, ttl)?,
        })
    }

    pub(crate) fn renew(
        lease: &Lease,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, StoreError> {
        Ok(Self::Renew {
            name: lease.name.clone(),
            holder: lease.holder.clone(),
            epoch: lease.epoch,
            expires_us: expiry(now, ttl)?,
        })
    }

    pub(crate) fn release(lease: &Lease) -> Self {
        Self::Release {
            name: lease.name.clone(),
            holder: lease.holder.clone(),
            epoch: lease.epoch,
        }
    }
}

struct LeaseStatements {
    acquire: &'static str,
    renew: &'static str,
    release: &'static str,
    get: &'static str,
    fence: &'static str,
}

macro_rules! lease_columns {
    () => {
        "name, holder, epoch, acquired_at, expires_at"
    };
}

// In both dialects the SET expressions see the row as it was before the update.
static SQLITE: LeaseStatements = LeaseStatements {
    acquire: concat!(
        "INSERT INTO leases (name, holder, epoch, acquired_at, expires_at) VALUES (?, ?, 1, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET \
         epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > excluded.acquired_at \
                 THEN leases.epoch ELSE leases.epoch + 1 END, \
         acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > excluded.acquired_at \
                       THEN leases.acquired_at ELSE excluded.acquired_at END, \
         holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at \
         RETURNING ",
        lease_columns!()
    ),
    renew: concat!(
        "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND epoch = ? RETURNING ",
        lease_columns!()
    ),
    release: concat!(
        "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND epoch = ? RETURNING ",
        lease_columns!()
    ),
    get: concat!("SELECT ", lease_columns!(), " FROM leases WHERE name = ?"),
    // The writer's BEGIN IMMEDIATE already excludes every other writer.
    fence: "SELECT epoch FROM leases WHERE name = ?",
};

static POSTGRES: LeaseStatements = LeaseStatements {
    acquire: concat!(
        "INSERT INTO leases (name, holder, epoch, acquired_at, expires_at) VALUES ($1, $2, 1, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET \
         epoch = CASE WHEN leases.holder = EXCLUDED.holder AND leases.expires_at > EXCLUDED.acquired_at \
                 THEN leases.epoch ELSE leases.epoch + 1 END, \
         acquired_at = CASE WHEN leases.holder = EXCLUDED.holder AND leases.expires_at > EXCLUDED.acquired_at \
                       THEN leases.acquired_at ELSE EXCLUDED.acquired_at END, \
         holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
         WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= EXCLUDED.acquired_at \
         RETURNING ",
        lease_columns!()
    ),
    renew: concat!(
        "UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3 AND epoch = $4 RETURNING ",
        lease_columns!()
    ),
    release: concat!(
        "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND epoch = $3 RETURNING ",
        lease_columns!()
    ),
    get: concat!("SELECT ", lease_columns!(), " FROM leases WHERE name = $1"),
    // A shared row lock held until the writer's transaction ends: a node taking the lease over
    // waits for the fenced change to commit, so the change is ordered before the new epoch.
    fence: "SELECT epoch FROM leases WHERE name = $1 FOR SHARE",
};

fn sql<D: Dialect>() -> &'static LeaseStatements {
    if D::NAME == "postgres" {
        &POSTGRES
    } else {
        &SQLITE
    }
}

fn record<D: Dialect>(row: &Row<D>) -> Result<Lease, StoreError> {
    let c = Cols::<D>::new(row, "leases");
    Ok(Lease {
        name: c.text("name")?,
        holder: c.text("holder")?,
        epoch: c.int("epoch")?,
        acquired_at: c.time("acquired_at")?,
        expires_at: c.time("expires_at")?,
    })
}

/// Runs one lease operation as one statement; `None` when it did not apply (held by someone
/// else, or no longer ours).
pub(crate) async fn run<D: Dialect>(
    conn: &mut Conn<D>,
    op: &LeaseOp,
) -> Result<Option<Lease>, StoreError> {
    let s = sql::<D>();
    let stmt = match op {
        LeaseOp::Acquire {
            name,
            holder,
            now_us,
            expires_us,
        } => Stmt::new(s.acquire)
            .text(name)
            .text(holder)
            .int(*now_us)
            .int(*expires_us),
        LeaseOp::Renew {
            name,
            holder,
            epoch,
            expires_us,
        } => Stmt::new(s.renew)
            .int(*expires_us)
            .text(name)
            .text(holder)
            .int(*epoch),
        LeaseOp::Release {
            name,
            holder,
            epoch,
        } => Stmt::new(s.release).text(name).text(holder).int(*epoch),
    };
    D::fetch_optional(conn, stmt)
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(record::<D>)
        .transpose()
}

pub(crate) async fn get<D: Dialect>(
    conn: &mut Conn<D>,
    name: &str,
) -> Result<Option<Lease>, StoreError> {
    D::fetch_optional(conn, Stmt::new(sql::<D>().get).text(name))
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(record::<D>)
        .transpose()
}

/// The fence of [`crate::Mutation::CheckLease`], inside the writer's transaction: `Stale` unless
/// lease `name` is still at `epoch`.
pub(crate) async fn check<D: Dialect>(
    conn: &mut Conn<D>,
    name: &str,
    epoch: i64,
) -> Result<(), StoreError> {
    let row = D::fetch_optional(conn, Stmt::new(sql::<D>().fence).text(name))
        .await
        .map_err(db_error::<D>)?;
    let current = row
        .as_ref()
        .map(|r| Cols::<D>::new(r, "leases").int("epoch"))
        .transpose()?;
    if current == Some(epoch) {
        Ok(())
    } else {
        Err(StoreError::Stale(format!(
            "lease {name:?} (epoch {epoch}, now {})",
            current.map_or_else(|| "never taken".to_owned(), |e| format!("epoch {e}"))
        )))
    }
}

/// Text checks for [`crate::Mutation::CheckLease`].
pub(crate) fn check_text_of(name: &str) -> Result<(), StoreError> {
    check_name("name", name)
}

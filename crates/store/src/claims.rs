//! One-time claims in bulk: claims made at the same moment by concurrent requests are sent as one
//! statement, so replay protection (`private_key_jwt` and DPoP `jti`s) costs a fraction of a
//! database round trip per request. SQLite's writer claims a batch's values together inside its
//! transaction; on PostgreSQL, where claims bypass the writer, [`ClaimBatcher`] gathers them, on
//! a thread and connection of its own, waiting for more as the writer does (`gather.rs`).
//!
//! A PostgreSQL batch is one autocommit `INSERT … ON CONFLICT … RETURNING` in key order: it holds
//! only the rows it claims, in the same order on every node, so it neither deadlocks nor holds up
//! the group commit. A value claimed twice in one batch is fresh once and a replay after that.

use std::collections::HashSet;

use sqlx::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::dialect::{Conn, Dialect, Stmt};
use crate::gather::{ArrivalRate, GroupCommit, gather, spawn_loop};
use crate::ops::{Claim, db_error, to_hex};
use crate::rows::Cols;

/// Claims waiting to be sent; a full queue makes callers wait (bounded memory).
const QUEUE_CAPACITY: usize = 4096;
/// Claims per statement.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<bool, StoreError>>;

/// Handle to the claim batcher task; the task ends when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct ClaimBatcher {
    queue: mpsc::Sender<(Claim, Reply)>,
}

fn gone() -> StoreError {
    StoreError::Unavailable("the one-time claim batcher has stopped".into())
}

impl ClaimBatcher {
    /// Starts the batcher on a thread of its own (gathering blocks it while it waits), with a
    /// single-threaded runtime and `pool`, which it should not share. `D::SQL.claim_many` must
    /// be set. Without its thread the queue is closed and every claim fails as unavailable.
    pub(crate) fn spawn<D: Dialect>(pool: Pool<D::Db>, group: GroupCommit) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        spawn_loop(format!("steward-claims-{}", D::NAME), move || {
            run::<D>(pool, group, rx)
        });
        Self { queue }
    }

    /// `true` when the value was not claimed (or its claim had expired), `false` on a replay.
    pub(crate) async fn claim(&self, claim: Claim) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((claim, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run<D: Dialect>(
    pool: Pool<D::Db>,
    group: GroupCommit,
    mut rx: mpsc::Receiver<(Claim, Reply)>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut rate = ArrivalRate::default();
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        gather(&mut rx, &mut jobs, MAX_BATCH, group, &mut rate);
        let claims: Vec<&Claim> = jobs.iter().map(|(c, _)| c).collect();
        let result = match pool.acquire().await {
            Ok(mut conn) => claim_many::<D>(&mut conn, &claims).await,
            Err(e) => Err(db_error::<D>(e)),
        };
        match result {
            Ok(fresh) => {
                for ((_, reply), f) in jobs.drain(..).zip(fresh) {
                    let _ = reply.send(Ok(f));
                }
            }
            Err(e) => {
                for (_, reply) in jobs.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
    pool.close().await;
}

/// A batch of claims as the `claim_many` statement takes them.
pub(crate) struct ClaimBatch {
    keys: Vec<(String, String)>,
    /// Whether each claim is its key's first in the batch (a later one is a replay).
    first: Vec<bool>,
    /// The statement's first argument: `[{"n": namespace, "h": hex hash, "e": expiry µs}]`,
    /// each key once.
    pub(crate) json: String,
    /// The statement's second argument: the most conservative "now" of the batch, so that an
    /// entry counts as expired only if it had expired for every caller.
    pub(crate) now_us: i64,
}

impl ClaimBatch {
    pub(crate) fn new(claims: &[&Claim]) -> Self {
        let keys: Vec<(String, String)> = claims
            .iter()
            .map(|c| (c.namespace().to_owned(), to_hex(c.value_hash())))
            .collect();
        let mut seen = HashSet::with_capacity(keys.len());
        let first: Vec<bool> = keys.iter().map(|k| seen.insert(k)).collect();
        let rows: Vec<serde_json::Value> = claims
            .iter()
            .zip(&keys)
            .zip(&first)
            .filter(|(_, first)| **first)
            .map(|((c, (n, h)), _)| serde_json::json!({"n": n, "h": h, "e": c.expires_us()}))
            .collect();
        Self {
            keys,
            first,
            json: serde_json::Value::Array(rows).to_string(),
            now_us: claims.iter().map(|c| c.now_us()).min().unwrap_or(0),
        }
    }

    /// Whether a value is claimed more than once in the batch (all but its first are replays).
    pub(crate) fn has_repeats(&self) -> bool {
        self.first.iter().any(|f| !f)
    }

    /// How many distinct values the statement claims.
    pub(crate) fn distinct(&self) -> usize {
        self.first.iter().filter(|f| **f).count()
    }

    /// Per claim, in order: whether it was fresh, given the `(namespace, hex hash)` pairs the
    /// statement returned (the keys it inserted or took over from an expired entry).
    pub(crate) fn answers(&self, fresh: &HashSet<(String, String)>) -> Vec<bool> {
        self.keys
            .iter()
            .zip(&self.first)
            .map(|(k, first)| *first && fresh.contains(k))
            .collect()
    }
}

/// Sends one batch; answers per claim, in order.
pub(crate) async fn claim_many<D: Dialect>(
    conn: &mut Conn<D>,
    claims: &[&Claim],
) -> Result<Vec<bool>, StoreError> {
    if claims.is_empty() {
        return Ok(vec![]);
    }
    let batch = ClaimBatch::new(claims);
    let stmt = Stmt::new(D::SQL.claim_many)
        .text(&batch.json)
        .int(batch.now_us);
    let fresh_rows = D::fetch_all(conn, stmt).await.map_err(db_error::<D>)?;
    let mut fresh = HashSet::with_capacity(fresh_rows.len());
    for row in &fresh_rows {
        let c = Cols::<D>::new(row, "once_values");
        fresh.insert((c.text("namespace")?, c.text("h")?));
    }
    Ok(batch.answers(&fresh))
}

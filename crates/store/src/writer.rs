//! Group commit: one writer task per store drains queued writes and runs them in one transaction,
//! a savepoint per change with mutations, audit records appended and chained in queue order.
//!
//! Callers hand a [`Work`] item to [`Writer`] over a bounded channel (a full channel makes them
//! wait: backpressure) and wait for the reply, which is only sent after COMMIT returned, so every
//! success is durable. A batch runs in two phases inside one transaction:
//!
//! 1. each change with mutations runs inside its own savepoint; a failing change is rolled back
//!    to its savepoint and answered with its own error while the others go on; one-time claims
//!    and purges run as plain statements;
//! 2. if any audit events remain, the audit head is read (and locked, in PostgreSQL, so that
//!    writers on other nodes queue behind it), sequence numbers and hashes are assigned in queue
//!    order, the records are written with a few multi-row INSERTs, and the head is updated.
//!
//! Text a database cannot hold is refused before a change is queued, so nothing a caller passes
//! can make a statement outside a savepoint fail. Should one fail anyway, the transaction is
//! rolled back and, for an unexpected statement error, every change of the batch is retried in a
//! transaction of its own, so that the failure stays with the change that caused it; errors that
//! would hit every change alike (unreachable, contended or corrupt database) are returned to all.
//! If COMMIT itself fails, the outcome is unknown and every change of the batch gets the error.
//!
//! A caller that stops waiting does not withdraw its write: once queued, it is committed.

use std::time::Instant;

use sqlx::{Connection, Pool};
use steward_crypto::merkle;
use tokio::sync::{mpsc, oneshot};

use crate::dialect::{Conn, Dialect};
use crate::ops::{self, AuditInserts, AuditRow, Claim};
use crate::{AuditHead, Change, Mutation, StoreError};

/// Queue capacity: how many writes may wait before callers are made to wait.
pub(crate) const QUEUE_CAPACITY: usize = 16_384;
/// Most writes run in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// A unit of work for the writer.
#[derive(Debug)]
pub(crate) enum Work {
    Change(Change),
    Claim(Claim),
    Purge { now_us: i64 },
    Lease(crate::leases::LeaseOp),
}

/// The writer's answer to one [`Work`] item.
#[derive(Debug, Clone)]
pub(crate) enum Done {
    Seqs(Vec<u64>),
    Claimed(bool),
    /// Rows removed from (one-time values, revoked tokens).
    Purged(u64, u64),
    Lease(Option<crate::Lease>),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// Handle to a store's writer task. The task stops when the last handle is dropped, after
/// finishing the writes already queued.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the storage writer has stopped".into())
}

fn unexpected_reply() -> StoreError {
    StoreError::Backend("internal error: the storage writer sent an unexpected reply".into())
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime; it writes through `pool`, which
    /// should hold a single connection reserved for it.
    pub(crate) fn spawn<D: Dialect>(pool: Pool<D::Db>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run::<D>(pool, rx));
        Self { queue }
    }

    /// Whether the writer task has stopped (it only stops when the store is dropped, or if it
    /// panicked).
    pub(crate) fn is_stopped(&self) -> bool {
        self.queue.is_closed()
    }

    async fn submit(&self, work: Work) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { work, reply })
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    pub(crate) async fn commit(&self, change: Change) -> Result<Vec<u64>, StoreError> {
        if change.mutations.is_empty() && change.audit.is_empty() {
            return Ok(Vec::new());
        }
        ops::check_change_text(&change)?;
        match self.submit(Work::Change(change)).await? {
            Done::Seqs(seqs) => Ok(seqs),
            _ => Err(unexpected_reply()),
        }
    }

    /// Runs a one-time claim as part of the next batch.
    pub(crate) async fn claim(&self, claim: Claim) -> Result<bool, StoreError> {
        match self.submit(Work::Claim(claim)).await? {
            Done::Claimed(fresh) => Ok(fresh),
            _ => Err(unexpected_reply()),
        }
    }

    /// Runs one bounded purge step as part of the next batch; returns the rows removed from
    /// (one-time values, revoked tokens).
    pub(crate) async fn purge_step(&self, now_us: i64) -> Result<(u64, u64), StoreError> {
        match self.submit(Work::Purge { now_us }).await? {
            Done::Purged(once, tokens) => Ok((once, tokens)),
            _ => Err(unexpected_reply()),
        }
    }

    /// Runs one lease operation as part of the next batch.
    pub(crate) async fn lease(
        &self,
        op: crate::leases::LeaseOp,
    ) -> Result<Option<crate::Lease>, StoreError> {
        match self.submit(Work::Lease(op)).await? {
            Done::Lease(lease) => Ok(lease),
            _ => Err(unexpected_reply()),
        }
    }
}

async fn run<D: Dialect>(pool: Pool<D::Db>, mut rx: mpsc::Receiver<Job>) {
    let inserts = AuditInserts::<D>::new();
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let started = Instant::now();
        let results = process::<D>(&pool, &inserts, &jobs).await;
        tracing::debug!(
            backend = D::NAME,
            batch = jobs.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
        for (job, result) in jobs.drain(..).zip(results) {
            // A caller that stopped waiting no longer needs the answer.
            let _ = job.reply.send(result);
        }
    }
    pool.close().await;
}

/// Why a batch did not commit.
enum BatchError {
    /// Failed before COMMIT: nothing was written, retrying is safe.
    Aborted(StoreError),
    /// COMMIT failed: the outcome is unknown.
    Commit(StoreError),
}

async fn process<D: Dialect>(
    pool: &Pool<D::Db>,
    inserts: &AuditInserts<D>,
    jobs: &[Job],
) -> Vec<Result<Done, StoreError>> {
    match run_batch::<D>(pool, inserts, jobs).await {
        Ok(results) => results,
        // An unexpected statement error (not unavailability, contention or corruption, which
        // would hit every change alike) may come from one change's data: isolate it.
        Err(BatchError::Aborted(e @ StoreError::Backend(_))) if jobs.len() > 1 => {
            tracing::warn!(
                backend = D::NAME,
                batch = jobs.len(),
                error = %e,
                "group commit failed; retrying its changes one by one"
            );
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                let one = match run_batch::<D>(pool, inserts, std::slice::from_ref(job)).await {
                    Ok(mut r) => r.pop().unwrap_or_else(|| Err(unexpected_reply())),
                    Err(BatchError::Aborted(e) | BatchError::Commit(e)) => Err(e),
                };
                results.push(one);
            }
            results
        }
        Err(BatchError::Aborted(e) | BatchError::Commit(e)) => vec![Err(e); jobs.len()],
    }
}

async fn apply_all<D: Dialect>(
    conn: &mut Conn<D>,
    mutations: &[Mutation],
) -> Result<(), StoreError> {
    for m in mutations {
        ops::apply::<D>(conn, m).await?;
    }
    Ok(())
}

async fn run_batch<D: Dialect>(
    pool: &Pool<D::Db>,
    inserts: &AuditInserts<D>,
    jobs: &[Job],
) -> Result<Vec<Result<Done, StoreError>>, BatchError> {
    let abort = |e: sqlx::Error| BatchError::Aborted(ops::db_error::<D>(e));
    let mut tx = pool.begin_with(D::BEGIN).await.map_err(abort)?;

    // Phase 1: mutations (a savepoint per change), claims and purges. `None` marks a change whose
    // audit events still need sequence numbers.
    let mut results: Vec<Option<Result<Done, StoreError>>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let result = match &job.work {
            Work::Change(change) if change.mutations.is_empty() => None,
            Work::Change(change) => {
                let mut savepoint = Connection::begin(&mut *tx).await.map_err(abort)?;
                match apply_all::<D>(&mut savepoint, &change.mutations).await {
                    Ok(()) => {
                        savepoint.commit().await.map_err(abort)?;
                        None
                    }
                    Err(e) => {
                        savepoint.rollback().await.map_err(abort)?;
                        Some(Err(e))
                    }
                }
            }
            Work::Claim(claim) => {
                let fresh = ops::claim::<D>(&mut tx, claim)
                    .await
                    .map_err(BatchError::Aborted)?;
                Some(Ok(Done::Claimed(fresh)))
            }
            Work::Purge { now_us } => {
                let (once, tokens) = ops::purge::<D>(&mut tx, *now_us)
                    .await
                    .map_err(BatchError::Aborted)?;
                Some(Ok(Done::Purged(once, tokens)))
            }
            Work::Lease(op) => {
                let lease = crate::leases::run::<D>(&mut tx, op)
                    .await
                    .map_err(BatchError::Aborted)?;
                Some(Ok(Done::Lease(lease)))
            }
        };
        results.push(result);
    }

    // Phase 2: append the audit events of the changes that applied, in queue order.
    let pending = jobs
        .iter()
        .zip(&results)
        .filter_map(|(job, r)| match (&job.work, r) {
            (Work::Change(change), None) => Some(change),
            _ => None,
        });
    let event_count: usize = pending.clone().map(|c| c.audit.len()).sum();
    let mut seqs = Vec::new();
    if event_count > 0 {
        let head = ops::read_head::<D>(&mut tx, true)
            .await
            .map_err(BatchError::Aborted)?;
        let (rows, next) = chain_events(head, pending.clone().map(|c| c.audit.as_slice()))?;
        inserts
            .insert(&mut tx, &rows)
            .await
            .map_err(BatchError::Aborted)?;
        ops::store_head::<D>(&mut tx, &next)
            .await
            .map_err(BatchError::Aborted)?;
        seqs = (head.size + 1..=next.size).collect();
    }
    tx.commit()
        .await
        .map_err(|e| BatchError::Commit(ops::db_error::<D>(e)))?;

    // Hand each applied change its sequence numbers, in the order they were assigned.
    let mut assigned = seqs.into_iter();
    Ok(jobs
        .iter()
        .zip(results)
        .map(|(job, result)| match (result, &job.work) {
            (Some(done), _) => done,
            (None, Work::Change(change)) => Ok(Done::Seqs(
                assigned.by_ref().take(change.audit.len()).collect(),
            )),
            (None, _) => Err(unexpected_reply()),
        })
        .collect())
}

/// Assigns sequence numbers after `head` and computes each record's leaf and chain hash.
fn chain_events<'a>(
    head: AuditHead,
    changes: impl Iterator<Item = &'a [steward_core::AuditEvent]>,
) -> Result<(Vec<AuditRow<'a>>, AuditHead), BatchError> {
    let mut size = head.size;
    let mut chain = head.chain_hash;
    let mut rows = Vec::new();
    for event in changes.flatten() {
        size += 1;
        let leaf = merkle::leaf_hash(&event.canonical_bytes(size));
        chain = merkle::chain_hash(&chain, &leaf);
        let details = serde_json::to_string(&event.details).map_err(|e| {
            BatchError::Aborted(StoreError::Backend(format!(
                "cannot serialize audit details: {e}"
            )))
        })?;
        rows.push(AuditRow {
            seq: ops::to_i64(size, "audit sequence number").map_err(BatchError::Aborted)?,
            event,
            details,
            leaf_hash: leaf,
            chain_hash: chain,
        });
    }
    Ok((
        rows,
        AuditHead {
            size,
            chain_hash: chain,
        },
    ))
}

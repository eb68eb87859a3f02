//! Group commit: one writer task per store drains queued writes and runs them in one transaction,
//! a savepoint per change with mutations, audit records appended and chained in queue order.
//!
//! Callers hand a [`Work`] item to [`Writer`] over a bounded channel (a full channel makes them
//! wait: backpressure) and wait for the reply, which is only sent after COMMIT returned, so every
//! success is durable. A batch runs in two phases inside one transaction:
//!
//! 1. each change with mutations runs inside its own savepoint; a failing change is rolled back
//!    to its savepoint and answered with its own error while the others go on; one-time claims
//!    (all of the batch's in one statement) and purges run as plain statements;
//! 2. if any audit events remain, the audit head is read (and locked, in PostgreSQL, so that
//!    writers on other nodes queue behind it), sequence numbers and hashes are assigned in queue
//!    order, the records are written with a few multi-row INSERTs, and the head is updated.
//!
//! A batch of audit records and one-time claims only, the common batch of a busy server, takes a
//! shorter path of one round trip (`append_audit_only`). Before a batch starts, the writer may
//! wait a moment for more work to join it (`gather.rs`).
//!
//! What is costly about an audit event (its canonical JSON, its stored details) is serialized on
//! the caller's task before it is queued ([`Prepared`]); the writer only adds the sequence
//! number and hashes. On SQLite, the writer also adds each run of `index_run` records to the
//! by-identity audit index, after answering the batch that completed the run
//! (`index_identities`).
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

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Pool};
use steward_crypto::merkle;
use tokio::sync::{mpsc, oneshot};

use crate::claims::ClaimBatch;
use crate::dialect::{AuditAppend, Conn, DeferredIdentityIndex, Dialect};
use crate::direct::DirectAudit;
use crate::gather::{ArrivalRate, GroupCommit, gather, spawn_loop};
use crate::ops::{self, AuditRow, Claim};
use crate::{AuditHead, Change, Mutation, StoreError};
use steward_core::{AuditEvent, CanonicalTail};

/// Queue capacity: how many writes may wait before callers are made to wait.
pub(crate) const QUEUE_CAPACITY: usize = 16_384;
/// Most writes run in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// A unit of work for the writer.
#[derive(Debug)]
pub(crate) enum Work {
    /// A change, and the serialized form of each of its audit events, in order.
    Change(Change, Vec<Prepared>),
    Claim(Claim),
    /// A one-time claim and the audit record of its outcome, in one transaction.
    ClaimAudit(Box<ClaimAudit>),
    Purge {
        now_us: i64,
    },
    Lease(crate::leases::LeaseOp),
}

/// The writer's answer to one [`Work`] item.
#[derive(Debug, Clone)]
pub(crate) enum Done {
    Seqs(Vec<u64>),
    Claimed(bool),
    ClaimAudited(crate::ClaimRecorded),
    /// Rows removed from (one-time values, revoked tokens).
    Purged(u64, u64),
    Lease(Option<crate::Lease>),
}

/// An audit event's serialized forms, made on the caller's task before the event is queued, so
/// that the writer, one thread for every write of the process, only hashes and stores them.
#[derive(Debug)]
pub(crate) struct Prepared {
    canonical: CanonicalTail,
    details: String,
}

impl Prepared {
    fn new(event: &AuditEvent) -> Self {
        let (canonical, details) = event.encode();
        Self { canonical, details }
    }
}

/// A one-time claim with the record to append if the value was fresh and the one to append if
/// it was a replay (see `Store::claim_once_audited`).
#[derive(Debug)]
pub(crate) struct ClaimAudit {
    claim: Claim,
    /// The record of a fresh claim, then that of a replay.
    events: [AuditEvent; 2],
    prepared: [Prepared; 2],
}

impl ClaimAudit {
    /// The record to append for the claim's outcome, as `chain_events` takes it.
    fn record(&self, fresh: bool) -> (&[AuditEvent], &[Prepared]) {
        let i = usize::from(!fresh);
        (
            std::slice::from_ref(&self.events[i]),
            std::slice::from_ref(&self.prepared[i]),
        )
    }
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Reply>,
}

/// The answer, and the work itself handed back, so that the caller's thread frees what it
/// allocated rather than the writer (freeing another thread's memory costs the writer more).
struct Reply {
    result: Result<Done, StoreError>,
    _work: Work,
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

fn stale_head() -> StoreError {
    StoreError::Unavailable("the audit head kept moving under this writer; retry".into())
}

fn unexpected_reply() -> StoreError {
    StoreError::Backend("internal error: the storage writer sent an unexpected reply".into())
}

impl Writer {
    /// Starts the writer; it writes through `pool`, which should hold a single connection
    /// reserved for it.
    ///
    /// The writer runs on a thread of its own with a single-threaded runtime. A batch awaits the
    /// database a dozen times (BEGIN, statements, COMMIT); on the server's shared runtime each of
    /// those wake-ups would queue behind every request task, so under load a transaction would
    /// spend most of its time waiting to be polled rather than writing.
    ///
    /// `direct`, when given, writes audit-only batches on the writer's own thread (SQLite; see
    /// [`DirectAudit`]).
    ///
    /// `index_run`: how far the by-identity audit index may lag (backends that keep it off the
    /// commit path; see `index_identities`). `group`: how batches are gathered (`gather.rs`).
    pub(crate) fn spawn<D: Dialect>(
        pool: Pool<D::Db>,
        direct: Option<DirectAudit>,
        index_run: u64,
        group: GroupCommit,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        // Without its thread the queue is closed: every write fails as unavailable.
        spawn_loop(format!("steward-writer-{}", D::NAME), move || {
            run::<D>(pool, direct, index_run, group, rx)
        });
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
        answer.await.map_err(|_| writer_gone())?.result
    }

    pub(crate) async fn commit(&self, change: Change) -> Result<Vec<u64>, StoreError> {
        if change.mutations.is_empty() && change.audit.is_empty() {
            return Ok(Vec::new());
        }
        ops::check_change_text(&change)?;
        let prepared = change.audit.iter().map(Prepared::new).collect();
        match self.submit(Work::Change(change, prepared)).await? {
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

    /// Runs a one-time claim as part of the next batch, and appends `if_fresh` or `if_replayed`
    /// in the same transaction according to its outcome.
    pub(crate) async fn claim_audited(
        &self,
        claim: Claim,
        if_fresh: AuditEvent,
        if_replayed: AuditEvent,
    ) -> Result<crate::ClaimRecorded, StoreError> {
        ops::check_event_text(&if_fresh)?;
        ops::check_event_text(&if_replayed)?;
        let prepared = [Prepared::new(&if_fresh), Prepared::new(&if_replayed)];
        let work = Work::ClaimAudit(Box::new(ClaimAudit {
            claim,
            events: [if_fresh, if_replayed],
            prepared,
        }));
        match self.submit(work).await? {
            Done::ClaimAudited(recorded) => Ok(recorded),
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

/// What the writer carries from one batch to the next.
struct WriterState<D: Dialect> {
    /// The audit head as of this writer's last committed batch, forgotten after any failed one.
    /// Audit-only batches start from it (`append_audit_only`), and SQLite starts every other
    /// batch from it too instead of reading the head. Either way the head update is
    /// conditional on the size it started from, so a head moved by another writer fails the
    /// batch (which then reruns from a fresh read) instead of forking the chain.
    head: Option<AuditHead>,
    /// The writer's connection, taken from the pool once and kept: handing it back after every
    /// batch and taking it again cost about half a millisecond per batch (a task hand-off in
    /// the pool) when a whole audit-only batch takes one or two. Dropped after a failed batch,
    /// so that the next one starts on a fresh connection.
    conn: Option<PoolConnection<D::Db>>,
    /// The backend's own connection for audit-only batches, used on this thread (SQLite).
    direct: Option<DirectAudit>,
    /// The by-identity audit index's bound as this writer last saw or moved it (SQLite; see
    /// `index_identities`); `None` until read.
    indexed: Option<u64>,
    /// How many records the by-identity index may lag behind the head before the writer adds
    /// them (SQLite): adapted to the time runs take (`next_index_run`), at most `max_run`.
    index_run: u64,
    max_run: u64,
}

/// How long an index run may hold the writer (and every commit queued behind it). A run costs
/// about one leaf page per distinct identity in it: with a few busy identities even the longest
/// run is quick, with thousands a long run would pause the writer for tens of milliseconds.
const INDEX_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
/// The shortest run the writer shrinks to (unless configured shorter).
const MIN_INDEX_RUN: u64 = 256;

/// The next run length: halved after a run that held the writer longer than [`INDEX_PAUSE`],
/// doubled after one that took less than half of it, within `[min(MIN_INDEX_RUN, max), max]`.
fn next_index_run(run: u64, max: u64, took: std::time::Duration) -> u64 {
    let next = if took > INDEX_PAUSE {
        run / 2
    } else if took < INDEX_PAUSE / 2 {
        run.saturating_mul(2)
    } else {
        run
    };
    next.clamp(MIN_INDEX_RUN.min(max), max)
}

/// The kept connection, or a new one from the pool.
async fn connection<'s, D: Dialect>(
    slot: &'s mut Option<PoolConnection<D::Db>>,
    pool: &Pool<D::Db>,
) -> Result<&'s mut PoolConnection<D::Db>, BatchError> {
    Ok(match slot {
        Some(conn) => conn,
        None => slot.insert(
            pool.acquire()
                .await
                .map_err(|e| BatchError::Aborted(ops::db_error::<D>(e)))?,
        ),
    })
}

async fn run<D: Dialect>(
    pool: Pool<D::Db>,
    direct: Option<DirectAudit>,
    index_run: u64,
    group: GroupCommit,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut state = WriterState::<D> {
        head: None,
        conn: None,
        direct,
        indexed: None,
        index_run: index_run.max(1),
        max_run: index_run.max(1),
    };
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut rate = ArrivalRate::default();
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        gather(&mut rx, &mut jobs, MAX_BATCH, group, &mut rate);
        let started = Instant::now();
        let results = process::<D>(&pool, &mut state, &jobs).await;
        tracing::debug!(
            backend = D::NAME,
            batch = jobs.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
        for (job, result) in jobs.drain(..).zip(results) {
            // A caller that stopped waiting no longer needs the answer.
            let _ = job.reply.send(Reply {
                result,
                _work: job.work,
            });
        }
        if let Some(ix) = D::SQL.deferred_identity_index {
            index_identities::<D>(&pool, &mut state, ix).await;
        }
    }
    // Back to the pool first: closing waits for every connection to return.
    drop(state.conn.take());
    drop(state.direct.take());
    pool.close().await;
}

/// Adds the records appended since the by-identity audit index's bound to the index once they
/// number `index_run` (SQLite; see [`DeferredIdentityIndex`]): one transaction, sorted by
/// identity, so that each identity's entries cost a leaf page or two per run instead of one per
/// commit. It runs after the batch's callers have their answers. A failure is logged and the
/// run retried after the next `index_run` records; readers scan whatever the index does not
/// cover yet, so no query misses a record meanwhile.
async fn index_identities<D: Dialect>(
    pool: &Pool<D::Db>,
    state: &mut WriterState<D>,
    ix: DeferredIdentityIndex,
) {
    let Some(head) = state.head else { return };
    let upto = match state.indexed {
        Some(upto) => upto,
        None => match indexed_bound::<D>(pool, state, ix).await {
            Ok(upto) => *state.indexed.insert(upto),
            Err(e) => {
                tracing::warn!(backend = D::NAME, error = %e, "cannot read the audit index bound");
                state.indexed = Some(head.size);
                return;
            }
        },
    };
    if head.size < upto.saturating_add(state.index_run) {
        return;
    }
    // One run at a time, so that a long lag (after failures) is caught up a run per batch
    // instead of in one long transaction that holds up every caller queued behind it.
    let to = head.size.min(upto.saturating_add(state.index_run));
    let started = Instant::now();
    let added = add_to_index::<D>(pool, state, ix, to).await;
    // Moved, or (after a failure) retried once another run of records is in.
    state.indexed = Some(to);
    match added {
        Ok(()) => {
            let took = started.elapsed();
            state.index_run = next_index_run(state.index_run, state.max_run, took);
            tracing::debug!(
                backend = D::NAME,
                upto = to,
                elapsed_us = took.as_micros() as u64,
                next_run = state.index_run,
                "indexed audit records by identity"
            );
        }
        Err(e) => {
            drop(state.conn.take());
            tracing::warn!(backend = D::NAME, error = %e, "cannot index audit records by identity");
        }
    }
}

async fn indexed_bound<D: Dialect>(
    pool: &Pool<D::Db>,
    state: &mut WriterState<D>,
    ix: DeferredIdentityIndex,
) -> Result<u64, StoreError> {
    let conn = connection::<D>(&mut state.conn, pool)
        .await
        .map_err(BatchError::into_error)?;
    let row = D::fetch_optional(conn, crate::dialect::Stmt::new(ix.upto))
        .await
        .map_err(ops::db_error::<D>)?;
    let upto = match row {
        Some(row) => crate::rows::Cols::<D>::new(&row, "audit_identity_indexed").int("upto")?,
        None => 0,
    };
    Ok(u64::try_from(upto).unwrap_or(0))
}

async fn add_to_index<D: Dialect>(
    pool: &Pool<D::Db>,
    state: &mut WriterState<D>,
    ix: DeferredIdentityIndex,
    upto: u64,
) -> Result<(), StoreError> {
    let n = ops::to_i64(upto, "audit size")?;
    if let Some(direct) = state.direct.as_mut() {
        crate::dialect::count_round_trips(1);
        return direct.index_run(ix.add, ix.advance, n);
    }
    let conn = connection::<D>(&mut state.conn, pool)
        .await
        .map_err(BatchError::into_error)?;
    crate::dialect::count_round_trips(1);
    let mut tx = Connection::begin_with(&mut **conn, D::BEGIN)
        .await
        .map_err(ops::db_error::<D>)?;
    D::exec(&mut tx, crate::dialect::Stmt::new(ix.add).int(n))
        .await
        .map_err(ops::db_error::<D>)?;
    D::exec(&mut tx, crate::dialect::Stmt::new(ix.advance).int(n).int(n))
        .await
        .map_err(ops::db_error::<D>)?;
    crate::dialect::count_round_trips(1);
    tx.commit().await.map_err(ops::db_error::<D>)
}

/// Why a batch did not commit.
#[derive(Debug)]
pub(crate) enum BatchError {
    /// Failed before COMMIT: nothing was written, retrying is safe.
    Aborted(StoreError),
    /// COMMIT failed: the outcome is unknown.
    Commit(StoreError),
    /// The fast path could not take the batch: the remembered audit head was stale (another
    /// writer appended), or one of its optimistic claims was a replay. Nothing was written; the
    /// batch runs again on the general path, with the head read from the database.
    StaleHead,
}

impl BatchError {
    fn into_error(self) -> StoreError {
        match self {
            Self::Aborted(e) | Self::Commit(e) => e,
            Self::StaleHead => stale_head(),
        }
    }
}

async fn process<D: Dialect>(
    pool: &Pool<D::Db>,
    state: &mut WriterState<D>,
    jobs: &[Job],
) -> Vec<Result<Done, StoreError>> {
    let first = match run_batch::<D>(pool, state, jobs).await {
        Err(BatchError::StaleHead) => run_batch::<D>(pool, state, jobs).await,
        other => other,
    };
    if first.is_err() {
        // Whatever failed may have left the connection in a state worth not reusing.
        drop(state.conn.take());
    }
    match first {
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
                let one = match run_batch::<D>(pool, state, std::slice::from_ref(job)).await {
                    Ok(mut r) => r.pop().unwrap_or_else(|| Err(unexpected_reply())),
                    Err(BatchError::Aborted(e) | BatchError::Commit(e)) => Err(e),
                    Err(BatchError::StaleHead) => Err(stale_head()),
                };
                results.push(one);
            }
            results
        }
        Err(BatchError::Aborted(e) | BatchError::Commit(e)) => vec![Err(e); jobs.len()],
        Err(BatchError::StaleHead) => vec![Err(stale_head()); jobs.len()],
    }
}

/// Applies a change's mutations in order. Runs of new findings and of risk scores (what the
/// findings job writes by the thousand) and of credential last-use times (the token path's,
/// flushed every few seconds) go as one multi-row statement each.
async fn apply_all<D: Dialect>(
    conn: &mut Conn<D>,
    mutations: &[Mutation],
) -> Result<(), StoreError> {
    let mut i = 0;
    while i < mutations.len() {
        match &mutations[i] {
            Mutation::InsertFinding(_) => {
                let run: Vec<&crate::FindingRecord> = mutations[i..]
                    .iter()
                    .map_while(|m| match m {
                        Mutation::InsertFinding(f) => Some(f),
                        _ => None,
                    })
                    .take(crate::findings::INSERT_ROWS)
                    .collect();
                i += run.len();
                crate::findings::insert_many::<D>(conn, &run).await?;
            }
            Mutation::PutIdentityRisk(_) => {
                // One row per identity per statement: an upsert may not touch a row twice.
                let mut seen = std::collections::HashSet::new();
                let run: Vec<&crate::RiskRecord> = mutations[i..]
                    .iter()
                    .map_while(|m| match m {
                        Mutation::PutIdentityRisk(r) if seen.insert(r.identity_id) => Some(r),
                        _ => None,
                    })
                    .take(crate::usage::RISK_ROWS)
                    .collect();
                i += run.len();
                crate::usage::put_risks::<D>(conn, &run).await?;
            }
            Mutation::TouchCredential { .. } => {
                // Distinct ids: a row joined twice in one UPDATE takes either value.
                let mut seen = std::collections::HashSet::new();
                let run: Vec<(uuid::Uuid, time::OffsetDateTime)> = mutations[i..]
                    .iter()
                    .map_while(|m| match m {
                        Mutation::TouchCredential { id, used_at } if seen.insert(*id) => {
                            Some((*id, *used_at))
                        }
                        _ => None,
                    })
                    .take(ops::TOUCH_ROWS)
                    .collect();
                i += run.len();
                ops::touch_credentials::<D>(conn, &run).await?;
            }
            m => {
                ops::apply::<D>(conn, m).await?;
                i += 1;
            }
        }
    }
    Ok(())
}

async fn run_batch<D: Dialect>(
    pool: &Pool<D::Db>,
    state: &mut WriterState<D>,
    jobs: &[Job],
) -> Result<Vec<Result<Done, StoreError>>, BatchError> {
    // Forgotten unless this batch commits (see `WriterState::head`).
    let remembered = state.head.take();
    if let Some(head) = remembered
        && jobs.iter().all(|j| match &j.work {
            Work::Change(c, _) => c.mutations.is_empty(),
            // One-time claims join the same transaction where the writer has a connection of
            // its own (SQLite): the claims and audit records of concurrent `private_key_jwt`
            // tokens then share one transaction.
            Work::Claim(_) => state.direct.is_some(),
            // A claim with its record joins where claims do, and PostgreSQL's one-statement
            // append claims too (it fails, writing nothing, on a replay).
            Work::ClaimAudit(_) => state.direct.is_some() || D::SQL.append_audit_claiming.is_some(),
            _ => false,
        })
    {
        return append_audit_only::<D>(pool, state, jobs, head).await;
    }
    let abort = |e: sqlx::Error| BatchError::Aborted(ops::db_error::<D>(e));
    crate::dialect::count_round_trips(1);
    let conn = connection::<D>(&mut state.conn, pool).await?;
    let mut tx = Connection::begin_with(&mut **conn, D::BEGIN)
        .await
        .map_err(abort)?;

    // Phase 1: mutations (a savepoint per change), claims and purges. `None` marks a change whose
    // audit events still need sequence numbers.
    let mut results: Vec<Option<Result<Done, StoreError>>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let result = match &job.work {
            Work::Change(change, _) if change.mutations.is_empty() => None,
            // Its record waits for the claim's outcome, below.
            Work::ClaimAudit(_) => None,
            Work::Change(change, _) => {
                // SAVEPOINT, then RELEASE or ROLLBACK TO.
                crate::dialect::count_round_trips(2);
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
            // Claimed together below.
            Work::Claim(_) => Some(Ok(Done::Claimed(false))),
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

    // The batch's one-time claims, in one statement (they touch nothing a change does).
    let claims: Vec<(usize, &Claim)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| match &j.work {
            Work::Claim(c) => Some((i, c)),
            Work::ClaimAudit(ca) => Some((i, &ca.claim)),
            _ => None,
        })
        .collect();
    // Per job, the outcome of its claim (jobs without one: unused).
    let mut fresh_claims = vec![false; jobs.len()];
    if !claims.is_empty() {
        let only: Vec<&Claim> = claims.iter().map(|(_, c)| *c).collect();
        let fresh = crate::claims::claim_many::<D>(&mut tx, &only)
            .await
            .map_err(BatchError::Aborted)?;
        for ((i, _), f) in claims.iter().zip(fresh) {
            fresh_claims[*i] = f;
            if matches!(jobs[*i].work, Work::Claim(_)) {
                results[*i] = Some(Ok(Done::Claimed(f)));
            }
        }
    }

    // Phase 2: append the audit events of the changes that applied, and the records of the
    // claims' outcomes, in queue order.
    let pending =
        jobs.iter()
            .zip(&results)
            .zip(&fresh_claims)
            .filter_map(|((job, r), fresh)| match (&job.work, r) {
                (Work::Change(change, prepared), None) => {
                    Some((change.audit.as_slice(), prepared.as_slice()))
                }
                (Work::ClaimAudit(ca), None) => Some(ca.record(*fresh)),
                _ => None,
            });
    let event_count: usize = pending.clone().map(|(events, _)| events.len()).sum();
    let mut seqs = Vec::new();
    let new_head;
    if event_count > 0 {
        let (head, trusted) = match remembered {
            Some(h) if D::SINGLE_WRITER => (h, false),
            _ => (
                ops::read_head::<D>(&mut tx, true)
                    .await
                    .map_err(BatchError::Aborted)?,
                true,
            ),
        };
        // With a remembered head, a failure here most likely means another writer moved it.
        let stale = |e: StoreError| match e {
            StoreError::Corrupt(_) if !trusted => BatchError::StaleHead,
            e => BatchError::Aborted(e),
        };
        let (rows, next) = chain_events(head, pending)?;
        ops::insert_audit::<D>(&mut tx, &rows)
            .await
            .map_err(stale)?;
        ops::store_head::<D>(&mut tx, &head, &next)
            .await
            .map_err(stale)?;
        seqs = (head.size + 1..=next.size).collect();
        new_head = Some(next);
    } else {
        new_head = remembered;
    }
    crate::dialect::count_round_trips(1);
    tx.commit()
        .await
        .map_err(|e| BatchError::Commit(ops::db_error::<D>(e)))?;
    state.head = new_head;

    // Hand each applied change its sequence numbers, in the order they were assigned.
    let mut assigned = seqs.into_iter();
    Ok(jobs
        .iter()
        .zip(results)
        .zip(fresh_claims)
        .map(|((job, result), fresh)| match (result, &job.work) {
            (Some(done), _) => done,
            (None, Work::Change(change, _)) => Ok(Done::Seqs(
                assigned.by_ref().take(change.audit.len()).collect(),
            )),
            (None, Work::ClaimAudit(_)) => assigned
                .next()
                .map(|seq| Done::ClaimAudited(crate::ClaimRecorded { fresh, seq }))
                .ok_or_else(unexpected_reply),
            (None, _) => Err(unexpected_reply()),
        })
        .collect())
}

/// The common batch of a busy server, audit records and nothing else (token issuance,
/// decisions), in one round trip to the database instead of five (BEGIN, head read, insert,
/// head update, COMMIT): one statement on PostgreSQL, one script on SQLite (see
/// [`AuditAppend`]). It starts from the head this writer remembers; if another writer moved
/// it, nothing is written and the batch reruns on the general path, which reads the head.
async fn append_audit_only<D: Dialect>(
    pool: &Pool<D::Db>,
    state: &mut WriterState<D>,
    jobs: &[Job],
    head: AuditHead,
) -> Result<Vec<Result<Done, StoreError>>, BatchError> {
    // The batch's one-time claims in queue order, plain ones and those with records alike.
    let claims: Vec<&Claim> = jobs
        .iter()
        .filter_map(|j| match &j.work {
            Work::Claim(c) => Some(c),
            Work::ClaimAudit(ca) => Some(&ca.claim),
            _ => None,
        })
        .collect();
    let batch = (!claims.is_empty()).then(|| ClaimBatch::new(&claims));
    if let Some(direct) = state.direct.as_mut() {
        // One transaction on the writer's own connection: the claims first, so that each
        // record is that of its claim's outcome. The sqlx paths below count their statements
        // themselves.
        crate::dialect::count_round_trips(1);
        let mut claimed = Vec::new();
        // Synchronous on purpose: this thread and its runtime exist for this writer alone.
        let next = direct.append(
            batch.as_ref().map(|b| (D::SQL.claim_many, b)),
            &head,
            |fresh| {
                claimed = batch.as_ref().map(|b| b.answers(fresh)).unwrap_or_default();
                chain_events(head, batch_events(jobs, &claimed))
            },
        )?;
        state.head = Some(next);
        return Ok(answers_in_order(jobs, head.size, claimed));
    }
    // Without a connection of its own the writer claims optimistically: the records are those
    // of fresh claims, and the statement fails, writing nothing, unless every claim was fresh;
    // the batch then reruns on the general path, which claims before it chains.
    if batch.as_ref().is_some_and(ClaimBatch::has_repeats) {
        return Err(BatchError::StaleHead);
    }
    let claimed = vec![true; claims.len()];
    let (rows, next) = chain_events(head, batch_events(jobs, &claimed))?;
    let conn = connection::<D>(&mut state.conn, pool).await?;
    match D::SQL.append_audit {
        AuditAppend::Statement(plain) => {
            let sql = match (&batch, D::SQL.append_audit_claiming) {
                (None, _) => plain,
                (Some(_), Some(claiming)) => claiming,
                (Some(_), None) => return Err(BatchError::StaleHead),
            };
            let json = ops::audit_json(&rows).map_err(BatchError::Aborted)?;
            let to_i64 = |n: u64, what| ops::to_i64(n, what).map_err(BatchError::Aborted);
            let mut stmt = crate::dialect::Stmt::new(sql)
                .owned_text(json)
                .int(to_i64(next.size, "audit size")?)
                .bytes(&next.chain_hash)
                .int(to_i64(head.size, "audit size")?)
                .int(to_i64(rows.len() as u64, "audit batch size")?);
            if let Some(b) = &batch {
                stmt = stmt
                    .text(&b.json)
                    .int(b.now_us)
                    .int(to_i64(b.distinct() as u64, "claim batch size")?);
            }
            match D::fetch_optional(conn, stmt).await {
                Ok(Some(_)) => {}
                // The database refused the statement (moved head, duplicate seq, a replayed
                // claim): nothing was written.
                Err(sqlx::Error::Database(_)) => return Err(BatchError::StaleHead),
                Ok(None) => {
                    return Err(BatchError::Commit(StoreError::Backend(
                        "audit append returned no row".into(),
                    )));
                }
                // The connection failed: the statement may or may not have committed.
                Err(e) => return Err(BatchError::Commit(ops::db_error::<D>(e))),
            }
        }
        AuditAppend::Script { .. } if batch.is_some() => return Err(BatchError::StaleHead),
        AuditAppend::Script {
            begin,
            head: fragments,
            rollback,
        } => {
            let stmt = ops::audit_script::<D>(begin, &fragments, &rows, &head, &next)
                .map_err(BatchError::Aborted)?;
            if let Err(e) = D::exec(conn, stmt).await {
                // A statement of the script failed, so COMMIT did not run or did not succeed:
                // end the transaction it left open. If that fails too (no transaction was
                // open, or the connection is broken), the batch's failure drops the
                // connection, so the next batch starts on a fresh one.
                let _ = D::exec(conn, crate::dialect::Stmt::new(rollback)).await;
                return Err(match e {
                    sqlx::Error::Database(_) => BatchError::StaleHead,
                    // The connection thread failed: whether COMMIT ran is unknown.
                    e => BatchError::Commit(ops::db_error::<D>(e)),
                });
            }
        }
    }
    state.head = Some(next);
    Ok(answers_in_order(jobs, head.size, claimed))
}

/// The audit events of an audit-only batch in queue order: each change's, and for each claim
/// with a record, the record of its outcome. `claimed`: the outcome of each of the batch's
/// claims, in queue order.
fn batch_events<'a>(
    jobs: &'a [Job],
    claimed: &[bool],
) -> impl Iterator<Item = (&'a [AuditEvent], &'a [Prepared])> {
    let mut outcomes = claimed.iter().copied();
    jobs.iter().filter_map(move |j| match &j.work {
        Work::Change(c, prepared) => Some((c.audit.as_slice(), prepared.as_slice())),
        Work::Claim(_) => {
            outcomes.next();
            None
        }
        // A missing outcome cannot happen (one per claim); a replay's record is the safe side.
        Work::ClaimAudit(ca) => Some(ca.record(outcomes.next().unwrap_or(false))),
        _ => None,
    })
}

/// The answers to an audit-only batch appended after a log of `size` records: each change's
/// sequence numbers, and each one-time claim's outcome from `claimed` (with its record's
/// number where it has one), in queue order.
fn answers_in_order(jobs: &[Job], size: u64, claimed: Vec<bool>) -> Vec<Result<Done, StoreError>> {
    let mut seq = size;
    let mut claimed = claimed.into_iter();
    jobs.iter()
        .map(|j| match &j.work {
            Work::Change(c, _) => {
                let n = c.audit.len() as u64;
                let seqs = (seq + 1..=seq + n).collect();
                seq += n;
                Ok(Done::Seqs(seqs))
            }
            Work::Claim(_) => claimed
                .next()
                .map(Done::Claimed)
                .ok_or_else(unexpected_reply),
            Work::ClaimAudit(_) => {
                seq += 1;
                claimed
                    .next()
                    .map(|fresh| Done::ClaimAudited(crate::ClaimRecorded { fresh, seq }))
                    .ok_or_else(unexpected_reply)
            }
            _ => Err(unexpected_reply()),
        })
        .collect()
}

/// Assigns sequence numbers after `head` and computes each record's leaf and chain hash.
fn chain_events<'a>(
    head: AuditHead,
    changes: impl Iterator<Item = (&'a [AuditEvent], &'a [Prepared])>,
) -> Result<(Vec<AuditRow<'a>>, AuditHead), BatchError> {
    let mut size = head.size;
    let mut chain = head.chain_hash;
    let mut rows = Vec::new();
    let mut canonical = Vec::new();
    for (event, prepared) in changes.flat_map(|(events, prepared)| events.iter().zip(prepared)) {
        size += 1;
        prepared.canonical.write_with_seq(size, &mut canonical);
        let leaf = merkle::leaf_hash(&canonical);
        chain = merkle::chain_hash(&chain, &leaf);
        rows.push(AuditRow {
            seq: ops::to_i64(size, "audit sequence number").map_err(BatchError::Aborted)?,
            event,
            details: &prepared.details,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn index_runs_shrink_when_slow_and_grow_back_when_quick() {
        let slow = INDEX_PAUSE + Duration::from_micros(1);
        let quick = INDEX_PAUSE / 4;
        let steady = INDEX_PAUSE * 3 / 4;
        // Slow runs halve down to the floor, quick ones double up to the ceiling.
        let mut run = 4096;
        let mut seen = vec![];
        for _ in 0..8 {
            run = next_index_run(run, 4096, slow);
            seen.push(run);
        }
        assert_eq!(seen, [2048, 1024, 512, 256, 256, 256, 256, 256]);
        for _ in 0..8 {
            run = next_index_run(run, 4096, quick);
        }
        assert_eq!(run, 4096);
        // In between, the length holds.
        assert_eq!(next_index_run(512, 4096, steady), 512);
        // A configured ceiling below the floor is both.
        assert_eq!(next_index_run(5, 5, slow), 5);
        assert_eq!(next_index_run(5, 5, quick), 5);
    }
}

//! The storage boundary: one [`Store`] trait, with SQLite (embedded default) and PostgreSQL backends.
//! Every change to records goes through [`Store::commit`], which applies mutations and appends audit records atomically.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use steward_core::{
    AuditEvent, AuditRecord, Credential, Identity, IdentityKind, IdentityStatus, Outcome, Owner,
    OwnerStatus,
};
use thiserror::Error;
use time::OffsetDateTime;
use uuid::Uuid;

mod authz;
mod claims;
mod console;
mod dialect;
mod direct;
mod engine;
mod findings;
mod gather;
mod leases;
mod lifecycle;
mod migrate;
mod nodelay;
mod ops;
mod pki;
pub mod postgres;
mod rows;
pub mod sqlite;
mod trust;
mod types;
mod usage;
mod writer;

pub use authz::{ExceptionQuery, ExceptionRecord, PolicyRecord};
pub use console::{ConsoleSession, FindingStat, IdentitySearch, IdentityStat};
pub use dialect::round_trips;
pub use findings::{FindingCount, FindingQuery, FindingRecord, FindingStatus};
pub use gather::{GATHER_TARGET, GATHER_WINDOW, GroupCommit};
pub use leases::Lease;
pub use lifecycle::{
    ExceptionRequestQuery, JitQuery, LifecycleCounts, LifecycleMutation, ReviewItemQuery,
    ReviewQuery, RotationFlag, RotationFlagQuery,
};
pub use pki::PkiObject;
pub use trust::{TrustPolicyQuery, TrustPolicyRecord};
pub use types::*;
pub use usage::{IdRange, RiskQuery, RiskRecord, SourceDelta, UsageBatch, UsageDelta};

/// Leaf hashes read per statement by [`Store::audit_leaf_hashes`] (about 1 MiB of hashes).
pub const LEAF_PAGE: u32 = 32_768;

/// Opens the store named by `url`: `sqlite://PATH` or `sqlite:PATH` (a file, created if missing),
/// or `postgres://…` / `postgresql://…`. Applies migrations and starts the store's writer task,
/// so it must be called inside a Tokio runtime.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with(url, GroupCommit::default()).await
}

/// [`open`], with `gathering` for the loops that wait for more work before a batch: SQLite's
/// group-commit writer, PostgreSQL's one-time claim batcher (see [`GroupCommit`]).
pub async fn open_with(
    url: &str,
    gathering: GroupCommit,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = postgres::PostgresOptions {
            claim_batches: gathering,
            ..postgres::PostgresOptions::default()
        };
        return postgres::open_with(url, options).await;
    }
    let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(StoreError::Backend(format!(
            "unsupported storage URL scheme in {:?}: expected sqlite://PATH or postgres://…",
            url.split_once(':').map_or(url, |(scheme, _)| scheme)
        )));
    };
    if path.is_empty() || path.starts_with(':') || path.contains('?') {
        return Err(StoreError::Backend(
            "a sqlite URL must name a database file (sqlite://PATH); in-memory databases and URL parameters are not supported"
                .into(),
        ));
    }
    let options = sqlite::SqliteOptions {
        group_commit: gathering,
        ..sqlite::SqliteOptions::default()
    };
    sqlite::open_with(path, options).await
}

/// Storage failures, typed so the HTTP edge can map each to one status code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule was violated (409). The message names what clashed, never a secret.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An optimistic-concurrency check failed: the row changed since it was read (409).
    #[error("stale write: {0} was changed concurrently; retry")]
    Stale(String),
    /// The row to update does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The database cannot be reached or is read-only right now (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The stored data is not what Steward wrote (foreign or corrupted database).
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// Any other backend error.
    #[error("storage error: {0}")]
    Backend(String),
}

/// A cursor-paginated result.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items follow (the store reads one row ahead), holding the last item's
    /// id (or seq, for audit records); pass it back as the query's `after` (`after_seq`).
    pub next: Option<String>,
}

/// The persistence port. Implementations must be safe to share between tasks (and, for
/// PostgreSQL, between processes on several nodes).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`sqlite` or `postgres`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Applies `change.mutations` and appends `change.audit` in ONE transaction: all or nothing.
    /// Returns the sequence numbers assigned to the audit events, in order. Implementations
    /// group concurrent commits into one database transaction (group commit) with a savepoint
    /// per change, so one failing change never affects another.
    async fn commit(&self, change: Change) -> Result<Vec<u64>, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;

    // ---- owners ----
    async fn get_owner(&self, id: Uuid) -> Result<Option<Owner>, StoreError>;
    async fn list_owners(&self, q: &OwnerQuery) -> Result<Page<Owner>, StoreError>;

    // ---- identities ----
    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError>;
    async fn list_identities(&self, q: &IdentityQuery) -> Result<Page<Identity>, StoreError>;
    async fn count_identities(&self) -> Result<u64, StoreError>;

    // ---- credentials ----
    async fn get_credential(&self, id: Uuid) -> Result<Option<Credential>, StoreError>;
    /// Looks up an API-key credential by the keyed hash of its secret.
    async fn find_credential_by_hash(
        &self,
        secret_hash: &[u8],
    ) -> Result<Option<Credential>, StoreError>;
    /// All credentials of an identity (any state), oldest first.
    async fn list_credentials(&self, identity_id: Uuid) -> Result<Vec<Credential>, StoreError>;

    // ---- tokens and one-time values ----
    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    /// Revoked tokens still unexpired at `now`, at most `limit` of them, soonest expiry last:
    /// what a node loads to answer revocation checks from memory.
    async fn list_revoked_tokens(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<RevokedToken>, StoreError>;
    /// Remembers `value` in `namespace` until `expires_at`. Returns `false` when it was already
    /// remembered and unexpired (a replay). Atomic across processes.
    async fn claim_once(
        &self,
        namespace: &str,
        value: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Claims `value` in `namespace` as [`Store::claim_once`] does and, in the same transaction,
    /// appends `if_fresh` to the audit log when the value was unclaimed or `if_replayed` when it
    /// was a replay: the record of a request that a one-time value authorizes (a client
    /// assertion's `jti`) can never disagree with the claim, and the two cost one write instead
    /// of two. Fails, claiming nothing, if the record cannot be written.
    async fn claim_once_audited(
        &self,
        namespace: &str,
        value: &str,
        expires_at: OffsetDateTime,
        if_fresh: AuditEvent,
        if_replayed: AuditEvent,
    ) -> Result<ClaimRecorded, StoreError>;
    /// Deletes one-time values and revoked-token entries that have expired. Returns rows removed.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    // ---- keys and settings ----
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    // ---- audit ----
    /// Number of records and the chain hash of the last one (zeros when empty).
    async fn audit_head(&self) -> Result<AuditHead, StoreError>;
    async fn list_audit(&self, q: &AuditQuery) -> Result<Page<AuditRecord>, StoreError>;
    /// Records with `seq >= from_seq` in seq order, at most `limit`, exactly as stored
    /// (stored hashes included, not recomputed): the input of offline verification.
    async fn audit_range(&self, from_seq: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// Stored leaf hashes of records `1..=upto`, in seq order (for Merkle roots and proofs),
    /// read in pages of [`LEAF_PAGE`] so that only the hashes are held, never the rows.
    async fn audit_leaf_hashes(&self, upto: u64) -> Result<Vec<[u8; 32]>, StoreError>;
    /// Stored leaf hashes of records `after + 1 ..= min(upto, after + limit)`, in seq order:
    /// how a caller that keeps its own Merkle tree catches up with the log.
    async fn audit_leaf_hashes_after(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> Result<Vec<[u8; 32]>, StoreError>;
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError>;

    /// Notices of changes committed by any process sharing this database, so that caches are
    /// invalidated at once (PostgreSQL `LISTEN/NOTIFY`). `None` when the backend is not shared
    /// between processes (SQLite). The first call starts listening.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        None
    }

    // ---- authorization (policies and guard-rail exceptions) ----
    /// Version of the authorization state, bumped by every policy or exception change.
    async fn policy_state_version(&self) -> Result<i64, StoreError>;
    /// The latest version of every policy that is not deleted, by id.
    async fn current_policies(&self) -> Result<Vec<PolicyRecord>, StoreError>;
    /// Every stored version of one policy, oldest first (empty when unknown).
    async fn policy_history(&self, id: &str) -> Result<Vec<PolicyRecord>, StoreError>;
    async fn list_exceptions(&self, q: &ExceptionQuery)
    -> Result<Vec<ExceptionRecord>, StoreError>;

    // ---- PKI (CA certificates, device CAs and rules, the certificate deny-list) ----
    /// Every PKI record of `kind`, oldest first, expired ones included.
    async fn list_pki_objects(&self, kind: &str) -> Result<Vec<PkiObject>, StoreError>;

    // ---- findings (leaked secrets, governance) ----
    async fn get_finding(&self, id: Uuid) -> Result<Option<FindingRecord>, StoreError>;
    /// Findings matching `q`, in id (creation) order, cursor-paginated.
    async fn list_findings(&self, q: &FindingQuery) -> Result<Page<FindingRecord>, StoreError>;

    // ---- trust policies (federation) ----
    async fn get_trust_policy(&self, id: Uuid) -> Result<Option<TrustPolicyRecord>, StoreError>;
    /// Trust policies matching `q`, in id (creation) order, cursor-paginated.
    async fn list_trust_policies(
        &self,
        q: &TrustPolicyQuery,
    ) -> Result<Page<TrustPolicyRecord>, StoreError>;
    // ---- web console (operator sessions and the console's read models) ----
    /// The console session whose id hashes to `id_hash`, live or not.
    async fn get_console_session(
        &self,
        id_hash: &[u8],
    ) -> Result<Option<ConsoleSession>, StoreError>;
    /// Identity counts by (effective status at `now`, kind, environment).
    async fn identity_stats(&self, now: OffsetDateTime) -> Result<Vec<IdentityStat>, StoreError>;
    /// Finding counts by (type, severity, OWASP NHI id, status).
    async fn finding_stats(&self) -> Result<Vec<FindingStat>, StoreError>;
    /// [`Store::list_identities`] plus a name-prefix condition served by an index.
    async fn search_identities(&self, q: &IdentitySearch) -> Result<Page<Identity>, StoreError>;
    /// Audit records matching `q` (its `after_seq` is a lower bound), newest first, with
    /// `seq < before_seq`; the page's `next` is the seq to pass as `before_seq` for older ones.
    async fn audit_recent(
        &self,
        q: &AuditQuery,
        before_seq: Option<u64>,
    ) -> Result<Page<AuditRecord>, StoreError>;
    /// The seq of the first record (in time order) stamped at or after `at`, if any.
    async fn audit_seq_at(&self, at: OffsetDateTime) -> Result<Option<u64>, StoreError>;
    /// Number of records with exactly this action (and outcome, if given) and
    /// `from_seq <= seq < to_seq`. Without an outcome it is a count on the (action, seq) index.
    async fn count_audit_action(
        &self,
        action: &str,
        outcome: Option<Outcome>,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<u64, StoreError>;
    // ---- leases (single-node duties in a cluster; see `leases.rs`) ----
    /// Takes lease `name` for `holder` until `now + ttl` when it is free, expired, or already
    /// held by `holder` (then it is renewed, same epoch). A change of holder bumps the epoch.
    /// `None` when another holder has it. Atomic across processes.
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Lease>, StoreError>;
    /// Extends a lease this holder still has (same name, holder and epoch) to `now + ttl`;
    /// `None` when it was taken over (the holder must stop acting).
    async fn renew_lease(
        &self,
        lease: &Lease,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Lease>, StoreError>;
    /// Gives a lease up at once (it keeps its epoch); `false` when it was no longer ours.
    async fn release_lease(&self, lease: &Lease) -> Result<bool, StoreError>;
    /// The lease as stored, expired or not (`None` if never taken).
    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;
    // ---- usage, governance findings and risk (see `usage.rs`)
    /// Daily use of one identity on and after `since_day` (days since the epoch), by day.
    async fn usage_days(
        &self,
        identity_id: Uuid,
        since_day: i64,
    ) -> Result<Vec<steward_core::usage::DailyUse>, StoreError>;
    /// All-time use per (scope, audience) of one identity.
    async fn usage_summary(
        &self,
        identity_id: Uuid,
    ) -> Result<Vec<steward_core::usage::ScopeUse>, StoreError>;
    /// All-time use per (scope, audience) of the identities in `range`, by identity.
    async fn usage_summaries_between(
        &self,
        range: IdRange,
    ) -> Result<Vec<steward_core::usage::ScopeUse>, StoreError>;
    /// The recorded sources of every credential of the identities in `range`, by identity.
    async fn credential_sources_between(
        &self,
        range: IdRange,
    ) -> Result<Vec<steward_core::usage::SourceUse>, StoreError>;
    /// Every credential (any state) of the identities in `range`, by identity, oldest first.
    async fn credentials_between(&self, range: IdRange) -> Result<Vec<Credential>, StoreError>;
    /// Open and accepted findings (every type) of the identities in `range`, by identity.
    async fn live_findings_between(&self, range: IdRange)
    -> Result<Vec<FindingRecord>, StoreError>;
    /// Number of findings per (type, severity, status, OWASP id, NIST id).
    async fn finding_counts(&self) -> Result<Vec<FindingCount>, StoreError>;
    async fn get_identity_risk(&self, identity_id: Uuid) -> Result<Option<RiskRecord>, StoreError>;
    /// Stored risk scores of the identities in `range`, by identity.
    async fn identity_risks_between(&self, range: IdRange) -> Result<Vec<RiskRecord>, StoreError>;
    /// Risk scores at or above `q.min_score`, highest first; the cursor is `score:identity_id`.
    async fn list_identity_risks(&self, q: &RiskQuery) -> Result<Page<RiskRecord>, StoreError>;
    /// Deletes daily usage older than `before_day` and sources last seen before
    /// `sources_before`, in bounded steps through the writer. Returns the rows it found to delete.
    async fn purge_usage(
        &self,
        before_day: i64,
        sources_before: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    // ---- lifecycle controls (access reviews, JIT grants, exception requests, rotation flags) ----
    async fn get_review(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::ReviewCampaign>, StoreError>;
    /// Review campaigns matching `q`, in id (creation) order, cursor-paginated.
    async fn list_reviews(
        &self,
        q: &ReviewQuery,
    ) -> Result<Page<steward_core::lifecycle::ReviewCampaign>, StoreError>;
    async fn get_review_item(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::ReviewItem>, StoreError>;
    /// Items of one campaign, in id order, cursor-paginated.
    async fn list_review_items(
        &self,
        q: &ReviewItemQuery,
    ) -> Result<Page<steward_core::lifecycle::ReviewItem>, StoreError>;
    async fn get_jit_grant(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::JitGrant>, StoreError>;
    /// JIT grants matching `q`, in id (creation) order, cursor-paginated.
    async fn list_jit_grants(
        &self,
        q: &JitQuery,
    ) -> Result<Page<steward_core::lifecycle::JitGrant>, StoreError>;
    async fn get_exception_request(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::ExceptionRequest>, StoreError>;
    /// Exception requests matching `q`, in id (creation) order, cursor-paginated.
    async fn list_exception_requests(
        &self,
        q: &ExceptionRequestQuery,
    ) -> Result<Page<steward_core::lifecycle::ExceptionRequest>, StoreError>;
    /// Credentials flagged for rotation, in credential id order, cursor-paginated.
    async fn list_rotation_flags(
        &self,
        q: &RotationFlagQuery,
    ) -> Result<Page<RotationFlag>, StoreError>;
    /// Open review campaigns, their undecided (and overdue at `now`) items, pending exception
    /// and JIT requests, for the posture report.
    async fn lifecycle_counts(&self, now: OffsetDateTime) -> Result<LifecycleCounts, StoreError>;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend())
    }
}

/// Queries over owners.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OwnerQuery {
    pub status: Option<OwnerStatus>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    /// Cursor: return owners with id greater than this.
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

/// Queries over identities. `status = Some(Expired)` means "stored as live but past expires_at at `now`";
/// `Some(Active)` etc. exclude expired ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityQuery {
    pub owner_id: Option<Uuid>,
    pub environment: Option<String>,
    pub kind: Option<IdentityKind>,
    pub status: Option<IdentityStatus>,
    pub name: Option<String>,
    /// Case-insensitive substring of the name or purpose.
    pub search: Option<String>,
    pub vendor: Option<String>,
    /// Cursor: return identities with id greater than this (ids are UUIDv7, so this is creation order).
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
    /// The instant against which expiry is judged (expired when `expires_at <= now`).
    pub now: OffsetDateTime,
}

impl IdentityQuery {
    /// Every identity, unfiltered: a page of `limit` after `after`, expiry judged at `now`.
    pub fn all(after: Option<Uuid>, limit: u32, now: OffsetDateTime) -> Self {
        Self {
            owner_id: None,
            environment: None,
            kind: None,
            status: None,
            name: None,
            search: None,
            vendor: None,
            after,
            limit,
            now,
        }
    }
}

/// Queries over the audit log, in seq order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    pub identity_id: Option<Uuid>,
    /// Exact action, or a prefix when it ends with `.` or `*` (e.g. `token.`).
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    pub actor: Option<String>,
    /// Records at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Records strictly before this instant.
    pub until: Option<OffsetDateTime>,
    /// Cursor: records with seq greater than this.
    pub after_seq: Option<u64>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

/// A source of [`Notice`]s, implemented by backends that can be shared between processes.
pub(crate) trait NoticeSource: Send + Sync {
    fn subscribe(self: std::sync::Arc<Self>) -> tokio::sync::broadcast::Receiver<Notice>;
}

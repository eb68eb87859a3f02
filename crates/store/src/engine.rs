//! The [`Store`] implementation shared by both backends: reads run on a connection pool, changes
//! go through the group-commit [`Writer`]; only SQL text and driver glue differ per backend.

use async_trait::async_trait;
use sqlx::Pool;
use sqlx::pool::PoolConnection;
use std::sync::Arc;
use steward_core::{
    AuditEvent, AuditRecord, Credential, Identity, IdentityStatus, Owner, to_micros,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{
    Arg, Dialect, SqlBuilder, Stmt, audit_columns, identity_columns, owner_columns,
};
use crate::ops::{self, Claim, db_error};
use crate::rows::{self, Cols, owner_status_str};
use crate::writer::Writer;
use crate::{
    AuditHead, AuditQuery, Change, CheckpointRecord, ClaimRecorded, IdentityQuery, OwnerQuery,
    Page, RevokedToken, SigningKeyRecord, Store, StoreError,
};

/// Page size when a query asks for none.
const DEFAULT_PAGE: u32 = 100;
/// Largest page a query may ask for.
const MAX_PAGE: u32 = 1000;

/// A [`Store`] over one SQL backend.
pub(crate) struct SqlStore<D: Dialect> {
    /// Connections for reads and, unless the backend allows a single writer only, for
    /// independent one-statement writes (one-time claims, purges).
    pool: Pool<D::Db>,
    writer: Writer,
    /// Batches one-time claims where they do not go through the writer (see `claims.rs`).
    claims: Option<crate::claims::ClaimBatcher>,
    notices: Option<Arc<dyn crate::NoticeSource>>,
}

impl<D: Dialect> SqlStore<D> {
    pub(crate) fn new(pool: Pool<D::Db>, writer: Writer) -> Self {
        Self {
            pool,
            writer,
            claims: None,
            notices: None,
        }
    }

    /// One-time claims go to `batcher` instead of the writer (backends with many writers).
    pub(crate) fn with_claims(mut self, batcher: crate::claims::ClaimBatcher) -> Self {
        self.claims = Some(batcher);
        self
    }

    pub(crate) fn with_notices(mut self, source: Arc<dyn crate::NoticeSource>) -> Self {
        self.notices = Some(source);
        self
    }

    async fn conn(&self) -> Result<PoolConnection<D::Db>, StoreError> {
        self.pool.acquire().await.map_err(db_error::<D>)
    }

    async fn purge_step(&self, now_us: i64) -> Result<(u64, u64), StoreError> {
        if D::SINGLE_WRITER {
            self.writer.purge_step(now_us).await
        } else {
            ops::purge::<D>(&mut *self.conn().await?, now_us).await
        }
    }

    /// A lease operation: through the writer when the backend has a single writer, else as one
    /// autocommit statement (a single row lock, like a one-time claim).
    async fn lease_op(
        &self,
        op: crate::leases::LeaseOp,
    ) -> Result<Option<crate::Lease>, StoreError> {
        if D::SINGLE_WRITER {
            self.writer.lease(op).await
        } else {
            crate::leases::run::<D>(&mut *self.conn().await?, &op).await
        }
    }

    async fn one<T>(
        &self,
        stmt: Stmt<'_>,
        map: impl FnOnce(&crate::dialect::Row<D>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut conn = self.conn().await?;
        let row = D::fetch_optional(&mut conn, stmt)
            .await
            .map_err(db_error::<D>)?;
        row.as_ref().map(map).transpose()
    }

    async fn all<T>(
        &self,
        stmt: Stmt<'_>,
        map: impl Fn(&crate::dialect::Row<D>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut conn = self.conn().await?;
        let rows = D::fetch_all(&mut conn, stmt).await.map_err(db_error::<D>)?;
        rows.iter().map(map).collect()
    }
}

/// Clamps a requested page size to `1..=MAX_PAGE` (0 means the default).
pub(crate) fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// Listing queries fetch one row more than the page holds; that row only tells whether another
/// page follows, and is cut off here.
pub(crate) fn finish_page<T>(
    mut items: Vec<T>,
    size: u32,
    cursor: impl Fn(&T) -> String,
) -> Page<T> {
    let size = size as usize;
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next }
}

/// A LIKE pattern matching `s` anywhere, with the wildcards in `s` escaped (escape char `\`).
fn contains_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// How an audit `action` filter matches.
#[derive(Debug, PartialEq, Eq)]
enum ActionFilter<'a> {
    Exact(&'a str),
    /// Actions in `[from, to)`; `to` is `None` when no string bounds the prefix from above.
    Prefix {
        from: &'a str,
        to: Option<String>,
    },
    Any,
}

/// `token.` and `token.*` match every action starting with `token.`; anything else matches exactly.
fn action_filter(action: &str) -> ActionFilter<'_> {
    let prefix = if let Some(p) = action.strip_suffix('*') {
        p
    } else if action.ends_with('.') {
        action
    } else {
        return ActionFilter::Exact(action);
    };
    if prefix.is_empty() {
        return ActionFilter::Any;
    }
    ActionFilter::Prefix {
        from: prefix,
        to: prefix_successor(prefix),
    }
}

/// The least string greater than every string starting with `prefix` (in code point order, which
/// is byte order for UTF-8), or `None` if there is none.
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The filters of an identity listing (everything but the cursor), appended to `b`.
pub(crate) fn identity_filters<'a, D: Dialect>(b: &mut SqlBuilder<'a, D>, q: &'a IdentityQuery) {
    let now = to_micros(q.now);
    if let Some(owner) = q.owner_id {
        b.sql(" AND owner_id = ").arg(Arg::uuid(owner));
    }
    if let Some(env) = &q.environment {
        b.sql(" AND environment = ").arg(Arg::text(env));
    }
    if let Some(kind) = q.kind {
        b.sql(" AND kind = ").arg(Arg::text(kind.as_str()));
    }
    if let Some(name) = &q.name {
        b.sql(" AND name = ").arg(Arg::text(name));
    }
    if let Some(vendor) = &q.vendor {
        b.sql(" AND vendor = ").arg(Arg::text(vendor));
    }
    match q.status {
        None => {}
        Some(IdentityStatus::Expired) => {
            b.sql(" AND status IN ('pending_approval', 'active', 'suspended') AND expires_at <= ")
                .arg(Arg::int(now));
        }
        Some(IdentityStatus::Retired) => {
            b.sql(" AND status = ")
                .arg(Arg::text(IdentityStatus::Retired.as_str()));
        }
        Some(live) => {
            b.sql(" AND status = ")
                .arg(Arg::text(live.as_str()))
                .sql(" AND expires_at > ")
                .arg(Arg::int(now));
        }
    }
    if let Some(search) = &q.search {
        let pattern = contains_pattern(search);
        b.sql(" AND (name ")
            .sql(D::ILIKE)
            .sql(" ")
            .arg(Arg::owned(pattern.clone()))
            .sql(" ESCAPE '\\' OR purpose ")
            .sql(D::ILIKE)
            .sql(" ")
            .arg(Arg::owned(pattern))
            .sql(" ESCAPE '\\')");
    }
}

/// The filters of an audit listing (everything but the cursor), appended to `b`.
pub(crate) fn audit_filters<'a, D: Dialect>(b: &mut SqlBuilder<'a, D>, q: &'a AuditQuery) {
    if let Some(id) = q.identity_id {
        b.sql(" AND identity_id = ").arg(Arg::uuid(id));
    }
    match q.action.as_deref().map(action_filter) {
        None | Some(ActionFilter::Any) => {}
        Some(ActionFilter::Exact(a)) => {
            b.sql(" AND action = ").arg(Arg::text(a));
        }
        Some(ActionFilter::Prefix { from, to }) => {
            b.sql(" AND action >= ").arg(Arg::text(from));
            if let Some(to) = to {
                b.sql(" AND action < ").arg(Arg::owned(to));
            }
        }
    }
    if let Some(outcome) = q.outcome {
        b.sql(" AND outcome = ").arg(Arg::text(outcome.as_str()));
    }
    if let Some(actor) = &q.actor {
        b.sql(" AND actor = ").arg(Arg::text(actor));
    }
    if let Some(since) = q.since {
        b.sql(" AND time_us >= ").arg(Arg::int(to_micros(since)));
    }
    if let Some(until) = q.until {
        b.sql(" AND time_us < ").arg(Arg::int(to_micros(until)));
    }
}

/// The records of one audit page: those matching `q`, after `q.after_seq` and before `before`,
/// in `seq` order (newest first when `descending`), `size + 1` at most (the extra one tells
/// [`finish_page`] that another page follows).
///
/// Where the backend keeps its by-identity index off the commit path (SQLite), a query for one
/// identity reads the records up to the indexed bound through the index table, and scans the
/// log's short tail above it. The two parts are disjoint and ordered, so a page is one part,
/// then the other. The bound is read once: the index only grows, and every record above the
/// bound is in the tail, so a run indexed meanwhile is neither missed nor returned twice.
pub(crate) async fn audit_page<D: Dialect>(
    conn: &mut crate::dialect::Conn<D>,
    q: &AuditQuery,
    before: Option<u64>,
    descending: bool,
    size: u32,
) -> Result<Vec<AuditRecord>, StoreError> {
    let limit = usize::try_from(size)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let select = concat!("SELECT ", audit_columns!(), " FROM audit WHERE ");
    let (Some(ix), Some(identity)) = (D::SQL.deferred_identity_index, q.identity_id) else {
        let mut b = SqlBuilder::<D>::new(select);
        b.sql("1 = 1");
        return audit_rows::<D>(conn, b, q, "seq", before, descending, limit).await;
    };
    let upto = D::fetch_optional(conn, Stmt::new(ix.upto))
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(|row| Cols::<D>::new(row, "audit_identity_indexed").int("upto"))
        .transpose()?
        .unwrap_or(0);
    let indexed = || {
        let mut b = SqlBuilder::<D>::new(ix.indexed_head);
        b.arg(Arg::uuid(identity))
            .sql(" AND record <= ")
            .arg(Arg::int(upto));
        b
    };
    let tail = || {
        let mut b = SqlBuilder::<D>::new(select);
        b.sql("seq > ").arg(Arg::int(upto));
        b
    };
    let (first, then, first_seq, then_seq) = if descending {
        (tail(), indexed(), "seq", "record")
    } else {
        (indexed(), tail(), "record", "seq")
    };
    let mut rows = audit_rows::<D>(conn, first, q, first_seq, before, descending, limit).await?;
    if rows.len() < limit {
        let rest = limit - rows.len();
        rows.extend(audit_rows::<D>(conn, then, q, then_seq, before, descending, rest).await?);
    }
    Ok(rows)
}

/// Completes `b` (a `SELECT` of the audit columns with its first condition) with `q`'s filters
/// and the cursor on the `seq` column named `seq`, and runs it.
async fn audit_rows<'a, D: Dialect>(
    conn: &mut crate::dialect::Conn<D>,
    mut b: SqlBuilder<'a, D>,
    q: &'a AuditQuery,
    seq: &'static str,
    before: Option<u64>,
    descending: bool,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    audit_filters(&mut b, q);
    if let Some(after) = q.after_seq {
        b.sql(" AND ")
            .sql(seq)
            .sql(" > ")
            .arg(Arg::int(saturating_i64(after)));
    }
    if let Some(before) = before {
        b.sql(" AND ")
            .sql(seq)
            .sql(" < ")
            .arg(Arg::int(saturating_i64(before)));
    }
    b.sql(" ORDER BY ")
        .sql(seq)
        .sql(if descending { " DESC" } else { "" });
    b.sql(" LIMIT ")
        .arg(Arg::int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = D::fetch_all(conn, b.build()).await.map_err(db_error::<D>)?;
    rows.iter().map(rows::audit_record::<D>).collect()
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D> {
    fn backend(&self) -> &'static str {
        D::NAME
    }

    async fn commit(&self, change: Change) -> Result<Vec<u64>, StoreError> {
        self.writer.commit(change).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_stopped() {
            return Err(StoreError::Unavailable(
                "the storage writer has stopped".into(),
            ));
        }
        let mut conn = self.conn().await?;
        D::fetch_optional(&mut conn, Stmt::new(D::SQL.ping))
            .await
            .map_err(db_error::<D>)?;
        Ok(())
    }

    async fn get_owner(&self, id: Uuid) -> Result<Option<Owner>, StoreError> {
        self.one(Stmt::new(D::SQL.get_owner).uuid(id), rows::owner::<D>)
            .await
    }

    async fn list_owners(&self, q: &OwnerQuery) -> Result<Page<Owner>, StoreError> {
        let size = page_size(q.limit);
        let mut b = SqlBuilder::<D>::new(concat!(
            "SELECT ",
            owner_columns!(),
            " FROM owners WHERE 1 = 1"
        ));
        if let Some(status) = q.status {
            b.sql(" AND status = ")
                .arg(Arg::text(owner_status_str(status)));
        }
        if let Some(search) = &q.search {
            b.sql(" AND name ")
                .sql(D::ILIKE)
                .sql(" ")
                .arg(Arg::owned(contains_pattern(search)))
                .sql(" ESCAPE '\\'");
        }
        if let Some(after) = q.after {
            b.sql(" AND id > ").arg(Arg::uuid(after));
        }
        b.sql(" ORDER BY id LIMIT ")
            .arg(Arg::int(i64::from(size) + 1));
        let items = self.all(b.build(), rows::owner::<D>).await?;
        Ok(finish_page(items, size, |o| o.id.to_string()))
    }

    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError> {
        self.one(Stmt::new(D::SQL.get_identity).uuid(id), rows::identity::<D>)
            .await
    }

    async fn list_identities(&self, q: &IdentityQuery) -> Result<Page<Identity>, StoreError> {
        let size = page_size(q.limit);
        let mut b = SqlBuilder::<D>::new(concat!(
            "SELECT ",
            identity_columns!(),
            " FROM identities WHERE 1 = 1"
        ));
        identity_filters(&mut b, q);
        if let Some(after) = q.after {
            b.sql(" AND id > ").arg(Arg::uuid(after));
        }
        b.sql(" ORDER BY id LIMIT ")
            .arg(Arg::int(i64::from(size) + 1));
        let items = self.all(b.build(), rows::identity::<D>).await?;
        Ok(finish_page(items, size, |i| i.id.to_string()))
    }

    async fn count_identities(&self) -> Result<u64, StoreError> {
        let n = self
            .one(Stmt::new(D::SQL.count_identities), |row| {
                Cols::<D>::new(row, "identities").unsigned("n")
            })
            .await?;
        Ok(n.unwrap_or(0))
    }

    async fn get_credential(&self, id: Uuid) -> Result<Option<Credential>, StoreError> {
        self.one(
            Stmt::new(D::SQL.get_credential).uuid(id),
            rows::credential::<D>,
        )
        .await
    }

    async fn find_credential_by_hash(
        &self,
        secret_hash: &[u8],
    ) -> Result<Option<Credential>, StoreError> {
        self.one(
            Stmt::new(D::SQL.credential_by_hash).bytes(secret_hash),
            rows::credential::<D>,
        )
        .await
    }

    async fn list_credentials(&self, identity_id: Uuid) -> Result<Vec<Credential>, StoreError> {
        self.all(
            Stmt::new(D::SQL.credentials_of_identity).uuid(identity_id),
            rows::credential::<D>,
        )
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self
            .one(Stmt::new(D::SQL.token_revoked).text(jti), |_| Ok(()))
            .await?
            .is_some())
    }

    async fn list_revoked_tokens(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<RevokedToken>, StoreError> {
        let stmt = Stmt::new(D::SQL.list_revoked_tokens)
            .time(now)
            .int(i64::from(limit));
        self.all(stmt, |row| {
            let c = Cols::<D>::new(row, "revoked_tokens");
            Ok(RevokedToken {
                jti: c.text("jti")?,
                expires_at: c.time("expires_at")?,
            })
        })
        .await
    }

    async fn claim_once(
        &self,
        namespace: &str,
        value: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let claim = Claim::new(namespace, value, expires_at)?;
        match &self.claims {
            Some(batcher) => batcher.claim(claim).await,
            None => self.writer.claim(claim).await,
        }
    }

    async fn claim_once_audited(
        &self,
        namespace: &str,
        value: &str,
        expires_at: OffsetDateTime,
        if_fresh: AuditEvent,
        if_replayed: AuditEvent,
    ) -> Result<ClaimRecorded, StoreError> {
        // Through the writer on every backend, even where plain claims bypass it: the claim
        // belongs to the transaction that records its outcome.
        let claim = Claim::new(namespace, value, expires_at)?;
        self.writer
            .claim_audited(claim, if_fresh, if_replayed)
            .await
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let now_us = to_micros(now);
        let mut total = 0;
        loop {
            let (once, tokens) = self.purge_step(now_us).await?;
            total += once + tokens;
            if once < ops::PURGE_STEP && tokens < ops::PURGE_STEP {
                return Ok(total);
            }
        }
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.all(Stmt::new(D::SQL.list_signing_keys), rows::signing_key::<D>)
            .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.one(Stmt::new(D::SQL.get_setting).text(key), |row| {
            Cols::<D>::new(row, "settings").text("value")
        })
        .await
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let mut conn = self.conn().await?;
        ops::read_head::<D>(&mut conn, false).await
    }

    async fn list_audit(&self, q: &AuditQuery) -> Result<Page<AuditRecord>, StoreError> {
        let size = page_size(q.limit);
        let items = audit_page::<D>(&mut *self.conn().await?, q, None, false, size).await?;
        Ok(finish_page(items, size, |r| r.seq.to_string()))
    }

    async fn audit_range(&self, from_seq: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stmt = Stmt::new(D::SQL.audit_range)
            .int(saturating_i64(from_seq))
            .int(i64::from(limit));
        self.all(stmt, rows::audit_record::<D>).await
    }

    async fn audit_leaf_hashes(&self, upto: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut leaves = Vec::new();
        loop {
            let page = self
                .audit_leaf_hashes_after(leaves.len() as u64, upto, crate::LEAF_PAGE)
                .await?;
            if page.is_empty() {
                return Ok(leaves);
            }
            leaves.extend(page);
        }
    }

    async fn audit_leaf_hashes_after(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        let stmt = Stmt::new(D::SQL.audit_leaf_hashes)
            .int(saturating_i64(after))
            .int(saturating_i64(upto))
            .int(i64::from(limit));
        let rows = self
            .all(stmt, |row| {
                let c = Cols::<D>::new(row, "audit");
                Ok((c.unsigned("seq")?, c.hash("leaf_hash")?))
            })
            .await?;
        let mut expected = after;
        rows.into_iter()
            .map(|(seq, leaf)| {
                expected += 1;
                if seq == expected {
                    Ok(leaf)
                } else {
                    Err(StoreError::Corrupt(format!(
                        "audit: record {expected} is missing"
                    )))
                }
            })
            .collect()
    }

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<crate::Notice>> {
        self.notices.as_ref().map(|n| Arc::clone(n).subscribe())
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.one(Stmt::new(D::SQL.latest_checkpoint), rows::checkpoint::<D>)
            .await
    }

    async fn policy_state_version(&self) -> Result<i64, StoreError> {
        crate::authz::head_version::<D>(&mut *self.conn().await?).await
    }

    async fn current_policies(&self) -> Result<Vec<crate::PolicyRecord>, StoreError> {
        crate::authz::current_policies::<D>(&mut *self.conn().await?).await
    }

    async fn policy_history(&self, id: &str) -> Result<Vec<crate::PolicyRecord>, StoreError> {
        crate::authz::policy_history::<D>(&mut *self.conn().await?, id).await
    }

    async fn list_exceptions(
        &self,
        q: &crate::ExceptionQuery,
    ) -> Result<Vec<crate::ExceptionRecord>, StoreError> {
        crate::authz::list_exceptions::<D>(&mut *self.conn().await?, q).await
    }

    async fn list_pki_objects(&self, kind: &str) -> Result<Vec<crate::PkiObject>, StoreError> {
        crate::pki::list::<D>(&mut *self.conn().await?, kind).await
    }

    async fn get_finding(&self, id: Uuid) -> Result<Option<crate::FindingRecord>, StoreError> {
        crate::findings::get::<D>(&mut *self.conn().await?, id).await
    }

    async fn list_findings(
        &self,
        q: &crate::FindingQuery,
    ) -> Result<Page<crate::FindingRecord>, StoreError> {
        crate::findings::list::<D>(&mut *self.conn().await?, q).await
    }

    async fn get_trust_policy(
        &self,
        id: Uuid,
    ) -> Result<Option<crate::TrustPolicyRecord>, StoreError> {
        crate::trust::get::<D>(&mut *self.conn().await?, id).await
    }

    async fn list_trust_policies(
        &self,
        q: &crate::TrustPolicyQuery,
    ) -> Result<Page<crate::TrustPolicyRecord>, StoreError> {
        crate::trust::list::<D>(&mut *self.conn().await?, q).await
    }

    async fn get_console_session(
        &self,
        id_hash: &[u8],
    ) -> Result<Option<crate::ConsoleSession>, StoreError> {
        crate::console::get_session::<D>(&mut *self.conn().await?, id_hash).await
    }

    async fn identity_stats(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<crate::IdentityStat>, StoreError> {
        crate::console::identity_stats::<D>(&mut *self.conn().await?, now).await
    }

    async fn finding_stats(&self) -> Result<Vec<crate::FindingStat>, StoreError> {
        crate::console::finding_stats::<D>(&mut *self.conn().await?).await
    }

    async fn search_identities(
        &self,
        q: &crate::IdentitySearch,
    ) -> Result<Page<Identity>, StoreError> {
        crate::console::search_identities::<D>(&mut *self.conn().await?, q).await
    }

    async fn audit_recent(
        &self,
        q: &AuditQuery,
        before_seq: Option<u64>,
    ) -> Result<Page<AuditRecord>, StoreError> {
        crate::console::audit_recent::<D>(&mut *self.conn().await?, q, before_seq).await
    }

    async fn audit_seq_at(&self, at: OffsetDateTime) -> Result<Option<u64>, StoreError> {
        crate::console::audit_seq_at::<D>(&mut *self.conn().await?, at).await
    }

    async fn count_audit_action(
        &self,
        action: &str,
        outcome: Option<steward_core::Outcome>,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        crate::console::count_audit_action::<D>(&mut conn, action, outcome, from_seq, to_seq).await
    }

    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Option<crate::Lease>, StoreError> {
        self.lease_op(crate::leases::LeaseOp::acquire(name, holder, ttl, now)?)
            .await
    }

    async fn renew_lease(
        &self,
        lease: &crate::Lease,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Option<crate::Lease>, StoreError> {
        self.lease_op(crate::leases::LeaseOp::renew(lease, ttl, now)?)
            .await
    }

    async fn release_lease(&self, lease: &crate::Lease) -> Result<bool, StoreError> {
        Ok(self
            .lease_op(crate::leases::LeaseOp::release(lease))
            .await?
            .is_some())
    }

    async fn get_lease(&self, name: &str) -> Result<Option<crate::Lease>, StoreError> {
        crate::leases::get::<D>(&mut *self.conn().await?, name).await
    }

    async fn usage_days(
        &self,
        identity_id: Uuid,
        since_day: i64,
    ) -> Result<Vec<steward_core::usage::DailyUse>, StoreError> {
        crate::usage::days_of::<D>(&mut *self.conn().await?, identity_id, since_day).await
    }

    async fn usage_summary(
        &self,
        identity_id: Uuid,
    ) -> Result<Vec<steward_core::usage::ScopeUse>, StoreError> {
        crate::usage::summaries_of::<D>(&mut *self.conn().await?, identity_id).await
    }

    async fn usage_summaries_between(
        &self,
        range: crate::IdRange,
    ) -> Result<Vec<steward_core::usage::ScopeUse>, StoreError> {
        crate::usage::summaries_between::<D>(&mut *self.conn().await?, range).await
    }

    async fn credential_sources_between(
        &self,
        range: crate::IdRange,
    ) -> Result<Vec<steward_core::usage::SourceUse>, StoreError> {
        crate::usage::sources_between::<D>(&mut *self.conn().await?, range).await
    }

    async fn credentials_between(
        &self,
        range: crate::IdRange,
    ) -> Result<Vec<Credential>, StoreError> {
        crate::usage::credentials_between::<D>(&mut *self.conn().await?, range).await
    }

    async fn live_findings_between(
        &self,
        range: crate::IdRange,
    ) -> Result<Vec<crate::FindingRecord>, StoreError> {
        crate::findings::live_between::<D>(&mut *self.conn().await?, range.first, range.last).await
    }

    async fn finding_counts(&self) -> Result<Vec<crate::FindingCount>, StoreError> {
        crate::findings::counts::<D>(&mut *self.conn().await?).await
    }

    async fn get_identity_risk(
        &self,
        identity_id: Uuid,
    ) -> Result<Option<crate::RiskRecord>, StoreError> {
        let range = crate::IdRange {
            first: identity_id,
            last: identity_id,
        };
        Ok(
            crate::usage::risks_between::<D>(&mut *self.conn().await?, range)
                .await?
                .into_iter()
                .next(),
        )
    }

    async fn identity_risks_between(
        &self,
        range: crate::IdRange,
    ) -> Result<Vec<crate::RiskRecord>, StoreError> {
        crate::usage::risks_between::<D>(&mut *self.conn().await?, range).await
    }

    async fn list_identity_risks(
        &self,
        q: &crate::RiskQuery,
    ) -> Result<Page<crate::RiskRecord>, StoreError> {
        crate::usage::list_risks::<D>(&mut *self.conn().await?, q).await
    }

    async fn purge_usage(
        &self,
        before_day: i64,
        sources_before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        const STEP: u32 = 5_000;
        let n = crate::usage::count_purgeable::<D>(
            &mut *self.conn().await?,
            before_day,
            sources_before,
        )
        .await?;
        // Each step is its own change, so the writer interleaves it with other work.
        for _ in 0..n.div_ceil(u64::from(STEP)) {
            self.writer
                .commit(Change::new().with(crate::Mutation::PurgeUsage {
                    before_day,
                    sources_before,
                    limit: STEP,
                }))
                .await?;
        }
        Ok(n)
    }

    async fn get_review(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::ReviewCampaign>, StoreError> {
        crate::lifecycle::get_campaign::<D>(&mut *self.conn().await?, id).await
    }

    async fn list_reviews(
        &self,
        q: &crate::ReviewQuery,
    ) -> Result<Page<steward_core::lifecycle::ReviewCampaign>, StoreError> {
        crate::lifecycle::list_campaigns::<D>(&mut *self.conn().await?, q).await
    }

    async fn get_review_item(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::ReviewItem>, StoreError> {
        crate::lifecycle::get_item::<D>(&mut *self.conn().await?, id).await
    }

    async fn list_review_items(
        &self,
        q: &crate::ReviewItemQuery,
    ) -> Result<Page<steward_core::lifecycle::ReviewItem>, StoreError> {
        crate::lifecycle::list_items::<D>(&mut *self.conn().await?, q).await
    }

    async fn get_jit_grant(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::JitGrant>, StoreError> {
        crate::lifecycle::get_jit::<D>(&mut *self.conn().await?, id).await
    }

    async fn list_jit_grants(
        &self,
        q: &crate::JitQuery,
    ) -> Result<Page<steward_core::lifecycle::JitGrant>, StoreError> {
        crate::lifecycle::list_jit::<D>(&mut *self.conn().await?, q).await
    }

    async fn get_exception_request(
        &self,
        id: Uuid,
    ) -> Result<Option<steward_core::lifecycle::ExceptionRequest>, StoreError> {
        crate::lifecycle::get_xreq::<D>(&mut *self.conn().await?, id).await
    }

    async fn list_exception_requests(
        &self,
        q: &crate::ExceptionRequestQuery,
    ) -> Result<Page<steward_core::lifecycle::ExceptionRequest>, StoreError> {
        crate::lifecycle::list_xreq::<D>(&mut *self.conn().await?, q).await
    }

    async fn list_rotation_flags(
        &self,
        q: &crate::RotationFlagQuery,
    ) -> Result<Page<crate::RotationFlag>, StoreError> {
        crate::lifecycle::list_flags::<D>(&mut *self.conn().await?, q).await
    }

    async fn lifecycle_counts(
        &self,
        now: OffsetDateTime,
    ) -> Result<crate::LifecycleCounts, StoreError> {
        crate::lifecycle::counts::<D>(&mut *self.conn().await?, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(contains_pattern(""), "%%");
    }

    #[test]
    fn action_filters() {
        assert_eq!(
            action_filter("token.issue"),
            ActionFilter::Exact("token.issue")
        );
        assert_eq!(
            action_filter("token."),
            ActionFilter::Prefix {
                from: "token.",
                to: Some("token/".into())
            }
        );
        assert_eq!(
            action_filter("token.*"),
            ActionFilter::Prefix {
                from: "token.",
                to: Some("token/".into())
            }
        );
        assert_eq!(
            action_filter("tok*"),
            ActionFilter::Prefix {
                from: "tok",
                to: Some("tol".into())
            }
        );
        assert_eq!(action_filter("*"), ActionFilter::Any);
        assert_eq!(prefix_successor("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        assert_eq!(prefix_successor("a\u{D7FF}"), Some("a\u{E000}".into()));
    }

    #[test]
    fn pages() {
        assert_eq!(page_size(0), 100);
        assert_eq!(page_size(5000), 1000);
        assert_eq!(page_size(7), 7);
        let p = finish_page(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((p.items, p.next), (vec![1, 2], Some("2".into())));
        let p = finish_page(vec![1, 2], 2, |n| n.to_string());
        assert_eq!((p.items, p.next), (vec![1, 2], None));
    }
}

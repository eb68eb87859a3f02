//! Write operations run inside the writer's transaction (mutations, one-time claims, purges, audit
//! appends) and the mapping of backend errors to `StoreError`, written once for both backends.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use steward_core::{AuditEvent, Credential, Identity, Owner};
use time::OffsetDateTime;

use crate::dialect::{Arg, Conn, Dialect, Failure, Stmt, UniqueRule};
use crate::rows::{Cols, owner_kind_str, owner_status_str, to_json};
use crate::{AuditHead, Change, Mutation, StoreError};

/// Maps an error from the database driver to a `StoreError`, without write context.
pub(crate) fn db_error<D: Dialect>(e: sqlx::Error) -> StoreError {
    failure_error(classify::<D>(&e))
}

/// The store error for a classified database failure.
pub(crate) fn failure_error(failure: Failure) -> StoreError {
    match failure {
        Failure::Unique(_) => StoreError::Conflict("a uniqueness rule was violated".into()),
        Failure::ForeignKey => StoreError::Conflict("a referenced row does not exist".into()),
        Failure::Contention => StoreError::Stale("a row touched by this write".into()),
        Failure::Unavailable(m) => StoreError::Unavailable(m),
        Failure::Corrupt(m) => StoreError::Corrupt(m),
        Failure::Other(m) => StoreError::Backend(m),
    }
}

fn classify<D: Dialect>(e: &sqlx::Error) -> Failure {
    use sqlx::Error as E;
    match e {
        E::Database(db) => D::classify(db.as_ref()),
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => Failure::Unavailable(format!("{} connection failed: {e}", D::NAME)),
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. } => Failure::Corrupt(e.to_string()),
        _ => Failure::Other(e.to_string()),
    }
}

/// Maps the error of a write whose uniqueness and reference rules are known to the caller, so
/// the message can say what clashed.
fn write_error<D: Dialect>(
    e: sqlx::Error,
    on_unique: impl FnOnce(UniqueRule) -> String,
    on_missing_ref: impl FnOnce() -> String,
) -> StoreError {
    match classify::<D>(&e) {
        Failure::Unique(rule) => StoreError::Conflict(on_unique(rule)),
        Failure::ForeignKey => StoreError::NotFound(on_missing_ref()),
        _ => db_error::<D>(e),
    }
}

/// After an optimistic update matched no row: was the row changed, or is it missing?
async fn stale_or_missing<D: Dialect>(
    conn: &mut Conn<D>,
    version_sql: &'static str,
    id: uuid::Uuid,
    what: &str,
) -> StoreError {
    match D::fetch_optional(conn, Stmt::new(version_sql).uuid(id)).await {
        Ok(Some(_)) => StoreError::Stale(format!("{what} {id}")),
        Ok(None) => StoreError::NotFound(format!("{what} {id}")),
        Err(e) => db_error::<D>(e),
    }
}

fn owner_fields<'a>(s: Stmt<'a>, o: &'a Owner) -> Stmt<'a> {
    s.text(&o.name)
        .text(owner_kind_str(o.kind))
        .text(&o.contact)
        .text(owner_status_str(o.status))
        .time(o.created_at)
        .opt_time(o.departed_at)
        .int(o.version)
}

fn identity_fields<'a>(s: Stmt<'a>, i: &'a Identity) -> Result<Stmt<'a>, StoreError> {
    if i.status == steward_core::IdentityStatus::Expired {
        return Err(StoreError::Backend(format!(
            "identity {}: `expired` is derived from expires_at and cannot be stored",
            i.id
        )));
    }
    Ok(s.text(&i.name)
        .text(i.kind.as_str())
        .uuid(i.owner_id)
        .text(&i.purpose)
        .text(&i.environment)
        .time(i.expires_at)
        .owned_text(to_json("scopes", &i.scopes)?)
        .owned_text(to_json("default_scopes", &i.default_scopes)?)
        .owned_text(to_json("audiences", &i.audiences)?)
        .owned_text(to_json("labels", &i.labels)?)
        .opt_text(i.vendor.as_deref())
        .text(i.status.as_str())
        .opt_text(i.status_reason.as_deref())
        .opt_int(i.token_lifetime_secs.map(i64::from))
        .flag(i.require_dpop)
        .opt_time(i.tokens_revoked_before)
        .text(&i.created_by)
        .opt_text(i.approved_by.as_deref())
        .opt_time(i.approved_at)
        .time(i.created_at)
        .time(i.updated_at)
        .int(i.version)
        .owned_text(to_json("allowed_dns_names", &i.allowed_dns_names)?)
        .owned_text(to_json("may_act", &i.may_act)?)
        .owned_text(to_json("allowed_source_cidrs", &i.allowed_source_cidrs)?)
        .opt_time(i.review_due_at))
}

fn credential_fields<'a>(s: Stmt<'a>, c: &'a Credential) -> Result<Stmt<'a>, StoreError> {
    let jwk = c.jwk.as_ref().map(|j| to_json("jwk", j)).transpose()?;
    Ok(s.uuid(c.identity_id)
        .text(c.kind.as_str())
        .opt_bytes(c.secret_hash.as_deref())
        .arg(Arg::Text(jwk.map(Into::into)))
        .text(&c.fingerprint)
        .time(c.created_at)
        .time(c.expires_at)
        .opt_time(c.last_used_at)
        .opt_time(c.revoked_at)
        .opt_text(c.revoke_reason.as_deref())
        .opt_uuid(c.rotated_from)
        .text(&c.created_by)
        .int(c.version))
}

fn identity_conflict(i: &Identity, rule: UniqueRule) -> String {
    match rule {
        UniqueRule::IdentityName => format!(
            "an identity named {:?} already exists in environment {:?}",
            i.name, i.environment
        ),
        _ => format!("an identity with id {} already exists", i.id),
    }
}

fn owner_conflict(o: &Owner, rule: UniqueRule) -> String {
    match rule {
        UniqueRule::OwnerName => format!("an owner named {:?} already exists", o.name),
        _ => format!("an owner with id {} already exists", o.id),
    }
}

fn credential_conflict(c: &Credential, rule: UniqueRule) -> String {
    match rule {
        UniqueRule::CredentialSecret => "a credential with the same secret already exists".into(),
        _ => format!("a credential with id {} already exists", c.id),
    }
}

/// Most credentials [`touch_credentials`] updates with one statement.
pub(crate) const TOUCH_ROWS: usize = 1024;

/// Applies a run of [`Mutation::TouchCredential`]s with distinct ids in one statement: the
/// token path's last-use times, flushed every few seconds for every credential used since. Like
/// [`apply`] for one touch, it publishes no notice: `Notice::of` has none for a touch (other
/// nodes need not drop a cached credential because it was used).
pub(crate) async fn touch_credentials<D: Dialect>(
    conn: &mut Conn<D>,
    uses: &[(uuid::Uuid, OffsetDateTime)],
) -> Result<(), StoreError> {
    let rows: Vec<(uuid::Uuid, i64)> = uses
        .iter()
        .map(|(id, at)| (*id, steward_core::to_micros(*at)))
        .collect();
    let stmt = Stmt::new(D::SQL.touch_credentials).owned_text(to_json("credential uses", &rows)?);
    D::exec(conn, stmt).await.map_err(db_error::<D>)?;
    Ok(())
}

/// Applies one mutation (see the variants' documentation for their semantics).
pub(crate) async fn apply<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    apply_mutation::<D>(conn, m).await?;
    // Published to other nodes only if (and when) this change commits; a change rolled back to
    // its savepoint takes its notice with it.
    if let (Some(notify), Some(notice)) = (D::NOTIFY, crate::Notice::of(m)) {
        let payload = notice.encode();
        D::exec(conn, Stmt::new(notify).text(&payload))
            .await
            .map_err(db_error::<D>)?;
    }
    Ok(())
}

async fn apply_mutation<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    let sql = D::SQL;
    match m {
        Mutation::InsertOwner(o) => {
            let stmt = owner_fields(Stmt::new(sql.insert_owner).uuid(o.id), o);
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(e, |r| owner_conflict(o, r), || format!("owner {}", o.id))
            })?;
        }
        Mutation::UpdateOwner {
            owner: o,
            expected_version,
        } => {
            let stmt = owner_fields(Stmt::new(sql.update_owner), o)
                .uuid(o.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(e, |r| owner_conflict(o, r), || format!("owner {}", o.id))
            })?;
            if n == 0 {
                return Err(stale_or_missing::<D>(conn, sql.owner_version, o.id, "owner").await);
            }
        }
        Mutation::InsertIdentity(i) => {
            let stmt = identity_fields(Stmt::new(sql.insert_identity).uuid(i.id), i)?;
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    |r| identity_conflict(i, r),
                    || format!("owner {}", i.owner_id),
                )
            })?;
        }
        Mutation::UpdateIdentity {
            identity: i,
            expected_version,
        } => {
            let stmt = identity_fields(Stmt::new(sql.update_identity), i)?
                .uuid(i.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    |r| identity_conflict(i, r),
                    || format!("owner {}", i.owner_id),
                )
            })?;
            if n == 0 {
                return Err(
                    stale_or_missing::<D>(conn, sql.identity_version, i.id, "identity").await,
                );
            }
        }
        Mutation::InsertCredential(c) => {
            let stmt = credential_fields(Stmt::new(sql.insert_credential).uuid(c.id), c)?;
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    |r| credential_conflict(c, r),
                    || format!("identity {}", c.identity_id),
                )
            })?;
        }
        Mutation::BulkInsert {
            identities,
            credentials,
        } => {
            let rows = identities
                .iter()
                .map(|i| identity_fields(Stmt::new("").uuid(i.id), i));
            bulk_insert::<D>(conn, sql.bulk_insert_identities, rows, "identities").await?;
            let rows = credentials
                .iter()
                .map(|c| credential_fields(Stmt::new("").uuid(c.id), c));
            bulk_insert::<D>(conn, sql.bulk_insert_credentials, rows, "credentials").await?;
        }
        Mutation::UpdateCredential {
            credential: c,
            expected_version,
        } => {
            let stmt = credential_fields(Stmt::new(sql.update_credential), c)?
                .uuid(c.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    |r| credential_conflict(c, r),
                    || format!("identity {}", c.identity_id),
                )
            })?;
            if n == 0 {
                return Err(stale_or_missing::<D>(
                    conn,
                    sql.credential_version,
                    c.id,
                    "credential",
                )
                .await);
            }
        }
        Mutation::RevokeIdentityCredentials {
            identity_id,
            at,
            reason,
        } => {
            let stmt = Stmt::new(sql.revoke_identity_credentials)
                .time(*at)
                .text(reason)
                .uuid(*identity_id)
                .time(*at);
            D::exec(conn, stmt).await.map_err(db_error::<D>)?;
        }
        Mutation::TouchCredential { id, used_at } => {
            let stmt = Stmt::new(sql.touch_credential)
                .time(*used_at)
                .uuid(*id)
                .time(*used_at);
            D::exec(conn, stmt).await.map_err(db_error::<D>)?;
        }
        Mutation::RevokeToken {
            jti,
            identity_id,
            expires_at,
        } => {
            let stmt = Stmt::new(sql.revoke_token)
                .text(jti)
                .opt_uuid(*identity_id)
                .time(*expires_at);
            D::exec(conn, stmt).await.map_err(db_error::<D>)?;
        }
        Mutation::InsertSigningKey(k) => {
            let stmt = Stmt::new(sql.insert_signing_key)
                .text(&k.kid)
                .text(&k.alg)
                .bytes(&k.sealed_private_key)
                .owned_text(to_json("public_jwk", &k.public_jwk)?)
                .time(k.created_at)
                .time(k.activates_at)
                .time(k.deactivates_at)
                .time(k.publish_until);
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    |_| format!("a signing key with kid {:?} already exists", k.kid),
                    || format!("signing key {:?}", k.kid),
                )
            })?;
        }
        Mutation::UpdateSigningKey(k) => {
            let stmt = Stmt::new(sql.update_signing_key)
                .time(k.activates_at)
                .time(k.deactivates_at)
                .time(k.publish_until)
                .text(&k.kid);
            if D::exec(conn, stmt).await.map_err(db_error::<D>)? == 0 {
                return Err(StoreError::NotFound(format!("signing key {:?}", k.kid)));
            }
        }
        Mutation::PutSetting { key, value } => {
            D::exec(conn, Stmt::new(sql.put_setting).text(key).text(value))
                .await
                .map_err(db_error::<D>)?;
        }
        Mutation::InsertSetting { key, value } => {
            D::exec(conn, Stmt::new(sql.insert_setting).text(key).text(value))
                .await
                .map_err(|e| {
                    write_error::<D>(
                        e,
                        |_| format!("a setting named {key:?} already exists"),
                        || format!("setting {key:?}"),
                    )
                })?;
        }
        Mutation::PutCheckpoint(c) => {
            let stmt = Stmt::new(sql.put_checkpoint)
                .int(to_i64(c.size, "checkpoint size")?)
                .bytes(&c.root_hash)
                .text(&c.note)
                .time(c.created_at);
            D::exec(conn, stmt).await.map_err(db_error::<D>)?;
        }
        Mutation::InsertPolicyVersion(_) | Mutation::InsertException(_) => {
            crate::authz::apply::<D>(conn, m).await?;
        }
        Mutation::PutPkiObject(_)
        | Mutation::InsertPkiObject(_)
        | Mutation::DeletePkiObject { .. } => crate::pki::apply::<D>(conn, m).await?,
        Mutation::InsertFinding(_) | Mutation::UpdateFinding { .. } => {
            crate::findings::apply::<D>(conn, m).await?
        }
        Mutation::InsertTrustPolicy(_)
        | Mutation::UpdateTrustPolicy { .. }
        | Mutation::DeleteTrustPolicy { .. } => crate::trust::apply::<D>(conn, m).await?,
        Mutation::InsertConsoleSession(_)
        | Mutation::TouchConsoleSession { .. }
        | Mutation::DeleteConsoleSession { .. }
        | Mutation::PurgeConsoleSessions { .. } => crate::console::apply::<D>(conn, m).await?,
        Mutation::CheckLease { name, epoch } => {
            crate::leases::check::<D>(conn, name, *epoch).await?
        }
        Mutation::RecordUsage(_) | Mutation::PutIdentityRisk(_) | Mutation::PurgeUsage { .. } => {
            crate::usage::apply::<D>(conn, m).await?
        }
        Mutation::Lifecycle(l) => crate::lifecycle::apply::<D>(conn, l).await?,
    }
    Ok(())
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} is out of range")))
}

/// Rejects text the databases cannot hold (PostgreSQL refuses NUL characters in TEXT).
pub(crate) fn check_text(field: &str, v: &str) -> Result<(), StoreError> {
    if v.contains('\0') {
        return Err(StoreError::Backend(format!(
            "{field} contains a NUL character, which cannot be stored"
        )));
    }
    Ok(())
}

fn check_opt_text(field: &str, v: Option<&str>) -> Result<(), StoreError> {
    v.map_or(Ok(()), |v| check_text(field, v))
}

fn check_identity_text(i: &Identity) -> Result<(), StoreError> {
    check_text("identity name", &i.name)?;
    check_text("identity purpose", &i.purpose)?;
    check_text("identity environment", &i.environment)?;
    check_text("identity created_by", &i.created_by)?;
    check_opt_text("identity vendor", i.vendor.as_deref())?;
    check_opt_text("identity status_reason", i.status_reason.as_deref())?;
    check_opt_text("identity approved_by", i.approved_by.as_deref())
}

fn check_credential_text(c: &Credential) -> Result<(), StoreError> {
    check_text("credential fingerprint", &c.fingerprint)?;
    check_text("credential created_by", &c.created_by)?;
    check_opt_text("credential revoke_reason", c.revoke_reason.as_deref())
}

/// Checks every text column a change would write (JSON-encoded fields escape NUL and need no
/// check), so that both backends refuse the same changes, before the change joins a batch.
pub(crate) fn check_change_text(change: &Change) -> Result<(), StoreError> {
    for m in &change.mutations {
        match m {
            Mutation::InsertOwner(o) | Mutation::UpdateOwner { owner: o, .. } => {
                check_text("owner name", &o.name)?;
                check_text("owner contact", &o.contact)?;
            }
            Mutation::InsertIdentity(i) | Mutation::UpdateIdentity { identity: i, .. } => {
                check_identity_text(i)?
            }
            Mutation::InsertCredential(c) | Mutation::UpdateCredential { credential: c, .. } => {
                check_credential_text(c)?
            }
            Mutation::BulkInsert {
                identities,
                credentials,
            } => {
                identities.iter().try_for_each(check_identity_text)?;
                credentials.iter().try_for_each(check_credential_text)?;
            }
            Mutation::RevokeIdentityCredentials { reason, .. } => {
                check_text("revocation reason", reason)?
            }
            Mutation::RevokeToken { jti, .. } => check_text("token id", jti)?,
            Mutation::InsertSigningKey(k) | Mutation::UpdateSigningKey(k) => {
                check_text("signing key kid", &k.kid)?;
                check_text("signing key alg", &k.alg)?;
            }
            Mutation::PutSetting { key, value } | Mutation::InsertSetting { key, value } => {
                check_text("setting key", key)?;
                check_text("setting value", value)?;
            }
            Mutation::PutCheckpoint(c) => check_text("checkpoint note", &c.note)?,
            Mutation::InsertPolicyVersion(_) | Mutation::InsertException(_) => {
                crate::authz::check_text_of(m)?
            }
            Mutation::PutPkiObject(_)
            | Mutation::InsertPkiObject(_)
            | Mutation::DeletePkiObject { .. } => crate::pki::check_text_of(m)?,
            Mutation::InsertFinding(_) | Mutation::UpdateFinding { .. } => {
                crate::findings::check_text_of(m)?
            }
            Mutation::InsertTrustPolicy(_)
            | Mutation::UpdateTrustPolicy { .. }
            | Mutation::DeleteTrustPolicy { .. } => crate::trust::check_text_of(m)?,
            Mutation::TouchCredential { .. } => {}
            Mutation::InsertConsoleSession(_)
            | Mutation::TouchConsoleSession { .. }
            | Mutation::DeleteConsoleSession { .. }
            | Mutation::PurgeConsoleSessions { .. } => crate::console::check_text_of(m)?,
            Mutation::CheckLease { name, .. } => crate::leases::check_text_of(name)?,
            Mutation::RecordUsage(_)
            | Mutation::PutIdentityRisk(_)
            | Mutation::PurgeUsage { .. } => crate::usage::check_text_of(m)?,
            Mutation::Lifecycle(l) => crate::lifecycle::check_text_of(l)?,
        }
    }
    change.audit.iter().try_for_each(check_event_text)
}

/// Refuses an audit event whose text the database could not store.
pub(crate) fn check_event_text(e: &AuditEvent) -> Result<(), StoreError> {
    check_text("audit actor", &e.actor)?;
    check_text("audit action", &e.action)?;
    check_opt_text("audit target", e.target.as_deref())?;
    check_opt_text("audit reason", e.reason.as_deref())?;
    check_opt_text("audit request_id", e.request_id.as_deref())?;
    check_opt_text("audit source", e.source.as_deref())
}

/// A request to remember a one-time value.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    namespace: String,
    /// SHA-256 of the value: keys have a fixed size whatever the caller passes.
    value_hash: [u8; 32],
    expires_us: i64,
    now_us: i64,
}

impl Claim {
    pub(crate) fn new(
        namespace: &str,
        value: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Self, StoreError> {
        check_text("one-time value namespace", namespace)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            value_hash: Sha256::digest(value.as_bytes()).into(),
            expires_us: steward_core::to_micros(expires_at),
            now_us: steward_core::to_micros(OffsetDateTime::now_utc()),
        })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }
    pub(crate) fn value_hash(&self) -> &[u8; 32] {
        &self.value_hash
    }
    pub(crate) fn expires_us(&self) -> i64 {
        self.expires_us
    }
    pub(crate) fn now_us(&self) -> i64 {
        self.now_us
    }
}

/// Rows removed per table by one purge step, so that a purge never holds locks for long.
pub(crate) const PURGE_STEP: u64 = 5_000;

/// Deletes up to [`PURGE_STEP`] expired one-time values and as many expired revoked-token entries.
pub(crate) async fn purge<D: Dialect>(
    conn: &mut Conn<D>,
    now_us: i64,
) -> Result<(u64, u64), StoreError> {
    let step = PURGE_STEP as i64;
    let once = D::exec(
        conn,
        Stmt::new(D::SQL.purge_once_values).int(now_us).int(step),
    )
    .await
    .map_err(db_error::<D>)?;
    let tokens = D::exec(
        conn,
        Stmt::new(D::SQL.purge_revoked_tokens).int(now_us).int(step),
    )
    .await
    .map_err(db_error::<D>)?;
    Ok((once, tokens))
}

/// Reads the audit head; with `lock`, also locks it until the transaction ends.
pub(crate) async fn read_head<D: Dialect>(
    conn: &mut Conn<D>,
    lock: bool,
) -> Result<AuditHead, StoreError> {
    let sql = if lock {
        D::SQL.lock_head
    } else {
        D::SQL.read_head
    };
    let row = D::fetch_optional(conn, Stmt::new(sql))
        .await
        .map_err(db_error::<D>)?
        .ok_or_else(|| StoreError::Corrupt("audit_head: the head row is missing".into()))?;
    let c = Cols::<D>::new(&row, "audit_head");
    Ok(AuditHead {
        size: c.unsigned("size")?,
        chain_hash: c.hash("chain_hash")?,
    })
}

pub(crate) async fn store_head<D: Dialect>(
    conn: &mut Conn<D>,
    previous: &AuditHead,
    head: &AuditHead,
) -> Result<(), StoreError> {
    let stmt = Stmt::new(D::SQL.store_head)
        .int(to_i64(head.size, "audit size")?)
        .bytes(&head.chain_hash)
        .int(to_i64(previous.size, "audit size")?);
    match D::exec(conn, stmt).await.map_err(db_error::<D>)? {
        1 => Ok(()),
        _ => Err(StoreError::Corrupt(
            "audit_head: the head row is missing or moved during the transaction (another process writing this database?)"
                .into(),
        )),
    }
}

/// One audit record ready to be written.
pub(crate) struct AuditRow<'a> {
    pub(crate) seq: i64,
    pub(crate) event: &'a AuditEvent,
    pub(crate) details: &'a str,
    pub(crate) leaf_hash: [u8; 32],
    pub(crate) chain_hash: [u8; 32],
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Writes a batch's audit records with one statement, whatever their number. Each statement of
/// a batch is a round trip to the database (in SQLite, a hand-off to its connection thread), so
/// the batch costs the same few round trips for 1 record or 1,000. In SQLite the rows are bound
/// as one multi-row VALUES list (at most [`crate::writer::MAX_BATCH`] × 13 parameters, inside
/// SQLite's limit of 32,766), built for the batch and not cached; in PostgreSQL they travel as
/// one JSON array bound to a single parameter and unpacked by `json_array_elements`, with the
/// hashes as hex.
pub(crate) async fn insert_audit<D: Dialect>(
    conn: &mut Conn<D>,
    rows: &[AuditRow<'_>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = match D::SQL.insert_audit_values {
        Some(head) => audit_values::<D>(head, rows),
        None => Stmt::new(D::SQL.insert_audit_json).owned_text(audit_json(rows)?),
    };
    let written = D::exec(conn, stmt).await.map_err(|e| match classify::<D>(&e) {
        Failure::Unique(_) => StoreError::Corrupt(
            "audit: a record with the next sequence number already exists (audit_head is behind the log)"
                .into(),
        ),
        _ => db_error::<D>(e),
    })?;
    if written != rows.len() as u64 {
        return Err(StoreError::Backend(format!(
            "audit: wrote {written} of {} records",
            rows.len()
        )));
    }
    Ok(())
}

/// `head` followed by one parenthesized row of bound audit columns per record, in table order.
fn audit_values<'r, D: Dialect>(head: &'static str, rows: &'r [AuditRow<'r>]) -> Stmt<'r> {
    let mut b = crate::dialect::SqlBuilder::<D>::new(head);
    push_audit_rows(&mut b, rows);
    b.build()
}

/// The script of [`crate::dialect::AuditAppend::Script`]: BEGIN, the rows as one multi-row
/// insert, the head moved from `previous` to `next` (or the script failed), COMMIT.
pub(crate) fn audit_script<'r, D: Dialect>(
    begin: &'static str,
    head: &[&'static str; 4],
    rows: &'r [AuditRow<'r>],
    previous: &AuditHead,
    next: &AuditHead,
) -> Result<Stmt<'r>, StoreError> {
    let insert = D::SQL.insert_audit_values.ok_or_else(|| {
        StoreError::Backend("internal error: an audit script needs a VALUES insert".into())
    })?;
    let mut b = crate::dialect::SqlBuilder::<D>::new(begin);
    b.sql(insert);
    push_audit_rows(&mut b, rows);
    b.sql(head[0])
        .arg(Arg::int(to_i64(next.size, "audit size")?))
        .sql(head[1])
        .arg(Arg::Bytes(Some(Cow::Owned(next.chain_hash.to_vec()))))
        .sql(head[2])
        .arg(Arg::int(to_i64(previous.size, "audit size")?))
        .sql(head[3]);
    Ok(b.build())
}

/// Appends one parenthesized row of bound audit columns per record, in table order.
fn push_audit_rows<'r, D: Dialect>(
    b: &mut crate::dialect::SqlBuilder<'r, D>,
    rows: &'r [AuditRow<'r>],
) {
    for (i, r) in rows.iter().enumerate() {
        let e = r.event;
        b.sql(if i == 0 { "(" } else { "), (" });
        let cols = [
            Arg::int(r.seq),
            Arg::int(steward_core::to_micros(e.time)),
            Arg::text(&e.actor),
            Arg::text(&e.action),
            Arg::Text(e.target.as_deref().map(Cow::Borrowed)),
            Arg::Uuid(e.identity_id),
            Arg::text(e.outcome.as_str()),
            Arg::Text(e.reason.as_deref().map(Cow::Borrowed)),
            Arg::Text(e.request_id.as_deref().map(Cow::Borrowed)),
            Arg::Text(e.source.as_deref().map(Cow::Borrowed)),
            Arg::text(r.details),
            Arg::Bytes(Some(Cow::Borrowed(&r.leaf_hash))),
            Arg::Bytes(Some(Cow::Borrowed(&r.chain_hash))),
        ];
        for (j, arg) in cols.into_iter().enumerate() {
            if j > 0 {
                b.sql(", ");
            }
            b.arg(arg);
        }
    }
    b.sql(")");
}

/// Inserts `rows` (each the bind arguments of one single-row insert, in column order) with one
/// statement `sql`, which unpacks them from one JSON array as [`insert_audit`] does.
async fn bulk_insert<'a, D: Dialect>(
    conn: &mut Conn<D>,
    sql: &'static str,
    rows: impl Iterator<Item = Result<Stmt<'a>, StoreError>>,
    table: &str,
) -> Result<(), StoreError> {
    let mut out = Vec::new();
    for row in rows {
        let values: Vec<serde_json::Value> = row?.args.iter().map(arg_json).collect();
        out.push(serde_json::Value::Array(values));
    }
    if out.is_empty() {
        return Ok(());
    }
    let n = out.len() as u64;
    let json = to_json(table, &out)?;
    let written = D::exec(conn, Stmt::new(sql).owned_text(json))
        .await
        .map_err(|e| {
            write_error::<D>(
                e,
                |_| format!("bulk insert: a row of {table} clashes with an existing one"),
                || format!("bulk insert: a row of {table} refers to a missing row"),
            )
        })?;
    if written != n {
        return Err(StoreError::Backend(format!(
            "bulk insert: wrote {written} of {n} rows of {table}"
        )));
    }
    Ok(())
}

/// One bind argument as JSON: bytes as hex, UUIDs hyphenated (as both backends bind them).
fn arg_json(a: &Arg<'_>) -> serde_json::Value {
    use serde_json::Value;
    match a {
        Arg::Int(v) => v.map_or(Value::Null, Value::from),
        Arg::Text(v) => v.as_deref().map_or(Value::Null, Value::from),
        Arg::Bytes(v) => v.as_deref().map_or(Value::Null, |b| Value::from(to_hex(b))),
        Arg::Bool(v) => Value::Bool(*v),
        Arg::Uuid(v) => v.map_or(Value::Null, |u| Value::from(u.hyphenated().to_string())),
    }
}

/// The JSON array of `rows`, each an array of the audit columns in table order (see
/// [`insert_audit`]).
pub(crate) fn audit_json(rows: &[AuditRow<'_>]) -> Result<String, StoreError> {
    #[derive(serde::Serialize)]
    struct Row<'r>(
        i64,
        i64,
        &'r str,
        &'r str,
        Option<&'r str>,
        Option<uuid::Uuid>,
        &'r str,
        Option<&'r str>,
        Option<&'r str>,
        Option<&'r str>,
        &'r str,
        &'r str,
        &'r str,
    );
    let hex: Vec<(String, String)> = rows
        .iter()
        .map(|r| (to_hex(&r.leaf_hash), to_hex(&r.chain_hash)))
        .collect();
    let out: Vec<Row<'_>> = rows
        .iter()
        .zip(&hex)
        .map(|(r, (leaf, chain))| {
            let e = r.event;
            Row(
                r.seq,
                steward_core::to_micros(e.time),
                &e.actor,
                &e.action,
                e.target.as_deref(),
                e.identity_id,
                e.outcome.as_str(),
                e.reason.as_deref(),
                e.request_id.as_deref(),
                e.source.as_deref(),
                r.details,
                leaf,
                chain,
            )
        })
        .collect();
    serde_json::to_string(&out)
        .map_err(|e| StoreError::Backend(format!("cannot encode audit rows: {e}")))
}

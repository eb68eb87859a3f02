//! Lifecycle storage: access-review campaigns and items, JIT grants, exception requests and
//! credential rotation flags — their mutations, both backends' SQL and their reads (migration 7).

use steward_core::lifecycle::{
    CampaignStatus, DeadlineAction, ExceptionRequest, ExceptionRequestStatus, JitGrant, JitStatus,
    ReviewCampaign, ReviewDecision, ReviewItem, RevokeMode,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Arg, Conn, Dialect, Failure, Row, SqlBuilder, Stmt};
use crate::ops::{check_text, db_error};
use crate::rows::{Cols, to_json};
use crate::{Page, StoreError};

/// A credential that should be rotated (someone who could have seen it left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationFlag {
    pub credential_id: Uuid,
    pub identity_id: Uuid,
    /// The departed owner the flag comes from, if any.
    pub owner_id: Option<Uuid>,
    pub reason: String,
    pub flagged_by: String,
    pub flagged_at: OffsetDateTime,
}

/// The writes of the lifecycle controls (one `Mutation::Lifecycle` variant wraps them all).
#[derive(Debug, Clone)]
pub enum LifecycleMutation {
    /// `Conflict` when the id exists.
    InsertCampaign(ReviewCampaign),
    /// `Stale` unless the stored version equals `expected_version`.
    UpdateCampaign {
        campaign: ReviewCampaign,
        expected_version: i64,
    },
    /// `Conflict` when the campaign already has an item for the identity; `NotFound` when the
    /// campaign or identity is unknown.
    InsertItem(ReviewItem),
    UpdateItem {
        item: ReviewItem,
        expected_version: i64,
    },
    InsertJitGrant(JitGrant),
    UpdateJitGrant {
        grant: JitGrant,
        expected_version: i64,
    },
    InsertExceptionRequest(ExceptionRequest),
    UpdateExceptionRequest {
        request: ExceptionRequest,
        expected_version: i64,
    },
    /// Flags a credential for rotation; a credential already flagged keeps its first flag.
    FlagCredentialRotation(RotationFlag),
}

impl LifecycleMutation {
    /// Does this change the set of JIT grants (which every node caches for the token path)?
    pub fn touches_jit_grants(&self) -> bool {
        matches!(self, Self::InsertJitGrant(_) | Self::UpdateJitGrant { .. })
    }
}

/// Queries over review campaigns, in id (creation) order.
#[derive(Debug, Clone, Default)]
pub struct ReviewQuery {
    pub status: Option<CampaignStatus>,
    /// Only campaigns whose deadline is at or before this instant.
    pub deadline_by: Option<OffsetDateTime>,
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

/// Queries over the items of one campaign, in id order.
#[derive(Debug, Clone, Default)]
pub struct ReviewItemQuery {
    pub campaign_id: Uuid,
    /// Only the item of this identity.
    pub identity_id: Option<Uuid>,
    /// Only items without a decision.
    pub undecided: bool,
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

/// Queries over JIT grants, in id (creation) order.
#[derive(Debug, Clone, Default)]
pub struct JitQuery {
    pub identity_id: Option<Uuid>,
    pub status: Option<JitStatus>,
    /// Only approved grants whose window is still open at this instant.
    pub active_at: Option<OffsetDateTime>,
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

/// Queries over exception requests, in id (creation) order.
#[derive(Debug, Clone, Default)]
pub struct ExceptionRequestQuery {
    pub identity_id: Option<Uuid>,
    pub status: Option<ExceptionRequestStatus>,
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

/// Queries over rotation flags, in credential id order.
#[derive(Debug, Clone, Default)]
pub struct RotationFlagQuery {
    pub identity_id: Option<Uuid>,
    pub after: Option<Uuid>,
    /// Page size: 0 means 100, and at most 1000 are returned.
    pub limit: u32,
}

struct LifecycleStatements {
    insert_campaign: &'static str,
    update_campaign: &'static str,
    campaign_version: &'static str,
    get_campaign: &'static str,
    list_campaigns: &'static str,
    insert_item: &'static str,
    update_item: &'static str,
    item_version: &'static str,
    get_item: &'static str,
    list_items: &'static str,
    insert_jit: &'static str,
    update_jit: &'static str,
    jit_version: &'static str,
    get_jit: &'static str,
    list_jit: &'static str,
    insert_xreq: &'static str,
    update_xreq: &'static str,
    xreq_version: &'static str,
    get_xreq: &'static str,
    list_xreq: &'static str,
    insert_flag: &'static str,
    list_flags: &'static str,
}

macro_rules! campaign_columns {
    () => {
        "id, name, description, selection, default_action, deadline, status, created_by, created_at, \
         closed_at, version"
    };
}
macro_rules! item_columns {
    () => {
        "id, campaign_id, identity_id, owner_id, reviewer, snapshot, decision, reduced_scopes, \
         revoke_mode, outcome, justification, decided_by, decided_at, by_default, created_at, version"
    };
}
macro_rules! jit_columns {
    () => {
        "id, identity_id, scopes, reason, requested_by, duration_secs, status, decided_by, decided_at, \
         decision_reason, starts_at, expires_at, created_at, version"
    };
}
macro_rules! xreq_columns {
    () => {
        "id, identity_id, target, reason, requested_by, expires_at, status, decided_by, decided_at, \
         created_at, version"
    };
}
macro_rules! flag_columns {
    () => {
        "credential_id, identity_id, owner_id, reason, flagged_by, flagged_at"
    };
}

static SQLITE: LifecycleStatements = LifecycleStatements {
    insert_campaign: concat!(
        "INSERT INTO review_campaigns (",
        campaign_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_campaign: "UPDATE review_campaigns SET name = ?, description = ?, selection = ?, \
        default_action = ?, deadline = ?, status = ?, created_by = ?, created_at = ?, closed_at = ?, \
        version = ? WHERE id = ? AND version = ?",
    campaign_version: "SELECT version FROM review_campaigns WHERE id = ?",
    get_campaign: concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM review_campaigns WHERE id = ?"
    ),
    list_campaigns: concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM review_campaigns WHERE 1 = 1"
    ),
    insert_item: concat!(
        "INSERT INTO review_items (",
        item_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_item: "UPDATE review_items SET campaign_id = ?, identity_id = ?, owner_id = ?, reviewer = ?, \
        snapshot = ?, decision = ?, reduced_scopes = ?, revoke_mode = ?, outcome = ?, justification = ?, \
        decided_by = ?, decided_at = ?, by_default = ?, created_at = ?, version = ? \
        WHERE id = ? AND version = ?",
    item_version: "SELECT version FROM review_items WHERE id = ?",
    get_item: concat!(
        "SELECT ",
        item_columns!(),
        " FROM review_items WHERE id = ?"
    ),
    list_items: concat!("SELECT ", item_columns!(), " FROM review_items WHERE 1 = 1"),
    insert_jit: concat!(
        "INSERT INTO jit_grants (",
        jit_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_jit: "UPDATE jit_grants SET identity_id = ?, scopes = ?, reason = ?, requested_by = ?, \
        duration_secs = ?, status = ?, decided_by = ?, decided_at = ?, decision_reason = ?, starts_at = ?, \
        expires_at = ?, created_at = ?, version = ? WHERE id = ? AND version = ?",
    jit_version: "SELECT version FROM jit_grants WHERE id = ?",
    get_jit: concat!("SELECT ", jit_columns!(), " FROM jit_grants WHERE id = ?"),
    list_jit: concat!("SELECT ", jit_columns!(), " FROM jit_grants WHERE 1 = 1"),
    insert_xreq: concat!(
        "INSERT INTO exception_requests (",
        xreq_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_xreq: "UPDATE exception_requests SET identity_id = ?, target = ?, reason = ?, requested_by = ?, \
        expires_at = ?, status = ?, decided_by = ?, decided_at = ?, created_at = ?, version = ? \
        WHERE id = ? AND version = ?",
    xreq_version: "SELECT version FROM exception_requests WHERE id = ?",
    get_xreq: concat!(
        "SELECT ",
        xreq_columns!(),
        " FROM exception_requests WHERE id = ?"
    ),
    list_xreq: concat!(
        "SELECT ",
        xreq_columns!(),
        " FROM exception_requests WHERE 1 = 1"
    ),
    insert_flag: concat!(
        "INSERT INTO credential_rotation_flags (",
        flag_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (credential_id) DO NOTHING"
    ),
    list_flags: concat!(
        "SELECT ",
        flag_columns!(),
        " FROM credential_rotation_flags WHERE 1 = 1"
    ),
};

static POSTGRES: LifecycleStatements = LifecycleStatements {
    insert_campaign: concat!(
        "INSERT INTO review_campaigns (",
        campaign_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ),
    update_campaign: "UPDATE review_campaigns SET name = $1, description = $2, selection = $3, \
        default_action = $4, deadline = $5, status = $6, created_by = $7, created_at = $8, closed_at = $9, \
        version = $10 WHERE id = $11 AND version = $12",
    campaign_version: "SELECT version FROM review_campaigns WHERE id = $1",
    get_campaign: concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM review_campaigns WHERE id = $1"
    ),
    list_campaigns: concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM review_campaigns WHERE 1 = 1"
    ),
    insert_item: concat!(
        "INSERT INTO review_items (",
        item_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ),
    update_item: "UPDATE review_items SET campaign_id = $1, identity_id = $2, owner_id = $3, reviewer = $4, \
        snapshot = $5, decision = $6, reduced_scopes = $7, revoke_mode = $8, outcome = $9, \
        justification = $10, decided_by = $11, decided_at = $12, by_default = $13, created_at = $14, \
        version = $15 WHERE id = $16 AND version = $17",
    item_version: "SELECT version FROM review_items WHERE id = $1",
    get_item: concat!(
        "SELECT ",
        item_columns!(),
        " FROM review_items WHERE id = $1"
    ),
    list_items: concat!("SELECT ", item_columns!(), " FROM review_items WHERE 1 = 1"),
    insert_jit: concat!(
        "INSERT INTO jit_grants (",
        jit_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ),
    update_jit: "UPDATE jit_grants SET identity_id = $1, scopes = $2, reason = $3, requested_by = $4, \
        duration_secs = $5, status = $6, decided_by = $7, decided_at = $8, decision_reason = $9, \
        starts_at = $10, expires_at = $11, created_at = $12, version = $13 WHERE id = $14 AND version = $15",
    jit_version: "SELECT version FROM jit_grants WHERE id = $1",
    get_jit: concat!("SELECT ", jit_columns!(), " FROM jit_grants WHERE id = $1"),
    list_jit: concat!("SELECT ", jit_columns!(), " FROM jit_grants WHERE 1 = 1"),
    insert_xreq: concat!(
        "INSERT INTO exception_requests (",
        xreq_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ),
    update_xreq: "UPDATE exception_requests SET identity_id = $1, target = $2, reason = $3, \
        requested_by = $4, expires_at = $5, status = $6, decided_by = $7, decided_at = $8, created_at = $9, \
        version = $10 WHERE id = $11 AND version = $12",
    xreq_version: "SELECT version FROM exception_requests WHERE id = $1",
    get_xreq: concat!(
        "SELECT ",
        xreq_columns!(),
        " FROM exception_requests WHERE id = $1"
    ),
    list_xreq: concat!(
        "SELECT ",
        xreq_columns!(),
        " FROM exception_requests WHERE 1 = 1"
    ),
    insert_flag: concat!(
        "INSERT INTO credential_rotation_flags (",
        flag_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO NOTHING"
    ),
    list_flags: concat!(
        "SELECT ",
        flag_columns!(),
        " FROM credential_rotation_flags WHERE 1 = 1"
    ),
};

fn sql<D: Dialect>() -> &'static LifecycleStatements {
    if D::NAME == "postgres" {
        &POSTGRES
    } else {
        &SQLITE
    }
}

// ------------------------------------------------------------------ binding

fn campaign_fields<'a>(s: Stmt<'a>, c: &'a ReviewCampaign) -> Result<Stmt<'a>, StoreError> {
    Ok(s.text(&c.name)
        .text(&c.description)
        .owned_text(to_json("review selection", &c.selection)?)
        .text(c.default_action.as_str())
        .time(c.deadline)
        .text(c.status.as_str())
        .text(&c.created_by)
        .time(c.created_at)
        .opt_time(c.closed_at)
        .int(c.version))
}

fn item_fields<'a>(s: Stmt<'a>, i: &'a ReviewItem) -> Result<Stmt<'a>, StoreError> {
    Ok(s.uuid(i.campaign_id)
        .uuid(i.identity_id)
        .uuid(i.owner_id)
        .opt_text(i.reviewer.as_deref())
        .owned_text(to_json("review snapshot", &i.snapshot)?)
        .opt_text(i.decision.map(ReviewDecision::as_str))
        .owned_text(to_json("reduced scopes", &i.reduced_scopes)?)
        .opt_text(i.revoke_mode.map(RevokeMode::as_str))
        .opt_text(i.outcome.as_deref())
        .opt_text(i.justification.as_deref())
        .opt_text(i.decided_by.as_deref())
        .opt_time(i.decided_at)
        .flag(i.by_default)
        .time(i.created_at)
        .int(i.version))
}

fn jit_fields<'a>(s: Stmt<'a>, g: &'a JitGrant) -> Result<Stmt<'a>, StoreError> {
    Ok(s.uuid(g.identity_id)
        .owned_text(to_json("jit scopes", &g.scopes)?)
        .text(&g.reason)
        .text(&g.requested_by)
        .int(i64::from(g.duration_secs))
        .text(g.status.as_str())
        .opt_text(g.decided_by.as_deref())
        .opt_time(g.decided_at)
        .opt_text(g.decision_reason.as_deref())
        .opt_time(g.starts_at)
        .opt_time(g.expires_at)
        .time(g.created_at)
        .int(g.version))
}

fn xreq_fields<'a>(s: Stmt<'a>, r: &'a ExceptionRequest) -> Stmt<'a> {
    s.uuid(r.identity_id)
        .text(&r.target)
        .text(&r.reason)
        .text(&r.requested_by)
        .time(r.expires_at)
        .text(r.status.as_str())
        .opt_text(r.decided_by.as_deref())
        .opt_time(r.decided_at)
        .time(r.created_at)
        .int(r.version)
}

fn write_error<D: Dialect>(e: sqlx::Error, what: &str, id: Uuid, refs: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match D::classify(db.as_ref()) {
            Failure::Unique(_) => StoreError::Conflict(format!("{what} {id} already exists")),
            Failure::ForeignKey => StoreError::NotFound(refs.to_owned()),
            _ => db_error::<D>(e),
        },
        _ => db_error::<D>(e),
    }
}

async fn updated<D: Dialect>(
    conn: &mut Conn<D>,
    n: u64,
    version_sql: &'static str,
    what: &str,
    id: Uuid,
) -> Result<(), StoreError> {
    if n > 0 {
        return Ok(());
    }
    Err(
        match D::fetch_optional(conn, Stmt::new(version_sql).uuid(id)).await {
            Ok(Some(_)) => StoreError::Stale(format!("{what} {id}")),
            Ok(None) => StoreError::NotFound(format!("{what} {id}")),
            Err(e) => db_error::<D>(e),
        },
    )
}

/// Applies a lifecycle mutation inside the writer's transaction.
pub(crate) async fn apply<D: Dialect>(
    conn: &mut Conn<D>,
    m: &LifecycleMutation,
) -> Result<(), StoreError> {
    let s = sql::<D>();
    use LifecycleMutation as M;
    match m {
        M::InsertCampaign(c) => {
            let stmt = campaign_fields(Stmt::new(s.insert_campaign).uuid(c.id), c)?;
            D::exec(conn, stmt)
                .await
                .map_err(|e| write_error::<D>(e, "review", c.id, "review"))?;
        }
        M::UpdateCampaign {
            campaign: c,
            expected_version,
        } => {
            let stmt = campaign_fields(Stmt::new(s.update_campaign), c)?
                .uuid(c.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt).await.map_err(db_error::<D>)?;
            updated::<D>(conn, n, s.campaign_version, "review", c.id).await?;
        }
        M::InsertItem(i) => {
            let stmt = item_fields(Stmt::new(s.insert_item).uuid(i.id), i)?;
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    "review item (or an item for this identity in this review)",
                    i.id,
                    &format!("review {} or identity {}", i.campaign_id, i.identity_id),
                )
            })?;
        }
        M::UpdateItem {
            item: i,
            expected_version,
        } => {
            let stmt = item_fields(Stmt::new(s.update_item), i)?
                .uuid(i.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt).await.map_err(db_error::<D>)?;
            updated::<D>(conn, n, s.item_version, "review item", i.id).await?;
        }
        M::InsertJitGrant(g) => {
            let stmt = jit_fields(Stmt::new(s.insert_jit).uuid(g.id), g)?;
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    "elevation request",
                    g.id,
                    &format!("identity {}", g.identity_id),
                )
            })?;
        }
        M::UpdateJitGrant {
            grant: g,
            expected_version,
        } => {
            let stmt = jit_fields(Stmt::new(s.update_jit), g)?
                .uuid(g.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt).await.map_err(db_error::<D>)?;
            updated::<D>(conn, n, s.jit_version, "elevation request", g.id).await?;
        }
        M::InsertExceptionRequest(r) => {
            let stmt = xreq_fields(Stmt::new(s.insert_xreq).uuid(r.id), r);
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    "exception request",
                    r.id,
                    &format!("identity {}", r.identity_id),
                )
            })?;
        }
        M::UpdateExceptionRequest {
            request: r,
            expected_version,
        } => {
            let stmt = xreq_fields(Stmt::new(s.update_xreq), r)
                .uuid(r.id)
                .int(*expected_version);
            let n = D::exec(conn, stmt).await.map_err(db_error::<D>)?;
            updated::<D>(conn, n, s.xreq_version, "exception request", r.id).await?;
        }
        M::FlagCredentialRotation(f) => {
            let stmt = Stmt::new(s.insert_flag)
                .uuid(f.credential_id)
                .uuid(f.identity_id)
                .opt_uuid(f.owner_id)
                .text(&f.reason)
                .text(&f.flagged_by)
                .time(f.flagged_at);
            D::exec(conn, stmt).await.map_err(|e| {
                write_error::<D>(
                    e,
                    "rotation flag",
                    f.credential_id,
                    &format!("credential {}", f.credential_id),
                )
            })?;
        }
    }
    Ok(())
}

/// Text checks for the lifecycle mutations (both backends refuse NUL in TEXT alike).
pub(crate) fn check_text_of(m: &LifecycleMutation) -> Result<(), StoreError> {
    use LifecycleMutation as M;
    match m {
        M::InsertCampaign(c) | M::UpdateCampaign { campaign: c, .. } => {
            check_text("review name", &c.name)?;
            check_text("review description", &c.description)?;
            check_text("review created_by", &c.created_by)
        }
        M::InsertItem(i) | M::UpdateItem { item: i, .. } => {
            check_opt("review reviewer", i.reviewer.as_deref())?;
            check_opt("review outcome", i.outcome.as_deref())?;
            check_opt("review justification", i.justification.as_deref())?;
            check_opt("review decided_by", i.decided_by.as_deref())
        }
        M::InsertJitGrant(g) | M::UpdateJitGrant { grant: g, .. } => {
            check_text("jit reason", &g.reason)?;
            check_text("jit requested_by", &g.requested_by)?;
            check_opt("jit decided_by", g.decided_by.as_deref())?;
            check_opt("jit decision_reason", g.decision_reason.as_deref())
        }
        M::InsertExceptionRequest(r) | M::UpdateExceptionRequest { request: r, .. } => {
            check_text("exception target", &r.target)?;
            check_text("exception reason", &r.reason)?;
            check_text("exception requested_by", &r.requested_by)?;
            check_opt("exception decided_by", r.decided_by.as_deref())
        }
        M::FlagCredentialRotation(f) => {
            check_text("rotation reason", &f.reason)?;
            check_text("rotation flagged_by", &f.flagged_by)
        }
    }
}

fn check_opt(field: &str, v: Option<&str>) -> Result<(), StoreError> {
    v.map_or(Ok(()), |v| check_text(field, v))
}

// ------------------------------------------------------------------ rows

fn campaign<D: Dialect>(row: &Row<D>) -> Result<ReviewCampaign, StoreError> {
    let c = Cols::<D>::new(row, "review_campaigns");
    Ok(ReviewCampaign {
        id: c.uuid("id")?,
        name: c.text("name")?,
        description: c.text("description")?,
        selection: c.json("selection")?,
        default_action: c.parsed("default_action", DeadlineAction::parse)?,
        deadline: c.time("deadline")?,
        status: c.parsed("status", CampaignStatus::parse)?,
        created_by: c.text("created_by")?,
        created_at: c.time("created_at")?,
        closed_at: c.opt_time("closed_at")?,
        version: c.int("version")?,
    })
}

fn item<D: Dialect>(row: &Row<D>) -> Result<ReviewItem, StoreError> {
    let c = Cols::<D>::new(row, "review_items");
    let parse_opt = |col: &str, s: Option<String>| -> Result<Option<ReviewDecision>, StoreError> {
        s.map(|v| {
            ReviewDecision::parse(&v).ok_or_else(|| {
                StoreError::Corrupt(format!("review_items.{col}: unknown value {v:?}"))
            })
        })
        .transpose()
    };
    let mode = c
        .opt_text("revoke_mode")?
        .map(|v| {
            RevokeMode::parse(&v).ok_or_else(|| {
                StoreError::Corrupt(format!("review_items.revoke_mode: unknown value {v:?}"))
            })
        })
        .transpose()?;
    Ok(ReviewItem {
        id: c.uuid("id")?,
        campaign_id: c.uuid("campaign_id")?,
        identity_id: c.uuid("identity_id")?,
        owner_id: c.uuid("owner_id")?,
        reviewer: c.opt_text("reviewer")?,
        snapshot: c.json("snapshot")?,
        decision: parse_opt("decision", c.opt_text("decision")?)?,
        reduced_scopes: c.json("reduced_scopes")?,
        revoke_mode: mode,
        outcome: c.opt_text("outcome")?,
        justification: c.opt_text("justification")?,
        decided_by: c.opt_text("decided_by")?,
        decided_at: c.opt_time("decided_at")?,
        by_default: c.flag("by_default")?,
        created_at: c.time("created_at")?,
        version: c.int("version")?,
    })
}

fn jit<D: Dialect>(row: &Row<D>) -> Result<JitGrant, StoreError> {
    let c = Cols::<D>::new(row, "jit_grants");
    Ok(JitGrant {
        id: c.uuid("id")?,
        identity_id: c.uuid("identity_id")?,
        scopes: c.json("scopes")?,
        reason: c.text("reason")?,
        requested_by: c.text("requested_by")?,
        duration_secs: u32::try_from(c.int("duration_secs")?)
            .map_err(|_| StoreError::Corrupt("jit_grants.duration_secs: out of range".into()))?,
        status: c.parsed("status", JitStatus::parse)?,
        decided_by: c.opt_text("decided_by")?,
        decided_at: c.opt_time("decided_at")?,
        decision_reason: c.opt_text("decision_reason")?,
        starts_at: c.opt_time("starts_at")?,
        expires_at: c.opt_time("expires_at")?,
        created_at: c.time("created_at")?,
        version: c.int("version")?,
    })
}

fn xreq<D: Dialect>(row: &Row<D>) -> Result<ExceptionRequest, StoreError> {
    let c = Cols::<D>::new(row, "exception_requests");
    Ok(ExceptionRequest {
        id: c.uuid("id")?,
        identity_id: c.uuid("identity_id")?,
        target: c.text("target")?,
        reason: c.text("reason")?,
        requested_by: c.text("requested_by")?,
        expires_at: c.time("expires_at")?,
        status: c.parsed("status", ExceptionRequestStatus::parse)?,
        decided_by: c.opt_text("decided_by")?,
        decided_at: c.opt_time("decided_at")?,
        created_at: c.time("created_at")?,
        version: c.int("version")?,
    })
}

fn flag<D: Dialect>(row: &Row<D>) -> Result<RotationFlag, StoreError> {
    let c = Cols::<D>::new(row, "credential_rotation_flags");
    Ok(RotationFlag {
        credential_id: c.uuid("credential_id")?,
        identity_id: c.uuid("identity_id")?,
        owner_id: c.opt_uuid("owner_id")?,
        reason: c.text("reason")?,
        flagged_by: c.text("flagged_by")?,
        flagged_at: c.time("flagged_at")?,
    })
}

// ------------------------------------------------------------------ reads

fn page_size(limit: u32) -> u32 {
    match limit {
        0 => 100,
        n => n.min(1000),
    }
}

async fn page<D: Dialect, T>(
    conn: &mut Conn<D>,
    mut b: SqlBuilder<'_, D>,
    order_by: &'static str,
    limit: u32,
    map: impl Fn(&Row<D>) -> Result<T, StoreError>,
    cursor: impl Fn(&T) -> String,
) -> Result<Page<T>, StoreError> {
    let size = page_size(limit);
    b.sql(order_by).arg(Arg::int(i64::from(size) + 1));
    let rows = D::fetch_all(conn, b.build()).await.map_err(db_error::<D>)?;
    let mut items = rows.iter().map(map).collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > size as usize {
        items.truncate(size as usize);
        items.last().map(cursor)
    } else {
        None
    };
    Ok(Page { items, next })
}

async fn one<D: Dialect, T>(
    conn: &mut Conn<D>,
    sql_text: &'static str,
    id: Uuid,
    map: impl Fn(&Row<D>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    D::fetch_optional(conn, Stmt::new(sql_text).uuid(id))
        .await
        .map_err(db_error::<D>)?
        .as_ref()
        .map(map)
        .transpose()
}

pub(crate) async fn get_campaign<D: Dialect>(
    conn: &mut Conn<D>,
    id: Uuid,
) -> Result<Option<ReviewCampaign>, StoreError> {
    one::<D, _>(conn, sql::<D>().get_campaign, id, campaign::<D>).await
}

pub(crate) async fn list_campaigns<D: Dialect>(
    conn: &mut Conn<D>,
    q: &ReviewQuery,
) -> Result<Page<ReviewCampaign>, StoreError> {
    let mut b = SqlBuilder::<D>::new(sql::<D>().list_campaigns);
    if let Some(s) = q.status {
        b.sql(" AND status = ").arg(Arg::text(s.as_str()));
    }
    if let Some(t) = q.deadline_by {
        b.sql(" AND deadline <= ")
            .arg(Arg::int(steward_core::to_micros(t)));
    }
    if let Some(a) = q.after {
        b.sql(" AND id > ").arg(Arg::uuid(a));
    }
    page::<D, _>(
        conn,
        b,
        " ORDER BY id LIMIT ",
        q.limit,
        campaign::<D>,
        |c| c.id.to_string(),
    )
    .await
}

pub(crate) async fn get_item<D: Dialect>(
    conn: &mut Conn<D>,
    id: Uuid,
) -> Result<Option<ReviewItem>, StoreError> {
    one::<D, _>(conn, sql::<D>().get_item, id, item::<D>).await
}

pub(crate) async fn list_items<D: Dialect>(
    conn: &mut Conn<D>,
    q: &ReviewItemQuery,
) -> Result<Page<ReviewItem>, StoreError> {
    let mut b = SqlBuilder::<D>::new(sql::<D>().list_items);
    b.sql(" AND campaign_id = ").arg(Arg::uuid(q.campaign_id));
    if let Some(i) = q.identity_id {
        b.sql(" AND identity_id = ").arg(Arg::uuid(i));
    }
    if q.undecided {
        b.sql(" AND decision IS NULL");
    }
    if let Some(a) = q.after {
        b.sql(" AND id > ").arg(Arg::uuid(a));
    }
    page::<D, _>(conn, b, " ORDER BY id LIMIT ", q.limit, item::<D>, |i| {
        i.id.to_string()
    })
    .await
}

pub(crate) async fn get_jit<D: Dialect>(
    conn: &mut Conn<D>,
    id: Uuid,
) -> Result<Option<JitGrant>, StoreError> {
    one::<D, _>(conn, sql::<D>().get_jit, id, jit::<D>).await
}

pub(crate) async fn list_jit<D: Dialect>(
    conn: &mut Conn<D>,
    q: &JitQuery,
) -> Result<Page<JitGrant>, StoreError> {
    let mut b = SqlBuilder::<D>::new(sql::<D>().list_jit);
    if let Some(i) = q.identity_id {
        b.sql(" AND identity_id = ").arg(Arg::uuid(i));
    }
    if let Some(s) = q.status {
        b.sql(" AND status = ").arg(Arg::text(s.as_str()));
    }
    if let Some(t) = q.active_at {
        let t = steward_core::to_micros(t);
        b.sql(" AND status = 'approved' AND starts_at <= ")
            .arg(Arg::int(t))
            .sql(" AND expires_at > ")
            .arg(Arg::int(t));
    }
    if let Some(a) = q.after {
        b.sql(" AND id > ").arg(Arg::uuid(a));
    }
    page::<D, _>(conn, b, " ORDER BY id LIMIT ", q.limit, jit::<D>, |g| {
        g.id.to_string()
    })
    .await
}

pub(crate) async fn get_xreq<D: Dialect>(
    conn: &mut Conn<D>,
    id: Uuid,
) -> Result<Option<ExceptionRequest>, StoreError> {
    one::<D, _>(conn, sql::<D>().get_xreq, id, xreq::<D>).await
}

pub(crate) async fn list_xreq<D: Dialect>(
    conn: &mut Conn<D>,
    q: &ExceptionRequestQuery,
) -> Result<Page<ExceptionRequest>, StoreError> {
    let mut b = SqlBuilder::<D>::new(sql::<D>().list_xreq);
    if let Some(i) = q.identity_id {
        b.sql(" AND identity_id = ").arg(Arg::uuid(i));
    }
    if let Some(s) = q.status {
        b.sql(" AND status = ").arg(Arg::text(s.as_str()));
    }
    if let Some(a) = q.after {
        b.sql(" AND id > ").arg(Arg::uuid(a));
    }
    page::<D, _>(conn, b, " ORDER BY id LIMIT ", q.limit, xreq::<D>, |r| {
        r.id.to_string()
    })
    .await
}

pub(crate) async fn list_flags<D: Dialect>(
    conn: &mut Conn<D>,
    q: &RotationFlagQuery,
) -> Result<Page<RotationFlag>, StoreError> {
    let mut b = SqlBuilder::<D>::new(sql::<D>().list_flags);
    if let Some(i) = q.identity_id {
        b.sql(" AND identity_id = ").arg(Arg::uuid(i));
    }
    if let Some(a) = q.after {
        b.sql(" AND credential_id > ").arg(Arg::uuid(a));
    }
    page::<D, _>(
        conn,
        b,
        " ORDER BY credential_id LIMIT ",
        q.limit,
        flag::<D>,
        |f| f.credential_id.to_string(),
    )
    .await
}

/// What the posture report says about the lifecycle controls, counted at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleCounts {
    /// Review campaigns still open.
    pub open_campaigns: u64,
    /// Undecided items of open campaigns.
    pub undecided_items: u64,
    /// Of those, items whose campaign's deadline has passed (the deadline job applies the
    /// default next).
    pub overdue_items: u64,
    /// Exception requests waiting for a second person.
    pub pending_exception_requests: u64,
    /// JIT requests waiting for approval.
    pub pending_jit_requests: u64,
}

/// [`LifecycleCounts`] in one statement (the same SQL on both backends).
pub(crate) async fn counts<D: Dialect>(
    conn: &mut Conn<D>,
    now: OffsetDateTime,
) -> Result<LifecycleCounts, StoreError> {
    let mut b = SqlBuilder::<D>::new(
        "SELECT (SELECT COUNT(*) FROM review_campaigns WHERE status = 'open') AS campaigns, \
         (SELECT COUNT(*) FROM review_items i JOIN review_campaigns c ON c.id = i.campaign_id \
          WHERE c.status = 'open' AND i.decision IS NULL) AS undecided, \
         (SELECT COUNT(*) FROM review_items i JOIN review_campaigns c ON c.id = i.campaign_id \
          WHERE c.status = 'open' AND i.decision IS NULL AND c.deadline <= ",
    );
    b.arg(Arg::int(steward_core::to_micros(now))).sql(
        ") AS overdue, \
         (SELECT COUNT(*) FROM exception_requests WHERE status = 'pending') AS xreqs, \
         (SELECT COUNT(*) FROM jit_grants WHERE status = 'pending') AS jit",
    );
    let row = D::fetch_optional(conn, b.build())
        .await
        .map_err(db_error::<D>)?;
    let Some(row) = row else {
        return Ok(LifecycleCounts::default());
    };
    let c = Cols::<D>::new(&row, "review_campaigns");
    Ok(LifecycleCounts {
        open_campaigns: c.unsigned("campaigns")?,
        undecided_items: c.unsigned("undecided")?,
        overdue_items: c.unsigned("overdue")?,
        pending_exception_requests: c.unsigned("xreqs")?,
        pending_jit_requests: c.unsigned("jit")?,
    })
}

//! Lifecycle controls: access reviews, just-in-time elevation, exception requests, owner
//! departure (and its SCIM webhook), offboarding with evidence, and vendor-wide revocation.
//!
//! Rules live in `steward_core::lifecycle`; this module looks things up, composes each write as
//! one `Change` with its audit events, and keeps the per-node cache of active JIT grants.

pub mod exceptions;
pub mod jit;
pub mod offboarding;
pub mod owners;
pub mod reviews;

use serde::{Deserialize, Serialize};
use steward_core::{Identity, Outcome};
use steward_store::{Change, IdentityQuery};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Ctx;
use crate::error::ServiceError;
use crate::state::Inner;

/// Scope that lets a reviewer read campaigns and decide the items assigned to them.
pub const REVIEW_SCOPE: &str = "steward:review";
/// Scope that lets a caller request JIT elevation (approval needs `steward:admin`).
pub const JIT_SCOPE: &str = "steward:jit";
/// Scope that lets an identity provider call the SCIM webhook (`steward:admin` also does).
pub const SCIM_SCOPE: &str = "steward:scim";

/// Settings of the lifecycle controls (`[lifecycle]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Longest JIT elevation window, in seconds.
    pub jit_max_secs: u32,
    /// How long a JIT request may wait for approval, in seconds.
    pub jit_pending_secs: u32,
    /// Furthest an access-review deadline may be, in days.
    pub review_max_days: u32,
    /// Most identities one access-review campaign may cover.
    pub review_max_items: u32,
    /// Seconds between checks for review deadlines that have passed.
    pub deadline_check_secs: u64,
    /// Days of use behind a review item's "scopes used".
    pub usage_window_days: u32,
    /// Most identities one vendor-wide revocation retires (in one transaction).
    pub vendor_revoke_max: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            jit_max_secs: 8 * 3600,
            jit_pending_secs: 24 * 3600,
            review_max_days: 365,
            review_max_items: 10_000,
            deadline_check_secs: 60,
            usage_window_days: 90,
            vendor_revoke_max: 10_000,
        }
    }
}

impl LifecycleConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.jit_max_secs < steward_core::lifecycle::jit::MIN_JIT_SECS {
            return Err("lifecycle.jit_max_secs must be at least 60".into());
        }
        if self.review_max_days == 0 || self.review_max_items == 0 || self.vendor_revoke_max == 0 {
            return Err(
                "lifecycle.review_max_days, review_max_items and vendor_revoke_max must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What is known about the scopes an identity used since an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopesUsed {
    /// The scopes tokens carried since `since` (from the per-scope daily usage), by name.
    /// `None` only in evidence exported before usage was recorded.
    pub scopes: Option<Vec<String>>,
    /// The identity's latest token (per-scope usage) or credential use, when known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Where the answer comes from.
    pub source: &'static str,
}

impl Inner {
    /// The scopes `identity` used since `since`, for review snapshots: read from the
    /// per-scope daily usage the token path records (`Store::usage_days`, whole days from the
    /// day of `since`), plus the credentials' last use.
    pub(crate) async fn scopes_used_since(
        &self,
        identity: &Identity,
        since: OffsetDateTime,
    ) -> Result<ScopesUsed, ServiceError> {
        let rows = self
            .store
            .usage_days(identity.id, steward_core::usage::day_of(since))
            .await?;
        let (scopes, _audiences) = steward_core::entitlements::from_daily(&rows, since);
        let creds = self.store.list_credentials(identity.id).await?;
        let last_used_at = creds
            .iter()
            .filter_map(|c| c.last_used_at)
            .chain(scopes.values().map(|(_, last)| *last))
            .max();
        Ok(ScopesUsed {
            // The empty scope stands for tokens issued without one.
            scopes: Some(scopes.into_keys().filter(|s| !s.is_empty()).collect()),
            last_used_at,
            since,
            source: "per-scope usage (daily)",
        })
    }

    /// Records a refused lifecycle action (separation of duties, wrong reviewer) in the audit
    /// log. Best effort: the refusal stands even if the record cannot be written.
    pub(crate) async fn audit_refusal(
        &self,
        ctx: &Ctx,
        action: &str,
        target: String,
        identity: Option<Uuid>,
        reason: &str,
    ) {
        let mut e = ctx
            .event(self.now(), action, Outcome::Denied)
            .target(target)
            .reason(reason);
        if let Some(i) = identity {
            e = e.identity(i);
        }
        if let Err(err) = self.store.commit(Change::audit_only(e)).await {
            tracing::error!(error = %err, action, "could not audit a refused lifecycle action");
        }
    }

    /// Every identity matching `q` (paging through the store), at most `cap` of them; `None`
    /// when there are more.
    pub(crate) async fn identities_matching(
        &self,
        mut q: IdentityQuery,
        cap: usize,
    ) -> Result<Option<Vec<Identity>>, ServiceError> {
        let mut out = vec![];
        q.limit = 1000;
        loop {
            let page = self.store.list_identities(&q).await?;
            let last = page.items.last().map(|i| i.id);
            out.extend(
                page.items
                    .into_iter()
                    .filter(|i| i.status != steward_core::IdentityStatus::Retired),
            );
            if out.len() > cap {
                return Ok(None);
            }
            match (page.next, last) {
                (Some(_), Some(l)) => q.after = Some(l),
                _ => return Ok(Some(out)),
            }
        }
    }

    pub(crate) fn identity_query(&self) -> IdentityQuery {
        IdentityQuery::all(None, 1000, self.now())
    }
}

//! Access reviews: campaigns over a selection, one item per identity with a snapshot for its
//! owner's reviewer, decisions applied in the same transaction as they are recorded, the
//! deadline job that applies the campaign's default, and the evidence export (JSON, CSV).

use std::collections::BTreeMap;

use serde_json::json;
use steward_core::identity::IdentityPatch;
use steward_core::lifecycle::review::{Decision, NewCampaign};
use steward_core::lifecycle::{
    DeadlineAction, ReviewCampaign, ReviewDecision, ReviewItem, ReviewSelection, RevokeMode,
};
use steward_core::{
    CredentialState, Identity, IdentityKind, IdentityStatus, LifecycleAction, Outcome,
};
use steward_proto::lifecycle as wire;
use steward_store::{
    Change, FindingQuery, FindingStatus, LifecycleMutation, Mutation, Page, ReviewItemQuery,
    ReviewQuery,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::offboarding::OffboardingPlan;
use super::rfc3339;
use crate::error::ServiceError;
use crate::service::Ctx;
use crate::state::{AppState, Inner};

pub fn review_view(c: &ReviewCampaign, counts: Option<(u64, u64)>) -> wire::ReviewView {
    wire::ReviewView {
        id: c.id,
        name: c.name.clone(),
        description: c.description.clone(),
        selection: serde_json::to_value(&c.selection).unwrap_or_default(),
        default_action: c.default_action.as_str().into(),
        deadline: c.deadline,
        status: c.status.as_str().into(),
        created_by: c.created_by.clone(),
        created_at: c.created_at,
        closed_at: c.closed_at,
        items_total: counts.map(|c| c.0),
        items_decided: counts.map(|c| c.1),
    }
}

pub fn item_view(i: &ReviewItem) -> wire::ReviewItemView {
    wire::ReviewItemView {
        id: i.id,
        review_id: i.campaign_id,
        identity_id: i.identity_id,
        owner_id: i.owner_id,
        reviewer: i.reviewer.clone(),
        snapshot: i.snapshot.clone(),
        decision: i.decision.map(|d| d.as_str().to_owned()),
        reduced_scopes: i.reduced_scopes.clone(),
        revoke_mode: i.revoke_mode.map(|m| m.as_str().to_owned()),
        outcome: i.outcome.clone(),
        justification: i.justification.clone(),
        decided_by: i.decided_by.clone(),
        decided_at: i.decided_at,
        by_default: i.by_default,
    }
}

/// A decided item's effect, composed but not committed.
struct Applied {
    mutations: Vec<Mutation>,
    events: Vec<steward_core::AuditEvent>,
    outcome: String,
    identity_changed: bool,
    offboarding: Option<OffboardingPlan>,
}

impl Inner {
    /// What the reviewer of `identity` is shown: scopes granted vs used, last use, open findings.
    async fn review_snapshot(
        &self,
        identity: &Identity,
        now: OffsetDateTime,
    ) -> Result<serde_json::Value, ServiceError> {
        let since = now - Duration::days(i64::from(self.config.lifecycle.usage_window_days));
        let used = self.scopes_used_since(identity, since).await?;
        let creds = self.store.list_credentials(identity.id).await?;
        let live = creds
            .iter()
            .filter(|c| {
                matches!(
                    c.state(now),
                    CredentialState::Active | CredentialState::Retiring
                )
            })
            .count();
        let findings = self
            .store
            .list_findings(&FindingQuery {
                identity_id: Some(identity.id),
                status: Some(FindingStatus::Open),
                limit: 100,
                ..Default::default()
            })
            .await?;
        let unused: Vec<&String> = match &used.scopes {
            Some(u) => identity.scopes.iter().filter(|s| !u.contains(s)).collect(),
            None => vec![],
        };
        Ok(json!({
            "identity": {
                "name": identity.name,
                "kind": identity.kind.as_str(),
                "environment": identity.environment,
                "status": identity.effective_status(now).as_str(),
                "owner": identity.owner_id,
                "purpose": identity.purpose,
                "vendor": identity.vendor,
                "expires_at": rfc3339(identity.expires_at),
            },
            "scopes_granted": identity.scopes,
            "default_scopes": identity.default_scopes,
            "scopes_used": used,
            "scopes_unused": used.scopes.as_ref().map(|_| unused),
            "last_used_at": used.last_used_at.map(rfc3339),
            "credentials_live": live,
            "open_findings": findings.items.iter().map(|f| json!({
                "id": f.id,
                "type": f.kind,
                "severity": f.severity,
                "owasp_nhi": f.owasp_nhi,
            })).collect::<Vec<_>>(),
            "taken_at": rfc3339(now),
        }))
    }

    /// `POST /v1/reviews`: one item per live identity matching the selection.
    pub async fn create_review(
        &self,
        ctx: &Ctx,
        req: wire::CreateReview,
    ) -> Result<(ReviewCampaign, u64), ServiceError> {
        let kind = req
            .kind
            .as_deref()
            .map(|k| {
                IdentityKind::parse(k)
                    .ok_or_else(|| ServiceError::invalid(format!("invalid kind: unknown kind {k}")))
            })
            .transpose()?;
        let default_action = match req.default_action.as_deref() {
            None => DeadlineAction::default(),
            Some(a) => DeadlineAction::parse(a).ok_or_else(|| {
                ServiceError::invalid("invalid default_action: must be suspend, retire or keep")
            })?,
        };
        if let Some(env) = &req.environment
            && !self.config.registry.has_environment(env)
        {
            return Err(ServiceError::invalid(format!(
                "invalid environment: must be one of {}",
                self.config.registry.environments.join(", ")
            )));
        }
        if let Some(o) = req.owner {
            self.get_owner(o).await?;
        }
        for (owner, reviewer) in &req.reviewers {
            let r = reviewer.trim();
            if r.is_empty() || r.len() > 200 || r.chars().any(char::is_control) {
                return Err(ServiceError::invalid(format!(
                    "invalid reviewers: the reviewer of owner {owner} must be 1 to 200 characters"
                )));
            }
        }
        let now = self.now();
        let campaign = ReviewCampaign::new(
            Uuid::now_v7(),
            NewCampaign {
                name: req.name,
                description: req.description.unwrap_or_default(),
                selection: ReviewSelection {
                    environment: req.environment.clone(),
                    owner_id: req.owner,
                    kind,
                    vendor: req.vendor.clone(),
                },
                default_action,
                deadline: req.deadline,
            },
            self.config.lifecycle.review_max_days,
            &ctx.actor,
            now,
        )?;
        let cap = self.config.lifecycle.review_max_items as usize;
        let mut q = self.identity_query();
        q.environment = req.environment;
        q.owner_id = req.owner;
        q.kind = kind;
        q.vendor = req.vendor;
        let identities = self.identities_matching(q, cap).await?.ok_or_else(|| {
            ServiceError::invalid(format!(
                "the selection matches more than {cap} identities; narrow it (environment, owner, kind, vendor)"
            ))
        })?;
        if identities.is_empty() {
            return Err(ServiceError::invalid(
                "no live identity matches the selection",
            ));
        }
        let mut change = Change::new().with(Mutation::Lifecycle(
            LifecycleMutation::InsertCampaign(campaign.clone()),
        ));
        for i in &identities {
            let snapshot = self.review_snapshot(i, now).await?;
            let item = ReviewItem::new(
                Uuid::now_v7(),
                &campaign,
                i.id,
                i.owner_id,
                req.reviewers.get(&i.owner_id).map(|r| r.trim().to_owned()),
                snapshot,
                now,
            );
            change = change.with(Mutation::Lifecycle(LifecycleMutation::InsertItem(item)));
        }
        let reviewers: BTreeMap<String, String> = req
            .reviewers
            .iter()
            .map(|(o, r)| (o.to_string(), r.trim().to_owned()))
            .collect();
        change = change.audit(
            ctx.event(now, "review.create", Outcome::Success)
                .target(format!("review:{}", campaign.id))
                .details(json!({
                    "name": campaign.name,
                    "selection": campaign.selection,
                    "default_action": campaign.default_action.as_str(),
                    "deadline": rfc3339(campaign.deadline),
                    "reviewers": reviewers,
                    "identities": identities.iter().map(|i| i.id).collect::<Vec<_>>(),
                })),
        );
        self.store.commit(change).await?;
        Ok((campaign, identities.len() as u64))
    }

    pub async fn get_review(&self, id: Uuid) -> Result<ReviewCampaign, ServiceError> {
        self.store
            .get_review(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("review {id}")))
    }

    pub async fn list_reviews(
        &self,
        q: &ReviewQuery,
    ) -> Result<Page<ReviewCampaign>, ServiceError> {
        Ok(self.store.list_reviews(q).await?)
    }

    pub async fn list_review_items(
        &self,
        q: &ReviewItemQuery,
    ) -> Result<Page<ReviewItem>, ServiceError> {
        Ok(self.store.list_review_items(q).await?)
    }

    /// Every item of a campaign (paging through the store).
    pub async fn all_review_items(&self, campaign: Uuid) -> Result<Vec<ReviewItem>, ServiceError> {
        let mut out = vec![];
        let mut after = None;
        loop {
            let page = self
                .store
                .list_review_items(&ReviewItemQuery {
                    campaign_id: campaign,
                    after,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            let last = page.items.last().map(|i| i.id);
            out.extend(page.items);
            match (page.next, last) {
                (Some(_), Some(l)) => after = Some(l),
                _ => return Ok(out),
            }
        }
    }

    /// (items, decided items) of a campaign.
    pub async fn review_counts(&self, campaign: Uuid) -> Result<(u64, u64), ServiceError> {
        let items = self.all_review_items(campaign).await?;
        let decided = items.iter().filter(|i| i.is_decided()).count();
        Ok((items.len() as u64, decided as u64))
    }

    /// `POST /v1/reviews/{id}/decisions`: records the decision and applies it (scope reduction,
    /// suspension or offboarding) in one transaction. `is_admin`: the caller holds
    /// `steward:admin`; otherwise only the item's assigned reviewer may decide.
    pub async fn decide_review_item(
        &self,
        ctx: &Ctx,
        review: Uuid,
        is_admin: bool,
        req: wire::ReviewDecisionRequest,
    ) -> Result<ReviewItem, ServiceError> {
        let campaign = self.get_review(review).await?;
        let before = match (req.item_id, req.identity_id) {
            (Some(item), None) => match self.store.get_review_item(item).await? {
                Some(i) if i.campaign_id == review => i,
                _ => {
                    return Err(ServiceError::not_found(format!(
                        "item {item} of review {review}"
                    )));
                }
            },
            (None, Some(identity)) => self
                .store
                .list_review_items(&ReviewItemQuery {
                    campaign_id: review,
                    identity_id: Some(identity),
                    limit: 1,
                    ..Default::default()
                })
                .await?
                .items
                .into_iter()
                .next()
                .ok_or_else(|| {
                    ServiceError::not_found(format!(
                        "item for identity {identity} in review {review}"
                    ))
                })?,
            _ => {
                return Err(ServiceError::invalid(
                    "give exactly one of item_id and identity_id",
                ));
            }
        };
        if let Err(e) = before.check_decider(&ctx.actor, is_admin) {
            self.audit_refusal(
                ctx,
                "review.decide",
                format!("review_item:{}", before.id),
                Some(before.identity_id),
                &e.to_string(),
            )
            .await;
            return Err(e.into());
        }
        let decision = ReviewDecision::parse(&req.decision).ok_or_else(|| {
            ServiceError::invalid("invalid decision: must be keep, reduce or revoke")
        })?;
        let revoke_mode = req
            .revoke_mode
            .as_deref()
            .map(|m| {
                RevokeMode::parse(m).ok_or_else(|| {
                    ServiceError::invalid("invalid revoke_mode: must be suspend or retire")
                })
            })
            .transpose()?;
        let identity = self.get_identity(before.identity_id).await?;
        let now = self.now();
        let mut item = before.clone();
        item.decide(
            &campaign,
            Decision {
                decision,
                scopes: req.scopes,
                revoke_mode,
                justification: req.justification,
            },
            &identity.scopes,
            &ctx.actor,
            now,
        )?;
        self.commit_review_item(ctx, &campaign, &before, item, &identity, now)
            .await
    }

    /// Applies a decided item to its identity and commits both with their audit events.
    async fn commit_review_item(
        &self,
        ctx: &Ctx,
        campaign: &ReviewCampaign,
        before: &ReviewItem,
        mut item: ReviewItem,
        identity: &Identity,
        now: OffsetDateTime,
    ) -> Result<ReviewItem, ServiceError> {
        let applied = self
            .apply_review_decision(ctx, campaign, &item, identity, now)
            .await?;
        item.outcome = Some(applied.outcome.clone());
        let mut change = Change::new();
        change.mutations = applied.mutations;
        change = change.with(Mutation::Lifecycle(LifecycleMutation::UpdateItem {
            item: item.clone(),
            expected_version: before.version,
        }));
        let action = if item.by_default {
            "review.default_applied"
        } else {
            "review.decide"
        };
        change = change.audit(
            ctx.event(now, action, Outcome::Success)
                .target(format!("review_item:{}", item.id))
                .identity(item.identity_id)
                .reason(item.justification.clone().unwrap_or_default())
                .details(json!({
                    "review": campaign.id,
                    "item": item.id,
                    "decision": item.decision.map(ReviewDecision::as_str),
                    "reduced_scopes": item.reduced_scopes,
                    "revoke_mode": item.revoke_mode.map(RevokeMode::as_str),
                    "outcome": applied.outcome,
                    "by_default": item.by_default,
                    "reviewer": item.reviewer,
                })),
        );
        for e in applied.events {
            change = change.audit(e);
        }
        self.store.commit(change).await?;
        if applied.identity_changed {
            self.invalidate_identity(item.identity_id);
        }
        if let Some(plan) = &applied.offboarding {
            self.after_offboarding(&[plan]).await;
        }
        Ok(item)
    }

    /// The effect of a decided item on its identity (mutations and audit events).
    async fn apply_review_decision(
        &self,
        ctx: &Ctx,
        campaign: &ReviewCampaign,
        item: &ReviewItem,
        identity: &Identity,
        now: OffsetDateTime,
    ) -> Result<Applied, ServiceError> {
        // The identity's status reason holds at most 1024 characters.
        let why: String = format!(
            "access review {:?} ({}): {}",
            campaign.name,
            campaign.id,
            item.justification.as_deref().unwrap_or_default()
        )
        .chars()
        .take(1000)
        .collect();
        let status = identity.effective_status(now);
        let unchanged = |outcome: String| Applied {
            mutations: vec![],
            events: vec![],
            outcome,
            identity_changed: false,
            offboarding: None,
        };
        if status == IdentityStatus::Retired {
            return Ok(unchanged("already_retired".into()));
        }
        match (item.decision, item.revoke_mode) {
            (Some(ReviewDecision::Keep), _) | (None, _) => Ok(unchanged("kept".into())),
            (Some(ReviewDecision::Reduce), _) => {
                let mut next = identity.clone();
                next.apply_patch(
                    IdentityPatch {
                        scopes: Some(item.reduced_scopes.clone()),
                        ..Default::default()
                    },
                    None,
                    &self.config.registry,
                    now,
                )?;
                let event = ctx
                    .event(now, "identity.update", Outcome::Success)
                    .target(format!("identity:{}", identity.id))
                    .identity(identity.id)
                    .reason(why)
                    .details(json!({"changes": {
                        "scopes": {"before": identity.scopes, "after": next.scopes},
                        "default_scopes": {"before": identity.default_scopes, "after": next.default_scopes},
                    }, "review_item": item.id}));
                Ok(Applied {
                    mutations: vec![Mutation::UpdateIdentity {
                        identity: next,
                        expected_version: identity.version,
                    }],
                    events: vec![event],
                    outcome: "scopes_reduced".into(),
                    identity_changed: true,
                    offboarding: None,
                })
            }
            (Some(ReviewDecision::Revoke), Some(RevokeMode::Retire)) => {
                let plan = self.plan_offboarding(ctx, identity, Some(why), now).await?;
                Ok(Applied {
                    mutations: plan.mutations.clone(),
                    events: vec![plan.event.clone()],
                    outcome: "retired".into(),
                    identity_changed: true,
                    offboarding: Some(plan),
                })
            }
            (Some(ReviewDecision::Revoke), _) => {
                if status == IdentityStatus::Suspended {
                    return Ok(unchanged("already_suspended".into()));
                }
                if status != IdentityStatus::Active {
                    return Ok(unchanged(format!("not_active:{}", status.as_str())));
                }
                let mut next = identity.clone();
                next.transition(LifecycleAction::Suspend, &ctx.actor, Some(why.clone()), now)?;
                let event = ctx
                    .event(now, "identity.suspend", Outcome::Success)
                    .target(format!("identity:{}", identity.id))
                    .identity(identity.id)
                    .reason(why)
                    .details(json!({
                        "from": status.as_str(),
                        "to": next.status.as_str(),
                        "review_item": item.id,
                    }));
                Ok(Applied {
                    mutations: vec![Mutation::UpdateIdentity {
                        identity: next,
                        expected_version: identity.version,
                    }],
                    events: vec![event],
                    outcome: "suspended".into(),
                    identity_changed: true,
                    offboarding: None,
                })
            }
        }
    }

    /// The deadline job: every open campaign past its deadline gets its default action on
    /// each undecided item (one transaction per item), then closes. Time comes from the
    /// server's clock. Returns the number of items decided by default.
    pub async fn run_review_deadlines(&self) -> Result<u64, ServiceError> {
        let now = self.now();
        let ctx = Ctx::system();
        let mut applied = 0;
        let mut after = None;
        loop {
            let page = self
                .store
                .list_reviews(&ReviewQuery {
                    status: Some(steward_core::lifecycle::CampaignStatus::Open),
                    deadline_by: Some(now),
                    after,
                    limit: 100,
                })
                .await?;
            for campaign in &page.items {
                applied += self.close_due_review(&ctx, campaign, now).await?;
            }
            match (page.next, page.items.last()) {
                (Some(_), Some(l)) => after = Some(l.id),
                _ => return Ok(applied),
            }
        }
    }

    async fn close_due_review(
        &self,
        ctx: &Ctx,
        campaign: &ReviewCampaign,
        now: OffsetDateTime,
    ) -> Result<u64, ServiceError> {
        let mut applied = 0;
        let mut failed = 0;
        loop {
            let page = self
                .store
                .list_review_items(&ReviewItemQuery {
                    campaign_id: campaign.id,
                    undecided: true,
                    limit: 100,
                    ..Default::default()
                })
                .await?;
            if page.items.is_empty() {
                break;
            }
            let mut progressed = false;
            for before in &page.items {
                let mut item = before.clone();
                item.apply_default(campaign, now)?;
                let identity = self.get_identity(item.identity_id).await?;
                match self
                    .commit_review_item(ctx, campaign, before, item, &identity, now)
                    .await
                {
                    Ok(_) => {
                        applied += 1;
                        progressed = true;
                    }
                    // Another node (or a concurrent edit of the identity) got there first: the
                    // next run picks the item up again if it is still undecided.
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(error = %e, item = %before.id, "review default not applied");
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        if failed == 0 {
            let mut closed = campaign.clone();
            closed.close(now)?;
            let event = ctx
                .event(now, "review.close", Outcome::Success)
                .target(format!("review:{}", campaign.id))
                .details(
                    json!({"defaults_applied": applied, "deadline": rfc3339(campaign.deadline)}),
                );
            self.store
                .commit(
                    Change::new()
                        .with(Mutation::Lifecycle(LifecycleMutation::UpdateCampaign {
                            campaign: closed,
                            expected_version: campaign.version,
                        }))
                        .audit(event),
                )
                .await?;
        }
        Ok(applied)
    }

    /// `GET /v1/reviews/{id}/export?format=json`.
    pub async fn export_review(&self, id: Uuid) -> Result<wire::ReviewExport, ServiceError> {
        let campaign = self.get_review(id).await?;
        let items = self.all_review_items(id).await?;
        let decided = items.iter().filter(|i| i.is_decided()).count() as u64;
        Ok(wire::ReviewExport {
            review: review_view(&campaign, Some((items.len() as u64, decided))),
            items: items.iter().map(item_view).collect(),
            exported_at: self.now(),
            audit_size: self.store.audit_head().await?.size,
        })
    }
}

/// One CSV cell (RFC 4180): quoted when needed; a cell a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'`. The JSON export is verbatim.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `GET /v1/reviews/{id}/export?format=csv`: one row per item, with the snapshot's key facts.
pub fn export_csv(e: &wire::ReviewExport) -> String {
    const HEADER: [&str; 22] = [
        "review_id",
        "review_name",
        "deadline",
        "item_id",
        "identity_id",
        "identity_name",
        "environment",
        "kind",
        "owner_id",
        "reviewer",
        "scopes_granted",
        "scopes_used",
        "last_used_at",
        "open_findings",
        "decision",
        "reduced_scopes",
        "revoke_mode",
        "outcome",
        "justification",
        "decided_by",
        "decided_at",
        "by_default",
    ];
    let mut out = String::new();
    out.push_str(&HEADER.join(","));
    out.push_str("\r\n");
    let list = |v: &serde_json::Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    for i in &e.items {
        let s = &i.snapshot;
        let used = match &s["scopes_used"]["scopes"] {
            serde_json::Value::Null => "unknown".to_owned(),
            v => list(v),
        };
        let findings = s["open_findings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        format!(
                            "{}:{}",
                            f["type"].as_str().unwrap_or_default(),
                            f["severity"].as_str().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let row = [
            e.review.id.to_string(),
            e.review.name.clone(),
            rfc3339(e.review.deadline),
            i.id.to_string(),
            i.identity_id.to_string(),
            s["identity"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            s["identity"]["environment"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            s["identity"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            i.owner_id.to_string(),
            i.reviewer.clone().unwrap_or_default(),
            list(&s["scopes_granted"]),
            used,
            s["last_used_at"].as_str().unwrap_or_default().to_owned(),
            findings,
            i.decision.clone().unwrap_or_default(),
            i.reduced_scopes.join(" "),
            i.revoke_mode.clone().unwrap_or_default(),
            i.outcome.clone().unwrap_or_default(),
            i.justification.clone().unwrap_or_default(),
            i.decided_by.clone().unwrap_or_default(),
            i.decided_at.map(rfc3339).unwrap_or_default(),
            i.by_default.to_string(),
        ];
        out.push_str(
            &row.iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

/// Spawns the deadline job: every `lifecycle.deadline_check_secs`, apply due campaigns'
/// defaults. Store errors are logged and retried on the next tick.
pub fn spawn_deadline_job(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    let period = std::time::Duration::from_secs(state.config.lifecycle.deadline_check_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match state.run_review_deadlines().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(items = n, "access-review defaults applied"),
                Err(e) => tracing::warn!(error = %e, "access-review deadline check failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@sum"), "'@sum");
    }
}

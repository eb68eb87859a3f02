//! Governance findings: the findings job (every identity, page by page, judged by the pure rules
//! of `steward_core::findings`; only changes written), acceptance, listing, entitlements, risk
//! scores and the optional automatic actions.
//!
//! A run reads one page of identities and, with one query per table, their credentials, usage,
//! sources, live findings and stored risk scores. Planning (rules, reconciliation with stored
//! findings, risk) is pure and runs on the blocking pool; the plan is written in bounded
//! changes that the group-commit writer interleaves with token audits (new findings and risk
//! scores as multi-row statements), while the next page is read. A finding is raised
//! when a rule first reports its dedup key, updated (audited) when its evidence changes,
//! resolved (audited) when the rule stops reporting it, accepted when an unexpired exception
//! names its type, and reopened when an acceptance runs out. Findings of other types (leaked
//! secrets) are never touched, but count in the risk score.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use steward_core::findings::{Candidate, FindingType, RuleSettings, Subject, Waiver, evaluate};
use steward_core::risk::{RiskInput, score};
use steward_core::usage::{ScopeUse, SourceUse, day_of};
use steward_core::{
    AuditEvent, Credential, Identity, IdentityStatus, LifecycleAction, Outcome, Owner,
};
use steward_proto::findings as wire;
use steward_store::{
    Change, ExceptionQuery, FindingQuery, FindingRecord, FindingStatus, IdRange, IdentityQuery,
    Mutation, OwnerQuery, Page, RiskQuery, RiskRecord, StoreError,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Ctx;
use crate::error::ServiceError;
use crate::leases::Fence;
use crate::state::{AppState, Inner};

/// The actor of background runs and automatic actions in the audit log.
pub const SYSTEM_ACTOR: &str = "system:findings";
/// Mutations per change when a run writes its plan.
const MUTATIONS_PER_CHANGE: usize = 256;

/// What an automatic action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Suspend the identity (reversible with `resume`).
    SuspendIdentity,
    /// Revoke the credential the finding is about (credential findings only).
    RevokeCredential,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuspendIdentity => "suspend_identity",
            Self::RevokeCredential => "revoke_credential",
        }
    }
}

/// One automatic action: what to do about open findings of one type after a grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    pub finding: FindingType,
    pub action: ActionKind,
    /// Days a finding must have been open (and not accepted) before the action applies.
    #[serde(default = "default_grace")]
    pub grace_days: u32,
}

fn default_grace() -> u32 {
    14
}

/// Automatic actions. With `dry_run` (the default) a run reports the actions it would take and
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    pub dry_run: bool,
    pub rules: Vec<ActionRule>,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            dry_run: true,
            rules: vec![],
        }
    }
}

/// `[findings]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FindingsConfig {
    /// Seconds between background runs; 0 turns the background job off (`POST
    /// /v1/findings/run` still works). With several nodes, one node runs per interval.
    pub interval_secs: u64,
    /// Identities per page (one query per table per page).
    pub page_size: u32,
    /// An unchanged open finding's `last_seen` is refreshed at most this often (seconds).
    pub refresh_last_seen_secs: u64,
    /// Longest acceptance `POST /v1/findings/{id}/accept` allows, in days.
    pub max_acceptance_days: u32,
    /// While the server answers at least `pace_above_requests_per_sec` token requests per
    /// second, a run works at most this share of the wall time (percent): after each page it
    /// pauses for its work time × (100 − duty) / duty. 100 turns pacing off.
    pub pace_duty_percent: u8,
    /// Token requests per second from which a run paces itself (see `pace_duty_percent`).
    pub pace_above_requests_per_sec: u32,
    pub rules: RuleSettings,
    pub actions: ActionsConfig,
}

impl Default for FindingsConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            page_size: 500,
            refresh_last_seen_secs: 86_400,
            max_acceptance_days: 365,
            pace_duty_percent: 10,
            pace_above_requests_per_sec: 20,
            rules: RuleSettings::default(),
            actions: ActionsConfig::default(),
        }
    }
}

impl FindingsConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.rules.validate()?;
        if self.page_size == 0 || self.page_size > 1000 {
            return Err("findings.page_size must be between 1 and 1000".into());
        }
        if self.pace_duty_percent == 0 || self.pace_duty_percent > 100 {
            return Err("findings.pace_duty_percent must be between 1 and 100".into());
        }
        if self.max_acceptance_days == 0 {
            return Err("findings.max_acceptance_days must be positive".into());
        }
        for r in &self.actions.rules {
            let per_credential = matches!(
                r.finding,
                FindingType::CredentialRotationOverdue | FindingType::CredentialMultiSource
            );
            if r.action == ActionKind::RevokeCredential && !per_credential {
                return Err(format!(
                    "findings.actions: revoke_credential applies only to credential findings, not {}",
                    r.finding.as_str()
                ));
            }
        }
        Ok(())
    }
}

/// Per-process state of the findings job: one run at a time, the last run's summary, and the
/// count of token requests the job paces itself by.
#[derive(Default)]
pub struct FindingsRuntime {
    running: tokio::sync::Mutex<()>,
    last: std::sync::Mutex<Option<wire::FindingsRunView>>,
    token_requests: AtomicU64,
    judged: AtomicU64,
}

impl FindingsRuntime {
    /// Identities judged by runs on this node since it started (progress, for observers).
    pub fn identities_judged(&self) -> u64 {
        self.judged.load(Ordering::Relaxed)
    }

    /// Counts one token request (the token path calls this; one relaxed atomic add).
    pub fn note_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The summary of the last completed run on this node.
    pub fn last_run(&self) -> Option<wire::FindingsRunView> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Longest single pause between two pages.
const MAX_PAUSE: StdDuration = StdDuration::from_secs(2);

/// Keeps a run from competing with the token path: after each page it looks at the token
/// requests served since the previous page and, when the server is busy, sleeps long enough
/// that the run's share of the wall time stays at the configured duty.
pub struct Pacer<'a> {
    requests: &'a AtomicU64,
    duty_percent: u32,
    busy_rps: f64,
    last_count: u64,
    last_at: Instant,
    /// Total time paused so far.
    pub paused: StdDuration,
}

impl<'a> Pacer<'a> {
    pub fn new(runtime: &'a FindingsRuntime, config: &FindingsConfig) -> Self {
        Self {
            requests: &runtime.token_requests,
            duty_percent: u32::from(config.pace_duty_percent.clamp(1, 100)),
            busy_rps: f64::from(config.pace_above_requests_per_sec),
            last_count: runtime.token_requests.load(Ordering::Relaxed),
            last_at: Instant::now(),
            paused: StdDuration::ZERO,
        }
    }

    /// The pause owed after `worked` of work, given the request rate since the last call.
    pub fn pause_for(&mut self, worked: StdDuration) -> StdDuration {
        let count = self.requests.load(Ordering::Relaxed);
        let window = self.last_at.elapsed().as_secs_f64().max(0.001);
        let rate = count.saturating_sub(self.last_count) as f64 / window;
        self.last_count = count;
        self.last_at = Instant::now();
        if self.duty_percent >= 100 || rate < self.busy_rps {
            return StdDuration::ZERO;
        }
        let factor = f64::from(100 - self.duty_percent) / f64::from(self.duty_percent);
        worked.mul_f64(factor).min(MAX_PAUSE)
    }

    /// Sleeps for [`Pacer::pause_for`] (or just yields when the server is quiet).
    pub async fn pause_after(&mut self, worked: StdDuration) {
        let pause = self.pause_for(worked);
        if pause.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pause).await;
            self.paused += pause;
        }
    }
}

// ---------------------------------------------------------------- planning (pure)

/// Everything the planner knows about one page of identities.
pub struct PageInput {
    pub identities: Vec<Identity>,
    pub credentials: Vec<Credential>,
    pub usage: Vec<ScopeUse>,
    pub sources: Vec<SourceUse>,
    pub live: Vec<FindingRecord>,
    pub risks: Vec<RiskRecord>,
}

/// Shared, read-only context of a run.
pub struct RunContext {
    pub owners: HashMap<Uuid, Owner>,
    pub waivers: HashMap<Uuid, Vec<Waiver>>,
    pub config: FindingsConfig,
    pub now: OffsetDateTime,
    pub actor: String,
    pub request_id: Option<String>,
}

/// An automatic action due on an open finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAction {
    pub finding_id: Uuid,
    pub finding_type: FindingType,
    pub identity_id: Uuid,
    pub credential_id: Option<Uuid>,
    pub action: ActionKind,
    pub open_since: OffsetDateTime,
}

/// What to write for one page, and what it amounts to.
#[derive(Default)]
pub struct PagePlan {
    /// (mutation, its audit event if it is a state change).
    pub writes: Vec<(Mutation, Option<AuditEvent>)>,
    pub raised: u64,
    pub resolved: u64,
    pub reopened: u64,
    pub updated: u64,
    pub waived: u64,
    pub risk_scores: u64,
    pub actions: Vec<PlannedAction>,
}

fn group<T>(items: Vec<T>, key: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut m: HashMap<Uuid, Vec<T>> = HashMap::new();
    for i in items {
        m.entry(key(&i)).or_default().push(i);
    }
    m
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl RunContext {
    fn event(&self, action: &str, f: &FindingRecord) -> AuditEvent {
        let mut e = AuditEvent::new(self.now, self.actor.clone(), action, Outcome::Success)
            .request(self.request_id.clone(), None)
            .target(format!("finding:{}", f.id));
        if let Some(i) = f.identity_id {
            e = e.identity(i);
        }
        e
    }

    fn details(f: &FindingRecord) -> serde_json::Value {
        json!({
            "type": f.kind,
            "severity": f.severity,
            "owasp_nhi": f.owasp_nhi,
            "nist_csf": f.nist_csf,
            "dedup_key": f.dedup_key,
        })
    }

    /// Plans one page: findings to raise, update, accept, reopen and resolve, risk scores to
    /// write, and actions that are due.
    pub fn plan(&self, page: PageInput) -> PagePlan {
        let mut plan = PagePlan::default();
        let mut creds = group(page.credentials, |c| c.identity_id);
        let mut usage = group(page.usage, |u| u.identity_id);
        let mut sources = group(page.sources, |s| s.identity_id);
        let mut live = group(page.live, |f| f.identity_id.unwrap_or_default());
        let risks: HashMap<Uuid, RiskRecord> =
            page.risks.into_iter().map(|r| (r.identity_id, r)).collect();
        let no_waivers: Vec<Waiver> = vec![];
        for identity in &page.identities {
            let id = identity.id;
            let creds = creds.remove(&id).unwrap_or_default();
            let usage = usage.remove(&id).unwrap_or_default();
            let sources = sources.remove(&id).unwrap_or_default();
            let live = live.remove(&id).unwrap_or_default();
            let subject = Subject {
                identity,
                owner: self.owners.get(&identity.owner_id),
                credentials: &creds,
                usage: &usage,
                sources: &sources,
                waivers: self.waivers.get(&id).unwrap_or(&no_waivers),
            };
            let candidates = evaluate(&subject, &self.config.rules, self.now);
            let after = self.reconcile(identity, candidates, live, &mut plan);
            self.plan_actions(identity, &after, &mut plan);
            self.plan_risk(id, &after, risks.get(&id), &mut plan);
        }
        plan
    }

    /// Compares the rules' candidates with the identity's live findings; returns the live
    /// findings as they will be after the plan (every type).
    fn reconcile(
        &self,
        identity: &Identity,
        candidates: Vec<Candidate>,
        live: Vec<FindingRecord>,
        plan: &mut PagePlan,
    ) -> Vec<FindingRecord> {
        let (owned, foreign): (Vec<FindingRecord>, Vec<FindingRecord>) = live
            .into_iter()
            .partition(|f| FindingType::parse(&f.kind).is_some());
        let mut after = foreign;
        let mut existing: BTreeMap<String, Vec<FindingRecord>> = BTreeMap::new();
        for f in owned {
            existing.entry(f.dedup_key.clone()).or_default().push(f);
        }
        for c in candidates {
            let mut olds = existing.remove(&c.dedup_key).unwrap_or_default();
            // Keep the oldest record of a key; any extra (from a race) is resolved below.
            olds.sort_by_key(|f| (f.first_seen, f.id));
            let old = if olds.is_empty() {
                None
            } else {
                Some(olds.remove(0))
            };
            for extra in olds {
                self.resolve(
                    extra,
                    "duplicate of another finding with the same key",
                    plan,
                );
            }
            match old {
                None => after.push(self.raise(&c, plan)),
                Some(f) => after.push(self.refresh(f, &c, plan)),
            }
        }
        let reason = if identity.status == IdentityStatus::Retired {
            "identity retired"
        } else {
            "condition cleared"
        };
        for f in existing.into_values().flatten() {
            self.resolve(f, reason, plan);
        }
        after
    }

    fn raise(&self, c: &Candidate, plan: &mut PagePlan) -> FindingRecord {
        let now = self.now;
        let mut f = FindingRecord {
            id: Uuid::now_v7(),
            identity_id: Some(c.identity_id),
            kind: c.kind.as_str().into(),
            severity: c.severity.as_str().into(),
            status: FindingStatus::Open,
            owasp_nhi: c.owasp_nhi().into(),
            nist_csf: c.nist_csf().into(),
            evidence: c.evidence.clone(),
            dedup_key: c.dedup_key.clone(),
            first_seen: now,
            last_seen: now,
            resolved_at: None,
            version: 1,
            accepted_until: None,
            accepted_reason: None,
            accepted_by: None,
        };
        let mut details = Self::details(&f);
        details["evidence"] = f.evidence.clone();
        if let Some(w) = &c.waiver {
            waive(&mut f, w);
            details["waived_by_exception"] = json!(w.id);
            details["accepted_until"] = json!(ts(w.expires_at));
            plan.waived += 1;
        }
        details["status"] = json!(f.status.as_str());
        let e = self.event("finding.raise", &f).details(details);
        plan.writes
            .push((Mutation::InsertFinding(f.clone()), Some(e)));
        plan.raised += 1;
        f
    }

    fn refresh(&self, old: FindingRecord, c: &Candidate, plan: &mut PagePlan) -> FindingRecord {
        let now = self.now;
        let mut f = old.clone();
        f.evidence = c.evidence.clone();
        f.severity = c.severity.as_str().into();
        let changed = f.evidence != old.evidence || f.severity != old.severity;
        let mut action: Option<(&str, serde_json::Value)> = None;
        let acceptance_live =
            old.status == FindingStatus::Accepted && old.accepted_until.is_some_and(|u| u > now);
        match (&c.waiver, acceptance_live) {
            // An exception covers it: accepted until the exception expires (never shortened).
            (Some(w), _)
                if old.status == FindingStatus::Open
                    || old.accepted_until.is_none_or(|u| u < w.expires_at) =>
            {
                waive(&mut f, w);
                plan.waived += 1;
                action = Some((
                    "finding.accept",
                    json!({"waived_by_exception": w.id, "accepted_until": ts(w.expires_at), "reason": w.reason}),
                ));
            }
            (_, true) => {}
            (_, false) if old.status == FindingStatus::Accepted => {
                f.status = FindingStatus::Open;
                f.accepted_until = None;
                f.accepted_reason = None;
                f.accepted_by = None;
                plan.reopened += 1;
                action = Some((
                    "finding.reopen",
                    json!({
                        "reason": "the acceptance ran out",
                        "accepted_until": old.accepted_until.map(ts),
                        "accepted_reason": old.accepted_reason,
                        "accepted_by": old.accepted_by,
                    }),
                ));
            }
            _ => {}
        }
        if action.is_none() && changed {
            plan.updated += 1;
            action = Some((
                "finding.update",
                json!({"before": old.evidence, "after": f.evidence}),
            ));
        }
        let stale = now - old.last_seen
            >= Duration::seconds(
                i64::try_from(self.config.refresh_last_seen_secs).unwrap_or(i64::MAX),
            );
        if action.is_none() && !stale && !changed {
            return old;
        }
        f.last_seen = now;
        f.version = old.version + 1;
        let event = action.map(|(name, extra)| {
            let mut d = Self::details(&f);
            if let (Some(d), serde_json::Value::Object(x)) = (d.as_object_mut(), extra) {
                d.extend(x);
            }
            self.event(name, &f).details(d)
        });
        plan.writes.push((
            Mutation::UpdateFinding {
                finding: f.clone(),
                expected_version: old.version,
            },
            event,
        ));
        f
    }

    fn resolve(&self, old: FindingRecord, reason: &str, plan: &mut PagePlan) {
        let mut f = old.clone();
        f.status = FindingStatus::Resolved;
        f.resolved_at = Some(self.now);
        f.version = old.version + 1;
        let mut d = Self::details(&f);
        d["previous_status"] = json!(old.status.as_str());
        let e = self.event("finding.resolve", &f).reason(reason).details(d);
        plan.writes.push((
            Mutation::UpdateFinding {
                finding: f,
                expected_version: old.version,
            },
            Some(e),
        ));
        plan.resolved += 1;
    }

    fn plan_actions(&self, identity: &Identity, after: &[FindingRecord], plan: &mut PagePlan) {
        for rule in &self.config.actions.rules {
            for f in after.iter().filter(|f| {
                f.status == FindingStatus::Open
                    && f.kind == rule.finding.as_str()
                    && self.now - f.first_seen >= Duration::days(i64::from(rule.grace_days))
            }) {
                let credential_id = f
                    .evidence
                    .get("credential_id")
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok());
                let applicable = match rule.action {
                    ActionKind::SuspendIdentity => {
                        identity.effective_status(self.now) == IdentityStatus::Active
                    }
                    ActionKind::RevokeCredential => credential_id.is_some(),
                };
                if applicable {
                    plan.actions.push(PlannedAction {
                        finding_id: f.id,
                        finding_type: rule.finding,
                        identity_id: identity.id,
                        credential_id,
                        action: rule.action,
                        open_since: f.first_seen,
                    });
                }
            }
        }
    }

    fn plan_risk(
        &self,
        identity: Uuid,
        after: &[FindingRecord],
        stored: Option<&RiskRecord>,
        plan: &mut PagePlan,
    ) {
        let s = score(after.iter().map(|f| RiskInput {
            finding_id: f.id,
            finding_type: &f.kind,
            owasp_nhi: &f.owasp_nhi,
            severity: &f.severity,
            accepted: f.status == FindingStatus::Accepted,
        }));
        let same = match stored {
            Some(r) => r.score == s.score && r.factors == s.factors,
            None => s.score == 0 && s.factors.is_empty(),
        };
        if !same {
            plan.writes.push((
                Mutation::PutIdentityRisk(RiskRecord {
                    identity_id: identity,
                    score: s.score,
                    factors: s.factors,
                    computed_at: self.now,
                }),
                None,
            ));
            plan.risk_scores += 1;
        }
    }
}

fn waive(f: &mut FindingRecord, w: &Waiver) {
    f.status = FindingStatus::Accepted;
    f.accepted_until = Some(w.expires_at);
    f.accepted_reason = Some(format!("exception {}: {}", w.id, w.reason));
    f.accepted_by = Some(w.approved_by.clone());
}

// ---------------------------------------------------------------- views

pub fn finding_view(f: &FindingRecord) -> wire::FindingView {
    wire::FindingView {
        id: f.id,
        identity_id: f.identity_id,
        kind: f.kind.clone(),
        severity: f.severity.clone(),
        status: f.status.as_str().into(),
        owasp_nhi: f.owasp_nhi.clone(),
        nist_csf: f.nist_csf.clone(),
        evidence: f.evidence.clone(),
        dedup_key: f.dedup_key.clone(),
        first_seen: f.first_seen,
        last_seen: f.last_seen,
        resolved_at: f.resolved_at,
        accepted_until: f.accepted_until,
        accepted_reason: f.accepted_reason.clone(),
        accepted_by: f.accepted_by.clone(),
    }
}

// ---------------------------------------------------------------- the service

impl Inner {
    pub(crate) async fn all_owners(&self) -> Result<HashMap<Uuid, Owner>, ServiceError> {
        let mut out = HashMap::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_owners(&OwnerQuery {
                    after,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            after = page.items.last().map(|o| o.id);
            out.extend(page.items.into_iter().map(|o| (o.id, o)));
            if page.next.is_none() || after.is_none() {
                return Ok(out);
            }
        }
    }

    async fn active_waivers(
        &self,
        now: OffsetDateTime,
    ) -> Result<HashMap<Uuid, Vec<Waiver>>, ServiceError> {
        let exceptions = self
            .store
            .list_exceptions(&ExceptionQuery {
                identity_id: None,
                active_at: Some(now),
            })
            .await?;
        let mut out: HashMap<Uuid, Vec<Waiver>> = HashMap::new();
        for x in exceptions {
            if FindingType::parse(&x.guard_rail).is_some() {
                out.entry(x.identity_id).or_default().push(Waiver {
                    id: x.id,
                    finding_type: x.guard_rail,
                    approved_by: x.approved_by,
                    reason: x.reason,
                    expires_at: x.expires_at,
                });
            }
        }
        Ok(out)
    }

    /// One page of identities after `after` with everything the planner needs about them, and
    /// the cursor of the page that follows (none on the last page).
    async fn read_identity_page(
        &self,
        after: Option<Uuid>,
        page_size: u32,
        now: OffsetDateTime,
    ) -> Result<(PageInput, Option<Uuid>), ServiceError> {
        let page = self
            .store
            .list_identities(&IdentityQuery::all(after, page_size, now))
            .await?;
        let following = page
            .next
            .is_some()
            .then(|| page.items.last().map(|i| i.id))
            .flatten();
        Ok((self.read_page(page.items).await?, following))
    }

    async fn read_page(&self, identities: Vec<Identity>) -> Result<PageInput, ServiceError> {
        let (Some(first), Some(last)) = (identities.first(), identities.last()) else {
            return Ok(PageInput {
                identities,
                credentials: vec![],
                usage: vec![],
                sources: vec![],
                live: vec![],
                risks: vec![],
            });
        };
        let range = IdRange {
            first: first.id,
            last: last.id,
        };
        let s = &self.store;
        let (credentials, usage, sources, live, risks) = tokio::try_join!(
            s.credentials_between(range),
            s.usage_summaries_between(range),
            s.credential_sources_between(range),
            s.live_findings_between(range),
            s.identity_risks_between(range),
        )?;
        Ok(PageInput {
            identities,
            credentials,
            usage,
            sources,
            live,
            risks,
        })
    }

    /// Writes a page's plan in bounded changes. A change refused because another node changed
    /// the same findings concurrently is skipped (the next run redoes it); returns how many were.
    /// With a `fence`, every change starts with the lease check, and a run that lost its lease
    /// stops.
    async fn write_plan(
        &self,
        mut writes: Vec<(Mutation, Option<AuditEvent>)>,
        fence: Option<&Fence>,
    ) -> Result<u64, ServiceError> {
        // Grouped by kind (a stable sort, each audit event staying with its mutation) so the
        // store sends each group as one multi-row statement. The writes of a plan are about
        // distinct findings and identities, so they commute; updates (resolutions) still go
        // before inserts, in case a resolved dedup key is raised again.
        writes.sort_by_key(|(m, _)| match m {
            Mutation::UpdateFinding { .. } => 0,
            Mutation::InsertFinding(_) => 1,
            Mutation::PutIdentityRisk(_) => 2,
            _ => 3,
        });
        let mut changes = Vec::new();
        let mut iter = writes.into_iter().peekable();
        while iter.peek().is_some() {
            let mut change = Change::new();
            if let Some(f) = fence {
                change = change.with(f.mutation());
            }
            for (m, e) in iter.by_ref().take(MUTATIONS_PER_CHANGE) {
                change = change.with(m);
                if let Some(e) = e {
                    change = change.audit(e);
                }
            }
            changes.push(change);
        }
        // Submitted together, so the group-commit writer can take them in one transaction.
        let results =
            futures::future::join_all(changes.into_iter().map(|c| self.store.commit(c))).await;
        let mut conflicts = 0;
        for result in results {
            match result {
                Ok(_) => {}
                Err(StoreError::Conflict(_) | StoreError::Stale(_) | StoreError::NotFound(_)) => {
                    if let Some(f) = fence {
                        let held = self.store.get_lease(f.name()).await?;
                        if held.is_none_or(|l| l.epoch != f.epoch()) {
                            return Err(ServiceError::Internal(format!(
                                "findings run stopped: lease {} was taken over",
                                f.name()
                            )));
                        }
                    }
                    conflicts += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(conflicts)
    }

    /// Runs the findings job once over every identity (one run at a time per node).
    pub async fn run_findings(&self, ctx: &Ctx) -> Result<wire::FindingsRunView, ServiceError> {
        self.run_findings_fenced(ctx, None).await
    }

    /// [`Inner::run_findings`], with every write fenced by the background job's lease. Pages
    /// are read with one query per table, planned on the blocking pool, written in bounded
    /// changes, and paced (see [`Pacer`]) while the token path is busy.
    pub async fn run_findings_fenced(
        &self,
        ctx: &Ctx,
        fence: Option<&Fence>,
    ) -> Result<wire::FindingsRunView, ServiceError> {
        let _running = self.findings_runtime.running.lock().await;
        let started = Instant::now();
        let now = self.now();
        let config = self.config.findings.clone();
        let page_size = config.page_size;
        let run = Arc::new(RunContext {
            owners: self.all_owners().await?,
            waivers: self.active_waivers(now).await?,
            config,
            now,
            actor: ctx.actor.clone(),
            request_id: ctx.request_id.clone(),
        });
        let mut view = wire::FindingsRunView {
            started_at: now,
            duration_ms: 0,
            identities: 0,
            raised: 0,
            resolved: 0,
            reopened: 0,
            updated: 0,
            waived: 0,
            conflicts: 0,
            risk_scores_written: 0,
            dry_run: run.config.actions.dry_run,
            actions: vec![],
            paused_ms: 0,
        };
        let mut pacer = Pacer::new(&self.findings_runtime, &run.config);
        let mut planned = Vec::new();
        // Pipelined: while one page is planned and written, the next one is read.
        let mut next = Some(self.read_identity_page(None, page_size, now).await?);
        while let Some((input, following)) = next.take() {
            let page_started = Instant::now();
            view.identities += input.identities.len() as u64;
            self.findings_runtime
                .judged
                .fetch_add(input.identities.len() as u64, Ordering::Relaxed);
            let ctx = Arc::clone(&run);
            let work = async {
                let mut plan = tokio::task::spawn_blocking(move || ctx.plan(input))
                    .await
                    .map_err(|e| {
                        ServiceError::Internal(format!("findings planning failed: {e}"))
                    })?;
                let conflicts = self
                    .write_plan(std::mem::take(&mut plan.writes), fence)
                    .await?;
                Ok::<_, ServiceError>((plan, conflicts))
            };
            let (done, read) = match following {
                Some(after) => {
                    let (done, read) =
                        tokio::join!(work, self.read_identity_page(Some(after), page_size, now));
                    (done?, Some(read?))
                }
                None => (work.await?, None),
            };
            let (plan, conflicts) = done;
            view.raised += plan.raised;
            view.resolved += plan.resolved;
            view.reopened += plan.reopened;
            view.updated += plan.updated;
            view.waived += plan.waived;
            view.risk_scores_written += plan.risk_scores;
            view.conflicts += conflicts;
            planned.extend(plan.actions);
            next = read;
            if next.is_some() {
                pacer.pause_after(page_started.elapsed()).await;
            }
        }
        view.paused_ms = u64::try_from(pacer.paused.as_millis()).unwrap_or(u64::MAX);
        view.actions = self.take_actions(ctx, &run, planned).await;
        self.purge_old_usage(now).await;
        view.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let executed = view.actions.iter().filter(|a| a.executed).count();
        let summary = ctx
            .event(now, "findings.run", Outcome::Success)
            .details(json!({
                "identities": view.identities,
                "raised": view.raised,
                "resolved": view.resolved,
                "reopened": view.reopened,
                "updated": view.updated,
                "waived": view.waived,
                "conflicts": view.conflicts,
                "risk_scores_written": view.risk_scores_written,
                "dry_run": view.dry_run,
                "actions_planned": view.actions.len(),
                "actions_executed": executed,
                "duration_ms": view.duration_ms,
                "paused_ms": view.paused_ms,
            }));
        let mut done = Change::audit_only(summary);
        if let Some(f) = fence {
            done.mutations.insert(0, f.mutation());
        }
        self.store.commit(done).await?;
        metrics::counter!("steward_findings_runs_total").increment(1);
        metrics::histogram!("steward_findings_run_seconds").record(started.elapsed().as_secs_f64());
        *self
            .findings_runtime
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(view.clone());
        Ok(view)
    }

    async fn take_actions(
        &self,
        ctx: &Ctx,
        run: &RunContext,
        planned: Vec<PlannedAction>,
    ) -> Vec<wire::FindingActionView> {
        let dry = run.config.actions.dry_run;
        let mut out = Vec::with_capacity(planned.len());
        let actor = Ctx {
            actor: SYSTEM_ACTOR.into(),
            request_id: ctx.request_id.clone(),
            source: None,
            client_cert: None,
        };
        for a in planned {
            let reason = format!(
                "automatic: {} finding {} open since {}",
                a.finding_type.as_str(),
                a.finding_id,
                ts(a.open_since)
            );
            let result = if dry {
                None
            } else {
                Some(match (a.action, a.credential_id) {
                    (ActionKind::SuspendIdentity, _) => self
                        .transition_identity(
                            &actor,
                            a.identity_id,
                            LifecycleAction::Suspend,
                            Some(reason),
                        )
                        .await
                        .map(|_| ()),
                    (ActionKind::RevokeCredential, Some(c)) => self
                        .revoke_credential(&actor, a.identity_id, c, Some(reason))
                        .await
                        .map(|_| ()),
                    (ActionKind::RevokeCredential, None) => Ok(()),
                })
            };
            let (executed, error) = match result {
                None => (false, None),
                Some(Ok(())) => (true, None),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, finding = %a.finding_id, "automatic action failed");
                    (false, Some(e.to_string()))
                }
            };
            out.push(wire::FindingActionView {
                finding_id: a.finding_id,
                finding_type: a.finding_type.as_str().into(),
                identity_id: a.identity_id,
                credential_id: a.credential_id,
                action: a.action.as_str().into(),
                executed,
                error,
            });
        }
        out
    }

    async fn purge_old_usage(&self, now: OffsetDateTime) {
        let keep = i64::from(self.config.usage.retention_days);
        let sources_before =
            now - Duration::days(i64::from(self.config.findings.rules.usage_window_days).max(keep));
        if let Err(e) = self
            .store
            .purge_usage(day_of(now) - keep, sources_before)
            .await
        {
            tracing::warn!(error = %e, "purging old usage failed");
        }
    }

    pub async fn get_finding(&self, id: Uuid) -> Result<FindingRecord, ServiceError> {
        self.store
            .get_finding(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("finding {id}")))
    }

    pub async fn list_findings(
        &self,
        q: &FindingQuery,
    ) -> Result<Page<FindingRecord>, ServiceError> {
        Ok(self.store.list_findings(q).await?)
    }

    /// Accepts a finding's risk until `until`, with a reason (audited). The findings job
    /// reopens it once `until` has passed, if the condition still holds.
    pub async fn accept_finding(
        &self,
        ctx: &Ctx,
        id: Uuid,
        req: wire::AcceptFinding,
    ) -> Result<FindingRecord, ServiceError> {
        let now = self.now();
        let reason = req.reason.trim();
        if reason.is_empty()
            || reason.chars().count() > 1024
            || reason.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(ServiceError::invalid(
                "reason must be 1 to 1024 characters without control characters",
            ));
        }
        let max = now + Duration::days(i64::from(self.config.findings.max_acceptance_days));
        if req.until <= now || req.until > max {
            return Err(ServiceError::invalid(format!(
                "until must be in the future and at most {} days away",
                self.config.findings.max_acceptance_days
            )));
        }
        let before = self.get_finding(id).await?;
        if before.status == FindingStatus::Resolved {
            return Err(steward_core::DomainError::Conflict(format!(
                "finding {id} is resolved; only open or accepted findings can be accepted"
            ))
            .into());
        }
        let mut f = before.clone();
        f.status = FindingStatus::Accepted;
        f.accepted_until = Some(steward_core::truncate_micros(req.until));
        f.accepted_reason = Some(reason.to_owned());
        f.accepted_by = Some(ctx.actor.clone());
        f.version += 1;
        let mut event = ctx
            .event(now, "finding.accept", Outcome::Success)
            .target(format!("finding:{id}"))
            .reason(reason)
            .details(json!({
                "type": f.kind,
                "owasp_nhi": f.owasp_nhi,
                "previous_status": before.status.as_str(),
                "accepted_until": ts(req.until),
            }));
        if let Some(i) = f.identity_id {
            event = event.identity(i);
        }
        self.store
            .commit(
                Change::new()
                    .with(Mutation::UpdateFinding {
                        finding: f.clone(),
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        if let Some(i) = f.identity_id {
            self.rescore(i, now).await?;
        }
        Ok(f)
    }

    /// Recomputes one identity's risk score from its live findings now.
    async fn rescore(&self, identity: Uuid, now: OffsetDateTime) -> Result<(), ServiceError> {
        let live = self
            .store
            .live_findings_between(IdRange {
                first: identity,
                last: identity,
            })
            .await?;
        let s = score(live.iter().map(|f| RiskInput {
            finding_id: f.id,
            finding_type: &f.kind,
            owasp_nhi: &f.owasp_nhi,
            severity: &f.severity,
            accepted: f.status == FindingStatus::Accepted,
        }));
        self.store
            .commit(Change::new().with(Mutation::PutIdentityRisk(RiskRecord {
                identity_id: identity,
                score: s.score,
                factors: s.factors,
                computed_at: now,
            })))
            .await?;
        Ok(())
    }

    /// Granted versus used scopes and audiences of one identity over `days` days.
    pub async fn entitlements(
        &self,
        id: Uuid,
        days: u32,
    ) -> Result<wire::EntitlementsView, ServiceError> {
        if days == 0 || days > 3650 {
            return Err(ServiceError::invalid("days must be between 1 and 3650"));
        }
        let identity = self.get_identity(id).await?;
        let now = self.now();
        let since = now - Duration::days(i64::from(days));
        let rows = self.store.usage_days(id, day_of(since)).await?;
        let (scopes, audiences) = steward_core::entitlements::from_daily(&rows, since);
        let e = steward_core::entitlements::analyse(&identity, &scopes, &audiences, days, now);
        Ok(wire::EntitlementsView::new(id, &e, now))
    }

    /// The identity's stored risk score (0 with no factors before any findings run).
    pub async fn identity_risk(&self, id: Uuid) -> Result<wire::RiskView, ServiceError> {
        self.get_identity(id).await?;
        Ok(match self.store.get_identity_risk(id).await? {
            Some(r) => wire::RiskView::new(id, r.score, &r.factors, Some(r.computed_at)),
            None => wire::RiskView::new(id, 0, &[], None),
        })
    }

    pub async fn list_risks(&self, q: &RiskQuery) -> Result<Page<RiskRecord>, ServiceError> {
        Ok(self.store.list_identity_risks(q).await?)
    }
}

/// Starts the background findings job (none when `interval_secs` is 0). With several nodes on
/// one database, the node holding the `findings` lease runs it, and its writes are fenced.
pub fn spawn_job(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let interval = state.config.findings.interval_secs;
    if interval == 0 {
        return None;
    }
    Some(crate::leases::spawn_singleton(
        state.clone(),
        "findings",
        StdDuration::from_secs(interval),
        |state, fence| async move {
            let mut ctx = Ctx::system();
            ctx.actor = SYSTEM_ACTOR.into();
            match state.run_findings_fenced(&ctx, Some(&fence)).await {
                Ok(v) => tracing::info!(
                    identities = v.identities,
                    raised = v.raised,
                    resolved = v.resolved,
                    ms = v.duration_ms,
                    paused_ms = v.paused_ms,
                    "findings run"
                ),
                Err(e) => tracing::warn!(error = %e, "findings run failed"),
            }
        },
    ))
}

#[cfg(test)]
mod tests;

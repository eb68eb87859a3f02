//! Authorization use cases: versioned Cedar policies, decisions (`/v1/authorize`) with their
//! audit records, what-if re-evaluation of recorded decisions, and guard-rail exceptions.
//!
//! The compiled policy set is cached per process ([`AuthzCache`]): a local change drops it at
//! once; with `cache_ttl_secs > 0` (several nodes) each node also compares the store's policy
//! state version at most once per TTL before using its copy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use steward_core::{AuditEvent, Identity, Outcome};
use steward_policy::{Base, Decision, Engine, PolicyError, PolicyProblem, PolicySource};
use steward_proto::authz as wire;
use steward_store::{AuditQuery, Change, ExceptionQuery, ExceptionRecord, Mutation, PolicyRecord};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Ctx;
use crate::error::ServiceError;
use crate::state::Inner;

/// Audit action of every decision.
pub const DECISION_ACTION: &str = "authz.decision";
/// Scope that lets a resource server ask for decisions (`steward:admin` also does).
pub const AUTHORIZE_SCOPE: &str = "steward:authorize";
/// Longest exception an operator may approve.
pub const MAX_EXCEPTION_DAYS: i64 = 90;
/// Most recorded decisions one what-if run re-evaluates.
pub const MAX_WHAT_IF: u32 = 100_000;

/// Errors of the authorization use cases that need their own HTTP mapping.
#[derive(Debug)]
pub enum AuthzError {
    Service(ServiceError),
    /// A policy did not parse or validate (400 `invalid_policy`), with positions.
    InvalidPolicy(Vec<PolicyProblem>),
    /// A built-in guard rail cannot be changed (409 `builtin_policy`).
    BuiltIn(String),
}

impl From<ServiceError> for AuthzError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<steward_store::StoreError> for AuthzError {
    fn from(e: steward_store::StoreError) -> Self {
        Self::Service(e.into())
    }
}

/// One compiled view of the authorization state.
pub struct Snapshot {
    pub version: i64,
    /// The compiled set, or why the stored set no longer compiles (then every decision denies).
    pub engine: Result<Engine, String>,
    /// Identity → exceptions unexpired when the snapshot was loaded (expiry is re-checked per decision).
    pub exceptions: HashMap<Uuid, Vec<ExceptionRecord>>,
}

/// The per-process cache of the compiled policy set.
pub struct AuthzCache {
    pub base: Arc<Base>,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Bumped by every local invalidation; a reload stores its result only if unchanged.
    generation: AtomicU64,
    /// Milliseconds since `epoch` at the last version check against the store.
    checked_ms: AtomicU64,
    epoch: Instant,
    ttl: Option<Duration>,
    reload: tokio::sync::Mutex<()>,
}

impl AuthzCache {
    pub fn new(
        config: &steward_policy::SchemaConfig,
        ttl: Option<Duration>,
    ) -> Result<Self, PolicyError> {
        Ok(Self {
            base: Base::new(config.clone())?,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            ttl,
            reload: tokio::sync::Mutex::new(()),
        })
    }

    fn get(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the compiled set after a local change.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

fn decision_str(allow: bool) -> &'static str {
    if allow { "allow" } else { "deny" }
}

fn record_to_view(r: &PolicyRecord) -> wire::PolicyView {
    wire::PolicyView {
        id: r.id.clone(),
        version: r.version,
        source: r.source.clone(),
        description: r.description.clone(),
        builtin: false,
        created_at: Some(r.created_at),
        created_by: Some(r.created_by.clone()),
    }
}

pub fn exception_view(x: &ExceptionRecord, now: OffsetDateTime) -> wire::ExceptionView {
    wire::ExceptionView {
        id: x.id,
        identity_id: x.identity_id,
        guard_rail: x.guard_rail.clone(),
        requested_by: x.requested_by.clone(),
        approved_by: Some(x.approved_by.clone()),
        reason: x.reason.clone(),
        created_at: x.created_at,
        expires_at: x.expires_at,
        active: x.expires_at > now,
        status: crate::service::lifecycle::exceptions::approved_status(x.expires_at, now).into(),
    }
}

fn guard_view(g: &steward_policy::GuardRail) -> wire::PolicyView {
    wire::PolicyView {
        id: g.id.to_owned(),
        version: 0,
        source: g.source.clone(),
        description: g.description.to_owned(),
        builtin: true,
        created_at: None,
        created_by: None,
    }
}

/// The principal as the decision sees it, before exceptions are added.
struct Subject {
    identity: Arc<Identity>,
    scopes: Vec<String>,
    via_token: bool,
    dpop_bound: bool,
    cert_bound: bool,
    mtls: bool,
}

impl Inner {
    /// The current compiled authorization state (loading or refreshing it when needed).
    pub async fn authz_snapshot(&self) -> Result<Arc<Snapshot>, ServiceError> {
        let cache = &self.authz;
        if let Some(s) = cache.get() {
            let Some(ttl) = cache.ttl else {
                return Ok(s);
            };
            let now = cache.now_ms();
            let last = cache.checked_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) < u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX) {
                return Ok(s);
            }
            // One caller checks; the others keep using the current copy meanwhile.
            if cache
                .checked_ms
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                return Ok(s);
            }
            if self.store.policy_state_version().await? == s.version {
                return Ok(s);
            }
        }
        self.reload_authz().await
    }

    async fn reload_authz(&self) -> Result<Arc<Snapshot>, ServiceError> {
        let cache = &self.authz;
        let _guard = cache.reload.lock().await;
        let generation = cache.generation.load(Ordering::SeqCst);
        if let Some(s) = cache.get() {
            // Another task reloaded while this one waited.
            if cache.ttl.is_none() || self.store.policy_state_version().await? == s.version {
                return Ok(s);
            }
        }
        // Version first: a change landing after this read is seen by the next check.
        let version = self.store.policy_state_version().await?;
        let policies = self.store.current_policies().await?;
        let now = self.now();
        let exceptions = self
            .store
            .list_exceptions(&ExceptionQuery {
                identity_id: None,
                active_at: Some(now),
            })
            .await?;
        let sources: Vec<PolicySource> = policies
            .iter()
            .map(|p| PolicySource::new(p.id.clone(), p.source.clone()))
            .collect();
        let engine = cache.base.compile(&sources).map_err(|e| {
            tracing::error!(error = %e, "stored policies do not compile; every decision denies");
            format!("the stored policy set does not compile against the schema: {e}")
        });
        let mut by_identity: HashMap<Uuid, Vec<ExceptionRecord>> = HashMap::new();
        for x in exceptions {
            by_identity.entry(x.identity_id).or_default().push(x);
        }
        let snap = Arc::new(Snapshot {
            version,
            engine,
            exceptions: by_identity,
        });
        if cache.generation.load(Ordering::SeqCst) == generation {
            *cache.current.write().unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
            cache.checked_ms.store(cache.now_ms(), Ordering::Relaxed);
        }
        Ok(snap)
    }

    // ------------------------------------------------------------------ policies

    /// Guard rails first, then the operator's policies by id.
    pub async fn list_policies(&self) -> Result<Vec<wire::PolicyView>, ServiceError> {
        let mut out: Vec<wire::PolicyView> = self
            .authz
            .base
            .guard_rails()
            .iter()
            .map(guard_view)
            .collect();
        out.extend(
            self.store
                .current_policies()
                .await?
                .iter()
                .map(record_to_view),
        );
        Ok(out)
    }

    pub async fn get_policy(&self, id: &str) -> Result<wire::PolicyView, ServiceError> {
        if let Some(g) = self.authz.base.guard_rails().iter().find(|g| g.id == id) {
            return Ok(guard_view(g));
        }
        match self.store.policy_history(id).await?.last() {
            Some(p) if !p.deleted => Ok(record_to_view(p)),
            _ => Err(ServiceError::not_found(format!("policy {id}"))),
        }
    }

    /// Every stored version of a policy, oldest first (deletions included).
    pub async fn policy_versions(&self, id: &str) -> Result<Vec<wire::PolicyView>, ServiceError> {
        if let Some(g) = self.authz.base.guard_rails().iter().find(|g| g.id == id) {
            return Ok(vec![guard_view(g)]);
        }
        let history = self.store.policy_history(id).await?;
        if history.is_empty() {
            return Err(ServiceError::not_found(format!("policy {id}")));
        }
        Ok(history.iter().map(record_to_view).collect())
    }

    fn refuse_builtin(&self, id: &str, verb: &str) -> Result<(), AuthzError> {
        if self.authz.base.is_guard_rail(id) || id.starts_with(steward_policy::RESERVED_PREFIX) {
            return Err(AuthzError::BuiltIn(format!(
                "{id} is a built-in guard rail: it cannot be {verb}; to let one identity past it, \
                 approve a time-bound exception (POST /v1/exceptions)"
            )));
        }
        Ok(())
    }

    fn check_source(&self, id: &str, source: &str) -> Result<(), AuthzError> {
        if let Err(e) = steward_policy::check_policy_id(id) {
            return Err(ServiceError::invalid(e).into());
        }
        if source.len() > 64 * 1024 {
            return Err(ServiceError::invalid("a policy may be at most 64 KiB").into());
        }
        self.authz
            .base
            .check(id, source)
            .map(drop)
            .map_err(AuthzError::InvalidPolicy)
    }

    async fn commit_policy(
        &self,
        ctx: &Ctx,
        action: &str,
        record: PolicyRecord,
        before: &str,
    ) -> Result<wire::PolicyView, AuthzError> {
        let diff = steward_policy::line_diff(before, &record.source);
        let event = ctx
            .event(record.created_at, action, Outcome::Success)
            .target(format!("policy:{}", record.id))
            .details(json!({
                "policy_id": record.id,
                "version": record.version,
                "description": record.description,
                "diff": diff,
            }));
        let view = record_to_view(&record);
        let change = Change::new()
            .with(Mutation::InsertPolicyVersion(record))
            .audit(event);
        let result = self.store.commit(change).await;
        self.authz.invalidate();
        result?;
        Ok(view)
    }

    pub async fn create_policy(
        &self,
        ctx: &Ctx,
        req: wire::CreatePolicy,
    ) -> Result<wire::PolicyView, AuthzError> {
        self.refuse_builtin(&req.id, "created")?;
        self.check_source(&req.id, &req.source)?;
        let history = self.store.policy_history(&req.id).await?;
        if history.last().is_some_and(|p| !p.deleted) {
            return Err(
                ServiceError::Store(steward_store::StoreError::Conflict(format!(
                    "policy {} already exists; change it with PUT /v1/policies/{}",
                    req.id, req.id
                )))
                .into(),
            );
        }
        let record = PolicyRecord {
            version: history.last().map_or(1, |p| p.version + 1),
            id: req.id,
            source: req.source,
            description: req.description,
            deleted: false,
            created_at: steward_core::truncate_micros(self.now()),
            created_by: ctx.actor.clone(),
        };
        self.commit_policy(ctx, "policy.create", record, "").await
    }

    pub async fn update_policy(
        &self,
        ctx: &Ctx,
        id: &str,
        req: wire::UpdatePolicy,
    ) -> Result<wire::PolicyView, AuthzError> {
        self.refuse_builtin(id, "changed")?;
        let history = self.store.policy_history(id).await?;
        let current = match history.last() {
            Some(p) if !p.deleted => p,
            _ => return Err(ServiceError::not_found(format!("policy {id}")).into()),
        };
        if let Some(v) = req.expected_version
            && v != current.version
        {
            return Err(
                ServiceError::Store(steward_store::StoreError::Stale(format!(
                    "policy {id} (now at version {})",
                    current.version
                )))
                .into(),
            );
        }
        self.check_source(id, &req.source)?;
        let record = PolicyRecord {
            id: id.to_owned(),
            version: current.version + 1,
            source: req.source,
            description: req
                .description
                .unwrap_or_else(|| current.description.clone()),
            deleted: false,
            created_at: steward_core::truncate_micros(self.now()),
            created_by: ctx.actor.clone(),
        };
        self.commit_policy(ctx, "policy.update", record, &current.source)
            .await
    }

    pub async fn delete_policy(&self, ctx: &Ctx, id: &str) -> Result<(), AuthzError> {
        self.refuse_builtin(id, "deleted")?;
        let history = self.store.policy_history(id).await?;
        let current = match history.last() {
            Some(p) if !p.deleted => p,
            _ => return Err(ServiceError::not_found(format!("policy {id}")).into()),
        };
        let record = PolicyRecord {
            id: id.to_owned(),
            version: current.version + 1,
            source: String::new(),
            description: current.description.clone(),
            deleted: true,
            created_at: steward_core::truncate_micros(self.now()),
            created_by: ctx.actor.clone(),
        };
        self.commit_policy(ctx, "policy.delete", record, &current.source)
            .await
            .map(drop)
    }

    // ------------------------------------------------------------------ decisions

    /// Establishes who the decision is about, checking the token and the identity's current state.
    async fn subject(
        &self,
        req: &wire::AuthorizeRequest,
    ) -> Result<Subject, (Option<Uuid>, String)> {
        let now = self.now();
        match (&req.token, req.identity_id) {
            (Some(token), None) => {
                let v = match self.verify_token(token).await {
                    Ok(v) => v,
                    Err(r) => {
                        // Refused (expired, revoked, identity suspended…): when the signature
                        // is ours, the denial still goes on the subject's audit trail.
                        let subject = self
                            .ring()
                            .verifier
                            .verify(token, Some("at+jwt"))
                            .ok()
                            .and_then(|d| {
                                d.claims
                                    .get("sub")
                                    .and_then(|s| s.as_str())
                                    .and_then(|s| Uuid::parse_str(s).ok())
                            });
                        return Err((subject, r.to_owned()));
                    }
                };
                let id = v.identity.id;
                let cnf = v.claims.cnf.as_ref();
                let presented = req.context.client_cert_thumbprint.as_deref();
                let bound = cnf.and_then(|c| c.x5t_s256.as_deref());
                let cert_bound = match (bound, presented) {
                    (Some(b), Some(p)) => {
                        if !steward_crypto::constant_time_eq(b.as_bytes(), p.as_bytes()) {
                            return Err((
                                Some(id),
                                "the client certificate does not match the token's certificate binding"
                                    .into(),
                            ));
                        }
                        true
                    }
                    (Some(_), None) => {
                        return Err((
                            Some(id),
                            "certificate-bound token presented without its client certificate"
                                .into(),
                        ));
                    }
                    (None, _) => false,
                };
                Ok(Subject {
                    scopes: v
                        .claims
                        .scope
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    identity: v.identity,
                    via_token: true,
                    dpop_bound: cnf.is_some_and(|c| c.jkt.is_some()),
                    cert_bound,
                    mtls: presented.is_some(),
                })
            }
            (None, Some(id)) => {
                let identity = match self.identity(id).await {
                    Ok(Some(i)) => i,
                    Ok(None) => return Err((None, format!("identity {id} not found"))),
                    Err(_) => return Err((Some(id), "identity status unavailable".into())),
                };
                identity
                    .check_can_authenticate(now)
                    .map_err(|r| (Some(id), r.to_owned()))?;
                Ok(Subject {
                    scopes: identity.scopes.clone(),
                    identity,
                    via_token: false,
                    dpop_bound: false,
                    cert_bound: false,
                    mtls: req.context.client_cert_thumbprint.is_some(),
                })
            }
            _ => Err((None, "give exactly one of token and identity_id".into())),
        }
    }

    /// `POST /v1/authorize`. Deny by default; the decision is durable in the audit log before
    /// it is returned.
    pub async fn authorize(
        &self,
        ctx: &Ctx,
        req: wire::AuthorizeRequest,
    ) -> Result<wire::AuthorizeResponse, ServiceError> {
        if req.token.is_some() == req.identity_id.is_some() {
            return Err(ServiceError::invalid(
                "give exactly one of token and identity_id",
            ));
        }
        if let Some(ip) = &req.context.source_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(ServiceError::invalid(
                "context.source_ip is not an IP address",
            ));
        }
        let snap = self.authz_snapshot().await?;
        let now = self.now();
        let resource = steward_policy::Resource {
            kind: req.resource.kind.clone(),
            id: req.resource.id.clone(),
            attributes: req.resource.attributes.clone(),
        };
        let (principal_id, request, decision) = match self.subject(&req).await {
            Err((id, reason)) => (id, None, Decision::deny(reason)),
            Ok(s) => {
                let id = s.identity.id;
                let exceptions: Vec<String> = snap
                    .exceptions
                    .get(&id)
                    .map(|xs| {
                        xs.iter()
                            .filter(|x| x.expires_at > now)
                            .map(|x| x.guard_rail.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let i = &s.identity;
                let request = steward_policy::Request {
                    principal: steward_policy::Principal {
                        id: id.to_string(),
                        name: i.name.clone(),
                        kind: i.kind.as_str().to_owned(),
                        env: i.environment.clone(),
                        owner: i.owner_id.to_string(),
                        scopes: s.scopes,
                        labels: i.labels.clone(),
                        exceptions,
                    },
                    action: req.action.clone(),
                    resource,
                    context: steward_policy::Context {
                        time: now.unix_timestamp(),
                        source_ip: req.context.source_ip.clone(),
                        mtls: s.mtls,
                        cert_bound: s.cert_bound,
                        dpop_bound: s.dpop_bound,
                        via_token: s.via_token,
                    },
                };
                let decision = match &snap.engine {
                    Ok(engine) => engine.evaluate(&request),
                    Err(e) => Decision::deny(e.clone()),
                };
                (Some(id), Some(request), decision)
            }
        };
        let mut event = AuditEvent::new(
            now,
            ctx.actor.clone(),
            DECISION_ACTION,
            if decision.allow {
                Outcome::Success
            } else {
                Outcome::Denied
            },
        )
        .request(ctx.request_id.clone(), ctx.source.clone())
        .target(format!(
            "resource:{}/{}",
            req.resource.kind, req.resource.id
        ))
        .details(json!({
            "decision": decision_str(decision.allow),
            "action": req.action,
            "resource": {"type": req.resource.kind, "id": req.resource.id},
            "policies": decision.policies,
            "policy_version": snap.version,
            "errors": decision.errors,
            "request": request,
        }));
        if let Some(id) = principal_id {
            event = event.identity(id);
        }
        if !decision.allow && !decision.errors.is_empty() {
            event = event.reason(decision.errors.join("; "));
        }
        // Durable before the answer: group-committed with other decisions and awaited.
        self.store.commit(Change::audit_only(event)).await?;
        metrics::counter!("steward_authz_decisions_total", "decision" => decision_str(decision.allow))
            .increment(1);
        Ok(wire::AuthorizeResponse {
            decision: decision_str(decision.allow).into(),
            policies: decision.policies,
            errors: decision.errors,
            policy_version: snap.version,
            principal: principal_id,
        })
    }

    // ------------------------------------------------------------------ what-if

    /// `POST /v1/authorize/what-if`: re-evaluates recorded decisions under a proposed set.
    pub async fn what_if(
        &self,
        req: wire::WhatIfRequest,
    ) -> Result<wire::WhatIfResponse, AuthzError> {
        let now = self.now();
        let mut proposed: Vec<PolicySource> = if req.replace {
            Vec::new()
        } else {
            self.store
                .current_policies()
                .await?
                .into_iter()
                .map(|p| PolicySource::new(p.id, p.source))
                .collect()
        };
        proposed.retain(|p| !req.remove.contains(&p.id));
        for p in req.policies {
            self.refuse_builtin(&p.id, "replaced")?;
            proposed.retain(|q| q.id != p.id);
            proposed.push(PolicySource::new(p.id, p.source));
        }
        let engine = self.authz.base.compile(&proposed).map_err(|e| match e {
            PolicyError::Invalid(p) => AuthzError::InvalidPolicy(p),
            other => ServiceError::Internal(other.to_string()).into(),
        })?;
        let since = req.since.unwrap_or(now - time::Duration::hours(24));
        let until = req.until.unwrap_or(now + time::Duration::seconds(1));
        let limit = req.limit.unwrap_or(MAX_WHAT_IF).clamp(1, MAX_WHAT_IF);
        let mut out = wire::WhatIfResponse {
            evaluated: 0,
            skipped: 0,
            allow_to_deny: 0,
            deny_to_allow: 0,
            flips: Vec::new(),
            truncated: false,
        };
        let mut after_seq = None;
        let mut seen: u32 = 0;
        'pages: loop {
            let page = self
                .store
                .list_audit(&AuditQuery {
                    action: Some(DECISION_ACTION.into()),
                    since: Some(since),
                    until: Some(until),
                    after_seq,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            for r in &page.items {
                if seen >= limit {
                    out.truncated = true;
                    break 'pages;
                }
                seen += 1;
                let d = &r.event.details;
                let recorded: Option<steward_policy::Request> = d
                    .get("request")
                    .filter(|v| !v.is_null())
                    .and_then(|v| serde_json::from_value(v.clone()).ok());
                let (Some(request), Some(before)) =
                    (recorded, d.get("decision").and_then(|v| v.as_str()))
                else {
                    out.skipped += 1;
                    continue;
                };
                out.evaluated += 1;
                let after = engine.evaluate(&request);
                let after_s = decision_str(after.allow);
                if after_s == before {
                    continue;
                }
                if after.allow {
                    out.deny_to_allow += 1;
                } else {
                    out.allow_to_deny += 1;
                }
                let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
                    v.and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                out.flips.push(wire::Flip {
                    seq: r.seq,
                    time: r.event.time,
                    principal: request.principal.id.clone(),
                    action: request.action.clone(),
                    resource_type: request.resource.kind.clone(),
                    resource_id: request.resource.id.clone(),
                    before: before.to_owned(),
                    after: after_s.to_owned(),
                    policies_before: strings(d.get("policies")),
                    policies_after: after.policies,
                });
            }
            match page.next {
                Some(n) => after_seq = n.parse().ok(),
                None => break,
            }
            if after_seq.is_none() {
                break;
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ exceptions

    /// `POST /v1/exceptions`: with `requested_by`, the caller approves and must be someone
    /// else; without, the caller requests (see `lifecycle::exceptions`).
    pub async fn create_exception(
        &self,
        ctx: &Ctx,
        req: wire::CreateException,
    ) -> Result<wire::ExceptionView, ServiceError> {
        let now = self.now();
        crate::service::lifecycle::exceptions::validate_exception_target(&req.guard_rail)?;
        let Some(requested_by) = req.requested_by.clone() else {
            // No requester named: the caller requests, and someone else approves later.
            return self.request_exception(ctx, req).await;
        };
        let requested_by = requested_by.trim();
        if requested_by.is_empty() || requested_by.len() > 200 {
            return Err(ServiceError::invalid(
                "requested_by must name who asked (1 to 200 characters)",
            ));
        }
        let reason = req.reason.trim();
        if reason.is_empty() || reason.len() > 1000 {
            return Err(ServiceError::invalid("reason must be 1 to 1000 characters"));
        }
        if requested_by == ctx.actor {
            return Err(steward_core::DomainError::SeparationOfDuties(
                "the approver of an exception must not be the one who requested it",
            )
            .into());
        }
        if req.expires_at <= now {
            return Err(ServiceError::invalid("expires_at must be in the future"));
        }
        if req.expires_at > now + time::Duration::days(MAX_EXCEPTION_DAYS) {
            return Err(ServiceError::invalid(format!(
                "an exception may last at most {MAX_EXCEPTION_DAYS} days"
            )));
        }
        if self.store.get_identity(req.identity_id).await?.is_none() {
            return Err(ServiceError::not_found(format!(
                "identity {}",
                req.identity_id
            )));
        }
        let record = ExceptionRecord {
            id: Uuid::now_v7(),
            identity_id: req.identity_id,
            guard_rail: req.guard_rail.clone(),
            requested_by: requested_by.to_owned(),
            approved_by: ctx.actor.clone(),
            reason: reason.to_owned(),
            created_at: steward_core::truncate_micros(now),
            expires_at: steward_core::truncate_micros(req.expires_at),
        };
        let event = ctx
            .event(now, "exception.create", Outcome::Success)
            .identity(record.identity_id)
            .target(format!("exception:{}", record.id))
            .details(json!({
                "guard_rail": record.guard_rail,
                "requested_by": record.requested_by,
                "approved_by": record.approved_by,
                "reason": record.reason,
                "expires_at": record.expires_at.unix_timestamp(),
            }));
        let view = exception_view(&record, now);
        let result = self
            .store
            .commit(
                Change::new()
                    .with(Mutation::InsertException(record))
                    .audit(event),
            )
            .await;
        self.authz.invalidate();
        result?;
        Ok(view)
    }

    pub async fn list_exceptions(
        &self,
        identity_id: Option<Uuid>,
        active_only: bool,
    ) -> Result<Vec<wire::ExceptionView>, ServiceError> {
        let now = self.now();
        let items = self
            .store
            .list_exceptions(&ExceptionQuery {
                identity_id,
                active_at: active_only.then_some(now),
            })
            .await?;
        Ok(items.iter().map(|x| exception_view(x, now)).collect())
    }
}

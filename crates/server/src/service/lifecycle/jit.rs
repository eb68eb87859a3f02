//! Just-in-time elevation: requests, two-person approval, denial and revocation, the per-node
//! cache of active grants, and the hooks the token path calls (no database read per token).
//!
//! The cache holds every approved grant whose window was open when it was loaded; expiry is
//! re-checked with the clock on every use. A local change drops it at once; other nodes drop it
//! on `Notice::JitGrants`, and with `cache_ttl_secs > 0` it is also reloaded after the TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use steward_core::lifecycle::JitGrant;
use steward_core::lifecycle::jit::{ActiveGrant, JitLimits, JitRequest, covering_grant};
use steward_core::{Identity, Outcome};
use steward_proto::lifecycle as wire;
use steward_store::{Change, JitQuery, LifecycleMutation, Mutation, Page};
use time::OffsetDateTime;
use uuid::Uuid;

use super::rfc3339;
use crate::error::ServiceError;
use crate::service::Ctx;
use crate::service::tokens::OAuthError;
use crate::state::Inner;

/// Active grants by identity, as loaded from the store.
pub struct JitSnapshot {
    by_identity: HashMap<Uuid, Vec<ActiveGrant>>,
    loaded: Instant,
}

/// The per-process cache of active JIT grants.
pub struct JitCache {
    current: RwLock<Option<Arc<JitSnapshot>>>,
    /// Bumped by every invalidation; a reload stores its result only if unchanged.
    generation: AtomicU64,
    reload: tokio::sync::Mutex<()>,
    ttl: Option<Duration>,
}

impl JitCache {
    pub fn new(ttl: Option<Duration>) -> Self {
        Self {
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            reload: tokio::sync::Mutex::new(()),
            ttl,
        }
    }

    /// Drops the cached grants (after a local change or a notice from another node).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn fresh(&self) -> Option<Arc<JitSnapshot>> {
        let s = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        match self.ttl {
            Some(ttl) if s.loaded.elapsed() > ttl => None,
            _ => Some(s),
        }
    }
}

pub fn grant_view(g: &JitGrant, now: OffsetDateTime) -> wire::JitGrantView {
    wire::JitGrantView {
        id: g.id,
        identity_id: g.identity_id,
        scopes: g.scopes.clone(),
        reason: g.reason.clone(),
        requested_by: g.requested_by.clone(),
        duration_secs: g.duration_secs,
        status: g.effective_status(now).into(),
        decided_by: g.decided_by.clone(),
        decided_at: g.decided_at,
        decision_reason: g.decision_reason.clone(),
        starts_at: g.starts_at,
        expires_at: g.expires_at,
        created_at: g.created_at,
    }
}

/// What an operator does to an elevation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitAction {
    Approve,
    Deny,
    Revoke,
}

impl JitAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "deny" => Some(Self::Deny),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Revoke => "revoke",
        }
    }
}

impl Inner {
    fn jit_limits(&self) -> JitLimits {
        JitLimits {
            max_secs: self.config.lifecycle.jit_max_secs,
            pending_secs: self.config.lifecycle.jit_pending_secs,
        }
    }

    /// The active grants, loading them once per invalidation (single flight).
    async fn jit_snapshot(&self) -> Result<Arc<JitSnapshot>, ServiceError> {
        if let Some(s) = self.jit.fresh() {
            return Ok(s);
        }
        let _guard = self.jit.reload.lock().await;
        if let Some(s) = self.jit.fresh() {
            return Ok(s);
        }
        let generation = self.jit.generation.load(Ordering::SeqCst);
        let now = self.now();
        let mut by_identity: HashMap<Uuid, Vec<ActiveGrant>> = HashMap::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_jit_grants(&JitQuery {
                    active_at: Some(now),
                    after,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            for g in &page.items {
                if let Some(a) = ActiveGrant::of(g, now) {
                    by_identity.entry(a.identity_id).or_default().push(a);
                }
            }
            match (page.next, page.items.last()) {
                (Some(_), Some(last)) => after = Some(last.id),
                _ => break,
            }
        }
        let snap = Arc::new(JitSnapshot {
            by_identity,
            loaded: Instant::now(),
        });
        if self.jit.generation.load(Ordering::SeqCst) == generation {
            *self.jit.current.write().unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
        }
        Ok(snap)
    }

    /// Token-path hook: checks the requested scopes against the identity's own, and lets an
    /// active JIT grant cover the rest. Returns the grant used, if any. The refusal is the
    /// RFC 6749 `invalid_scope` error the token endpoint always gave.
    pub async fn check_requested_scopes(
        &self,
        identity: &Identity,
        requested: &[String],
    ) -> Result<Option<ActiveGrant>, OAuthError> {
        let extra: Vec<String> = requested
            .iter()
            .filter(|s| !identity.scopes.contains(s))
            .cloned()
            .collect();
        let Some(first) = extra.first() else {
            return Ok(None);
        };
        let refuse = || {
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("scope {first} is not allowed for this client"),
            )
        };
        let snap = self
            .jit_snapshot()
            .await
            .map_err(|_| OAuthError::unavailable())?;
        let Some(grants) = snap.by_identity.get(&identity.id) else {
            return Err(refuse());
        };
        let now = self.now();
        match covering_grant(grants, &extra, now) {
            // A window with less than a second left cannot back a usable token.
            Some(g) if (g.expires_at - now).whole_seconds() >= 1 => Ok(Some(g.clone())),
            _ => Err(refuse()),
        }
    }

    /// `verify_token` hook: a token carrying a `jit` claim stays valid only while its grant is
    /// active (revocation ends it early; expiry already bounds the token's `exp`).
    pub async fn check_jit_claim(
        &self,
        identity: Uuid,
        grant: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), &'static str> {
        let snap = self
            .jit_snapshot()
            .await
            .map_err(|_| "elevation status unavailable")?;
        let active = snap
            .by_identity
            .get(&identity)
            .is_some_and(|gs| gs.iter().any(|g| g.id == grant && now < g.expires_at));
        if active {
            Ok(())
        } else {
            Err("token's elevation grant has ended")
        }
    }

    // ------------------------------------------------------------------ use cases

    /// `POST /v1/jit-requests`: the caller asks for extra scopes for one identity.
    pub async fn request_jit(
        &self,
        ctx: &Ctx,
        req: wire::CreateJitRequest,
    ) -> Result<wire::JitGrantView, ServiceError> {
        let identity = self.get_identity(req.identity_id).await?;
        let now = self.now();
        let grant = JitGrant::request(
            Uuid::now_v7(),
            &identity,
            &JitRequest {
                scopes: req.scopes,
                duration_secs: req.duration_secs,
                reason: req.reason,
            },
            self.jit_limits(),
            &ctx.actor,
            now,
        )?;
        let event = ctx
            .event(now, "jit.request", Outcome::Success)
            .target(format!("jit:{}", grant.id))
            .identity(grant.identity_id)
            .reason(grant.reason.clone())
            .details(json!({
                "grant_id": grant.id,
                "scopes": grant.scopes,
                "duration_secs": grant.duration_secs,
            }));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::Lifecycle(LifecycleMutation::InsertJitGrant(
                        grant.clone(),
                    )))
                    .audit(event),
            )
            .await?;
        self.jit.invalidate();
        Ok(grant_view(&grant, now))
    }

    pub async fn get_jit(&self, id: Uuid) -> Result<JitGrant, ServiceError> {
        self.store
            .get_jit_grant(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("elevation request {id}")))
    }

    pub async fn list_jit(&self, q: &JitQuery) -> Result<Page<JitGrant>, ServiceError> {
        Ok(self.store.list_jit_grants(q).await?)
    }

    /// Approve (someone other than the requester and the identity), deny, or revoke.
    pub async fn decide_jit(
        &self,
        ctx: &Ctx,
        id: Uuid,
        action: JitAction,
        reason: Option<String>,
    ) -> Result<wire::JitGrantView, ServiceError> {
        let before = self.get_jit(id).await?;
        let now = self.now();
        let mut grant = before.clone();
        let outcome = match action {
            JitAction::Approve => {
                let identity = self.get_identity(grant.identity_id).await?;
                grant.approve(&ctx.actor, &identity, self.jit_limits(), now)
            }
            JitAction::Deny => grant.deny(&ctx.actor, reason.as_deref(), now),
            JitAction::Revoke => grant.revoke(
                &ctx.actor,
                reason.as_deref().unwrap_or("revoked by operator"),
                now,
            ),
        };
        let name = format!("jit.{}", action.as_str());
        if let Err(e) = outcome {
            if matches!(e, steward_core::DomainError::SeparationOfDuties(_)) {
                self.audit_refusal(
                    ctx,
                    &name,
                    format!("jit:{id}"),
                    Some(grant.identity_id),
                    &e.to_string(),
                )
                .await;
            }
            return Err(e.into());
        }
        let mut event = ctx
            .event(now, &name, Outcome::Success)
            .target(format!("jit:{id}"))
            .identity(grant.identity_id)
            .details(json!({
                "grant_id": id,
                "scopes": grant.scopes,
                "requested_by": grant.requested_by,
                "status": grant.effective_status(now),
                "starts_at": grant.starts_at.map(rfc3339),
                "expires_at": grant.expires_at.map(rfc3339),
            }));
        if let Some(r) = grant.decision_reason.clone() {
            event = event.reason(r);
        }
        let result = self
            .store
            .commit(
                Change::new()
                    .with(Mutation::Lifecycle(LifecycleMutation::UpdateJitGrant {
                        grant: grant.clone(),
                        expected_version: before.version,
                    }))
                    .audit(event),
            )
            .await;
        self.jit.invalidate();
        result?;
        Ok(grant_view(&grant, now))
    }

    /// The grants of `identity` that can still take effect, ended for an offboarding: the
    /// mutations and their ids (the caller commits them in its own change).
    pub(crate) async fn jit_revocations(
        &self,
        identity: Uuid,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<(Vec<Mutation>, Vec<Uuid>), ServiceError> {
        let mut mutations = vec![];
        let mut ids = vec![];
        let mut after = None;
        loop {
            let page = self
                .store
                .list_jit_grants(&JitQuery {
                    identity_id: Some(identity),
                    after,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            for g in &page.items {
                if !g.is_open(now) {
                    continue;
                }
                let mut next = g.clone();
                next.revoke(actor, "identity retired", now)?;
                ids.push(g.id);
                mutations.push(Mutation::Lifecycle(LifecycleMutation::UpdateJitGrant {
                    grant: next,
                    expected_version: g.version,
                }));
            }
            match (page.next, page.items.last()) {
                (Some(_), Some(last)) => after = Some(last.id),
                _ => return Ok((mutations, ids)),
            }
        }
    }
}

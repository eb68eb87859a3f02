//! Offboarding: retiring an identity revokes every credential, every outstanding token, every
//! certificate it was issued that is still valid (deny-list and CRL) and every JIT grant, in one
//! `Change` whose `identity.retire` audit record is the evidence. Also the vendor-wide form.

use serde_json::json;
use steward_core::{AuditEvent, CredentialState, Identity, LifecycleAction, Outcome};
use steward_proto::lifecycle as wire;
use steward_store::{AuditQuery, Change, Mutation, PkiObject};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::rfc3339;
use crate::error::ServiceError;
use crate::pki::{KIND_REVOKED, RevokedBody};
use crate::service::Ctx;
use crate::state::Inner;

/// Audit action of a retirement (its details are the offboarding evidence).
pub const RETIRE_ACTION: &str = "identity.retire";

/// One identity's offboarding, composed but not yet committed.
pub struct OffboardingPlan {
    /// The identity as retired.
    pub identity: Identity,
    pub mutations: Vec<Mutation>,
    pub event: AuditEvent,
    pub evidence: wire::OffboardingView,
}

impl OffboardingPlan {
    fn touches_certificates(&self) -> bool {
        !self.evidence.certificates_revoked.is_empty()
    }
    fn touches_jit(&self) -> bool {
        !self.evidence.jit_grants_revoked.is_empty()
    }
}

fn parse_time(v: &serde_json::Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

impl Inner {
    /// Certificates issued to `identity` that are still valid at `now` and not deny-listed yet,
    /// from the `certificate.issue` audit records (issuance stores no other record). Only the
    /// last `max_cert_ttl_secs` (plus an hour of margin) can hold a certificate still valid.
    async fn live_certificates(
        &self,
        identity: Uuid,
        now: OffsetDateTime,
    ) -> Result<Vec<wire::RevokedCertificateRef>, ServiceError> {
        let since = now - Duration::seconds(i64::from(self.config.pki.max_cert_ttl_secs) + 3600);
        let snap = self.pki.snapshot();
        let mut out: Vec<wire::RevokedCertificateRef> = vec![];
        let mut after_seq = None;
        loop {
            let page = self
                .store
                .list_audit(&AuditQuery {
                    identity_id: Some(identity),
                    action: Some("certificate.issue".into()),
                    outcome: Some(Outcome::Success),
                    since: Some(since),
                    after_seq,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            for r in &page.items {
                let d = &r.event.details;
                let (Some(serial), Some(not_after)) =
                    (d["serial"].as_str(), parse_time(&d["not_after"]))
                else {
                    continue;
                };
                if not_after <= now
                    || snap.is_revoked(serial, now).is_some()
                    || out.iter().any(|c| c.serial == serial)
                {
                    continue;
                }
                out.push(wire::RevokedCertificateRef {
                    serial: serial.to_owned(),
                    not_after,
                });
            }
            match page.next.and_then(|n| n.parse().ok()) {
                Some(n) => after_seq = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// Composes the offboarding of `before` (retire, revoke credentials, tokens, certificates
    /// and JIT grants) as mutations plus one evidence event, without committing.
    pub(crate) async fn plan_offboarding(
        &self,
        ctx: &Ctx,
        before: &Identity,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> Result<OffboardingPlan, ServiceError> {
        let id = before.id;
        let mut identity = before.clone();
        identity.transition(LifecycleAction::Retire, &ctx.actor, reason.clone(), now)?;
        let mut mutations = vec![Mutation::UpdateIdentity {
            identity: identity.clone(),
            expected_version: before.version,
        }];
        let credentials: Vec<Uuid> = self
            .store
            .list_credentials(id)
            .await?
            .iter()
            .filter(|c| c.state(now) != CredentialState::Revoked)
            .map(|c| c.id)
            .collect();
        mutations.push(Mutation::RevokeIdentityCredentials {
            identity_id: id,
            at: now,
            reason: "identity retired".into(),
        });
        let certificates = self.live_certificates(id, now).await?;
        for c in &certificates {
            let body = RevokedBody {
                revoked_at: now.unix_timestamp(),
                reason: Some("identity retired".into()),
                identity_id: Some(id),
                revoked_by: ctx.actor.clone(),
            };
            mutations.push(Mutation::PutPkiObject(PkiObject {
                kind: KIND_REVOKED.into(),
                id: c.serial.clone(),
                body: serde_json::to_value(&body)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?,
                created_at: now,
                expires_at: Some(steward_core::truncate_micros(c.not_after)),
            }));
        }
        let (jit_mutations, jit_grants) = self.jit_revocations(id, &ctx.actor, now).await?;
        mutations.extend(jit_mutations);
        let cut = identity.tokens_revoked_before.unwrap_or(now);
        let mut event = ctx
            .event(now, RETIRE_ACTION, Outcome::Success)
            .target(format!("identity:{id}"))
            .identity(id)
            .details(json!({
                "from": before.effective_status(now).as_str(),
                "to": identity.status.as_str(),
                "offboarding": true,
                "revoked_credentials": credentials,
                "tokens_revoked_before": rfc3339(cut),
                "certificates_revoked": certificates
                    .iter()
                    .map(|c| json!({"serial": c.serial, "not_after": rfc3339(c.not_after)}))
                    .collect::<Vec<_>>(),
                "jit_grants_revoked": jit_grants,
            }));
        if let Some(r) = &reason {
            event = event.reason(r.clone());
        }
        let evidence = wire::OffboardingView {
            identity_id: id,
            retired_at: now,
            retired_by: ctx.actor.clone(),
            reason,
            credentials_revoked: credentials,
            tokens_revoked_before: cut,
            certificates_revoked: certificates,
            jit_grants_revoked: jit_grants,
            audit_seq: None,
        };
        Ok(OffboardingPlan {
            identity,
            mutations,
            event,
            evidence,
        })
    }

    /// Drops what the committed offboardings made stale in this node's caches.
    pub(crate) async fn after_offboarding(&self, plans: &[&OffboardingPlan]) {
        for p in plans {
            self.invalidate_identity(p.identity.id);
        }
        self.invalidate_all_credentials();
        if plans.iter().any(|p| p.touches_jit()) {
            self.jit.invalidate();
        }
        if plans.iter().any(|p| p.touches_certificates())
            && let Err(e) = self.reload_pki().await
        {
            tracing::warn!(error = %e, "PKI snapshot reload after an offboarding failed");
        }
    }

    /// Retires one identity with the full offboarding, in one transaction.
    pub async fn offboard_identity(
        &self,
        ctx: &Ctx,
        id: Uuid,
        reason: Option<String>,
    ) -> Result<(Identity, wire::OffboardingView), ServiceError> {
        let before = self.get_identity(id).await?;
        let now = self.now();
        let plan = self.plan_offboarding(ctx, &before, reason, now).await?;
        let mut change = Change::new();
        change.mutations.clone_from(&plan.mutations);
        let seqs = self.store.commit(change.audit(plan.event.clone())).await?;
        self.after_offboarding(&[&plan]).await;
        let mut evidence = plan.evidence.clone();
        evidence.audit_seq = seqs.first().copied();
        Ok((plan.identity, evidence))
    }

    /// `GET /v1/identities/{id}/offboarding`: the evidence recorded when the identity retired.
    pub async fn offboarding_record(
        &self,
        id: Uuid,
    ) -> Result<wire::OffboardingView, ServiceError> {
        let identity = self.get_identity(id).await?;
        let page = self
            .store
            .list_audit(&AuditQuery {
                identity_id: Some(id),
                action: Some(RETIRE_ACTION.into()),
                outcome: Some(Outcome::Success),
                limit: 1,
                ..Default::default()
            })
            .await?;
        let Some(r) = page.items.first() else {
            return Err(ServiceError::not_found(format!(
                "offboarding of identity {id} (it is {})",
                identity.effective_status(self.now()).as_str()
            )));
        };
        let d = &r.event.details;
        let uuids = |k: &str| -> Vec<Uuid> {
            d[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let certificates = d["certificates_revoked"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| {
                        Some(wire::RevokedCertificateRef {
                            serial: c["serial"].as_str()?.to_owned(),
                            not_after: parse_time(&c["not_after"])?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(wire::OffboardingView {
            identity_id: id,
            retired_at: r.event.time,
            retired_by: r.event.actor.clone(),
            reason: r.event.reason.clone(),
            credentials_revoked: uuids("revoked_credentials"),
            tokens_revoked_before: parse_time(&d["tokens_revoked_before"]).unwrap_or(r.event.time),
            certificates_revoked: certificates,
            jit_grants_revoked: uuids("jit_grants_revoked"),
            audit_seq: Some(r.seq),
        })
    }

    /// `POST /v1/vendors/{vendor}/revoke`: offboards every live identity of one vendor in one
    /// transaction (third-party incident playbook) and returns the evidence of each.
    pub async fn revoke_vendor(
        &self,
        ctx: &Ctx,
        vendor: &str,
        reason: Option<String>,
    ) -> Result<wire::VendorRevokeResult, ServiceError> {
        let vendor = vendor.trim();
        if vendor.is_empty() || vendor.len() > 128 {
            return Err(ServiceError::invalid("vendor must be 1 to 128 characters"));
        }
        let reason = match reason {
            Some(r) => steward_core::lifecycle::validate_justification("reason", &r)?,
            None => format!("vendor {vendor} revoked"),
        };
        let cap = self.config.lifecycle.vendor_revoke_max as usize;
        let mut q = self.identity_query();
        q.vendor = Some(vendor.to_owned());
        let identities = self.identities_matching(q, cap).await?.ok_or_else(|| {
            ServiceError::invalid(format!(
                "vendor {vendor} has more than {cap} live identities; raise lifecycle.vendor_revoke_max"
            ))
        })?;
        if identities.is_empty() {
            return Err(ServiceError::not_found(format!(
                "live identities of vendor {vendor:?}"
            )));
        }
        let now = self.now();
        let mut plans = Vec::with_capacity(identities.len());
        for i in &identities {
            plans.push(
                self.plan_offboarding(ctx, i, Some(reason.clone()), now)
                    .await?,
            );
        }
        let mut change = Change::new();
        for p in &plans {
            change.mutations.extend(p.mutations.iter().cloned());
            change.audit.push(p.event.clone());
        }
        change.audit.push(
            ctx.event(now, "vendor.revoke", Outcome::Success)
                .target(format!("vendor:{vendor}"))
                .reason(reason)
                .details(json!({
                    "vendor": vendor,
                    "identities": identities.iter().map(|i| i.id).collect::<Vec<_>>(),
                })),
        );
        let seqs = self.store.commit(change).await?;
        self.after_offboarding(&plans.iter().collect::<Vec<_>>())
            .await;
        let offboarded = plans
            .into_iter()
            .enumerate()
            .map(|(n, p)| {
                let mut e = p.evidence;
                e.audit_seq = seqs.get(n).copied();
                e
            })
            .collect();
        Ok(wire::VendorRevokeResult {
            vendor: vendor.to_owned(),
            offboarded,
        })
    }
}

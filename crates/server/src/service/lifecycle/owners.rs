//! Owner departure: the owner's identities become orphaned (the owner's `departed` status is
//! what marks them) or move to a successor in the same step; every live API key of those
//! identities is flagged for rotation. Also the SCIM-style webhook and the rotation-flag views.

use serde_json::json;
use steward_core::{CredentialKind, CredentialState, DomainError, Identity, Outcome, Owner};
use steward_proto as proto;
use steward_proto::lifecycle as wire;
use steward_store::{
    Change, LifecycleMutation, Mutation, OwnerQuery, Page, RotationFlag, RotationFlagQuery,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ServiceError;
use crate::service::Ctx;
use crate::state::Inner;

/// Most identities one departure moves or orphans in a single transaction.
const MAX_DEPART_IDENTITIES: usize = 100_000;

fn flag_view(f: &RotationFlag) -> wire::RotationRequiredView {
    wire::RotationRequiredView {
        credential_id: f.credential_id,
        identity_id: f.identity_id,
        owner_id: f.owner_id,
        reason: f.reason.clone(),
        flagged_by: f.flagged_by.clone(),
        flagged_at: f.flagged_at,
    }
}

/// How a SCIM call asks to deprovision a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimOp {
    /// `PATCH` with `active: false`.
    Deactivate,
    /// `DELETE`.
    Delete,
}

impl Inner {
    async fn live_identities_of(&self, owner: Uuid) -> Result<Vec<Identity>, ServiceError> {
        let mut q = self.identity_query();
        q.owner_id = Some(owner);
        self.identities_matching(q, MAX_DEPART_IDENTITIES)
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "owner {owner} has more than {MAX_DEPART_IDENTITIES} identities"
                ))
            })
    }

    /// Records an owner's departure. Their identities become orphaned, or move to
    /// `reassign_to` in the same transaction; live API keys of those identities are flagged
    /// for rotation. For an owner who already left, `reassign_to` moves the orphans.
    pub async fn depart_owner(
        &self,
        ctx: &Ctx,
        id: Uuid,
        req: proto::DepartOwner,
    ) -> Result<proto::DepartResult, ServiceError> {
        let now = self.now();
        let before = self.get_owner(id).await?;
        let successor = match req.reassign_to {
            Some(r) if r == id => {
                return Err(ServiceError::invalid(
                    "reassign_to must be a different owner",
                ));
            }
            Some(r) => {
                let s = self.store.get_owner(r).await?.ok_or_else(|| {
                    ServiceError::invalid(format!("reassign_to: unknown owner {r}"))
                })?;
                if !s.is_active() {
                    return Err(DomainError::OwnerDeparted(r.to_string()).into());
                }
                Some(s)
            }
            None => None,
        };
        let reason = match &req.reason {
            Some(r) => steward_core::lifecycle::validate_justification("reason", r)?,
            None => "owner departed".into(),
        };
        let identities = self.live_identities_of(id).await?;
        let ids: Vec<Uuid> = identities.iter().map(|i| i.id).collect();
        let mut change = Change::new();
        let mut owner = before.clone();
        let already_gone = !before.is_active();
        let mut flagged = vec![];
        if already_gone {
            // Departing twice is a conflict; moving the orphans of a departed owner is not.
            if successor.is_none() {
                owner.depart(now)?;
            }
        } else {
            owner.depart(now)?;
            change = change.with(Mutation::UpdateOwner {
                owner: owner.clone(),
                expected_version: before.version,
            });
            for i in &identities {
                for c in self.store.list_credentials(i.id).await? {
                    if c.kind != CredentialKind::ApiKey || c.state(now) != CredentialState::Active {
                        continue;
                    }
                    flagged.push(c.id);
                    change = change
                        .with(Mutation::Lifecycle(
                            LifecycleMutation::FlagCredentialRotation(RotationFlag {
                                credential_id: c.id,
                                identity_id: i.id,
                                owner_id: Some(id),
                                reason: format!("owner {} departed", before.name),
                                flagged_by: ctx.actor.clone(),
                                flagged_at: now,
                            }),
                        ))
                        .audit(
                            ctx.event(now, "credential.rotation_required", Outcome::Success)
                                .target(format!("credential:{}", c.id))
                                .identity(i.id)
                                .reason(format!("owner {} departed", before.name))
                                .details(json!({"credential_id": c.id, "owner": id})),
                        );
                }
            }
        }
        if let Some(s) = &successor {
            for i in &identities {
                let mut next = i.clone();
                next.owner_id = s.id;
                next.updated_at = now;
                next.version += 1;
                change = change
                    .with(Mutation::UpdateIdentity {
                        identity: next,
                        expected_version: i.version,
                    })
                    .audit(
                        ctx.event(now, "identity.reassign", Outcome::Success)
                            .target(format!("identity:{}", i.id))
                            .identity(i.id)
                            .details(json!({"from_owner": id, "to_owner": s.id})),
                    );
            }
        }
        let action = if already_gone {
            "owner.reassign"
        } else {
            "owner.depart"
        };
        change.audit.insert(
            0,
            ctx.event(now, action, Outcome::Success)
                .target(format!("owner:{id}"))
                .reason(reason)
                .details(json!({
                    "identities": ids,
                    "reassigned_to": successor.as_ref().map(|s| s.id),
                    "flagged_credentials": flagged,
                })),
        );
        self.store.commit(change).await?;
        for i in &ids {
            self.invalidate_identity(*i);
        }
        let (orphaned, reassigned) = if successor.is_some() {
            (vec![], ids)
        } else {
            (ids, vec![])
        };
        Ok(proto::DepartResult {
            owner: proto::OwnerView::from(&owner),
            orphaned_identities: orphaned,
            reassigned_identities: reassigned,
            flagged_credentials: flagged,
        })
    }

    /// The owner a SCIM call names: by Steward id, else by exact name, else by contact
    /// (case-insensitive, `mailto:` ignored) — the IdP's `externalId` or `userName`.
    pub async fn owner_for_scim(&self, key: &str) -> Result<Owner, ServiceError> {
        if let Ok(id) = Uuid::parse_str(key) {
            return self.get_owner(id).await;
        }
        let norm = |s: &str| s.trim().trim_start_matches("mailto:").to_ascii_lowercase();
        let wanted = norm(key);
        let mut found: Vec<Owner> = vec![];
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
            found.extend(
                page.items
                    .iter()
                    .filter(|o| o.name == key.trim() || norm(&o.contact) == wanted)
                    .cloned(),
            );
            match (page.next, page.items.last()) {
                (Some(_), Some(l)) => after = Some(l.id),
                _ => break,
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(ServiceError::not_found(format!("user {key}"))),
            _ => Err(DomainError::Conflict(format!(
                "{key} names {} owners; use the owner id",
                found.len()
            ))
            .into()),
        }
    }

    /// The SCIM webhook: deprovisioning a user departs the matching owner (their identities are
    /// orphaned and their keys flagged). Idempotent: an owner already departed stays so.
    pub async fn scim_deprovision(
        &self,
        ctx: &Ctx,
        owner: &Owner,
        op: ScimOp,
    ) -> Result<Owner, ServiceError> {
        if !owner.is_active() {
            return Ok(owner.clone());
        }
        let via = match op {
            ScimOp::Deactivate => "SCIM PATCH active=false",
            ScimOp::Delete => "SCIM DELETE",
        };
        let r = self
            .depart_owner(
                ctx,
                owner.id,
                proto::DepartOwner {
                    reassign_to: None,
                    reason: Some(format!("deprovisioned by the identity provider ({via})")),
                },
            )
            .await?;
        Ok(Owner {
            status: steward_core::OwnerStatus::Departed,
            departed_at: r.owner.departed_at,
            ..owner.clone()
        })
    }

    /// Credential views of one identity, with the rotation flag of every credential that still
    /// needs rotating (active; a rotated, revoked or expired credential no longer does).
    pub async fn credential_views(
        &self,
        identity_id: Uuid,
    ) -> Result<Vec<proto::CredentialView>, ServiceError> {
        let creds = self.list_credentials(identity_id).await?;
        let flags = self
            .store
            .list_rotation_flags(&RotationFlagQuery {
                identity_id: Some(identity_id),
                limit: 1000,
                ..Default::default()
            })
            .await?
            .items;
        let now = self.now();
        Ok(creds
            .iter()
            .map(|c| {
                let mut v = proto::CredentialView::new(c, now);
                if c.state(now) == CredentialState::Active {
                    v.rotation_required = flags
                        .iter()
                        .find(|f| f.credential_id == c.id)
                        .map(flag_view);
                }
                v
            })
            .collect())
    }

    /// `GET /v1/credentials/rotation-required`: flagged credentials still to rotate.
    pub async fn rotation_required(
        &self,
        q: &RotationFlagQuery,
    ) -> Result<Page<wire::RotationRequiredView>, ServiceError> {
        let page = self.store.list_rotation_flags(q).await?;
        let now = self.now();
        let mut items = vec![];
        for f in &page.items {
            if let Some(c) = self.store.get_credential(f.credential_id).await?
                && c.state(now) == CredentialState::Active
            {
                items.push(flag_view(f));
            }
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }
}

/// The SCIM `User` resource for an owner (RFC 7643 §4.1, the attributes Steward has).
pub fn scim_user(o: &Owner, location: &str) -> serde_json::Value {
    let t = |t: OffsetDateTime| super::rfc3339(t);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": o.id,
        "userName": o.contact,
        "displayName": o.name,
        "active": o.is_active(),
        "meta": {
            "resourceType": "User",
            "created": t(o.created_at),
            "lastModified": t(o.departed_at.unwrap_or(o.created_at)),
            "location": location,
        },
    })
}

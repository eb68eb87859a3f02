//! Registry use cases: owners, identities and credentials, with their lifecycle and audit records.
//! Validation lives in steward-core; this module looks things up, composes changes and invalidates caches.

use serde_json::json;
use steward_core::apikey::{ApiKey, KeyType};
use steward_core::credential::NewCredential;
use steward_core::identity::{IdentityPatch, NewIdentity};
use steward_core::{
    Credential, CredentialKind, DomainError, Identity, IdentityKind, IdentityStatus,
    LifecycleAction, Outcome, Owner, OwnerKind,
};
use steward_proto as proto;
use steward_store::{Change, IdentityQuery, Mutation, OwnerQuery, Page};
use time::Duration;
use uuid::Uuid;

use super::Ctx;
use crate::error::ServiceError;
use crate::state::Inner;

/// A credential as created: the stored record plus, for API keys, the secret shown this once.
pub struct IssuedCredential {
    pub credential: Credential,
    pub secret: Option<ApiKey>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Inner {
    // ------------------------------------------------------------------ owners

    pub async fn create_owner(
        &self,
        ctx: &Ctx,
        req: proto::CreateOwner,
    ) -> Result<Owner, ServiceError> {
        let kind = match req.kind.as_str() {
            "person" => OwnerKind::Person,
            "team" => OwnerKind::Team,
            _ => {
                return Err(ServiceError::invalid(
                    "invalid kind: must be \"person\" or \"team\"",
                ));
            }
        };
        let now = self.now();
        let owner = Owner::new(Uuid::now_v7(), &req.name, kind, &req.contact, now)?;
        let event = ctx
            .event(now, "owner.create", Outcome::Success)
            .target(format!("owner:{}", owner.id))
            .details(json!({"name": owner.name, "kind": req.kind, "contact": owner.contact}));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::InsertOwner(owner.clone()))
                    .audit(event),
            )
            .await?;
        Ok(owner)
    }

    pub async fn get_owner(&self, id: Uuid) -> Result<Owner, ServiceError> {
        self.store
            .get_owner(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("owner {id}")))
    }

    pub async fn list_owners(&self, q: &OwnerQuery) -> Result<Page<Owner>, ServiceError> {
        Ok(self.store.list_owners(q).await?)
    }

    pub async fn update_owner(
        &self,
        ctx: &Ctx,
        id: Uuid,
        req: proto::UpdateOwner,
    ) -> Result<Owner, ServiceError> {
        let before = self.get_owner(id).await?;
        let mut owner = before.clone();
        if let Some(n) = req.name {
            owner.name = steward_core::owner::validate_owner_name(&n)?;
        }
        if let Some(c) = req.contact {
            owner.contact = steward_core::owner::validate_contact(&c)?;
        }
        owner.version += 1;
        let event = ctx
            .event(self.now(), "owner.update", Outcome::Success)
            .target(format!("owner:{id}"))
            .details(json!({
                "before": {"name": before.name, "contact": before.contact},
                "after": {"name": owner.name, "contact": owner.contact},
            }));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::UpdateOwner {
                        owner: owner.clone(),
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        Ok(owner)
    }

    // Owner departure (`depart_owner`) lives in `service::lifecycle::owners`: it also flags
    // the owner's API keys for rotation and reassigns orphans later.

    // ------------------------------------------------------------------ identities

    pub async fn create_identity(
        &self,
        ctx: &Ctx,
        req: proto::CreateIdentity,
    ) -> Result<Identity, ServiceError> {
        let kind = IdentityKind::parse(&req.kind).ok_or_else(|| {
            ServiceError::invalid(format!(
                "invalid kind: must be one of {}",
                IdentityKind::ALL.map(IdentityKind::as_str).join(", ")
            ))
        })?;
        let owner = self.store.get_owner(req.owner).await?.ok_or_else(|| {
            ServiceError::invalid(format!("invalid owner: unknown owner {}", req.owner))
        })?;
        let now = self.now();
        let new = NewIdentity {
            name: req.name,
            kind: Some(kind),
            owner_id: req.owner,
            purpose: req.purpose,
            environment: req.environment,
            expires_at: Some(req.expires_at),
            scopes: req.scopes,
            default_scopes: req.default_scopes,
            audiences: req.audiences,
            labels: req.labels,
            vendor: req.vendor,
            token_lifetime_secs: req.token_lifetime_secs,
            require_dpop: req.require_dpop,
            allowed_dns_names: req.allowed_dns_names,
            may_act: req.may_act,
            allowed_source_cidrs: req.allowed_source_cidrs,
            review_due_at: req.review_due_at,
        };
        let identity = Identity::create(
            Uuid::now_v7(),
            new,
            &owner,
            &self.config.registry,
            &ctx.actor,
            now,
        )?;
        let event = ctx
            .event(now, "identity.create", Outcome::Success)
            .target(format!("identity:{}", identity.id))
            .identity(identity.id)
            .details(json!({
                "name": identity.name,
                "kind": identity.kind.as_str(),
                "environment": identity.environment,
                "owner": identity.owner_id,
                "scopes": identity.scopes,
                "default_scopes": identity.default_scopes,
                "audiences": identity.audiences,
                "expires_at": rfc3339(identity.expires_at),
                "status": identity.status.as_str(),
            }));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::InsertIdentity(identity.clone()))
                    .audit(event),
            )
            .await?;
        Ok(identity)
    }

    pub async fn get_identity(&self, id: Uuid) -> Result<Identity, ServiceError> {
        self.store
            .get_identity(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("identity {id}")))
    }

    pub async fn list_identities(&self, q: &IdentityQuery) -> Result<Page<Identity>, ServiceError> {
        Ok(self.store.list_identities(q).await?)
    }

    pub async fn update_identity(
        &self,
        ctx: &Ctx,
        id: Uuid,
        req: proto::UpdateIdentity,
    ) -> Result<Identity, ServiceError> {
        let before = self.get_identity(id).await?;
        let new_owner = match req.owner {
            Some(o) => Some(self.store.get_owner(o).await?.ok_or_else(|| {
                ServiceError::invalid(format!("invalid owner: unknown owner {o}"))
            })?),
            None => None,
        };
        let now = self.now();
        let mut identity = before.clone();
        let patch = IdentityPatch {
            owner_id: req.owner,
            purpose: req.purpose,
            expires_at: req.expires_at,
            scopes: req.scopes,
            default_scopes: req.default_scopes,
            audiences: req.audiences,
            labels: req.labels,
            vendor: req.vendor,
            token_lifetime_secs: req.token_lifetime_secs.map(Some),
            require_dpop: req.require_dpop,
            allowed_dns_names: req.allowed_dns_names,
            may_act: req.may_act,
            allowed_source_cidrs: req.allowed_source_cidrs,
            review_due_at: req.review_due_at.map(Some),
        };
        identity.apply_patch(patch, new_owner.as_ref(), &self.config.registry, now)?;
        let event = ctx
            .event(now, "identity.update", Outcome::Success)
            .target(format!("identity:{id}"))
            .identity(id)
            .details(json!({ "changes": identity_diff(&before, &identity) }));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::UpdateIdentity {
                        identity: identity.clone(),
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        self.invalidate_identity(id);
        Ok(identity)
    }

    /// approve / suspend / resume / retire. Retiring also revokes every credential and every
    /// outstanding token of the identity, in the same transaction.
    pub async fn transition_identity(
        &self,
        ctx: &Ctx,
        id: Uuid,
        action: LifecycleAction,
        reason: Option<String>,
    ) -> Result<Identity, ServiceError> {
        if action == LifecycleAction::Retire {
            // Retiring is the full offboarding (credentials, tokens, certificates, JIT grants).
            return Ok(self.offboard_identity(ctx, id, reason).await?.0);
        }
        let before = self.get_identity(id).await?;
        let now = self.now();
        let mut identity = before.clone();
        identity.transition(action, &ctx.actor, reason.clone(), now)?;
        let change = Change::new().with(Mutation::UpdateIdentity {
            identity: identity.clone(),
            expected_version: before.version,
        });
        let details = json!({
            "from": before.effective_status(now).as_str(),
            "to": identity.status.as_str(),
        });
        let mut event = ctx
            .event(
                now,
                &format!("identity.{}", action.as_str()),
                Outcome::Success,
            )
            .target(format!("identity:{id}"))
            .identity(id)
            .details(details);
        if let Some(r) = reason {
            event = event.reason(r);
        }
        self.store.commit(change.audit(event)).await?;
        self.invalidate_identity(id);
        Ok(identity)
    }

    /// Every token of the identity issued up to now stops being active.
    pub async fn revoke_identity_tokens(
        &self,
        ctx: &Ctx,
        id: Uuid,
    ) -> Result<Identity, ServiceError> {
        let before = self.get_identity(id).await?;
        if before.status == IdentityStatus::Retired {
            return Ok(before);
        }
        let now = self.now();
        let mut identity = before.clone();
        identity.tokens_revoked_before = Some(now);
        identity.updated_at = now;
        identity.version += 1;
        let event = ctx
            .event(now, "identity.revoke_tokens", Outcome::Success)
            .target(format!("identity:{id}"))
            .identity(id)
            .details(json!({"revoked_before": rfc3339(now)}));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::UpdateIdentity {
                        identity: identity.clone(),
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        self.invalidate_identity(id);
        Ok(identity)
    }

    // ------------------------------------------------------------------ credentials

    fn new_credential(
        &self,
        ctx: &Ctx,
        identity: &Identity,
        req: NewCredential,
    ) -> Result<IssuedCredential, ServiceError> {
        let now = self.now();
        if identity.status == IdentityStatus::Retired {
            return Err(DomainError::IllegalTransition {
                action: "add a credential to",
                state: "retired",
                reason: "retired is final",
            }
            .into());
        }
        let expires_at = Credential::expiry_for(
            req.kind,
            req.expires_at,
            identity,
            &self.config.registry,
            now,
        )?;
        let mut credential = Credential {
            id: Uuid::now_v7(),
            identity_id: identity.id,
            kind: req.kind,
            secret_hash: None,
            jwk: None,
            fingerprint: String::new(),
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
            revoke_reason: None,
            rotated_from: None,
            created_by: ctx.actor.clone(),
            version: 1,
        };
        let secret = match req.kind {
            CredentialKind::ApiKey => {
                if req.jwk.is_some() {
                    return Err(ServiceError::invalid(
                        "invalid jwk: only public_key credentials take a jwk",
                    ));
                }
                let key = ApiKey::generate(KeyType::ClientSecret, &mut steward_crypto::rand::fill);
                let hash = self.hasher.hash(key.expose_secret().as_bytes());
                credential.fingerprint = steward_crypto::b64::url_encode(&hash[..9]);
                credential.secret_hash = Some(hash.to_vec());
                Some(key)
            }
            CredentialKind::PublicKey => {
                let jwk = req.jwk.ok_or_else(|| {
                    ServiceError::invalid("invalid jwk: public_key credentials need a jwk")
                })?;
                let parsed = steward_crypto::jwk::parse_public_jwk(&jwk)
                    .map_err(|e| ServiceError::invalid(format!("invalid jwk: {e}")))?;
                let mut stored = parsed.key.to_json();
                if let Some(kid) = &parsed.kid {
                    stored["kid"] = json!(kid);
                }
                if let Some(alg) = &parsed.alg {
                    let a = steward_crypto::jws::JwsAlg::parse(alg)
                        .map_err(|e| ServiceError::invalid(format!("invalid jwk: {e}")))?;
                    if !a.fits(&parsed.key) {
                        return Err(ServiceError::invalid(
                            "invalid jwk: alg does not fit the key type",
                        ));
                    }
                    stored["alg"] = json!(alg);
                }
                credential.fingerprint = parsed.key.thumbprint();
                credential.jwk = Some(stored);
                None
            }
        };
        Ok(IssuedCredential { credential, secret })
    }

    fn credential_event(
        &self,
        ctx: &Ctx,
        action: &str,
        c: &Credential,
    ) -> steward_core::AuditEvent {
        ctx.event(self.now(), action, Outcome::Success)
            .target(format!("credential:{}", c.id))
            .identity(c.identity_id)
            .details(json!({
                "credential_id": c.id,
                "type": c.kind.as_str(),
                "fingerprint": c.fingerprint,
                "expires_at": rfc3339(c.expires_at),
            }))
    }

    pub async fn create_credential(
        &self,
        ctx: &Ctx,
        identity_id: Uuid,
        req: proto::CreateCredential,
    ) -> Result<IssuedCredential, ServiceError> {
        let identity = self.get_identity(identity_id).await?;
        let kind = CredentialKind::parse(&req.kind).ok_or_else(|| {
            ServiceError::invalid("invalid type: must be \"api_key\" or \"public_key\"")
        })?;
        let issued = self.new_credential(
            ctx,
            &identity,
            NewCredential {
                kind,
                expires_at: req.expires_at,
                jwk: req.jwk,
            },
        )?;
        let event = self.credential_event(ctx, "credential.create", &issued.credential);
        self.store
            .commit(
                Change::new()
                    .with(Mutation::InsertCredential(issued.credential.clone()))
                    .audit(event),
            )
            .await?;
        Ok(issued)
    }

    pub async fn list_credentials(
        &self,
        identity_id: Uuid,
    ) -> Result<Vec<Credential>, ServiceError> {
        self.get_identity(identity_id).await?;
        Ok(self.store.list_credentials(identity_id).await?)
    }

    async fn credential_of(
        &self,
        identity_id: Uuid,
        credential_id: Uuid,
    ) -> Result<Credential, ServiceError> {
        match self.store.get_credential(credential_id).await? {
            Some(c) if c.identity_id == identity_id => Ok(c),
            _ => Err(ServiceError::not_found(format!(
                "credential {credential_id} of identity {identity_id}"
            ))),
        }
    }

    pub async fn revoke_credential(
        &self,
        ctx: &Ctx,
        identity_id: Uuid,
        credential_id: Uuid,
        reason: Option<String>,
    ) -> Result<Credential, ServiceError> {
        let before = self.credential_of(identity_id, credential_id).await?;
        let mut c = before.clone();
        c.revoke(
            reason
                .clone()
                .or_else(|| Some("revoked by operator".into())),
            self.now(),
        )?;
        let event = self
            .credential_event(ctx, "credential.revoke", &c)
            .reason(reason.unwrap_or_else(|| "revoked by operator".into()));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::UpdateCredential {
                        credential: c.clone(),
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        self.invalidate_credential(&c);
        Ok(c)
    }

    /// Creates the successor and schedules the predecessor's revocation after the grace period;
    /// both work during the overlap.
    pub async fn rotate_credential(
        &self,
        ctx: &Ctx,
        identity_id: Uuid,
        credential_id: Uuid,
        req: proto::RotateCredential,
    ) -> Result<(IssuedCredential, Credential), ServiceError> {
        let identity = self.get_identity(identity_id).await?;
        let before = self.credential_of(identity_id, credential_id).await?;
        let grace_secs = req
            .grace_secs
            .unwrap_or(self.config.registry.rotation_grace_secs);
        if grace_secs > 30 * 24 * 3600 {
            return Err(ServiceError::invalid("invalid grace_secs: at most 30 days"));
        }
        let now = self.now();
        let mut previous = before.clone();
        previous.schedule_revocation(Duration::seconds(i64::from(grace_secs)), now)?;
        let mut issued = self.new_credential(
            ctx,
            &identity,
            NewCredential {
                kind: before.kind,
                expires_at: None,
                jwk: req.jwk,
            },
        )?;
        issued.credential.rotated_from = Some(before.id);
        let event = ctx
            .event(now, "credential.rotate", Outcome::Success)
            .target(format!("credential:{}", before.id))
            .identity(identity_id)
            .details(json!({
                "previous": before.id,
                "current": issued.credential.id,
                "type": before.kind.as_str(),
                "grace_secs": grace_secs,
                "previous_revoked_at": previous.revoked_at.map(rfc3339),
                "current_fingerprint": issued.credential.fingerprint,
            }));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::InsertCredential(issued.credential.clone()))
                    .with(Mutation::UpdateCredential {
                        credential: previous.clone(),
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        self.invalidate_credential(&previous);
        Ok((issued, previous))
    }

    pub fn identity_view(&self, i: &Identity) -> proto::IdentityView {
        proto::IdentityView::new(
            i,
            &self.config.trust_domain,
            i.token_lifetime(&self.config.registry),
            self.now(),
        )
    }

    pub fn created_view(&self, issued: &IssuedCredential) -> proto::CreatedCredential {
        let c = &issued.credential;
        proto::CreatedCredential {
            id: c.id,
            kind: c.kind.as_str().into(),
            client_id: c.identity_id,
            client_secret: issued.secret.as_ref().map(|k| k.expose_secret().to_owned()),
            fingerprint: c.fingerprint.clone(),
            created_at: c.created_at,
            expires_at: c.expires_at,
        }
    }
}

/// Field-level before/after of an identity update, for the audit record.
fn identity_diff(a: &Identity, b: &Identity) -> serde_json::Value {
    let (Ok(serde_json::Value::Object(x)), Ok(serde_json::Value::Object(y))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return json!({});
    };
    let mut out = serde_json::Map::new();
    for (k, v) in &y {
        if matches!(k.as_str(), "updated_at" | "version") {
            continue;
        }
        if x.get(k) != Some(v) {
            out.insert(k.clone(), json!({"before": x.get(k), "after": v}));
        }
    }
    serde_json::Value::Object(out)
}

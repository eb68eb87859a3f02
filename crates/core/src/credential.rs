//! Credentials: what an identity presents to prove itself (API keys, registered public keys).
//! A credential is never the identity: revoking one leaves the identity and its other credentials intact.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{DomainError, Identity, RegistryPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A Steward API key (`stw_k_…`), stored only as a keyed hash.
    ApiKey,
    /// A public JWK for `private_key_jwt` client assertions (RFC 7523).
    PublicKey,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::PublicKey => "public_key",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(Self::ApiKey),
            "public_key" => Some(Self::PublicKey),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialState {
    Active,
    /// Rotated: still works until its scheduled revocation.
    Retiring,
    Expired,
    Revoked,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: Uuid,
    pub identity_id: Uuid,
    pub kind: CredentialKind,
    /// HMAC-SHA256 of the API key under the server's key. Never serialized to clients.
    #[serde(skip)]
    pub secret_hash: Option<Vec<u8>>,
    /// The registered public JWK (public_key credentials only).
    pub jwk: Option<serde_json::Value>,
    /// RFC 7638 thumbprint of the JWK, or a short non-secret fingerprint of an API key.
    pub fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the credential stops (or stopped) working. A future instant means "scheduled", as after rotation.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoke_reason: Option<String>,
    /// The credential this one replaced by rotation.
    pub rotated_from: Option<Uuid>,
    pub created_by: String,
    pub version: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("identity_id", &self.identity_id)
            .field("kind", &self.kind)
            .field("fingerprint", &self.fingerprint)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// What the caller asks for when creating a credential.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub kind: CredentialKind,
    pub expires_at: Option<OffsetDateTime>,
    pub jwk: Option<serde_json::Value>,
}

impl Credential {
    /// Computes the expiry for a new credential of `identity`: the requested one, capped by policy.
    /// API keys default to (and may not exceed) the maximum key age; every credential ends by the identity's expiry.
    pub fn expiry_for(
        kind: CredentialKind,
        requested: Option<OffsetDateTime>,
        identity: &Identity,
        policy: &RegistryPolicy,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, DomainError> {
        let cap = match kind {
            CredentialKind::ApiKey => (now + policy.max_key_age()).min(identity.expires_at),
            CredentialKind::PublicKey => identity.expires_at,
        };
        match requested {
            None => Ok(cap),
            Some(t) if t <= now => Err(DomainError::invalid("expires_at", "must be in the future")),
            Some(t) if t > cap => Err(DomainError::invalid(
                "expires_at",
                format!(
                    "is past the latest allowed expiry {} (maximum key age {} days, and never past the identity's expiry)",
                    cap.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    policy.max_key_age_days
                ),
            )),
            Some(t) => Ok(t),
        }
    }

    pub fn state(&self, now: OffsetDateTime) -> CredentialState {
        match self.revoked_at {
            Some(r) if r <= now => CredentialState::Revoked,
            _ if now >= self.expires_at => CredentialState::Expired,
            Some(_) => CredentialState::Retiring,
            None => CredentialState::Active,
        }
    }

    /// May this credential authenticate at `now`? On refusal, says why (safe to audit).
    pub fn check_usable(&self, now: OffsetDateTime) -> Result<(), &'static str> {
        match self.state(now) {
            CredentialState::Active | CredentialState::Retiring => Ok(()),
            CredentialState::Expired => Err("credential has expired"),
            CredentialState::Revoked => Err("credential has been revoked"),
        }
    }

    /// Revokes now. Revoking an already revoked credential is a conflict.
    pub fn revoke(
        &mut self,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        if self.state(now) == CredentialState::Revoked {
            return Err(DomainError::Conflict(format!(
                "credential {} is already revoked",
                self.id
            )));
        }
        self.revoked_at = Some(now);
        self.revoke_reason = reason;
        self.version += 1;
        Ok(())
    }

    /// Schedules revocation after a grace period (rotation overlap). Never postpones an earlier revocation.
    pub fn schedule_revocation(
        &mut self,
        grace: Duration,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        match self.state(now) {
            CredentialState::Active => {}
            CredentialState::Retiring => {
                return Err(DomainError::Conflict(format!(
                    "credential {} has already been rotated",
                    self.id
                )));
            }
            s => {
                return Err(DomainError::Conflict(format!(
                    "credential {} is {} and cannot be rotated",
                    self.id,
                    match s {
                        CredentialState::Expired => "expired",
                        _ => "revoked",
                    }
                )));
            }
        }
        let at = (now + grace).min(self.expires_at);
        self.revoked_at = Some(at);
        self.revoke_reason = Some("rotated".into());
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(now: OffsetDateTime) -> Credential {
        Credential {
            id: Uuid::from_u128(9),
            identity_id: Uuid::from_u128(2),
            kind: CredentialKind::ApiKey,
            secret_hash: Some(vec![1; 32]),
            jwk: None,
            fingerprint: "f".into(),
            created_at: now,
            expires_at: now + Duration::days(10),
            last_used_at: None,
            revoked_at: None,
            revoke_reason: None,
            rotated_from: None,
            created_by: "a".into(),
            version: 1,
        }
    }

    #[test]
    fn rotation_overlap_then_revoked() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1000);
        let mut c = cred(now);
        c.schedule_revocation(Duration::hours(24), now).unwrap();
        assert_eq!(c.state(now), CredentialState::Retiring);
        assert!(c.check_usable(now + Duration::hours(23)).is_ok());
        assert_eq!(
            c.check_usable(now + Duration::hours(24)),
            Err("credential has been revoked")
        );
        assert!(c.schedule_revocation(Duration::hours(1), now).is_err());
    }

    #[test]
    fn expiry_and_revoke() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1000);
        let mut c = cred(now);
        assert_eq!(
            c.check_usable(now + Duration::days(10)),
            Err("credential has expired")
        );
        c.revoke(None, now).unwrap();
        assert!(c.revoke(None, now).is_err());
        assert_eq!(c.state(now), CredentialState::Revoked);
    }

    #[test]
    fn debug_hides_hash() {
        let c = cred(OffsetDateTime::UNIX_EPOCH);
        assert!(!format!("{c:?}").contains("secret_hash"));
        assert!(
            serde_json::to_string(&c)
                .unwrap()
                .find("secret_hash")
                .is_none()
        );
    }
}

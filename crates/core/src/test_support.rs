//! Fixtures for the core's unit tests: a fixed instant, an owner, an identity and credentials.
//! Compiled only for tests.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{Credential, CredentialKind, Identity, IdentityKind, IdentityStatus, Owner, OwnerKind};

pub fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn owner() -> Owner {
    Owner {
        id: Uuid::from_u128(1),
        name: "team-a".into(),
        kind: OwnerKind::Team,
        contact: "a@example.com".into(),
        status: crate::OwnerStatus::Active,
        created_at: t0() - Duration::days(400),
        departed_at: None,
        version: 1,
    }
}

/// An active prod workload, 200 days old, expiring in 100 days.
pub fn identity() -> Identity {
    Identity {
        id: Uuid::from_u128(2),
        name: "payments-api".into(),
        kind: IdentityKind::Workload,
        owner_id: Uuid::from_u128(1),
        purpose: "charges cards".into(),
        environment: "prod".into(),
        expires_at: t0() + Duration::days(100),
        scopes: vec!["p:read".into(), "p:write".into()],
        default_scopes: vec!["p:read".into()],
        audiences: vec!["https://a".into(), "https://b".into()],
        labels: Default::default(),
        vendor: None,
        status: IdentityStatus::Active,
        status_reason: None,
        token_lifetime_secs: None,
        require_dpop: false,
        tokens_revoked_before: None,
        created_by: "alice".into(),
        approved_by: None,
        approved_at: None,
        created_at: t0() - Duration::days(200),
        updated_at: t0() - Duration::days(200),
        version: 1,
        allowed_dns_names: vec![],
        may_act: vec![],
        allowed_source_cidrs: vec![],
        review_due_at: None,
    }
}

/// A credential of [`identity`] created `age_days` ago, valid for 300 days from creation.
pub fn credential(n: u128, kind: CredentialKind, age_days: i64) -> Credential {
    let created = t0() - Duration::days(age_days);
    Credential {
        id: Uuid::from_u128(100 + n),
        identity_id: Uuid::from_u128(2),
        kind,
        secret_hash: None,
        jwk: None,
        fingerprint: format!("fp{n}"),
        created_at: created,
        expires_at: created + Duration::days(300),
        last_used_at: None,
        revoked_at: None,
        revoke_reason: None,
        rotated_from: None,
        created_by: "alice".into(),
        version: 1,
    }
}

//! Plain data carried across the storage boundary: changes, mutations, keys, checkpoints.
//! No behaviour beyond construction helpers.

use steward_core::{AuditEvent, Credential, Identity, Owner};
use time::OffsetDateTime;
use uuid::Uuid;

/// One atomic unit of work: mutations plus the audit events that describe them.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub mutations: Vec<Mutation>,
    pub audit: Vec<AuditEvent>,
}

impl Change {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn audit_only(event: AuditEvent) -> Self {
        Self {
            mutations: vec![],
            audit: vec![event],
        }
    }
    pub fn with(mut self, m: Mutation) -> Self {
        self.mutations.push(m);
        self
    }
    pub fn audit(mut self, e: AuditEvent) -> Self {
        self.audit.push(e);
        self
    }
}

#[derive(Debug, Clone)]
pub enum Mutation {
    InsertOwner(Owner),
    /// Fails with `Stale` unless the stored version equals `expected_version`; stores `owner` as given.
    UpdateOwner {
        owner: Owner,
        expected_version: i64,
    },
    /// Fails with `Conflict` when (environment, name) is taken.
    InsertIdentity(Identity),
    UpdateIdentity {
        identity: Identity,
        expected_version: i64,
    },
    InsertCredential(Credential),
    /// Inserts many identities, then many credentials, with one statement per table (the rows
    /// travel as one JSON array, as audit batches do): for loading fixtures at scale, such as the
    /// benchmark suite's million identities. `Conflict` when any row clashes; all or nothing.
    BulkInsert {
        identities: Vec<Identity>,
        credentials: Vec<Credential>,
    },
    UpdateCredential {
        credential: Credential,
        expected_version: i64,
    },
    /// Sets `revoked_at = at` (and the reason) on every credential of the identity that is not
    /// already revoked at or before `at`; bumps their versions.
    RevokeIdentityCredentials {
        identity_id: Uuid,
        at: OffsetDateTime,
        reason: String,
    },
    /// Sets `last_used_at = max(last_used_at, used_at)`; silently ignores unknown ids.
    TouchCredential {
        id: Uuid,
        used_at: OffsetDateTime,
    },
    /// Remembers a revoked access token until its expiry. Idempotent.
    RevokeToken {
        jti: String,
        identity_id: Option<Uuid>,
        expires_at: OffsetDateTime,
    },
    InsertSigningKey(SigningKeyRecord),
    /// Updates the schedule fields of the key with this kid.
    UpdateSigningKey(SigningKeyRecord),
    /// Inserts or replaces a setting.
    PutSetting {
        key: String,
        value: String,
    },
    /// Inserts a setting; fails with `Conflict` when the key exists (bootstrap races between nodes).
    InsertSetting {
        key: String,
        value: String,
    },
    PutCheckpoint(CheckpointRecord),
    /// Appends a policy version; `Stale` when that (id, version) exists (a concurrent change).
    /// Bumps the policy-state head.
    InsertPolicyVersion(crate::PolicyRecord),
    /// Records an approved guard-rail exception. Bumps the policy-state head.
    InsertException(crate::ExceptionRecord),
    /// Inserts or replaces a PKI record (see `pki.rs`).
    PutPkiObject(crate::PkiObject),
    /// Inserts a PKI record; fails with `Conflict` when (kind, id) exists.
    InsertPkiObject(crate::PkiObject),
    /// Deletes a PKI record; no error when it does not exist.
    DeletePkiObject {
        kind: String,
        id: String,
    },
    /// Raises a finding; `Conflict` when an open finding with the same dedup_key exists.
    InsertFinding(crate::FindingRecord),
    /// Updates a finding (last seen, evidence, status); `Stale` unless the version matches.
    UpdateFinding {
        finding: crate::FindingRecord,
        expected_version: i64,
    },
    /// Stores a trust policy; `Conflict` when its name is taken, `NotFound` for an unknown identity.
    InsertTrustPolicy(crate::TrustPolicyRecord),
    /// Replaces a trust policy; `Stale` unless the stored version equals `expected_version`.
    UpdateTrustPolicy {
        policy: crate::TrustPolicyRecord,
        expected_version: i64,
    },
    /// Deletes a trust policy; `Stale` unless the stored version equals `expected_version`.
    DeleteTrustPolicy {
        id: Uuid,
        expected_version: i64,
    },
    /// Starts a console session; `Conflict` when the id hash exists.
    InsertConsoleSession(crate::ConsoleSession),
    /// Records activity on a console session (and pushes its idle expiry), if it still exists
    /// and was last seen before `last_seen_at`; silently ignores unknown sessions.
    TouchConsoleSession {
        id_hash: [u8; 32],
        last_seen_at: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    },
    /// Ends a console session; no error when it does not exist.
    DeleteConsoleSession {
        id_hash: [u8; 32],
    },
    /// Deletes every console session whose idle or absolute timeout has passed at `now`.
    PurgeConsoleSessions {
        now: OffsetDateTime,
    },
    /// A fence for a singleton duty's writes: fails with `Stale` unless lease `name` is still at
    /// `epoch` (nobody took it over since this node acquired it). Put it first in the change.
    CheckLease {
        name: String,
        epoch: i64,
    },
    /// Adds observed usage (see `usage.rs`): counts add up, first and last use widen, so
    /// batches merge in any order. Source values beyond 16 per credential and kind are counted
    /// in an overflow row.
    RecordUsage(crate::UsageBatch),
    /// Inserts or replaces an identity's risk score.
    PutIdentityRisk(crate::RiskRecord),
    /// Deletes up to `limit` daily usage rows from before `before_day` and up to `limit`
    /// source rows last seen before `sources_before`.
    PurgeUsage {
        before_day: i64,
        sources_before: OffsetDateTime,
        limit: u32,
    },
    /// Access reviews, JIT grants, exception requests and rotation flags (see `lifecycle.rs`).
    Lifecycle(crate::LifecycleMutation),
}

/// An access token revoked before its expiry (RFC 7009), remembered until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    pub jti: String,
    pub expires_at: OffsetDateTime,
}

/// A token-signing key, private half encrypted under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// JOSE algorithm: `EdDSA` or `ES256`.
    pub alg: String,
    /// AEAD-sealed PKCS#8 private key.
    pub sealed_private_key: Vec<u8>,
    /// Public JWK (with kid, alg, use).
    pub public_jwk: serde_json::Value,
    pub created_at: OffsetDateTime,
    /// Starts signing at this instant (the key is published in the JWKS before).
    pub activates_at: OffsetDateTime,
    /// Stops signing at this instant.
    pub deactivates_at: OffsetDateTime,
    /// Removed from the JWKS after this instant (every token it signed has expired).
    pub publish_until: OffsetDateTime,
}

/// The outcome of [`crate::Store::claim_once_audited`]: whether the value was fresh (else a
/// replay), and the sequence number of the audit record written for that outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRecorded {
    pub fresh: bool,
    pub seq: u64,
}

/// Position of the audit log's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHead {
    pub size: u64,
    pub chain_hash: [u8; 32],
}

/// A signed checkpoint (C2SP signed note) over the first `size` audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub size: u64,
    pub root_hash: [u8; 32],
    /// The full signed note text.
    pub note: String,
    pub created_at: OffsetDateTime,
}

/// A change another process made that invalidates cached state (PostgreSQL `LISTEN/NOTIFY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// This identity changed.
    Identity(Uuid),
    /// This credential changed.
    Credential(Uuid),
    /// Every credential of this identity changed (offboarding).
    CredentialsOf(Uuid),
    /// The signing keys changed.
    Keys,
    /// This access token (by `jti`) was revoked before its expiry (unix seconds).
    TokenRevoked { jti: String, expires_at: i64 },
    /// A trust policy was created, changed or deleted.
    TrustPolicies,
    /// Notices may have been missed (the listener reconnected or lagged): drop every cache.
    Resync,
    /// The JIT grants changed (requested, approved, denied, revoked).
    JitGrants,
}

impl Notice {
    /// The payload sent with `pg_notify`.
    pub fn encode(&self) -> String {
        match self {
            Self::Identity(id) => format!("identity:{id}"),
            Self::Credential(id) => format!("credential:{id}"),
            Self::CredentialsOf(id) => format!("credentials-of:{id}"),
            Self::Keys => "keys".into(),
            Self::TokenRevoked { jti, expires_at } => format!("token-revoked:{expires_at}:{jti}"),
            Self::Resync => "resync".into(),
            Self::TrustPolicies => "trust-policies".into(),
            Self::JitGrants => "jit-grants".into(),
        }
    }

    pub fn decode(payload: &str) -> Option<Self> {
        let (kind, id) = payload.split_once(':').unwrap_or((payload, ""));
        let uuid = || Uuid::parse_str(id).ok();
        match kind {
            "identity" => uuid().map(Self::Identity),
            "credential" => uuid().map(Self::Credential),
            "credentials-of" => uuid().map(Self::CredentialsOf),
            "keys" => Some(Self::Keys),
            "token-revoked" => {
                let (exp, jti) = id.split_once(':')?;
                Some(Self::TokenRevoked {
                    jti: jti.to_owned(),
                    expires_at: exp.parse().ok()?,
                })
            }
            "resync" => Some(Self::Resync),
            "trust-policies" => Some(Self::TrustPolicies),
            "jit-grants" => Some(Self::JitGrants),
            _ => None,
        }
    }

    /// The notice a mutation implies for other nodes' caches, if any.
    pub fn of(m: &Mutation) -> Option<Self> {
        match m {
            Mutation::UpdateIdentity { identity, .. } => Some(Self::Identity(identity.id)),
            Mutation::UpdateCredential { credential, .. } => Some(Self::Credential(credential.id)),
            Mutation::RevokeIdentityCredentials { identity_id, .. } => {
                Some(Self::CredentialsOf(*identity_id))
            }
            Mutation::InsertSigningKey(_) | Mutation::UpdateSigningKey(_) => Some(Self::Keys),
            Mutation::RevokeToken {
                jti, expires_at, ..
            } => Some(Self::TokenRevoked {
                jti: jti.clone(),
                expires_at: expires_at.unix_timestamp(),
            }),
            Mutation::InsertTrustPolicy(_)
            | Mutation::UpdateTrustPolicy { .. }
            | Mutation::DeleteTrustPolicy { .. } => Some(Self::TrustPolicies),
            Mutation::Lifecycle(l) if l.touches_jit_grants() => Some(Self::JitGrants),
            _ => None,
        }
    }
}

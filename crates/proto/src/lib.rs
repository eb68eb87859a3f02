//! Wire types of Steward's admin API and credential files, shared by the server, the CLI and SDKs.
//! Requests reject unknown fields; views are what the API returns. Every type carries an OpenAPI schema.
#![forbid(unsafe_code)]

pub mod authz;
pub mod findings;
pub mod lifecycle;
pub mod trust;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use steward_core::{AuditRecord, Credential, Identity, Owner};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Admin-API error body: `{"error": "<machine_code>", "message": "<human sentence>"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// A page of a list endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- owners

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOwner {
    pub name: String,
    /// `person` or `team`.
    pub kind: String,
    /// Email address, channel (`#ops`, `slack:#ops`) or https URL.
    pub contact: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOwner {
    pub name: Option<String>,
    pub contact: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartOwner {
    /// Transfer every identity of the departing owner to this owner in the same step.
    pub reassign_to: Option<Uuid>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OwnerView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub contact: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub departed_at: Option<OffsetDateTime>,
}

impl From<&Owner> for OwnerView {
    fn from(o: &Owner) -> Self {
        Self {
            id: o.id,
            name: o.name.clone(),
            kind: match o.kind {
                steward_core::OwnerKind::Person => "person",
                steward_core::OwnerKind::Team => "team",
            }
            .into(),
            contact: o.contact.clone(),
            status: match o.status {
                steward_core::OwnerStatus::Active => "active",
                steward_core::OwnerStatus::Departed => "departed",
            }
            .into(),
            created_at: o.created_at,
            departed_at: o.departed_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DepartResult {
    pub owner: OwnerView,
    /// Identities now orphaned (empty when reassigned).
    pub orphaned_identities: Vec<Uuid>,
    /// Identities transferred to `reassign_to`.
    pub reassigned_identities: Vec<Uuid>,
    /// Live API keys of the owner's identities, flagged for rotation (the owner could have seen them).
    #[serde(default)]
    pub flagged_credentials: Vec<Uuid>,
}

// ---------------------------------------------------------------- identities

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentity {
    pub name: String,
    /// `service_account`, `workload`, `pipeline`, `agent`, `device` or `integration`.
    pub kind: String,
    /// Owner id.
    pub owner: Uuid,
    pub purpose: String,
    pub environment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Granted when a token request names no scope; a subset of `scopes`; empty by default.
    #[serde(default)]
    pub default_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Required for `integration` identities.
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub token_lifetime_secs: Option<u32>,
    #[serde(default)]
    pub require_dpop: bool,
    /// DNS names this identity may put in its certificates (`*.suffix` allows one label below).
    #[serde(default)]
    pub allowed_dns_names: Vec<String>,
    /// Identity ids that may act for this identity in token exchange (RFC 8693 delegation).
    #[serde(default)]
    pub may_act: Vec<String>,
    /// Address ranges (CIDR) the identity is expected to authenticate from; use from elsewhere
    /// raises a `human_use` finding. Empty: not checked.
    #[serde(default)]
    pub allowed_source_cidrs: Vec<String>,
    /// When the identity is next due for review (judged for `integration` identities).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub review_due_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIdentity {
    pub owner: Option<Uuid>,
    pub purpose: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
    pub scopes: Option<Vec<String>>,
    pub default_scopes: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub vendor: Option<String>,
    pub token_lifetime_secs: Option<u32>,
    pub require_dpop: Option<bool>,
    pub allowed_dns_names: Option<Vec<String>>,
    /// Replaces the identity ids that may act for this identity.
    #[serde(default)]
    pub may_act: Option<Vec<String>>,
    pub allowed_source_cidrs: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub review_due_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRequest {
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub owner: Uuid,
    pub purpose: String,
    pub environment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Effective status: `pending_approval`, `active`, `suspended`, `retired` or `expired`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub spiffe_id: String,
    pub token_lifetime_secs: u32,
    pub require_dpop: bool,
    /// DNS names this identity may put in its certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_dns_names: Vec<String>,
    /// Identity ids that may act for this identity in token exchange.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub may_act: Vec<String>,
    /// Address ranges the identity is expected to authenticate from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_source_cidrs: Vec<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub review_due_at: Option<OffsetDateTime>,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl IdentityView {
    pub fn new(
        i: &Identity,
        trust_domain: &str,
        token_lifetime_secs: u32,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: i.id,
            name: i.name.clone(),
            kind: i.kind.as_str().into(),
            owner: i.owner_id,
            purpose: i.purpose.clone(),
            environment: i.environment.clone(),
            expires_at: i.expires_at,
            scopes: i.scopes.clone(),
            default_scopes: i.default_scopes.clone(),
            audiences: i.audiences.clone(),
            labels: i.labels.clone(),
            vendor: i.vendor.clone(),
            status: i.effective_status(now).as_str().into(),
            status_reason: i.status_reason.clone(),
            spiffe_id: i.spiffe_id(trust_domain),
            token_lifetime_secs,
            require_dpop: i.require_dpop,
            allowed_dns_names: i.allowed_dns_names.clone(),
            may_act: i.may_act.clone(),
            allowed_source_cidrs: i.allowed_source_cidrs.clone(),
            review_due_at: i.review_due_at,
            created_by: i.created_by.clone(),
            approved_by: i.approved_by.clone(),
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

// ---------------------------------------------------------------- credentials

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// `api_key` or `public_key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Public JWK for `public_key` (Ed25519, P-256 or RSA ≥ 2048).
    #[schema(value_type = Option<Object>)]
    pub jwk: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCredential {
    /// Seconds the predecessor keeps working (default: server's rotation grace, 24 h).
    pub grace_secs: Option<u32>,
    /// For `public_key` credentials: the successor key.
    #[schema(value_type = Option<Object>)]
    pub jwk: Option<serde_json::Value>,
}

/// Returned once, at creation: the only time `client_secret` is ever shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedCredential {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub client_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialView {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub identity_id: Uuid,
    /// `active`, `retiring` (rotated, still in its grace period), `expired` or `revoked`.
    pub state: String,
    pub fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwk: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<Uuid>,
    pub created_by: String,
    /// Present while the credential must be rotated (e.g. its owner departed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_required: Option<lifecycle::RotationRequiredView>,
}

impl CredentialView {
    pub fn new(c: &Credential, now: OffsetDateTime) -> Self {
        Self {
            id: c.id,
            kind: c.kind.as_str().into(),
            identity_id: c.identity_id,
            state: match c.state(now) {
                steward_core::CredentialState::Active => "active",
                steward_core::CredentialState::Retiring => "retiring",
                steward_core::CredentialState::Expired => "expired",
                steward_core::CredentialState::Revoked => "revoked",
            }
            .into(),
            fingerprint: c.fingerprint.clone(),
            jwk: c.jwk.clone(),
            created_at: c.created_at,
            expires_at: c.expires_at,
            last_used_at: c.last_used_at,
            revoked_at: c.revoked_at,
            revoke_reason: c.revoke_reason.clone(),
            rotated_from: c.rotated_from,
            created_by: c.created_by.clone(),
            rotation_required: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedCredential {
    /// The successor (with its secret, shown this once, for API keys).
    pub current: CreatedCredential,
    /// The predecessor, now `retiring` until its `revoked_at`.
    pub previous: CredentialView,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokedTokens {
    pub identity_id: Uuid,
    /// Tokens issued at or before this instant are no longer active.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_before: OffsetDateTime,
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditRecordView {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<Uuid>,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Hex RFC 6962 leaf hash.
    pub leaf_hash: String,
    /// Hex chain hash.
    pub chain_hash: String,
}

impl From<&AuditRecord> for AuditRecordView {
    fn from(r: &AuditRecord) -> Self {
        let e = &r.event;
        Self {
            seq: r.seq,
            time: e.time,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            identity_id: e.identity_id,
            outcome: e.outcome.as_str().into(),
            reason: e.reason.clone(),
            request_id: e.request_id.clone(),
            source: e.source.clone(),
            details: e.details.clone(),
            leaf_hash: steward_core::audit::hex32::encode(&r.leaf_hash),
            chain_hash: steward_core::audit::hex32::encode(&r.chain_hash),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    /// Log origin line (e.g. `steward/<trust-domain>/audit`).
    pub origin: String,
    pub size: u64,
    /// Base64 RFC 6962 root hash of the first `size` records.
    pub root_hash: String,
    /// The C2SP signed note.
    pub note: String,
    /// C2SP verifier key to check `note` with.
    pub verifier_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofView {
    pub seq: u64,
    /// Zero-based leaf index (`seq - 1`).
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// Hex hashes of the RFC 6962 audit path, leaf to root.
    pub proof: Vec<String>,
    /// Base64 root hash of the tree of `tree_size`.
    pub root_hash: String,
    pub checkpoint: CheckpointView,
}

// ---------------------------------------------------------------- OAuth / credentials file

/// RFC 6749 §5.1 token response (with RFC 8693's `issued_token_type` when exchanging).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

/// RFC 6749 §5.2 error body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// The credentials file written by bootstrap and by `steward credential create --out FILE` (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct CredentialsFile {
    pub client_id: String,
    pub client_secret: String,
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

impl std::fmt::Debug for CredentialsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsFile")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

// ---------------------------------------------------------------- certificates and mutual TLS

/// `POST /v1/certificates`: a PKCS#10 CSR from the authenticated identity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCertificate {
    /// The CSR, PEM (`CERTIFICATE REQUEST`) or base64 DER. Its URI SAN, if any, must be the
    /// identity's SPIFFE ID; its DNS SANs must be in the identity's `allowed_dns_names`.
    pub csr: String,
    /// Lifetime in seconds (default 1 hour, at most 24 hours, never past the identity's expiry).
    #[serde(default)]
    pub ttl_secs: Option<u32>,
    /// Also make the certificate usable by a TLS server (`serverAuth`), when the identity may.
    #[serde(default)]
    pub server_auth: bool,
}

/// An issued workload certificate (an X.509 SVID).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedCertificate {
    /// Lower-case hex serial number.
    pub serial: String,
    pub identity_id: Uuid,
    pub spiffe_id: String,
    #[serde(default)]
    pub dns_names: Vec<String>,
    pub server_auth: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The leaf certificate, PEM.
    pub certificate: String,
    /// The intermediate CA certificates, PEM, issuer first.
    pub chain: String,
    /// `certificate` followed by `chain`: what a TLS client or server presents.
    pub full_chain: String,
    /// The CA certificates to trust (PEM), as served by `GET /v1/trust-bundle`.
    pub trust_bundle: String,
}

/// `POST /v1/certificates/revoke`: puts a serial on the deny-list until the certificate expires.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeCertificate {
    /// Hex serial (colons allowed). Give this or `certificate`.
    #[serde(default)]
    pub serial: Option<String>,
    /// The certificate itself (PEM): serial and expiry are read from it.
    #[serde(default)]
    pub certificate: Option<String>,
    /// When the certificate expires (default: now + the longest certificate lifetime).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub not_after: Option<OffsetDateTime>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokedCertificateView {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// The entry leaves the deny-list (and the CRL) at this instant.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/ca/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCa {
    /// Seconds the new issuing CA is published before it signs (default: `pki.ca_rollover_notice_secs`).
    #[serde(default)]
    pub activate_in_secs: Option<u64>,
}

/// A CA certificate of this deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaView {
    pub id: String,
    /// `root` or `issuing`.
    pub role: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Issuing CAs sign from this instant on.
    #[serde(with = "time::serde::rfc3339")]
    pub activates_at: OffsetDateTime,
    /// This issuing CA signs new certificates now.
    pub active: bool,
    pub imported: bool,
    pub certificate: String,
}

/// `POST /v1/device-cas`: an external CA whose certificates devices present.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceCa {
    pub name: String,
    /// The CA certificate, PEM.
    pub certificate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceCaView {
    pub id: Uuid,
    pub name: String,
    pub subject: String,
    /// base64url SHA-256 of the DER certificate.
    pub fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// `POST /v1/device-cas/{id}/rules`: certificates of the device CA whose `field` matches
/// `pattern` authenticate as `identity`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceRule {
    /// `subject_cn`, `subject`, `san_dns` or `san_uri`.
    pub field: String,
    /// Glob: `*` matches any run of characters.
    pub pattern: String,
    /// Identity id.
    pub identity: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceRuleView {
    pub id: Uuid,
    pub device_ca: Uuid,
    pub field: String,
    pub pattern: String,
    pub identity: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

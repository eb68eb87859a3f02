//! Wire types of the lifecycle controls: access reviews, JIT elevation, exception decisions,
//! offboarding evidence, vendor-wide revocation and credentials flagged for rotation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

// ---------------------------------------------------------------- access reviews

/// `POST /v1/reviews`: a campaign over every non-retired identity matching the selection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReview {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Only identities of this environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// Only identities of this owner.
    #[serde(default)]
    pub owner: Option<Uuid>,
    /// Only identities of this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only identities of this vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Decisions are accepted until this instant (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// What undecided items get at the deadline: `suspend` (default), `retire` or `keep`.
    #[serde(default)]
    pub default_action: Option<String>,
    /// Owner id → the actor (identity id) who reviews that owner's identities. Items of other
    /// owners can be decided by administrators only.
    #[serde(default)]
    pub reviewers: BTreeMap<Uuid, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// The selection: `environment`, `owner_id`, `kind`, `vendor`.
    #[schema(value_type = Object)]
    pub selection: serde_json::Value,
    pub default_action: String,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// `open` or `closed`.
    pub status: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub closed_at: Option<OffsetDateTime>,
    /// Item counts (present on single-campaign answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_decided: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewItemView {
    pub id: Uuid,
    pub review_id: Uuid,
    pub identity_id: Uuid,
    pub owner_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// What the reviewer is shown: identity, scopes granted vs used, last use, open findings.
    #[schema(value_type = Object)]
    pub snapshot: serde_json::Value,
    /// `keep`, `reduce` or `revoke`; absent while undecided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reduced_scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_mode: Option<String>,
    /// What applying the decision did (e.g. `scopes_reduced`, `suspended`, `retired`, `kept`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub decided_at: Option<OffsetDateTime>,
    /// Decided at the deadline with the campaign's default action.
    pub by_default: bool,
}

/// `GET /v1/reviews/{id}`: the campaign and a page of its items.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewDetail {
    pub review: ReviewView,
    pub items: Vec<ReviewItemView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/reviews/{id}/decisions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecisionRequest {
    /// The item, or give `identity_id` instead.
    #[serde(default)]
    pub item_id: Option<Uuid>,
    #[serde(default)]
    pub identity_id: Option<Uuid>,
    /// `keep`, `reduce` or `revoke`.
    pub decision: String,
    /// For `reduce`: the scopes the identity keeps (a proper subset of its scopes).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// For `revoke`: `suspend` (default, reversible) or `retire` (final, full offboarding).
    #[serde(default)]
    pub revoke_mode: Option<String>,
    pub justification: String,
}

/// `GET /v1/reviews/{id}/export?format=json`: the campaign as evidence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewExport {
    pub review: ReviewView,
    pub items: Vec<ReviewItemView>,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    /// Size of the audit log when exported: every decision is in it (action `review.decide`).
    pub audit_size: u64,
}

// ---------------------------------------------------------------- JIT elevation

/// `POST /v1/jit-requests`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJitRequest {
    pub identity_id: Uuid,
    /// Extra scopes (not already held by the identity).
    pub scopes: Vec<String>,
    /// Length of the window from approval, in seconds (at most the server's `jit_max_secs`).
    pub duration_secs: u32,
    pub reason: String,
}

/// `POST /v1/jit-requests/{id}/{approve,deny,revoke}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JitDecisionRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JitGrantView {
    pub id: Uuid,
    pub identity_id: Uuid,
    pub scopes: Vec<String>,
    pub reason: String,
    pub requested_by: String,
    pub duration_secs: u32,
    /// `pending`, `approved` (window open), `expired`, `denied` or `revoked`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub starts_at: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

// ---------------------------------------------------------------- exceptions

/// `POST /v1/exceptions/{id}/{approve,deny}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionDecisionRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------- offboarding

/// A certificate put on the deny-list by an offboarding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RevokedCertificateRef {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// `GET /v1/identities/{id}/offboarding`: what retiring the identity revoked, as recorded in
/// the audit log (the record at `audit_seq`, provable with `GET /v1/audit/proof/{seq}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OffboardingView {
    pub identity_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub retired_at: OffsetDateTime,
    pub retired_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Credentials revoked by the offboarding (already revoked ones are not listed).
    pub credentials_revoked: Vec<Uuid>,
    /// Every access token issued at or before this instant is inactive.
    #[serde(with = "time::serde::rfc3339")]
    pub tokens_revoked_before: OffsetDateTime,
    pub certificates_revoked: Vec<RevokedCertificateRef>,
    pub jit_grants_revoked: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

/// `POST /v1/vendors/{vendor}/revoke`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorRevokeRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VendorRevokeResult {
    pub vendor: String,
    /// One offboarding record per identity retired, in one transaction.
    pub offboarded: Vec<OffboardingView>,
}

// ---------------------------------------------------------------- rotation flags

/// A credential to rotate because someone who could have seen it left.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotationRequiredView {
    pub credential_id: Uuid,
    pub identity_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
    pub reason: String,
    pub flagged_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub flagged_at: OffsetDateTime,
}

//! Wire types of authorization: policies, decisions (`/v1/authorize`), what-if analysis and
//! guard-rail exceptions. Requests reject unknown fields.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A policy: an operator's Cedar policy (latest version) or a built-in guard rail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    pub id: String,
    /// Version of this policy (0 for built-in guard rails).
    pub version: i64,
    /// Cedar source.
    pub source: String,
    pub description: String,
    /// Built-in guard rail: readable, always enforced, cannot be changed or deleted.
    pub builtin: bool,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub created_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_by: Option<String>,
}

/// `POST /v1/policies`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    /// 1–128 of letters, digits, `.`, `_`, `:`, `-`; not starting with `steward.`.
    pub id: String,
    /// Cedar source: exactly one `permit` or `forbid` statement.
    pub source: String,
    #[serde(default)]
    pub description: String,
}

/// `PUT /v1/policies/{id}`: the new version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    pub source: String,
    /// Keeps the current description when absent.
    #[serde(default)]
    pub description: Option<String>,
    /// When given, the update fails with 409 unless the current version is this one.
    #[serde(default)]
    pub expected_version: Option<i64>,
}

/// The resource a decision is about.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    /// A declared resource type, e.g. `Document`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Attributes of the resource; `env` is required.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// What the resource server observed about the request it is deciding.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    /// The caller's source address.
    #[serde(default)]
    pub source_ip: Option<String>,
    /// SHA-256 thumbprint (base64url, as in `x5t#S256`) of the client certificate the request
    /// came with over mutual TLS. A certificate-bound token must match it.
    #[serde(default)]
    pub client_cert_thumbprint: Option<String>,
}

/// `POST /v1/authorize`: exactly one of `token` and `identity_id`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// A Steward access token (verified: signature, expiry, revocation, identity state).
    #[serde(default)]
    pub token: Option<String>,
    /// An identity id (its current state and full scope grant are used).
    #[serde(default)]
    pub identity_id: Option<Uuid>,
    pub action: String,
    pub resource: ResourceInput,
    #[serde(default)]
    pub context: ContextInput,
}

/// The decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthorizeResponse {
    /// `allow` or `deny`.
    pub decision: String,
    /// Ids of the policies that determined the decision (empty for the default deny).
    pub policies: Vec<String>,
    pub errors: Vec<String>,
    /// Version of the policy state the decision was made with.
    pub policy_version: i64,
    /// The identity decided about, when it could be established.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub principal: Option<Uuid>,
}

/// `POST /v1/authorize/what-if`: a proposed policy set, and the window of recorded decisions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatIfRequest {
    /// Policies to add or replace (by id).
    #[serde(default)]
    pub policies: Vec<ProposedPolicy>,
    /// Policy ids to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// When true, `policies` is the whole proposed operator set (guard rails always apply).
    #[serde(default)]
    pub replace: bool,
    /// Decisions recorded at or after this instant (default: 24 hours ago).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// Decisions recorded before this instant (default: now).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Most decisions to re-evaluate (default and maximum 100,000).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposedPolicy {
    pub id: String,
    pub source: String,
}

/// One recorded decision that the proposed set would decide differently.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Flip {
    /// Audit sequence number of the recorded decision.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub principal: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    /// `allow` or `deny`, as recorded.
    pub before: String,
    /// `allow` or `deny`, under the proposed set.
    pub after: String,
    pub policies_before: Vec<String>,
    pub policies_after: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhatIfResponse {
    /// Recorded decisions re-evaluated.
    pub evaluated: u64,
    /// Recorded decisions that could not be re-evaluated (no principal was established).
    pub skipped: u64,
    pub allow_to_deny: u64,
    pub deny_to_allow: u64,
    pub flips: Vec<Flip>,
    /// The window held more decisions than `limit`.
    pub truncated: bool,
}

/// `POST /v1/exceptions`: a time-bound exception to a guard rail, or a waiver of a finding
/// type, for one identity. With `requested_by` the caller approves in one step and must differ
/// from it; without, the caller's request waits for someone else's approval.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateException {
    pub identity_id: Uuid,
    /// Guard-rail id (e.g. `steward.env-isolation`) or a waivable finding type (e.g. `dormant`).
    pub guard_rail: String,
    /// Who asked, when the caller approves on their behalf in one step. Without it the caller
    /// requests the exception, and someone else approves it (`POST /v1/exceptions/{id}/approve`).
    #[serde(default)]
    pub requested_by: Option<String>,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExceptionView {
    pub id: Uuid,
    pub identity_id: Uuid,
    pub guard_rail: String,
    pub requested_by: String,
    /// Absent while the request waits for approval (or was denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Unexpired at the time of the response.
    pub active: bool,
    /// `active`, `expired`, `pending` or `denied`.
    #[serde(default)]
    pub status: String,
}

//! Wire types of federation: trust policies (`/v1/trust-policies`) and their `explain` report.
//! Requests reject unknown fields; conditions and rules are checked by the server's validation.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/trust-policies`. See the README for GitHub Actions and Kubernetes examples.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrustPolicy {
    /// Unique name: 1–128 of letters, digits, `.`, `_`, `-`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `oidc` (default), `github_actions` or `kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The exact `iss` of accepted tokens (defaults to GitHub's for `github_actions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The issuer's JWK Set URL (https; http only on loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// An inline JWK Set for air-gapped issuers (instead of `jwks_uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Accepted audiences: at least one must be in the token's `aud`.
    pub audiences: Vec<String>,
    /// The identity accepted tokens are exchanged for.
    pub identity: Uuid,
    /// Rules, any of which admits a token: `{"name": "...", "conditions": [{"claim": "ref",
    /// "equals" | "in" | "glob" | "regex": ..., "not": false}]}`; every condition of a rule must hold.
    #[schema(value_type = Vec<Object>)]
    pub allow: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_age_secs: Option<u32>,
    /// Accept each token once (by `jti`, remembered until its `exp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_use: Option<bool>,
    /// Accepted signature algorithms (subset of RS256, PS256, ES256, ES384, EdDSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// Caps the scopes of exchanged tokens (within the identity's scopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Caps the lifetime of exchanged tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `PATCH /v1/trust-policies/{id}`: a JSON merge patch (RFC 7396) over the policy's fields;
/// `null` removes an optional field. The result is validated like a new policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateTrustPolicy {
    /// When given, the update fails with 409 unless the current version is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// Any fields of [`CreateTrustPolicy`].
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A stored trust policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrustPolicyView {
    pub id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub preset: String,
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub audiences: Vec<String>,
    pub identity: Uuid,
    #[schema(value_type = Vec<Object>)]
    pub allow: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_age_secs: Option<u32>,
    pub single_use: bool,
    pub algorithms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u32>,
    pub enabled: bool,
    pub version: i64,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// `POST /v1/trust-policies/{id}/explain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The external token (a compact JWT). It is not stored, logged or consumed.
    pub token: String,
}

/// One step of the verification, in the order the token endpoint runs them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplainCheck {
    /// `decode`, `issuer`, `algorithm`, `keys`, `signature`, `audience`, `expiry`, `not_before`,
    /// `issued_at`, `max_age`, `preset`, `rules`, `identity`, `single_use`.
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// What the token endpoint would decide for this token under this policy, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplainResponse {
    pub policy: Uuid,
    /// Every check passed (a single-use token may still be refused as a replay at exchange).
    pub accepted: bool,
    /// The first failing check, as the audit log would record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub checks: Vec<ExplainCheck>,
    /// Each rule with each condition's result: `{"rule", "name", "matched", "conditions":
    /// [{"claim", "test", "actual", "matched", "why"}]}`. Empty when an earlier check failed.
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<serde_json::Value>,
    /// The first rule that admitted the token (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_rule: Option<usize>,
    /// The identity the token would be exchanged for.
    pub identity: Uuid,
    /// The token's (decoded, not necessarily authentic) header and claims.
    #[schema(value_type = Object)]
    pub header: serde_json::Value,
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
}

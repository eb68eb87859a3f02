//! Wire types of governance: findings and their acceptance, findings runs, entitlements
//! (granted vs used), risk scores, and the posture report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A finding: a risk raised on an identity, mapped to OWASP NHI Top 10 and NIST CSF 2.0.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FindingView {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<Uuid>,
    /// e.g. `dormant`, `orphaned`, `secret_leaked`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `open`, `resolved` or `accepted`.
    pub status: String,
    /// OWASP Non-Human Identities Top 10 id, `NHI1:2025` … `NHI10:2025`.
    pub owasp_nhi: String,
    /// NIST CSF 2.0 id, `PR.AA-01` … `PR.AA-05`.
    pub nist_csf: String,
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    pub dedup_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_at: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub accepted_until: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
}

/// `POST /v1/findings/{id}/accept`: accept the risk until a date, with a reason.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptFinding {
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    pub reason: String,
}

/// An automatic action a findings run took (or, in dry-run mode, would have taken).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FindingActionView {
    pub finding_id: Uuid,
    #[serde(rename = "finding_type")]
    pub finding_type: String,
    pub identity_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<Uuid>,
    /// `suspend_identity` or `revoke_credential`.
    pub action: String,
    /// False in dry-run mode (and when the action failed).
    pub executed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/findings/run` body: empty, or `{}` (no options yet).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunFindings {}

/// What one findings run did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FindingsRunView {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub identities: u64,
    pub raised: u64,
    pub resolved: u64,
    pub reopened: u64,
    /// Open findings whose evidence or severity changed.
    pub updated: u64,
    /// Findings waived by an unexpired exception (now `accepted`).
    pub waived: u64,
    /// Pages skipped because another node changed the same findings at the same time.
    pub conflicts: u64,
    pub risk_scores_written: u64,
    pub dry_run: bool,
    pub actions: Vec<FindingActionView>,
    /// Time the run paused to leave the token path its throughput (see `findings.pace_*`).
    #[serde(default)]
    pub paused_ms: u64,
}

/// One scope or audience in use.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsedView {
    pub name: String,
    /// Tokens that carried it in the window (a lower bound when tokens name different audiences).
    pub uses: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub last_used: OffsetDateTime,
}

/// Granted, used, unused and suggested (scopes or audiences).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub granted: Vec<String>,
    pub used: Vec<UsedView>,
    pub unused: Vec<String>,
    pub suggested: Vec<String>,
}

/// `GET /v1/identities/{id}/entitlements`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntitlementsView {
    pub identity_id: Uuid,
    pub window_days: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
    /// `sufficient`, `too_young` or `no_use`: whether a reduction is suggested at all.
    pub evidence: String,
    pub scopes: GrantView,
    pub audiences: GrantView,
    pub default_scopes: Vec<String>,
    pub suggested_default_scopes: Vec<String>,
    /// Tokens issued with no scope in the window.
    pub scopeless_uses: u64,
    /// True when applying the suggestion changes the identity.
    pub reduction_suggested: bool,
    pub notes: Vec<String>,
}

fn grant(g: &steward_core::entitlements::Grant) -> GrantView {
    GrantView {
        granted: g.granted.clone(),
        used: g
            .used
            .iter()
            .map(|u| UsedView {
                name: u.name.clone(),
                uses: u.uses,
                last_used: u.last_used,
            })
            .collect(),
        unused: g.unused.clone(),
        suggested: g.suggested.clone(),
    }
}

impl EntitlementsView {
    pub fn new(
        identity_id: Uuid,
        e: &steward_core::entitlements::Entitlements,
        as_of: OffsetDateTime,
    ) -> Self {
        use steward_core::entitlements::Evidence;
        Self {
            identity_id,
            window_days: e.window_days,
            since: e.since,
            as_of,
            evidence: match e.evidence {
                Evidence::Sufficient => "sufficient",
                Evidence::TooYoung => "too_young",
                Evidence::NoUse => "no_use",
            }
            .into(),
            scopes: grant(&e.scopes),
            audiences: grant(&e.audiences),
            default_scopes: e.default_scopes.clone(),
            suggested_default_scopes: e.suggested_default_scopes.clone(),
            scopeless_uses: e.scopeless_uses,
            reduction_suggested: e.scopes.changes() || e.audiences.changes(),
            notes: e.notes.clone(),
        }
    }
}

/// What one finding adds to a risk score.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RiskFactorView {
    pub finding_id: Uuid,
    pub finding_type: String,
    pub owasp_nhi: String,
    pub severity: String,
    pub accepted: bool,
    pub points: u32,
}

/// An identity's risk score (0–100) and what makes it up, as of the last findings run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RiskView {
    pub identity_id: Uuid,
    pub score: u8,
    pub factors: Vec<RiskFactorView>,
    /// When the score was computed; absent when no findings run has scored the identity.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub computed_at: Option<OffsetDateTime>,
}

impl RiskView {
    pub fn new(
        identity_id: Uuid,
        score: u8,
        factors: &[steward_core::risk::RiskFactor],
        computed_at: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            identity_id,
            score,
            factors: factors
                .iter()
                .map(|f| RiskFactorView {
                    finding_id: f.finding_id,
                    finding_type: f.finding_type.clone(),
                    owasp_nhi: f.owasp_nhi.clone(),
                    severity: f.severity.clone(),
                    accepted: f.accepted,
                    points: f.points,
                })
                .collect(),
            computed_at,
        }
    }
}

// ---------------------------------------------------------------- posture report

/// A count out of a total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Share {
    pub count: u64,
    pub total: u64,
    /// `count / total` in percent, one decimal; 0 when the total is 0.
    pub percent: f64,
}

impl Share {
    pub fn new(count: u64, total: u64) -> Self {
        let percent = if total == 0 {
            0.0
        } else {
            (count as f64 * 1000.0 / total as f64).round() / 10.0
        };
        Self {
            count,
            total,
            percent,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OwnerCount {
    pub owner_id: Uuid,
    pub name: String,
    /// `active` or `departed` (`missing` when the owner record does not exist).
    pub status: String,
    pub identities: u64,
}

/// Live identities (not retired), counted several ways.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Inventory {
    pub identities: u64,
    pub retired: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub by_environment: BTreeMap<String, u64>,
    /// Effective status (`expired` is derived from the expiry date).
    pub by_status: BTreeMap<String, u64>,
    /// The owners with the most identities, most first (at most 20).
    pub by_owner: Vec<OwnerCount>,
    pub owners: u64,
}

/// Governance hygiene of the live identities.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Hygiene {
    /// Owned by an owner who has not departed.
    pub with_active_owner: Share,
    /// With a purpose of at least 10 characters.
    pub with_purpose: Share,
    /// With an expiry within the registry's maximum lifetime (every identity has one).
    pub with_expiry: Share,
    /// Holding no usable API key: authenticating only with short-lived proofs (private_key_jwt
    /// assertions, certificates, federation).
    pub short_lived_credentials_only: Share,
}

/// Usable credentials by age.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AgeBucket {
    /// e.g. `0-7d`, `>180d`.
    pub label: String,
    pub api_keys: u64,
    pub public_keys: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FindingsSummary {
    pub open: u64,
    pub accepted: u64,
    pub resolved: u64,
    /// Open findings per severity.
    pub by_severity: BTreeMap<String, u64>,
    /// Open findings per OWASP NHI Top 10 id.
    pub by_owasp_nhi: BTreeMap<String, u64>,
    /// Open findings per NIST CSF 2.0 id.
    pub by_nist_csf: BTreeMap<String, u64>,
    /// Open findings per type.
    pub by_type: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TopRisk {
    pub identity_id: Uuid,
    pub name: String,
    pub environment: String,
    pub score: u8,
    /// The finding types behind the score, largest contribution first.
    pub factors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExceptionItem {
    pub id: Uuid,
    pub identity_id: Uuid,
    pub guard_rail: String,
    pub approved_by: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ExceptionsSummary {
    /// Unexpired exceptions.
    pub active: u64,
    /// The unexpired exceptions, soonest expiry first (at most 50).
    pub items: Vec<ExceptionItem>,
    /// Exception requests waiting for a second person's decision.
    #[serde(default)]
    pub pending_requests: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReviewsSummary {
    /// Undecided items of open access-review campaigns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<u64>,
    /// Access-review campaigns still open.
    #[serde(default)]
    pub open_campaigns: u64,
    /// Undecided items whose campaign deadline has passed (the default action applies next).
    #[serde(default)]
    pub overdue: u64,
    /// JIT elevation requests waiting for approval.
    #[serde(default)]
    pub pending_jit_requests: u64,
}

/// `GET /v1/report?format=json`: the governance posture at one instant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PostureReport {
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub issuer: String,
    pub inventory: Inventory,
    pub hygiene: Hygiene,
    pub credential_age: Vec<AgeBucket>,
    pub findings: FindingsSummary,
    /// The highest risk scores (at most 10).
    pub top_risks: Vec<TopRisk>,
    pub exceptions: ExceptionsSummary,
    pub reviews: ReviewsSummary,
}

//! Governance findings: the pure rules that judge one identity (its owner, credentials, observed
//! usage and waivers) at an instant, each finding mapped to OWASP NHI Top 10 and NIST CSF 2.0.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::usage::{ScopeUse, SourceKind, SourceUse, is_human_user_agent, user_agent_product};
use crate::{
    Credential, CredentialKind, CredentialState, Identity, IdentityKind, IdentityStatus, Owner,
};

/// What a finding is about. The string forms are the `type` of findings in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingType {
    /// The owner departed, or the owner record is missing.
    Orphaned,
    /// No successful authentication for the dormancy window.
    Dormant,
    /// The identity expires within the notice period.
    ExpiringSoon,
    /// The identity expired but still holds unrevoked, unexpired credentials.
    ExpiredWithCredentials,
    /// A credential is older than the rotation age.
    CredentialRotationOverdue,
    /// Granted scopes unused over the usage window.
    OverPrivilegedUnusedScopes,
    /// A wildcard or admin scope on a production identity.
    WildcardOrAdminScopeInProd,
    /// A static API key on an identity that could use a certificate or federation.
    StaticApiKeyWhereFederationPossible,
    /// One credential used from many addresses or by several different clients.
    CredentialMultiSource,
    /// One identity used from several environments' networks, or from another environment's.
    IdentityMultiEnvironment,
    /// A browser-like client, or an address outside the identity's allowed ranges.
    HumanUse,
    /// An integration never approved, or past its review date.
    IntegrationUnapprovedOrReviewOverdue,
}

impl FindingType {
    pub const ALL: [FindingType; 12] = [
        Self::Orphaned,
        Self::Dormant,
        Self::ExpiringSoon,
        Self::ExpiredWithCredentials,
        Self::CredentialRotationOverdue,
        Self::OverPrivilegedUnusedScopes,
        Self::WildcardOrAdminScopeInProd,
        Self::StaticApiKeyWhereFederationPossible,
        Self::CredentialMultiSource,
        Self::IdentityMultiEnvironment,
        Self::HumanUse,
        Self::IntegrationUnapprovedOrReviewOverdue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orphaned => "orphaned",
            Self::Dormant => "dormant",
            Self::ExpiringSoon => "expiring_soon",
            Self::ExpiredWithCredentials => "expired_with_credentials",
            Self::CredentialRotationOverdue => "credential_rotation_overdue",
            Self::OverPrivilegedUnusedScopes => "over_privileged_unused_scopes",
            Self::WildcardOrAdminScopeInProd => "wildcard_or_admin_scope_in_prod",
            Self::StaticApiKeyWhereFederationPossible => "static_api_key_where_federation_possible",
            Self::CredentialMultiSource => "credential_multi_source",
            Self::IdentityMultiEnvironment => "identity_multi_environment",
            Self::HumanUse => "human_use",
            Self::IntegrationUnapprovedOrReviewOverdue => {
                "integration_unapproved_or_review_overdue"
            }
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The OWASP Non-Human Identities Top 10 (2025) risk this finding is an instance of.
    pub fn owasp_nhi(self) -> &'static str {
        match self {
            Self::Orphaned | Self::Dormant | Self::ExpiringSoon | Self::ExpiredWithCredentials => {
                "NHI1:2025"
            }
            Self::IntegrationUnapprovedOrReviewOverdue => "NHI3:2025",
            Self::StaticApiKeyWhereFederationPossible => "NHI4:2025",
            Self::OverPrivilegedUnusedScopes | Self::WildcardOrAdminScopeInProd => "NHI5:2025",
            Self::CredentialRotationOverdue => "NHI7:2025",
            Self::IdentityMultiEnvironment => "NHI8:2025",
            Self::CredentialMultiSource => "NHI9:2025",
            Self::HumanUse => "NHI10:2025",
        }
    }

    /// The NIST CSF 2.0 outcome (PR.AA) the finding shows falling short.
    pub fn nist_csf(self) -> &'static str {
        match self {
            // Identities and credentials are managed (lifecycle, ownership, rotation).
            Self::Orphaned
            | Self::Dormant
            | Self::ExpiringSoon
            | Self::ExpiredWithCredentials
            | Self::CredentialRotationOverdue => "PR.AA-01",
            // Bound to credentials based on the context of interactions.
            Self::CredentialMultiSource | Self::HumanUse => "PR.AA-02",
            // Authenticated (strength of the authentication method).
            Self::StaticApiKeyWhereFederationPossible => "PR.AA-03",
            // Permissions managed, reviewed, least privilege.
            Self::OverPrivilegedUnusedScopes
            | Self::WildcardOrAdminScopeInProd
            | Self::IdentityMultiEnvironment
            | Self::IntegrationUnapprovedOrReviewOverdue => "PR.AA-05",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Self::ExpiringSoon | Self::StaticApiKeyWhereFederationPossible => Severity::Low,
            Self::Dormant
            | Self::ExpiredWithCredentials
            | Self::CredentialRotationOverdue
            | Self::OverPrivilegedUnusedScopes
            | Self::CredentialMultiSource
            | Self::IntegrationUnapprovedOrReviewOverdue => Severity::Medium,
            Self::Orphaned
            | Self::WildcardOrAdminScopeInProd
            | Self::IdentityMultiEnvironment
            | Self::HumanUse => Severity::High,
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

fn default_kinds() -> Vec<IdentityKind> {
    IdentityKind::ALL
        .into_iter()
        .filter(|k| *k != IdentityKind::Integration)
        .collect()
}

/// The thresholds of the rules. Defaults follow shared practice (90-day dormancy, key age and
/// usage baseline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSettings {
    /// `dormant`: no successful authentication for this many days (identities younger than
    /// this are not judged).
    pub dormancy_days: u32,
    /// `over_privileged_unused_scopes`, `credential_multi_source`, `identity_multi_environment`
    /// and `human_use` look at this many days of usage.
    pub usage_window_days: u32,
    /// `expiring_soon`: the identity expires within this many days.
    pub expiring_soon_days: u32,
    /// `credential_rotation_overdue`: a usable credential older than this many days.
    pub rotation_age_days: u32,
    /// Environments where wildcard and admin scopes are findings.
    pub prod_environments: Vec<String>,
    /// Kinds that can authenticate with a certificate or federation, so that a static API key
    /// is a finding (integrations, which usually cannot, are left out by default).
    pub federation_capable_kinds: Vec<IdentityKind>,
    /// `credential_multi_source`: more distinct source addresses than this in the window.
    pub max_addresses_per_credential: u32,
    /// `credential_multi_source`: more distinct client products (user agents without their
    /// version) than this in the window.
    pub max_user_agents_per_credential: u32,
    /// Integrations are due for review this many days after approval (unless `review_due_at`).
    pub integration_review_days: u32,
    /// An integration pending approval for longer than this many days is a finding.
    pub unapproved_grace_days: u32,
    /// Finding types not evaluated at all.
    pub disabled: Vec<FindingType>,
}

impl Default for RuleSettings {
    fn default() -> Self {
        Self {
            dormancy_days: 90,
            usage_window_days: 90,
            expiring_soon_days: 14,
            rotation_age_days: 90,
            prod_environments: vec!["prod".into()],
            federation_capable_kinds: default_kinds(),
            max_addresses_per_credential: 8,
            max_user_agents_per_credential: 2,
            integration_review_days: 90,
            unapproved_grace_days: 7,
            disabled: vec![],
        }
    }
}

impl RuleSettings {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("dormancy_days", self.dormancy_days),
            ("usage_window_days", self.usage_window_days),
            ("rotation_age_days", self.rotation_age_days),
            ("integration_review_days", self.integration_review_days),
        ] {
            if v == 0 || v > 3650 {
                return Err(format!("findings.rules.{name} must be between 1 and 3650"));
            }
        }
        if self.max_addresses_per_credential == 0 || self.max_user_agents_per_credential == 0 {
            return Err(
                "findings.rules.max_addresses_per_credential and max_user_agents_per_credential must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}

/// An approved, time-bound waiver of one finding type for one identity (an exception whose
/// guard rail names the finding type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiver {
    pub id: Uuid,
    pub finding_type: String,
    pub approved_by: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Everything the rules know about one identity.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub identity: &'a Identity,
    /// `None` when the owner record does not exist.
    pub owner: Option<&'a Owner>,
    pub credentials: &'a [Credential],
    /// All-time use per (scope, audience).
    pub usage: &'a [ScopeUse],
    pub sources: &'a [SourceUse],
    /// Unexpired waivers of this identity (expired ones are ignored anyway).
    pub waivers: &'a [Waiver],
}

/// A finding the rules raise now. The engine compares candidates with stored findings by
/// `dedup_key`: new ones are raised, missing ones resolve.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: FindingType,
    pub severity: Severity,
    pub identity_id: Uuid,
    pub credential_id: Option<Uuid>,
    pub dedup_key: String,
    /// What supports the finding; stable while the condition is (no "age" that grows by itself).
    pub evidence: Value,
    /// An unexpired waiver that covers this finding, if any (the latest-expiring one).
    pub waiver: Option<Waiver>,
}

impl Candidate {
    pub fn owasp_nhi(&self) -> &'static str {
        self.kind.owasp_nhi()
    }
    pub fn nist_csf(&self) -> &'static str {
        self.kind.nist_csf()
    }
}

/// The dedup key of a finding about an identity.
pub fn identity_key(kind: FindingType, identity: Uuid) -> String {
    format!("{}:identity:{identity}", kind.as_str())
}

/// The dedup key of a finding about one credential (nil: certificate authentication).
pub fn credential_key(kind: FindingType, identity: Uuid, credential: Uuid) -> String {
    if credential.is_nil() {
        format!("{}:certificate:{identity}", kind.as_str())
    } else {
        format!("{}:credential:{credential}", kind.as_str())
    }
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

/// Is this scope a wildcard or an admin scope? `*` anywhere, or a segment (split at `:`, `.`,
/// `/`, `-`, `_`) that is exactly `admin`, `root` or `superuser` (`payments:admin`, `admin`,
/// `steward:admin`).
pub fn is_privileged_scope(scope: &str) -> bool {
    scope.contains('*')
        || scope.split([':', '.', '/', '-', '_']).any(|seg| {
            matches!(
                seg.to_ascii_lowercase().as_str(),
                "admin" | "root" | "superuser"
            )
        })
}

/// The last successful authentication of the identity, from its credentials' last use and its
/// recorded token use.
pub fn last_authenticated(s: &Subject<'_>) -> Option<OffsetDateTime> {
    let creds = s.credentials.iter().filter_map(|c| c.last_used_at);
    let usage = s.usage.iter().map(|u| u.last_used);
    creds.chain(usage).max()
}

/// Judges one identity at `now`. Retired identities raise nothing.
pub fn evaluate(s: &Subject<'_>, settings: &RuleSettings, now: OffsetDateTime) -> Vec<Candidate> {
    let i = s.identity;
    let mut out = Vec::new();
    if i.status == IdentityStatus::Retired {
        return out;
    }
    let status = i.effective_status(now);
    let window_start = now - days(settings.usage_window_days);
    let mut push = |kind: FindingType, credential: Option<Uuid>, evidence: Value| {
        if settings.disabled.contains(&kind) {
            return;
        }
        let dedup_key = match credential {
            Some(c) => credential_key(kind, i.id, c),
            None => identity_key(kind, i.id),
        };
        let waiver = s
            .waivers
            .iter()
            .filter(|w| w.finding_type == kind.as_str() && w.expires_at > now)
            .max_by_key(|w| (w.expires_at, w.id))
            .cloned();
        out.push(Candidate {
            kind,
            severity: kind.severity(),
            identity_id: i.id,
            credential_id: credential,
            dedup_key,
            evidence,
            waiver,
        });
    };

    // ---- NHI1: ownership and lifecycle
    match s.owner {
        None => push(
            FindingType::Orphaned,
            None,
            json!({"owner_id": i.owner_id, "reason": "the owner record does not exist"}),
        ),
        Some(o) if !o.is_active() => push(
            FindingType::Orphaned,
            None,
            json!({
                "owner_id": o.id,
                "owner_name": o.name,
                "reason": "the owner has departed",
                "departed_at": o.departed_at.map(ts),
            }),
        ),
        Some(_) => {}
    }
    if status == IdentityStatus::Active && i.created_at + days(settings.dormancy_days) <= now {
        let last = last_authenticated(s);
        if last.is_none_or(|l| l < now - days(settings.dormancy_days)) {
            push(
                FindingType::Dormant,
                None,
                json!({
                    "last_authenticated": last.map(ts),
                    "dormancy_days": settings.dormancy_days,
                    "created_at": ts(i.created_at),
                }),
            );
        }
    }
    if matches!(
        status,
        IdentityStatus::Active | IdentityStatus::Suspended | IdentityStatus::PendingApproval
    ) && i.expires_at - now <= days(settings.expiring_soon_days)
    {
        push(
            FindingType::ExpiringSoon,
            None,
            json!({"expires_at": ts(i.expires_at), "notice_days": settings.expiring_soon_days}),
        );
    }
    let usable = |c: &&Credential| {
        matches!(
            c.state(now),
            CredentialState::Active | CredentialState::Retiring
        )
    };
    if status == IdentityStatus::Expired {
        let held: Vec<Uuid> = s.credentials.iter().filter(usable).map(|c| c.id).collect();
        if !held.is_empty() {
            push(
                FindingType::ExpiredWithCredentials,
                None,
                json!({"expires_at": ts(i.expires_at), "credentials": held}),
            );
        }
    }

    // ---- NHI7: rotation (identities that can still authenticate or be resumed)
    if status != IdentityStatus::Expired {
        for c in s.credentials {
            let due = c.created_at + days(settings.rotation_age_days);
            if c.state(now) == CredentialState::Active && due <= now {
                push(
                    FindingType::CredentialRotationOverdue,
                    Some(c.id),
                    json!({
                        "credential_id": c.id,
                        "type": c.kind.as_str(),
                        "fingerprint": c.fingerprint,
                        "created_at": ts(c.created_at),
                        "rotation_due_at": ts(due),
                        "expires_at": ts(c.expires_at),
                        "rotation_age_days": settings.rotation_age_days,
                    }),
                );
            }
        }
    }

    // ---- NHI5: privilege
    if status == IdentityStatus::Active && i.created_at <= window_start {
        let (used, _) = crate::entitlements::from_summaries(s.usage, window_start);
        if !used.is_empty() {
            let unused: Vec<&String> = i.scopes.iter().filter(|g| !used.contains_key(*g)).collect();
            if !unused.is_empty() {
                let used_granted: Vec<&String> =
                    i.scopes.iter().filter(|g| used.contains_key(*g)).collect();
                push(
                    FindingType::OverPrivilegedUnusedScopes,
                    None,
                    json!({
                        "window_days": settings.usage_window_days,
                        "granted": i.scopes,
                        "used": used_granted,
                        "unused": unused,
                    }),
                );
            }
        }
    }
    if settings.prod_environments.contains(&i.environment) {
        let privileged: Vec<&String> = i.scopes.iter().filter(|s| is_privileged_scope(s)).collect();
        if !privileged.is_empty() {
            push(
                FindingType::WildcardOrAdminScopeInProd,
                None,
                json!({"environment": i.environment, "scopes": privileged}),
            );
        }
    }

    // ---- NHI4: static keys where something better is possible
    if status != IdentityStatus::Expired && settings.federation_capable_kinds.contains(&i.kind) {
        let keys: Vec<Uuid> = s
            .credentials
            .iter()
            .filter(usable)
            .filter(|c| c.kind == CredentialKind::ApiKey)
            .map(|c| c.id)
            .collect();
        if !keys.is_empty() {
            push(
                FindingType::StaticApiKeyWhereFederationPossible,
                None,
                json!({
                    "kind": i.kind.as_str(),
                    "api_keys": keys,
                    "alternatives": ["private_key_jwt", "tls_client_auth", "workload federation"],
                    "related_owasp_nhi": ["NHI7:2025"],
                }),
            );
        }
    }

    // ---- observed sources within the window: NHI9, NHI8, NHI10. Use of a credential that
    // can no longer authenticate (revoked or expired) is no longer a risk: revoking the
    // credential is how these findings are fixed. Certificate use (nil credential) always counts.
    let dead: BTreeSet<Uuid> = s
        .credentials
        .iter()
        .filter(|c| {
            matches!(
                c.state(now),
                CredentialState::Revoked | CredentialState::Expired
            )
        })
        .map(|c| c.id)
        .collect();
    let recent: Vec<&SourceUse> = s
        .sources
        .iter()
        .filter(|u| u.last_seen >= window_start && !dead.contains(&u.credential_id))
        .collect();
    let mut by_credential: BTreeMap<Uuid, Vec<&SourceUse>> = BTreeMap::new();
    for u in &recent {
        by_credential.entry(u.credential_id).or_default().push(u);
    }
    for (cred, uses) in &by_credential {
        let addresses: BTreeSet<&str> = uses
            .iter()
            .filter(|u| u.kind == SourceKind::Address && !u.is_overflow())
            .map(|u| u.value.as_str())
            .collect();
        let more = uses
            .iter()
            .any(|u| u.kind == SourceKind::Address && u.is_overflow());
        let products: BTreeSet<&str> = uses
            .iter()
            .filter(|u| u.kind == SourceKind::UserAgent && !u.is_overflow())
            .map(|u| user_agent_product(&u.value))
            .collect();
        let many_addresses =
            more || addresses.len() > settings.max_addresses_per_credential as usize;
        let many_clients = products.len() > settings.max_user_agents_per_credential as usize;
        if many_addresses || many_clients {
            push(
                FindingType::CredentialMultiSource,
                Some(*cred),
                json!({
                    "credential_id": if cred.is_nil() { json!("certificate") } else { json!(cred) },
                    "addresses": addresses,
                    "more_addresses_than_listed": more,
                    "user_agent_products": products,
                    "max_addresses": settings.max_addresses_per_credential,
                    "max_user_agents": settings.max_user_agents_per_credential,
                }),
            );
        }
    }
    let environments: BTreeSet<&str> = recent
        .iter()
        .filter(|u| u.kind == SourceKind::Environment && !u.is_overflow())
        .map(|u| u.value.as_str())
        .collect();
    if environments.len() > 1 || environments.iter().any(|e| *e != i.environment) {
        push(
            FindingType::IdentityMultiEnvironment,
            None,
            json!({"environment": i.environment, "used_from_environments": environments}),
        );
    }
    let mut human_agents: BTreeSet<&str> = recent
        .iter()
        .filter(|u| u.kind == SourceKind::UserAgent && is_human_user_agent(&u.value))
        .map(|u| u.value.as_str())
        .collect();
    let outside: BTreeSet<&str> = if i.allowed_source_cidrs.is_empty() {
        BTreeSet::new()
    } else {
        recent
            .iter()
            .filter(|u| u.kind == SourceKind::Address && !u.is_overflow())
            .filter(|u| {
                u.value
                    .parse::<IpAddr>()
                    .is_ok_and(|a| !crate::netaddr::in_any(&i.allowed_source_cidrs, a))
            })
            .map(|u| u.value.as_str())
            .collect()
    };
    if !human_agents.is_empty() || !outside.is_empty() {
        while human_agents.len() > 5 {
            human_agents.pop_last();
        }
        push(
            FindingType::HumanUse,
            None,
            json!({
                "browser_like_user_agents": human_agents,
                "addresses_outside_allowed_ranges": outside,
                "allowed_source_cidrs": i.allowed_source_cidrs,
            }),
        );
    }

    // ---- NHI3: third-party integrations
    if i.kind == IdentityKind::Integration {
        match (&i.approved_by, i.approved_at) {
            (None, _) if i.created_at + days(settings.unapproved_grace_days) <= now => push(
                FindingType::IntegrationUnapprovedOrReviewOverdue,
                None,
                json!({
                    "reason": "unapproved",
                    "vendor": i.vendor,
                    "status": status.as_str(),
                    "created_at": ts(i.created_at),
                }),
            ),
            (Some(by), approved_at) => {
                let due = i.review_due_at.unwrap_or_else(|| {
                    approved_at.unwrap_or(i.created_at) + days(settings.integration_review_days)
                });
                if due <= now {
                    push(
                        FindingType::IntegrationUnapprovedOrReviewOverdue,
                        None,
                        json!({
                            "reason": "review_overdue",
                            "vendor": i.vendor,
                            "approved_by": by,
                            "approved_at": approved_at.map(ts),
                            "review_due_at": ts(due),
                        }),
                    );
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;

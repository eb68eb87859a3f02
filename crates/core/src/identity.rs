//! Identities: a machine's durable "who", independent of any credential it holds.
//! Owns field validation, the lifecycle state machine and the "may this identity authenticate now?" rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{DomainError, Owner, RegistryPolicy, scope};

/// What sort of machine an identity stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    ServiceAccount,
    Workload,
    Pipeline,
    Agent,
    Device,
    Integration,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 6] = [
        Self::ServiceAccount,
        Self::Workload,
        Self::Pipeline,
        Self::Agent,
        Self::Device,
        Self::Integration,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceAccount => "service_account",
            Self::Workload => "workload",
            Self::Pipeline => "pipeline",
            Self::Agent => "agent",
            Self::Device => "device",
            Self::Integration => "integration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Lifecycle state. `Expired` is never stored: it is derived from `expires_at` and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityStatus {
    PendingApproval,
    Active,
    Suspended,
    Retired,
    Expired,
}

impl IdentityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Retired => "retired",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::PendingApproval,
            Self::Active,
            Self::Suspended,
            Self::Retired,
            Self::Expired,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Operator-initiated lifecycle transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    Approve,
    Suspend,
    Resume,
    Retire,
}

impl LifecycleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Retire => "retire",
        }
    }
}

/// A machine identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: Uuid,
    pub name: String,
    pub kind: IdentityKind,
    pub owner_id: Uuid,
    pub purpose: String,
    pub environment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Every scope a token for this identity may ever carry.
    pub scopes: Vec<String>,
    /// The scopes granted when a token request names none (a subset of `scopes`).
    pub default_scopes: Vec<String>,
    /// Audiences (`aud`) a token for this identity may name.
    pub audiences: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Vendor name; required for `integration` identities.
    pub vendor: Option<String>,
    /// Stored status (never `Expired`; see [`Identity::effective_status`]).
    pub status: IdentityStatus,
    /// Why the identity was last suspended or retired, if given.
    pub status_reason: Option<String>,
    /// Access-token lifetime for this identity (within the registry maximum).
    pub token_lifetime_secs: Option<u32>,
    /// When set, tokens are only issued with a DPoP proof (RFC 9449).
    pub require_dpop: bool,
    /// Tokens issued at or before this instant are no longer active.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub tokens_revoked_before: Option<OffsetDateTime>,
    /// Who created (requested) the identity.
    pub created_by: String,
    pub approved_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub approved_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Optimistic-concurrency version, bumped on every update.
    pub version: i64,
    /// DNS names this identity may put in its certificates: exact names, or `*.suffix` for any
    /// name one label below `suffix`.
    #[serde(default)]
    pub allowed_dns_names: Vec<String>,
    /// Identity ids that may act for this identity in token exchange (RFC 8693 delegation).
    #[serde(default)]
    pub may_act: Vec<String>,
    /// Address ranges (CIDR) this identity is expected to authenticate from; use from anywhere
    /// else raises a `human_use` finding. Empty: not checked.
    #[serde(default)]
    pub allowed_source_cidrs: Vec<String>,
    /// When this identity is next due for review (`integration` identities are judged by it;
    /// unset: approval time plus the configured review period).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub review_due_at: Option<OffsetDateTime>,
}

/// The fields a caller supplies to create an identity.
#[derive(Debug, Clone, Default)]
pub struct NewIdentity {
    pub name: String,
    pub kind: Option<IdentityKind>,
    pub owner_id: Uuid,
    pub purpose: String,
    pub environment: String,
    pub expires_at: Option<OffsetDateTime>,
    pub scopes: Vec<String>,
    pub default_scopes: Option<Vec<String>>,
    pub audiences: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub vendor: Option<String>,
    pub token_lifetime_secs: Option<u32>,
    pub require_dpop: bool,
    pub allowed_dns_names: Vec<String>,
    pub may_act: Vec<String>,
    pub allowed_source_cidrs: Vec<String>,
    pub review_due_at: Option<OffsetDateTime>,
}

/// A partial update; `None` leaves a field as it is. Name, kind and environment are immutable
/// because they make up the identity's SPIFFE ID.
#[derive(Debug, Clone, Default)]
pub struct IdentityPatch {
    pub owner_id: Option<Uuid>,
    pub purpose: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub scopes: Option<Vec<String>>,
    pub default_scopes: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub vendor: Option<String>,
    pub token_lifetime_secs: Option<Option<u32>>,
    pub require_dpop: Option<bool>,
    pub allowed_dns_names: Option<Vec<String>>,
    pub may_act: Option<Vec<String>>,
    pub allowed_source_cidrs: Option<Vec<String>>,
    /// `Some(None)` clears the review date.
    pub review_due_at: Option<Option<OffsetDateTime>>,
}

impl Identity {
    /// Validates a creation request against the policy and the (already looked-up) owner.
    pub fn create(
        id: Uuid,
        req: NewIdentity,
        owner: &Owner,
        policy: &RegistryPolicy,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        let kind = req
            .kind
            .ok_or_else(|| DomainError::invalid("kind", "is required"))?;
        let name = validate_name(&req.name)?;
        if !owner.is_active() {
            return Err(DomainError::OwnerDeparted(owner.id.to_string()));
        }
        let purpose = validate_purpose(&req.purpose)?;
        if !policy.has_environment(&req.environment) {
            return Err(DomainError::invalid(
                "environment",
                format!("must be one of: {}", policy.environments.join(", ")),
            ));
        }
        let expires_at = req
            .expires_at
            .ok_or_else(|| DomainError::invalid("expires_at", "is required"))?;
        validate_expiry(kind, expires_at, policy, now)?;
        let scopes = scope::normalize_scopes(&req.scopes)?;
        let default_scopes =
            validate_default_scopes(req.default_scopes.as_deref().unwrap_or(&[]), &scopes)?;
        let audiences = validate_audiences(&req.audiences)?;
        let labels = validate_labels(&req.labels)?;
        let vendor = validate_vendor(kind, req.vendor.as_deref())?;
        validate_token_lifetime(req.token_lifetime_secs, policy)?;
        let allowed_dns_names = validate_dns_names(&req.allowed_dns_names)?;
        let may_act = crate::trust::validate_may_act(&req.may_act)?;
        let allowed_source_cidrs =
            crate::netaddr::validate_source_cidrs(&req.allowed_source_cidrs)?;
        let status = if kind == IdentityKind::Integration {
            IdentityStatus::PendingApproval
        } else {
            IdentityStatus::Active
        };
        Ok(Self {
            id,
            name,
            kind,
            owner_id: owner.id,
            purpose,
            environment: req.environment,
            expires_at,
            scopes,
            default_scopes,
            audiences,
            labels,
            vendor,
            status,
            status_reason: None,
            token_lifetime_secs: req.token_lifetime_secs,
            require_dpop: req.require_dpop,
            tokens_revoked_before: None,
            created_by: actor.to_owned(),
            approved_by: None,
            approved_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
            allowed_dns_names,
            may_act,
            allowed_source_cidrs,
            review_due_at: req.review_due_at,
        })
    }

    /// The status as of `now`: a live identity past its `expires_at` is `Expired`.
    pub fn effective_status(&self, now: OffsetDateTime) -> IdentityStatus {
        match self.status {
            IdentityStatus::Retired => IdentityStatus::Retired,
            _ if now >= self.expires_at => IdentityStatus::Expired,
            s => s,
        }
    }

    /// May this identity authenticate at `now`? On refusal, says why (safe to audit).
    pub fn check_can_authenticate(&self, now: OffsetDateTime) -> Result<(), &'static str> {
        match self.effective_status(now) {
            IdentityStatus::Active => Ok(()),
            IdentityStatus::PendingApproval => Err("identity is pending approval"),
            IdentityStatus::Suspended => Err("identity is suspended"),
            IdentityStatus::Retired => Err("identity is retired"),
            IdentityStatus::Expired => Err("identity has expired"),
        }
    }

    /// Is a token issued at `issued_at` still acceptable as far as this identity is concerned?
    pub fn token_still_valid(
        &self,
        issued_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), &'static str> {
        self.check_can_authenticate(now)?;
        if self
            .tokens_revoked_before
            .is_some_and(|cut| issued_at <= cut)
        {
            return Err("identity's tokens were revoked");
        }
        Ok(())
    }

    /// Applies a lifecycle transition, enforcing the state machine and separation of duties.
    pub fn transition(
        &mut self,
        action: LifecycleAction,
        actor: &str,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        use IdentityStatus as S;
        use LifecycleAction as A;
        let current = self.effective_status(now);
        let illegal = |reason: &'static str| DomainError::IllegalTransition {
            action: action.as_str(),
            state: current.as_str(),
            reason,
        };
        let next = match (action, current) {
            (_, S::Retired) => return Err(illegal("retired is final")),
            (A::Retire, _) => S::Retired,
            (_, S::Expired) => {
                return Err(illegal("extend expires_at first, or retire the identity"));
            }
            (A::Approve, S::PendingApproval) => {
                if self.created_by == actor {
                    return Err(DomainError::SeparationOfDuties(
                        "the approver must be someone other than the requester",
                    ));
                }
                self.approved_by = Some(actor.to_owned());
                self.approved_at = Some(now);
                S::Active
            }
            (A::Approve, _) => {
                return Err(illegal("only identities pending approval can be approved"));
            }
            (A::Suspend, S::Active) => S::Suspended,
            (A::Suspend, S::Suspended) => return Err(illegal("already suspended")),
            (A::Suspend, _) => return Err(illegal("only active identities can be suspended")),
            (A::Resume, S::Suspended) => S::Active,
            (A::Resume, _) => return Err(illegal("only suspended identities can be resumed")),
        };
        if let Some(r) = &reason {
            validate_reason(r)?;
        }
        self.status = next;
        if matches!(action, A::Suspend | A::Retire) {
            self.status_reason = reason;
        } else {
            self.status_reason = None;
        }
        if action == A::Retire {
            self.tokens_revoked_before = Some(now);
        }
        self.updated_at = now;
        self.version += 1;
        Ok(())
    }

    /// Applies a partial update. `new_owner` must be the looked-up owner when `patch.owner_id` is set.
    pub fn apply_patch(
        &mut self,
        patch: IdentityPatch,
        new_owner: Option<&Owner>,
        policy: &RegistryPolicy,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        if self.status == IdentityStatus::Retired {
            return Err(DomainError::IllegalTransition {
                action: "update",
                state: "retired",
                reason: "retired is final",
            });
        }
        let mut next = self.clone();
        if let Some(owner_id) = patch.owner_id {
            let owner = new_owner
                .filter(|o| o.id == owner_id)
                .ok_or_else(|| DomainError::invalid("owner", "unknown owner"))?;
            if !owner.is_active() {
                return Err(DomainError::OwnerDeparted(owner.id.to_string()));
            }
            next.owner_id = owner_id;
        }
        if let Some(p) = patch.purpose {
            next.purpose = validate_purpose(&p)?;
        }
        if let Some(e) = patch.expires_at {
            validate_expiry(next.kind, e, policy, now)?;
            next.expires_at = e;
        }
        if let Some(s) = patch.scopes {
            next.scopes = scope::normalize_scopes(&s)?;
        }
        match patch.default_scopes {
            Some(d) => next.default_scopes = validate_default_scopes(&d, &next.scopes)?,
            // Narrowing `scopes` narrows the defaults with it rather than failing.
            None => next.default_scopes = scope::intersect(&next.default_scopes, &next.scopes),
        }
        if let Some(a) = patch.audiences {
            next.audiences = validate_audiences(&a)?;
        }
        if let Some(l) = patch.labels {
            next.labels = validate_labels(&l)?;
        }
        if let Some(v) = patch.vendor {
            next.vendor = validate_vendor(next.kind, Some(&v))?;
        }
        if let Some(t) = patch.token_lifetime_secs {
            validate_token_lifetime(t, policy)?;
            next.token_lifetime_secs = t;
        }
        if let Some(d) = patch.require_dpop {
            next.require_dpop = d;
        }
        if let Some(d) = patch.allowed_dns_names {
            next.allowed_dns_names = validate_dns_names(&d)?;
        }
        if let Some(m) = patch.may_act {
            next.may_act = crate::trust::validate_may_act(&m)?;
        }
        if let Some(c) = patch.allowed_source_cidrs {
            next.allowed_source_cidrs = crate::netaddr::validate_source_cidrs(&c)?;
        }
        if let Some(r) = patch.review_due_at {
            next.review_due_at = r;
        }
        next.updated_at = now;
        next.version += 1;
        *self = next;
        Ok(())
    }

    /// Access-token lifetime in seconds for this identity under `policy`.
    pub fn token_lifetime(&self, policy: &RegistryPolicy) -> u32 {
        self.token_lifetime_secs
            .unwrap_or(policy.default_token_lifetime_secs)
            .min(policy.max_token_lifetime_secs)
    }

    /// May a certificate of this identity name `dns`? Exact entries match case-insensitively;
    /// `*.suffix` matches exactly one label below `suffix`.
    pub fn allows_dns_name(&self, dns: &str) -> bool {
        let dns = dns.to_ascii_lowercase();
        self.allowed_dns_names
            .iter()
            .any(|a| match a.strip_prefix("*.") {
                Some(suffix) => dns
                    .strip_suffix(suffix)
                    .and_then(|h| h.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.') && label != "*"),
                None => *a == dns,
            })
    }

    /// The identity's SPIFFE ID: `spiffe://<trust-domain>/<environment>/<kind>/<name>`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/{}/{}/{}",
            self.environment,
            self.kind.as_str(),
            self.name
        )
    }
}

/// Allowed certificate DNS names: at most 32 lowercase host names (RFC 1123 labels), each
/// optionally `*.`-prefixed; duplicates removed, sorted.
pub fn validate_dns_names(names: &[String]) -> Result<Vec<String>, DomainError> {
    if names.len() > 32 {
        return Err(DomainError::invalid(
            "allowed_dns_names",
            "at most 32 names are allowed",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        let lower = n.to_ascii_lowercase();
        let host = lower.strip_prefix("*.").unwrap_or(&lower);
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(DomainError::invalid(
                "allowed_dns_names",
                format!(
                    "{n:?} is not a DNS name (letters, digits, '-', dots; optionally '*.' first)"
                ),
            ));
        }
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    out.sort();
    Ok(out)
}

/// Identity names: 1–63 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
/// The charset keeps names safe inside SPIFFE IDs, DNS-like labels and file names.
pub fn validate_name(name: &str) -> Result<String, DomainError> {
    if name.is_empty() || name.len() > 63 {
        return Err(DomainError::invalid("name", "must be 1 to 63 characters"));
    }
    let first_ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !first_ok || !rest_ok {
        return Err(DomainError::invalid(
            "name",
            "may contain only lowercase letters, digits, '.', '_' and '-', and must start with a letter or digit",
        ));
    }
    Ok(name.to_owned())
}

fn validate_purpose(p: &str) -> Result<String, DomainError> {
    let p = p.trim();
    if p.is_empty() {
        return Err(DomainError::invalid("purpose", "must not be empty"));
    }
    if p.chars().count() > 1024 || p.chars().any(|c| c.is_control() && c != '\n') {
        return Err(DomainError::invalid(
            "purpose",
            "must be at most 1024 characters without control characters",
        ));
    }
    Ok(p.to_owned())
}

fn validate_reason(r: &str) -> Result<(), DomainError> {
    if r.chars().count() > 1024 || r.chars().any(|c| c.is_control() && c != '\n') {
        return Err(DomainError::invalid(
            "reason",
            "must be at most 1024 characters without control characters",
        ));
    }
    Ok(())
}

fn validate_expiry(
    kind: IdentityKind,
    expires_at: OffsetDateTime,
    policy: &RegistryPolicy,
    now: OffsetDateTime,
) -> Result<(), DomainError> {
    if expires_at <= now {
        return Err(DomainError::invalid("expires_at", "must be in the future"));
    }
    let max = policy.max_identity_lifetime(kind);
    if expires_at - now > max {
        return Err(DomainError::invalid(
            "expires_at",
            format!(
                "is past the maximum lifetime of {} days for {} identities (latest allowed: {})",
                max.whole_days(),
                kind.as_str(),
                (now + max)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn validate_default_scopes(
    default: &[String],
    allowed: &[String],
) -> Result<Vec<String>, DomainError> {
    let d = scope::normalize_scopes(default)?;
    if !scope::is_subset(&d, allowed) {
        return Err(DomainError::invalid(
            "default_scopes",
            "must be a subset of scopes",
        ));
    }
    Ok(d)
}

fn validate_audiences(a: &[String]) -> Result<Vec<String>, DomainError> {
    if a.len() > 32 {
        return Err(DomainError::invalid(
            "audiences",
            "at most 32 audiences are allowed",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(a.len());
    for x in a {
        if x.is_empty() || x.len() > 256 || x.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(DomainError::invalid(
                "audiences",
                "each audience must be 1 to 256 characters without spaces",
            ));
        }
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn validate_labels(
    labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, DomainError> {
    if labels.len() > 32 {
        return Err(DomainError::invalid(
            "labels",
            "at most 32 labels are allowed",
        ));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"./_-".contains(&b));
        if !key_ok {
            return Err(DomainError::invalid(
                "labels",
                format!(
                    "label key {k:?} must be 1 to 63 characters of letters, digits, '.', '/', '_' or '-'"
                ),
            ));
        }
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "labels",
                format!("label {k:?} has a value over 256 characters or with control characters"),
            ));
        }
    }
    Ok(labels.clone())
}

fn validate_vendor(
    kind: IdentityKind,
    vendor: Option<&str>,
) -> Result<Option<String>, DomainError> {
    match (kind, vendor.map(str::trim)) {
        (IdentityKind::Integration, None | Some("")) => Err(DomainError::invalid(
            "vendor",
            "is required for integration identities",
        )),
        (_, Some(v)) if v.chars().count() > 128 || v.chars().any(char::is_control) => Err(
            DomainError::invalid("vendor", "must be at most 128 characters"),
        ),
        (_, None | Some("")) => Ok(None),
        (_, Some(v)) => Ok(Some(v.to_owned())),
    }
}

fn validate_token_lifetime(t: Option<u32>, policy: &RegistryPolicy) -> Result<(), DomainError> {
    match t {
        Some(secs) if secs < 30 || secs > policy.max_token_lifetime_secs => {
            Err(DomainError::invalid(
                "token_lifetime_secs",
                format!(
                    "must be between 30 and {} seconds",
                    policy.max_token_lifetime_secs
                ),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OwnerKind, owner::Owner};
    use time::Duration;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn owner() -> Owner {
        Owner::new(
            Uuid::from_u128(1),
            "team-a",
            OwnerKind::Team,
            "a@example.com",
            now(),
        )
        .unwrap()
    }

    fn req(kind: IdentityKind) -> NewIdentity {
        NewIdentity {
            name: "payments-api".into(),
            kind: Some(kind),
            owner_id: Uuid::from_u128(1),
            purpose: "charges cards".into(),
            environment: "prod".into(),
            expires_at: Some(now() + Duration::days(30)),
            scopes: vec!["p:read".into(), "p:write".into()],
            default_scopes: Some(vec!["p:read".into()]),
            ..Default::default()
        }
    }

    fn create(kind: IdentityKind) -> Result<Identity, DomainError> {
        let mut r = req(kind);
        if kind == IdentityKind::Integration {
            r.vendor = Some("acme".into());
        }
        Identity::create(
            Uuid::from_u128(2),
            r,
            &owner(),
            &RegistryPolicy::default(),
            "alice",
            now(),
        )
    }

    #[test]
    fn integration_needs_approval_by_someone_else() {
        let mut i = create(IdentityKind::Integration).unwrap();
        assert_eq!(i.status, IdentityStatus::PendingApproval);
        assert_eq!(
            i.check_can_authenticate(now()),
            Err("identity is pending approval")
        );
        assert!(matches!(
            i.transition(LifecycleAction::Approve, "alice", None, now()),
            Err(DomainError::SeparationOfDuties(_))
        ));
        i.transition(LifecycleAction::Approve, "bob", None, now())
            .unwrap();
        assert_eq!(i.status, IdentityStatus::Active);
        assert_eq!(i.approved_by.as_deref(), Some("bob"));
    }

    #[test]
    fn integration_requires_vendor_and_shorter_expiry() {
        let mut r = req(IdentityKind::Integration);
        let p = RegistryPolicy::default();
        assert!(Identity::create(Uuid::nil(), r.clone(), &owner(), &p, "a", now()).is_err());
        r.vendor = Some("acme".into());
        r.expires_at = Some(now() + Duration::days(91));
        let e = Identity::create(Uuid::nil(), r, &owner(), &p, "a", now()).unwrap_err();
        assert!(e.to_string().contains("90 days"), "{e}");
    }

    /// Every (action, state) pair: the table is the specification of the state machine.
    #[test]
    fn state_machine_table() {
        use IdentityStatus as S;
        use LifecycleAction as A;
        let cases: &[(S, A, Option<S>)] = &[
            (S::PendingApproval, A::Approve, Some(S::Active)),
            (S::PendingApproval, A::Suspend, None),
            (S::PendingApproval, A::Resume, None),
            (S::PendingApproval, A::Retire, Some(S::Retired)),
            (S::Active, A::Approve, None),
            (S::Active, A::Suspend, Some(S::Suspended)),
            (S::Active, A::Resume, None),
            (S::Active, A::Retire, Some(S::Retired)),
            (S::Suspended, A::Approve, None),
            (S::Suspended, A::Suspend, None),
            (S::Suspended, A::Resume, Some(S::Active)),
            (S::Suspended, A::Retire, Some(S::Retired)),
            (S::Retired, A::Approve, None),
            (S::Retired, A::Suspend, None),
            (S::Retired, A::Resume, None),
            (S::Retired, A::Retire, None),
        ];
        for (from, action, to) in cases {
            let mut i = create(IdentityKind::Workload).unwrap();
            i.status = *from;
            let r = i.transition(*action, "bob", None, now());
            match to {
                Some(t) => {
                    assert!(
                        r.is_ok(),
                        "{from:?} --{action:?}--> should be allowed: {r:?}"
                    );
                    assert_eq!(i.status, *t);
                }
                None => assert!(
                    matches!(r, Err(DomainError::IllegalTransition { .. })),
                    "{from:?} --{action:?}--> should be refused, got {r:?}"
                ),
            }
        }
    }

    #[test]
    fn expiry_is_derived_and_blocks_everything_but_retire() {
        let mut i = create(IdentityKind::Workload).unwrap();
        let later = i.expires_at + Duration::seconds(1);
        assert_eq!(i.effective_status(later), IdentityStatus::Expired);
        assert_eq!(i.check_can_authenticate(later), Err("identity has expired"));
        assert!(
            i.transition(LifecycleAction::Suspend, "b", None, later)
                .is_err()
        );
        i.transition(LifecycleAction::Retire, "b", None, later)
            .unwrap();
        assert_eq!(i.effective_status(later), IdentityStatus::Retired);
    }

    #[test]
    fn retire_cuts_tokens() {
        let mut i = create(IdentityKind::Workload).unwrap();
        let issued = now();
        i.transition(
            LifecycleAction::Retire,
            "b",
            Some("decommissioned".into()),
            now() + Duration::seconds(5),
        )
        .unwrap();
        assert!(
            i.token_still_valid(issued, now() + Duration::seconds(6))
                .is_err()
        );
    }

    #[test]
    fn names() {
        for ok in ["a", "payments-api", "db.primary_1", "9lives"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "Upper", "has space", "slash/no", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_must_be_subset_and_narrow_with_scopes() {
        let mut r = req(IdentityKind::Workload);
        r.default_scopes = Some(vec!["other".into()]);
        assert!(
            Identity::create(
                Uuid::nil(),
                r,
                &owner(),
                &RegistryPolicy::default(),
                "a",
                now()
            )
            .is_err()
        );
        let mut i = create(IdentityKind::Workload).unwrap();
        i.apply_patch(
            IdentityPatch {
                scopes: Some(vec!["p:write".into()]),
                ..Default::default()
            },
            None,
            &RegistryPolicy::default(),
            now(),
        )
        .unwrap();
        assert!(i.default_scopes.is_empty());
    }

    #[test]
    fn departed_owner_refused() {
        let mut o = owner();
        o.depart(now()).unwrap();
        let e = Identity::create(
            Uuid::nil(),
            req(IdentityKind::Workload),
            &o,
            &RegistryPolicy::default(),
            "a",
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, DomainError::OwnerDeparted(_)));
    }

    #[test]
    fn allowed_dns_names_validate_and_match() {
        let names = vec![
            "API.internal".into(),
            "*.svc.internal".into(),
            "api.internal".into(),
        ];
        let v = validate_dns_names(&names).unwrap();
        assert_eq!(v, vec!["*.svc.internal", "api.internal"]);
        assert!(validate_dns_names(&["bad name".into()]).is_err());
        assert!(validate_dns_names(&["-x.internal".into()]).is_err());
        assert!(validate_dns_names(&["a..b".into()]).is_err());
        let mut i = create(IdentityKind::Workload).unwrap();
        i.allowed_dns_names = v;
        assert!(i.allows_dns_name("api.internal"));
        assert!(i.allows_dns_name("Pay.svc.internal"));
        assert!(!i.allows_dns_name("a.b.svc.internal"));
        assert!(!i.allows_dns_name("svc.internal"));
        assert!(!i.allows_dns_name("evil.com"));
    }
}

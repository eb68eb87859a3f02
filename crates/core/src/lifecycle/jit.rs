//! Just-in-time elevation: extra scopes for one identity, requested with a reason, approved by
//! someone else, active for a bounded window from approval, then gone on their own.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{check_two_person, validate_justification};
use crate::{DomainError, Identity, IdentityStatus, scope};

/// Shortest window a grant may have, in seconds.
pub const MIN_JIT_SECS: u32 = 60;
/// Most extra scopes one grant may carry.
pub const MAX_JIT_SCOPES: usize = 16;

/// Stored state of a grant. `expired` is derived (approved and past `expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitStatus {
    Pending,
    Approved,
    Denied,
    /// Taken back before its window ended (operator revocation, offboarding).
    Revoked,
}

impl JitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Revoked]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// A request for (and, once approved, the grant of) extra scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitGrant {
    pub id: Uuid,
    pub identity_id: Uuid,
    /// The extra scopes, none of which the identity holds permanently.
    pub scopes: Vec<String>,
    pub reason: String,
    pub requested_by: String,
    /// Length of the window, counted from approval.
    pub duration_secs: u32,
    pub status: JitStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub decision_reason: Option<String>,
    /// The window: set on approval.
    pub starts_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub version: i64,
}

/// Limits on elevation requests (from the server configuration).
#[derive(Debug, Clone, Copy)]
pub struct JitLimits {
    /// Longest window that may be requested, in seconds.
    pub max_secs: u32,
    /// How long a request may wait for approval, in seconds.
    pub pending_secs: u32,
}

/// What a requester asks for.
#[derive(Debug, Clone)]
pub struct JitRequest {
    pub scopes: Vec<String>,
    pub duration_secs: u32,
    pub reason: String,
}

impl JitGrant {
    /// Validates a request for `identity` (which must be active) made by `requester`.
    pub fn request(
        id: Uuid,
        identity: &Identity,
        req: &JitRequest,
        limits: JitLimits,
        requester: &str,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        let (scopes, duration_secs, reason) = (&req.scopes, req.duration_secs, &req.reason);
        if identity.effective_status(now) != IdentityStatus::Active {
            return Err(DomainError::Conflict(format!(
                "identity {} is {}: only active identities can be elevated",
                identity.id,
                identity.effective_status(now).as_str()
            )));
        }
        let scopes = scope::normalize_scopes(scopes)?;
        if scopes.is_empty() || scopes.len() > MAX_JIT_SCOPES {
            return Err(DomainError::invalid(
                "scopes",
                format!("name 1 to {MAX_JIT_SCOPES} extra scopes"),
            ));
        }
        if let Some(held) = scopes.iter().find(|s| identity.scopes.contains(s)) {
            return Err(DomainError::invalid(
                "scopes",
                format!("the identity already holds {held}; request only extra scopes"),
            ));
        }
        if duration_secs < MIN_JIT_SECS || duration_secs > limits.max_secs {
            return Err(DomainError::invalid(
                "duration_secs",
                format!(
                    "must be between {MIN_JIT_SECS} and {} seconds",
                    limits.max_secs
                ),
            ));
        }
        Ok(Self {
            id,
            identity_id: identity.id,
            scopes,
            reason: validate_justification("reason", reason)?,
            requested_by: requester.to_owned(),
            duration_secs,
            status: JitStatus::Pending,
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            starts_at: None,
            expires_at: None,
            created_at: now,
            version: 1,
        })
    }

    /// Approves a pending request: the window runs from `now` for `duration_secs`. The approver
    /// is neither the requester nor the elevated identity; the identity must still be active
    /// and the request not older than `limits.pending_secs`.
    pub fn approve(
        &mut self,
        approver: &str,
        identity: &Identity,
        limits: JitLimits,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        self.expect_pending()?;
        check_two_person(approver, &self.requested_by, self.identity_id, "jit")?;
        if now - self.created_at > Duration::seconds(i64::from(limits.pending_secs)) {
            return Err(DomainError::Conflict(format!(
                "elevation request {} waited longer than {} seconds for approval; request it again",
                self.id, limits.pending_secs
            )));
        }
        if identity.effective_status(now) != IdentityStatus::Active {
            return Err(DomainError::Conflict(format!(
                "identity {} is no longer active",
                identity.id
            )));
        }
        self.status = JitStatus::Approved;
        self.decided_by = Some(approver.to_owned());
        self.decided_at = Some(now);
        self.starts_at = Some(now);
        self.expires_at = Some(now + Duration::seconds(i64::from(self.duration_secs)));
        self.version += 1;
        Ok(())
    }

    /// Denies (or, by its requester, withdraws) a pending request.
    pub fn deny(
        &mut self,
        actor: &str,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        self.expect_pending()?;
        self.decision_reason = reason
            .map(|r| validate_justification("reason", r))
            .transpose()?;
        self.status = JitStatus::Denied;
        self.decided_by = Some(actor.to_owned());
        self.decided_at = Some(now);
        self.version += 1;
        Ok(())
    }

    /// Ends an approved, still-running grant (or a pending request) now.
    pub fn revoke(
        &mut self,
        actor: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        let running = self.status == JitStatus::Approved && self.is_active(now);
        if !running && self.status != JitStatus::Pending {
            return Err(DomainError::Conflict(format!(
                "elevation {} is {} and cannot be revoked",
                self.id,
                self.effective_status(now)
            )));
        }
        self.decision_reason = Some(validate_justification("reason", reason)?);
        self.status = JitStatus::Revoked;
        if self.decided_by.is_none() {
            self.decided_by = Some(actor.to_owned());
            self.decided_at = Some(now);
        }
        // A revoked window ends now (kept for the record when it had started).
        if self.expires_at.is_some_and(|e| e > now) {
            self.expires_at = Some(now);
        }
        self.version += 1;
        Ok(())
    }

    /// Can this grant still take effect (pending, or approved and not yet expired)?
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.status == JitStatus::Pending || self.is_active(now)
    }

    /// Is the window open at `now`?
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.status == JitStatus::Approved
            && self.starts_at.is_some_and(|s| s <= now)
            && self.expires_at.is_some_and(|e| now < e)
    }

    /// `pending`, `approved` (window open), `expired`, `denied` or `revoked`.
    pub fn effective_status(&self, now: OffsetDateTime) -> &'static str {
        match self.status {
            JitStatus::Approved if !self.is_active(now) => "expired",
            s => s.as_str(),
        }
    }

    fn expect_pending(&self) -> Result<(), DomainError> {
        if self.status != JitStatus::Pending {
            return Err(DomainError::Conflict(format!(
                "elevation request {} is already {}",
                self.id,
                self.status.as_str()
            )));
        }
        Ok(())
    }
}

/// The part of an approved grant the token path needs (kept in memory on every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveGrant {
    pub id: Uuid,
    pub identity_id: Uuid,
    pub scopes: Vec<String>,
    pub expires_at: OffsetDateTime,
}

impl ActiveGrant {
    /// The grant's token-path view, if it is active at `now`.
    pub fn of(g: &JitGrant, now: OffsetDateTime) -> Option<Self> {
        match (g.is_active(now), g.expires_at) {
            (true, Some(expires_at)) => Some(Self {
                id: g.id,
                identity_id: g.identity_id,
                scopes: g.scopes.clone(),
                expires_at,
            }),
            _ => None,
        }
    }

    /// Seconds a token issued at `now` with this grant may live: the normal lifetime, cut at
    /// the end of the window so that no token outlives its elevation.
    pub fn cap_lifetime(&self, lifetime_secs: i64, now: OffsetDateTime) -> i64 {
        lifetime_secs.min((self.expires_at - now).whole_seconds().max(0))
    }
}

/// The grant that lets a token carry `extra` (scopes beyond the identity's own) at `now`: one
/// active grant must cover all of them; among several, the one running longest wins.
pub fn covering_grant<'a>(
    grants: &'a [ActiveGrant],
    extra: &[String],
    now: OffsetDateTime,
) -> Option<&'a ActiveGrant> {
    if extra.is_empty() {
        return None;
    }
    grants
        .iter()
        .filter(|g| now < g.expires_at && scope::is_subset(extra, &g.scopes))
        .max_by_key(|g| g.expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Owner, OwnerKind, RegistryPolicy};

    const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);
    const LIMITS: JitLimits = JitLimits {
        max_secs: 8 * 3600,
        pending_secs: 24 * 3600,
    };

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    fn ask(scopes: &[&str], secs: u32, reason: &str) -> JitRequest {
        JitRequest {
            scopes: v(scopes),
            duration_secs: secs,
            reason: reason.into(),
        }
    }

    fn identity() -> Identity {
        let owner = Owner::new(Uuid::from_u128(9), "team", OwnerKind::Team, "t@e.io", T0).unwrap();
        Identity::create(
            Uuid::from_u128(1),
            crate::identity::NewIdentity {
                name: "svc".into(),
                kind: Some(crate::IdentityKind::Workload),
                owner_id: owner.id,
                purpose: "p".into(),
                environment: "prod".into(),
                expires_at: Some(T0 + Duration::days(30)),
                scopes: v(&["read"]),
                ..Default::default()
            },
            &owner,
            &RegistryPolicy::default(),
            "creator",
            T0,
        )
        .unwrap()
    }

    fn requested() -> JitGrant {
        JitGrant::request(
            Uuid::from_u128(5),
            &identity(),
            &ask(&["write", "admin:db"], 3600, "incident 42: repair ledger"),
            LIMITS,
            "alice",
            T0,
        )
        .unwrap()
    }

    #[test]
    fn requests_are_validated() {
        let i = identity();
        let req = |scopes: &[&str], secs: u32, reason: &str| {
            JitGrant::request(
                Uuid::nil(),
                &i,
                &ask(scopes, secs, reason),
                LIMITS,
                "alice",
                T0,
            )
        };
        assert!(req(&["write"], 3600, "why").is_ok());
        assert!(req(&[], 3600, "why").is_err(), "no scopes");
        assert!(req(&["read"], 3600, "why").is_err(), "already held");
        assert!(req(&["write"], 59, "why").is_err(), "too short");
        assert!(req(&["write"], 8 * 3600 + 1, "why").is_err(), "too long");
        assert!(req(&["write"], 3600, "  ").is_err(), "no reason");
        assert!(req(&["bad scope"], 3600, "why").is_err(), "syntax");
        let mut suspended = i.clone();
        suspended.status = IdentityStatus::Suspended;
        assert!(
            JitGrant::request(
                Uuid::nil(),
                &suspended,
                &ask(&["write"], 3600, "why"),
                LIMITS,
                "alice",
                T0
            )
            .is_err()
        );
    }

    #[test]
    fn window_runs_from_approval() {
        let mut g = requested();
        assert_eq!(g.scopes, v(&["admin:db", "write"]));
        assert!(!g.is_active(T0));
        assert!(g.is_open(T0));
        let approved_at = T0 + Duration::minutes(10);
        g.approve("bob", &identity(), LIMITS, approved_at).unwrap();
        assert_eq!(g.expires_at, Some(approved_at + Duration::hours(1)));
        assert!(!g.is_active(approved_at - Duration::seconds(1)));
        assert!(g.is_active(approved_at));
        assert!(g.is_active(approved_at + Duration::minutes(59)));
        assert!(!g.is_active(approved_at + Duration::hours(1)));
        assert_eq!(
            g.effective_status(approved_at + Duration::hours(2)),
            "expired"
        );
        assert!(!g.is_open(approved_at + Duration::hours(1)));
        // Approved once.
        assert!(
            g.approve("carol", &identity(), LIMITS, approved_at)
                .is_err()
        );
    }

    #[test]
    fn approval_separation_of_duties_and_staleness() {
        let i = identity();
        assert!(matches!(
            requested().approve("alice", &i, LIMITS, T0),
            Err(DomainError::SeparationOfDuties(_))
        ));
        assert!(matches!(
            requested().approve(&i.id.to_string(), &i, LIMITS, T0),
            Err(DomainError::SeparationOfDuties(_))
        ));
        let late = T0 + Duration::seconds(i64::from(LIMITS.pending_secs) + 1);
        assert!(matches!(
            requested().approve("bob", &i, LIMITS, late),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn deny_and_revoke() {
        let mut g = requested();
        g.deny("alice", Some("not needed after all"), T0).unwrap();
        assert_eq!(g.status, JitStatus::Denied);
        assert!(g.approve("bob", &identity(), LIMITS, T0).is_err());
        assert!(g.revoke("bob", "x", T0).is_err());

        let mut g = requested();
        g.approve("bob", &identity(), LIMITS, T0).unwrap();
        let cut = T0 + Duration::minutes(5);
        g.revoke("bob", "incident closed", cut).unwrap();
        assert_eq!(g.expires_at, Some(cut));
        assert!(!g.is_active(cut));
        assert_eq!(g.effective_status(cut), "revoked");
        assert!(g.revoke("bob", "again", cut).is_err());

        // An expired grant is over already.
        let mut g = requested();
        g.approve("bob", &identity(), LIMITS, T0).unwrap();
        assert!(g.revoke("bob", "late", T0 + Duration::hours(2)).is_err());
    }

    #[test]
    fn covering_grant_and_lifetime_cap() {
        let a = ActiveGrant {
            id: Uuid::from_u128(1),
            identity_id: Uuid::nil(),
            scopes: v(&["a", "b"]),
            expires_at: T0 + Duration::minutes(30),
        };
        let b = ActiveGrant {
            id: Uuid::from_u128(2),
            identity_id: Uuid::nil(),
            scopes: v(&["a"]),
            expires_at: T0 + Duration::hours(2),
        };
        let grants = [a.clone(), b.clone()];
        assert_eq!(covering_grant(&grants, &v(&["a"]), T0), Some(&b));
        assert_eq!(covering_grant(&grants, &v(&["a", "b"]), T0), Some(&a));
        assert_eq!(covering_grant(&grants, &v(&["c"]), T0), None);
        assert_eq!(covering_grant(&grants, &[], T0), None);
        assert_eq!(
            covering_grant(&grants, &v(&["b"]), T0 + Duration::minutes(30)),
            None
        );
        assert_eq!(a.cap_lifetime(600, T0), 600);
        assert_eq!(a.cap_lifetime(3600, T0), 1800);
        assert_eq!(a.cap_lifetime(3600, T0 + Duration::hours(1)), 0);
        let mut g = requested();
        assert_eq!(ActiveGrant::of(&g, T0), None);
        g.approve("bob", &identity(), LIMITS, T0).unwrap();
        assert_eq!(ActiveGrant::of(&g, T0).map(|x| x.id), Some(g.id));
        assert_eq!(ActiveGrant::of(&g, T0 + Duration::hours(1)), None);
    }
}

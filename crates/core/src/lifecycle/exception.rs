//! Exception requests: a time-bound, justified waiver of one guard rail or one finding type for
//! one identity, requested by one person and approved by another; an expired waiver stops
//! applying on its own.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{check_two_person, validate_justification};
use crate::DomainError;
use crate::findings::FindingType;

/// Longest waiver anyone may approve, in days.
pub const MAX_EXCEPTION_DAYS: i64 = 90;

/// Finding types an exception may waive: every type the findings engine raises
/// ([`FindingType::ALL`], by the names the findings API shows). `secret_leaked` (leak reports)
/// is not one of them on purpose: a leaked key is revoked, never accepted.
pub const WAIVABLE_FINDING_TYPES: &[FindingType] = &FindingType::ALL;

/// Is `target` the name of a finding type an exception may waive?
pub fn is_waivable_finding_type(target: &str) -> bool {
    FindingType::parse(target).is_some_and(|t| WAIVABLE_FINDING_TYPES.contains(&t))
}

/// Checks what an exception names: a guard rail that takes exceptions (`guard_rails`), or a
/// finding type of [`WAIVABLE_FINDING_TYPES`].
pub fn validate_target(target: &str, guard_rails: &[&str]) -> Result<(), DomainError> {
    if guard_rails.contains(&target) || is_waivable_finding_type(target) {
        return Ok(());
    }
    let types: Vec<&str> = WAIVABLE_FINDING_TYPES.iter().map(|t| t.as_str()).collect();
    Err(DomainError::invalid(
        "guard_rail",
        format!(
            "{target:?} is neither a guard rail that takes exceptions ({}) nor a waivable finding type ({})",
            guard_rails.join(", "),
            types.join(", ")
        ),
    ))
}

/// The waiver window: in the future and at most [`MAX_EXCEPTION_DAYS`] away.
pub fn validate_expiry(expires_at: OffsetDateTime, now: OffsetDateTime) -> Result<(), DomainError> {
    if expires_at <= now {
        return Err(DomainError::invalid("expires_at", "must be in the future"));
    }
    if expires_at - now > Duration::days(MAX_EXCEPTION_DAYS) {
        return Err(DomainError::invalid(
            "expires_at",
            format!("an exception may last at most {MAX_EXCEPTION_DAYS} days"),
        ));
    }
    Ok(())
}

/// Does an approved exception expiring at `expires_at` still apply at `now`?
pub fn applies(expires_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    now < expires_at
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionRequestStatus {
    Pending,
    /// Approved: the exception itself is recorded with the same id.
    Approved,
    Denied,
}

impl ExceptionRequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Denied]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// A request for an exception, waiting for a second person's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRequest {
    pub id: Uuid,
    pub identity_id: Uuid,
    /// The guard rail's policy id or the finding type waived.
    pub target: String,
    pub reason: String,
    pub requested_by: String,
    pub expires_at: OffsetDateTime,
    pub status: ExceptionRequestStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub version: i64,
}

/// What a requester asks for.
#[derive(Debug, Clone)]
pub struct NewExceptionRequest {
    pub identity_id: Uuid,
    pub target: String,
    pub reason: String,
    pub expires_at: OffsetDateTime,
}

impl ExceptionRequest {
    /// Validates a request; `guard_rails` are the guard rails that take exceptions.
    pub fn new(
        id: Uuid,
        req: &NewExceptionRequest,
        guard_rails: &[&str],
        requester: &str,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        validate_target(&req.target, guard_rails)?;
        validate_expiry(req.expires_at, now)?;
        Ok(Self {
            id,
            identity_id: req.identity_id,
            target: req.target.clone(),
            reason: validate_justification("reason", &req.reason)?,
            requested_by: requester.to_owned(),
            expires_at: crate::truncate_micros(req.expires_at),
            status: ExceptionRequestStatus::Pending,
            decided_by: None,
            decided_at: None,
            created_at: now,
            version: 1,
        })
    }

    /// Approves: someone other than the requester (and not the identity itself), before the
    /// requested expiry.
    pub fn approve(&mut self, approver: &str, now: OffsetDateTime) -> Result<(), DomainError> {
        self.expect_pending()?;
        check_two_person(approver, &self.requested_by, self.identity_id, "exception")?;
        if !applies(self.expires_at, now) {
            return Err(DomainError::Conflict(format!(
                "exception request {} expired before it was approved",
                self.id
            )));
        }
        self.status = ExceptionRequestStatus::Approved;
        self.decided_by = Some(approver.to_owned());
        self.decided_at = Some(now);
        self.version += 1;
        Ok(())
    }

    /// Denies (or, by its requester, withdraws) a pending request.
    pub fn deny(&mut self, actor: &str, now: OffsetDateTime) -> Result<(), DomainError> {
        self.expect_pending()?;
        self.status = ExceptionRequestStatus::Denied;
        self.decided_by = Some(actor.to_owned());
        self.decided_at = Some(now);
        self.version += 1;
        Ok(())
    }

    fn expect_pending(&self) -> Result<(), DomainError> {
        if self.status != ExceptionRequestStatus::Pending {
            return Err(DomainError::Conflict(format!(
                "exception request {} is already {}",
                self.id,
                self.status.as_str()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);
    const RAILS: &[&str] = &["steward.env-isolation"];

    fn request(target: &str, expires_at: OffsetDateTime) -> Result<ExceptionRequest, DomainError> {
        ExceptionRequest::new(
            Uuid::from_u128(1),
            &NewExceptionRequest {
                identity_id: Uuid::from_u128(2),
                target: target.into(),
                reason: "vendor cannot federate until Q3".into(),
                expires_at,
            },
            RAILS,
            "alice",
            T0,
        )
    }

    #[test]
    fn every_finding_type_of_the_engine_is_waivable_by_its_api_name() {
        for t in FindingType::ALL {
            assert!(is_waivable_finding_type(t.as_str()), "{}", t.as_str());
            assert!(request(t.as_str(), T0 + Duration::days(1)).is_ok());
        }
        assert!(!is_waivable_finding_type("secret_leaked"));
        assert!(request("secret_leaked", T0 + Duration::days(1)).is_err());
        assert!(request("Dormant", T0 + Duration::days(1)).is_err());
    }

    #[test]
    fn targets_and_windows() {
        assert!(request("steward.env-isolation", T0 + Duration::days(1)).is_ok());
        assert!(
            request(
                "static_api_key_where_federation_possible",
                T0 + Duration::days(1)
            )
            .is_ok()
        );
        assert!(request("dormant", T0 + Duration::days(90)).is_ok());
        assert!(request("steward.scope-cap", T0 + Duration::days(1)).is_err());
        assert!(request("secret_leaked", T0 + Duration::days(1)).is_err());
        assert!(request("dormnt", T0 + Duration::days(1)).is_err());
        assert!(request("dormant", T0).is_err());
        assert!(request("dormant", T0 + Duration::days(91)).is_err());
    }

    #[test]
    fn validity_ends_on_its_own() {
        let end = T0 + Duration::days(7);
        assert!(applies(end, T0));
        assert!(applies(end, end - Duration::microseconds(1)));
        assert!(!applies(end, end));
        assert!(!applies(end, end + Duration::days(1)));
    }

    #[test]
    fn two_people_approve() {
        let mut r = request("dormant", T0 + Duration::days(7)).unwrap();
        assert!(matches!(
            r.approve("alice", T0),
            Err(DomainError::SeparationOfDuties(_))
        ));
        assert!(matches!(
            r.approve(&Uuid::from_u128(2).to_string(), T0),
            Err(DomainError::SeparationOfDuties(_))
        ));
        // Too late: the requested window is over.
        assert!(matches!(
            r.clone().approve("bob", T0 + Duration::days(7)),
            Err(DomainError::Conflict(_))
        ));
        r.approve("bob", T0 + Duration::hours(1)).unwrap();
        assert_eq!(r.status, ExceptionRequestStatus::Approved);
        assert_eq!(r.version, 2);
        assert!(r.approve("carol", T0).is_err());
        assert!(r.deny("carol", T0).is_err());
        let mut d = request("dormant", T0 + Duration::days(7)).unwrap();
        d.deny("alice", T0).unwrap();
        assert_eq!(d.status, ExceptionRequestStatus::Denied);
    }
}

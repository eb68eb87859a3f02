//! Lifecycle controls over identities: access reviews, just-in-time elevation and exception
//! requests — their records and pure rules (deadlines, windows, validity, separation of duties).
//!
//! Everything here is synchronous and takes `now` as a parameter; the server composes the
//! records into `Change`s and the store persists them.

pub mod exception;
pub mod jit;
pub mod review;

pub use exception::{ExceptionRequest, ExceptionRequestStatus};
pub use jit::{JitGrant, JitStatus};
pub use review::{
    CampaignStatus, DeadlineAction, ReviewCampaign, ReviewDecision, ReviewItem, ReviewSelection,
    RevokeMode,
};

use crate::DomainError;

/// The actor name background jobs act as.
pub const SYSTEM_ACTOR: &str = "system";

/// A justification or reason: 1–1000 characters after trimming, no control characters except
/// newlines. `field` names the request field in the error.
pub fn validate_justification(field: &'static str, text: &str) -> Result<String, DomainError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    if t.chars().count() > 1000 || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(DomainError::invalid(
            field,
            "must be at most 1000 characters without control characters",
        ));
    }
    Ok(t.to_owned())
}

/// Separation of duties for a two-person step: the one who approves (or decides) must be
/// neither the requester nor the identity the step is about.
pub fn check_two_person(
    approver: &str,
    requester: &str,
    subject_identity: uuid::Uuid,
    what: &'static str,
) -> Result<(), DomainError> {
    if approver == requester {
        return Err(DomainError::SeparationOfDuties(match what {
            "jit" => "the approver of an elevation must be someone other than its requester",
            "exception" => "the approver of an exception must be someone other than its requester",
            _ => "the approver must be someone other than the requester",
        }));
    }
    if approver == subject_identity.to_string() {
        return Err(DomainError::SeparationOfDuties(
            "an identity may not approve a change to its own access",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn justifications() {
        assert_eq!(
            validate_justification("justification", "  still needed  ").unwrap(),
            "still needed"
        );
        assert!(validate_justification("justification", "   ").is_err());
        assert!(validate_justification("justification", &"x".repeat(1001)).is_err());
        assert!(validate_justification("justification", "a\u{7}b").is_err());
        assert!(validate_justification("justification", "line one\nline two").is_ok());
    }

    #[test]
    fn two_person_rule() {
        let subject = Uuid::from_u128(7);
        assert!(check_two_person("alice", "bob", subject, "jit").is_ok());
        assert!(matches!(
            check_two_person("alice", "alice", subject, "jit"),
            Err(DomainError::SeparationOfDuties(_))
        ));
        assert!(matches!(
            check_two_person(&subject.to_string(), "bob", subject, "exception"),
            Err(DomainError::SeparationOfDuties(_))
        ));
    }
}

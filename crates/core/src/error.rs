//! Typed errors of the domain rules.
//! Each variant maps to one HTTP status at the edge; messages are safe to show (no secrets).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// A field is missing, malformed or out of range (400).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The requested lifecycle transition is not allowed from the current state (409).
    #[error("cannot {action} an identity that is {state}: {reason}")]
    IllegalTransition {
        action: &'static str,
        state: &'static str,
        reason: &'static str,
    },
    /// The same person may not both request and approve (403).
    #[error("separation of duties: {0}")]
    SeparationOfDuties(&'static str),
    /// An owner that has departed cannot take on new identities (409).
    #[error("owner {0} has departed and cannot own new identities")]
    OwnerDeparted(String),
    /// Other conflicts with current state (409).
    #[error("{0}")]
    Conflict(String),
}

impl DomainError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

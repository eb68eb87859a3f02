//! Steward's domain model: owners, identities, credentials, their lifecycle rules, and audit events.
//! Pure and synchronous: no I/O, no clock reads (time is always a parameter), no crypto backends.
#![forbid(unsafe_code)]

pub mod apikey;
pub mod audit;
pub mod authn;
pub mod clock;
pub mod credential;
pub mod error;
pub mod identity;
pub mod lifecycle;
pub mod owner;
pub mod policy;
pub mod scope;
pub mod trust;

pub mod entitlements;
pub mod findings;
pub mod netaddr;
pub mod risk;
#[cfg(test)]
mod test_support;
pub mod usage;

pub use audit::{AuditEvent, AuditRecord, CanonicalTail, Outcome};
pub use clock::{Clock, ManualClock, SystemClock};
pub use credential::{Credential, CredentialKind, CredentialState};
pub use error::DomainError;
pub use identity::{Identity, IdentityKind, IdentityStatus, LifecycleAction};
pub use owner::{Owner, OwnerKind, OwnerStatus};
pub use policy::RegistryPolicy;

/// Timestamps everywhere in Steward are UTC `OffsetDateTime`s.
pub type Timestamp = time::OffsetDateTime;

/// Microseconds since the Unix epoch: the storage representation of a [`Timestamp`].
pub fn to_micros(t: Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// Inverse of [`to_micros`]; out-of-range values clamp to the epoch rather than panic.
pub fn from_micros(us: i64) -> Timestamp {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Truncates a timestamp to microsecond precision, so values survive a round trip through storage.
pub fn truncate_micros(t: Timestamp) -> Timestamp {
    from_micros(to_micros(t))
}

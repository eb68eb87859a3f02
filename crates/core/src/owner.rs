//! Owners: the people and teams accountable for machine identities.
//! An identity without an active owner is orphaned; `depart` records that an owner is gone.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    Person,
    Team,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OwnerStatus {
    Active,
    Departed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub id: Uuid,
    pub name: String,
    pub kind: OwnerKind,
    pub contact: String,
    pub status: OwnerStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub departed_at: Option<OffsetDateTime>,
    /// Optimistic-concurrency version, bumped on every update.
    pub version: i64,
}

impl Owner {
    /// Builds a new active owner after validating its fields.
    pub fn new(
        id: Uuid,
        name: &str,
        kind: OwnerKind,
        contact: &str,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        let name = validate_owner_name(name)?;
        let contact = validate_contact(contact)?;
        Ok(Self {
            id,
            name,
            kind,
            contact,
            status: OwnerStatus::Active,
            created_at: now,
            departed_at: None,
            version: 1,
        })
    }

    pub fn is_active(&self) -> bool {
        self.status == OwnerStatus::Active
    }

    /// Marks the owner as departed; departing twice is a conflict.
    pub fn depart(&mut self, now: OffsetDateTime) -> Result<(), DomainError> {
        if self.status == OwnerStatus::Departed {
            return Err(DomainError::Conflict(format!(
                "owner {} has already departed",
                self.id
            )));
        }
        self.status = OwnerStatus::Departed;
        self.departed_at = Some(now);
        self.version += 1;
        Ok(())
    }
}

/// Owner names: 1–128 printable characters, no control characters, trimmed.
pub fn validate_owner_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(DomainError::invalid("name", "must not be empty"));
    }
    if name.chars().count() > 128 {
        return Err(DomainError::invalid(
            "name",
            "must be at most 128 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// A contact is an email address (`a@b.c`), a chat channel (`#ops`, `slack:#ops`) or a URL.
pub fn validate_contact(contact: &str) -> Result<String, DomainError> {
    let c = contact.trim();
    if c.is_empty() {
        return Err(DomainError::invalid("contact", "must not be empty"));
    }
    if c.len() > 256 || c.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
        return Err(DomainError::invalid(
            "contact",
            "must be at most 256 characters without spaces or control characters",
        ));
    }
    let is_email = c.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
    });
    let is_channel = c.starts_with('#') && c.len() > 1
        || c.split_once(":#")
            .is_some_and(|(sys, ch)| !sys.is_empty() && !ch.is_empty());
    let is_url = c.starts_with("https://") || c.starts_with("mailto:");
    if is_email || is_channel || is_url {
        Ok(c.to_owned())
    } else {
        Err(DomainError::invalid(
            "contact",
            "must be an email address, a channel such as #team-ops or slack:#team-ops, or an https:// URL",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts() {
        for ok in [
            "a@b.io",
            "payments@example.com",
            "#ops",
            "slack:#payments",
            "https://x.example/oncall",
        ] {
            assert!(validate_contact(ok).is_ok(), "{ok}");
        }
        for bad in ["", "nobody", "a@b", "@b.com", "a b@c.d", "#", "a@.com"] {
            assert!(validate_contact(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn depart_twice_is_conflict() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut o = Owner::new(Uuid::nil(), "team", OwnerKind::Team, "t@e.io", now).unwrap();
        o.depart(now).unwrap();
        assert_eq!(o.status, OwnerStatus::Departed);
        assert!(matches!(o.depart(now), Err(DomainError::Conflict(_))));
    }
}

//! Row mapping shared by both backends: stored columns to domain types, with every malformed value
//! reported as `StoreError::Corrupt` naming the column (never the value, which may be sensitive).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use steward_core::{
    AuditEvent, AuditRecord, Credential, CredentialKind, Identity, IdentityKind, IdentityStatus,
    Outcome, Owner, OwnerKind, OwnerStatus, from_micros,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Dialect, Row};
use crate::{CheckpointRecord, SigningKeyRecord, StoreError};

/// Typed, corruption-checked access to the columns of one row.
pub(crate) struct Cols<'r, D: Dialect> {
    row: &'r Row<D>,
    table: &'static str,
    _dialect: PhantomData<D>,
}

fn corrupt(table: &str, col: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}.{col}: {why}"))
}

impl<'r, D: Dialect> Cols<'r, D> {
    pub(crate) fn new(row: &'r Row<D>, table: &'static str) -> Self {
        Self {
            row,
            table,
            _dialect: PhantomData,
        }
    }

    fn required<T>(&self, col: &str, v: Result<Option<T>, sqlx::Error>) -> Result<T, StoreError> {
        v.map_err(|e| corrupt(self.table, col, e))?
            .ok_or_else(|| corrupt(self.table, col, "unexpected NULL"))
    }

    pub(crate) fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.required(col, D::get_int(self.row, col))
    }
    pub(crate) fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        D::get_int(self.row, col).map_err(|e| corrupt(self.table, col, e))
    }
    pub(crate) fn unsigned(&self, col: &str) -> Result<u64, StoreError> {
        u64::try_from(self.int(col)?).map_err(|_| corrupt(self.table, col, "negative value"))
    }
    pub(crate) fn text(&self, col: &str) -> Result<String, StoreError> {
        self.required(col, D::get_text(self.row, col))
    }
    pub(crate) fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        D::get_text(self.row, col).map_err(|e| corrupt(self.table, col, e))
    }
    pub(crate) fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.required(col, D::get_bytes(self.row, col))
    }
    pub(crate) fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        D::get_bytes(self.row, col).map_err(|e| corrupt(self.table, col, e))
    }
    pub(crate) fn flag(&self, col: &str) -> Result<bool, StoreError> {
        self.required(col, D::get_bool(self.row, col))
    }
    pub(crate) fn uuid(&self, col: &str) -> Result<Uuid, StoreError> {
        self.required(col, D::get_uuid(self.row, col))
    }
    pub(crate) fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, StoreError> {
        D::get_uuid(self.row, col).map_err(|e| corrupt(self.table, col, e))
    }
    pub(crate) fn time(&self, col: &str) -> Result<OffsetDateTime, StoreError> {
        Ok(from_micros(self.int(col)?))
    }
    pub(crate) fn opt_time(&self, col: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(self.opt_int(col)?.map(from_micros))
    }
    pub(crate) fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        serde_json::from_str(&self.text(col)?)
            .map_err(|e| corrupt(self.table, col, format!("invalid JSON: {e}")))
    }
    pub(crate) fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>, StoreError> {
        self.opt_text(col)?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| corrupt(self.table, col, format!("invalid JSON: {e}")))
    }
    pub(crate) fn hash(&self, col: &str) -> Result<[u8; 32], StoreError> {
        <[u8; 32]>::try_from(self.bytes(col)?.as_slice())
            .map_err(|_| corrupt(self.table, col, "expected 32 bytes"))
    }
    /// A text column holding one of an enum's names.
    pub(crate) fn parsed<T>(
        &self,
        col: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let s = self.text(col)?;
        parse(&s).ok_or_else(|| corrupt(self.table, col, format!("unknown value {s:?}")))
    }
}

pub(crate) fn owner_kind_str(k: OwnerKind) -> &'static str {
    match k {
        OwnerKind::Person => "person",
        OwnerKind::Team => "team",
    }
}

fn parse_owner_kind(s: &str) -> Option<OwnerKind> {
    [OwnerKind::Person, OwnerKind::Team]
        .into_iter()
        .find(|k| owner_kind_str(*k) == s)
}

pub(crate) fn owner_status_str(s: OwnerStatus) -> &'static str {
    match s {
        OwnerStatus::Active => "active",
        OwnerStatus::Departed => "departed",
    }
}

fn parse_owner_status(s: &str) -> Option<OwnerStatus> {
    [OwnerStatus::Active, OwnerStatus::Departed]
        .into_iter()
        .find(|k| owner_status_str(*k) == s)
}

/// Identity statuses that may be stored (`expired` is derived, never stored).
fn parse_stored_identity_status(s: &str) -> Option<IdentityStatus> {
    IdentityStatus::parse(s).filter(|st| *st != IdentityStatus::Expired)
}

pub(crate) fn owner<D: Dialect>(row: &Row<D>) -> Result<Owner, StoreError> {
    let c = Cols::<D>::new(row, "owners");
    Ok(Owner {
        id: c.uuid("id")?,
        name: c.text("name")?,
        kind: c.parsed("kind", parse_owner_kind)?,
        contact: c.text("contact")?,
        status: c.parsed("status", parse_owner_status)?,
        created_at: c.time("created_at")?,
        departed_at: c.opt_time("departed_at")?,
        version: c.int("version")?,
    })
}

pub(crate) fn identity<D: Dialect>(row: &Row<D>) -> Result<Identity, StoreError> {
    let c = Cols::<D>::new(row, "identities");
    let token_lifetime_secs = c
        .opt_int("token_lifetime_secs")?
        .map(u32::try_from)
        .transpose()
        .map_err(|_| corrupt("identities", "token_lifetime_secs", "out of range"))?;
    Ok(Identity {
        id: c.uuid("id")?,
        name: c.text("name")?,
        kind: c.parsed("kind", IdentityKind::parse)?,
        owner_id: c.uuid("owner_id")?,
        purpose: c.text("purpose")?,
        environment: c.text("environment")?,
        expires_at: c.time("expires_at")?,
        scopes: c.json("scopes")?,
        default_scopes: c.json("default_scopes")?,
        audiences: c.json("audiences")?,
        labels: c.json("labels")?,
        vendor: c.opt_text("vendor")?,
        status: c.parsed("status", parse_stored_identity_status)?,
        status_reason: c.opt_text("status_reason")?,
        token_lifetime_secs,
        require_dpop: c.flag("require_dpop")?,
        tokens_revoked_before: c.opt_time("tokens_revoked_before")?,
        created_by: c.text("created_by")?,
        approved_by: c.opt_text("approved_by")?,
        approved_at: c.opt_time("approved_at")?,
        created_at: c.time("created_at")?,
        updated_at: c.time("updated_at")?,
        version: c.int("version")?,
        allowed_dns_names: c.json("allowed_dns_names")?,
        may_act: c.json("may_act")?,
        allowed_source_cidrs: c.json("allowed_source_cidrs")?,
        review_due_at: c.opt_time("review_due_at")?,
    })
}

pub(crate) fn credential<D: Dialect>(row: &Row<D>) -> Result<Credential, StoreError> {
    let c = Cols::<D>::new(row, "credentials");
    Ok(Credential {
        id: c.uuid("id")?,
        identity_id: c.uuid("identity_id")?,
        kind: c.parsed("kind", CredentialKind::parse)?,
        secret_hash: c.opt_bytes("secret_hash")?,
        jwk: c.opt_json("jwk")?,
        fingerprint: c.text("fingerprint")?,
        created_at: c.time("created_at")?,
        expires_at: c.time("expires_at")?,
        last_used_at: c.opt_time("last_used_at")?,
        revoked_at: c.opt_time("revoked_at")?,
        revoke_reason: c.opt_text("revoke_reason")?,
        rotated_from: c.opt_uuid("rotated_from")?,
        created_by: c.text("created_by")?,
        version: c.int("version")?,
    })
}

pub(crate) fn audit_record<D: Dialect>(row: &Row<D>) -> Result<AuditRecord, StoreError> {
    let c = Cols::<D>::new(row, "audit");
    Ok(AuditRecord {
        seq: c.unsigned("seq")?,
        event: AuditEvent {
            time: c.time("time_us")?,
            actor: c.text("actor")?,
            action: c.text("action")?,
            target: c.opt_text("target")?,
            identity_id: c.opt_uuid("identity_id")?,
            outcome: c.parsed("outcome", Outcome::parse)?,
            reason: c.opt_text("reason")?,
            request_id: c.opt_text("request_id")?,
            source: c.opt_text("source")?,
            details: c.json("details")?,
        },
        leaf_hash: c.hash("leaf_hash")?,
        chain_hash: c.hash("chain_hash")?,
    })
}

pub(crate) fn signing_key<D: Dialect>(row: &Row<D>) -> Result<SigningKeyRecord, StoreError> {
    let c = Cols::<D>::new(row, "signing_keys");
    Ok(SigningKeyRecord {
        kid: c.text("kid")?,
        alg: c.text("alg")?,
        sealed_private_key: c.bytes("sealed_private_key")?,
        public_jwk: c.json("public_jwk")?,
        created_at: c.time("created_at")?,
        activates_at: c.time("activates_at")?,
        deactivates_at: c.time("deactivates_at")?,
        publish_until: c.time("publish_until")?,
    })
}

pub(crate) fn checkpoint<D: Dialect>(row: &Row<D>) -> Result<CheckpointRecord, StoreError> {
    let c = Cols::<D>::new(row, "checkpoints");
    Ok(CheckpointRecord {
        size: c.unsigned("size")?,
        root_hash: c.hash("root_hash")?,
        note: c.text("note")?,
        created_at: c.time("created_at")?,
    })
}

/// Serializes a list-valued field for storage.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(
    what: &str,
    v: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Backend(format!("cannot serialize {what}: {e}")))
}

//! Token-signing keys: generation, sealing at rest, the rotation schedule, and the in-memory key ring.
//! The next key is published in the JWKS a full period before it signs; old keys stay until their tokens expire.

use std::sync::Arc;

use steward_crypto::jws::{KeySet, SigningAlg, SigningKey};
use steward_crypto::master::MasterKey;
use steward_store::{Change, Mutation, SigningKeyRecord, Store};
use time::{Duration, OffsetDateTime};

use crate::error::ServiceError;

/// What the token path needs: the key to sign with, the keys to verify with, and the JWKS bytes.
pub struct KeyRing {
    pub signer: Arc<SigningKey>,
    pub verifier: KeySet,
    pub jwks: bytes::Bytes,
    /// Soonest instant at which the ring must be rebuilt (a key activates or leaves the JWKS).
    pub valid_until: OffsetDateTime,
}

/// Rotation settings.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub alg: SigningAlg,
    pub period: Duration,
    /// Maximum access-token lifetime plus skew: how long a retired key stays published.
    pub overlap: Duration,
}

fn seal_aad(kid: &str) -> Vec<u8> {
    format!("steward/signing-key/{kid}").into_bytes()
}

/// Makes sure a key is active now and its successor is already published. Safe to run on
/// several nodes at once: each key slot is claimed through a unique setting in the same transaction.
pub async fn ensure_schedule(
    store: &dyn Store,
    master: &MasterKey,
    schedule: Schedule,
    now: OffsetDateTime,
) -> Result<bool, ServiceError> {
    ensure_schedule_fenced(store, master, schedule, now, None).await
}

/// [`ensure_schedule`] for the rotation job, whose key creations carry the job's lease fence.
pub async fn ensure_schedule_fenced(
    store: &dyn Store,
    master: &MasterKey,
    schedule: Schedule,
    now: OffsetDateTime,
    fence: Option<&crate::leases::Fence>,
) -> Result<bool, ServiceError> {
    let keys = store.list_signing_keys().await?;
    let current = keys
        .iter()
        .filter(|k| k.activates_at <= now && now < k.deactivates_at)
        .max_by_key(|k| k.activates_at);
    let mut changed = false;
    let next_start = match current {
        Some(c) => c.deactivates_at,
        None => {
            changed |= create_key(store, master, schedule, now, fence).await?;
            now + schedule.period
        }
    };
    let has_next = keys.iter().any(|k| k.activates_at >= next_start);
    if !has_next {
        changed |= create_key(store, master, schedule, next_start, fence).await?;
    }
    Ok(changed)
}

async fn create_key(
    store: &dyn Store,
    master: &MasterKey,
    schedule: Schedule,
    activates_at: OffsetDateTime,
    fence: Option<&crate::leases::Fence>,
) -> Result<bool, ServiceError> {
    let activates_at = steward_core::truncate_micros(activates_at);
    let kid = steward_crypto::rand::token(12);
    let (key, pkcs8) = SigningKey::generate(schedule.alg, kid.clone())
        .map_err(|e| ServiceError::Internal(format!("key generation failed: {e}")))?;
    let deactivates_at = activates_at + schedule.period;
    let record = SigningKeyRecord {
        kid: kid.clone(),
        alg: schedule.alg.as_str().to_owned(),
        sealed_private_key: master.seal(&seal_aad(&kid), &pkcs8),
        public_jwk: key.public_jwk(),
        created_at: steward_core::truncate_micros(OffsetDateTime::now_utc()).min(activates_at),
        activates_at,
        deactivates_at,
        publish_until: deactivates_at + schedule.overlap,
    };
    let event = steward_core::AuditEvent::new(
        record.created_at,
        "system",
        "signing_key.create",
        steward_core::Outcome::Success,
    )
    .target(format!("signing_key:{kid}"))
    .details(serde_json::json!({
        "kid": kid,
        "alg": record.alg,
        "activates_at": steward_core::to_micros(activates_at),
        "deactivates_at": steward_core::to_micros(deactivates_at),
    }));
    let change = fence
        .map_or_else(Change::new, |f| Change::new().with(f.mutation()))
        .with(Mutation::InsertSetting {
            key: format!("signing_key_slot:{}", steward_core::to_micros(activates_at)),
            value: kid,
        })
        .with(Mutation::InsertSigningKey(record))
        .audit(event);
    match store.commit(change).await {
        Ok(_) => Ok(true),
        // Another node claimed this slot first: its key serves.
        Err(steward_store::StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Builds the key ring from stored keys at `now`.
pub async fn load_ring(
    store: &dyn Store,
    master: &MasterKey,
    now: OffsetDateTime,
) -> Result<KeyRing, ServiceError> {
    let keys = store.list_signing_keys().await?;
    let current = keys
        .iter()
        .filter(|k| k.activates_at <= now && now < k.deactivates_at)
        .max_by_key(|k| k.activates_at)
        .ok_or_else(|| ServiceError::Internal("no active signing key".into()))?;
    let alg = SigningAlg::parse(&current.alg)
        .map_err(|e| ServiceError::Internal(format!("stored key has unknown alg: {e}")))?;
    let pkcs8 = master
        .open(&seal_aad(&current.kid), &current.sealed_private_key)
        .map_err(|_| {
            ServiceError::Internal("cannot unseal the signing key: wrong master key?".into())
        })?;
    let signer = SigningKey::from_pkcs8(alg, current.kid.clone(), &pkcs8)
        .map_err(|e| ServiceError::Internal(format!("stored signing key is invalid: {e}")))?;
    let published: Vec<&SigningKeyRecord> = keys
        .iter()
        .filter(|k| k.created_at <= now && now <= k.publish_until)
        .collect();
    let jwk_list: Vec<serde_json::Value> = published.iter().map(|k| k.public_jwk.clone()).collect();
    let verifier = KeySet::from_keys(&jwk_list)
        .map_err(|e| ServiceError::Internal(format!("stored public keys are invalid: {e}")))?;
    let jwks = serde_json::to_vec(&serde_json::json!({ "keys": jwk_list }))
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut valid_until = current.deactivates_at;
    for k in &keys {
        for t in [
            k.activates_at,
            k.publish_until + Duration::microseconds(1),
            k.created_at,
        ] {
            if t > now && t < valid_until {
                valid_until = t;
            }
        }
    }
    Ok(KeyRing {
        signer: Arc::new(signer),
        verifier,
        jwks: bytes::Bytes::from(jwks),
        valid_until,
    })
}

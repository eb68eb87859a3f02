//! Shared server state: configuration, store, clock, keys, caches, limiter and metrics.
//! One `AppState` per process, cloned cheaply into every handler and background job.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use steward_core::{Clock, Credential, Identity};
use steward_crypto::master::MasterKey;
use steward_crypto::note::NoteSigner;
use steward_crypto::secret_hash::SecretHasher;
use steward_store::Store;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cache::TtlCache;
use crate::config::ServerConfig;
use crate::error::ServiceError;
use crate::keys::KeyRing;
use crate::ratelimit::FailureLimiter;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct Inner {
    pub config: ServerConfig,
    pub issuer: String,
    pub token_endpoint: String,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master: MasterKey,
    pub hasher: SecretHasher,
    pub dpop_nonce_key: [u8; 32],
    pub ring: RwLock<Arc<KeyRing>>,
    pub ring_reload: tokio::sync::Mutex<()>,
    /// When a reload for an unknown kid was last allowed (see [`Inner::may_reload_ring`]).
    pub ring_reload_on_demand: Mutex<Option<std::time::Instant>>,
    pub identities: TtlCache<Uuid, Identity>,
    pub credentials: TtlCache<[u8; 32], Credential>,
    /// Credentials by id, for verifying tokens (which name their credential) without a read.
    pub credentials_by_id: TtlCache<Uuid, Credential>,
    /// Each identity's public-key credentials, for `private_key_jwt` without a read per token.
    /// Dropped when one of them changes; an assertion that matches no cached key re-reads.
    pub public_keys: TtlCache<Uuid, Vec<Credential>>,
    /// Bumped by every credential invalidation, so that a list read from the store while one
    /// happened is not cached (it may predate the change).
    pub credential_epoch: std::sync::atomic::AtomicU64,
    /// Access tokens whose signature this node verified, by SHA-256 of the token (see
    /// `service::tokens`). Only the signature check is remembered, and a hit counts only while its
    /// signing key (kids are random, never reused) is still in the current ring.
    pub verified_tokens: TtlCache<[u8; 32], crate::service::tokens::SignedClaims>,
    /// Revoked access tokens, mirrored from the store (see `revocation`).
    pub revoked: crate::revocation::RevokedTokens,
    /// Credential id → latest use, flushed to the store in batches off the token path.
    pub usage: Mutex<HashMap<Uuid, OffsetDateTime>>,
    pub limiter: FailureLimiter,
    pub note_signer: NoteSigner,
    pub audit_origin: String,
    pub metrics: PrometheusHandle,
    pub ready: AtomicBool,
    pub bootstrap_admin: Option<Uuid>,
    /// The compiled authorization policy set (see `service::authz`).
    pub authz: crate::service::authz::AuthzCache,
    /// The CA, trust anchors, deny-list and the server's TLS key (see `pki`).
    pub pki: crate::pki::PkiState,
    /// Owner notifications about revoked leaked keys (see `service::leaks`).
    pub leak_notifier: crate::service::leaks::Notifier,
    /// Compiled trust policies and the JWKS cache of external issuers (see `service::federation`).
    pub federation: crate::service::federation::Federation,
    /// This node's leases on single-node duties (see `leases`).
    pub leases: crate::leases::Leases,
    /// Token usage per identity, scope, audience and source, flushed in batches (see `usage`).
    pub usage_recorder: crate::usage::UsageRecorder,
    /// The findings job's run lock and last summary (see `service::findings`).
    pub findings_runtime: crate::service::findings::FindingsRuntime,
    /// Active JIT elevation grants, for the token path (see `service::lifecycle::jit`).
    pub jit: crate::service::lifecycle::jit::JitCache,
    /// The Merkle tree of the audit log as far as this node has read it, so that a checkpoint
    /// reads only the records appended since the last one (see `audit`).
    pub audit_tree: tokio::sync::Mutex<steward_crypto::merkle::CompactTree>,
}

impl Inner {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The ring to sign with. Once the clock passes the ring's `valid_until` (its signing key
    /// deactivates, or another key activates or stops being published), the ring is rebuilt
    /// before signing rather than waiting for the once-a-second job: a token must never be signed
    /// by a key that the next reload drops from the verifier. If the rebuild fails the old ring
    /// serves, as before.
    pub async fn signing_ring(&self) -> Arc<KeyRing> {
        let stale = |r: &KeyRing| self.now() >= r.valid_until;
        let ring = self.ring();
        if !stale(&ring) {
            return ring;
        }
        let _guard = self.ring_reload.lock().await;
        let ring = self.ring();
        if !stale(&ring) {
            return ring;
        }
        match self.load_and_install_ring().await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "key ring reload failed");
                ring
            }
        }
    }

    /// Rate limit for reloads triggered by tokens naming an unknown kid: one a second.
    pub fn may_reload_ring(&self) -> bool {
        let mut last = self
            .ring_reload_on_demand
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Rebuilds the key ring from the store (after rotation, or on an unknown kid).
    pub async fn reload_ring(&self) -> Result<(), ServiceError> {
        let _guard = self.ring_reload.lock().await;
        self.load_and_install_ring().await.map(drop)
    }

    /// Loads the ring from the store and makes it current; callers hold `ring_reload`.
    async fn load_and_install_ring(&self) -> Result<Arc<KeyRing>, ServiceError> {
        let ring =
            Arc::new(crate::keys::load_ring(self.store.as_ref(), &self.master, self.now()).await?);
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = ring.clone();
        Ok(ring)
    }

    pub async fn identity(&self, id: Uuid) -> Result<Option<Arc<Identity>>, ServiceError> {
        if let Some(i) = self.identities.get(&id) {
            return Ok(Some(i));
        }
        match self.store.get_identity(id).await? {
            Some(i) => {
                let i = Arc::new(i);
                self.identities.insert(id, i.clone());
                Ok(Some(i))
            }
            None => Ok(None),
        }
    }

    pub async fn credential_by_hash(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<Arc<Credential>>, ServiceError> {
        if let Some(c) = self.credentials.get(&hash) {
            return Ok(Some(c));
        }
        match self.store.find_credential_by_hash(&hash).await? {
            Some(c) => {
                let c = Arc::new(c);
                self.credentials.insert(hash, c.clone());
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }

    pub fn invalidate_identity(&self, id: Uuid) {
        self.identities.remove(&id);
    }

    pub fn invalidate_credential(&self, c: &Credential) {
        if let Some(h) = c
            .secret_hash
            .as_deref()
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
        {
            self.credentials.remove(&h);
        }
        self.credential_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.credentials_by_id.remove(&c.id);
        self.public_keys.remove(&c.identity_id);
    }

    /// Drops every cached credential (used after bulk revocations such as retire).
    pub fn invalidate_all_credentials(&self) {
        self.credential_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.credentials.clear();
        self.credentials_by_id.clear();
        self.public_keys.clear();
    }

    /// `identity`'s public-key credentials: from the cache unless `fresh`, else from the store
    /// (cached only if no credential changed meanwhile). The flag says whether it was cached.
    pub async fn public_key_credentials(
        &self,
        identity: Uuid,
        fresh: bool,
    ) -> Result<(Arc<Vec<Credential>>, bool), steward_store::StoreError> {
        if !fresh && let Some(c) = self.public_keys.get(&identity) {
            return Ok((c, true));
        }
        let epoch = self
            .credential_epoch
            .load(std::sync::atomic::Ordering::SeqCst);
        let list: Vec<Credential> = self
            .store
            .list_credentials(identity)
            .await?
            .into_iter()
            .filter(|c| c.kind == steward_core::CredentialKind::PublicKey)
            .collect();
        let list = Arc::new(list);
        if self
            .credential_epoch
            .load(std::sync::atomic::Ordering::SeqCst)
            == epoch
        {
            self.public_keys.insert(identity, list.clone());
        }
        Ok((list, false))
    }

    /// The credential with this id, from the cache or the store.
    pub async fn credential_by_id(
        &self,
        id: Uuid,
    ) -> Result<Option<Arc<Credential>>, ServiceError> {
        if let Some(c) = self.credentials_by_id.get(&id) {
            return Ok(Some(c));
        }
        match self.store.get_credential(id).await? {
            Some(c) => {
                let c = Arc::new(c);
                self.credentials_by_id.insert(id, c.clone());
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }

    /// Whether the token with this `jti` was revoked: from memory when the mirror is complete.
    pub async fn is_token_revoked(&self, jti: &str) -> Result<bool, ServiceError> {
        match self.revoked.check(jti) {
            Some(answer) => Ok(answer),
            None => Ok(self.store.is_token_revoked(jti).await?),
        }
    }

    /// Reloads the revoked-token mirror from the store.
    pub async fn reload_revoked(&self) -> Result<(), ServiceError> {
        let limit = crate::revocation::CAPACITY as u32;
        let list = self.store.list_revoked_tokens(self.now(), limit).await?;
        let truncated = list.len() >= crate::revocation::CAPACITY;
        self.revoked.load(
            list.into_iter()
                .map(|t| (t.jti, t.expires_at.unix_timestamp())),
            truncated,
        );
        Ok(())
    }

    pub fn record_use(&self, credential: Uuid, at: OffsetDateTime) {
        let mut u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: the map holds one entry per credential used since the last flush.
        if u.len() < 1_000_000 || u.contains_key(&credential) {
            u.insert(credential, at);
        }
    }

    pub fn take_usage(&self) -> HashMap<Uuid, OffsetDateTime> {
        std::mem::take(&mut *self.usage.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, r: bool) {
        self.ready.store(r, Ordering::Relaxed);
    }

    pub fn cache_ttl(config: &ServerConfig) -> Option<Duration> {
        (config.cache_ttl_secs > 0).then(|| Duration::from_secs(config.cache_ttl_secs))
    }
}

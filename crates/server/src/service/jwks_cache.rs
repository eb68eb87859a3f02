//! The JWKS cache of external issuers: fetch over HTTPS (bounded size, timeout, no redirects),
//! keep each key set for a TTL, refresh early on an unknown `kid` at most once per interval per URL.
//!
//! When a fetch fails, keys still within their TTL keep being used; past the TTL the issuer's
//! tokens are refused with a clear reason (fail closed). Time comes from the server's clock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use steward_crypto::jws::KeySet;
use time::OffsetDateTime;

/// Most keys read from one JWK Set.
pub const MAX_KEYS: usize = 64;

/// Tuning of the cache (from `federation` in the server configuration).
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub ttl: time::Duration,
    pub refresh_interval: time::Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
    pub max_entries: usize,
}

#[derive(Clone)]
struct Entry {
    keys: Option<(KeySet, OffsetDateTime)>,
    last_attempt: Option<OffsetDateTime>,
    last_error: Option<String>,
}

/// Keys for one token, and what the cache knows about their freshness.
#[derive(Debug, Clone)]
pub struct Keys {
    pub keys: KeySet,
    /// Set when a refresh was wanted but failed or was rate-limited (the cached keys were used).
    pub note: Option<String>,
}

pub struct JwksCache {
    settings: JwksSettings,
    http: reqwest::Client,
    entries: RwLock<HashMap<String, Entry>>,
    /// One fetch at a time: concurrent requests for a stale set wait for the same fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub fn new(settings: JwksSettings) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent("steward-federation")
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            entries: RwLock::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn entry(&self, uri: &str) -> Option<Entry> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(uri)
            .cloned()
    }

    /// Drops every cached key set (tests, and operators after an issuer incident).
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The key set at `uri` that should hold `kid`, fetching when there is none, when it is past
    /// its TTL, or when it lacks `kid` (rate-limited). `Err` explains why no usable keys exist.
    pub async fn keys_for(
        &self,
        uri: &str,
        kid: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Keys, String> {
        if let Some(e) = self.entry(uri)
            && let Some((keys, fetched)) = &e.keys
            && now < *fetched + self.settings.ttl
        {
            let known = kid.is_some_and(|k| keys.get(k).is_some());
            if known || kid.is_none() {
                return Ok(Keys {
                    keys: keys.clone(),
                    note: None,
                });
            }
            // Unknown kid: the issuer may have rotated. Refresh, at most once per interval.
            if !self.may_attempt(&e, now) {
                return Ok(Keys {
                    keys: keys.clone(),
                    note: Some(format!(
                        "kid not in the cached JWKS of {uri}; not refreshed (at most one refresh every {} s)",
                        self.settings.refresh_interval.whole_seconds()
                    )),
                });
            }
            return match self.refresh(uri, now).await {
                Ok(fresh) => Ok(Keys {
                    keys: fresh,
                    note: None,
                }),
                Err(err) => Ok(Keys {
                    keys: keys.clone(),
                    note: Some(format!(
                        "kid not in the cached JWKS of {uri}, and refreshing failed: {err}"
                    )),
                }),
            };
        }
        // Nothing usable cached: fetch, unless a fetch failed moments ago.
        let cached = self.entry(uri);
        if let Some(e) = &cached
            && !self.may_attempt(e, now)
            && e.last_error.is_some()
        {
            return Err(self.unusable(uri, e, e.last_error.as_deref().unwrap_or("")));
        }
        match self.refresh(uri, now).await {
            Ok(keys) => Ok(Keys { keys, note: None }),
            Err(err) => {
                let e = self.entry(uri).unwrap_or(Entry {
                    keys: None,
                    last_attempt: None,
                    last_error: None,
                });
                Err(self.unusable(uri, &e, &err))
            }
        }
    }

    fn unusable(&self, uri: &str, e: &Entry, err: &str) -> String {
        match &e.keys {
            Some((_, fetched)) => format!(
                "JWKS {uri} is unreachable ({err}) and the cached keys expired (fetched at {}, TTL {} s)",
                fetched.unix_timestamp(),
                self.settings.ttl.whole_seconds()
            ),
            None => format!("JWKS {uri} is unreachable ({err}) and no keys are cached"),
        }
    }

    fn may_attempt(&self, e: &Entry, now: OffsetDateTime) -> bool {
        e.last_attempt
            .is_none_or(|t| now >= t + self.settings.refresh_interval || now < t)
    }

    /// Fetches `uri` (single flight), records the attempt, and stores the keys on success.
    async fn refresh(&self, uri: &str, now: OffsetDateTime) -> Result<KeySet, String> {
        let _guard = self.fetching.lock().await;
        // Another request may have refreshed it while this one waited.
        if let Some(e) = self.entry(uri)
            && e.last_attempt.is_some_and(|t| t >= now)
        {
            return match (e.keys, e.last_error) {
                (Some((k, fetched)), None) if fetched >= now => Ok(k),
                (_, Some(err)) => Err(err),
                _ => Err("a concurrent fetch did not produce keys".into()),
            };
        }
        let result = self.fetch(uri).await;
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(uri) && map.len() >= self.settings.max_entries {
            // Bounded: forget the stalest entry.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_attempt)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let e = map.entry(uri.to_owned()).or_insert(Entry {
            keys: None,
            last_attempt: None,
            last_error: None,
        });
        e.last_attempt = Some(now);
        match &result {
            Ok(keys) => {
                e.keys = Some((keys.clone(), now));
                e.last_error = None;
                metrics::counter!("steward_federation_jwks_fetches_total", "outcome" => "ok")
                    .increment(1);
            }
            Err(err) => {
                e.last_error = Some(err.clone());
                metrics::counter!("steward_federation_jwks_fetches_total", "outcome" => "error")
                    .increment(1);
                tracing::warn!(jwks_uri = %uri, error = %err, "JWKS fetch failed");
            }
        }
        result
    }

    async fn fetch(&self, uri: &str) -> Result<KeySet, String> {
        let mut resp = self
            .http
            .get(uri)
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "connection failed".to_owned()
                } else {
                    format!("request failed: {e}")
                }
            })?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status().as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.settings.max_bytes as u64)
        {
            return Err(format!("larger than {} bytes", self.settings.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            if body.len() + chunk.len() > self.settings.max_bytes {
                return Err(format!("larger than {} bytes", self.settings.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| "not JSON".to_owned())?;
        let (keys, skipped) = KeySet::from_foreign_jwks(&v, MAX_KEYS)
            .map_err(|e| format!("not a usable JWK Set: {e}"))?;
        if !skipped.is_empty() {
            tracing::info!(jwks_uri = %uri, skipped = ?skipped, "JWKS keys skipped");
        }
        if keys.is_empty() {
            return Err("the JWK Set holds no usable signature keys".into());
        }
        Ok(keys)
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

/// Shared handle.
pub type SharedJwksCache = Arc<JwksCache>;

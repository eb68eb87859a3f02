//! The workload side: [`TokenSource`] obtains access tokens with `client_credentials`
//! (API key, `private_key_jwt`, or `tls_client_auth` over an mTLS client), optionally DPoP-bound,
//! caches them, refreshes at ~80 % of their lifetime with one fetch at a time, and retries
//! transient failures with exponential back-off. Secrets are never logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::{DpopKey, Error, random_id, unix_now};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A secret that redacts itself in `Debug` and `Display`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How the workload authenticates to the token endpoint.
pub enum ClientAuth {
    /// `client_secret_basic` with a Steward API key.
    ApiKey { client_id: String, secret: Secret },
    /// `private_key_jwt` (RFC 7523): a short-lived assertion signed with a registered key.
    PrivateKeyJwt {
        client_id: String,
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
    },
    /// `tls_client_auth` (RFC 8705): the HTTP client given in the config presents the certificate.
    TlsClientAuth { client_id: String },
}

impl ClientAuth {
    fn client_id(&self) -> &str {
        match self {
            Self::ApiKey { client_id, .. }
            | Self::PrivateKeyJwt { client_id, .. }
            | Self::TlsClientAuth { client_id } => client_id,
        }
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = match self {
            Self::ApiKey { .. } => "client_secret_basic",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
            Self::TlsClientAuth { .. } => "tls_client_auth",
        };
        f.debug_struct("ClientAuth")
            .field("method", &method)
            .field("client_id", &self.client_id())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`TokenSource`].
#[derive(Debug)]
pub struct TokenSourceConfig {
    pub token_endpoint: String,
    pub auth: ClientAuth,
    /// Space-separated scopes to request (the identity's defaults when `None`).
    pub scope: Option<String>,
    /// Audiences to request (RFC 8707 `resource`).
    pub audience: Vec<String>,
    /// Bind tokens to this key with DPoP (RFC 9449).
    pub dpop: Option<Arc<DpopKey>>,
    /// Fraction of the lifetime after which a token is refreshed (default 0.8).
    pub refresh_ratio: f64,
    /// Retries after the first attempt for transient failures (default 3).
    pub max_retries: u32,
    /// First back-off delay; doubled per retry, with jitter (default 200 ms).
    pub backoff: Duration,
    /// HTTP client to use (e.g. one presenting a client certificate); a default one otherwise.
    pub http: Option<reqwest::Client>,
}

impl TokenSourceConfig {
    pub fn new(token_endpoint: impl Into<String>, auth: ClientAuth) -> Self {
        Self {
            token_endpoint: token_endpoint.into(),
            auth,
            scope: None,
            audience: Vec::new(),
            dpop: None,
            refresh_ratio: 0.8,
            max_retries: 3,
            backoff: Duration::from_millis(200),
            http: None,
        }
    }
}

/// An access token and how to present it.
#[derive(Clone)]
pub struct AccessToken {
    pub token: String,
    /// `Bearer` or `DPoP`.
    pub token_type: String,
    pub expires_in: u64,
    pub scope: Option<String>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("{} {}", self.token_type, self.token)
    }
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize, Default)]
struct OAuthErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// One attempt's failure: retry it or not.
enum Attempt {
    Retry(Error, Option<Duration>),
    Fatal(Error),
    Nonce(String),
}

/// Keeps one workload's access token fresh. Share it (`Arc`) between tasks: concurrent callers
/// during a refresh wait for the single fetch in flight instead of each starting one.
pub struct TokenSource {
    cfg: TokenSourceConfig,
    http: reqwest::Client,
    cached: RwLock<Option<Cached>>,
    fetch: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    nonce: RwLock<Option<String>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(mut cfg: TokenSourceConfig) -> Result<Self, Error> {
        if !(0.1..=1.0).contains(&cfg.refresh_ratio) {
            return Err(Error::Config(
                "refresh_ratio must be between 0.1 and 1".into(),
            ));
        }
        let http = match cfg.http.take() {
            Some(h) => h,
            None => reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(Self {
            cfg,
            http,
            cached: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            nonce: RwLock::new(None),
        })
    }

    /// Token requests sent so far (attempts included), for monitoring and tests.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The DPoP key tokens are bound to, if any (to sign proofs for resource requests).
    pub fn dpop_key(&self) -> Option<&Arc<DpopKey>> {
        self.cfg.dpop.as_ref()
    }

    fn fresh(&self, now: Instant) -> Option<AccessToken> {
        let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
        c.as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// Drops the cached token (e.g. after a resource server answered 401).
    pub fn invalidate(&self) {
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A valid access token: the cached one until ~80 % of its lifetime, then a new one.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        if let Some(t) = self.fresh(Instant::now()) {
            return Ok(t);
        }
        let _single_flight = self.fetch.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(t) = self.fresh(Instant::now()) {
            return Ok(t);
        }
        match self.fetch_with_retries().await {
            Ok(t) => {
                let start = Instant::now();
                let life = Duration::from_secs(t.expires_in);
                let cached = Cached {
                    refresh_at: start + life.mul_f64(self.cfg.refresh_ratio),
                    expires_at: start + life,
                    token: t.clone(),
                };
                *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(cached);
                Ok(t)
            }
            Err(e) => {
                // Keep serving a still-valid token while the server is unreachable.
                let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
                match c.as_ref() {
                    Some(c) if Instant::now() + Duration::from_secs(5) < c.expires_at => {
                        tracing::warn!(error = %e, "token refresh failed; using the current token");
                        Ok(c.token.clone())
                    }
                    _ => Err(e),
                }
            }
        }
    }

    async fn fetch_with_retries(&self) -> Result<AccessToken, Error> {
        let mut attempt = 0u32;
        let mut nonce_retry = false;
        loop {
            match self.fetch_once().await {
                Ok(t) => return Ok(t),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Nonce(n)) if !nonce_retry => {
                    nonce_retry = true;
                    *self.nonce.write().unwrap_or_else(|p| p.into_inner()) = Some(n);
                }
                Err(Attempt::Nonce(_)) => {
                    return Err(Error::Refused {
                        status: 400,
                        error: "use_dpop_nonce".into(),
                        description: "the server kept asking for a new DPoP nonce".into(),
                    });
                }
                Err(Attempt::Retry(e, after)) => {
                    if attempt >= self.cfg.max_retries {
                        return Err(e);
                    }
                    let exp = self.cfg.backoff.saturating_mul(1u32 << attempt.min(10));
                    let mut jitter = [0u8; 1];
                    let _ = aws_lc_rs::rand::fill(&mut jitter);
                    let delay = after.unwrap_or(exp).min(Duration::from_secs(30))
                        + exp.mul_f64(f64::from(jitter[0]) / 512.0);
                    tracing::debug!(attempt, ?delay, error = %e, "retrying token request");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn fetch_once(&self) -> Result<AccessToken, Attempt> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let cfg = &self.cfg;
        let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
        if let Some(s) = &cfg.scope {
            form.push(("scope", s.clone()));
        }
        for a in &cfg.audience {
            form.push(("resource", a.clone()));
        }
        let mut req = self.http.post(&cfg.token_endpoint);
        match &cfg.auth {
            ClientAuth::ApiKey { client_id, secret } => {
                req = req.basic_auth(form_encode(client_id), Some(form_encode(secret.expose())));
            }
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                alg,
                kid,
            } => {
                let now = unix_now();
                let claims = AssertionClaims {
                    iss: client_id,
                    sub: client_id,
                    aud: &cfg.token_endpoint,
                    iat: now,
                    exp: now + 60,
                    jti: random_id().map_err(Attempt::Fatal)?,
                };
                let mut header = Header::new(*alg);
                header.kid = kid.clone();
                let assertion = jsonwebtoken::encode(&header, &claims, key).map_err(|e| {
                    Attempt::Fatal(Error::Crypto(format!(
                        "cannot sign the client assertion: {e}"
                    )))
                })?;
                form.push(("client_id", client_id.clone()));
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", assertion));
            }
            ClientAuth::TlsClientAuth { client_id } => {
                form.push(("client_id", client_id.clone()));
            }
        }
        if let Some(k) = &cfg.dpop {
            let nonce = self.nonce.read().unwrap_or_else(|p| p.into_inner()).clone();
            let proof = k
                .proof("POST", &cfg.token_endpoint, None, nonce.as_deref())
                .map_err(Attempt::Fatal)?;
            req = req.header("DPoP", proof);
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| Attempt::Retry(Error::Transport(transport_message(&e)), None))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let nonce = resp
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes()
            .await
            .map_err(|e| Attempt::Retry(Error::Transport(transport_message(&e)), None))?;
        if status.is_success() {
            let t: TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| Attempt::Fatal(Error::Malformed(e.to_string())))?;
            if let Some(n) = nonce {
                *self.nonce.write().unwrap_or_else(|p| p.into_inner()) = Some(n);
            }
            return Ok(AccessToken {
                token: t.access_token,
                token_type: t.token_type,
                expires_in: t.expires_in,
                scope: t.scope,
            });
        }
        let err: OAuthErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        if err.error == "use_dpop_nonce"
            && let Some(n) = nonce
        {
            return Err(Attempt::Nonce(n));
        }
        let e = Error::Refused {
            status: status.as_u16(),
            error: err.error,
            description: err.error_description,
        };
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            Err(Attempt::Retry(e, retry_after))
        } else {
            Err(Attempt::Fatal(e))
        }
    }
}

/// Transport error text without the URL's query (never carries a secret: those go in headers
/// and bodies, which reqwest does not print).
fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match e.url() {
        Some(u) => format!("{kind} ({}://{}{})", u.scheme(), u.authority(), u.path()),
        None => kind.to_owned(),
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("stw_k_supersecret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        let a = ClientAuth::ApiKey {
            client_id: "c".into(),
            secret: s,
        };
        assert!(!format!("{a:?}").contains("supersecret"));
    }
}

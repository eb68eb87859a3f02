//! The resource-server side: [`Verifier`] checks Steward access tokens locally — JWKS fetched
//! and cached (refreshed on an unknown `kid`, rate-limited), algorithm allow-list, `typ`,
//! `iss`, `aud`, `exp`/`nbf` with skew, required scopes, `cnf` certificate and DPoP bindings —
//! and optionally asks the server's introspection endpoint whether the token is still active.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::dpop::{ProofCheck, ReplayCache, check_proof};
use crate::{Secret, VerifyError, b64url, sha256, unix_now};

/// The `x5t#S256` value of a DER certificate (RFC 8705 §3.1): base64url SHA-256.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    b64url(&sha256(der))
}

/// Remote introspection (RFC 7662) for continuous verification of every token.
#[derive(Debug, Clone)]
pub struct Introspection {
    pub endpoint: String,
    pub client_id: String,
    pub secret: Secret,
}

/// Settings of a [`Verifier`].
#[derive(Clone)]
pub struct VerifierConfig {
    /// Expected `iss` (Steward's issuer URL).
    pub issuer: String,
    /// This resource server's audience; the token's `aud` must contain it.
    pub audience: String,
    /// Where the keys are (default `{issuer}/.well-known/jwks.json`).
    pub jwks_uri: String,
    /// Accepted signature algorithms (default EdDSA and ES256; never `none` or HMAC).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 60).
    pub leeway_secs: i64,
    /// Scopes every token must carry (all of them).
    pub required_scopes: Vec<String>,
    /// Least time between two JWKS fetches triggered by unknown key ids (default 30 s).
    pub jwks_min_refresh: Duration,
    /// Keys older than this are refetched on the next verification (default 10 min).
    pub jwks_max_age: Duration,
    /// Oldest DPoP proof accepted, in seconds (default 300).
    pub dpop_max_age_secs: i64,
    /// Also ask the server whether the token is active (one request per verification).
    pub introspection: Option<Introspection>,
    /// Unix-seconds clock (default: the system clock). Tests inject their own.
    pub clock: Option<Arc<dyn Fn() -> i64 + Send + Sync>>,
    pub http: Option<reqwest::Client>,
    /// Most tokens whose signature and claims were verified to remember (default 4096; 0 turns
    /// the cache off). A workload presents the same token until it nears expiry, so a repeat
    /// presentation skips the signature check; time, bindings, DPoP proof and introspection are
    /// still checked on every request. A key-set change empties the cache.
    pub verified_cache_capacity: usize,
}

impl std::fmt::Debug for VerifierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_uri", &self.jwks_uri)
            .field("algorithms", &self.algorithms)
            .field("required_scopes", &self.required_scopes)
            .finish_non_exhaustive()
    }
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        let issuer = issuer.into().trim_end_matches('/').to_owned();
        Self {
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            issuer,
            audience: audience.into(),
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256],
            leeway_secs: 60,
            required_scopes: Vec::new(),
            jwks_min_refresh: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            dpop_max_age_secs: 300,
            introspection: None,
            clock: None,
            http: None,
            verified_cache_capacity: 4096,
        }
    }
}

/// `cnf` (RFC 7800): the key or certificate a token is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// The claims of a Steward access token (RFC 9068 plus `env` and `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The identity id.
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    /// The identity's environment.
    #[serde(default)]
    pub env: String,
    /// The identity's kind.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub cnf: Option<Confirmation>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum A {
        One(String),
        Many(Vec<String>),
    }
    Ok(match A::deserialize(d)? {
        A::One(s) => vec![s],
        A::Many(v) => v,
    })
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claims: AccessClaims,
    pub scopes: Vec<String>,
}

impl VerifiedToken {
    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| x == s)
    }
}

/// How a token was presented with one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presentation<'a> {
    /// The `Authorization` header value (`Bearer …` or `DPoP …`).
    pub authorization: Option<&'a str>,
    /// The `DPoP` header value.
    pub dpop: Option<&'a str>,
    pub method: &'a str,
    /// The request URL as the client addressed it (for DPoP `htu`).
    pub url: &'a str,
    /// The DER client certificate, when the request came over mutual TLS.
    pub client_cert: Option<&'a [u8]>,
}

struct Keys {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

/// Verifies Steward access tokens. Share it (`Arc`) across requests.
pub struct Verifier {
    cfg: VerifierConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
    replay: ReplayCache,
    verified: VerifiedCache,
}

/// Tokens that passed the signature, `typ`, `iss`, `aud` and scope checks, by SHA-256 of the
/// compact token (any change to the token is a miss). Bounded: when full, expired entries go
/// first, then an arbitrary half.
#[derive(Default)]
struct VerifiedCache {
    entries: std::sync::Mutex<HashMap<[u8; 32], Arc<VerifiedToken>>>,
}

impl VerifiedCache {
    fn get(&self, key: &[u8; 32]) -> Option<Arc<VerifiedToken>> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn insert(&self, key: [u8; 32], v: Arc<VerifiedToken>, capacity: usize, now: i64) {
        if capacity == 0 {
            return;
        }
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= capacity {
            m.retain(|_, t| t.claims.exp > now);
        }
        if m.len() >= capacity {
            let mut n = 0;
            m.retain(|_, _| {
                n += 1;
                n % 2 == 0
            });
        }
        m.insert(key, v);
    }

    fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(a) = jwk.common.key_algorithm {
        return a.to_string().parse().ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}

impl Verifier {
    pub fn new(mut cfg: VerifierConfig) -> Self {
        let http = cfg.http.take().unwrap_or_default();
        Self {
            cfg,
            http,
            keys: RwLock::new(Keys {
                by_kid: HashMap::new(),
                fetched: None,
            }),
            refresh: tokio::sync::Mutex::new(None),
            replay: ReplayCache::default(),
            verified: VerifiedCache::default(),
        }
    }

    /// A verifier with fixed keys (no JWKS fetching), e.g. for offline use or tests.
    ///
    /// ```
    /// use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    /// use jsonwebtoken::{jwk::JwkSet, Algorithm, EncodingKey, Header};
    /// use steward_client::{Verifier, VerifierConfig, VerifyError};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let b64 = |b: &[u8]| {
    ///     use base64::Engine as _;
    ///     base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    /// };
    /// // The issuer's key (normally Steward's, published at /.well-known/jwks.json).
    /// let rng = aws_lc_rs::rand::SystemRandom::new();
    /// let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    /// let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    /// let p = pair.public_key().as_ref();
    /// let jwks: JwkSet = serde_json::from_value(serde_json::json!({"keys": [{
    ///     "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1",
    ///     "x": b64(&p[1..33]), "y": b64(&p[33..65])}]})).unwrap();
    ///
    /// let mut header = Header::new(Algorithm::ES256);
    /// header.typ = Some("at+jwt".into());
    /// header.kid = Some("k1".into());
    /// let now = std::time::SystemTime::now()
    ///     .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    /// let claims = serde_json::json!({"iss": "https://steward.example", "sub": "id-1",
    ///     "aud": "https://api.example", "exp": now + 300, "scope": "docs:read", "env": "prod"});
    /// let token = jsonwebtoken::encode(&header, &claims,
    ///     &EncodingKey::from_ec_der(pkcs8.as_ref())).unwrap();
    ///
    /// let mut cfg = VerifierConfig::new("https://steward.example", "https://api.example");
    /// cfg.required_scopes = vec!["docs:read".into()];
    /// let verifier = Verifier::with_keys(cfg, &jwks);
    /// let ok = verifier.verify_bearer(&token).await.unwrap();
    /// assert_eq!(ok.claims.sub, "id-1");
    ///
    /// let other = Verifier::with_keys(
    ///     VerifierConfig::new("https://steward.example", "https://elsewhere.example"), &jwks);
    /// assert_eq!(other.verify_bearer(&token).await, Err(VerifyError::Audience));
    /// # }
    /// ```
    pub fn with_keys(cfg: VerifierConfig, set: &JwkSet) -> Self {
        let v = Self::new(cfg);
        v.install(set, None);
        v
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    fn now(&self) -> i64 {
        self.cfg.clock.as_ref().map_or_else(unix_now, |c| c())
    }

    fn install(&self, set: &JwkSet, at: Option<Instant>) {
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), jwk_algorithm(jwk)) else {
                continue;
            };
            if !self.cfg.algorithms.contains(&alg) {
                continue;
            }
            if let Ok(k) = DecodingKey::from_jwk(jwk) {
                by_kid.insert(kid, (k, alg));
            }
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Keys {
            by_kid,
            fetched: at,
        };
        // A key that left the set must stop vouching for the tokens it signed.
        self.verified.clear();
    }

    fn lookup(&self, kid: &str) -> (Option<(DecodingKey, Algorithm)>, bool) {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let stale = keys
            .fetched
            .is_some_and(|t| t.elapsed() > self.cfg.jwks_max_age);
        (keys.by_kid.get(kid).cloned(), stale)
    }

    /// Fetches the JWKS, at most once per `jwks_min_refresh` (concurrent callers share one fetch).
    async fn refresh_keys(&self) -> Result<(), VerifyError> {
        let mut last = self.refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.cfg.jwks_min_refresh) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let set: JwkSet = self
            .http
            .get(&self.cfg.jwks_uri)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| VerifyError::Unavailable(format!("cannot fetch the JWKS: {e}")))?
            .json()
            .await
            .map_err(|e| VerifyError::Unavailable(format!("malformed JWKS: {e}")))?;
        self.install(&set, Some(Instant::now()));
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), VerifyError> {
        let (found, stale) = self.lookup(kid);
        if let Some(k) = &found
            && !stale
        {
            return Ok(k.clone());
        }
        if let Err(e) = self.refresh_keys().await {
            // A stale but known key still verifies while the server is unreachable.
            return found.ok_or(e);
        }
        self.lookup(kid).0.ok_or(VerifyError::UnknownKey)
    }

    /// Verifies a bearer token presented without a client certificate or DPoP proof.
    pub async fn verify_bearer(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let auth = format!("Bearer {token}");
        self.verify(&Presentation {
            authorization: Some(&auth),
            ..Presentation::default()
        })
        .await
    }

    /// Verifies the token of one request, bindings included.
    pub async fn verify(&self, p: &Presentation<'_>) -> Result<VerifiedToken, VerifyError> {
        let auth = p.authorization.ok_or(VerifyError::Missing)?;
        let (scheme, token) = auth
            .split_once(' ')
            .ok_or_else(|| VerifyError::Malformed("expected `Bearer <token>`".into()))?;
        let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
        if !dpop_scheme && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(VerifyError::Malformed(
                "unsupported authorization scheme".into(),
            ));
        }
        let token = token.trim();
        let v = self.verify_signed(token).await?;
        let cnf = v.claims.cnf.clone().unwrap_or_default();
        if let Some(x5t) = &cnf.x5t_s256 {
            let der = p.client_cert.ok_or_else(|| {
                VerifyError::CertificateBinding(
                    "certificate-bound token presented without a client certificate".into(),
                )
            })?;
            if certificate_thumbprint(der) != *x5t {
                return Err(VerifyError::CertificateBinding(
                    "the client certificate is not the one the token is bound to".into(),
                ));
            }
        }
        match (&cnf.jkt, dpop_scheme) {
            (Some(jkt), true) => {
                let proof = p
                    .dpop
                    .ok_or_else(|| VerifyError::Dpop("missing DPoP proof".into()))?;
                let at = ProofCheck {
                    method: p.method,
                    url: p.url,
                    now: self.now(),
                    max_age: self.cfg.dpop_max_age_secs,
                };
                check_proof(proof, token, jkt, &at, &self.replay)?;
            }
            (Some(_), false) => {
                return Err(VerifyError::Dpop(
                    "DPoP-bound token must be sent with the DPoP scheme".into(),
                ));
            }
            (None, true) => {
                return Err(VerifyError::Dpop("token is not DPoP-bound".into()));
            }
            (None, false) => {}
        }
        if let Some(i) = &self.cfg.introspection {
            self.introspect(i, token).await?;
        }
        Ok(v)
    }

    /// Signature, `typ`, algorithm, `iss`, `aud`, time window and required scopes; a token
    /// seen before skips everything but the time window (see [`VerifierConfig::verified_cache_capacity`]).
    async fn verify_signed(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let cache_key = (self.cfg.verified_cache_capacity > 0).then(|| sha256(token.as_bytes()));
        if let Some(hit) = cache_key.as_ref().and_then(|k| self.verified.get(k)) {
            self.check_window(&hit.claims)?;
            return Ok(VerifiedToken::clone(&hit));
        }
        let v = self.verify_signed_uncached(token).await?;
        if let Some(k) = cache_key {
            self.verified.insert(
                k,
                Arc::new(v.clone()),
                self.cfg.verified_cache_capacity,
                self.now(),
            );
        }
        Ok(v)
    }

    fn check_window(&self, c: &AccessClaims) -> Result<(), VerifyError> {
        let now = self.now();
        if now >= c.exp + self.cfg.leeway_secs {
            return Err(VerifyError::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now + self.cfg.leeway_secs) {
            return Err(VerifyError::NotYetValid);
        }
        Ok(())
    }

    async fn verify_signed_uncached(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| VerifyError::Invalid("malformed token".into()))?;
        if !self.cfg.algorithms.contains(&header.alg) {
            return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Type);
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| VerifyError::Invalid("token has no kid".into()))?;
        let (key, key_alg) = self.key(kid).await?;
        if key_alg != header.alg {
            return Err(VerifyError::Algorithm(format!(
                "{:?} does not match the key",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.cfg.issuer]);
        validation.set_audience(&[&self.cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked below against the configured clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidAudience => VerifyError::Audience,
                K::InvalidIssuer => VerifyError::Issuer,
                K::InvalidSignature => VerifyError::Invalid("bad signature".into()),
                K::MissingRequiredClaim(c) => VerifyError::Invalid(format!("missing claim {c}")),
                _ => VerifyError::Invalid("token rejected".into()),
            }
        })?;
        let c = data.claims;
        self.check_window(&c)?;
        let scopes: Vec<String> = c
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let v = VerifiedToken { claims: c, scopes };
        for s in &self.cfg.required_scopes {
            if !v.has_scope(s) {
                return Err(VerifyError::InsufficientScope(s.clone()));
            }
        }
        Ok(v)
    }

    async fn introspect(&self, i: &Introspection, token: &str) -> Result<(), VerifyError> {
        #[derive(Deserialize)]
        struct Answer {
            active: bool,
        }
        let a: Answer = self
            .http
            .post(&i.endpoint)
            .basic_auth(&i.client_id, Some(i.secret.expose()))
            .form(&[("token", token)])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| VerifyError::Unavailable(format!("introspection failed: {e}")))?
            .json()
            .await
            .map_err(|e| VerifyError::Unavailable(format!("malformed introspection: {e}")))?;
        if a.active {
            Ok(())
        } else {
            Err(VerifyError::Inactive)
        }
    }
}

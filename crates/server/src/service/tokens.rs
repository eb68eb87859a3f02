//! OAuth 2.0 for machines: client authentication, `client_credentials` issuance, DPoP binding,
//! introspection (continuous verification), and revocation. Errors follow RFC 6749 §5.2.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use steward_core::apikey::ApiKey;
use steward_core::{Credential, CredentialKind, Identity, Outcome, scope};
use steward_crypto::jws::{self, JwsAlg};
use steward_store::Change;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Ctx;
use crate::state::Inner;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew tolerated on `iat`/`nbf`/`exp` checks, in seconds.
pub const SKEW_SECS: i64 = 60;
/// Longest client-assertion lifetime accepted (`exp - now`), in seconds.
pub const MAX_ASSERTION_SECS: i64 = 600;
/// DPoP proofs older than this are refused, in seconds.
pub const DPOP_MAX_AGE_SECS: i64 = 300;
pub const DPOP_NONCE_PERIOD_SECS: i64 = 300;

/// An RFC 6749 §5.2 error, with the HTTP details that go with it.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub retry_after: Option<u64>,
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
            dpop_nonce: None,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    }
    pub fn unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the server cannot record this request right now; retry shortly",
        );
        e.retry_after = Some(1);
        e
    }
}

/// A parsed `application/x-www-form-urlencoded` body. Parameters may not repeat (RFC 6749 §3.2),
/// except those that RFC 8707 and RFC 8693 allow to (`resource`, `audience`).
#[derive(Debug, Default)]
pub struct Form(HashMap<String, Vec<String>>);

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            let entry = map.entry(k.into_owned()).or_default();
            if entry.len() >= 16 {
                return Err(OAuthError::invalid_request(
                    "too many values for one parameter",
                ));
            }
            entry.push(v.into_owned());
        }
        for (k, v) in &map {
            if v.len() > 1 && !matches!(k.as_str(), "resource" | "audience") {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} is repeated"
                )));
            }
        }
        Ok(Self(map))
    }

    /// A single-valued parameter; empty values count as absent (RFC 6749 §3.1).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .get(k)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .get(k)
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How the client proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// RFC 8705 §2.1 PKI mutual TLS (see `service::certs`).
    TlsClientAuth,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::TlsClientAuth => "tls_client_auth",
        }
    }
}

/// A client that passed authentication.
pub struct AuthenticatedClient {
    pub identity: Arc<Identity>,
    pub credential_id: Uuid,
    pub method: AuthMethod,
    /// A client assertion's `jti`, not yet claimed: the token endpoint claims it in the
    /// transaction that records the request's outcome (`Inner::record_outcome`); every other
    /// caller of `authenticate_client` gets a client whose assertion is already claimed.
    pub(crate) unclaimed: Option<AssertionJti>,
}

/// A verified client assertion's single-use `jti`, with how long it must be remembered.
#[derive(Debug, Clone)]
pub(crate) struct AssertionJti {
    namespace: String,
    jti: String,
    until: OffsetDateTime,
}

/// `cnf` claim (RFC 7800): DPoP key thumbprint (RFC 9449) or certificate thumbprint (RFC 8705).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// Claims of a Steward access token (RFC 9068 plus `env`, `kind`, `credential_id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub scope: String,
    pub env: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// RFC 8693 §4.1 delegation chain (see `service::federation`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act: Option<steward_core::trust::Actor>,
    /// The JIT grant whose extra scopes this token carries (see `service::lifecycle::jit`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jit: Option<Uuid>,
}

/// `aud`: a string when there is one audience, an array otherwise (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(pub Vec<String>);

impl Serialize for Audience {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum A {
            One(String),
            Many(Vec<String>),
        }
        Ok(match A::deserialize(d)? {
            A::One(s) => Audience(vec![s]),
            A::Many(v) => Audience(v),
        })
    }
}

impl Audience {
    pub fn contains(&self, a: &str) -> bool {
        self.0.iter().any(|x| x == a)
    }
}

/// A token that passed every check, with the identity as it is now.
pub struct VerifiedToken {
    pub claims: AccessClaims,
    pub identity: Arc<Identity>,
}

/// The claims of a token whose signature was verified, and the key that signed it.
pub struct SignedClaims {
    pub claims: AccessClaims,
    pub kid: String,
}

/// Successful token response plus the headers that go with it.
pub struct Issued {
    pub body: steward_proto::TokenResponse,
    pub dpop_nonce: Option<String>,
}

/// The failure recorded when a client assertion's `jti` was already used.
const ASSERTION_REPLAYED: &str = "assertion jti replayed";

/// Why `issue_client_credentials` refused a request: before anything was recorded (the caller
/// audits the denial), or with its outcome already recorded (a replayed assertion).
enum Refusal {
    Unrecorded(OAuthError),
    Recorded(OAuthError),
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        Self::Unrecorded(e)
    }
}

/// Why a request's record was not written as asked: the client's assertion was a replay (its
/// failure was recorded instead; the error to send), or the store failed.
enum NotRecorded {
    Replay(OAuthError),
    Store(steward_store::StoreError),
}

impl From<NotRecorded> for OAuthError {
    fn from(n: NotRecorded) -> Self {
        match n {
            NotRecorded::Replay(e) => e,
            NotRecorded::Store(_) => OAuthError::unavailable(),
        }
    }
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

impl Inner {
    fn fail_event(
        &self,
        ctx: &Ctx,
        action: &str,
        client: Option<Uuid>,
        reason: &str,
    ) -> steward_core::AuditEvent {
        let mut e = steward_core::AuditEvent::new(
            self.now(),
            client
                .map(|c| c.to_string())
                .unwrap_or_else(|| "anonymous".into()),
            action,
            Outcome::Failure,
        )
        .request(ctx.request_id.clone(), ctx.source.clone())
        .reason(reason);
        if let Some(c) = client {
            e = e.identity(c).target(format!("identity:{c}"));
        }
        e
    }

    /// Audits a failed client authentication, counts it against the limiter, and builds the error.
    async fn auth_failure(
        &self,
        ctx: &Ctx,
        action: &str,
        client: Option<Uuid>,
        reason: &str,
    ) -> OAuthError {
        let event = self.fail_event(ctx, action, client, reason);
        if self.store.commit(Change::audit_only(event)).await.is_err() {
            return OAuthError::unavailable();
        }
        self.count_failure(ctx, client)
    }

    /// Counts a failed client authentication against the limiter (already audited) and builds
    /// the error: `invalid_client`, or 429 once the client or source is locked out.
    fn count_failure(&self, ctx: &Ctx, client: Option<Uuid>) -> OAuthError {
        let mut locked = None;
        if let Some(c) = client
            && let Err(d) = self.limiter.record_failure(&format!("client:{c}"))
        {
            locked = Some(d);
        }
        if let Some(src) = &ctx.source
            && let Err(d) = self.limiter.record_failure(&format!("ip:{src}"))
        {
            locked = Some(d);
        }
        metrics::counter!("steward_auth_failures_total").increment(1);
        match locked {
            Some(d) => locked_out(d),
            None => OAuthError::invalid_client(),
        }
    }

    fn check_lockout(&self, client: Option<Uuid>, ctx: &Ctx) -> Result<(), OAuthError> {
        if let Some(c) = client {
            self.limiter
                .check(format_args!("client:{c}"))
                .map_err(locked_out)?;
        }
        if let Some(src) = &ctx.source {
            self.limiter
                .check(format_args!("ip:{src}"))
                .map_err(locked_out)?;
        }
        Ok(())
    }

    /// Authenticates the client by exactly one of `client_secret_basic`, `client_secret_post` or
    /// `private_key_jwt` (or mutual TLS), a client assertion's `jti` claimed.
    pub async fn authenticate_client(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
        action: &str,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let mut client = self
            .authenticate_client_unclaimed(form, headers, ctx, action)
            .await?;
        if let Some(a) = client.unclaimed.take() {
            let id = client.identity.id;
            match self.store.claim_once(&a.namespace, &a.jti, a.until).await {
                Ok(true) => self.limiter.record_success(format_args!("client:{id}")),
                Ok(false) => {
                    return Err(self
                        .auth_failure(ctx, action, Some(id), ASSERTION_REPLAYED)
                        .await);
                }
                Err(_) => return Err(OAuthError::unavailable()),
            }
        }
        Ok(client)
    }

    /// Commits `event`, the record of a request from `client`. A client assertion's `jti` not
    /// yet claimed is claimed in the same transaction; if it was a replay, the record written is
    /// the replay's failure instead, and the replay's error is returned.
    async fn record_outcome(
        &self,
        ctx: &Ctx,
        action: &str,
        client: &AuthenticatedClient,
        event: steward_core::AuditEvent,
    ) -> Result<(), NotRecorded> {
        let Some(a) = &client.unclaimed else {
            return match self.store.commit(Change::audit_only(event)).await {
                Ok(_) => Ok(()),
                Err(e) => Err(NotRecorded::Store(e)),
            };
        };
        let id = client.identity.id;
        let replayed = self.fail_event(ctx, action, Some(id), ASSERTION_REPLAYED);
        match self
            .store
            .claim_once_audited(&a.namespace, &a.jti, a.until, event, replayed)
            .await
        {
            Ok(r) if r.fresh => {
                self.limiter.record_success(format_args!("client:{id}"));
                Ok(())
            }
            Ok(_) => Err(NotRecorded::Replay(self.count_failure(ctx, Some(id)))),
            Err(e) => Err(NotRecorded::Store(e)),
        }
    }

    /// [`Self::authenticate_client`], leaving a client assertion's `jti` for the caller to
    /// claim with the record of the request (`record_outcome`).
    async fn authenticate_client_unclaimed(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
        action: &str,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let basic = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            });
        let post = form.get("client_secret");
        let assertion = form.get("client_assertion");
        let methods = usize::from(basic.is_some())
            + usize::from(post.is_some())
            + usize::from(assertion.is_some());
        if methods > 1 {
            return Err(OAuthError::invalid_request(
                "use exactly one client authentication method",
            ));
        }
        if methods == 0 {
            if ctx.client_cert.is_some() {
                return self.authenticate_tls_client(form, ctx, action).await;
            }
            return Err(self
                .auth_failure(ctx, action, None, "no client authentication")
                .await);
        }
        if let Some(a) = assertion {
            return self.authenticate_assertion(form, a, ctx, action).await;
        }
        let (method, client_id, secret) = match (basic, post) {
            (Some(b), _) => {
                let Some((id, secret)) = decode_basic(b) else {
                    return Err(self
                        .auth_failure(ctx, action, None, "malformed Basic authorization")
                        .await);
                };
                if form.get("client_id").is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id does not match the Authorization header",
                    ));
                }
                (AuthMethod::ClientSecretBasic, id, secret)
            }
            (None, Some(s)) => {
                let Some(id) = form.get("client_id") else {
                    return Err(OAuthError::invalid_request(
                        "client_id is required with client_secret",
                    ));
                };
                (AuthMethod::ClientSecretPost, id.to_owned(), s.to_owned())
            }
            (None, None) => return Err(OAuthError::invalid_client()),
        };
        let Ok(client) = Uuid::parse_str(&client_id) else {
            return Err(self
                .auth_failure(ctx, action, None, "client_id is not an identity id")
                .await);
        };
        self.check_lockout(Some(client), ctx)?;
        let key = match ApiKey::parse(&secret) {
            Ok(k) => k,
            Err(e) => {
                return Err(self
                    .auth_failure(
                        ctx,
                        action,
                        Some(client),
                        &format!("bad client secret: {e}"),
                    )
                    .await);
            }
        };
        let hash = self.hasher.hash(key.expose_secret().as_bytes());
        let cred = match self.credential_by_hash(hash).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(self
                    .auth_failure(ctx, action, Some(client), "unknown client secret")
                    .await);
            }
            Err(_) => return Err(OAuthError::unavailable()),
        };
        // `hash` is the HMAC of the presented key, already computed for the look-up: compared in
        // constant time with the stored one, not recomputed.
        let stored_ok = cred
            .secret_hash
            .as_deref()
            .is_some_and(|h| steward_crypto::constant_time_eq(&hash, h));
        if !stored_ok || cred.kind != CredentialKind::ApiKey {
            return Err(self
                .auth_failure(ctx, action, Some(client), "unknown client secret")
                .await);
        }
        if cred.identity_id != client {
            return Err(self
                .auth_failure(
                    ctx,
                    action,
                    Some(client),
                    "client secret belongs to another client",
                )
                .await);
        }
        let now = self.now();
        if let Err(r) = cred.check_usable(now) {
            return Err(self.auth_failure(ctx, action, Some(client), r).await);
        }
        let identity = self.live_identity(client, ctx, action).await?;
        self.limiter.record_success(format_args!("client:{client}"));
        Ok(AuthenticatedClient {
            identity,
            credential_id: cred.id,
            method,
            unclaimed: None,
        })
    }

    async fn live_identity(
        &self,
        client: Uuid,
        ctx: &Ctx,
        action: &str,
    ) -> Result<Arc<Identity>, OAuthError> {
        let identity = match self.identity(client).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err(self
                    .auth_failure(ctx, action, Some(client), "unknown client")
                    .await);
            }
            Err(_) => return Err(OAuthError::unavailable()),
        };
        if let Err(r) = identity.check_can_authenticate(self.now()) {
            return Err(self.auth_failure(ctx, action, Some(client), r).await);
        }
        Ok(identity)
    }

    /// RFC 7523 client assertion: signature by a registered public key, `iss`=`sub`=client,
    /// `aud` = token endpoint or issuer, short `exp`, single-use `jti`.
    async fn authenticate_assertion(
        &self,
        form: &Form,
        assertion: &str,
        ctx: &Ctx,
        action: &str,
    ) -> Result<AuthenticatedClient, OAuthError> {
        if form.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}"
            )));
        }
        let decoded = match jws::decode(assertion) {
            Ok(d) => d,
            Err(e) => {
                return Err(self
                    .auth_failure(
                        ctx,
                        action,
                        None,
                        &format!("malformed client assertion: {e}"),
                    )
                    .await);
            }
        };
        let iss = decoded.claim_str("iss");
        let sub = decoded.claim_str("sub");
        let client = match (iss, sub) {
            (Some(i), Some(s)) if i == s => match Uuid::parse_str(i) {
                Ok(u) => u,
                Err(_) => {
                    return Err(self
                        .auth_failure(ctx, action, None, "assertion iss is not an identity id")
                        .await);
                }
            },
            _ => {
                return Err(self
                    .auth_failure(
                        ctx,
                        action,
                        None,
                        "assertion iss and sub must both be the client id",
                    )
                    .await);
            }
        };
        if form
            .get("client_id")
            .is_some_and(|c| c != client.to_string())
        {
            return Err(OAuthError::invalid_request(
                "client_id does not match the assertion",
            ));
        }
        self.check_lockout(Some(client), ctx)?;
        let now = self.now();
        // Cached keys first; a miss re-reads once, so a key added on any node works at once.
        let mut fresh = false;
        let credential_id = loop {
            let (creds, cached) = match self.public_key_credentials(client, fresh).await {
                Ok(c) => c,
                Err(_) => return Err(OAuthError::unavailable()),
            };
            match assertion_key(&creds, &decoded, now) {
                Ok(id) => break id,
                Err(_) if cached => fresh = true,
                Err(e) => {
                    return Err(self.auth_failure(ctx, action, Some(client), &e).await);
                }
            }
        };
        if let Err(r) = self.check_assertion_claims(&decoded, now) {
            return Err(self.auth_failure(ctx, action, Some(client), r).await);
        }
        let (Some(jti), Some(exp)) = (decoded.claim_str("jti"), decoded.claim_i64("exp")) else {
            return Err(self
                .auth_failure(ctx, action, Some(client), "assertion needs jti and exp")
                .await);
        };
        let until = OffsetDateTime::from_unix_timestamp(exp).unwrap_or(now)
            + time::Duration::seconds(SKEW_SECS);
        let identity = self.live_identity(client, ctx, action).await?;
        // Claimed by the caller (a success is counted once the claim is known to be fresh).
        Ok(AuthenticatedClient {
            identity,
            credential_id,
            method: AuthMethod::PrivateKeyJwt,
            unclaimed: Some(AssertionJti {
                namespace: format!("assertion:{client}"),
                jti: jti.to_owned(),
                until,
            }),
        })
    }

    fn check_assertion_claims(
        &self,
        d: &jws::Decoded,
        now: OffsetDateTime,
    ) -> Result<(), &'static str> {
        let now = unix(now);
        let aud_ok = match d.claims.get("aud") {
            Some(serde_json::Value::String(a)) => a == &self.token_endpoint || a == &self.issuer,
            Some(serde_json::Value::Array(v)) => v
                .iter()
                .filter_map(|x| x.as_str())
                .any(|a| a == self.token_endpoint || a == self.issuer),
            _ => false,
        };
        if !aud_ok {
            return Err("assertion aud must be the token endpoint or the issuer");
        }
        let exp = d.claim_i64("exp").ok_or("assertion has no exp")?;
        if exp + SKEW_SECS <= now {
            return Err("assertion has expired");
        }
        if exp > now + MAX_ASSERTION_SECS + SKEW_SECS {
            return Err("assertion lifetime is too long (at most 10 minutes)");
        }
        if let Some(iat) = d.claim_i64("iat") {
            if iat > now + SKEW_SECS {
                return Err("assertion iat is in the future");
            }
            if exp - iat > MAX_ASSERTION_SECS {
                return Err("assertion lifetime is too long (at most 10 minutes)");
            }
        }
        if d.claim_i64("nbf").is_some_and(|nbf| nbf > now + SKEW_SECS) {
            return Err("assertion is not yet valid");
        }
        match d.claim_str("jti") {
            Some(j) if !j.is_empty() && j.len() <= 256 => Ok(()),
            _ => Err("assertion needs a jti of 1 to 256 characters"),
        }
    }

    /// `POST /oauth2/token`.
    pub async fn token(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
    ) -> Result<Issued, OAuthError> {
        self.findings_runtime.note_token_request();
        let grant = form
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        if grant == super::federation::TOKEN_EXCHANGE {
            return self.token_exchange(form, headers, ctx).await;
        }
        // A client assertion's jti is claimed with the record of the outcome: one write.
        let client = self
            .authenticate_client_unclaimed(form, headers, ctx, "token.issue")
            .await?;
        if grant != "client_credentials" {
            let e = OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {grant} is not supported"),
            );
            return Err(self.deny(ctx, &client, "token.issue", e).await);
        }
        match self
            .issue_client_credentials(&client, form, headers, ctx)
            .await
        {
            Ok(t) => Ok(t),
            Err(Refusal::Recorded(e)) => Err(e),
            Err(Refusal::Unrecorded(e)) => Err(self.deny(ctx, &client, "token.issue", e).await),
        }
    }

    /// Audits a refused request from an authenticated client, claiming its assertion's `jti`
    /// if it has one; returns the error to send (a replay's, if the assertion was replayed).
    async fn deny(
        &self,
        ctx: &Ctx,
        client: &AuthenticatedClient,
        action: &str,
        e: OAuthError,
    ) -> OAuthError {
        let id = client.identity.id;
        let event = steward_core::AuditEvent::new(
            self.now(),
            id.to_string(),
            action,
            Outcome::Denied,
        )
        .request(ctx.request_id.clone(), ctx.source.clone())
        .identity(id)
        .target(format!("identity:{id}"))
        .reason(format!("{}: {}", e.error, e.description))
        .details(json!({"credential_id": client.credential_id, "method": client.method.as_str()}));
        match self.record_outcome(ctx, action, client, event).await {
            Ok(()) => e,
            Err(NotRecorded::Replay(replayed)) => replayed,
            Err(NotRecorded::Store(err)) => {
                tracing::error!(error = %err, "could not audit a refused token request");
                e
            }
        }
    }

    async fn issue_client_credentials(
        &self,
        client: &AuthenticatedClient,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
    ) -> Result<Issued, Refusal> {
        let identity = &client.identity;
        let requested = match form.get("scope") {
            Some(s) => scope::parse_scope_param(s).map_err(|e| {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string())
            })?,
            None => vec![],
        };
        let mut jit = None;
        let scopes = if requested.is_empty() {
            identity.default_scopes.clone()
        } else {
            jit = self.check_requested_scopes(identity, &requested).await?;
            requested
        };
        let mut aud: Vec<String> = vec![];
        for a in form.all("resource").into_iter().chain(form.all("audience")) {
            if !identity.audiences.iter().any(|x| x == a) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    format!("audience {a} is not allowed for this client"),
                )
                .into());
            }
            if !aud.iter().any(|x| x == a) {
                aud.push(a.to_owned());
            }
        }
        if aud.is_empty() {
            aud = if identity.audiences.is_empty() {
                vec![self.issuer.clone()]
            } else {
                identity.audiences.clone()
            };
        }
        let now = self.now();
        let jkt = self.check_dpop(headers, identity, now).await?;
        let lifetime = i64::from(identity.token_lifetime(&self.config.registry));
        let lifetime = jit
            .as_ref()
            .map_or(lifetime, |g| g.cap_lifetime(lifetime, now));
        let iat = unix(now);
        let jti = steward_crypto::rand::token(16);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: identity.id.to_string(),
            aud: Audience(aud),
            exp: iat + lifetime,
            iat,
            nbf: iat,
            jti: jti.clone(),
            client_id: identity.id.to_string(),
            scope: scope::join_scopes(&scopes),
            env: identity.environment.clone(),
            kind: identity.kind.as_str().to_owned(),
            credential_id: super::certs::credential_claim(client),
            cnf: super::certs::confirmation(jkt.clone(), client, ctx),
            act: None,
            jit: jit.as_ref().map(|g| g.id),
        };
        let ring = self.signing_ring().await;
        let token = ring.signer.sign_jwt("at+jwt", &claims).map_err(|_| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "token signing failed",
            )
        })?;
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        let event = steward_core::AuditEvent::new(
            now,
            identity.id.to_string(),
            "token.issue",
            Outcome::Success,
        )
        .request(ctx.request_id.clone(), ctx.source.clone())
        .identity(identity.id)
        .target(format!("token:{jti}"))
        .details(json!({
            "jti": jti,
            "grant_type": "client_credentials",
            "method": client.method.as_str(),
            "credential_id": client.credential_id,
            "scope": claims.scope,
            "aud": claims.aud.0,
            "exp": claims.exp,
            "token_type": token_type,
            "kid": ring.signer.kid(),
            "jit": claims.jit,
        }));
        // Durable before the response: the audit record is group-committed and awaited (with
        // the claim of a client assertion's jti, which may turn out to be a replay).
        self.record_outcome(ctx, "token.issue", client, event)
            .await
            .map_err(|n| Refusal::Recorded(n.into()))?;
        self.record_use(client.credential_id, now);
        self.record_token_use(client, &claims.scope, &claims.aud.0, ctx, headers, now);
        metrics::counter!("steward_tokens_issued_total").increment(1);
        Ok(Issued {
            body: steward_proto::TokenResponse {
                access_token: token,
                token_type: token_type.into(),
                expires_in: lifetime.unsigned_abs(),
                scope: (!claims.scope.is_empty()).then(|| claims.scope.clone()),
                issued_token_type: None,
            },
            dpop_nonce: self.config.dpop_require_nonce.then(|| {
                steward_crypto::dpop::nonce(&self.dpop_nonce_key, unix(now), DPOP_NONCE_PERIOD_SECS)
            }),
        })
    }

    /// Verifies a DPoP proof if one was sent (or is required). Returns the key thumbprint to bind.
    pub(crate) async fn check_dpop(
        &self,
        headers: &HeaderMap,
        identity: &Identity,
        now: OffsetDateTime,
    ) -> Result<Option<String>, OAuthError> {
        let mut proofs = headers.get_all("dpop").iter();
        let proof = match (proofs.next(), proofs.next()) {
            (None, _) if identity.require_dpop => {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_dpop_proof",
                    "this client must present a DPoP proof",
                ));
            }
            (None, _) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_dpop_proof",
                    "more than one DPoP header",
                ));
            }
            (Some(p), None) => p.to_str().map_err(|_| {
                OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_dpop_proof",
                    "DPoP header is not ASCII",
                )
            })?,
        };
        let check = steward_crypto::dpop::DpopCheck {
            method: "POST",
            url: &self.token_endpoint,
            now: unix(now),
            max_age_secs: DPOP_MAX_AGE_SECS,
            skew_secs: SKEW_SECS,
            access_token: None,
        };
        let p = steward_crypto::dpop::verify_proof(proof, &check).map_err(|e| {
            OAuthError::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", e.to_string())
        })?;
        if self.config.dpop_require_nonce {
            let ok = p.nonce.as_deref().is_some_and(|n| {
                steward_crypto::dpop::check_nonce(
                    &self.dpop_nonce_key,
                    n,
                    unix(now),
                    DPOP_NONCE_PERIOD_SECS,
                )
            });
            if !ok {
                let mut e = OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "use_dpop_nonce",
                    "use the DPoP-Nonce the server provided",
                );
                e.dpop_nonce = Some(steward_crypto::dpop::nonce(
                    &self.dpop_nonce_key,
                    unix(now),
                    DPOP_NONCE_PERIOD_SECS,
                ));
                return Err(e);
            }
        }
        // A proof is single-use: remember its jti for as long as its iat would still be accepted.
        let remember_until = now + time::Duration::seconds(DPOP_MAX_AGE_SECS + 2 * SKEW_SECS);
        match self
            .store
            .claim_once(&format!("dpop:{}", p.jkt), &p.jti, remember_until)
            .await
        {
            Ok(true) => Ok(Some(p.jkt)),
            Ok(false) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                "DPoP proof jti has already been used",
            )),
            Err(_) => Err(OAuthError::unavailable()),
        }
    }

    /// Full verification of a Steward access token at `now`: signature and `typ`, `iss`, time
    /// window, revocation, and the current state of its identity and credential.
    /// The claims of a token whose signature is by a key in this node's ring. A token verified
    /// before is answered from [`Inner::verified_tokens`] while its signing key is still in the
    /// ring; everything time- or state-dependent is checked by the caller on every use.
    async fn signed_claims(&self, token: &str) -> Result<Arc<SignedClaims>, &'static str> {
        let cache_key = steward_crypto::sha256(token.as_bytes());
        let mut ring = self.ring();
        if let Some(hit) = self.verified_tokens.get(&cache_key)
            && ring.verifier.get(&hit.kid).is_some()
        {
            return Ok(hit);
        }
        let decoded = match ring.verifier.verify(token, Some("at+jwt")) {
            Ok(d) => d,
            Err(_) => {
                // A key created by another node may be missing from this node's ring. Reload
                // only for a kid the ring really lacks, and at most once a second: a forged
                // token must not buy a database read and an unsealing.
                let kid_unknown = jws::decode(token)
                    .ok()
                    .and_then(|d| d.kid().map(str::to_owned))
                    .is_some_and(|k| ring.verifier.get(&k).is_none());
                if !kid_unknown || !self.may_reload_ring() || self.reload_ring().await.is_err() {
                    return Err("invalid token signature");
                }
                ring = self.ring();
                ring.verifier
                    .verify(token, Some("at+jwt"))
                    .map_err(|_| "invalid token signature")?
            }
        };
        let kid = decoded.kid().ok_or("invalid token signature")?.to_owned();
        let claims: AccessClaims =
            serde_json::from_value(serde_json::Value::Object(decoded.claims))
                .map_err(|_| "token claims are malformed")?;
        let signed = Arc::new(SignedClaims { claims, kid });
        self.verified_tokens.insert(cache_key, signed.clone());
        Ok(signed)
    }

    pub async fn verify_token(&self, token: &str) -> Result<VerifiedToken, &'static str> {
        let signed = self.signed_claims(token).await?;
        let claims = &signed.claims;
        let now = self.now();
        let t = unix(now);
        if claims.iss != self.issuer {
            return Err("token issuer mismatch");
        }
        if claims.exp <= t {
            return Err("token has expired");
        }
        if claims.nbf > t + SKEW_SECS {
            return Err("token is not yet valid");
        }
        match self.is_token_revoked(&claims.jti).await {
            Ok(false) => {}
            Ok(true) => return Err("token has been revoked"),
            Err(_) => return Err("revocation status unavailable"),
        }
        let id = Uuid::parse_str(&claims.sub).map_err(|_| "token subject is malformed")?;
        let identity = match self.identity(id).await {
            Ok(Some(i)) => i,
            Ok(None) => return Err("token subject is unknown"),
            Err(_) => return Err("identity status unavailable"),
        };
        let issued = OffsetDateTime::from_unix_timestamp(claims.iat)
            .map_err(|_| "token iat is malformed")?;
        identity.token_still_valid(issued, now)?;
        if let Some(act) = &claims.act {
            self.check_actor_chain(act, now).await?;
        }
        if let Some(grant) = claims.jit {
            self.check_jit_claim(identity.id, grant, now).await?;
        }
        if let Some(cid) = claims.credential_id {
            match self.credential_by_id(cid).await {
                Ok(Some(c)) => c.check_usable(now)?,
                Ok(None) => return Err("token credential is unknown"),
                Err(_) => return Err("credential status unavailable"),
            }
        }
        Ok(VerifiedToken {
            claims: claims.clone(),
            identity,
        })
    }

    /// `POST /oauth2/introspect` (RFC 7662). The caller must be allowed `steward:introspect` or `steward:admin`.
    pub async fn introspect(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
    ) -> Result<serde_json::Value, OAuthError> {
        self.authorize_privileged_caller(
            form,
            headers,
            ctx,
            "token.introspect",
            &["steward:introspect", "steward:admin"],
        )
        .await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        Ok(match self.verify_token(token).await {
            Ok(v) => {
                let c = v.claims;
                let mut out = json!({
                    "active": true,
                    "iss": c.iss,
                    "sub": c.sub,
                    "aud": c.aud.0,
                    "exp": c.exp,
                    "iat": c.iat,
                    "nbf": c.nbf,
                    "jti": c.jti,
                    "client_id": c.client_id,
                    "scope": c.scope,
                    "env": c.env,
                    "kind": c.kind,
                    "token_type": if c.cnf.as_ref().is_some_and(|x| x.jkt.is_some()) { "DPoP" } else { "Bearer" },
                });
                if let Some(cnf) = c.cnf {
                    out["cnf"] = json!(cnf);
                }
                if let Some(act) = c.act {
                    out["act"] = json!(act);
                }
                if let Some(jit) = c.jit {
                    out["jit"] = json!(jit);
                }
                out
            }
            // Unknown is not inactive: a resource server should retry, not drop the token.
            Err(r) if crate::health::is_store_outage(r) => return Err(OAuthError::unavailable()),
            Err(_) => json!({"active": false}),
        })
    }

    /// Client authentication (or a bearer token) whose identity holds one of `scopes`.
    async fn authorize_privileged_caller(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
        action: &str,
        scopes: &[&str],
    ) -> Result<Arc<Identity>, OAuthError> {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let (identity, granted): (Arc<Identity>, Vec<String>) = match bearer {
            Some(t) => match self.verify_token(t).await {
                Ok(v) => {
                    let g = v.claims.scope.split(' ').map(str::to_owned).collect();
                    (v.identity, g)
                }
                Err(r) => return Err(self.auth_failure(ctx, action, None, r).await),
            },
            None => {
                let c = self.authenticate_client(form, headers, ctx, action).await?;
                let g = c.identity.scopes.clone();
                (c.identity, g)
            }
        };
        if !granted.iter().any(|g| scopes.contains(&g.as_str())) {
            return Err(OAuthError::new(
                StatusCode::FORBIDDEN,
                "unauthorized_client",
                format!(
                    "this operation needs one of the scopes: {}",
                    scopes.join(", ")
                ),
            ));
        }
        Ok(identity)
    }

    /// `POST /oauth2/revoke` (RFC 7009): a client may revoke its own tokens; `steward:admin` any.
    pub async fn revoke_token(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
    ) -> Result<(), OAuthError> {
        let client = self
            .authenticate_client(form, headers, ctx, "token.revoke")
            .await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let ring = self.ring();
        // Expired or foreign tokens are acknowledged without effect (RFC 7009 §2.2).
        let Ok(decoded) = ring.verifier.verify(token, Some("at+jwt")) else {
            return Ok(());
        };
        let Ok(claims) =
            serde_json::from_value::<AccessClaims>(serde_json::Value::Object(decoded.claims))
        else {
            return Ok(());
        };
        let is_admin = client.identity.scopes.iter().any(|s| s == "steward:admin");
        if claims.client_id != client.identity.id.to_string() && !is_admin {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "a client may only revoke its own tokens",
            ));
        }
        let now = self.now();
        let exp = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap_or(now);
        if exp <= now {
            return Ok(());
        }
        let subject = Uuid::parse_str(&claims.sub).ok();
        let mut event = ctx
            .event(now, "token.revoke", Outcome::Success)
            .target(format!("token:{}", claims.jti))
            .details(json!({"jti": claims.jti, "exp": claims.exp}));
        event.actor = client.identity.id.to_string();
        if let Some(s) = subject {
            event = event.identity(s);
        }
        let change = Change::new()
            .with(steward_store::Mutation::RevokeToken {
                jti: claims.jti.clone(),
                identity_id: subject,
                expires_at: exp,
            })
            .audit(event);
        self.store
            .commit(change)
            .await
            .map_err(|_| OAuthError::unavailable())?;
        self.revoked
            .insert(&claims.jti, claims.exp, now.unix_timestamp());
        Ok(())
    }
}

fn locked_out(d: std::time::Duration) -> OAuthError {
    let secs = d.as_secs().max(1);
    let mut e = OAuthError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        format!("too many failed authentication attempts; retry after {secs} seconds"),
    );
    e.retry_after = Some(secs);
    e
}

/// Decodes `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = steward_crypto::b64::std_decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    let dec = |x: &str| -> Option<String> {
        let plus = x.replace('+', " ");
        url::form_urlencoded::parse(
            format!("v={}", plus.replace('&', "%26").replace('=', "%3D")).as_bytes(),
        )
        .next()
        .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// The registered public key (usable at `now`) whose signature the assertion carries.
fn assertion_key(
    creds: &[Credential],
    decoded: &jws::Decoded,
    now: OffsetDateTime,
) -> Result<Uuid, String> {
    let kid = decoded.kid();
    let mut last_err = "no registered public key matches the assertion".to_owned();
    for c in creds.iter().filter(|c| c.kind == CredentialKind::PublicKey) {
        let Some(jwk) = &c.jwk else { continue };
        if let Some(k) = kid {
            let jwk_kid = jwk.get("kid").and_then(|v| v.as_str());
            if jwk_kid != Some(k) && c.fingerprint != k {
                continue;
            }
        }
        let Ok(parsed) = steward_crypto::jwk::parse_public_jwk(jwk) else {
            continue;
        };
        if let Some(alg) = jwk.get("alg").and_then(|v| v.as_str())
            && alg != decoded.alg.as_str()
        {
            last_err = "assertion alg differs from the registered key's alg".into();
            continue;
        }
        match jws::verify(decoded, &parsed.key, JwsAlg::ASYMMETRIC) {
            Ok(()) => match c.check_usable(now) {
                Ok(()) => return Ok(c.id),
                Err(r) => last_err = r.to_owned(),
            },
            Err(e) => last_err = format!("assertion signature: {e}"),
        }
    }
    Err(last_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_decoding_handles_urlencoding() {
        let enc = steward_crypto::b64::std_encode(b"a%3Ab:s%2Bc+d");
        assert_eq!(decode_basic(&enc), Some(("a:b".into(), "s+c d".into())));
        assert_eq!(decode_basic("!!!"), None);
    }

    #[test]
    fn form_rejects_repeats_but_allows_resource() {
        assert!(Form::parse(b"grant_type=a&grant_type=b").is_err());
        let f = Form::parse(b"resource=x&resource=y&scope=").unwrap();
        assert_eq!(f.all("resource"), vec!["x", "y"]);
        assert_eq!(f.get("scope"), None);
    }

    #[test]
    fn audience_serializes_as_string_or_array() {
        assert_eq!(
            serde_json::to_string(&Audience(vec!["a".into()])).unwrap(),
            "\"a\""
        );
        assert_eq!(
            serde_json::to_string(&Audience(vec!["a".into(), "b".into()])).unwrap(),
            "[\"a\",\"b\"]"
        );
        let a: Audience = serde_json::from_str("[\"x\"]").unwrap();
        assert!(a.contains("x"));
    }
}

//! Request extractors: request context, the authenticated admin principal, and JSON/query bodies
//! whose rejections become the admin-API error shape with the right status.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::service::Ctx;
use crate::state::AppState;

/// The request's id (from `X-Request-Id` when well-formed, else generated) and source address.
pub struct ReqCtx(pub Ctx);

/// A random (version 4) UUID from aws-lc's generator, which is seeded once and runs in user
/// space: `Uuid::new_v4` asks the kernel for every id, a system call on each request.
fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    steward_crypto::rand::fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

pub fn request_ctx(parts: &Parts) -> Ctx {
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    Ctx {
        actor: "anonymous".into(),
        request_id: Some(request_id),
        source,
        client_cert: parts
            .extensions
            .get::<std::sync::Arc<crate::tls::PeerCert>>()
            .cloned(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReqCtx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(request_ctx(parts)))
    }
}

/// What an admin route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read inventory: `steward:read` or `steward:admin`.
    Read,
    /// Change anything: `steward:admin`.
    Write,
    /// Read the audit log: `steward:audit`, `steward:read` or `steward:admin`.
    Audit,
}

/// A caller authenticated by a Steward access token for this server (continuously verified).
pub struct Principal {
    pub ctx: Ctx,
    pub identity: Uuid,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn require(&self, need: Need) -> Result<(), ApiError> {
        let has = |s: &str| self.scopes.iter().any(|x| x == s);
        let ok = has("steward:admin")
            || match need {
                Need::Read => has("steward:read"),
                Need::Write => false,
                Need::Audit => has("steward:audit") || has("steward:read"),
            };
        if ok {
            Ok(())
        } else {
            Err(ApiError::forbidden(match need {
                Need::Read => "this request needs scope steward:read or steward:admin",
                Need::Write => "this request needs scope steward:admin",
                Need::Audit => {
                    "this request needs scope steward:audit, steward:read or steward:admin"
                }
            }))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut ctx = request_ctx(parts);
        let auth = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized("missing access token: send Authorization: Bearer <token>")
            })?;
        let (scheme, token) = auth
            .split_once(' ')
            .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
        let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
        if !dpop_scheme && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized(
                "unsupported authorization scheme; use Bearer or DPoP",
            ));
        }
        let token = token.trim();
        // Verifying a token needs the database: while it is unreachable, answer 503 at once
        // (the token may be fine, so never 401), instead of waiting on a lost connection.
        let unavailable = || {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage is unavailable; retry later",
            )
        };
        if !state.is_ready() {
            return Err(unavailable());
        }
        let verified = state.verify_token(token).await.map_err(|r| {
            if crate::health::is_store_outage(r) {
                unavailable()
            } else {
                ApiError::unauthorized(r)
            }
        })?;
        if !verified.claims.aud.contains(&state.issuer) {
            return Err(ApiError::unauthorized("token audience is not this server"));
        }
        let bound = verified.claims.cnf.as_ref().and_then(|c| c.jkt.clone());
        match (bound, dpop_scheme) {
            (Some(jkt), true) => check_resource_dpop(parts, state, token, &jkt).await?,
            (Some(_), false) => {
                return Err(ApiError::unauthorized(
                    "DPoP-bound token must be sent with the DPoP scheme and a proof",
                ));
            }
            (None, true) => {
                return Err(ApiError::unauthorized(
                    "token is not DPoP-bound; use the Bearer scheme",
                ));
            }
            (None, false) => {}
        }
        // RFC 8705 §3: a certificate-bound token is only good with the certificate it is bound to.
        if let Some(x5t) = verified
            .claims
            .cnf
            .as_ref()
            .and_then(|c| c.x5t_s256.as_ref())
        {
            let same = ctx.client_cert.as_ref().is_some_and(|c| {
                steward_crypto::constant_time_eq(c.x5t_s256.as_bytes(), x5t.as_bytes())
            });
            if !same {
                return Err(ApiError::unauthorized(
                    "certificate-bound token: present it over mutual TLS with the client certificate it is bound to",
                ));
            }
        }
        ctx.actor = verified.claims.sub.clone();
        let scopes = verified
            .claims
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            ctx,
            identity: verified.identity.id,
            scopes,
        })
    }
}

/// RFC 9449 §7: a DPoP-bound token at a resource needs a fresh proof with `ath` and the bound key.
async fn check_resource_dpop(
    parts: &Parts,
    state: &AppState,
    token: &str,
    jkt: &str,
) -> Result<(), ApiError> {
    let proof = parts
        .headers
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing DPoP proof"))?;
    let url = format!("{}{}", state.issuer, parts.uri.path());
    let now = state.now().unix_timestamp();
    let check = steward_crypto::dpop::DpopCheck {
        method: parts.method.as_str(),
        url: &url,
        now,
        max_age_secs: crate::service::tokens::DPOP_MAX_AGE_SECS,
        skew_secs: crate::service::tokens::SKEW_SECS,
        access_token: Some(token),
    };
    let p = steward_crypto::dpop::verify_proof(proof, &check)
        .map_err(|e| ApiError::unauthorized(format!("DPoP proof: {e}")))?;
    if !steward_crypto::constant_time_eq(p.jkt.as_bytes(), jkt.as_bytes()) {
        return Err(ApiError::unauthorized(
            "DPoP proof key does not match the token binding",
        ));
    }
    let until =
        state.now() + time::Duration::seconds(crate::service::tokens::DPOP_MAX_AGE_SECS + 120);
    match state
        .store
        .claim_once(&format!("dpop:{jkt}"), &p.jti, until)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::unauthorized(
            "DPoP proof jti has already been used",
        )),
        Err(e) => Err(crate::error::ServiceError::from(e).into()),
    }
}

/// JSON body extractor whose rejections use the admin-API error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::JsonDataError(e) => {
            ApiError::bad_request(format!("invalid JSON body: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            )
        }
        other => ApiError::new(other.status(), "invalid_request", other.body_text()),
    }
}

/// Query-string extractor whose rejections use the admin-API error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(
                format!("invalid query: {}", e.body_text()),
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Path UUID parsing with a clean 404/400.
pub fn parse_id(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::not_found(format!("{what} {s} not found")))
}

/// An optional JSON body: an empty body yields `T::default()`; anything else must be valid JSON.
pub struct ApiJsonOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let has_body = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v != "0");
        let has_type = req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        if !has_type {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
            if bytes.iter().all(u8::is_ascii_whitespace) || !has_body {
                return Ok(Self(T::default()));
            }
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| Self(v))
    }
}

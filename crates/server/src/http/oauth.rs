//! OAuth 2.0 endpoints: token (RFC 6749 / 9449), introspection (RFC 7662), revocation (RFC 7009).
//! Bodies are form-encoded; every error is an RFC 6749 §5.2 JSON body with the right status.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::ReqCtx;
use crate::service::tokens::{Form, OAuthError};
use crate::state::AppState;

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = steward_proto::OAuthErrorBody {
            error: self.error.to_owned(),
            error_description: Some(self.description),
        };
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"steward\""),
            );
        }
        if let Some(s) = self
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            h.insert(header::RETRY_AFTER, s);
        }
        if let Some(n) = self.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            h.insert("dpop-nonce", n);
        }
        resp
    }
}

/// Checks the content type and parses the form, mapping oversize bodies to 413.
fn read_form(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Form, OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OAuthError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "request body is too large",
            )
        } else {
            OAuthError::invalid_request("could not read the request body")
        }
    })?;
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    Form::parse(&body)
}

fn no_store<T: IntoResponse>(v: T) -> Response {
    let mut r = v.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// The form body of an OAuth endpoint; rejections are RFC 6749 errors.
pub struct OAuthForm(pub Form);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, OAuthError> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await;
        read_form(&headers, body).map(Self)
    }
}

#[utoipa::path(post, path = "/oauth2/token", tag = "oauth2",
    request_body(content_type = "application/x-www-form-urlencoded", content = String),
    responses((status = 200, body = steward_proto::TokenResponse), (status = 400, body = steward_proto::OAuthErrorBody), (status = 401, body = steward_proto::OAuthErrorBody)))]
pub async fn token(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Result<Response, OAuthError> {
    let issued = s.token(&form, &headers, &ctx).await?;
    let mut r = no_store(Json(issued.body));
    if let Some(n) = issued
        .dpop_nonce
        .and_then(|n| HeaderValue::from_str(&n).ok())
    {
        r.headers_mut().insert("dpop-nonce", n);
    }
    Ok(r)
}

#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth2",
    request_body(content_type = "application/x-www-form-urlencoded", content = String),
    responses((status = 200, description = "RFC 7662 introspection response")))]
pub async fn introspect(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Result<Response, OAuthError> {
    Ok(no_store(Json(s.introspect(&form, &headers, &ctx).await?)))
}

#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth2",
    request_body(content_type = "application/x-www-form-urlencoded", content = String),
    responses((status = 200, description = "Revoked, or nothing to revoke (RFC 7009 §2.2)")))]
pub async fn revoke(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Result<Response, OAuthError> {
    s.revoke_token(&form, &headers, &ctx).await?;
    Ok(no_store(StatusCode::OK))
}

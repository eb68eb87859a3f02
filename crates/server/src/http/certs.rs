//! Certificate endpoints: CSR issuance, the trust bundle, the CRL and deny-list, CA rollover,
//! and device CAs with their mapping rules.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_core::Identity;
use steward_proto as proto;
use utoipa::IntoParams;

use super::extract::{ApiJson, ApiJsonOrDefault, ApiQuery, Need, Principal, ReqCtx, parse_id};
use crate::error::ApiError;
use crate::service::Ctx;
use crate::service::tokens::{Form, OAuthError};
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

fn oauth_to_api(e: OAuthError) -> ApiError {
    let mut a = ApiError::new(e.status, e.error, e.description);
    if e.status == StatusCode::UNAUTHORIZED {
        a.code = "unauthorized";
    }
    a
}

/// Who asks for a certificate: a Steward access token for this server (`Bearer`), HTTP Basic
/// client credentials, or the connection's client certificate (renewal over mutual TLS).
async fn requester(
    s: &AppState,
    headers: &HeaderMap,
    ctx: &mut Ctx,
) -> Result<(Arc<Identity>, &'static str), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(t) = auth.and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
    }) {
        let v = s
            .verify_token(t.trim())
            .await
            .map_err(ApiError::unauthorized)?;
        if !v.claims.aud.contains(&s.issuer) {
            return Err(ApiError::unauthorized("token audience is not this server"));
        }
        if let Some(cnf) = &v.claims.cnf {
            if cnf.jkt.is_some() {
                return Err(ApiError::unauthorized(
                    "DPoP-bound tokens are not accepted here: authenticate with client credentials or a client certificate",
                ));
            }
            if let Some(x) = &cnf.x5t_s256 {
                let same = ctx.client_cert.as_ref().is_some_and(|c| {
                    steward_crypto::constant_time_eq(c.x5t_s256.as_bytes(), x.as_bytes())
                });
                if !same {
                    return Err(ApiError::unauthorized(
                        "certificate-bound token: present it with the client certificate it is bound to",
                    ));
                }
            }
        }
        ctx.actor = v.identity.id.to_string();
        return Ok((v.identity, "bearer"));
    }
    let c = s
        .authenticate_client(&Form::default(), headers, ctx, "certificate.issue")
        .await
        .map_err(oauth_to_api)?;
    ctx.actor = c.identity.id.to_string();
    Ok((c.identity, c.method.as_str()))
}

#[utoipa::path(post, path = "/v1/certificates", request_body = proto::IssueCertificate, tag = "certificates",
    description = "Issues an X.509 SVID from a PKCS#10 CSR for the authenticated identity (Bearer token, HTTP Basic client credentials, or a client certificate over mutual TLS).",
    responses((status = 201, body = proto::IssuedCertificate), (status = 400, body = proto::ErrorBody),
        (status = 401, body = proto::ErrorBody), (status = 403, body = proto::ErrorBody)))]
pub async fn issue(
    State(s): State<AppState>,
    ReqCtx(mut ctx): ReqCtx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<proto::IssueCertificate>,
) -> ApiResult<Response> {
    let (identity, method) = requester(&s, &headers, &mut ctx).await?;
    let issued = s.issue_certificate(&ctx, &identity, method, req).await?;
    let mut r = (StatusCode::CREATED, Json(issued)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FormatParams {
    /// Trust bundle: `pem` (default) or `spiffe` (SPIFFE bundle, JWKS). CRL: `der` (default) or `pem`.
    pub format: Option<String>,
}

#[utoipa::path(get, path = "/v1/trust-bundle", params(FormatParams), tag = "certificates", security(()),
    responses((status = 200, description = "CA certificates to trust: PEM, or the SPIFFE bundle (JWKS) with format=spiffe")))]
pub async fn trust_bundle(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<FormatParams>,
) -> ApiResult<Response> {
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    match q.format.as_deref() {
        None | Some("pem") => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-pem-file"),
                ),
                cache,
            ],
            s.trust_bundle_pem(),
        )
            .into_response()),
        Some("spiffe") | Some("jwks") => {
            let mut r = Json(s.spiffe_bundle()).into_response();
            r.headers_mut().insert(cache.0, cache.1);
            Ok(r)
        }
        Some(_) => Err(ApiError::bad_request("format must be pem or spiffe")),
    }
}

#[utoipa::path(get, path = "/v1/crl", params(FormatParams), tag = "certificates", security(()),
    responses((status = 200, description = "X.509 v2 CRL signed by the active issuing CA: DER (application/pkix-crl), or PEM with format=pem")))]
pub async fn crl(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<FormatParams>,
) -> ApiResult<Response> {
    let der = s.crl_der()?;
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    match q.format.as_deref() {
        None | Some("der") => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/pkix-crl"),
                ),
                cache,
            ],
            der,
        )
            .into_response()),
        Some("pem") => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-pem-file"),
                ),
                cache,
            ],
            steward_crypto::x509::pem_encode("X509 CRL", &der),
        )
            .into_response()),
        Some(_) => Err(ApiError::bad_request("format must be der or pem")),
    }
}

#[utoipa::path(post, path = "/v1/certificates/revoke", request_body = proto::RevokeCertificate, tag = "certificates",
    responses((status = 200, body = proto::RevokedCertificateView), (status = 400, body = proto::ErrorBody)))]
pub async fn revoke(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<proto::RevokeCertificate>,
) -> ApiResult<Json<proto::RevokedCertificateView>> {
    p.require(Need::Write)?;
    Ok(Json(s.revoke_certificate(&p.ctx, req).await?))
}

#[utoipa::path(get, path = "/v1/ca", tag = "certificates",
    responses((status = 200, body = proto::List<proto::CaView>)))]
pub async fn list_cas(
    State(s): State<AppState>,
    p: Principal,
) -> ApiResult<Json<proto::List<proto::CaView>>> {
    p.require(Need::Read)?;
    Ok(Json(proto::List {
        items: s.list_cas(),
        next_cursor: None,
    }))
}

#[utoipa::path(post, path = "/v1/ca/rotate", request_body = proto::RotateCa, tag = "certificates",
    responses((status = 201, body = proto::CaView), (status = 400, body = proto::ErrorBody)))]
pub async fn rotate_ca(
    State(s): State<AppState>,
    p: Principal,
    ApiJsonOrDefault(req): ApiJsonOrDefault<proto::RotateCa>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let v = s.rotate_ca(&p.ctx, req.activate_in_secs).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[utoipa::path(post, path = "/v1/device-cas", request_body = proto::CreateDeviceCa, tag = "certificates",
    responses((status = 201, body = proto::DeviceCaView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn create_device_ca(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<proto::CreateDeviceCa>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let v = s.create_device_ca(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[utoipa::path(get, path = "/v1/device-cas", tag = "certificates",
    responses((status = 200, body = proto::List<proto::DeviceCaView>)))]
pub async fn list_device_cas(
    State(s): State<AppState>,
    p: Principal,
) -> ApiResult<Json<proto::List<proto::DeviceCaView>>> {
    p.require(Need::Read)?;
    Ok(Json(proto::List {
        items: s.list_device_cas(),
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/v1/device-cas/{id}", tag = "certificates",
    responses((status = 204), (status = 404, body = proto::ErrorBody)))]
pub async fn delete_device_ca(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Need::Write)?;
    s.delete_device_ca(&p.ctx, parse_id(&id, "device CA")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/device-cas/{id}/rules", request_body = proto::CreateDeviceRule, tag = "certificates",
    responses((status = 201, body = proto::DeviceRuleView), (status = 400, body = proto::ErrorBody), (status = 404, body = proto::ErrorBody)))]
pub async fn create_device_rule(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::CreateDeviceRule>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let v = s
        .create_device_rule(&p.ctx, parse_id(&id, "device CA")?, req)
        .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[utoipa::path(get, path = "/v1/device-cas/{id}/rules", tag = "certificates",
    responses((status = 200, body = proto::List<proto::DeviceRuleView>), (status = 404, body = proto::ErrorBody)))]
pub async fn list_device_rules(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<proto::List<proto::DeviceRuleView>>> {
    p.require(Need::Read)?;
    Ok(Json(proto::List {
        items: s.list_device_rules(parse_id(&id, "device CA")?)?,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/v1/device-cas/{id}/rules/{rule}", tag = "certificates",
    responses((status = 204), (status = 404, body = proto::ErrorBody)))]
pub async fn delete_device_rule(
    State(s): State<AppState>,
    p: Principal,
    Path((id, rule)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    p.require(Need::Write)?;
    s.delete_device_rule(
        &p.ctx,
        parse_id(&id, "device CA")?,
        parse_id(&rule, "rule")?,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

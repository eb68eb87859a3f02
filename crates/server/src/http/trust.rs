//! Trust-policy handlers: `/v1/trust-policies` (create, list, get, patch, delete) and
//! `/v1/trust-policies/{id}/explain`. Each checks scope, calls one service method and maps the result.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_proto as proto;
use steward_proto::trust as wire;
use steward_store::TrustPolicyQuery;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, Need, Principal, parse_id};
use crate::error::ApiError;
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

#[utoipa::path(post, path = "/v1/trust-policies", request_body = wire::CreateTrustPolicy, tag = "federation",
    responses((status = 201, body = wire::TrustPolicyView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<wire::CreateTrustPolicy>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let v = s.create_trust_policy(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyListParams {
    /// Only policies for this exact issuer.
    pub issuer: Option<String>,
    /// Only policies mapping to this identity.
    pub identity: Option<Uuid>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/trust-policies", params(TrustPolicyListParams), tag = "federation",
    responses((status = 200, body = proto::List<wire::TrustPolicyView>)))]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<TrustPolicyListParams>,
) -> ApiResult<Json<proto::List<wire::TrustPolicyView>>> {
    p.require(Need::Read)?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|_| ApiError::bad_request("invalid cursor")))
        .transpose()?;
    Ok(Json(
        s.list_trust_policies(&TrustPolicyQuery {
            issuer: q.issuer,
            identity_id: q.identity,
            after,
            limit: q.limit.unwrap_or(100),
        })
        .await?,
    ))
}

#[utoipa::path(get, path = "/v1/trust-policies/{id}", tag = "federation",
    responses((status = 200, body = wire::TrustPolicyView), (status = 404, body = proto::ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::TrustPolicyView>> {
    p.require(Need::Read)?;
    Ok(Json(
        s.get_trust_policy(parse_id(&id, "trust policy")?).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/trust-policies/{id}", request_body = wire::UpdateTrustPolicy, tag = "federation",
    responses((status = 200, body = wire::TrustPolicyView), (status = 400, body = proto::ErrorBody), (status = 404, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<wire::UpdateTrustPolicy>,
) -> ApiResult<Json<wire::TrustPolicyView>> {
    p.require(Need::Write)?;
    Ok(Json(
        s.update_trust_policy(&p.ctx, parse_id(&id, "trust policy")?, req)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/trust-policies/{id}", tag = "federation",
    responses((status = 204), (status = 404, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Need::Write)?;
    s.delete_trust_policy(&p.ctx, parse_id(&id, "trust policy")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/trust-policies/{id}/explain", request_body = wire::ExplainRequest, tag = "federation",
    responses((status = 200, body = wire::ExplainResponse), (status = 404, body = proto::ErrorBody)))]
pub async fn explain(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<wire::ExplainRequest>,
) -> ApiResult<Json<wire::ExplainResponse>> {
    p.require(Need::Read)?;
    Ok(Json(
        s.explain_trust_policy(parse_id(&id, "trust policy")?, &req.token)
            .await?,
    ))
}

//! Authorization handlers: `/v1/policies`, `/v1/authorize`, `/v1/authorize/what-if` and
//! `/v1/exceptions`. Each checks scope, calls one service method and maps the result.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_proto as proto;
use steward_proto::authz as wire;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, Need, Principal};
use crate::error::ApiError;
use crate::service::authz::{AUTHORIZE_SCOPE, AuthzError};
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

impl From<AuthzError> for ApiError {
    fn from(e: AuthzError) -> Self {
        match e {
            AuthzError::Service(s) => s.into(),
            AuthzError::InvalidPolicy(problems) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_policy",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            AuthzError::BuiltIn(m) => ApiError::new(StatusCode::CONFLICT, "builtin_policy", m),
        }
    }
}

#[utoipa::path(get, path = "/v1/policies", tag = "authorization",
    responses((status = 200, body = proto::List<wire::PolicyView>)))]
pub async fn list_policies(
    State(s): State<AppState>,
    p: Principal,
) -> ApiResult<Json<proto::List<wire::PolicyView>>> {
    p.require(Need::Read)?;
    Ok(Json(proto::List {
        items: s.list_policies().await?,
        next_cursor: None,
    }))
}

#[utoipa::path(post, path = "/v1/policies", request_body = wire::CreatePolicy, tag = "authorization",
    responses((status = 201, body = wire::PolicyView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn create_policy(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<wire::CreatePolicy>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let v = s.create_policy(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// The Cedar schema generated from Steward's model and the configured declarations.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SchemaView {
    /// Cedar schema syntax.
    pub cedar: String,
    /// Cedar JSON schema format.
    #[schema(value_type = Object)]
    pub json: serde_json::Value,
}

#[utoipa::path(get, path = "/v1/policies/schema", tag = "authorization",
    responses((status = 200, body = SchemaView)))]
pub async fn get_schema(State(s): State<AppState>, p: Principal) -> ApiResult<Json<SchemaView>> {
    p.require(Need::Read)?;
    Ok(Json(SchemaView {
        cedar: s.authz.base.schema_text(),
        json: s.authz.base.schema_json(),
    }))
}

#[utoipa::path(get, path = "/v1/policies/{id}", tag = "authorization",
    responses((status = 200, body = wire::PolicyView), (status = 404, body = proto::ErrorBody)))]
pub async fn get_policy(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::PolicyView>> {
    p.require(Need::Read)?;
    Ok(Json(s.get_policy(&id).await?))
}

#[utoipa::path(get, path = "/v1/policies/{id}/versions", tag = "authorization",
    responses((status = 200, body = proto::List<wire::PolicyView>), (status = 404, body = proto::ErrorBody)))]
pub async fn policy_versions(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<proto::List<wire::PolicyView>>> {
    p.require(Need::Read)?;
    Ok(Json(proto::List {
        items: s.policy_versions(&id).await?,
        next_cursor: None,
    }))
}

#[utoipa::path(put, path = "/v1/policies/{id}", request_body = wire::UpdatePolicy, tag = "authorization",
    responses((status = 200, body = wire::PolicyView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn update_policy(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<wire::UpdatePolicy>,
) -> ApiResult<Json<wire::PolicyView>> {
    p.require(Need::Write)?;
    Ok(Json(s.update_policy(&p.ctx, &id, req).await?))
}

#[utoipa::path(delete, path = "/v1/policies/{id}", tag = "authorization",
    responses((status = 204), (status = 404, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn delete_policy(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Need::Write)?;
    s.delete_policy(&p.ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/authorize", request_body = wire::AuthorizeRequest, tag = "authorization",
    responses((status = 200, body = wire::AuthorizeResponse), (status = 400, body = proto::ErrorBody), (status = 403, body = proto::ErrorBody)))]
pub async fn authorize(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<wire::AuthorizeRequest>,
) -> ApiResult<Json<wire::AuthorizeResponse>> {
    if !p
        .scopes
        .iter()
        .any(|x| x == AUTHORIZE_SCOPE || x == "steward:admin")
    {
        return Err(ApiError::forbidden(format!(
            "this request needs scope {AUTHORIZE_SCOPE} or steward:admin"
        )));
    }
    Ok(Json(s.authorize(&p.ctx, req).await?))
}

#[utoipa::path(post, path = "/v1/authorize/what-if", request_body = wire::WhatIfRequest, tag = "authorization",
    responses((status = 200, body = wire::WhatIfResponse), (status = 400, body = proto::ErrorBody)))]
pub async fn what_if(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<wire::WhatIfRequest>,
) -> ApiResult<Json<wire::WhatIfResponse>> {
    p.require(Need::Audit)?;
    Ok(Json(s.what_if(req).await?))
}

#[utoipa::path(post, path = "/v1/exceptions", request_body = wire::CreateException, tag = "authorization",
    responses((status = 201, body = wire::ExceptionView), (status = 400, body = proto::ErrorBody), (status = 403, body = proto::ErrorBody)))]
pub async fn create_exception(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<wire::CreateException>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let v = s.create_exception(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExceptionListParams {
    pub identity_id: Option<Uuid>,
    /// Only unexpired exceptions (default true).
    pub active: Option<bool>,
    /// `pending` or `denied` lists exception requests instead of approved exceptions.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/exceptions", params(ExceptionListParams), tag = "authorization",
    responses((status = 200, body = proto::List<wire::ExceptionView>)))]
pub async fn list_exceptions(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ExceptionListParams>,
) -> ApiResult<Json<proto::List<wire::ExceptionView>>> {
    p.require(Need::Read)?;
    let items = match q.status.as_deref() {
        None => {
            s.list_exceptions(q.identity_id, q.active.unwrap_or(true))
                .await?
        }
        Some(v) => match steward_core::lifecycle::ExceptionRequestStatus::parse(v) {
            Some(
                st @ (steward_core::lifecycle::ExceptionRequestStatus::Pending
                | steward_core::lifecycle::ExceptionRequestStatus::Denied),
            ) => super::lifecycle::list_exception_requests(&s, q.identity_id, st).await?,
            _ => return Err(ApiError::bad_request("status must be pending or denied")),
        },
    };
    Ok(Json(proto::List {
        items,
        next_cursor: None,
    }))
}

//! Admin API handlers under `/v1`: owners, identities, credentials, audit.
//! Each handler checks scope, calls one service method, and maps the result to a view.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_core::{IdentityKind, IdentityStatus, LifecycleAction, Outcome, OwnerStatus};
use steward_proto as proto;
use steward_store::{AuditQuery, IdentityQuery, OwnerQuery};
use time::OffsetDateTime;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{ApiJson, ApiJsonOrDefault, ApiQuery, Need, Principal, parse_id};
use crate::error::{ApiError, ServiceError};
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

fn cursor_uuid(c: Option<&str>) -> ApiResult<Option<Uuid>> {
    c.map(|s| Uuid::parse_str(s).map_err(|_| ApiError::bad_request("invalid cursor")))
        .transpose()
}

// ------------------------------------------------------------------ owners

#[utoipa::path(post, path = "/v1/owners", request_body = proto::CreateOwner, tag = "owners",
    responses((status = 201, body = proto::OwnerView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn create_owner(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<proto::CreateOwner>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let o = s.create_owner(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(proto::OwnerView::from(&o))).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OwnerListParams {
    /// `active` or `departed`.
    pub status: Option<String>,
    pub search: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/owners", params(OwnerListParams), tag = "owners",
    responses((status = 200, body = proto::List<proto::OwnerView>)))]
pub async fn list_owners(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<OwnerListParams>,
) -> ApiResult<Json<proto::List<proto::OwnerView>>> {
    p.require(Need::Read)?;
    let status = match q.status.as_deref() {
        None => None,
        Some("active") => Some(OwnerStatus::Active),
        Some("departed") => Some(OwnerStatus::Departed),
        Some(_) => return Err(ApiError::bad_request("status must be active or departed")),
    };
    let page = s
        .list_owners(&OwnerQuery {
            status,
            search: q.search,
            after: cursor_uuid(q.cursor.as_deref())?,
            limit: q.limit.unwrap_or(100),
        })
        .await?;
    Ok(Json(proto::List {
        items: page.items.iter().map(proto::OwnerView::from).collect(),
        next_cursor: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/owners/{id}", tag = "owners", responses((status = 200, body = proto::OwnerView), (status = 404, body = proto::ErrorBody)))]
pub async fn get_owner(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<proto::OwnerView>> {
    p.require(Need::Read)?;
    let o = s.get_owner(parse_id(&id, "owner")?).await?;
    Ok(Json(proto::OwnerView::from(&o)))
}

#[utoipa::path(patch, path = "/v1/owners/{id}", request_body = proto::UpdateOwner, tag = "owners", responses((status = 200, body = proto::OwnerView)))]
pub async fn update_owner(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::UpdateOwner>,
) -> ApiResult<Json<proto::OwnerView>> {
    p.require(Need::Write)?;
    let o = s.update_owner(&p.ctx, parse_id(&id, "owner")?, req).await?;
    Ok(Json(proto::OwnerView::from(&o)))
}

#[utoipa::path(post, path = "/v1/owners/{id}/depart", request_body = proto::DepartOwner, tag = "owners", responses((status = 200, body = proto::DepartResult)))]
pub async fn depart_owner(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJsonOrDefault(req): ApiJsonOrDefault<proto::DepartOwner>,
) -> ApiResult<Json<proto::DepartResult>> {
    p.require(Need::Write)?;
    Ok(Json(
        s.depart_owner(&p.ctx, parse_id(&id, "owner")?, req).await?,
    ))
}

// ------------------------------------------------------------------ identities

#[utoipa::path(post, path = "/v1/identities", request_body = proto::CreateIdentity, tag = "identities",
    responses((status = 201, body = proto::IdentityView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn create_identity(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<proto::CreateIdentity>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let i = s.create_identity(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(s.identity_view(&i))).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IdentityListParams {
    pub owner: Option<Uuid>,
    pub environment: Option<String>,
    pub kind: Option<String>,
    /// `pending_approval`, `active`, `suspended`, `retired` or `expired`.
    pub status: Option<String>,
    pub name: Option<String>,
    /// Case-insensitive substring of name or purpose.
    pub search: Option<String>,
    pub vendor: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/identities", params(IdentityListParams), tag = "identities",
    responses((status = 200, body = proto::List<proto::IdentityView>)))]
pub async fn list_identities(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<IdentityListParams>,
) -> ApiResult<Json<proto::List<proto::IdentityView>>> {
    p.require(Need::Read)?;
    let kind = q
        .kind
        .as_deref()
        .map(|k| {
            IdentityKind::parse(k).ok_or_else(|| ApiError::bad_request(format!("unknown kind {k}")))
        })
        .transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|k| {
            IdentityStatus::parse(k)
                .ok_or_else(|| ApiError::bad_request(format!("unknown status {k}")))
        })
        .transpose()?;
    let page = s
        .list_identities(&IdentityQuery {
            owner_id: q.owner,
            environment: q.environment,
            kind,
            status,
            name: q.name,
            search: q.search,
            vendor: q.vendor,
            after: cursor_uuid(q.cursor.as_deref())?,
            limit: q.limit.unwrap_or(100),
            now: s.now(),
        })
        .await?;
    Ok(Json(proto::List {
        items: page.items.iter().map(|i| s.identity_view(i)).collect(),
        next_cursor: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/identities/{id}", tag = "identities", responses((status = 200, body = proto::IdentityView), (status = 404, body = proto::ErrorBody)))]
pub async fn get_identity(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<proto::IdentityView>> {
    p.require(Need::Read)?;
    let i = s.get_identity(parse_id(&id, "identity")?).await?;
    Ok(Json(s.identity_view(&i)))
}

#[utoipa::path(patch, path = "/v1/identities/{id}", request_body = proto::UpdateIdentity, tag = "identities", responses((status = 200, body = proto::IdentityView)))]
pub async fn update_identity(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::UpdateIdentity>,
) -> ApiResult<Json<proto::IdentityView>> {
    p.require(Need::Write)?;
    let i = s
        .update_identity(&p.ctx, parse_id(&id, "identity")?, req)
        .await?;
    Ok(Json(s.identity_view(&i)))
}

/// `POST /v1/identities/{id}/{approve|suspend|resume|retire|revoke-tokens}`.
#[utoipa::path(post, path = "/v1/identities/{id}/{action}", request_body = proto::LifecycleRequest, tag = "identities",
    params(("action" = String, Path, description = "approve, suspend, resume, retire or revoke-tokens")),
    responses((status = 200, body = proto::IdentityView), (status = 409, body = proto::ErrorBody)))]
pub async fn identity_action(
    State(s): State<AppState>,
    p: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<proto::LifecycleRequest>,
) -> ApiResult<Json<proto::IdentityView>> {
    let id = parse_id(&id, "identity")?;
    let action = match action.as_str() {
        "approve" => Some(LifecycleAction::Approve),
        "suspend" => Some(LifecycleAction::Suspend),
        "resume" => Some(LifecycleAction::Resume),
        "retire" => Some(LifecycleAction::Retire),
        "revoke-tokens" => None,
        other => {
            return Err(ApiError::not_found(format!(
                "no action {other} on identities"
            )));
        }
    };
    p.require(Need::Write)?;
    let reason = body.reason;
    let i = match action {
        Some(a) => s.transition_identity(&p.ctx, id, a, reason).await?,
        None => s.revoke_identity_tokens(&p.ctx, id).await?,
    };
    Ok(Json(s.identity_view(&i)))
}

// ------------------------------------------------------------------ credentials

#[utoipa::path(post, path = "/v1/identities/{id}/credentials", request_body = proto::CreateCredential, tag = "credentials",
    responses((status = 201, body = proto::CreatedCredential, description = "client_secret appears in this response only")))]
pub async fn create_credential(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::CreateCredential>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let issued = s
        .create_credential(&p.ctx, parse_id(&id, "identity")?, req)
        .await?;
    let mut resp = (StatusCode::CREATED, Json(s.created_view(&issued))).into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

#[utoipa::path(get, path = "/v1/identities/{id}/credentials", tag = "credentials", responses((status = 200, body = proto::List<proto::CredentialView>)))]
pub async fn list_credentials(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<proto::List<proto::CredentialView>>> {
    p.require(Need::Read)?;
    Ok(Json(proto::List {
        items: s.credential_views(parse_id(&id, "identity")?).await?,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/v1/identities/{id}/credentials/{cid}", tag = "credentials", responses((status = 200, body = proto::CredentialView)))]
pub async fn revoke_credential(
    State(s): State<AppState>,
    p: Principal,
    Path((id, cid)): Path<(String, String)>,
) -> ApiResult<Json<proto::CredentialView>> {
    p.require(Need::Write)?;
    let c = s
        .revoke_credential(
            &p.ctx,
            parse_id(&id, "identity")?,
            parse_id(&cid, "credential")?,
            None,
        )
        .await?;
    Ok(Json(proto::CredentialView::new(&c, s.now())))
}

#[utoipa::path(post, path = "/v1/identities/{id}/credentials/{cid}/rotate", request_body = proto::RotateCredential, tag = "credentials",
    responses((status = 201, body = proto::RotatedCredential)))]
pub async fn rotate_credential(
    State(s): State<AppState>,
    p: Principal,
    Path((id, cid)): Path<(String, String)>,
    ApiJsonOrDefault(req): ApiJsonOrDefault<proto::RotateCredential>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let (issued, previous) = s
        .rotate_credential(
            &p.ctx,
            parse_id(&id, "identity")?,
            parse_id(&cid, "credential")?,
            req,
        )
        .await?;
    let body = proto::RotatedCredential {
        current: s.created_view(&issued),
        previous: proto::CredentialView::new(&previous, s.now()),
    };
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

// ------------------------------------------------------------------ audit

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditListParams {
    pub identity: Option<Uuid>,
    /// Exact action, or a prefix ending in `.` (e.g. `token.`).
    pub action: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    /// RFC 3339.
    pub until: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

fn parse_time(s: Option<&str>, name: &str) -> ApiResult<Option<OffsetDateTime>> {
    s.map(|v| {
        OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 timestamp")))
    })
    .transpose()
}

#[utoipa::path(get, path = "/v1/audit", params(AuditListParams), tag = "audit", responses((status = 200, body = proto::List<proto::AuditRecordView>)))]
pub async fn list_audit(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditListParams>,
) -> ApiResult<Json<proto::List<proto::AuditRecordView>>> {
    p.require(Need::Audit)?;
    let outcome = q
        .outcome
        .as_deref()
        .map(|o| {
            Outcome::parse(o)
                .ok_or_else(|| ApiError::bad_request("outcome must be success, failure or denied"))
        })
        .transpose()?;
    let after_seq = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::bad_request("invalid cursor"))
        })
        .transpose()?;
    let page = s
        .store
        .list_audit(&AuditQuery {
            identity_id: q.identity,
            action: q.action,
            outcome,
            actor: q.actor,
            since: parse_time(q.since.as_deref(), "since")?,
            until: parse_time(q.until.as_deref(), "until")?,
            after_seq,
            limit: q.limit.unwrap_or(100),
        })
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(proto::List {
        items: page
            .items
            .iter()
            .map(proto::AuditRecordView::from)
            .collect(),
        next_cursor: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit", responses((status = 200, body = proto::CheckpointView)))]
pub async fn get_checkpoint(
    State(s): State<AppState>,
    p: Principal,
) -> ApiResult<Json<proto::CheckpointView>> {
    p.require(Need::Audit)?;
    let cp = s.checkpoint().await?;
    Ok(Json(s.checkpoint_view(&cp)))
}

#[utoipa::path(get, path = "/v1/audit/proof/{seq}", tag = "audit", responses((status = 200, body = proto::InclusionProofView), (status = 404, body = proto::ErrorBody)))]
pub async fn get_proof(
    State(s): State<AppState>,
    p: Principal,
    Path(seq): Path<String>,
) -> ApiResult<Json<proto::InclusionProofView>> {
    p.require(Need::Audit)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::not_found(format!("audit record {seq} not found")))?;
    Ok(Json(s.inclusion_proof(seq).await?))
}

//! Lifecycle handlers: `/v1/reviews`, `/v1/jit-requests`, exception decisions, offboarding
//! evidence, vendor-wide revocation, rotation flags and the SCIM deprovisioning webhook.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_core::lifecycle::{CampaignStatus, ExceptionRequestStatus, JitStatus};
use steward_proto as proto;
use steward_proto::authz as authz_wire;
use steward_proto::lifecycle as wire;
use steward_store::{
    ExceptionRequestQuery, JitQuery, ReviewItemQuery, ReviewQuery, RotationFlagQuery,
};
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{ApiJson, ApiJsonOrDefault, ApiQuery, Need, Principal, parse_id};
use crate::error::{ApiError, ServiceError};
use crate::service::lifecycle::jit::{JitAction, grant_view};
use crate::service::lifecycle::owners::{ScimOp, scim_user};
use crate::service::lifecycle::reviews::{export_csv, item_view, review_view};
use crate::service::lifecycle::{JIT_SCOPE, REVIEW_SCOPE, SCIM_SCOPE};
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

fn has(p: &Principal, scope: &str) -> bool {
    p.scopes.iter().any(|s| s == scope)
}

fn is_admin(p: &Principal) -> bool {
    has(p, "steward:admin")
}

/// `steward:admin`, or one of `scopes`.
fn require_admin_or(p: &Principal, scopes: &[&str]) -> ApiResult<()> {
    if is_admin(p) || scopes.iter().any(|s| has(p, s)) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "this request needs scope steward:admin or {}",
        scopes.join(" or ")
    )))
}

fn cursor(c: Option<&str>) -> ApiResult<Option<Uuid>> {
    c.map(|s| Uuid::parse_str(s).map_err(|_| ApiError::bad_request("invalid cursor")))
        .transpose()
}

// ------------------------------------------------------------------ reviews

#[utoipa::path(post, path = "/v1/reviews", request_body = wire::CreateReview, tag = "lifecycle",
    responses((status = 201, body = wire::ReviewView), (status = 400, body = proto::ErrorBody)))]
pub async fn create_review(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<wire::CreateReview>,
) -> ApiResult<Response> {
    p.require(Need::Write)?;
    let (c, n) = s.create_review(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(review_view(&c, Some((n, 0))))).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewListParams {
    /// `open` or `closed`.
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/reviews", params(ReviewListParams), tag = "lifecycle",
    responses((status = 200, body = proto::List<wire::ReviewView>)))]
pub async fn list_reviews(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ReviewListParams>,
) -> ApiResult<Json<proto::List<wire::ReviewView>>> {
    if p.require(Need::Read).is_err() {
        require_admin_or(&p, &[REVIEW_SCOPE])?;
    }
    let status = q
        .status
        .as_deref()
        .map(|v| {
            CampaignStatus::parse(v)
                .ok_or_else(|| ApiError::bad_request("status must be open or closed"))
        })
        .transpose()?;
    let page = s
        .list_reviews(&ReviewQuery {
            status,
            after: cursor(q.cursor.as_deref())?,
            limit: q.limit.unwrap_or(100),
            ..Default::default()
        })
        .await?;
    Ok(Json(proto::List {
        items: page.items.iter().map(|c| review_view(c, None)).collect(),
        next_cursor: page.next,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewItemParams {
    /// Only items still undecided.
    pub undecided: Option<bool>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/reviews/{id}", params(ReviewItemParams), tag = "lifecycle",
    responses((status = 200, body = wire::ReviewDetail), (status = 404, body = proto::ErrorBody)))]
pub async fn get_review(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReviewItemParams>,
) -> ApiResult<Json<wire::ReviewDetail>> {
    if p.require(Need::Read).is_err() {
        require_admin_or(&p, &[REVIEW_SCOPE])?;
    }
    let id = parse_id(&id, "review")?;
    let c = s.get_review(id).await?;
    let counts = s.review_counts(id).await?;
    let page = s
        .list_review_items(&ReviewItemQuery {
            campaign_id: id,
            undecided: q.undecided.unwrap_or(false),
            after: cursor(q.cursor.as_deref())?,
            limit: q.limit.unwrap_or(1000),
            ..Default::default()
        })
        .await?;
    Ok(Json(wire::ReviewDetail {
        review: review_view(&c, Some(counts)),
        items: page.items.iter().map(item_view).collect(),
        next_cursor: page.next,
    }))
}

#[utoipa::path(post, path = "/v1/reviews/{id}/decisions", request_body = wire::ReviewDecisionRequest, tag = "lifecycle",
    responses((status = 200, body = wire::ReviewItemView), (status = 403, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn decide_review(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<wire::ReviewDecisionRequest>,
) -> ApiResult<Json<wire::ReviewItemView>> {
    require_admin_or(&p, &[REVIEW_SCOPE])?;
    let item = s
        .decide_review_item(&p.ctx, parse_id(&id, "review")?, is_admin(&p), req)
        .await?;
    Ok(Json(item_view(&item)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[utoipa::path(get, path = "/v1/reviews/{id}/export", params(ExportParams), tag = "lifecycle",
    responses((status = 200, body = wire::ReviewExport, description = "JSON, or text/csv with format=csv")))]
pub async fn export_review(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ExportParams>,
) -> ApiResult<Response> {
    p.require(Need::Audit)?;
    let e = s.export_review(parse_id(&id, "review")?).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(e).into_response()),
        Some("csv") => {
            let mut r = export_csv(&e).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"review-{}.csv\"",
                e.review.id
            )) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(r)
        }
        Some(_) => Err(ApiError::bad_request("format must be json or csv")),
    }
}

// ------------------------------------------------------------------ JIT elevation

#[utoipa::path(post, path = "/v1/jit-requests", request_body = wire::CreateJitRequest, tag = "lifecycle",
    responses((status = 201, body = wire::JitGrantView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn request_jit(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<wire::CreateJitRequest>,
) -> ApiResult<Response> {
    require_admin_or(&p, &[JIT_SCOPE])?;
    let v = s.request_jit(&p.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JitListParams {
    pub identity_id: Option<Uuid>,
    /// `pending`, `approved`, `denied`, `revoked`, or `active` (window open now).
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/jit-requests", params(JitListParams), tag = "lifecycle",
    responses((status = 200, body = proto::List<wire::JitGrantView>)))]
pub async fn list_jit(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<JitListParams>,
) -> ApiResult<Json<proto::List<wire::JitGrantView>>> {
    if p.require(Need::Read).is_err() {
        require_admin_or(&p, &[JIT_SCOPE])?;
    }
    let now = s.now();
    let (status, active_at) = match q.status.as_deref() {
        None => (None, None),
        Some("active") => (None, Some(now)),
        Some(v) => (
            Some(JitStatus::parse(v).ok_or_else(|| {
                ApiError::bad_request("status must be pending, approved, denied, revoked or active")
            })?),
            None,
        ),
    };
    let page = s
        .list_jit(&JitQuery {
            identity_id: q.identity_id,
            status,
            active_at,
            after: cursor(q.cursor.as_deref())?,
            limit: q.limit.unwrap_or(100),
        })
        .await?;
    Ok(Json(proto::List {
        items: page.items.iter().map(|g| grant_view(g, now)).collect(),
        next_cursor: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/jit-requests/{id}", tag = "lifecycle",
    responses((status = 200, body = wire::JitGrantView), (status = 404, body = proto::ErrorBody)))]
pub async fn get_jit(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::JitGrantView>> {
    if p.require(Need::Read).is_err() {
        require_admin_or(&p, &[JIT_SCOPE])?;
    }
    let g = s.get_jit(parse_id(&id, "elevation request")?).await?;
    Ok(Json(grant_view(&g, s.now())))
}

/// `POST /v1/jit-requests/{id}/{approve|deny|revoke}`: approve and revoke need `steward:admin`;
/// a requester may also deny (withdraw) their own request with `steward:jit`.
#[utoipa::path(post, path = "/v1/jit-requests/{id}/{action}", request_body = wire::JitDecisionRequest, tag = "lifecycle",
    params(("action" = String, Path, description = "approve, deny or revoke")),
    responses((status = 200, body = wire::JitGrantView), (status = 403, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn decide_jit(
    State(s): State<AppState>,
    p: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<wire::JitDecisionRequest>,
) -> ApiResult<Json<wire::JitGrantView>> {
    let id = parse_id(&id, "elevation request")?;
    let action = JitAction::parse(&action)
        .ok_or_else(|| ApiError::not_found(format!("no action {action} on elevation requests")))?;
    if action == JitAction::Deny && !is_admin(&p) {
        require_admin_or(&p, &[JIT_SCOPE])?;
        let g = s.get_jit(id).await?;
        if g.requested_by != p.ctx.actor {
            return Err(ApiError::forbidden(
                "only an administrator may deny someone else's elevation request",
            ));
        }
    } else {
        p.require(Need::Write)?;
    }
    Ok(Json(s.decide_jit(&p.ctx, id, action, body.reason).await?))
}

// ------------------------------------------------------------------ exceptions

/// `POST /v1/exceptions/{id}/{approve|deny}`: decide a pending exception request.
#[utoipa::path(post, path = "/v1/exceptions/{id}/{action}", request_body = wire::ExceptionDecisionRequest, tag = "authorization",
    params(("action" = String, Path, description = "approve or deny")),
    responses((status = 200, body = authz_wire::ExceptionView), (status = 403, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn decide_exception(
    State(s): State<AppState>,
    p: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<wire::ExceptionDecisionRequest>,
) -> ApiResult<Json<authz_wire::ExceptionView>> {
    let id = parse_id(&id, "exception request")?;
    let approve = match action.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(ApiError::not_found(format!(
                "no action {other} on exceptions"
            )));
        }
    };
    p.require(Need::Write)?;
    Ok(Json(
        s.decide_exception(&p.ctx, id, approve, body.reason).await?,
    ))
}

/// Pending or denied exception requests for `GET /v1/exceptions?status=pending|denied`.
pub async fn list_exception_requests(
    s: &AppState,
    identity_id: Option<Uuid>,
    status: ExceptionRequestStatus,
) -> ApiResult<Vec<authz_wire::ExceptionView>> {
    let mut out = vec![];
    let mut after = None;
    loop {
        let page = s
            .list_exception_requests(&ExceptionRequestQuery {
                identity_id,
                status: Some(status),
                after,
                limit: 1000,
            })
            .await?;
        out.extend(
            page.items
                .iter()
                .map(crate::service::lifecycle::exceptions::request_view),
        );
        match (page.next, page.items.last()) {
            (Some(_), Some(l)) if out.len() < 100_000 => after = Some(l.id),
            _ => return Ok(out),
        }
    }
}

// ------------------------------------------------------------------ offboarding

#[utoipa::path(get, path = "/v1/identities/{id}/offboarding", tag = "identities",
    responses((status = 200, body = wire::OffboardingView), (status = 404, body = proto::ErrorBody)))]
pub async fn offboarding(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::OffboardingView>> {
    p.require(Need::Audit)?;
    Ok(Json(
        s.offboarding_record(parse_id(&id, "identity")?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/vendors/{vendor}/revoke", request_body = wire::VendorRevokeRequest, tag = "identities",
    responses((status = 200, body = wire::VendorRevokeResult), (status = 404, body = proto::ErrorBody)))]
pub async fn revoke_vendor(
    State(s): State<AppState>,
    p: Principal,
    Path(vendor): Path<String>,
    ApiJsonOrDefault(req): ApiJsonOrDefault<wire::VendorRevokeRequest>,
) -> ApiResult<Json<wire::VendorRevokeResult>> {
    p.require(Need::Write)?;
    Ok(Json(s.revoke_vendor(&p.ctx, &vendor, req.reason).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RotationParams {
    pub identity_id: Option<Uuid>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/credentials/rotation-required", params(RotationParams), tag = "credentials",
    responses((status = 200, body = proto::List<wire::RotationRequiredView>)))]
pub async fn rotation_required(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<RotationParams>,
) -> ApiResult<Json<proto::List<wire::RotationRequiredView>>> {
    p.require(Need::Read)?;
    let page = s
        .rotation_required(&RotationFlagQuery {
            identity_id: q.identity_id,
            after: cursor(q.cursor.as_deref())?,
            limit: q.limit.unwrap_or(100),
        })
        .await?;
    Ok(Json(proto::List {
        items: page.items,
        next_cursor: page.next,
    }))
}

// ------------------------------------------------------------------ SCIM

const SCIM_JSON: &str = "application/scim+json";

/// A SCIM error response (RFC 7644 §3.12).
fn scim_error(status: StatusCode, detail: &str, scim_type: Option<&str>) -> Response {
    let mut body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = serde_json::json!(t);
    }
    scim_response(status, &body)
}

fn scim_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

fn scim_service_error(e: ServiceError) -> Response {
    let api = ApiError::from(e);
    scim_error(api.status, &api.message, None)
}

/// What a SCIM PatchOp asks about `active`: `Some(false)` deactivates.
fn patch_active(body: &serde_json::Value) -> Result<Option<bool>, &'static str> {
    let ops = body
        .get("Operations")
        .and_then(|o| o.as_array())
        .ok_or("a PatchOp needs an Operations array")?;
    let mut active = None;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(|v| v.as_str())
            .ok_or("each operation needs an op")?
            .to_ascii_lowercase();
        if kind != "replace" && kind != "add" {
            continue;
        }
        let value = match op.get("path").and_then(|p| p.as_str()) {
            Some(p) if p.eq_ignore_ascii_case("active") => op.get("value"),
            Some(_) => None,
            None => op.get("value").and_then(|v| v.get("active")),
        };
        if let Some(v) = value {
            // Some IdPs send the boolean as a string.
            active = Some(match v {
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                _ => return Err("active must be a boolean"),
            });
        }
    }
    Ok(active)
}

/// The refusal for a caller without `steward:admin` or `steward:scim`, as a SCIM error.
fn scim_refusal(p: &Principal) -> Option<Response> {
    require_admin_or(p, &[SCIM_SCOPE])
        .err()
        .map(|e| scim_error(e.status, &e.message, None))
}

/// `PATCH /v1/scim/v2/Users/{id}`: `active: false` departs the owner whose id, name or contact
/// is `{id}` (or the body's `externalId`). Other attributes are ignored.
#[utoipa::path(patch, path = "/v1/scim/v2/Users/{id}", tag = "owners",
    request_body(content = String, description = "SCIM PatchOp (RFC 7644 §3.5.2)", content_type = "application/scim+json"),
    responses((status = 200, description = "The SCIM User"), (status = 404, description = "SCIM error")))]
pub async fn scim_patch_user(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = scim_refusal(&p) {
        return r;
    }
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return scim_error(
                StatusCode::BAD_REQUEST,
                "malformed JSON",
                Some("invalidSyntax"),
            );
        }
    };
    let active = match patch_active(&body) {
        Ok(a) => a,
        Err(m) => return scim_error(StatusCode::BAD_REQUEST, m, Some("invalidValue")),
    };
    let mut owner = match s.owner_for_scim(&id).await {
        Ok(o) => o,
        Err(e) => match body.get("externalId").and_then(|v| v.as_str()) {
            Some(ext) => match s.owner_for_scim(ext).await {
                Ok(o) => o,
                Err(e) => return scim_service_error(e),
            },
            None => return scim_service_error(e),
        },
    };
    match active {
        Some(false) => match s.scim_deprovision(&p.ctx, &owner, ScimOp::Deactivate).await {
            Ok(o) => owner = o,
            Err(e) => return scim_service_error(e),
        },
        Some(true) if !owner.is_active() => {
            return scim_error(
                StatusCode::BAD_REQUEST,
                "Steward does not reactivate a departed owner; create a new owner",
                Some("mutability"),
            );
        }
        _ => {}
    }
    let location = format!("{}/v1/scim/v2/Users/{}", s.issuer, owner.id);
    scim_response(StatusCode::OK, &scim_user(&owner, &location))
}

/// `DELETE /v1/scim/v2/Users/{id}`: departs the matching owner; 204 No Content.
#[utoipa::path(delete, path = "/v1/scim/v2/Users/{id}", tag = "owners",
    responses((status = 204), (status = 404, description = "SCIM error")))]
pub async fn scim_delete_user(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = scim_refusal(&p) {
        return r;
    }
    let owner = match s.owner_for_scim(&id).await {
        Ok(o) => o,
        Err(e) => return scim_service_error(e),
    };
    match s.scim_deprovision(&p.ctx, &owner, ScimOp::Delete).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => scim_service_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scim_patch_forms() {
        let by_path = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
        assert_eq!(patch_active(&by_path), Ok(Some(false)));
        let by_value = json!({"Operations": [{"op": "Replace", "value": {"active": false, "displayName": "x"}}]});
        assert_eq!(patch_active(&by_value), Ok(Some(false)));
        let as_string =
            json!({"Operations": [{"op": "replace", "path": "active", "value": "False"}]});
        assert_eq!(patch_active(&as_string), Ok(Some(false)));
        let other = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "y"}]});
        assert_eq!(patch_active(&other), Ok(None));
        let remove = json!({"Operations": [{"op": "remove", "path": "active"}]});
        assert_eq!(patch_active(&remove), Ok(None));
        assert!(patch_active(&json!({})).is_err());
        assert!(
            patch_active(&json!({"Operations": [{"op": "replace", "path": "active", "value": 0}]}))
                .is_err()
        );
    }
}

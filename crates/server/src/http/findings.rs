//! Governance endpoints: findings (list, show, accept, run), entitlements, risk scores and the
//! posture report. Handlers check scope, call one service method and map the result.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_core::findings::Severity;
use steward_proto as proto;
use steward_proto::findings as wire;
use steward_store::{FindingQuery, FindingStatus, RiskQuery};
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{ApiJson, ApiJsonOrDefault, ApiQuery, Need, Principal, parse_id};
use crate::error::ApiError;
use crate::service::findings::finding_view;
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindingListParams {
    /// Finding type, e.g. `dormant`, `orphaned`, `secret_leaked`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: Option<String>,
    /// `open`, `resolved` or `accepted`.
    pub status: Option<String>,
    pub identity: Option<Uuid>,
    /// OWASP NHI Top 10 id, e.g. `NHI5:2025`.
    pub owasp: Option<String>,
    /// NIST CSF id, e.g. `PR.AA-05`.
    pub nist: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/findings", params(FindingListParams), tag = "governance",
    responses((status = 200, body = proto::List<wire::FindingView>), (status = 400, body = proto::ErrorBody)))]
pub async fn list_findings(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<FindingListParams>,
) -> ApiResult<Json<proto::List<wire::FindingView>>> {
    p.require(Need::Read)?;
    let status = q
        .status
        .as_deref()
        .map(|v| {
            FindingStatus::parse(v)
                .ok_or_else(|| ApiError::bad_request("status must be open, resolved or accepted"))
        })
        .transpose()?;
    if let Some(v) = q.severity.as_deref()
        && Severity::parse(v).is_none()
    {
        return Err(ApiError::bad_request(
            "severity must be low, medium, high or critical",
        ));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|_| ApiError::bad_request("invalid cursor")))
        .transpose()?;
    let page = s
        .list_findings(&FindingQuery {
            identity_id: q.identity,
            status,
            kind: q.kind,
            dedup_key: None,
            severity: q.severity,
            owasp_nhi: q.owasp,
            nist_csf: q.nist,
            after,
            limit: q.limit.unwrap_or(100),
        })
        .await?;
    Ok(Json(proto::List {
        items: page.items.iter().map(finding_view).collect(),
        next_cursor: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/findings/{id}", tag = "governance",
    responses((status = 200, body = wire::FindingView), (status = 404, body = proto::ErrorBody)))]
pub async fn get_finding(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::FindingView>> {
    p.require(Need::Read)?;
    let f = s.get_finding(parse_id(&id, "finding")?).await?;
    Ok(Json(finding_view(&f)))
}

/// Accepts a finding's risk until a date, with a reason (audited); it reopens after the date.
#[utoipa::path(post, path = "/v1/findings/{id}/accept", request_body = wire::AcceptFinding, tag = "governance",
    responses((status = 200, body = wire::FindingView), (status = 400, body = proto::ErrorBody), (status = 409, body = proto::ErrorBody)))]
pub async fn accept_finding(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<wire::AcceptFinding>,
) -> ApiResult<Json<wire::FindingView>> {
    p.require(Need::Write)?;
    let f = s
        .accept_finding(&p.ctx, parse_id(&id, "finding")?, req)
        .await?;
    Ok(Json(finding_view(&f)))
}

/// Runs the findings job now over every identity; answers with what it did.
#[utoipa::path(post, path = "/v1/findings/run", request_body = wire::RunFindings, tag = "governance",
    responses((status = 200, body = wire::FindingsRunView)))]
pub async fn run_findings(
    State(s): State<AppState>,
    p: Principal,
    ApiJsonOrDefault(_req): ApiJsonOrDefault<wire::RunFindings>,
) -> ApiResult<Json<wire::FindingsRunView>> {
    p.require(Need::Write)?;
    Ok(Json(s.run_findings(&p.ctx).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntitlementParams {
    /// Usage window in days (default 90).
    pub days: Option<u32>,
}

#[utoipa::path(get, path = "/v1/identities/{id}/entitlements", params(EntitlementParams), tag = "governance",
    responses((status = 200, body = wire::EntitlementsView), (status = 404, body = proto::ErrorBody)))]
pub async fn entitlements(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EntitlementParams>,
) -> ApiResult<Json<wire::EntitlementsView>> {
    p.require(Need::Read)?;
    let days = q.days.unwrap_or(s.config.findings.rules.usage_window_days);
    Ok(Json(
        s.entitlements(parse_id(&id, "identity")?, days).await?,
    ))
}

#[utoipa::path(get, path = "/v1/identities/{id}/risk", tag = "governance",
    responses((status = 200, body = wire::RiskView), (status = 404, body = proto::ErrorBody)))]
pub async fn identity_risk(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::RiskView>> {
    p.require(Need::Read)?;
    Ok(Json(s.identity_risk(parse_id(&id, "identity")?).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RiskListParams {
    /// Only scores at or above this (0–100).
    pub min_score: Option<u8>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Risk scores, highest first.
#[utoipa::path(get, path = "/v1/risk", params(RiskListParams), tag = "governance",
    responses((status = 200, body = proto::List<wire::RiskView>)))]
pub async fn list_risks(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<RiskListParams>,
) -> ApiResult<Json<proto::List<wire::RiskView>>> {
    p.require(Need::Read)?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.split_once(':')
                .and_then(|(s, id)| Some((s.parse::<u8>().ok()?, Uuid::parse_str(id).ok()?)))
                .ok_or_else(|| ApiError::bad_request("invalid cursor"))
        })
        .transpose()?;
    let page = s
        .list_risks(&RiskQuery {
            min_score: q.min_score.unwrap_or(0).min(100),
            after,
            limit: q.limit.unwrap_or(100),
        })
        .await?;
    Ok(Json(proto::List {
        items: page
            .items
            .iter()
            .map(|r| wire::RiskView::new(r.identity_id, r.score, &r.factors, Some(r.computed_at)))
            .collect(),
        next_cursor: page.next,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `json` (default), `md` or `html`.
    pub format: Option<String>,
}

/// The governance posture report: JSON, Markdown, or one self-contained HTML file.
#[utoipa::path(get, path = "/v1/report", params(ReportParams), tag = "governance",
    responses((status = 200, body = wire::PostureReport, description = "JSON; text/markdown or text/html with format=md|html")))]
pub async fn report(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ReportParams>,
) -> ApiResult<Response> {
    p.require(Need::Read)?;
    let format = q.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "md" | "html") {
        return Err(ApiError::bad_request("format must be json, md or html"));
    }
    let r = s.posture_report().await?;
    let (body, content_type) = match format.as_str() {
        "md" => (
            crate::report_render::markdown(&r),
            "text/markdown; charset=utf-8",
        ),
        "html" => (crate::report_render::html(&r), "text/html; charset=utf-8"),
        _ => return Ok(Json(r).into_response()),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The report is a document; nothing in it runs, and it may not load anything either.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

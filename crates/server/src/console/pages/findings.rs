//! Findings by type: counts per type and status, a filtered listing with each finding's OWASP NHI
//! and NIST CSF mapping, the accept-with-expiry form, and risk acceptances awaiting a second person.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_core::lifecycle::ExceptionRequestStatus;
use steward_store::{ExceptionRequestQuery, FindingQuery, FindingStatus};
use uuid::Uuid;

use super::overview::OWASP_NHI;
use crate::console::session::Operator;
use crate::console::view::{Chrome, IdentityNames, query, relative, when};
use crate::console::{Console, ConsoleError, ConsoleForm, ConsoleQuery, render};
use crate::error::ServiceError;
use crate::service::Ctx;
use crate::state::AppState;

pub const PAGE: u32 = 50;

/// Whether finding `kind` can be accepted as a time-bound risk: an exception (two-person, with
/// an expiry) waives it for one identity.
pub fn acceptable(kind: &str) -> bool {
    steward_core::lifecycle::exception::is_waivable_finding_type(kind)
}

/// Asks to accept finding `f` until `until`: a pending exception request for the finding's type
/// and identity, which another operator approves (below, or with `POST /v1/exceptions/{id}/approve`).
pub async fn accept_finding(
    app: &AppState,
    ctx: &Ctx,
    id: Uuid,
    until: time::OffsetDateTime,
    reason: &str,
) -> Result<(), ServiceError> {
    let f = app
        .store
        .get_finding(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("finding {id}")))?;
    let Some(identity_id) = f.identity_id else {
        return Err(ServiceError::invalid(
            "this finding is not about one identity; it cannot be accepted",
        ));
    };
    if f.status != FindingStatus::Open || !acceptable(&f.kind) {
        return Err(ServiceError::invalid(
            "only an open finding of a waivable type can be accepted",
        ));
    }
    app.request_exception(
        ctx,
        steward_proto::authz::CreateException {
            identity_id,
            guard_rail: f.kind.clone(),
            requested_by: None,
            reason: reason.to_owned(),
            expires_at: until,
        },
    )
    .await?;
    Ok(())
}

/// A request to accept a risk, waiting for a second operator.
pub struct PendingRow {
    pub id: String,
    pub identity_id: String,
    pub identity: String,
    pub target: String,
    pub reason: String,
    pub requested_by: String,
    pub until: String,
    pub own_request: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FindingParams {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub cursor: String,
    pub done: String,
}

pub struct TypeCount {
    pub kind: String,
    pub open: u64,
    pub accepted: u64,
    pub resolved: u64,
    pub href: String,
    pub current: bool,
}

pub struct Row {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub owasp: String,
    pub owasp_name: String,
    pub nist: String,
    pub status: &'static str,
    pub identity_id: String,
    pub identity: String,
    pub first_seen: String,
    pub last_seen: String,
    pub evidence: String,
    pub acceptable: bool,
}

#[derive(askama::Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    chrome: Chrome,
    types: Vec<TypeCount>,
    status: String,
    kind: String,
    rows: Vec<Row>,
    next_href: Option<String>,
    first_href: Option<String>,
    default_until: String,
    pending: Vec<PendingRow>,
    done: Option<&'static str>,
}

/// `GET /ui/findings`.
pub async fn page(
    State(c): State<Console>,
    op: Operator,
    ConsoleQuery(p): ConsoleQuery<FindingParams>,
) -> Result<Response, ConsoleError> {
    let app = &c.app;
    let status = match p.status.as_str() {
        "" | "all" => None,
        s => Some(FindingStatus::parse(s).ok_or_else(|| {
            ConsoleError::bad_request("status must be open, accepted or resolved")
        })?),
    };
    let after = match p.cursor.as_str() {
        "" => None,
        cur => Some(Uuid::parse_str(cur).map_err(|_| ConsoleError::bad_request("invalid cursor"))?),
    };
    let kind = (!p.kind.is_empty()).then(|| p.kind.clone());
    let page = app
        .store
        .list_findings(&FindingQuery {
            identity_id: None,
            status,
            kind: kind.clone(),
            dedup_key: None,
            after,
            limit: PAGE,
            ..Default::default()
        })
        .await?;
    let mut per_type: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for s in app.store.finding_stats().await? {
        let e = per_type.entry(s.kind.clone()).or_default();
        match s.status.as_str() {
            "open" => e.0 += s.count,
            "accepted" => e.1 += s.count,
            _ => e.2 += s.count,
        }
    }
    let status_s = status.map(|s| s.as_str()).unwrap_or("");
    let types = per_type
        .into_iter()
        .map(|(k, (open, accepted, resolved))| TypeCount {
            href: format!(
                "/ui/findings{}",
                query(&[("type", &k), ("status", status_s)])
            ),
            current: kind.as_deref() == Some(k.as_str()),
            kind: k,
            open,
            accepted,
            resolved,
        })
        .collect();
    let now = app.now();
    let mut names = IdentityNames::default();
    let mut identity_names = Vec::with_capacity(page.items.len());
    for f in &page.items {
        identity_names.push(match f.identity_id {
            Some(i) => names.get(app, i).await,
            None => String::new(),
        });
    }
    let mut pending = vec![];
    for r in app
        .list_exception_requests(&ExceptionRequestQuery {
            status: Some(ExceptionRequestStatus::Pending),
            limit: PAGE,
            ..Default::default()
        })
        .await?
        .items
    {
        pending.push(PendingRow {
            id: r.id.to_string(),
            identity_id: r.identity_id.to_string(),
            identity: names.get(app, r.identity_id).await,
            target: r.target.clone(),
            reason: crate::console::view::clip(&r.reason, 300),
            own_request: r.requested_by == op.ctx.actor,
            requested_by: r.requested_by,
            until: when(r.expires_at),
        });
    }
    let rows = page
        .items
        .iter()
        .zip(identity_names)
        .map(|(f, identity)| Row {
            id: f.id.to_string(),
            kind: f.kind.clone(),
            severity: f.severity.clone(),
            owasp_name: OWASP_NHI
                .iter()
                .find(|(id, _)| *id == f.owasp_nhi)
                .map(|(_, n)| (*n).to_owned())
                .unwrap_or_default(),
            owasp: f.owasp_nhi.clone(),
            nist: f.nist_csf.clone(),
            status: f.status.as_str(),
            identity_id: f.identity_id.map(|i| i.to_string()).unwrap_or_default(),
            identity,
            first_seen: when(f.first_seen),
            last_seen: relative(now, f.last_seen),
            evidence: crate::console::view::clip(&f.evidence.to_string(), 300),
            acceptable: f.status == FindingStatus::Open
                && f.identity_id.is_some()
                && acceptable(&f.kind),
        })
        .collect();
    let base = [("type", p.kind.as_str()), ("status", status_s)];
    let next_href = page.next.as_ref().map(|n| {
        let mut pairs = base.to_vec();
        pairs.push(("cursor", n));
        format!("/ui/findings{}", query(&pairs))
    });
    let first_href = after.map(|_| format!("/ui/findings{}", query(&base)));
    let page = FindingsPage {
        chrome: Chrome::new("Findings", "findings", &op),
        types,
        status: status_s.to_owned(),
        kind: p.kind.clone(),
        rows,
        next_href,
        first_href,
        pending,
        done: match p.done.as_str() {
            "requested" => {
                Some("Requested: the risk is accepted once another operator approves (below).")
            }
            "approve" => Some("Approved: the finding is accepted until the date given."),
            "deny" => Some("Denied: the finding stays open."),
            _ => None,
        },
        default_until: (now + time::Duration::days(30)).date().to_string(),
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct AcceptForm {
    pub csrf: Option<String>,
    /// `YYYY-MM-DD` (end of the risk acceptance, UTC midnight).
    pub until: String,
    #[serde(default)]
    pub reason: String,
}

/// `POST /ui/findings/{id}/accept`.
pub async fn accept(
    State(c): State<Console>,
    op: Operator,
    Path(id): Path<String>,
    ConsoleForm(form): ConsoleForm<AcceptForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(
        &c,
        &format!("/ui/findings/{id}/accept"),
        form.csrf.as_deref(),
    )
    .await?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| ConsoleError::new(StatusCode::NOT_FOUND, "finding not found"))?;
    let date = time::Date::parse(
        form.until.trim(),
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| ConsoleError::bad_request("until must be a date (YYYY-MM-DD)"))?;
    let until = date.midnight().assume_utc();
    if until <= c.app.now() {
        return Err(ConsoleError::bad_request("until must be in the future"));
    }
    let reason = form.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ConsoleError::bad_request(
            "give a reason (500 characters at most) for accepting the risk",
        ));
    }
    accept_finding(&c.app, &op.ctx, id, until, reason).await?;
    Ok(axum::response::Redirect::to("/ui/findings?status=open&done=requested").into_response())
}

#[derive(Deserialize)]
pub struct ExceptionDecisionForm {
    pub csrf: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// `POST /ui/exceptions/{id}/{approve|deny}`: the second person's decision on a risk acceptance.
pub async fn decide_exception(
    State(c): State<Console>,
    op: Operator,
    Path((id, action)): Path<(String, String)>,
    ConsoleForm(form): ConsoleForm<ExceptionDecisionForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(
        &c,
        &format!("/ui/exceptions/{id}/{action}"),
        form.csrf.as_deref(),
    )
    .await?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| ConsoleError::new(StatusCode::NOT_FOUND, "exception request not found"))?;
    let approve = match action.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(ConsoleError::new(StatusCode::NOT_FOUND, "unknown decision")),
    };
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    c.app.decide_exception(&op.ctx, id, approve, reason).await?;
    Ok(axum::response::Redirect::to(&format!("/ui/findings?done={action}")).into_response())
}

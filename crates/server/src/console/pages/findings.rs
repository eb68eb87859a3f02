//! Findings by type: counts per type and status, a filtered listing with each finding's OWASP NHI
//! and NIST CSF mapping, and the accept-with-expiry form once the service can accept a finding.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steward_store::{FindingQuery, FindingStatus};
use uuid::Uuid;

use super::overview::OWASP_NHI;
use crate::console::session::Operator;
use crate::console::view::{Chrome, query, relative, when};
use crate::console::{Console, ConsoleError, ConsoleForm, ConsoleQuery, render};
use crate::error::ServiceError;
use crate::service::Ctx;
use crate::state::AppState;

pub const PAGE: u32 = 50;

/// Whether this server can accept a finding as a time-bound risk (the exceptions work of the
/// governance branch). When it can, [`accept_finding`] calls it and the form appears.
pub fn accept_available(_app: &AppState) -> bool {
    false
}

/// Accepts finding `id` as a risk until `until` — the one hook to wire to the governance service.
pub async fn accept_finding(
    _app: &AppState,
    _ctx: &Ctx,
    _id: Uuid,
    _until: time::OffsetDateTime,
    _reason: &str,
) -> Result<(), ServiceError> {
    Err(ServiceError::invalid(
        "accepting findings is not available on this server yet",
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FindingParams {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub cursor: String,
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
    accept_available: bool,
    default_until: String,
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
    let mut names: HashMap<Uuid, String> = HashMap::new();
    for f in &page.items {
        if let Some(i) = f.identity_id
            && !names.contains_key(&i)
        {
            let name = match app.identity(i).await {
                Ok(Some(ident)) => ident.name.clone(),
                _ => i.to_string(),
            };
            names.insert(i, name);
        }
    }
    let accept = accept_available(app);
    let rows = page
        .items
        .iter()
        .map(|f| Row {
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
            identity: f
                .identity_id
                .and_then(|i| names.get(&i).cloned())
                .unwrap_or_default(),
            first_seen: when(f.first_seen),
            last_seen: relative(now, f.last_seen),
            evidence: crate::console::view::clip(&f.evidence.to_string(), 300),
            acceptable: accept && f.status == FindingStatus::Open,
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
        accept_available: accept,
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
    if !accept_available(&c.app) {
        return Err(ConsoleError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Accepting findings is not available on this server yet.",
        ));
    }
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
    Ok(axum::response::Redirect::to("/ui/findings?status=open").into_response())
}

//! Just-in-time elevation in the browser: requests waiting for a second person, grants whose
//! window is open, and the approve / deny / revoke forms that call the same service as the API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use steward_core::lifecycle::{JitGrant, JitStatus};
use steward_store::JitQuery;
use uuid::Uuid;

use crate::console::session::Operator;
use crate::console::view::{Chrome, IdentityNames, clip, relative, span, when};
use crate::console::{Console, ConsoleError, ConsoleForm, ConsoleQuery, render};
use crate::service::lifecycle::jit::JitAction;

/// Requests (and grants) listed per table.
pub const PAGE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct JitParams {
    pub done: String,
}

pub struct GrantRow {
    pub id: String,
    pub identity_id: String,
    pub identity: String,
    pub scopes: String,
    pub reason: String,
    pub requested_by: String,
    pub requested: String,
    pub window: String,
    pub expires: String,
    pub decided_by: String,
    /// The signed-in operator asked for it: a second person must approve.
    pub own_request: bool,
}

#[derive(askama::Template)]
#[template(path = "jit.html")]
struct JitPage {
    chrome: Chrome,
    done: Option<&'static str>,
    pending: Vec<GrantRow>,
    active: Vec<GrantRow>,
}

fn done_message(done: &str) -> Option<&'static str> {
    Some(match done {
        "approve" => "Approved: the identity may request the extra scopes until the window ends.",
        "deny" => "Denied: the request is closed.",
        "revoke" => "Revoked: the elevation ended now, and tokens carrying it stop working.",
        _ => return None,
    })
}

async fn rows(
    c: &Console,
    op: &Operator,
    grants: &[JitGrant],
    names: &mut IdentityNames,
) -> Vec<GrantRow> {
    let now = c.app.now();
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        out.push(GrantRow {
            id: g.id.to_string(),
            identity_id: g.identity_id.to_string(),
            identity: names.get(&c.app, g.identity_id).await,
            scopes: g.scopes.join(" "),
            reason: clip(&g.reason, 300),
            requested_by: g.requested_by.clone(),
            requested: relative(now, g.created_at),
            window: span(time::Duration::seconds(i64::from(g.duration_secs))),
            expires: g
                .expires_at
                .map(|t| format!("{} ({})", when(t), relative(now, t)))
                .unwrap_or_default(),
            decided_by: g.decided_by.clone().unwrap_or_default(),
            own_request: g.requested_by == op.ctx.actor,
        });
    }
    out
}

/// `GET /ui/jit`.
pub async fn page(
    State(c): State<Console>,
    op: Operator,
    ConsoleQuery(p): ConsoleQuery<JitParams>,
) -> Result<Response, ConsoleError> {
    let pending = c
        .app
        .list_jit(&JitQuery {
            status: Some(JitStatus::Pending),
            limit: PAGE,
            ..Default::default()
        })
        .await?;
    let active = c
        .app
        .list_jit(&JitQuery {
            active_at: Some(c.app.now()),
            limit: PAGE,
            ..Default::default()
        })
        .await?;
    let mut names = IdentityNames::default();
    let page = JitPage {
        chrome: Chrome::new("JIT requests", "jit", &op),
        done: done_message(&p.done),
        pending: rows(&c, &op, &pending.items, &mut names).await,
        active: rows(&c, &op, &active.items, &mut names).await,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct DecideForm {
    pub csrf: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// `POST /ui/jit/{id}/{action}`: approve, deny or revoke, with the service's separation of
/// duties (the requester and the identity itself may not approve).
pub async fn decide(
    State(c): State<Console>,
    op: Operator,
    Path((id, action)): Path<(String, String)>,
    ConsoleForm(form): ConsoleForm<DecideForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(&c, &format!("/ui/jit/{id}/{action}"), form.csrf.as_deref())
        .await?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| ConsoleError::new(StatusCode::NOT_FOUND, "JIT request not found"))?;
    let act = JitAction::parse(&action)
        .ok_or_else(|| ConsoleError::new(StatusCode::NOT_FOUND, "unknown JIT action"))?;
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ConsoleError::bad_request(
            "the reason is too long (500 characters at most)",
        ));
    }
    c.app.decide_jit(&op.ctx, id, act, reason).await?;
    Ok(Redirect::to(&format!("/ui/jit?done={action}")).into_response())
}

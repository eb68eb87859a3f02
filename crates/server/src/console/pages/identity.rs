//! Identity detail: owner, purpose, expiry, credentials with age and last use, scopes granted vs
//! used, findings and recent audit records; lifecycle actions, right-sizing and key rotation
//! through the same service methods as the admin API, audited with the operator as actor.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use steward_core::{CredentialKind, CredentialState, Identity, IdentityStatus, LifecycleAction};
use steward_store::{AuditQuery, FindingQuery};
use uuid::Uuid;

use crate::console::session::Operator;
use crate::console::view::{Chrome, clip, relative, span, when};
use crate::console::{Console, ConsoleError, ConsoleForm, ConsoleQuery, render, svg};
use crate::error::ServiceError;
use crate::state::AppState;

/// Recent audit records shown on the page.
pub const RECENT_AUDIT: u32 = 20;
/// Findings shown on the page.
pub const FINDINGS: u32 = 50;

/// How an identity's granted scopes were used over a recent window, and what right-sizing would
/// leave it with.
pub struct ScopeUsage {
    pub window_days: u32,
    /// Every granted scope with the number of tokens that carried it in the window.
    pub uses: Vec<(String, u64)>,
    /// `sufficient`, `too_young` or `no_use` (see the entitlements API).
    pub evidence: String,
    /// The scopes the identity would keep; empty when no reduction is suggested.
    pub suggested: Vec<String>,
    pub notes: Vec<String>,
}

/// Scopes granted versus used over the review window, from the per-scope daily usage the token
/// path records (the same analysis as `GET /v1/identities/{id}/entitlements`).
pub async fn scope_usage(app: &AppState, identity: &Identity) -> Result<ScopeUsage, ServiceError> {
    let days = app.config.lifecycle.usage_window_days;
    let e = app.entitlements(identity.id, days).await?;
    let uses = e
        .scopes
        .granted
        .iter()
        .map(|g| {
            let n = e
                .scopes
                .used
                .iter()
                .find(|u| &u.name == g)
                .map_or(0, |u| u.uses);
            (g.clone(), n)
        })
        .collect();
    Ok(ScopeUsage {
        window_days: days,
        uses,
        evidence: e.evidence.clone(),
        suggested: if e.reduction_suggested && e.scopes.suggested != e.scopes.granted {
            e.scopes.suggested.clone()
        } else {
            vec![]
        },
        notes: e.notes.clone(),
    })
}

fn parse_id(s: &str, what: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(s)
        .map_err(|_| ConsoleError::new(StatusCode::NOT_FOUND, format!("{what} {s} not found")))
}

fn state_str(s: CredentialState) -> &'static str {
    match s {
        CredentialState::Active => "active",
        CredentialState::Retiring => "retiring",
        CredentialState::Expired => "expired",
        CredentialState::Revoked => "revoked",
    }
}

/// A lifecycle button.
pub struct Action {
    pub value: &'static str,
    pub label: &'static str,
    /// Needs a confirmation (irreversible).
    pub confirm: bool,
}

/// The lifecycle actions that make sense from `status`.
pub fn actions_for(status: IdentityStatus) -> Vec<Action> {
    let a = |value, label, confirm| Action {
        value,
        label,
        confirm,
    };
    match status {
        IdentityStatus::PendingApproval => {
            vec![a("approve", "Approve", false), a("retire", "Retire", true)]
        }
        IdentityStatus::Active => vec![a("suspend", "Suspend", false), a("retire", "Retire", true)],
        IdentityStatus::Suspended => {
            vec![a("resume", "Resume", false), a("retire", "Retire", true)]
        }
        IdentityStatus::Expired => vec![a("retire", "Retire", true)],
        IdentityStatus::Retired => vec![],
    }
}

pub struct CredRow {
    pub id: String,
    pub kind: &'static str,
    pub fingerprint: String,
    pub state: &'static str,
    pub created: String,
    pub age: String,
    pub last_used: String,
    pub expires: String,
    pub rotatable: bool,
}

pub struct FindingRow {
    pub kind: String,
    pub severity: String,
    pub owasp: String,
    pub nist: String,
    pub status: &'static str,
    pub first_seen: String,
    pub last_seen: String,
}

pub struct AuditRow {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub outcome: &'static str,
    pub reason: String,
}

#[derive(askama::Template)]
#[template(path = "identity.html")]
struct IdentityPage {
    chrome: Chrome,
    id: String,
    name: String,
    kind: &'static str,
    environment: String,
    status: &'static str,
    status_reason: String,
    purpose: String,
    spiffe_id: String,
    expires: String,
    expires_in: String,
    created: String,
    created_by: String,
    approved_by: String,
    vendor: String,
    labels: Vec<(String, String)>,
    owner_id: String,
    owner_name: String,
    owner_contact: String,
    owner_departed: bool,
    scopes: Vec<String>,
    default_scopes: Vec<String>,
    audiences: Vec<String>,
    usage: ScopeUsage,
    usage_chart: String,
    right_sizable: bool,
    actions: Vec<Action>,
    creds: Vec<CredRow>,
    findings: Vec<FindingRow>,
    audit: Vec<AuditRow>,
    audit_href: String,
    done: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DetailParams {
    pub done: String,
}

fn done_message(done: &str) -> Option<&'static str> {
    Some(match done {
        "approve" => "The identity was approved.",
        "suspend" => {
            "The identity was suspended: it can get no new tokens, and its tokens stop working."
        }
        "resume" => "The identity was resumed.",
        "retire" => "The identity was retired: its credentials and tokens are revoked.",
        "right-size" => "Right-sized: the identity keeps only the scopes it used.",
        _ => return None,
    })
}

/// `GET /ui/identities/{id}`.
pub async fn page(
    State(c): State<Console>,
    op: Operator,
    Path(id): Path<String>,
    ConsoleQuery(params): ConsoleQuery<DetailParams>,
) -> Result<Response, ConsoleError> {
    let app = &c.app;
    let id = parse_id(&id, "identity")?;
    let i = app.get_identity(id).await?;
    let now = app.now();
    let owner = app.store.get_owner(i.owner_id).await?;
    let creds = app.store.list_credentials(id).await?;
    let findings = app
        .store
        .list_findings(&FindingQuery {
            identity_id: Some(id),
            limit: FINDINGS,
            ..Default::default()
        })
        .await?;
    let audit = app
        .store
        .audit_recent(
            &AuditQuery {
                identity_id: Some(id),
                limit: RECENT_AUDIT,
                ..Default::default()
            },
            None,
        )
        .await?;
    let usage = scope_usage(app, &i).await?;
    let usage_chart = svg::bar_chart(
        "scope-usage",
        &format!("Tokens per granted scope, last {} days", usage.window_days),
        &usage.uses,
    );
    let status = i.effective_status(now);
    let view = app.identity_view(&i);
    let page = IdentityPage {
        chrome: Chrome::new(format!("Identity {}", i.name), "inventory", &op),
        id: i.id.to_string(),
        name: i.name.clone(),
        kind: i.kind.as_str(),
        environment: i.environment.clone(),
        status: status.as_str(),
        status_reason: i.status_reason.clone().unwrap_or_default(),
        purpose: i.purpose.clone(),
        spiffe_id: view.spiffe_id.clone(),
        expires: when(i.expires_at),
        expires_in: relative(now, i.expires_at),
        created: when(i.created_at),
        created_by: i.created_by.clone(),
        approved_by: i.approved_by.clone().unwrap_or_default(),
        vendor: i.vendor.clone().unwrap_or_default(),
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        owner_id: i.owner_id.to_string(),
        owner_name: owner
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_else(|| i.owner_id.to_string()),
        owner_contact: owner
            .as_ref()
            .map(|o| o.contact.clone())
            .unwrap_or_default(),
        owner_departed: owner
            .as_ref()
            .is_some_and(|o| o.status == steward_core::OwnerStatus::Departed),
        scopes: i.scopes.clone(),
        default_scopes: i.default_scopes.clone(),
        audiences: i.audiences.clone(),
        right_sizable: !usage.suggested.is_empty() && status != IdentityStatus::Retired,
        usage,
        usage_chart,
        actions: actions_for(status),
        creds: creds
            .iter()
            .map(|cr| {
                let state = cr.state(now);
                CredRow {
                    id: cr.id.to_string(),
                    kind: cr.kind.as_str(),
                    fingerprint: cr.fingerprint.clone(),
                    state: state_str(state),
                    created: when(cr.created_at),
                    age: span(now - cr.created_at),
                    last_used: cr
                        .last_used_at
                        .map(|t| relative(now, t))
                        .unwrap_or_else(|| "never".into()),
                    expires: when(cr.expires_at),
                    rotatable: cr.kind == CredentialKind::ApiKey
                        && state == CredentialState::Active
                        && status != IdentityStatus::Retired,
                }
            })
            .collect(),
        findings: findings
            .items
            .iter()
            .map(|f| FindingRow {
                kind: f.kind.clone(),
                severity: f.severity.clone(),
                owasp: f.owasp_nhi.clone(),
                nist: f.nist_csf.clone(),
                status: f.status.as_str(),
                first_seen: when(f.first_seen),
                last_seen: relative(now, f.last_seen),
            })
            .collect(),
        audit: audit.items.iter().map(audit_row).collect(),
        audit_href: format!("/ui/audit?identity={id}"),
        done: done_message(&params.done),
    };
    Ok(render(&page))
}

pub fn audit_row(r: &steward_core::AuditRecord) -> AuditRow {
    AuditRow {
        seq: r.seq,
        time: when(r.event.time),
        actor: r.event.actor.clone(),
        action: r.event.action.clone(),
        outcome: r.event.outcome.as_str(),
        reason: clip(r.event.reason.as_deref().unwrap_or(""), 200),
    }
}

#[derive(Deserialize)]
pub struct LifecycleForm {
    pub csrf: Option<String>,
    pub action: String,
    #[serde(default)]
    pub reason: String,
}

/// `POST /ui/identities/{id}/lifecycle`: approve, suspend, resume or retire.
pub async fn lifecycle(
    State(c): State<Console>,
    op: Operator,
    Path(id): Path<String>,
    ConsoleForm(form): ConsoleForm<LifecycleForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(
        &c,
        &format!("/ui/identities/{id}/lifecycle"),
        form.csrf.as_deref(),
    )
    .await?;
    let id = parse_id(&id, "identity")?;
    let action = match form.action.as_str() {
        "approve" => LifecycleAction::Approve,
        "suspend" => LifecycleAction::Suspend,
        "resume" => LifecycleAction::Resume,
        "retire" => LifecycleAction::Retire,
        other => return Err(ConsoleError::bad_request(format!("unknown action {other}"))),
    };
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(ConsoleError::bad_request(
            "the reason is too long (500 characters at most)",
        ));
    }
    c.app
        .transition_identity(&op.ctx, id, action, reason)
        .await?;
    Ok(Redirect::to(&format!("/ui/identities/{id}?done={}", action.as_str())).into_response())
}

#[derive(Deserialize)]
pub struct RightSizeForm {
    pub csrf: Option<String>,
}

/// `POST /ui/identities/{id}/right-size`: applies the entitlements suggestion as it stands now
/// (recomputed here, never taken from the form) through the same update as `PATCH`.
pub async fn right_size(
    State(c): State<Console>,
    op: Operator,
    Path(id): Path<String>,
    ConsoleForm(form): ConsoleForm<RightSizeForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(
        &c,
        &format!("/ui/identities/{id}/right-size"),
        form.csrf.as_deref(),
    )
    .await?;
    let id = parse_id(&id, "identity")?;
    let e = c
        .app
        .entitlements(id, c.app.config.lifecycle.usage_window_days)
        .await?;
    if !e.reduction_suggested {
        return Err(ConsoleError::bad_request(
            "no reduction is suggested for this identity (not enough evidence, or every scope is used)",
        ));
    }
    let mut patch = steward_proto::UpdateIdentity::default();
    if e.scopes.suggested != e.scopes.granted {
        patch.scopes = Some(e.scopes.suggested.clone());
        patch.default_scopes = Some(e.suggested_default_scopes.clone());
    }
    if e.audiences.suggested != e.audiences.granted {
        patch.audiences = Some(e.audiences.suggested.clone());
    }
    c.app.update_identity(&op.ctx, id, patch).await?;
    Ok(Redirect::to(&format!("/ui/identities/{id}?done=right-size")).into_response())
}

#[derive(Deserialize)]
pub struct RotateForm {
    pub csrf: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "rotated.html")]
struct RotatedPage {
    chrome: Chrome,
    identity_id: String,
    identity_name: String,
    credential_id: String,
    client_secret: String,
    fingerprint: String,
    expires: String,
    previous_id: String,
    previous_until: String,
}

/// `POST /ui/identities/{id}/credentials/{cid}/rotate`: issues the successor API key and shows its
/// secret this once (the response is `no-store`); the predecessor works until the grace period ends.
pub async fn rotate(
    State(c): State<Console>,
    op: Operator,
    Path((id, cid)): Path<(String, String)>,
    ConsoleForm(form): ConsoleForm<RotateForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(
        &c,
        &format!("/ui/identities/{id}/credentials/{cid}/rotate"),
        form.csrf.as_deref(),
    )
    .await?;
    let id = parse_id(&id, "identity")?;
    let cid = parse_id(&cid, "credential")?;
    let (issued, previous) = c
        .app
        .rotate_credential(&op.ctx, id, cid, Default::default())
        .await?;
    let identity = c.app.get_identity(id).await?;
    let Some(secret) = issued.secret.as_ref() else {
        return Err(ConsoleError::bad_request(
            "only API keys are rotated from the console; rotate public keys through the API",
        ));
    };
    let page = RotatedPage {
        chrome: Chrome::new("Credential rotated", "inventory", &op),
        identity_id: id.to_string(),
        identity_name: identity.name.clone(),
        credential_id: issued.credential.id.to_string(),
        client_secret: secret.expose_secret().to_owned(),
        fingerprint: issued.credential.fingerprint.clone(),
        expires: when(issued.credential.expires_at),
        previous_id: previous.id.to_string(),
        previous_until: previous.revoked_at.map(when).unwrap_or_default(),
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_lifecycle() {
        let values = |s| actions_for(s).iter().map(|a| a.value).collect::<Vec<_>>();
        assert_eq!(values(IdentityStatus::Active), ["suspend", "retire"]);
        assert_eq!(values(IdentityStatus::Suspended), ["resume", "retire"]);
        assert_eq!(
            values(IdentityStatus::PendingApproval),
            ["approve", "retire"]
        );
        assert!(values(IdentityStatus::Retired).is_empty());
        assert!(
            actions_for(IdentityStatus::Active)
                .iter()
                .all(|a| a.confirm == (a.value == "retire"))
        );
        assert!(done_message("suspend").is_some());
        assert!(done_message("<script>").is_none());
    }
}

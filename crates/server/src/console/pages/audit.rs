//! The audit log, newest first, filtered by identity, action (exact or `prefix.`), outcome, actor
//! and time, with the result of the hash-chain and checkpoint verification (see `console::verify`).

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use steward_core::Outcome;
use steward_store::AuditQuery;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::console::session::Operator;
use crate::console::verify::{self, BACKGROUND_BUDGET, PAGE_BUDGET, VerifyStatus};
use crate::console::view::{Chrome, clip, query, when};
use crate::console::{Console, ConsoleError, ConsoleQuery, render};

pub const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditParams {
    pub identity: String,
    pub action: String,
    pub outcome: String,
    pub actor: String,
    pub since: String,
    pub until: String,
    /// Cursor: records older than this seq.
    pub before: String,
}

pub struct Row {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub identity_id: String,
    pub outcome: &'static str,
    pub reason: String,
    pub source: String,
    pub details: String,
}

#[derive(askama::Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    p: AuditParams,
    outcomes: Vec<(&'static str, bool)>,
    rows: Vec<Row>,
    next_href: Option<String>,
    first_href: Option<String>,
    verify: Option<VerifyStatus>,
    verify_running: bool,
    verified_at: String,
    signed_at: String,
    unchecked_tail: u64,
    page_budget: u64,
    background_budget: u64,
    checkpoint_interval_secs: u64,
}

/// Parses RFC 3339, a `datetime-local` value (`YYYY-MM-DDTHH:MM[:SS]`, UTC) or a date (UTC midnight).
pub fn parse_time(s: &str, name: &str) -> Result<Option<OffsetDateTime>, ConsoleError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(Some(t));
    }
    let local = [
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    for f in local {
        if let Ok(t) = time::PrimitiveDateTime::parse(s, &f) {
            return Ok(Some(t.assume_utc()));
        }
    }
    if let Ok(d) = time::Date::parse(
        s,
        &time::macros::format_description!("[year]-[month]-[day]"),
    ) {
        return Ok(Some(d.midnight().assume_utc()));
    }
    Err(ConsoleError::bad_request(format!(
        "{name} must be a time (RFC 3339, YYYY-MM-DDTHH:MM in UTC, or YYYY-MM-DD)"
    )))
}

/// `GET /ui/audit`.
pub async fn page(
    State(c): State<Console>,
    op: Operator,
    ConsoleQuery(p): ConsoleQuery<AuditParams>,
) -> Result<Response, ConsoleError> {
    let app = &c.app;
    let identity_id = match p.identity.trim() {
        "" => None,
        s => Some(
            Uuid::parse_str(s)
                .map_err(|_| ConsoleError::bad_request("identity must be an identity id"))?,
        ),
    };
    let outcome = match p.outcome.as_str() {
        "" => None,
        o => Some(Outcome::parse(o).ok_or_else(|| {
            ConsoleError::bad_request("outcome must be success, failure or denied")
        })?),
    };
    let before = match p.before.as_str() {
        "" => None,
        b => Some(
            b.parse::<u64>()
                .map_err(|_| ConsoleError::bad_request("invalid cursor"))?,
        ),
    };
    let q = AuditQuery {
        identity_id,
        action: Some(p.action.trim().to_owned()).filter(|a| !a.is_empty()),
        outcome,
        actor: Some(p.actor.trim().to_owned()).filter(|a| !a.is_empty()),
        since: parse_time(&p.since, "since")?,
        until: parse_time(&p.until, "until")?,
        after_seq: None,
        limit: PAGE,
    };
    let page = app.store.audit_recent(&q, before).await?;
    let rows = page
        .items
        .iter()
        .map(|r| {
            let e = &r.event;
            Row {
                seq: r.seq,
                time: when(e.time),
                actor: e.actor.clone(),
                action: e.action.clone(),
                target: e.target.clone().unwrap_or_default(),
                identity_id: e.identity_id.map(|i| i.to_string()).unwrap_or_default(),
                outcome: e.outcome.as_str(),
                reason: clip(e.reason.as_deref().unwrap_or(""), 200),
                source: e.source.clone().unwrap_or_default(),
                details: if e.details.is_null() {
                    String::new()
                } else {
                    clip(&e.details.to_string(), 300)
                },
            }
        })
        .collect();
    let base = [
        ("identity", p.identity.trim()),
        ("action", p.action.trim()),
        ("outcome", p.outcome.as_str()),
        ("actor", p.actor.trim()),
        ("since", p.since.trim()),
        ("until", p.until.trim()),
    ];
    let next_href = page.next.as_ref().map(|n| {
        let mut pairs = base.to_vec();
        pairs.push(("before", n));
        format!("/ui/audit{}", query(&pairs))
    });
    let first_href = before.map(|_| format!("/ui/audit{}", query(&base)));
    let status = verify::refresh(&c).await;
    let outcomes = ["success", "failure", "denied"]
        .into_iter()
        .map(|o| (o, o == p.outcome))
        .collect();
    let page = AuditPage {
        chrome: Chrome::new("Audit log", "audit", &op),
        outcomes,
        rows,
        next_href,
        first_href,
        verify_running: c.verification.running(),
        verified_at: status
            .as_ref()
            .map(|s| when(s.checked_at))
            .unwrap_or_default(),
        signed_at: status
            .as_ref()
            .and_then(|s| s.checkpoint_signed_at)
            .map(when)
            .unwrap_or_default(),
        unchecked_tail: status
            .as_ref()
            .map(|s| s.log_size.saturating_sub(s.verified))
            .unwrap_or(0),
        verify: status,
        page_budget: PAGE_BUDGET,
        background_budget: BACKGROUND_BUDGET,
        checkpoint_interval_secs: app.config.checkpoint_interval_secs,
        p,
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_three_shapes() {
        let t = time::macros::datetime!(2031-05-06 07:08:00 UTC);
        assert_eq!(parse_time("2031-05-06T07:08:00Z", "s").unwrap(), Some(t));
        assert_eq!(parse_time("2031-05-06T07:08", "s").unwrap(), Some(t));
        assert_eq!(
            parse_time("2031-05-06", "s").unwrap(),
            Some(time::macros::datetime!(2031-05-06 00:00 UTC))
        );
        assert_eq!(parse_time("  ", "s").unwrap(), None);
        assert!(parse_time("yesterday", "s").is_err());
    }
}

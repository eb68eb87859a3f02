//! Access reviews in the browser: open campaigns with their progress, and for the chosen campaign
//! each undecided item with its snapshot and a keep / reduce / revoke form that calls the service.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use steward_core::lifecycle::{CampaignStatus, ReviewCampaign, ReviewItem};
use steward_proto::lifecycle::ReviewDecisionRequest;
use steward_store::{ReviewItemQuery, ReviewQuery};
use uuid::Uuid;

use crate::console::session::Operator;
use crate::console::view::{Chrome, clip, query, relative, when};
use crate::console::{Console, ConsoleError, ConsoleForm, ConsoleQuery, render};

/// Undecided items shown per page of a campaign.
pub const PAGE: u32 = 25;
/// Campaigns listed.
pub const CAMPAIGNS: u32 = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReviewParams {
    /// The campaign shown; the first open one when empty.
    pub review: String,
    pub cursor: String,
    pub done: String,
}

pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub deadline: String,
    pub deadline_in: String,
    pub default_action: &'static str,
    pub total: u64,
    pub decided: u64,
    pub current: bool,
}

pub struct ItemRow {
    pub id: String,
    pub identity_id: String,
    pub name: String,
    pub kind: String,
    pub environment: String,
    pub granted: Vec<String>,
    pub unused: Vec<String>,
    /// The used scopes, when a reduction to them is possible (some used, some unused).
    pub reduce_to: Vec<String>,
    pub last_used: String,
    pub credentials_live: u64,
    pub findings: Vec<String>,
    pub reviewer: String,
}

#[derive(askama::Template)]
#[template(path = "reviews.html")]
struct ReviewsPage {
    chrome: Chrome,
    done: Option<String>,
    campaigns: Vec<CampaignRow>,
    current: Option<CampaignRow>,
    description: String,
    items: Vec<ItemRow>,
    next_href: Option<String>,
    export_href: String,
}

fn parse_id(s: &str, what: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(s)
        .map_err(|_| ConsoleError::new(StatusCode::NOT_FOUND, format!("{what} not found")))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One undecided item as the reviewer sees it, from the snapshot taken when the campaign opened.
pub fn item_row(i: &ReviewItem, now: time::OffsetDateTime) -> ItemRow {
    let s = &i.snapshot;
    let granted = strings(&s["scopes_granted"]);
    let unused = strings(&s["scopes_unused"]);
    let used: Vec<String> = granted
        .iter()
        .filter(|g| !unused.contains(g))
        .cloned()
        .collect();
    let reduce_to = if unused.is_empty() || used.is_empty() {
        vec![]
    } else {
        used
    };
    let last_used = s["last_used_at"]
        .as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| relative(now, t))
        .unwrap_or_else(|| "never".into());
    let findings = s["open_findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    format!(
                        "{} ({}, {})",
                        f["type"].as_str().unwrap_or("?"),
                        f["severity"].as_str().unwrap_or("?"),
                        f["owasp_nhi"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ItemRow {
        id: i.id.to_string(),
        identity_id: i.identity_id.to_string(),
        name: clip(s["identity"]["name"].as_str().unwrap_or("?"), 120),
        kind: s["identity"]["kind"].as_str().unwrap_or("").to_owned(),
        environment: s["identity"]["environment"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        granted,
        unused,
        reduce_to,
        last_used,
        credentials_live: s["credentials_live"].as_u64().unwrap_or(0),
        findings,
        reviewer: i
            .reviewer
            .clone()
            .unwrap_or_else(|| "administrators".into()),
    }
}

fn done_message(done: &str) -> Option<String> {
    Some(
        match done {
            "keep" => "Decision recorded: the identity keeps its access.",
            "reduce" => "Decision recorded: the identity's scopes were reduced to what it used.",
            "revoke" => "Decision recorded: the identity was suspended.",
            _ => return None,
        }
        .to_owned(),
    )
}

async fn campaign_row(
    c: &Console,
    r: &ReviewCampaign,
    current: bool,
) -> Result<CampaignRow, ConsoleError> {
    let (total, decided) = c.app.review_counts(r.id).await?;
    let now = c.app.now();
    Ok(CampaignRow {
        id: r.id.to_string(),
        name: r.name.clone(),
        status: r.status.as_str(),
        deadline: when(r.deadline),
        deadline_in: relative(now, r.deadline),
        default_action: r.default_action.as_str(),
        total,
        decided,
        current,
    })
}

/// `GET /ui/reviews`.
pub async fn page(
    State(c): State<Console>,
    op: Operator,
    ConsoleQuery(p): ConsoleQuery<ReviewParams>,
) -> Result<Response, ConsoleError> {
    let app = &c.app;
    let open = app
        .list_reviews(&ReviewQuery {
            status: Some(CampaignStatus::Open),
            limit: CAMPAIGNS,
            ..Default::default()
        })
        .await?;
    let chosen = match p.review.as_str() {
        "" => open.items.first().cloned(),
        id => Some(app.get_review(parse_id(id, "review")?).await?),
    };
    let mut campaigns = Vec::with_capacity(open.items.len());
    for r in &open.items {
        let is_current = chosen.as_ref().is_some_and(|x| x.id == r.id);
        campaigns.push(campaign_row(&c, r, is_current).await?);
    }
    let after = match p.cursor.as_str() {
        "" => None,
        cur => Some(Uuid::parse_str(cur).map_err(|_| ConsoleError::bad_request("invalid cursor"))?),
    };
    let now = app.now();
    let (current, description, items, next_href, export_href) = match &chosen {
        None => (None, String::new(), vec![], None, String::new()),
        Some(r) => {
            let page = app
                .list_review_items(&ReviewItemQuery {
                    campaign_id: r.id,
                    undecided: true,
                    after,
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            let id = r.id.to_string();
            let next = page.next.as_ref().map(|n| {
                format!(
                    "/ui/reviews{}",
                    query(&[("review", id.as_str()), ("cursor", n)])
                )
            });
            (
                Some(campaign_row(&c, r, true).await?),
                r.description.clone(),
                page.items.iter().map(|i| item_row(i, now)).collect(),
                next,
                format!("/v1/reviews/{id}/export?format=csv"),
            )
        }
    };
    let page = ReviewsPage {
        chrome: Chrome::new("Access reviews", "reviews", &op),
        done: done_message(&p.done),
        campaigns,
        current,
        description,
        items,
        next_href,
        export_href,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    pub csrf: Option<String>,
    /// `keep`, `reduce` or `revoke`.
    pub decision: String,
    #[serde(default)]
    pub justification: String,
    /// For `reduce`: the scopes kept, comma-separated (the item's used scopes).
    #[serde(default)]
    pub scopes: String,
}

/// `POST /ui/reviews/{review}/items/{item}`: decides one item through the same service (and
/// audit) as `POST /v1/reviews/{id}/decisions`; revoking from the console suspends.
pub async fn decide(
    State(c): State<Console>,
    op: Operator,
    Path((review, item)): Path<(String, String)>,
    ConsoleForm(form): ConsoleForm<DecisionForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(
        &c,
        &format!("/ui/reviews/{review}/items/{item}"),
        form.csrf.as_deref(),
    )
    .await?;
    let review = parse_id(&review, "review")?;
    let item = parse_id(&item, "review item")?;
    let scopes = match form.decision.as_str() {
        "reduce" => Some(
            form.scopes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    };
    let decided = c
        .app
        .decide_review_item(
            &op.ctx,
            review,
            true,
            ReviewDecisionRequest {
                item_id: Some(item),
                identity_id: None,
                decision: form.decision.clone(),
                scopes,
                revoke_mode: None,
                justification: form.justification,
            },
        )
        .await?;
    let decision = decided.decision.map(|d| d.as_str()).unwrap_or("keep");
    Ok(Redirect::to(&format!("/ui/reviews?review={review}&done={decision}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(snapshot: Value) -> ReviewItem {
        ReviewItem {
            id: Uuid::from_u128(1),
            campaign_id: Uuid::from_u128(2),
            identity_id: Uuid::from_u128(3),
            owner_id: Uuid::from_u128(4),
            reviewer: None,
            snapshot,
            decision: None,
            reduced_scopes: vec![],
            revoke_mode: None,
            outcome: None,
            justification: None,
            decided_by: None,
            decided_at: None,
            by_default: false,
            created_at: time::macros::datetime!(2026-11-01 0:00 UTC),
            version: 1,
        }
    }

    #[test]
    fn reduction_is_offered_only_between_nothing_and_everything() {
        let now = time::macros::datetime!(2026-11-22 12:00 UTC);
        let some = item(json!({
            "identity": {"name": "api", "kind": "service", "environment": "prod"},
            "scopes_granted": ["a", "b", "c"], "scopes_unused": ["c"],
            "last_used_at": "2026-11-21T12:00:00Z", "credentials_live": 2,
            "open_findings": [{"type": "dormant", "severity": "medium", "owasp_nhi": "NHI1:2025"}],
        }));
        let r = item_row(&some, now);
        assert_eq!(r.reduce_to, ["a", "b"]);
        assert_eq!(r.unused, ["c"]);
        assert_eq!(r.last_used, "24 h ago");
        assert_eq!(r.findings, ["dormant (medium, NHI1:2025)"]);
        assert_eq!(r.reviewer, "administrators");
        let none_used = item(json!({"scopes_granted": ["a"], "scopes_unused": ["a"]}));
        assert!(item_row(&none_used, now).reduce_to.is_empty());
        assert_eq!(item_row(&none_used, now).last_used, "never");
        let all_used = item(json!({"scopes_granted": ["a"], "scopes_unused": []}));
        assert!(item_row(&all_used, now).reduce_to.is_empty());
    }
}

//! The inventory: every identity with its risk score, filtered by kind, environment, owner, status
//! and risk band, searched by name prefix (on an index) or by substring of name or purpose, in
//! pages walked by cursor — fast for 100,000 identities.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use steward_core::risk::{RISK_BANDS, band, band_range};
use steward_core::{IdentityKind, IdentityStatus};
use steward_store::{IdRange, IdentityQuery, IdentitySearch};
use uuid::Uuid;

use crate::console::session::Operator;
use crate::console::view::{Chrome, query, relative, when};
use crate::console::{Console, ConsoleError, ConsoleQuery, render};

/// Rows per page unless the query asks otherwise (at most [`MAX_PAGE`]).
pub const PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InventoryParams {
    pub q: String,
    /// `prefix` (default: names starting with `q`) or `contains` (name or purpose).
    #[serde(rename = "match")]
    pub mode: String,
    pub kind: String,
    pub environment: String,
    pub owner: String,
    pub status: String,
    pub risk: String,
    pub cursor: String,
    pub limit: Option<u32>,
}

/// One option of a filter's `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn choices<'a>(values: impl Iterator<Item = (&'a str, &'a str)>, selected: &str) -> Vec<Choice> {
    values
        .map(|(v, l)| Choice {
            value: v.to_owned(),
            label: l.to_owned(),
            selected: v == selected,
        })
        .collect()
}

pub struct Row {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub environment: String,
    pub owner_id: String,
    pub owner: String,
    pub status: &'static str,
    pub expires: String,
    pub expires_in: String,
    pub risk: u8,
    pub risk_band: &'static str,
}

#[derive(askama::Template)]
#[template(path = "inventory.html")]
struct InventoryPage {
    chrome: Chrome,
    q: String,
    contains: bool,
    kinds: Vec<Choice>,
    environments: Vec<Choice>,
    owners: Vec<Choice>,
    statuses: Vec<Choice>,
    risks: Vec<Choice>,
    rows: Vec<Row>,
    next_href: Option<String>,
    first_href: Option<String>,
    filtered: bool,
}

/// `GET /ui/identities`.
pub async fn page(
    State(c): State<Console>,
    op: Operator,
    ConsoleQuery(p): ConsoleQuery<InventoryParams>,
) -> Result<Response, ConsoleError> {
    let app = &c.app;
    let q = p.q.trim().to_owned();
    if let Ok(id) = Uuid::parse_str(&q) {
        return Ok(Redirect::to(&format!("/ui/identities/{id}")).into_response());
    }
    let contains = match p.mode.as_str() {
        "" | "prefix" => false,
        "contains" => true,
        _ => {
            return Err(ConsoleError::bad_request(
                "match must be prefix or contains",
            ));
        }
    };
    let kind = match p.kind.as_str() {
        "" => None,
        k => Some(
            IdentityKind::parse(k)
                .ok_or_else(|| ConsoleError::bad_request(format!("unknown kind {k}")))?,
        ),
    };
    let status = match p.status.as_str() {
        "" => None,
        s => Some(
            IdentityStatus::parse(s)
                .ok_or_else(|| ConsoleError::bad_request(format!("unknown status {s}")))?,
        ),
    };
    let owner = match p.owner.as_str() {
        "" => None,
        o => Some(
            Uuid::parse_str(o)
                .map_err(|_| ConsoleError::bad_request("owner must be an owner id"))?,
        ),
    };
    let after = match p.cursor.as_str() {
        "" => None,
        cur => Some(Uuid::parse_str(cur).map_err(|_| ConsoleError::bad_request("invalid cursor"))?),
    };
    let risk = match p.risk.as_str() {
        "" => None,
        r => Some(band_range(r).ok_or_else(|| {
            ConsoleError::bad_request("risk must be critical, high, medium or low")
        })?),
    };
    let limit = p.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let environment = (!p.environment.is_empty()).then(|| p.environment.clone());
    let search = IdentitySearch {
        filter: IdentityQuery {
            owner_id: owner,
            environment,
            kind,
            status,
            name: None,
            search: (contains && !q.is_empty()).then(|| q.clone()),
            vendor: None,
            after,
            limit,
            now: app.now(),
        },
        name_prefix: (!contains && !q.is_empty()).then(|| q.to_ascii_lowercase()),
        risk,
    };
    let page = app.store.search_identities(&search).await?;
    // One range read for the page's scores (ids are in order).
    let scores: HashMap<Uuid, u8> = match (page.items.first(), page.items.last()) {
        (Some(first), Some(last)) => app
            .store
            .identity_risks_between(IdRange {
                first: first.id,
                last: last.id,
            })
            .await?
            .into_iter()
            .map(|r| (r.identity_id, r.score))
            .collect(),
        _ => HashMap::new(),
    };
    let owner_ids: Vec<Uuid> = page.items.iter().map(|i| i.owner_id).collect();
    let names = c.owners.names(app, &owner_ids).await;
    let now = app.now();
    let rows = page
        .items
        .iter()
        .map(|i| Row {
            id: i.id.to_string(),
            name: i.name.clone(),
            kind: i.kind.as_str(),
            environment: i.environment.clone(),
            owner_id: i.owner_id.to_string(),
            owner: names
                .get(&i.owner_id)
                .cloned()
                .unwrap_or_else(|| i.owner_id.to_string()),
            status: i.effective_status(now).as_str(),
            expires: when(i.expires_at),
            expires_in: relative(now, i.expires_at),
            risk: scores.get(&i.id).copied().unwrap_or(0),
            risk_band: band(scores.get(&i.id).copied().unwrap_or(0)),
        })
        .collect();

    let limit_s = if p.limit.is_some() {
        limit.to_string()
    } else {
        String::new()
    };
    let base: Vec<(&str, &str)> = vec![
        ("q", &q),
        ("match", if contains { "contains" } else { "" }),
        ("kind", &p.kind),
        ("environment", &p.environment),
        ("owner", &p.owner),
        ("status", &p.status),
        ("risk", &p.risk),
        ("limit", &limit_s),
    ];
    let next_href = page.next.as_ref().map(|n| {
        let mut pairs = base.clone();
        pairs.push(("cursor", n));
        format!("/ui/identities{}", query(&pairs))
    });
    let first_href = after.map(|_| format!("/ui/identities{}", query(&base)));

    let kinds = choices(
        IdentityKind::ALL.iter().map(|k| (k.as_str(), k.as_str())),
        &p.kind,
    );
    let environments = choices(
        app.config
            .registry
            .environments
            .iter()
            .map(|e| (e.as_str(), e.as_str())),
        &p.environment,
    );
    let owner_list = c.owners.choices(app).await;
    let mut owners: Vec<Choice> = owner_list
        .iter()
        .map(|(id, name)| Choice {
            value: id.to_string(),
            label: name.clone(),
            selected: id.to_string() == p.owner,
        })
        .collect();
    if let Some(o) = owner
        && !owners.iter().any(|c| c.selected)
    {
        let name = c
            .owners
            .names(app, &[o])
            .await
            .remove(&o)
            .unwrap_or_default();
        owners.insert(
            0,
            Choice {
                value: o.to_string(),
                label: name,
                selected: true,
            },
        );
    }
    let statuses = choices(
        [
            ("active", "active"),
            ("pending_approval", "pending approval"),
            ("suspended", "suspended"),
            ("expired", "expired"),
            ("retired", "retired"),
        ]
        .into_iter(),
        &p.status,
    );
    let risks = choices(RISK_BANDS.iter().map(|(r, _, _)| (*r, *r)), &p.risk);
    let filtered = !q.is_empty()
        || kind.is_some()
        || status.is_some()
        || owner.is_some()
        || risk.is_some()
        || !p.environment.is_empty();
    let page = InventoryPage {
        chrome: Chrome::new("Inventory", "inventory", &op),
        q,
        contains,
        kinds,
        environments,
        owners,
        statuses,
        risks,
        rows,
        next_href,
        first_href,
        filtered,
    };
    Ok(render(&page))
}

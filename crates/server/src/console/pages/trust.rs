//! Trust policies in the browser: which external issuers (CI systems, clusters, clouds) may
//! exchange their tokens for which identity, and the explain tool that shows why a token passes.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use steward_proto::trust::{ExplainResponse, TrustPolicyView};
use steward_store::TrustPolicyQuery;
use uuid::Uuid;

use crate::console::session::Operator;
use crate::console::view::{Chrome, IdentityNames, clip};
use crate::console::{Console, ConsoleError, ConsoleForm, render};

/// Policies listed on the page.
pub const PAGE: u32 = 200;
/// Longest token the explain form accepts (a JWT from a CI system is a few KiB).
pub const MAX_TOKEN: usize = 16 * 1024;

pub struct PolicyRow {
    pub id: String,
    pub name: String,
    pub preset: String,
    pub issuer: String,
    pub audiences: String,
    pub identity_id: String,
    pub identity: String,
    pub rules: usize,
    pub single_use: bool,
    pub enabled: bool,
    pub selected: bool,
}

pub struct CheckRow {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

pub struct ConditionRow {
    pub rule: String,
    pub claim: String,
    pub test: String,
    pub actual: String,
    pub matched: bool,
    pub why: String,
}

/// The explain tool's answer, as shown (the token itself is never echoed back).
pub struct Explained {
    pub policy: String,
    pub accepted: bool,
    pub reason: String,
    pub checks: Vec<CheckRow>,
    pub conditions: Vec<ConditionRow>,
    pub matched_rule: String,
    pub claims: String,
}

#[derive(askama::Template)]
#[template(path = "trust.html")]
struct TrustPage {
    chrome: Chrome,
    policies: Vec<PolicyRow>,
    explained: Option<Explained>,
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The explain response flattened for a table: one row per rule condition.
pub fn explained(name: &str, r: &ExplainResponse) -> Explained {
    let mut conditions = vec![];
    for rule in &r.rules {
        let label = match rule["name"].as_str() {
            Some(n) if !n.is_empty() => format!("{} ({n})", text(&rule["rule"])),
            _ => text(&rule["rule"]),
        };
        for c in rule["conditions"].as_array().into_iter().flatten() {
            conditions.push(ConditionRow {
                rule: label.clone(),
                claim: text(&c["claim"]),
                test: clip(&text(&c["test"]), 200),
                actual: clip(&text(&c["actual"]), 200),
                matched: c["matched"].as_bool().unwrap_or(false),
                why: clip(&text(&c["why"]), 300),
            });
        }
    }
    Explained {
        policy: name.to_owned(),
        accepted: r.accepted,
        reason: r.reason.clone().unwrap_or_default(),
        checks: r
            .checks
            .iter()
            .map(|c| CheckRow {
                check: c.check.clone(),
                ok: c.ok,
                detail: clip(&c.detail, 300),
            })
            .collect(),
        conditions,
        matched_rule: r.matched_rule.map(|n| n.to_string()).unwrap_or_default(),
        claims: clip(
            &serde_json::to_string_pretty(&r.claims).unwrap_or_default(),
            4000,
        ),
    }
}

async fn policy_rows(
    c: &Console,
    selected: Option<Uuid>,
) -> Result<(Vec<PolicyRow>, Vec<TrustPolicyView>), ConsoleError> {
    let list = c
        .app
        .list_trust_policies(&TrustPolicyQuery {
            limit: PAGE,
            ..Default::default()
        })
        .await?;
    let mut names = IdentityNames::default();
    let mut rows = Vec::with_capacity(list.items.len());
    for p in &list.items {
        rows.push(PolicyRow {
            id: p.id.to_string(),
            name: p.name.clone(),
            preset: p.preset.clone(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.join(" "),
            identity_id: p.identity.to_string(),
            identity: names.get(&c.app, p.identity).await,
            rules: p.allow.len(),
            single_use: p.single_use,
            enabled: p.enabled,
            selected: selected == Some(p.id),
        });
    }
    Ok((rows, list.items))
}

/// `GET /ui/trust-policies`.
pub async fn page(State(c): State<Console>, op: Operator) -> Result<Response, ConsoleError> {
    let (policies, _) = policy_rows(&c, None).await?;
    Ok(render(&TrustPage {
        chrome: Chrome::new("Trust policies", "trust", &op),
        policies,
        explained: None,
    }))
}

#[derive(Deserialize)]
pub struct ExplainForm {
    pub csrf: Option<String>,
    pub policy: String,
    pub token: String,
}

/// `POST /ui/trust-policies/explain`: every check of one policy against a pasted token. Nothing
/// is stored and a single-use token is not consumed; the token is not shown back.
pub async fn explain(
    State(c): State<Console>,
    op: Operator,
    ConsoleForm(form): ConsoleForm<ExplainForm>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(&c, "/ui/trust-policies/explain", form.csrf.as_deref())
        .await?;
    let id = Uuid::parse_str(form.policy.trim())
        .map_err(|_| ConsoleError::bad_request("choose a trust policy"))?;
    let token = form.token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(ConsoleError::bad_request(format!(
            "paste the external token (a JWT of at most {MAX_TOKEN} bytes)"
        )));
    }
    let r = c.app.explain_trust_policy(id, token).await?;
    let (policies, views) = policy_rows(&c, Some(id)).await?;
    let name = views
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.to_string());
    Ok(render(&TrustPage {
        chrome: Chrome::new("Trust policies", "trust", &op),
        policies,
        explained: Some(explained(&name, &r)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use steward_proto::trust::ExplainCheck;

    #[test]
    fn explain_rows_flatten_rules_and_conditions() {
        let r = ExplainResponse {
            policy: Uuid::from_u128(1),
            accepted: false,
            reason: Some("no rule matched".into()),
            checks: vec![ExplainCheck {
                check: "signature".into(),
                ok: true,
                detail: "EdDSA key k1".into(),
            }],
            rules: vec![
                json!({"rule": 1, "name": "main only", "matched": false, "conditions": [
                    {"claim": "ref", "test": "equals refs/heads/main", "actual": "refs/heads/dev",
                     "matched": false, "why": "differs"},
                    {"claim": "repository", "test": "equals acme/app", "actual": "acme/app",
                     "matched": true, "why": ""},
                ]}),
            ],
            matched_rule: None,
            identity: Uuid::from_u128(2),
            header: json!({}),
            claims: json!({"ref": "refs/heads/dev"}),
        };
        let e = explained("gh", &r);
        assert!(!e.accepted);
        assert_eq!(e.reason, "no rule matched");
        assert_eq!(e.conditions.len(), 2);
        assert_eq!(e.conditions[0].rule, "1 (main only)");
        assert_eq!(e.conditions[0].actual, "refs/heads/dev");
        assert!(!e.conditions[0].matched && e.conditions[1].matched);
        assert!(e.claims.contains("refs/heads/dev"));
        assert_eq!(e.matched_rule, "");
    }
}

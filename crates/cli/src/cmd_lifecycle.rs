//! `steward review|jit|exception ...`: thin clients of `/v1/reviews`, `/v1/jit-requests` and
//! `/v1/exceptions`, plus the vendor-wide retire and the offboarding evidence of identities.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::commands::{enc, list_all, parse_expiry, query};
use crate::output;

#[derive(Subcommand)]
pub enum ReviewCmd {
    /// Start an access-review campaign over the identities matching the selection.
    Create {
        name: String,
        /// Deadline: RFC 3339, or a duration from now such as 14d.
        #[arg(long)]
        deadline: String,
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        vendor: Option<String>,
        /// What undecided items get at the deadline: suspend (default), retire or keep.
        #[arg(long)]
        default_action: Option<String>,
        /// OWNER_ID=ACTOR: who reviews that owner's identities (repeatable).
        #[arg(long = "reviewer", value_name = "OWNER_ID=ACTOR")]
        reviewers: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    List {
        /// open or closed.
        #[arg(long)]
        status: Option<String>,
    },
    /// A campaign and its items.
    Show {
        id: String,
        /// Only items still undecided.
        #[arg(long)]
        undecided: bool,
    },
    /// Decide one item: keep, reduce (to --scope ...), or revoke.
    Decide {
        review: String,
        #[arg(
            long,
            conflicts_with = "identity",
            required_unless_present = "identity"
        )]
        item: Option<String>,
        #[arg(long)]
        identity: Option<String>,
        /// keep, reduce or revoke.
        #[arg(long)]
        decision: String,
        /// For reduce: a scope to keep (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// For revoke: suspend (default) or retire.
        #[arg(long)]
        revoke_mode: Option<String>,
        #[arg(long)]
        justification: String,
    },
    /// The campaign as evidence (JSON or CSV).
    Export {
        id: String,
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum JitCmd {
    /// Ask for extra scopes for an identity, for a bounded time.
    Request {
        identity: String,
        /// Extra scope (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Window length from approval: seconds, or 30m, 2h.
        #[arg(long)]
        duration: String,
        #[arg(long)]
        reason: String,
    },
    List {
        #[arg(long)]
        identity: Option<String>,
        /// pending, approved, denied, revoked or active.
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve (you must not be the requester).
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// End an approved window now.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ExceptionCmd {
    /// Request a time-bound waiver of a guard rail or finding type for one identity.
    Request {
        identity: String,
        /// Guard rail (e.g. steward.env-isolation) or finding type (e.g. dormant).
        #[arg(long = "for", value_name = "GUARD_RAIL_OR_FINDING")]
        target: String,
        #[arg(long)]
        reason: String,
        /// Expiry: RFC 3339, or a duration from now such as 30d (at most 90 days).
        #[arg(long)]
        expires: String,
    },
    List {
        #[arg(long)]
        identity: Option<String>,
        /// pending or denied lists requests; default: active exceptions.
        #[arg(long)]
        status: Option<String>,
        /// Include expired exceptions.
        #[arg(long)]
        all: bool,
    },
    /// Approve a pending request (you must not be the requester).
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

fn show(v: &Value, json_out: bool) {
    if json_out {
        output::json(v)
    } else {
        output::record(v)
    }
}

fn rows(items: &[Value], cols: &[&str]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
        .collect()
}

/// Parses `90`, `30s`, `30m`, `2h` or `1d` as seconds.
fn parse_secs(s: &str) -> Result<u32> {
    let bad = || anyhow!("duration {s:?}: use seconds, or a number with s, m, h or d");
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u32 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

pub async fn review(mut c: Client, cmd: ReviewCmd, json_out: bool) -> Result<ExitCode> {
    match cmd {
        ReviewCmd::Create {
            name,
            deadline,
            environment,
            owner,
            kind,
            vendor,
            default_action,
            reviewers,
            description,
        } => {
            let mut r = Map::new();
            for kv in reviewers {
                let (o, a) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--reviewer {kv:?} must be OWNER_ID=ACTOR"))?;
                r.insert(o.into(), json!(a));
            }
            let body = json!({
                "name": name, "deadline": parse_expiry(&deadline)?, "environment": environment,
                "owner": owner, "kind": kind, "vendor": vendor, "default_action": default_action,
                "reviewers": r, "description": description,
            });
            show(&c.post("/v1/reviews", &body).await?, json_out);
        }
        ReviewCmd::List { status } => {
            let items = list_all(&mut c, "/v1/reviews", &[("status", status)], true).await?;
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let cols = [
                    "id",
                    "name",
                    "status",
                    "default_action",
                    "deadline",
                    "created_by",
                ];
                output::table(&cols, &rows(&items, &cols));
            }
        }
        ReviewCmd::Show { id, undecided } => {
            let q = query(&[("undecided", undecided.then(|| "true".to_owned()))]);
            let v = c.get(&format!("/v1/reviews/{}{q}", enc(&id))).await?;
            if json_out {
                output::json(&v);
            } else {
                output::record(&v["review"]);
                println!();
                let items: Vec<Value> = v["items"].as_array().cloned().unwrap_or_default();
                let mut table: Vec<Vec<String>> = vec![];
                for i in &items {
                    let s = &i["snapshot"];
                    table.push(vec![
                        output::field(i, "id"),
                        output::field(&s["identity"], "name"),
                        output::field(&s["identity"], "environment"),
                        output::field(s, "scopes_granted"),
                        output::field(s, "last_used_at"),
                        s["open_findings"]
                            .as_array()
                            .map_or(0, Vec::len)
                            .to_string(),
                        output::field(i, "reviewer"),
                        output::field(i, "decision"),
                        output::field(i, "outcome"),
                    ]);
                }
                output::table(
                    &[
                        "item",
                        "identity",
                        "env",
                        "scopes",
                        "last_used",
                        "findings",
                        "reviewer",
                        "decision",
                        "outcome",
                    ],
                    &table,
                );
            }
        }
        ReviewCmd::Decide {
            review,
            item,
            identity,
            decision,
            scopes,
            revoke_mode,
            justification,
        } => {
            let body = json!({
                "item_id": item, "identity_id": identity, "decision": decision,
                "scopes": (!scopes.is_empty()).then_some(scopes), "revoke_mode": revoke_mode,
                "justification": justification,
            });
            show(
                &c.post(&format!("/v1/reviews/{}/decisions", enc(&review)), &body)
                    .await?,
                json_out,
            );
        }
        ReviewCmd::Export { id, format, out } => {
            let v = c
                .get(&format!(
                    "/v1/reviews/{}/export{}",
                    enc(&id),
                    query(&[("format", Some(format.clone()))])
                ))
                .await?;
            let text = match v {
                Value::String(s) => s,
                other => serde_json::to_string_pretty(&other)?,
            };
            match out {
                Some(p) => {
                    std::fs::write(&p, &text)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!("review {id} exported ({format}) to {}", p.display());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn jit(mut c: Client, cmd: JitCmd, json_out: bool) -> Result<ExitCode> {
    let decide = |id: &str, action: &str| format!("/v1/jit-requests/{}/{action}", enc(id));
    match cmd {
        JitCmd::Request {
            identity,
            scopes,
            duration,
            reason,
        } => {
            let body = json!({
                "identity_id": identity, "scopes": scopes,
                "duration_secs": parse_secs(&duration)?, "reason": reason,
            });
            show(&c.post("/v1/jit-requests", &body).await?, json_out);
        }
        JitCmd::List { identity, status } => {
            let items = list_all(
                &mut c,
                "/v1/jit-requests",
                &[("identity_id", identity), ("status", status)],
                true,
            )
            .await?;
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let cols = [
                    "id",
                    "identity_id",
                    "scopes",
                    "status",
                    "requested_by",
                    "decided_by",
                    "expires_at",
                ];
                output::table(&cols, &rows(&items, &cols));
            }
        }
        JitCmd::Approve { id, reason } => show(
            &c.post(&decide(&id, "approve"), &json!({"reason": reason}))
                .await?,
            json_out,
        ),
        JitCmd::Deny { id, reason } => show(
            &c.post(&decide(&id, "deny"), &json!({"reason": reason}))
                .await?,
            json_out,
        ),
        JitCmd::Revoke { id, reason } => show(
            &c.post(&decide(&id, "revoke"), &json!({"reason": reason}))
                .await?,
            json_out,
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn exception(mut c: Client, cmd: ExceptionCmd, json_out: bool) -> Result<ExitCode> {
    let decide = |id: &str, action: &str| format!("/v1/exceptions/{}/{action}", enc(id));
    match cmd {
        ExceptionCmd::Request {
            identity,
            target,
            reason,
            expires,
        } => {
            let body = json!({
                "identity_id": identity, "guard_rail": target, "reason": reason,
                "expires_at": parse_expiry(&expires)?,
            });
            show(&c.post("/v1/exceptions", &body).await?, json_out);
        }
        ExceptionCmd::List {
            identity,
            status,
            all,
        } => {
            if all && status.is_some() {
                bail!("--all lists approved exceptions; it does not combine with --status");
            }
            let active = (!all && status.is_none()).then(|| "true".to_owned());
            let active = if all {
                Some("false".to_owned())
            } else {
                active
            };
            let v = c
                .get(&format!(
                    "/v1/exceptions{}",
                    query(&[
                        ("identity_id", identity),
                        ("status", status),
                        ("active", active)
                    ])
                ))
                .await?;
            let items: Vec<Value> = v["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let cols = [
                    "id",
                    "identity_id",
                    "guard_rail",
                    "status",
                    "requested_by",
                    "approved_by",
                    "expires_at",
                ];
                output::table(&cols, &rows(&items, &cols));
            }
        }
        ExceptionCmd::Approve { id, reason } => show(
            &c.post(&decide(&id, "approve"), &json!({"reason": reason}))
                .await?,
            json_out,
        ),
        ExceptionCmd::Deny { id, reason } => show(
            &c.post(&decide(&id, "deny"), &json!({"reason": reason}))
                .await?,
            json_out,
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `steward identity retire --vendor NAME`: every live identity of the vendor, in one call.
pub async fn retire_vendor(
    c: &mut Client,
    vendor: &str,
    reason: Option<String>,
    json_out: bool,
) -> Result<()> {
    let v = c
        .post(
            &format!("/v1/vendors/{}/revoke", enc(vendor)),
            &json!({"reason": reason}),
        )
        .await?;
    if json_out {
        output::json(&v);
        return Ok(());
    }
    let items: Vec<Value> = v["offboarded"].as_array().cloned().unwrap_or_default();
    let table: Vec<Vec<String>> = items
        .iter()
        .map(|o| {
            vec![
                output::field(o, "identity_id"),
                o["credentials_revoked"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .to_string(),
                o["certificates_revoked"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .to_string(),
                o["jit_grants_revoked"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .to_string(),
                output::field(o, "tokens_revoked_before"),
                output::field(o, "audit_seq"),
            ]
        })
        .collect();
    output::table(
        &[
            "identity",
            "credentials",
            "certificates",
            "jit_grants",
            "tokens_revoked_before",
            "audit_seq",
        ],
        &table,
    );
    eprintln!("vendor {vendor}: {} identities retired", items.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_secs("90").unwrap(), 90);
        assert_eq!(parse_secs("30m").unwrap(), 1800);
        assert_eq!(parse_secs("2h").unwrap(), 7200);
        assert_eq!(parse_secs("1d").unwrap(), 86_400);
        assert!(parse_secs("2w").is_err());
        assert!(parse_secs("h").is_err());
        assert!(parse_secs("99999999d").is_err());
    }
}

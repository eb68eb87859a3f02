//! Governance commands: `steward findings` (list, run, accept), `steward identity right-size`
//! and `steward identity risk`, and `steward report` (JSON, Markdown or self-contained HTML).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::output;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FindingsArgs {
    /// Only this finding type (e.g. dormant, orphaned, secret_leaked).
    #[arg(long = "type")]
    kind: Option<String>,
    /// low, medium, high or critical.
    #[arg(long)]
    severity: Option<String>,
    /// open, resolved or accepted.
    #[arg(long)]
    status: Option<String>,
    /// Only findings of this identity.
    #[arg(long)]
    identity: Option<String>,
    /// OWASP NHI Top 10 id, e.g. NHI5:2025.
    #[arg(long)]
    owasp: Option<String>,
    /// NIST CSF id, e.g. PR.AA-05.
    #[arg(long)]
    nist: Option<String>,
    /// Run the findings job now and print what it did (instead of listing).
    #[arg(long)]
    run: bool,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Follow cursors to list every match.
    #[arg(long)]
    all: bool,
    #[command(subcommand)]
    command: Option<FindingsCmd>,
}

#[derive(Subcommand)]
enum FindingsCmd {
    /// Show one finding with its evidence.
    Show { id: String },
    /// Accept a finding's risk until a date (it reopens after), with a reason.
    Accept {
        id: String,
        /// RFC 3339, or a duration from now such as 30d.
        #[arg(long)]
        until: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Args)]
pub struct RightSizeArgs {
    id: String,
    /// Usage window in days.
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// Apply the suggestion (PATCH the identity, audited). Without it, only show it.
    #[arg(long)]
    apply: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// json, md or html.
    #[arg(long, default_value = "md")]
    format: String,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn enc(s: &str) -> String {
    url_escape(s)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", url_escape(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

const FINDING_COLUMNS: [&str; 7] = [
    "id",
    "type",
    "severity",
    "status",
    "owasp_nhi",
    "identity_id",
    "last_seen",
];

pub async fn findings(mut c: Client, a: FindingsArgs, json_out: bool) -> Result<ExitCode> {
    match a.command {
        Some(FindingsCmd::Show { id }) => {
            let v = c.get(&format!("/v1/findings/{}", enc(&id))).await?;
            if json_out {
                output::json(&v);
            } else {
                output::record(&v);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(FindingsCmd::Accept { id, until, reason }) => {
            let until = crate::commands::parse_expiry(&until)?;
            let v = c
                .post(
                    &format!("/v1/findings/{}/accept", enc(&id)),
                    &json!({"until": until, "reason": reason}),
                )
                .await?;
            if json_out {
                output::json(&v);
            } else {
                output::record(&v);
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    if a.run {
        let v = c.post("/v1/findings/run", &json!({})).await?;
        if json_out {
            output::json(&v);
        } else {
            let mut summary = v.clone();
            let actions = summary
                .as_object_mut()
                .and_then(|m| m.remove("actions"))
                .unwrap_or(Value::Null);
            output::record(&summary);
            if let Some(list) = actions.as_array().filter(|l| !l.is_empty()) {
                println!();
                let cols = ["action", "finding_type", "identity_id", "executed", "error"];
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
                    .collect();
                output::table(&cols, &rows);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = query(&[
            ("type", a.kind.clone()),
            ("severity", a.severity.clone()),
            ("status", a.status.clone()),
            ("identity", a.identity.clone()),
            ("owasp", a.owasp.clone()),
            ("nist", a.nist.clone()),
            ("limit", Some(a.limit.to_string())),
            ("cursor", cursor.clone()),
        ]);
        let v = c.get(&format!("/v1/findings{q}")).await?;
        if let Some(list) = v.get("items").and_then(Value::as_array) {
            items.extend(list.iter().cloned());
        }
        cursor = v
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if !a.all || cursor.is_none() {
            break;
        }
    }
    if json_out {
        output::json(&Value::Array(items));
    } else {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|o| {
                FINDING_COLUMNS
                    .iter()
                    .map(|k| output::field(o, k))
                    .collect()
            })
            .collect();
        output::table(&FINDING_COLUMNS, &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// The PATCH body that applies an entitlements suggestion, or `None` when nothing changes.
pub fn right_size_patch(e: &Value) -> Option<Value> {
    let mut m = serde_json::Map::new();
    for part in ["scopes", "audiences"] {
        let g = &e[part];
        if g["suggested"] != g["granted"] {
            m.insert(part.into(), g["suggested"].clone());
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

pub async fn right_size(c: &mut Client, a: RightSizeArgs, json_out: bool) -> Result<ExitCode> {
    let e = c
        .get(&format!(
            "/v1/identities/{}/entitlements?days={}",
            enc(&a.id),
            a.days
        ))
        .await?;
    let patch = right_size_patch(&e);
    let applied = match (&patch, a.apply) {
        (Some(p), true) => Some(
            c.call(
                Method::PATCH,
                &format!("/v1/identities/{}", enc(&a.id)),
                Some(p),
            )
            .await?,
        ),
        _ => None,
    };
    if json_out {
        output::json(&json!({
            "entitlements": e,
            "patch": patch,
            "applied": applied.is_some(),
            "identity": applied,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Usage over the last {} days (evidence: {}):",
        a.days,
        output::field(&e, "evidence")
    );
    let rows: Vec<Vec<String>> = ["scopes", "audiences"]
        .iter()
        .map(|part| {
            let g = &e[*part];
            vec![
                (*part).to_owned(),
                output::field(g, "granted"),
                g["used"]
                    .as_array()
                    .map(|u| {
                        u.iter()
                            .map(|x| format!("{} ({})", output::field(x, "name"), x["uses"]))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
                output::field(g, "unused"),
                output::field(g, "suggested"),
            ]
        })
        .collect();
    output::table(&["", "granted", "used", "unused", "suggested"], &rows);
    if let Some(notes) = e["notes"].as_array() {
        for n in notes.iter().filter_map(Value::as_str) {
            println!("note: {n}");
        }
    }
    match (patch, applied) {
        (None, _) => println!("Nothing to reduce."),
        (Some(p), None) => println!("Dry run. To apply {p}, run again with --apply."),
        (Some(p), Some(_)) => println!("Applied {p} (audited as identity.update)."),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn risk(c: &mut Client, id: &str, json_out: bool) -> Result<ExitCode> {
    let v = c.get(&format!("/v1/identities/{}/risk", enc(id))).await?;
    if json_out {
        output::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "risk {} / 100 (computed {})",
        output::field(&v, "score"),
        output::field(&v, "computed_at")
    );
    let cols = [
        "finding_type",
        "owasp_nhi",
        "severity",
        "accepted",
        "points",
    ];
    let rows: Vec<Vec<String>> = v["factors"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
                .collect()
        })
        .unwrap_or_default();
    output::table(&cols, &rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn report(mut c: Client, a: ReportArgs, json_flag: bool) -> Result<ExitCode> {
    let format = if json_flag { "json" } else { a.format.as_str() };
    if !matches!(format, "json" | "md" | "html") {
        bail!("--format must be json, md or html");
    }
    let v = c.get(&format!("/v1/report?format={format}")).await?;
    let text = match (format, v) {
        ("json", v) => format!("{}\n", serde_json::to_string_pretty(&v)?),
        (_, Value::String(s)) => s,
        (_, other) => return Err(anyhow!("unexpected report body: {other}")),
    };
    match a.out {
        Some(p) => {
            std::fs::write(&p, text).map_err(|e| anyhow!("cannot write {}: {e}", p.display()))?;
            eprintln!("report written to {}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_only_names_what_changes() {
        let e = json!({
            "scopes": {"granted": ["a", "b"], "suggested": ["a"]},
            "audiences": {"granted": ["x"], "suggested": ["x"]},
        });
        assert_eq!(right_size_patch(&e), Some(json!({"scopes": ["a"]})));
        let same = json!({
            "scopes": {"granted": ["a"], "suggested": ["a"]},
            "audiences": {"granted": [], "suggested": []},
        });
        assert_eq!(right_size_patch(&same), None);
    }
}

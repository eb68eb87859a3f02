//! `steward policy list|show|versions|put|delete|schema|what-if` and `steward authorize`:
//! thin clients of `/v1/policies`, `/v1/authorize` and `/v1/authorize/what-if`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::output;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// List the built-in guard rails and the operator's policies.
    List,
    /// Show one policy (latest version).
    Show { id: String },
    /// Show every stored version of a policy.
    Versions { id: String },
    /// Create or replace a policy from a Cedar file (one permit or forbid statement).
    Put {
        id: String,
        /// Cedar source file (`-` for standard input).
        #[arg(long, short)]
        file: PathBuf,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a policy (a new, deleted version is recorded).
    Delete { id: String },
    /// Print the Cedar schema the server validates policies against.
    Schema,
    /// Show which recorded decisions a proposed change would flip.
    WhatIf {
        /// Proposed policies as ID=FILE (added or replaced).
        #[arg(long = "put", value_name = "ID=FILE")]
        put: Vec<String>,
        /// Policy ids to remove.
        #[arg(long = "remove", value_name = "ID")]
        remove: Vec<String>,
        /// The --put policies are the whole proposed set.
        #[arg(long)]
        replace: bool,
        /// Window start (RFC 3339; default 24 hours ago).
        #[arg(long)]
        since: Option<String>,
        /// Window end (RFC 3339; default now).
        #[arg(long)]
        until: Option<String>,
    },
}

/// `steward authorize`: ask the server for a decision. Exits 0 on allow, 2 on deny.
#[derive(Args)]
pub struct AuthorizeArgs {
    /// The action, e.g. `read`.
    #[arg(long)]
    action: String,
    /// Resource type, e.g. `Document`.
    #[arg(long = "resource-type")]
    resource_type: String,
    /// Resource id.
    #[arg(long = "resource-id")]
    resource_id: String,
    /// The resource's environment (its `env` attribute).
    #[arg(long)]
    env: String,
    /// More resource attributes as KEY=VALUE (VALUE is JSON when it parses, else a string).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attrs: Vec<String>,
    /// The principal as an access token (`-` reads it from standard input).
    #[arg(
        long,
        conflicts_with = "identity",
        required_unless_present = "identity"
    )]
    token: Option<String>,
    /// The principal as an identity id.
    #[arg(long)]
    identity: Option<String>,
    /// The caller's source address.
    #[arg(long = "source-ip")]
    source_ip: Option<String>,
    /// `x5t#S256` thumbprint of the client certificate presented over mutual TLS.
    #[arg(long = "cert-thumbprint")]
    cert_thumbprint: Option<String>,
}

fn read_source(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn policy_table(items: &[Value]) {
    let cols = ["id", "version", "builtin", "description"];
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
        .collect();
    output::table(&cols, &rows);
}

fn show_policy(v: &Value, json_out: bool) {
    if json_out {
        output::json(v);
        return;
    }
    for k in [
        "id",
        "version",
        "builtin",
        "description",
        "created_at",
        "created_by",
    ] {
        println!("{k:<12} {}", output::field(v, k));
    }
    println!();
    println!("{}", v.get("source").and_then(Value::as_str).unwrap_or(""));
}

pub async fn policy(mut c: Client, cmd: PolicyCmd, json_out: bool) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::List => {
            let v = c.get("/v1/policies").await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                output::json(&Value::Array(items));
            } else {
                policy_table(&items);
            }
        }
        PolicyCmd::Show { id } => {
            let v = c.get(&format!("/v1/policies/{}", enc(&id))).await?;
            show_policy(&v, json_out);
        }
        PolicyCmd::Versions { id } => {
            let v = c
                .get(&format!("/v1/policies/{}/versions", enc(&id)))
                .await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let cols = ["version", "created_at", "created_by", "description"];
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
                    .collect();
                output::table(&cols, &rows);
            }
        }
        PolicyCmd::Put {
            id,
            file,
            description,
        } => {
            let source = read_source(&file)?;
            let path = format!("/v1/policies/{}", enc(&id));
            let update = json!({"source": source, "description": description});
            let v = match c.call(Method::PUT, &path, Some(&update)).await {
                Ok(v) => v,
                Err(e) if e.to_string().starts_with("not_found (404)") => {
                    let create = json!({
                        "id": id, "source": source,
                        "description": description.unwrap_or_default(),
                    });
                    c.post("/v1/policies", &create).await?
                }
                Err(e) => return Err(e),
            };
            show_policy(&v, json_out);
        }
        PolicyCmd::Delete { id } => {
            c.call(Method::DELETE, &format!("/v1/policies/{}", enc(&id)), None)
                .await?;
            if !json_out {
                println!("deleted policy {id}");
            }
        }
        PolicyCmd::Schema => {
            let v = c.get("/v1/policies/schema").await?;
            if json_out {
                output::json(&v["json"]);
            } else {
                println!("{}", v["cedar"].as_str().unwrap_or(""));
            }
        }
        PolicyCmd::WhatIf {
            put,
            remove,
            replace,
            since,
            until,
        } => {
            let mut policies = Vec::new();
            for p in put {
                let Some((id, file)) = p.split_once('=') else {
                    bail!("--put takes ID=FILE, got {p:?}");
                };
                let source = read_source(&PathBuf::from(file))?;
                policies.push(json!({"id": id, "source": source}));
            }
            let body = json!({
                "policies": policies, "remove": remove, "replace": replace,
                "since": since, "until": until,
            });
            let v = c.post("/v1/authorize/what-if", &body).await?;
            if json_out {
                output::json(&v);
            } else {
                println!(
                    "re-evaluated {} decisions ({} skipped): {} allow→deny, {} deny→allow{}",
                    output::field(&v, "evaluated"),
                    output::field(&v, "skipped"),
                    output::field(&v, "allow_to_deny"),
                    output::field(&v, "deny_to_allow"),
                    if v["truncated"] == json!(true) {
                        " (window truncated)"
                    } else {
                        ""
                    }
                );
                let flips = v["flips"].as_array().cloned().unwrap_or_default();
                if !flips.is_empty() {
                    let cols = [
                        "seq",
                        "time",
                        "principal",
                        "action",
                        "resource_type",
                        "resource_id",
                        "before",
                        "after",
                    ];
                    let rows: Vec<Vec<String>> = flips
                        .iter()
                        .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
                        .collect();
                    output::table(&cols, &rows);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn authorize(mut c: Client, a: AuthorizeArgs, json_out: bool) -> Result<ExitCode> {
    let mut attributes = Map::new();
    attributes.insert("env".into(), json!(a.env));
    for kv in a.attrs {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--attr takes KEY=VALUE, got {kv:?}");
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
        attributes.insert(k.to_owned(), value);
    }
    let token = match a.token.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            Some(s.trim().to_owned())
        }
        other => other.map(str::to_owned),
    };
    let body = json!({
        "token": token,
        "identity_id": a.identity,
        "action": a.action,
        "resource": {"type": a.resource_type, "id": a.resource_id, "attributes": attributes},
        "context": {"source_ip": a.source_ip, "client_cert_thumbprint": a.cert_thumbprint},
    });
    let v = c.post("/v1/authorize", &body).await?;
    if json_out {
        output::json(&v);
    } else {
        println!("{}", output::field(&v, "decision"));
        for k in ["policies", "errors", "policy_version"] {
            let f = output::field(&v, k);
            if !f.is_empty() {
                println!("{k:<15} {f}");
            }
        }
    }
    Ok(if v["decision"] == json!("allow") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

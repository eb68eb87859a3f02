//! `steward trust-policy create|list|show|update|delete|explain` (clients of `/v1/trust-policies`)
//! and `steward token-exchange` (RFC 8693 at `/oauth2/token`, for workloads and agents).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, read_credentials};
use crate::output;

#[derive(Subcommand)]
pub enum TrustPolicyCmd {
    /// Create a trust policy from a JSON file (see the README for GitHub Actions and Kubernetes examples).
    Create {
        /// Policy JSON (`-` for standard input).
        #[arg(long, short)]
        file: PathBuf,
    },
    /// List trust policies.
    List {
        /// Only policies for this exact issuer.
        #[arg(long)]
        issuer: Option<String>,
        /// Only policies mapping to this identity.
        #[arg(long)]
        identity: Option<String>,
    },
    /// Show one trust policy.
    Show { id: String },
    /// Change a trust policy with a JSON merge patch (RFC 7396; `null` removes a field).
    Update {
        id: String,
        /// Patch JSON (`-` for standard input).
        #[arg(long, short, required_unless_present_any = ["enable", "disable"])]
        file: Option<PathBuf>,
        /// Enable the policy.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the policy (its tokens stop exchanging at once).
        #[arg(long)]
        disable: bool,
        /// Refuse the update unless the policy is at this version.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Delete a trust policy.
    Delete { id: String },
    /// Show, for an external token, which checks, rules and conditions pass or fail, and why.
    Explain {
        id: String,
        /// File holding the external JWT (`-` for standard input).
        #[arg(long)]
        token: PathBuf,
    },
}

/// `steward token-exchange`: trade a token for a Steward access token (RFC 8693).
#[derive(Args)]
pub struct TokenExchangeArgs {
    /// File holding the subject token (`-` for standard input): an external JWT (a CI/CD or
    /// Kubernetes token) or a Steward access token.
    #[arg(long)]
    subject_token: PathBuf,
    /// `jwt` (default), `id_token` or `access_token`.
    #[arg(long, default_value = "jwt")]
    subject_token_type: String,
    /// File holding the actor's own access token, for delegation.
    #[arg(long)]
    actor_token: Option<PathBuf>,
    /// `access_token` (default) or `jwt`.
    #[arg(long, default_value = "access_token")]
    actor_token_type: String,
    /// Space-separated scopes (default: the subject's).
    #[arg(long)]
    scope: Option<String>,
    /// Audience of the new token (repeatable).
    #[arg(long = "audience")]
    audiences: Vec<String>,
}

fn read_input(path: &Path) -> Result<String> {
    let s = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    Ok(s.trim().to_owned())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = read_input(path)?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn token_type(short: &str) -> String {
    match short {
        "jwt" | "id_token" | "access_token" => format!("urn:ietf:params:oauth:token-type:{short}"),
        other => other.to_owned(),
    }
}

const COLUMNS: [&str; 7] = [
    "id", "name", "preset", "issuer", "identity", "enabled", "version",
];

pub async fn trust_policy(mut c: Client, cmd: TrustPolicyCmd, json_out: bool) -> Result<ExitCode> {
    let show = |v: &Value| {
        if json_out {
            output::json(v)
        } else {
            output::record(v)
        }
    };
    match cmd {
        TrustPolicyCmd::Create { file } => {
            show(&c.post("/v1/trust-policies", &read_json(&file)?).await?);
        }
        TrustPolicyCmd::Show { id } => {
            show(&c.get(&format!("/v1/trust-policies/{}", enc(&id))).await?);
        }
        TrustPolicyCmd::List { issuer, identity } => {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let q: Vec<String> = [
                    ("issuer", &issuer),
                    ("identity", &identity),
                    ("cursor", &cursor),
                ]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
                .collect();
                let path = if q.is_empty() {
                    "/v1/trust-policies".to_owned()
                } else {
                    format!("/v1/trust-policies?{}", q.join("&"))
                };
                let page = c.get(&path).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                cursor = page["next_cursor"].as_str().map(str::to_owned);
                if cursor.is_none() {
                    break;
                }
            }
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|o| COLUMNS.iter().map(|k| output::field(o, k)).collect())
                    .collect();
                output::table(&COLUMNS, &rows);
            }
        }
        TrustPolicyCmd::Update {
            id,
            file,
            enable,
            disable,
            expected_version,
        } => {
            let mut patch = match &file {
                Some(f) => read_json(f)?,
                None => json!({}),
            };
            let obj = patch
                .as_object_mut()
                .ok_or_else(|| anyhow!("the patch must be a JSON object"))?;
            if enable || disable {
                obj.insert("enabled".into(), json!(enable));
            }
            if let Some(v) = expected_version {
                obj.insert("expected_version".into(), json!(v));
            }
            show(
                &c.call(
                    Method::PATCH,
                    &format!("/v1/trust-policies/{}", enc(&id)),
                    Some(&patch),
                )
                .await?,
            );
        }
        TrustPolicyCmd::Delete { id } => {
            c.call(
                Method::DELETE,
                &format!("/v1/trust-policies/{}", enc(&id)),
                None,
            )
            .await?;
            if json_out {
                output::json(&json!({"deleted": id}));
            } else {
                println!("deleted trust policy {id}");
            }
        }
        TrustPolicyCmd::Explain { id, token } => {
            let v = c
                .post(
                    &format!("/v1/trust-policies/{}/explain", enc(&id)),
                    &json!({"token": read_input(&token)?}),
                )
                .await?;
            if json_out {
                output::json(&v);
            } else {
                print_explain(&v);
            }
            return Ok(if v["accepted"] == json!(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_explain(v: &Value) {
    let accepted = v["accepted"] == json!(true);
    println!(
        "{} for identity {}",
        if accepted { "ACCEPTED" } else { "REFUSED" },
        output::field(v, "identity")
    );
    if let Some(r) = v["reason"].as_str() {
        println!("reason: {r}");
    }
    println!();
    let rows: Vec<Vec<String>> = v["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    vec![
                        output::field(c, "check"),
                        if c["ok"] == json!(true) { "ok" } else { "FAIL" }.into(),
                        output::field(c, "detail"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    output::table(&["check", "result", "detail"], &rows);
    for r in v["rules"].as_array().into_iter().flatten() {
        println!();
        println!(
            "rule {}{}: {}",
            output::field(r, "rule"),
            r["name"]
                .as_str()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            if r["matched"] == json!(true) {
                "matched"
            } else {
                "not matched"
            }
        );
        let rows: Vec<Vec<String>> = r["conditions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        vec![
                            if c["matched"] == json!(true) {
                                "ok"
                            } else {
                                "FAIL"
                            }
                            .into(),
                            output::field(c, "why"),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        output::table(&["result", "why"], &rows);
    }
}

pub async fn token_exchange(
    server: Option<String>,
    creds_path: &Path,
    a: TokenExchangeArgs,
    json_out: bool,
) -> Result<ExitCode> {
    // No client credentials are needed: the subject token is the proof. The credentials file,
    // when present, only supplies the endpoint and the CA bundle.
    let creds = if creds_path.exists() {
        Some(read_credentials(creds_path)?)
    } else {
        None
    };
    let endpoint = match (&server, &creds) {
        (Some(s), _) => format!("{}/oauth2/token", s.trim_end_matches('/')),
        (None, Some(f)) => f.token_endpoint.clone(),
        (None, None) => bail!("--server is required when there is no credentials file"),
    };
    let bundle = crate::client::ca_bundle(creds.as_ref().and_then(|f| f.ca_bundle.as_deref()))?;
    let http = crate::client::http_client(bundle.as_deref(), None)?;
    let subject = read_input(&a.subject_token)?;
    let actor = a.actor_token.as_deref().map(read_input).transpose()?;
    let st = token_type(&a.subject_token_type);
    let at = token_type(&a.actor_token_type);
    let mut form: Vec<(&str, &str)> = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", &subject),
        ("subject_token_type", &st),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
    ];
    if let Some(t) = &actor {
        form.push(("actor_token", t));
        form.push(("actor_token_type", &at));
    }
    if let Some(s) = &a.scope {
        form.push(("scope", s));
    }
    for aud in &a.audiences {
        form.push(("audience", aud));
    }
    let resp = http
        .post(&endpoint)
        .form(&form)
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "token exchange refused ({status}): {} {}",
            body["error"].as_str().unwrap_or("error"),
            body["error_description"].as_str().unwrap_or("")
        );
    }
    if json_out {
        output::json(&body);
    } else {
        println!("{}", body["access_token"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

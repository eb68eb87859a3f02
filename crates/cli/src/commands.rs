//! Command-line surface: `serve` and the client subcommands, each a small function over the API.
//! Every setting of `serve` has a flag, an environment variable (`STEWARD_*`) and a config-file key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::client::{Client, read_credentials, write_private};
use crate::output;

#[derive(Parser)]
#[command(
    name = "steward",
    version,
    about = "Machine identities: registry, credentials, short-lived tokens and audit."
)]
pub struct Cli {
    /// Server base URL (default: the issuer in the credentials file, else https://127.0.0.1:7443).
    #[arg(long, global = true, env = "STEWARD_SERVER")]
    server: Option<String>,
    /// Credentials file to authenticate with.
    #[arg(
        long,
        global = true,
        env = "STEWARD_CREDENTIALS",
        default_value = "steward-data/admin-credentials.json"
    )]
    credentials: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// People and teams who own identities.
    #[command(subcommand)]
    Owner(OwnerCmd),
    /// Machine identities.
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// Credentials (API keys, public keys) of an identity.
    #[command(subcommand)]
    Credential(CredentialCmd),
    /// Print an access token for a workload (client_credentials).
    Token(TokenArgs),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Authorization policies (Cedar) and their built-in guard rails.
    #[command(subcommand)]
    Policy(crate::cmd_policy::PolicyCmd),
    /// Ask for an authorization decision (exit 0 on allow, 2 on deny).
    Authorize(crate::cmd_policy::AuthorizeArgs),
    /// Workload certificates (X.509 SVIDs): the key is generated here and never sent.
    #[command(subcommand)]
    Cert(crate::cmd_cert::CertCmd),
    /// Keep a workload's certificate and access token fresh on disk.
    Agent(crate::cmd_agent::AgentArgs),
    /// Find leaked secrets in files and git history (exit 1 when any is found).
    Scan(crate::cmd_scan::ScanArgs),
    /// Trust policies: which external tokens (CI/CD, Kubernetes, OIDC) exchange for which identity.
    #[command(subcommand)]
    TrustPolicy(crate::cmd_trust::TrustPolicyCmd),
    /// Exchange a token (external JWT or Steward token, optionally with an actor) for a Steward token (RFC 8693).
    TokenExchange(crate::cmd_trust::TokenExchangeArgs),
    /// Governance findings (OWASP NHI Top 10 / NIST CSF): list, run, show, accept.
    Findings(crate::cmd_findings::FindingsArgs),
    /// The governance posture report (Markdown, self-contained HTML, or JSON).
    Report(crate::cmd_findings::ReportArgs),
    /// Access reviews: campaigns, decisions, evidence export.
    #[command(subcommand)]
    Review(crate::cmd_lifecycle::ReviewCmd),
    /// Just-in-time elevation: extra scopes for a bounded time, approved by someone else.
    #[command(subcommand)]
    Jit(crate::cmd_lifecycle::JitCmd),
    /// Time-bound waivers of a guard rail or finding type, approved by someone else.
    #[command(subcommand)]
    Exception(crate::cmd_lifecycle::ExceptionCmd),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file; flags and environment variables override its keys.
    #[arg(long, env = "STEWARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, master key, admin credentials file).
    #[arg(long, env = "STEWARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "STEWARD_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// PostgreSQL URL (postgres://…); default is embedded SQLite in the data directory.
    #[arg(long, env = "STEWARD_DATABASE_URL")]
    database_url: Option<String>,
    /// Public base URL used as the token issuer.
    #[arg(long, env = "STEWARD_ISSUER")]
    issuer: Option<String>,
    /// SPIFFE trust domain.
    #[arg(long, env = "STEWARD_TRUST_DOMAIN")]
    trust_domain: Option<String>,
    /// Allowed environments, comma-separated.
    #[arg(long, env = "STEWARD_ENVIRONMENTS", value_delimiter = ',')]
    environments: Option<Vec<String>>,
    /// Token-signing algorithm for new keys (EdDSA or ES256).
    #[arg(long, env = "STEWARD_SIGNING_ALG")]
    signing_alg: Option<String>,
    /// Signing-key rotation period in days.
    #[arg(long, env = "STEWARD_KEY_ROTATION_DAYS")]
    key_rotation_days: Option<u32>,
    /// Default access-token lifetime in seconds.
    #[arg(long, env = "STEWARD_TOKEN_LIFETIME_SECS")]
    token_lifetime_secs: Option<u32>,
    /// Maximum API-key age in days.
    #[arg(long, env = "STEWARD_MAX_KEY_AGE_DAYS")]
    max_key_age_days: Option<u32>,
    /// Seconds between signed audit checkpoints.
    #[arg(long, env = "STEWARD_CHECKPOINT_INTERVAL_SECS")]
    checkpoint_interval_secs: Option<u64>,
    /// Longest wait in microseconds for more writes to join a busy node's batch (0: never).
    #[arg(long, env = "STEWARD_COMMIT_GATHER_US")]
    commit_gather_us: Option<u64>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "STEWARD_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Failed authentications per client or address before lock-out.
    #[arg(long, env = "STEWARD_AUTH_FAILURE_LIMIT")]
    auth_failure_limit: Option<u32>,
    /// Require DPoP server nonces.
    #[arg(long, env = "STEWARD_DPOP_REQUIRE_NONCE")]
    dpop_require_nonce: Option<bool>,
    /// Optional cache TTL in seconds (0: invalidation only; PostgreSQL nodes notify each other).
    #[arg(long, env = "STEWARD_CACHE_TTL_SECS")]
    cache_ttl_secs: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "STEWARD_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Serve plain HTTP instead of HTTPS (refused unless the listen address is loopback).
    #[arg(long, env = "STEWARD_INSECURE_HTTP")]
    insecure_http: bool,
    /// Webhook told (POST JSON, redacted) when a leaked key is revoked.
    #[arg(long, env = "STEWARD_LEAK_WEBHOOK_URL")]
    leak_webhook_url: Option<String>,
    /// Partner key allowed to sign leak reports, as KEY_ID=PEM_FILE (repeatable; comma-separated in the env var).
    #[arg(long, env = "STEWARD_LEAK_REPORT_KEYS", value_delimiter = ',')]
    leak_report_key: Vec<String>,
    /// Extra DNS names or IP addresses for the server certificate, comma-separated
    /// (localhost, 127.0.0.1 and ::1 are always included).
    #[arg(long, env = "STEWARD_TLS_SAN", value_delimiter = ',')]
    tls_san: Option<Vec<String>>,
    /// Most actors in one token-exchange delegation chain (default 3).
    #[arg(long, env = "STEWARD_MAX_DELEGATION_DEPTH")]
    max_delegation_depth: Option<u32>,
    /// Clock skew tolerated on external tokens' exp/nbf/iat, in seconds (default 60).
    #[arg(long, env = "STEWARD_FEDERATION_CLOCK_SKEW_SECS")]
    federation_clock_skew_secs: Option<u32>,
    /// How long fetched JWK Sets of external issuers are used, in seconds (default 300).
    #[arg(long, env = "STEWARD_JWKS_CACHE_TTL_SECS")]
    jwks_cache_ttl_secs: Option<u64>,
    /// Shortest interval between two fetches of one JWKS URL, in seconds (default 30).
    #[arg(long, env = "STEWARD_JWKS_REFRESH_INTERVAL_SECS")]
    jwks_refresh_interval_secs: Option<u64>,
    /// Longest just-in-time elevation window, in seconds.
    #[arg(long, env = "STEWARD_JIT_MAX_SECS")]
    jit_max_secs: Option<u32>,
}

#[derive(Subcommand)]
enum OwnerCmd {
    /// Add a person or team.
    Add {
        name: String,
        #[arg(long, default_value = "team")]
        kind: String,
        #[arg(long)]
        contact: String,
    },
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        search: Option<String>,
    },
    Show {
        id: String,
    },
    /// Record that an owner has left; their identities become orphaned unless reassigned.
    Depart {
        id: String,
        #[arg(long)]
        reassign_to: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args)]
struct IdentityFields {
    #[arg(long)]
    purpose: Option<String>,
    /// Expiry as RFC 3339, or a duration from now such as 90d or 12h.
    #[arg(long)]
    expires: Option<String>,
    /// Allowed scope (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Default scope granted when a token request names none (repeatable).
    #[arg(long = "default-scope")]
    default_scopes: Vec<String>,
    /// Allowed audience (repeatable).
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    #[arg(long)]
    vendor: Option<String>,
    #[arg(long)]
    token_lifetime_secs: Option<u32>,
    #[arg(long)]
    require_dpop: Option<bool>,
    /// DNS name the identity may put in its certificates (repeatable; `*.suffix` allowed).
    #[arg(long = "allow-dns")]
    allowed_dns_names: Vec<String>,
    /// Identity id that may act for this identity in token exchange (repeatable; RFC 8693 delegation).
    #[arg(long = "may-act")]
    may_act: Vec<String>,
    /// Address range (CIDR) the identity authenticates from (repeatable); use from elsewhere is a finding.
    #[arg(long = "allow-source")]
    allowed_source_cidrs: Vec<String>,
    /// When the identity is next due for review (RFC 3339 or a duration such as 90d).
    #[arg(long)]
    review_due: Option<String>,
}

#[derive(Subcommand)]
enum IdentityCmd {
    Create {
        name: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        owner: String,
        #[arg(long = "env")]
        environment: String,
        #[command(flatten)]
        fields: IdentityFields,
    },
    List {
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Follow cursors to list every match.
        #[arg(long)]
        all: bool,
    },
    Show {
        id: String,
    },
    Update {
        id: String,
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        fields: IdentityFields,
    },
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Suspend {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Resume {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Retire (offboard) an identity, or with --vendor every live identity of one vendor.
    Retire {
        #[arg(required_unless_present = "vendor", conflicts_with = "vendor")]
        id: Option<String>,
        /// Retire every live identity of this vendor in one call (third-party incident).
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// What retiring the identity revoked (the offboarding evidence).
    Offboarding {
        id: String,
    },
    /// Revoke every outstanding token of the identity.
    RevokeTokens {
        id: String,
    },
    /// Show granted vs used scopes and audiences, and (with --apply) reduce to what is used.
    RightSize(crate::cmd_findings::RightSizeArgs),
    /// The identity's risk score and its contributing findings.
    Risk {
        id: String,
    },
}

#[derive(Subcommand)]
enum CredentialCmd {
    Create {
        identity: String,
        #[arg(long = "type", default_value = "api_key")]
        kind: String,
        /// Public JWK file for --type public_key.
        #[arg(long)]
        jwk: Option<PathBuf>,
        #[arg(long)]
        expires: Option<String>,
        /// Write a credentials file (0600) instead of printing the secret.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    List {
        identity: String,
    },
    Revoke {
        identity: String,
        credential: String,
    },
    Rotate {
        identity: String,
        credential: String,
        /// Seconds the old credential keeps working.
        #[arg(long)]
        grace_secs: Option<u32>,
        #[arg(long)]
        jwk: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// Client id (identity id) when the secret comes from STEWARD_CLIENT_SECRET.
    #[arg(long, env = "STEWARD_CLIENT_ID")]
    client_id: Option<String>,
    #[arg(long)]
    scope: Option<String>,
    #[arg(long = "audience")]
    audiences: Vec<String>,
}

#[derive(Subcommand)]
enum AuditCmd {
    List {
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        all: bool,
    },
    /// Recompute the log offline from the data directory or database.
    Verify {
        #[arg(long, env = "STEWARD_DATA_DIR", default_value = "steward-data")]
        data_dir: PathBuf,
        #[arg(long, env = "STEWARD_DATABASE_URL")]
        database_url: Option<String>,
        /// An exported checkpoint (JSON from `steward audit checkpoint`, or a signed note).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Verifier key for a raw signed note.
        #[arg(long)]
        verifier_key: Option<String>,
    },
    /// Write every record as JSON Lines.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (save it to verify against later).
    Checkpoint,
    /// Inclusion proof of one record.
    Proof { seq: u64 },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let json_out = cli.json;
    let mk = || Client::new(cli.server.clone(), Some(&cli.credentials));
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Owner(c) => owner(mk()?, c, json_out).await,
        Command::Identity(c) => identity(mk()?, c, json_out).await,
        Command::Credential(c) => credential(mk()?, c, json_out).await,
        Command::Token(a) => token(cli.server.clone(), &cli.credentials, a, json_out).await,
        Command::Audit(c) => audit(mk, c, json_out).await,
        Command::Policy(c) => crate::cmd_policy::policy(mk()?, c, json_out).await,
        Command::Authorize(a) => crate::cmd_policy::authorize(mk()?, a, json_out).await,
        Command::Cert(c) => {
            crate::cmd_cert::cert(cli.server.clone(), &cli.credentials, c, json_out).await
        }
        Command::Agent(a) => crate::cmd_agent::agent(cli.server.clone(), &cli.credentials, a).await,
        Command::Scan(a) => crate::cmd_scan::scan(a, &cli.credentials, json_out).await,
        Command::TrustPolicy(c) => crate::cmd_trust::trust_policy(mk()?, c, json_out).await,
        Command::TokenExchange(a) => {
            crate::cmd_trust::token_exchange(cli.server.clone(), &cli.credentials, a, json_out)
                .await
        }
        Command::Findings(a) => crate::cmd_findings::findings(mk()?, a, json_out).await,
        Command::Report(a) => crate::cmd_findings::report(mk()?, a, json_out).await,
        Command::Review(c) => crate::cmd_lifecycle::review(mk()?, c, json_out).await,
        Command::Jit(c) => crate::cmd_lifecycle::jit(mk()?, c, json_out).await,
        Command::Exception(c) => crate::cmd_lifecycle::exception(mk()?, c, json_out).await,
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn serve(a: ServeArgs) -> Result<ExitCode> {
    init_logging(&a.log_format);
    let mut cfg = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            toml::from_str::<steward_server::ServerConfig>(&text)
                .with_context(|| format!("invalid config file {}", p.display()))?
        }
        None => steward_server::ServerConfig::default(),
    };
    macro_rules! set {
        ($($f:ident => $($path:ident).+),* $(,)?) => { $( if let Some(v) = a.$f.clone() { cfg.$($path).+ = v; } )* };
    }
    set!(data_dir => data_dir, listen => listen, trust_domain => trust_domain, environments => registry.environments,
        signing_alg => signing_alg, key_rotation_days => key_rotation_days, token_lifetime_secs => registry.default_token_lifetime_secs,
        max_key_age_days => registry.max_key_age_days, checkpoint_interval_secs => checkpoint_interval_secs,
        commit_gather_us => commit_gather_us,
        max_body_bytes => max_body_bytes, auth_failure_limit => auth_failure_limit, dpop_require_nonce => dpop_require_nonce,
        cache_ttl_secs => cache_ttl_secs, tls_san => pki.tls_san);
    set!(max_delegation_depth => federation.max_delegation_depth,
        federation_clock_skew_secs => federation.clock_skew_secs,
        jwks_cache_ttl_secs => federation.jwks_cache_ttl_secs,
        jwks_refresh_interval_secs => federation.jwks_refresh_interval_secs);
    if let Some(v) = a.jit_max_secs {
        cfg.lifecycle.jit_max_secs = v;
    }
    if a.insecure_http {
        cfg.insecure_http = true;
    }
    crate::cmd_scan::apply_leak_settings(&mut cfg, a.leak_webhook_url.clone(), &a.leak_report_key)?;
    if a.database_url.is_some() {
        cfg.database_url = a.database_url.clone();
    }
    if a.issuer.is_some() {
        cfg.issuer = a.issuer.clone();
    }
    let master = std::env::var("STEWARD_MASTER_KEY").ok();
    let server = steward_server::start(
        cfg,
        steward_server::StartOptions {
            master_key: master,
            clock: None,
        },
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    if let Some(p) = &server.admin_credentials {
        eprintln!(
            "First start: admin credentials written to {} (mode 0600). They are shown nowhere else.",
            p.display()
        );
    }
    eprintln!("Steward is serving on {}", server.base_url());
    server.run_until_signal().await;
    Ok(ExitCode::SUCCESS)
}

/// Parses "90d", "12h", "30m" or an RFC 3339 timestamp.
pub(crate) fn parse_expiry(s: &str) -> Result<String> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.format(&time::format_description::well_known::Rfc3339)?);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow!("expiry {s:?}: use RFC 3339 or a duration like 90d, 12h, 30m"))?;
    let d = match unit {
        "d" => time::Duration::days(n),
        "h" => time::Duration::hours(n),
        "m" => time::Duration::minutes(n),
        _ => bail!("expiry {s:?}: use RFC 3339 or a duration like 90d, 12h, 30m"),
    };
    Ok((OffsetDateTime::now_utc() + d).format(&time::format_description::well_known::Rfc3339)?)
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub(crate) async fn list_all(
    c: &mut Client,
    path: &str,
    base: &[(&str, Option<String>)],
    all: bool,
) -> Result<Vec<Value>> {
    let mut items = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let mut q = base.to_vec();
        q.push(("cursor", cursor.clone()));
        let v = c.get(&format!("{path}{}", query(&q))).await?;
        if let Some(a) = v.get("items").and_then(Value::as_array) {
            items.extend(a.iter().cloned());
        }
        cursor = v
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if !all || cursor.is_none() {
            return Ok(items);
        }
    }
}

async fn owner(mut c: Client, cmd: OwnerCmd, json_out: bool) -> Result<ExitCode> {
    let show = |v: &Value| {
        if json_out {
            output::json(v)
        } else {
            output::record(v)
        }
    };
    match cmd {
        OwnerCmd::Add {
            name,
            kind,
            contact,
        } => show(
            &c.post(
                "/v1/owners",
                &json!({"name": name, "kind": kind, "contact": contact}),
            )
            .await?,
        ),
        OwnerCmd::Show { id } => show(&c.get(&format!("/v1/owners/{}", enc(&id))).await?),
        OwnerCmd::Depart {
            id,
            reassign_to,
            reason,
        } => show(
            &c.post(
                &format!("/v1/owners/{}/depart", enc(&id)),
                &json!({"reassign_to": reassign_to, "reason": reason}),
            )
            .await?,
        ),
        OwnerCmd::List { status, search } => {
            let items = list_all(
                &mut c,
                "/v1/owners",
                &[("status", status), ("search", search)],
                true,
            )
            .await?;
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|o| {
                        ["id", "name", "kind", "status", "contact"]
                            .iter()
                            .map(|k| output::field(o, k))
                            .collect()
                    })
                    .collect();
                output::table(&["id", "name", "kind", "status", "contact"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn identity_body(f: IdentityFields, create: bool) -> Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    if let Some(p) = f.purpose {
        m.insert("purpose".into(), json!(p));
    }
    if let Some(e) = f.expires {
        m.insert("expires_at".into(), json!(parse_expiry(&e)?));
    }
    if create || !f.scopes.is_empty() {
        m.insert("scopes".into(), json!(f.scopes));
    }
    if !f.default_scopes.is_empty() {
        m.insert("default_scopes".into(), json!(f.default_scopes));
    }
    if create || !f.audiences.is_empty() {
        m.insert("audiences".into(), json!(f.audiences));
    }
    if !f.labels.is_empty() {
        let mut l = serde_json::Map::new();
        for kv in f.labels {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("label {kv:?} must be KEY=VALUE"))?;
            l.insert(k.into(), json!(v));
        }
        m.insert("labels".into(), Value::Object(l));
    }
    if let Some(v) = f.vendor {
        m.insert("vendor".into(), json!(v));
    }
    if let Some(t) = f.token_lifetime_secs {
        m.insert("token_lifetime_secs".into(), json!(t));
    }
    if let Some(d) = f.require_dpop {
        m.insert("require_dpop".into(), json!(d));
    }
    if !f.allowed_dns_names.is_empty() {
        m.insert("allowed_dns_names".into(), json!(f.allowed_dns_names));
    }
    if !f.may_act.is_empty() {
        m.insert("may_act".into(), json!(f.may_act));
    }
    if !f.allowed_source_cidrs.is_empty() {
        m.insert("allowed_source_cidrs".into(), json!(f.allowed_source_cidrs));
    }
    if let Some(r) = f.review_due {
        m.insert("review_due_at".into(), json!(parse_expiry(&r)?));
    }
    Ok(m)
}

async fn identity(mut c: Client, cmd: IdentityCmd, json_out: bool) -> Result<ExitCode> {
    let show = |v: &Value| {
        if json_out {
            output::json(v)
        } else {
            output::record(v)
        }
    };
    match cmd {
        IdentityCmd::Create {
            name,
            kind,
            owner,
            environment,
            fields,
        } => {
            let mut m = identity_body(fields, true)?;
            if !m.contains_key("expires_at") {
                bail!("--expires is required (RFC 3339 or a duration such as 90d)");
            }
            m.insert("name".into(), json!(name));
            m.insert("kind".into(), json!(kind));
            m.insert("owner".into(), json!(owner));
            m.insert("environment".into(), json!(environment));
            if !m.contains_key("purpose") {
                bail!("--purpose is required");
            }
            show(&c.post("/v1/identities", &Value::Object(m)).await?);
        }
        IdentityCmd::Update { id, owner, fields } => {
            let mut m = identity_body(fields, false)?;
            if let Some(o) = owner {
                m.insert("owner".into(), json!(o));
            }
            show(
                &c.call(
                    Method::PATCH,
                    &format!("/v1/identities/{}", enc(&id)),
                    Some(&Value::Object(m)),
                )
                .await?,
            );
        }
        IdentityCmd::Show { id } => show(&c.get(&format!("/v1/identities/{}", enc(&id))).await?),
        IdentityCmd::List {
            environment,
            kind,
            owner,
            status,
            search,
            limit,
            all,
        } => {
            let base = [
                ("environment", environment),
                ("kind", kind),
                ("owner", owner),
                ("status", status),
                ("search", search),
                ("limit", Some(limit.to_string())),
            ];
            let items = list_all(&mut c, "/v1/identities", &base, all).await?;
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let cols = [
                    "id",
                    "name",
                    "kind",
                    "environment",
                    "status",
                    "owner",
                    "expires_at",
                ];
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
                    .collect();
                output::table(&cols, &rows);
            }
        }
        IdentityCmd::Approve { id, reason } => show(&action(&mut c, &id, "approve", reason).await?),
        IdentityCmd::Suspend { id, reason } => show(&action(&mut c, &id, "suspend", reason).await?),
        IdentityCmd::Resume { id, reason } => show(&action(&mut c, &id, "resume", reason).await?),
        IdentityCmd::Retire {
            vendor: Some(vendor),
            reason,
            ..
        } => crate::cmd_lifecycle::retire_vendor(&mut c, &vendor, reason, json_out).await?,
        IdentityCmd::Retire { id, reason, .. } => {
            let id = id.ok_or_else(|| anyhow!("give an identity id or --vendor"))?;
            show(&action(&mut c, &id, "retire", reason).await?)
        }
        IdentityCmd::Offboarding { id } => show(
            &c.get(&format!("/v1/identities/{}/offboarding", enc(&id)))
                .await?,
        ),
        IdentityCmd::RevokeTokens { id } => {
            show(&action(&mut c, &id, "revoke-tokens", None).await?)
        }
        IdentityCmd::RightSize(a) => {
            return crate::cmd_findings::right_size(&mut c, a, json_out).await;
        }
        IdentityCmd::Risk { id } => return crate::cmd_findings::risk(&mut c, &id, json_out).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn action(c: &mut Client, id: &str, act: &str, reason: Option<String>) -> Result<Value> {
    c.post(
        &format!("/v1/identities/{}/{act}", enc(id)),
        &json!({"reason": reason}),
    )
    .await
}

/// Prints a newly created secret, or writes it to a credentials file.
fn emit_secret(c: &Client, created: &Value, out: Option<PathBuf>, json_out: bool) -> Result<()> {
    if let (Some(path), Some(secret)) = (out, created.get("client_secret").and_then(Value::as_str))
    {
        let file = steward_proto::CredentialsFile {
            client_id: output::field(created, "client_id"),
            client_secret: secret.to_owned(),
            issuer: c.server.clone(),
            token_endpoint: format!("{}/oauth2/token", c.server),
            ca_bundle: c.ca_bundle.clone(),
        };
        write_private(&path, &serde_json::to_vec_pretty(&file)?)?;
        let mut redacted = created.clone();
        redacted["client_secret"] = json!(format!("written to {}", path.display()));
        if json_out {
            output::json(&redacted)
        } else {
            output::record(&redacted)
        }
        return Ok(());
    }
    if json_out {
        output::json(created)
    } else {
        output::record(created);
        if created.get("client_secret").is_some() {
            eprintln!("Store the client_secret now: it is shown only once.");
        }
    }
    Ok(())
}

async fn credential(mut c: Client, cmd: CredentialCmd, json_out: bool) -> Result<ExitCode> {
    match cmd {
        CredentialCmd::Create {
            identity,
            kind,
            jwk,
            expires,
            out,
        } => {
            let jwk: Option<Value> = jwk
                .map(|p| -> Result<Value> {
                    Ok(serde_json::from_str(&std::fs::read_to_string(&p)?)?)
                })
                .transpose()?;
            let expires_at = expires.map(|e| parse_expiry(&e)).transpose()?;
            let v = c
                .post(
                    &format!("/v1/identities/{}/credentials", enc(&identity)),
                    &json!({"type": kind, "jwk": jwk, "expires_at": expires_at}),
                )
                .await?;
            emit_secret(&c, &v, out, json_out)?;
        }
        CredentialCmd::List { identity } => {
            let v = c
                .get(&format!("/v1/identities/{}/credentials", enc(&identity)))
                .await?;
            let items = v.get("items").cloned().unwrap_or(Value::Array(vec![]));
            if json_out {
                output::json(&items);
            } else {
                let cols = [
                    "id",
                    "type",
                    "state",
                    "fingerprint",
                    "created_at",
                    "expires_at",
                    "last_used_at",
                ];
                let rows: Vec<Vec<String>> = items
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
                            .collect()
                    })
                    .unwrap_or_default();
                output::table(&cols, &rows);
            }
        }
        CredentialCmd::Revoke {
            identity,
            credential,
        } => {
            let v = c
                .call(
                    Method::DELETE,
                    &format!(
                        "/v1/identities/{}/credentials/{}",
                        enc(&identity),
                        enc(&credential)
                    ),
                    None,
                )
                .await?;
            if json_out {
                output::json(&v)
            } else {
                output::record(&v)
            }
        }
        CredentialCmd::Rotate {
            identity,
            credential,
            grace_secs,
            jwk,
            out,
        } => {
            let jwk: Option<Value> = jwk
                .map(|p| -> Result<Value> {
                    Ok(serde_json::from_str(&std::fs::read_to_string(&p)?)?)
                })
                .transpose()?;
            let v = c
                .post(
                    &format!(
                        "/v1/identities/{}/credentials/{}/rotate",
                        enc(&identity),
                        enc(&credential)
                    ),
                    &json!({"grace_secs": grace_secs, "jwk": jwk}),
                )
                .await?;
            let current = v.get("current").cloned().unwrap_or(Value::Null);
            emit_secret(&c, &current, out, json_out)?;
            if !json_out {
                eprintln!(
                    "Previous credential keeps working until {}.",
                    v.get("previous")
                        .map(|p| output::field(p, "revoked_at"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(
    server: Option<String>,
    creds_path: &std::path::Path,
    a: TokenArgs,
    json_out: bool,
) -> Result<ExitCode> {
    let (client_id, secret, endpoint, bundle) = match std::env::var("STEWARD_CLIENT_SECRET") {
        Ok(secret) => {
            let id = a.client_id.clone().ok_or_else(|| {
                anyhow!("--client-id (or STEWARD_CLIENT_ID) is required with STEWARD_CLIENT_SECRET")
            })?;
            let base = server
                .clone()
                .unwrap_or_else(|| "https://127.0.0.1:7443".into());
            (
                id,
                secret,
                format!("{}/oauth2/token", base.trim_end_matches('/')),
                crate::client::ca_bundle(None)?,
            )
        }
        Err(_) => {
            let f = read_credentials(creds_path)?;
            let endpoint = match &server {
                Some(s) => format!("{}/oauth2/token", s.trim_end_matches('/')),
                None => f.token_endpoint.clone(),
            };
            let bundle = crate::client::ca_bundle(f.ca_bundle.as_deref())?;
            (f.client_id, f.client_secret, endpoint, bundle)
        }
    };
    let http = crate::client::http_client(bundle.as_deref(), None)?;
    let t = crate::client::fetch_token(
        &http,
        &endpoint,
        &client_id,
        &secret,
        a.scope.as_deref(),
        &a.audiences,
    )
    .await?;
    if json_out {
        output::json(&serde_json::to_value(&t)?);
    } else {
        println!("{}", t.access_token);
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(mk: impl Fn() -> Result<Client>, cmd: AuditCmd, json_out: bool) -> Result<ExitCode> {
    match cmd {
        AuditCmd::List {
            identity,
            action,
            outcome,
            since,
            limit,
            all,
        } => {
            let mut c = mk()?;
            let base = [
                ("identity", identity),
                ("action", action),
                ("outcome", outcome),
                ("since", since),
                ("limit", Some(limit.to_string())),
            ];
            let items = list_all(&mut c, "/v1/audit", &base, all).await?;
            if json_out {
                output::json(&Value::Array(items));
            } else {
                let cols = [
                    "seq", "time", "actor", "action", "outcome", "target", "reason",
                ];
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|o| cols.iter().map(|k| output::field(o, k)).collect())
                    .collect();
                output::table(&cols, &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export { out } => {
            let mut c = mk()?;
            let items =
                list_all(&mut c, "/v1/audit", &[("limit", Some("1000".into()))], true).await?;
            let mut text = String::new();
            for i in &items {
                text.push_str(&serde_json::to_string(i)?);
                text.push('\n');
            }
            match out {
                Some(p) => {
                    std::fs::write(&p, text)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!("exported {} records to {}", items.len(), p.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Checkpoint => {
            let mut c = mk()?;
            output::json(&c.get("/v1/audit/checkpoint").await?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Proof { seq } => {
            let mut c = mk()?;
            output::json(&c.get(&format!("/v1/audit/proof/{seq}")).await?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify {
            data_dir,
            database_url,
            checkpoint,
            verifier_key,
        } => {
            steward_server::install_crypto_provider();
            let trusted = match checkpoint {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    Some(
                        steward_server::audit::trusted_checkpoint(&text, verifier_key.as_deref())
                            .map_err(|e| anyhow!(e))?,
                    )
                }
                None => None,
            };
            let url = match database_url {
                Some(u) => u,
                None => {
                    let db = data_dir.join("steward.db");
                    if !db.exists() {
                        bail!("no Steward database at {}", db.display());
                    }
                    format!("sqlite://{}", db.display())
                }
            };
            let store = steward_store::open(&url)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let report = steward_server::audit::verify_store(store.as_ref(), trusted)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            if json_out {
                output::json(&serde_json::to_value(&report)?);
            } else if report.ok {
                println!(
                    "audit log OK: {} records verified{}; root {}",
                    report.records,
                    report
                        .checkpoint_size
                        .map(|s| format!(", consistent with the checkpoint of {s}"))
                        .unwrap_or_default(),
                    report.root_hash
                );
            } else {
                println!(
                    "audit log FAILED at seq {}: {}",
                    report
                        .first_bad_seq
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into()),
                    report.problem.clone().unwrap_or_default()
                );
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

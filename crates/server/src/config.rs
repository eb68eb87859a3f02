//! Server configuration: every setting has a default here, a CLI flag, an env var and a config-file key.
//! Plain data; validation of combinations happens in [`ServerConfig::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steward_core::RegistryPolicy;

/// Everything `steward serve` needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Data directory: embedded SQLite database, master key, admin credentials file.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite database.
    pub database_url: Option<String>,
    /// Public base URL (the `iss` of tokens). Defaults to `http://<listen>`.
    pub issuer: Option<String>,
    /// SPIFFE trust domain (without `spiffe://`).
    pub trust_domain: String,
    /// Token-signing algorithm for new keys: `EdDSA` (default) or `ES256`.
    pub signing_alg: String,
    /// Signing-key rotation period, in days.
    pub key_rotation_days: u32,
    /// Seconds between signed audit checkpoints.
    pub checkpoint_interval_secs: u64,
    /// Longest wait, in microseconds, for more writes to join a batch before it is committed
    /// (SQLite's group commit, PostgreSQL's one-time claims); 0 never waits. Only a busy node
    /// waits: fewer database round trips per token for at most this much latency.
    pub commit_gather_us: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Per-request timeout, in seconds.
    pub request_timeout_secs: u64,
    /// Requests processed at once; more are refused with 503 and `Retry-After` (load shedding).
    pub max_in_flight_requests: usize,
    /// Failed authentications tolerated per client id or source address within the window.
    pub auth_failure_limit: u32,
    /// Failure-counting window and lock-out duration, in seconds.
    pub auth_lockout_secs: u64,
    /// When set, DPoP proofs must carry a server nonce (RFC 9449 §8).
    pub dpop_require_nonce: bool,
    /// Seconds a cached identity or credential may be served without re-reading the database.
    /// 0 (the default) relies on invalidation alone: local writes, and on PostgreSQL the other
    /// nodes' changes arriving through `LISTEN/NOTIFY`.
    pub cache_ttl_secs: u64,
    /// Contact recorded for the bootstrap owner.
    pub admin_contact: String,
    /// Limits for identities, credentials and tokens.
    pub registry: RegistryPolicy,
    /// Authorization: the resource types and actions policies talk about, and each action's scopes.
    pub authz: steward_policy::SchemaConfig,
    /// Serve plain HTTP instead of HTTPS (only allowed on a loopback address).
    pub insecure_http: bool,
    /// The built-in CA, workload certificates and mutual TLS.
    pub pki: crate::pki::PkiConfig,
    /// Webhook (POST JSON) told when a leaked key is revoked; the payload holds no secret.
    pub leak_webhook_url: Option<String>,
    /// ECDSA P-256 public keys that may sign leak reports (`POST /v1/leaks`), by key id.
    pub leak_report_keys: Vec<crate::service::leaks::LeakReportKey>,
    /// Federation (trust policies, JWKS caching) and delegation (token exchange) settings.
    pub federation: crate::service::federation::FederationConfig,
    /// The web console at `/ui` (`[console]`).
    pub console: crate::console::ConsoleConfig,
    /// Open HTTPS connections at once; a connection beyond it is closed right after accept.
    pub max_connections: usize,
    /// Usage recording: networks of each environment, in-memory bound, retention.
    pub usage: crate::usage::UsageConfig,
    /// Governance findings: schedule, rule thresholds, automatic actions.
    pub findings: crate::service::findings::FindingsConfig,
    /// Access reviews, JIT elevation and offboarding limits.
    pub lifecycle: crate::service::lifecycle::LifecycleConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("steward-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            database_url: None,
            issuer: None,
            trust_domain: "steward.local".into(),
            signing_alg: "EdDSA".into(),
            key_rotation_days: 30,
            checkpoint_interval_secs: 300,
            commit_gather_us: steward_store::GATHER_WINDOW.as_micros() as u64,
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
            max_in_flight_requests: 4096,
            auth_failure_limit: 10,
            auth_lockout_secs: 300,
            dpop_require_nonce: false,
            cache_ttl_secs: 0,
            admin_contact: "#steward-operators".into(),
            registry: RegistryPolicy::default(),
            authz: steward_policy::SchemaConfig::default(),
            insecure_http: false,
            pki: crate::pki::PkiConfig::default(),
            leak_webhook_url: None,
            leak_report_keys: Vec::new(),
            federation: Default::default(),
            console: crate::console::ConsoleConfig::default(),
            max_connections: 16_384,
            usage: Default::default(),
            findings: Default::default(),
            lifecycle: Default::default(),
        }
    }
}

impl ServerConfig {
    /// The issuer URL without a trailing slash.
    pub fn issuer(&self) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("{}://{}", self.scheme(), self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// `https`, or `http` when `insecure_http` is set.
    pub fn scheme(&self) -> &'static str {
        if self.insecure_http { "http" } else { "https" }
    }

    /// The database URL actually used: PostgreSQL when configured, else SQLite in the data dir.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("steward.db").display()),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.insecure_http && !self.listen.ip().is_loopback() {
            return Err(format!(
                "insecure_http serves plain HTTP and is only allowed on a loopback address, not {}",
                self.listen
            ));
        }
        self.pki.validate()?;
        self.federation.validate()?;
        self.lifecycle.validate()?;
        crate::service::leaks::validate_config(
            &self.leak_report_keys,
            self.leak_webhook_url.as_deref(),
        )?;
        if self.trust_domain.is_empty()
            || !self
                .trust_domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err("trust_domain must be lowercase letters, digits, '-', '.' or '_'".into());
        }
        if let Some(i) = &self.issuer {
            let u = url::Url::parse(i).map_err(|e| format!("issuer is not a URL: {e}"))?;
            if u.query().is_some() || u.fragment().is_some() {
                return Err("issuer must not have a query or fragment (RFC 8414)".into());
            }
        }
        if self.registry.environments.is_empty() {
            return Err("at least one environment must be configured".into());
        }
        self.usage.validate(&self.registry.environments)?;
        self.findings.validate()?;
        if !matches!(self.signing_alg.as_str(), "EdDSA" | "ES256") {
            return Err("signing_alg must be EdDSA or ES256".into());
        }
        if self.key_rotation_days == 0 || self.registry.max_token_lifetime_secs == 0 {
            return Err("key_rotation_days and max_token_lifetime_secs must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_gathering_defaults_to_the_store_window_and_can_be_turned_off() {
        let default: ServerConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(default.commit_gather_us, 300);
        let off: ServerConfig = serde_json::from_str(r#"{"commit_gather_us": 0}"#).expect("config");
        assert_eq!(off.commit_gather_us, 0);
        assert!(serde_json::from_str::<ServerConfig>(r#"{"commit_gather_us": -1}"#).is_err());
    }
}

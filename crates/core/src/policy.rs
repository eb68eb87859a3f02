//! Registry policy: the operator-configured limits that identities and credentials must respect.
//! Plain data with defaults taken from common practice (see shared/reference/frameworks.md).

use serde::{Deserialize, Serialize};
use time::Duration;

use crate::IdentityKind;

/// Limits applied when identities and credentials are created or changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryPolicy {
    /// Environments an identity may belong to.
    pub environments: Vec<String>,
    /// Maximum lifetime of an identity, per kind, in days (`expires_at - now`).
    pub max_identity_lifetime_days: u32,
    /// Maximum lifetime of an `integration` identity, in days.
    pub max_integration_lifetime_days: u32,
    /// Maximum age of an API key, in days.
    pub max_key_age_days: u32,
    /// Default access-token lifetime, in seconds.
    pub default_token_lifetime_secs: u32,
    /// Upper bound for any access-token lifetime, in seconds.
    pub max_token_lifetime_secs: u32,
    /// Default overlap during which a rotated credential keeps working, in seconds.
    pub rotation_grace_secs: u32,
}

impl Default for RegistryPolicy {
    fn default() -> Self {
        Self {
            environments: vec!["prod".into(), "staging".into(), "dev".into()],
            max_identity_lifetime_days: 365,
            max_integration_lifetime_days: 90,
            max_key_age_days: 90,
            default_token_lifetime_secs: 600,
            max_token_lifetime_secs: 3600,
            rotation_grace_secs: 24 * 3600,
        }
    }
}

impl RegistryPolicy {
    pub fn max_identity_lifetime(&self, kind: IdentityKind) -> Duration {
        let days = match kind {
            IdentityKind::Integration => self.max_integration_lifetime_days,
            _ => self.max_identity_lifetime_days,
        };
        Duration::days(i64::from(days))
    }

    pub fn max_key_age(&self) -> Duration {
        Duration::days(i64::from(self.max_key_age_days))
    }

    pub fn has_environment(&self, env: &str) -> bool {
        self.environments.iter().any(|e| e == env)
    }
}

//! Observed use of identities and credentials: per scope and audience, per day and all-time, and
//! the sources (addresses, user agents, environments) each credential was used from.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Most distinct values kept per credential and kind; further values are counted in the
/// overflow entry ([`OVERFLOW_VALUE`]).
pub const MAX_SOURCES_PER_KIND: u32 = 16;
/// The value of the overflow entry: uses from values beyond the first [`MAX_SOURCES_PER_KIND`].
pub const OVERFLOW_VALUE: &str = "";
/// Longest user agent kept (longer ones are cut).
pub const MAX_USER_AGENT_LEN: usize = 200;

/// The day number (days since the Unix epoch, UTC) of an instant: usage is aggregated per day.
pub fn day_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

/// The first instant of a day number.
pub fn day_start(day: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// All-time use of one (scope, audience) pair by one identity. `scope` is empty for tokens that
/// carried no scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeUse {
    pub identity_id: Uuid,
    pub scope: String,
    pub audience: String,
    pub uses: u64,
    pub first_used: OffsetDateTime,
    pub last_used: OffsetDateTime,
}

/// Use of one (scope, audience) pair by one identity on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUse {
    pub identity_id: Uuid,
    pub day: i64,
    pub scope: String,
    pub audience: String,
    pub uses: u64,
    pub last_used: OffsetDateTime,
}

/// What kind of source a [`SourceUse`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The client's IP address.
    Address,
    /// The `User-Agent` header.
    UserAgent,
    /// The environment whose network the address belongs to (from the operator's network map).
    Environment,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::UserAgent => "user_agent",
            Self::Environment => "environment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "address" => Some(Self::Address),
            "user_agent" => Some(Self::UserAgent),
            "environment" => Some(Self::Environment),
            _ => None,
        }
    }
}

/// Where one credential was used from. `credential_id` is nil for certificate (mTLS)
/// authentication, which has no credential record. `value` is [`OVERFLOW_VALUE`] for the
/// overflow entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceUse {
    pub identity_id: Uuid,
    pub credential_id: Uuid,
    pub kind: SourceKind,
    pub value: String,
    pub uses: u64,
    pub first_seen: OffsetDateTime,
    pub last_seen: OffsetDateTime,
}

impl SourceUse {
    pub fn is_overflow(&self) -> bool {
        self.value == OVERFLOW_VALUE
    }
}

/// The product part of a user agent (`myapp/1.2 (linux)` → `myapp`), so that version upgrades
/// of one workload do not look like several workloads.
pub fn user_agent_product(ua: &str) -> &str {
    let ua = ua.trim();
    let end = ua.find(['/', ' ', '(']).unwrap_or(ua.len());
    &ua[..end]
}

/// Does this user agent belong to a browser or an interactive API tool, i.e. a person at a
/// keyboard rather than a workload? Browsers all send `Mozilla/…`; Postman, Insomnia and
/// HTTPie are the interactive API clients people use by hand. `curl` and `wget` are not
/// counted: scripts use them as much as people do.
pub fn is_human_user_agent(ua: &str) -> bool {
    let product = user_agent_product(ua).to_ascii_lowercase();
    matches!(
        product.as_str(),
        "mozilla" | "opera" | "postmanruntime" | "insomnia" | "httpie"
    )
}

/// Cuts a user agent to [`MAX_USER_AGENT_LEN`] bytes on a character boundary, dropping control
/// characters.
pub fn clean_user_agent(ua: &str) -> String {
    let mut out = String::with_capacity(ua.len().min(MAX_USER_AGENT_LEN));
    for c in ua.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_USER_AGENT_LEN {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents() {
        assert_eq!(user_agent_product("myapp/1.2 (linux)"), "myapp");
        assert_eq!(user_agent_product("reqwest"), "reqwest");
        assert!(is_human_user_agent(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
        ));
        assert!(is_human_user_agent("PostmanRuntime/7.36.0"));
        assert!(is_human_user_agent("HTTPie/3.2.2"));
        assert!(!is_human_user_agent("curl/8.5.0"));
        assert!(!is_human_user_agent("steward-client/0.1"));
        assert!(!is_human_user_agent(""));
        let long = "x".repeat(500);
        assert_eq!(clean_user_agent(&long).len(), MAX_USER_AGENT_LEN);
        assert_eq!(clean_user_agent(" a\u{7}b "), "ab");
    }

    #[test]
    fn days() {
        let t = OffsetDateTime::from_unix_timestamp(86_400 * 3 + 5).unwrap();
        assert_eq!(day_of(t), 3);
        assert_eq!(day_start(3).unix_timestamp(), 86_400 * 3);
        let before = OffsetDateTime::from_unix_timestamp(-1).unwrap();
        assert_eq!(day_of(before), -1);
    }
}

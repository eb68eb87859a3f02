//! `steward-scan`: finds leaked secrets (Steward keys, private keys, cloud and chat tokens,
//! hard-coded passwords) in files and in git history. Pure library: no server, no network.
//!
//! ```text
//! RuleSet (rules.rs, TOML) ─► Scanner (engine.rs: keywords ─► regex ─► entropy/checksum/allow)
//!        walk.rs (files, .gitignore) ─┬─► Finding (redacted) ─► report.rs (text, JSON, SARIF 2.1.0)
//!        git.rs (every blob once)  ───┘
//! ```
#![forbid(unsafe_code)]

pub mod engine;
pub mod git;
pub mod report;
pub mod rules;
pub mod validate;
pub mod walk;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use thiserror::Error;

pub use engine::{Hit, Scanner};
pub use rules::{RuleSet, Severity};
pub use walk::{ScanOptions, scan};

#[derive(Debug, Error)]
pub enum ScanError {
    #[error("invalid rules: {0}")]
    Rules(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("git: {0}")]
    Git(String),
}

/// A secret as found. Only [`Finding::reveal`] gives it out; `Debug` shows the redacted form.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RawSecret(String);

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&steward_core::apikey::redact(&self.0))
    }
}

/// One reported secret. Serializes without the secret: `secret` holds its redacted form.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Path as walked (working tree) or repository-relative (history).
    pub path: String,
    /// 1-based line and column (in Unicode code points).
    pub line: u64,
    pub column: u64,
    pub rule: String,
    pub description: String,
    pub severity: Severity,
    /// Prefix and last four characters only.
    pub secret: String,
    /// For history findings: the oldest commit that added this blob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// For history findings: the blob id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    #[serde(skip)]
    raw: RawSecret,
}

impl Finding {
    pub(crate) fn new(scanner: &Scanner, path: String, hit: Hit) -> Self {
        let rule = &scanner.rules().rules[hit.rule];
        Self {
            path,
            line: hit.line,
            column: hit.column,
            rule: rule.id.clone(),
            description: rule.description.clone(),
            severity: rule.severity,
            secret: steward_core::apikey::redact(&hit.secret),
            commit: None,
            blob: None,
            raw: RawSecret(hit.secret),
        }
    }

    /// The full secret: only to report a Steward key to its own server for revocation.
    pub fn reveal(&self) -> &str {
        &self.raw.0
    }

    /// Stable ordering for reports: path, line, column, rule.
    fn sort_key(&self) -> (&str, Option<&str>, u64, u64, &str) {
        (
            &self.path,
            self.blob.as_deref(),
            self.line,
            self.column,
            &self.rule,
        )
    }
}

/// Sorts findings for deterministic output.
pub fn sort_findings(f: &mut [Finding]) {
    f.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

/// Live counters, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub findings: AtomicU64,
}

impl Progress {
    pub(crate) fn add(&self, bytes: u64, findings: usize) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.findings.fetch_add(findings as u64, Ordering::Relaxed);
    }
}

/// What a scan did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
    pub binary_skipped: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// The result of a scan: findings (sorted), counters, and per-path errors that did not stop it.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub stats: Stats,
    pub errors: Vec<String>,
}

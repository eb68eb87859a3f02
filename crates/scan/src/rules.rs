//! The rule set: the TOML rule format, the embedded default rules, user extensions, and their
//! compilation into one keyword automaton plus one regex per rule.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use crate::ScanError;

/// The built-in rules (`src/rules.toml`), compiled into the binary.
pub const DEFAULT_RULES: &str = include_str!("rules.toml");

/// Largest compiled size of one rule regex (bytes of the regex engine's program).
const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// How bad a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// A built-in check that a candidate secret is genuine (its own checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validator {
    /// `stw_…` keys: prefix, length, charset and CRC32 via `steward_core::apikey::ApiKey::parse`.
    Steward,
    /// GitHub tokens: CRC32 of the last `_`-separated part (minus its last 6 characters), in base62.
    Github,
}

/// Allow-list entries: path regexes and secret regexes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSpec {
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// One rule as written in a rules file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub description: String,
    pub regex: String,
    #[serde(default)]
    pub secret_group: Option<usize>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub min_entropy: Option<f64>,
    #[serde(default)]
    pub validate: Option<Validator>,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub generic: bool,
    #[serde(default)]
    pub multiline: bool,
    #[serde(default)]
    pub allowlist: AllowSpec,
}

fn default_severity() -> Severity {
    Severity::High
}

/// A rules file: a global allow-list and rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub allowlist: AllowSpec,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec>,
}

impl RuleFile {
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScanError> {
        toml::from_str(text).map_err(|e| ScanError::Rules(format!("{origin}: {e}")))
    }

    /// The embedded default rules.
    pub fn builtin() -> Result<Self, ScanError> {
        Self::parse(DEFAULT_RULES, "built-in rules")
    }

    /// Adds `other`'s allow-list and rules; a rule whose id exists replaces it.
    pub fn extend(&mut self, other: RuleFile) {
        self.allowlist.paths.extend(other.allowlist.paths);
        self.allowlist.patterns.extend(other.allowlist.patterns);
        for r in other.rules {
            match self.rules.iter_mut().find(|x| x.id == r.id) {
                Some(slot) => *slot = r,
                None => self.rules.push(r),
            }
        }
    }
}

/// A compiled rule. Clones share the compiled regexes but get their own match caches.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub regex: Regex,
    pub secret_group: Option<usize>,
    pub min_entropy: f64,
    pub validate: Option<Validator>,
    pub severity: Severity,
    pub generic: bool,
    pub multiline: bool,
    pub allow_paths: Option<RegexSet>,
    pub allow_patterns: Option<RegexSet>,
}

/// Every rule compiled, with the keyword searches that decide where rules run.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// One SIMD literal search (leftmost-first) over every keyword, exactly as the rules spell
    /// them: it finds the lines worth a look.
    pub prefilter: AhoCorasick,
    /// The same keywords for overlapping search inside a line: which rules the line triggers.
    pub window_keywords: AhoCorasick,
    /// Keyword index (pattern id of both automata) → the rules it triggers.
    pub keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: they run over every chunk (slow; user rules only).
    pub unconditional: Vec<usize>,
    pub allow_paths: Option<RegexSet>,
    pub allow_patterns: Option<RegexSet>,
    /// Rule indices with specific rules first, so generic ones can yield to them.
    pub order: Vec<usize>,
}

fn regex_set(patterns: &[String], what: &str) -> Result<Option<RegexSet>, ScanError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    RegexSetBuilder::new(patterns)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| ScanError::Rules(format!("{what}: {e}")))
}

impl RuleSet {
    /// The default rules only.
    pub fn builtin() -> Result<Self, ScanError> {
        Self::compile(RuleFile::builtin()?)
    }

    /// The default rules extended by a user rules file.
    pub fn with_extra(text: &str, origin: &str) -> Result<Self, ScanError> {
        let mut f = RuleFile::builtin()?;
        f.extend(RuleFile::parse(text, origin)?);
        Self::compile(f)
    }

    pub fn compile(file: RuleFile) -> Result<Self, ScanError> {
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut keyword_index: HashMap<String, usize> = HashMap::new();
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut unconditional = Vec::new();
        for (i, spec) in file.rules.into_iter().enumerate() {
            if spec.id.is_empty()
                || !spec
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ScanError::Rules(format!(
                    "rule id {:?} must be letters, digits, '-' or '_'",
                    spec.id
                )));
            }
            let regex = RegexBuilder::new(&spec.regex)
                .size_limit(REGEX_SIZE_LIMIT)
                .multi_line(true)
                .build()
                .map_err(|e| ScanError::Rules(format!("rule {}: {e}", spec.id)))?;
            if let Some(g) = spec.secret_group
                && g >= regex.captures_len()
            {
                return Err(ScanError::Rules(format!(
                    "rule {}: secret_group {g} does not exist (the regex has {} groups)",
                    spec.id,
                    regex.captures_len() - 1
                )));
            }
            for k in &spec.keywords {
                if k.is_empty() {
                    return Err(ScanError::Rules(format!("rule {}: empty keyword", spec.id)));
                }
                let idx = *keyword_index.entry(k.clone()).or_insert_with(|| {
                    keywords.push(k.clone());
                    keyword_rules.push(Vec::new());
                    keywords.len() - 1
                });
                if !keyword_rules[idx].contains(&i) {
                    keyword_rules[idx].push(i);
                }
            }
            if spec.keywords.is_empty() {
                unconditional.push(i);
            }
            rules.push(Rule {
                allow_paths: regex_set(
                    &spec.allowlist.paths,
                    &format!("rule {} allowlist paths", spec.id),
                )?,
                allow_patterns: regex_set(
                    &spec.allowlist.patterns,
                    &format!("rule {} allowlist patterns", spec.id),
                )?,
                id: spec.id,
                description: spec.description,
                regex,
                secret_group: spec.secret_group,
                min_entropy: spec.min_entropy.unwrap_or(0.0),
                validate: spec.validate,
                severity: spec.severity,
                generic: spec.generic,
                multiline: spec.multiline,
            });
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = rules.iter().find(|r| !seen.insert(r.id.as_str())) {
            return Err(ScanError::Rules(format!(
                "rule id {:?} appears twice",
                dup.id
            )));
        }
        // Keywords of specific rules first: at one position, leftmost-first prefers them.
        let mut kw_order: Vec<usize> = (0..keywords.len()).collect();
        kw_order.sort_by_key(|&k| keyword_rules[k].iter().all(|&r| rules[r].generic));
        let keywords: Vec<String> = kw_order.iter().map(|&k| keywords[k].clone()).collect();
        let keyword_rules: Vec<Vec<usize>> =
            kw_order.iter().map(|&k| keyword_rules[k].clone()).collect();
        let build = |kind: MatchKind| {
            AhoCorasickBuilder::new()
                .match_kind(kind)
                .build(&keywords)
                .map_err(|e| ScanError::Rules(format!("keywords: {e}")))
        };
        let prefilter = build(MatchKind::LeftmostFirst)?;
        let window_keywords = build(MatchKind::Standard)?;
        let mut order: Vec<usize> = (0..rules.len()).collect();
        order.sort_by_key(|&i| rules[i].generic);
        Ok(Self {
            allow_paths: regex_set(&file.allowlist.paths, "allowlist paths")?,
            allow_patterns: regex_set(&file.allowlist.patterns, "allowlist patterns")?,
            rules,
            prefilter,
            window_keywords,
            keyword_rules,
            unconditional,
            order,
        })
    }

    /// Is this path (slash-separated) excluded by the global allow-list?
    pub fn path_allowed(&self, path: &str) -> bool {
        self.allow_paths
            .as_ref()
            .is_some_and(|s| s.is_match(path.as_bytes()))
    }
}

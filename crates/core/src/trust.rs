//! Trust policies for external token issuers (federation): the policy document, its validation
//! with per-preset guard rails, the registered-claim checks, and claim-rule evaluation. Pure: no I/O, time is a parameter.
//!
//! Rules: OR across `allow` rules, AND within a rule. A condition tests one claim with exactly
//! one of `equals`, `in`, `glob` or `regex` (anchored), optionally negated with `not`. A claim
//! that is missing (or null, an object, or an empty array) never matches, negated or not.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::DomainError;

/// The GitHub Actions OIDC issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Its JWKS.
pub const GITHUB_JWKS_URI: &str = "https://token.actions.githubusercontent.com/.well-known/jwks";
/// Algorithms accepted from external issuers unless a policy narrows them.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "ES384", "EdDSA"];
/// Limits that keep one policy (and its evaluation) small.
pub const MAX_RULES: usize = 32;
pub const MAX_CONDITIONS: usize = 32;
pub const MAX_VALUES: usize = 256;
pub const MAX_PATTERN_LEN: usize = 512;
pub const MAX_AUDIENCES: usize = 16;
pub const MAX_NAME_LEN: usize = 128;
/// Compiled-regex size limit (the `regex` crate runs in linear time; this bounds its memory).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Which kind of issuer a policy is written for; presets add defaults and guard rails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Any OpenID Connect issuer.
    #[default]
    Oidc,
    /// GitHub Actions: every rule must pin the repository or its owner.
    GithubActions,
    /// Kubernetes service-account tokens: every rule must pin the namespace.
    Kubernetes,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::GithubActions => "github_actions",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// One condition on one claim, as written: exactly one of `equals`, `in`, `glob`, `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// A top-level claim name, or a JSON Pointer (RFC 6901) starting with `/` for nested claims,
    /// e.g. `/kubernetes.io/namespace`.
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// `*` matches any run of characters (including `/`), `?` exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// A regular expression that must match the whole value (it is anchored at both ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Negates the test; a missing claim still never matches.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not: bool,
}

/// One `allow` rule: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub conditions: Vec<ConditionSpec>,
}

/// A trust policy document, as an administrator writes it and as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicySpec {
    /// Unique name, 1–128 of letters, digits, `.`, `_`, `-`.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub preset: Preset,
    /// Exact `iss` of accepted tokens (defaults to GitHub's for the `github_actions` preset).
    #[serde(default)]
    pub issuer: String,
    /// Where the issuer publishes its keys (https; http only on loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Inline JWK Set, for air-gapped issuers. Exactly one of `jwks_uri` and `jwks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// At least one of these must be in the token's `aud`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The Steward identity an accepted token is exchanged for.
    pub identity: Uuid,
    pub allow: Vec<RuleSpec>,
    /// Refuse tokens whose `iat` is older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_age_secs: Option<u32>,
    /// Accept each token (`jti`) once; it is remembered until its `exp`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
    /// Signature algorithms accepted (a subset of RS256, PS256, ES256, ES384, EdDSA; default all five).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Caps the scopes of exchanged tokens (besides the identity's own scopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Caps the lifetime of exchanged tokens (besides the identity's and the server's limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u32>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// How a condition tests a value.
#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    In(BTreeSet<String>),
    Glob(String),
    Regex(regex::Regex, String),
}

#[derive(Debug, Clone)]
struct Condition {
    claim: String,
    /// JSON Pointer tokens when `claim` is a pointer.
    pointer: Option<Vec<String>>,
    test: Test,
    not: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    name: Option<String>,
    conditions: Vec<Condition>,
}

/// A validated, compiled trust policy (defaults from its preset filled in).
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub spec: TrustPolicySpec,
    rules: Vec<Rule>,
}

fn invalid(field: &'static str, msg: impl Into<String>) -> DomainError {
    DomainError::invalid(field, msg)
}

/// `https://…`, or `http://` on a loopback host (tests, local issuers); no query or fragment.
pub fn validate_url(field: &'static str, s: &str) -> Result<(), DomainError> {
    let rest = if let Some(r) = s.strip_prefix("https://") {
        r
    } else if let Some(r) = s.strip_prefix("http://") {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let name = if host.starts_with('[') {
            host.split(']').next().map(|h| format!("{h}]"))
        } else {
            host.split(':').next().map(str::to_owned)
        }
        .unwrap_or_default();
        if !matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]") {
            return Err(invalid(
                field,
                format!("{s:?} must use https (plain http is only allowed on a loopback host)"),
            ));
        }
        r
    } else {
        return Err(invalid(field, format!("{s:?} must be an https URL")));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || s.len() > 2048 || s.contains(['?', '#', ' ']) || s.contains('\0') {
        return Err(invalid(
            field,
            format!("{s:?} must be a URL with a host and no query, fragment or spaces"),
        ));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), DomainError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(
            "name",
            "must be 1 to 128 of letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

/// Splits a JSON Pointer (RFC 6901) into its unescaped reference tokens.
fn parse_pointer(p: &str) -> Option<Vec<String>> {
    let rest = p.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

fn compile_condition(c: &ConditionSpec, at: &str) -> Result<Condition, DomainError> {
    if c.claim.is_empty() || c.claim.len() > MAX_NAME_LEN || c.claim.contains('\0') {
        return Err(invalid(
            "allow",
            format!("{at}: claim must be 1 to 128 characters"),
        ));
    }
    let pointer = if c.claim.starts_with('/') {
        let p = parse_pointer(&c.claim).unwrap_or_default();
        if p.iter().any(String::is_empty) {
            return Err(invalid(
                "allow",
                format!("{at}: claim {:?} is not a valid JSON Pointer", c.claim),
            ));
        }
        Some(p)
    } else {
        None
    };
    let given = usize::from(c.equals.is_some())
        + usize::from(c.one_of.is_some())
        + usize::from(c.glob.is_some())
        + usize::from(c.regex.is_some());
    if given != 1 {
        return Err(invalid(
            "allow",
            format!(
                "{at}: give exactly one of equals, in, glob or regex (found {given}) for claim {:?}",
                c.claim
            ),
        ));
    }
    let long = |v: &str| v.len() > MAX_PATTERN_LEN || v.contains('\0');
    let test = if let Some(v) = &c.equals {
        if long(v) {
            return Err(invalid(
                "allow",
                format!("{at}: value is longer than {MAX_PATTERN_LEN}"),
            ));
        }
        Test::Equals(v.clone())
    } else if let Some(vs) = &c.one_of {
        if vs.is_empty() || vs.len() > MAX_VALUES {
            return Err(invalid(
                "allow",
                format!("{at}: `in` needs 1 to {MAX_VALUES} values"),
            ));
        }
        if vs.iter().any(|v| long(v)) {
            return Err(invalid(
                "allow",
                format!("{at}: value is longer than {MAX_PATTERN_LEN}"),
            ));
        }
        Test::In(vs.iter().cloned().collect())
    } else if let Some(g) = &c.glob {
        if g.is_empty() || long(g) {
            return Err(invalid(
                "allow",
                format!("{at}: glob must be 1 to {MAX_PATTERN_LEN} characters"),
            ));
        }
        Test::Glob(g.clone())
    } else if let Some(r) = &c.regex {
        if r.is_empty() || long(r) {
            return Err(invalid(
                "allow",
                format!("{at}: regex must be 1 to {MAX_PATTERN_LEN} characters"),
            ));
        }
        let anchored = format!(r"\A(?:{r})\z");
        let re = regex::RegexBuilder::new(&anchored)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                let msg = e.to_string();
                let first = msg.lines().last().unwrap_or("").trim();
                invalid(
                    "allow",
                    format!("{at}: regex {r:?} does not compile: {first}"),
                )
            })?;
        Test::Regex(re, r.clone())
    } else {
        return Err(invalid("allow", format!("{at}: no test given")));
    };
    Ok(Condition {
        claim: c.claim.clone(),
        pointer,
        test,
        not: c.not,
    })
}

impl TrustPolicy {
    /// Validates `spec` (filling in preset defaults) and compiles its rules. Every error names
    /// the field and, for rules, the rule and condition (1-based).
    pub fn compile(mut spec: TrustPolicySpec) -> Result<Self, DomainError> {
        validate_name(&spec.name)?;
        if spec.description.len() > 1024 || spec.description.contains('\0') {
            return Err(invalid("description", "must be at most 1024 characters"));
        }
        if spec.preset == Preset::GithubActions && spec.issuer.is_empty() {
            spec.issuer = GITHUB_ISSUER.into();
        }
        if spec.issuer.is_empty() {
            return Err(invalid(
                "issuer",
                "is required (the exact iss of accepted tokens)",
            ));
        }
        validate_url("issuer", &spec.issuer)?;
        if spec.preset == Preset::GithubActions
            && spec.issuer == GITHUB_ISSUER
            && spec.jwks_uri.is_none()
            && spec.jwks.is_none()
        {
            spec.jwks_uri = Some(GITHUB_JWKS_URI.into());
        }
        match (&spec.jwks_uri, &spec.jwks) {
            (Some(_), Some(_)) => {
                return Err(invalid("jwks", "give jwks_uri or an inline jwks, not both"));
            }
            (None, None) => {
                return Err(invalid(
                    "jwks_uri",
                    "is required (or an inline jwks for air-gapped issuers)",
                ));
            }
            (Some(u), None) => validate_url("jwks_uri", u)?,
            (None, Some(j)) => {
                if !j.get("keys").is_some_and(Value::is_array) {
                    return Err(invalid("jwks", "must be a JWK Set: {\"keys\": [...]}"));
                }
            }
        }
        if spec.audiences.is_empty() {
            return Err(invalid(
                "audiences",
                "at least one audience is required: tokens minted for anyone must not be accepted",
            ));
        }
        if spec.audiences.len() > MAX_AUDIENCES
            || spec
                .audiences
                .iter()
                .any(|a| a.is_empty() || a.len() > 512 || a.contains(['*', '\0']))
        {
            return Err(invalid(
                "audiences",
                format!("1 to {MAX_AUDIENCES} audiences of 1 to 512 characters, without wildcards"),
            ));
        }
        if spec.algorithms.is_empty() {
            spec.algorithms = DEFAULT_ALGORITHMS.iter().map(|s| (*s).to_owned()).collect();
        }
        for a in &spec.algorithms {
            if !DEFAULT_ALGORITHMS.contains(&a.as_str()) {
                return Err(invalid(
                    "algorithms",
                    format!(
                        "{a:?} is not accepted; choose from {}",
                        DEFAULT_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if let Some(s) = &spec.scopes {
            spec.scopes = Some(crate::scope::normalize_scopes(s)?);
        }
        if spec.token_lifetime_secs == Some(0) {
            return Err(invalid("token_lifetime_secs", "must be positive"));
        }
        if spec.max_token_age_secs == Some(0) {
            return Err(invalid("max_token_age_secs", "must be positive"));
        }
        if spec.allow.is_empty() || spec.allow.len() > MAX_RULES {
            return Err(invalid(
                "allow",
                format!(
                    "1 to {MAX_RULES} rules are required (a policy without rules would accept every token)"
                ),
            ));
        }
        let mut rules = Vec::with_capacity(spec.allow.len());
        for (ri, r) in spec.allow.iter().enumerate() {
            let at = format!("rule {}", ri + 1);
            if r.conditions.is_empty() || r.conditions.len() > MAX_CONDITIONS {
                return Err(invalid(
                    "allow",
                    format!("{at}: 1 to {MAX_CONDITIONS} conditions are required"),
                ));
            }
            if r.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
                return Err(invalid("allow", format!("{at}: name is too long")));
            }
            if r.conditions.iter().all(|c| c.not) {
                return Err(invalid(
                    "allow",
                    format!(
                        "{at}: needs at least one condition that is not negated (negations alone match almost every token)"
                    ),
                ));
            }
            let mut conditions = Vec::with_capacity(r.conditions.len());
            for (ci, c) in r.conditions.iter().enumerate() {
                conditions.push(compile_condition(
                    c,
                    &format!("{at}, condition {}", ci + 1),
                )?);
            }
            match spec.preset {
                Preset::GithubActions if !r.conditions.iter().any(pins_github_repository) => {
                    return Err(invalid(
                        "allow",
                        format!(
                            "{at}: a GitHub Actions rule must pin the repository or its owner: add a condition \
                             (not negated) with equals/in on repository, repository_id, repository_owner or \
                             repository_owner_id, or on sub as repo:OWNER/REPO:… or repo:OWNER@ID/REPO@ID:…, \
                             or a glob/regex whose fixed prefix names the owner (e.g. repository glob \"octo-org/*\")"
                        ),
                    ));
                }
                Preset::Kubernetes if !r.conditions.iter().any(pins_kubernetes_namespace) => {
                    return Err(invalid(
                        "allow",
                        format!(
                            "{at}: a Kubernetes rule must pin the namespace: add a condition (not negated) on \
                             /kubernetes.io/namespace with equals/in, or on sub with equals/in, or a glob/regex \
                             starting with system:serviceaccount:NAMESPACE:"
                        ),
                    ));
                }
                _ => {}
            }
            rules.push(Rule {
                name: r.name.clone(),
                conditions,
            });
        }
        Ok(Self { spec, rules })
    }

    pub fn accepts_algorithm(&self, alg: &str) -> bool {
        self.spec.algorithms.iter().any(|a| a == alg)
    }
}

// ------------------------------------------------------------------ guard rails

/// A GitHub owner segment: `NAME` or `NAME@ID` (names are letters, digits and `-`).
fn github_owner_ok(s: &str) -> bool {
    let (name, id) = match s.split_once('@') {
        Some((n, i)) => (n, Some(i)),
        None => (s, None),
    };
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && id.is_none_or(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// A glob or regex pattern whose literal prefix is `prefix` followed by a fixed owner and `/`
/// (or, for the repository claim, the owner and `/`).
fn literal_owner_prefix(pattern: &str, prefix: &str) -> bool {
    let Some(rest) = pattern.strip_prefix(prefix) else {
        return false;
    };
    let Some((owner, _)) = rest.split_once('/') else {
        return false;
    };
    github_owner_ok(owner)
}

fn pins_github_repository(c: &ConditionSpec) -> bool {
    if c.not {
        return false;
    }
    let exact: Vec<&String> = match (&c.equals, &c.one_of) {
        (Some(v), _) => vec![v],
        (_, Some(vs)) => vs.iter().collect(),
        _ => vec![],
    };
    match c.claim.as_str() {
        "repository_owner" | "repository_owner_id" | "repository_id" => !exact.is_empty(),
        "repository" => {
            if !exact.is_empty() {
                return exact.iter().all(|v| literal_owner_prefix(v, ""));
            }
            c.glob
                .as_deref()
                .or(c.regex.as_deref())
                .is_some_and(|p| literal_owner_prefix(p, ""))
        }
        "sub" => {
            if !exact.is_empty() {
                return exact.iter().all(|v| parse_github_sub(v).is_some());
            }
            c.glob
                .as_deref()
                .or(c.regex.as_deref())
                .is_some_and(|p| literal_owner_prefix(p, "repo:"))
        }
        _ => false,
    }
}

fn k8s_namespace_ok(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn pins_kubernetes_namespace(c: &ConditionSpec) -> bool {
    if c.not {
        return false;
    }
    let exact: Vec<&String> = match (&c.equals, &c.one_of) {
        (Some(v), _) => vec![v],
        (_, Some(vs)) => vs.iter().collect(),
        _ => vec![],
    };
    match c.claim.as_str() {
        "/kubernetes.io/namespace" => !exact.is_empty(),
        "sub" => {
            if !exact.is_empty() {
                return exact.iter().all(|v| parse_k8s_sub(v).is_some());
            }
            c.glob.as_deref().or(c.regex.as_deref()).is_some_and(|p| {
                p.strip_prefix("system:serviceaccount:")
                    .and_then(|r| r.split_once(':'))
                    .is_some_and(|(ns, _)| k8s_namespace_ok(ns))
            })
        }
        _ => false,
    }
}

/// The parts of a GitHub Actions `sub`: `repo:OWNER/REPO:CONTEXT` or, with immutable ids,
/// `repo:OWNER@OWNER_ID/REPO@REPO_ID:CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubSub<'a> {
    pub owner: &'a str,
    pub owner_id: Option<&'a str>,
    pub repo: &'a str,
    pub repo_id: Option<&'a str>,
    /// What follows the repository, e.g. `ref:refs/heads/main` or `environment:prod`.
    pub context: &'a str,
}

pub fn parse_github_sub(sub: &str) -> Option<GithubSub<'_>> {
    let rest = sub.strip_prefix("repo:")?;
    let (owner_part, rest) = rest.split_once('/')?;
    let (repo_part, context) = rest.split_once(':')?;
    if !github_owner_ok(owner_part) || context.is_empty() {
        return None;
    }
    let (owner, owner_id) = match owner_part.split_once('@') {
        Some((n, i)) => (n, Some(i)),
        None => (owner_part, None),
    };
    let (repo, repo_id) = match repo_part.split_once('@') {
        Some((n, i)) => (n, Some(i)),
        None => (repo_part, None),
    };
    let repo_ok = !repo.is_empty()
        && repo.len() <= 100
        && repo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && repo_id.is_none_or(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    // Both ids or neither: the immutable form names both.
    if !repo_ok || owner_id.is_some() != repo_id.is_some() {
        return None;
    }
    Some(GithubSub {
        owner,
        owner_id,
        repo,
        repo_id,
        context,
    })
}

/// `system:serviceaccount:NAMESPACE:NAME` → (namespace, name).
pub fn parse_k8s_sub(sub: &str) -> Option<(&str, &str)> {
    let rest = sub.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
    (k8s_namespace_ok(ns) && name_ok).then_some((ns, name))
}

// ------------------------------------------------------------------ evaluation

/// Looks a claim up by name or JSON Pointer.
fn lookup<'a>(claims: &'a Map<String, Value>, c: &Condition) -> Option<&'a Value> {
    match &c.pointer {
        None => claims.get(&c.claim),
        Some(tokens) => {
            let mut v = claims.get(tokens.first()?)?;
            for t in &tokens[1..] {
                v = match v {
                    Value::Object(m) => m.get(t)?,
                    Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            Some(v)
        }
    }
}

/// The values a condition tests: a scalar, or each scalar of an array. `None` when the claim
/// counts as missing (null, object, empty array, or an array holding non-scalars).
fn scalars(v: &Value) -> Option<Vec<String>> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match v {
        Value::Array(a) if !a.is_empty() && a.len() <= MAX_VALUES => {
            a.iter().map(scalar).collect::<Option<Vec<_>>>()
        }
        Value::Array(_) => None,
        other => scalar(other).map(|s| vec![s]),
    }
}

/// `*` matches any run of characters, `?` exactly one; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Test {
    fn matches(&self, v: &str) -> bool {
        match self {
            Test::Equals(e) => e == v,
            Test::In(set) => set.contains(v),
            Test::Glob(g) => glob_match(g, v),
            Test::Regex(re, _) => re.is_match(v),
        }
    }

    fn describe(&self) -> String {
        match self {
            Test::Equals(e) => format!("equals {e:?}"),
            Test::In(set) => format!(
                "in [{}]",
                set.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Test::Glob(g) => format!("glob {g:?}"),
            Test::Regex(_, r) => format!("regex {r:?}"),
        }
    }
}

/// The result of one condition, for explanations and audit reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionResult {
    pub claim: String,
    /// e.g. `glob "refs/heads/*"`, prefixed with `not ` when negated.
    pub test: String,
    /// The claim's value in the token; absent when the token lacks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
    pub matched: bool,
    /// Why it matched or failed, in one sentence.
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    /// 1-based position in `allow`.
    pub rule: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub matched: bool,
    pub conditions: Vec<ConditionResult>,
}

fn evaluate_condition(c: &Condition, claims: &Map<String, Value>) -> ConditionResult {
    let test = if c.not {
        format!("not {}", c.test.describe())
    } else {
        c.test.describe()
    };
    let actual = lookup(claims, c);
    let values = actual.and_then(scalars);
    let (matched, why) = match &values {
        None => (
            false,
            match actual {
                None => format!(
                    "claim {} is missing, so the condition cannot match",
                    c.claim
                ),
                Some(_) => format!(
                    "claim {} is not a string, number, boolean or list of them, so the condition cannot match",
                    c.claim
                ),
            },
        ),
        Some(vs) => {
            let any = vs.iter().any(|v| c.test.matches(v));
            let ok = any != c.not;
            let shown = match actual {
                Some(Value::String(s)) => format!("{s:?}"),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let why = match (c.not, any) {
                (false, true) => format!("claim {} = {shown} {}", c.claim, c.test.describe()),
                (false, false) => format!(
                    "claim {} = {shown} does not match {}",
                    c.claim,
                    c.test.describe()
                ),
                (true, false) => format!(
                    "claim {} = {shown} does not match {}, as required",
                    c.claim,
                    c.test.describe()
                ),
                (true, true) => format!(
                    "claim {} = {shown} matches {}, which the rule forbids",
                    c.claim,
                    c.test.describe()
                ),
            };
            (ok, why)
        }
    };
    ConditionResult {
        claim: c.claim.clone(),
        test,
        actual: actual.cloned(),
        matched,
        why,
    }
}

impl TrustPolicy {
    /// Full evaluation of every rule and condition (for `explain`).
    pub fn explain_rules(&self, claims: &Map<String, Value>) -> Vec<RuleResult> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let conditions: Vec<ConditionResult> = r
                    .conditions
                    .iter()
                    .map(|c| evaluate_condition(c, claims))
                    .collect();
                RuleResult {
                    rule: i + 1,
                    name: r.name.clone(),
                    matched: conditions.iter().all(|c| c.matched),
                    conditions,
                }
            })
            .collect()
    }

    /// The first rule (1-based) whose conditions all hold; otherwise why each rule failed (its
    /// first failing condition).
    pub fn evaluate_rules(&self, claims: &Map<String, Value>) -> Result<usize, String> {
        let mut why = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let failed = r.conditions.iter().find_map(|c| {
                let res = evaluate_condition(c, claims);
                (!res.matched).then_some(res.why)
            });
            match failed {
                None => return Ok(i + 1),
                Some(w) => why.push(format!("rule {}: {w}", i + 1)),
            }
        }
        Err(format!("no allow rule matched ({})", why.join("; ")))
    }

    /// Preset checks on the token's own shape, run before the rules: a GitHub Actions `sub`
    /// must be one of the two documented forms and agree with the repository claims; a
    /// Kubernetes `sub` must name a service account and agree with the `kubernetes.io` claims.
    pub fn check_preset(&self, claims: &Map<String, Value>) -> Result<(), String> {
        let s = |k: &str| claims.get(k).and_then(Value::as_str);
        match self.spec.preset {
            Preset::Oidc => Ok(()),
            Preset::GithubActions => {
                let sub = s("sub").ok_or("GitHub Actions token has no sub")?;
                let g = parse_github_sub(sub).ok_or_else(|| {
                    format!(
                        "GitHub Actions sub {sub:?} is neither repo:OWNER/REPO:… nor repo:OWNER@ID/REPO@ID:…"
                    )
                })?;
                let full = format!("{}/{}", g.owner, g.repo);
                if let Some(r) = s("repository")
                    && !r.eq_ignore_ascii_case(&full)
                {
                    return Err(format!(
                        "GitHub Actions sub names {full:?} but the repository claim is {r:?}"
                    ));
                }
                let id_claim = |k: &str| match claims.get(k) {
                    Some(Value::String(v)) => Some(v.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                if let Some(oid) = g.owner_id
                    && id_claim("repository_owner_id").is_some_and(|v| v != oid)
                {
                    return Err(format!(
                        "GitHub Actions sub names owner id {oid} but repository_owner_id differs"
                    ));
                }
                if let Some(rid) = g.repo_id
                    && id_claim("repository_id").is_some_and(|v| v != rid)
                {
                    return Err(format!(
                        "GitHub Actions sub names repository id {rid} but repository_id differs"
                    ));
                }
                Ok(())
            }
            Preset::Kubernetes => {
                let sub = s("sub").ok_or("Kubernetes token has no sub")?;
                let (ns, name) = parse_k8s_sub(sub).ok_or_else(|| {
                    format!("Kubernetes sub {sub:?} is not system:serviceaccount:NAMESPACE:NAME")
                })?;
                if let Some(k) = claims.get("kubernetes.io") {
                    let cns = k.get("namespace").and_then(Value::as_str);
                    if cns.is_some_and(|c| c != ns) {
                        return Err(format!(
                            "Kubernetes sub names namespace {ns:?} but kubernetes.io.namespace differs"
                        ));
                    }
                    let cname = k
                        .get("serviceaccount")
                        .and_then(|s| s.get("name"))
                        .and_then(Value::as_str);
                    if cname.is_some_and(|c| c != name) {
                        return Err(format!(
                            "Kubernetes sub names service account {name:?} but kubernetes.io.serviceaccount.name differs"
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Registered claims, checked after the signature and before any rule: `iss` exactly the
    /// policy's issuer, an `aud` this policy accepts, `exp` present and not past, `nbf` and `iat`
    /// not in the future, and the maximum token age, each with `skew_secs` of tolerance.
    pub fn check_registered(
        &self,
        claims: &Map<String, Value>,
        now: i64,
        skew_secs: i64,
    ) -> Result<(), RegisteredClaimError> {
        use RegisteredClaimError as E;
        match claims.get("iss").and_then(Value::as_str) {
            Some(i) if i == self.spec.issuer => {}
            Some(i) => return Err(E::Issuer(i.to_owned())),
            None => return Err(E::Issuer(String::new())),
        }
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(v)) => v.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !auds
            .iter()
            .any(|a| self.spec.audiences.iter().any(|p| p == a))
        {
            return Err(E::Audience(auds.iter().map(|a| (*a).to_owned()).collect()));
        }
        let num = |k: &str| -> Result<Option<i64>, RegisteredClaimError> {
            match claims.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .or_else(|| {
                        v.as_f64()
                            .filter(|f| f.is_finite() && f.abs() < 9.0e15)
                            .map(|f| f.floor() as i64)
                    })
                    .map(Some)
                    .ok_or(E::Malformed(k.to_owned())),
            }
        };
        let exp = num("exp")?.ok_or(E::NoExpiry)?;
        if exp + skew_secs <= now {
            return Err(E::Expired { exp, now });
        }
        if let Some(nbf) = num("nbf")?
            && nbf > now + skew_secs
        {
            return Err(E::NotYetValid { nbf, now });
        }
        let iat = num("iat")?;
        if let Some(iat) = iat
            && iat > now + skew_secs
        {
            return Err(E::IssuedInFuture { iat, now });
        }
        if let Some(max) = self.spec.max_token_age_secs {
            let iat = iat.ok_or(E::NoIssuedAt)?;
            let age = now - iat;
            if age > i64::from(max) + skew_secs {
                return Err(E::TooOld { age, max });
            }
        }
        Ok(())
    }
}

/// Why a token's registered claims were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisteredClaimError {
    #[error("token iss {0:?} is not the policy's issuer")]
    Issuer(String),
    #[error("token aud {0:?} names none of the policy's audiences")]
    Audience(Vec<String>),
    #[error("token claim {0} is not a number")]
    Malformed(String),
    #[error("token has no exp")]
    NoExpiry,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("token iat {iat} is in the future (now {now})")]
    IssuedInFuture { iat: i64, now: i64 },
    #[error("token has no iat, but the policy limits token age")]
    NoIssuedAt,
    #[error("token is {age} s old; the policy accepts at most {max} s")]
    TooOld { age: i64, max: u32 },
}

// ------------------------------------------------------------------ delegation

/// The RFC 8693 §4.1 `act` claim: the current actor, and nested inside it the actors before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// Number of actors in the chain (1 for a single hop).
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }

    /// Actors from the most recent to the first.
    pub fn chain(&self) -> Vec<&str> {
        let mut out = vec![self.sub.as_str()];
        let mut cur = &self.act;
        while let Some(a) = cur {
            out.push(a.sub.as_str());
            cur = &a.act;
        }
        out
    }
}

/// A `may_act` list: identity ids allowed to act for an identity (RFC 8693 §4.4 in spirit).
/// At most 64 entries, each an identity id; duplicates removed, sorted.
pub fn validate_may_act(ids: &[String]) -> Result<Vec<String>, DomainError> {
    if ids.len() > 64 {
        return Err(invalid("may_act", "at most 64 actors are allowed"));
    }
    let mut set = BTreeSet::new();
    for s in ids {
        let id = Uuid::parse_str(s)
            .map_err(|_| invalid("may_act", format!("{s:?} is not an identity id")))?;
        set.insert(id.to_string());
    }
    Ok(set.into_iter().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

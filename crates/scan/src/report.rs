//! Reports: human text, JSON, and SARIF 2.1.0 for code-scanning tools. Every format carries
//! the redacted secret only (prefix and last four characters).

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::rules::{RuleSet, Severity};
use crate::{Finding, Stats};

/// Output formats of `steward scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            "sarif" => Some(Self::Sarif),
            _ => None,
        }
    }
}

/// Writes `findings` in `format`.
pub fn write(
    out: &mut dyn Write,
    format: Format,
    rules: &RuleSet,
    findings: &[Finding],
    stats: &Stats,
) -> io::Result<()> {
    match format {
        Format::Text => text(out, findings),
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut *out,
                &json!({"findings": findings, "stats": stats}),
            )?;
            writeln!(out)
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &sarif(rules, findings))?;
            writeln!(out)
        }
    }
}

/// `path:line:column: rule: secret (description)`, with the commit for history findings.
pub fn text(out: &mut dyn Write, findings: &[Finding]) -> io::Result<()> {
    for f in findings {
        let at = match (&f.commit, &f.blob) {
            (Some(c), _) => format!(" (in history, commit {})", &c[..c.len().min(12)]),
            (None, Some(b)) => format!(" (in history, blob {})", &b[..b.len().min(12)]),
            _ => String::new(),
        };
        writeln!(
            out,
            "{}:{}:{}: {} [{}] {} — {}{at}",
            f.path,
            f.line,
            f.column,
            f.rule,
            f.severity.as_str(),
            f.secret,
            f.description
        )?;
    }
    Ok(())
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// Percent-encodes a relative path into a URI reference (RFC 3986), keeping `/`.
fn uri(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The SARIF 2.1.0 log (OASIS): one run, every rule described, one result per finding.
pub fn sarif(rules: &RuleSet, findings: &[Finding]) -> Value {
    let descriptors: Vec<Value> = rules
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": {"text": r.description},
                "fullDescription": {"text": format!("{} detected by steward scan.", r.description)},
                "help": {"text": "Revoke or rotate the secret, remove it from the code and from history, and load it at run time instead. Add `steward:allow` on the line to accept a known false positive."},
                "defaultConfiguration": {"level": level(r.severity)},
                "properties": {
                    "tags": ["security", "secret", "external/owasp-nhi/NHI2:2025"],
                    "security-severity": security_severity(r.severity),
                },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = rules.rules.iter().position(|r| r.id == f.rule);
            let mut props = serde_json::Map::new();
            if let Some(c) = &f.commit {
                props.insert("commit".into(), json!(c));
            }
            if let Some(b) = &f.blob {
                props.insert("blob".into(), json!(b));
            }
            props.insert("severity".into(), json!(f.severity.as_str()));
            let mut r = json!({
                "ruleId": f.rule,
                "level": level(f.severity),
                "message": {"text": format!("{}: {}", f.description, f.secret)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.path), "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }],
                "properties": props,
            });
            if let Some(i) = index {
                r["ruleIndex"] = json!(i);
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "steward-scan",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/steward",
                "rules": descriptors,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_escaped() {
        assert_eq!(uri("src/a b/c%.rs"), "src/a%20b/c%25.rs");
        assert_eq!(uri("é"), "%C3%A9");
    }
}

//! Renders the posture report as Markdown or as one self-contained HTML file (inline CSS and
//! SVG charts, no script, no external asset) that an auditor can open anywhere.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use steward_proto::findings::{AgeBucket, PostureReport, Share};
use time::format_description::well_known::Rfc3339;

/// Display names of the OWASP NHI Top 10 (2025) and of the NIST CSF 2.0 PR.AA outcomes.
pub fn framework_name(id: &str) -> &'static str {
    match id {
        "NHI1:2025" => "Improper Offboarding",
        "NHI2:2025" => "Secret Leakage",
        "NHI3:2025" => "Vulnerable Third-Party NHI",
        "NHI4:2025" => "Insecure Authentication",
        "NHI5:2025" => "Overprivileged NHI",
        "NHI6:2025" => "Insecure Cloud Deployment Configurations",
        "NHI7:2025" => "Long-Lived Secrets",
        "NHI8:2025" => "Environment Isolation",
        "NHI9:2025" => "NHI Reuse",
        "NHI10:2025" => "Human Use of NHI",
        "PR.AA-01" => "Identities and credentials are managed",
        "PR.AA-02" => "Identities are proofed and bound to credentials",
        "PR.AA-03" => "Users, services and hardware are authenticated",
        "PR.AA-04" => "Identity assertions are protected",
        "PR.AA-05" => "Access permissions are managed with least privilege",
        _ => "",
    }
}

const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];

fn owasp_ids() -> Vec<String> {
    (1..=10).map(|n| format!("NHI{n}:2025")).collect()
}

fn nist_ids() -> Vec<String> {
    (1..=5).map(|n| format!("PR.AA-0{n}")).collect()
}

fn share(s: &Share) -> String {
    format!("{} of {} ({:.1} %)", s.count, s.total, s.percent)
}

fn when(r: &PostureReport) -> String {
    r.generated_at.format(&Rfc3339).unwrap_or_default()
}

// ---------------------------------------------------------------- Markdown

/// Escapes text for a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn md_counts(out: &mut String, head: (&str, &str), rows: &[(String, u64)]) {
    let _ = writeln!(out, "| {} | {} |\n|---|---:|", head.0, head.1);
    for (k, v) in rows {
        let _ = writeln!(out, "| {} | {v} |", md(k));
    }
    out.push('\n');
}

fn sorted(m: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    m.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

pub fn markdown(r: &PostureReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Steward posture report\n");
    let _ = writeln!(o, "Generated {} by {}.\n", when(r), md(&r.issuer));
    let inv = &r.inventory;
    let _ = writeln!(o, "## Inventory\n");
    let _ = writeln!(
        o,
        "{} live identities ({} retired), {} owners.\n",
        inv.identities, inv.retired, inv.owners
    );
    md_counts(&mut o, ("kind", "identities"), &sorted(&inv.by_kind));
    md_counts(
        &mut o,
        ("environment", "identities"),
        &sorted(&inv.by_environment),
    );
    md_counts(&mut o, ("status", "identities"), &sorted(&inv.by_status));
    let _ = writeln!(o, "| owner | status | identities |\n|---|---|---:|");
    for ow in &inv.by_owner {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            md(&ow.name),
            ow.status,
            ow.identities
        );
    }
    o.push('\n');
    let h = &r.hygiene;
    let _ = writeln!(o, "## Hygiene\n\n| measure | share |\n|---|---|");
    let _ = writeln!(
        o,
        "| with an active owner | {} |",
        share(&h.with_active_owner)
    );
    let _ = writeln!(o, "| with a stated purpose | {} |", share(&h.with_purpose));
    let _ = writeln!(
        o,
        "| with an expiry within policy | {} |",
        share(&h.with_expiry)
    );
    let _ = writeln!(
        o,
        "| short-lived credentials only (no API key) | {} |\n",
        share(&h.short_lived_credentials_only)
    );
    let _ = writeln!(
        o,
        "## Credential age (usable credentials)\n\n| age | API keys | public keys |\n|---|---:|---:|"
    );
    for b in &r.credential_age {
        let _ = writeln!(o, "| {} | {} | {} |", b.label, b.api_keys, b.public_keys);
    }
    let f = &r.findings;
    let _ = writeln!(
        o,
        "\n## Findings\n\n{} open, {} accepted, {} resolved.\n",
        f.open, f.accepted, f.resolved
    );
    let sev: Vec<(String, u64)> = SEVERITIES
        .iter()
        .map(|s| ((*s).to_owned(), f.by_severity.get(*s).copied().unwrap_or(0)))
        .collect();
    md_counts(&mut o, ("severity", "open"), &sev);
    let _ = writeln!(o, "| OWASP NHI Top 10 | risk | open |\n|---|---|---:|");
    for id in owasp_ids() {
        let n = f.by_owasp_nhi.get(&id).copied().unwrap_or(0);
        let _ = writeln!(o, "| {id} | {} | {n} |", framework_name(&id));
    }
    let _ = writeln!(o, "\n| NIST CSF 2.0 | outcome | open |\n|---|---|---:|");
    for id in nist_ids() {
        let n = f.by_nist_csf.get(&id).copied().unwrap_or(0);
        let _ = writeln!(o, "| {id} | {} | {n} |", framework_name(&id));
    }
    o.push('\n');
    md_counts(&mut o, ("finding type", "open"), &sorted(&f.by_type));
    let _ = writeln!(
        o,
        "## Top risks\n\n| identity | environment | score | factors |\n|---|---|---:|---|"
    );
    for t in &r.top_risks {
        let _ = writeln!(
            o,
            "| {} (`{}`) | {} | {} | {} |",
            md(&t.name),
            t.identity_id,
            md(&t.environment),
            t.score,
            md(&t.factors.join(", "))
        );
    }
    let _ = writeln!(o, "\n## Exceptions and reviews\n");
    let _ = writeln!(
        o,
        "{} active exceptions, {} exception requests pending approval.\n",
        r.exceptions.active, r.exceptions.pending_requests
    );
    if !r.exceptions.items.is_empty() {
        let _ = writeln!(
            o,
            "| identity | waives | approved by | expires | reason |\n|---|---|---|---|---|"
        );
        for x in &r.exceptions.items {
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} |",
                x.identity_id,
                md(&x.guard_rail),
                md(&x.approved_by),
                x.expires_at.format(&Rfc3339).unwrap_or_default(),
                md(&x.reason)
            );
        }
        o.push('\n');
    }
    let _ = writeln!(o, "{}", reviews_line(r));
    o
}

/// One sentence on open access reviews and pending JIT requests.
fn reviews_line(r: &PostureReport) -> String {
    let v = &r.reviews;
    match v.open {
        Some(n) => format!(
            "{} open access-review campaigns with {n} undecided items ({} past their deadline); \
             {} JIT requests pending approval.",
            v.open_campaigns, v.overdue, v.pending_jit_requests
        ),
        None => "Access reviews: not available on this server.".into(),
    }
}

// ---------------------------------------------------------------- HTML

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn severity_color(s: &str) -> &'static str {
    match s {
        "critical" => "#7f1d1d",
        "high" => "#b91c1c",
        "medium" => "#d97706",
        "low" => "#2563eb",
        _ => "#475569",
    }
}

/// A horizontal bar chart as inline SVG, with a text label and value on every bar (readable
/// without colour, and by screen readers through the title).
fn bar_chart(title: &str, rows: &[(String, u64, &'static str)]) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (260u64, 380u64, 24u64);
    let h = row_h * rows.len().max(1) as u64 + 10;
    let mut s = format!(
        r#"<svg role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><title>{t}</title>"#,
        t = esc(title),
        w = label_w + bar_w + 70,
    );
    for (n, (label, v, color)) in rows.iter().enumerate() {
        let y = 5 + n as u64 * row_h;
        let len = if *v == 0 { 0 } else { (bar_w * v / max).max(2) };
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end" font-size="12">{l}</text><rect x="{bx}" y="{y}" width="{len}" height="{bh}" fill="{color}"/><text x="{vx}" y="{ty}" font-size="12">{v}</text>"#,
            lx = label_w - 8,
            ty = y + 15,
            l = esc(label),
            bx = label_w,
            bh = row_h - 6,
            vx = label_w + len + 6,
        );
    }
    s.push_str("</svg>");
    s
}

fn html_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

fn age_rows(b: &[AgeBucket]) -> Vec<(String, u64, &'static str)> {
    b.iter()
        .map(|b| {
            let color = if b.label.starts_with('>') || b.label.starts_with("180") {
                "#b91c1c"
            } else if b.label.starts_with("90") {
                "#d97706"
            } else {
                "#15803d"
            };
            (b.label.clone(), b.api_keys + b.public_keys, color)
        })
        .collect()
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#0f172a}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #cbd5e1;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #cbd5e1;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f1f5f9}td.n{text-align:right}.meta{color:#475569}.kpis{display:flex;gap:1em;flex-wrap:wrap}\
.kpi{border:1px solid #cbd5e1;border-radius:6px;padding:.6em 1em;min-width:10em}.kpi b{display:block;font-size:1.5em}\
svg text{font-family:inherit;fill:#0f172a}@media print{body{margin:0}}";

pub fn html(r: &PostureReport) -> String {
    let f = &r.findings;
    let inv = &r.inventory;
    let h = &r.hygiene;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Steward posture report {}</title><style>{CSS}</style></head><body>",
        esc(&when(r))
    );
    let _ = write!(
        o,
        "<h1>Steward posture report</h1><p class=\"meta\">Generated {} by {}. Findings map to the OWASP Non-Human Identities Top 10 (2025) and NIST CSF 2.0 (PR.AA).</p>",
        esc(&when(r)),
        esc(&r.issuer)
    );
    let kpi = |label: &str, value: String| {
        format!(
            "<div class=\"kpi\">{}<b>{}</b></div>",
            esc(label),
            esc(&value)
        )
    };
    let _ = write!(
        o,
        "<div class=\"kpis\">{}{}{}{}{}</div>",
        kpi("live identities", inv.identities.to_string()),
        kpi("open findings", f.open.to_string()),
        kpi(
            "with an active owner",
            format!("{:.1} %", h.with_active_owner.percent)
        ),
        kpi(
            "short-lived credentials only",
            format!("{:.1} %", h.short_lived_credentials_only.percent)
        ),
        kpi("active exceptions", r.exceptions.active.to_string()),
    );

    o.push_str("<h2>Findings by severity</h2>");
    let sev: Vec<(String, u64, &'static str)> = SEVERITIES
        .iter()
        .map(|s| {
            (
                (*s).to_owned(),
                f.by_severity.get(*s).copied().unwrap_or(0),
                severity_color(s),
            )
        })
        .collect();
    o.push_str(&bar_chart("Open findings by severity", &sev));
    let _ = write!(
        o,
        "<p>{} open, {} accepted (owned risk until a date), {} resolved.</p>",
        f.open, f.accepted, f.resolved
    );

    o.push_str("<h2>Findings by OWASP NHI Top 10 (2025)</h2>");
    let owasp: Vec<(String, u64, &'static str)> = owasp_ids()
        .into_iter()
        .map(|id| {
            let n = f.by_owasp_nhi.get(&id).copied().unwrap_or(0);
            (format!("{id} {}", framework_name(&id)), n, "#7c3aed")
        })
        .collect();
    o.push_str(&bar_chart("Open findings by OWASP NHI Top 10 risk", &owasp));

    o.push_str("<h2>Findings by NIST CSF 2.0 outcome</h2>");
    let nist_rows: Vec<Vec<String>> = nist_ids()
        .into_iter()
        .map(|id| {
            let n = f.by_nist_csf.get(&id).copied().unwrap_or(0);
            vec![id.clone(), framework_name(&id).to_owned(), n.to_string()]
        })
        .collect();
    o.push_str(&html_table(&["id", "outcome", "open findings"], &nist_rows));
    let type_rows: Vec<Vec<String>> = f
        .by_type
        .iter()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect();
    o.push_str(&html_table(&["finding type", "open"], &type_rows));

    o.push_str("<h2>Top risks</h2>");
    let risk_rows: Vec<Vec<String>> = r
        .top_risks
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.identity_id.to_string(),
                t.environment.clone(),
                t.score.to_string(),
                t.factors.join(", "),
            ]
        })
        .collect();
    o.push_str(&html_table(
        &["identity", "id", "environment", "risk (0-100)", "factors"],
        &risk_rows,
    ));

    o.push_str("<h2>Inventory</h2>");
    let _ = write!(
        o,
        "<p>{} live identities ({} retired), {} owners.</p>",
        inv.identities, inv.retired, inv.owners
    );
    let env: Vec<(String, u64, &'static str)> = inv
        .by_environment
        .iter()
        .map(|(k, v)| (k.clone(), *v, "#0f766e"))
        .collect();
    o.push_str(&bar_chart("Identities by environment", &env));
    let kind: Vec<(String, u64, &'static str)> = inv
        .by_kind
        .iter()
        .map(|(k, v)| (k.clone(), *v, "#0369a1"))
        .collect();
    o.push_str(&bar_chart("Identities by kind", &kind));
    let status_rows: Vec<Vec<String>> = inv
        .by_status
        .iter()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect();
    o.push_str(&html_table(&["status", "identities"], &status_rows));
    let owner_rows: Vec<Vec<String>> = inv
        .by_owner
        .iter()
        .map(|w| vec![w.name.clone(), w.status.clone(), w.identities.to_string()])
        .collect();
    o.push_str(&html_table(&["owner", "status", "identities"], &owner_rows));

    o.push_str("<h2>Hygiene</h2>");
    o.push_str(&html_table(
        &["measure", "share"],
        &[
            vec!["with an active owner".into(), share(&h.with_active_owner)],
            vec!["with a stated purpose".into(), share(&h.with_purpose)],
            vec!["with an expiry within policy".into(), share(&h.with_expiry)],
            vec![
                "short-lived credentials only (no API key)".into(),
                share(&h.short_lived_credentials_only),
            ],
        ],
    ));

    o.push_str("<h2>Credential age</h2>");
    o.push_str(&bar_chart(
        "Usable credentials by age",
        &age_rows(&r.credential_age),
    ));
    let age_table: Vec<Vec<String>> = r
        .credential_age
        .iter()
        .map(|b| {
            vec![
                b.label.clone(),
                b.api_keys.to_string(),
                b.public_keys.to_string(),
            ]
        })
        .collect();
    o.push_str(&html_table(&["age", "API keys", "public keys"], &age_table));

    o.push_str("<h2>Exceptions and reviews</h2>");
    let _ = write!(
        o,
        "<p>{} active exceptions, {} exception requests pending approval.</p>",
        r.exceptions.active, r.exceptions.pending_requests
    );
    let x_rows: Vec<Vec<String>> = r
        .exceptions
        .items
        .iter()
        .map(|x| {
            vec![
                x.identity_id.to_string(),
                x.guard_rail.clone(),
                x.approved_by.clone(),
                x.expires_at.format(&Rfc3339).unwrap_or_default(),
                x.reason.clone(),
            ]
        })
        .collect();
    if !x_rows.is_empty() {
        o.push_str(&html_table(
            &["identity", "waives", "approved by", "expires", "reason"],
            &x_rows,
        ));
    }
    let _ = write!(o, "<p>{}</p>", esc(&reviews_line(r)));
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_proto::findings::*;

    fn report() -> PostureReport {
        let mut findings = FindingsSummary {
            open: 3,
            ..Default::default()
        };
        findings.by_severity.insert("high".into(), 2);
        findings.by_severity.insert("low".into(), 1);
        findings.by_owasp_nhi.insert("NHI1:2025".into(), 3);
        findings.by_nist_csf.insert("PR.AA-01".into(), 3);
        findings.by_type.insert("orphaned".into(), 2);
        PostureReport {
            generated_at: time::OffsetDateTime::UNIX_EPOCH,
            issuer: "https://steward.example".into(),
            inventory: Inventory {
                identities: 2,
                by_environment: [("prod".to_owned(), 2)].into(),
                ..Default::default()
            },
            hygiene: Hygiene {
                with_active_owner: Share::new(1, 2),
                ..Default::default()
            },
            credential_age: vec![AgeBucket {
                label: "0-7d".into(),
                api_keys: 1,
                public_keys: 0,
            }],
            findings,
            top_risks: vec![TopRisk {
                identity_id: uuid::Uuid::nil(),
                name: "<script>alert(1)</script>|x".into(),
                environment: "prod".into(),
                score: 42,
                factors: vec!["orphaned".into()],
            }],
            exceptions: Default::default(),
            reviews: Default::default(),
        }
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let h = html(&report());
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("<svg") && h.contains("NHI1:2025 Improper Offboarding"));
        assert!(!h.contains("<script"), "no script, and names are escaped");
        assert!(h.contains("&lt;script&gt;"));
        for external in ["src=", "href=", "@import", "url("] {
            assert!(!h.contains(external), "no external asset: {external}");
        }
        assert!(h.contains("50.0 %"));
    }

    #[test]
    fn markdown_has_every_framework_id() {
        let m = markdown(&report());
        for n in 1..=10 {
            assert!(m.contains(&format!("| NHI{n}:2025 |")));
        }
        for n in 1..=5 {
            assert!(m.contains(&format!("| PR.AA-0{n} |")));
        }
        assert!(m.contains("\\|x"), "pipes in cells are escaped");
        assert!(m.contains("Access reviews: not available"));
    }

    #[test]
    fn open_reviews_and_pending_requests_are_reported() {
        let mut r = report();
        r.reviews = steward_proto::findings::ReviewsSummary {
            open: Some(7),
            open_campaigns: 2,
            overdue: 3,
            pending_jit_requests: 1,
        };
        r.exceptions.pending_requests = 4;
        let want = "2 open access-review campaigns with 7 undecided items (3 past their deadline); \
                    1 JIT requests pending approval.";
        for out in [markdown(&r), html(&r)] {
            assert!(out.contains(want), "{out}");
            assert!(out.contains("4 exception requests pending approval"));
        }
    }
}

//! The overview: identity counts by status, kind and environment; open findings by severity and by
//! OWASP NHI id; tokens issued per hour over the last day — with the caching that keeps it cheap.
//!
//! Counts are grouped in the database and kept for [`STATS_TTL`]. Tokens per hour come from the
//! audit log (successful `token.issue` records): an hour's boundaries are found on the time index
//! and its records counted on the (action, seq) index; a finished hour never changes, so it is
//! counted once per process, and the current hour's count only reads the records appended since
//! the last view. So the chart costs one pass over each hour's issuances per process, not per view.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use steward_core::Outcome;
use steward_store::{FindingStat, IdentityStat};
use time::OffsetDateTime;

use crate::console::session::Operator;
use crate::console::view::Chrome;
use crate::console::{Console, ConsoleError, render, svg};
use crate::error::ServiceError;
use crate::state::AppState;

/// How long grouped counts are served from memory.
pub const STATS_TTL: Duration = Duration::from_secs(15);
/// Hours shown in the tokens chart.
pub const HOURS: i64 = 24;
/// The audit action of a token issuance.
const TOKEN_ACTION: &str = "token.issue";

/// The OWASP Non-Human Identities Top 10 (2025).
pub const OWASP_NHI: [(&str, &str); 10] = [
    ("NHI1:2025", "Improper Offboarding"),
    ("NHI2:2025", "Secret Leakage"),
    ("NHI3:2025", "Vulnerable Third-Party NHI"),
    ("NHI4:2025", "Insecure Authentication"),
    ("NHI5:2025", "Overprivileged NHI"),
    ("NHI6:2025", "Insecure Cloud Deployment Configurations"),
    ("NHI7:2025", "Long-Lived Secrets"),
    ("NHI8:2025", "Environment Isolation"),
    ("NHI9:2025", "NHI Reuse"),
    ("NHI10:2025", "Human Use of NHI"),
];

pub const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
const STATUSES: [&str; 5] = [
    "active",
    "pending_approval",
    "suspended",
    "expired",
    "retired",
];

struct Stats {
    identities: Vec<IdentityStat>,
    findings: Vec<FindingStat>,
}

#[derive(Default)]
struct CacheState {
    stats: Option<(Instant, Arc<Stats>)>,
    /// `token.issue` records per finished hour, by the hour's start (Unix seconds).
    finished_hours: BTreeMap<i64, u64>,
    current_hour: Option<CurrentHour>,
}

/// The current hour's running count of issued tokens.
#[derive(Debug, Clone, Copy)]
struct CurrentHour {
    /// The hour's start (Unix seconds).
    hour: i64,
    count: u64,
    /// Records with a seq below this are counted.
    counted_to: u64,
}

/// Overview numbers kept between page views (one per process).
#[derive(Default)]
pub struct OverviewCache(Mutex<CacheState>);

impl OverviewCache {
    async fn stats(&self, app: &AppState) -> Result<Arc<Stats>, ServiceError> {
        if let Some((at, s)) = &self.0.lock().unwrap_or_else(|p| p.into_inner()).stats
            && at.elapsed() < STATS_TTL
        {
            return Ok(s.clone());
        }
        let s = Arc::new(Stats {
            identities: app.store.identity_stats(app.now()).await?,
            findings: app.store.finding_stats().await?,
        });
        self.0.lock().unwrap_or_else(|p| p.into_inner()).stats = Some((Instant::now(), s.clone()));
        Ok(s)
    }

    /// Successful `token.issue` records per hour for the last [`HOURS`] hours, oldest first, the
    /// last one being the current (partial) hour: (hour start, count).
    pub async fn tokens_per_hour(
        &self,
        app: &AppState,
        now: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, u64)>, ServiceError> {
        let this_hour = now.unix_timestamp().div_euclid(3600) * 3600;
        let starts: Vec<i64> = (0..HOURS).rev().map(|i| this_hour - i * 3600).collect();
        let (mut known, current) = {
            let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let known: HashMap<i64, u64> = starts
                .iter()
                .filter_map(|h| c.finished_hours.get(h).map(|n| (*h, *n)))
                .collect();
            let current = c.current_hour.filter(|cur| cur.hour == this_hour);
            (known, current)
        };
        let head = app.store.audit_head().await?.size;
        let seq_at = |h: i64| async move {
            let t = OffsetDateTime::from_unix_timestamp(h).unwrap_or(now);
            Ok::<u64, ServiceError>(app.store.audit_seq_at(t).await?.unwrap_or(head + 1))
        };
        let count = |from: u64, to: u64| async move {
            Ok::<u64, ServiceError>(
                app.store
                    .count_audit_action(TOKEN_ACTION, Some(Outcome::Success), from, to)
                    .await?,
            )
        };
        let mut fresh_finished = Vec::new();
        for &h in &starts[..starts.len() - 1] {
            if known.contains_key(&h) {
                continue;
            }
            let n = count(seq_at(h).await?, seq_at(h + 3600).await?).await?;
            known.insert(h, n);
            fresh_finished.push((h, n));
        }
        // The current hour: only the records appended since the last count are read.
        let current = match current {
            Some(cur) => CurrentHour {
                count: cur.count + count(cur.counted_to, head + 1).await?,
                counted_to: (head + 1).max(cur.counted_to),
                ..cur
            },
            None => {
                let from = seq_at(this_hour).await?;
                CurrentHour {
                    hour: this_hour,
                    count: count(from, head + 1).await?,
                    counted_to: (head + 1).max(from),
                }
            }
        };
        {
            let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
            for (h, n) in fresh_finished {
                c.finished_hours.insert(h, n);
            }
            // Bounded: keep only the hours the chart can still show.
            let oldest = starts[0];
            c.finished_hours.retain(|h, _| *h >= oldest);
            if c.current_hour
                .is_none_or(|old| old.counted_to <= current.counted_to)
            {
                c.current_hour = Some(current);
            }
        }
        Ok(starts
            .iter()
            .map(|h| {
                let t = OffsetDateTime::from_unix_timestamp(*h).unwrap_or(now);
                let n = if *h == this_hour {
                    current.count
                } else {
                    known.get(h).copied().unwrap_or(0)
                };
                (t, n)
            })
            .collect())
    }
}

/// One labelled number of a breakdown.
pub struct Count {
    pub label: String,
    pub detail: String,
    pub value: u64,
    /// Link to the matching listing.
    pub href: String,
}

#[derive(askama::Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    total: u64,
    by_status: Vec<Count>,
    by_kind: Vec<Count>,
    by_env: Vec<Count>,
    open_findings: u64,
    by_severity: Vec<Count>,
    by_owasp: Vec<Count>,
    tokens_24h: u64,
    tokens_table: Vec<Count>,
    status_chart: String,
    kind_chart: String,
    env_chart: String,
    severity_chart: String,
    owasp_chart: String,
    tokens_chart: String,
    ttl_secs: u64,
}

fn sum_by<'a>(items: impl Iterator<Item = (&'a str, u64)>, order: &[&str]) -> Vec<(String, u64)> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for (k, n) in items {
        *m.entry(k.to_owned()).or_default() += n;
    }
    let mut out: Vec<(String, u64)> = order
        .iter()
        .map(|k| ((*k).to_owned(), m.remove(*k).unwrap_or(0)))
        .collect();
    out.extend(m);
    out
}

fn chart_data(counts: &[Count]) -> Vec<(String, u64)> {
    counts.iter().map(|c| (c.label.clone(), c.value)).collect()
}

/// `GET /ui/overview`.
pub async fn page(State(c): State<Console>, op: Operator) -> Result<Response, ConsoleError> {
    let app = &c.app;
    let now = app.now();
    let stats = c.overview.stats(app).await?;
    let hours = c.overview.tokens_per_hour(app, now).await?;

    let total = stats.identities.iter().map(|s| s.count).sum();
    let listing =
        |k: &str, v: &str| format!("/ui/identities{}", crate::console::view::query(&[(k, v)]));
    let counts = |pairs: Vec<(String, u64)>, key: &str| -> Vec<Count> {
        pairs
            .into_iter()
            .map(|(label, value)| Count {
                href: listing(key, &label),
                detail: String::new(),
                label,
                value,
            })
            .collect()
    };
    let by_status = counts(
        sum_by(
            stats
                .identities
                .iter()
                .map(|s| (s.status.as_str(), s.count)),
            &STATUSES,
        ),
        "status",
    );
    let kinds: Vec<&str> = steward_core::IdentityKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let by_kind = counts(
        sum_by(
            stats.identities.iter().map(|s| (s.kind.as_str(), s.count)),
            &kinds,
        ),
        "kind",
    );
    let envs: Vec<&str> = app
        .config
        .registry
        .environments
        .iter()
        .map(String::as_str)
        .collect();
    let by_env = counts(
        sum_by(
            stats
                .identities
                .iter()
                .map(|s| (s.environment.as_str(), s.count)),
            &envs,
        ),
        "environment",
    );

    let open = || stats.findings.iter().filter(|f| f.status == "open");
    let open_findings = open().map(|f| f.count).sum();
    let by_severity: Vec<Count> =
        sum_by(open().map(|f| (f.severity.as_str(), f.count)), &SEVERITIES)
            .into_iter()
            .map(|(label, value)| Count {
                href: "/ui/findings?status=open".into(),
                detail: String::new(),
                label,
                value,
            })
            .collect();
    let nhi_ids: Vec<&str> = OWASP_NHI.iter().map(|(id, _)| *id).collect();
    let by_owasp: Vec<Count> = sum_by(open().map(|f| (f.owasp_nhi.as_str(), f.count)), &nhi_ids)
        .into_iter()
        .map(|(label, value)| Count {
            detail: OWASP_NHI
                .iter()
                .find(|(id, _)| *id == label)
                .map(|(_, name)| (*name).to_owned())
                .unwrap_or_default(),
            href: "/ui/findings?status=open".into(),
            label,
            value,
        })
        .collect();

    let tokens_table: Vec<Count> = hours
        .iter()
        .map(|(t, n)| Count {
            label: format!("{:02}:00", t.hour()),
            detail: crate::console::view::when(*t),
            value: *n,
            href: String::new(),
        })
        .collect();
    let tokens_24h = hours.iter().map(|(_, n)| n).sum();

    let page = OverviewPage {
        chrome: Chrome::new("Overview", "overview", &op),
        status_chart: svg::bar_chart("status", "Identities by status", &chart_data(&by_status)),
        kind_chart: svg::bar_chart("kind", "Identities by kind", &chart_data(&by_kind)),
        env_chart: svg::bar_chart("env", "Identities by environment", &chart_data(&by_env)),
        severity_chart: svg::bar_chart(
            "severity",
            "Open findings by severity",
            &chart_data(&by_severity),
        ),
        owasp_chart: svg::bar_chart(
            "owasp",
            "Open findings by OWASP NHI Top 10 id",
            &chart_data(&by_owasp),
        ),
        tokens_chart: svg::line_chart(
            "tokens",
            "Access tokens issued per hour, last 24 hours (UTC)",
            &tokens_table
                .iter()
                .map(|c| (c.label.clone(), c.value))
                .collect::<Vec<_>>(),
        ),
        total,
        by_status,
        by_kind,
        by_env,
        open_findings,
        by_severity,
        by_owasp,
        tokens_24h,
        tokens_table,
        ttl_secs: STATS_TTL.as_secs(),
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdowns_keep_the_given_order_then_the_rest() {
        let items = [("b", 2u64), ("x", 1), ("a", 3), ("b", 1)];
        assert_eq!(
            sum_by(items.into_iter(), &["a", "b", "c"]),
            vec![
                ("a".to_owned(), 3),
                ("b".to_owned(), 3),
                ("c".to_owned(), 0),
                ("x".to_owned(), 1)
            ]
        );
    }
}

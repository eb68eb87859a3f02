//! Granted versus used entitlements: which of an identity's scopes and audiences its tokens
//! actually carried in a window, the unused difference, and a reduced set that is safe to apply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::Identity;
use crate::usage::{DailyUse, ScopeUse, day_of};

/// Use of one scope or audience within a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Used {
    pub name: String,
    /// Tokens that carried it (exact when the identity's tokens name the same audiences; with
    /// mixed audience sets, a lower bound).
    pub uses: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub last_used: OffsetDateTime,
}

/// Granted, used, unused and suggested, for scopes or for audiences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub granted: Vec<String>,
    /// Used and still granted, by name.
    pub used: Vec<Used>,
    pub unused: Vec<String>,
    /// The reduced set this identity could be given without changing any token it obtained in
    /// the window.
    pub suggested: Vec<String>,
}

impl Grant {
    /// Would applying `suggested` change the grant?
    pub fn changes(&self) -> bool {
        self.suggested != self.granted
    }
}

/// How much the usage in the window says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The identity existed for the whole window and was used in it.
    Sufficient,
    /// The identity is younger than the window: no reduction is suggested yet.
    TooYoung,
    /// The identity was not used in the window (see the `dormant` finding): no reduction is
    /// suggested, since nothing shows what it needs.
    NoUse,
}

/// The entitlement analysis of one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlements {
    pub window_days: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub evidence: Evidence,
    pub scopes: Grant,
    pub audiences: Grant,
    pub default_scopes: Vec<String>,
    pub suggested_default_scopes: Vec<String>,
    /// Tokens issued with no scope at all in the window.
    pub scopeless_uses: u64,
    /// Why the suggestion is what it is.
    pub notes: Vec<String>,
}

/// Aggregated use within a window: per name, (tokens, last use).
pub type UseMap = BTreeMap<String, (u64, OffsetDateTime)>;

/// Folds (scope, audience) pairs into per-scope and per-audience use. A token with several
/// audiences is recorded once per audience, so per scope the largest pair count is taken.
fn fold<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str, u64, OffsetDateTime)>,
) -> (UseMap, UseMap) {
    let mut per_pair: BTreeMap<(&str, &str), (u64, OffsetDateTime)> = BTreeMap::new();
    for (s, a, n, last) in pairs {
        let e = per_pair
            .entry((s, a))
            .or_insert((0, OffsetDateTime::UNIX_EPOCH));
        e.0 += n;
        e.1 = e.1.max(last);
    }
    let (mut scopes, mut auds) = (UseMap::new(), UseMap::new());
    for ((s, a), (n, last)) in per_pair {
        for (map, key) in [(&mut scopes, s), (&mut auds, a)] {
            let e = map
                .entry(key.to_owned())
                .or_insert((0, OffsetDateTime::UNIX_EPOCH));
            e.0 = e.0.max(n);
            e.1 = e.1.max(last);
        }
    }
    (scopes, auds)
}

/// Per-scope and per-audience use from daily rows on or after the window's first day.
pub fn from_daily(rows: &[DailyUse], since: OffsetDateTime) -> (UseMap, UseMap) {
    let first = day_of(since);
    fold(
        rows.iter()
            .filter(|r| r.day >= first)
            .map(|r| (r.scope.as_str(), r.audience.as_str(), r.uses, r.last_used)),
    )
}

/// Per-scope and per-audience use from all-time summaries last used within the window
/// (counts are all-time).
pub fn from_summaries(rows: &[ScopeUse], since: OffsetDateTime) -> (UseMap, UseMap) {
    fold(
        rows.iter()
            .filter(|r| r.last_used >= since)
            .map(|r| (r.scope.as_str(), r.audience.as_str(), r.uses, r.last_used)),
    )
}

fn grant(granted: &[String], used: &UseMap) -> Grant {
    let used_list: Vec<Used> = granted
        .iter()
        .filter_map(|g| {
            used.get(g).map(|(n, last)| Used {
                name: g.clone(),
                uses: *n,
                last_used: *last,
            })
        })
        .collect();
    let unused: Vec<String> = granted
        .iter()
        .filter(|g| !used.contains_key(*g))
        .cloned()
        .collect();
    Grant {
        granted: granted.to_vec(),
        suggested: used_list.iter().map(|u| u.name.clone()).collect(),
        used: used_list,
        unused,
    }
}

/// Analyses `identity`'s grant against its use (`scopes`, `audiences`: use within the window
/// starting `window_days` before `now`).
///
/// The suggestion never breaks what worked in the window:
/// - with too little evidence (younger than the window, or unused in it) it suggests no change;
/// - scopes: the used ones. Tokens requested without a scope get the default scopes, and those
///   tokens record the defaults as used, so a default scope is dropped only when no token
///   carried it. If nothing would remain but the identity has default scopes, the defaults are
///   kept, so scope-less requests keep getting what they get today;
/// - audiences: the used ones. A token requested without an audience names every audience of
///   the identity, so those are all recorded as used. If no granted audience was used (tokens
///   went to the issuer), the audiences are kept, since removing all of them changes the
///   default audience.
pub fn analyse(
    identity: &Identity,
    scopes: &UseMap,
    audiences: &UseMap,
    window_days: u32,
    now: OffsetDateTime,
) -> Entitlements {
    let since = now - Duration::days(i64::from(window_days));
    let mut notes = Vec::new();
    let scopeless_uses = scopes.get("").map_or(0, |(n, _)| *n);
    let mut s = grant(&identity.scopes, scopes);
    let mut a = grant(&identity.audiences, audiences);
    let any_use = !scopes.is_empty() || !audiences.is_empty();
    let evidence = if identity.created_at > since {
        Evidence::TooYoung
    } else if !any_use {
        Evidence::NoUse
    } else {
        Evidence::Sufficient
    };
    match evidence {
        Evidence::TooYoung => {
            notes.push(format!(
                "the identity is younger than the {window_days}-day window; no reduction is suggested yet"
            ));
            s.suggested = s.granted.clone();
            a.suggested = a.granted.clone();
        }
        Evidence::NoUse => {
            notes.push(format!(
                "no token was issued in the last {window_days} days; no reduction is suggested (see the dormant finding)"
            ));
            s.suggested = s.granted.clone();
            a.suggested = a.granted.clone();
        }
        Evidence::Sufficient => {
            if s.suggested.is_empty() && !identity.default_scopes.is_empty() {
                notes.push(
                    "no granted scope was used; the default scopes are kept so that requests without a scope keep working"
                        .into(),
                );
                s.suggested = identity.default_scopes.clone();
            }
            if a.suggested.is_empty() && !a.granted.is_empty() {
                notes.push(
                    "no granted audience was used; the audiences are kept, since removing all of them changes the default audience"
                        .into(),
                );
                a.suggested = a.granted.clone();
            }
        }
    }
    let suggested_default_scopes = identity
        .default_scopes
        .iter()
        .filter(|d| s.suggested.contains(d))
        .cloned()
        .collect();
    Entitlements {
        window_days,
        since,
        evidence,
        scopes: s,
        audiences: a,
        default_scopes: identity.default_scopes.clone(),
        suggested_default_scopes,
        scopeless_uses,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{identity, t0};
    use uuid::Uuid;

    fn daily(day_offset: i64, scope: &str, aud: &str, uses: u64) -> DailyUse {
        DailyUse {
            identity_id: Uuid::nil(),
            day: day_of(t0()) + day_offset,
            scope: scope.into(),
            audience: aud.into(),
            uses,
            last_used: day_start(day_of(t0()) + day_offset) + Duration::hours(1),
        }
    }
    use crate::usage::day_start;

    #[test]
    fn used_unused_and_suggested() {
        let mut i = identity();
        i.created_at = t0() - Duration::days(200);
        let rows = vec![
            daily(-1, "p:read", "https://a", 5),
            daily(-1, "p:read", "https://b", 5),
            daily(-2, "p:read", "https://a", 3),
            daily(-2, "p:read", "https://b", 3),
            daily(-100, "p:write", "https://a", 9), // outside the window
        ];
        let (s, a) = from_daily(&rows, t0() - Duration::days(90));
        let e = analyse(&i, &s, &a, 90, t0());
        assert_eq!(e.evidence, Evidence::Sufficient);
        assert_eq!(e.scopes.unused, vec!["p:write"]);
        assert_eq!(e.scopes.suggested, vec!["p:read"]);
        // Each token named both audiences: counted once, not twice.
        assert_eq!(e.scopes.used[0].uses, 8);
        assert_eq!(e.audiences.suggested, vec!["https://a", "https://b"]);
        assert!(e.scopes.changes() && !e.audiences.changes());
        assert_eq!(e.suggested_default_scopes, vec!["p:read"]);
    }

    #[test]
    fn never_suggests_breaking_defaults_or_audiences() {
        let mut i = identity();
        i.created_at = t0() - Duration::days(200);
        // Only scope-less tokens to the issuer: no granted scope or audience was used.
        i.default_scopes = vec!["p:read".into()];
        let rows = vec![daily(-1, "", "https://issuer", 4)];
        let (s, a) = from_daily(&rows, t0() - Duration::days(90));
        let e = analyse(&i, &s, &a, 90, t0());
        assert_eq!(e.scopes.suggested, vec!["p:read"]);
        assert_eq!(e.audiences.suggested, i.audiences);
        assert_eq!(e.scopeless_uses, 4);
        assert_eq!(e.notes.len(), 2);
        // Without defaults, an empty scope set changes no token of the window.
        i.default_scopes.clear();
        let e = analyse(&i, &s, &a, 90, t0());
        assert!(e.scopes.suggested.is_empty());
    }

    #[test]
    fn little_evidence_suggests_no_change() {
        let mut i = identity();
        i.created_at = t0() - Duration::days(10);
        let e = analyse(&i, &UseMap::new(), &UseMap::new(), 90, t0());
        assert_eq!(e.evidence, Evidence::TooYoung);
        assert_eq!(e.scopes.suggested, i.scopes);
        i.created_at = t0() - Duration::days(100);
        let e = analyse(&i, &UseMap::new(), &UseMap::new(), 90, t0());
        assert_eq!(e.evidence, Evidence::NoUse);
        assert!(!e.scopes.changes());
    }

    #[test]
    fn summaries_filter_by_last_use() {
        let rows = vec![
            ScopeUse {
                identity_id: Uuid::nil(),
                scope: "p:read".into(),
                audience: "https://a".into(),
                uses: 10,
                first_used: t0() - Duration::days(300),
                last_used: t0() - Duration::days(1),
            },
            ScopeUse {
                identity_id: Uuid::nil(),
                scope: "p:write".into(),
                audience: "https://a".into(),
                uses: 10,
                first_used: t0() - Duration::days(300),
                last_used: t0() - Duration::days(91),
            },
        ];
        let (s, _) = from_summaries(&rows, t0() - Duration::days(90));
        assert!(s.contains_key("p:read") && !s.contains_key("p:write"));
    }
}

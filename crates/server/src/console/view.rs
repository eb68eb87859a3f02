//! Presentation helpers shared by the console's pages: the page chrome (navigation, operator,
//! sign-out token), time formatting, query-string building and a small cache of owner names.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use steward_store::OwnerQuery;
use time::OffsetDateTime;
use uuid::Uuid;

use super::session::Operator;
use crate::state::AppState;

/// One entry of the main navigation.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The console's sections: (key, path, label).
const SECTIONS: [(&str, &str, &str); 7] = [
    ("overview", "/ui/overview", "Overview"),
    ("inventory", "/ui/identities", "Inventory"),
    ("findings", "/ui/findings", "Findings"),
    ("reviews", "/ui/reviews", "Access reviews"),
    ("jit", "/ui/jit", "JIT requests"),
    ("audit", "/ui/audit", "Audit log"),
    ("trust", "/ui/trust-policies", "Trust policies"),
];

/// What every signed-in page shows around its content.
pub struct Chrome {
    pub title: String,
    pub nav: Vec<NavItem>,
    /// The signed-in identity's name and id.
    pub operator: String,
    pub operator_id: String,
    /// The session's CSRF token, for the sign-out form (and every other form of the page).
    pub csrf: String,
}

impl Chrome {
    pub fn new(title: impl Into<String>, section: &str, op: &Operator) -> Self {
        Self {
            title: title.into(),
            nav: SECTIONS
                .iter()
                .map(|(key, href, label)| NavItem {
                    href,
                    label,
                    current: *key == section,
                })
                .collect(),
            operator: op.identity.name.clone(),
            operator_id: op.identity.id.to_string(),
            csrf: op.csrf.clone(),
        }
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `2031-05-06 07:08:09 UTC`.
pub fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A duration in the largest whole unit: `45 s`, `3 min`, `5 h`, `12 d`.
pub fn span(d: time::Duration) -> String {
    let s = d.whole_seconds().unsigned_abs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `3 d ago` or `in 5 h`, relative to `now`.
pub fn relative(now: OffsetDateTime, t: OffsetDateTime) -> String {
    if t <= now {
        format!("{} ago", span(now - t))
    } else {
        format!("in {}", span(t - now))
    }
}

/// A query string from the non-empty pairs, `?`-prefixed (empty when there are none).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
        any = true;
    }
    if any {
        format!("?{}", s.finish())
    } else {
        String::new()
    }
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// How long owner names are served from memory before they are read again.
const OWNER_TTL: Duration = Duration::from_secs(30);
/// Most owner names kept; beyond it the cache starts over.
const OWNER_CAP: usize = 50_000;
/// Owners offered in the inventory's owner filter.
pub const OWNER_CHOICES: u32 = 1000;

#[derive(Default)]
struct OwnerMap {
    loaded: Option<Instant>,
    names: HashMap<Uuid, String>,
    /// The first `OWNER_CHOICES` owners, by name.
    choices: Vec<(Uuid, String)>,
}

/// Owner names for tables and the owner filter, refreshed every 30 s (names rarely change).
#[derive(Default)]
pub struct OwnerNames(Mutex<OwnerMap>);

impl OwnerNames {
    fn fresh(m: &OwnerMap) -> bool {
        m.loaded.is_some_and(|t| t.elapsed() < OWNER_TTL)
    }

    /// The owners offered in the filter: up to [`OWNER_CHOICES`], sorted by name.
    pub async fn choices(&self, app: &AppState) -> Vec<(Uuid, String)> {
        {
            let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if Self::fresh(&m) {
                return m.choices.clone();
            }
        }
        let page = app
            .store
            .list_owners(&OwnerQuery {
                limit: OWNER_CHOICES,
                ..Default::default()
            })
            .await;
        let mut choices: Vec<(Uuid, String)> = match page {
            Ok(p) => p.items.into_iter().map(|o| (o.id, o.name)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not list owners for the console");
                return Vec::new();
            }
        };
        choices.sort_by(|a, b| a.1.cmp(&b.1));
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.names.len() > OWNER_CAP {
            m.names.clear();
        }
        for (id, name) in &choices {
            m.names.insert(*id, name.clone());
        }
        m.choices = choices.clone();
        m.loaded = Some(Instant::now());
        choices
    }

    /// Names of the given owners (an owner that cannot be read shows as its id).
    pub async fn names(&self, app: &AppState, ids: &[Uuid]) -> HashMap<Uuid, String> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if !Self::fresh(&m) {
                m.names.clear();
                m.choices.clear();
                m.loaded = Some(Instant::now());
            }
            for id in ids {
                match m.names.get(id) {
                    Some(n) => {
                        out.insert(*id, n.clone());
                    }
                    None if !missing.contains(id) => missing.push(*id),
                    None => {}
                }
            }
        }
        for id in missing {
            let name = match app.store.get_owner(id).await {
                Ok(Some(o)) => o.name,
                _ => id.to_string(),
            };
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if m.names.len() < OWNER_CAP {
                m.names.insert(id, name.clone());
            }
            out.insert(id, name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_spans() {
        let t = time::macros::datetime!(2031-05-06 07:08:09.5 UTC);
        assert_eq!(when(t), "2031-05-06 07:08:09 UTC");
        assert_eq!(span(time::Duration::seconds(59)), "59 s");
        assert_eq!(span(time::Duration::minutes(5)), "5 min");
        assert_eq!(span(time::Duration::hours(5)), "5 h");
        assert_eq!(span(time::Duration::days(40)), "40 d");
        assert_eq!(relative(t, t - time::Duration::days(3)), "3 d ago");
        assert_eq!(relative(t, t + time::Duration::hours(3)), "in 3 h");
    }

    #[test]
    fn queries_skip_empty_values_and_encode() {
        assert_eq!(query(&[]), "");
        assert_eq!(query(&[("a", ""), ("b", "")]), "");
        assert_eq!(query(&[("q", "a b&c"), ("x", "")]), "?q=a+b%26c");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}

/// Display names of identities, each looked up once per page (the registry cache answers most).
#[derive(Default)]
pub struct IdentityNames(HashMap<Uuid, String>);

impl IdentityNames {
    /// The name of `id`, or the id itself when it is gone.
    pub async fn get(&mut self, app: &AppState, id: Uuid) -> String {
        if let Some(n) = self.0.get(&id) {
            return n.clone();
        }
        let name = match app.identity(id).await {
            Ok(Some(i)) => i.name.clone(),
            _ => id.to_string(),
        };
        self.0.insert(id, name.clone());
        name
    }
}

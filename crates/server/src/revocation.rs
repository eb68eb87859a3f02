//! The in-memory mirror of revoked access tokens, so that verifying a token costs no database read.
//! Loaded at start, updated by local revocations and other nodes' notices, bounded in size.
//!
//! The mirror answers "is this jti revoked?" only while it is *complete*: it was loaded from the
//! store and has never had to drop an entry for lack of room. Otherwise (before the first load,
//! after an overflow, while a reload after missed notices is pending) it answers "unknown" and the
//! caller asks the store, so a full or stale mirror costs speed, never correctness.

use std::collections::HashMap;
use std::sync::RwLock;

/// Most revoked tokens kept in memory (each a few dozen bytes).
pub const CAPACITY: usize = 1_000_000;

#[derive(Default)]
struct Mirror {
    /// jti → expiry (unix seconds).
    revoked: HashMap<String, i64>,
    complete: bool,
}

/// Revoked, still-unexpired access tokens by `jti`.
pub struct RevokedTokens {
    inner: RwLock<Mirror>,
    capacity: usize,
}

impl Default for RevokedTokens {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl RevokedTokens {
    /// An empty, incomplete mirror (every answer is "unknown" until [`Self::load`]).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: RwLock::new(Mirror::default()),
            capacity,
        }
    }

    /// Replaces the contents with what the store holds. `entries` must be every unexpired
    /// revoked token unless `truncated`, in which case the mirror stays incomplete.
    pub fn load(&self, entries: impl IntoIterator<Item = (String, i64)>, truncated: bool) {
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        m.revoked = entries.into_iter().take(self.capacity).collect();
        m.complete = !truncated && m.revoked.len() < self.capacity;
    }

    /// Forgets completeness: answers are "unknown" until the next [`Self::load`].
    pub fn mark_stale(&self) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .complete = false;
    }

    /// Records a revocation (this node's, or another node's notice). Expired entries are pruned
    /// first when the mirror is full; if it is still full the mirror becomes incomplete.
    pub fn insert(&self, jti: &str, expires_at: i64, now: i64) {
        if expires_at <= now {
            return;
        }
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if m.revoked.contains_key(jti) {
            return;
        }
        if m.revoked.len() >= self.capacity {
            m.revoked.retain(|_, exp| *exp > now);
        }
        if m.revoked.len() >= self.capacity {
            m.complete = false;
            return;
        }
        m.revoked.insert(jti.to_owned(), expires_at);
    }

    /// `Some(true)` if revoked, `Some(false)` if certainly not, `None` if the store must be asked.
    pub fn check(&self, jti: &str) -> Option<bool> {
        let m = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if m.revoked.contains_key(jti) {
            Some(true)
        } else if m.complete {
            Some(false)
        } else {
            None
        }
    }

    /// Drops entries whose token has expired (an expired token fails verification anyway).
    pub fn prune(&self, now: i64) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .revoked
            .retain(|_, exp| *exp > now);
    }

    /// Whether answers come from memory alone.
    pub fn is_complete(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .complete
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revoked
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_loaded() {
        let r = RevokedTokens::with_capacity(4);
        assert_eq!(r.check("a"), None);
        r.insert("a", 100, 10);
        assert_eq!(r.check("a"), Some(true));
        assert_eq!(r.check("b"), None);
        r.load([("a".to_owned(), 100)], false);
        assert_eq!(r.check("a"), Some(true));
        assert_eq!(r.check("b"), Some(false));
    }

    #[test]
    fn truncated_load_stays_incomplete() {
        let r = RevokedTokens::with_capacity(4);
        r.load([("a".to_owned(), 100)], true);
        assert_eq!(r.check("a"), Some(true));
        assert_eq!(r.check("b"), None);
    }

    #[test]
    fn overflow_prunes_expired_then_gives_up_completeness() {
        let r = RevokedTokens::with_capacity(2);
        r.load(std::iter::empty(), false);
        r.insert("a", 20, 10);
        r.insert("b", 100, 10);
        // Full; "a" has expired by now = 30, so it makes room.
        r.insert("c", 100, 30);
        assert_eq!(r.check("c"), Some(true));
        assert_eq!(r.check("z"), Some(false));
        // Full with live entries: the next one cannot be kept, so answers become "unknown".
        r.insert("d", 100, 30);
        assert_eq!(r.check("d"), None);
        assert_eq!(r.check("z"), None);
    }

    #[test]
    fn already_expired_revocations_are_not_kept_and_stale_means_unknown() {
        let r = RevokedTokens::with_capacity(4);
        r.load(std::iter::empty(), false);
        r.insert("old", 5, 10);
        assert_eq!(r.check("old"), Some(false));
        r.insert("x", 50, 10);
        r.prune(60);
        assert!(r.is_empty());
        r.mark_stale();
        assert_eq!(r.check("x"), None);
    }

    #[test]
    fn a_load_at_capacity_is_incomplete() {
        let r = RevokedTokens::with_capacity(2);
        r.load([("a".to_owned(), 100), ("b".to_owned(), 100)], false);
        assert_eq!(r.check("q"), None);
    }
}

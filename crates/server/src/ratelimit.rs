//! Failed-authentication limiter: counts failures per key (client id, source address) in a window,
//! and locks the key out once the limit is reached. Bounded in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most keys tracked at once; beyond it, stale entries are swept and then the oldest dropped.
const MAX_KEYS: usize = 100_000;

struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// How many keys `entries` holds, kept in step under its lock: while it is 0 (no recent
    /// failure anywhere, the common case) a request needs neither the lock nor its keys.
    tracked: AtomicUsize,
}

impl FailureLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            entries: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
        }
    }

    /// Whether no key has a failure on record: then no key is locked out, and a success has
    /// nothing to clear.
    pub fn is_clear(&self) -> bool {
        self.tracked.load(Ordering::Acquire) == 0
    }

    /// `Err(retry_after)` while `key` is locked out. While no failure is on record anywhere
    /// ([`Self::is_clear`]), the key is not even formatted and the lock not taken.
    pub fn check(&self, key: impl std::fmt::Display) -> Result<(), Duration> {
        if self.is_clear() {
            return Ok(());
        }
        let key = key.to_string();
        let now = Instant::now();
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns `Err(retry_after)` if this failure triggered (or extends) a lock-out.
    pub fn record_failure(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, e| {
                now.duration_since(e.window_start) < window
                    || e.locked_until.is_some_and(|u| u > now)
            });
            if map.len() >= MAX_KEYS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.window_start)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let e = map.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
        });
        if now.duration_since(e.window_start) >= self.window {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        if e.failures >= self.limit {
            let until = now + self.window;
            e.locked_until = Some(until);
            self.tracked.store(map.len(), Ordering::Release);
            return Err(self.window);
        }
        self.tracked.store(map.len(), Ordering::Release);
        Ok(())
    }

    /// Forgets `key`'s failures, unless it is locked out. Free while [`Self::is_clear`].
    pub fn record_success(&self, key: impl std::fmt::Display) {
        if self.is_clear() {
            return;
        }
        let key = key.to_string();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&key).is_some_and(|e| e.locked_until.is_none()) {
            map.remove(&key);
            self.tracked.store(map.len(), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_limit_and_not_before() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        assert!(l.record_failure("c").is_ok());
        assert!(l.record_failure("c").is_ok());
        assert!(l.check("c").is_ok());
        assert!(l.record_failure("c").is_err());
        assert!(l.check("c").is_err());
        // Success while locked does not unlock.
        l.record_success("c");
        assert!(l.check("c").is_err());
        // Other keys are unaffected.
        assert!(l.check("d").is_ok());
    }

    #[test]
    fn clear_only_while_no_failure_is_on_record() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        assert!(l.is_clear());
        assert!(l.record_failure("c").is_ok());
        assert!(!l.is_clear());
        l.record_success("c");
        assert!(l.is_clear(), "a success clears the only failure on record");
        assert!(l.record_failure("c").is_ok());
        assert!(l.record_failure("c").is_ok());
        assert!(l.record_failure("c").is_err());
        l.record_success("c");
        assert!(!l.is_clear(), "a lock-out stays on record");
    }
}

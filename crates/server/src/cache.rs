//! Bounded read-through caches of identities and credentials for the token path.
//! Local writes invalidate at once; entries from other nodes' writes age out after the configured TTL.

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

/// A bounded cache whose entries optionally expire after `ttl`.
pub struct TtlCache<K, V> {
    inner: Cache<K, (Arc<V>, Instant)>,
    ttl: Option<Duration>,
}

impl<K: Eq + Hash + Clone, V> TtlCache<K, V> {
    pub fn new(capacity: usize, ttl: Option<Duration>) -> Self {
        Self {
            inner: Cache::new(capacity),
            ttl,
        }
    }

    pub fn get(&self, k: &K) -> Option<Arc<V>> {
        let (v, at) = self.inner.get(k)?;
        match self.ttl {
            Some(ttl) if at.elapsed() > ttl => {
                self.inner.remove(k);
                None
            }
            _ => Some(v),
        }
    }

    pub fn insert(&self, k: K, v: Arc<V>) {
        self.inner.insert(k, (v, Instant::now()));
    }

    pub fn remove(&self, k: &K) {
        self.inner.remove(k);
    }

    pub fn clear(&self) {
        self.inner.clear();
    }
}

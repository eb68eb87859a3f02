//! Single-node duties in a cluster: a node runs a singleton background duty (key rotation, CA
//! rollover, checkpoints, purges, findings) only while it holds the duty's lease in the database.
//!
//! Every node runs the same jobs; each tick, a job calls [`Leases::hold`], which acquires the
//! lease or renews the one this node has, and skips the tick when another node holds it. A holder
//! that dies stops renewing, and another node takes over once the lease expires. Writes of a duty
//! carry the lease's epoch as a fence ([`Fence::mutation`], checked inside the write's own
//! transaction), so a node that was paused past its lease (GC, VM freeze, network partition)
//! and has not noticed yet cannot write: its change fails as `Stale` and nothing of it commits.
//! On SQLite (one node) the same code runs and the lease is simply always this node's.
//!
//! [`spawn_singleton`] is the generic form for new duties (the findings job, for example).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use steward_store::{Lease, Mutation, Store, StoreError};
use time::{Duration, OffsetDateTime};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::state::AppState;

/// Lease names of the duties that exist today.
pub mod duty {
    /// Creating the next token-signing key (`keys::ensure_schedule`).
    pub const SIGNING_KEYS: &str = "signing-keys";
    /// Deleting expired one-time values and revoked-token entries.
    pub const PURGE: &str = "purge";
    /// Signing audit checkpoints on schedule.
    pub const AUDIT_CHECKPOINT: &str = "audit-checkpoint";
    /// Automatic issuing-CA rollover and removal of expired PKI records.
    pub const PKI: &str = "pki";
}

/// How long a lease lasts for a duty that runs every `period`: two missed ticks plus 10 s, so a
/// live holder always renews in time and a dead one is replaced after at most that long.
pub fn ttl_for(period: StdDuration) -> Duration {
    let period = Duration::try_from(period).unwrap_or(Duration::HOUR);
    period * 2 + Duration::seconds(10)
}

/// Proof that this node held lease `name` at `epoch`: put [`Fence::mutation`] first in every
/// change the duty commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    name: String,
    epoch: i64,
}

impl Fence {
    /// The store-side check that refuses the change unless the lease is still at this epoch.
    pub fn mutation(&self) -> Mutation {
        Mutation::CheckLease {
            name: self.name.clone(),
            epoch: self.epoch,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }
}

/// This node's leases: its holder id and the leases it believes it holds.
pub struct Leases {
    holder: String,
    held: Mutex<HashMap<String, Lease>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl Leases {
    pub fn new(holder: impl Into<String>) -> Self {
        Self {
            holder: holder.into(),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A holder id unique to this process: host name, listen address, process id and a random
    /// suffix (a restarted node is a new holder, so it never inherits a fence by accident).
    pub fn node_holder_id(listen: std::net::SocketAddr) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().chars().take(64).collect::<String>())
            .filter(|h| !h.is_empty() && !h.contains('\0'))
            .unwrap_or_else(|| "node".into());
        format!(
            "{host}/{listen}/{}/{}",
            std::process::id(),
            steward_crypto::rand::token(6)
        )
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The leases this node believes it holds (it may have lost one it has not tried to renew).
    pub fn held(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self.map().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Acquires lease `name` for `ttl`, or renews it when this node has it; `Some(fence)` while
    /// this node holds it, `None` while another node does. On a store error this node does not
    /// know whether it holds the lease, and the caller must skip the duty.
    pub async fn hold(
        &self,
        store: &dyn Store,
        name: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Fence>, StoreError> {
        let known = self.map().get(name).cloned();
        let renewed = match &known {
            Some(lease) => store.renew_lease(lease, ttl, now).await?,
            None => None,
        };
        let current = match renewed {
            Some(l) => Some(l),
            None => {
                store
                    .try_acquire_lease(name, &self.holder, ttl, now)
                    .await?
            }
        };
        let mut map = self.map();
        match (&known, &current) {
            (Some(k), Some(c)) if k.epoch != c.epoch => {
                tracing::warn!(lease = name, epoch = c.epoch, "lease lost and taken again")
            }
            (None, Some(c)) => {
                tracing::info!(lease = name, epoch = c.epoch, holder = %self.holder, "lease acquired")
            }
            (Some(k), None) => {
                tracing::warn!(lease = name, epoch = k.epoch, "lease lost to another node")
            }
            _ => {}
        }
        metrics::gauge!("steward_lease_held", "lease" => name.to_owned())
            .set(if current.is_some() { 1.0 } else { 0.0 });
        Ok(match current {
            Some(lease) => {
                let fence = Fence {
                    name: lease.name.clone(),
                    epoch: lease.epoch,
                };
                map.insert(name.to_owned(), lease);
                Some(fence)
            }
            None => {
                map.remove(name);
                None
            }
        })
    }

    /// Like [`Leases::hold`], but a store error is logged and counts as "not held".
    pub async fn hold_or_skip(
        &self,
        store: &dyn Store,
        name: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Option<Fence> {
        match self.hold(store, name, ttl, now).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "cannot check the lease; skipping the duty");
                None
            }
        }
    }

    /// Gives every lease of this node up (graceful shutdown), so other nodes take over at once.
    pub async fn release_all(&self, store: &dyn Store) {
        let leases: Vec<Lease> = self.map().drain().map(|(_, l)| l).collect();
        for lease in leases {
            match store.release_lease(&lease).await {
                Ok(_) => tracing::info!(lease = %lease.name, "lease released"),
                Err(e) => {
                    tracing::warn!(lease = %lease.name, error = %e, "cannot release the lease")
                }
            }
        }
    }
}

/// Runs `duty` every `period` on whichever node holds lease `name`. The duty gets the fence to
/// put first in each change it commits.
pub fn spawn_singleton<F, Fut>(
    state: AppState,
    name: &'static str,
    period: StdDuration,
    duty: F,
) -> JoinHandle<()>
where
    F: Fn(AppState, Fence) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let ttl = ttl_for(period);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(fence) = state
                .leases
                .hold_or_skip(state.store.as_ref(), name, ttl, state.now())
                .await
            {
                duty(state.clone(), fence).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_outlives_two_ticks() {
        assert_eq!(ttl_for(StdDuration::from_secs(60)), Duration::seconds(130));
        assert_eq!(ttl_for(StdDuration::from_secs(5)), Duration::seconds(20));
    }

    #[test]
    fn holder_ids_are_unique_per_process_start() {
        let addr = "127.0.0.1:7443".parse().unwrap();
        let (a, b) = (Leases::node_holder_id(addr), Leases::node_holder_id(addr));
        assert_ne!(a, b);
        assert!(a.contains("/127.0.0.1:7443/"), "{a}");
        assert!(a.len() <= 200);
    }

    #[test]
    fn fence_is_a_check_lease_mutation() {
        let f = Fence {
            name: "pki".into(),
            epoch: 7,
        };
        assert!(matches!(
            f.mutation(),
            Mutation::CheckLease { ref name, epoch: 7 } if name == "pki"
        ));
    }
}

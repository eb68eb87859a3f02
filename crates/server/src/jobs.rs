//! Background jobs: key-ring refresh and rotation, usage flushing, checkpoints, expiry purges,
//! and readiness tracking. Every job tolerates store errors and retries on its next tick.

use std::time::Duration;

use steward_store::{Change, Mutation};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::state::AppState;

/// How often each node extends its Merkle tree of the audit log to the log's head.
const AUDIT_TREE_PERIOD: Duration = Duration::from_secs(10);

pub fn spawn_all(state: &AppState, schedule: crate::keys::Schedule) -> Vec<JoinHandle<()>> {
    vec![
        // Keeps the ring current when no token is being signed (see `Inner::signing_ring`).
        spawn_every(state.clone(), Duration::from_secs(1), |s| async move {
            s.signing_ring().await;
        }),
        // Readiness follows the database (see `health`).
        crate::health::spawn_watch(state.clone()),
        // Single-node duties: only the node holding the lease acts (see `leases`).
        crate::leases::spawn_singleton(
            state.clone(),
            crate::leases::duty::SIGNING_KEYS,
            Duration::from_secs(60),
            move |s, fence| async move {
                let now = s.now();
                match crate::keys::ensure_schedule_fenced(
                    s.store.as_ref(),
                    &s.master,
                    schedule,
                    now,
                    Some(&fence),
                )
                .await
                {
                    Ok(true) => {
                        if let Err(e) = s.reload_ring().await {
                            tracing::warn!(error = %e, "key ring reload failed");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "signing-key rotation check failed"),
                }
            },
        ),
        crate::leases::spawn_singleton(
            state.clone(),
            crate::leases::duty::PURGE,
            Duration::from_secs(60),
            |s, _fence| async move {
                // Deleting expired rows twice is harmless; the lease only saves the work.
                if let Err(e) = s.store.purge_expired(s.now()).await {
                    tracing::warn!(error = %e, "purging expired one-time values failed");
                }
                s.revoked.prune(s.now().unix_timestamp());
                if !s.revoked.is_complete()
                    && let Err(e) = s.reload_revoked().await
                {
                    tracing::warn!(error = %e, "reloading revoked tokens failed");
                }
            },
        ),
        spawn_every(state.clone(), Duration::from_secs(5), |s| async move {
            flush_usage(&s).await
        }),
        // Every node keeps its Merkle tree of the log current, a little at a time, so that
        // checkpoints are cheap on whichever node signs them.
        spawn_every(state.clone(), AUDIT_TREE_PERIOD, |s| async move {
            if let Err(e) = s.advance_audit_tree().await {
                tracing::warn!(error = %e, "extending the audit Merkle tree failed");
            }
        }),
        crate::leases::spawn_singleton(
            state.clone(),
            crate::leases::duty::AUDIT_CHECKPOINT,
            Duration::from_secs(state.config.checkpoint_interval_secs.max(1)),
            |s, fence| async move {
                if let Err(e) = s.checkpoint_fenced(Some(&fence)).await {
                    tracing::warn!(error = %e, "audit checkpoint failed");
                }
            },
        ),
    ]
}

/// Writes credential last-use times gathered on the token path, in one batch.
pub async fn flush_usage(s: &AppState) {
    crate::usage::flush(s).await;
    let usage = s.take_usage();
    if usage.is_empty() {
        return;
    }
    let mut change = Change::new();
    for (id, used_at) in &usage {
        change = change.with(Mutation::TouchCredential {
            id: *id,
            used_at: *used_at,
        });
    }
    if let Err(e) = s.store.commit(change).await {
        tracing::warn!(error = %e, n = usage.len(), "could not record credential use; will retry");
        for (id, at) in usage {
            s.record_use(id, at);
        }
    }
}

fn spawn_every<F, Fut>(state: AppState, period: Duration, f: F) -> JoinHandle<()>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            f(state.clone()).await;
        }
    })
}

/// Applies change notices from other nodes to this node's caches (PostgreSQL `LISTEN/NOTIFY`).
pub fn spawn_invalidator(
    state: AppState,
    mut rx: tokio::sync::broadcast::Receiver<steward_store::Notice>,
) -> JoinHandle<()> {
    use steward_store::Notice;
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        loop {
            let reload = match rx.recv().await {
                Ok(Notice::Identity(id)) => {
                    state.invalidate_identity(id);
                    false
                }
                Ok(Notice::Credential(_) | Notice::CredentialsOf(_)) => {
                    state.invalidate_all_credentials();
                    false
                }
                Ok(Notice::Keys) => true,
                Ok(Notice::TokenRevoked { jti, expires_at }) => {
                    let now = state.now().unix_timestamp();
                    state.revoked.insert(&jti, expires_at, now);
                    false
                }
                Ok(Notice::TrustPolicies) => {
                    state.federation.invalidate();
                    false
                }
                Ok(Notice::JitGrants) => {
                    state.jit.invalidate();
                    false
                }
                // Notices may have been missed: forget everything cached.
                Ok(Notice::Resync) | Err(RecvError::Lagged(_)) => {
                    state.identities.clear();
                    state.invalidate_all_credentials();
                    state.revoked.mark_stale();
                    if let Err(e) = state.reload_revoked().await {
                        tracing::warn!(error = %e, "revoked-token reload after missed notices failed; asking the store until it succeeds");
                    }
                    state.federation.invalidate();
                    state.jit.invalidate();
                    true
                }
                Err(RecvError::Closed) => return,
            };
            if reload && let Err(e) = state.reload_ring().await {
                tracing::warn!(error = %e, "key ring reload after a change notice failed");
            }
        }
    })
}

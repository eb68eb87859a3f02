//! Leases for single-node duties: contention between holders (on one store and on two stores
//! sharing a database, as two nodes do), expiry and takeover, renewal, release, and the epoch fence
//! that refuses a deposed holder's writes atomically.

use std::sync::Arc;

use steward_store::{Change, Lease, Mutation, Store, StoreError};
use time::Duration;

use crate::support::{TestDb, at, event, verify_chain};

const TTL: Duration = Duration::seconds(30);

async fn acquire(store: &Arc<dyn Store>, name: &str, holder: &str, secs: i64) -> Option<Lease> {
    store
        .try_acquire_lease(name, holder, TTL, at(secs))
        .await
        .expect("try_acquire_lease")
}

fn fenced(lease: &Lease, action: &str) -> Change {
    Change::new()
        .with(Mutation::CheckLease {
            name: lease.name.clone(),
            epoch: lease.epoch,
        })
        .with(Mutation::PutSetting {
            key: format!("done-by:{action}"),
            value: lease.holder.clone(),
        })
        .audit(event(action))
}

pub async fn lease_contention_has_one_winner(store: Arc<dyn Store>) {
    // Many holders race for one free lease: exactly one wins, and the lease names it.
    let mut tries = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = Arc::clone(&store);
        tries.spawn(async move { acquire(&store, "keys", &format!("node-{n}"), 0).await });
    }
    let won: Vec<Lease> = tries.join_all().await.into_iter().flatten().collect();
    assert_eq!(won.len(), 1, "exactly one holder wins: {won:?}");
    let winner = &won[0];
    assert_eq!(winner.epoch, 1);
    assert_eq!(winner.acquired_at, at(0));
    assert_eq!(winner.expires_at, at(0) + TTL);
    assert_eq!(
        store.get_lease("keys").await.unwrap().as_ref(),
        Some(winner)
    );
    // While it is live, nobody else gets it; other names are independent.
    assert_eq!(acquire(&store, "keys", "intruder", 29).await, None);
    let other = acquire(&store, "checkpoints", "intruder", 29)
        .await
        .unwrap();
    assert_eq!((other.holder.as_str(), other.epoch), ("intruder", 1));
    assert_eq!(store.get_lease("never").await.unwrap(), None);
}

pub async fn lease_expires_and_is_taken_over_with_a_new_epoch(store: Arc<dyn Store>) {
    let a = acquire(&store, "ca", "a", 0).await.unwrap();
    // Expiry is exclusive: at exactly expires_at the lease is free.
    assert!(a.is_live(at(29)) && !a.is_live(at(30)));
    let b = acquire(&store, "ca", "b", 30)
        .await
        .expect("expired lease is taken");
    assert_eq!((b.holder.as_str(), b.epoch), ("b", 2));
    assert_eq!(b.acquired_at, at(30));
    // The old holder learns it lost the lease: renewing fails, and its writes are fenced off
    // atomically (no setting, no audit record), while the new holder's writes go through.
    assert_eq!(store.renew_lease(&a, TTL, at(31)).await.unwrap(), None);
    let before = store.audit_head().await.unwrap();
    let refused = store.commit(fenced(&a, "ca.rollover")).await;
    assert!(
        matches!(&refused, Err(StoreError::Stale(m)) if m.contains("ca")),
        "{refused:?}"
    );
    assert_eq!(store.audit_head().await.unwrap(), before);
    assert_eq!(
        store.get_setting("done-by:ca.rollover").await.unwrap(),
        None
    );
    store.commit(fenced(&b, "ca.rollover")).await.unwrap();
    assert_eq!(
        store.get_setting("done-by:ca.rollover").await.unwrap(),
        Some("b".into())
    );
    // Even the same holder gets a new epoch when it comes back after expiry: a write fenced
    // with the epoch it had before is refused.
    let b2 = acquire(&store, "ca", "b", 100).await.unwrap();
    assert_eq!(b2.epoch, 3);
    assert!(store.commit(fenced(&b, "again")).await.is_err());
    store.commit(fenced(&b2, "again")).await.unwrap();
    verify_chain(&store).await;
}

pub async fn lease_renewal_keeps_the_epoch(store: Arc<dyn Store>) {
    let a = acquire(&store, "purge", "a", 0).await.unwrap();
    let renewed = store
        .renew_lease(&a, TTL, at(20))
        .await
        .unwrap()
        .expect("still ours");
    assert_eq!(renewed.epoch, a.epoch);
    assert_eq!(renewed.acquired_at, at(0));
    assert_eq!(renewed.expires_at, at(20) + TTL);
    // The renewal holds: at the old expiry the lease is still taken.
    assert_eq!(acquire(&store, "purge", "b", 30).await, None);
    // Acquiring a lease one already holds is a renewal too (same epoch, later expiry).
    let again = acquire(&store, "purge", "a", 40).await.unwrap();
    assert_eq!((again.epoch, again.expires_at), (a.epoch, at(40) + TTL));
    store.commit(fenced(&a, "purge")).await.unwrap();
    // After the renewed expiry it changes hands.
    let b = acquire(&store, "purge", "b", 70).await.unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    // Renewing a lease that was never ours, or with a wrong epoch, fails.
    let forged = Lease {
        holder: "b".into(),
        epoch: 99,
        ..b.clone()
    };
    assert_eq!(store.renew_lease(&forged, TTL, at(71)).await.unwrap(), None);
    // A ttl must be positive.
    assert!(matches!(
        store
            .try_acquire_lease("purge", "b", Duration::ZERO, at(71))
            .await,
        Err(StoreError::Backend(_))
    ));
    assert!(store.try_acquire_lease("", "b", TTL, at(71)).await.is_err());
    assert!(
        store
            .try_acquire_lease("x\0", "b", TTL, at(71))
            .await
            .is_err()
    );
}

pub async fn lease_release_frees_it_at_once(store: Arc<dyn Store>) {
    let a = acquire(&store, "findings", "a", 0).await.unwrap();
    assert!(store.release_lease(&a).await.unwrap());
    // Released: another holder takes it right away, and the epoch keeps growing (never reused).
    let b = acquire(&store, "findings", "b", 1).await.unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    // Releasing what is no longer ours changes nothing.
    assert!(!store.release_lease(&a).await.unwrap());
    assert_eq!(store.get_lease("findings").await.unwrap(), Some(b.clone()));
    assert!(store.commit(fenced(&a, "late")).await.is_err());
    // A fence on a lease nobody ever took refuses the write.
    let ghost = Lease {
        name: "ghost".into(),
        ..b.clone()
    };
    assert!(matches!(
        store.commit(fenced(&ghost, "ghost")).await,
        Err(StoreError::Stale(_))
    ));
}

/// Two stores on one database, as two nodes: they contend round after round, and exactly one
/// holds the lease each time; the deposed one's fenced writes are refused.
pub async fn two_nodes_contend_for_leases(db: Arc<TestDb>) {
    let (a, b) = (db.open().await, db.open().await);
    let mut epochs = Vec::new();
    for round in 0..20i64 {
        // Each round starts after the previous lease expired.
        let t = round * 60;
        let (ra, rb) = tokio::join!(
            acquire(&a, "rotation", "node-a", t),
            acquire(&b, "rotation", "node-b", t)
        );
        let winner = match (ra, rb) {
            (Some(w), None) | (None, Some(w)) => w,
            other => panic!("round {round}: exactly one node must win, got {other:?}"),
        };
        epochs.push(winner.epoch);
        let (mine, theirs) = if winner.holder == "node-a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        // The winner's fenced write commits through either node's store; the loser cannot
        // renew what it does not hold.
        theirs
            .commit(fenced(&winner, &format!("round.{round}")))
            .await
            .unwrap();
        let loser = Lease {
            holder: if winner.holder == "node-a" {
                "node-b"
            } else {
                "node-a"
            }
            .into(),
            ..winner.clone()
        };
        assert_eq!(
            mine.renew_lease(&loser, TTL, at(t + 1)).await.unwrap(),
            None
        );
    }
    // One new epoch per round: every round changed or re-took the lease after expiry.
    assert_eq!(epochs, (1..=20).collect::<Vec<i64>>());
    assert_eq!(verify_chain(&a).await, 20);
}

//! Credential bulk revocation and touch, revoked tokens, one-time values and purging, settings,
//! signing keys, checkpoints, ping.

use std::sync::Arc;

use serde_json::json;
use steward_store::{Change, CheckpointRecord, Mutation, SigningKeyRecord, Store, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::{T0, api_key, at, commit, event, identity, owner};

pub async fn revoke_identity_credentials(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let other = identity(&o, "other", "prod");
    let active = api_key(&i, &[1u8; 32], T0);
    let mut earlier = api_key(&i, &[2u8; 32], T0);
    earlier.revoked_at = Some(at(10));
    earlier.revoke_reason = Some("leaked".into());
    let mut scheduled = api_key(&i, &[3u8; 32], T0);
    scheduled.revoked_at = Some(at(500));
    scheduled.revoke_reason = Some("rotated".into());
    let untouched = api_key(&other, &[4u8; 32], T0);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertIdentity(other))
            .with(Mutation::InsertCredential(active.clone()))
            .with(Mutation::InsertCredential(earlier.clone()))
            .with(Mutation::InsertCredential(scheduled.clone()))
            .with(Mutation::InsertCredential(untouched.clone())),
    )
    .await;

    let when = at(100);
    commit(
        &store,
        Change::new().with(Mutation::RevokeIdentityCredentials {
            identity_id: i.id,
            at: when,
            reason: "retired".into(),
        }),
    )
    .await;
    for before in [active, scheduled] {
        let after = store.get_credential(before.id).await.unwrap().unwrap();
        assert_eq!(after.revoked_at, Some(when));
        assert_eq!(after.revoke_reason.as_deref(), Some("retired"));
        assert_eq!(after.version, before.version + 1);
    }
    // Already revoked before `at`: left as it was.
    assert_eq!(
        store.get_credential(earlier.id).await.unwrap(),
        Some(earlier)
    );
    // Another identity's credential: untouched.
    assert_eq!(
        store.get_credential(untouched.id).await.unwrap(),
        Some(untouched)
    );
}

pub async fn touch_credential_keeps_the_latest(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let c = api_key(&i, &[1u8; 32], T0);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i))
            .with(Mutation::InsertCredential(c.clone())),
    )
    .await;
    let touch = |t: OffsetDateTime| {
        Change::new().with(Mutation::TouchCredential {
            id: c.id,
            used_at: t,
        })
    };
    commit(&store, touch(at(20))).await;
    assert_eq!(
        store
            .get_credential(c.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(at(20))
    );
    commit(&store, touch(at(10))).await;
    assert_eq!(
        store
            .get_credential(c.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(at(20))
    );
    let later = at(30) + time::Duration::microseconds(7);
    commit(&store, touch(later)).await;
    let stored = store.get_credential(c.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(later));
    // Touching is not an edit: the version stays, so it never makes an edit stale.
    assert_eq!(stored.version, c.version);
    // Unknown ids are ignored.
    commit(
        &store,
        Change::new().with(Mutation::TouchCredential {
            id: Uuid::now_v7(),
            used_at: T0,
        }),
    )
    .await;
}

/// A flush touches many credentials in one change: one statement for the run, with the same
/// rules as one at a time (latest wins, a repeated id in the run still keeps the latest, unknown
/// ids are ignored, other credentials are left alone).
pub async fn touching_many_credentials_at_once(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let keys: Vec<_> = (0..3u8).map(|n| api_key(&i, &[n + 1; 32], T0)).collect();
    let mut setup = Change::new()
        .with(Mutation::InsertOwner(o))
        .with(Mutation::InsertIdentity(i));
    for k in &keys {
        setup = setup.with(Mutation::InsertCredential(k.clone()));
    }
    commit(&store, setup).await;
    let touch = |id, t| Mutation::TouchCredential { id, used_at: t };
    commit(&store, Change::new().with(touch(keys[1].id, at(50)))).await;
    commit(
        &store,
        Change::new()
            .with(touch(keys[0].id, at(10)))
            .with(touch(keys[1].id, at(40)))
            .with(touch(Uuid::now_v7(), at(99)))
            .with(touch(keys[0].id, at(30)))
            .with(touch(keys[0].id, at(20))),
    )
    .await;
    let last_used = |n: usize| {
        let store = store.clone();
        let id = keys[n].id;
        async move {
            store
                .get_credential(id)
                .await
                .unwrap()
                .unwrap()
                .last_used_at
        }
    };
    assert_eq!(
        last_used(0).await,
        Some(at(30)),
        "the latest of a repeated id"
    );
    assert_eq!(last_used(1).await, Some(at(50)), "an older time never wins");
    assert_eq!(last_used(2).await, None, "a credential not in the run");
    for k in &keys {
        let stored = store.get_credential(k.id).await.unwrap().unwrap();
        assert_eq!(stored.version, k.version, "touching is not an edit");
    }
}

pub async fn revoked_tokens(store: Arc<dyn Store>) {
    assert!(!store.is_token_revoked("jti-1").await.unwrap());
    let revoke = |jti: &str, id: Option<Uuid>| {
        Change::new().with(Mutation::RevokeToken {
            jti: jti.into(),
            identity_id: id,
            expires_at: at(3600),
        })
    };
    commit(&store, revoke("jti-1", Some(Uuid::now_v7()))).await;
    assert!(store.is_token_revoked("jti-1").await.unwrap());
    assert!(!store.is_token_revoked("jti-2").await.unwrap());
    // Idempotent.
    commit(&store, revoke("jti-1", None)).await;
    commit(&store, revoke("jti-2", None)).await;
    assert!(store.is_token_revoked("jti-2").await.unwrap());

    // The listing a node mirrors in memory: unexpired entries only, latest expiry first, bounded.
    commit(
        &store,
        Change::new()
            .with(Mutation::RevokeToken {
                jti: "gone".into(),
                identity_id: None,
                expires_at: at(10),
            })
            .with(Mutation::RevokeToken {
                jti: "later".into(),
                identity_id: None,
                expires_at: at(7200),
            }),
    )
    .await;
    let listed = store.list_revoked_tokens(at(60), 10).await.unwrap();
    let jtis: Vec<&str> = listed.iter().map(|t| t.jti.as_str()).collect();
    assert_eq!(jtis[0], "later", "latest expiry first: {jtis:?}");
    let mut rest = jtis[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, ["jti-1", "jti-2"], "expired entries are not listed");
    assert_eq!(listed[0].expires_at, at(7200));
    assert_eq!(store.list_revoked_tokens(at(60), 1).await.unwrap().len(), 1);
}

pub async fn claim_once_detects_replays(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let later = now + time::Duration::minutes(5);
    assert!(store.claim_once("dpop", "jti-a", later).await.unwrap());
    assert!(
        !store.claim_once("dpop", "jti-a", later).await.unwrap(),
        "a replay is refused"
    );
    assert!(
        store.claim_once("assertion", "jti-a", later).await.unwrap(),
        "namespaces are separate"
    );
    assert!(store.claim_once("dpop", "jti-b", later).await.unwrap());
    // Values of any length and content are fine.
    let long = "x".repeat(10_000);
    assert!(store.claim_once("dpop", &long, later).await.unwrap());
    assert!(!store.claim_once("dpop", &long, later).await.unwrap());
    assert!(store.claim_once("dpop", "nul\0byte", later).await.unwrap());

    // An expired value is free again.
    assert!(
        store
            .claim_once("dpop", "old", now - time::Duration::seconds(1))
            .await
            .unwrap()
    );
    assert!(
        store.claim_once("dpop", "old", later).await.unwrap(),
        "an expired value can be claimed again"
    );
    assert!(!store.claim_once("dpop", "old", later).await.unwrap());

    // Concurrent claims of one value: exactly one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.claim_once("race", "same", later).await.unwrap() });
    }
    let mut winners = 0;
    while let Some(won) = tasks.join_next().await {
        winners += usize::from(won.unwrap());
    }
    assert_eq!(winners, 1);

    // Many values at once, each claimed three times (claims sent together may share one
    // statement): every value is won exactly once.
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..3 {
        for n in 0..100 {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                let won = store
                    .claim_once("burst", &format!("jti-{n}"), later)
                    .await
                    .unwrap();
                (n, round, won)
            });
        }
    }
    let mut wins = vec![0; 100];
    while let Some(r) = tasks.join_next().await {
        let (n, _, won) = r.unwrap();
        wins[n] += usize::from(won);
    }
    assert!(wins.iter().all(|w| *w == 1), "{wins:?}");
}

/// A claim with the record of its outcome: the fresh record for the first claim, the replay
/// record for every later one (including a value claimed before with `claim_once`), each at the
/// sequence number it reports; concurrent claims of one value record one winner; the chain holds.
pub async fn claim_once_audited_records_each_outcome(store: Arc<dyn Store>) {
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let outcome = |what: &str, n: usize| {
        (
            event(&format!("{what}.fresh")).reason(format!("claim {n}")),
            event(&format!("{what}.replayed")).reason(format!("claim {n}")),
        )
    };
    let action_at = |seq: u64| {
        let store = Arc::clone(&store);
        async move {
            let r = store.audit_range(seq, 1).await.unwrap();
            assert_eq!(r.len(), 1, "record {seq} exists");
            (r[0].event.action.clone(), r[0].event.reason.clone())
        }
    };

    let (fresh, replayed) = outcome("one", 1);
    let first = store
        .claim_once_audited("assertion", "jti-1", later, fresh, replayed)
        .await
        .unwrap();
    assert!(first.fresh);
    assert_eq!(
        action_at(first.seq).await,
        ("one.fresh".into(), Some("claim 1".into()))
    );
    let (fresh, replayed) = outcome("one", 2);
    let again = store
        .claim_once_audited("assertion", "jti-1", later, fresh, replayed)
        .await
        .unwrap();
    assert!(!again.fresh, "a replay is refused");
    assert!(again.seq > first.seq);
    assert_eq!(
        action_at(again.seq).await,
        ("one.replayed".into(), Some("claim 2".into()))
    );
    // Plain claims and claims with records share one namespace of values.
    assert!(!store.claim_once("assertion", "jti-1", later).await.unwrap());
    assert!(store.claim_once("assertion", "jti-2", later).await.unwrap());
    let (fresh, replayed) = outcome("two", 3);
    let r = store
        .claim_once_audited("assertion", "jti-2", later, fresh, replayed)
        .await
        .unwrap();
    assert!(!r.fresh);
    assert_eq!(action_at(r.seq).await.0, "two.replayed");

    // Concurrent claims with records, mixed with plain audit commits: each value is won once,
    // each claim's record is that of its outcome, and every reported number is distinct.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..150usize {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            if n % 7 == 0 {
                let seqs = store
                    .commit(Change::audit_only(event("plain")))
                    .await
                    .unwrap();
                return (n, None, seqs[0]);
            }
            let (fresh, replayed) = (
                event("burst.fresh").reason(format!("claim {n}")),
                event("burst.replayed").reason(format!("claim {n}")),
            );
            let r = store
                .claim_once_audited("burst", &format!("jti-{}", n % 10), later, fresh, replayed)
                .await
                .unwrap();
            (n, Some(r.fresh), r.seq)
        });
    }
    let mut wins = [0usize; 10];
    let mut seqs = std::collections::HashSet::new();
    let mut claimed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (n, fresh, seq) = r.unwrap();
        assert!(seqs.insert(seq), "sequence number {seq} reported twice");
        if let Some(fresh) = fresh {
            wins[n % 10] += usize::from(fresh);
            claimed.push((n, fresh, seq));
        }
    }
    assert_eq!(wins, [1; 10], "each value is won exactly once");
    for (n, fresh, seq) in claimed {
        let (action, reason) = action_at(seq).await;
        let expected = if fresh {
            "burst.fresh"
        } else {
            "burst.replayed"
        };
        assert_eq!(action, expected, "record {seq}");
        assert_eq!(reason, Some(format!("claim {n}")), "record {seq}");
    }
    crate::support::verify_chain(&store).await;
}

pub async fn purge_removes_only_expired(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let past = now - time::Duration::minutes(1);
    let future = now + time::Duration::minutes(10);
    assert!(store.claim_once("n", "expired-1", past).await.unwrap());
    assert!(store.claim_once("n", "expired-2", past).await.unwrap());
    assert!(store.claim_once("n", "live", future).await.unwrap());
    commit(
        &store,
        Change::new()
            .with(Mutation::RevokeToken {
                jti: "old".into(),
                identity_id: None,
                expires_at: past,
            })
            .with(Mutation::RevokeToken {
                jti: "new".into(),
                identity_id: None,
                expires_at: future,
            }),
    )
    .await;

    assert_eq!(store.purge_expired(now).await.unwrap(), 3);
    assert_eq!(store.purge_expired(now).await.unwrap(), 0);
    assert!(!store.is_token_revoked("old").await.unwrap());
    assert!(store.is_token_revoked("new").await.unwrap());
    assert!(
        !store.claim_once("n", "live", future).await.unwrap(),
        "unexpired values survive a purge"
    );

    // More rows than one purge step, in both tables.
    let mut bulk = Change::new();
    for n in 0..12_000u32 {
        bulk = bulk.with(Mutation::RevokeToken {
            jti: format!("bulk-{n}"),
            identity_id: None,
            expires_at: past,
        });
    }
    commit(&store, bulk).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..6_000u32 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .claim_once("bulk", &n.to_string(), past)
                .await
                .unwrap()
        });
    }
    while let Some(fresh) = tasks.join_next().await {
        assert!(fresh.unwrap());
    }
    assert_eq!(store.purge_expired(now).await.unwrap(), 18_000);
    assert!(!store.is_token_revoked("bulk-7").await.unwrap());
    assert!(store.is_token_revoked("new").await.unwrap());
}

pub async fn settings(store: Arc<dyn Store>) {
    assert_eq!(store.get_setting("bootstrap").await.unwrap(), None);
    commit(
        &store,
        Change::new().with(Mutation::PutSetting {
            key: "bootstrap".into(),
            value: "1".into(),
        }),
    )
    .await;
    assert_eq!(
        store.get_setting("bootstrap").await.unwrap().as_deref(),
        Some("1")
    );
    commit(
        &store,
        Change::new().with(Mutation::PutSetting {
            key: "bootstrap".into(),
            value: "2".into(),
        }),
    )
    .await;
    assert_eq!(
        store.get_setting("bootstrap").await.unwrap().as_deref(),
        Some("2")
    );

    commit(
        &store,
        Change::new().with(Mutation::InsertSetting {
            key: "slot".into(),
            value: "kid-a".into(),
        }),
    )
    .await;
    let r = store
        .commit(Change::new().with(Mutation::InsertSetting {
            key: "slot".into(),
            value: "kid-b".into(),
        }))
        .await;
    match r {
        Err(StoreError::Conflict(m)) => assert!(m.contains("slot") && !m.contains("kid-b"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.get_setting("slot").await.unwrap().as_deref(),
        Some("kid-a")
    );
}

fn key(kid: &str, activates: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: "EdDSA".into(),
        sealed_private_key: vec![0, 1, 2, 255, kid.len() as u8],
        public_jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": "abc", "use": "sig"}),
        created_at: at(activates - 10),
        activates_at: at(activates),
        deactivates_at: at(activates + 100),
        publish_until: at(activates + 200),
    }
}

pub async fn signing_keys(store: Arc<dyn Store>) {
    assert_eq!(store.list_signing_keys().await.unwrap(), vec![]);
    let (late, early) = (key("late", 1000), key("early", 0));
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertSigningKey(late.clone()))
            .with(Mutation::InsertSigningKey(early.clone())),
    )
    .await;
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![early.clone(), late.clone()],
        "ordered by activates_at"
    );

    // Only the schedule changes on update.
    let mut moved = key("late", -500);
    moved.alg = "ES256".into();
    moved.sealed_private_key = vec![9];
    commit(
        &store,
        Change::new().with(Mutation::UpdateSigningKey(moved.clone())),
    )
    .await;
    let mut expected = late.clone();
    expected.activates_at = moved.activates_at;
    expected.deactivates_at = moved.deactivates_at;
    expected.publish_until = moved.publish_until;
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![expected, early]
    );

    let r = store
        .commit(Change::new().with(Mutation::InsertSigningKey(key("late", 5))))
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains("late")),
        "{r:?}"
    );
}

pub async fn checkpoints(store: Arc<dyn Store>) {
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    let cp = |size: u64| CheckpointRecord {
        size,
        root_hash: [size as u8; 32],
        note: format!("steward.example/log\n{size}\nroot\n\n— steward sig{size}\n"),
        created_at: at(size as i64),
    };
    for size in [5, 10, 7] {
        commit(
            &store,
            Change::new().with(Mutation::PutCheckpoint(cp(size))),
        )
        .await;
    }
    assert_eq!(store.latest_checkpoint().await.unwrap(), Some(cp(10)));
    // Putting the same size again replaces it.
    let mut again = cp(10);
    again.note = "replaced".into();
    commit(
        &store,
        Change::new().with(Mutation::PutCheckpoint(again.clone())),
    )
    .await;
    assert_eq!(store.latest_checkpoint().await.unwrap(), Some(again));
}

pub async fn ping_and_count(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert_eq!(store.count_identities().await.unwrap(), 0);
    let o = owner("team");
    let mut change = Change::new().with(Mutation::InsertOwner(o.clone()));
    for n in 0..7 {
        change = change.with(Mutation::InsertIdentity(identity(
            &o,
            &format!("svc-{n}"),
            "prod",
        )));
    }
    commit(&store, change).await;
    assert_eq!(store.count_identities().await.unwrap(), 7);
}

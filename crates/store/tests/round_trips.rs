//! The token path's database budget, counted with `steward_store::round_trips()`: an audit-only
//! group commit is one round trip on either backend, so is a batch of one-time claims (with or
//! without the records of their outcomes), and a
//! usage flush costs the same few statements however many credentials it covers.
//!
//! A test binary of its own with a single test, because the counter is per process: tests
//! running beside it would add their own statements to the count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "conformance/support.rs"]
#[allow(dead_code, unused_macros)]
mod support;

use std::sync::Arc;

use steward_core::usage::SourceKind;
use steward_store::{Change, Mutation, SourceDelta, Store, UsageBatch, round_trips};
use support::{Backend, T0, TestDb, api_key, at, commit, event, identity, owner};

/// Statements `f` sent to the database, by this process's counter.
async fn counted<F: std::future::Future<Output = ()>>(f: F) -> u64 {
    let before = round_trips();
    f.await;
    round_trips() - before
}

/// A usage flush for the first `n` credentials: one source each, and their last-use times.
fn flush(identity: uuid::Uuid, credentials: &[uuid::Uuid], n: usize, secs: i64) -> Change {
    let sources = credentials[..n]
        .iter()
        .map(|c| SourceDelta {
            identity_id: identity,
            credential_id: *c,
            kind: SourceKind::Address,
            value: "10.1.2.3".into(),
            uses: 1,
            first_seen: at(secs),
            last_seen: at(secs),
        })
        .collect();
    credentials[..n].iter().fold(
        Change::new().with(Mutation::RecordUsage(UsageBatch {
            scopes: vec![],
            sources,
        })),
        |change, c| {
            change.with(Mutation::TouchCredential {
                id: *c,
                used_at: at(secs),
            })
        },
    )
}

async fn budget(backend: Backend) {
    // None only when STEWARD_SKIP_POSTGRES=1 asks to skip PostgreSQL.
    let Some(db) = TestDb::create(backend, "round_trips").await else {
        return;
    };
    let store: Arc<dyn Store> = db.open().await;
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let keys: Vec<_> = (0..64u8).map(|n| api_key(&i, &[n + 1; 32], T0)).collect();
    let ids: Vec<uuid::Uuid> = keys.iter().map(|k| k.id).collect();
    let mut setup = Change::new()
        .with(Mutation::InsertOwner(o))
        .with(Mutation::InsertIdentity(i.clone()));
    for k in keys {
        setup = setup.with(Mutation::InsertCredential(k));
    }
    commit(&store, setup).await;

    // The first audit-only batch reads the head; from then on the writer remembers it.
    commit(&store, Change::audit_only(event("token.issue"))).await;
    let tokens = counted(async {
        for _ in 0..10 {
            commit(&store, Change::audit_only(event("token.issue"))).await;
        }
    })
    .await;
    assert_eq!(
        tokens, 10,
        "{backend:?}: one round trip per audit-only batch"
    );

    // A one-time claim (a `private_key_jwt` assertion's jti) is one round trip: on SQLite it
    // joins the audit-only transaction, on PostgreSQL it is one statement of the claim batcher.
    let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let claims = counted(async {
        for n in 0..10 {
            let fresh = store
                .claim_once("assertion:rt", &format!("jti-{n}"), expires)
                .await
                .unwrap();
            assert!(fresh, "{backend:?}: a new jti is fresh");
        }
    })
    .await;
    assert_eq!(claims, 10, "{backend:?}: one round trip per claim");
    assert!(
        !store
            .claim_once("assertion:rt", "jti-3", expires)
            .await
            .unwrap(),
        "{backend:?}: a replayed jti is refused"
    );

    // A claim with the record of its outcome (a `private_key_jwt` token: the assertion's jti and
    // the token's audit record) is one round trip too, the same as the record alone.
    let audited = counted(async {
        for n in 0..10 {
            let r = store
                .claim_once_audited(
                    "assertion:rt",
                    &format!("jti-audited-{n}"),
                    expires,
                    event("token.issue"),
                    event("token.issue.replayed"),
                )
                .await
                .unwrap();
            assert!(r.fresh, "{backend:?}: a new jti is fresh");
        }
    })
    .await;
    assert_eq!(
        audited, 10,
        "{backend:?}: one round trip per claim with its record"
    );
    let replay = store
        .claim_once_audited(
            "assertion:rt",
            "jti-audited-3",
            expires,
            event("token.issue"),
            event("token.issue.replayed"),
        )
        .await
        .unwrap();
    assert!(!replay.fresh, "{backend:?}: a replayed jti is refused");

    // The first flush inserts the new source rows one by one; later flushes update them in one
    // statement, so their cost does not grow with the number of credentials.
    commit(&store, flush(i.id, &ids, ids.len(), 10)).await;
    let few = counted(async {
        commit(&store, flush(i.id, &ids, 4, 20)).await;
    })
    .await;
    let many = counted(async {
        commit(&store, flush(i.id, &ids, ids.len(), 30)).await;
    })
    .await;
    assert_eq!(
        few, many,
        "{backend:?}: a flush of 64 credentials costs what a flush of 4 does"
    );
    assert!(many <= 6, "{backend:?}: a flush took {many} round trips");
    let stored = store.get_credential(ids[63]).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(at(30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_path_round_trips() {
    budget(Backend::Sqlite).await;
    budget(Backend::Postgres).await;
}

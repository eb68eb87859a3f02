//! `commit`: atomicity, sequence numbers, group commit under concurrency (with failing changes
//! isolated), several store instances on one database, and durability across reopen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use steward_core::Outcome;
use steward_store::{Change, Mutation, Store, StoreError};
use tokio::task::JoinSet;

use crate::support::{TestDb, commit, event, identity, is_conflict, owner, verify_chain};

pub async fn change_is_atomic(store: Arc<dyn Store>) {
    let o = owner("team");
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .audit(event("owner.create")),
    )
    .await;
    let head = store.audit_head().await.unwrap();

    // A valid insert followed by a conflicting one: neither is kept, nothing is audited.
    let fresh = identity(&o, "fresh", "prod");
    let clash = owner("team");
    let r = store
        .commit(
            Change::new()
                .with(Mutation::InsertIdentity(fresh.clone()))
                .with(Mutation::PutSetting {
                    key: "k".into(),
                    value: "v".into(),
                })
                .with(Mutation::InsertOwner(clash.clone()))
                .audit(event("identity.create"))
                .audit(event("owner.create")),
        )
        .await;
    assert!(is_conflict(&r), "{r:?}");
    assert_eq!(store.get_identity(fresh.id).await.unwrap(), None);
    assert_eq!(store.get_owner(clash.id).await.unwrap(), None);
    assert_eq!(store.get_setting("k").await.unwrap(), None);
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(store.count_identities().await.unwrap(), 0);

    // The log goes on where it was.
    let seqs = commit(
        &store,
        Change::new()
            .with(Mutation::InsertIdentity(fresh.clone()))
            .audit(event("identity.create")),
    )
    .await;
    assert_eq!(seqs, vec![head.size + 1]);
    verify_chain(&store).await;
}

pub async fn commit_assigns_contiguous_seqs(store: Arc<dyn Store>) {
    assert_eq!(store.audit_head().await.unwrap().size, 0);
    assert_eq!(store.audit_head().await.unwrap().chain_hash, [0u8; 32]);
    // Empty and mutation-only changes append nothing.
    assert_eq!(commit(&store, Change::new()).await, Vec::<u64>::new());
    assert_eq!(
        commit(
            &store,
            Change::new().with(Mutation::PutSetting {
                key: "a".into(),
                value: "1".into()
            })
        )
        .await,
        Vec::<u64>::new()
    );
    assert_eq!(store.audit_head().await.unwrap().size, 0);
    assert_eq!(store.get_setting("a").await.unwrap().as_deref(), Some("1"));

    let seqs = commit(
        &store,
        Change::new()
            .audit(event("a.one"))
            .audit(event("a.two"))
            .audit(event("a.three")),
    )
    .await;
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(
        commit(&store, Change::audit_only(event("a.four"))).await,
        vec![4]
    );
    let actions: Vec<String> = store
        .audit_range(1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.action)
        .collect();
    assert_eq!(actions, ["a.one", "a.two", "a.three", "a.four"]);
    assert_eq!(verify_chain(&store).await, 4);
}

/// What a concurrent change was and how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Audit-only, one event.
    Audit,
    /// Creates an identity, two events.
    Create,
    /// Inserts a taken identity name: Conflict.
    Conflict,
    /// Updates the owner with a wrong version: Stale.
    Stale,
}

/// Runs `count` concurrent commits of every kind against `stores` (round robin) and checks
/// each outcome. Returns the sequence numbers assigned, by change index.
async fn concurrent_mix(
    stores: &[Arc<dyn Store>],
    count: usize,
    tag: &str,
) -> BTreeMap<usize, Vec<u64>> {
    let o = owner(&format!("owner-{tag}"));
    let taken = identity(&o, &format!("taken-{tag}"), "prod");
    commit(
        &stores[0],
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .with(Mutation::InsertIdentity(taken)),
    )
    .await;

    let mut tasks = JoinSet::new();
    for n in 0..count {
        let store = Arc::clone(&stores[n % stores.len()]);
        let o = o.clone();
        let tag = tag.to_owned();
        tasks.spawn(async move {
            // The identity a change inserts, if any.
            let mut inserted = None;
            let (expect, change) = match n % 6 {
                0 | 3 | 5 => (
                    Expect::Audit,
                    Change::audit_only(event(&format!("test.audit.{tag}.{n}"))),
                ),
                1 | 4 => {
                    let i = identity(&o, &format!("svc-{tag}-{n}"), "prod");
                    inserted = Some(i.id);
                    let change = Change::new()
                        .with(Mutation::InsertIdentity(i))
                        .audit(event(&format!("test.create.{tag}.{n}")))
                        .audit(event(&format!("test.create.{tag}.{n}.second")));
                    (Expect::Create, change)
                }
                _ if n % 12 == 2 => {
                    let i = identity(&o, &format!("taken-{tag}"), "prod");
                    inserted = Some(i.id);
                    let change = Change::new()
                        .with(Mutation::InsertIdentity(i))
                        .audit(event(&format!("test.conflict.{tag}.{n}")));
                    (Expect::Conflict, change)
                }
                _ => {
                    let change = Change::new()
                        .with(Mutation::UpdateOwner {
                            owner: o.clone(),
                            expected_version: 99,
                        })
                        .audit(event(&format!("test.stale.{tag}.{n}")));
                    (Expect::Stale, change)
                }
            };
            (n, expect, inserted, store.commit(change).await)
        });
    }

    let mut seqs_by_change = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, expect, inserted, result) = joined.expect("task panicked");
        // An identity exists exactly when its change succeeded.
        if let Some(id) = inserted {
            let stored = stores[0].get_identity(id).await.unwrap();
            assert_eq!(stored.is_some(), result.is_ok(), "change {n}");
        }
        match (expect, result) {
            (Expect::Audit, Ok(seqs)) => {
                assert_eq!(seqs.len(), 1, "change {n}");
                seqs_by_change.insert(n, seqs);
            }
            (Expect::Create, Ok(seqs)) => {
                assert_eq!(seqs.len(), 2, "change {n}");
                assert_eq!(seqs[1], seqs[0] + 1, "a change's events are consecutive");
                seqs_by_change.insert(n, seqs);
            }
            (Expect::Conflict, Err(StoreError::Conflict(m))) => assert!(m.contains("taken"), "{m}"),
            (Expect::Stale, Err(StoreError::Stale(_))) => {}
            (expect, result) => panic!("change {n} ({expect:?}) ended with {result:?}"),
        }
    }

    // Every successful change's records carry its own events.
    for (n, seqs) in &seqs_by_change {
        let records = stores[0]
            .audit_range(seqs[0], seqs.len() as u32)
            .await
            .unwrap();
        assert_eq!(records.len(), seqs.len());
        for (r, seq) in records.iter().zip(seqs) {
            assert_eq!(r.seq, *seq);
            assert!(
                r.event.action.ends_with(&format!(".{tag}.{n}"))
                    || r.event.action.ends_with(&format!(".{tag}.{n}.second"))
            );
        }
    }
    seqs_by_change
}

fn assert_contiguous(all: impl IntoIterator<Item = u64>, first: u64, count: usize) {
    let mut seen = BTreeSet::new();
    for s in all {
        assert!(seen.insert(s), "sequence number {s} was assigned twice");
    }
    let expected: BTreeSet<u64> = (first..first + count as u64).collect();
    assert_eq!(seen, expected, "sequence numbers are contiguous");
}

pub async fn group_commit_under_concurrency(store: Arc<dyn Store>) {
    let start = store.audit_head().await.unwrap().size;
    let seqs = concurrent_mix(&[Arc::clone(&store)], 300, "g").await;
    let total: usize = seqs.values().map(Vec::len).sum();
    // 150 audit-only changes with one event, 100 creations with two.
    assert_eq!(total, 150 + 200);
    assert_contiguous(seqs.values().flatten().copied(), start + 1, total);
    assert_eq!(verify_chain(&store).await, start + total as u64);
    assert_eq!(store.count_identities().await.unwrap(), 1 + 100);
    // The failures are not in the log.
    let page = store
        .list_audit(&steward_store::AuditQuery {
            action: Some("test.conflict.".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

pub async fn audit_only_burst_is_durable_and_ordered(store: Arc<dyn Store>) {
    // Many more concurrent commits than one batch holds.
    let mut tasks = JoinSet::new();
    for n in 0..3000u32 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let e = event("token.issue").details(serde_json::json!({ "n": n }));
            (n, store.commit(Change::audit_only(e)).await.unwrap())
        });
    }
    let mut by_seq = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, seqs) = joined.unwrap();
        assert_eq!(seqs.len(), 1);
        assert!(by_seq.insert(seqs[0], n).is_none());
    }
    assert_contiguous(by_seq.keys().copied(), 1, 3000);
    assert_eq!(verify_chain(&store).await, 3000);
    for r in store.audit_range(1, 3000).await.unwrap() {
        assert_eq!(
            r.event.details["n"],
            serde_json::json!(by_seq[&r.seq]),
            "record {} holds its own event",
            r.seq
        );
    }
}

pub async fn unstorable_text_is_refused_alone(store: Arc<dyn Store>) {
    let o = owner("team");
    commit(&store, Change::new().with(Mutation::InsertOwner(o.clone()))).await;
    let mut bad_identity = identity(&o, "svc", "prod");
    bad_identity.purpose = "nul\0inside".into();
    let (bad_audit, bad_mutation, good) = tokio::join!(
        store.commit(Change::audit_only(event("x.y").target("nul\0inside"))),
        store.commit(
            Change::new()
                .with(Mutation::InsertIdentity(bad_identity.clone()))
                .audit(event("identity.create"))
        ),
        store.commit(Change::audit_only(event("ok.ok"))),
    );
    assert!(
        matches!(&bad_audit, Err(StoreError::Backend(m)) if m.contains("audit target")),
        "{bad_audit:?}"
    );
    assert!(
        matches!(&bad_mutation, Err(StoreError::Backend(m)) if m.contains("identity purpose")),
        "{bad_mutation:?}"
    );
    assert_eq!(good.unwrap(), vec![1]);
    assert_eq!(store.get_identity(bad_identity.id).await.unwrap(), None);
    assert_eq!(verify_chain(&store).await, 1);
}

pub async fn two_instances_share_one_log(db: Arc<TestDb>) {
    let a = db.open().await;
    let b = db.open().await;
    let (only_a, only_b) = ([Arc::clone(&a)], [Arc::clone(&b)]);
    let (ra, rb) = tokio::join!(
        concurrent_mix(&only_a, 120, "a"),
        concurrent_mix(&only_b, 120, "b")
    );
    let all: Vec<u64> = ra.values().chain(rb.values()).flatten().copied().collect();
    assert_eq!(all.len(), 2 * (60 + 80));
    assert_contiguous(all.iter().copied(), 1, all.len());
    assert_eq!(verify_chain(&a).await, all.len() as u64);
    assert_eq!(verify_chain(&b).await, all.len() as u64);
    // Mixed instances, interleaved in one run.
    let mixed = concurrent_mix(&[Arc::clone(&a), Arc::clone(&b)], 60, "m").await;
    assert_contiguous(
        all.iter().copied().chain(mixed.values().flatten().copied()),
        1,
        all.len() + mixed.values().map(Vec::len).sum::<usize>(),
    );
    verify_chain(&a).await;
}

pub async fn reopen_keeps_everything(db: Arc<TestDb>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    {
        let store = db.open().await;
        commit(
            &store,
            Change::new()
                .with(Mutation::InsertOwner(o.clone()))
                .with(Mutation::InsertIdentity(i.clone()))
                .audit(event("identity.create").identity(i.id)),
        )
        .await;
        let e = steward_core::AuditEvent::new(
            crate::support::T0,
            "bob",
            "token.issue",
            Outcome::Denied,
        );
        commit(&store, Change::audit_only(e)).await;
    }
    // Opening again applies no migration twice and finds everything.
    let store = db.open().await;
    assert_eq!(store.get_identity(i.id).await.unwrap(), Some(i));
    assert_eq!(store.get_owner(o.id).await.unwrap(), Some(o));
    assert_eq!(verify_chain(&store).await, 2);
    assert_eq!(
        commit(&store, Change::audit_only(event("x.y"))).await,
        vec![3]
    );
    store.ping().await.unwrap();
}

pub async fn concurrent_opens_migrate_once(db: Arc<TestDb>) {
    // Several nodes starting at once on an empty database.
    let (a, b, c, d) = tokio::join!(db.open(), db.open(), db.open(), db.open());
    for (n, store) in [a, b, c, d].iter().enumerate() {
        store.ping().await.unwrap();
        let seqs = commit(store, Change::audit_only(event(&format!("node.{n}")))).await;
        assert_eq!(seqs.len(), 1);
    }
    let store = db.open().await;
    assert_eq!(verify_chain(&store).await, 4);
}

pub async fn poisoned_change_fails_alone(db: Arc<TestDb>) {
    let store = db.open().await;
    // A trigger makes one audit record fail inside the batch's multi-row INSERT, outside any
    // savepoint: the batch must be retried change by change, failing only the poisoned one.
    db.run_script(
        "CREATE TRIGGER poison BEFORE INSERT ON audit WHEN NEW.action = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned record'); END;",
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.action = 'poison' THEN RAISE EXCEPTION 'poisoned record'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .await;
    let o = owner("team");
    commit(&store, Change::new().with(Mutation::InsertOwner(o.clone()))).await;

    let mut tasks = JoinSet::new();
    for n in 0..200usize {
        let store = Arc::clone(&store);
        let o = o.clone();
        tasks.spawn(async move {
            let i = identity(&o, &format!("svc-{n}"), "prod");
            let action = if n == 100 {
                "poison"
            } else {
                "identity.create"
            };
            let change = Change::new()
                .with(Mutation::InsertIdentity(i.clone()))
                .audit(event(action));
            (n, i.id, store.commit(change).await)
        });
    }
    let mut seqs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, id, result) = joined.unwrap();
        let stored = store.get_identity(id).await.unwrap();
        if n == 100 {
            assert!(
                matches!(&result, Err(StoreError::Backend(m)) if m.contains("poisoned record")),
                "{result:?}"
            );
            assert_eq!(stored, None, "the poisoned change left no trace");
        } else {
            seqs.extend(result.unwrap_or_else(|e| panic!("change {n} failed: {e}")));
            assert!(stored.is_some());
        }
    }
    assert_contiguous(seqs.iter().copied(), 1, 199);
    assert_eq!(verify_chain(&store).await, 199);
}

pub async fn moved_head_fails_the_one_round_trip_append(db: Arc<TestDb>) {
    let store = db.open().await;
    // The first batch reads the head; from then on the writer remembers it and appends
    // audit-only batches in one round trip (one statement, or one script on SQLite).
    assert_eq!(
        commit(&store, Change::audit_only(event("a.one"))).await,
        vec![1]
    );
    assert_eq!(
        commit(&store, Change::audit_only(event("a.two"))).await,
        vec![2]
    );
    // Another writer moves the head without this one knowing. No row collides with the next
    // sequence number this writer would use, so only the head check can catch it.
    db.run_script(
        "UPDATE audit_head SET size = 7 WHERE id = 1",
        "UPDATE audit_head SET size = 7 WHERE id = 1",
    )
    .await;
    // The append from the stale head writes nothing; the batch reruns from the head it reads.
    assert_eq!(
        commit(&store, Change::audit_only(event("a.three"))).await,
        vec![8]
    );
    let seqs: Vec<u64> = store
        .audit_range(1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 8], "nothing landed at the stale position");
    // The connection is still usable for both paths.
    assert_eq!(
        commit(&store, Change::audit_only(event("a.four"))).await,
        vec![9]
    );
    let o = owner("team");
    assert_eq!(
        commit(
            &store,
            Change::new()
                .with(Mutation::InsertOwner(o.clone()))
                .audit(event("owner.create"))
        )
        .await,
        vec![10]
    );
}

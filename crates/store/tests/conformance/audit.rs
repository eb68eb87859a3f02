//! The audit log: records stored exactly, every `AuditQuery` filter, pagination by seq,
//! `audit_range` and `audit_leaf_hashes`.

use std::sync::Arc;

use serde_json::json;
use steward_core::{AuditEvent, Outcome};
use steward_crypto::merkle;
use steward_store::{AuditQuery, Change, Store};
use uuid::Uuid;

use crate::support::{T0, at, commit, event, verify_chain};

async fn seqs(store: &Arc<dyn Store>, q: AuditQuery) -> Vec<u64> {
    let page = store.list_audit(&q).await.unwrap();
    assert_eq!(page.next, None, "all results fit one page");
    page.items.into_iter().map(|r| r.seq).collect()
}

pub async fn audit_records_round_trip(store: Arc<dyn Store>) {
    let full = AuditEvent::new(
        at(1) + time::Duration::microseconds(1),
        "0190a1b2-actor",
        "identity.update",
        Outcome::Failure,
    )
    .target("identity:0190")
    .identity(Uuid::now_v7())
    .reason("version \"mismatch\" — ünïcödé")
    .request(Some("req-123".into()), Some("203.0.113.7".into()))
    .details(json!({
        "z": [1, 2.5, -3, null, true],
        "a": {"nested": {"deep": "x"}, "empty": {}},
        "big": 9007199254740993u64,
        "s": "line\nbreak\ttab \\ \u{1F600}"
    }));
    let bare = AuditEvent::new(T0, "system", "system.start", Outcome::Success);
    let seqs = commit(
        &store,
        Change::new().audit(full.clone()).audit(bare.clone()),
    )
    .await;
    assert_eq!(seqs, vec![1, 2]);
    let records = store
        .list_audit(&AuditQuery::default())
        .await
        .unwrap()
        .items;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].event, full);
    assert_eq!(records[1].event, bare);
    assert_eq!(
        records[0].leaf_hash,
        merkle::leaf_hash(&full.canonical_bytes(1))
    );
    assert_eq!(
        records[1].chain_hash,
        store.audit_head().await.unwrap().chain_hash
    );
    assert_eq!(store.audit_range(1, 10).await.unwrap(), records);
    verify_chain(&store).await;
}

pub async fn audit_filters(store: Arc<dyn Store>) {
    let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
    let e = |secs: i64, actor: &str, action: &str, outcome: Outcome| {
        AuditEvent::new(at(secs), actor, action, outcome)
    };
    let events = [
        e(0, "alice", "identity.create", Outcome::Success).identity(x),
        e(10, &x.to_string(), "token.issue", Outcome::Success).identity(x),
        e(20, "anonymous", "token.issue", Outcome::Denied).identity(y),
        e(30, "alice", "token.revoke", Outcome::Failure),
        e(40, "system", "tokenizer.run", Outcome::Success).identity(y),
        e(50, "system", "signing_key.create", Outcome::Success),
    ];
    let mut change = Change::new();
    for ev in &events {
        change = change.audit(ev.clone());
    }
    assert_eq!(commit(&store, change).await, vec![1, 2, 3, 4, 5, 6]);

    let q = AuditQuery::default;
    assert_eq!(seqs(&store, q()).await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                identity_id: Some(x),
                ..q()
            }
        )
        .await,
        vec![1, 2]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                identity_id: Some(Uuid::now_v7()),
                ..q()
            }
        )
        .await,
        Vec::<u64>::new()
    );
    let action = |a: &str| AuditQuery {
        action: Some(a.into()),
        ..q()
    };
    assert_eq!(seqs(&store, action("token.issue")).await, vec![2, 3]);
    assert_eq!(
        seqs(&store, action("token")).await,
        Vec::<u64>::new(),
        "without . or * the match is exact"
    );
    assert_eq!(
        seqs(&store, action("token.")).await,
        vec![2, 3, 4],
        "prefix, excluding tokenizer.*"
    );
    assert_eq!(seqs(&store, action("token.*")).await, vec![2, 3, 4]);
    assert_eq!(seqs(&store, action("token*")).await, vec![2, 3, 4, 5]);
    assert_eq!(seqs(&store, action("*")).await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        seqs(&store, action("%.")).await,
        Vec::<u64>::new(),
        "no LIKE wildcards"
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                outcome: Some(Outcome::Denied),
                ..q()
            }
        )
        .await,
        vec![3]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                outcome: Some(Outcome::Failure),
                ..q()
            }
        )
        .await,
        vec![4]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                actor: Some("alice".into()),
                ..q()
            }
        )
        .await,
        vec![1, 4]
    );
    // `since` is inclusive, `until` exclusive.
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                since: Some(at(20)),
                ..q()
            }
        )
        .await,
        vec![3, 4, 5, 6]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                until: Some(at(20)),
                ..q()
            }
        )
        .await,
        vec![1, 2]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                since: Some(at(10)),
                until: Some(at(40)),
                ..q()
            }
        )
        .await,
        vec![2, 3, 4]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                after_seq: Some(4),
                ..q()
            }
        )
        .await,
        vec![5, 6]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                identity_id: Some(y),
                action: Some("token.".into()),
                ..q()
            }
        )
        .await,
        vec![3]
    );
    assert_eq!(
        seqs(
            &store,
            AuditQuery {
                actor: Some("system".into()),
                outcome: Some(Outcome::Success),
                after_seq: Some(5),
                ..q()
            }
        )
        .await,
        vec![6]
    );
}

pub async fn audit_pagination(store: Arc<dyn Store>) {
    let mut change = Change::new();
    for n in 0..25 {
        let action = if n % 5 == 0 {
            "identity.create"
        } else {
            "token.issue"
        };
        change = change.audit(event(action).details(json!({ "n": n })));
    }
    commit(&store, change).await;

    for (action, limit, expected) in [
        (None, 10, 25usize),
        (None, 5, 25),
        (Some("token."), 7, 20),
        (Some("identity.create"), 2, 5),
    ] {
        let mut seen = Vec::new();
        let mut after_seq = None;
        loop {
            let q = AuditQuery {
                action: action.map(str::to_owned),
                after_seq,
                limit,
                ..Default::default()
            };
            let page = store.list_audit(&q).await.unwrap();
            seen.extend(page.items.iter().map(|r| r.seq));
            let Some(next) = page.next else { break };
            assert_eq!(page.items.len(), limit as usize);
            assert_eq!(next, page.items.last().unwrap().seq.to_string());
            after_seq = Some(next.parse().unwrap());
        }
        assert_eq!(seen.len(), expected, "{action:?} / {limit}");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "in seq order, each once"
        );
    }
}

pub async fn audit_range_and_leaf_hashes(store: Arc<dyn Store>) {
    assert_eq!(store.audit_range(1, 10).await.unwrap(), vec![]);
    assert_eq!(
        store.audit_leaf_hashes(5).await.unwrap(),
        Vec::<[u8; 32]>::new()
    );
    let mut change = Change::new();
    for n in 0..9 {
        change = change.audit(event("x.y").details(json!(n)));
    }
    commit(&store, change).await;

    let range = store.audit_range(3, 4).await.unwrap();
    assert_eq!(
        range.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    assert_eq!(range[0].event.details, json!(2));
    assert_eq!(store.audit_range(8, 100).await.unwrap().len(), 2);
    assert_eq!(store.audit_range(10, 100).await.unwrap(), vec![]);
    assert_eq!(store.audit_range(1, 0).await.unwrap(), vec![]);

    let all = store.audit_range(1, 100).await.unwrap();
    let leaves: Vec<[u8; 32]> = all.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(
        store.audit_leaf_hashes(4).await.unwrap(),
        leaves[..4].to_vec()
    );
    assert_eq!(store.audit_leaf_hashes(9).await.unwrap(), leaves);
    assert_eq!(store.audit_leaf_hashes(1000).await.unwrap(), leaves);
    assert_eq!(
        store.audit_leaf_hashes(0).await.unwrap(),
        Vec::<[u8; 32]>::new()
    );
    assert_eq!(verify_chain(&store).await, 9);
}

//! Authorization storage: append-only policy versions (a repeated version is stale), the
//! policy-state head bumped with every change, and guard-rail exceptions.

use std::sync::Arc;

use steward_store::{
    Change, ExceptionQuery, ExceptionRecord, Mutation, PolicyRecord, Store, StoreError,
};
use uuid::Uuid;

use crate::support::{T0, at, commit, event, identity, owner};

fn version(id: &str, v: i64, source: &str, deleted: bool) -> PolicyRecord {
    PolicyRecord {
        id: id.into(),
        version: v,
        source: source.into(),
        description: format!("{id} v{v}"),
        deleted,
        created_at: at(v),
        created_by: "admin".into(),
    }
}

pub async fn policy_versions_and_head(store: Arc<dyn Store>) {
    assert_eq!(store.policy_state_version().await.unwrap(), 0);
    assert!(store.current_policies().await.unwrap().is_empty());
    for (id, v, deleted) in [
        ("a", 1, false),
        ("b", 1, false),
        ("a", 2, false),
        ("b", 2, true),
    ] {
        commit(
            &store,
            Change::new()
                .with(Mutation::InsertPolicyVersion(version(
                    id,
                    v,
                    &format!("src {id}{v}"),
                    deleted,
                )))
                .audit(event("policy.update")),
        )
        .await;
    }
    assert_eq!(store.policy_state_version().await.unwrap(), 4);
    let current = store.current_policies().await.unwrap();
    assert_eq!(current, vec![version("a", 2, "src a2", false)]);
    let history = store.policy_history("b").await.unwrap();
    assert_eq!(
        history.iter().map(|p| p.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(history[1].deleted);
    assert!(store.policy_history("nope").await.unwrap().is_empty());
    // A concurrent writer of the same version loses, atomically with its audit event.
    let size = store.audit_head().await.unwrap().size;
    let r = store
        .commit(
            Change::new()
                .with(Mutation::InsertPolicyVersion(version(
                    "a", 2, "other", false,
                )))
                .audit(event("policy.update")),
        )
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
    assert_eq!(store.audit_head().await.unwrap().size, size);
    assert_eq!(store.policy_state_version().await.unwrap(), 4);
}

pub async fn exceptions(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "dev");
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone())),
    )
    .await;
    let x = |expires: i64, by: &str| ExceptionRecord {
        id: Uuid::now_v7(),
        identity_id: i.id,
        guard_rail: "steward.env-isolation".into(),
        requested_by: by.into(),
        approved_by: "approver".into(),
        reason: "incident".into(),
        created_at: T0,
        expires_at: at(expires),
    };
    let (short, long) = (x(100, "alice"), x(1000, "bob"));
    for e in [&short, &long] {
        commit(
            &store,
            Change::new()
                .with(Mutation::InsertException(e.clone()))
                .audit(event("exception.create")),
        )
        .await;
    }
    assert_eq!(store.policy_state_version().await.unwrap(), 2);
    let all = store
        .list_exceptions(&ExceptionQuery::default())
        .await
        .unwrap();
    assert_eq!(all, vec![short.clone(), long.clone()]);
    let active = store
        .list_exceptions(&ExceptionQuery {
            identity_id: Some(i.id),
            active_at: Some(at(500)),
        })
        .await
        .unwrap();
    assert_eq!(active, vec![long]);
    // The requester may not approve; the identity must exist.
    let mut same = x(100, "approver");
    same.id = Uuid::now_v7();
    assert!(
        store
            .commit(Change::new().with(Mutation::InsertException(same)))
            .await
            .is_err()
    );
    let mut orphan = x(100, "carol");
    orphan.identity_id = Uuid::now_v7();
    let r = store
        .commit(Change::new().with(Mutation::InsertException(orphan)))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

//! Trust policies: round trip, unique names, unknown identities, optimistic update and delete,
//! filtered and paginated listing, and identities' `may_act` lists surviving a round trip.

use std::sync::Arc;

use serde_json::json;
use steward_store::{
    Change, Mutation, Notice, Store, StoreError, TrustPolicyQuery, TrustPolicyRecord,
};
use uuid::Uuid;

use crate::support::{T0, at, commit, identity, owner};

fn policy(identity: Uuid, name: &str, issuer: &str, n: u128) -> TrustPolicyRecord {
    TrustPolicyRecord {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        name: name.into(),
        issuer: issuer.into(),
        identity_id: identity,
        document: json!({"name": name, "issuer": issuer, "allow": [{"conditions": [{"claim": "sub", "equals": "x"}]}]}),
        created_by: "admin".into(),
        created_at: T0,
        updated_at: T0,
        version: 1,
    }
}

pub async fn trust_policies_round_trip(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "ci", "prod");
    let gh = "https://token.actions.githubusercontent.com";
    let a = policy(i.id, "deploy", gh, 1);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertTrustPolicy(a.clone())),
    )
    .await;
    assert_eq!(store.get_trust_policy(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.get_trust_policy(Uuid::from_u128(5)).await.unwrap(),
        None
    );
    // may_act survives the identity round trip.
    assert_eq!(
        store.get_identity(i.id).await.unwrap().unwrap().may_act,
        i.may_act
    );

    // Names are unique; identities must exist.
    let dup = policy(i.id, "deploy", "https://other.example", 2);
    let r = store
        .commit(Change::new().with(Mutation::InsertTrustPolicy(dup)))
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let orphan = policy(Uuid::from_u128(77), "orphan", gh, 3);
    let r = store
        .commit(Change::new().with(Mutation::InsertTrustPolicy(orphan)))
        .await;
    assert!(r.is_err(), "{r:?}");

    // Optimistic update: the right version succeeds, the same version again is stale.
    let mut b = a.clone();
    b.document = json!({"name": "deploy", "changed": true});
    b.issuer = "https://kubernetes.default.svc".into();
    b.updated_at = at(30);
    b.version = 2;
    commit(
        &store,
        Change::new().with(Mutation::UpdateTrustPolicy {
            policy: b.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(store.get_trust_policy(a.id).await.unwrap(), Some(b.clone()));
    let r = store
        .commit(Change::new().with(Mutation::UpdateTrustPolicy {
            policy: b.clone(),
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
    let mut missing = b.clone();
    missing.id = Uuid::from_u128(99);
    let r = store
        .commit(Change::new().with(Mutation::UpdateTrustPolicy {
            policy: missing,
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    // Listing by issuer and identity, with pagination.
    let c = policy(i.id, "k8s-a", gh, 4);
    let d = policy(i.id, "k8s-b", gh, 5);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertTrustPolicy(c.clone()))
            .with(Mutation::InsertTrustPolicy(d.clone())),
    )
    .await;
    let by_issuer = store
        .list_trust_policies(&TrustPolicyQuery {
            issuer: Some(gh.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_issuer.items, vec![c.clone(), d.clone()]);
    assert_eq!(by_issuer.next, None);
    let first = store
        .list_trust_policies(&TrustPolicyQuery {
            identity_id: Some(i.id),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items, vec![b.clone(), c.clone()]);
    let rest = store
        .list_trust_policies(&TrustPolicyQuery {
            after: first.next.as_deref().map(|s| Uuid::parse_str(s).unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items, vec![d.clone()]);

    // Delete: a stale version is refused, the right one removes the row; then NotFound.
    let r = store
        .commit(Change::new().with(Mutation::DeleteTrustPolicy {
            id: b.id,
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
    commit(
        &store,
        Change::new().with(Mutation::DeleteTrustPolicy {
            id: b.id,
            expected_version: 2,
        }),
    )
    .await;
    assert_eq!(store.get_trust_policy(b.id).await.unwrap(), None);
    let r = store
        .commit(Change::new().with(Mutation::DeleteTrustPolicy {
            id: b.id,
            expected_version: 2,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    // Other nodes learn of every trust-policy change.
    let m = Mutation::DeleteTrustPolicy {
        id: b.id,
        expected_version: 2,
    };
    assert_eq!(Notice::of(&m), Some(Notice::TrustPolicies));
    assert_eq!(
        Notice::decode(&Notice::TrustPolicies.encode()),
        Some(Notice::TrustPolicies)
    );
}

//! PKI records (CA certificates, device CAs and rules, the serial deny-list): insert, upsert,
//! conflict on duplicate insert, per-kind listing in creation order, delete, and atomicity.

use std::sync::Arc;

use serde_json::json;
use steward_store::{Change, Mutation, PkiObject, Store};

use crate::support::{at, commit, event, is_conflict};

fn obj(kind: &str, id: &str, n: i64, expires: Option<i64>) -> PkiObject {
    PkiObject {
        kind: kind.into(),
        id: id.into(),
        body: json!({"n": n, "text": "é ✓"}),
        created_at: at(n),
        expires_at: expires.map(at),
    }
}

pub async fn pki_objects_round_trip(store: Arc<dyn Store>) {
    assert!(store.list_pki_objects("ca").await.unwrap().is_empty());
    let a = obj("ca", "root", 1, Some(1_000));
    let b = obj("ca", "issuing", 2, None);
    let r = obj("revoked_serial", "40ab", 3, Some(50));
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertPkiObject(b.clone()))
            .with(Mutation::InsertPkiObject(a.clone()))
            .with(Mutation::PutPkiObject(r.clone()))
            .audit(event("ca.create")),
    )
    .await;
    assert_eq!(
        store.list_pki_objects("ca").await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        store.list_pki_objects("revoked_serial").await.unwrap(),
        vec![r]
    );
    // A second insert of the same (kind, id) conflicts and changes nothing, audit included.
    let before = store.audit_head().await.unwrap().size;
    let res = store
        .commit(
            Change::new()
                .with(Mutation::InsertPkiObject(obj("ca", "root", 9, None)))
                .audit(event("ca.create")),
        )
        .await;
    assert!(is_conflict(&res), "{res:?}");
    assert_eq!(store.audit_head().await.unwrap().size, before);
    assert_eq!(store.list_pki_objects("ca").await.unwrap()[0], a);
    // Put replaces the body and expiry.
    let mut a2 = a.clone();
    a2.body = json!({"n": 10});
    a2.expires_at = Some(at(2_000));
    commit(
        &store,
        Change::new().with(Mutation::PutPkiObject(a2.clone())),
    )
    .await;
    assert_eq!(store.list_pki_objects("ca").await.unwrap()[0], a2);
    // Delete is idempotent.
    for _ in 0..2 {
        commit(
            &store,
            Change::new().with(Mutation::DeletePkiObject {
                kind: "ca".into(),
                id: "issuing".into(),
            }),
        )
        .await;
    }
    assert_eq!(store.list_pki_objects("ca").await.unwrap(), vec![a2]);
}

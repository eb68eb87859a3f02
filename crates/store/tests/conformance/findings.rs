//! Findings: round trip, one open finding per dedup key, optimistic updates, filtered listing.

use std::sync::Arc;

use serde_json::json;
use steward_store::{
    Change, FindingQuery, FindingRecord, FindingStatus, Mutation, Store, StoreError,
};
use uuid::Uuid;

use crate::support::{T0, at, commit, identity, owner};

fn finding(identity: Option<Uuid>, key: &str, n: u128) -> FindingRecord {
    FindingRecord {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        identity_id: identity,
        kind: "secret_leaked".into(),
        severity: "critical".into(),
        status: FindingStatus::Open,
        owasp_nhi: "NHI2:2025".into(),
        nist_csf: "PR.AA-01".into(),
        evidence: json!({"url": "https://example.invalid/leak", "reports": [1]}),
        dedup_key: key.into(),
        first_seen: T0,
        last_seen: T0,
        resolved_at: None,
        version: 1,
        accepted_until: None,
        accepted_reason: None,
        accepted_by: None,
    }
}

pub async fn findings_round_trip_and_dedup(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let a = finding(Some(i.id), "secret_leaked:credential:a", 1);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertFinding(a.clone())),
    )
    .await;
    assert_eq!(store.get_finding(a.id).await.unwrap(), Some(a.clone()));

    // A second open finding with the same dedup key is a conflict.
    let dup = finding(Some(i.id), &a.dedup_key, 2);
    let r = store
        .commit(Change::new().with(Mutation::InsertFinding(dup.clone())))
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    // Unknown identities are refused.
    let orphan = finding(Some(Uuid::from_u128(77)), "secret_leaked:credential:x", 3);
    let r = store
        .commit(Change::new().with(Mutation::InsertFinding(orphan)))
        .await;
    assert!(r.is_err());

    // Update with the right version; a stale version is refused.
    let mut b = a.clone();
    b.last_seen = at(50);
    b.status = FindingStatus::Resolved;
    b.resolved_at = Some(at(50));
    b.version = 2;
    commit(
        &store,
        Change::new().with(Mutation::UpdateFinding {
            finding: b.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(store.get_finding(a.id).await.unwrap(), Some(b.clone()));
    let r = store
        .commit(Change::new().with(Mutation::UpdateFinding {
            finding: b.clone(),
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
    let mut missing = b.clone();
    missing.id = Uuid::from_u128(99);
    let r = store
        .commit(Change::new().with(Mutation::UpdateFinding {
            finding: missing,
            expected_version: 2,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    // Once resolved, the key may be opened again.
    commit(
        &store,
        Change::new().with(Mutation::InsertFinding(dup.clone())),
    )
    .await;
    let other = finding(None, "deployment:x", 4);
    commit(
        &store,
        Change::new().with(Mutation::InsertFinding(other.clone())),
    )
    .await;

    let q = |f: FindingQuery| {
        let store = store.clone();
        async move { store.list_findings(&f).await.unwrap() }
    };
    let all = q(FindingQuery::default()).await;
    assert_eq!(
        all.items.iter().map(|f| f.id).collect::<Vec<_>>(),
        [a.id, dup.id, other.id]
    );
    let open = q(FindingQuery {
        status: Some(FindingStatus::Open),
        ..Default::default()
    })
    .await;
    assert_eq!(open.items.len(), 2);
    let mine = q(FindingQuery {
        identity_id: Some(i.id),
        dedup_key: Some(a.dedup_key.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(mine.items.len(), 2);
    let page = q(FindingQuery {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(page.items.len(), 2);
    let rest = q(FindingQuery {
        after: page.next.as_deref().map(|n| n.parse().unwrap()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        rest.items.iter().map(|f| f.id).collect::<Vec<_>>(),
        [other.id]
    );
    assert!(rest.next.is_none());
    let typed = q(FindingQuery {
        kind: Some("dormant".into()),
        ..Default::default()
    })
    .await;
    assert!(typed.items.is_empty());
}

/// What the findings job writes: hundreds of new findings and risk scores in one change (sent
/// as multi-row statements), all or nothing.
pub async fn findings_and_risks_in_bulk(store: Arc<dyn Store>) {
    let o = owner("team");
    let mut change = Change::new().with(Mutation::InsertOwner(o.clone()));
    let mut ids = vec![];
    for n in 0..300 {
        let i = identity(&o, &format!("svc-{n}"), "prod");
        ids.push(i.id);
        change = change.with(Mutation::InsertIdentity(i));
    }
    commit(&store, change).await;
    let findings: Vec<FindingRecord> = ids
        .iter()
        .enumerate()
        .map(|(n, i)| finding(Some(*i), &format!("dormant:{n}"), 1000 + n as u128))
        .collect();
    let mut change = Change::new();
    for f in &findings {
        change = change.with(Mutation::InsertFinding(f.clone()));
    }
    // Interleaved with a score per identity, one identity scored twice (the last one counts).
    for (n, i) in ids.iter().enumerate() {
        change = change.with(Mutation::PutIdentityRisk(steward_store::RiskRecord {
            identity_id: *i,
            score: (n % 100) as u8,
            factors: vec![],
            computed_at: T0,
        }));
    }
    change = change.with(Mutation::PutIdentityRisk(steward_store::RiskRecord {
        identity_id: ids[0],
        score: 77,
        factors: vec![],
        computed_at: at(60),
    }));
    commit(&store, change).await;
    for f in [&findings[0], &findings[255], &findings[256], &findings[299]] {
        assert_eq!(store.get_finding(f.id).await.unwrap().as_ref(), Some(f));
    }
    assert_eq!(
        store
            .get_identity_risk(ids[0])
            .await
            .unwrap()
            .unwrap()
            .score,
        77
    );
    assert_eq!(
        store
            .get_identity_risk(ids[299])
            .await
            .unwrap()
            .unwrap()
            .score,
        99
    );

    // One duplicate among many new findings: the whole change is refused, nothing is written.
    let mut change = Change::new();
    let fresh: Vec<FindingRecord> = (0..10)
        .map(|n| finding(Some(ids[n]), &format!("orphaned:{n}"), 5000 + n as u128))
        .collect();
    for f in &fresh {
        change = change.with(Mutation::InsertFinding(f.clone()));
    }
    change = change.with(Mutation::InsertFinding(finding(
        Some(ids[5]),
        "dormant:5",
        6000,
    )));
    let r = store.commit(change).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    for f in &fresh {
        assert_eq!(store.get_finding(f.id).await.unwrap(), None);
    }
}

//! Usage, governance and risk: merging usage batches, bounded credential sources, purges, risk
//! scores, the findings job's bulk reads by identity range, finding acceptance and filters, and
//! the identity fields the findings judge by.

use std::sync::Arc;

use serde_json::json;
use steward_core::Identity;
use steward_core::risk::RiskFactor;
use steward_core::usage::{SourceKind, day_of};
use steward_store::{
    Change, FindingQuery, FindingRecord, FindingStatus, IdRange, Mutation, RiskQuery, RiskRecord,
    SourceDelta, Store, UsageBatch, UsageDelta,
};
use time::Duration;
use uuid::Uuid;

use crate::support::{T0, api_key, at, commit, identity, owner};

fn delta(i: Uuid, scope: &str, aud: &str, day_offset: i64, uses: u64, secs: i64) -> UsageDelta {
    let t = at(secs) + Duration::days(day_offset);
    UsageDelta {
        identity_id: i,
        scope: scope.into(),
        audience: aud.into(),
        day: day_of(t),
        uses,
        first_used: t,
        last_used: t,
    }
}

fn src(i: Uuid, c: Uuid, kind: SourceKind, value: &str, secs: i64) -> SourceDelta {
    SourceDelta {
        identity_id: i,
        credential_id: c,
        kind,
        value: value.into(),
        uses: 1,
        first_seen: at(secs),
        last_seen: at(secs),
    }
}

/// Two identities, in id order.
async fn two_identities(store: &Arc<dyn Store>) -> (Identity, Identity) {
    let o = owner("team");
    let a = identity(&o, "svc-a", "prod");
    let b = identity(&o, "svc-b", "prod");
    commit(
        store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(a.clone()))
            .with(Mutation::InsertIdentity(b.clone())),
    )
    .await;
    assert!(a.id < b.id);
    (a, b)
}

pub async fn usage_batches_merge(store: Arc<dyn Store>) {
    let (a, b) = two_identities(&store).await;
    // One batch with a repeated key (merged before writing), then an overlapping batch.
    let first = UsageBatch {
        scopes: vec![
            delta(a.id, "p:read", "https://x", 0, 2, 10),
            delta(a.id, "p:read", "https://x", 0, 3, 5),
            delta(a.id, "", "https://x", 0, 1, 7),
            delta(a.id, "p:read", "https://x", -1, 4, 0),
            delta(b.id, "q:write", "https://y", 0, 1, 1),
        ],
        sources: vec![],
    };
    commit(&store, Change::new().with(Mutation::RecordUsage(first))).await;
    let second = UsageBatch {
        scopes: vec![delta(a.id, "p:read", "https://x", 0, 10, 20)],
        sources: vec![],
    };
    commit(&store, Change::new().with(Mutation::RecordUsage(second))).await;

    let days = store.usage_days(a.id, day_of(T0) - 1).await.unwrap();
    let today = days
        .iter()
        .find(|d| d.day == day_of(at(0)) && d.scope == "p:read")
        .unwrap();
    assert_eq!(today.uses, 15);
    assert_eq!(today.last_used, at(20));
    assert_eq!(days.len(), 3, "{days:?}");
    assert!(days.iter().any(|d| d.scope.is_empty() && d.uses == 1));
    // Only days on or after since_day.
    let recent = store.usage_days(a.id, day_of(at(0))).await.unwrap();
    assert_eq!(recent.len(), 2);

    let summary = store.usage_summary(a.id).await.unwrap();
    let read = summary.iter().find(|s| s.scope == "p:read").unwrap();
    assert_eq!(read.uses, 19);
    assert_eq!(read.first_used, at(0) - Duration::days(1));
    assert_eq!(read.last_used, at(20));
    let both = store
        .usage_summaries_between(IdRange {
            first: a.id,
            last: b.id,
        })
        .await
        .unwrap();
    assert_eq!(both.len(), 3);
    assert_eq!(both.last().unwrap().identity_id, b.id);
    let only_b = store
        .usage_summaries_between(IdRange {
            first: b.id,
            last: b.id,
        })
        .await
        .unwrap();
    assert_eq!(only_b.len(), 1);
}

pub async fn credential_sources_are_bounded(store: Arc<dyn Store>) {
    let (a, _) = two_identities(&store).await;
    let c = Uuid::now_v7();
    let mut sources: Vec<SourceDelta> = (0..20)
        .map(|n| src(a.id, c, SourceKind::Address, &format!("10.0.0.{n}"), n))
        .collect();
    sources.push(src(a.id, c, SourceKind::UserAgent, "svc/1.0", 3));
    sources.push(src(a.id, Uuid::nil(), SourceKind::Address, "10.9.9.9", 3));
    commit(
        &store,
        Change::new().with(Mutation::RecordUsage(UsageBatch {
            scopes: vec![],
            sources,
        })),
    )
    .await;
    // Known values add up; new ones beyond the bound go to the overflow row.
    commit(
        &store,
        Change::new().with(Mutation::RecordUsage(UsageBatch {
            scopes: vec![],
            sources: vec![
                src(a.id, c, SourceKind::Address, "10.0.0.0", 100),
                src(a.id, c, SourceKind::Address, "10.0.0.99", 101),
            ],
        })),
    )
    .await;
    let all = store
        .credential_sources_between(IdRange {
            first: a.id,
            last: a.id,
        })
        .await
        .unwrap();
    let addresses: Vec<_> = all
        .iter()
        .filter(|s| s.credential_id == c && s.kind == SourceKind::Address)
        .collect();
    assert_eq!(addresses.len(), 17, "16 values and the overflow row");
    let overflow = addresses.iter().find(|s| s.is_overflow()).unwrap();
    assert_eq!(overflow.uses, 5);
    assert_eq!(overflow.last_seen, at(101));
    assert_eq!(
        overflow.first_seen,
        at(6),
        "values are kept in key order within a batch"
    );
    let zero = addresses.iter().find(|s| s.value == "10.0.0.0").unwrap();
    assert_eq!(
        (zero.uses, zero.first_seen, zero.last_seen),
        (2, at(0), at(100))
    );
    assert!(
        all.iter()
            .any(|s| s.kind == SourceKind::UserAgent && s.value == "svc/1.0")
    );
    assert!(
        all.iter()
            .any(|s| s.credential_id.is_nil() && s.value == "10.9.9.9"),
        "certificate use is kept under the nil credential"
    );
}

pub async fn purge_usage_removes_only_old_rows(store: Arc<dyn Store>) {
    let (a, _) = two_identities(&store).await;
    let c = Uuid::now_v7();
    commit(
        &store,
        Change::new().with(Mutation::RecordUsage(UsageBatch {
            scopes: vec![
                delta(a.id, "p:read", "https://x", -400, 1, 0),
                delta(a.id, "p:read", "https://x", 0, 1, 0),
            ],
            sources: vec![
                src(a.id, c, SourceKind::Address, "10.0.0.1", -1000),
                src(a.id, c, SourceKind::Address, "10.0.0.2", 0),
            ],
        })),
    )
    .await;
    let n = store.purge_usage(day_of(T0) - 100, at(-500)).await.unwrap();
    assert_eq!(n, 2);
    let days = store.usage_days(a.id, 0).await.unwrap();
    assert_eq!(days.len(), 1);
    let left = store
        .credential_sources_between(IdRange {
            first: a.id,
            last: a.id,
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].value, "10.0.0.2");
    // The all-time summary is kept: it is the evidence of the last use.
    assert_eq!(store.usage_summary(a.id).await.unwrap().len(), 1);
    assert_eq!(
        store.purge_usage(day_of(T0) - 100, at(-500)).await.unwrap(),
        0
    );
}

fn risk(i: Uuid, score: u8) -> RiskRecord {
    RiskRecord {
        identity_id: i,
        score,
        factors: vec![RiskFactor {
            finding_id: Uuid::from_u128(u128::from(score)),
            finding_type: "orphaned".into(),
            owasp_nhi: "NHI1:2025".into(),
            severity: "high".into(),
            accepted: false,
            points: u32::from(score),
        }],
        computed_at: T0,
    }
}

pub async fn identity_risk_round_trip_and_order(store: Arc<dyn Store>) {
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let scores = [40u8, 90, 40, 10, 100];
    let mut change = Change::new();
    for (i, s) in ids.iter().zip(scores) {
        change = change.with(Mutation::PutIdentityRisk(risk(*i, s)));
    }
    commit(&store, change).await;
    assert_eq!(
        store.get_identity_risk(ids[1]).await.unwrap(),
        Some(risk(ids[1], 90))
    );
    // Replace.
    commit(
        &store,
        Change::new().with(Mutation::PutIdentityRisk(risk(ids[1], 95))),
    )
    .await;
    assert_eq!(
        store
            .get_identity_risk(ids[1])
            .await
            .unwrap()
            .unwrap()
            .score,
        95
    );
    assert_eq!(store.get_identity_risk(Uuid::now_v7()).await.unwrap(), None);

    let page = store
        .list_identity_risks(&RiskQuery {
            min_score: 20,
            after: None,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|r| r.score).collect::<Vec<_>>(),
        [100, 95]
    );
    let cursor = page.next.clone().unwrap();
    let (s, id) = cursor.split_once(':').unwrap();
    let rest = store
        .list_identity_risks(&RiskQuery {
            min_score: 20,
            after: Some((s.parse().unwrap(), id.parse().unwrap())),
            limit: 2,
        })
        .await
        .unwrap();
    // Equal scores in id order; the 10 is below the minimum.
    assert_eq!(
        rest.items
            .iter()
            .map(|r| (r.score, r.identity_id))
            .collect::<Vec<_>>(),
        [(40, ids[0]), (40, ids[2])]
    );
    assert!(rest.next.is_none());
    let between = store
        .identity_risks_between(IdRange {
            first: ids[1],
            last: ids[3],
        })
        .await
        .unwrap();
    assert_eq!(between.len(), 3);
}

fn finding(i: Uuid, kind: &str, status: FindingStatus, n: u128) -> FindingRecord {
    FindingRecord {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        identity_id: Some(i),
        kind: kind.into(),
        severity: if kind == "dormant" { "medium" } else { "high" }.into(),
        status,
        owasp_nhi: if kind == "dormant" {
            "NHI1:2025"
        } else {
            "NHI5:2025"
        }
        .into(),
        nist_csf: "PR.AA-05".into(),
        evidence: json!({"n": n as u64}),
        dedup_key: format!("{kind}:identity:{i}:{n}"),
        first_seen: T0,
        last_seen: T0,
        resolved_at: None,
        version: 1,
        accepted_until: (status == FindingStatus::Accepted).then(|| at(3600)),
        accepted_reason: (status == FindingStatus::Accepted).then(|| "owned risk".into()),
        accepted_by: (status == FindingStatus::Accepted).then(|| "bob".into()),
    }
}

pub async fn bulk_reads_by_identity_range(store: Arc<dyn Store>) {
    let (a, b) = two_identities(&store).await;
    let ka = api_key(&a, &[1; 32], T0);
    let kb = api_key(&b, &[2; 32], T0);
    let fs = [
        finding(a.id, "dormant", FindingStatus::Open, 1),
        finding(
            a.id,
            "wildcard_or_admin_scope_in_prod",
            FindingStatus::Accepted,
            2,
        ),
        finding(a.id, "dormant", FindingStatus::Resolved, 3),
        finding(b.id, "dormant", FindingStatus::Open, 4),
    ];
    let mut change = Change::new()
        .with(Mutation::InsertCredential(ka.clone()))
        .with(Mutation::InsertCredential(kb.clone()));
    for f in &fs {
        change = change.with(Mutation::InsertFinding(f.clone()));
    }
    commit(&store, change).await;

    let only_a = IdRange {
        first: a.id,
        last: a.id,
    };
    let creds = store.credentials_between(only_a).await.unwrap();
    assert_eq!(creds.iter().map(|c| c.id).collect::<Vec<_>>(), [ka.id]);
    let both = IdRange {
        first: a.id,
        last: b.id,
    };
    assert_eq!(store.credentials_between(both).await.unwrap().len(), 2);

    let live = store.live_findings_between(only_a).await.unwrap();
    assert_eq!(
        live,
        vec![fs[0].clone(), fs[1].clone()],
        "open and accepted only"
    );
    assert_eq!(store.live_findings_between(both).await.unwrap().len(), 3);

    let counts = store.finding_counts().await.unwrap();
    let n = |kind: &str, status: FindingStatus| {
        counts
            .iter()
            .filter(|c| c.kind == kind && c.status == status)
            .map(|c| c.count)
            .sum::<u64>()
    };
    assert_eq!(n("dormant", FindingStatus::Open), 2);
    assert_eq!(n("dormant", FindingStatus::Resolved), 1);
    assert_eq!(
        n("wildcard_or_admin_scope_in_prod", FindingStatus::Accepted),
        1
    );

    // Filters of the findings list.
    let q = |f: FindingQuery| {
        let store = store.clone();
        async move { store.list_findings(&f).await.unwrap().items }
    };
    let high = q(FindingQuery {
        severity: Some("high".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(high.len(), 1);
    assert_eq!(high[0].accepted_reason.as_deref(), Some("owned risk"));
    assert_eq!(high[0].accepted_until, Some(at(3600)));
    let nhi1 = q(FindingQuery {
        owasp_nhi: Some("NHI1:2025".into()),
        status: Some(FindingStatus::Open),
        ..Default::default()
    })
    .await;
    assert_eq!(nhi1.len(), 2);
    let none = q(FindingQuery {
        nist_csf: Some("PR.AA-01".into()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());
}

pub async fn governance_identity_fields_round_trip(store: Arc<dyn Store>) {
    let o = owner("team");
    let mut i = identity(&o, "svc", "prod");
    i.allowed_source_cidrs = vec!["10.0.0.0/8".into(), "2001:db8::/32".into()];
    i.review_due_at = Some(at(86_400));
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone())),
    )
    .await;
    assert_eq!(store.get_identity(i.id).await.unwrap(), Some(i.clone()));
    let mut next = i.clone();
    next.allowed_source_cidrs.clear();
    next.review_due_at = None;
    next.version = 2;
    commit(
        &store,
        Change::new().with(Mutation::UpdateIdentity {
            identity: next.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(store.get_identity(i.id).await.unwrap(), Some(next));
}

//! Web-console storage: session lifecycle (insert, touch, delete, purge of both timeouts),
//! grouped identity and finding counts, name-prefix search, newest-first audit and hourly counts.

use std::sync::Arc;

use serde_json::json;
use steward_core::{AuditEvent, IdentityKind, IdentityStatus, Outcome};
use steward_store::{
    AuditQuery, Change, ConsoleSession, FindingRecord, FindingStat, FindingStatus, IdentityQuery,
    IdentitySearch, IdentityStat, Mutation, RiskRecord, Store, StoreError,
};
use uuid::Uuid;

use crate::support::{T0, api_key, at, commit, identity, owner};

fn session(identity: Uuid, credential: Uuid, tag: u8) -> ConsoleSession {
    ConsoleSession {
        id_hash: [tag; 32],
        identity_id: identity,
        credential_id: credential,
        created_at: T0,
        last_seen_at: T0,
        idle_expires_at: at(900),
        expires_at: at(8 * 3600),
        source: Some("203.0.113.9".into()),
    }
}

pub async fn console_sessions_lifecycle(store: Arc<dyn Store>) {
    let o = owner("ops");
    let i = identity(&o, "admin", "prod");
    let c = api_key(&i, &[9; 32], T0);
    let a = session(i.id, c.id, 1);
    let b = ConsoleSession {
        source: None,
        ..session(i.id, c.id, 2)
    };
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertCredential(c.clone()))
            .with(Mutation::InsertConsoleSession(a.clone()))
            .with(Mutation::InsertConsoleSession(b.clone())),
    )
    .await;
    assert_eq!(
        store.get_console_session(&a.id_hash).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.get_console_session(&b.id_hash).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.get_console_session(&[3; 32]).await.unwrap(), None);
    assert!(a.is_live(at(899)));
    assert!(!a.is_live(at(900)));

    // The same id hash twice is a conflict; an unknown identity is refused.
    let r = store
        .commit(Change::new().with(Mutation::InsertConsoleSession(a.clone())))
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = store
        .commit(Change::new().with(Mutation::InsertConsoleSession(session(
            Uuid::from_u128(5),
            c.id,
            4,
        ))))
        .await;
    assert!(r.is_err(), "{r:?}");

    // Touch extends the idle expiry, but never moves last_seen backwards.
    commit(
        &store,
        Change::new().with(Mutation::TouchConsoleSession {
            id_hash: a.id_hash,
            last_seen_at: at(600),
            idle_expires_at: at(1500),
        }),
    )
    .await;
    let touched = store
        .get_console_session(&a.id_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (touched.last_seen_at, touched.idle_expires_at),
        (at(600), at(1500))
    );
    commit(
        &store,
        Change::new().with(Mutation::TouchConsoleSession {
            id_hash: a.id_hash,
            last_seen_at: at(300),
            idle_expires_at: at(1200),
        }),
    )
    .await;
    let same = store
        .get_console_session(&a.id_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, touched);
    // Touching or deleting an unknown session is not an error.
    commit(
        &store,
        Change::new()
            .with(Mutation::TouchConsoleSession {
                id_hash: [7; 32],
                last_seen_at: at(1),
                idle_expires_at: at(2),
            })
            .with(Mutation::DeleteConsoleSession { id_hash: [7; 32] }),
    )
    .await;

    // Purge at 1000 s: b's idle timeout (900) has passed, a's (1500) has not.
    commit(
        &store,
        Change::new().with(Mutation::PurgeConsoleSessions { now: at(1000) }),
    )
    .await;
    assert!(
        store
            .get_console_session(&b.id_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_console_session(&a.id_hash)
            .await
            .unwrap()
            .is_some()
    );
    // The absolute timeout ends a session however recently it was used.
    commit(
        &store,
        Change::new()
            .with(Mutation::TouchConsoleSession {
                id_hash: a.id_hash,
                last_seen_at: at(8 * 3600 - 10),
                idle_expires_at: at(9 * 3600),
            })
            .with(Mutation::PurgeConsoleSessions { now: at(8 * 3600) }),
    )
    .await;
    assert!(
        store
            .get_console_session(&a.id_hash)
            .await
            .unwrap()
            .is_none()
    );

    // Sign-out deletes exactly one session.
    let d = session(i.id, c.id, 5);
    let e = session(i.id, c.id, 6);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertConsoleSession(d.clone()))
            .with(Mutation::InsertConsoleSession(e.clone())),
    )
    .await;
    commit(
        &store,
        Change::new().with(Mutation::DeleteConsoleSession { id_hash: d.id_hash }),
    )
    .await;
    assert!(
        store
            .get_console_session(&d.id_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.get_console_session(&e.id_hash).await.unwrap(),
        Some(e)
    );
}

pub async fn console_identity_and_finding_stats(store: Arc<dyn Store>) {
    assert!(store.identity_stats(T0).await.unwrap().is_empty());
    assert!(store.finding_stats().await.unwrap().is_empty());
    let o = owner("team");
    let mut change = Change::new().with(Mutation::InsertOwner(o.clone()));
    let mut ids = Vec::new();
    for (n, env, kind, status, expires) in [
        (
            "a",
            "prod",
            IdentityKind::Workload,
            IdentityStatus::Active,
            at(1000),
        ),
        (
            "b",
            "prod",
            IdentityKind::Workload,
            IdentityStatus::Active,
            at(1000),
        ),
        (
            "c",
            "prod",
            IdentityKind::Workload,
            IdentityStatus::Active,
            at(10),
        ),
        (
            "d",
            "dev",
            IdentityKind::Pipeline,
            IdentityStatus::Suspended,
            at(1000),
        ),
        (
            "e",
            "dev",
            IdentityKind::Pipeline,
            IdentityStatus::Retired,
            at(10),
        ),
    ] {
        let mut i = identity(&o, n, env);
        i.kind = kind;
        i.status = status;
        i.expires_at = expires;
        ids.push(i.id);
        change = change.with(Mutation::InsertIdentity(i));
    }
    let finding = |n: u128, sev: &str, nhi: &str, status: FindingStatus| FindingRecord {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        identity_id: Some(ids[0]),
        kind: if nhi == "NHI2:2025" {
            "secret_leaked"
        } else {
            "dormant"
        }
        .into(),
        severity: sev.into(),
        status,
        owasp_nhi: nhi.into(),
        nist_csf: "PR.AA-01".into(),
        evidence: json!({}),
        dedup_key: format!("k{n}"),
        first_seen: T0,
        last_seen: T0,
        resolved_at: None,
        version: 1,
        accepted_until: None,
        accepted_reason: None,
        accepted_by: None,
    };
    change = change
        .with(Mutation::InsertFinding(finding(
            1,
            "critical",
            "NHI2:2025",
            FindingStatus::Open,
        )))
        .with(Mutation::InsertFinding(finding(
            2,
            "critical",
            "NHI2:2025",
            FindingStatus::Open,
        )))
        .with(Mutation::InsertFinding(finding(
            3,
            "low",
            "NHI1:2025",
            FindingStatus::Open,
        )))
        .with(Mutation::InsertFinding(finding(
            4,
            "low",
            "NHI1:2025",
            FindingStatus::Resolved,
        )));
    commit(&store, change).await;

    let stat = |status: &str, kind: &str, env: &str, count: u64| IdentityStat {
        status: status.into(),
        kind: kind.into(),
        environment: env.into(),
        count,
    };
    // At 100 s, c has expired (a live status past its expiry); e stays retired.
    assert_eq!(
        store.identity_stats(at(100)).await.unwrap(),
        vec![
            stat("active", "workload", "prod", 2),
            stat("expired", "workload", "prod", 1),
            stat("retired", "pipeline", "dev", 1),
            stat("suspended", "pipeline", "dev", 1),
        ]
    );
    // Before c's expiry it still counts as active.
    assert_eq!(
        store.identity_stats(at(5)).await.unwrap()[0],
        stat("active", "workload", "prod", 3)
    );
    let fstat = |kind: &str, sev: &str, nhi: &str, status: &str, count: u64| FindingStat {
        kind: kind.into(),
        severity: sev.into(),
        owasp_nhi: nhi.into(),
        status: status.into(),
        count,
    };
    assert_eq!(
        store.finding_stats().await.unwrap(),
        vec![
            fstat("dormant", "low", "NHI1:2025", "open", 1),
            fstat("dormant", "low", "NHI1:2025", "resolved", 1),
            fstat("secret_leaked", "critical", "NHI2:2025", "open", 2),
        ]
    );
}

fn all(now: time::OffsetDateTime) -> IdentityQuery {
    IdentityQuery::all(None, 0, now)
}

pub async fn console_name_prefix_search(store: Arc<dyn Store>) {
    let o = owner("team");
    let mut change = Change::new().with(Mutation::InsertOwner(o.clone()));
    // Names chosen around the prefix's bounds: "pay-", "pay.", "pay_" and "payz" sort on either
    // side of "pay-" in byte order but not in a natural-language collation.
    for (n, env) in [
        ("pay-api", "prod"),
        ("pay-api", "dev"),
        ("pay-worker", "prod"),
        ("pay.batch", "prod"),
        ("pay_old", "prod"),
        ("payz", "prod"),
        ("pa", "prod"),
        ("ledger", "prod"),
    ] {
        change = change.with(Mutation::InsertIdentity(identity(&o, n, env)));
    }
    commit(&store, change).await;
    let names = |prefix: &str, env: Option<&str>, limit: u32| {
        let store = store.clone();
        let q = IdentitySearch {
            filter: IdentityQuery {
                environment: env.map(str::to_owned),
                limit,
                ..all(T0)
            },
            name_prefix: Some(prefix.to_owned()),
            risk: None,
        };
        async move {
            let mut out = Vec::new();
            let mut q = q;
            loop {
                let page = store.search_identities(&q).await.unwrap();
                out.extend(
                    page.items
                        .iter()
                        .map(|i| format!("{}/{}", i.name, i.environment)),
                );
                match page.next {
                    Some(n) => q.filter.after = Some(Uuid::parse_str(&n).unwrap()),
                    None => return out,
                }
            }
        }
    };
    assert_eq!(
        names("pay-", None, 0).await,
        vec!["pay-api/prod", "pay-api/dev", "pay-worker/prod"]
    );
    // Pagination walks the same rows, in id order, one per page.
    assert_eq!(
        names("pay-", None, 1).await,
        vec!["pay-api/prod", "pay-api/dev", "pay-worker/prod"]
    );
    assert_eq!(names("pay-", Some("dev"), 0).await, vec!["pay-api/dev"]);
    assert_eq!(names("pay", None, 0).await.len(), 6);
    assert_eq!(names("payz", None, 0).await, vec!["payz/prod"]);
    assert!(names("q", None, 0).await.is_empty());
    // An empty prefix matches everything; no prefix at all is a plain listing.
    assert_eq!(names("", None, 0).await.len(), 8);
    let plain = store
        .search_identities(&IdentitySearch {
            filter: all(T0),
            name_prefix: None,
            risk: None,
        })
        .await
        .unwrap();
    assert_eq!(plain, store.list_identities(&all(T0)).await.unwrap());
}

pub async fn console_risk_band_filter(store: Arc<dyn Store>) {
    let o = owner("team");
    let mut change = Change::new().with(Mutation::InsertOwner(o.clone()));
    let mut ids = vec![];
    for n in ["unscored", "zero", "nine", "ten", "sixty", "hundred"] {
        let i = identity(&o, n, "prod");
        ids.push(i.id);
        change = change.with(Mutation::InsertIdentity(i));
    }
    for (id, score) in ids[1..].iter().zip([0u8, 9, 10, 60, 100]) {
        change = change.with(Mutation::PutIdentityRisk(RiskRecord {
            identity_id: *id,
            score,
            factors: vec![],
            computed_at: T0,
        }));
    }
    commit(&store, change).await;
    let names = |risk: (u8, u8)| {
        let store = store.clone();
        async move {
            let page = store
                .search_identities(&IdentitySearch {
                    filter: all(T0),
                    name_prefix: None,
                    risk: Some(risk),
                })
                .await
                .unwrap();
            page.items.into_iter().map(|i| i.name).collect::<Vec<_>>()
        }
    };
    // Identities never scored count as 0, so they are in the lowest band.
    assert_eq!(names((0, 9)).await, ["unscored", "zero", "nine"]);
    assert_eq!(names((10, 29)).await, ["ten"]);
    assert_eq!(names((60, 100)).await, ["sixty", "hundred"]);
    assert!(names((30, 59)).await.is_empty());
    // The band combines with the other filters.
    let q = IdentitySearch {
        filter: all(T0),
        name_prefix: Some("s".into()),
        risk: Some((60, 100)),
    };
    let page = store.search_identities(&q).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].name, "sixty");
}

pub async fn console_audit_newest_first_and_counts(store: Arc<dyn Store>) {
    assert_eq!(store.audit_seq_at(T0).await.unwrap(), None);
    let id = Uuid::now_v7();
    let mut change = Change::new();
    // Ten records, one a minute; the even ones are token issuances of `id`.
    for n in 0..10i64 {
        let action = if n % 2 == 0 {
            "token.issue"
        } else {
            "identity.update"
        };
        let mut e = AuditEvent::new(at(60 * n), "system", action, Outcome::Success);
        if n % 2 == 0 {
            e = e.identity(id);
        }
        change = change.audit(e);
    }
    commit(&store, change).await;

    let page = store
        .audit_recent(
            &AuditQuery {
                limit: 3,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = page.items.iter().map(|r| r.seq).collect();
    assert_eq!((seqs, page.next.as_deref()), (vec![10, 9, 8], Some("8")));
    let older = store
        .audit_recent(
            &AuditQuery {
                limit: 3,
                ..Default::default()
            },
            Some(8),
        )
        .await
        .unwrap();
    assert_eq!(
        older.items.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![7, 6, 5]
    );
    // Filters apply, and after_seq bounds the walk from below.
    let mine = store
        .audit_recent(
            &AuditQuery {
                identity_id: Some(id),
                after_seq: Some(3),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            mine.items.iter().map(|r| r.seq).collect::<Vec<_>>(),
            mine.next
        ),
        (vec![9, 7, 5], None)
    );
    let prefix = store
        .audit_recent(
            &AuditQuery {
                action: Some("identity.".into()),
                ..Default::default()
            },
            Some(6),
        )
        .await
        .unwrap();
    assert_eq!(
        prefix.items.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![4, 2]
    );

    // Record n (seq n+1) is stamped at 60n s.
    assert_eq!(store.audit_seq_at(T0).await.unwrap(), Some(1));
    assert_eq!(store.audit_seq_at(at(61)).await.unwrap(), Some(3));
    assert_eq!(store.audit_seq_at(at(120)).await.unwrap(), Some(3));
    assert_eq!(store.audit_seq_at(at(541)).await.unwrap(), None);
    assert_eq!(
        store
            .count_audit_action("token.issue", None, 1, 11)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .count_audit_action("token.issue", None, 2, 5)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count_audit_action("token.issue", None, 5, 5)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_audit_action("token.issue", None, 7, 2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_audit_action("token.", None, 1, 11)
            .await
            .unwrap(),
        0
    );
    // With an outcome: a sixth issuance, refused, is counted apart from the five successes.
    let mut refused = AuditEvent::new(at(600), "system", "token.issue", Outcome::Denied);
    refused = refused.identity(id);
    commit(&store, Change::new().audit(refused)).await;
    assert_eq!(
        store
            .count_audit_action("token.issue", None, 1, 12)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        store
            .count_audit_action("token.issue", Some(Outcome::Success), 1, 12)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .count_audit_action("token.issue", Some(Outcome::Denied), 1, 12)
            .await
            .unwrap(),
        1
    );
}

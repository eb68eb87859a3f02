//! Listing owners and identities: every filter, the derived `expired` status, case-insensitive
//! search with escaped wildcards, page size limits, and cursor pagination.

use std::collections::BTreeSet;
use std::sync::Arc;

use steward_core::{Identity, IdentityKind, IdentityStatus, OwnerStatus};
use steward_store::{Change, IdentityQuery, Mutation, OwnerQuery, Store};
use uuid::Uuid;

use crate::support::{T0, at, commit, identity, owner};

fn query() -> IdentityQuery {
    IdentityQuery::all(None, 0, T0)
}

async fn names(store: &Arc<dyn Store>, q: IdentityQuery) -> BTreeSet<String> {
    let page = store.list_identities(&q).await.unwrap();
    assert_eq!(page.next, None, "all results fit one page");
    page.items.into_iter().map(|i| i.name).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

pub async fn list_identities_filters(store: Arc<dyn Store>) {
    let (a, b) = (owner("alpha"), owner("beta"));
    let past = at(-1);
    let mk = |o: &steward_core::Owner,
              name: &str,
              env: &str,
              kind: IdentityKind,
              status: IdentityStatus,
              expired: bool,
              purpose: &str| {
        let mut i = identity(o, name, env);
        i.kind = kind;
        i.status = status;
        i.purpose = purpose.into();
        if expired {
            i.expires_at = past;
        }
        i
    };
    use IdentityKind as K;
    use IdentityStatus as S;
    let mut acme = mk(
        &b,
        "acme-sync",
        "prod",
        K::Integration,
        S::PendingApproval,
        false,
        "sync 1000 records",
    );
    acme.vendor = Some("Acme".into());
    let all: Vec<Identity> = vec![
        mk(
            &a,
            "checkout-api",
            "prod",
            K::Workload,
            S::Active,
            false,
            "Handles Payments for checkout",
        ),
        mk(
            &a,
            "deploy-bot",
            "staging",
            K::Pipeline,
            S::Active,
            false,
            "deploys 100% of services",
        ),
        acme,
        mk(
            &b,
            "pay_ments",
            "prod",
            K::Workload,
            S::Suspended,
            false,
            "legacy",
        ),
        mk(&b, "payxments", "prod", K::Workload, S::Active, true, "old"),
        mk(
            &b,
            "retired-agent",
            "dev",
            K::Agent,
            S::Retired,
            true,
            "gone",
        ),
        mk(
            &b,
            "old-device",
            "dev",
            K::Device,
            S::Suspended,
            true,
            "gone too",
        ),
        mk(
            &b,
            "stale-request",
            "dev",
            K::Integration,
            S::PendingApproval,
            true,
            "never approved",
        ),
    ];
    let mut change = Change::new()
        .with(Mutation::InsertOwner(a.clone()))
        .with(Mutation::InsertOwner(b.clone()));
    for i in &all {
        change = change.with(Mutation::InsertIdentity(i.clone()));
    }
    commit(&store, change).await;

    assert_eq!(names(&store, query()).await.len(), all.len());
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                owner_id: Some(a.id),
                ..query()
            }
        )
        .await,
        set(&["checkout-api", "deploy-bot"])
    );
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                owner_id: Some(Uuid::now_v7()),
                ..query()
            }
        )
        .await,
        set(&[])
    );
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                environment: Some("prod".into()),
                ..query()
            }
        )
        .await,
        set(&["checkout-api", "acme-sync", "pay_ments", "payxments"])
    );
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                kind: Some(K::Workload),
                ..query()
            }
        )
        .await,
        set(&["checkout-api", "pay_ments", "payxments"])
    );
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                name: Some("deploy-bot".into()),
                ..query()
            }
        )
        .await,
        set(&["deploy-bot"])
    );
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                name: Some("deploy".into()),
                ..query()
            }
        )
        .await,
        set(&[])
    );
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                vendor: Some("Acme".into()),
                ..query()
            }
        )
        .await,
        set(&["acme-sync"])
    );

    // Status: live states exclude expired identities; `expired` is derived; retired is final.
    let status = |s| IdentityQuery {
        status: Some(s),
        ..query()
    };
    assert_eq!(
        names(&store, status(S::Active)).await,
        set(&["checkout-api", "deploy-bot"])
    );
    assert_eq!(
        names(&store, status(S::Suspended)).await,
        set(&["pay_ments"])
    );
    assert_eq!(
        names(&store, status(S::PendingApproval)).await,
        set(&["acme-sync"])
    );
    assert_eq!(
        names(&store, status(S::Expired)).await,
        set(&["payxments", "old-device", "stale-request"])
    );
    assert_eq!(
        names(&store, status(S::Retired)).await,
        set(&["retired-agent"])
    );
    // Expiry is judged at the query's `now`: exactly at expires_at counts as expired.
    let at_expiry = IdentityQuery {
        status: Some(S::Expired),
        now: past,
        ..query()
    };
    assert_eq!(
        names(&store, at_expiry).await,
        set(&["payxments", "old-device", "stale-request"])
    );
    let before_expiry = IdentityQuery {
        status: Some(S::Active),
        now: past - time::Duration::microseconds(1),
        ..query()
    };
    assert_eq!(
        names(&store, before_expiry).await,
        set(&["checkout-api", "deploy-bot", "payxments"])
    );

    // Search: case-insensitive substring of name or purpose, wildcards taken literally.
    let search = |s: &str| IdentityQuery {
        search: Some(s.into()),
        ..query()
    };
    assert_eq!(
        names(&store, search("PAYMENTS")).await,
        set(&["checkout-api"])
    );
    assert_eq!(names(&store, search("pay_")).await, set(&["pay_ments"]));
    assert_eq!(names(&store, search("100%")).await, set(&["deploy-bot"]));
    assert_eq!(names(&store, search("%")).await, set(&["deploy-bot"]));
    assert_eq!(names(&store, search("_")).await, set(&["pay_ments"]));
    assert_eq!(names(&store, search("\\")).await, set(&[]));
    assert_eq!(
        names(&store, search("GONE")).await,
        set(&["retired-agent", "old-device"])
    );

    // Filters combine.
    let combined = IdentityQuery {
        owner_id: Some(b.id),
        environment: Some("prod".into()),
        kind: Some(K::Workload),
        ..query()
    };
    assert_eq!(
        names(&store, combined.clone()).await,
        set(&["pay_ments", "payxments"])
    );
    assert_eq!(
        names(
            &store,
            IdentityQuery {
                status: Some(S::Expired),
                ..combined
            }
        )
        .await,
        set(&["payxments"])
    );

    // Listed records are complete.
    let page = store
        .list_identities(&IdentityQuery {
            name: Some("acme-sync".into()),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(page.items, vec![all[2].clone()]);
}

pub async fn identity_pagination_walks_every_row_once(store: Arc<dyn Store>) {
    let o = owner("team");
    let mut change = Change::new().with(Mutation::InsertOwner(o.clone()));
    let mut ids = BTreeSet::new();
    for n in 0..25 {
        let i = identity(
            &o,
            &format!("svc-{n:02}"),
            if n % 2 == 0 { "prod" } else { "dev" },
        );
        ids.insert(i.id);
        change = change.with(Mutation::InsertIdentity(i));
    }
    commit(&store, change).await;

    for (env, limit, expected_pages) in [
        (None, 7, 4),
        (None, 5, 5),
        (Some("prod"), 4, 4),
        (None, 25, 1),
        (None, 1000, 1),
    ] {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut after = None;
        loop {
            let q = IdentityQuery {
                environment: env.map(str::to_owned),
                after,
                limit,
                ..query()
            };
            let page = store.list_identities(&q).await.unwrap();
            pages += 1;
            assert!(page.items.len() <= limit as usize);
            seen.extend(page.items.iter().map(|i| i.id));
            match page.next {
                Some(cursor) => {
                    assert_eq!(
                        page.items.len(),
                        limit as usize,
                        "only full pages have a next cursor"
                    );
                    assert_eq!(cursor, page.items.last().unwrap().id.to_string());
                    after = Some(cursor.parse().unwrap());
                }
                None => break,
            }
        }
        assert_eq!(pages, expected_pages, "env {env:?} limit {limit}");
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "pages are in id order");
        let unique: BTreeSet<Uuid> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no row twice");
        match env {
            None => assert_eq!(unique, ids, "every row once"),
            Some(_) => assert_eq!(unique.len(), 13),
        }
    }
}

pub async fn list_owners_filters_and_pages(store: Arc<dyn Store>) {
    let mut gone = owner("Gamma 100%");
    gone.status = OwnerStatus::Departed;
    gone.departed_at = Some(at(5));
    let owners = [
        owner("Alpha Team"),
        owner("beta_team"),
        owner("betaXteam"),
        gone,
    ];
    let mut change = Change::new();
    for o in &owners {
        change = change.with(Mutation::InsertOwner(o.clone()));
    }
    commit(&store, change).await;

    let list = |q: OwnerQuery| {
        let store = Arc::clone(&store);
        async move {
            let page = store.list_owners(&q).await.unwrap();
            page.items
                .into_iter()
                .map(|o| o.name)
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(list(OwnerQuery::default()).await.len(), 4);
    assert_eq!(
        list(OwnerQuery {
            status: Some(OwnerStatus::Departed),
            ..Default::default()
        })
        .await,
        set(&["Gamma 100%"])
    );
    assert_eq!(
        list(OwnerQuery {
            status: Some(OwnerStatus::Active),
            ..Default::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        list(OwnerQuery {
            search: Some("BETA".into()),
            ..Default::default()
        })
        .await,
        set(&["beta_team", "betaXteam"])
    );
    assert_eq!(
        list(OwnerQuery {
            search: Some("a_t".into()),
            ..Default::default()
        })
        .await,
        set(&["beta_team"])
    );
    assert_eq!(
        list(OwnerQuery {
            search: Some("0%".into()),
            ..Default::default()
        })
        .await,
        set(&["Gamma 100%"])
    );
    let page = store
        .list_owners(&OwnerQuery {
            search: Some("alpha".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items, vec![owners[0].clone()]);

    // Two per page, in id order, each once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_owners(&OwnerQuery {
                after,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|o| o.id));
        let Some(next) = page.next else { break };
        after = Some(next.parse().unwrap());
    }
    let mut expected: Vec<Uuid> = owners.iter().map(|o| o.id).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

pub async fn page_size_is_clamped(store: Arc<dyn Store>) {
    let mut change = Change::new();
    for n in 0..1001 {
        change = change.with(Mutation::InsertOwner(owner(&format!("owner-{n:04}"))));
    }
    commit(&store, change).await;
    let page = store
        .list_owners(&OwnerQuery {
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 100, "0 means the default page size");
    assert!(page.next.is_some());
    let page = store
        .list_owners(&OwnerQuery {
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1000, "pages hold at most 1000");
    let rest = store
        .list_owners(&OwnerQuery {
            after: Some(page.next.unwrap().parse().unwrap()),
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
}

//! Lifecycle controls: review campaigns and items, JIT grants, exception requests and rotation
//! flags — round trips, optimistic updates, uniqueness, schema-enforced two-person rules, filters.

use std::sync::Arc;

use serde_json::json;
use steward_core::lifecycle::{
    CampaignStatus, DeadlineAction, ExceptionRequest, ExceptionRequestStatus, JitGrant, JitStatus,
    ReviewCampaign, ReviewDecision, ReviewItem, ReviewSelection, RevokeMode,
};
use steward_store::{
    Change, ExceptionRequestQuery, JitQuery, LifecycleMutation as L, Mutation, Notice,
    ReviewItemQuery, ReviewQuery, RotationFlag, RotationFlagQuery, Store, StoreError,
};
use uuid::Uuid;

use crate::support::{T0, api_key, at, commit, identity, owner};

fn campaign(deadline_secs: i64) -> ReviewCampaign {
    ReviewCampaign {
        id: Uuid::now_v7(),
        name: "q3 prod review".into(),
        description: "every prod workload".into(),
        selection: ReviewSelection {
            environment: Some("prod".into()),
            ..Default::default()
        },
        default_action: DeadlineAction::Suspend,
        deadline: at(deadline_secs),
        status: CampaignStatus::Open,
        created_by: "admin".into(),
        created_at: T0,
        closed_at: None,
        version: 1,
    }
}

fn item(c: &ReviewCampaign, identity_id: Uuid, owner_id: Uuid) -> ReviewItem {
    ReviewItem {
        id: Uuid::now_v7(),
        campaign_id: c.id,
        identity_id,
        owner_id,
        reviewer: Some("reviewer-1".into()),
        snapshot: json!({"scopes_granted": ["payments:read"], "open_findings": []}),
        decision: None,
        reduced_scopes: vec![],
        revoke_mode: None,
        outcome: None,
        justification: None,
        decided_by: None,
        decided_at: None,
        by_default: false,
        created_at: T0,
        version: 1,
    }
}

fn grant(identity_id: Uuid) -> JitGrant {
    JitGrant {
        id: Uuid::now_v7(),
        identity_id,
        scopes: vec!["ledger:write".into()],
        reason: "incident 7".into(),
        requested_by: "alice".into(),
        duration_secs: 3600,
        status: JitStatus::Pending,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        starts_at: None,
        expires_at: None,
        created_at: T0,
        version: 1,
    }
}

fn lc(m: L) -> Change {
    Change::new().with(Mutation::Lifecycle(m))
}

pub async fn reviews_round_trip(store: Arc<dyn Store>) {
    let o = owner("team-a");
    let i1 = identity(&o, "one", "prod");
    let i2 = identity(&o, "two", "prod");
    let soon = campaign(3600);
    let later = campaign(86_400);
    let a = item(&soon, i1.id, o.id);
    let b = item(&soon, i2.id, o.id);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .with(Mutation::InsertIdentity(i1.clone()))
            .with(Mutation::InsertIdentity(i2.clone()))
            .with(Mutation::Lifecycle(L::InsertCampaign(soon.clone())))
            .with(Mutation::Lifecycle(L::InsertCampaign(later.clone())))
            .with(Mutation::Lifecycle(L::InsertItem(a.clone())))
            .with(Mutation::Lifecycle(L::InsertItem(b.clone()))),
    )
    .await;
    assert_eq!(store.get_review(soon.id).await.unwrap(), Some(soon.clone()));
    assert_eq!(store.get_review_item(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_review(Uuid::now_v7()).await.unwrap(), None);

    // One item per identity and campaign; unknown campaigns and identities are refused.
    let r = store
        .commit(lc(L::InsertItem(item(&soon, i1.id, o.id))))
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let r = store
        .commit(lc(L::InsertItem(item(&campaign(5), i1.id, o.id))))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let r = store
        .commit(lc(L::InsertItem(item(&later, Uuid::now_v7(), o.id))))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    // Due campaigns: open with the deadline at or before the instant.
    let due = store
        .list_reviews(&ReviewQuery {
            status: Some(CampaignStatus::Open),
            deadline_by: Some(at(3600)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        due.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![soon.id]
    );
    let all = store.list_reviews(&ReviewQuery::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let first = store
        .list_reviews(&ReviewQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items, vec![soon.clone()]);
    assert_eq!(first.next, Some(soon.id.to_string()));

    // Decide one item; the undecided filter then yields the other.
    let mut decided = a.clone();
    decided.decision = Some(ReviewDecision::Revoke);
    decided.revoke_mode = Some(RevokeMode::Suspend);
    decided.outcome = Some("suspended".into());
    decided.justification = Some("not used since March".into());
    decided.decided_by = Some("reviewer-1".into());
    decided.decided_at = Some(at(60));
    decided.version = 2;
    commit(
        &store,
        lc(L::UpdateItem {
            item: decided.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(
        store.get_review_item(a.id).await.unwrap(),
        Some(decided.clone())
    );
    let r = store
        .commit(lc(L::UpdateItem {
            item: decided.clone(),
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
    // A decision without a justification is refused by the schema as well.
    let mut unjustified = b.clone();
    unjustified.decision = Some(ReviewDecision::Keep);
    unjustified.version = 2;
    let r = store
        .commit(lc(L::UpdateItem {
            item: unjustified,
            expected_version: 1,
        }))
        .await;
    assert!(r.is_err());
    let open = store
        .list_review_items(&ReviewItemQuery {
            campaign_id: soon.id,
            undecided: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.items, vec![b.clone()]);
    let of_i1 = store
        .list_review_items(&ReviewItemQuery {
            campaign_id: soon.id,
            identity_id: Some(i1.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_i1.items, vec![decided.clone()]);
    let every = store
        .list_review_items(&ReviewItemQuery {
            campaign_id: soon.id,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(every.items.len(), 1);
    let rest = store
        .list_review_items(&ReviewItemQuery {
            campaign_id: soon.id,
            after: every.next.as_deref().map(|s| Uuid::parse_str(s).unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
    assert!(
        store
            .list_review_items(&ReviewItemQuery {
                campaign_id: later.id,
                ..Default::default()
            })
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Close the campaign with an optimistic update.
    let mut closed = soon.clone();
    closed.status = CampaignStatus::Closed;
    closed.closed_at = Some(at(3600));
    closed.version = 2;
    commit(
        &store,
        lc(L::UpdateCampaign {
            campaign: closed.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(store.get_review(soon.id).await.unwrap(), Some(closed));
    let r = store
        .commit(lc(L::UpdateCampaign {
            campaign: soon.clone(),
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
    let mut ghost = soon.clone();
    ghost.id = Uuid::now_v7();
    let r = store
        .commit(lc(L::UpdateCampaign {
            campaign: ghost,
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

pub async fn jit_grants_round_trip(store: Arc<dyn Store>) {
    let o = owner("team-j");
    let i = identity(&o, "svc", "prod");
    let other = identity(&o, "other", "prod");
    let pending = grant(i.id);
    let mut approved = grant(i.id);
    approved.status = JitStatus::Approved;
    approved.decided_by = Some("bob".into());
    approved.decided_at = Some(at(10));
    approved.starts_at = Some(at(10));
    approved.expires_at = Some(at(3610));
    let mut elsewhere = grant(other.id);
    elsewhere.status = JitStatus::Denied;
    elsewhere.decided_by = Some("bob".into());
    elsewhere.decision_reason = Some("no".into());
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertIdentity(other.clone()))
            .with(Mutation::Lifecycle(L::InsertJitGrant(pending.clone())))
            .with(Mutation::Lifecycle(L::InsertJitGrant(approved.clone())))
            .with(Mutation::Lifecycle(L::InsertJitGrant(elsewhere.clone()))),
    )
    .await;
    assert_eq!(
        store.get_jit_grant(approved.id).await.unwrap(),
        Some(approved.clone())
    );
    let ids = |p: steward_store::Page<JitGrant>| p.items.iter().map(|g| g.id).collect::<Vec<_>>();
    let of_identity = store
        .list_jit_grants(&JitQuery {
            identity_id: Some(i.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(of_identity), vec![pending.id, approved.id]);
    let active = |t| {
        let store = store.clone();
        async move {
            store
                .list_jit_grants(&JitQuery {
                    active_at: Some(t),
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(ids(active(at(10)).await), vec![approved.id]);
    assert!(active(at(9)).await.items.is_empty(), "not started");
    assert!(active(at(3610)).await.items.is_empty(), "expired");
    let denied = store
        .list_jit_grants(&JitQuery {
            status: Some(JitStatus::Denied),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(denied), vec![elsewhere.id]);

    // The schema refuses an approval by the requester, whatever the service does.
    let mut self_approved = pending.clone();
    self_approved.status = JitStatus::Approved;
    self_approved.decided_by = Some("alice".into());
    self_approved.starts_at = Some(at(5));
    self_approved.expires_at = Some(at(65));
    self_approved.version = 2;
    let r = store
        .commit(lc(L::UpdateJitGrant {
            grant: self_approved,
            expected_version: 1,
        }))
        .await;
    assert!(r.is_err(), "{r:?}");
    // Revoke with the right version; a stale write fails.
    let mut revoked = approved.clone();
    revoked.status = JitStatus::Revoked;
    revoked.expires_at = Some(at(20));
    revoked.version = 2;
    commit(
        &store,
        lc(L::UpdateJitGrant {
            grant: revoked.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(
        store.get_jit_grant(approved.id).await.unwrap(),
        Some(revoked)
    );
    assert!(active(at(15)).await.items.is_empty());
    let r = store
        .commit(lc(L::UpdateJitGrant {
            grant: approved.clone(),
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
    let r = store
        .commit(lc(L::InsertJitGrant(grant(Uuid::now_v7()))))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

pub async fn exception_requests_round_trip(store: Arc<dyn Store>) {
    let o = owner("team-x");
    let i = identity(&o, "svc", "prod");
    let req = ExceptionRequest {
        id: Uuid::now_v7(),
        identity_id: i.id,
        target: "dormant".into(),
        reason: "seasonal batch job".into(),
        requested_by: "alice".into(),
        expires_at: at(86_400),
        status: ExceptionRequestStatus::Pending,
        decided_by: None,
        decided_at: None,
        created_at: T0,
        version: 1,
    };
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::Lifecycle(L::InsertExceptionRequest(req.clone()))),
    )
    .await;
    assert_eq!(
        store.get_exception_request(req.id).await.unwrap(),
        Some(req.clone())
    );
    let pending = |status| {
        let store = store.clone();
        async move {
            store
                .list_exception_requests(&ExceptionRequestQuery {
                    status: Some(status),
                    ..Default::default()
                })
                .await
                .unwrap()
                .items
        }
    };
    assert_eq!(
        pending(ExceptionRequestStatus::Pending).await,
        vec![req.clone()]
    );
    // Approval by the requester is refused by the schema.
    let mut own = req.clone();
    own.status = ExceptionRequestStatus::Approved;
    own.decided_by = Some("alice".into());
    own.version = 2;
    let r = store
        .commit(lc(L::UpdateExceptionRequest {
            request: own,
            expected_version: 1,
        }))
        .await;
    assert!(r.is_err(), "{r:?}");
    let mut approved = req.clone();
    approved.status = ExceptionRequestStatus::Approved;
    approved.decided_by = Some("bob".into());
    approved.decided_at = Some(at(5));
    approved.version = 2;
    commit(
        &store,
        lc(L::UpdateExceptionRequest {
            request: approved.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert!(pending(ExceptionRequestStatus::Pending).await.is_empty());
    assert_eq!(
        pending(ExceptionRequestStatus::Approved).await,
        vec![approved.clone()]
    );
    let by_identity = store
        .list_exception_requests(&ExceptionRequestQuery {
            identity_id: Some(i.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_identity.items.len(), 1);
    let r = store
        .commit(lc(L::UpdateExceptionRequest {
            request: approved,
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");
}

pub async fn rotation_flags(store: Arc<dyn Store>) {
    let o = owner("team-r");
    let i = identity(&o, "svc", "prod");
    let j = identity(&o, "svc2", "prod");
    let c1 = api_key(&i, &[1; 32], T0);
    let c2 = api_key(&i, &[2; 32], T0);
    let c3 = api_key(&j, &[3; 32], T0);
    let flag = |c: &steward_core::Credential, reason: &str| RotationFlag {
        credential_id: c.id,
        identity_id: c.identity_id,
        owner_id: Some(o.id),
        reason: reason.into(),
        flagged_by: "admin".into(),
        flagged_at: T0,
    };
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertIdentity(j.clone()))
            .with(Mutation::InsertCredential(c1.clone()))
            .with(Mutation::InsertCredential(c2.clone()))
            .with(Mutation::InsertCredential(c3.clone()))
            .with(Mutation::Lifecycle(L::FlagCredentialRotation(flag(
                &c1,
                "owner departed",
            ))))
            .with(Mutation::Lifecycle(L::FlagCredentialRotation(flag(
                &c3,
                "owner departed",
            )))),
    )
    .await;
    // Flagging again keeps the first flag.
    commit(
        &store,
        lc(L::FlagCredentialRotation(flag(&c1, "second reason"))),
    )
    .await;
    let of_i = store
        .list_rotation_flags(&RotationFlagQuery {
            identity_id: Some(i.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_i.items, vec![flag(&c1, "owner departed")]);
    let all = store
        .list_rotation_flags(&RotationFlagQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
    assert!(all.next.is_some());
    let rest = store
        .list_rotation_flags(&RotationFlagQuery {
            after: all.next.as_deref().map(|s| Uuid::parse_str(s).unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].credential_id, all.items[0].credential_id);
    // Unknown credentials cannot be flagged.
    let mut ghost = flag(&c2, "x");
    ghost.credential_id = Uuid::now_v7();
    let r = store.commit(lc(L::FlagCredentialRotation(ghost))).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

#[test]
fn jit_changes_notify_other_nodes() {
    let g = grant(Uuid::nil());
    let m = Mutation::Lifecycle(L::InsertJitGrant(g.clone()));
    assert_eq!(Notice::of(&m), Some(Notice::JitGrants));
    let m = Mutation::Lifecycle(L::UpdateJitGrant {
        grant: g,
        expected_version: 1,
    });
    assert_eq!(Notice::of(&m), Some(Notice::JitGrants));
    assert_eq!(
        Notice::decode(&Notice::JitGrants.encode()),
        Some(Notice::JitGrants)
    );
    let m = Mutation::Lifecycle(L::InsertCampaign(campaign(1)));
    assert_eq!(Notice::of(&m), None);
}

pub async fn lifecycle_counts_for_the_report(store: Arc<dyn Store>) {
    assert_eq!(
        store.lifecycle_counts(at(0)).await.unwrap(),
        steward_store::LifecycleCounts::default()
    );
    let o = owner("team-c");
    let (i1, i2, i3) = (
        identity(&o, "c-one", "prod"),
        identity(&o, "c-two", "prod"),
        identity(&o, "c-three", "prod"),
    );
    let soon = campaign(3600);
    let later = campaign(86_400);
    let mut closed = campaign(60);
    closed.status = CampaignStatus::Closed;
    closed.closed_at = Some(at(61));
    let mut decided = item(&later, i2.id, o.id);
    decided.decision = Some(ReviewDecision::Keep);
    decided.justification = Some("still needed".into());
    decided.decided_by = Some("reviewer-1".into());
    decided.decided_at = Some(at(10));
    let xreq = ExceptionRequest {
        id: Uuid::now_v7(),
        identity_id: i1.id,
        target: "dormant".into(),
        reason: "seasonal batch job".into(),
        requested_by: "alice".into(),
        expires_at: at(86_400),
        status: ExceptionRequestStatus::Pending,
        decided_by: None,
        decided_at: None,
        created_at: T0,
        version: 1,
    };
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .with(Mutation::InsertIdentity(i1.clone()))
            .with(Mutation::InsertIdentity(i2.clone()))
            .with(Mutation::InsertIdentity(i3.clone()))
            .with(Mutation::Lifecycle(L::InsertCampaign(soon.clone())))
            .with(Mutation::Lifecycle(L::InsertCampaign(later.clone())))
            .with(Mutation::Lifecycle(L::InsertCampaign(closed.clone())))
            // Undecided: two in `soon` (past its deadline at 7200 s), one in `later`.
            .with(Mutation::Lifecycle(L::InsertItem(item(&soon, i1.id, o.id))))
            .with(Mutation::Lifecycle(L::InsertItem(item(&soon, i2.id, o.id))))
            .with(Mutation::Lifecycle(L::InsertItem(item(
                &later, i1.id, o.id,
            ))))
            .with(Mutation::Lifecycle(L::InsertItem(decided)))
            // A closed campaign's items do not count.
            .with(Mutation::Lifecycle(L::InsertItem(item(
                &closed, i3.id, o.id,
            ))))
            .with(Mutation::Lifecycle(L::InsertJitGrant(grant(i1.id))))
            .with(Mutation::Lifecycle(L::InsertExceptionRequest(xreq))),
    )
    .await;
    let c = store.lifecycle_counts(at(7200)).await.unwrap();
    assert_eq!(
        c,
        steward_store::LifecycleCounts {
            open_campaigns: 2,
            undecided_items: 3,
            overdue_items: 2,
            pending_exception_requests: 1,
            pending_jit_requests: 1,
        }
    );
    assert_eq!(
        store.lifecycle_counts(at(0)).await.unwrap().overdue_items,
        0
    );
}

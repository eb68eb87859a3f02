//! Owners, identities and credentials: round trips of every field, uniqueness rules, optimistic
//! concurrency (`Stale`), missing rows (`NotFound`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use steward_core::{CredentialKind, IdentityKind, IdentityStatus, OwnerKind, OwnerStatus};
use steward_store::{Change, Mutation, SigningKeyRecord, Store, StoreError};
use uuid::Uuid;

use crate::support::{T0, api_key, at, commit, event, identity, owner};

pub async fn owner_round_trip(store: Arc<dyn Store>) {
    let mut o = owner("payments-team");
    o.kind = OwnerKind::Person;
    commit(&store, Change::new().with(Mutation::InsertOwner(o.clone()))).await;
    assert_eq!(store.get_owner(o.id).await.unwrap(), Some(o.clone()));

    let mut departed = o.clone();
    departed.status = OwnerStatus::Departed;
    departed.departed_at = Some(at(60));
    departed.contact = "#payments-oncall".into();
    departed.version = 2;
    commit(
        &store,
        Change::new().with(Mutation::UpdateOwner {
            owner: departed.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(store.get_owner(o.id).await.unwrap(), Some(departed));
    assert_eq!(store.get_owner(Uuid::now_v7()).await.unwrap(), None);
}

pub async fn identity_round_trip(store: Arc<dyn Store>) {
    let o = owner("team");
    // Every optional field unset...
    let mut bare = identity(&o, "bare", "prod");
    bare.scopes = vec![];
    bare.default_scopes = vec![];
    bare.audiences = vec![];
    bare.labels = BTreeMap::new();
    // ...and every optional field set, with odd characters in the free-text ones.
    let mut full = identity(&o, "full-1.x_y", "staging");
    full.kind = IdentityKind::Integration;
    full.purpose =
        "Syncs invoices \"nightly\" — 100% of them\nsecond line; DROP TABLE x; 'quoted' ünïcödé"
            .into();
    full.vendor = Some("Acme, Inc.".into());
    full.status = IdentityStatus::Suspended;
    full.status_reason = Some("incident #42".into());
    full.token_lifetime_secs = Some(900);
    full.require_dpop = true;
    full.tokens_revoked_before = Some(at(30));
    full.approved_by = Some("bob".into());
    full.approved_at = Some(at(20));
    full.updated_at = at(40);
    full.labels
        .insert("cost-center/id".into(), "a b \"c\"".into());
    full.expires_at = at(1) + time::Duration::microseconds(1);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .with(Mutation::InsertIdentity(bare.clone()))
            .with(Mutation::InsertIdentity(full.clone())),
    )
    .await;
    assert_eq!(
        store.get_identity(bare.id).await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(
        store.get_identity(full.id).await.unwrap(),
        Some(full.clone())
    );

    // Update: stored as given, including the caller-bumped version; Some -> None and back.
    let mut updated = full.clone();
    updated.status = IdentityStatus::Active;
    updated.status_reason = None;
    updated.vendor = None;
    updated.token_lifetime_secs = None;
    updated.labels = BTreeMap::from([("x".to_owned(), "y".to_owned())]);
    updated.scopes = vec!["a".into()];
    updated.updated_at = at(50);
    updated.version = 2;
    commit(
        &store,
        Change::new().with(Mutation::UpdateIdentity {
            identity: updated.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(store.get_identity(full.id).await.unwrap(), Some(updated));
    assert_eq!(store.get_identity(bare.id).await.unwrap(), Some(bare));
    assert_eq!(store.get_identity(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(store.count_identities().await.unwrap(), 2);
}

pub async fn credential_round_trip(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let key = api_key(&i, &[7u8; 32], at(10));
    let mut pk = api_key(&i, &[0u8; 0], at(5));
    pk.kind = CredentialKind::PublicKey;
    pk.secret_hash = None;
    pk.jwk = Some(
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
    );
    pk.rotated_from = Some(key.id);
    pk.last_used_at = Some(at(6));
    pk.revoked_at = Some(at(7));
    pk.revoke_reason = Some("rotated".into());
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertCredential(key.clone()))
            .with(Mutation::InsertCredential(pk.clone())),
    )
    .await;
    assert_eq!(
        store.get_credential(key.id).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.get_credential(pk.id).await.unwrap(), Some(pk.clone()));
    // Oldest first.
    assert_eq!(
        store.list_credentials(i.id).await.unwrap(),
        vec![pk.clone(), key.clone()]
    );
    assert_eq!(
        store.list_credentials(Uuid::now_v7()).await.unwrap(),
        vec![]
    );

    let mut revoked = key.clone();
    revoked.revoked_at = Some(at(100));
    revoked.revoke_reason = Some("leaked".into());
    revoked.version = 2;
    commit(
        &store,
        Change::new().with(Mutation::UpdateCredential {
            credential: revoked.clone(),
            expected_version: 1,
        }),
    )
    .await;
    assert_eq!(store.get_credential(key.id).await.unwrap(), Some(revoked));
    assert_eq!(store.get_credential(Uuid::now_v7()).await.unwrap(), None);
}

pub async fn find_credential_by_hash(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let a = api_key(&i, &[1u8; 32], T0);
    let b = api_key(&i, &[2u8; 32], T0);
    let mut jwk = api_key(&i, &[], T0);
    jwk.kind = CredentialKind::PublicKey;
    jwk.secret_hash = None;
    jwk.jwk = Some(json!({"kty": "EC"}));
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i))
            .with(Mutation::InsertCredential(a.clone()))
            .with(Mutation::InsertCredential(b.clone()))
            .with(Mutation::InsertCredential(jwk)),
    )
    .await;
    assert_eq!(
        store.find_credential_by_hash(&[1u8; 32]).await.unwrap(),
        Some(a)
    );
    assert_eq!(
        store.find_credential_by_hash(&[2u8; 32]).await.unwrap(),
        Some(b)
    );
    assert_eq!(
        store.find_credential_by_hash(&[3u8; 32]).await.unwrap(),
        None
    );
    assert_eq!(store.find_credential_by_hash(&[]).await.unwrap(), None);
}

pub async fn duplicate_identity_name_conflicts(store: Arc<dyn Store>) {
    let o = owner("team");
    let first = identity(&o, "payments-api", "prod");
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .with(Mutation::InsertIdentity(first)),
    )
    .await;

    let clash = identity(&o, "payments-api", "prod");
    match store
        .commit(Change::new().with(Mutation::InsertIdentity(clash.clone())))
        .await
    {
        Err(StoreError::Conflict(msg)) => assert_eq!(
            msg, r#"an identity named "payments-api" already exists in environment "prod""#,
            "the message names what clashed"
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_identity(clash.id).await.unwrap(), None);

    // Same name in another environment is fine.
    let staging = identity(&o, "payments-api", "staging");
    commit(
        &store,
        Change::new().with(Mutation::InsertIdentity(staging.clone())),
    )
    .await;
    assert_eq!(
        store.get_identity(staging.id).await.unwrap(),
        Some(staging.clone())
    );

    // Renaming onto a taken name is a conflict too.
    let mut renamed = staging.clone();
    renamed.environment = "prod".into();
    renamed.version = 2;
    let r = store
        .commit(Change::new().with(Mutation::UpdateIdentity {
            identity: renamed,
            expected_version: 1,
        }))
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains("payments-api")),
        "{r:?}"
    );

    // Re-using an existing id names the id.
    let mut same_id = identity(&o, "another-name", "dev");
    same_id.id = staging.id;
    let r = store
        .commit(Change::new().with(Mutation::InsertIdentity(same_id)))
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains(&staging.id.to_string())),
        "{r:?}"
    );
}

pub async fn duplicate_owner_name_conflicts(store: Arc<dyn Store>) {
    let a = owner("platform");
    commit(&store, Change::new().with(Mutation::InsertOwner(a.clone()))).await;
    let b = owner("platform");
    match store
        .commit(Change::new().with(Mutation::InsertOwner(b.clone())))
        .await
    {
        Err(StoreError::Conflict(msg)) => {
            assert_eq!(msg, r#"an owner named "platform" already exists"#)
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_owner(b.id).await.unwrap(), None);
    // Names are compared exactly.
    commit(
        &store,
        Change::new().with(Mutation::InsertOwner(owner("Platform"))),
    )
    .await;
}

pub async fn duplicate_secret_hash_conflicts(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let secret = [0xabu8; 32];
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertCredential(api_key(&i, &secret, T0))),
    )
    .await;
    let dup = api_key(&i, &secret, T0);
    match store
        .commit(Change::new().with(Mutation::InsertCredential(dup)))
        .await
    {
        Err(StoreError::Conflict(msg)) => {
            assert!(
                !msg.to_lowercase().contains("abab"),
                "the message must not reveal the hash: {msg}"
            );
            assert!(msg.contains("secret"), "{msg}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn stale_version_is_rejected(store: Arc<dyn Store>) {
    let o = owner("team");
    let i = identity(&o, "svc", "prod");
    let c = api_key(&i, &[9u8; 32], T0);
    commit(
        &store,
        Change::new()
            .with(Mutation::InsertOwner(o.clone()))
            .with(Mutation::InsertIdentity(i.clone()))
            .with(Mutation::InsertCredential(c.clone())),
    )
    .await;
    let head = store.audit_head().await.unwrap();

    let mut o2 = o.clone();
    o2.contact = "#changed".into();
    o2.version = 3;
    let r = store
        .commit(
            Change::new()
                .with(Mutation::UpdateOwner {
                    owner: o2,
                    expected_version: 2,
                })
                .audit(event("owner.update")),
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Stale(m)) if m.contains(&o.id.to_string())),
        "{r:?}"
    );

    let mut i2 = i.clone();
    i2.purpose = "changed".into();
    let r = store
        .commit(Change::new().with(Mutation::UpdateIdentity {
            identity: i2,
            expected_version: 0,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");

    let mut c2 = c.clone();
    c2.revoked_at = Some(T0);
    let r = store
        .commit(Change::new().with(Mutation::UpdateCredential {
            credential: c2,
            expected_version: 5,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Stale(_))), "{r:?}");

    // Nothing changed, nothing was audited.
    assert_eq!(store.get_owner(o.id).await.unwrap(), Some(o));
    assert_eq!(store.get_identity(i.id).await.unwrap(), Some(i));
    assert_eq!(store.get_credential(c.id).await.unwrap(), Some(c));
    assert_eq!(store.audit_head().await.unwrap(), head);
}

pub async fn update_of_missing_row_is_not_found(store: Arc<dyn Store>) {
    let o = owner("ghost");
    let i = identity(&o, "ghost", "prod");
    let c = api_key(&i, &[1u8; 32], T0);
    let r = store
        .commit(Change::new().with(Mutation::UpdateOwner {
            owner: o.clone(),
            expected_version: 1,
        }))
        .await;
    assert!(
        matches!(&r, Err(StoreError::NotFound(m)) if m.contains(&o.id.to_string())),
        "{r:?}"
    );
    let r = store
        .commit(Change::new().with(Mutation::UpdateIdentity {
            identity: i.clone(),
            expected_version: 1,
        }))
        .await;
    assert!(
        matches!(&r, Err(StoreError::NotFound(m)) if m.contains(&i.id.to_string())),
        "{r:?}"
    );
    let r = store
        .commit(Change::new().with(Mutation::UpdateCredential {
            credential: c,
            expected_version: 1,
        }))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let key = SigningKeyRecord {
        kid: "nope".into(),
        alg: "EdDSA".into(),
        sealed_private_key: vec![1],
        public_jwk: json!({}),
        created_at: T0,
        activates_at: T0,
        deactivates_at: T0,
        publish_until: T0,
    };
    let r = store
        .commit(Change::new().with(Mutation::UpdateSigningKey(key)))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    // References to missing rows are refused too.
    let r = store
        .commit(Change::new().with(Mutation::InsertIdentity(i)))
        .await;
    assert!(
        matches!(&r, Err(StoreError::NotFound(m)) if m.contains(&o.id.to_string())),
        "{r:?}"
    );
    assert_eq!(store.audit_head().await.unwrap().size, 0);
}

/// `BulkInsert` stores every field exactly as the single-row inserts do, with its audit record,
/// and is all or nothing: a clash anywhere leaves no row behind.
pub async fn bulk_insert_round_trip(store: Arc<dyn Store>) {
    let o = owner("bulk-team");
    commit(&store, Change::new().with(Mutation::InsertOwner(o.clone()))).await;
    let mut identities = Vec::new();
    let mut credentials = Vec::new();
    for n in 0..300u16 {
        let mut i = identity(&o, &format!("bulk-{n}"), "prod");
        if n % 3 == 0 {
            i.status = IdentityStatus::Suspended;
            i.status_reason = Some("paused".into());
            i.token_lifetime_secs = Some(120);
            i.require_dpop = true;
            i.vendor = Some("acme".into());
            i.approved_at = Some(at(5));
            i.approved_by = Some("bob".into());
        }
        let hash = [n.to_be_bytes().as_slice(), &[7u8; 30]].concat();
        let mut c = api_key(&i, &hash, T0);
        if n % 5 == 0 {
            c.kind = CredentialKind::PublicKey;
            c.secret_hash = None;
            c.jwk = Some(json!({"kty": "OKP", "crv": "Ed25519", "x": "abc"}));
            c.last_used_at = Some(at(9));
            c.revoked_at = Some(at(10));
            c.revoke_reason = Some("rotated".into());
            c.rotated_from = Some(Uuid::now_v7());
        }
        identities.push(i);
        credentials.push(c);
    }
    let seqs = commit(
        &store,
        Change::new()
            .with(Mutation::BulkInsert {
                identities: identities.clone(),
                credentials: credentials.clone(),
            })
            .audit(event("registry.bulk_insert")),
    )
    .await;
    assert_eq!(seqs.len(), 1);
    assert_eq!(store.count_identities().await.unwrap(), 300);
    for (i, c) in identities.iter().zip(&credentials) {
        assert_eq!(store.get_identity(i.id).await.unwrap().as_ref(), Some(i));
        assert_eq!(store.get_credential(c.id).await.unwrap().as_ref(), Some(c));
    }
    let hashed = &credentials[1];
    let hash = hashed.secret_hash.clone().unwrap();
    assert_eq!(
        store.find_credential_by_hash(&hash).await.unwrap().as_ref(),
        Some(hashed)
    );

    // A name clash in the second batch: nothing of it is stored.
    let fresh = identity(&o, "bulk-new", "prod");
    let clash = identity(&o, "bulk-7", "prod");
    let r = store
        .commit(Change::new().with(Mutation::BulkInsert {
            identities: vec![fresh.clone(), clash],
            credentials: vec![],
        }))
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(store.get_identity(fresh.id).await.unwrap(), None);
    assert_eq!(store.count_identities().await.unwrap(), 300);
}

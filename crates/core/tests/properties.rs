//! Property-based tests of the domain rules: lifecycle, scopes and credentials under arbitrary
//! operation sequences and clocks. Each property is a safety invariant Steward relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use steward_core::identity::NewIdentity;
use steward_core::{
    Identity, IdentityKind, IdentityStatus, LifecycleAction, Owner, OwnerKind, RegistryPolicy,
    scope,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Act(LifecycleAction, bool),
    ExtendExpiry(i64),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let action = prop_oneof![
        Just(LifecycleAction::Approve),
        Just(LifecycleAction::Suspend),
        Just(LifecycleAction::Resume),
        Just(LifecycleAction::Retire),
    ];
    prop_oneof![
        (action, any::<bool>()).prop_map(|(a, other)| Op::Act(a, other)),
        (1i64..400).prop_map(Op::ExtendExpiry),
        (0i64..200 * 86_400).prop_map(Op::Advance),
    ]
}

fn kind() -> impl Strategy<Value = IdentityKind> {
    proptest::sample::select(IdentityKind::ALL.to_vec())
}

proptest! {
    /// No sequence of lifecycle operations, expiry changes and clock moves lets a retired identity
    /// authenticate again, or makes a token issued before retirement valid.
    #[test]
    fn retired_never_authenticates(k in kind(), ops in proptest::collection::vec(op(), 1..40)) {
        let policy = RegistryPolicy::default();
        let owner = Owner::new(Uuid::from_u128(1), "o", OwnerKind::Team, "o@example.com", t0()).unwrap();
        let mut now = t0();
        let req = NewIdentity {
            name: "x".into(),
            kind: Some(k),
            owner_id: owner.id,
            purpose: "p".into(),
            environment: "prod".into(),
            expires_at: Some(now + Duration::days(30)),
            vendor: Some("v".into()),
            ..Default::default()
        };
        let mut i = Identity::create(Uuid::from_u128(2), req, &owner, &policy, "alice", now).unwrap();
        let mut retired_at: Option<OffsetDateTime> = None;
        for op in ops {
            match op {
                Op::Act(a, other) => {
                    let actor = if other { "bob" } else { "alice" };
                    let before = i.status;
                    let r = i.transition(a, actor, None, now);
                    if before == IdentityStatus::Retired {
                        prop_assert!(r.is_err(), "retired must be final");
                    }
                    if r.is_ok() && a == LifecycleAction::Retire {
                        retired_at = Some(now);
                    }
                }
                Op::ExtendExpiry(d) => {
                    let patch = steward_core::identity::IdentityPatch { expires_at: Some(now + Duration::days(d)), ..Default::default() };
                    let r = i.apply_patch(patch, None, &policy, now);
                    if retired_at.is_some() {
                        prop_assert!(r.is_err(), "a retired identity cannot be changed");
                    }
                }
                Op::Advance(s) => now += Duration::seconds(s),
            }
            if let Some(r) = retired_at {
                prop_assert_eq!(i.effective_status(now), IdentityStatus::Retired);
                prop_assert!(i.check_can_authenticate(now).is_err());
                prop_assert!(i.token_still_valid(r, now).is_err());
                prop_assert!(i.token_still_valid(r - Duration::days(1), now).is_err());
            }
            // Authentication is only ever possible in the active, unexpired state.
            if i.check_can_authenticate(now).is_ok() {
                prop_assert_eq!(i.status, IdentityStatus::Active);
                prop_assert!(now < i.expires_at);
            }
        }
    }

    /// Scope arithmetic only narrows: intersections are subsets of both sides, and a requested set
    /// accepted by `is_subset` never contains a scope outside the allowed set.
    #[test]
    fn scope_intersection_never_widens(
        a in proptest::collection::vec("[a-c]:[rw]", 0..8),
        b in proptest::collection::vec("[a-c]:[rw]", 0..8),
    ) {
        let a = scope::normalize_scopes(&a).unwrap();
        let b = scope::normalize_scopes(&b).unwrap();
        let i = scope::intersect(&a, &b);
        prop_assert!(scope::is_subset(&i, &a));
        prop_assert!(scope::is_subset(&i, &b));
        prop_assert_eq!(scope::intersect(&i, &a), i.clone());
        if scope::is_subset(&a, &b) {
            prop_assert!(a.iter().all(|s| b.contains(s)));
        }
        let parsed = scope::parse_scope_param(&a.join(" ")).unwrap();
        prop_assert_eq!(parsed, a);
    }

    /// API keys: every generated key parses; any single-character change is rejected offline.
    #[test]
    fn api_key_checksum_catches_every_single_edit(seed in any::<u64>(), pos in 6usize..40, c in "[0-9A-Za-z]") {
        let mut x = seed;
        let mut rng = |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                *b = (x >> 33) as u8;
            }
        };
        let key = steward_core::apikey::ApiKey::generate(steward_core::apikey::KeyType::ClientSecret, &mut rng);
        let s = key.expose_secret().to_owned();
        prop_assert!(steward_core::apikey::ApiKey::parse(&s).is_ok());
        let mut bytes = s.clone().into_bytes();
        let ch = c.as_bytes()[0];
        prop_assume!(bytes[pos] != ch);
        bytes[pos] = ch;
        let edited = String::from_utf8(bytes).unwrap();
        prop_assert!(steward_core::apikey::ApiKey::parse(&edited).is_err());
    }
}

// ---- the whole authentication decision: identity lifecycle × credentials × tokens ----

#[derive(Debug, Clone)]
enum AuthOp {
    Act(LifecycleAction, bool),
    Advance(i64),
    /// A new API key (even after retirement: the decision must refuse it anyway).
    AddKey,
    RevokeKey(prop::sample::Index),
    /// Rotation: the old key keeps working for a grace period, a new key starts now.
    RotateKey(prop::sample::Index, i64),
    /// A token issued now from one of the keys, if that key may authenticate now.
    IssueToken(prop::sample::Index),
    RevokeTokens,
}

fn auth_op() -> impl Strategy<Value = AuthOp> {
    let action = prop_oneof![
        Just(LifecycleAction::Approve),
        Just(LifecycleAction::Suspend),
        Just(LifecycleAction::Resume),
        Just(LifecycleAction::Retire),
    ];
    prop_oneof![
        (action, any::<bool>()).prop_map(|(a, other)| AuthOp::Act(a, other)),
        (0i64..40 * 86_400).prop_map(AuthOp::Advance),
        Just(AuthOp::AddKey),
        any::<prop::sample::Index>().prop_map(AuthOp::RevokeKey),
        (any::<prop::sample::Index>(), 0i64..3 * 86_400).prop_map(|(i, g)| AuthOp::RotateKey(i, g)),
        any::<prop::sample::Index>().prop_map(AuthOp::IssueToken),
        Just(AuthOp::RevokeTokens),
    ]
}

fn key(n: u128, identity: &Identity, now: OffsetDateTime) -> steward_core::Credential {
    steward_core::Credential {
        id: Uuid::from_u128(1000 + n),
        identity_id: identity.id,
        kind: steward_core::CredentialKind::ApiKey,
        secret_hash: Some(vec![n as u8; 32]),
        jwk: None,
        fingerprint: format!("fp{n}"),
        created_at: now,
        expires_at: (now + Duration::days(90)).min(identity.expires_at),
        last_used_at: None,
        revoked_at: None,
        revoke_reason: None,
        rotated_from: None,
        created_by: "alice".into(),
        version: 1,
    }
}

proptest! {
    /// No sequence of lifecycle operations, key creations, revocations, rotations, token issues
    /// and clock moves lets a retired identity authenticate with any credential, old or new, or
    /// have any token accepted; and every successful authentication is by an active, unexpired
    /// identity with a usable credential of its own.
    #[test]
    fn retired_identity_never_authenticates_by_any_credential_or_token(
        k in kind(),
        ops in proptest::collection::vec(auth_op(), 1..60),
    ) {
        use steward_core::authn::{client_may_authenticate, revoke_all_at, token_acceptable};
        let policy = RegistryPolicy::default();
        let owner = Owner::new(Uuid::from_u128(1), "o", OwnerKind::Team, "o@example.com", t0()).unwrap();
        let mut now = t0();
        let req = NewIdentity {
            name: "x".into(),
            kind: Some(k),
            owner_id: owner.id,
            purpose: "p".into(),
            environment: "prod".into(),
            expires_at: Some(now + Duration::days(60)),
            vendor: Some("v".into()),
            ..Default::default()
        };
        let mut i = Identity::create(Uuid::from_u128(2), req, &owner, &policy, "alice", now).unwrap();
        let other = Identity::create(
            Uuid::from_u128(3),
            NewIdentity { name: "y".into(), kind: Some(k), owner_id: owner.id, purpose: "p".into(),
                          environment: "prod".into(), expires_at: Some(now + Duration::days(60)),
                          vendor: Some("v".into()), ..Default::default() },
            &owner, &policy, "alice", now,
        ).unwrap();
        let foreign = key(999, &other, now);
        let mut keys = vec![key(0, &i, now)];
        let mut tokens: Vec<(usize, OffsetDateTime)> = Vec::new();
        let mut retired = false;
        for op in ops {
            match op {
                AuthOp::Act(a, by_other) => {
                    let actor = if by_other { "bob" } else { "alice" };
                    if i.transition(a, actor, None, now).is_ok() && a == LifecycleAction::Retire {
                        retired = true;
                        revoke_all_at(&mut keys, now, "identity retired");
                    }
                }
                AuthOp::Advance(s) => now += Duration::seconds(s),
                AuthOp::AddKey => {
                    let n = keys.len() as u128;
                    keys.push(key(n, &i, now));
                }
                AuthOp::RevokeKey(ix) => {
                    let c = ix.index(keys.len());
                    let _ = keys[c].revoke(None, now);
                }
                AuthOp::RotateKey(ix, grace) => {
                    let c = ix.index(keys.len());
                    if keys[c].schedule_revocation(Duration::seconds(grace), now).is_ok() {
                        let n = keys.len() as u128;
                        keys.push(key(n, &i, now));
                    }
                }
                AuthOp::IssueToken(ix) => {
                    let c = ix.index(keys.len());
                    if client_may_authenticate(&i, &keys[c], now).is_ok() {
                        prop_assert!(!retired);
                        tokens.push((c, now));
                    }
                }
                // As `POST /v1/identities/{id}/revoke-tokens` does (a no-op once retired).
                AuthOp::RevokeTokens => {
                    if i.status != IdentityStatus::Retired {
                        i.tokens_revoked_before = Some(now);
                    }
                }
            }
            // A key never authenticates another identity.
            prop_assert!(client_may_authenticate(&i, &foreign, now).is_err());
            for c in &keys {
                let ok = client_may_authenticate(&i, c, now).is_ok();
                if retired {
                    prop_assert!(!ok, "a retired identity authenticated with {:?}", c);
                }
                if ok {
                    prop_assert_eq!(i.status, IdentityStatus::Active);
                    prop_assert!(now < i.expires_at);
                    prop_assert!(c.check_usable(now).is_ok());
                }
            }
            for (c, iat) in &tokens {
                let ok = token_acceptable(&i, Some(&keys[*c]), *iat, now).is_ok();
                if retired {
                    prop_assert!(!ok, "a token of a retired identity was accepted");
                }
                if ok {
                    prop_assert!(i.check_can_authenticate(now).is_ok());
                    prop_assert!(i.tokens_revoked_before.is_none_or(|cut| *iat > cut));
                }
            }
        }
    }
}

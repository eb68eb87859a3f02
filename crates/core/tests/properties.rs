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

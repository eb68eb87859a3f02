//! Data-driven tests of the finding rules: one healthy fixture raises nothing; for every finding
//! type, one change raises it and a further change (the fix) makes it go away.

use super::*;
use crate::test_support::{credential, identity, owner, t0};
use crate::{OwnerStatus, usage::OVERFLOW_VALUE};

struct Fixture {
    identity: Identity,
    owner: Option<Owner>,
    credentials: Vec<Credential>,
    usage: Vec<ScopeUse>,
    sources: Vec<SourceUse>,
    waivers: Vec<Waiver>,
    settings: RuleSettings,
    now: OffsetDateTime,
}

fn scope_use(scope: &str, days_ago: i64) -> ScopeUse {
    ScopeUse {
        identity_id: identity().id,
        scope: scope.into(),
        audience: "https://a".into(),
        uses: 10,
        first_used: t0() - Duration::days(300),
        last_used: t0() - Duration::days(days_ago),
    }
}

fn source(cred: Uuid, kind: SourceKind, value: &str, days_ago: i64) -> SourceUse {
    SourceUse {
        identity_id: identity().id,
        credential_id: cred,
        kind,
        value: value.into(),
        uses: 3,
        first_seen: t0() - Duration::days(days_ago + 1),
        last_seen: t0() - Duration::days(days_ago),
    }
}

/// A healthy identity: active owner, one recent public key in use, every granted scope used,
/// one source address and client, used from its own environment.
fn healthy() -> Fixture {
    let mut key = credential(1, CredentialKind::PublicKey, 10);
    key.last_used_at = Some(t0() - Duration::days(1));
    let cid = key.id;
    Fixture {
        identity: identity(),
        owner: Some(owner()),
        credentials: vec![key],
        usage: vec![scope_use("p:read", 1), scope_use("p:write", 2)],
        sources: vec![
            source(cid, SourceKind::Address, "10.0.0.1", 1),
            source(cid, SourceKind::UserAgent, "payments/1.4", 1),
            source(cid, SourceKind::Environment, "prod", 1),
        ],
        waivers: vec![],
        settings: RuleSettings::default(),
        now: t0(),
    }
}

impl Fixture {
    fn run(&self) -> Vec<Candidate> {
        let s = Subject {
            identity: &self.identity,
            owner: self.owner.as_ref(),
            credentials: &self.credentials,
            usage: &self.usage,
            sources: &self.sources,
            waivers: &self.waivers,
        };
        evaluate(&s, &self.settings, self.now)
    }

    fn types(&self) -> Vec<FindingType> {
        self.run().into_iter().map(|c| c.kind).collect()
    }

    fn cid(&self) -> Uuid {
        self.credentials[0].id
    }
}

struct Case {
    kind: FindingType,
    raise: fn(&mut Fixture),
    resolve: fn(&mut Fixture),
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            kind: FindingType::Orphaned,
            raise: |f| {
                let o = f.owner.as_mut().unwrap();
                o.status = OwnerStatus::Departed;
                o.departed_at = Some(t0() - Duration::days(3));
            },
            // Reassigned to an active owner.
            resolve: |f| f.owner = Some(owner()),
        },
        Case {
            kind: FindingType::Orphaned,
            raise: |f| f.owner = None,
            resolve: |f| f.owner = Some(owner()),
        },
        Case {
            kind: FindingType::Dormant,
            raise: |f| {
                f.now = t0() + Duration::days(95);
                f.identity.expires_at = t0() + Duration::days(200);
            },
            // Used again.
            resolve: |f| {
                f.credentials[0].last_used_at = Some(f.now - Duration::hours(1));
                f.usage = vec![scope_use("p:read", -95), scope_use("p:write", -95)];
            },
        },
        Case {
            kind: FindingType::ExpiringSoon,
            raise: |f| f.identity.expires_at = t0() + Duration::days(5),
            resolve: |f| f.identity.expires_at = t0() + Duration::days(60),
        },
        Case {
            kind: FindingType::ExpiredWithCredentials,
            raise: |f| f.identity.expires_at = t0() - Duration::days(1),
            // The leftover credential is revoked.
            resolve: |f| {
                f.credentials[0].revoked_at = Some(t0() - Duration::hours(1));
            },
        },
        Case {
            kind: FindingType::CredentialRotationOverdue,
            raise: |f| {
                f.credentials[0].created_at = t0() - Duration::days(120);
            },
            // Rotated: the old one is retiring, a new one is active.
            resolve: |f| {
                f.credentials[0].revoked_at = Some(t0() + Duration::hours(10));
                let mut n = credential(2, CredentialKind::PublicKey, 0);
                n.last_used_at = Some(t0());
                f.credentials.push(n);
            },
        },
        Case {
            kind: FindingType::OverPrivilegedUnusedScopes,
            raise: |f| f.usage = vec![scope_use("p:read", 1), scope_use("p:write", 120)],
            // Right-sized to what is used.
            resolve: |f| f.identity.scopes = vec!["p:read".into()],
        },
        Case {
            kind: FindingType::WildcardOrAdminScopeInProd,
            raise: |f| {
                f.identity.scopes.push("payments:admin".into());
                f.usage.push(scope_use("payments:admin", 1));
            },
            resolve: |f| {
                f.identity.scopes.retain(|s| s != "payments:admin");
            },
        },
        Case {
            kind: FindingType::StaticApiKeyWhereFederationPossible,
            raise: |f| {
                f.credentials.push(credential(3, CredentialKind::ApiKey, 5));
            },
            // The key is revoked: only the public key remains.
            resolve: |f| {
                let k = f.credentials.last_mut().unwrap();
                k.revoked_at = Some(t0() - Duration::hours(2));
            },
        },
        Case {
            kind: FindingType::CredentialMultiSource,
            raise: |f| {
                let cid = f.cid();
                for n in 2..=10 {
                    f.sources
                        .push(source(cid, SourceKind::Address, &format!("10.0.0.{n}"), 1));
                }
            },
            // The extra sources are older than the window.
            resolve: |f| {
                for s in f.sources.iter_mut().filter(|s| s.value != "10.0.0.1") {
                    s.last_seen = t0() - Duration::days(100);
                }
            },
        },
        Case {
            kind: FindingType::CredentialMultiSource,
            raise: |f| {
                let cid = f.cid();
                f.sources
                    .push(source(cid, SourceKind::Address, OVERFLOW_VALUE, 1));
            },
            resolve: |f| f.sources.retain(|s| !s.is_overflow()),
        },
        Case {
            kind: FindingType::CredentialMultiSource,
            raise: |f| {
                let cid = f.cid();
                f.sources
                    .push(source(cid, SourceKind::UserAgent, "billing/2.0", 1));
                f.sources
                    .push(source(cid, SourceKind::UserAgent, "reports/0.3", 1));
            },
            resolve: |f| {
                f.sources.retain(|s| !s.value.starts_with("billing"));
            },
        },
        Case {
            kind: FindingType::CredentialMultiSource,
            raise: |f| {
                let cid = f.cid();
                f.sources
                    .push(source(cid, SourceKind::Address, OVERFLOW_VALUE, 1));
            },
            // The shared credential is revoked (and a new one issued).
            resolve: |f| {
                f.credentials[0].revoked_at = Some(t0() - Duration::hours(1));
                f.credentials
                    .push(credential(2, CredentialKind::PublicKey, 0));
            },
        },
        Case {
            kind: FindingType::IdentityMultiEnvironment,
            raise: |f| {
                let cid = f.cid();
                f.sources
                    .push(source(cid, SourceKind::Environment, "dev", 1));
            },
            resolve: |f| f.sources.retain(|s| s.value != "dev"),
        },
        Case {
            kind: FindingType::HumanUse,
            raise: |f| {
                let cid = f.cid();
                f.sources.push(source(
                    cid,
                    SourceKind::UserAgent,
                    "Mozilla/5.0 (Macintosh) Firefox/121.0",
                    2,
                ));
            },
            resolve: |f| {
                for s in f
                    .sources
                    .iter_mut()
                    .filter(|s| s.value.starts_with("Mozilla"))
                {
                    s.last_seen = t0() - Duration::days(91);
                }
            },
        },
        Case {
            kind: FindingType::HumanUse,
            raise: |f| f.identity.allowed_source_cidrs = vec!["192.0.2.0/24".into()],
            // The allowed ranges are corrected to include the workload's network.
            resolve: |f| {
                f.identity.allowed_source_cidrs = vec!["10.0.0.0/8".into(), "192.0.2.0/24".into()]
            },
        },
        Case {
            kind: FindingType::IntegrationUnapprovedOrReviewOverdue,
            raise: |f| {
                f.identity.kind = IdentityKind::Integration;
                f.identity.vendor = Some("acme".into());
                f.identity.status = IdentityStatus::PendingApproval;
            },
            resolve: |f| {
                f.identity.status = IdentityStatus::Active;
                f.identity.approved_by = Some("bob".into());
                f.identity.approved_at = Some(t0() - Duration::days(1));
            },
        },
        Case {
            kind: FindingType::IntegrationUnapprovedOrReviewOverdue,
            raise: |f| {
                f.identity.kind = IdentityKind::Integration;
                f.identity.vendor = Some("acme".into());
                f.identity.approved_by = Some("bob".into());
                f.identity.approved_at = Some(t0() - Duration::days(100));
            },
            // Reviewed: the next review is due in 90 days.
            resolve: |f| f.identity.review_due_at = Some(t0() + Duration::days(90)),
        },
    ]
}

#[test]
fn healthy_identity_raises_nothing() {
    assert_eq!(healthy().types(), vec![]);
}

#[test]
fn every_type_raises_and_resolves() {
    let mut covered = BTreeSet::new();
    for (n, case) in cases().into_iter().enumerate() {
        let mut f = healthy();
        (case.raise)(&mut f);
        let raised = f.run();
        let hit: Vec<&Candidate> = raised.iter().filter(|c| c.kind == case.kind).collect();
        assert_eq!(
            hit.len(),
            1,
            "case {n}: {:?} should be raised once, got {:?}",
            case.kind,
            raised.iter().map(|c| c.kind).collect::<Vec<_>>()
        );
        let c = hit[0];
        assert_eq!(c.owasp_nhi(), case.kind.owasp_nhi());
        assert!(c.owasp_nhi().starts_with("NHI") && c.owasp_nhi().ends_with(":2025"));
        assert!(c.nist_csf().starts_with("PR.AA-0"));
        assert!(
            c.dedup_key.starts_with(case.kind.as_str()),
            "{}",
            c.dedup_key
        );
        assert!(c.waiver.is_none());
        (case.resolve)(&mut f);
        assert!(
            !f.types().contains(&case.kind),
            "case {n}: {:?} should resolve, got {:?}",
            case.kind,
            f.types()
        );
        covered.insert(case.kind);
    }
    assert_eq!(
        covered.len(),
        FindingType::ALL.len(),
        "every type has a case"
    );
}

#[test]
fn evidence_is_stable_while_the_condition_is() {
    let mut f = healthy();
    f.credentials[0].created_at = t0() - Duration::days(120);
    let first = f.run();
    f.now = t0() + Duration::days(1);
    let later = f.run();
    assert_eq!(first[0].evidence, later[0].evidence);
}

#[test]
fn young_identities_are_not_judged_dormant_or_over_privileged() {
    let mut f = healthy();
    f.identity.created_at = t0() - Duration::days(30);
    f.credentials[0].last_used_at = None;
    f.usage = vec![scope_use("p:read", 1)];
    f.sources.clear();
    assert_eq!(f.types(), vec![]);
    // Never used and older than the window: dormant (and no over-privilege verdict).
    f.identity.created_at = t0() - Duration::days(100);
    f.usage.clear();
    assert_eq!(f.types(), vec![FindingType::Dormant]);
}

#[test]
fn retired_raises_nothing_and_suspended_is_not_dormant() {
    let mut f = healthy();
    f.owner = None;
    f.identity.status = IdentityStatus::Retired;
    assert_eq!(f.types(), vec![]);
    let mut f = healthy();
    f.now = t0() + Duration::days(95);
    f.identity.expires_at = t0() + Duration::days(200);
    f.identity.status = IdentityStatus::Suspended;
    assert!(!f.types().contains(&FindingType::Dormant));
}

#[test]
fn waivers_attach_until_they_expire() {
    let mut f = healthy();
    f.credentials.push(credential(3, CredentialKind::ApiKey, 5));
    let w = Waiver {
        id: Uuid::from_u128(9),
        finding_type: "static_api_key_where_federation_possible".into(),
        approved_by: "bob".into(),
        reason: "vendor SDK only supports keys".into(),
        expires_at: t0() + Duration::days(30),
    };
    f.waivers = vec![w.clone()];
    let c = f.run();
    assert_eq!(c[0].waiver.as_ref(), Some(&w));
    f.now = t0() + Duration::days(31);
    assert!(f.run()[0].waiver.is_none());
}

#[test]
fn disabled_types_are_skipped() {
    let mut f = healthy();
    f.owner = None;
    f.settings.disabled = vec![FindingType::Orphaned];
    assert_eq!(f.types(), vec![]);
}

#[test]
fn privileged_scopes() {
    for yes in [
        "*",
        "payments:*",
        "admin",
        "payments:admin",
        "steward:admin",
        "db.root",
    ] {
        assert!(is_privileged_scope(yes), "{yes}");
    }
    for no in ["payments:read", "administer", "badmin:x", "p:write"] {
        assert!(!is_privileged_scope(no), "{no}");
    }
}

#[test]
fn every_type_maps_to_framework_ids() {
    for t in FindingType::ALL {
        assert_eq!(FindingType::parse(t.as_str()), Some(t));
        let n: u32 = t
            .owasp_nhi()
            .trim_start_matches("NHI")
            .trim_end_matches(":2025")
            .parse()
            .unwrap();
        assert!((1..=10).contains(&n));
        assert!(
            ["PR.AA-01", "PR.AA-02", "PR.AA-03", "PR.AA-04", "PR.AA-05"].contains(&t.nist_csf())
        );
    }
}

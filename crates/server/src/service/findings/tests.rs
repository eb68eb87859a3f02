//! The findings job's planning, without I/O: what a run writes for a page given the rules'
//! candidates and the stored findings, over a sequence of runs with a moving clock.

use super::*;
use serde_json::Value;
use steward_core::{CredentialKind, IdentityKind, OwnerKind, OwnerStatus};

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn owner(active: bool) -> Owner {
    Owner {
        id: Uuid::from_u128(1),
        name: "team".into(),
        kind: OwnerKind::Team,
        contact: "t@example.com".into(),
        status: if active {
            OwnerStatus::Active
        } else {
            OwnerStatus::Departed
        },
        created_at: t0() - Duration::days(400),
        departed_at: None,
        version: 1,
    }
}

fn identity() -> Identity {
    let mut i = Identity::create(
        Uuid::from_u128(2),
        steward_core::identity::NewIdentity {
            name: "svc".into(),
            kind: Some(IdentityKind::Workload),
            owner_id: Uuid::from_u128(1),
            purpose: "runs things".into(),
            environment: "dev".into(),
            expires_at: Some(t0() + Duration::days(300)),
            scopes: vec!["a:read".into()],
            ..Default::default()
        },
        &owner(true),
        &steward_core::RegistryPolicy::default(),
        "alice",
        t0() - Duration::days(10),
    )
    .unwrap();
    i.created_at = t0() - Duration::days(10);
    i
}

fn api_key() -> Credential {
    Credential {
        id: Uuid::from_u128(3),
        identity_id: Uuid::from_u128(2),
        kind: CredentialKind::ApiKey,
        secret_hash: None,
        jwk: None,
        fingerprint: "fp".into(),
        created_at: t0() - Duration::days(5),
        expires_at: t0() + Duration::days(80),
        last_used_at: Some(t0()),
        revoked_at: None,
        revoke_reason: None,
        rotated_from: None,
        created_by: "alice".into(),
        version: 1,
    }
}

/// A tiny in-memory "store" of findings and risk, so plans can be applied run after run.
struct World {
    owner_active: bool,
    identity: Identity,
    credentials: Vec<Credential>,
    findings: Vec<FindingRecord>,
    risk: Option<RiskRecord>,
    waivers: Vec<Waiver>,
    config: FindingsConfig,
    now: OffsetDateTime,
}

impl World {
    fn new() -> Self {
        Self {
            owner_active: true,
            identity: identity(),
            credentials: vec![],
            findings: vec![],
            risk: None,
            waivers: vec![],
            config: FindingsConfig::default(),
            now: t0(),
        }
    }

    fn run(&mut self) -> PagePlan {
        let ctx = RunContext {
            owners: [(Uuid::from_u128(1), owner(self.owner_active))].into(),
            waivers: [(self.identity.id, self.waivers.clone())].into(),
            config: self.config.clone(),
            now: self.now,
            actor: SYSTEM_ACTOR.into(),
            request_id: None,
        };
        let live = self
            .findings
            .iter()
            .filter(|f| f.status != FindingStatus::Resolved)
            .cloned()
            .collect();
        let mut plan = ctx.plan(PageInput {
            identities: vec![self.identity.clone()],
            credentials: self.credentials.clone(),
            usage: vec![],
            sources: vec![],
            live,
            risks: self.risk.clone().into_iter().collect(),
        });
        for (m, _) in &plan.writes {
            match m {
                Mutation::InsertFinding(f) => self.findings.push(f.clone()),
                Mutation::UpdateFinding {
                    finding,
                    expected_version,
                } => {
                    let slot = self
                        .findings
                        .iter_mut()
                        .find(|f| f.id == finding.id)
                        .unwrap();
                    assert_eq!(slot.version, *expected_version, "optimistic version");
                    *slot = finding.clone();
                }
                Mutation::PutIdentityRisk(r) => self.risk = Some(r.clone()),
                other => panic!("unexpected mutation {other:?}"),
            }
        }
        plan.writes
            .retain(|(m, _)| !matches!(m, Mutation::PutIdentityRisk(_)));
        plan
    }

    fn events(plan: &PagePlan) -> Vec<String> {
        plan.writes
            .iter()
            .filter_map(|(_, e)| e.as_ref().map(|e| e.action.clone()))
            .collect()
    }

    fn one(&self, kind: &str) -> &FindingRecord {
        let v: Vec<_> = self.findings.iter().filter(|f| f.kind == kind).collect();
        assert_eq!(v.len(), 1, "{kind}: {v:?}");
        v[0]
    }
}

#[test]
fn raise_keep_resolve_and_raise_again() {
    let mut w = World::new();
    w.owner_active = false;
    let p = w.run();
    assert_eq!(World::events(&p), ["finding.raise"]);
    assert_eq!(p.raised, 1);
    let f = w.one("orphaned").clone();
    assert_eq!(f.status, FindingStatus::Open);
    assert_eq!(
        (f.owasp_nhi.as_str(), f.nist_csf.as_str()),
        ("NHI1:2025", "PR.AA-01")
    );
    assert_eq!(w.risk.as_ref().unwrap().score, 21);

    // Nothing changed: nothing written, not even the risk score.
    w.now += Duration::hours(1);
    let p = w.run();
    assert!(p.writes.is_empty(), "{:?}", World::events(&p));
    assert_eq!(p.risk_scores, 0);

    // A day later the unchanged finding's last_seen is refreshed, without an audit event.
    w.now += Duration::days(1);
    let p = w.run();
    assert_eq!(p.writes.len(), 1);
    assert!(p.writes[0].1.is_none());
    assert_eq!(w.one("orphaned").last_seen, w.now);

    // The owner is back (reassigned): the finding resolves, and the score drops to 0.
    w.owner_active = true;
    let p = w.run();
    assert_eq!(World::events(&p), ["finding.resolve"]);
    assert_eq!(
        p.writes[0].1.as_ref().unwrap().reason.as_deref(),
        Some("condition cleared")
    );
    assert_eq!(w.one("orphaned").status, FindingStatus::Resolved);
    assert_eq!(w.risk.as_ref().unwrap().score, 0);

    // It recurs: a new finding, the resolved one stays as history.
    w.owner_active = false;
    let p = w.run();
    assert_eq!(p.raised, 1);
    assert_eq!(w.findings.len(), 2);
}

#[test]
fn evidence_changes_are_audited_updates() {
    let mut w = World::new();
    w.credentials = vec![api_key()];
    w.run();
    let first = w.one("static_api_key_where_federation_possible").clone();
    let mut second = api_key();
    second.id = Uuid::from_u128(4);
    w.credentials.push(second);
    let p = w.run();
    assert_eq!(World::events(&p), ["finding.update"]);
    assert_eq!(p.updated, 1);
    let f = w.one("static_api_key_where_federation_possible");
    assert_eq!(f.id, first.id, "same finding, new evidence");
    assert_eq!(f.evidence["api_keys"].as_array().unwrap().len(), 2);
    let d = &p.writes[0].1.as_ref().unwrap().details;
    assert_ne!(d["before"], d["after"]);
}

#[test]
fn acceptance_holds_until_its_date_then_reopens() {
    let mut w = World::new();
    w.owner_active = false;
    w.run();
    // An operator accepts it for 10 days (as the API does).
    let f = w
        .findings
        .iter_mut()
        .find(|f| f.kind == "orphaned")
        .unwrap();
    f.status = FindingStatus::Accepted;
    f.accepted_until = Some(t0() + Duration::days(10));
    f.accepted_reason = Some("successor being hired".into());
    f.accepted_by = Some("bob".into());
    f.version += 1;
    w.now = t0() + Duration::days(5);
    let p = w.run();
    assert!(World::events(&p).is_empty());
    assert_eq!(w.one("orphaned").status, FindingStatus::Accepted);
    // Accepted findings count half.
    assert_eq!(w.risk.as_ref().unwrap().score, 10);

    w.now = t0() + Duration::days(11);
    let p = w.run();
    assert_eq!(World::events(&p), ["finding.reopen"]);
    assert_eq!(p.reopened, 1);
    let f = w.one("orphaned");
    assert_eq!(f.status, FindingStatus::Open);
    assert!(f.accepted_until.is_none());
    let d = &p.writes[0].1.as_ref().unwrap().details;
    assert_eq!(d["accepted_by"], "bob");
    assert_eq!(w.risk.as_ref().unwrap().score, 21);
}

#[test]
fn exceptions_waive_until_they_expire() {
    let mut w = World::new();
    w.credentials = vec![api_key()];
    w.waivers = vec![Waiver {
        id: Uuid::from_u128(77),
        finding_type: "static_api_key_where_federation_possible".into(),
        approved_by: "carol".into(),
        reason: "vendor SDK needs keys".into(),
        expires_at: t0() + Duration::days(30),
    }];
    let p = w.run();
    assert_eq!(p.waived, 1);
    let f = w.one("static_api_key_where_federation_possible");
    assert_eq!(f.status, FindingStatus::Accepted);
    assert_eq!(f.accepted_by.as_deref(), Some("carol"));
    assert!(f.accepted_reason.as_deref().unwrap().contains("vendor SDK"));
    assert_eq!(f.accepted_until, Some(t0() + Duration::days(30)));
    // The exception expires (no longer listed as active): the finding reopens.
    w.waivers.clear();
    w.now = t0() + Duration::days(31);
    let p = w.run();
    assert_eq!(World::events(&p), ["finding.reopen"]);
    // An open finding waived later becomes accepted with an audit event.
    w.waivers = vec![Waiver {
        id: Uuid::from_u128(78),
        finding_type: "static_api_key_where_federation_possible".into(),
        approved_by: "carol".into(),
        reason: "renewed".into(),
        expires_at: w.now + Duration::days(30),
    }];
    let p = w.run();
    assert_eq!(World::events(&p), ["finding.accept"]);
}

#[test]
fn foreign_findings_are_kept_and_scored() {
    let mut w = World::new();
    let leak = FindingRecord {
        id: Uuid::from_u128(50),
        identity_id: Some(w.identity.id),
        kind: "secret_leaked".into(),
        severity: "critical".into(),
        status: FindingStatus::Open,
        owasp_nhi: "NHI2:2025".into(),
        nist_csf: "PR.AA-01".into(),
        evidence: Value::Null,
        dedup_key: "secret_leaked:credential:x".into(),
        first_seen: t0(),
        last_seen: t0(),
        resolved_at: None,
        version: 1,
        accepted_until: None,
        accepted_reason: None,
        accepted_by: None,
    };
    w.findings.push(leak.clone());
    let p = w.run();
    assert!(World::events(&p).is_empty(), "never resolves other types");
    assert_eq!(w.findings[0], leak);
    assert_eq!(w.risk.as_ref().unwrap().score, 24);
    assert_eq!(
        w.risk.as_ref().unwrap().factors[0].finding_type,
        "secret_leaked"
    );
}

#[test]
fn retiring_resolves_everything_owned() {
    let mut w = World::new();
    w.owner_active = false;
    w.credentials = vec![api_key()];
    w.run();
    assert_eq!(w.findings.len(), 2);
    w.identity.status = IdentityStatus::Retired;
    let p = w.run();
    assert_eq!(p.resolved, 2);
    assert!(
        p.writes
            .iter()
            .all(|(_, e)| e.as_ref().unwrap().reason.as_deref() == Some("identity retired"))
    );
}

#[test]
fn actions_are_planned_after_the_grace_period() {
    let mut w = World::new();
    w.identity.created_at = t0() - Duration::days(200);
    w.config.actions.rules = vec![ActionRule {
        finding: FindingType::Dormant,
        action: ActionKind::SuspendIdentity,
        grace_days: 14,
    }];
    let p = w.run();
    assert_eq!(p.raised, 1, "never used: dormant");
    assert!(p.actions.is_empty(), "within the grace period");
    w.now = t0() + Duration::days(15);
    let p = w.run();
    assert_eq!(p.actions.len(), 1);
    assert_eq!(p.actions[0].action, ActionKind::SuspendIdentity);
    assert_eq!(p.actions[0].open_since, t0());
    // Accepted findings are left alone.
    w.findings[0].status = FindingStatus::Accepted;
    w.findings[0].accepted_until = Some(w.now + Duration::days(3));
    assert!(w.run().actions.is_empty());
}

#[test]
fn config_refuses_credential_actions_on_identity_findings() {
    let mut c = FindingsConfig::default();
    c.actions.rules = vec![ActionRule {
        finding: FindingType::Dormant,
        action: ActionKind::RevokeCredential,
        grace_days: 1,
    }];
    assert!(c.validate().is_err());
    c.actions.rules[0].finding = FindingType::CredentialRotationOverdue;
    assert!(c.validate().is_ok());
    // The defaults parse from an empty table and are dry-run.
    let parsed: FindingsConfig = serde_json::from_str("{}").unwrap();
    assert!(parsed.actions.dry_run);
    assert_eq!(parsed, FindingsConfig::default());
}

//! The posture report: inventory, hygiene shares, credential ages, findings by severity and by
//! framework id, top risks, exceptions and reviews, gathered in one pass over the registry.
//! Rendering (Markdown, HTML) lives in `crate::report_render`.

use std::collections::{BTreeMap, HashMap};

use steward_core::{Credential, CredentialKind, CredentialState, Identity, IdentityStatus, Owner};
use steward_proto::findings as wire;
use steward_store::{
    ExceptionQuery, FindingCount, FindingStatus, IdRange, IdentityQuery, RiskQuery,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::ServiceError;
use crate::state::Inner;

/// Credential age buckets: (label, upper bound in days, exclusive).
const AGE_BUCKETS: [(&str, i64); 6] = [
    ("0-7d", 7),
    ("7-30d", 30),
    ("30-90d", 90),
    ("90-180d", 180),
    ("180-365d", 365),
    (">365d", i64::MAX),
];

/// Accumulates the inventory part of the report, one identity at a time (pure).
pub struct ReportBuilder<'a> {
    now: OffsetDateTime,
    owners: &'a HashMap<Uuid, Owner>,
    inventory: wire::Inventory,
    per_owner: HashMap<Uuid, u64>,
    active_owner: u64,
    purpose: u64,
    expiry: u64,
    short_lived: u64,
    ages: Vec<wire::AgeBucket>,
    max_lifetime: Duration,
}

impl<'a> ReportBuilder<'a> {
    pub fn new(
        now: OffsetDateTime,
        owners: &'a HashMap<Uuid, Owner>,
        max_lifetime: Duration,
    ) -> Self {
        Self {
            now,
            owners,
            inventory: wire::Inventory {
                owners: owners.len() as u64,
                ..Default::default()
            },
            per_owner: HashMap::new(),
            active_owner: 0,
            purpose: 0,
            expiry: 0,
            short_lived: 0,
            ages: AGE_BUCKETS
                .iter()
                .map(|(l, _)| wire::AgeBucket {
                    label: (*l).into(),
                    api_keys: 0,
                    public_keys: 0,
                })
                .collect(),
            max_lifetime,
        }
    }

    /// Adds one identity with its credentials (any state).
    pub fn add(&mut self, i: &Identity, creds: &[Credential]) {
        if i.status == IdentityStatus::Retired {
            self.inventory.retired += 1;
            return;
        }
        let inv = &mut self.inventory;
        inv.identities += 1;
        *inv.by_kind.entry(i.kind.as_str().into()).or_default() += 1;
        *inv.by_environment.entry(i.environment.clone()).or_default() += 1;
        *inv.by_status
            .entry(i.effective_status(self.now).as_str().into())
            .or_default() += 1;
        *self.per_owner.entry(i.owner_id).or_default() += 1;
        if self.owners.get(&i.owner_id).is_some_and(Owner::is_active) {
            self.active_owner += 1;
        }
        if i.purpose.trim().chars().count() >= 10 {
            self.purpose += 1;
        }
        if i.expires_at - i.created_at <= self.max_lifetime {
            self.expiry += 1;
        }
        let usable: Vec<&Credential> = creds
            .iter()
            .filter(|c| {
                matches!(
                    c.state(self.now),
                    CredentialState::Active | CredentialState::Retiring
                )
            })
            .collect();
        if !usable.iter().any(|c| c.kind == CredentialKind::ApiKey) {
            self.short_lived += 1;
        }
        for c in usable {
            let age = (self.now - c.created_at).whole_days();
            let Some(b) = AGE_BUCKETS
                .iter()
                .position(|(_, max)| age < *max)
                .and_then(|n| self.ages.get_mut(n))
            else {
                continue;
            };
            match c.kind {
                CredentialKind::ApiKey => b.api_keys += 1,
                CredentialKind::PublicKey => b.public_keys += 1,
            }
        }
    }

    pub fn finish(mut self) -> (wire::Inventory, wire::Hygiene, Vec<wire::AgeBucket>) {
        let total = self.inventory.identities;
        let mut owners: Vec<(Uuid, u64)> = self.per_owner.into_iter().collect();
        owners.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.inventory.by_owner = owners
            .into_iter()
            .take(20)
            .map(|(id, n)| {
                let o = self.owners.get(&id);
                wire::OwnerCount {
                    owner_id: id,
                    name: o.map(|o| o.name.clone()).unwrap_or_default(),
                    status: match o {
                        Some(o) if o.is_active() => "active",
                        Some(_) => "departed",
                        None => "missing",
                    }
                    .into(),
                    identities: n,
                }
            })
            .collect();
        let hygiene = wire::Hygiene {
            with_active_owner: wire::Share::new(self.active_owner, total),
            with_purpose: wire::Share::new(self.purpose, total),
            with_expiry: wire::Share::new(self.expiry, total),
            short_lived_credentials_only: wire::Share::new(self.short_lived, total),
        };
        (self.inventory, hygiene, self.ages)
    }
}

/// Findings counts by severity, framework id and type (open ones), and totals per status.
pub fn summarize_findings(counts: &[FindingCount]) -> wire::FindingsSummary {
    let mut s = wire::FindingsSummary::default();
    for c in counts {
        match c.status {
            FindingStatus::Open => {
                s.open += c.count;
                let add = |m: &mut BTreeMap<String, u64>, k: &str| {
                    *m.entry(k.to_owned()).or_default() += c.count;
                };
                add(&mut s.by_severity, &c.severity);
                add(&mut s.by_owasp_nhi, &c.owasp_nhi);
                add(&mut s.by_nist_csf, &c.nist_csf);
                add(&mut s.by_type, &c.kind);
            }
            FindingStatus::Accepted => s.accepted += c.count,
            FindingStatus::Resolved => s.resolved += c.count,
        }
    }
    s
}

impl Inner {
    /// Gathers the posture report (reads the whole registry once, page by page).
    pub async fn posture_report(&self) -> Result<wire::PostureReport, ServiceError> {
        let now = self.now();
        let owners = self.all_owners().await?;
        let max_lifetime = Duration::days(i64::from(
            self.config
                .registry
                .max_identity_lifetime_days
                .max(self.config.registry.max_integration_lifetime_days),
        ));
        let mut builder = ReportBuilder::new(now, &owners, max_lifetime);
        let mut after = None;
        loop {
            let page = self
                .store
                .list_identities(&IdentityQuery::all(after, 1000, now))
                .await?;
            let (Some(first), Some(last)) = (page.items.first(), page.items.last()) else {
                break;
            };
            let creds = self
                .store
                .credentials_between(IdRange {
                    first: first.id,
                    last: last.id,
                })
                .await?;
            let mut by_identity: HashMap<Uuid, Vec<Credential>> = HashMap::new();
            for c in creds {
                by_identity.entry(c.identity_id).or_default().push(c);
            }
            for i in &page.items {
                builder.add(i, by_identity.get(&i.id).map_or(&[][..], Vec::as_slice));
            }
            after = Some(last.id);
            if page.next.is_none() {
                break;
            }
        }
        let (inventory, hygiene, credential_age) = builder.finish();
        let findings = summarize_findings(&self.store.finding_counts().await?);
        let risks = self
            .store
            .list_identity_risks(&RiskQuery {
                min_score: 1,
                after: None,
                limit: 10,
            })
            .await?;
        let mut top_risks = Vec::with_capacity(risks.items.len());
        for r in risks.items {
            let i = self.store.get_identity(r.identity_id).await?;
            let mut factors: Vec<String> = Vec::new();
            for f in &r.factors {
                if !factors.contains(&f.finding_type) {
                    factors.push(f.finding_type.clone());
                }
            }
            top_risks.push(wire::TopRisk {
                identity_id: r.identity_id,
                name: i.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
                environment: i.map(|i| i.environment).unwrap_or_default(),
                score: r.score,
                factors,
            });
        }
        let mut exceptions = self
            .store
            .list_exceptions(&ExceptionQuery {
                identity_id: None,
                active_at: Some(now),
            })
            .await?;
        exceptions.sort_by_key(|x| (x.expires_at, x.id));
        let lifecycle = self.store.lifecycle_counts(now).await?;
        let active = exceptions.len() as u64;
        let items = exceptions
            .into_iter()
            .take(50)
            .map(|x| wire::ExceptionItem {
                id: x.id,
                identity_id: x.identity_id,
                guard_rail: x.guard_rail,
                approved_by: x.approved_by,
                reason: x.reason,
                expires_at: x.expires_at,
            })
            .collect();
        Ok(wire::PostureReport {
            generated_at: now,
            issuer: self.issuer.clone(),
            inventory,
            hygiene,
            credential_age,
            findings,
            top_risks,
            exceptions: wire::ExceptionsSummary {
                active,
                items,
                pending_requests: lifecycle.pending_exception_requests,
            },
            reviews: wire::ReviewsSummary {
                open: Some(lifecycle.undecided_items),
                open_campaigns: lifecycle.open_campaigns,
                overdue: lifecycle.overdue_items,
                pending_jit_requests: lifecycle.pending_jit_requests,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_core::{IdentityKind, OwnerKind, OwnerStatus};

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn owner(n: u128, active: bool) -> Owner {
        Owner {
            id: Uuid::from_u128(n),
            name: format!("team-{n}"),
            kind: OwnerKind::Team,
            contact: "t@example.com".into(),
            status: if active {
                OwnerStatus::Active
            } else {
                OwnerStatus::Departed
            },
            created_at: t0(),
            departed_at: None,
            version: 1,
        }
    }

    fn identity(n: u128, owner: u128, env: &str, status: IdentityStatus) -> Identity {
        let o = self::owner(owner, true);
        let mut i = Identity::create(
            Uuid::from_u128(n),
            steward_core::identity::NewIdentity {
                name: format!("svc-{n}"),
                kind: Some(IdentityKind::Workload),
                owner_id: o.id,
                purpose: "runs the nightly batch".into(),
                environment: env.into(),
                expires_at: Some(t0() + Duration::days(30)),
                ..Default::default()
            },
            &o,
            &steward_core::RegistryPolicy::default(),
            "alice",
            t0() - Duration::days(10),
        )
        .unwrap();
        i.status = status;
        i
    }

    fn cred(identity: u128, kind: CredentialKind, age: i64) -> Credential {
        Credential {
            id: Uuid::now_v7(),
            identity_id: Uuid::from_u128(identity),
            kind,
            secret_hash: None,
            jwk: None,
            fingerprint: "f".into(),
            created_at: t0() - Duration::days(age),
            expires_at: t0() + Duration::days(10),
            last_used_at: None,
            revoked_at: None,
            revoke_reason: None,
            rotated_from: None,
            created_by: "a".into(),
            version: 1,
        }
    }

    #[test]
    fn inventory_shares_and_ages() {
        let owners: HashMap<Uuid, Owner> = [owner(1, true), owner(2, false)]
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        let mut b = ReportBuilder::new(t0(), &owners, Duration::days(365));
        b.add(
            &identity(10, 1, "prod", IdentityStatus::Active),
            &[
                cred(10, CredentialKind::ApiKey, 3),
                cred(10, CredentialKind::PublicKey, 100),
            ],
        );
        b.add(
            &identity(11, 2, "dev", IdentityStatus::Active),
            &[cred(11, CredentialKind::PublicKey, 400)],
        );
        b.add(&identity(12, 1, "prod", IdentityStatus::Retired), &[]);
        let (inv, h, ages) = b.finish();
        assert_eq!((inv.identities, inv.retired), (2, 1));
        assert_eq!(inv.by_environment["prod"], 1);
        assert_eq!(inv.by_kind["workload"], 2);
        assert_eq!(h.with_active_owner, wire::Share::new(1, 2));
        assert_eq!(h.with_active_owner.percent, 50.0);
        assert_eq!(h.short_lived_credentials_only.count, 1);
        assert_eq!(ages[0].api_keys, 1);
        assert_eq!(ages[3].public_keys, 1);
        assert_eq!(ages[5].public_keys, 1);
        assert_eq!(inv.by_owner.len(), 2);
        assert!(inv.by_owner.iter().any(|o| o.status == "departed"));
    }

    #[test]
    fn findings_summary_counts_open_by_framework() {
        let c = |kind: &str, sev: &str, status, owasp: &str, n| FindingCount {
            kind: kind.into(),
            severity: sev.into(),
            status,
            owasp_nhi: owasp.into(),
            nist_csf: "PR.AA-01".into(),
            count: n,
        };
        let s = summarize_findings(&[
            c("dormant", "medium", FindingStatus::Open, "NHI1:2025", 3),
            c("orphaned", "high", FindingStatus::Open, "NHI1:2025", 2),
            c("dormant", "medium", FindingStatus::Resolved, "NHI1:2025", 7),
            c(
                "human_use",
                "high",
                FindingStatus::Accepted,
                "NHI10:2025",
                1,
            ),
        ]);
        assert_eq!((s.open, s.resolved, s.accepted), (5, 7, 1));
        assert_eq!(s.by_owasp_nhi["NHI1:2025"], 5);
        assert!(!s.by_owasp_nhi.contains_key("NHI10:2025"));
        assert_eq!(s.by_severity["high"], 2);
        assert_eq!(s.by_nist_csf["PR.AA-01"], 5);
    }
}

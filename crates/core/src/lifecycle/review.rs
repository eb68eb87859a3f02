//! Access reviews: a campaign over a selection of identities, one item per identity for its
//! owner's reviewer, decisions (keep, reduce, revoke) with justifications, and the deadline rule.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{SYSTEM_ACTOR, validate_justification};
use crate::{DomainError, IdentityKind, scope};

/// What a reviewer decided about one identity's access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The access is still needed as it is.
    Keep,
    /// Narrow the identity's scopes to a given subset.
    Reduce,
    /// Take the access away (suspend or retire the identity, see [`RevokeMode`]).
    Revoke,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Reduce => "reduce",
            Self::Revoke => "revoke",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Keep, Self::Reduce, Self::Revoke]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// How a `revoke` decision takes the access away. `Suspend` (the default) is reversible and keeps
/// every credential for an investigation; `Retire` is final and runs the full offboarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RevokeMode {
    #[default]
    Suspend,
    Retire,
}

impl RevokeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Retire => "retire",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Suspend, Self::Retire]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// What happens at the deadline to items nobody decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineAction {
    /// Leave the access as it is (recorded as a `keep` by default).
    Keep,
    /// Suspend the identity (recorded as a `revoke` by default, mode `suspend`).
    #[default]
    Suspend,
    /// Retire (offboard) the identity (recorded as a `revoke` by default, mode `retire`).
    Retire,
}

impl DeadlineAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Suspend => "suspend",
            Self::Retire => "retire",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Keep, Self::Suspend, Self::Retire]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Accepting decisions until the deadline.
    Open,
    /// The deadline passed and every item has a decision (its own or the default).
    Closed,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Closed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Which identities a campaign covers; every given filter must match (retired ones never do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSelection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IdentityKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
}

/// An access-review campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCampaign {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub selection: ReviewSelection,
    pub default_action: DeadlineAction,
    /// Decisions are accepted strictly before this instant; at it, the default applies.
    pub deadline: OffsetDateTime,
    pub status: CampaignStatus,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
    pub version: i64,
}

/// The fields a caller supplies to start a campaign.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub description: String,
    pub selection: ReviewSelection,
    pub default_action: DeadlineAction,
    pub deadline: OffsetDateTime,
}

impl ReviewCampaign {
    /// Validates a new campaign: a name, a deadline in the future and at most `max_days` away.
    pub fn new(
        id: Uuid,
        req: NewCampaign,
        max_days: u32,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "name",
                "must be 1 to 128 characters without control characters",
            ));
        }
        let description = req.description.trim();
        if description.chars().count() > 1000
            || description.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(DomainError::invalid(
                "description",
                "must be at most 1000 characters without control characters",
            ));
        }
        if req.deadline <= now {
            return Err(DomainError::invalid("deadline", "must be in the future"));
        }
        if req.deadline - now > Duration::days(i64::from(max_days)) {
            return Err(DomainError::invalid(
                "deadline",
                format!("must be at most {max_days} days away"),
            ));
        }
        Ok(Self {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            selection: req.selection,
            default_action: req.default_action,
            deadline: crate::truncate_micros(req.deadline),
            status: CampaignStatus::Open,
            created_by: actor.to_owned(),
            created_at: now,
            closed_at: None,
            version: 1,
        })
    }

    /// Has the deadline passed on an open campaign (so undecided items get the default)?
    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        self.status == CampaignStatus::Open && now >= self.deadline
    }

    /// Does the campaign still take decisions at `now`?
    pub fn accepts_decisions(&self, now: OffsetDateTime) -> Result<(), DomainError> {
        if self.status != CampaignStatus::Open {
            return Err(DomainError::Conflict(format!(
                "review {} is closed",
                self.id
            )));
        }
        if now >= self.deadline {
            return Err(DomainError::Conflict(format!(
                "the deadline of review {} has passed; undecided items get its default action ({})",
                self.id,
                self.default_action.as_str()
            )));
        }
        Ok(())
    }

    /// Closes the campaign (after its deadline, once every item has a decision).
    pub fn close(&mut self, now: OffsetDateTime) -> Result<(), DomainError> {
        if self.status == CampaignStatus::Closed {
            return Err(DomainError::Conflict(format!(
                "review {} is already closed",
                self.id
            )));
        }
        if now < self.deadline {
            return Err(DomainError::Conflict(format!(
                "review {} cannot close before its deadline",
                self.id
            )));
        }
        self.status = CampaignStatus::Closed;
        self.closed_at = Some(now);
        self.version += 1;
        Ok(())
    }
}

/// One identity under review, with the snapshot its reviewer saw and the decision taken.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewItem {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub identity_id: Uuid,
    pub owner_id: Uuid,
    /// The actor (identity id) assigned to review this owner's identities; `None`: admins only.
    pub reviewer: Option<String>,
    /// What the reviewer is shown: scopes granted vs used, last use, open findings (JSON).
    pub snapshot: serde_json::Value,
    pub decision: Option<ReviewDecision>,
    /// For `reduce`: the scopes the identity keeps.
    pub reduced_scopes: Vec<String>,
    /// For `revoke`: how the access was taken away.
    pub revoke_mode: Option<RevokeMode>,
    /// What applying the decision did, e.g. `scopes_reduced`, `suspended`, `already_suspended`.
    pub outcome: Option<String>,
    pub justification: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    /// Decided by the deadline job with the campaign's default action.
    pub by_default: bool,
    pub created_at: OffsetDateTime,
    pub version: i64,
}

/// A reviewer's decision on one item, before validation.
#[derive(Debug, Clone)]
pub struct Decision {
    pub decision: ReviewDecision,
    /// For `reduce`: the scopes to keep (a proper subset of the current scopes).
    pub scopes: Option<Vec<String>>,
    pub revoke_mode: Option<RevokeMode>,
    pub justification: String,
}

impl ReviewItem {
    pub fn new(
        id: Uuid,
        campaign: &ReviewCampaign,
        identity_id: Uuid,
        owner_id: Uuid,
        reviewer: Option<String>,
        snapshot: serde_json::Value,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            campaign_id: campaign.id,
            identity_id,
            owner_id,
            reviewer,
            snapshot,
            decision: None,
            reduced_scopes: vec![],
            revoke_mode: None,
            outcome: None,
            justification: None,
            decided_by: None,
            decided_at: None,
            by_default: false,
            created_at: now,
            version: 1,
        }
    }

    pub fn is_decided(&self) -> bool {
        self.decision.is_some()
    }

    /// Who may decide: never the identity under review itself; otherwise an administrator, or
    /// the reviewer assigned to the item's owner.
    pub fn check_decider(&self, decider: &str, is_admin: bool) -> Result<(), DomainError> {
        if decider == self.identity_id.to_string() {
            return Err(DomainError::SeparationOfDuties(
                "an identity may not review its own access",
            ));
        }
        if is_admin || self.reviewer.as_deref() == Some(decider) {
            return Ok(());
        }
        Err(DomainError::SeparationOfDuties(
            "only the reviewer assigned to this item's owner, or an administrator, may decide it",
        ))
    }

    /// Records a reviewer's decision. `granted` are the identity's scopes now; a reduction must
    /// keep a proper subset of them.
    pub fn decide(
        &mut self,
        campaign: &ReviewCampaign,
        d: Decision,
        granted: &[String],
        decider: &str,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        campaign.accepts_decisions(now)?;
        if let Some(prev) = self.decision {
            return Err(DomainError::Conflict(format!(
                "review item {} was already decided ({})",
                self.id,
                prev.as_str()
            )));
        }
        let justification = validate_justification("justification", &d.justification)?;
        let (reduced, mode) = match d.decision {
            ReviewDecision::Reduce => {
                let keep = d.scopes.ok_or_else(|| {
                    DomainError::invalid("scopes", "a reduce decision names the scopes to keep")
                })?;
                let keep = scope::normalize_scopes(&keep)?;
                if !scope::is_subset(&keep, granted) {
                    return Err(DomainError::invalid(
                        "scopes",
                        "must be a subset of the identity's current scopes",
                    ));
                }
                if keep.len() == granted.len() {
                    return Err(DomainError::invalid(
                        "scopes",
                        "keeps every current scope; decide keep instead",
                    ));
                }
                if d.revoke_mode.is_some() {
                    return Err(DomainError::invalid(
                        "revoke_mode",
                        "applies to revoke decisions only",
                    ));
                }
                (keep, None)
            }
            ReviewDecision::Keep => {
                if d.scopes.is_some() || d.revoke_mode.is_some() {
                    return Err(DomainError::invalid(
                        "scopes",
                        "a keep decision takes neither scopes nor revoke_mode",
                    ));
                }
                (vec![], None)
            }
            ReviewDecision::Revoke => {
                if d.scopes.is_some() {
                    return Err(DomainError::invalid(
                        "scopes",
                        "a revoke decision takes no scopes",
                    ));
                }
                (vec![], Some(d.revoke_mode.unwrap_or_default()))
            }
        };
        self.decision = Some(d.decision);
        self.reduced_scopes = reduced;
        self.revoke_mode = mode;
        self.justification = Some(justification);
        self.decided_by = Some(decider.to_owned());
        self.decided_at = Some(now);
        self.by_default = false;
        self.version += 1;
        Ok(())
    }

    /// At the deadline: an undecided item gets the campaign's default action.
    pub fn apply_default(
        &mut self,
        campaign: &ReviewCampaign,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        if !campaign.is_due(now) {
            return Err(DomainError::Conflict(format!(
                "review {} is not past its deadline",
                campaign.id
            )));
        }
        if self.is_decided() {
            return Err(DomainError::Conflict(format!(
                "review item {} was already decided",
                self.id
            )));
        }
        let (decision, mode) = match campaign.default_action {
            DeadlineAction::Keep => (ReviewDecision::Keep, None),
            DeadlineAction::Suspend => (ReviewDecision::Revoke, Some(RevokeMode::Suspend)),
            DeadlineAction::Retire => (ReviewDecision::Revoke, Some(RevokeMode::Retire)),
        };
        self.decision = Some(decision);
        self.revoke_mode = mode;
        self.reduced_scopes = vec![];
        self.justification = Some(format!(
            "no decision by the deadline; the campaign's default action ({}) applies",
            campaign.default_action.as_str()
        ));
        self.decided_by = Some(SYSTEM_ACTOR.to_owned());
        self.decided_at = Some(now);
        self.by_default = true;
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);

    fn campaign(action: DeadlineAction) -> ReviewCampaign {
        ReviewCampaign::new(
            Uuid::from_u128(1),
            NewCampaign {
                name: "q1 prod review".into(),
                description: String::new(),
                selection: ReviewSelection::default(),
                default_action: action,
                deadline: T0 + Duration::days(14),
            },
            365,
            "admin",
            T0,
        )
        .unwrap()
    }

    fn item(c: &ReviewCampaign) -> ReviewItem {
        ReviewItem::new(
            Uuid::from_u128(2),
            c,
            Uuid::from_u128(3),
            Uuid::from_u128(4),
            Some("reviewer-1".into()),
            serde_json::json!({}),
            T0,
        )
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    fn decision(d: ReviewDecision, scopes: Option<&[&str]>) -> Decision {
        Decision {
            decision: d,
            scopes: scopes.map(v),
            revoke_mode: None,
            justification: "checked with the team".into(),
        }
    }

    #[test]
    fn campaign_deadline_bounds() {
        let mk = |deadline| {
            ReviewCampaign::new(
                Uuid::nil(),
                NewCampaign {
                    name: "x".into(),
                    description: String::new(),
                    selection: ReviewSelection::default(),
                    default_action: DeadlineAction::Suspend,
                    deadline,
                },
                30,
                "a",
                T0,
            )
        };
        assert!(mk(T0).is_err());
        assert!(mk(T0 - Duration::seconds(1)).is_err());
        assert!(mk(T0 + Duration::days(31)).is_err());
        assert!(mk(T0 + Duration::days(30)).is_ok());
    }

    #[test]
    fn deadline_rule() {
        let c = campaign(DeadlineAction::Suspend);
        let deadline = c.deadline;
        assert!(!c.is_due(deadline - Duration::microseconds(1)));
        assert!(c.is_due(deadline));
        assert!(c.accepts_decisions(deadline - Duration::seconds(1)).is_ok());
        assert!(matches!(
            c.accepts_decisions(deadline),
            Err(DomainError::Conflict(_))
        ));
        // A decision after the deadline is refused; the default applies instead.
        let mut i = item(&c);
        let late = i.decide(
            &c,
            decision(ReviewDecision::Keep, None),
            &v(&["a"]),
            "admin",
            deadline,
        );
        assert!(matches!(late, Err(DomainError::Conflict(_))));
        assert!(
            i.apply_default(&c, deadline - Duration::seconds(1))
                .is_err()
        );
        i.apply_default(&c, deadline).unwrap();
        assert_eq!(i.decision, Some(ReviewDecision::Revoke));
        assert_eq!(i.revoke_mode, Some(RevokeMode::Suspend));
        assert!(i.by_default);
        assert_eq!(i.decided_by.as_deref(), Some(SYSTEM_ACTOR));
        assert!(i.apply_default(&c, deadline).is_err(), "applied once");
        // Closing: not before the deadline, not twice.
        let mut c2 = c.clone();
        assert!(c2.close(deadline - Duration::seconds(1)).is_err());
        c2.close(deadline).unwrap();
        assert!(!c2.is_due(deadline + Duration::days(1)));
        assert!(c2.close(deadline).is_err());
    }

    #[test]
    fn default_actions_map_to_decisions() {
        for (action, want, mode) in [
            (DeadlineAction::Keep, ReviewDecision::Keep, None),
            (
                DeadlineAction::Retire,
                ReviewDecision::Revoke,
                Some(RevokeMode::Retire),
            ),
        ] {
            let c = campaign(action);
            let mut i = item(&c);
            i.apply_default(&c, c.deadline).unwrap();
            assert_eq!((i.decision, i.revoke_mode), (Some(want), mode));
        }
    }

    #[test]
    fn separation_of_duties() {
        let c = campaign(DeadlineAction::Suspend);
        let i = item(&c);
        // The identity under review may not decide, not even as an admin.
        let me = i.identity_id.to_string();
        assert!(matches!(
            i.check_decider(&me, true),
            Err(DomainError::SeparationOfDuties(_))
        ));
        assert!(i.check_decider("reviewer-1", false).is_ok());
        assert!(i.check_decider("someone-else", false).is_err());
        assert!(i.check_decider("someone-else", true).is_ok());
        let mut unassigned = i.clone();
        unassigned.reviewer = None;
        assert!(unassigned.check_decider("reviewer-1", false).is_err());
    }

    #[test]
    fn decisions_are_validated() {
        let c = campaign(DeadlineAction::Suspend);
        let granted = v(&["a", "b", "c"]);
        let now = T0 + Duration::days(1);
        let mut i = item(&c);
        // Reduce needs a proper subset.
        for bad in [None, Some(&["a", "z"][..]), Some(&["a", "b", "c"][..])] {
            assert!(
                i.clone()
                    .decide(
                        &c,
                        decision(ReviewDecision::Reduce, bad),
                        &granted,
                        "r",
                        now
                    )
                    .is_err(),
                "{bad:?}"
            );
        }
        // Keep and revoke take no scopes; every decision needs a justification.
        assert!(
            i.clone()
                .decide(
                    &c,
                    decision(ReviewDecision::Keep, Some(&["a"])),
                    &granted,
                    "r",
                    now
                )
                .is_err()
        );
        let mut no_reason = decision(ReviewDecision::Keep, None);
        no_reason.justification = " ".into();
        assert!(i.clone().decide(&c, no_reason, &granted, "r", now).is_err());
        i.decide(
            &c,
            decision(ReviewDecision::Reduce, Some(&["b", "a"])),
            &granted,
            "r",
            now,
        )
        .unwrap();
        assert_eq!(i.reduced_scopes, v(&["a", "b"]));
        assert_eq!(i.version, 2);
        // Decided once.
        assert!(matches!(
            i.decide(&c, decision(ReviewDecision::Keep, None), &granted, "r", now),
            Err(DomainError::Conflict(_))
        ));
        let mut r = item(&c);
        r.decide(
            &c,
            decision(ReviewDecision::Revoke, None),
            &granted,
            "r",
            now,
        )
        .unwrap();
        assert_eq!(r.revoke_mode, Some(RevokeMode::Suspend));
    }

    #[test]
    fn names_round_trip() {
        for d in [
            ReviewDecision::Keep,
            ReviewDecision::Reduce,
            ReviewDecision::Revoke,
        ] {
            assert_eq!(ReviewDecision::parse(d.as_str()), Some(d));
        }
        for a in [
            DeadlineAction::Keep,
            DeadlineAction::Suspend,
            DeadlineAction::Retire,
        ] {
            assert_eq!(DeadlineAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(RevokeMode::parse("retire"), Some(RevokeMode::Retire));
        assert_eq!(
            CampaignStatus::parse("closed"),
            Some(CampaignStatus::Closed)
        );
        assert_eq!(ReviewDecision::parse("maybe"), None);
    }
}

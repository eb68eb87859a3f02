//! Risk score of an identity, 0 to 100: a deterministic sum over its open and accepted findings,
//! each weighted by OWASP's own rating of its NHI Top 10 risk and by the finding's severity.
//!
//! OWASP rates every NHI risk for exploitability, prevalence, detectability and technical impact
//! (see shared/reference/frameworks.md). As in OWASP's Top 10 methodology, each rating counts
//! 3 (easy / widespread / easy to detect / severe), 2 (average / common / average / moderate) or
//! 1 (hard / uncommon / hard / low), and the weight of a risk is
//! `(exploitability + prevalence + detectability) / 3 × impact`, at most 9. A finding adds
//! `weight × severity points` (low 1, medium 2, high 3, critical 4), rounded; an accepted
//! finding adds half of that (rounded down), since the risk remains although it is owned. The
//! score is the sum, capped at 100.

use serde::{Deserialize, Serialize};

/// OWASP's ratings of one NHI risk, each 1 to 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwaspRating {
    pub exploitability: u8,
    pub prevalence: u8,
    pub detectability: u8,
    pub impact: u8,
}

impl OwaspRating {
    /// `(exploitability + prevalence + detectability) / 3 × impact`, in thirds (integer, ≤ 27).
    pub fn weight_thirds(self) -> u32 {
        (u32::from(self.exploitability)
            + u32::from(self.prevalence)
            + u32::from(self.detectability))
            * u32::from(self.impact)
    }
}

/// OWASP's ratings of `NHI1:2025` … `NHI10:2025` (frameworks.md); `None` for other ids.
pub fn owasp_rating(id: &str) -> Option<OwaspRating> {
    let r = |e, p, d, i| OwaspRating {
        exploitability: e,
        prevalence: p,
        detectability: d,
        impact: i,
    };
    Some(match id {
        "NHI1:2025" => r(3, 3, 1, 3),  // easy / widespread / hard / severe
        "NHI2:2025" => r(3, 2, 1, 3),  // easy / common / hard / severe
        "NHI3:2025" => r(2, 2, 1, 3),  // average / common / hard / severe
        "NHI4:2025" => r(3, 3, 3, 2),  // easy / widespread / easy / moderate
        "NHI5:2025" => r(1, 3, 2, 3),  // hard / widespread / average / severe
        "NHI6:2025" => r(2, 2, 3, 3),  // average / common / easy / severe
        "NHI7:2025" => r(1, 3, 3, 3),  // hard / widespread / easy / severe
        "NHI8:2025" => r(2, 1, 1, 2),  // average / uncommon / hard / moderate
        "NHI9:2025" => r(1, 3, 1, 1),  // hard / widespread / hard / low
        "NHI10:2025" => r(1, 2, 1, 1), // hard / common / hard / low
        _ => return None,
    })
}

/// Points of a severity name (`low` 1 … `critical` 4; unknown names count as `medium`).
pub fn severity_points(severity: &str) -> u32 {
    match severity {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 2,
    }
}

/// One finding as the score sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskInput<'a> {
    pub finding_id: uuid::Uuid,
    pub finding_type: &'a str,
    pub owasp_nhi: &'a str,
    pub severity: &'a str,
    pub accepted: bool,
}

/// What one finding added to the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskFactor {
    pub finding_id: uuid::Uuid,
    pub finding_type: String,
    pub owasp_nhi: String,
    pub severity: String,
    pub accepted: bool,
    pub points: u32,
}

/// A score with the factors that make it up, largest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskScore {
    pub score: u8,
    pub factors: Vec<RiskFactor>,
}

/// Points of one finding: `round(weight × severity points)`, halved (down) when accepted.
/// An unknown OWASP id weighs as the median risk (18 thirds, i.e. 6).
pub fn points(owasp_nhi: &str, severity: &str, accepted: bool) -> u32 {
    let thirds = owasp_rating(owasp_nhi).map_or(18, OwaspRating::weight_thirds);
    // round(thirds / 3 × sev) in integer arithmetic.
    let full = (thirds * severity_points(severity) + 1) / 3;
    if accepted { full / 2 } else { full }
}

/// The score of an identity from its open and accepted findings. Order-independent.
pub fn score<'a>(findings: impl IntoIterator<Item = RiskInput<'a>>) -> RiskScore {
    let mut factors: Vec<RiskFactor> = findings
        .into_iter()
        .map(|f| RiskFactor {
            finding_id: f.finding_id,
            finding_type: f.finding_type.to_owned(),
            owasp_nhi: f.owasp_nhi.to_owned(),
            severity: f.severity.to_owned(),
            accepted: f.accepted,
            points: points(f.owasp_nhi, f.severity, f.accepted),
        })
        .collect();
    factors.sort_by(|a, b| {
        b.points
            .cmp(&a.points)
            .then_with(|| a.finding_type.cmp(&b.finding_type))
            .then_with(|| a.finding_id.cmp(&b.finding_id))
    });
    let total: u32 = factors.iter().map(|f| f.points).sum();
    RiskScore {
        score: u8::try_from(total.min(100)).unwrap_or(100),
        factors,
    }
}

/// Risk bands over the 0–100 score, highest first, as inclusive ranges: one critical leak (24
/// points) is `medium`, a leak plus an orphaned identity is `high`, and `critical` needs several
/// serious findings at once.
pub const RISK_BANDS: [(&str, u8, u8); 4] = [
    ("critical", 60, 100),
    ("high", 30, 59),
    ("medium", 10, 29),
    ("low", 0, 9),
];

/// The band a score falls in.
pub fn band(score: u8) -> &'static str {
    RISK_BANDS
        .iter()
        .find(|(_, lo, hi)| (*lo..=*hi).contains(&score))
        .map_or("critical", |(name, _, _)| name)
}

/// The inclusive score range of a band, by name.
pub fn band_range(name: &str) -> Option<(u8, u8)> {
    RISK_BANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, lo, hi)| (*lo, *hi))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bands_cover_every_score_once() {
        for s in 0..=u8::MAX {
            let hits = super::RISK_BANDS
                .iter()
                .filter(|(_, lo, hi)| (*lo..=*hi).contains(&s))
                .count();
            assert_eq!(hits, usize::from(s <= 100), "score {s}");
        }
        assert_eq!(super::band(0), "low");
        assert_eq!(super::band(24), "medium");
        assert_eq!(super::band(45), "high");
        assert_eq!(super::band(100), "critical");
        assert_eq!(super::band_range("high"), Some((30, 59)));
        assert_eq!(super::band_range("extreme"), None);
    }

    use super::*;
    use uuid::Uuid;

    fn input<'a>(n: u128, t: &'a str, o: &'a str, s: &'a str, accepted: bool) -> RiskInput<'a> {
        RiskInput {
            finding_id: Uuid::from_u128(n),
            finding_type: t,
            owasp_nhi: o,
            severity: s,
            accepted,
        }
    }

    #[test]
    fn weights_follow_owasp_ratings() {
        // NHI1: (3+3+1)/3×3 = 7; NHI10: (1+2+1)/3×1 ≈ 1.33.
        assert_eq!(owasp_rating("NHI1:2025").unwrap().weight_thirds(), 21);
        assert_eq!(owasp_rating("NHI10:2025").unwrap().weight_thirds(), 4);
        assert_eq!(points("NHI1:2025", "high", false), 21);
        assert_eq!(points("NHI1:2025", "high", true), 10);
        assert_eq!(points("NHI10:2025", "high", false), 4);
        assert_eq!(points("NHI2:2025", "critical", false), 24);
        assert_eq!(points("NHI4:2025", "low", false), 6);
        assert_eq!(points("bogus", "medium", false), 12);
        for n in 1..=10 {
            assert!(owasp_rating(&format!("NHI{n}:2025")).is_some());
        }
    }

    #[test]
    fn deterministic_capped_and_explained() {
        let a = [
            input(1, "orphaned", "NHI1:2025", "high", false),
            input(
                2,
                "static_api_key_where_federation_possible",
                "NHI4:2025",
                "low",
                false,
            ),
        ];
        let s1 = score(a.clone());
        let s2 = score(a.into_iter().rev());
        assert_eq!(s1, s2);
        assert_eq!(s1.score, 27);
        assert_eq!(s1.factors[0].finding_type, "orphaned");
        assert_eq!(score(std::iter::empty()).score, 0);
        let many = (0..10).map(|n| input(n, "secret_leaked", "NHI2:2025", "critical", false));
        assert_eq!(score(many).score, 100);
    }
}

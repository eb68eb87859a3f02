//! Narrowing a policy slice by one resource attribute: a policy whose condition requires
//! `resource.ATTR == "literal"` cannot apply to a resource whose ATTR has another value.
//!
//! Cedar evaluates every policy of the set it is given, so an operator's hundred
//! `resource.owner_team == "teamN"` permits would cost a hundred evaluations per decision. For
//! each (action, resource type) slice the engine picks the string attribute most policies test
//! for equality and keeps one policy set per literal value (the policies testing that value plus
//! those that test no value), and one for every other value.
//!
//! Skipping must never change a decision, including the fail-closed rule that an *error* in a
//! `forbid` denies:
//! - a `permit` is skipped when any top-level conjunct of any `when` clause is a mismatching
//!   literal test: the policy is then false or erroring, and neither grants access;
//! - a `forbid` is skipped only when that test is the leftmost conjunct of its first
//!   condition, so that evaluation would have stopped there with `false` before any other
//!   part of the condition could raise an error.
//!
//! Declared resource attributes are always present and `env` is always a string (the engine
//! checks both before evaluating), so the literal test itself cannot error.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Effect, Policy, PolicySet};
use serde_json::Value;

/// One slice, split by the value of one resource attribute.
#[derive(Debug)]
pub(crate) struct AttrIndex {
    /// The resource attribute this slice is split by.
    pub(crate) attr: String,
    /// Literal value → the policies that may apply to a resource with that value.
    pub(crate) by_value: HashMap<String, PolicySet>,
    /// The policies that may apply to a resource with any other value.
    pub(crate) rest: PolicySet,
}

impl AttrIndex {
    /// The policies to evaluate for a resource whose indexed attribute is `value` (`None`: not
    /// a string, or absent — every policy of the slice).
    pub(crate) fn select<'a>(&'a self, value: Option<&str>, all: &'a PolicySet) -> &'a PolicySet {
        match value {
            Some(v) => self.by_value.get(v).unwrap_or(&self.rest),
            None => all,
        }
    }
}

/// The `resource.ATTR == "literal"` tests that make `policy` inapplicable when they fail,
/// as (attribute, literal) pairs.
pub(crate) fn skippable_tests(policy: &Policy) -> Vec<(String, String)> {
    let Ok(est) = policy.to_json() else {
        return Vec::new();
    };
    let Some(conditions) = est.get("conditions").and_then(Value::as_array) else {
        return Vec::new();
    };
    match policy.effect() {
        Effect::Permit => conditions
            .iter()
            .filter(|c| c.get("kind").and_then(Value::as_str) == Some("when"))
            .filter_map(|c| c.get("body"))
            .flat_map(|body| {
                let mut conjuncts = Vec::new();
                flatten_and(body, &mut conjuncts);
                conjuncts
            })
            .filter_map(literal_test)
            .collect(),
        Effect::Forbid => {
            let Some(first) = conditions.first() else {
                return Vec::new();
            };
            if first.get("kind").and_then(Value::as_str) != Some("when") {
                return Vec::new();
            }
            let Some(body) = first.get("body") else {
                return Vec::new();
            };
            leftmost(body).and_then(literal_test).into_iter().collect()
        }
    }
}

/// The conjuncts of a left- or right-nested `&&` tree, in evaluation order.
fn flatten_and<'a>(e: &'a Value, out: &mut Vec<&'a Value>) {
    match e.get("&&") {
        Some(and) => {
            if let Some(l) = and.get("left") {
                flatten_and(l, out);
            }
            if let Some(r) = and.get("right") {
                flatten_and(r, out);
            }
        }
        None => out.push(e),
    }
}

/// The first conjunct evaluated.
fn leftmost(e: &Value) -> Option<&Value> {
    match e.get("&&") {
        Some(and) => and.get("left").and_then(leftmost),
        None => Some(e),
    }
}

/// `resource.ATTR == "lit"` or `"lit" == resource.ATTR`.
fn literal_test(e: &Value) -> Option<(String, String)> {
    let eq = e.get("==")?;
    let (l, r) = (eq.get("left")?, eq.get("right")?);
    resource_attr(l)
        .zip(string_literal(r))
        .or_else(|| resource_attr(r).zip(string_literal(l)))
}

fn resource_attr(e: &Value) -> Option<String> {
    let dot = e.get(".")?;
    if dot.get("left")?.get("Var")?.as_str()? != "resource" {
        return None;
    }
    Some(dot.get("attr")?.as_str()?.to_owned())
}

fn string_literal(e: &Value) -> Option<String> {
    Some(e.get("Value")?.as_str()?.to_owned())
}

/// Builds the index of `slice` over the attribute most of its policies test, if any. The
/// attribute must be one whose presence the engine guarantees (`guaranteed`).
pub(crate) fn build(
    slice: &PolicySet,
    guaranteed: &HashSet<String>,
) -> Result<Option<AttrIndex>, String> {
    let add = |set: &mut PolicySet, p: &Policy| set.add(p.clone()).map_err(|e| e.to_string());
    let tests: Vec<(&Policy, Vec<(String, String)>)> = slice
        .policies()
        .map(|p| {
            let t = skippable_tests(p)
                .into_iter()
                .filter(|(a, _)| guaranteed.contains(a))
                .collect();
            (p, t)
        })
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, t) in &tests {
        let attrs: HashSet<&str> = t.iter().map(|(a, _)| a.as_str()).collect();
        for a in attrs {
            *counts.entry(a).or_default() += 1;
        }
    }
    // Ties go to the alphabetically first attribute, so the choice is deterministic.
    let Some(attr) = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(a, _)| (*a).to_owned())
    else {
        return Ok(None);
    };
    // Per policy: the values it requires of `attr` (two different ones make it unsatisfiable,
    // which only means it lands in no value's set).
    let mut rest = PolicySet::new();
    let mut tested: Vec<(&Policy, HashSet<&str>)> = Vec::new();
    for (p, t) in &tests {
        let values: HashSet<&str> = t
            .iter()
            .filter(|(a, _)| *a == attr)
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            add(&mut rest, p)?;
        } else {
            tested.push((p, values));
        }
    }
    let all_values: HashSet<&str> = tested.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let mut by_value = HashMap::with_capacity(all_values.len());
    for value in all_values {
        let mut set = rest.clone();
        for (p, values) in &tested {
            if values.len() == 1 && values.contains(value) {
                add(&mut set, p)?;
            }
        }
        by_value.insert(value.to_owned(), set);
    }
    Ok(Some(AttrIndex {
        attr,
        by_value,
        rest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(src: &str) -> Policy {
        Policy::parse(Some(cedar_policy::PolicyId::new("p")), src).unwrap()
    }

    #[test]
    fn permits_are_skippable_on_any_top_level_when_conjunct() {
        let p = policy(
            r#"permit (principal, action, resource)
               when { principal.name == "a" && resource.team == "t1" && resource.x == "y" };"#,
        );
        let mut t = skippable_tests(&p);
        t.sort();
        assert_eq!(
            t,
            [
                ("team".to_owned(), "t1".to_owned()),
                ("x".to_owned(), "y".to_owned())
            ]
        );
        // Literal on the left works too; `unless` clauses and disjunctions are not tests.
        let p = policy(r#"permit (principal, action, resource) when { "t2" == resource.team };"#);
        assert_eq!(skippable_tests(&p), [("team".to_owned(), "t2".to_owned())]);
        let p = policy(r#"permit (principal, action, resource) unless { resource.team == "t" };"#);
        assert!(skippable_tests(&p).is_empty());
        let p = policy(
            r#"permit (principal, action, resource) when { resource.team == "a" || resource.team == "b" };"#,
        );
        assert!(skippable_tests(&p).is_empty());
        let p = policy(r#"permit (principal, action, resource) when { resource.team != "a" };"#);
        assert!(skippable_tests(&p).is_empty());
        let p = policy(r#"permit (principal, action, resource) when { principal.team == "a" };"#);
        assert!(skippable_tests(&p).is_empty());
    }

    #[test]
    fn forbids_are_skippable_only_on_their_leftmost_first_conjunct() {
        let p = policy(
            r#"forbid (principal, action, resource)
               when { resource.team == "t1" && principal.getTag("x") == "y" };"#,
        );
        assert_eq!(skippable_tests(&p), [("team".to_owned(), "t1".to_owned())]);
        // An earlier conjunct could raise an error, which must still deny: not skippable.
        let p = policy(
            r#"forbid (principal, action, resource)
               when { principal.getTag("x") == "y" && resource.team == "t1" };"#,
        );
        assert!(skippable_tests(&p).is_empty());
        // A first `unless` clause runs before the `when`.
        let p = policy(
            r#"forbid (principal, action, resource)
               unless { principal.getTag("x") == "y" } when { resource.team == "t1" };"#,
        );
        assert!(skippable_tests(&p).is_empty());
    }

    #[test]
    fn index_groups_policies_by_value_and_keeps_untested_ones_everywhere() {
        let src = [
            r#"permit (principal, action, resource) when { resource.team == "a" };"#,
            r#"permit (principal, action, resource) when { resource.team == "b" };"#,
            r#"permit (principal, action, resource) when { resource.team == "a" && resource.kind == "k" };"#,
            r#"permit (principal, action, resource) when { principal.name == "n" };"#,
            r#"permit (principal, action, resource) when { resource.team == "a" && resource.team == "b" };"#,
        ];
        let mut set = PolicySet::new();
        for (i, s) in src.iter().enumerate() {
            set.add(Policy::parse(Some(cedar_policy::PolicyId::new(format!("p{i}"))), *s).unwrap())
                .unwrap();
        }
        let guaranteed: HashSet<String> = ["team".to_owned(), "kind".to_owned()].into();
        let idx = build(&set, &guaranteed).unwrap().unwrap();
        assert_eq!(idx.attr, "team");
        let ids = |s: &PolicySet| {
            let mut v: Vec<String> = s.policies().map(|p| p.id().to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(ids(idx.select(Some("a"), &set)), ["p0", "p2", "p3"]);
        assert_eq!(ids(idx.select(Some("b"), &set)), ["p1", "p3"]);
        assert_eq!(ids(idx.select(Some("zzz"), &set)), ["p3"]);
        assert_eq!(idx.select(None, &set).num_of_policies(), 5);
        // An attribute the engine does not guarantee is never indexed.
        assert!(build(&set, &HashSet::new()).unwrap().is_none());
    }
}

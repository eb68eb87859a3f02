//! Unit tests of the policy engine: schema and guard rails, validation positions, evaluation
//! (deny by default, scope cap, isolation, fail-closed requests) and the line diff.
#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn base() -> Arc<Base> {
    let mut cfg = SchemaConfig::default();
    cfg.resource_types.insert(
        "Document".into(),
        ResourceTypeDecl {
            attributes: BTreeMap::from([
                ("owner_team".into(), AttrType::String),
                ("tags".into(), AttrType::StringSet),
            ]),
        },
    );
    cfg.actions.insert(
        "docs:read".into(),
        ActionDecl {
            resource_types: vec!["Document".into()],
            scopes: vec!["docs:read".into(), "docs:admin".into()],
        },
    );
    Base::new(cfg).unwrap()
}

fn request(env: &str, scopes: &[&str], action: &str, res_env: &str) -> Request {
    let mut resource = Resource::new("Document", "d1", res_env);
    resource
        .attributes
        .insert("owner_team".into(), json!("payments"));
    resource.attributes.insert("tags".into(), json!(["pii"]));
    Request {
        principal: Principal {
            id: "i-1".into(),
            name: "payments-api".into(),
            kind: "workload".into(),
            env: env.into(),
            owner: "o-1".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            labels: BTreeMap::from([("team".into(), "payments".into())]),
            exceptions: vec![],
        },
        action: action.into(),
        resource,
        context: Context {
            time: 1_700_000_000,
            source_ip: Some("10.1.2.3".into()),
            ..Context::default()
        },
    }
}

const TEAM_READ: &str = r#"permit (principal, action == Action::"docs:read", resource is Document)
when { principal.hasTag("team") && principal.getTag("team") == resource.owner_team };"#;

#[test]
fn deny_by_default_and_allow_by_policy() {
    let b = base();
    let empty = b.compile(&[]).unwrap();
    let d = empty.evaluate(&request("prod", &["docs:read"], "docs:read", "prod"));
    assert!(!d.allow);
    assert!(d.policies.is_empty(), "{d:?}");
    let e = b
        .compile(&[PolicySource::new("team-read", TEAM_READ)])
        .unwrap();
    let d = e.evaluate(&request("prod", &["docs:read"], "docs:read", "prod"));
    assert!(d.allow, "{d:?}");
    assert_eq!(d.policies, vec!["team-read"]);
    assert!(d.errors.is_empty());
}

#[test]
fn scope_cap_and_environment_isolation() {
    let b = base();
    let e = b
        .compile(&[PolicySource::new("team-read", TEAM_READ)])
        .unwrap();
    let d = e.evaluate(&request("prod", &["other"], "docs:read", "prod"));
    assert!(!d.allow);
    assert_eq!(d.policies, vec![SCOPE_CAP]);
    // Any one of the mapped scopes satisfies the cap.
    assert!(
        e.evaluate(&request("prod", &["docs:admin"], "docs:read", "prod"))
            .allow
    );
    let d = e.evaluate(&request("dev", &["docs:read"], "docs:read", "prod"));
    assert!(!d.allow);
    assert_eq!(d.policies, vec![ENV_ISOLATION]);
    let mut r = request("dev", &["docs:read"], "docs:read", "prod");
    r.principal.exceptions.push(ENV_ISOLATION.into());
    assert!(e.evaluate(&r).allow);
}

#[test]
fn invalid_policies_report_line_and_column() {
    let b = base();
    let err = b
        .check(
            "bad",
            "permit (principal, action, resource)\nwhen { principal.nope == 1 };",
        )
        .unwrap_err();
    assert_eq!(err[0].line, Some(2), "{err:?}");
    assert_eq!(err[0].column, Some(8), "{err:?}");
    assert!(err[0].message.contains("nope"), "{err:?}");
    let err = b
        .check("syntax", "permit (principal, action resource);")
        .unwrap_err();
    assert_eq!(err[0].line, Some(1), "{err:?}");
    assert!(err[0].column.is_some(), "{err:?}");
    let err = b
        .check(
            "two",
            "permit (principal, action, resource);\nforbid (principal, action, resource);",
        )
        .unwrap_err();
    assert!(err[0].message.contains("exactly one"), "{err:?}");
    let err = b
        .check(
            "unknown-action",
            r#"permit (principal, action == Action::"fly", resource);"#,
        )
        .unwrap_err();
    assert!(err[0].message.contains("fly"), "{err:?}");
    match b.compile(&[PolicySource::new("steward.mine", TEAM_READ)]) {
        Err(PolicyError::Invalid(p)) => assert!(p[0].message.contains("reserved")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_requests_deny_with_an_error() {
    let e = base()
        .compile(&[PolicySource::new("team-read", TEAM_READ)])
        .unwrap();
    let mut r = request("prod", &["docs:read"], "docs:read", "prod");
    r.resource.attributes.remove("owner_team");
    let d = e.evaluate(&r);
    assert!(!d.allow);
    assert!(!d.errors.is_empty());
    let mut r = request("prod", &["docs:read"], "docs:read", "prod");
    r.resource.attributes.remove("env");
    assert!(e.evaluate(&r).errors[0].contains("env"));
    let r = request("prod", &["docs:read"], "docs:fly", "prod");
    assert!(e.evaluate(&r).errors[0].contains("unknown action"));
}

/// Team reads, and a forbid for any source outside 10.0.0.0/8.
fn team_read_from_inside(b: &Arc<Base>) -> Engine {
    b.compile(&[
        PolicySource::new("team-read", TEAM_READ),
        PolicySource::new(
            "no-outside",
            r#"forbid (principal, action, resource) unless { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };"#,
        ),
    ])
    .unwrap()
}

#[test]
fn context_and_forbid_policies() {
    let b = base();
    let e = team_read_from_inside(&b);
    assert!(
        e.evaluate(&request("prod", &["docs:read"], "docs:read", "prod"))
            .allow
    );
    let mut r = request("prod", &["docs:read"], "docs:read", "prod");
    r.context.source_ip = Some("192.168.1.1".into());
    let d = e.evaluate(&r);
    assert_eq!(
        (d.allow, d.policies),
        (false, vec!["no-outside".to_owned()])
    );
}

#[test]
fn remembered_addresses_decide_like_fresh_ones() {
    let b = base();
    let e = team_read_from_inside(&b);
    let decide = |ip: String| {
        let mut r = request("prod", &["docs:read"], "docs:read", "prod");
        r.context.source_ip = Some(ip);
        e.evaluate(&r).allow
    };
    // More distinct addresses than the memo holds, each asked twice, inside and outside the
    // range in turn: a remembered value never answers for another address.
    for n in 0..(IpValues::CAPACITY as u32 + 100) {
        let [_, x, y, z] = n.to_be_bytes();
        for _ in 0..2 {
            assert!(decide(format!("10.{x}.{y}.{z}")), "10.{x}.{y}.{z}");
            assert!(!decide(format!("11.{x}.{y}.{z}")), "11.{x}.{y}.{z}");
        }
    }
    assert!(b.ips.0.lock().unwrap().len() <= IpValues::CAPACITY);
}

#[test]
fn guard_rails_are_listed_and_schema_renders() {
    let b = base();
    let ids: Vec<&str> = b.guard_rails().iter().map(|g| g.id).collect();
    assert_eq!(ids, vec![ENV_ISOLATION, SCOPE_CAP]);
    assert!(b.guard_rails()[1].source.contains("\"docs:admin\""));
    assert!(b.schema_text().contains("Identity"));
    assert!(b.is_guard_rail(SCOPE_CAP));
}

#[test]
fn config_is_checked() {
    let mut cfg = SchemaConfig::default();
    cfg.resource_types
        .insert("bad name".into(), ResourceTypeDecl::default());
    assert!(Base::new(cfg).is_err());
    let mut cfg = SchemaConfig::default();
    cfg.actions.insert(
        "x".into(),
        ActionDecl {
            resource_types: vec!["Nope".into()],
            scopes: vec![],
        },
    );
    assert!(Base::new(cfg).is_err());
}

#[test]
fn diff_shows_changed_lines() {
    assert_eq!(
        line_diff("a\nb\nc", "a\nx\nc"),
        vec![" a", "-b", "+x", " c"]
    );
    assert_eq!(line_diff("", "a"), vec!["+a"]);
}

/// The attribute index never changes a decision or the policies that determined it: a grid of
/// requests against permits and forbids that test `owner_team` in every position.
#[test]
fn attribute_index_decides_exactly_like_the_full_slice() {
    let teams = ["payments", "search", "ledger", "nobody"];
    let mut policies = Vec::new();
    for (i, t) in teams.iter().take(3).enumerate() {
        policies.push(PolicySource::new(
            format!("read-{i}"),
            format!(
                r#"permit (principal, action == Action::"docs:read", resource is Document)
when {{ principal.hasTag("team") && principal.getTag("team") == "{t}" && resource.owner_team == "{t}" }};"#
            ),
        ));
        policies.push(PolicySource::new(
            format!("svc-{i}"),
            format!(
                r#"permit (principal, action == Action::"docs:read", resource is Document)
when {{ principal.name == "payments-api" && "{t}" == resource.owner_team && resource.tags.contains("pii") }};"#
            ),
        ));
        // Leftmost literal: indexed. For "blocked" the rest overflows at run time, an error
        // that must still deny.
        policies.push(PolicySource::new(
            format!("forbid-left-{i}"),
            format!(
                r#"forbid (principal, action, resource is Document)
when {{ resource.owner_team == "{t}" && principal.name == "blocked" && context.time * 10000000000 > 0 }};"#
            ),
        ));
        policies.push(PolicySource::new(
            format!("forbid-late-{i}"),
            format!(
                r#"forbid (principal, action, resource is Document)
when {{ principal.hasTag("quarantine") && principal.getTag("quarantine") == "{t}" && resource.owner_team == "{t}" }};"#
            ),
        ));
    }
    policies.push(PolicySource::new("open", TEAM_READ));
    let b = base();
    let indexed = b.compile(&policies).unwrap();
    let full = b.compile(&policies).unwrap().without_indexes();
    let (mut compared, mut allowed) = (0, 0);
    for owner in teams {
        for team in teams {
            for (name, labels) in [
                ("payments-api", vec![("team", team)]),
                ("blocked", vec![("team", team)]),
                ("payments-api", vec![("team", team), ("quarantine", owner)]),
                ("payments-api", vec![]),
            ] {
                for tags in [json!(["pii"]), json!([])] {
                    let mut r = request("prod", &["docs:read"], "docs:read", "prod");
                    r.resource
                        .attributes
                        .insert("owner_team".into(), json!(owner));
                    r.resource.attributes.insert("tags".into(), tags.clone());
                    r.principal.name = name.to_owned();
                    r.principal.labels = labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect();
                    let (a, b) = (indexed.evaluate(&r), full.evaluate(&r));
                    allowed += usize::from(a.allow);
                    assert_eq!(
                        (a.allow, &a.policies),
                        (b.allow, &b.policies),
                        "owner {owner} principal {name} labels {labels:?} tags {tags}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 128);
    assert!(
        allowed > 0 && allowed < compared,
        "the grid must exercise both outcomes: {allowed}"
    );
}

//! Data-driven tests of trust-policy validation, guard rails, registered claims and rule evaluation.
//! Each table row is one case, so a failure names the case.

use super::*;
use serde_json::json;

fn claims(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("claims must be an object"),
    }
}

fn spec(preset: Preset, allow: Value) -> TrustPolicySpec {
    serde_json::from_value(json!({
        "name": "p",
        "preset": preset,
        "issuer": "https://issuer.example",
        "jwks_uri": "https://issuer.example/jwks",
        "audiences": ["https://steward.example"],
        "identity": "0190a0b0-0000-7000-8000-000000000001",
        "allow": allow,
    }))
    .unwrap()
}

fn policy(allow: Value) -> TrustPolicy {
    TrustPolicy::compile(spec(Preset::Oidc, allow)).unwrap()
}

#[test]
fn condition_kinds_table() {
    // (condition, claims, expected match)
    let cases: Vec<(Value, Value, bool)> = vec![
        // exact
        (
            json!({"claim": "ref", "equals": "refs/heads/main"}),
            json!({"ref": "refs/heads/main"}),
            true,
        ),
        (
            json!({"claim": "ref", "equals": "refs/heads/main"}),
            json!({"ref": "refs/heads/mainx"}),
            false,
        ),
        (
            json!({"claim": "ref", "equals": "refs/heads/main"}),
            json!({"ref": "REFS/heads/main"}),
            false,
        ),
        // list membership
        (
            json!({"claim": "environment", "in": ["prod", "staging"]}),
            json!({"environment": "staging"}),
            true,
        ),
        (
            json!({"claim": "environment", "in": ["prod", "staging"]}),
            json!({"environment": "dev"}),
            false,
        ),
        // glob
        (
            json!({"claim": "ref", "glob": "refs/heads/release/*"}),
            json!({"ref": "refs/heads/release/1.2"}),
            true,
        ),
        (
            json!({"claim": "ref", "glob": "refs/heads/release/*"}),
            json!({"ref": "refs/heads/release/a/b"}),
            true,
        ),
        (
            json!({"claim": "ref", "glob": "refs/heads/release/*"}),
            json!({"ref": "refs/tags/release/1"}),
            false,
        ),
        (
            json!({"claim": "ref", "glob": "refs/tags/v?"}),
            json!({"ref": "refs/tags/v1"}),
            true,
        ),
        (
            json!({"claim": "ref", "glob": "refs/tags/v?"}),
            json!({"ref": "refs/tags/v12"}),
            false,
        ),
        (
            json!({"claim": "ref", "glob": "*main"}),
            json!({"ref": "refs/heads/main"}),
            true,
        ),
        // anchored regex: must match the whole value
        (
            json!({"claim": "ref", "regex": "refs/tags/v[0-9]+"}),
            json!({"ref": "refs/tags/v12"}),
            true,
        ),
        (
            json!({"claim": "ref", "regex": "refs/tags/v[0-9]+"}),
            json!({"ref": "refs/tags/v12-evil"}),
            false,
        ),
        (
            json!({"claim": "ref", "regex": "refs/tags/v[0-9]+"}),
            json!({"ref": "x/refs/tags/v12"}),
            false,
        ),
        (
            json!({"claim": "ref", "regex": "a|b"}),
            json!({"ref": "ab"}),
            false,
        ),
        (
            json!({"claim": "ref", "regex": "(?m)main"}),
            json!({"ref": "x\nmain"}),
            false,
        ),
        // negation
        (
            json!({"claim": "event_name", "not": true, "equals": "pull_request"}),
            json!({"event_name": "push"}),
            true,
        ),
        (
            json!({"claim": "event_name", "not": true, "equals": "pull_request"}),
            json!({"event_name": "pull_request"}),
            false,
        ),
        (
            json!({"claim": "event_name", "not": true, "in": ["a", "b"]}),
            json!({"event_name": "c"}),
            true,
        ),
        // missing claims never match, negated or not
        (
            json!({"claim": "environment", "equals": "prod"}),
            json!({}),
            false,
        ),
        (
            json!({"claim": "environment", "not": true, "equals": "prod"}),
            json!({}),
            false,
        ),
        (
            json!({"claim": "environment", "not": true, "glob": "*"}),
            json!({"environment": null}),
            false,
        ),
        (
            json!({"claim": "environment", "not": true, "equals": "x"}),
            json!({"environment": {"a": 1}}),
            false,
        ),
        (
            json!({"claim": "environment", "not": true, "equals": "x"}),
            json!({"environment": []}),
            false,
        ),
        // numbers and booleans compare by their JSON text
        (
            json!({"claim": "repository_id", "equals": "42"}),
            json!({"repository_id": 42}),
            true,
        ),
        (
            json!({"claim": "repository_id", "equals": "42"}),
            json!({"repository_id": "42"}),
            true,
        ),
        (
            json!({"claim": "admin", "equals": "true"}),
            json!({"admin": true}),
            true,
        ),
        // arrays: any element matches; negated: none may
        (
            json!({"claim": "groups", "equals": "ops"}),
            json!({"groups": ["dev", "ops"]}),
            true,
        ),
        (
            json!({"claim": "groups", "not": true, "equals": "ops"}),
            json!({"groups": ["dev", "ops"]}),
            false,
        ),
        (
            json!({"claim": "groups", "not": true, "equals": "ops"}),
            json!({"groups": ["dev"]}),
            true,
        ),
        // JSON Pointer into nested claims
        (
            json!({"claim": "/kubernetes.io/namespace", "equals": "ci"}),
            json!({"kubernetes.io": {"namespace": "ci"}}),
            true,
        ),
        (
            json!({"claim": "/kubernetes.io/serviceaccount/name", "equals": "x"}),
            json!({"kubernetes.io": {"serviceaccount": {"name": "x"}}}),
            true,
        ),
        (
            json!({"claim": "/kubernetes.io/namespace", "not": true, "equals": "ci"}),
            json!({"kubernetes.io": {}}),
            false,
        ),
        (
            json!({"claim": "/a~1b/c", "equals": "1"}),
            json!({"a/b": {"c": "1"}}),
            true,
        ),
        (
            json!({"claim": "/list/1", "equals": "y"}),
            json!({"list": ["x", "y"]}),
            true,
        ),
    ];
    for (i, (cond, c, want)) in cases.into_iter().enumerate() {
        let mut allow_cond = vec![cond.clone()];
        if cond.get("not") == Some(&json!(true)) {
            // A rule needs one positive condition; this one always holds.
            allow_cond.push(json!({"claim": "iss", "glob": "*"}));
        }
        let p = policy(json!([{ "conditions": allow_cond }]));
        let mut c = claims(c);
        c.insert("iss".into(), json!("https://issuer.example"));
        let got = p.evaluate_rules(&c).is_ok();
        assert_eq!(got, want, "case {i}: {cond} on {c:?}");
        let explained = p.explain_rules(&c);
        assert_eq!(explained[0].matched, want, "case {i} (explain)");
    }
}

#[test]
fn or_across_rules_and_within_rule() {
    let p = policy(json!([
        {"name": "main", "conditions": [
            {"claim": "repository", "equals": "org/app"},
            {"claim": "ref", "equals": "refs/heads/main"},
        ]},
        {"name": "tags", "conditions": [
            {"claim": "repository", "equals": "org/app"},
            {"claim": "ref", "glob": "refs/tags/*"},
        ]},
    ]));
    let cases = [
        (
            json!({"repository": "org/app", "ref": "refs/heads/main"}),
            Ok(1),
        ),
        (
            json!({"repository": "org/app", "ref": "refs/tags/v1"}),
            Ok(2),
        ),
        (
            json!({"repository": "org/other", "ref": "refs/heads/main"}),
            Err(()),
        ),
        (
            json!({"repository": "org/app", "ref": "refs/heads/dev"}),
            Err(()),
        ),
        (json!({"ref": "refs/heads/main"}), Err(())),
    ];
    for (c, want) in cases {
        let got = p.evaluate_rules(&claims(c.clone()));
        assert_eq!(got.clone().map_err(|_| ()), want, "{c}: {got:?}");
    }
    let why = p
        .evaluate_rules(&claims(
            json!({"repository": "org/app", "ref": "refs/heads/dev"}),
        ))
        .unwrap_err();
    assert!(
        why.contains(
            "rule 1: claim ref = \"refs/heads/dev\" does not match equals \"refs/heads/main\""
        ),
        "{why}"
    );
    assert!(
        why.contains("rule 2: claim ref = \"refs/heads/dev\" does not match glob \"refs/tags/*\""),
        "{why}"
    );
    let why = p
        .evaluate_rules(&claims(json!({"ref": "refs/heads/main"})))
        .unwrap_err();
    assert!(why.contains("claim repository is missing"), "{why}");
}

#[test]
fn validation_errors_are_precise() {
    let base = || {
        spec(
            Preset::Oidc,
            json!([{"conditions": [{"claim": "sub", "equals": "x"}]}]),
        )
    };
    type Edit = Box<dyn Fn(&mut TrustPolicySpec)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "empty name",
            Box::new(|s| s.name = String::new()),
            "invalid name",
        ),
        (
            "bad name",
            Box::new(|s| s.name = "a b".into()),
            "invalid name",
        ),
        (
            "no issuer",
            Box::new(|s| s.issuer = String::new()),
            "invalid issuer: is required",
        ),
        (
            "http issuer",
            Box::new(|s| s.issuer = "http://issuer.example".into()),
            "plain http is only allowed on a loopback host",
        ),
        (
            "issuer query",
            Box::new(|s| s.issuer = "https://i.example/?a=b".into()),
            "no query",
        ),
        (
            "no keys",
            Box::new(|s| s.jwks_uri = None),
            "invalid jwks_uri: is required",
        ),
        (
            "both keys",
            Box::new(|s| s.jwks = Some(json!({"keys": []}))),
            "not both",
        ),
        (
            "bad inline",
            Box::new(|s| {
                s.jwks_uri = None;
                s.jwks = Some(json!([1]));
            }),
            "must be a JWK Set",
        ),
        (
            "no audience",
            Box::new(|s| s.audiences.clear()),
            "at least one audience is required",
        ),
        (
            "wildcard audience",
            Box::new(|s| s.audiences = vec!["*".into()]),
            "without wildcards",
        ),
        (
            "hs256",
            Box::new(|s| s.algorithms = vec!["HS256".into()]),
            "\"HS256\" is not accepted",
        ),
        (
            "none",
            Box::new(|s| s.algorithms = vec!["none".into()]),
            "\"none\" is not accepted",
        ),
        (
            "no rules",
            Box::new(|s| s.allow.clear()),
            "would accept every token",
        ),
        (
            "empty rule",
            Box::new(|s| s.allow[0].conditions.clear()),
            "rule 1: 1 to 32 conditions",
        ),
        (
            "two tests",
            Box::new(|s| s.allow[0].conditions[0].glob = Some("*".into())),
            "rule 1, condition 1: give exactly one of equals, in, glob or regex (found 2)",
        ),
        (
            "no test",
            Box::new(|s| s.allow[0].conditions[0].equals = None),
            "(found 0)",
        ),
        (
            "bad regex",
            Box::new(|s| {
                s.allow[0].conditions[0].equals = None;
                s.allow[0].conditions[0].regex = Some("(".into());
            }),
            "rule 1, condition 1: regex \"(\" does not compile",
        ),
        (
            "empty in",
            Box::new(|s| {
                s.allow[0].conditions[0].equals = None;
                s.allow[0].conditions[0].one_of = Some(vec![]);
            }),
            "`in` needs 1 to 256 values",
        ),
        (
            "only negated",
            Box::new(|s| s.allow[0].conditions[0].not = true),
            "at least one condition that is not negated",
        ),
        (
            "bad pointer",
            Box::new(|s| s.allow[0].conditions[0].claim = "/a//b".into()),
            "not a valid JSON Pointer",
        ),
        (
            "zero lifetime",
            Box::new(|s| s.token_lifetime_secs = Some(0)),
            "token_lifetime_secs: must be positive",
        ),
        (
            "bad scope",
            Box::new(|s| s.scopes = Some(vec!["a b".into()])),
            "invalid scopes",
        ),
    ];
    for (name, edit, want) in cases {
        let mut s = base();
        edit(&mut s);
        let err = TrustPolicy::compile(s).unwrap_err().to_string();
        assert!(err.contains(want), "{name}: got {err:?}, want {want:?}");
    }
    assert!(TrustPolicy::compile(base()).is_ok());
    // Loopback http is fine (local issuers, tests).
    let mut s = base();
    s.issuer = "http://127.0.0.1:8080".into();
    s.jwks_uri = Some("http://localhost:8080/jwks".into());
    assert!(TrustPolicy::compile(s).is_ok());
}

#[test]
fn github_guard_rail_table() {
    // (conditions of the only rule, accepted?)
    let cases: Vec<(Value, bool)> = vec![
        (
            json!([{"claim": "repository", "equals": "octo-org/app"}]),
            true,
        ),
        (
            json!([{"claim": "repository", "in": ["octo-org/app", "octo-org/lib"]}]),
            true,
        ),
        (
            json!([{"claim": "repository_owner", "equals": "octo-org"}]),
            true,
        ),
        (
            json!([{"claim": "repository_owner_id", "equals": "123"}]),
            true,
        ),
        (json!([{"claim": "repository_id", "in": ["1", "2"]}]), true),
        (json!([{"claim": "repository", "glob": "octo-org/*"}]), true),
        (
            json!([{"claim": "repository", "regex": "octo-org/(app|lib)"}]),
            true,
        ),
        (
            json!([{"claim": "sub", "equals": "repo:octo-org/app:ref:refs/heads/main"}]),
            true,
        ),
        (
            json!([{"claim": "sub", "equals": "repo:octo-org@1/app@2:environment:prod"}]),
            true,
        ),
        (json!([{"claim": "sub", "glob": "repo:octo-org/*"}]), true),
        (
            json!([{"claim": "sub", "glob": "repo:octo-org@77/*"}]),
            true,
        ),
        // Not pinned: wildcard owner, negated, only ref/environment, unparseable sub.
        (json!([{"claim": "repository", "glob": "*"}]), false),
        (json!([{"claim": "repository", "glob": "*/app"}]), false),
        (json!([{"claim": "repository", "regex": ".*"}]), false),
        (json!([{"claim": "sub", "glob": "repo:*"}]), false),
        (json!([{"claim": "sub", "regex": "repo:.*/app:.*"}]), false),
        (json!([{"claim": "sub", "equals": "octo-org/app"}]), false),
        (
            json!([{"claim": "ref", "equals": "refs/heads/main"}, {"claim": "environment", "equals": "prod"}]),
            false,
        ),
        (
            json!([{"claim": "ref", "equals": "refs/heads/main"}, {"claim": "repository_owner", "not": true, "equals": "evil"}]),
            false,
        ),
        (
            json!([{"claim": "job_workflow_ref", "glob": "octo-org/*"}]),
            false,
        ),
    ];
    for (conds, ok) in cases {
        let mut s = spec(
            Preset::GithubActions,
            json!([{ "conditions": conds.clone() }]),
        );
        s.issuer = String::new();
        s.jwks_uri = None;
        let got = TrustPolicy::compile(s);
        assert_eq!(got.is_ok(), ok, "{conds}: {:?}", got.err());
        if let Err(e) = got {
            assert!(
                e.to_string()
                    .contains("must pin the repository or its owner"),
                "{e}"
            );
        }
    }
    // Defaults for the public GitHub issuer.
    let mut s = spec(
        Preset::GithubActions,
        json!([{"conditions": [{"claim": "repository_owner", "equals": "o"}]}]),
    );
    s.issuer = String::new();
    s.jwks_uri = None;
    let p = TrustPolicy::compile(s).unwrap();
    assert_eq!(p.spec.issuer, GITHUB_ISSUER);
    assert_eq!(p.spec.jwks_uri.as_deref(), Some(GITHUB_JWKS_URI));
    // Every rule must pin, not just one.
    let s = spec(
        Preset::GithubActions,
        json!([
            {"conditions": [{"claim": "repository", "equals": "o/r"}]},
            {"conditions": [{"claim": "ref", "equals": "refs/heads/main"}]},
        ]),
    );
    let e = TrustPolicy::compile(s).unwrap_err().to_string();
    assert!(e.contains("rule 2: a GitHub Actions rule must pin"), "{e}");
}

#[test]
fn kubernetes_guard_rail_table() {
    let cases: Vec<(Value, bool)> = vec![
        (
            json!([{"claim": "sub", "equals": "system:serviceaccount:ci:deployer"}]),
            true,
        ),
        (
            json!([{"claim": "sub", "glob": "system:serviceaccount:ci:*"}]),
            true,
        ),
        (
            json!([{"claim": "/kubernetes.io/namespace", "in": ["ci", "cd"]}]),
            true,
        ),
        (
            json!([{"claim": "sub", "glob": "system:serviceaccount:*"}]),
            false,
        ),
        (json!([{"claim": "sub", "equals": "deployer"}]), false),
        (
            json!([{"claim": "/kubernetes.io/serviceaccount/name", "equals": "deployer"}]),
            false,
        ),
        (
            json!([{"claim": "/kubernetes.io/namespace", "glob": "*"}]),
            false,
        ),
    ];
    for (conds, ok) in cases {
        let s = spec(Preset::Kubernetes, json!([{ "conditions": conds.clone() }]));
        assert_eq!(TrustPolicy::compile(s).is_ok(), ok, "{conds}");
    }
}

#[test]
fn github_sub_forms() {
    let classic = parse_github_sub("repo:octo-org/octo-repo:ref:refs/heads/main").unwrap();
    assert_eq!(
        (
            classic.owner,
            classic.repo,
            classic.owner_id,
            classic.repo_id
        ),
        ("octo-org", "octo-repo", None, None)
    );
    assert_eq!(classic.context, "ref:refs/heads/main");
    let ids = parse_github_sub("repo:octo-org@12/octo-repo@34:environment:prod").unwrap();
    assert_eq!(
        (ids.owner, ids.owner_id, ids.repo, ids.repo_id),
        ("octo-org", Some("12"), "octo-repo", Some("34"))
    );
    for bad in [
        "octo-org/octo-repo:ref:x",
        "repo:octo-org/octo-repo",
        "repo:octo-org/octo-repo:",
        "repo:octo org/r:ref:x",
        "repo:octo-org@12/octo-repo:ref:x",
        "repo:octo-org@x/octo-repo@1:ref:x",
        "repo:/r:ref:x",
    ] {
        assert!(parse_github_sub(bad).is_none(), "{bad}");
    }
}

#[test]
fn preset_token_checks() {
    let gh = {
        let mut s = spec(
            Preset::GithubActions,
            json!([{"conditions": [{"claim": "repository_owner", "equals": "octo-org"}]}]),
        );
        s.issuer = String::new();
        s.jwks_uri = None;
        TrustPolicy::compile(s).unwrap()
    };
    let cases = [
        (
            json!({"sub": "repo:octo-org/app:ref:refs/heads/main", "repository": "octo-org/app"}),
            true,
        ),
        (
            json!({"sub": "repo:octo-org@1/app@2:ref:refs/heads/main", "repository": "octo-org/app", "repository_owner_id": "1", "repository_id": "2"}),
            true,
        ),
        (
            json!({"sub": "repo:octo-org@1/app@2:ref:refs/heads/main", "repository_id": "3"}),
            false,
        ),
        (
            json!({"sub": "repo:octo-org/app:ref:refs/heads/main", "repository": "octo-org/other"}),
            false,
        ),
        (json!({"sub": "user:x"}), false),
        (json!({}), false),
    ];
    for (c, ok) in cases {
        assert_eq!(gh.check_preset(&claims(c.clone())).is_ok(), ok, "{c}");
    }
    let k8s = TrustPolicy::compile(spec(
        Preset::Kubernetes,
        json!([{"conditions": [{"claim": "/kubernetes.io/namespace", "equals": "ci"}]}]),
    ))
    .unwrap();
    let cases = [
        (
            json!({"sub": "system:serviceaccount:ci:deployer", "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "deployer"}}}),
            true,
        ),
        (
            json!({"sub": "system:serviceaccount:ci:deployer", "kubernetes.io": {"namespace": "prod"}}),
            false,
        ),
        (
            json!({"sub": "system:serviceaccount:ci:deployer", "kubernetes.io": {"serviceaccount": {"name": "other"}}}),
            false,
        ),
        (json!({"sub": "system:node:worker-1"}), false),
    ];
    for (c, ok) in cases {
        assert_eq!(k8s.check_preset(&claims(c.clone())).is_ok(), ok, "{c}");
    }
}

#[test]
fn registered_claims_table() {
    let mut s = spec(
        Preset::Oidc,
        json!([{"conditions": [{"claim": "sub", "equals": "x"}]}]),
    );
    s.max_token_age_secs = Some(300);
    let p = TrustPolicy::compile(s).unwrap();
    let now = 1_700_000_000i64;
    let ok = |extra: Value| {
        let mut c = json!({"iss": "https://issuer.example", "aud": "https://steward.example", "exp": now + 60, "iat": now - 10});
        if let (Value::Object(m), Value::Object(e)) = (&mut c, extra) {
            m.extend(e);
        }
        p.check_registered(&claims(c), now, 60)
    };
    use RegisteredClaimError as E;
    assert_eq!(ok(json!({})), Ok(()));
    assert_eq!(ok(json!({"aud": ["x", "https://steward.example"]})), Ok(()));
    assert!(matches!(
        ok(json!({"iss": "https://evil.example"})),
        Err(E::Issuer(_))
    ));
    assert!(matches!(
        ok(json!({"aud": "https://other.example"})),
        Err(E::Audience(_))
    ));
    assert!(matches!(ok(json!({"aud": null})), Err(E::Audience(_))));
    assert!(matches!(
        ok(json!({"exp": now - 61})),
        Err(E::Expired { .. })
    ));
    assert_eq!(ok(json!({"exp": now - 59})), Ok(()), "within the skew");
    assert!(matches!(ok(json!({"exp": "soon"})), Err(E::Malformed(_))));
    assert!(matches!(
        ok(json!({"nbf": now + 61})),
        Err(E::NotYetValid { .. })
    ));
    assert_eq!(ok(json!({"nbf": now + 59})), Ok(()));
    assert!(matches!(
        ok(json!({"iat": now + 61})),
        Err(E::IssuedInFuture { .. })
    ));
    assert!(matches!(
        ok(json!({"iat": now - 400})),
        Err(E::TooOld { .. })
    ));
    assert_eq!(
        ok(json!({"iat": now - 350})),
        Ok(()),
        "age within max + skew"
    );
    let mut c =
        json!({"iss": "https://issuer.example", "aud": "https://steward.example", "exp": now + 60});
    assert_eq!(
        p.check_registered(&claims(c.clone()), now, 60),
        Err(E::NoIssuedAt)
    );
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(p.check_registered(&claims(c), now, 60), Err(E::NoExpiry));
}

#[test]
fn glob_matcher_table() {
    let cases = [
        ("", "", true),
        ("*", "", true),
        ("*", "anything/at/all", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("**a", "ba", true),
        ("*é", "café", true),
        ("refs/heads/*", "refs/heads/", true),
        ("x", "y", false),
    ];
    for (p, t, want) in cases {
        assert_eq!(glob_match(p, t), want, "{p:?} vs {t:?}");
    }
}

#[test]
fn actor_chain_depth_and_order() {
    let a: Actor =
        serde_json::from_value(json!({"sub": "c", "act": {"sub": "b", "act": {"sub": "a"}}}))
            .unwrap();
    assert_eq!(a.depth(), 3);
    assert_eq!(a.chain(), vec!["c", "b", "a"]);
    assert_eq!(
        serde_json::to_value(&a).unwrap()["act"]["act"],
        json!({"sub": "a"})
    );
}

#[test]
fn may_act_validation() {
    let id = "0190a0b0-0000-7000-8000-000000000001".to_owned();
    assert_eq!(
        validate_may_act(&[id.clone(), id.clone()]).unwrap(),
        vec![id]
    );
    assert!(
        validate_may_act(&["agent-1".into()])
            .unwrap_err()
            .to_string()
            .contains("not an identity id")
    );
}

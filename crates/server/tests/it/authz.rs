//! Authorization over real HTTP: policies (versioned, validated with positions, guard rails),
//! decisions (deny by default, scope cap, environment isolation, exceptions that expire,
//! continuous verification of the token) and what-if re-evaluation of recorded decisions.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_policy::{ActionDecl, AttrType, ResourceTypeDecl, SchemaConfig};

use crate::harness::TestServer;

/// Documents owned by a team; `docs:read` and `docs:write` need their own scopes.
fn schema() -> SchemaConfig {
    SchemaConfig {
        resource_types: BTreeMap::from([(
            "Document".to_owned(),
            ResourceTypeDecl {
                attributes: BTreeMap::from([("owner_team".to_owned(), AttrType::String)]),
            },
        )]),
        actions: BTreeMap::from([
            ("docs:read".to_owned(), ActionDecl::default()),
            ("docs:write".to_owned(), ActionDecl::default()),
        ]),
    }
}

async fn server() -> TestServer {
    TestServer::start_with(|cfg| cfg.authz = schema()).await
}

/// An identity with `docs:*` scopes and team label, plus an API key: (id, secret).
async fn docs_identity(t: &TestServer, name: &str, env: &str, team: &str) -> (String, String) {
    let owner = t.create_owner(&format!("team-{name}")).await;
    let i = t
        .create_identity(
            &owner,
            name,
            json!({
                "environment": env,
                "scopes": ["docs:read", "docs:write"],
                "default_scopes": ["docs:read"],
                "labels": {"team": team},
            }),
        )
        .await;
    let id = i["id"].as_str().unwrap().to_owned();
    let (_, secret) = t.api_key(&id).await;
    (id, secret)
}

async fn token(t: &TestServer, id: &str, secret: &str, scope: &str) -> String {
    let (s, v, _) = t.token_basic(id, secret, &[("scope", scope)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

fn doc(env: &str, team: &str) -> Value {
    json!({"type": "Document", "id": format!("doc-{team}-{env}"), "attributes": {"env": env, "owner_team": team}})
}

async fn decide(t: &TestServer, principal: Value, action: &str, resource: Value) -> Value {
    let mut body = json!({"action": action, "resource": resource});
    if let (Value::Object(b), Value::Object(p)) = (&mut body, principal) {
        b.extend(p);
    }
    let (s, v) = t.api(Method::POST, "/v1/authorize", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn put_policy(t: &TestServer, id: &str, source: &str) -> Value {
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/policies",
            Some(json!({"id": id, "source": source, "description": format!("test {id}")})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

const READ_ALL: &str = r#"permit (principal, action == Action::"docs:read", resource);"#;
const WRITE_ALL: &str = r#"permit (principal, action == Action::"docs:write", resource);"#;

#[tokio::test]
async fn deny_by_default_then_allow_by_policy_with_audit() {
    let t = server().await;
    let (id, secret) = docs_identity(&t, "reader", "prod", "payments").await;
    let tok = token(&t, &id, &secret, "docs:read").await;
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["policies"], json!([]));
    assert_eq!(v["errors"], json!([]));
    assert_eq!(v["principal"], json!(id));

    put_policy(&t, "read-all", READ_ALL).await;
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["policies"], json!(["read-all"]));
    assert_eq!(v["policy_version"], json!(1));

    // Every decision is an audit record with what is needed to re-evaluate it.
    let recs = t.audit("action=authz.decision").await;
    assert_eq!(recs.len(), 2, "{recs:?}");
    let d = &recs[1]["details"];
    assert_eq!(recs[1]["identity_id"], json!(id));
    assert_eq!(recs[1]["outcome"], "success");
    assert_eq!(recs[0]["outcome"], "denied");
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["policies"], json!(["read-all"]));
    assert_eq!(d["policy_version"], json!(1));
    assert_eq!(d["request"]["principal"]["env"], "prod");
    assert_eq!(
        d["request"]["resource"]["attributes"]["owner_team"],
        "payments"
    );
    assert!(
        !recs[1].to_string().contains(&tok),
        "the token is not audited"
    );
}

#[tokio::test]
async fn scope_cap_limits_what_policies_allow() {
    let t = server().await;
    let (id, secret) = docs_identity(&t, "writer", "prod", "payments").await;
    put_policy(&t, "write-all", WRITE_ALL).await;
    // The identity may hold docs:write, but this token was issued with docs:read only.
    let tok = token(&t, &id, &secret, "docs:read").await;
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:write",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["policies"], json!(["steward.scope-cap"]));
    let tok = token(&t, &id, &secret, "docs:write").await;
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:write",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "allow", "{v}");
}

#[tokio::test]
async fn environment_isolation_and_an_exception_until_it_expires() {
    let t = server().await;
    let (id, secret) = docs_identity(&t, "dev-tool", "dev", "payments").await;
    put_policy(&t, "read-all", READ_ALL).await;
    let tok = token(&t, &id, &secret, "docs:read").await;
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:read",
        doc("dev", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "allow", "{v}");
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["policies"], json!(["steward.env-isolation"]));

    // The approver may not be the requester.
    let expires = (t.clock_now() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({"identity_id": id, "guard_rail": "steward.env-isolation",
        "requested_by": t.admin_id, "reason": "incident 42", "expires_at": expires});
    let (s, v) = t.api(Method::POST, "/v1/exceptions", Some(body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "separation_of_duties");

    let body = json!({"identity_id": id, "guard_rail": "steward.env-isolation",
        "requested_by": "alice@example.com", "reason": "incident 42", "expires_at": expires});
    let (s, x) = t.api(Method::POST, "/v1/exceptions", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    assert_eq!(x["approved_by"], json!(t.admin_id));
    assert_eq!(x["active"], json!(true));
    let v = decide(
        &t,
        json!({"identity_id": id}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "allow", "{v}");
    let (s, list) = t
        .api(
            Method::GET,
            &format!("/v1/exceptions?identity_id={id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Only until it expires.
    t.clock.advance(time::Duration::minutes(61));
    let v = decide(
        &t,
        json!({"identity_id": id}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(v["policies"], json!(["steward.env-isolation"]));
    let (_, list) = t
        .api(
            Method::GET,
            &format!("/v1/exceptions?identity_id={id}"),
            None,
        )
        .await;
    assert_eq!(list["items"], json!([]));
    let audit = t.audit("action=exception.create").await;
    assert_eq!(audit.len(), 1);
}

#[tokio::test]
async fn suspended_identity_is_denied_with_a_still_valid_token() {
    let t = server().await;
    let (id, secret) = docs_identity(&t, "suspendee", "prod", "payments").await;
    put_policy(&t, "read-all", READ_ALL).await;
    let tok = token(&t, &id, &secret, "docs:read").await;
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "allow", "{v}");
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/suspend"),
            Some(json!({"reason": "investigation"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = decide(
        &t,
        json!({"token": tok}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    assert!(
        v["errors"][0].as_str().unwrap().contains("suspended"),
        "{v}"
    );
    let v = decide(
        &t,
        json!({"identity_id": id}),
        "docs:read",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "deny", "{v}");
    // The denial is audited against the identity.
    let recs = t
        .audit(&format!("action=authz.decision&identity={id}"))
        .await;
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2]["outcome"], "denied");
}

#[tokio::test]
async fn invalid_policies_are_refused_with_their_position() {
    let t = server().await;
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/policies",
            Some(json!({"id": "broken", "source": "permit (principal, action, resource)\nwhen { principal.nope == 1 };"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_policy");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("line 2, column 8"), "{m}");
    assert!(m.contains("nope"), "{m}");
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/policies",
            Some(json!({"id": "syntax", "source": "permit (principal action, resource);"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("line 1, column"),
        "{v}"
    );
    // Nothing was stored.
    let (_, list) = t.api(Method::GET, "/v1/policies", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn guard_rails_are_listed_and_cannot_be_changed() {
    let t = server().await;
    let (s, list) = t.api(Method::GET, "/v1/policies", None).await;
    assert_eq!(s, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["steward.env-isolation", "steward.scope-cap"]);
    assert!(items.iter().all(|p| p["builtin"] == json!(true)));
    assert!(
        items[1]["source"]
            .as_str()
            .unwrap()
            .contains(r#"Action::"docs:write" && principal.scopes.containsAny(["docs:write"])"#),
        "{}",
        items[1]["source"]
    );
    for (m, body) in [
        (Method::PUT, Some(json!({"source": READ_ALL}))),
        (Method::DELETE, None),
    ] {
        let (s, v) = t.api(m, "/v1/policies/steward.scope-cap", body).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"], "builtin_policy");
        assert!(v["message"].as_str().unwrap().contains("guard rail"));
    }
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/policies",
            Some(json!({"id": "steward.mine", "source": READ_ALL})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = t.api(Method::GET, "/v1/policies/schema", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["cedar"].as_str().unwrap().contains("entity Identity"),
        "{v}"
    );
}

#[tokio::test]
async fn policies_are_versioned_and_changes_audited_with_a_diff() {
    let t = server().await;
    put_policy(&t, "p1", READ_ALL).await;
    let (s, v) = t
        .api(
            Method::PUT,
            "/v1/policies/p1",
            Some(json!({"source": WRITE_ALL, "expected_version": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], json!(2));
    // A stale expected version conflicts.
    let (s, _) = t
        .api(
            Method::PUT,
            "/v1/policies/p1",
            Some(json!({"source": READ_ALL, "expected_version": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = t.api(Method::DELETE, "/v1/policies/p1", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t.api(Method::GET, "/v1/policies/p1", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = t.api(Method::GET, "/v1/policies/p1/versions", None).await;
    assert_eq!(s, StatusCode::OK);
    let versions: Vec<i64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    let recs = t.audit("action=policy.").await;
    let actions: Vec<&str> = recs.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        vec!["policy.create", "policy.update", "policy.delete"]
    );
    assert_eq!(
        recs[1]["details"]["diff"],
        json!([format!("-{READ_ALL}"), format!("+{WRITE_ALL}")])
    );
    // Re-creating after deletion continues the version numbers.
    let v = put_policy(&t, "p1", READ_ALL).await;
    assert_eq!(v["version"], json!(4));
}

#[tokio::test]
async fn what_if_reports_exactly_the_decisions_that_flip() {
    let t = server().await;
    let (a, _) = docs_identity(&t, "alpha", "prod", "payments").await;
    let (b, _) = docs_identity(&t, "beta", "prod", "ledger").await;
    put_policy(&t, "read-all", READ_ALL).await;
    // The recorded fixture: four decisions.
    let by = |id: &str| json!({"identity_id": id});
    let d1 = decide(&t, by(&a), "docs:read", doc("prod", "payments")).await;
    let d2 = decide(&t, by(&b), "docs:read", doc("prod", "payments")).await;
    let d3 = decide(&t, by(&a), "docs:write", doc("prod", "payments")).await;
    let d4 = decide(&t, by(&b), "docs:read", doc("dev", "ledger")).await;
    let recorded: Vec<&str> = [&d1, &d2, &d3, &d4]
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, vec!["allow", "allow", "deny", "deny"]);
    let seqs: Vec<u64> = t
        .audit("action=authz.decision")
        .await
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 4);

    // Proposed: reading only within one's team, and payments may write.
    let proposal = json!({
        "remove": ["read-all"],
        "policies": [
            {"id": "read-own-team", "source": r#"permit (principal, action == Action::"docs:read", resource is Document)
    when { principal.hasTag("team") && principal.getTag("team") == resource.owner_team };"#},
            {"id": "payments-write", "source": r#"permit (principal, action == Action::"docs:write", resource is Document)
    when { principal.hasTag("team") && principal.getTag("team") == "payments" };"#},
        ],
    });
    let (s, v) = t
        .api(Method::POST, "/v1/authorize/what-if", Some(proposal))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["evaluated"], json!(4), "{v}");
    assert_eq!(v["skipped"], json!(0));
    assert_eq!(v["allow_to_deny"], json!(1));
    assert_eq!(v["deny_to_allow"], json!(1));
    let flips = v["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 2, "{v}");
    assert_eq!(flips[0]["seq"], json!(seqs[1]));
    assert_eq!(flips[0]["principal"], json!(b));
    assert_eq!(
        (flips[0]["before"].as_str(), flips[0]["after"].as_str()),
        (Some("allow"), Some("deny"))
    );
    assert_eq!(flips[0]["policies_before"], json!(["read-all"]));
    assert_eq!(flips[1]["seq"], json!(seqs[2]));
    assert_eq!(flips[1]["principal"], json!(a));
    assert_eq!(
        (flips[1]["before"].as_str(), flips[1]["after"].as_str()),
        (Some("deny"), Some("allow"))
    );
    assert_eq!(flips[1]["policies_after"], json!(["payments-write"]));

    // The current set itself changes nothing; a window before the fixture sees nothing.
    let (_, v) = t
        .api(Method::POST, "/v1/authorize/what-if", Some(json!({})))
        .await;
    assert_eq!(
        (v["evaluated"].as_u64(), v["flips"].as_array().map(Vec::len)),
        (Some(4), Some(0))
    );
    let until = (t.clock_now() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, v) = t
        .api(
            Method::POST,
            "/v1/authorize/what-if",
            Some(json!({"until": until, "replace": true})),
        )
        .await;
    assert_eq!(v["evaluated"], json!(0), "{v}");
    // An invalid proposal is refused with its position.
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/authorize/what-if",
            Some(json!({"policies": [{"id": "x", "source": "permit (principal, action, resource) when { 1 };"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_policy");
}

#[tokio::test]
async fn authorize_needs_the_authorize_scope_and_one_principal() {
    let t = server().await;
    // A resource server's token for this server, without steward:authorize.
    let owner = t.create_owner("team-pep").await;
    let i = t
        .create_identity(
            &owner,
            "pep",
            json!({"scopes": ["docs:read"], "default_scopes": ["docs:read"], "audiences": [t.base]}),
        )
        .await;
    let id = i["id"].as_str().unwrap().to_owned();
    let (_, secret) = t.api_key(&id).await;
    let (s, v, _) = t.token_basic(&id, &secret, &[("resource", &t.base)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tok = v["access_token"].as_str().unwrap().to_owned();
    let body =
        json!({"identity_id": id, "action": "docs:read", "resource": doc("prod", "payments")});
    let (s, v) = t
        .api_with(&tok, Method::POST, "/v1/authorize", Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = t
        .api(
            Method::POST,
            "/v1/authorize",
            Some(json!({"action": "docs:read", "resource": doc("prod", "payments")})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Unknown actions and malformed resources deny with an error rather than fail open.
    let v = decide(
        &t,
        json!({"identity_id": id}),
        "docs:fly",
        doc("prod", "payments"),
    )
    .await;
    assert_eq!(v["decision"], "deny");
    assert!(
        v["errors"][0].as_str().unwrap().contains("unknown action"),
        "{v}"
    );
    let v = decide(
        &t,
        json!({"identity_id": id}),
        "docs:read",
        json!({"type": "Document", "id": "x", "attributes": {"owner_team": "payments"}}),
    )
    .await;
    assert_eq!(v["decision"], "deny");
    assert!(v["errors"][0].as_str().unwrap().contains("env"), "{v}");
}

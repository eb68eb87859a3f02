//! The authorization benches' workload: a Cedar schema, 100 policies of the shapes operators
//! write, and a mix of allowed and denied requests; shared by the `authz` and `suite` benches.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::http::HeaderValue;
use serde_json::{Value, json};
use steward_policy::{ActionDecl, AttrType, PolicySource, ResourceTypeDecl, SchemaConfig};

pub const TEAMS: usize = 20;
/// Principals the requests rotate over (each labelled `team = team<i>`).
pub const IDENTITIES: usize = 16;

pub fn schema() -> SchemaConfig {
    let s = |pairs: &[(&str, AttrType)]| ResourceTypeDecl {
        attributes: pairs.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect(),
    };
    let a = |types: &[&str]| ActionDecl {
        resource_types: types.iter().map(|t| (*t).to_owned()).collect(),
        scopes: Vec::new(),
    };
    SchemaConfig {
        resource_types: BTreeMap::from([
            (
                "Document".to_owned(),
                s(&[
                    ("owner_team", AttrType::String),
                    ("classification", AttrType::String),
                ]),
            ),
            (
                "Queue".to_owned(),
                s(&[("name", AttrType::String), ("owner_team", AttrType::String)]),
            ),
        ]),
        actions: BTreeMap::from([
            ("docs:read".to_owned(), a(&["Document"])),
            ("docs:write".to_owned(), a(&["Document"])),
            ("queue:publish".to_owned(), a(&["Queue"])),
            ("queue:consume".to_owned(), a(&["Queue"])),
        ]),
    }
}

/// 100 policies of the shapes an operator writes: per-team read/write/publish permits, a
/// per-team network forbid for restricted documents, and per-service grants.
pub fn policies() -> Vec<PolicySource> {
    let mut out = Vec::new();
    for i in 0..TEAMS {
        let team = format!("team{i}");
        let member = format!(r#"principal.hasTag("team") && principal.getTag("team") == "{team}""#);
        out.push(PolicySource::new(
            format!("{team}-read"),
            format!(
                r#"permit (principal, action == Action::"docs:read", resource is Document)
when {{ {member} && resource.owner_team == "{team}" }};"#
            ),
        ));
        out.push(PolicySource::new(
            format!("{team}-write"),
            format!(
                r#"permit (principal, action == Action::"docs:write", resource is Document)
when {{ {member} && resource.owner_team == "{team}" && resource.classification != "restricted" }};"#
            ),
        ));
        out.push(PolicySource::new(
            format!("{team}-publish"),
            format!(
                r#"permit (principal, action in [Action::"queue:publish", Action::"queue:consume"], resource is Queue)
when {{ principal.kind == "workload" && {member} && resource.name like "{team}.*" }};"#
            ),
        ));
        out.push(PolicySource::new(
            format!("{team}-restricted-network"),
            format!(
                r#"forbid (principal, action, resource is Document)
when {{ resource.owner_team == "{team}" && resource.classification == "restricted" }}
unless {{ context has source_ip && context.source_ip.isInRange(ip("10.{i}.0.0/16")) }};"#
            ),
        ));
    }
    for k in 0..(100 - 4 * TEAMS) {
        out.push(PolicySource::new(
            format!("svc-{k}-cross-read"),
            format!(
                r#"permit (principal, action == Action::"docs:read", resource is Document)
when {{ principal.name == "svc-{k}" && resource.owner_team == "team{}" && resource.classification == "internal" }};"#,
                (k + 1) % TEAMS
            ),
        ));
    }
    out
}

/// The `i`th request: a mix of allowed and denied decisions over identities and resources.
pub fn request_body(i: u64, principal: &Value) -> Vec<u8> {
    let team = i % IDENTITIES as u64;
    let other = (team + 1 + i % 3) % TEAMS as u64;
    let (action, resource) = match i % 5 {
        0 => (
            "docs:read",
            json!({"type": "Document", "id": format!("d{i}"), "attributes":
                {"env": "prod", "owner_team": format!("team{team}"), "classification": "internal"}}),
        ),
        1 => (
            "docs:read",
            json!({"type": "Document", "id": format!("d{i}"), "attributes":
                {"env": "prod", "owner_team": format!("team{other}"), "classification": "internal"}}),
        ),
        2 => (
            "queue:publish",
            json!({"type": "Queue", "id": format!("q{i}"), "attributes":
                {"env": "prod", "owner_team": format!("team{team}"), "name": format!("team{team}.events")}}),
        ),
        3 => (
            "docs:read",
            json!({"type": "Document", "id": format!("d{i}"), "attributes":
                {"env": "prod", "owner_team": format!("team{team}"), "classification": "restricted"}}),
        ),
        _ => (
            "docs:read",
            json!({"type": "Document", "id": format!("d{i}"), "attributes":
                {"env": "dev", "owner_team": format!("team{team}"), "classification": "internal"}}),
        ),
    };
    let mut body = json!({"action": action, "resource": resource,
        "context": {"source_ip": format!("10.{team}.1.7")}});
    if let (Value::Object(b), Value::Object(p)) = (&mut body, principal) {
        b.extend(p.clone());
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `POST /v1/authorize` as `bearer`, cycling over 1,000 request bodies built up front (the load
/// generator's time is not the server's) for the given principals.
pub fn authorize_requests(
    host: &HeaderValue,
    bearer: &HeaderValue,
    principals: &[Value],
) -> crate::load::MakeRequest {
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..1000u64)
            .map(|i| {
                let p = &principals[(i as usize) % principals.len().max(1)];
                Bytes::from(request_body(i, p))
            })
            .collect(),
    );
    let (host, bearer) = (host.clone(), bearer.clone());
    Arc::new(move |conn, seq| {
        let idx = (conn as u64).wrapping_mul(7919).wrapping_add(seq) as usize % bodies.len();
        crate::requests::post(
            "/v1/authorize",
            &host,
            crate::requests::JSON,
            Some(&bearer),
            bodies[idx].clone(),
        )
    })
}

//! Registry over HTTP: owners, identities, credentials, lifecycle, and every kind of bad input.
//! Each refusal must carry the right status and leave the store (and audit log) unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestServer;

#[tokio::test]
async fn create_identity_round_trip_and_audit() {
    let t = TestServer::start().await;
    let owner = t.create_owner("team-payments").await;
    let i = t
        .create_identity(
            &owner,
            "payments-api",
            json!({"labels": {"team": "payments"}}),
        )
        .await;
    assert_eq!(i["status"], "active");
    assert_eq!(
        i["spiffe_id"],
        "spiffe://steward.local/prod/workload/payments-api"
    );
    assert_eq!(i["labels"]["team"], "payments");
    let id = i["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    let (s, got) = t
        .api(Method::GET, &format!("/v1/identities/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, i);
    let recs = t
        .audit(&format!("identity={id}&action=identity.create"))
        .await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["actor"], t.admin_id);
    assert_eq!(recs[0]["outcome"], "success");
    // List with filters and search.
    let (_, list) = t
        .api(
            Method::GET,
            "/v1/identities?environment=prod&search=PAYMENTS",
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, none) = t
        .api(Method::GET, "/v1/identities?environment=dev", None)
        .await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
}

/// Every bad request: (method, path, body, expected status, expected error code, message fragment).
#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let t = TestServer::start().await;
    let owner = t.create_owner("team-a").await;
    let gone = t.create_owner("team-gone").await;
    t.api(Method::POST, &format!("/v1/owners/{gone}/depart"), None)
        .await;
    t.create_identity(&owner, "taken", json!({})).await;
    let base = json!({"name": "svc", "kind": "workload", "owner": owner, "purpose": "p", "environment": "prod", "expires_at": t.in_days(10)});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "unknown field",
            with("colour", json!("red")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown field",
        ),
        (
            "wrong type",
            with("scopes", json!("a")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid type",
        ),
        (
            "missing owner",
            without("owner"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "owner",
        ),
        (
            "missing expiry",
            without("expires_at"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expires_at",
        ),
        (
            "empty purpose",
            with("purpose", json!("  ")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "purpose",
        ),
        (
            "expiry past max",
            with("expires_at", json!(t.in_days(400))),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "365 days",
        ),
        (
            "integration max",
            {
                let mut b = with("kind", json!("integration"));
                b["vendor"] = json!("acme");
                b["expires_at"] = json!(t.in_days(100));
                b
            },
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "90 days",
        ),
        (
            "unknown owner",
            with("owner", json!(uuid::Uuid::now_v7())),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown owner",
        ),
        (
            "departed owner",
            with("owner", json!(gone)),
            StatusCode::CONFLICT,
            "owner_departed",
            "departed",
        ),
        (
            "duplicate name",
            with("name", json!("taken")),
            StatusCode::CONFLICT,
            "conflict",
            "already exists",
        ),
        (
            "bad name",
            with("name", json!("Bad Name")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "name",
        ),
        (
            "unknown env",
            with("environment", json!("moon")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "environment",
        ),
        (
            "unknown kind",
            with("kind", json!("robot")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "kind",
        ),
        (
            "default not subset",
            with("default_scopes", json!(["x"])),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subset",
        ),
    ];
    let token = t.admin_token().await;
    let before = t.audit_size().await;
    for (what, body, status, code, frag) in cases {
        let (s, v) = t
            .api_with(&token, Method::POST, "/v1/identities", Some(body))
            .await;
        assert_eq!(s, status, "{what}: {v}");
        assert_eq!(v["error"], code, "{what}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(frag),
            "{what}: message {msg:?} should mention {frag:?}"
        );
    }
    // Malformed JSON, wrong content type, oversized body.
    let raw = |body: &'static str, ct: &'static str| {
        t.http
            .post(t.url("/v1/identities"))
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body)
    };
    let r = raw("{not json", "application/json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = raw("{}", "text/plain").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(200_000));
    let r = t
        .http
        .post(t.url("/v1/identities"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown ids.
    let (s, v) = t
        .api_with(
            &token,
            Method::GET,
            &format!("/v1/identities/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _) = t
        .api_with(&token, Method::GET, "/v1/identities/not-a-uuid", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        t.audit_size().await,
        before,
        "refused requests must not write"
    );
    let (_, list) = t
        .api_with(&token, Method::GET, "/v1/identities", None)
        .await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, vec!["steward-admin", "taken"]);
}

#[tokio::test]
async fn lifecycle_transitions_and_separation_of_duties() {
    let t = TestServer::start().await;
    let owner = t.create_owner("vendors").await;
    let i = t
        .create_identity(
            &owner,
            "crm-sync",
            json!({"kind": "integration", "vendor": "acme", "expires_at": t.in_days(60)}),
        )
        .await;
    assert_eq!(i["status"], "pending_approval");
    let id = i["id"].as_str().unwrap();
    // The requester (the bootstrap admin) cannot approve its own request.
    let (s, v) = t
        .api(Method::POST, &format!("/v1/identities/{id}/approve"), None)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("separation_of_duties")),
        "{v}"
    );
    // A second administrator can.
    let admins = t.create_owner("admins").await;
    let a2 = t
        .create_identity(&admins, "second-admin", json!({"kind": "service_account", "scopes": ["steward:admin"], "default_scopes": ["steward:admin"], "audiences": []}))
        .await;
    let a2id = a2["id"].as_str().unwrap();
    let (_, a2secret) = t.api_key(a2id).await;
    let (_, tok2, _) = t.token_basic(a2id, &a2secret, &[]).await;
    let tok2 = tok2["access_token"].as_str().unwrap();
    let (s, v) = t
        .api_with(
            tok2,
            Method::POST,
            &format!("/v1/identities/{id}/approve"),
            Some(json!({"reason": "vendor reviewed"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["approved_by"], a2id);
    // Illegal transitions say why with 409.
    let (s, v) = t
        .api(Method::POST, &format!("/v1/identities/{id}/resume"), None)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("illegal_transition"))
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("only suspended identities can be resumed"),
        "{v}"
    );
    for (action, status) in [
        ("suspend", "suspended"),
        ("resume", "active"),
        ("retire", "retired"),
    ] {
        let (s, v) = t
            .api(
                Method::POST,
                &format!("/v1/identities/{id}/{action}"),
                Some(json!({"reason": "test"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{action}: {v}");
        assert_eq!(v["status"], status);
    }
    for action in ["resume", "suspend", "approve", "retire"] {
        let (s, v) = t
            .api(Method::POST, &format!("/v1/identities/{id}/{action}"), None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{action} after retire: {v}");
        assert!(v["message"].as_str().unwrap().contains("retired is final"));
    }
    let (s, _) = t
        .api(
            Method::PATCH,
            &format!("/v1/identities/{id}"),
            Some(json!({"purpose": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let kinds: Vec<String> = t
        .audit(&format!("identity={id}"))
        .await
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "identity.create:success",
            "identity.approve:success",
            "identity.suspend:success",
            "identity.resume:success",
            "identity.retire:success"
        ]
    );
}

#[tokio::test]
async fn owner_departure_orphans_or_reassigns() {
    let t = TestServer::start().await;
    let a = t.create_owner("alice-team").await;
    let b = t.create_owner("bob-team").await;
    let i1 = t.create_identity(&a, "one", json!({})).await;
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/owners/{a}/depart"),
            Some(json!({"reassign_to": b})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["reassigned_identities"], json!([i1["id"]]));
    let (_, got) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{}", i1["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(got["owner"], json!(b));
    let (s, v) = t
        .api(Method::POST, &format!("/v1/owners/{a}/depart"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = t
        .api(Method::POST, &format!("/v1/owners/{b}/depart"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["orphaned_identities"], json!([i1["id"]]));
    assert_eq!(v["owner"]["status"], "departed");
}

#[tokio::test]
async fn authentication_and_scopes_on_admin_api() {
    let t = TestServer::start().await;
    let r = t.http.get(t.url("/v1/identities")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = t
        .http
        .get(t.url("/v1/identities"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The admin API key itself is not accepted as a bearer credential: only Steward tokens are.
    let r = t
        .http
        .get(t.url("/v1/identities"))
        .bearer_auth(&t.admin_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A read-only identity gets 403 on writes; a workload token for another audience gets 401.
    let owner = t.create_owner("auditors").await;
    let ro = t
        .create_identity(&owner, "reader", json!({"kind": "service_account", "scopes": ["steward:read"], "default_scopes": ["steward:read"], "audiences": []}))
        .await;
    let roid = ro["id"].as_str().unwrap();
    let (_, rosecret) = t.api_key(roid).await;
    let (_, tok, _) = t.token_basic(roid, &rosecret, &[]).await;
    let tok = tok["access_token"].as_str().unwrap();
    let (s, _) = t.api_with(tok, Method::GET, "/v1/identities", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = t
        .api_with(
            tok,
            Method::POST,
            "/v1/owners",
            Some(json!({"name": "x", "kind": "team", "contact": "x@y.io"})),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (wid, wsecret) = t.workload("payments").await;
    let (_, wt, _) = t.token_basic(&wid, &wsecret, &[]).await;
    let (s, v) = t
        .api_with(
            wt["access_token"].as_str().unwrap(),
            Method::GET,
            "/v1/identities",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // Suspending the reader makes its unexpired token fail at once.
    t.api(
        Method::POST,
        &format!("/v1/identities/{roid}/suspend"),
        None,
    )
    .await;
    let (s, _) = t.api_with(tok, Method::GET, "/v1/identities", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn openapi_health_and_metadata() {
    let t = TestServer::start().await;
    let v: Value = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    assert!(v["paths"]["/v1/identities"]["post"].is_object());
    assert!(v["components"]["schemas"]["CreateIdentity"].is_object());
    assert_eq!(
        t.http.get(t.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        t.http.get(t.url("/readyz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let m: Value = t
        .http
        .get(t.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["issuer"], t.base);
    assert_eq!(m["token_endpoint"], format!("{}/oauth2/token", t.base));
    let metrics = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    t.admin_token().await;
    let metrics2 = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics2.contains("steward_tokens_issued_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn overload_is_shed_with_503_and_retry_after() {
    // With no capacity at all, every request is shed at once rather than queued.
    let t = TestServer::start_with(|c| c.max_in_flight_requests = 0).await;
    let r = t.http.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "overloaded");
}

//! Governance through the HTTP API: usage recording and entitlements (granted vs used, right-
//! sizing), every finding type raised on real registry data and resolved by fixing it, accepted
//! risk that reopens after its date, exception waivers, automatic actions (dry run and
//! enforced), filters and pagination, risk scores and the posture report. Time moves with the
//! manual clock, never by sleeping.

use std::net::IpAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_server::service::findings::{ActionKind, ActionRule};
use steward_store::{Change, ExceptionRecord, Mutation};
use time::Duration;
use uuid::Uuid;

use crate::harness::TestServer;

async fn flush(t: &TestServer) {
    steward_server::jobs::flush_usage(&t.server.state).await;
}

/// Flushes recorded usage, then runs the findings job through the API.
async fn run(t: &TestServer) -> Value {
    flush(t).await;
    let (s, v) = t.api(Method::POST, "/v1/findings/run", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn findings(t: &TestServer, query: &str) -> Vec<Value> {
    let (s, v) = t
        .api(
            Method::GET,
            &format!("/v1/findings?limit=1000&{query}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["items"].as_array().cloned().unwrap()
}

/// The statuses of an identity's findings of one type, oldest first.
async fn statuses(t: &TestServer, identity: &str, kind: &str) -> Vec<String> {
    findings(t, &format!("identity={identity}&type={kind}"))
        .await
        .iter()
        .map(|f| f["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn one_open(t: &TestServer, identity: &str, kind: &str) -> Value {
    let open: Vec<Value> =
        findings(t, &format!("identity={identity}&type={kind}&status=open")).await;
    assert_eq!(open.len(), 1, "{kind} on {identity}: {open:?}");
    open.into_iter().next().unwrap()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn patch(t: &TestServer, identity: &str, body: Value) {
    let (s, v) = t
        .api(
            Method::PATCH,
            &format!("/v1/identities/{identity}"),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn revoke(t: &TestServer, identity: &str, credential: &str) {
    let (s, v) = t
        .api(
            Method::DELETE,
            &format!("/v1/identities/{identity}/credentials/{credential}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// An HTTP client whose connections come from `source` (any 127/8 address reaches loopback).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A client-credentials token request through `http`, optionally with a User-Agent.
async fn token_via(
    t: &TestServer,
    http: &reqwest::Client,
    client: &str,
    secret: &str,
    user_agent: Option<&str>,
    form: &[(&str, &str)],
) -> Value {
    let mut f: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    f.extend_from_slice(form);
    let mut req = http
        .post(t.url("/oauth2/token"))
        .basic_auth(client, Some(secret))
        .form(&f);
    if let Some(ua) = user_agent {
        req = req.header("user-agent", ua);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// A workload with its own owner and one API key: (identity id, credential id, secret).
async fn workload_with(t: &TestServer, name: &str, extra: Value) -> (String, String, String) {
    let owner = t.create_owner(&format!("team-{name}")).await;
    let i = t.create_identity(&owner, name, extra).await;
    let iid = id(&i);
    let (cid, secret) = t.api_key(&iid).await;
    (iid, cid, secret)
}

/// Longer-lived keys, so that tests can move the clock past the default 90-day key age.
fn long_keys(c: &mut steward_server::ServerConfig) {
    c.registry.max_key_age_days = 365;
}

#[tokio::test]
async fn ownership_and_lifecycle_findings_raise_and_resolve() {
    let t = TestServer::start().await;
    let payments = t.create_owner("payments").await;
    let platform = t.create_owner("platform").await;
    let orphan = id(&t.create_identity(&payments, "orphan", json!({})).await);
    let (orphan_key, _) = t.api_key(&orphan).await;
    let short = id(&t
        .create_identity(&payments, "short", json!({"expires_at": t.in_days(5)}))
        .await);
    let admin_ish = id(&t
        .create_identity(
            &platform,
            "admin-ish",
            json!({"scopes": ["payments:admin", "payments:read"], "default_scopes": ["payments:read"]}),
        )
        .await);
    // A key is never issued past its identity's expiry; shortening the expiry afterwards
    // leaves the key valid past it.
    let ending = id(&t.create_identity(&platform, "ending", json!({})).await);
    let (ending_key, _) = t.api_key(&ending).await;
    patch(&t, &ending, json!({"expires_at": t.in_days(3)})).await;
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/owners/{payments}/depart"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let r = run(&t).await;
    assert!(r["raised"].as_u64().unwrap() >= 6, "{r}");
    let o = one_open(&t, &orphan, "orphaned").await;
    assert_eq!(
        (o["owasp_nhi"].as_str(), o["nist_csf"].as_str()),
        (Some("NHI1:2025"), Some("PR.AA-01"))
    );
    assert_eq!(o["severity"], "high");
    assert_eq!(o["evidence"]["reason"], "the owner has departed");
    one_open(&t, &short, "orphaned").await;
    let e = one_open(&t, &short, "expiring_soon").await;
    assert_eq!(e["owasp_nhi"], "NHI1:2025");
    let w = one_open(&t, &admin_ish, "wildcard_or_admin_scope_in_prod").await;
    assert_eq!(
        (w["owasp_nhi"].as_str(), w["nist_csf"].as_str()),
        (Some("NHI5:2025"), Some("PR.AA-05"))
    );
    assert_eq!(w["evidence"]["scopes"], json!(["payments:admin"]));
    let k = one_open(&t, &orphan, "static_api_key_where_federation_possible").await;
    assert_eq!(
        (k["owasp_nhi"].as_str(), k["nist_csf"].as_str()),
        (Some("NHI4:2025"), Some("PR.AA-03"))
    );
    assert_eq!(k["evidence"]["api_keys"], json!([orphan_key]));
    // Every raise is audited on its identity.
    let audit = t
        .audit(&format!("identity={orphan}&action=finding.raise"))
        .await;
    assert_eq!(audit.len(), 2, "{audit:?}");

    // A second run with nothing changed raises and resolves nothing.
    let again = run(&t).await;
    assert_eq!(
        (again["raised"].as_u64(), again["resolved"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );

    // Fix everything, and let the `ending` identity expire while it still holds a key.
    patch(&t, &orphan, json!({"owner": platform})).await;
    patch(
        &t,
        &short,
        json!({"owner": platform, "expires_at": t.in_days(60)}),
    )
    .await;
    patch(&t, &admin_ish, json!({"scopes": ["payments:read"]})).await;
    revoke(&t, &orphan, &orphan_key).await;
    t.clock.advance(Duration::days(4));
    run(&t).await;
    for (who, kind) in [
        (&orphan, "orphaned"),
        (&short, "orphaned"),
        (&short, "expiring_soon"),
        (&admin_ish, "wildcard_or_admin_scope_in_prod"),
        (&orphan, "static_api_key_where_federation_possible"),
    ] {
        assert_eq!(statuses(&t, who, kind).await, ["resolved"], "{kind}");
    }
    let x = one_open(&t, &ending, "expired_with_credentials").await;
    assert_eq!(x["evidence"]["credentials"], json!([ending_key]));
    assert_eq!(statuses(&t, &ending, "expiring_soon").await, ["resolved"]);
    let resolved = t
        .audit(&format!("identity={orphan}&action=finding.resolve"))
        .await;
    assert!(resolved.iter().all(|e| e["reason"] == "condition cleared"));

    revoke(&t, &ending, &ending_key).await;
    run(&t).await;
    assert_eq!(
        statuses(&t, &ending, "expired_with_credentials").await,
        ["resolved"]
    );
}

#[tokio::test]
async fn dormancy_rotation_and_over_privilege() {
    let t = TestServer::start_with(|c| {
        long_keys(c);
        c.findings.rules.rotation_age_days = 30;
    })
    .await;
    let (sleepy, _, _) = workload_with(&t, "sleepy", json!({"expires_at": t.in_days(300)})).await;
    let (busy, busy_key, busy_secret) =
        workload_with(&t, "busy", json!({"expires_at": t.in_days(300)})).await;
    let r = run(&t).await;
    assert!(
        statuses(&t, &sleepy, "dormant").await.is_empty(),
        "too young to judge: {r}"
    );

    t.clock.advance(Duration::days(31));
    run(&t).await;
    let rot = one_open(&t, &busy, "credential_rotation_overdue").await;
    assert_eq!(rot["owasp_nhi"], "NHI7:2025");
    assert_eq!(rot["evidence"]["credential_id"], busy_key.as_str());
    assert_eq!(
        rot["dedup_key"],
        format!("credential_rotation_overdue:credential:{busy_key}")
    );
    // Rotating fixes it: the old key is retiring, the new one is fresh.
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{busy}/credentials/{busy_key}/rotate"),
            Some(json!({"grace_secs": 3600})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let new_secret = v["current"]["client_secret"].as_str().unwrap().to_owned();
    drop(busy_secret);
    run(&t).await;
    assert_eq!(
        statuses(&t, &busy, "credential_rotation_overdue").await,
        ["resolved"]
    );

    // 92 days after creation: `sleepy` never authenticated; `busy` only ever uses one scope.
    t.clock.advance(Duration::days(61));
    t.token_basic(&busy, &new_secret, &[("scope", "payments:read")])
        .await;
    run(&t).await;
    let d = one_open(&t, &sleepy, "dormant").await;
    assert_eq!(d["evidence"]["last_authenticated"], Value::Null);
    assert_eq!(d["evidence"]["dormancy_days"], 90);
    assert!(statuses(&t, &busy, "dormant").await.is_empty());
    let op = one_open(&t, &busy, "over_privileged_unused_scopes").await;
    assert_eq!(op["evidence"]["unused"], json!(["payments:write"]));
    assert_eq!(
        (op["owasp_nhi"].as_str(), op["nist_csf"].as_str()),
        (Some("NHI5:2025"), Some("PR.AA-05"))
    );

    // Fix: sleepy authenticates again; busy is right-sized.
    let (_, sleepy_secret) = t.api_key(&sleepy).await;
    t.token_basic(&sleepy, &sleepy_secret, &[]).await;
    patch(&t, &busy, json!({"scopes": ["payments:read"]})).await;
    run(&t).await;
    assert_eq!(statuses(&t, &sleepy, "dormant").await, ["resolved"]);
    assert_eq!(
        statuses(&t, &busy, "over_privileged_unused_scopes").await,
        ["resolved"]
    );
}

#[tokio::test]
async fn observed_use_findings_from_sources_clients_and_networks() {
    let t = TestServer::start_with(|c| {
        c.findings.rules.max_addresses_per_credential = 2;
        c.usage
            .network_environments
            .insert("prod".into(), vec!["127.0.0.1/32".into()]);
        c.usage
            .network_environments
            .insert("dev".into(), vec!["127.0.0.5/32".into()]);
    })
    .await;
    let (shared, shared_key, shared_secret) = workload_with(&t, "shared", json!({})).await;
    for src in ["127.0.0.1", "127.0.0.3", "127.0.0.4"] {
        token_via(
            &t,
            &client_from(src),
            &shared,
            &shared_secret,
            Some("billing/1.2"),
            &[],
        )
        .await;
    }
    let (roamer, roamer_key, roamer_secret) = workload_with(&t, "roamer", json!({})).await;
    token_via(
        &t,
        &client_from("127.0.0.5"),
        &roamer,
        &roamer_secret,
        None,
        &[],
    )
    .await;
    let (human, human_key, human_secret) = workload_with(&t, "human", json!({})).await;
    let browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    token_via(&t, &t.http, &human, &human_secret, Some(browser), &[]).await;
    let (fenced, _, fenced_secret) = workload_with(
        &t,
        "fenced",
        json!({"allowed_source_cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    token_via(&t, &t.http, &fenced, &fenced_secret, Some("fenced/1"), &[]).await;

    run(&t).await;
    let m = one_open(&t, &shared, "credential_multi_source").await;
    assert_eq!(
        (m["owasp_nhi"].as_str(), m["nist_csf"].as_str()),
        (Some("NHI9:2025"), Some("PR.AA-02"))
    );
    assert_eq!(
        m["evidence"]["addresses"],
        json!(["127.0.0.1", "127.0.0.3", "127.0.0.4"])
    );
    assert_eq!(m["evidence"]["credential_id"], shared_key.as_str());
    assert!(
        statuses(&t, &shared, "identity_multi_environment")
            .await
            .is_empty()
    );
    let e = one_open(&t, &roamer, "identity_multi_environment").await;
    assert_eq!(e["owasp_nhi"], "NHI8:2025");
    assert_eq!(e["evidence"]["used_from_environments"], json!(["dev"]));
    let h = one_open(&t, &human, "human_use").await;
    assert_eq!(
        (h["owasp_nhi"].as_str(), h["severity"].as_str()),
        (Some("NHI10:2025"), Some("high"))
    );
    assert_eq!(h["evidence"]["browser_like_user_agents"], json!([browser]));
    let f = one_open(&t, &fenced, "human_use").await;
    assert_eq!(
        f["evidence"]["addresses_outside_allowed_ranges"],
        json!(["127.0.0.1"])
    );

    // Fix: the shared and misused credentials are revoked; the fence is corrected.
    revoke(&t, &shared, &shared_key).await;
    revoke(&t, &roamer, &roamer_key).await;
    revoke(&t, &human, &human_key).await;
    patch(
        &t,
        &fenced,
        json!({"allowed_source_cidrs": ["10.0.0.0/8", "127.0.0.0/8"]}),
    )
    .await;
    run(&t).await;
    assert_eq!(
        statuses(&t, &shared, "credential_multi_source").await,
        ["resolved"]
    );
    assert_eq!(
        statuses(&t, &roamer, "identity_multi_environment").await,
        ["resolved"]
    );
    assert_eq!(statuses(&t, &human, "human_use").await, ["resolved"]);
    assert_eq!(statuses(&t, &fenced, "human_use").await, ["resolved"]);
}

#[tokio::test]
async fn integrations_need_approval_and_timely_review() {
    let t = TestServer::start().await;
    let owner = t.create_owner("vendors").await;
    let integ = id(&t
        .create_identity(
            &owner,
            "crm-sync",
            json!({"kind": "integration", "vendor": "acme", "expires_at": t.in_days(80)}),
        )
        .await);
    run(&t).await;
    assert!(
        statuses(&t, &integ, "integration_unapproved_or_review_overdue")
            .await
            .is_empty()
    );
    t.clock.advance(Duration::days(8));
    run(&t).await;
    let f = one_open(&t, &integ, "integration_unapproved_or_review_overdue").await;
    assert_eq!(
        (f["owasp_nhi"].as_str(), f["nist_csf"].as_str()),
        (Some("NHI3:2025"), Some("PR.AA-05"))
    );
    assert_eq!(f["evidence"]["reason"], "unapproved");
    assert_eq!(f["evidence"]["vendor"], "acme");

    // A second administrator approves (separation of duties).
    let admins = t.create_owner("admins").await;
    let a2 = id(&t
        .create_identity(
            &admins,
            "second-admin",
            json!({"kind": "service_account", "scopes": ["steward:admin"], "default_scopes": ["steward:admin"], "audiences": []}),
        )
        .await);
    let (_, a2secret) = t.api_key(&a2).await;
    let (_, tok, _) = t.token_basic(&a2, &a2secret, &[]).await;
    let (s, v) = t
        .api_with(
            tok["access_token"].as_str().unwrap(),
            Method::POST,
            &format!("/v1/identities/{integ}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    run(&t).await;
    assert_eq!(
        statuses(&t, &integ, "integration_unapproved_or_review_overdue").await,
        ["resolved"]
    );

    // Its review date passes: raised again as a new finding; a new review date resolves it.
    patch(&t, &integ, json!({"review_due_at": t.in_days(1)})).await;
    t.clock.advance(Duration::days(2));
    run(&t).await;
    let f = one_open(&t, &integ, "integration_unapproved_or_review_overdue").await;
    assert_eq!(f["evidence"]["reason"], "review_overdue");
    assert_eq!(f["evidence"]["approved_by"], a2.as_str());
    patch(&t, &integ, json!({"review_due_at": t.in_days(30)})).await;
    run(&t).await;
    assert_eq!(
        statuses(&t, &integ, "integration_unapproved_or_review_overdue").await,
        ["resolved", "resolved"]
    );
}

#[tokio::test]
async fn accepted_risk_expires_and_exceptions_waive() {
    let t = TestServer::start().await;
    let (svc, key, _) = workload_with(&t, "svc", json!({})).await;
    run(&t).await;
    let f = one_open(&t, &svc, "static_api_key_where_federation_possible").await;
    let fid = id(&f);
    let (_, risk) = t
        .api(Method::GET, &format!("/v1/identities/{svc}/risk"), None)
        .await;
    assert_eq!(risk["score"], 6, "{risk}");

    // Validation.
    let accept = |body: Value| {
        let t = &t;
        let fid = fid.clone();
        async move {
            t.api(
                Method::POST,
                &format!("/v1/findings/{fid}/accept"),
                Some(body),
            )
            .await
        }
    };
    for bad in [
        json!({"until": t.in_days(10), "reason": " "}),
        json!({"until": t.in_days(-1), "reason": "x"}),
        json!({"until": t.in_days(1000), "reason": "x"}),
        json!({"until": "tomorrow", "reason": "x"}),
        json!({"until": t.in_days(10)}),
    ] {
        let (s, v) = accept(bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"], "invalid_request");
    }
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/findings/{}/accept", Uuid::now_v7()),
            Some(json!({"until": t.in_days(10), "reason": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) =
        accept(json!({"until": t.in_days(10), "reason": "moving to mTLS this quarter"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["accepted_by"], t.admin_id.as_str());
    assert_eq!(v["accepted_reason"], "moving to mTLS this quarter");
    let a = t
        .audit(&format!("identity={svc}&action=finding.accept"))
        .await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["reason"], "moving to mTLS this quarter");
    let (_, risk) = t
        .api(Method::GET, &format!("/v1/identities/{svc}/risk"), None)
        .await;
    assert_eq!(risk["score"], 3, "accepted risk counts half: {risk}");
    assert_eq!(risk["factors"][0]["accepted"], true);

    t.clock.advance(Duration::days(5));
    run(&t).await;
    assert_eq!(
        statuses(&t, &svc, "static_api_key_where_federation_possible").await,
        ["accepted"]
    );
    t.clock.advance(Duration::days(6));
    run(&t).await;
    assert_eq!(
        statuses(&t, &svc, "static_api_key_where_federation_possible").await,
        ["open"]
    );
    let reopened = t
        .audit(&format!("identity={svc}&action=finding.reopen"))
        .await;
    assert_eq!(reopened.len(), 1);

    // An approved exception naming the finding type waives it until the exception expires.
    let now = t.clock_now();
    let exception = ExceptionRecord {
        id: Uuid::now_v7(),
        identity_id: svc.parse().unwrap(),
        guard_rail: "static_api_key_where_federation_possible".into(),
        requested_by: "alice".into(),
        approved_by: "bob".into(),
        reason: "vendor SDK supports keys only".into(),
        created_at: now,
        expires_at: now + Duration::days(20),
    };
    t.server
        .state
        .store
        .commit(Change::new().with(Mutation::InsertException(exception.clone())))
        .await
        .unwrap();
    let r = run(&t).await;
    assert_eq!(r["waived"], 1, "{r}");
    let f = findings(
        &t,
        &format!("identity={svc}&type=static_api_key_where_federation_possible"),
    )
    .await;
    assert_eq!(f[0]["status"], "accepted");
    assert_eq!(f[0]["accepted_by"], "bob");
    assert!(
        f[0]["accepted_reason"]
            .as_str()
            .unwrap()
            .contains(&exception.id.to_string())
    );

    // Resolved findings cannot be accepted.
    revoke(&t, &svc, &key).await;
    run(&t).await;
    let (s, v) = accept(json!({"until": t.in_days(10), "reason": "late"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn findings_filters_pagination_and_scopes() {
    let t = TestServer::start().await;
    for n in 0..3 {
        workload_with(&t, &format!("svc-{n}"), json!({})).await;
    }
    let readers = t.create_owner("readers").await;
    let reader = id(&t
        .create_identity(
            &readers,
            "reader",
            json!({"kind": "service_account", "scopes": ["steward:read"], "default_scopes": ["steward:read"], "audiences": []}),
        )
        .await);
    let (_, reader_secret) = t.api_key(&reader).await;
    run(&t).await;

    let all = findings(&t, "").await;
    let statics = findings(&t, "type=static_api_key_where_federation_possible").await;
    assert_eq!(
        statics.len(),
        5,
        "3 workloads, the reader and the bootstrap admin"
    );
    // The bootstrap admin holds steward:admin in prod.
    let high = findings(&t, "severity=high").await;
    assert_eq!(high.len(), 1);
    assert_eq!(high[0]["type"], "wildcard_or_admin_scope_in_prod");
    assert_eq!(findings(&t, "owasp=NHI5:2025").await.len(), 1);
    assert_eq!(findings(&t, "nist=PR.AA-03").await.len(), 5);
    assert_eq!(findings(&t, "status=open").await.len(), all.len());
    assert!(findings(&t, "status=resolved").await.is_empty());
    assert_eq!(findings(&t, &format!("identity={reader}")).await.len(), 1);

    // Cursor pagination visits every finding once.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/findings?limit=2&cursor={c}"),
            None => "/v1/findings?limit=2".into(),
        };
        let (s, v) = t.api(Method::GET, &q, None).await;
        assert_eq!(s, StatusCode::OK);
        seen.extend(v["items"].as_array().unwrap().iter().map(id));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(id).collect::<Vec<_>>());

    let (s, v) = t
        .api(Method::GET, &format!("/v1/findings/{}", id(&all[0])), None)
        .await;
    assert_eq!((s, v["id"].clone()), (StatusCode::OK, all[0]["id"].clone()));
    let (s, _) = t
        .api(
            Method::GET,
            &format!("/v1/findings/{}", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for bad in [
        "status=closed",
        "severity=urgent",
        "cursor=nope",
        "colour=red",
    ] {
        let (s, v) = t
            .api(Method::GET, &format!("/v1/findings?{bad}"), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }

    // steward:read may look, not run or accept.
    let (_, tok, _) = t.token_basic(&reader, &reader_secret, &[]).await;
    let tok = tok["access_token"].as_str().unwrap();
    let (s, _) = t.api_with(tok, Method::GET, "/v1/findings", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t
        .api_with(tok, Method::POST, "/v1/findings/run", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = t
        .api_with(
            tok,
            Method::POST,
            &format!("/v1/findings/{}/accept", id(&all[0])),
            Some(json!({"until": t.in_days(3), "reason": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = t
        .http
        .get(t.url("/v1/findings"))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Each run leaves a summary in the audit log.
    let runs = t.audit("action=findings.run").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["details"]["raised"], all.len());
}

#[tokio::test]
async fn automatic_actions_dry_run_then_enforced() {
    let dormant_suspends = |dry: bool| {
        move |c: &mut steward_server::ServerConfig| {
            long_keys(c);
            c.findings.actions.dry_run = dry;
            c.findings.actions.rules = vec![ActionRule {
                finding: steward_core::findings::FindingType::Dormant,
                action: ActionKind::SuspendIdentity,
                grace_days: 7,
            }];
        }
    };
    for dry in [true, false] {
        let t = TestServer::start_with(dormant_suspends(dry)).await;
        let (idle, _, _) = workload_with(&t, "idle", json!({"expires_at": t.in_days(300)})).await;
        t.clock.advance(Duration::days(91));
        let r = run(&t).await;
        assert!(
            r["actions"].as_array().unwrap().is_empty(),
            "grace period: {r}"
        );
        t.clock.advance(Duration::days(8));
        let r = run(&t).await;
        assert_eq!(r["dry_run"], dry);
        let actions = r["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 1, "{r}");
        assert_eq!(actions[0]["action"], "suspend_identity");
        assert_eq!(actions[0]["identity_id"], idle.as_str());
        assert_eq!(actions[0]["executed"], !dry);
        let (_, i) = t
            .api(Method::GET, &format!("/v1/identities/{idle}"), None)
            .await;
        let suspensions = t
            .audit(&format!("identity={idle}&action=identity.suspend"))
            .await;
        if dry {
            assert_eq!(i["status"], "active", "dry run changes nothing");
            assert!(suspensions.is_empty());
        } else {
            assert_eq!(i["status"], "suspended");
            assert_eq!(suspensions.len(), 1);
            assert_eq!(suspensions[0]["actor"], "system:findings");
            assert!(
                suspensions[0]["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("automatic: dormant finding")
            );
            // Suspended identities are not judged dormant: the finding resolves.
            run(&t).await;
            assert_eq!(statuses(&t, &idle, "dormant").await, ["resolved"]);
        }
    }
}

#[tokio::test]
async fn entitlements_show_granted_vs_used_and_right_sizing_applies() {
    let t = TestServer::start_with(long_keys).await;
    let owner = t.create_owner("payments").await;
    let app = id(&t
        .create_identity(
            &owner,
            "payments-api",
            json!({"expires_at": t.in_days(300)}),
        )
        .await);
    // Young: usage is shown, but no reduction is suggested yet.
    let (_, secret) = t.api_key(&app).await;
    t.token_basic(&app, &secret, &[]).await;
    flush(&t).await;
    let (s, e) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{app}/entitlements"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["evidence"], "too_young");
    assert_eq!(e["window_days"], 90);
    assert_eq!(e["scopes"]["used"][0]["name"], "payments:read");
    assert_eq!(e["reduction_suggested"], false);

    t.clock.advance(Duration::days(91));
    for _ in 0..3 {
        t.token_basic(&app, &secret, &[]).await;
    }
    t.token_basic(
        &app,
        &secret,
        &[
            ("scope", "payments:read"),
            ("resource", "https://payments.internal"),
        ],
    )
    .await;
    flush(&t).await;
    let (_, e) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{app}/entitlements?days=30"),
            None,
        )
        .await;
    assert_eq!(e["evidence"], "sufficient", "{e}");
    assert_eq!(e["window_days"], 30);
    assert_eq!(
        e["scopes"]["granted"],
        json!(["payments:read", "payments:write"])
    );
    assert_eq!(e["scopes"]["unused"], json!(["payments:write"]));
    assert_eq!(e["scopes"]["suggested"], json!(["payments:read"]));
    // Three tokens named both audiences and one named only payments: four carried the scope.
    assert_eq!(e["scopes"]["used"][0]["uses"], 4);
    assert_eq!(
        e["audiences"]["suggested"],
        json!(["https://ledger.internal", "https://payments.internal"])
    );
    assert_eq!(e["suggested_default_scopes"], json!(["payments:read"]));
    assert_eq!(e["reduction_suggested"], true);
    let (s, _) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{app}/entitlements?days=0"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{}/entitlements", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Right-sizing is a PATCH with the suggestion (what `steward identity right-size --apply` sends).
    patch(
        &t,
        &app,
        json!({"scopes": e["scopes"]["suggested"], "audiences": e["audiences"]["suggested"]}),
    )
    .await;
    let upd = t
        .audit(&format!("identity={app}&action=identity.update"))
        .await;
    assert_eq!(
        upd.last().unwrap()["details"]["changes"]["scopes"]["after"],
        json!(["payments:read"])
    );
    let (_, e) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{app}/entitlements?days=30"),
            None,
        )
        .await;
    assert_eq!(e["reduction_suggested"], false, "{e}");
    // Tokens keep working with what is left.
    t.token_basic(&app, &secret, &[]).await;
}

#[tokio::test]
async fn risk_scores_and_posture_report() {
    let t = TestServer::start().await;
    let team = t.create_owner("gone-team").await;
    let orphan = id(&t.create_identity(&team, "orphan", json!({})).await);
    t.api_key(&orphan).await;
    let (calm, _, _) = workload_with(&t, "calm", json!({})).await;
    t.api(
        Method::POST,
        &format!("/v1/owners/{team}/depart"),
        Some(json!({})),
    )
    .await;
    run(&t).await;

    let (s, r) = t
        .api(Method::GET, &format!("/v1/identities/{orphan}/risk"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // orphaned (NHI1, high) 21 + static key (NHI4, low) 6.
    assert_eq!(r["score"], 27, "{r}");
    assert_eq!(r["factors"][0]["finding_type"], "orphaned");
    assert!(r["computed_at"].is_string());
    let (_, c) = t
        .api(Method::GET, &format!("/v1/identities/{calm}/risk"), None)
        .await;
    assert_eq!(c["score"], 6);
    let (s, _) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{}/risk", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, page) = t.api(Method::GET, "/v1/risk?limit=1", None).await;
    let first = page["items"][0]["score"].as_u64().unwrap();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = t
        .api(
            Method::GET,
            &format!("/v1/risk?limit=100&cursor={cursor}"),
            None,
        )
        .await;
    assert!(
        rest["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["score"].as_u64().unwrap() <= first)
    );
    let (_, high) = t.api(Method::GET, "/v1/risk?min_score=20", None).await;
    assert!(
        high["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["identity_id"] == orphan.as_str())
    );
    assert!(
        !high["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["identity_id"] == calm.as_str())
    );

    let (s, rep) = t.api(Method::GET, "/v1/report", None).await;
    assert_eq!(s, StatusCode::OK, "{rep}");
    assert_eq!(
        rep["inventory"]["identities"], 3,
        "admin, orphan, calm: {rep}"
    );
    assert_eq!(rep["hygiene"]["with_active_owner"]["count"], 2);
    assert_eq!(rep["hygiene"]["short_lived_credentials_only"]["count"], 0);
    assert_eq!(rep["findings"]["by_owasp_nhi"]["NHI1:2025"], 1);
    assert_eq!(rep["findings"]["by_nist_csf"]["PR.AA-03"], 3);
    assert_eq!(rep["top_risks"][0]["identity_id"], orphan.as_str());
    // Counted from the lifecycle tables (no campaign yet: zero, not "not available").
    assert_eq!(rep["reviews"]["open"], 0);
    assert_eq!(rep["reviews"]["open_campaigns"], 0);
    assert_eq!(rep["exceptions"]["pending_requests"], 0);
    let ages: u64 = rep["credential_age"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["api_keys"].as_u64().unwrap())
        .sum();
    assert_eq!(ages, 3);

    let token = t.admin_token().await;
    let get = |format: &str| {
        let req = t
            .http
            .get(t.url(&format!("/v1/report?format={format}")))
            .bearer_auth(&token);
        async move { req.send().await.unwrap() }
    };
    let md = get("md").await;
    assert_eq!(md.status(), StatusCode::OK);
    assert!(
        md.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let md = md.text().await.unwrap();
    assert!(
        md.contains("| NHI1:2025 | Improper Offboarding | 1 |"),
        "{md}"
    );
    assert!(md.contains("orphan"));
    let html = get("html").await;
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        html.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = html.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    assert!(!html.contains("<script"));
    assert_eq!(get("pdf").await.status(), StatusCode::BAD_REQUEST);
}

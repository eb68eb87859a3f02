//! Lifecycle controls end to end over HTTP: an access-review campaign through its deadline, a
//! JIT grant through its window, offboarding with its evidence (credentials, tokens,
//! certificates, JIT grants), vendor-wide revocation, owner departure with rotation flags and
//! the SCIM webhook, and two-person exception requests. Time moves with the manual clock only.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_crypto::x509::{self, KeyAlg};
use time::Duration;

use crate::harness::TestServer;

/// An identity allowed to call the admin API with `scopes`: (identity id, access token).
async fn principal(t: &TestServer, name: &str, scopes: &[&str]) -> (String, String) {
    let (id, secret) = principal_key(t, name, scopes).await;
    (id.clone(), bearer(t, &id, &secret).await)
}

/// A fresh access token for a principal (after the manual clock moved past the last one).
async fn bearer(t: &TestServer, id: &str, secret: &str) -> String {
    let (s, v, _) = t.token_basic(id, secret, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

/// An identity allowed to call the admin API with `scopes`: (identity id, API key).
async fn principal_key(t: &TestServer, name: &str, scopes: &[&str]) -> (String, String) {
    let owner = t.create_owner(&format!("team-{name}")).await;
    let i = t
        .create_identity(
            &owner,
            name,
            json!({"environment": "dev", "scopes": scopes, "default_scopes": scopes, "audiences": []}),
        )
        .await;
    let id = i["id"].as_str().unwrap().to_owned();
    let (_, secret) = t.api_key(&id).await;
    (id, secret)
}

/// The claims of a JWT, without verification (the server already verified it).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn introspect(t: &TestServer, token: &str) -> Value {
    let admin = t.admin_token().await;
    let r = t
        .http
        .post(t.url("/oauth2/introspect"))
        .bearer_auth(admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn actions(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap()
            )
        })
        .collect()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn review_campaign_end_to_end() {
    let t = TestServer::start().await;
    let a = t.create_owner("alpha").await;
    let b = t.create_owner("beta").await;
    let staging = |n: &str| json!({"environment": "staging", "purpose": format!("runs {n}")});
    let a1 = id_of(&t.create_identity(&a, "a-one", staging("a1")).await);
    let a2 = id_of(&t.create_identity(&a, "a-two", staging("a2")).await);
    let b1 = id_of(&t.create_identity(&b, "b-one", staging("b1")).await);
    let _outside = t.create_identity(&a, "a-prod", json!({})).await;
    let (reviewer, rtoken) = principal(&t, "reviewer", &["steward:review"]).await;
    // a1 takes a token with one of its two scopes; the token path records it per scope, and
    // the flush writes it to the usage store the review snapshot reads.
    let (_, a1_secret) = t.api_key(&a1).await;
    let (s, v, _) = t
        .token_basic(&a1, &a1_secret, &[("scope", "payments:read")])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    steward_server::jobs::flush_usage(&t.server.state).await;

    let deadline = t.in_days(7);
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/reviews",
            Some(json!({
                "name": "staging q3", "environment": "staging", "deadline": deadline,
                "default_action": "suspend", "reviewers": {a.clone(): reviewer.clone()},
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["items_total"], 3);
    let review = id_of(&v);

    // The reviewer sees the campaign and each item's snapshot.
    let (s, detail) = t
        .api_with(&rtoken, Method::GET, &format!("/v1/reviews/{review}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    let items = detail["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let item_of = |identity: &str| {
        items
            .iter()
            .find(|i| i["identity_id"] == identity)
            .unwrap()
            .clone()
    };
    let i1 = item_of(&a1);
    assert_eq!(i1["reviewer"], json!(reviewer));
    assert_eq!(
        i1["snapshot"]["scopes_granted"],
        json!(["payments:read", "payments:write"])
    );
    // Scopes used come from the per-scope usage store: granted vs used, and the difference.
    assert_eq!(
        i1["snapshot"]["scopes_used"]["scopes"],
        json!(["payments:read"])
    );
    assert_eq!(i1["snapshot"]["scopes_unused"], json!(["payments:write"]));
    assert!(i1["snapshot"]["last_used_at"].is_string(), "{i1}");
    let b_snapshot = item_of(&b1)["snapshot"].clone();
    assert_eq!(b_snapshot["scopes_used"]["scopes"], json!([]));
    assert_eq!(
        b_snapshot["scopes_unused"],
        json!(["payments:read", "payments:write"])
    );
    assert!(i1["snapshot"]["open_findings"].is_array());
    assert!(item_of(&b1).get("reviewer").is_none());

    // The assigned reviewer reduces a1's scopes; the reduction is applied to the identity.
    let (s, v) = t
        .api_with(
            &rtoken,
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(
                json!({"identity_id": a1, "decision": "reduce", "scopes": ["payments:read"],
                        "justification": "never writes"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "scopes_reduced");
    assert_eq!(v["decided_by"], json!(reviewer));
    let (_, ident) = t
        .api(Method::GET, &format!("/v1/identities/{a1}"), None)
        .await;
    assert_eq!(ident["scopes"], json!(["payments:read"]));

    // Not this reviewer's owner: refused and audited.
    let (s, v) = t
        .api_with(
            &rtoken,
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": b1, "decision": "keep", "justification": "looks fine"})),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("separation_of_duties"))
    );
    let denied = t.audit(&format!("identity={b1}&outcome=denied")).await;
    assert_eq!(actions(&denied), vec!["review.decide:denied"]);
    // A decision needs a justification; a reduction must narrow.
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": b1, "decision": "keep", "justification": "  "})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": b1, "decision": "reduce",
                        "scopes": ["payments:read", "payments:write"], "justification": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // An administrator decides b1.
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(
                json!({"identity_id": b1, "decision": "keep", "justification": "owner confirmed"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "kept");
    // Decided once.
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": b1, "decision": "revoke", "justification": "changed my mind"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Before the deadline the job changes nothing.
    assert_eq!(t.server.state.run_review_deadlines().await.unwrap(), 0);
    // At the deadline, a2 (undecided) gets the default: suspended.
    t.clock.advance(Duration::days(7));
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": a2, "decision": "keep", "justification": "late"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "no decision at or after the deadline"
    );
    assert_eq!(t.server.state.run_review_deadlines().await.unwrap(), 1);
    assert_eq!(t.server.state.run_review_deadlines().await.unwrap(), 0);
    let (_, ident) = t
        .api(Method::GET, &format!("/v1/identities/{a2}"), None)
        .await;
    assert_eq!(ident["status"], "suspended");
    let (_, detail) = t
        .api(Method::GET, &format!("/v1/reviews/{review}"), None)
        .await;
    assert_eq!(detail["review"]["status"], "closed");
    assert_eq!(detail["review"]["items_decided"], 3);
    let (s, list) = t.api(Method::GET, "/v1/reviews?status=closed", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // The evidence: JSON and CSV.
    let (s, e) = t
        .api(Method::GET, &format!("/v1/reviews/{review}/export"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let by_default: Vec<&Value> = e["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["by_default"] == true)
        .collect();
    assert_eq!(by_default.len(), 1);
    assert_eq!(by_default[0]["identity_id"], json!(a2));
    assert_eq!(by_default[0]["decided_by"], "system");
    assert_eq!(by_default[0]["outcome"], "suspended");
    let r = t
        .http
        .get(t.url(&format!("/v1/reviews/{review}/export?format=csv")))
        .bearer_auth(t.admin_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("review_id,review_name,deadline,item_id,identity_id"));
    let a1_row = lines.iter().find(|l| l.contains(&a1)).unwrap();
    assert!(a1_row.contains(",reduce,payments:read,,scopes_reduced,never writes,"));
    assert!(
        a1_row.contains(",payments:read payments:write,payments:read,"),
        "scopes granted, then used: {a1_row}"
    );

    // Every decision is in the audit log.
    let recs = t.audit("action=review.").await;
    assert_eq!(
        actions(&recs),
        vec![
            "review.create:success",
            "review.decide:success",
            "review.decide:denied",
            "review.decide:success",
            "review.default_applied:success",
            "review.close:success",
        ]
    );
    let a1_audit = t
        .audit(&format!("identity={a1}&action=identity.update"))
        .await;
    assert_eq!(a1_audit.len(), 1);
    assert_eq!(
        a1_audit[0]["details"]["changes"]["scopes"]["after"],
        json!(["payments:read"])
    );
}

#[tokio::test]
async fn an_identity_never_reviews_itself() {
    let t = TestServer::start().await;
    let (me, token) = principal(&t, "self-reviewer", &["steward:review"]).await;
    let (_, ident) = t
        .api(Method::GET, &format!("/v1/identities/{me}"), None)
        .await;
    let owner = ident["owner"].as_str().unwrap().to_owned();
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/reviews",
            Some(
                json!({"name": "self", "owner": owner, "deadline": t.in_days(1),
                        "reviewers": {owner.clone(): me.clone()}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let review = id_of(&v);
    let (s, v) = t
        .api_with(
            &token,
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": me, "decision": "keep", "justification": "I need it"})),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("separation_of_duties")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("own access"));
    // An administrator may; the longest justification still fits the identity's status reason.
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(
                json!({"identity_id": me, "decision": "revoke", "justification": "j".repeat(1000)}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "suspended");
    // Without steward:review or steward:admin nobody decides.
    let (_, plain) = principal(&t, "reader", &["steward:read"]).await;
    let (s, _) = t
        .api_with(
            &plain,
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": me, "decision": "keep", "justification": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An empty selection is refused.
    let (s, _) = t
        .api(
            Method::POST,
            "/v1/reviews",
            Some(json!({"name": "none", "vendor": "nobody", "deadline": t.in_days(1)})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn review_default_retire_offboards() {
    let t = TestServer::start().await;
    let owner = t.create_owner("gamma").await;
    let g = id_of(
        &t.create_identity(&owner, "g-one", json!({"environment": "staging"}))
            .await,
    );
    let (key, _) = t.api_key(&g).await;
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/reviews",
            Some(
                json!({"name": "retire unreviewed", "environment": "staging",
                        "deadline": t.in_days(1), "default_action": "retire"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    t.clock.advance(Duration::days(1));
    assert_eq!(t.server.state.run_review_deadlines().await.unwrap(), 1);
    let (_, ident) = t
        .api(Method::GET, &format!("/v1/identities/{g}"), None)
        .await;
    assert_eq!(ident["status"], "retired");
    let (s, ev) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{g}/offboarding"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ev}");
    assert_eq!(ev["credentials_revoked"], json!([key]));
    assert_eq!(ev["retired_by"], "system");
}

#[tokio::test]
async fn jit_grant_end_to_end() {
    let t = TestServer::start().await;
    let (wid, secret) = t.workload("ledger").await;
    let (requester, rkey) = principal_key(&t, "oncall", &["steward:jit"]).await;
    let (approver, akey) = principal_key(&t, "approver", &["steward:admin"]).await;
    let rtoken = bearer(&t, &requester, &rkey).await;
    let atoken = bearer(&t, &approver, &akey).await;

    // Not granted: refused as before.
    let refund = [("scope", "payments:read payments:refund")];
    let (s, v, _) = t.token_basic(&wid, &secret, &refund).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    // The on-call engineer requests; the requester cannot approve, nor can a non-admin.
    let (s, g) = t
        .api_with(
            &rtoken,
            Method::POST,
            "/v1/jit-requests",
            Some(
                json!({"identity_id": wid, "scopes": ["payments:refund"], "duration_secs": 1800,
                        "reason": "INC-42: refund double charges"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert_eq!(g["status"], "pending");
    assert_eq!(g["requested_by"], json!(requester));
    let grant = id_of(&g);
    let (s, _) = t
        .api_with(
            &rtoken,
            Method::POST,
            &format!("/v1/jit-requests/{grant}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Pending: still no extra scope.
    let (s, _, _) = t.token_basic(&wid, &secret, &refund).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Requested by an admin, the same admin cannot approve it either.
    let (s, own) = t
        .api_with(
            &atoken,
            Method::POST,
            "/v1/jit-requests",
            Some(
                json!({"identity_id": wid, "scopes": ["payments:void"], "duration_secs": 600,
                        "reason": "test"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = t
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{}/approve", id_of(&own)),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("separation_of_duties"))
    );
    // The requester withdraws their own request.
    let (s, v) = t
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{}/deny", id_of(&own)),
            Some(json!({"reason": "not needed"})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("denied")));

    // Someone else approves: the window runs 30 minutes from now.
    let (s, v) = t
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{grant}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["decided_by"], json!(approver));

    let (s, v, _) = t.token_basic(&wid, &secret, &refund).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "payments:read payments:refund");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(c["jit"], json!(grant));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    let info = introspect(&t, &token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["jit"], json!(grant));
    // Tokens without the extra scope carry no jit claim.
    let (_, v, _) = t.token_basic(&wid, &secret, &[]).await;
    assert!(
        claims(v["access_token"].as_str().unwrap())
            .get("jit")
            .is_none()
    );
    let issued = t.audit(&format!("identity={wid}&action=token.issue")).await;
    assert!(issued.iter().any(|r| r["details"]["jit"] == json!(grant)));

    // Near the end of the window, tokens end with the window.
    t.clock.advance(Duration::minutes(25));
    let (s, v, _) = t.token_basic(&wid, &secret, &refund).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["expires_in"], 300);
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);

    // After the window the grant is gone on its own: new tokens lack the scope.
    t.clock.advance(Duration::minutes(5));
    let (s, v, _) = t.token_basic(&wid, &secret, &refund).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (_, v) = t
        .api(Method::GET, &format!("/v1/jit-requests/{grant}"), None)
        .await;
    assert_eq!(v["status"], "expired");
    let (_, active) = t
        .api(
            Method::GET,
            &format!("/v1/jit-requests?identity_id={wid}&status=active"),
            None,
        )
        .await;
    assert_eq!(active["items"], json!([]));

    // Revoking a running grant ends its tokens at once (fresh tokens: the clock moved on).
    let rtoken = bearer(&t, &requester, &rkey).await;
    let atoken = bearer(&t, &approver, &akey).await;
    let (_, g2) = t
        .api_with(
            &rtoken,
            Method::POST,
            "/v1/jit-requests",
            Some(
                json!({"identity_id": wid, "scopes": ["payments:refund"], "duration_secs": 3600,
                        "reason": "INC-43"}),
            ),
        )
        .await;
    let g2 = id_of(&g2);
    let (s, _) = t
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{g2}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v, _) = t.token_basic(&wid, &secret, &refund).await;
    assert_eq!(s, StatusCode::OK);
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&t, &token).await["active"], true);
    let (s, v) = t
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{g2}/revoke"),
            Some(json!({"reason": "incident closed"})),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "{v}"
    );
    assert_eq!(introspect(&t, &token).await["active"], false);
    let (s, _, _) = t.token_basic(&wid, &secret, &refund).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Bounded windows; only extra scopes.
    for bad in [
        json!({"identity_id": wid, "scopes": ["payments:refund"], "duration_secs": 8 * 3600 + 1, "reason": "x"}),
        json!({"identity_id": wid, "scopes": ["payments:read"], "duration_secs": 600, "reason": "x"}),
        json!({"identity_id": wid, "scopes": ["payments:refund"], "duration_secs": 600, "reason": ""}),
    ] {
        let (s, v) = t
            .api_with(&rtoken, Method::POST, "/v1/jit-requests", Some(bad))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let recs = t.audit(&format!("identity={wid}&action=jit.")).await;
    assert_eq!(
        actions(&recs),
        vec![
            "jit.request:success",
            "jit.request:success",
            "jit.approve:denied",
            "jit.deny:success",
            "jit.approve:success",
            "jit.request:success",
            "jit.approve:success",
            "jit.revoke:success",
        ]
    );
}

#[tokio::test]
async fn jit_window_is_configurable() {
    let t = TestServer::start_with(|c| c.lifecycle.jit_max_secs = 900).await;
    let (wid, _) = t.workload("short").await;
    let ask = |secs: u32| json!({"identity_id": wid, "scopes": ["x:y"], "duration_secs": secs, "reason": "r"});
    let (s, _) = t
        .api(Method::POST, "/v1/jit-requests", Some(ask(901)))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = t
        .api(Method::POST, "/v1/jit-requests", Some(ask(900)))
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn offboarding_revokes_everything_with_evidence() {
    let t = TestServer::start_with(|c| c.insecure_http = false).await;
    let owner = t.create_owner("team-off").await;
    let id = id_of(&t.create_identity(&owner, "leaving", json!({})).await);
    let (k1, secret) = t.api_key(&id).await;
    let (k2, _) = t.api_key(&id).await;
    // A workload certificate, still valid.
    let kc = x509::generate_key_and_csr(KeyAlg::EcdsaP256, "w", &[], &[]).unwrap();
    let r = t
        .http
        .post(t.url("/v1/certificates"))
        .basic_auth(&id, Some(&secret))
        .json(&json!({"csr": kc.csr_pem}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let cert: Value = r.json().await.unwrap();
    let serial = cert["serial"].as_str().unwrap().to_owned();
    // A running JIT grant and a token using it.
    let (_, atoken) = principal(&t, "approver2", &["steward:admin"]).await;
    let (_, g) = t
        .api(
            Method::POST,
            "/v1/jit-requests",
            Some(
                json!({"identity_id": id, "scopes": ["ledger:write"], "duration_secs": 3600,
                        "reason": "migration"}),
            ),
        )
        .await;
    let grant = id_of(&g);
    let (s, _) = t
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{grant}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v, _) = t
        .token_basic(&id, &secret, &[("scope", "ledger:write")])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    // Not offboarded yet.
    let (s, _) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/offboarding"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    t.clock.advance(Duration::seconds(1));
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/retire"),
            Some(json!({"reason": "service decommissioned"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "retired");

    let (s, ev) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/offboarding"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ev}");
    let mut creds: Vec<String> = serde_json::from_value(ev["credentials_revoked"].clone()).unwrap();
    creds.sort();
    let mut want = vec![k1.clone(), k2.clone()];
    want.sort();
    assert_eq!(creds, want);
    assert_eq!(ev["certificates_revoked"][0]["serial"], json!(serial));
    assert_eq!(ev["jit_grants_revoked"], json!([grant]));
    assert_eq!(ev["reason"], "service decommissioned");
    // The evidence is an audit record with an inclusion proof.
    let seq = ev["audit_seq"].as_u64().unwrap();
    let (s, _) = t
        .api(Method::GET, &format!("/v1/audit/proof/{seq}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let retire = t
        .audit(&format!("identity={id}&action=identity.retire"))
        .await;
    assert_eq!(retire.len(), 1, "one evidence record");
    assert_eq!(retire[0]["seq"].as_u64(), Some(seq));

    // Everything is revoked: token, API keys, certificate (deny-list and CRL), JIT grant.
    assert_eq!(introspect(&t, &token).await["active"], false);
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let now = t.clock_now();
    assert!(
        t.server
            .state
            .pki
            .snapshot()
            .is_revoked(&serial, now)
            .is_some()
    );
    let (_, g) = t
        .api(Method::GET, &format!("/v1/jit-requests/{grant}"), None)
        .await;
    assert_eq!(g["status"], "revoked");
    let (_, list) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/credentials"),
            None,
        )
        .await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "revoked")
    );
    // Retired is final; the evidence is not written twice.
    let (s, _) = t
        .api(Method::POST, &format!("/v1/identities/{id}/retire"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn vendor_revoke_in_one_call() {
    let t = TestServer::start().await;
    let owner = t.create_owner("vendors").await;
    let integration = |vendor: &str| json!({"kind": "integration", "vendor": vendor, "expires_at": t.in_days(30)});
    let v1 = id_of(
        &t.create_identity(&owner, "acme-crm", integration("acme"))
            .await,
    );
    let v2 = id_of(
        &t.create_identity(&owner, "acme-billing", integration("acme"))
            .await,
    );
    let other = id_of(
        &t.create_identity(&owner, "globex-sync", integration("globex"))
            .await,
    );
    let (k1, _) = t.api_key(&v1).await;

    let (s, v) = t
        .api(
            Method::POST,
            "/v1/vendors/acme/revoke",
            Some(json!({"reason": "acme breach notice 2031-05"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["vendor"], "acme");
    let done = v["offboarded"].as_array().unwrap();
    assert_eq!(done.len(), 2);
    let e1 = done.iter().find(|e| e["identity_id"] == json!(v1)).unwrap();
    assert_eq!(e1["credentials_revoked"], json!([k1]));
    for id in [&v1, &v2] {
        let (_, i) = t
            .api(Method::GET, &format!("/v1/identities/{id}"), None)
            .await;
        assert_eq!(i["status"], "retired");
    }
    let (_, i) = t
        .api(Method::GET, &format!("/v1/identities/{other}"), None)
        .await;
    assert_eq!(i["status"], "pending_approval");
    let rec = t.audit("action=vendor.revoke").await;
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0]["reason"], "acme breach notice 2031-05");
    // Nothing left to revoke, and unknown vendors are not silently accepted.
    let (s, _) = t.api(Method::POST, "/v1/vendors/acme/revoke", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t
        .api(Method::POST, "/v1/vendors/initech/revoke", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn owner_departure_flags_keys_and_reassigns_later() {
    let t = TestServer::start().await;
    let a = t.create_owner("leaver").await;
    let b = t.create_owner("successor").await;
    let id = id_of(&t.create_identity(&a, "kept-app", json!({})).await);
    let (old, _) = t.api_key(&id).await;
    let (other, _) = t.api_key(&id).await;
    // Rotated before the departure: the old key is retiring (no flag), its successor is live.
    let (s, rot) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/credentials/{old}/rotate"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rot}");
    let fresh = rot["current"]["id"].as_str().unwrap().to_owned();

    let (s, v) = t
        .api(Method::POST, &format!("/v1/owners/{a}/depart"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["orphaned_identities"], json!([id]));
    let mut flagged: Vec<String> =
        serde_json::from_value(v["flagged_credentials"].clone()).unwrap();
    flagged.sort();
    let mut want = vec![other.clone(), fresh.clone()];
    want.sort();
    assert_eq!(flagged, want);

    // Visible in the credential view and queryable.
    let (_, creds) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/credentials"),
            None,
        )
        .await;
    let flag_of = |cid: &str| {
        creds["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == cid)
            .unwrap()
            .get("rotation_required")
            .cloned()
    };
    assert!(flag_of(&old).is_none());
    assert_eq!(flag_of(&other).unwrap()["reason"], "owner leaver departed");
    let (_, pending) = t
        .api(Method::GET, "/v1/credentials/rotation-required", None)
        .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 2);
    // Rotating a flagged key clears its flag (the successor is not flagged).
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{id}/credentials/{other}/rotate"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, pending) = t
        .api(
            Method::GET,
            &format!("/v1/credentials/rotation-required?identity_id={id}"),
            None,
        )
        .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 1);
    assert_eq!(pending["items"][0]["credential_id"], json!(fresh));

    // Orphans move to a successor in one audited step, later.
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/owners/{a}/depart"),
            Some(json!({"reassign_to": b})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["reassigned_identities"], json!([id]));
    let (_, i) = t
        .api(Method::GET, &format!("/v1/identities/{id}"), None)
        .await;
    assert_eq!(i["owner"], json!(b));
    let (s, _) = t
        .api(Method::POST, &format!("/v1/owners/{a}/depart"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let recs = t.audit(&format!("identity={id}")).await;
    let acts = actions(&recs);
    assert_eq!(
        acts.iter()
            .filter(|a| *a == "credential.rotation_required:success")
            .count(),
        2
    );
    assert!(acts.contains(&"identity.reassign:success".to_owned()));
    assert_eq!(t.audit("action=owner.reassign").await.len(), 1);
}

#[tokio::test]
async fn scim_webhook_departs_the_owner() {
    let t = TestServer::start().await;
    let owner = t.create_owner("carol").await;
    let id = id_of(&t.create_identity(&owner, "carol-bot", json!({})).await);
    let (key, _) = t.api_key(&id).await;
    let (_, scim) = principal(&t, "idp", &["steward:scim"]).await;
    let (_, reader) = principal(&t, "just-reads", &["steward:read"]).await;
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    let call = |method: Method, who: &str, tok: &str, body: Option<&Value>| {
        let mut r = t
            .http
            .request(method, t.url(&format!("/v1/scim/v2/Users/{who}")))
            .bearer_auth(tok);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        r.send()
    };
    let r = call(Method::PATCH, "carol@example.com", &reader, Some(&patch))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // By contact (the IdP's userName): departs the owner, SCIM User in return.
    let r = call(Method::PATCH, "carol@example.com", &scim, Some(&patch))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/scim+json");
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["id"], json!(owner));
    assert_eq!(user["active"], false);
    assert_eq!(
        user["schemas"][0],
        "urn:ietf:params:scim:schemas:core:2.0:User"
    );
    let (_, o) = t
        .api(Method::GET, &format!("/v1/owners/{owner}"), None)
        .await;
    assert_eq!(o["status"], "departed");
    let (_, creds) = t
        .api(
            Method::GET,
            &format!("/v1/identities/{id}/credentials"),
            None,
        )
        .await;
    assert_eq!(creds["items"][0]["id"], json!(key));
    assert!(creds["items"][0]["rotation_required"].is_object());
    let dep = t.audit("action=owner.depart").await;
    assert!(
        dep.last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("SCIM")
    );

    // Idempotent: DELETE by id after the PATCH is a 204 and departs nobody again.
    let r = call(Method::DELETE, &owner, &scim, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.audit("action=owner.depart").await.len(), dep.len());
    // Unknown users get a SCIM error.
    let r = call(Method::DELETE, "nobody@example.com", &scim, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let err: Value = r.json().await.unwrap();
    assert_eq!(
        err["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(err["status"], "404");
    // A DELETE departs too.
    let dave = t.create_owner("dave").await;
    let r = call(Method::DELETE, "dave", &scim, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, o) = t
        .api(Method::GET, &format!("/v1/owners/{dave}"), None)
        .await;
    assert_eq!(o["status"], "departed");
}

#[tokio::test]
async fn exception_requests_need_a_second_person() {
    let t = TestServer::start().await;
    let (wid, _) = t.workload("legacy").await;
    let (admin2, token2) = principal(&t, "second-admin", &["steward:admin"]).await;

    // Request without requested_by: pending until someone else approves.
    let (s, x) = t
        .api(
            Method::POST,
            "/v1/exceptions",
            Some(
                json!({"identity_id": wid, "guard_rail": "static_api_key_where_federation_possible",
                        "reason": "vendor SDK has no OIDC until Q3", "expires_at": t.in_days(30)}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    assert_eq!(x["status"], "pending");
    assert_eq!(x["active"], false);
    assert!(x.get("approved_by").is_none());
    let xid = id_of(&x);
    let (_, pending) = t
        .api(Method::GET, "/v1/exceptions?status=pending", None)
        .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 1);
    // Not waived yet: the findings engine reads only approved exceptions.
    let active = t
        .server
        .state
        .store
        .list_exceptions(&steward_store::ExceptionQuery {
            identity_id: None,
            active_at: Some(t.clock_now()),
        })
        .await
        .unwrap();
    assert!(active.is_empty());

    let (s, v) = t
        .api(Method::POST, &format!("/v1/exceptions/{xid}/approve"), None)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("separation_of_duties"))
    );
    let (s, v) = t
        .api_with(
            &token2,
            Method::POST,
            &format!("/v1/exceptions/{xid}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["approved_by"], json!(admin2));
    let active = t
        .server
        .state
        .store
        .list_exceptions(&steward_store::ExceptionQuery {
            identity_id: Some(wid.parse().unwrap()),
            active_at: Some(t.clock_now()),
        })
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        active[0].guard_rail,
        "static_api_key_where_federation_possible"
    );
    let (s, _) = t
        .api_with(
            &token2,
            Method::POST,
            &format!("/v1/exceptions/{xid}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Unknown names and too-long waivers are refused; a denial is recorded.
    for bad in [
        json!({"identity_id": wid, "guard_rail": "dormnt", "reason": "x", "expires_at": t.in_days(1)}),
        json!({"identity_id": wid, "guard_rail": "dormant", "reason": "x", "expires_at": t.in_days(91)}),
    ] {
        let (s, v) = t.api(Method::POST, "/v1/exceptions", Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (_, d) = t
        .api(
            Method::POST,
            "/v1/exceptions",
            Some(
                json!({"identity_id": wid, "guard_rail": "dormant", "reason": "seasonal",
                        "expires_at": t.in_days(10)}),
            ),
        )
        .await;
    let (s, v) = t
        .api_with(
            &token2,
            Method::POST,
            &format!("/v1/exceptions/{}/deny", id_of(&d)),
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("denied")));
    let (_, denied) = t
        .api(Method::GET, "/v1/exceptions?status=denied", None)
        .await;
    assert_eq!(denied["items"].as_array().unwrap().len(), 1);

    // Expired exceptions stop applying on their own.
    t.clock.advance(Duration::days(30));
    let (_, now_active) = t
        .api(
            Method::GET,
            &format!("/v1/exceptions?identity_id={wid}"),
            None,
        )
        .await;
    assert_eq!(now_active["items"], json!([]));
    let (_, all) = t
        .api(
            Method::GET,
            &format!("/v1/exceptions?identity_id={wid}&active=false"),
            None,
        )
        .await;
    assert_eq!(all["items"][0]["status"], "expired");
    let recs = t.audit(&format!("identity={wid}&action=exception.")).await;
    assert_eq!(
        actions(&recs),
        vec![
            "exception.request:success",
            "exception.approve:denied",
            "exception.approve:success",
            "exception.request:success",
            "exception.deny:success",
        ]
    );
}

/// Two real nodes on one PostgreSQL: a grant approved (and revoked) on node A takes effect on
/// node B's token path within a second, through `Notice::JitGrants`, with no cache TTL.
#[tokio::test]
async fn jit_grants_reach_other_nodes_within_a_second() {
    use std::time::Instant;

    use crate::harness::{drop_pg_database, fresh_pg_database};

    const ISSUER: &str = "https://steward.jit.test";
    let (url, db) = fresh_pg_database().await;
    let a = TestServer::start_with(|c| {
        c.database_url = Some(url.clone());
        c.issuer = Some(ISSUER.into());
    })
    .await;
    let master = std::fs::read_to_string(a.dir.path().join("master.key")).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b = steward_server::start(
        steward_server::ServerConfig {
            data_dir: b_dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: Some(url.clone()),
            issuer: Some(ISSUER.into()),
            insecure_http: true,
            ..Default::default()
        },
        steward_server::StartOptions {
            master_key: Some(master.trim().to_owned()),
            clock: None,
        },
    )
    .await
    .expect("node B starts on the same database");
    let b_url = b.base_url();
    let http = reqwest::Client::new();
    let on_b = |id: String, secret: String| {
        let http = http.clone();
        let b_url = b_url.clone();
        async move {
            let r = http
                .post(format!("{b_url}/oauth2/token"))
                .basic_auth(&id, Some(&secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "ops:break-glass"),
                ])
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let within = |what: &'static str| {
        let start = Instant::now();
        move || {
            let took = start.elapsed();
            assert!(
                took < std::time::Duration::from_secs(5),
                "{what} never reached node B"
            );
            took
        }
    };

    let (wid, secret) = a.workload("cluster-svc").await;
    // Node B loads (and caches) the grants: none yet.
    let (s, _) = on_b(wid.clone(), secret.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (approver, akey) = principal_key(&a, "cluster-approver", &["steward:admin"]).await;
    let (_, g) = a
        .api(
            Method::POST,
            "/v1/jit-requests",
            Some(
                json!({"identity_id": wid, "scopes": ["ops:break-glass"], "duration_secs": 3600,
                        "reason": "cluster incident"}),
            ),
        )
        .await;
    let grant = id_of(&g);
    let atoken = bearer(&a, &approver, &akey).await;
    let (s, _) = a
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{grant}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let clock = within("the approval");
    let token = loop {
        let (s, v) = on_b(wid.clone(), secret.clone()).await;
        if s == StatusCode::OK {
            break v["access_token"].as_str().unwrap().to_owned();
        }
        clock();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    let took = clock();
    assert!(
        took < std::time::Duration::from_secs(1),
        "approval took {took:?}"
    );
    assert_eq!(claims(&token)["jit"], json!(grant));

    // Revoked on A: node B's introspection of the elevated token follows.
    let (s, _) = a
        .api_with(
            &atoken,
            Method::POST,
            &format!("/v1/jit-requests/{grant}/revoke"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let clock = within("the revocation");
    let admin = a.admin_token().await;
    loop {
        let v: Value = http
            .post(format!("{b_url}/oauth2/introspect"))
            .bearer_auth(&admin)
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["active"] == false {
            break;
        }
        clock();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let took = clock();
    assert!(
        took < std::time::Duration::from_secs(1),
        "revocation took {took:?}"
    );

    b.shutdown().await;
    drop(a);
    drop_pg_database(&db).await;
}

/// The governance findings of an identity of one type (any status), oldest first.
async fn findings_of(t: &TestServer, identity: &str, kind: &str) -> Vec<Value> {
    let (s, v) = t
        .api(
            Method::GET,
            &format!("/v1/findings?identity={identity}&type={kind}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["items"].as_array().cloned().unwrap()
}

async fn report(t: &TestServer) -> Value {
    let (s, r) = t.api(Method::GET, "/v1/report?format=json", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r
}

/// The seams between the two halves of #7: an exception approved through the two-step flow
/// waives the finding type the findings engine raises (named as the findings API names it),
/// and the posture report counts open reviews and pending exception and JIT requests.
#[tokio::test]
async fn approved_exception_waives_the_finding_and_the_report_counts_lifecycle() {
    const TYPE: &str = "static_api_key_where_federation_possible";
    let t = TestServer::start().await;
    let (wid, _) = t.workload("legacy-sdk").await;
    let (_, token2) = principal(&t, "second-admin", &["steward:admin"]).await;

    let (s, v) = t.api(Method::POST, "/v1/findings/run", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let f = findings_of(&t, &wid, TYPE).await;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["status"], "open");

    let (s, x) = t
        .api(
            Method::POST,
            "/v1/exceptions",
            Some(json!({"identity_id": wid, "guard_rail": TYPE,
                        "reason": "vendor SDK has no OIDC until Q3", "expires_at": t.in_days(30)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    let xid = id_of(&x);
    let r = report(&t).await;
    assert_eq!(r["exceptions"]["pending_requests"], 1);
    assert_eq!(r["exceptions"]["active"], 0);
    assert_eq!(r["reviews"]["open"], 0);

    // Pending: the finding stays open. Approved by a second person: the next run waives it.
    let (s, _) = t.api(Method::POST, "/v1/findings/run", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(findings_of(&t, &wid, TYPE).await[0]["status"], "open");
    let (s, v) = t
        .api_with(
            &token2,
            Method::POST,
            &format!("/v1/exceptions/{xid}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = t.api(Method::POST, "/v1/findings/run", None).await;
    assert_eq!(s, StatusCode::OK);
    let f = findings_of(&t, &wid, TYPE).await;
    assert_eq!(f[0]["status"], "accepted", "{f:?}");
    assert!(
        f[0]["accepted_reason"].as_str().unwrap().contains(&xid),
        "{f:?}"
    );

    // A campaign over two identities, one decided; a pending JIT request.
    let owner = t.create_owner("gamma").await;
    let g1 = id_of(
        &t.create_identity(&owner, "g-one", json!({"environment": "staging"}))
            .await,
    );
    let _g2 = t
        .create_identity(&owner, "g-two", json!({"environment": "staging"}))
        .await;
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/reviews",
            Some(json!({"name": "staging", "environment": "staging", "deadline": t.in_days(7)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let review = id_of(&v);
    let (s, v) = t
        .api(
            Method::POST,
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"identity_id": g1, "decision": "keep", "justification": "in use"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/jit-requests",
            Some(
                json!({"identity_id": wid, "scopes": ["payments:refund"], "duration_secs": 600,
                        "reason": "INC-7"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let r = report(&t).await;
    assert_eq!(r["exceptions"]["pending_requests"], 0);
    assert_eq!(r["exceptions"]["active"], 1);
    assert_eq!(r["reviews"]["open_campaigns"], 1);
    assert_eq!(r["reviews"]["open"], 1);
    assert_eq!(r["reviews"]["overdue"], 0);
    assert_eq!(r["reviews"]["pending_jit_requests"], 1);
    let md = t
        .http
        .get(t.url("/v1/report?format=md"))
        .bearer_auth(t.admin_token().await)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        md.contains("1 open access-review campaigns with 1 undecided items"),
        "{md}"
    );
    assert!(md.contains("1 active exceptions, 0 exception requests pending approval"));
}

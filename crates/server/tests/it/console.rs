//! The web console at `/ui` over real HTTP: sign-in and sign-out, session expiry and continuous
//! re-checks, CSRF refusals of forged cross-site posts, CSP and security headers, and the pages
//! (inventory search and filters, identity detail and actions, findings, overview, audit).

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_store::{Change, FindingRecord, FindingStatus, Mutation};
use uuid::Uuid;

use crate::harness::TestServer;

pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser-like client of the console: keeps its cookies, follows no redirects, and sends the
/// `Origin` and `Sec-Fetch-Site` headers a browser sends on same-origin form posts.
pub struct ConsoleClient<'a> {
    pub t: &'a TestServer,
    http: reqwest::Client,
    pub cookies: Vec<(String, String)>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let start = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a csrf field")
            + 19;
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

impl<'a> ConsoleClient<'a> {
    pub fn new(t: &'a TestServer) -> Self {
        Self {
            t,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !attrs.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        self.absorb(&headers);
        Page {
            status,
            headers,
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(self.t.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// A form post with the given extra headers (a browser's same-origin headers by default).
    pub async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .http
            .post(self.t.url(path))
            .header("cookie", self.cookie_header())
            .form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        self.finish(resp).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.t.base.clone();
        self.post_with(
            path,
            form,
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await
    }

    /// Signs in with `client_id` and `secret`; returns the sign-in response.
    pub async fn sign_in_as(&mut self, client_id: &str, secret: &str) -> Page {
        let form = self.get("/ui/signin").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post(
            "/ui/signin",
            &[
                ("csrf", &csrf),
                ("client_id", client_id),
                ("client_secret", secret),
                ("next", "/ui/overview"),
            ],
        )
        .await
    }

    /// Signs in as the bootstrap admin and returns the session's CSRF token.
    pub async fn sign_in(&mut self) -> String {
        let (id, secret) = (self.t.admin_id.clone(), self.t.admin_secret.clone());
        let p = self.sign_in_as(&id, &secret).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        assert_eq!(p.location(), "/ui/overview");
        let overview = self.get("/ui/overview").await;
        assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
        overview.csrf()
    }
}

fn assert_security_headers(p: &Page, what: &str) {
    let h = |n: &str| {
        p.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {n} header"))
            .to_owned()
    };
    assert_eq!(h("content-security-policy"), CSP, "{what}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert_eq!(h("referrer-policy"), "same-origin", "{what}");
}

fn assert_html_fits_the_csp(p: &Page, what: &str) {
    assert!(!p.body.contains("style=\""), "{what}: inline style");
    for handler in [
        " onclick=",
        " onload=",
        " onsubmit=",
        " onerror=",
        "javascript:",
    ] {
        assert!(
            !p.body.contains(handler),
            "{what}: inline handler {handler}"
        );
    }
    for (i, _) in p.body.match_indices("<script") {
        let tag = &p.body[i..i + p.body[i..].find('>').unwrap()];
        assert!(
            tag.contains("src=\"/ui/assets/"),
            "{what}: inline script {tag}"
        );
    }
}

async fn audit_actions(t: &TestServer, prefix: &str) -> Vec<Value> {
    t.audit(&format!("action={prefix}")).await
}

#[tokio::test]
async fn pages_carry_the_csp_and_security_headers() {
    let t = TestServer::start().await;
    let mut c = ConsoleClient::new(&t);
    let signin = c.get("/ui/signin").await;
    assert_eq!(signin.status, StatusCode::OK);
    assert_security_headers(&signin, "sign-in page");
    assert_eq!(signin.headers["cache-control"], "no-store");
    assert!(
        signin.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_html_fits_the_csp(&signin, "sign-in page");
    let csrf = c.sign_in().await;
    assert!(!csrf.is_empty());

    let id = t.admin_id.clone();
    for (path, status) in [
        ("/ui/overview", StatusCode::OK),
        ("/ui/identities", StatusCode::OK),
        (&format!("/ui/identities/{id}"), StatusCode::OK),
        ("/ui/findings", StatusCode::OK),
        ("/ui/audit", StatusCode::OK),
        ("/ui/reviews", StatusCode::OK),
        ("/ui/jit", StatusCode::OK),
        ("/ui/trust-policies", StatusCode::OK),
        ("/ui/no-such-page", StatusCode::NOT_FOUND),
    ] {
        let p = c.get(path).await;
        assert_eq!(p.status, status, "{path}: {}", p.body);
        assert_security_headers(&p, path);
        assert_eq!(p.headers["cache-control"], "no-store", "{path}");
        assert!(p.body.starts_with("<!doctype html>"), "{path}");
        assert_html_fits_the_csp(&p, path);
    }
    // Empty sections say how to fill them, with the real navigation around them.
    let reviews = c.get("/ui/reviews").await;
    assert!(reviews.body.contains(r#"id="no-campaigns""#));
    assert!(
        reviews
            .body
            .contains(r#"href="/ui/reviews" aria-current="page""#)
    );
    // Assets: right types (nosniff), cacheable, under the same CSP.
    for (path, ty) in [
        ("/ui/assets/console.css", "text/css"),
        ("/ui/assets/console.js", "text/javascript"),
    ] {
        let p = c.get(path).await;
        assert_eq!(p.status, StatusCode::OK);
        assert!(p.headers["content-type"].to_str().unwrap().starts_with(ty));
        assert_eq!(p.headers["cache-control"], "public, max-age=300");
        assert_security_headers(&p, path);
    }
    // `/ui` itself leads to the overview.
    let root = c.get("/ui").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.location(), "/ui/overview");
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_sign_in() {
    let t = TestServer::start().await;
    let mut c = ConsoleClient::new(&t);
    for path in ["/ui/overview", "/ui/identities?q=pay", "/ui/audit"] {
        let p = c.get(path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            p.location().starts_with("/ui/signin?next="),
            "{}",
            p.location()
        );
    }
    let p = c.get("/ui/identities?q=pay").await;
    assert_eq!(p.location(), "/ui/signin?next=%2Fui%2Fidentities%3Fq%3Dpay");
    // A forged or stale cookie is no session either.
    c.cookies.push(("steward_console".into(), "A".repeat(43)));
    assert_eq!(c.get("/ui/overview").await.status, StatusCode::SEE_OTHER);
    // And no action happens without one.
    let p = c
        .post(
            &format!("/ui/identities/{}/lifecycle", t.admin_id),
            &[("action", "suspend"), ("csrf", "x")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let (_, v) = t
        .api(Method::GET, &format!("/v1/identities/{}", t.admin_id), None)
        .await;
    assert_eq!(v["status"], "active");
}

#[tokio::test]
async fn sign_in_and_sign_out_end_to_end() {
    let t = TestServer::start().await;
    let mut c = ConsoleClient::new(&t);
    let form = c.get("/ui/signin?next=%2Fui%2Faudit").await;
    // The form token rides in a strict cookie too (double submit).
    let pre = form
        .set_cookies()
        .into_iter()
        .find(|s| s.starts_with("steward_signin="))
        .expect("sign-in token cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(pre.contains(attr), "{pre}");
    }
    let csrf = form.csrf();
    let (id, secret) = (t.admin_id.clone(), t.admin_secret.clone());
    let p = c
        .post(
            "/ui/signin",
            &[
                ("csrf", &csrf),
                ("client_id", &id),
                ("client_secret", &secret),
                ("next", "/ui/audit"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), "/ui/audit");
    let session = p
        .set_cookies()
        .into_iter()
        .find(|s| s.starts_with("steward_console="))
        .expect("session cookie");
    // Plain-HTTP loopback mode: no `__Host-` prefix (it needs HTTPS), but still Secure, which
    // browsers accept for http://127.0.0.1 (the Chromium test checks that it does).
    for attr in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Domain"));
    let token = c.cookie("steward_console").unwrap();
    assert_eq!(token.len(), 43);
    // The sign-in token is spent.
    assert!(c.cookie("steward_signin").is_none());

    let overview = c.get("/ui/overview").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("Signed in as <strong"));
    assert!(overview.body.contains("steward-admin") || overview.body.contains(&id[..8]));

    let signins = audit_actions(&t, "console.signin").await;
    let ok = signins.iter().find(|e| e["outcome"] == "success").unwrap();
    assert_eq!(ok["actor"], id);
    assert_eq!(ok["identity_id"], id);
    assert_eq!(ok["details"]["method"], "client_secret_post");
    // The session id never reaches the audit log or the database in the clear.
    let all = t.audit("").await;
    assert!(!serde_json::to_string(&all).unwrap().contains(&token));

    // Sign out: the session ends on the server, not only in the browser.
    let csrf = overview.csrf();
    let out = c.post("/ui/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/ui/signin?signed_out=1");
    assert!(
        out.set_cookies()
            .iter()
            .any(|s| s.starts_with("steward_console=;") && s.contains("Max-Age=0"))
    );
    let mut replay = ConsoleClient::new(&t);
    replay.cookies.push(("steward_console".into(), token));
    let p = replay.get("/ui/overview").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.location().starts_with("/ui/signin"));
    let outs = audit_actions(&t, "console.signout").await;
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["actor"], id);
}

#[tokio::test]
async fn sign_in_refusals_are_precise_and_audited() {
    let t = TestServer::start().await;
    let (workload, key) = t.workload("payments-api").await;

    // Wrong key: the token endpoint's client authentication refuses and audits it.
    let mut c = ConsoleClient::new(&t);
    let id = t.admin_id.clone();
    let p = c.sign_in_as(&id, &key).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("Sign-in failed"));
    assert!(c.cookie("steward_console").is_none());
    // An identity without steward:admin authenticates but may not use the console.
    let p = c.sign_in_as(&workload, &key).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("steward:admin"));
    assert!(c.cookie("steward_console").is_none());
    let events = audit_actions(&t, "console.signin").await;
    assert!(
        events.iter().any(|e| e["outcome"] == "failure"
            && e["reason"] == "client secret belongs to another client"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e["outcome"] == "denied"
        && e["actor"] == workload.as_str()
        && e["reason"] == "identity does not hold steward:admin"));

    // A sign-in post without the form's token (login CSRF) is refused before authentication.
    let mut bare = ConsoleClient::new(&t);
    let secret = t.admin_secret.clone();
    let p = bare
        .post(
            "/ui/signin",
            &[
                ("csrf", &"B".repeat(43)),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(bare.cookie("steward_console").is_none());
    let refusals = audit_actions(&t, "console.request").await;
    assert!(
        refusals
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("sign-in form token"))
    );
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited() {
    let t = TestServer::start_with(|c| c.console.signin_attempts = 3).await;
    let mut c = ConsoleClient::new(&t);
    let id = t.admin_id.clone();
    for _ in 0..3 {
        let p = c
            .sign_in_as(&id, "stw_k_not-a-real-key-but-the-right-length-000000")
            .await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    }
    // The fourth attempt is refused even with the right key.
    let secret = t.admin_secret.clone();
    let p = c.sign_in_as(&id, &secret).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.body);
    assert!(p.headers.contains_key("retry-after"));
    assert!(c.cookie("steward_console").is_none());
    let denied: Vec<Value> = audit_actions(&t, "console.signin")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(
        denied[0]["reason"],
        "too many sign-in attempts from this address"
    );
}

#[tokio::test]
async fn forged_cross_site_posts_are_refused() {
    let t = TestServer::start().await;
    let (target, _) = t.workload("payments-api").await;
    let mut c = ConsoleClient::new(&t);
    let csrf = c.sign_in().await;
    let path = format!("/ui/identities/{target}/lifecycle");
    let base = t.base.clone();
    let same = [("origin", base.as_str()), ("sec-fetch-site", "same-origin")];

    // No token, a wrong token, a token from another session.
    let p = c.post_with(&path, &[("action", "suspend")], &same).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = c
        .post_with(
            &path,
            &[("action", "suspend"), ("csrf", &"A".repeat(43))],
            &same,
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let mut other = ConsoleClient::new(&t);
    let other_csrf = other.sign_in().await;
    assert_ne!(other_csrf, csrf);
    let p = c
        .post_with(
            &path,
            &[("action", "suspend"), ("csrf", &other_csrf)],
            &same,
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // The right token, but posted from another site.
    let form = [("action", "suspend"), ("csrf", csrf.as_str())];
    let p = c
        .post_with(&path, &form, &[("origin", "https://evil.example")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("foreign origin"));
    let p = c.post_with(&path, &form, &[("origin", "null")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = c
        .post_with(&path, &form, &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_security_headers(&p, "refusal");
    // A cross-site browser sends no SameSite=Strict cookie: no session, nothing happens.
    let mut cookieless = ConsoleClient::new(&t);
    let p = cookieless.post_with(&path, &form, &same).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);

    let (_, v) = t
        .api(Method::GET, &format!("/v1/identities/{target}"), None)
        .await;
    assert_eq!(v["status"], "active", "no forged post took effect");
    let refusals = audit_actions(&t, "console.request").await;
    assert!(refusals.len() >= 6, "{refusals:?}");
    assert!(refusals.iter().all(|e| e["outcome"] == "denied"));
    assert!(
        refusals
            .iter()
            .any(|e| e["reason"] == "the form carries no CSRF token"
                && e["actor"] == t.admin_id.as_str())
    );

    // The genuine post works, through the same service and audit as the API.
    let p = c
        .post(
            &path,
            &[
                ("action", "suspend"),
                ("csrf", &csrf),
                ("reason", "incident 42"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(
        p.location(),
        format!("/ui/identities/{target}?done=suspend")
    );
    let (_, v) = t
        .api(Method::GET, &format!("/v1/identities/{target}"), None)
        .await;
    assert_eq!(v["status"], "suspended");
    let ev = t
        .audit(&format!("action=identity.suspend&identity={target}"))
        .await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], t.admin_id.as_str());
    assert_eq!(ev[0]["reason"], "incident 42");
    let detail = c
        .get(&format!("/ui/identities/{target}?done=suspend"))
        .await;
    assert!(detail.body.contains(r#"id="identity-status">suspended<"#));
    assert!(detail.body.contains("The identity was suspended"));
}

#[tokio::test]
async fn sessions_end_on_idle_and_absolute_timeouts() {
    let t = TestServer::start().await;
    let mut c = ConsoleClient::new(&t);
    c.sign_in().await;
    // Activity inside the idle window keeps the session (recorded at most once a minute).
    for _ in 0..3 {
        t.clock.advance(time::Duration::minutes(10));
        assert_eq!(c.get("/ui/overview").await.status, StatusCode::OK);
    }
    t.clock
        .advance(time::Duration::minutes(15) + time::Duration::seconds(1));
    let p = c.get("/ui/overview").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.location().contains("expired=1"), "{}", p.location());
    let signin = c.get(p.location()).await;
    assert!(signin.body.contains("Your session has ended"));
    let ended = audit_actions(&t, "console.session_end").await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["reason"], "idle timeout");
    assert_eq!(ended[0]["actor"], "system");
    assert_eq!(ended[0]["identity_id"], t.admin_id.as_str());

    // However active, a session ends 8 hours after sign-in.
    c.sign_in().await;
    let mut steps = 0;
    loop {
        t.clock.advance(time::Duration::minutes(10));
        steps += 1;
        let p = c.get("/ui/overview").await;
        if p.status == StatusCode::SEE_OTHER {
            break;
        }
        assert!(steps <= 48, "the session outlived its absolute timeout");
    }
    assert_eq!(steps, 48);
    let ended = audit_actions(&t, "console.session_end").await;
    assert_eq!(ended.last().unwrap()["reason"], "absolute timeout");
}

#[tokio::test]
async fn sessions_end_when_the_identity_or_its_key_stops_working() {
    let t = TestServer::start().await;
    let owner = t.create_owner("team-ops").await;
    let ops = t
        .create_identity(
            &owner,
            "ops-admin",
            json!({"scopes": ["steward:admin"], "default_scopes": ["steward:admin"], "audiences": []}),
        )
        .await;
    let ops_id = ops["id"].as_str().unwrap().to_owned();
    let (cred, key) = t.api_key(&ops_id).await;
    let mut c = ConsoleClient::new(&t);
    let p = c.sign_in_as(&ops_id, &key).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(c.get("/ui/overview").await.status, StatusCode::OK);

    // Suspended through the API: the very next console request is refused.
    let (s, _) = t
        .api(
            Method::POST,
            &format!("/v1/identities/{ops_id}/suspend"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c.get("/ui/overview").await.status, StatusCode::SEE_OTHER);
    let ended = audit_actions(&t, "console.session_end").await;
    assert_eq!(ended.last().unwrap()["reason"], "identity is suspended");

    // Resumed, signed in again, then the key it signed in with is revoked.
    t.api(
        Method::POST,
        &format!("/v1/identities/{ops_id}/resume"),
        None,
    )
    .await;
    let mut c = ConsoleClient::new(&t);
    assert_eq!(
        c.sign_in_as(&ops_id, &key).await.status,
        StatusCode::SEE_OTHER
    );
    let (s, _) = t
        .api(
            Method::DELETE,
            &format!("/v1/identities/{ops_id}/credentials/{cred}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c.get("/ui/overview").await.status, StatusCode::SEE_OTHER);
    let ended = audit_actions(&t, "console.session_end").await;
    assert_eq!(
        ended.last().unwrap()["reason"],
        "credential has been revoked"
    );
}

#[tokio::test]
async fn inventory_searches_filters_and_pages() {
    let t = TestServer::start().await;
    let owner = t.create_owner("team-payments").await;
    let other = t.create_owner("team-data").await;
    let mut ids = Vec::new();
    for (o, name, extra) in [
        (&owner, "payments-api", json!({"purpose": "charges cards"})),
        (
            &owner,
            "payments-worker",
            json!({"purpose": "settles batches"}),
        ),
        (
            &other,
            "ledger",
            json!({"kind": "pipeline", "environment": "dev", "purpose": "nightly payments export"}),
        ),
    ] {
        let v = t.create_identity(o, name, extra).await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut c = ConsoleClient::new(&t);
    c.sign_in().await;
    let names = |p: &Page| {
        ["payments-api", "payments-worker", "ledger", "steward-admin"]
            .into_iter()
            .filter(|n| p.body.contains(&format!(">{n}</a></th>")))
            .collect::<Vec<_>>()
    };

    let all = c.get("/ui/identities").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(names(&all).len(), 4, "{:?}", names(&all));
    // Name prefix (the default), case-insensitively typed.
    assert_eq!(
        names(&c.get("/ui/identities?q=PAY").await),
        ["payments-api", "payments-worker"]
    );
    // Substring of name or purpose.
    assert_eq!(
        names(&c.get("/ui/identities?q=payments&match=contains").await),
        ["payments-api", "payments-worker", "ledger"]
    );
    assert_eq!(
        names(&c.get("/ui/identities?q=batch&match=contains").await),
        ["payments-worker"]
    );
    assert_eq!(
        names(&c.get("/ui/identities?kind=pipeline").await),
        ["ledger"]
    );
    assert_eq!(
        names(&c.get("/ui/identities?environment=dev").await),
        ["ledger"]
    );
    assert_eq!(
        names(&c.get(&format!("/ui/identities?owner={other}")).await),
        ["ledger"]
    );
    t.api(
        Method::POST,
        &format!("/v1/identities/{}/suspend", ids[1]),
        None,
    )
    .await;
    let suspended = c.get("/ui/identities?status=suspended").await;
    assert_eq!(names(&suspended), ["payments-worker"]);
    assert!(
        suspended
            .body
            .contains(r#"<option value="suspended" selected>"#)
    );
    // Empty filter fields (as a form submits them) mean "any".
    let p = c
        .get("/ui/identities?q=&match=prefix&kind=&environment=&owner=&status=")
        .await;
    assert_eq!(names(&p).len(), 4);

    // Pages of one, walked by cursor, keep the filters.
    let mut seen = Vec::new();
    let mut next = Some("/ui/identities?q=pay&limit=1".to_owned());
    while let Some(path) = next {
        let p = c.get(&path.replace("&#38;", "&")).await;
        assert_eq!(p.status, StatusCode::OK);
        seen.extend(names(&p));
        next = p.body.find(r#"id="next-page""#).map(|_| {
            let at = p.body.find(r#"<a href="/ui/identities?"#).unwrap();
            let rest = &p.body[at..];
            let links: Vec<&str> = rest
                .match_indices("<a href=\"")
                .map(|(i, _)| {
                    let s = &rest[i + 9..];
                    &s[..s.find('"').unwrap()]
                })
                .filter(|l| l.contains("cursor="))
                .collect();
            links[0].to_owned()
        });
        assert!(seen.len() <= 2, "{seen:?}");
    }
    assert_eq!(seen, ["payments-api", "payments-worker"]);

    // An id goes straight to the identity; bad values are a 400 page.
    let p = c.get(&format!("/ui/identities?q={}", ids[2])).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), format!("/ui/identities/{}", ids[2]));
    assert_eq!(
        c.get("/ui/identities?kind=robot").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        c.get("/ui/identities?cursor=zz").await.status,
        StatusCode::BAD_REQUEST
    );
    let risk = c.get("/ui/identities?risk=extreme").await;
    assert_eq!(risk.status, StatusCode::BAD_REQUEST);
    assert!(
        risk.body
            .contains("risk must be critical, high, medium or low")
    );
    // The risk filter: nothing is scored yet, so every identity is in the lowest band.
    assert!(all.body.contains(r#"id="risk""#));
    let high = c.get("/ui/identities?risk=high").await;
    assert_eq!(high.status, StatusCode::OK);
    assert_eq!(
        high.body.matches("/ui/identities/0").count(),
        0,
        "{}",
        high.body
    );
    let low = c.get("/ui/identities?risk=low&q=payments").await;
    assert!(low.body.contains("payments-api") && low.body.contains(r#"title="risk band low">0<"#));
}

#[tokio::test]
async fn identity_detail_escapes_and_rotates_a_key_once() {
    let t = TestServer::start().await;
    let owner = t.create_owner("team-payments").await;
    let v = t
        .create_identity(
            &owner,
            "payments-api",
            json!({"purpose": "<script>alert(1)</script> & friends", "labels": {"tier": "1"}}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (cred, secret) = t.api_key(&id).await;
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::OK);

    let mut c = ConsoleClient::new(&t);
    c.sign_in().await;
    let p = c.get(&format!("/ui/identities/{id}")).await;
    assert_eq!(p.status, StatusCode::OK);
    // Escaped (askama writes numeric entities), never raw.
    assert!(
        p.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; friends")
    );
    assert!(!p.body.contains("<script>alert"));
    assert!(p.body.contains("team-payments"));
    assert!(p.body.contains("tier=1"));
    assert!(p.body.contains("payments:write"));
    // Scopes granted vs used: nothing used yet, and too young for a right-sizing suggestion.
    assert!(p.body.contains(r#"id="scope-usage-table""#));
    assert!(p.body.contains("(evidence: too_young)"));
    // Credentials with state and age; recent audit records of this identity, newest first.
    assert!(
        p.body
            .contains(r#"<span class="badge active">active</span>"#)
    );
    let audit = &p.body[p.body.find(r#"id="recent-audit""#).unwrap()..];
    let issue = audit.find("token.issue").unwrap();
    let created = audit.find("identity.create").unwrap();
    assert!(issue < created, "newest first");
    assert!(p.body.contains(r#"id="action-suspend""#));
    assert!(p.body.contains(r#"id="action-retire""#));
    assert!(!p.body.contains(r#"id="action-resume""#));
    assert_eq!(
        c.get(&format!("/ui/identities/{}", Uuid::now_v7()))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Rotation: the new key is shown once, in a no-store response, and works.
    let csrf = p.csrf();
    let r = c
        .post(
            &format!("/ui/identities/{id}/credentials/{cred}/rotate"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let start = r.body.find(r#"id="client-secret">"#).unwrap() + 19;
    let new_secret = &r.body[start..start + r.body[start..].find('<').unwrap()];
    assert!(new_secret.starts_with("stw_"), "{new_secret}");
    assert_ne!(new_secret, secret);
    let (s, v, _) = t.token_basic(&id, new_secret, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The detail page does not show it again.
    let again = c.get(&format!("/ui/identities/{id}")).await;
    assert!(!again.body.contains(new_secret));
    assert!(
        again
            .body
            .contains(r#"<span class="badge retiring">retiring</span>"#)
    );
    let ev = t
        .audit(&format!("action=credential.rotate&identity={id}"))
        .await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], t.admin_id.as_str());
    assert!(
        !serde_json::to_string(&t.audit("").await)
            .unwrap()
            .contains(new_secret)
    );
}

fn finding(identity: &str, n: u128, nhi: &str, severity: &str) -> FindingRecord {
    let now = time::OffsetDateTime::now_utc();
    FindingRecord {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        identity_id: Some(Uuid::parse_str(identity).unwrap()),
        kind: if nhi == "NHI2:2025" {
            "secret_leaked"
        } else {
            "dormant"
        }
        .into(),
        severity: severity.into(),
        status: FindingStatus::Open,
        owasp_nhi: nhi.into(),
        nist_csf: "PR.AA-01".into(),
        evidence: json!({"note": "<b>seen</b>"}),
        dedup_key: format!("test:{n}"),
        first_seen: now,
        last_seen: now,
        resolved_at: None,
        version: 1,
        accepted_until: None,
        accepted_reason: None,
        accepted_by: None,
    }
}

#[tokio::test]
async fn overview_and_findings_show_counts_charts_and_owasp_ids() {
    let t = TestServer::start().await;
    let (app, secret) = t.workload("payments-api").await;
    for _ in 0..5 {
        let (s, _, _) = t.token_basic(&app, &secret, &[]).await;
        assert_eq!(s, StatusCode::OK);
    }
    t.server
        .state
        .store
        .commit(
            Change::new()
                .with(Mutation::InsertFinding(finding(
                    &app,
                    1,
                    "NHI2:2025",
                    "critical",
                )))
                .with(Mutation::InsertFinding(finding(
                    &app,
                    2,
                    "NHI1:2025",
                    "low",
                ))),
        )
        .await
        .unwrap();
    let mut c = ConsoleClient::new(&t);
    c.sign_in().await;
    let p = c.get("/ui/overview").await;
    assert_eq!(p.status, StatusCode::OK);
    // The bootstrap admin and the workload.
    assert!(p.body.contains(r#"id="total-identities">2<"#), "{}", p.body);
    assert!(p.body.contains(r#"id="open-findings">2<"#));
    // 5 workload tokens plus the harness's admin tokens, all in the current hour.
    let start = p.body.find(r#"id="tokens-24h">"#).unwrap() + 16;
    let tokens: u64 = p.body[start..start + p.body[start..].find('<').unwrap()]
        .parse()
        .unwrap();
    let issued = t.audit("action=token.issue&outcome=success").await.len() as u64;
    assert!(tokens >= 5 && tokens <= issued, "{tokens} of {issued}");
    assert_eq!(
        p.body
            .matches(r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart"#)
            .count(),
        6
    );
    assert!(
        p.body
            .contains(r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart line-chart""#)
    );
    for (id, name) in [
        ("NHI1:2025", "Improper Offboarding"),
        ("NHI10:2025", "Human Use of NHI"),
    ] {
        assert!(
            p.body
                .contains(&format!("<th scope=\"row\">{id}</th><td>{name}</td>")),
            "{id}"
        );
    }
    assert!(p.body.contains("<title>NHI2:2025: 1</title>"));
    assert!(p.body.contains("<title>critical: 1</title>"));

    let f = c.get("/ui/findings?status=open").await;
    assert_eq!(f.status, StatusCode::OK);
    assert!(
        f.body
            .contains(">secret_leaked</a></th><td class=\"num\">1</td>")
    );
    assert!(
        f.body
            .contains(r#"<abbr title="Secret Leakage">NHI2:2025</abbr>"#)
    );
    assert!(f.body.contains("&#60;b&#62;seen&#60;/b&#62;") && !f.body.contains("<b>seen"));
    let only = c.get("/ui/findings?type=dormant").await;
    assert!(only.body.contains("dormant") && !only.body.contains("<td>secret_leaked</td>"));
    assert_eq!(
        c.get("/ui/findings?status=bogus").await.status,
        StatusCode::BAD_REQUEST
    );
    // Accepting a finding asks for a time-bound exception that a second operator approves.
    let csrf = f.csrf();
    let dormant = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002).to_string();
    let bad = c
        .post(
            &format!("/ui/findings/{dormant}/accept"),
            &[("csrf", &csrf), ("until", "2001-01-01"), ("reason", "x")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let far = c
        .post(
            &format!("/ui/findings/{dormant}/accept"),
            &[("csrf", &csrf), ("until", "2099-01-01"), ("reason", "x")],
        )
        .await;
    assert_eq!(far.status, StatusCode::BAD_REQUEST);
    assert!(far.body.contains("at most 90 days"), "{}", far.body);
    let until = (t.clock_now() + time::Duration::days(30))
        .date()
        .to_string();
    let a = c
        .post(
            &format!("/ui/findings/{dormant}/accept"),
            &[
                ("csrf", &csrf),
                ("until", &until),
                ("reason", "vendor fix due"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/ui/findings?status=open&done=requested");
    let f = c.get("/ui/findings?status=open&done=requested").await;
    assert!(f.body.contains(r#"id="done""#));
    assert!(f.body.contains(r#"id="pending-exceptions""#));
    // The requester cannot approve their own request: no button, and a forged post is refused.
    assert!(
        f.body
            .contains("Your request: another operator approves it.")
    );
    let (s, pending) = t
        .api(Method::GET, "/v1/exceptions?status=pending", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{pending}");
    let req = pending["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["items"][0]["guard_rail"], "dormant");
    let own = c
        .post(
            &format!("/ui/exceptions/{req}/approve"),
            &[("csrf", &f.csrf())],
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    // A second operator approves: the exception is active until the date given.
    let (other, other_secret) = second_admin(&t, "second-operator").await;
    let mut c2 = ConsoleClient::new(&t);
    c2.sign_in_as(&other, &other_secret).await;
    let f2 = c2.get("/ui/findings").await;
    assert!(f2.body.contains(&format!("id=\"approve-{req}\"")));
    let ok = c2
        .post(
            &format!("/ui/exceptions/{req}/approve"),
            &[("csrf", &f2.csrf())],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // The refused self-approval is on record, and so is the approval.
    let refused = t.audit("action=exception.approve&outcome=denied").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["actor"], t.admin_id.as_str());
    let ev = t.audit("action=exception.approve&outcome=success").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], other.as_str());
    let (_, active) = t.api(Method::GET, "/v1/exceptions", None).await;
    assert!(
        active["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == req.as_str() && e["guard_rail"] == "dormant"),
        "{active}"
    );
    // Every finding type is waivable, so the form is offered on each open finding of an identity.
    assert!(
        c.get("/ui/findings?status=open")
            .await
            .body
            .contains("/accept\"")
    );
}

/// A second identity allowed to sign in to the console: (identity id, API key).
async fn second_admin(t: &TestServer, name: &str) -> (String, String) {
    let owner = t.create_owner(&format!("team-{name}")).await;
    let i = t
        .create_identity(
            &owner,
            name,
            json!({"environment": "dev", "scopes": ["steward:admin"], "default_scopes": ["steward:admin"], "audiences": []}),
        )
        .await;
    let id = i["id"].as_str().unwrap().to_owned();
    let (_, secret) = t.api_key(&id).await;
    (id, secret)
}

/// Runs one SQL statement on the test server's database, outside Steward.
async fn tamper(t: &TestServer, sqlite: &str, postgres: &str) {
    use sqlx::Connection;
    match &t.server.state.config.database_url {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(postgres.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        None => {
            let path = t.dir.path().join("steward.db");
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sqlite.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn audit_page_filters_and_verifies_the_chain() {
    let t = TestServer::start().await;
    t.workload("payments-api").await;
    let mut c = ConsoleClient::new(&t);
    c.sign_in().await;
    let p = c.get("/ui/audit").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains("<strong>Verified:</strong> records 1–"),
        "{}",
        p.body
    );
    // Newest first: the sign-in comes before the identity's creation.
    let signin = p.body.find("<td>console.signin</td>").unwrap();
    let create = p.body.find("<td>identity.create</td>").unwrap();
    assert!(signin < create);
    let only = c.get("/ui/audit?action=console.&outcome=success").await;
    assert!(only.body.contains("<td>console.signin</td>"));
    assert!(!only.body.contains("<td>identity.create</td>"));
    let since = c.get("/ui/audit?since=2999-01-01").await;
    assert!(since.body.contains("No audit records match."));
    assert_eq!(
        c.get("/ui/audit?since=yesterday").await.status,
        StatusCode::BAD_REQUEST
    );
    let page1 = c.get("/ui/audit?action=identity.").await;
    assert!(page1.body.contains("<td>identity.create</td>"));
}

#[tokio::test]
async fn audit_page_reports_a_tampered_record() {
    let t = TestServer::start().await;
    t.workload("payments-api").await;
    // A checkpoint covers the honest log; then record 3 is rewritten behind Steward's back.
    t.server.state.checkpoint().await.unwrap();
    tamper(
        &t,
        "UPDATE audit SET actor = 'mallory' WHERE seq = 3",
        "UPDATE audit SET actor = 'mallory' WHERE seq = 3",
    )
    .await;
    let mut c = ConsoleClient::new(&t);
    c.sign_in().await;
    let p = c.get("/ui/audit").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Verification FAILED"), "{}", p.body);
    assert!(p.body.contains("record 3 was modified"));
    assert!(p.body.contains("(first bad record: 3)"));
}

/// The value of the first `attr="…"` in `body` that starts with `prefix`.
fn attr_starting(body: &str, attr: &str, prefix: &str) -> String {
    let needle = format!("{attr}=\"{prefix}");
    let start = body
        .find(&needle)
        .unwrap_or_else(|| panic!("no {needle} in {body}"))
        + attr.len()
        + 2;
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn reviews_jit_right_sizing_and_trust_explain_from_the_console() {
    let t = TestServer::start_with(|c| c.registry.max_key_age_days = 365).await;
    let owner = t.create_owner("team-billing").await;
    let app = t
        .create_identity(
            &owner,
            "billing-sync",
            json!({"expires_at": t.in_days(300)}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, secret) = t.api_key(&app).await;
    // Ninety-one days on, the identity has used payments:read only: right-sizing is suggested.
    t.clock.advance(time::Duration::days(91));
    for _ in 0..3 {
        let (s, v, _) = t.token_basic(&app, &secret, &[]).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    steward_server::jobs::flush_usage(&t.server.state).await;
    let mut c = ConsoleClient::new(&t);
    c.sign_in().await;

    // Access review: the item shows granted vs unused scopes; a decision needs a justification.
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/reviews",
            Some(json!({"name": "billing q4", "owner": owner, "deadline": t.in_days(7)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let review = v["id"].as_str().unwrap().to_owned();
    let p = c.get("/ui/reviews").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("billing q4") && p.body.contains("0 / 1"));
    assert!(p.body.contains("<li>payments:write</li>"), "{}", p.body);
    assert!(p.body.contains(r#"name="decision" value="reduce""#));
    let action = attr_starting(&p.body, "action", &format!("/ui/reviews/{review}/items/"));
    let csrf = p.csrf();
    let bad = c
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("decision", "keep"),
                ("justification", " "),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("justification"), "{}", bad.body);
    let (_, r) = t
        .api(Method::GET, &format!("/v1/reviews/{review}"), None)
        .await;
    assert_eq!(
        r["review"]["items_decided"], 0,
        "a refused decision changes nothing"
    );
    let ok = c
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("decision", "keep"),
                ("justification", "billing needs both until the Q1 split"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(
        ok.location(),
        format!("/ui/reviews?review={review}&done=keep")
    );
    let p = c.get(ok.location()).await;
    assert!(p.body.contains(r#"id="done""#) && p.body.contains(r#"id="all-decided""#));
    let (_, r) = t
        .api(Method::GET, &format!("/v1/reviews/{review}"), None)
        .await;
    assert_eq!(r["review"]["items_decided"], 1);
    assert_eq!(r["items"][0]["decision"], "keep");
    let ev = t.audit("action=review.decide").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], t.admin_id.as_str());

    // Right-sizing from the identity page: the scopes shrink to the one used.
    let p = c.get(&format!("/ui/identities/{app}")).await;
    assert!(p.body.contains(r#"id="right-size""#), "{}", p.body);
    assert!(p.body.contains(r#"id="suggested-scopes">payments:read<"#));
    let rs = c
        .post(
            &format!("/ui/identities/{app}/right-size"),
            &[("csrf", &p.csrf())],
        )
        .await;
    assert_eq!(rs.status, StatusCode::SEE_OTHER, "{}", rs.body);
    let p = c.get(rs.location()).await;
    assert!(p.body.contains("Right-sized") && p.body.contains(r#"id="no-right-size""#));
    let (_, i) = t
        .api(Method::GET, &format!("/v1/identities/{app}"), None)
        .await;
    assert_eq!(i["scopes"], json!(["payments:read"]));
    assert_eq!(t.audit("action=identity.update").await.len(), 1);
    // Nothing left to reduce: a second post is refused, not applied twice.
    let again = c
        .post(
            &format!("/ui/identities/{app}/right-size"),
            &[("csrf", &p.csrf())],
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);

    // JIT: the requester sees their own request without an approve button; another operator
    // approves it, and then revokes it.
    let (s, g) = t
        .api(
            Method::POST,
            "/v1/jit-requests",
            Some(
                json!({"identity_id": app, "scopes": ["payments:refund"], "duration_secs": 600,
                        "reason": "INC-7: refunds"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let grant = g["id"].as_str().unwrap().to_owned();
    let p = c.get("/ui/jit").await;
    assert!(p.body.contains("INC-7: refunds"));
    assert!(!p.body.contains(&format!("id=\"approve-{grant}\"")));
    let (other, other_secret) = second_admin(&t, "second-operator").await;
    let mut c2 = ConsoleClient::new(&t);
    c2.sign_in_as(&other, &other_secret).await;
    let p = c2.get("/ui/jit").await;
    assert!(p.body.contains(&format!("id=\"approve-{grant}\"")));
    let a = c2
        .post(
            &format!("/ui/jit/{grant}/approve"),
            &[("csrf", &p.csrf()), ("reason", "on call")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let p = c2.get("/ui/jit?done=approve").await;
    assert!(p.body.contains(r#"id="jit-active""#) && p.body.contains(&format!("revoke-{grant}")));
    let (_, g) = t
        .api(Method::GET, &format!("/v1/jit-requests/{grant}"), None)
        .await;
    assert_eq!(g["status"], "approved");
    assert_eq!(g["decided_by"], other.as_str());
    let r = c2
        .post(&format!("/ui/jit/{grant}/revoke"), &[("csrf", &p.csrf())])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let (_, g) = t
        .api(Method::GET, &format!("/v1/jit-requests/{grant}"), None)
        .await;
    assert_eq!(g["status"], "revoked");
    assert_eq!(
        c2.post(&format!("/ui/jit/{grant}/bogus"), &[("csrf", &p.csrf())])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Trust policies: the list, and the explain tool on a token that fails one rule condition
    // and on one that passes. The token is never echoed back.
    let iss = crate::federation::Issuer::start().await;
    let (s, pol) = t
        .api(
            Method::POST,
            "/v1/trust-policies",
            Some(crate::federation::github_policy(&iss, &app)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{pol}");
    let policy = pol["id"].as_str().unwrap().to_owned();
    let p = c.get("/ui/trust-policies").await;
    assert!(p.body.contains("deploy-app") && p.body.contains(&iss.url));
    let mut claims = crate::federation::github_claims(&t, &iss.url);
    claims["ref"] = json!("refs/heads/dev");
    claims["environment"] = json!("staging");
    let token = iss.mint("EdDSA", "ed-1", &claims);
    let e = c
        .post(
            "/ui/trust-policies/explain",
            &[("csrf", &p.csrf()), ("policy", &policy), ("token", &token)],
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.body);
    assert!(e.body.contains(r#"id="verdict">refused<"#), "{}", e.body);
    assert!(e.body.contains("refs/heads/dev") && e.body.contains(r#"id="explain-rules""#));
    assert!(!e.body.contains(&token));
    let good = iss.mint(
        "EdDSA",
        "ed-1",
        &crate::federation::github_claims(&t, &iss.url),
    );
    let e = c
        .post(
            "/ui/trust-policies/explain",
            &[("csrf", &p.csrf()), ("policy", &policy), ("token", &good)],
        )
        .await;
    assert!(e.body.contains(r#"id="verdict">accepted<"#), "{}", e.body);
    let none = c
        .post(
            "/ui/trust-policies/explain",
            &[("csrf", &p.csrf()), ("policy", "nope"), ("token", &good)],
        )
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
}

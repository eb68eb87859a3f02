//! The console in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven over
//! WebDriver): sign in, find an identity by search, suspend it (and the API agrees), decide a
//! review item (and the audit log agrees), sign out; once more with JavaScript disabled. A failed step saves a screenshot and the page source and prints where.
//!
//! Skips with a loud message only when the browser is not installed and
//! `STEWARD_REQUIRE_CHROMIUM` is unset (CI sets it). `STEWARD_CONSOLE_SCREENSHOTS=DIR` saves a
//! screenshot of every page visited, for looking at the console.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestServer;
use crate::webdriver::{Browser, Driver, find_binary};

fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_binary(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing = format!(
                "chromium: {}, chromedriver: {}",
                c.map_or("missing".into(), |p| p.display().to_string()),
                d.map_or("missing".into(), |p| p.display().to_string())
            );
            if std::env::var_os("STEWARD_REQUIRE_CHROMIUM").is_some() {
                panic!(
                    "STEWARD_REQUIRE_CHROMIUM is set but the browser is not installed ({missing}); \
                     install it with: apt-get install -y chromium chromium-driver"
                );
            }
            eprintln!(
                "\n************************************************************************\n\
                 SKIPPED: the console's Chromium end-to-end test did not run ({missing}).\n\
                 Install it with `apt-get install -y chromium chromium-driver`, or set\n\
                 STEWARD_REQUIRE_CHROMIUM=1 to make a missing browser a failure.\n\
                 ************************************************************************\n"
            );
            None
        }
    }
}

/// Where failure artefacts go: the target's test temp dir.
fn artefact_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

struct Journey<'a> {
    t: &'a TestServer,
    b: &'a Browser,
    step: &'static str,
    shots: Option<PathBuf>,
    shot_n: usize,
}

impl Journey<'_> {
    fn at(&mut self, step: &'static str) {
        eprintln!("console e2e: {step}");
        self.step = step;
    }

    async fn shot(&mut self, name: &str) {
        if let Some(dir) = &self.shots {
            self.shot_n += 1;
            let path = dir.join(format!("{:02}-{name}.png", self.shot_n));
            let _ = self.b.screenshot(&path).await;
        }
    }

    async fn goto(&mut self, path: &str) -> Result<(), String> {
        self.b.goto(&self.t.url(path)).await
    }
}

async fn sign_in(j: &mut Journey<'_>) -> Result<(), String> {
    j.at("open the console: redirected to sign-in");
    j.goto("/ui/overview").await?;
    j.b.wait_for_url("the sign-in page", |u| u.contains("/ui/signin"))
        .await?;
    j.shot("signin").await;
    j.at("sign in with the admin credential");
    let id = j.b.find("#client_id").await?;
    j.b.type_into(&id, &j.t.admin_id).await?;
    let secret = j.b.find("#client_secret").await?;
    j.b.type_into(&secret, &j.t.admin_secret).await?;
    j.b.click(&j.b.find("#signin").await?).await?;
    j.b.wait_for_url("the overview", |u| u.ends_with("/ui/overview"))
        .await?;
    let total = j.b.text(&j.b.find("#total-identities").await?).await?;
    if total != "4" {
        return Err(format!("overview shows {total} identities, expected 4"));
    }
    j.shot("overview").await;
    Ok(())
}

async fn journey(j: &mut Journey<'_>, target: &str) -> Result<(), String> {
    sign_in(j).await?;

    j.at("the browser holds the session in a Secure, HttpOnly, SameSite=Strict cookie");
    let cookies = j.b.cookies().await?;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "steward_console")
        .ok_or_else(|| format!("Chromium did not keep the session cookie: {cookies:?}"))?;
    if session["secure"] != true || session["httpOnly"] != true || session["sameSite"] != "Strict" {
        return Err(format!("session cookie attributes: {session}"));
    }

    j.at("find the identity by searching its name");
    j.goto("/ui/identities").await?;
    let q = j.b.find("#q").await?;
    j.b.type_into(&q, "payments-a").await?;
    j.b.click(&j.b.find("#apply").await?).await?;
    j.b.wait_for_url("the search results", |u| u.contains("q=payments-a"))
        .await?;
    let rows = j.b.find_all("#identities tbody tr").await?;
    if rows.len() != 1 {
        return Err(format!("search found {} rows, expected 1", rows.len()));
    }
    j.shot("search").await;
    let link =
        j.b.find(&format!("#identities a[href='/ui/identities/{target}']"))
            .await?;
    j.b.click(&link).await?;
    j.b.wait_for_url("the identity page", |u| {
        u.ends_with(&format!("/ui/identities/{target}"))
    })
    .await?;
    j.shot("identity").await;

    j.at("suspend it");
    let reason = j.b.find("#reason-suspend").await?;
    j.b.type_into(&reason, "suspicious use, ticket 7").await?;
    j.b.click(&j.b.find("#action-suspend").await?).await?;
    j.b.wait_for_url("the suspended identity", |u| u.contains("done=suspend"))
        .await?;
    let status = j.b.text(&j.b.find("#identity-status").await?).await?;
    if status != "suspended" {
        return Err(format!("the page shows status {status}"));
    }
    j.shot("suspended").await;

    j.at("the API shows it suspended, suspended by the signed-in admin");
    let (s, v) =
        j.t.api(Method::GET, &format!("/v1/identities/{target}"), None)
            .await;
    if s != StatusCode::OK || v["status"] != "suspended" {
        return Err(format!("API: {s} {v}"));
    }
    let ev =
        j.t.audit(&format!("action=identity.suspend&identity={target}"))
            .await;
    if ev.len() != 1 || ev[0]["actor"] != j.t.admin_id.as_str() {
        return Err(format!("audit: {ev:?}"));
    }

    j.at("decide a review item");
    // The campaign (made at set-up) holds one item: ledger-export. Keep it, with a reason.
    j.b.click(&j.b.find("nav a[href='/ui/reviews']").await?)
        .await?;
    j.b.wait_for_url("the reviews page", |u| u.ends_with("/ui/reviews"))
        .await?;
    let why =
        j.b.find("form.decision input[name='justification']")
            .await?;
    j.b.type_into(&why, "exports are still audited monthly")
        .await?;
    j.b.click(
        &j.b.find("form.decision button[name='decision'][value='keep']")
            .await?,
    )
    .await?;
    j.b.wait_for_url("the decided review", |u| u.contains("done=keep"))
        .await?;
    j.b.find("#done").await?;
    j.b.find("#all-decided").await?;
    j.shot("review-decided").await;
    let ev = j.t.audit("action=review.decide").await;
    if ev.len() != 1 || ev[0]["actor"] != j.t.admin_id.as_str() {
        return Err(format!("review decision audit: {ev:?}"));
    }

    j.at("sign out: the session ends on the server");
    j.b.click(&j.b.find("#signout").await?).await?;
    j.b.wait_for_url("the sign-in page", |u| {
        u.contains("/ui/signin?signed_out=1")
    })
    .await?;
    if !j.b.source().await?.contains("You have signed out.") {
        return Err("no sign-out notice".into());
    }
    j.goto("/ui/overview").await?;
    j.b.wait_for_url("the sign-in page again", |u| u.contains("/ui/signin"))
        .await?;
    if j.t.audit("action=console.signout").await.len() != 1 {
        return Err("sign-out was not audited".into());
    }
    Ok(())
}

/// With JavaScript off, every page still reads and the search form still works.
async fn journey_without_js(j: &mut Journey<'_>, target: &str) -> Result<(), String> {
    sign_in(j).await?;
    j.at("without JavaScript: search and read an identity");
    j.goto("/ui/identities?q=payments&match=contains").await?;
    let rows = j.b.find_all("#identities tbody tr").await?;
    if rows.len() != 2 {
        return Err(format!("search found {} rows, expected 2", rows.len()));
    }
    j.goto(&format!("/ui/identities/{target}")).await?;
    j.b.find("#credentials").await?;
    j.goto("/ui/audit").await?;
    let verify = j.b.text(&j.b.find("#verify-result").await?).await?;
    if !verify.starts_with("Verified:") {
        return Err(format!("audit verification shows: {verify}"));
    }
    j.shot("audit-no-js").await;
    Ok(())
}

async fn run(t: &TestServer, driver: &Driver, chromium: &Path, target: &str, js: bool) {
    let b = match Browser::open_with(driver, chromium, js).await {
        Ok(b) => b,
        Err(e) => panic!("cannot open a Chromium session: {e}"),
    };
    let shots = std::env::var_os("STEWARD_CONSOLE_SCREENSHOTS").map(PathBuf::from);
    let mut j = Journey {
        t,
        b: &b,
        step: "start",
        shots,
        shot_n: if js { 0 } else { 50 },
    };
    let result = if js {
        journey(&mut j, target).await
    } else {
        journey_without_js(&mut j, target).await
    };
    if let Err(e) = result {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let png = artefact_dir().join(format!("console-e2e-{stamp}.png"));
        let html = artefact_dir().join(format!("console-e2e-{stamp}.html"));
        let shot = b.screenshot(&png).await;
        let _ = std::fs::write(&html, b.source().await.unwrap_or_default());
        let url = b.current_url().await.unwrap_or_default();
        let step = j.step;
        b.close().await;
        panic!(
            "console e2e failed at step '{}' (JavaScript {}): {e}\n  page: {url}\n  screenshot: {} ({})\n  page source: {}",
            step,
            if js { "on" } else { "off" },
            png.display(),
            match shot {
                Ok(()) => "saved".to_owned(),
                Err(e) => format!("not saved: {e}"),
            },
            html.display()
        );
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_searches_suspends_and_signs_out() {
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let t = TestServer::start().await;
    let owner = t.create_owner("team-payments").await;
    let ledger = t.create_owner("team-ledger").await;
    let mut target = String::new();
    for (owner, name, purpose) in [
        (&owner, "payments-api", "charges cards for checkout"),
        (&owner, "payments-worker", "settles payments overnight"),
        (&ledger, "ledger-export", "exports the ledger"),
    ] {
        let v = t
            .create_identity(owner, name, json!({ "purpose": purpose }))
            .await;
        if name == "payments-api" {
            target = v["id"].as_str().unwrap().to_owned();
        }
    }
    // An access review of the ledger team's one identity, decided in the browser.
    let (s, v) = t
        .api(
            Method::POST,
            "/v1/reviews",
            Some(json!({"name": "ledger q4", "owner": ledger, "deadline": t.in_days(7)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["items_total"], 1);
    let driver = Driver::start(&chromedriver)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    run(&t, &driver, &chromium, &target, true).await;
    run(&t, &driver, &chromium, &target, false).await;
}

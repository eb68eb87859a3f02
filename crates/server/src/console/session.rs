//! Console sign-in, sessions and sign-out. An operator signs in with an admin identity's client id
//! and API key, checked by the same client authentication as `/oauth2/token`; the session lives
//! server-side (by hash, shared by nodes) and is re-checked against the identity on every request.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use steward_core::{Identity, Outcome};
use steward_store::{Change, ConsoleSession, Mutation};
use time::OffsetDateTime;
use uuid::Uuid;

use super::csrf::{random_token, tokens_match, well_formed};
use super::{Console, ConsoleError, ConsoleForm, ConsoleQuery, render};
use crate::http::extract::{ReqCtx, request_ctx};
use crate::service::Ctx;
use crate::service::tokens::Form;

/// The scope an identity needs to use the console.
pub const ADMIN_SCOPE: &str = "steward:admin";
/// A session's activity is recorded at most this often (so the idle timeout has this granularity).
const TOUCH_EVERY_SECS: i64 = 60;

/// The session cookie's name: `__Host-` prefixed over HTTPS (Secure, Path=/, no Domain, so no
/// other host or path can set or shadow it).
fn session_cookie(https: bool) -> &'static str {
    if https {
        "__Host-steward_console"
    } else {
        "steward_console"
    }
}

/// The sign-in form's token cookie (double submit, before a session exists).
fn signin_cookie(https: bool) -> &'static str {
    if https {
        "__Host-steward_signin"
    } else {
        "steward_signin"
    }
}

/// A `Set-Cookie` value: always `Secure; HttpOnly; SameSite=Strict; Path=/`.
fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    let v = format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}; Secure; HttpOnly; SameSite=Strict"
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name`, if the request carries one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Where to go after sign-in: only console paths, never another site.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && n.len() <= 2000
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/ui/signin")
                && !n.starts_with("/ui/signout")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/ui/overview",
    }
}

/// A signed-in operator, re-checked on this request.
pub struct Operator {
    /// Audit context: the actor is the admin identity's id.
    pub ctx: Ctx,
    pub identity: Arc<Identity>,
    /// The synchronizer token every form of this session must carry.
    pub csrf: String,
}

impl Operator {
    /// Checks a form's synchronizer token; a missing or wrong one is refused (403) and audited.
    pub async fn check_csrf(
        &self,
        console: &Console,
        path: &str,
        given: Option<&str>,
    ) -> Result<(), ConsoleError> {
        let reason = match given {
            None | Some("") => "the form carries no CSRF token",
            Some(t) if tokens_match(&self.csrf, t) => return Ok(()),
            Some(_) => "the form's CSRF token does not belong to this session",
        };
        console.audit_refusal(&self.ctx, path, reason).await;
        Err(ConsoleError::forbidden(format!(
            "This form was refused: {reason}. Reload the page and try again."
        )))
    }
}

fn to_signin(parts: &Parts, expired: bool) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|_| parts.method == axum::http::Method::GET)
        .map(|p| safe_next(Some(p)).to_owned())
        .unwrap_or_else(|| "/ui/overview".into());
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("next", &next);
    if expired {
        q.append_pair("expired", "1");
    }
    Redirect::to(&format!("/ui/signin?{}", q.finish())).into_response()
}

impl FromRequestParts<Console> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, Response> {
        let Some(token) =
            cookie(&parts.headers, session_cookie(c.https())).filter(|t| well_formed(t))
        else {
            return Err(to_signin(parts, false));
        };
        let id_hash = c.session_hasher.hash(token.as_bytes());
        let session = match c.app.store.get_console_session(&id_hash).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_signin(parts, false)),
            Err(e) => return Err(ConsoleError::from(e).into_response()),
        };
        let now = c.app.now();
        let mut ctx = request_ctx(parts);
        ctx.client_cert = None;
        let identity = match still_allowed(c, &session, now).await {
            Ok(i) => i,
            Err(Ended::Because(reason)) => {
                end_session(c, &ctx, &session, "console.session_end", "system", reason).await;
                return Err(to_signin(parts, true));
            }
            Err(Ended::Unavailable(e)) => return Err(e.into_response()),
        };
        if now - session.last_seen_at >= time::Duration::seconds(TOUCH_EVERY_SECS) {
            let touch = Mutation::TouchConsoleSession {
                id_hash,
                last_seen_at: now,
                idle_expires_at: now + idle(c),
            };
            if let Err(e) = c.app.store.commit(Change::new().with(touch)).await {
                tracing::warn!(error = %e, "could not record console session activity");
            }
        }
        ctx.actor = identity.id.to_string();
        Ok(Self {
            csrf: c.csrf_token(token),
            ctx,
            identity,
        })
    }
}

fn idle(c: &Console) -> time::Duration {
    time::Duration::seconds(i64::try_from(c.config().idle_timeout_secs).unwrap_or(i64::MAX / 2))
}

fn absolute(c: &Console) -> time::Duration {
    time::Duration::seconds(i64::try_from(c.config().absolute_timeout_secs).unwrap_or(i64::MAX / 2))
}

enum Ended {
    Because(&'static str),
    Unavailable(ConsoleError),
}

/// The session's timeouts, then the same continuous checks as an access token: the identity is
/// still active and an admin, and the credential it signed in with still works.
async fn still_allowed(
    c: &Console,
    s: &ConsoleSession,
    now: OffsetDateTime,
) -> Result<Arc<Identity>, Ended> {
    if now >= s.expires_at {
        return Err(Ended::Because("absolute timeout"));
    }
    if now >= s.idle_expires_at {
        return Err(Ended::Because("idle timeout"));
    }
    let identity = match c.app.identity(s.identity_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return Err(Ended::Because("identity no longer exists")),
        Err(e) => return Err(Ended::Unavailable(e.into())),
    };
    identity
        .check_can_authenticate(now)
        .map_err(Ended::Because)?;
    if !identity.scopes.iter().any(|s| s == ADMIN_SCOPE) {
        return Err(Ended::Because("identity no longer holds steward:admin"));
    }
    match c.app.store.get_credential(s.credential_id).await {
        Ok(Some(cred)) => cred.check_usable(now).map_err(Ended::Because)?,
        Ok(None) => return Err(Ended::Because("credential no longer exists")),
        Err(e) => return Err(Ended::Unavailable(e.into())),
    }
    Ok(identity)
}

/// A short, non-secret name for a session in the audit log (from its id's hash).
fn fingerprint(id_hash: &[u8; 32]) -> String {
    steward_crypto::b64::url_encode(&id_hash[..9])
}

/// Ends a session server-side and audits why.
async fn end_session(
    c: &Console,
    ctx: &Ctx,
    s: &ConsoleSession,
    action: &str,
    actor: &str,
    reason: &str,
) -> bool {
    let mut event_ctx = ctx.clone();
    event_ctx.actor = actor.to_owned();
    let event = event_ctx
        .event(c.app.now(), action, Outcome::Success)
        .identity(s.identity_id)
        .target(format!("console_session:{}", fingerprint(&s.id_hash)))
        .reason(reason)
        .details(json!({
            "session": fingerprint(&s.id_hash),
            "signed_in_at": super::view::rfc3339(s.created_at),
        }));
    let change = Change::new()
        .with(Mutation::DeleteConsoleSession { id_hash: s.id_hash })
        .audit(event);
    match c.app.store.commit(change).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "could not end a console session");
            false
        }
    }
}

// ------------------------------------------------------------------ pages and actions

#[derive(Debug, Default, Deserialize)]
pub struct SigninQuery {
    pub next: Option<String>,
    pub expired: Option<String>,
    pub signed_out: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "signin.html")]
struct SigninPage<'a> {
    csrf: &'a str,
    next: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    client_id: &'a str,
}

fn signin_response(
    c: &Console,
    status: StatusCode,
    token: Option<&str>,
    next: &str,
    notice: Option<&str>,
    error: Option<&str>,
    client_id: &str,
) -> Response {
    let fresh;
    let token = match token.filter(|t| well_formed(t)) {
        Some(t) => t,
        None => {
            fresh = random_token();
            &fresh
        }
    };
    let page = SigninPage {
        csrf: token,
        next,
        notice,
        error,
        client_id,
    };
    let mut resp = render(&page);
    *resp.status_mut() = status;
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(signin_cookie(c.https()), token, 1800),
    );
    resp
}

/// `GET /ui/signin`.
pub async fn signin_page(
    State(c): State<Console>,
    headers: HeaderMap,
    ConsoleQuery(q): ConsoleQuery<SigninQuery>,
) -> Response {
    let notice = if q.expired.is_some() {
        Some("Your session has ended. Sign in again.")
    } else if q.signed_out.is_some() {
        Some("You have signed out.")
    } else {
        None
    };
    let token = cookie(&headers, signin_cookie(c.https()));
    signin_response(
        &c,
        StatusCode::OK,
        token,
        safe_next(q.next.as_deref()),
        notice,
        None,
        "",
    )
}

#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    next: Option<String>,
}

impl std::fmt::Debug for SigninForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigninForm")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `POST /ui/signin`: the form token, the attempt limit, client authentication (audited as
/// `console.signin` by the token endpoint's code), the admin scope, then a new session.
pub async fn signin(
    State(c): State<Console>,
    ReqCtx(mut ctx): ReqCtx,
    headers: HeaderMap,
    ConsoleForm(form): ConsoleForm<SigninForm>,
) -> Response {
    // Sign-in is by API key only; a client certificate on the connection does not sign anyone in.
    ctx.client_cert = None;
    let https = c.https();
    let next = safe_next(form.next.as_deref()).to_owned();
    let pre = cookie(&headers, signin_cookie(https)).filter(|t| well_formed(t));
    let client_id = form.client_id.trim();
    let fail = |status: StatusCode, msg: &str| {
        signin_response(&c, status, pre, &next, None, Some(msg), client_id)
    };
    match pre {
        Some(p) if tokens_match(p, &form.csrf) => {}
        _ => {
            c.audit_refusal(
                &ctx,
                "/ui/signin",
                "sign-in form token missing or wrong (double-submit cookie)",
            )
            .await;
            return fail(
                StatusCode::FORBIDDEN,
                "The sign-in form expired or was not submitted from this page. Try again.",
            );
        }
    }
    let source_key = format!(
        "console-signin:{}",
        ctx.source.as_deref().unwrap_or("unknown")
    );
    if let Err(wait) = c.attempts.check(&source_key) {
        let event = ctx
            .event(c.app.now(), "console.signin", Outcome::Denied)
            .reason("too many sign-in attempts from this address");
        if c.app.store.commit(Change::audit_only(event)).await.is_err() {
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server cannot record sign-ins right now. Retry shortly.",
            );
        }
        let mut resp = fail(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many sign-in attempts from your address. Try again in {} seconds.",
                wait.as_secs().max(1)
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    // Counts attempts, successful or not; the limit applies from the next one.
    let _ = c.attempts.record_failure(&source_key);
    if client_id.is_empty() || form.client_secret.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "Enter the client id and the API key of an admin identity.",
        );
    }
    let body = serde_urlencoded::to_string([
        ("client_id", client_id),
        ("client_secret", form.client_secret.as_str()),
    ])
    .unwrap_or_default();
    let auth = match Form::parse(body.as_bytes()) {
        Ok(f) => {
            c.app
                .authenticate_client(&f, &HeaderMap::new(), &ctx, "console.signin")
                .await
        }
        Err(e) => Err(e),
    };
    let client = match auth {
        Ok(client) => client,
        Err(e) => {
            let msg = match e.status {
                StatusCode::TOO_MANY_REQUESTS => format!(
                    "Too many failed attempts. Try again in {} seconds.",
                    e.retry_after.unwrap_or(60)
                ),
                StatusCode::SERVICE_UNAVAILABLE => {
                    "The server cannot record sign-ins right now. Retry shortly.".into()
                }
                StatusCode::BAD_REQUEST => format!("Sign-in refused: {}.", e.description),
                _ => "Sign-in failed: unknown client id or wrong API key.".into(),
            };
            let status = match e.status {
                StatusCode::BAD_REQUEST => StatusCode::UNAUTHORIZED,
                s => s,
            };
            return fail(status, &msg);
        }
    };
    let now = c.app.now();
    let identity = client.identity.clone();
    c.app.record_use(client.credential_id, now);
    let mut ctx = ctx;
    ctx.actor = identity.id.to_string();
    if !identity.scopes.iter().any(|s| s == ADMIN_SCOPE) {
        let event = ctx
            .event(now, "console.signin", Outcome::Denied)
            .identity(identity.id)
            .target(format!("identity:{}", identity.id))
            .reason("identity does not hold steward:admin")
            .details(json!({"credential_id": client.credential_id}));
        if c.app.store.commit(Change::audit_only(event)).await.is_err() {
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server cannot record sign-ins right now. Retry shortly.",
            );
        }
        return fail(
            StatusCode::FORBIDDEN,
            "This identity may not use the console: it does not hold the steward:admin scope.",
        );
    }
    let token = random_token();
    let id_hash = c.session_hasher.hash(token.as_bytes());
    let session = ConsoleSession {
        id_hash,
        identity_id: identity.id,
        credential_id: client.credential_id,
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + idle(&c),
        expires_at: now + absolute(&c),
        source: ctx.source.clone(),
    };
    let event = ctx
        .event(now, "console.signin", Outcome::Success)
        .identity(identity.id)
        .target(format!("console_session:{}", fingerprint(&id_hash)))
        .details(json!({
            "session": fingerprint(&id_hash),
            "credential_id": client.credential_id,
            "method": client.method.as_str(),
            "idle_timeout_secs": c.config().idle_timeout_secs,
            "absolute_timeout_secs": c.config().absolute_timeout_secs,
        }));
    let change = Change::new()
        .with(Mutation::PurgeConsoleSessions { now })
        .with(Mutation::InsertConsoleSession(session))
        .audit(event);
    if let Err(e) = c.app.store.commit(change).await {
        tracing::error!(error = %e, "could not start a console session");
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot record sign-ins right now. Retry shortly.",
        );
    }
    let mut resp = Redirect::to(&next).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            session_cookie(https),
            &token,
            c.config().absolute_timeout_secs,
        ),
    );
    h.append(header::SET_COOKIE, set_cookie(signin_cookie(https), "", 0));
    resp
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    pub csrf: Option<String>,
}

/// `POST /ui/signout`: ends the session server-side and clears the cookie.
pub async fn signout(
    State(c): State<Console>,
    op: Operator,
    headers: HeaderMap,
    ConsoleForm(form): ConsoleForm<CsrfOnly>,
) -> Result<Response, ConsoleError> {
    op.check_csrf(&c, "/ui/signout", form.csrf.as_deref())
        .await?;
    let https = c.https();
    if let Some(token) = cookie(&headers, session_cookie(https)).filter(|t| well_formed(t)) {
        let id_hash = c.session_hasher.hash(token.as_bytes());
        if let Some(s) = c.app.store.get_console_session(&id_hash).await? {
            let actor = op.ctx.actor.clone();
            if !end_session(&c, &op.ctx, &s, "console.signout", &actor, "signed out").await {
                return Err(ConsoleError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server cannot record the sign-out right now. Retry shortly.",
                ));
            }
        }
    }
    let mut resp = Redirect::to("/ui/signin?signed_out=1").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(session_cookie(https), "", 0));
    Ok(resp)
}

/// The identity id a session cookie in `headers` belongs to, for tests and tools.
pub async fn session_identity(c: &Console, headers: &HeaderMap) -> Option<Uuid> {
    let token = cookie(headers, session_cookie(c.https())).filter(|t| well_formed(t))?;
    let id_hash = c.session_hasher.hash(token.as_bytes());
    c.app
        .store
        .get_console_session(&id_hash)
        .await
        .ok()
        .flatten()
        .map(|s| s.identity_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_console_path_or_the_overview() {
        assert_eq!(safe_next(Some("/ui/identities?q=a")), "/ui/identities?q=a");
        for bad in [
            None,
            Some(""),
            Some("https://evil.example/ui/"),
            Some("//evil.example/ui/"),
            Some("/ui//evil.example"),
            Some("/ui/\\evil"),
            Some("/uix"),
            Some("/v1/identities"),
            Some("/ui/signout"),
            Some("/ui/a b"),
        ] {
            assert_eq!(safe_next(bad), "/ui/overview", "{bad:?}");
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; steward_console=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "steward_console"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "steward"), None);
    }

    #[test]
    fn cookies_are_strict() {
        let v = set_cookie("__Host-x", "v", 60);
        let s = v.to_str().unwrap();
        for part in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(s.contains(part), "{s}");
        }
        assert!(!s.contains("Domain"));
    }
}

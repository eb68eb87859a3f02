//! The web console at `/ui`: server-rendered HTML (compile-time-checked askama templates) over the
//! same service layer and audit as the admin API. Owns the router, per-process console state,
//! security headers, embedded assets and the error page.
//!
//! Pages work without JavaScript; `console.js` only adds confirmations. Every response carries a
//! strict Content-Security-Policy; every unsafe request passes the Origin/Sec-Fetch-Site guard
//! (`csrf::origin_guard`) and a synchronizer token tied to the session (`Operator::check_csrf`).

pub mod csrf;
pub mod pages;
pub mod session;
pub mod svg;
pub mod verify;
pub mod view;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use steward_core::Outcome;
use steward_crypto::secret_hash::SecretHasher;
use steward_store::Change;

use crate::error::{ApiError, ServiceError};
use crate::ratelimit::FailureLimiter;
use crate::service::Ctx;
use crate::state::AppState;

/// The Content-Security-Policy of every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Console settings (`[console]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console at `/ui`.
    pub enabled: bool,
    /// A session ends after this many seconds without a request.
    pub idle_timeout_secs: u64,
    /// A session ends this many seconds after sign-in, however active.
    pub absolute_timeout_secs: u64,
    /// Sign-in attempts allowed per source address within `signin_window_secs`.
    pub signin_attempts: u32,
    pub signin_window_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_secs: 15 * 60,
            absolute_timeout_secs: 8 * 3600,
            signin_attempts: 20,
            signin_window_secs: 300,
        }
    }
}

/// The console's per-process state, shared by its handlers.
#[derive(Clone)]
pub struct Console(Arc<ConsoleInner>);

impl Deref for Console {
    type Target = ConsoleInner;
    fn deref(&self) -> &ConsoleInner {
        &self.0
    }
}

pub struct ConsoleInner {
    pub app: AppState,
    /// Keyed hash of session ids (the store keeps only this hash).
    session_hasher: SecretHasher,
    /// Derives each session's CSRF token from its id.
    csrf_hasher: SecretHasher,
    /// Sign-in attempts per source address.
    attempts: FailureLimiter,
    pub(crate) overview: pages::overview::OverviewCache,
    pub(crate) owners: view::OwnerNames,
    pub(crate) verification: verify::AuditVerification,
}

impl Console {
    pub fn new(app: AppState) -> Self {
        let cfg = app.config.console.clone();
        Self(Arc::new(ConsoleInner {
            session_hasher: SecretHasher::new(app.master.derive("console-session-id")),
            csrf_hasher: SecretHasher::new(app.master.derive("console-csrf")),
            attempts: FailureLimiter::new(
                cfg.signin_attempts,
                Duration::from_secs(cfg.signin_window_secs.max(1)),
            ),
            overview: pages::overview::OverviewCache::default(),
            owners: view::OwnerNames::default(),
            verification: verify::AuditVerification::default(),
            app,
        }))
    }

    pub fn config(&self) -> &ConsoleConfig {
        &self.app.config.console
    }

    /// Whether operators reach the console over HTTPS (the issuer's scheme): cookies then carry
    /// the `__Host-` prefix.
    pub fn https(&self) -> bool {
        self.app.issuer.starts_with("https://")
    }

    /// Audits a refused console request (forged or cross-site form posts, bad tokens).
    pub async fn audit_refusal(&self, ctx: &Ctx, path: &str, reason: &str) {
        let event = ctx
            .event(self.app.now(), "console.request", Outcome::Denied)
            .reason(reason)
            .details(serde_json::json!({ "path": path }));
        if let Err(e) = self.app.store.commit(Change::audit_only(event)).await {
            tracing::error!(error = %e, "could not audit a refused console request");
        }
    }
}

/// The console's routes, with their own state; merged into the server's router.
pub fn router<S: Clone + Send + Sync + 'static>(app: AppState) -> Router<S> {
    if !app.config.console.enabled {
        return Router::new();
    }
    let console = Console::new(app);
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/overview") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/overview") }))
        .route(
            "/ui/signin",
            get(session::signin_page).post(session::signin),
        )
        .route("/ui/signout", post(session::signout))
        .route("/ui/overview", get(pages::overview::page))
        .route("/ui/identities", get(pages::inventory::page))
        .route("/ui/identities/{id}", get(pages::identity::page))
        .route(
            "/ui/identities/{id}/lifecycle",
            post(pages::identity::lifecycle),
        )
        .route(
            "/ui/identities/{id}/right-size",
            post(pages::identity::right_size),
        )
        .route(
            "/ui/identities/{id}/credentials/{cid}/rotate",
            post(pages::identity::rotate),
        )
        .route("/ui/findings", get(pages::findings::page))
        .route("/ui/findings/{id}/accept", post(pages::findings::accept))
        .route("/ui/audit", get(pages::audit::page))
        .route(
            "/ui/exceptions/{id}/{action}",
            post(pages::findings::decide_exception),
        )
        .route("/ui/reviews", get(pages::reviews::page))
        .route(
            "/ui/reviews/{review}/items/{item}",
            post(pages::reviews::decide),
        )
        .route("/ui/jit", get(pages::jit::page))
        .route("/ui/jit/{id}/{action}", post(pages::jit::decide))
        .route("/ui/trust-policies", get(pages::trust::page))
        .route("/ui/trust-policies/explain", post(pages::trust::explain))
        .route("/ui/assets/console.css", get(assets::css))
        .route("/ui/assets/console.js", get(assets::js))
        .route("/ui/{*rest}", any(not_found))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            csrf::origin_guard,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// Security headers on every console response; `no-store` unless the response set its own
/// caching (only the static assets do).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on
    // same-origin form posts, which the Origin check would then refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn not_found() -> ConsoleError {
    ConsoleError::new(StatusCode::NOT_FOUND, "There is no such console page.")
}

/// The console's embedded assets.
mod assets {
    use axum::http::header;
    use axum::response::IntoResponse;

    const CSS: &str = include_str!("assets/console.css");
    const JS: &str = include_str!("assets/console.js");

    pub async fn css() -> impl IntoResponse {
        (
            [
                (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            CSS,
        )
    }

    pub async fn js() -> impl IntoResponse {
        (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            JS,
        )
    }
}

/// An error shown as an HTML page with the fitting status.
#[derive(Debug)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<ServiceError> for ConsoleError {
    fn from(e: ServiceError) -> Self {
        let api = ApiError::from(e);
        Self::new(api.status, api.message)
    }
}

impl From<steward_store::StoreError> for ConsoleError {
    fn from(e: steward_store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
        };
        let mut resp = render(&page);
        *resp.status_mut() = self.status;
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Renders a page; a template failure is a 500 (never half a page).
pub fn render<T: askama::Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "internal error",
            )
                .into_response()
        }
    }
}

/// An `application/x-www-form-urlencoded` body whose rejections are console error pages.
pub struct ConsoleForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ConsoleForm<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ConsoleError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(FormRejection::FailedToDeserializeForm(e)) => Err(ConsoleError::bad_request(
                format!("invalid form: {}", e.body_text()),
            )),
            Err(e) => Err(ConsoleError::new(e.status(), e.body_text())),
        }
    }
}

/// A query string whose rejections are console error pages.
pub struct ConsoleQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ConsoleQuery<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ConsoleError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(e) => Err(ConsoleError::bad_request(format!(
                "invalid query: {}",
                e.body_text()
            ))),
        }
    }
}

//! Database health: a watch that marks this node not-ready while its database is unreachable,
//! the bounded readiness probe behind `/readyz`, and the HTTP gate that refuses writes meanwhile.
//!
//! Losing the database must be visible within seconds and must never hang requests: the watch
//! pings every [`WATCH_PERIOD`] with a [`PING_TIMEOUT`] (a black-holed connection hangs instead of
//! failing), flips to not-ready after [`FAILURES_TO_TRIP`] failed pings in a row and back to ready
//! on the first good one. While not ready, every request that may write (any method but
//! GET/HEAD/OPTIONS) is answered at once with 503 and `Retry-After` instead of joining a writer
//! queue that cannot drain; reads still try, and fail with 503 when they need the database.
//! Nothing is cached that would let a write or a token escape the audit log.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::error::ApiError;
use crate::service::tokens::OAuthError;
use crate::state::AppState;

/// How often the watch pings the database.
pub const WATCH_PERIOD: Duration = Duration::from_millis(500);
/// How long one ping may take before it counts as failed.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed pings in a row that make the node not ready (one slow ping under load is not an outage).
pub const FAILURES_TO_TRIP: u32 = 2;

/// The reasons `verify_token` gives when it could not reach the store (not a bad token).
const STORE_OUTAGE_REASONS: [&str; 3] = [
    "revocation status unavailable",
    "identity status unavailable",
    "credential status unavailable",
];

/// Whether a token-verification failure means "the database is unreachable" (503), rather than
/// "this token is not acceptable" (401).
pub fn is_store_outage(reason: &str) -> bool {
    STORE_OUTAGE_REASONS.contains(&reason)
}

/// Pure state of the watch: consecutive failures decide its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    failures: u32,
    ready: bool,
}

impl Default for Watch {
    /// A node starts ready: `start` has just reached the database.
    fn default() -> Self {
        Self {
            failures: 0,
            ready: true,
        }
    }
}

impl Watch {
    /// Records one ping; returns the new verdict when it changed.
    pub fn observe(&mut self, ping_ok: bool) -> Option<bool> {
        let ready = if ping_ok {
            self.failures = 0;
            true
        } else {
            self.failures = self.failures.saturating_add(1);
            self.ready && self.failures < FAILURES_TO_TRIP
        };
        (ready != self.ready).then(|| {
            self.ready = ready;
            ready
        })
    }
}

async fn ping(state: &AppState) -> Result<(), String> {
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
    }
}

/// Pings the database every [`WATCH_PERIOD`] and keeps `AppState::is_ready` in step.
pub fn spawn_watch(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watch = Watch::default();
        loop {
            tick.tick().await;
            let result = ping(&state).await;
            // Only changes of the watch's own verdict touch readiness, so that readiness set
            // by someone else (draining a node) is not undone by the next good ping.
            if let Some(ready) = watch.observe(result.is_ok()) {
                match &result {
                    Ok(()) => tracing::warn!("database reachable again: node is ready"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "database unreachable: node is not ready; refusing writes"
                    ),
                }
                metrics::gauge!("steward_ready").set(if ready { 1.0 } else { 0.0 });
                state.set_ready(ready);
            }
        }
    })
}

/// `/readyz`: the watch's verdict, answered from memory so the probe never hangs and always
/// agrees with the write gate.
pub fn probe(state: &AppState) -> Result<(), &'static str> {
    if state.is_ready() {
        Ok(())
    } else {
        Err("database unreachable")
    }
}

fn may_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: while the node is not ready, refuse requests that may write with 503 and
/// `Retry-After` (RFC 6749 `temporarily_unavailable` on the OAuth endpoints).
pub async fn write_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.is_ready() || !may_write(req.method()) {
        return next.run(req).await;
    }
    metrics::counter!("steward_requests_refused_not_ready_total").increment(1);
    if req.uri().path().starts_with("/oauth2/") {
        let mut e = OAuthError::unavailable();
        e.description = "the database is unreachable; retry shortly".into();
        return e.into_response();
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database is unreachable; retry shortly",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_ping_is_not_an_outage_two_are_and_one_success_ends_it() {
        let mut w = Watch::default();
        assert_eq!(w.observe(true), None, "ready from the start");
        assert_eq!(w.observe(false), None, "a single slow ping does not trip");
        assert_eq!(
            w.observe(false),
            Some(false),
            "the second failure in a row trips"
        );
        assert_eq!(w.observe(false), None);
        assert_eq!(
            w.observe(true),
            Some(true),
            "the first good ping restores readiness"
        );
        assert_eq!(w.observe(false), None, "the count starts again");
        assert_eq!(w.observe(true), None);
        assert_eq!(w.observe(false), None);
    }

    #[test]
    fn only_unsafe_methods_are_gated() {
        assert!(!may_write(&Method::GET));
        assert!(!may_write(&Method::HEAD));
        assert!(may_write(&Method::POST));
        assert!(may_write(&Method::PATCH));
        assert!(may_write(&Method::DELETE));
        assert!(may_write(&Method::PUT));
    }

    #[test]
    fn outage_reasons_are_not_token_faults() {
        assert!(is_store_outage("revocation status unavailable"));
        assert!(!is_store_outage("token has been revoked"));
        assert!(!is_store_outage("invalid token signature"));
    }
}

//! The service layer: every use case of Steward as a method over [`crate::state::Inner`].
//! HTTP, the console and background jobs all call these; each write is one atomic `Change` with its audit.

pub mod authz;
pub mod certs;
pub mod federation;
pub mod findings;
pub mod jwks_cache;
pub mod leaks;
pub mod lifecycle;
pub mod registry;
pub mod report;
pub mod tokens;

use steward_core::{AuditEvent, Outcome};
use time::OffsetDateTime;

/// Who is acting, and the request the action belongs to (for the audit record).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub actor: String,
    pub request_id: Option<String>,
    pub source: Option<String>,
    /// The verified client certificate of the connection, if one was presented (mutual TLS).
    pub client_cert: Option<std::sync::Arc<crate::tls::PeerCert>>,
}

impl Ctx {
    pub fn system() -> Self {
        Self {
            actor: "system".into(),
            request_id: None,
            source: None,
            client_cert: None,
        }
    }

    pub fn event(&self, now: OffsetDateTime, action: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(now, self.actor.clone(), action, outcome)
            .request(self.request_id.clone(), self.source.clone())
    }
}

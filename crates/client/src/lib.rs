//! Steward SDK for the machines on both ends of a request: a [`TokenSource`] that keeps a
//! workload's access token fresh, and a [`Verifier`] plus tower [`RequireToken`] layer and axum
//! [`Verified`] extractor that let a resource server protect a route in one line.
//!
//! The crate depends on no Steward server crate: JOSE is done with `jsonwebtoken` (aws-lc-rs
//! backend), HTTP with `reqwest` (rustls).
//!
//! Protecting a route and reading the verified identity in its handler:
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use steward_client::{RequireToken, Verified, Verifier, VerifierConfig};
//!
//! async fn charge(Verified(token): Verified) -> String {
//!     format!("charged on behalf of {} ({})", token.claims.sub, token.claims.env)
//! }
//!
//! # async fn run() {
//! let verifier = Arc::new(Verifier::new(VerifierConfig::new(
//!     "https://steward.internal",          // issuer
//!     "https://payments.internal",         // this service's audience
//! )));
//! let app: Router = Router::new()
//!     .route("/charge", get(charge).layer(RequireToken::new(verifier).scopes(["payments:write"])));
//! # }
//! ```
//!
//! Getting a token as a workload (cached and refreshed at about 80 % of its lifetime):
//!
//! ```no_run
//! use steward_client::{ClientAuth, Secret, TokenSource, TokenSourceConfig};
//!
//! # async fn run() -> Result<(), steward_client::Error> {
//! let source = TokenSource::new(TokenSourceConfig::new(
//!     "https://steward.internal/oauth2/token",
//!     ClientAuth::ApiKey {
//!         client_id: "0190c0de-0000-7000-8000-000000000001".into(),
//!         secret: Secret::new("stw_k_…"),
//!     },
//! ))?;
//! let token = source.token().await?;
//! let _header = token.authorization(); // "Bearer eyJ…"
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod dpop;
mod error;
mod layer;
mod token_source;
mod verifier;

pub use dpop::DpopKey;
pub use error::{Error, VerifyError};
pub use layer::{ClientCertificate, RequireToken, RequireTokenService, Verified};
pub use token_source::{AccessToken, ClientAuth, Secret, TokenSource, TokenSourceConfig};
pub use verifier::{
    AccessClaims, Confirmation, Presentation, VerifiedToken, Verifier, VerifierConfig,
    certificate_thumbprint,
};

/// Unix seconds from the system clock.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A random URL-safe identifier (128 bits).
pub(crate) fn random_id() -> Result<String, Error> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Crypto("random generator failed".into()))?;
    Ok(b64url(&b))
}

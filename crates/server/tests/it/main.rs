//! End-to-end tests of the server over real HTTP on loopback, with a real SQLite (and PostgreSQL) store.
//! Third-party clients (the `oauth2` crate, `jsonwebtoken`) check that the wire formats are standard.
// In tests a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit_chain;
mod authz;
mod certs;
mod console;
mod console_browser;
mod federation;
mod findings;
mod harness;
mod leaks;
mod lifecycle;
mod multi_node;
mod oauth_errors;
mod oauth_interop;
mod registry;
mod resilience;
mod webdriver;

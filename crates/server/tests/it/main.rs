//! End-to-end tests of the server over real HTTP on loopback, with a real SQLite (and PostgreSQL) store.
//! Third-party clients (the `oauth2` crate, `jsonwebtoken`) check that the wire formats are standard.

mod harness;
mod oauth_errors;
mod oauth_interop;
mod registry;

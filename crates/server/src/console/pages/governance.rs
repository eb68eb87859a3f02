//! Access reviews, just-in-time requests and trust policies: sections whose APIs are built on other
//! branches. Each has its place in the navigation and a page that says plainly that its API is not
//! part of this build; when the API lands, its page module replaces the placeholder handler here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::console::session::Operator;
use crate::console::view::Chrome;
use crate::console::{Console, render};

/// A console section that depends on an API.
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    /// The admin-API routes the section is built on.
    pub api: &'static str,
    /// What the page does once the API exists.
    pub purpose: &'static str,
}

pub const REVIEWS: Section = Section {
    key: "reviews",
    title: "Access reviews",
    api: "/v1/reviews, /v1/reviews/{id}/decisions",
    purpose: "Owners recertify their identities: each review item is kept, right-sized or revoked, \
              and every decision is audited.",
};

pub const JIT: Section = Section {
    key: "jit",
    title: "JIT requests",
    api: "/v1/jit-requests, /v1/jit-requests/{id}/approve",
    purpose: "Time-bound elevation of an identity's scopes, requested by one person and approved \
              by another.",
};

pub const TRUST: Section = Section {
    key: "trust",
    title: "Trust policies",
    api: "/v1/trust-policies",
    purpose: "Federation: which external tokens (CI systems, clouds) may be exchanged for which \
              identity, with the explain tool showing why a token is accepted or refused.",
};

#[derive(askama::Template)]
#[template(path = "unavailable.html")]
struct UnavailablePage {
    chrome: Chrome,
    section: &'static Section,
}

fn unavailable(op: &Operator, section: &'static Section) -> Response {
    let page = UnavailablePage {
        chrome: Chrome::new(section.title, section.key, op),
        section,
    };
    let mut resp = render(&page);
    // The navigation works; the content is not there (yet).
    *resp.status_mut() = StatusCode::NOT_IMPLEMENTED;
    resp
}

/// `GET /ui/reviews`.
pub async fn reviews(State(_c): State<Console>, op: Operator) -> Response {
    unavailable(&op, &REVIEWS)
}

/// `GET /ui/jit`.
pub async fn jit(State(_c): State<Console>, op: Operator) -> Response {
    unavailable(&op, &JIT)
}

/// `GET /ui/trust-policies`.
pub async fn trust_policies(State(_c): State<Console>, op: Operator) -> Response {
    unavailable(&op, &TRUST)
}

//! Example resource server: a small payments API whose routes are protected by the Steward SDK
//! in one line each, with handlers that read the verified identity.
//!
//! Run against a local Steward:
//! `STEWARD_ISSUER=http://127.0.0.1:7443 STEWARD_AUDIENCE=https://payments.internal \
//!  cargo run -p steward-client --example protected_service` and call it with
//! `curl -H "Authorization: Bearer $(steward token --credentials workload.json)" localhost:8080/balance`.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use steward_client::{RequireToken, Verified, Verifier, VerifierConfig};

/// The service's routes; `verifier` is shared by every protected route.
pub fn router(verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route(
            "/balance",
            get(balance).layer(RequireToken::new(verifier.clone()).scopes(["payments:read"])),
        )
        .route(
            "/charge",
            post(charge).layer(RequireToken::new(verifier).scopes(["payments:write"])),
        )
        .route("/healthz", get(|| async { "ok" }))
}

async fn balance(Verified(token): Verified) -> Json<Value> {
    Json(json!({
        "identity": token.claims.sub,
        "environment": token.claims.env,
        "balance_cents": 4200,
    }))
}

async fn charge(Verified(token): Verified) -> Json<Value> {
    Json(json!({"charged_by": token.claims.sub, "ok": true}))
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = std::env::var("STEWARD_ISSUER").unwrap_or_else(|_| "http://127.0.0.1:7443".into());
    let audience =
        std::env::var("STEWARD_AUDIENCE").unwrap_or_else(|_| "https://payments.internal".into());
    let verifier = Arc::new(Verifier::new(VerifierConfig::new(issuer, audience)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("protected service on http://{}", listener.local_addr()?);
    axum::serve(listener, router(verifier)).await?;
    Ok(())
}

//! Discovery, keys, health, metrics and the OpenAPI document.
//! None of these need authentication; none reveal anything secret.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi;

use crate::state::AppState;

/// RFC 8414 authorization-server metadata.
pub async fn metadata(State(s): State<AppState>) -> Response {
    let algs = [
        "EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    ];
    let body = json!({
        "issuer": s.issuer,
        "token_endpoint": s.token_endpoint,
        "jwks_uri": format!("{}/.well-known/jwks.json", s.issuer),
        "introspection_endpoint": format!("{}/oauth2/introspect", s.issuer),
        "revocation_endpoint": format!("{}/oauth2/revoke", s.issuer),
        "grant_types_supported": ["client_credentials", crate::service::federation::TOKEN_EXCHANGE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "dpop_signing_alg_values_supported": algs,
        "service_documentation": format!("{}/openapi.json", s.issuer),
    });
    let mut r = Json(body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// RFC 7517 JWK Set of the token-signing keys (current, next, and those whose tokens may still be live).
pub async fn jwks(State(s): State<AppState>) -> Response {
    let ring = s.ring();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        ring.jwks.clone(),
    )
        .into_response()
}

pub async fn healthz() -> Json<steward_proto::Health> {
    Json(steward_proto::Health {
        status: "ok".into(),
        detail: None,
    })
}

/// Ready while the database answers (see `health`): bounded, never hangs on a lost database.
pub async fn readyz(State(s): State<AppState>) -> Response {
    match crate::health::probe(&s) {
        Ok(()) => Json(steward_proto::Health {
            status: "ready".into(),
            detail: None,
        })
        .into_response(),
        Err(detail) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(steward_proto::Health {
                status: "unavailable".into(),
                detail: Some(detail.into()),
            }),
        )
            .into_response(),
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    // Statements this process sent to its database: the cost model of a cluster (README).
    metrics::counter!("steward_db_round_trips_total").absolute(steward_store::round_trips());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        s.metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}

/// Liveness probe for benchmarks: the cheapest possible request through the same stack.
pub async fn noop() -> StatusCode {
    StatusCode::NO_CONTENT
}

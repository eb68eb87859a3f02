//! The HTTP adapter: routes, middleware (body limits, timeouts) and the OpenAPI document.
//! Handlers stay thin; request ids and principals come from extractors in `extract`.

pub mod admin;
pub mod authz;
pub mod certs;
pub mod extract;
pub mod findings;
pub mod leaks;
pub mod lifecycle;
pub mod meta;
pub mod oauth;
pub mod trust;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Steward admin API", description = "Machine identities: registry, credentials, tokens and audit."),
    paths(
        admin::create_owner, admin::list_owners, admin::get_owner, admin::update_owner, admin::depart_owner,
        admin::create_identity, admin::list_identities, admin::get_identity, admin::update_identity, admin::identity_action,
        admin::create_credential, admin::list_credentials, admin::revoke_credential, admin::rotate_credential,
        admin::list_audit, admin::get_checkpoint, admin::get_proof,
        oauth::token, oauth::introspect, oauth::revoke,
        leaks::report,
        authz::list_policies, authz::create_policy, authz::get_schema, authz::get_policy, authz::policy_versions,
        authz::update_policy, authz::delete_policy, authz::authorize, authz::what_if,
        authz::create_exception, authz::list_exceptions,
        certs::issue, certs::trust_bundle, certs::crl, certs::revoke, certs::list_cas, certs::rotate_ca,
        certs::create_device_ca, certs::list_device_cas, certs::delete_device_ca,
        certs::create_device_rule, certs::list_device_rules, certs::delete_device_rule,
        trust::create, trust::list, trust::get, trust::update, trust::delete, trust::explain,
        findings::list_findings, findings::get_finding, findings::accept_finding, findings::run_findings,
        findings::entitlements, findings::identity_risk, findings::list_risks, findings::report,
        lifecycle::create_review, lifecycle::list_reviews, lifecycle::get_review, lifecycle::decide_review,
        lifecycle::export_review, lifecycle::request_jit, lifecycle::list_jit, lifecycle::get_jit,
        lifecycle::decide_jit, lifecycle::decide_exception, lifecycle::offboarding, lifecycle::revoke_vendor,
        lifecycle::rotation_required, lifecycle::scim_patch_user, lifecycle::scim_delete_user,
    ),
    components(schemas(steward_proto::ErrorBody, steward_proto::OAuthErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let comps = api.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let max_in_flight = state.config.max_in_flight_requests;
    let timeout = Duration::from_secs(state.config.request_timeout_secs.max(1));
    Router::new()
        .route(
            "/v1/owners",
            post(admin::create_owner).get(admin::list_owners),
        )
        .route(
            "/v1/owners/{id}",
            get(admin::get_owner).patch(admin::update_owner),
        )
        .route("/v1/owners/{id}/depart", post(admin::depart_owner))
        .route(
            "/v1/identities",
            post(admin::create_identity).get(admin::list_identities),
        )
        .route(
            "/v1/identities/{id}",
            get(admin::get_identity).patch(admin::update_identity),
        )
        .route("/v1/identities/{id}/{action}", post(admin::identity_action))
        .route(
            "/v1/identities/{id}/credentials",
            post(admin::create_credential).get(admin::list_credentials),
        )
        .route(
            "/v1/identities/{id}/credentials/{cid}",
            delete(admin::revoke_credential),
        )
        .route(
            "/v1/identities/{id}/credentials/{cid}/rotate",
            post(admin::rotate_credential),
        )
        .route(
            "/v1/policies",
            post(authz::create_policy).get(authz::list_policies),
        )
        .route("/v1/policies/schema", get(authz::get_schema))
        .route(
            "/v1/policies/{id}",
            get(authz::get_policy)
                .put(authz::update_policy)
                .delete(authz::delete_policy),
        )
        .route("/v1/policies/{id}/versions", get(authz::policy_versions))
        .route("/v1/authorize", post(authz::authorize))
        .route("/v1/authorize/what-if", post(authz::what_if))
        .route(
            "/v1/exceptions",
            post(authz::create_exception).get(authz::list_exceptions),
        )
        .route("/v1/audit", get(admin::list_audit))
        .route("/v1/leaks", post(leaks::report))
        .route("/v1/audit/checkpoint", get(admin::get_checkpoint))
        .route("/v1/audit/proof/{seq}", get(admin::get_proof))
        .route("/v1/certificates", post(certs::issue))
        .route("/v1/certificates/revoke", post(certs::revoke))
        .route("/v1/trust-bundle", get(certs::trust_bundle))
        .route("/v1/crl", get(certs::crl))
        .route("/v1/ca", get(certs::list_cas))
        .route("/v1/ca/rotate", post(certs::rotate_ca))
        .route(
            "/v1/device-cas",
            post(certs::create_device_ca).get(certs::list_device_cas),
        )
        .route("/v1/device-cas/{id}", delete(certs::delete_device_ca))
        .route(
            "/v1/device-cas/{id}/rules",
            post(certs::create_device_rule).get(certs::list_device_rules),
        )
        .route(
            "/v1/device-cas/{id}/rules/{rule}",
            delete(certs::delete_device_rule),
        )
        .route("/v1/trust-policies", post(trust::create).get(trust::list))
        .route(
            "/v1/trust-policies/{id}",
            get(trust::get).patch(trust::update).delete(trust::delete),
        )
        .route("/v1/trust-policies/{id}/explain", post(trust::explain))
        .route("/v1/findings", get(findings::list_findings))
        .route("/v1/findings/run", post(findings::run_findings))
        .route("/v1/findings/{id}", get(findings::get_finding))
        .route("/v1/findings/{id}/accept", post(findings::accept_finding))
        .route(
            "/v1/identities/{id}/entitlements",
            get(findings::entitlements),
        )
        .route("/v1/identities/{id}/risk", get(findings::identity_risk))
        .route("/v1/risk", get(findings::list_risks))
        .route("/v1/report", get(findings::report))
        .route(
            "/v1/reviews",
            post(lifecycle::create_review).get(lifecycle::list_reviews),
        )
        .route("/v1/reviews/{id}", get(lifecycle::get_review))
        .route("/v1/reviews/{id}/decisions", post(lifecycle::decide_review))
        .route("/v1/reviews/{id}/export", get(lifecycle::export_review))
        .route(
            "/v1/jit-requests",
            post(lifecycle::request_jit).get(lifecycle::list_jit),
        )
        .route("/v1/jit-requests/{id}", get(lifecycle::get_jit))
        .route(
            "/v1/jit-requests/{id}/{action}",
            post(lifecycle::decide_jit),
        )
        .route(
            "/v1/exceptions/{id}/{action}",
            post(lifecycle::decide_exception),
        )
        .route(
            "/v1/identities/{id}/offboarding",
            get(lifecycle::offboarding),
        )
        .route(
            "/v1/vendors/{vendor}/revoke",
            post(lifecycle::revoke_vendor),
        )
        .route(
            "/v1/credentials/rotation-required",
            get(lifecycle::rotation_required),
        )
        .route(
            "/v1/scim/v2/Users/{id}",
            axum::routing::patch(lifecycle::scim_patch_user).delete(lifecycle::scim_delete_user),
        )
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route(
            "/.well-known/oauth-authorization-server",
            get(meta::metadata),
        )
        .route("/.well-known/jwks.json", get(meta::jwks))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi))
        .route("/_noop", get(meta::noop))
        .merge(crate::console::router(state.clone()))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        // While the database is unreachable, writes are refused at once (see `health`).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::health::write_gate,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Outermost: a bounded number of requests in flight; beyond it, shed at once with
        // 503 + Retry-After instead of queueing without bound.
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "overloaded",
                            "the server is at capacity; retry shortly",
                        )
                    },
                ))
                .load_shed()
                // One semaphore for the whole router: `Router::layer` wraps every route on its
                // own, and a per-route limit would let each route have `max_in_flight` requests.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    max_in_flight,
                )),
        )
        .with_state(state)
}

//! `POST /v1/leaks`: leak reports in GitHub's secret-scanning partner format, signed by a
//! configured partner key (ECDSA P-256 headers) or sent with a `steward:leaks:report` token.

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;

use super::extract::{Principal, request_ctx};
use crate::error::ApiError;
use crate::service::leaks::{LEAK_REPORT_SCOPE, LeakEntry, LeakReply, Reporter};
use crate::state::AppState;

/// Header naming the partner key that signed the body (GitHub's name).
pub const KEY_ID_HEADER: &str = "github-public-key-identifier";
/// Header holding the base64 DER ECDSA signature over the raw body (GitHub's name).
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// Reports leaked tokens; each valid, live Steward key among them is revoked at once.
#[utoipa::path(
    post,
    path = "/v1/leaks",
    tag = "leaks",
    request_body(content = String, description = "JSON array of {token, type, url, source} (GitHub secret-scanning partner format)", content_type = "application/json"),
    params(
        ("Github-Public-Key-Identifier" = Option<String>, Header, description = "Id of the configured partner key that signed the body"),
        ("Github-Public-Key-Signature" = Option<String>, Header, description = "Base64 DER ECDSA P-256 SHA-256 signature over the raw body"),
    ),
    responses(
        (status = 200, description = "One reply per entry, in order: {token_type, label: revoked | already_revoked | not_ours}"),
        (status = 400, description = "Malformed body", body = steward_proto::ErrorBody),
        (status = 401, description = "Missing or invalid signature or token; nothing was revoked", body = steward_proto::ErrorBody),
        (status = 403, description = "Token lacks scope steward:leaks:report", body = steward_proto::ErrorBody),
    ),
)]
pub async fn report(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<Vec<LeakReply>>, ApiError> {
    let (mut parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
    };
    let (key_id, signature) = (header(KEY_ID_HEADER), header(SIGNATURE_HEADER));
    let signed = key_id.is_some() || signature.is_some();
    // Authenticate before reading the body when a token is used; a signature needs the body.
    let (ctx, reporter) = if signed {
        let mut ctx = request_ctx(&parts);
        let key_id = key_id
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::unauthorized(format!("missing {KEY_ID_HEADER} header")))?;
        ctx.actor = format!("partner:{key_id}");
        (ctx, Reporter::Partner { key_id })
    } else {
        let p = Principal::from_request_parts(&mut parts, &state).await?;
        if !p.scopes.iter().any(|s| s == LEAK_REPORT_SCOPE) {
            return Err(ApiError::forbidden(format!(
                "this request needs scope {LEAK_REPORT_SCOPE}"
            )));
        }
        (p.ctx, Reporter::Identity { id: p.identity })
    };
    let bytes = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            )
        })?;
    if let Reporter::Partner { key_id } = &reporter {
        let sig = signature.unwrap_or_default();
        if let Err(e) = state.verify_leak_signature(key_id, &sig, &bytes) {
            let event = ctx
                .event(state.now(), "leak.report", steward_core::Outcome::Failure)
                .reason(e.to_string());
            // Best effort: the refusal is recorded, and refused either way.
            let _ = state
                .store
                .commit(steward_store::Change::audit_only(event))
                .await;
            return Err(e.into());
        }
    }
    // The parser's message could quote a value of the body: report only where it failed.
    let entries: Vec<LeakEntry> = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "expected a JSON array of {{token, type, url, source}} (error at line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    Ok(Json(state.report_leaks(&ctx, &reporter, entries).await?))
}

//! Request builders shared by the HTTP benches (`http`, `authz`, `exchange`, `suite`): the no-op
//! baseline, `client_credentials` with `client_secret_basic`, and admin identity creation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::http::HeaderValue;
use hyper::{Method, Request, Uri};
use uuid::Uuid;

use crate::load::MakeRequest;

/// `Authorization: Basic …` for a client id and secret.
pub fn basic(id: &str, secret: &str) -> Result<HeaderValue, String> {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    HeaderValue::from_str(&format!("Basic {enc}"))
        .map_err(|e| format!("building a Basic authorization header: {e}"))
}

/// `GET /_noop`, the baseline every row is compared with.
pub fn noop(host: HeaderValue) -> MakeRequest {
    Arc::new(move |_, _| {
        let mut r = Request::new(Full::new(Bytes::new()));
        *r.uri_mut() = Uri::from_static("/_noop");
        r.headers_mut().insert(HOST, host.clone());
        r
    })
}

/// A POST of `body` to `path` with the given content type and optional `Authorization`.
pub fn post(
    path: &'static str,
    host: &HeaderValue,
    content_type: &'static str,
    auth: Option<&HeaderValue>,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut r = Request::new(Full::new(body));
    *r.method_mut() = Method::POST;
    *r.uri_mut() = Uri::from_static(path);
    let h = r.headers_mut();
    h.insert(HOST, host.clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(a) = auth {
        h.insert(AUTHORIZATION, a.clone());
    }
    r
}

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";

/// `POST /oauth2/token`, `client_credentials`, `client_secret_basic`; connection `c` uses key `c % n`.
pub fn token_request(host: HeaderValue, clients: Vec<HeaderValue>) -> MakeRequest {
    let body = Bytes::from_static(b"grant_type=client_credentials");
    Arc::new(move |conn, _| {
        post(
            "/oauth2/token",
            &host,
            FORM,
            clients.get(conn % clients.len().max(1)),
            body.clone(),
        )
    })
}

/// `POST /v1/identities` with a distinct name per request, owned by `owner`.
pub fn create_identity(
    host: HeaderValue,
    bearer: HeaderValue,
    owner: Uuid,
) -> Result<MakeRequest, String> {
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("formatting expires_at: {e}"))?;
    let rest = serde_json::json!({
        "kind": "workload",
        "owner": owner,
        "purpose": "bench: identity creation throughput",
        "environment": "prod",
        "expires_at": expires,
        "scopes": ["a:read"],
        "default_scopes": ["a:read"],
    })
    .to_string();
    // `{"name":"…",` + the rest of the object without its opening brace.
    let tail: Arc<str> = rest
        .get(1..)
        .ok_or("serializing the identity template")?
        .into();
    let tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
    // One counter for every request, the sanity request included: names never repeat.
    let next = AtomicU64::new(0);
    Ok(Arc::new(move |_, _| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let body = format!("{{\"name\":\"b{tag}-{n}\",{tail}");
        post(
            "/v1/identities",
            &host,
            JSON,
            Some(&bearer),
            Bytes::from(body),
        )
    }))
}

/// The form of an RFC 8693 exchange that down-scopes a Steward access token to `scope`.
pub fn downscope(token: &str, scope: &str) -> Bytes {
    Bytes::from(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("scope", scope),
            ])
            .finish(),
    )
}

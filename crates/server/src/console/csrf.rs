//! Cross-site request forgery defences of the console: the Origin / Sec-Fetch-Site guard on every
//! unsafe request, and synchronizer tokens (per session, or per sign-in form before a session).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Console, ConsoleError};

/// Length of a random token encoded as unpadded base64url (32 bytes).
pub const TOKEN_LEN: usize = 43;

/// Whether `s` has the shape of a token Steward generates (so junk is never hashed or compared).
pub fn well_formed(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh random token (256 bits).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    steward_crypto::rand::fill(&mut b);
    steward_crypto::b64::url_encode(&b)
}

impl Console {
    /// The synchronizer token of the session whose id is `session_token`: a keyed hash, so it
    /// can be recomputed on every node and never needs storing.
    pub fn csrf_token(&self, session_token: &str) -> String {
        let mac = self
            .csrf_hasher
            .hash(format!("csrf\0{session_token}").as_bytes());
        steward_crypto::b64::url_encode(&mac)
    }

    /// Origins a form of this console may be posted from: the issuer's, and the one the
    /// browser addressed (`scheme://Host`), which a cross-site page cannot choose.
    pub fn allowed_origins(&self, headers: &HeaderMap) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if let Ok(u) = url::Url::parse(&self.app.issuer) {
            out.push(u.origin().ascii_serialization());
        }
        if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            out.push(format!("{}://{host}", self.app.config.scheme()));
        }
        out
    }
}

/// Constant-time comparison of two tokens.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    steward_crypto::constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// The browser-side checks of an unsafe request: `Sec-Fetch-Site` must say `same-origin` and
/// `Origin` must be one of `allowed`, when the browser sends them. Clients that send neither
/// (scripts) still need the synchronizer token. Returns why a request is refused.
pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("(not text)");
        if site != "same-origin" {
            return Err(format!("cross-site request (Sec-Fetch-Site: {site})"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        if !allowed.iter().any(|a| a == origin) {
            return Err(format!("request from a foreign origin ({origin})"));
        }
    }
    Ok(())
}

/// Middleware: refuses (403, audited) every unsafe request that a browser marks as cross-site.
pub async fn origin_guard(State(console): State<Console>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let allowed = console.allowed_origins(req.headers());
    if let Err(reason) = check_origin(req.headers(), &allowed) {
        let (parts, _) = req.into_parts();
        let ctx = crate::http::extract::request_ctx(&parts);
        console.audit_refusal(&ctx, parts.uri.path(), &reason).await;
        return ConsoleError::forbidden(format!(
            "This form was not submitted from the console itself and was refused: {reason}."
        ))
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_checks() {
        let allowed = vec!["https://steward.example".to_owned()];
        assert!(check_origin(&headers(&[]), &allowed).is_ok());
        assert!(
            check_origin(
                &headers(&[
                    ("origin", "https://steward.example"),
                    ("sec-fetch-site", "same-origin")
                ]),
                &allowed
            )
            .is_ok()
        );
        for bad in [
            headers(&[("origin", "https://evil.example")]),
            headers(&[("origin", "null")]),
            headers(&[("origin", "https://steward.example:444")]),
            headers(&[("origin", "http://steward.example")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[
                ("origin", "https://steward.example"),
                ("sec-fetch-site", "cross-site"),
            ]),
        ] {
            assert!(check_origin(&bad, &allowed).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_shape() {
        let t = random_token();
        assert!(well_formed(&t), "{t}");
        assert_ne!(t, random_token());
        assert!(!well_formed(&t[1..]));
        assert!(!well_formed(&format!("{}=", &t[1..])));
        assert!(!well_formed(""));
        assert!(tokens_match(&t, &t.clone()));
        assert!(!tokens_match(&t, &random_token()));
        assert!(!tokens_match(&t, ""));
    }
}

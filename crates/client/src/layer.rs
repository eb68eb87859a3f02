//! One-line route protection: the tower [`RequireToken`] layer verifies the request's token
//! (and its bindings) before the handler runs; the axum [`Verified`] extractor hands the
//! verified token to the handler. Failures answer 401/403 with an RFC 6750 `WWW-Authenticate`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::{Presentation, VerifiedToken, Verifier, VerifyError};

/// The DER client certificate of a request that came over mutual TLS. A server's TLS accept
/// loop inserts it into the request's extensions so certificate-bound tokens can be checked.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Vec<u8>);

/// Requires a valid Steward access token (plus `scopes`) on every request it wraps.
#[derive(Debug, Clone)]
pub struct RequireToken {
    verifier: Arc<Verifier>,
    scopes: Arc<Vec<String>>,
    public_base: Option<Arc<str>>,
}

impl RequireToken {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self {
            verifier,
            scopes: Arc::new(Vec::new()),
            public_base: None,
        }
    }

    /// Scopes this route needs in addition to the verifier's (all of them).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = Arc::new(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Public base URL of this service (`https://api.example`), for DPoP `htu` checks; by
    /// default `http://<Host header>`.
    pub fn public_base(mut self, base: impl AsRef<str>) -> Self {
        self.public_base = Some(Arc::from(base.as_ref().trim_end_matches('/')));
        self
    }
}

impl<S> Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            cfg: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequireTokenService<S> {
    inner: S,
    cfg: RequireToken,
}

fn refusal<B: Default>(e: &VerifyError, dpop: bool) -> Response<B> {
    let scheme = if dpop { "DPoP" } else { "Bearer" };
    let value = match e {
        VerifyError::Missing => format!("{scheme} realm=\"steward\""),
        _ => format!(
            "{scheme} realm=\"steward\", error=\"{}\", error_description=\"{}\"",
            e.code(),
            e.to_string().replace(['"', '\\'], "'")
        ),
    };
    let mut resp = Response::new(B::default());
    *resp.status_mut() = e.status();
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequireTokenService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        let header = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let authorization = header(http::header::AUTHORIZATION);
        let dpop = header(http::header::HeaderName::from_static("dpop"));
        let base = match &cfg.public_base {
            Some(b) => b.to_string(),
            None => format!(
                "http://{}",
                header(http::header::HOST).unwrap_or_else(|| "localhost".into())
            ),
        };
        let url = format!("{base}{}", req.uri().path());
        let cert = req.extensions().get::<ClientCertificate>().cloned();
        let method = req.method().as_str().to_owned();
        Box::pin(async move {
            let presentation = Presentation {
                authorization: authorization.as_deref(),
                dpop: dpop.as_deref(),
                method: &method,
                url: &url,
                client_cert: cert.as_ref().map(|c| c.0.as_slice()),
            };
            let dpop_scheme = authorization
                .as_deref()
                .is_some_and(|a| a.len() > 5 && a[..5].eq_ignore_ascii_case("dpop "));
            let verified = match cfg.verifier.verify(&presentation).await {
                Ok(v) => v,
                Err(e) => return Ok(refusal(&e, dpop_scheme)),
            };
            if let Some(missing) = cfg.scopes.iter().find(|s| !verified.has_scope(s)) {
                return Ok(refusal(
                    &VerifyError::InsufficientScope(missing.clone()),
                    dpop_scheme,
                ));
            }
            req.extensions_mut().insert(Arc::new(verified));
            inner.call(req).await
        })
    }
}

/// The verified token of the request, put there by [`RequireToken`].
#[derive(Debug, Clone)]
pub struct Verified(pub Arc<VerifiedToken>);

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Verified {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<VerifiedToken>>()
            .cloned()
            .map(Verified)
            .ok_or((
                http::StatusCode::UNAUTHORIZED,
                "this route is not protected by steward_client::RequireToken",
            ))
    }
}

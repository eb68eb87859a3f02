//! The SDK's errors: [`Error`] for obtaining tokens, [`VerifyError`] for checking them.
//! Messages never contain a secret or a token.

/// Obtaining a token failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token endpoint could not be reached (after retries).
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    /// The server refused the request (RFC 6749 §5.2 error code and description).
    #[error("token request refused ({status}): {error}: {description}")]
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    /// The server answered with something that is not a token response.
    #[error("malformed token response: {0}")]
    Malformed(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("crypto: {0}")]
    Crypto(String),
}

/// A presented token was not accepted. [`VerifyError::status`] says which HTTP status fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing access token")]
    Missing,
    #[error("malformed authorization: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("token type must be at+jwt")]
    Type,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token is not for this audience")]
    Audience,
    #[error("token issuer mismatch")]
    Issuer,
    #[error("token lacks scope {0}")]
    InsufficientScope(String),
    /// A certificate-bound token came without a client certificate, or with another one.
    #[error("certificate binding: {0}")]
    CertificateBinding(String),
    /// DPoP binding or proof failed.
    #[error("DPoP: {0}")]
    Dpop(String),
    /// The token is no longer active at the server (introspection).
    #[error("token is not active")]
    Inactive,
    /// Keys or introspection could not be fetched.
    #[error("verification unavailable: {0}")]
    Unavailable(String),
}

impl VerifyError {
    /// 401 for bad or missing tokens, 403 for a missing scope, 503 when keys are unreachable.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::InsufficientScope(_) => http::StatusCode::FORBIDDEN,
            Self::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "",
            Self::Malformed(_) => "invalid_request",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::Dpop(_) => "invalid_dpop_proof",
            Self::Unavailable(_) => "temporarily_unavailable",
            _ => "invalid_token",
        }
    }
}

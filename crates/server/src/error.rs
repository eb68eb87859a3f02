//! The service layer's typed error, and its mapping to admin-API responses.
//! Messages are safe for clients: no secrets, no internal paths or SQL.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use steward_core::DomainError;
use steward_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }
}

/// An admin-API error: status plus `{"error", "message"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        match e {
            ServiceError::Domain(d) => match d {
                DomainError::Invalid { .. } => {
                    Self::new(S::BAD_REQUEST, "invalid_request", d.to_string())
                }
                DomainError::IllegalTransition { .. } => {
                    Self::new(S::CONFLICT, "illegal_transition", d.to_string())
                }
                DomainError::SeparationOfDuties(_) => {
                    Self::new(S::FORBIDDEN, "separation_of_duties", d.to_string())
                }
                DomainError::OwnerDeparted(_) => {
                    Self::new(S::CONFLICT, "owner_departed", d.to_string())
                }
                DomainError::Conflict(_) => Self::new(S::CONFLICT, "conflict", d.to_string()),
            },
            ServiceError::Store(s) => match s {
                StoreError::Conflict(m) => Self::new(S::CONFLICT, "conflict", m),
                StoreError::Stale(_) => Self::new(S::CONFLICT, "conflict", s.to_string()),
                StoreError::NotFound(m) => Self::new(S::NOT_FOUND, "not_found", m),
                StoreError::Unavailable(_) => {
                    tracing::error!(error = %s, "storage unavailable");
                    Self::new(
                        S::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "storage is unavailable; retry later",
                    )
                }
                StoreError::Corrupt(_) | StoreError::Backend(_) => {
                    tracing::error!(error = %s, "storage failure");
                    Self::new(
                        S::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal storage error",
                    )
                }
            },
            ServiceError::NotFound(w) => {
                Self::new(S::NOT_FOUND, "not_found", format!("{w} not found"))
            }
            ServiceError::Invalid(m) => Self::new(S::BAD_REQUEST, "invalid_request", m),
            ServiceError::Unauthorized(m) => Self::new(S::UNAUTHORIZED, "unauthorized", m),
            ServiceError::Forbidden(m) => Self::new(S::FORBIDDEN, "forbidden", m),
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Self::new(S::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = steward_proto::ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"steward\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

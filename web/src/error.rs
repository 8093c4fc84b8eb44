//! Errors as RFC 7807 `application/problem+json`.
//!
//! Each kind maps to exactly one status, so the gateway's services say what
//! went wrong and this module alone decides how it reads over HTTP.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthError;

/// An RFC 7807 problem.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is wrong (bad JSON, bad field, bad tx).
    #[error("{detail}")]
    BadRequest { title: &'static str, detail: String },
    /// 401: the caller is not who the request says, or it is stale or
    /// replayed.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// 403: the caller is known but chain state (or the gateway's admin
    /// list) does not let it do this.
    #[error("{detail}")]
    Forbidden { detail: String },
    /// 404.
    #[error("{what} not found")]
    NotFound { what: String },
    /// 409: the request conflicts with current state (a stale nonce, an
    /// already-claimed device or gateway).
    #[error("{detail}")]
    Conflict { detail: String },
    /// 413.
    #[error("{detail}")]
    TooLarge { detail: String },
    /// 429.
    #[error("{detail}")]
    TooManyRequests { detail: String },
    /// 503: the gateway is stopping or its chain store failed.
    #[error("{detail}")]
    Unavailable { detail: String },
}

impl ApiError {
    pub fn bad_request(title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            title,
            detail: detail.into(),
        }
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::Forbidden {
            detail: detail.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::NotFound { what: what.into() }
    }

    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::Conflict {
            detail: detail.into(),
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::Unavailable {
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(AuthError::Busy) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest { title, .. } => title,
            ApiError::Unauthorized(_) => "Not authenticated",
            ApiError::Forbidden { .. } => "Not allowed",
            ApiError::NotFound { .. } => "Not found",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::TooLarge { .. } => "Request too large",
            ApiError::TooManyRequests { .. } => "Too many requests",
            ApiError::Unavailable { .. } => "Unavailable",
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: self.title().into(),
            status: self.status().as_u16(),
            detail: self.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&problem).unwrap_or_default(),
        )
            .into_response();
        if let ApiError::Unauthorized(_) = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(crate::auth::SCHEME),
            );
        }
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge {
                detail: rejection.body_text(),
            };
        }
        ApiError::bad_request("Malformed request", rejection.body_text())
    }
}

//! The API's errors: one enum, one JSON shape (`{"error": code, "message": text}`),
//! the right status, and a `Retry-After` header when waiting helps.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::HashError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("sign in first")]
    Unauthorized,
    #[error("wrong username or password")]
    BadCredentials,
    #[error("this sign-in link is unknown, used or expired")]
    BadLink,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("too many attempts; retry after {0} s")]
    TooManyAttempts(u64),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("internal error")]
    Store(#[from] StoreError),
    #[error("internal error")]
    Hash(#[from] HashError),
}

/// The body of every API error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code: unauthorized, bad_credentials, bad_link, not_found, invalid,
    /// forbidden, too_many_attempts, conflict, internal.
    pub error: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            ApiError::BadLink => (StatusCode::UNAUTHORIZED, "bad_link"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::TooManyAttempts(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Store(_) | ApiError::Hash(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = ?self, "request failed");
        }
        let body = ErrorBody {
            error: code,
            message: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::TooManyAttempts(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::Invalid(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::Invalid(r.body_text())
    }
}

/// A JSON body whose rejections are [`ApiError`]s, so that bad input gets the
/// same JSON error shape as everything else.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

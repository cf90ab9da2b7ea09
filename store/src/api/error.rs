//! Every error the HTTP API answers with, and its status code and body.
//!
//! | error | status | body |
//! |---|---|---|
//! | invalid lines in a write ([`InvalidLines`]) | 400 | JSON |
//! | WAL not writable ([`WalWriteError`]) | 500 | JSON |
//! | query body unreadable ([`BadRequest`]) | 400 | JSON |
//! | `to` missing (free) | 400 | JSON |
//! | `to` not an integer (free) | 500 (upstream's quirk) | JSON |
//! | free body not an array of selectors | 400 | plain text (upstream's quirk) |
//! | health body unreadable | 400 | JSON |
//! | debug selector names no level | 400 | JSON |
//! | no or an invalid token | 401 | plain text |
//! | token without an `admin-roles` role | 403 | plain text |
//! | request not read and answered in time | 408 | JSON |
//! | a worker thread failed | 500 | JSON |
//! | checkpoints still loading | 503 + `Retry-After: 2` | JSON |
//!
//! JSON bodies are cc-metric-store's `{"status":"Bad Request","error":"…"}`
//! (see [`json_error`]); the texts of the messages are upstream's where
//! upstream has one.

use std::num::ParseIntError;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cc_common::auth::AuthError;

use super::{json_error, text};
use crate::ingest::{InvalidLines, WalWriteError};
use crate::query::BadRequest;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A write request had invalid lines (the valid ones are stored).
    #[error(transparent)]
    InvalidLines(#[from] InvalidLines),
    /// The samples of a write request are in memory but not in the WAL.
    #[error(transparent)]
    Wal(#[from] WalWriteError),
    /// A query body that is not a query request.
    #[error(transparent)]
    QueryBody(#[from] BadRequest),
    /// `POST /api/free` without `to`.
    #[error("'to' is a required query parameter")]
    MissingTo,
    /// `POST /api/free` with a `to` that is not an integer.
    #[error("parsing 'to' ({raw:?}) as an integer: {source}")]
    BadTo {
        /// The parameter as sent.
        raw: String,
        /// Why it is not an integer.
        source: ParseIntError,
    },
    /// A free body that is not a JSON array of selectors.
    #[error("{0}")]
    FreeBody(#[source] serde_json::Error),
    /// A health-check body that is not a health request.
    #[error("parsing request body failed: {0}")]
    HealthBody(#[source] serde_json::Error),
    /// A debug selector naming a level that does not exist.
    #[error("[METRICSTORE]> level not found: {0:?}")]
    LevelNotFound(String),
    /// No `Authorization: Bearer` header.
    #[error("Use JWT Authentication")]
    NoToken,
    /// A token that does not verify.
    #[error(transparent)]
    BadToken(#[from] AuthError),
    /// A valid token without any of the `admin-roles`.
    #[error("this endpoint needs one of the roles {0:?}")]
    Forbidden(Vec<String>),
    /// The request was not read and answered within the time allowed.
    #[error("request not completed in time")]
    Timeout,
    /// The thread doing the work failed.
    #[error("internal error")]
    Worker(#[source] tokio::task::JoinError),
    /// Checkpoints are still being loaded.
    #[error("loading checkpoints: {hosts_done} of {hosts_total} hosts done, {mb_read} MB read")]
    Restoring {
        /// Host directories loaded.
        hosts_done: usize,
        /// Host directories found.
        hosts_total: usize,
        /// Megabytes (10⁶ bytes) read so far.
        mb_read: u64,
    },
}

impl ApiError {
    /// The status code of the answer.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidLines(_)
            | ApiError::QueryBody(_)
            | ApiError::MissingTo
            | ApiError::FreeBody(_)
            | ApiError::HealthBody(_)
            | ApiError::LevelNotFound(_) => StatusCode::BAD_REQUEST,
            ApiError::NoToken | ApiError::BadToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Wal(_) | ApiError::Worker(_) | ApiError::BadTo { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Restoring { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::FreeBody(_)
            | ApiError::NoToken
            | ApiError::BadToken(_)
            | ApiError::Forbidden(_) => text(status, format!("{self}\n")),
            ApiError::Restoring { .. } => {
                let mut response = json_error(status, &self);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                response
            }
            ApiError::Worker(e) => {
                tracing::error!(error = %e, "request worker failed");
                json_error(status, &self)
            }
            _ => json_error(status, &self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_errors_carry_the_reason_phrase_and_the_message() {
        let r = ApiError::MissingTo.into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body(r).await,
            "{\"status\":\"Bad Request\",\"error\":\"'to' is a required query parameter\"}\n"
        );
    }

    #[tokio::test]
    async fn auth_errors_and_bad_free_bodies_are_plain_text() {
        let r = ApiError::NoToken.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(r).await, "Use JWT Authentication\n");
        let e = serde_json::from_slice::<Vec<Vec<String>>>(b"").unwrap_err();
        let r = ApiError::FreeBody(e).into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            body(r).await,
            "EOF while parsing a value at line 1 column 0\n"
        );
    }

    #[tokio::test]
    async fn restoring_is_503_with_retry_after() {
        let r = ApiError::Restoring {
            hosts_done: 1,
            hosts_total: 2,
            mb_read: 3,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert!(body(r).await.contains("1 of 2 hosts done, 3 MB read"));
    }
}

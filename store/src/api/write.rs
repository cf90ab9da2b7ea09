//! `POST /api/write[?cluster=C]`: line protocol into the store.
//!
//! Answers 200 with an empty body once every sample is in memory. If any
//! line of a configured metric is malformed, the well-formed lines are still
//! stored and the answer is 400 with the first error, e.g.
//! `{"status":"Bad Request","error":"at line 3:17: expected '=' after tag key"}`.
//!
//! In `wal` checkpoint format the samples are in the host's WAL file before
//! the answer; if that file cannot be written the answer is 500, so that
//! senders retry rather than believe the data safe.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{AppState, blocking, json_error, raw_query_param};
use crate::ingest::ingest;

/// Handles a write request.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let cluster = raw_query_param(query.as_deref(), "cluster")
        .unwrap_or("")
        .to_owned();
    let now = unix_now();
    let store = Arc::clone(&state.store);
    let report = match blocking(move || ingest(&store, &body, &cluster, now)).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    if let Some(message) = report.wal_error {
        // The samples are in memory but not on disk: the sender should try
        // again (writing a sample twice stores it once).
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, message);
    }
    match report.error_message() {
        None => StatusCode::OK.into_response(),
        Some(message) => {
            tracing::debug!(%message, stored = report.written, "write request had invalid lines");
            json_error(StatusCode::BAD_REQUEST, message)
        }
    }
}

pub use cc_common::time::now_secs as unix_now;

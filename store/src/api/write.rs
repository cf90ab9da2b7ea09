//! `POST /api/write[?cluster=C]`: line protocol into the store.
//!
//! Answers 200 with an empty body once every sample is in memory; lines of
//! metrics that are not configured, samples older than their series' newest
//! chunk and lines whose cluster or host name would leave the checkpoint
//! directory are skipped (and counted) without changing that. If any line
//! of a configured metric is malformed, the well-formed lines are still
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

use super::{ApiError, AppState, blocking, json_bytes, raw_query_param};
use crate::ingest::{Source, ingest};

/// Handles a write request.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    match write(&state, query.as_deref(), body).await {
        // An empty body that says it is JSON, as upstream's.
        Ok(()) => json_bytes(StatusCode::OK, Vec::new()),
        Err(e) => e.into_response(),
    }
}

async fn write(state: &AppState, query: Option<&str>, body: Bytes) -> Result<(), ApiError> {
    let cluster = raw_query_param(query, "cluster").unwrap_or("").to_owned();
    let now = unix_now();
    let store = Arc::clone(&state.store);
    let report = blocking(move || {
        let report = ingest(&store, &body, &cluster, now);
        store.count_batch(Source::Http, body.len(), &report);
        report
    })
    .await?;
    if let Some(e) = report.wal_error {
        // The samples are in memory but not on disk: the sender should try
        // again (writing a sample twice stores it once).
        return Err(e.into());
    }
    match report.invalid_lines() {
        None => Ok(()),
        Some(invalid) => {
            tracing::debug!(error = %invalid, stored = report.written, "write request had invalid lines");
            Err(invalid.into())
        }
    }
}

pub use cc_common::time::now_secs as unix_now;

//! `POST /api/free?to=T`: drops, below each selected level, every chunk that
//! ended before `T`.
//!
//! Body: a JSON array of selectors, each an array of level names
//! (`[["alex","a0329","memoryDomain2"],["fritz","f0201"]]`; `[]` is the whole
//! tree). Answers `buffers freed: N`. Unlike upstream, selectors naming
//! levels that do not exist free nothing and create nothing, and a `to` that
//! is not an integer is a 400 (upstream: 500).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use super::{AppState, blocking, json_error, raw_query_param, text};

/// Handles a free request.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let to = match raw_query_param(query.as_deref(), "to") {
        None | Some("") => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "'to' is a required query parameter",
            );
        }
        Some(raw) => match raw.parse::<i64>() {
            Ok(to) => to,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("parsing 'to' ({raw:?}) as an integer: {e}"),
                );
            }
        },
    };
    let selectors: Vec<Vec<String>> =
        match serde_json::from_slice::<Option<Vec<Vec<String>>>>(&body) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
    let store = Arc::clone(&state.store);
    let freed = blocking(move || {
        selectors
            .iter()
            .filter_map(|sel| store.root().find(sel))
            .map(|level| level.free(to))
            .sum::<usize>()
    })
    .await;
    match freed {
        Ok(n) => text(StatusCode::OK, format!("buffers freed: {n}\n")),
        Err(response) => response,
    }
}

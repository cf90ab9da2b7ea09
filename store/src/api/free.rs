//! `POST /api/free?to=T`: drops, below each selected level, every chunk that
//! ended before `T`.
//!
//! Body: a JSON array of selectors, each an array of level names
//! (`[["alex","a0329","memoryDomain2"],["fritz","f0201"]]`; `[]` is the whole
//! tree). Answers `buffers freed: N`. A `to` that is not an integer is a
//! 500, as upstream answers it. Unlike upstream, selectors naming levels
//! that do not exist free nothing and create nothing.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{ApiError, AppState, blocking, first_json_value, raw_query_param, text};
use crate::store::FreeReason;

/// Handles a free request.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    match free(&state, query.as_deref(), &body).await {
        Ok(n) => text(StatusCode::OK, format!("buffers freed: {n}\n")),
        Err(e) => e.into_response(),
    }
}

async fn free(state: &AppState, query: Option<&str>, body: &[u8]) -> Result<usize, ApiError> {
    let to = match raw_query_param(query, "to") {
        None | Some("") => return Err(ApiError::MissingTo),
        Some(raw) => raw.parse::<i64>().map_err(|source| ApiError::BadTo {
            raw: raw.to_owned(),
            source,
        })?,
    };
    let selectors: Vec<Vec<String>> = first_json_value::<Option<Vec<Vec<String>>>>(body)
        .map_err(ApiError::FreeBody)?
        .unwrap_or_default();
    let store = Arc::clone(&state.store);
    blocking(move || {
        let freed = selectors
            .iter()
            .filter_map(|sel| store.root().find(sel))
            .map(|level| level.free(to))
            .sum::<usize>();
        store.count_freed(FreeReason::Api, freed);
        freed
    })
    .await
}

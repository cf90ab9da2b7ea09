//! `GET /api/query` (JSON request body; `POST` is accepted too): series out.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{ApiError, AppState, blocking, json_bytes};
use crate::query::{QueryRequest, execute, render};

/// Handles a query request.
pub async fn handle(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match query(&state, &body).await {
        Ok(body) => json_bytes(StatusCode::OK, body),
        Err(e) => e.into_response(),
    }
}

async fn query(state: &AppState, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let request = QueryRequest::from_body(body)?;
    let store = Arc::clone(&state.store);
    blocking(move || render(&execute(&store, &request))).await
}

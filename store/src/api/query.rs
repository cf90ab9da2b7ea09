//! `GET /api/query` (JSON request body; `POST` is accepted too): series out.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use super::{AppState, blocking, json_bytes, json_error};
use crate::query::{QueryRequest, execute, render};

/// Handles a query request.
pub async fn handle(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let request = match QueryRequest::from_body(&body) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let store = Arc::clone(&state.store);
    match blocking(move || render(&execute(&store, &request))).await {
        Ok(body) => json_bytes(StatusCode::OK, body),
        Err(response) => response,
    }
}

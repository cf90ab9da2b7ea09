//! `GET /api/debug[?selector=cluster:host]`: the chunks of every series
//! below a level, as JSON.
//!
//! ```json
//! {"data":{"cpu_load":[{"start":970,"len":3,"end":1150}],"hwthread0":{"flops_any":[{"start":970,"len":512,"end":31690,"saved":true}]}}}
//! ```
//!
//! Each level is copied out under its own lock, one at a time, so a large
//! dump never holds up ingest; the output is valid JSON (upstream's is not).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState, blocking, json_bytes};
use crate::registry::Registry;
use crate::tree::Level;

/// Query parameters of the debug endpoint.
#[derive(Debug, Deserialize)]
pub struct DebugParams {
    /// Level names joined by `:`; empty or absent means the root.
    #[serde(default)]
    pub selector: String,
}

/// Handles a debug request.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    Query(params): Query<DebugParams>,
) -> Response {
    match debug(&state, params.selector).await {
        Ok(body) => json_bytes(StatusCode::OK, body.into_bytes()),
        Err(e) => e.into_response(),
    }
}

async fn debug(state: &AppState, selector: String) -> Result<String, ApiError> {
    let path: Vec<&str> = if selector.is_empty() {
        Vec::new()
    } else {
        selector.split(':').collect()
    };
    let Some(level) = state.store.root().find(&path) else {
        return Err(ApiError::LevelNotFound(selector));
    };
    let store = Arc::clone(&state.store);
    blocking(move || dump(&level, store.registry())).await
}

/// The dump of `level` and everything below it.
#[must_use]
pub fn dump(level: &Level, registry: &Registry) -> String {
    let mut out = String::from("{\"data\":");
    write_level(&mut out, level, registry, 1);
    out.push_str("}\n");
    out
}

/// `(start, len, end, saved)` of one chunk.
type ChunkInfo = (i64, usize, i64, bool);

fn write_level(out: &mut String, level: &Level, registry: &Registry, depth: usize) {
    // Copy what is needed, then let go of the lock before descending.
    let (chains, mut children) = {
        let data = level.read();
        let chains: Vec<(String, Vec<ChunkInfo>)> = data
            .chains
            .iter()
            .enumerate()
            .filter_map(|(id, chain)| {
                let chain = chain.as_ref()?;
                let name = registry.get(id)?.name.clone();
                let chunks = chain
                    .chunks()
                    .iter()
                    .map(|c| (c.start, c.len(), c.slots_end(), c.archived))
                    .collect();
                Some((name, chunks))
            })
            .collect();
        let children: Vec<(String, Arc<Level>)> = data
            .children
            .iter()
            .map(|(name, child)| (name.to_string(), Arc::clone(child)))
            .collect();
        (chains, children)
    };
    children.sort_by(|a, b| a.0.cmp(&b.0));
    let indent = "\t".repeat(depth);
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('\n');
        out.push_str(&indent);
    };
    for (name, chunks) in &chains {
        sep(out);
        push_json_str(out, name);
        out.push_str(":[");
        for (i, (start, len, end, saved)) in chunks.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"start\":{start},\"len\":{len},\"end\":{end}");
            if *saved {
                out.push_str(",\"saved\":true");
            }
            out.push('}');
        }
        out.push(']');
    }
    for (name, child) in &children {
        sep(out);
        push_json_str(out, name);
        out.push(':');
        write_level(out, child, registry, depth + 1);
    }
    if !first {
        out.push('\n');
        out.push_str(&"\t".repeat(depth - 1));
    }
    out.push('}');
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
}

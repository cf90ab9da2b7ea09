//! The dead-letter endpoints of the admin listener, behind the same token as
//! `/status` and `/metrics` (see [`crate::dead_letters`] for what they do):
//!
//! - `GET /dlq/<upstream>[?limit=N]`: the dead-lettered lines as line
//!   protocol (`text/plain`), oldest first, at most N (default: all);
//!   `X-CC-Relay-Lines` counts them, `X-CC-Relay-Skipped` counts the corrupt
//!   records passed over.
//! - `POST /dlq/<upstream>/replay[?limit=N]`: moves at most N (default: all)
//!   back into the upstream's queue and wakes its worker; answers JSON
//!   `{"upstream", "replayed_lines", "skipped", "dead_letter_records"}` (the
//!   last: entries still held). Refused with 503, like ingest, while the
//!   relay shuts down, its storage failed, the disk limits are reached or the
//!   upstream's `reject_new` queue is full.
//! - `POST /dlq/<upstream>/purge`: deletes all of them; answers JSON
//!   `{"upstream", "purged", "dead_letter_records"}`.
//!
//! An upstream that is not configured is a 404 naming the configured ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AdminState;
use crate::dead_letters::{self, UnknownUpstream};
use crate::queue::QueueError;
use crate::runtime::{Refused, Runtime};

/// The routes; the caller puts them behind the admin token.
pub(super) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/dlq/{upstream}", get(export))
        .route("/dlq/{upstream}/replay", post(replay))
        .route("/dlq/{upstream}/purge", post(purge))
}

/// `?limit=N`.
#[derive(Debug, Deserialize)]
struct Limit {
    limit: Option<usize>,
}

/// Why a dead-letter request failed.
#[derive(Debug, thiserror::Error)]
enum DlqError {
    /// 404.
    #[error(transparent)]
    Unknown(#[from] UnknownUpstream),
    /// 503, as ingest would answer.
    #[error("{0}")]
    Refused(#[from] Refused),
    /// 503 when the storage failed, else 500.
    #[error("dead-letter queue: {}", cc_common::error_chain(.0))]
    Queue(#[from] QueueError),
    /// 500: the blocking task panicked.
    #[error("internal error")]
    Task,
}

impl IntoResponse for DlqError {
    fn into_response(self) -> Response {
        let status = match &self {
            DlqError::Unknown(_) => StatusCode::NOT_FOUND,
            DlqError::Refused(_)
            | DlqError::Queue(QueueError::Poisoned { .. } | QueueError::Storage { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DlqError::Queue(_) | DlqError::Task => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// Runs `f` on the blocking pool (sled reads and fsyncs) after checking the
/// upstream's name.
async fn blocking<T: Send + 'static>(
    s: &AdminState,
    upstream: &str,
    f: impl FnOnce(&Runtime) -> Result<T, DlqError> + Send + 'static,
) -> Result<T, DlqError> {
    dead_letters::check_upstream(upstream, s.runtime.queue().upstreams())?;
    let runtime = Arc::clone(&s.runtime);
    tokio::task::spawn_blocking(move || f(&runtime))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "dead-letter task failed");
            DlqError::Task
        })?
}

async fn export(
    State(s): State<Arc<AdminState>>,
    Path(upstream): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Response, DlqError> {
    let name = upstream.clone();
    let max = q.limit.unwrap_or(usize::MAX);
    let export = blocking(&s, &upstream, move |rt| {
        Ok(dead_letters::export(rt.queue(), &name, max)?)
    })
    .await?;
    let mut r = (StatusCode::OK, export.text).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-cc-relay-lines", HeaderValue::from(export.lines));
    h.insert("x-cc-relay-skipped", HeaderValue::from(export.skipped));
    Ok(r)
}

async fn replay(
    State(s): State<Arc<AdminState>>,
    Path(upstream): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Response, DlqError> {
    let name = upstream.clone();
    let max = q.limit.unwrap_or(usize::MAX);
    let (replayed, left) = blocking(&s, &upstream, move |rt| {
        may_queue(rt, &name)?;
        let queue = rt.queue();
        let replayed = queue.dlq_replay(&name, max, &rt.split_limits())?;
        if let Some(u) = rt.upstreams().iter().find(|u| u.name == name) {
            u.evict_over_limit(queue);
            u.wake.notify_one();
        }
        Ok((replayed, queue.dlq_len(&name)?))
    })
    .await?;
    tracing::info!(
        upstream,
        lines = replayed.lines,
        skipped = replayed.skipped,
        left,
        "dead letters replayed into the queue (admin request)"
    );
    Ok(json(&serde_json::json!({
        "upstream": upstream,
        "replayed_lines": replayed.lines,
        "skipped": replayed.skipped,
        "dead_letter_records": left,
    })))
}

async fn purge(
    State(s): State<Arc<AdminState>>,
    Path(upstream): Path<String>,
) -> Result<Response, DlqError> {
    let name = upstream.clone();
    let (purged, left) = blocking(&s, &upstream, move |rt| {
        let purged = rt.queue().dlq_purge(&name)?;
        Ok((purged, rt.queue().dlq_len(&name)?))
    })
    .await?;
    tracing::info!(
        upstream,
        purged = purged.entries,
        "dead letters purged (admin request)"
    );
    Ok(json(&serde_json::json!({
        "upstream": upstream,
        "purged": purged.entries,
        "dead_letter_records": left,
    })))
}

fn json(body: &serde_json::Value) -> Response {
    let mut r = (StatusCode::OK, format!("{body}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Whether lines may be queued for `upstream` now: the checks ingest makes
/// ([`Runtime::check`]), for this upstream's limit only.
fn may_queue(rt: &Runtime, upstream: &str) -> Result<(), Refused> {
    if !rt.is_accepting() {
        return Err(Refused::ShuttingDown);
    }
    if !rt.queue().is_healthy() {
        return Err(Refused::StorageFailed);
    }
    if rt.disk().pressure.load(Ordering::Relaxed) {
        return Err(Refused::DiskPressure);
    }
    if let Some(u) = rt.upstreams().iter().find(|u| u.name == upstream)
        && u.refuses_new(rt.queue())
    {
        return Err(Refused::QueueFull(upstream.to_owned()));
    }
    Ok(())
}

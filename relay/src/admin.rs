//! The admin listener (spec `relay.md` §4.11): `/metrics` (Prometheus text or
//! OpenMetrics, see [`cc_common::metrics`]),
//! `/healthz` (liveness), `/readyz` (accepting data), `/status` (JSON).
//!
//! It binds to loopback by default; with `admin.auth_token_file` every
//! endpoint but `/healthz` needs `Authorization: Bearer <token>`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use cc_common::metrics::Registry;
use cc_common::time::now_ms;

use crate::runtime::{Runtime, UpstreamCounters};

/// What the admin endpoints report on.
#[derive(Debug)]
pub struct AdminState {
    /// The queue, the upstreams and the source counters.
    pub runtime: Arc<Runtime>,
    /// Token for all endpoints but `/healthz`.
    pub token: Arc<parking_lot::RwLock<Option<String>>>,
    /// `instance_id`.
    pub instance_id: String,
    /// What `/metrics` serves ([`crate::metrics::registry`] of the runtime).
    pub registry: Registry,
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .with_state(state)
}

async fn require_token(State(s): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let expected = s.token.read().clone();
    let Some(token) = expected else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(cc_common::auth::bearer_token);
    if given == Some(token.as_str()) {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "admin token required\n").into_response()
    }
}

async fn healthz(State(s): State<Arc<AdminState>>) -> Response {
    if s.runtime.queue().is_healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let reason = s.runtime.queue().poison_reason().unwrap_or_default();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage failed: {reason}\n"),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    if !s.runtime.queue().is_healthy() {
        return (StatusCode::SERVICE_UNAVAILABLE, "storage failed\n").into_response();
    }
    if !s.runtime.is_accepting() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !s.runtime.is_started() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    if s.runtime.disk().pressure.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "disk limits reached\n").into_response();
    }
    let down = s.runtime.nats.sources_down();
    if !down.is_empty() {
        let text = format!(
            "NATS inputs not taking messages (not connected or not subscribed yet): {}\n",
            down.join(", ")
        );
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn status(State(s): State<Arc<AdminState>>) -> Response {
    let now_ms = now_ms();
    let queue = s.runtime.queue();
    let upstreams: Vec<serde_json::Value> = upstream_counters(&s)
        .into_iter()
        .map(|(name, c)| {
            let q = queue.len(name).unwrap_or_default();
            serde_json::json!({
                "name": name,
                "queued_records": q.records,
                "queued_lines": q.lines,
                "stored_bytes": q.stored_bytes,
                "lag_seconds": q.oldest_ingest_ms.map_or(0, |t| now_ms.saturating_sub(t) / 1000),
                "up": c.up.load(Ordering::Relaxed),
                "sent_lines": c.sent_lines.get(),
                "backoff_ms": c.backoff_ms.load(Ordering::Relaxed),
                "last_success_ms": c.last_success_ms.load(Ordering::Relaxed),
                "last_error": c.last_error.lock().clone(),
                "dead_lettered_lines": c.dead_lettered.total(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "instance_id": s.instance_id,
        "version": env!("CARGO_PKG_VERSION"),
        "storage_healthy": queue.is_healthy(),
        "accepting": s.runtime.is_accepting(),
        "received_lines": s.runtime.counters.total_lines(),
        "upstreams": upstreams,
        "nats": nats_status(&s.runtime),
    });
    let mut r = (StatusCode::OK, format!("{body}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The NATS connections: state, reconnects, the last error, and for
/// sources their message counts.
fn nats_status(runtime: &Runtime) -> Vec<serde_json::Value> {
    runtime
        .nats
        .all()
        .iter()
        .map(|l| {
            let st = &l.status;
            let source = l.source.as_ref().map(|(_, c)| {
                serde_json::json!({
                    "messages": c.messages.get(),
                    "dropped_messages": c.dropped.total(),
                    "slow_consumer_dropped": st.dropped() + st.slow_consumer_events(),
                })
            });
            serde_json::json!({
                "role": st.role(),
                "connected": st.is_connected(),
                "reconnects": st.reconnects(),
                "last_error": st.last_error(),
                "source": source,
            })
        })
        .collect()
}

/// `/metrics`: the registry, in the format the scraper asks for.
async fn metrics(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    cc_common::metrics::response(&s.registry, &headers)
}

/// Name and counters of every upstream, in configuration order.
fn upstream_counters(s: &AdminState) -> Vec<(&str, &UpstreamCounters)> {
    s.runtime
        .upstreams()
        .iter()
        .map(|u| (u.name.as_str(), &u.counters))
        .collect()
}

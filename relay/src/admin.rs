//! The admin listener (spec `relay.md` §4.11): `/metrics` (Prometheus text or
//! OpenMetrics, see [`cc_common::metrics`]),
//! `/healthz` (liveness), `/readyz` (accepting data), `/status` (JSON) and
//! `/` (the same figures as a page for people; see [`crate::status`]).
//!
//! It binds to loopback by default; with `admin.auth_token_file` every
//! endpoint but `/healthz` needs `Authorization: Bearer <token>`.
//!
//! The dead-letter endpoints (`/dlq/<upstream>`: export, replay, purge) are
//! in the `dlq` submodule, behind the same token.

mod dlq;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use cc_common::metrics::Registry;
use cc_common::status_page::{RateWindow, html_response, json_response};

use crate::runtime::Runtime;
use crate::status::RelayStatus;

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
    /// Earlier looks at the counters, for the rates of `/status` and `/`.
    pub rates: parking_lot::Mutex<RateWindow>,
    /// Whether NATS inputs that take no messages make `/readyz` 503: only
    /// for a relay without HTTP listeners. With one, readiness is for the
    /// load balancer in front of them, and a NATS outage (which every relay
    /// sees at once) must not take all of them out of it.
    pub nats_gates_readiness: bool,
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = dlq::routes()
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/", get(page))
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
    // Compared in constant time, like the basic-auth passwords.
    if given.is_some_and(|given| {
        cc_common::secret::constant_time_eq(token.as_bytes(), given.as_bytes())
    }) {
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
    if s.nats_gates_readiness && !down.is_empty() {
        let text = format!(
            "NATS inputs not taking messages (not connected or not subscribed yet): {}\n",
            down.join(", ")
        );
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// `/status`: the snapshot as JSON.
async fn status(State(s): State<Arc<AdminState>>) -> Response {
    json_response(&snapshot(&s))
}

/// `/`: the snapshot as a page.
async fn page(State(s): State<Arc<AdminState>>) -> Response {
    html_response(snapshot(&s).render())
}

fn snapshot(s: &AdminState) -> RelayStatus {
    RelayStatus::collect(&s.runtime, &s.instance_id, &s.rates)
}

/// `/metrics`: the registry, in the format the scraper asks for.
async fn metrics(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    cc_common::metrics::response(&s.registry, &headers)
}

//! `GET /api/healthcheck` with a JSON body: is each node's data current?
//!
//! Request: `{"cluster":"alex","nodes":["a0101"],"metric-names":["cpu_load"]}`
//! (unknown keys are refused). Answer, per node:
//! `{"a0101":{"State":"full","HealthMetrics":"{\"degraded\":[],\"missing\":[]}"}}`.
//!
//! A metric is *missing* on a node when no level of the node holds a value
//! for it (or it is not configured), *degraded* when some level's newest
//! value is more than five periods old, healthy otherwise. The node is
//! `full` without missing or degraded metrics, `failed` when none is healthy
//! (or the node is unknown), else `partial`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::write::unix_now;
use super::{ApiError, AppState, first_json_value, json_bytes};
use crate::store::MetricStore;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRequest {
    /// Cluster of the nodes.
    #[serde(default)]
    pub cluster: String,
    /// Host names to check.
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// Metrics every node should have.
    #[serde(default, rename = "metric-names")]
    pub metric_names: Option<Vec<String>>,
}

/// Health of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// `full`, `partial` or `failed`.
    pub state: &'static str,
    /// Degraded metrics, in request order.
    pub degraded: Vec<String>,
    /// Missing metrics, in request order.
    pub missing: Vec<String>,
    /// Whether the node exists at all.
    pub found: bool,
}

/// Handles a health request.
pub async fn handle(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: HealthRequest = match first_json_value(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::HealthBody(e).into_response(),
    };
    let now = unix_now();
    let metrics = req.metric_names.unwrap_or_default();
    let mut out = String::from("{");
    // One entry per host, sorted by name (upstream writes a map).
    let nodes: std::collections::BTreeSet<String> =
        req.nodes.unwrap_or_default().into_iter().collect();
    for node in nodes {
        let health = node_health(&state.store, &req.cluster, &node, &metrics, now);
        if out.len() > 1 {
            out.push(',');
        }
        let inner = if health.found {
            serde_json::json!({"degraded": health.degraded, "missing": health.missing}).to_string()
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "{}:{{\"State\":\"{}\",\"HealthMetrics\":{}}}",
            serde_json::Value::from(node),
            health.state,
            serde_json::Value::from(inner)
        );
    }
    out.push_str("}\n");
    json_bytes(StatusCode::OK, out.into_bytes())
}

/// Health of `node` for the expected `metrics` at time `now`.
#[must_use]
pub fn node_health(
    store: &MetricStore,
    cluster: &str,
    node: &str,
    metrics: &[String],
    now: i64,
) -> NodeHealth {
    let Some(level) = store
        .root()
        .find(&[cluster, node])
        .filter(|_| !cluster.is_empty() && !node.is_empty())
    else {
        return NodeHealth {
            state: "failed",
            degraded: Vec::new(),
            missing: Vec::new(),
            found: false,
        };
    };
    let mut degraded = Vec::new();
    let mut missing = Vec::new();
    for name in metrics {
        let Some(id) = store.registry().id(name) else {
            missing.push(name.clone());
            continue;
        };
        let (mut present, mut stale) = (false, false);
        level.visit_levels(&mut |data| {
            if let Some(Some(chain)) = data.chains.get(id)
                && let Some(is_stale) = chain.head_is_stale(now)
            {
                present = true;
                stale |= is_stale;
            }
        });
        if stale {
            degraded.push(name.clone());
        } else if !present {
            missing.push(name.clone());
        }
    }
    let healthy = metrics.len() - degraded.len() - missing.len();
    let state = if degraded.is_empty() && missing.is_empty() {
        "full"
    } else if healthy == 0 {
        "failed"
    } else {
        "partial"
    };
    NodeHealth {
        state,
        degraded,
        missing,
        found: true,
    }
}

//! The admin listener (spec `relay.md` §4.11): `/metrics` (Prometheus text),
//! `/healthz` (liveness), `/readyz` (accepting data), `/status` (JSON).
//!
//! It binds to loopback by default; with `admin.auth_token_file` every
//! endpoint but `/healthz` needs `Authorization: Bearer <token>`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::LATENCY_BUCKETS;
use crate::queue::flusher::{FLUSH_LATENCY_BUCKETS_US, FLUSH_WAITER_BUCKETS};
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
    if s.runtime.disk().pressure.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "disk limits reached\n").into_response();
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
                "sent_lines": c.sent_lines.load(Ordering::Relaxed),
                "backoff_ms": c.backoff_ms.load(Ordering::Relaxed),
                "last_success_ms": c.last_success_ms.load(Ordering::Relaxed),
                "last_error": c.last_error.lock().clone(),
                "dead_lettered_lines": c.dead_lettered_lines.load(Ordering::Relaxed),
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
    });
    let mut r = (StatusCode::OK, format!("{body}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

use cc_common::time::now_ms;

/// Prometheus text exposition (format 0.0.4).
async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    let mut r = (StatusCode::OK, render_metrics(&s)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Writes one metric family.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

impl Family<'_> {
    /// A histogram from per-bucket counts (the last count is above every bound).
    fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        self.head(name, "histogram", help);
        self.histogram_samples(name, &[], bounds, counts, sum);
    }

    /// One labelled series of a histogram family (writes the header once per call).
    fn histogram_labelled(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        if !self.out.contains(&format!("# TYPE {name} histogram")) {
            self.head(name, "histogram", help);
        }
        self.histogram_samples(name, labels, bounds, counts, sum);
    }

    #[expect(
        clippy::cast_precision_loss,
        reason = "counters exposed as Prometheus floats"
    )]
    fn histogram_samples(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let mut cumulative = 0u64;
        for (bound, count) in bounds.iter().zip(counts) {
            cumulative += count;
            let le = bound.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        let total: u64 = counts.iter().sum();
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with_le, total as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, total as f64);
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[expect(
    clippy::cast_precision_loss,
    reason = "counters exposed as Prometheus floats"
)]
fn render_metrics(s: &AdminState) -> String {
    let queue = s.runtime.queue();
    let ups = upstream_counters(s);
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.head("ccrelay_build_info", "gauge", "Build information.");
    f.sample(
        "ccrelay_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("sled_version", "0.34.7"),
        ],
        1.0,
    );
    let c = &s.runtime.counters;
    f.head(
        "ccrelay_ingest_requests_total",
        "counter",
        "Ingest requests by listener and status code.",
    );
    let requests = sorted(&c.requests);
    for ((ingress, code), n) in requests {
        f.sample(
            "ccrelay_ingest_requests_total",
            &[("ingress", &ingress), ("code", &code.to_string())],
            n as f64,
        );
    }
    let volume = sorted(&c.volume);
    f.head(
        "ccrelay_ingest_lines_total",
        "counter",
        "Lines received by listener.",
    );
    for (ingress, (lines, _)) in &volume {
        f.sample(
            "ccrelay_ingest_lines_total",
            &[("ingress", ingress)],
            *lines as f64,
        );
    }
    f.head(
        "ccrelay_ingest_bytes_total",
        "counter",
        "Decoded body bytes received by listener.",
    );
    for (ingress, (_, bytes)) in &volume {
        f.sample(
            "ccrelay_ingest_bytes_total",
            &[("ingress", ingress)],
            *bytes as f64,
        );
    }
    f.head(
        "ccrelay_ingest_invalid_lines_total",
        "counter",
        "Invalid lines by listener and reason.",
    );
    let invalid = sorted(&c.invalid);
    for ((ingress, reason), n) in invalid {
        f.sample(
            "ccrelay_ingest_invalid_lines_total",
            &[("ingress", &ingress), ("reason", reason)],
            n as f64,
        );
    }
    f.head(
        "ccrelay_auth_failures_total",
        "counter",
        "Requests refused for credentials, by listener and reason.",
    );
    let failures = sorted(&c.auth_failures);
    for ((ingress, reason), n) in failures {
        f.sample(
            "ccrelay_auth_failures_total",
            &[("ingress", &ingress), ("reason", reason)],
            n as f64,
        );
    }
    let (counts, sum) = c.ack_seconds.snapshot();
    f.histogram(
        "ccrelay_ingest_ack_seconds",
        "Time from receiving a request to answering it (after the group commit).",
        &LATENCY_BUCKETS,
        &counts,
        sum,
    );

    let now = now_ms();
    let queue_gauges: [(&str, &str); 5] = [
        ("ccrelay_queue_records", "Records queued per upstream."),
        ("ccrelay_queue_lines", "Lines queued per upstream."),
        (
            "ccrelay_queue_stored_bytes",
            "Stored (compressed) bytes queued per upstream.",
        ),
        (
            "ccrelay_queue_raw_bytes",
            "Uncompressed bytes queued per upstream.",
        ),
        (
            "ccrelay_queue_oldest_age_seconds",
            "Age of the oldest queued record (lag); 0 when empty.",
        ),
    ];
    for (i, (name, help)) in queue_gauges.iter().enumerate() {
        f.head(name, "gauge", help);
        for &(upstream, _) in &ups {
            let q = queue.len(upstream).unwrap_or_default();
            let v = match i {
                0 => q.records as f64,
                1 => q.lines as f64,
                2 => q.stored_bytes as f64,
                3 => q.raw_bytes as f64,
                _ => q
                    .oldest_ingest_ms
                    .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
            };
            f.sample(name, &[("upstream", upstream)], v);
        }
    }
    type Getter = fn(&UpstreamCounters) -> f64;
    let upstream_metrics: [(&str, &str, &str, Getter); 9] = [
        (
            "ccrelay_upstream_up",
            "gauge",
            "1 after the last success, 0 after the last failure.",
            |c| f64::from(u8::from(c.up.load(Ordering::Relaxed))),
        ),
        (
            "ccrelay_upstream_sent_batches_total",
            "counter",
            "Batches delivered.",
            |c| c.sent_batches.load(Ordering::Relaxed) as f64,
        ),
        (
            "ccrelay_upstream_sent_lines_total",
            "counter",
            "Lines delivered.",
            |c| c.sent_lines.load(Ordering::Relaxed) as f64,
        ),
        (
            "ccrelay_upstream_sent_bytes_total",
            "counter",
            "Bytes delivered.",
            |c| c.sent_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "ccrelay_upstream_retries_total",
            "counter",
            "Attempts that were retries.",
            |c| c.retries.load(Ordering::Relaxed) as f64,
        ),
        (
            "ccrelay_upstream_backoff_seconds",
            "gauge",
            "Current backoff.",
            |c| c.backoff_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        ),
        (
            "ccrelay_upstream_auth_failing",
            "gauge",
            "1 while the upstream refuses credentials.",
            |c| f64::from(u8::from(c.auth_failing.load(Ordering::Relaxed))),
        ),
        (
            "ccrelay_upstream_misconfigured",
            "gauge",
            "1 while the upstream answers 404/405.",
            |c| f64::from(u8::from(c.misconfigured.load(Ordering::Relaxed))),
        ),
        (
            "ccrelay_deadletter_lines_total",
            "counter",
            "Lines moved to the dead-letter queue.",
            |c| c.dead_lettered_lines.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, kind, help, get) in upstream_metrics {
        f.head(name, kind, help);
        for &(upstream, counters) in &ups {
            f.sample(name, &[("upstream", upstream)], get(counters));
        }
    }
    f.head(
        "ccrelay_upstream_failures_total",
        "counter",
        "Failed send attempts per upstream and reason.",
    );
    for &(upstream, counters) in &ups {
        for (reason, n) in counters.failure_reasons.snapshot() {
            f.sample(
                "ccrelay_upstream_failures_total",
                &[("upstream", upstream), ("reason", reason)],
                n as f64,
            );
        }
    }
    for &(upstream, counters) in &ups {
        let (counts, sum) = counters.request_seconds.snapshot();
        f.histogram_labelled(
            "ccrelay_upstream_request_seconds",
            "Duration of requests to the upstream.",
            &[("upstream", upstream)],
            &LATENCY_BUCKETS,
            &counts,
            sum,
        );
    }
    f.head(
        "ccrelay_queue_limit_bytes",
        "gauge",
        "buffer.max_bytes per upstream.",
    );
    for u in s.runtime.upstreams() {
        f.sample(
            "ccrelay_queue_limit_bytes",
            &[("upstream", &u.name)],
            u.limit.max_bytes as f64,
        );
    }
    f.head(
        "ccrelay_orphan_queue_bytes",
        "gauge",
        "Stored bytes in queues of upstreams that are no longer configured.",
    );
    for orphan in queue.orphans() {
        f.sample(
            "ccrelay_orphan_queue_bytes",
            &[("tree", &format!("q:{}", orphan.upstream))],
            orphan.stored_bytes as f64,
        );
    }
    f.head(
        "ccrelay_dropped_lines_total",
        "counter",
        "Lines dropped by limits, per upstream and reason.",
    );
    for &(upstream, counters) in &ups {
        let full = counters.dropped_full_lines.load(Ordering::Relaxed);
        f.sample(
            "ccrelay_dropped_lines_total",
            &[("upstream", upstream), ("reason", "buffer_full")],
            full as f64,
        );
        f.sample(
            "ccrelay_dropped_lines_total",
            &[("upstream", upstream), ("reason", "max_age")],
            counters.expired_lines.load(Ordering::Relaxed) as f64,
        );
    }
    let flush = s.runtime.flush_stats().snapshot();
    f.head(
        "ccrelay_sled_flushes_total",
        "counter",
        "Group-commit flushes (fsyncs).",
    );
    f.sample("ccrelay_sled_flushes_total", &[], flush.flushes as f64);
    f.histogram(
        "ccrelay_sled_flush_seconds",
        "Duration of group-commit flushes (fsyncs).",
        &FLUSH_LATENCY_BUCKETS_US.map(|us| us as f64 / 1e6),
        &flush.latency_buckets,
        flush.total_us as f64 / 1e6,
    );
    f.head("ccrelay_sled_flush_seconds_max", "gauge", "Longest flush.");
    f.sample(
        "ccrelay_sled_flush_seconds_max",
        &[],
        flush.max_us as f64 / 1e6,
    );
    f.histogram(
        "ccrelay_sled_flush_waiters",
        "Requests made durable by one flush.",
        &FLUSH_WAITER_BUCKETS.map(|n| n as f64),
        &flush.waiter_buckets,
        flush.waiters as f64,
    );
    f.head(
        "ccrelay_sled_size_on_disk_bytes",
        "gauge",
        "Size of the queue database on disk.",
    );
    f.sample(
        "ccrelay_sled_size_on_disk_bytes",
        &[],
        queue.size_on_disk().unwrap_or(0) as f64,
    );
    let disk = s.runtime.disk();
    f.head(
        "ccrelay_storage_pressure",
        "gauge",
        "1 while disk limits refuse new data.",
    );
    f.sample(
        "ccrelay_storage_pressure",
        &[],
        f64::from(u8::from(disk.pressure.load(Ordering::Relaxed))),
    );
    f.head(
        "ccrelay_disk_free_bytes",
        "gauge",
        "Free bytes on the data filesystem.",
    );
    f.sample(
        "ccrelay_disk_free_bytes",
        &[],
        disk.free_bytes.load(Ordering::Relaxed) as f64,
    );
    f.head(
        "ccrelay_disk_pressure_dropped_lines_total",
        "counter",
        "Lines evicted to keep within the disk limits.",
    );
    f.sample(
        "ccrelay_disk_pressure_dropped_lines_total",
        &[],
        disk.evicted_lines.load(Ordering::Relaxed) as f64,
    );
    f.head(
        "ccrelay_storage_healthy",
        "gauge",
        "1 while the queue storage works.",
    );
    f.sample(
        "ccrelay_storage_healthy",
        &[],
        f64::from(u8::from(queue.is_healthy())),
    );
    out
}

/// The entries of a counter map, sorted by key (stable output).
/// Name and counters of every upstream, in configuration order.
fn upstream_counters(s: &AdminState) -> Vec<(&str, &UpstreamCounters)> {
    s.runtime
        .upstreams()
        .iter()
        .map(|u| (u.name.as_str(), &u.counters))
        .collect()
}

fn sorted<K: Clone + Ord, V: Copy>(
    map: &parking_lot::Mutex<std::collections::BTreeMap<K, V>>,
) -> Vec<(K, V)> {
    map.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
}

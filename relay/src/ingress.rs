//! HTTP ingress: what cc-metric-collector's http sink posts (spec `relay.md` §4.3).
//!
//! Request handling, in order: route and method (404/405) → authentication
//! (401, 403 for a valid token without a required role) → overload, storage
//! or shutdown refusal (503 with `Retry-After`) → hop limit (508) → body
//! within `max_body_bytes` (413) → `Content-Encoding` (415 if not accepted,
//! 413 beyond `max_decompressed_bytes`) → line processing → records into
//! every matching upstream queue → group commit → answer.
//!
//! The answer is 200 (or the configured 204) **only after the batch is on
//! disk**: an fsync that started after the last insert has returned. It
//! carries `X-CC-Relay-Accepted` and `X-CC-Relay-Rejected` line counts.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use base64::Engine as _;
use bytes::Bytes;
use cc_common::auth::{JwtVerifier, bearer_token};
use cc_common::lineproto::Precision;
use tokio::sync::{Notify, Semaphore};

use crate::process::{Context, Invalid, Rules, Target, process};
use crate::queue::{Flusher, Queue, Record, RecordMeta, SplitLimits};

/// How a listener authenticates senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may post.
    None,
    /// Ed25519 JWT (`Authorization: Bearer`, or `X-Auth-Token`).
    Jwt,
    /// HTTP basic authentication.
    Basic,
    /// Either of them.
    JwtOrBasic,
}

/// Authentication of one listener.
#[derive(Debug)]
pub struct Auth {
    /// Mode.
    pub mode: AuthMode,
    /// Keys and users; replaced when SIGHUP re-reads the secret files.
    pub credentials: parking_lot::RwLock<Credentials>,
    /// Also read the token from `X-Auth-Token`.
    pub accept_x_auth_token: bool,
    /// A token needs one of these roles (empty: no check).
    pub required_roles: Vec<String>,
    /// A token needs a `sub` claim.
    pub require_sub: bool,
}

/// What a listener checks credentials against.
#[derive(Debug, Default)]
pub struct Credentials {
    /// Token verification (jwt modes).
    pub verifier: Option<JwtVerifier>,
    /// Users for basic authentication.
    pub basic_users: Option<crate::config::BasicUsers>,
}

/// Settings of one HTTP listener.
#[derive(Debug)]
pub struct ListenerSettings {
    /// Name in logs and metrics.
    pub name: String,
    /// Write paths.
    pub paths: Vec<String>,
    /// Authentication (shared with the SIGHUP handler).
    pub auth: Arc<Auth>,
    /// Body limit before decoding.
    pub max_body_bytes: usize,
    /// Body limit after decoding.
    pub max_decompressed_bytes: usize,
    /// Accepted `Content-Encoding`s (`identity`, `gzip`, `zstd`).
    pub accept_encodings: Vec<String>,
    /// Longest wait for durability before answering 503.
    pub ack_timeout: Duration,
    /// Longest time to receive the body (408 beyond).
    pub body_read_timeout: Duration,
    /// Requests processed at once (the rest wait, within `ack_timeout`).
    pub max_concurrent_requests: usize,
    /// 200 or 204 on every path; `None`: per path ([`default_success`]).
    pub success_status: Option<StatusCode>,
    /// `invalid_lines: reject`: any invalid line refuses the whole request.
    pub reject_invalid: bool,
    /// Use `?cluster=` as the default cluster.
    pub trust_query_cluster: bool,
    /// Listener default cluster.
    pub default_cluster: Option<String>,
    /// Listener timestamp unit (`?precision=` overrides it).
    pub input_precision: Option<Precision>,
    /// Largest accepted `X-CC-Relay-Hops`.
    pub max_hops: u32,
    /// Line rules: one group per distinct set of upstream rules (usually one).
    pub rule_groups: Arc<[RuleGroup]>,
}

/// Upstreams that share the same line rules (`processing`, with the
/// per-upstream overrides of steps 6–8 applied).
#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// The rules.
    pub rules: Rules,
    /// Default cluster of last resort for these upstreams.
    pub default_cluster: Option<String>,
    /// The upstreams, as processing sees them.
    pub targets: Vec<Target>,
    /// Their positions in [`Shared::targets`].
    pub indices: Vec<usize>,
}

/// One upstream's queue limit as ingress enforces it.
#[derive(Debug, Clone)]
pub struct QueueLimit {
    /// Stored bytes allowed in the upstream's queue.
    pub max_bytes: u64,
    /// Refuse new data (503) instead of dropping the oldest.
    pub reject_new: bool,
}

/// Counters of ingress, read by the admin endpoint.
#[derive(Debug, Default)]
pub struct IngressCounters {
    /// Requests by status code.
    pub requests: parking_lot::Mutex<HashMap<(String, u16), u64>>,
    /// Lines and decoded bytes received, by listener.
    pub volume: parking_lot::Mutex<HashMap<String, (u64, u64)>>,
    /// Invalid lines by listener and reason.
    pub invalid: parking_lot::Mutex<HashMap<(String, &'static str), u64>>,
    /// Authentication failures by listener and reason (`missing`, `jwt`,
    /// `claims`, `basic`).
    pub auth_failures: parking_lot::Mutex<HashMap<(String, &'static str), u64>>,
    /// Lines dropped from full queues (`drop_oldest`), per upstream.
    pub dropped_full: parking_lot::Mutex<HashMap<String, (u64, u64)>>,
    /// Time from receive to answer.
    pub ack_seconds: crate::metrics::Histogram,
}

impl IngressCounters {
    /// Lines received by all listeners.
    #[must_use]
    pub fn total_lines(&self) -> u64 {
        self.volume.lock().values().map(|(lines, _)| lines).sum()
    }
}

/// What all listeners share: the queue, the targets and the workers' wake-ups.
#[derive(Debug)]
pub struct Shared {
    /// The durable queue.
    pub queue: Arc<Queue>,
    /// Group commit.
    pub flusher: Arc<Flusher>,
    /// Upstreams in queue order.
    pub targets: Vec<Target>,
    /// Per target: its limit.
    pub limits: Vec<QueueLimit>,
    /// Per target: wakes its worker.
    pub wakers: Vec<Arc<Notify>>,
    /// Per target: the last id of its worker's in-flight batch (0: none).
    pub in_flight: Vec<crate::forward::InFlight>,
    /// Record splitting.
    pub split: SplitLimits,
    /// False once shutdown began.
    pub accepting: AtomicBool,
    /// Disk limits state (pressure refuses new data).
    pub disk: Arc<crate::housekeeper::DiskState>,
    /// Counters.
    pub counters: IngressCounters,
}

/// Decoded bodies up to this size are processed on the request's own task;
/// larger ones on the blocking pool, so that a big batch never stalls the
/// runtime's workers.
const INLINE_BODY_BYTES: usize = 256 * 1024;

struct Listener {
    settings: ListenerSettings,
    shared: Arc<Shared>,
    permits: Semaphore,
}

/// The router of one listener.
pub fn router(settings: ListenerSettings, shared: Arc<Shared>) -> Router {
    let paths = settings.paths.clone();
    let max_body = settings.max_body_bytes;
    let state = Arc::new(Listener {
        permits: Semaphore::new(settings.max_concurrent_requests.max(1)),
        settings,
        shared,
    });
    let mut router = Router::new();
    for path in &paths {
        let success = state
            .settings
            .success_status
            .unwrap_or_else(|| default_success(path));
        router = router.route(path, write_route(success));
    }
    router
        .fallback(|| async { text(StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The answer to a stored batch when `success_status` is not set: 204 on
/// InfluxDB's own write paths, whose clients take anything else for a
/// failure, and 200 elsewhere, which is all the collectors' http sink accepts.
#[must_use]
pub fn default_success(path: &str) -> StatusCode {
    match path.trim_end_matches('/') {
        "/write" | "/api/v2/write" => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    }
}

fn write_route(success: StatusCode) -> MethodRouter<Arc<Listener>> {
    post(move |state: State<Arc<Listener>>, req: Request| handle(state, req, success)).fallback(
        || async {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            r
        },
    )
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn unavailable(reason: &str) -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn handle(State(l): State<Arc<Listener>>, req: Request, success: StatusCode) -> Response {
    let started = std::time::Instant::now();
    let response = handle_inner(&l, req, success).await;
    let c = &l.shared.counters;
    *c.requests
        .lock()
        .entry((l.settings.name.clone(), response.status().as_u16()))
        .or_insert(0) += 1;
    c.ack_seconds.observe(started.elapsed());
    response
}

async fn handle_inner(l: &Listener, req: Request, success: StatusCode) -> Response {
    let s = &l.settings;
    let params = match WriteParams::parse(req.uri().query().unwrap_or("")) {
        Ok(p) => p,
        Err(message) => return text(StatusCode::BAD_REQUEST, format!("{message}\n")),
    };
    if let Err(failure) = authenticate(&s.auth, req.headers(), params.user.as_ref()) {
        *l.shared
            .counters
            .auth_failures
            .lock()
            .entry((s.name.clone(), failure.reason))
            .or_insert(0) += 1;
        return *failure.response;
    }
    if !l.shared.accepting.load(Ordering::Relaxed) {
        return unavailable("shutting down");
    }
    if !l.shared.queue.is_healthy() {
        return unavailable("storage failed; not accepting data");
    }
    if l.shared.disk.pressure.load(Ordering::Relaxed) {
        return unavailable("disk limits reached; not accepting data");
    }
    if let Some(full) = full_reject_new_queue(&l.shared) {
        return unavailable(&format!("queue of upstream {full} is full"));
    }
    let hops = req
        .headers()
        .get("x-cc-relay-hops")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if hops > s.max_hops {
        let from = req
            .headers()
            .get("x-cc-relay-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        tracing::warn!(
            hops,
            from,
            "refusing a request that went through too many relays (loop?)"
        );
        return text(
            StatusCode::LOOP_DETECTED,
            format!("too many relay hops ({hops} > {})\n", s.max_hops),
        );
    }
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    if !s.accept_encodings.contains(&encoding) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {encoding:?}\n"),
        );
    }
    let Ok(_permit) = tokio::time::timeout(s.ack_timeout, l.permits.acquire()).await else {
        return unavailable("too many concurrent requests");
    };
    let read = tokio::time::timeout(
        s.body_read_timeout,
        axum::body::to_bytes(req.into_body(), s.max_body_bytes),
    )
    .await;
    let Ok(read) = read else {
        return text(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time\n",
        );
    };
    let body = match read {
        Ok(b) => b,
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes\n", s.max_body_bytes),
            );
        }
    };
    let body = match decode(&encoding, body, s.max_decompressed_bytes) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let precision = params.precision.or(s.input_precision);
    let query_cluster = params
        .cluster
        .filter(|c| s.trust_query_cluster && !c.is_empty());
    let request_cluster = query_cluster.or_else(|| s.default_cluster.clone());
    let groups = &s.rule_groups;
    let writing = l.shared.flusher.writing();
    let stored = if body.len() <= INLINE_BODY_BYTES {
        // Small bodies (one node's lines) cost microseconds: handing them to the
        // blocking pool would cost more than processing them here.
        store_batch(
            &l.shared,
            groups,
            &body,
            request_cluster,
            precision,
            hops,
            s.reject_invalid,
            &s.name,
        )
    } else {
        let shared = Arc::clone(&l.shared);
        // Shared, not copied: the rules hold sets, maps and compiled patterns.
        let groups = Arc::clone(groups);
        let reject_invalid = s.reject_invalid;
        let name = s.name.clone();
        let task = tokio::task::spawn_blocking(move || {
            store_batch(
                &shared,
                &groups,
                &body,
                request_cluster,
                precision,
                hops,
                reject_invalid,
                &name,
            )
        });
        match task.await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(error = %e, "ingest worker failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
            }
        }
    };
    let outcome = match stored {
        Ok(o) => o,
        Err(response) => return *response,
    };
    if outcome.appended {
        match tokio::time::timeout(s.ack_timeout, writing.durable()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storage failed; refusing data");
                return unavailable("storage failed; not accepting data");
            }
            Err(_) => return unavailable("storage too slow; retry"),
        }
        for (waker, used) in l.shared.wakers.iter().zip(&outcome.targets_used) {
            if *used {
                waker.notify_one();
            }
        }
    }
    let mut response = if outcome.accepted == 0 && outcome.rejected > 0 {
        text(
            StatusCode::BAD_REQUEST,
            format!(
                "no valid line: {}\n",
                outcome.first_error.unwrap_or_default()
            ),
        )
    } else {
        success.into_response()
    };
    let h = response.headers_mut();
    h.insert("x-cc-relay-accepted", HeaderValue::from(outcome.accepted));
    h.insert("x-cc-relay-rejected", HeaderValue::from(outcome.rejected));
    response
}

/// The first `reject_new` upstream whose queue is at its limit.
fn full_reject_new_queue(shared: &Shared) -> Option<String> {
    shared
        .targets
        .iter()
        .zip(&shared.limits)
        .filter(|(_, limit)| limit.reject_new)
        .find(|(t, limit)| {
            shared
                .queue
                .len(&t.name)
                .is_ok_and(|s| s.stored_bytes >= limit.max_bytes)
        })
        .map(|(t, _)| t.name.clone())
}

struct Stored {
    accepted: u64,
    rejected: u64,
    first_error: Option<String>,
    appended: bool,
    targets_used: Vec<bool>,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn store_batch(
    shared: &Shared,
    groups: &[RuleGroup],
    body: &[u8],
    request_cluster: Option<String>,
    precision: Option<Precision>,
    hops: u32,
    reject_invalid: bool,
    listener: &str,
) -> Result<Stored, Box<Response>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Process once per rule group. Steps 1-5 (syntax, timestamps) are the
    // same in every group, so their counts are taken from the group that
    // refused most; a line counts as accepted if some group queued it, which
    // with several groups is approximated by the largest group count.
    let mut results = Vec::with_capacity(groups.len());
    for group in groups {
        let ctx = Context {
            default_cluster: request_cluster
                .clone()
                .or_else(|| group.default_cluster.clone()),
            precision,
            now_ns: i128::try_from(now.as_nanos()).unwrap_or(0),
        };
        let processed = process(body, &group.rules, &ctx, &group.targets);
        results.push((group, ctx.default_cluster, processed));
    }
    let mut invalid: BTreeMap<Invalid, u64> = BTreeMap::new();
    let mut accepted = 0;
    let mut filtered = u64::MAX;
    let mut first_error = None;
    for (_, _, p) in &results {
        for (why, n) in &p.invalid {
            let e = invalid.entry(*why).or_insert(0);
            *e = (*e).max(*n);
        }
        accepted = accepted.max(p.accepted);
        filtered = filtered.min(p.filtered);
        if first_error.is_none() {
            first_error.clone_from(&p.first_error);
        }
    }
    let filtered = if results.is_empty() { 0 } else { filtered };
    let rejected: u64 = invalid.values().sum();
    let c = &shared.counters;
    {
        let mut volume = c.volume.lock();
        let entry = volume.entry(listener.to_owned()).or_insert((0, 0));
        entry.0 += accepted + filtered + rejected;
        entry.1 += body.len() as u64;
    }
    {
        let mut counted = c.invalid.lock();
        for (why, n) in &invalid {
            *counted
                .entry((listener.to_owned(), why.as_str()))
                .or_insert(0) += n;
        }
    }
    if reject_invalid && rejected > 0 {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            format!(
                "{rejected} invalid lines, nothing stored (invalid_lines: reject); first: {}\n",
                first_error.unwrap_or_default()
            ),
        )));
    }
    if let Some(first) = &first_error {
        tracing::debug!(listener, rejected, first = %first, "invalid lines dropped");
    }
    let mut targets_used = vec![false; shared.targets.len()];
    let mut appended = false;
    for (group, cluster, processed) in &results {
        let meta = RecordMeta {
            ingest_time_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            hops: u8::try_from(hops).unwrap_or(u8::MAX),
            cluster: cluster.clone().unwrap_or_default(),
            source: format!("http:{listener}"),
        };
        // Upstreams that receive the very same lines share records (same ids).
        let mut same: Vec<(&[u8], Vec<usize>)> = Vec::new();
        for ((payload, _), &index) in processed
            .payloads
            .iter()
            .zip(group.indices.iter())
            .filter(|((_, count), _)| *count > 0)
        {
            match same.iter_mut().find(|(p, _)| *p == payload.as_slice()) {
                Some((_, members)) => members.push(index),
                None => same.push((payload.as_slice(), vec![index])),
            }
        }
        for (payload, members) in &same {
            let records = Record::from_batch(&meta, payload, &shared.split).map_err(|e| {
                tracing::error!(error = %e, "cannot build queue records");
                Box::new(text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"))
            })?;
            let names: Vec<&str> = members
                .iter()
                .filter_map(|&i| shared.targets.get(i).map(|t| t.name.as_str()))
                .collect();
            if let Err(e) = shared.queue.append(&names, &records) {
                tracing::error!(error = %e, "storage failed; refusing data");
                return Err(Box::new(unavailable("storage failed; not accepting data")));
            }
            appended = true;
            for &i in members {
                if let Some(u) = targets_used.get_mut(i) {
                    *u = true;
                }
            }
        }
    }
    enforce_drop_oldest(shared, &targets_used);
    Ok(Stored {
        accepted,
        rejected,
        first_error,
        appended,
        targets_used,
    })
}

/// `drop_oldest`: evicts from the head of queues that grew past their limit.
fn enforce_drop_oldest(shared: &Shared, used: &[bool]) {
    for (((target, limit), used), in_flight) in shared
        .targets
        .iter()
        .zip(&shared.limits)
        .zip(used)
        .zip(&shared.in_flight)
    {
        if !used || limit.reject_new {
            continue;
        }
        let Ok(stats) = shared.queue.len(&target.name) else {
            continue;
        };
        if stats.stored_bytes <= limit.max_bytes {
            continue;
        }
        // Held while evicting, so that the worker cannot take records into
        // a batch in between.
        let window = in_flight.lock();
        let after = Some(*window).filter(|id| *id > 0);
        let evicted = shared.queue.drop_oldest_after(
            &target.name,
            stats.stored_bytes - limit.max_bytes,
            after,
        );
        drop(window);
        match evicted {
            Ok(removed) if removed.records > 0 => {
                let mut dropped = shared.counters.dropped_full.lock();
                let entry = dropped.entry(target.name.clone()).or_insert((0, 0));
                entry.0 += removed.lines;
                entry.1 += removed.records;
                tracing::warn!(
                    upstream = %target.name,
                    lines = removed.lines,
                    ?after,
                    "queue full (buffer.max_bytes): dropped the oldest lines"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(upstream = %target.name, error = %e, "evicting from a full queue failed")
            }
        }
    }
}

/// Decodes the body per `Content-Encoding`, within `limit` bytes.
fn decode(encoding: &str, body: Bytes, limit: usize) -> Result<Bytes, Box<Response>> {
    let too_large = || {
        Box::new(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decoded body larger than {limit} bytes\n"),
        ))
    };
    let bad = |e: std::io::Error| {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            format!("cannot decode {encoding} body: {e}\n"),
        ))
    };
    let read_limited = |reader: &mut dyn std::io::Read| -> Result<Bytes, Box<Response>> {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        reader.take(cap).read_to_end(&mut out).map_err(bad)?;
        if out.len() > limit {
            return Err(too_large());
        }
        Ok(Bytes::from(out))
    };
    match encoding {
        "identity" | "" => {
            if body.len() > limit {
                return Err(too_large());
            }
            Ok(body)
        }
        "gzip" | "x-gzip" => read_limited(&mut flate2::read::GzDecoder::new(body.as_ref())),
        "zstd" => {
            let mut decoder = zstd::stream::read::Decoder::new(body.as_ref()).map_err(bad)?;
            read_limited(&mut decoder)
        }
        other => Err(Box::new(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}\n"),
        ))),
    }
}

/// What a write request's query string says. Understood: `precision`
/// (`s`, `ms`, `us`, `ns`, and InfluxDB 1's `u` and `n`), `cluster`, and
/// InfluxDB 1's `u`/`p` credentials; InfluxDB's `db`, `rp`, `org`,
/// `bucket` and `consistency` are accepted and ignored (the lines carry
/// their cluster, and the relay has one destination per upstream).
#[derive(Debug, Default, PartialEq, Eq)]
struct WriteParams {
    precision: Option<Precision>,
    cluster: Option<String>,
    /// `u` and `p`: user and password for basic authentication.
    user: Option<(String, String)>,
}

impl WriteParams {
    fn parse(query: &str) -> Result<WriteParams, String> {
        let mut params = WriteParams::default();
        let (mut user, mut password) = (None, None);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "precision" => {
                    let unit = match &*value {
                        "n" => "ns",
                        "u" => "us",
                        "m" | "h" => {
                            return Err(format!(
                                "precision={value}: timestamps in minutes or hours are not supported; use s, ms, us or ns"
                            ));
                        }
                        other => other,
                    };
                    params.precision = Some(unit.parse::<Precision>().map_err(|e| e.to_string())?);
                }
                "cluster" => params.cluster = Some(value.into_owned()),
                "u" => user = Some(value.into_owned()),
                "p" => password = Some(value.into_owned()),
                _ => {}
            }
        }
        params.user = user.zip(password);
        Ok(params)
    }
}

/// A refused request: the answer, and the reason counted in `/metrics`.
struct AuthFailure {
    response: Box<Response>,
    reason: &'static str,
}

fn refuse(response: Response, reason: &'static str) -> AuthFailure {
    AuthFailure {
        response: Box::new(response),
        reason,
    }
}

/// Checks the request's credentials: a JWT as `Authorization: Bearer`,
/// InfluxDB 2's `Authorization: Token`, or `X-Auth-Token`; basic credentials
/// as `Authorization: Basic` or InfluxDB 1's `u`/`p` query parameters.
fn authenticate(
    auth: &Auth,
    headers: &HeaderMap,
    query_user: Option<&(String, String)>,
) -> Result<(), AuthFailure> {
    if auth.mode == AuthMode::None {
        return Ok(());
    }
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header(header::AUTHORIZATION);
    let token = authorization
        .and_then(|v| bearer_token(v).or_else(|| influx_token(v)))
        .or_else(|| {
            auth.accept_x_auth_token
                .then(|| headers.get("x-auth-token").and_then(|v| v.to_str().ok()))
                .flatten()
        });
    let jwt_allowed = matches!(auth.mode, AuthMode::Jwt | AuthMode::JwtOrBasic);
    let basic_allowed = matches!(auth.mode, AuthMode::Basic | AuthMode::JwtOrBasic);
    let credentials = auth.credentials.read();
    if jwt_allowed && let (Some(token), Some(verifier)) = (token, &credentials.verifier) {
        return match verifier.verify(token) {
            Ok(claims) => {
                if auth.require_sub && claims.sub.as_deref().is_none_or(str::is_empty) {
                    return Err(refuse(
                        unauthorized(auth, "token has no sub claim"),
                        "claims",
                    ));
                }
                if !claims.has_any_role(&auth.required_roles) {
                    return Err(refuse(
                        text(StatusCode::FORBIDDEN, "token lacks a required role\n"),
                        "claims",
                    ));
                }
                Ok(())
            }
            Err(e) => Err(refuse(unauthorized(auth, &e.to_string()), "jwt")),
        };
    }
    let from_header = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .map(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        });
    let basic = match from_header {
        Some(decoded) => Some(decoded),
        None => query_user.map(|up| Some(up.clone())),
    };
    if basic_allowed && let Some(basic) = basic {
        if let Some((user, password)) = &basic
            && credentials
                .basic_users
                .as_ref()
                .is_some_and(|users| users.verify(user, password))
        {
            return Ok(());
        }
        return Err(refuse(
            unauthorized(auth, "wrong user or password"),
            "basic",
        ));
    }
    Err(refuse(
        unauthorized(auth, "credentials required"),
        "missing",
    ))
}

/// InfluxDB 2's `Authorization: Token <token>`.
fn influx_token(header_value: &str) -> Option<&str> {
    header_value
        .strip_prefix("Token ")
        .filter(|token| !token.is_empty())
}

fn unauthorized(auth: &Auth, why: &str) -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    let challenge = match auth.mode {
        AuthMode::Basic | AuthMode::JwtOrBasic => "Basic realm=\"cc-relay\"",
        _ => "Bearer realm=\"cc-relay\"",
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// Invalid-line reasons in the order they are reported.
pub const INVALID_REASONS: [Invalid; 5] = [
    Invalid::Syntax,
    Invalid::TooLong,
    Invalid::Timestamp,
    Invalid::TimestampRange,
    Invalid::Ccms,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_parameters_of_every_influxdb_dialect() {
        let p = WriteParams::parse("cluster=a%20b&precision=ms&x&db=metrics&rp=autogen").unwrap();
        assert_eq!(p.cluster.as_deref(), Some("a b"));
        assert_eq!(p.precision, Some(Precision::Millis));
        assert_eq!(p.user, None);
        let v1 = WriteParams::parse("db=x&u=alice&p=s%3Acret&precision=n").unwrap();
        assert_eq!(v1.precision, Some(Precision::Nanos));
        assert_eq!(v1.user, Some(("alice".into(), "s:cret".into())));
        let v2 = WriteParams::parse("org=o&bucket=b&precision=us").unwrap();
        assert_eq!(v2.precision, Some(Precision::Micros));
        assert_eq!(
            WriteParams::parse("precision=u").unwrap().precision,
            Some(Precision::Micros)
        );
        assert!(
            WriteParams::parse("precision=h")
                .unwrap_err()
                .contains("hours")
        );
        assert!(WriteParams::parse("precision=fortnight").is_err());
        assert_eq!(
            WriteParams::parse("u=alice").unwrap().user,
            None,
            "a user needs a password"
        );
    }

    #[test]
    fn influxdb_paths_answer_204_and_the_collectors_path_200() {
        assert_eq!(default_success("/write"), StatusCode::NO_CONTENT);
        assert_eq!(default_success("/api/v2/write"), StatusCode::NO_CONTENT);
        assert_eq!(default_success("/api/v2/write/"), StatusCode::NO_CONTENT);
        assert_eq!(default_success("/api/write"), StatusCode::OK);
        assert_eq!(default_success("/api/write/"), StatusCode::OK);
        assert_eq!(default_success("/ingest"), StatusCode::OK);
    }

    #[test]
    fn decoding_enforces_the_limit() {
        let plain = Bytes::from(vec![b'a'; 1000]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert_eq!(decode("gzip", gz.clone(), 1000).unwrap(), plain);
        assert_eq!(
            decode("gzip", gz, 999).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let z = Bytes::from(zstd::bulk::compress(&plain, 3).unwrap());
        assert_eq!(decode("zstd", z, 1000).unwrap(), plain);
        assert_eq!(
            decode("br", plain.clone(), 1000).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            decode("gzip", plain, 1000).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    fn users() -> crate::config::BasicUsers {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "collector:s3cret\n").unwrap();
        crate::config::BasicUsers::from_file(&path).unwrap()
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let auth = Auth {
            mode: AuthMode::Basic,
            credentials: parking_lot::RwLock::new(Credentials {
                verifier: None,
                basic_users: Some(users()),
            }),
            accept_x_auth_token: true,
            required_roles: Vec::new(),
            require_sub: false,
        };
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        let good = base64::engine::general_purpose::STANDARD.encode("collector:s3cret");
        let bad = base64::engine::general_purpose::STANDARD.encode("collector:nope");
        assert!(authenticate(&auth, &with(&format!("Basic {good}")), None).is_ok());
        let refused = authenticate(&auth, &with(&format!("Basic {bad}")), None).unwrap_err();
        assert_eq!(refused.response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.reason, "basic");
        let missing = authenticate(&auth, &HeaderMap::new(), None).unwrap_err();
        assert_eq!(missing.reason, "missing");
        // InfluxDB 1 clients send u/p as query parameters.
        let query = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
        assert!(
            authenticate(
                &auth,
                &HeaderMap::new(),
                query("collector", "s3cret").as_ref()
            )
            .is_ok()
        );
        let refused = authenticate(
            &auth,
            &HeaderMap::new(),
            query("collector", "nope").as_ref(),
        )
        .unwrap_err();
        assert_eq!(refused.reason, "basic");
    }
}

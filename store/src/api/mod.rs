//! The HTTP API of cc-metric-store: routes, authentication, error bodies.
//!
//! | method | path (also with a trailing slash) | handler |
//! |---|---|---|
//! | POST | `/api/write` | [`write`]: line protocol in |
//! | GET (body), POST | `/api/query` | [`query`](mod@query): series out |
//! | POST | `/api/free` | [`free`]: drop old data |
//! | GET | `/api/debug` | [`debug`]: the tree's chunks as JSON |
//! | GET (body) | `/api/healthcheck` | [`health`]: per-node data health |
//! | GET | `/metrics` (exactly) | the store's own metrics, see [`crate::metrics`] |
//! | GET | `/` and `/status` (exactly) | the status page and its JSON, see [`crate::status`] |
//!
//! The trailing-slash forms match prefixes (`/api/write/anything`), as
//! upstream's router does. GET routes answer HEAD. A wrong method gets 405
//! with `Allow`, an unknown path 404, both in plain text and without an
//! authentication check. Handler errors are [`ApiError`]s; most are JSON:
//! `{"status":"Bad Request","error":"…"}`.
//!
//! `/metrics`, `/` and `/status` are not part of upstream's API (which has
//! no route outside `/api/` but `/swagger/`): they answer also while the
//! checkpoints load (the `/api/` routes answer 503 then), and they need a
//! token only with `main.metrics-endpoint-auth` (then exactly as
//! `/api/debug` does): one switch for what monitoring reads. Every answer of an `/api/` route, including 401,
//! 403 and 503, is counted in `ccstore_http_requests_total` and timed in
//! `ccstore_http_request_duration_seconds`; 404 and 405 are not (they reach
//! no route), nor is the 408 of [`deadline`], which answers in place of a
//! request that ran out of time.

pub mod debug;
pub mod error;
pub mod free;
pub mod health;
pub mod query;
pub mod write;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use cc_common::auth::{Claims, JwtVerifier, bearer_token};

pub use error::ApiError;

use crate::metrics::{Endpoint, Metrics};
use crate::persist::restore::RestoreProgress;
use crate::status::StatusSources;
use crate::store::MetricStore;

/// What every handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The data.
    pub store: Arc<MetricStore>,
    /// Token verification; `None` when `jwt-public-key` is empty.
    pub verifier: Option<JwtVerifier>,
    /// Roles of which a token needs one for `/api/free` and `/api/debug`;
    /// empty means any valid token will do (upstream behaviour).
    pub admin_roles: Vec<String>,
    /// Checkpoint loading at start-up; the API answers 503 until it is done.
    pub restore: Arc<RestoreProgress>,
    /// What `/metrics` serves; the API counts its requests there.
    pub metrics: Arc<Metrics>,
    /// Whether `/metrics`, `/` and `/status` need a token as `/api/debug`
    /// does (`main.metrics-endpoint-auth`).
    pub metrics_auth: bool,
    /// What the status page and its JSON show.
    pub status: Arc<StatusSources>,
}

/// Builds the router. `max_body` bounds every request body (413 beyond).
///
/// The checks (restore, token, admin role) wrap each method's handler, not
/// the router: a wrong method is a plain 405 and an unknown path a 404
/// whatever the token, as upstream answers them.
pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    let checked = |route: MethodRouter<Arc<AppState>>, admin: bool, allow: &'static str| {
        let route = if admin {
            route.route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                require_admin,
            ))
        } else {
            route
        };
        let route = route
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                authenticate,
            ))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                wait_for_restore,
            ))
            .route_layer(middleware::from_fn_with_state(Arc::clone(&state), observe));
        with_405(route, allow)
    };
    let write = || checked(post(write::handle), false, "POST");
    let query = || {
        checked(
            get(query::handle).post(query::handle),
            false,
            "GET, HEAD, POST",
        )
    };
    let free = || checked(post(free::handle), true, "POST");
    let debug = || checked(get(debug::handle), true, "GET, HEAD");
    let health = || checked(get(health::handle), false, "GET, HEAD");
    Router::new()
        .route("/api/write", write())
        .route("/api/write/", write())
        .route("/api/write/{*rest}", write())
        .route("/api/query", query())
        .route("/api/query/", query())
        .route("/api/query/{*rest}", query())
        .route("/api/free", free())
        .route("/api/free/", free())
        .route("/api/free/{*rest}", free())
        .route("/api/debug", debug())
        .route("/api/debug/", debug())
        .route("/api/debug/{*rest}", debug())
        .route("/api/healthcheck", health())
        .route("/api/healthcheck/", health())
        .route("/api/healthcheck/{*rest}", health())
        .merge(metrics_router(&state))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// `GET /metrics`, `GET /` and `GET /status`, with the checks of
/// `/api/debug` when `metrics-endpoint-auth` is set.
fn metrics_router(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let guard = |route: MethodRouter<Arc<AppState>>| {
        let route = with_405(route, "GET, HEAD");
        if !state.metrics_auth {
            return route;
        }
        route
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(state),
                require_admin,
            ))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(state),
                authenticate,
            ))
    };
    Router::new()
        .route("/metrics", guard(get(scrape)))
        .route("/", guard(get(status_page)))
        .route("/status", guard(get(status_json)))
}

/// `GET /`: the status page; the tree is walked on a blocking thread.
async fn status_page(State(state): State<Arc<AppState>>) -> Response {
    let status = Arc::clone(&state.status);
    match blocking(move || status.snapshot().render()).await {
        Ok(page) => cc_common::status_page::html_response(page),
        Err(e) => e.into_response(),
    }
}

/// `GET /status`: the status page's figures as JSON.
async fn status_json(State(state): State<Arc<AppState>>) -> Response {
    let status = Arc::clone(&state.status);
    match blocking(move || status.snapshot()).await {
        Ok(snapshot) => cc_common::status_page::json_response(&snapshot),
        Err(e) => e.into_response(),
    }
}

/// Answers a scrape; the tree is walked on a blocking thread.
async fn scrape(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let metrics = Arc::clone(&state.metrics);
    match blocking(move || metrics.response(&headers)).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// Counts and times every answer of an `/api/` route.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(endpoint) = Endpoint::of_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .observe(endpoint, response.status(), started.elapsed());
    response
}

fn with_405(
    route: MethodRouter<Arc<AppState>>,
    allow: &'static str,
) -> MethodRouter<Arc<AppState>> {
    route.fallback(move || async move {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    })
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Decodes the first JSON value of a request body, as upstream's decoder
/// does: whatever follows it is not read. An empty body is an error
/// ("EOF while parsing a value").
///
/// # Errors
///
/// The body does not start with a `T`.
pub fn first_json_value<T: serde::de::DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    match serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .next()
    {
        Some(value) => value,
        None => serde_json::from_slice(body),
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// A JSON response from pre-rendered bytes.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The JSON error body of cc-metric-store: `{"status":"…","error":"…"}`,
/// in that field order, and a newline.
pub fn json_error(status: StatusCode, error: impl std::fmt::Display) -> Response {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        status: &'a str,
        error: String,
    }
    let body = Body {
        status: status.canonical_reason().unwrap_or(""),
        error: error.to_string(),
    };
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    json_bytes(status, bytes)
}

/// Checks the bearer token of every API request when authentication is on.
/// Verified claims are put into the request's extensions.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(verifier) = &state.verifier else {
        return next.run(req).await;
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = token else {
        return ApiError::NoToken.into_response();
    };
    match verifier.verify(token) {
        Ok(claims) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Err(e) => ApiError::BadToken(e).into_response(),
    }
}

/// Answers 503 with `Retry-After` while checkpoints are being loaded, so
/// that nobody reads half-restored data or writes into it.
async fn wait_for_restore(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    use std::sync::atomic::Ordering;
    let progress = &state.restore;
    if progress.done.load(Ordering::Acquire) {
        return next.run(req).await;
    }
    ApiError::Restoring {
        hosts_done: progress.hosts_done.load(Ordering::Relaxed),
        hosts_total: progress.hosts_total.load(Ordering::Relaxed),
        mb_read: progress.bytes.load(Ordering::Relaxed) / 1_000_000,
    }
    .into_response()
}

/// With `admin-roles` configured, requires one of them for free and debug
/// (and `/metrics` with `metrics-endpoint-auth`).
async fn require_admin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.admin_roles.is_empty() || state.verifier.is_none() {
        return next.run(req).await;
    }
    let allowed = req
        .extensions()
        .get::<Claims>()
        .is_some_and(|c| c.has_any_role(&state.admin_roles));
    if allowed {
        next.run(req).await
    } else {
        ApiError::Forbidden(state.admin_roles.clone()).into_response()
    }
}

/// Answers 408 when a request is not read and answered within `limit`
/// (`main.read-timeout` + `main.write-timeout`).
pub async fn deadline(limit: std::time::Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Runs CPU-bound work off the async runtime's threads.
///
/// # Errors
///
/// [`ApiError::Worker`] when the work panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::Worker)
}

/// The raw value of the first `name=` pair of a query string, without URL
/// decoding (as upstream reads `cluster`); `Some("")` for a bare `name`.
#[must_use]
pub fn raw_query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::Persistence;
    use crate::registry::Registry;
    use axum::body::Body;
    use std::sync::atomic::Ordering;
    use tower::ServiceExt;

    #[tokio::test]
    async fn data_endpoints_answer_503_until_checkpoints_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let restore = Arc::new(RestoreProgress::default());
        restore.hosts_total.store(40, Ordering::Relaxed);
        restore.hosts_done.store(12, Ordering::Relaxed);
        let state = state(dir.path(), &restore, None, false);
        let app = router(Arc::clone(&state), 1 << 20);
        let call = |method: &str, path: &str, body: &'static str| {
            axum::http::Request::builder()
                .method(method)
                .uri(path)
                .body(Body::from(body))
                .unwrap()
        };
        for (method, path, body) in [
            ("POST", "/api/write?cluster=c", ""),
            ("GET", "/api/query", "{}"),
            ("GET", "/api/healthcheck", "{}"),
            ("POST", "/api/free?to=1", ""),
            ("GET", "/api/debug", ""),
        ] {
            let r = app.clone().oneshot(call(method, path, body)).await.unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(r.headers()[header::RETRY_AFTER], "2");
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("12 of 40 hosts"), "{text}");
        }
        let r = app.clone().oneshot(call("GET", "/nope", "")).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = app
            .clone()
            .oneshot(call("GET", "/metrics", ""))
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "/metrics answers during the restore"
        );
        let text = body_text(r).await;
        assert!(text.contains("ccstore_restore_in_progress 1\n"), "{text}");
        assert!(text.contains("ccstore_restore_hosts_done 12\n"), "{text}");
        restore.done.store(true, Ordering::Release);
        let r = app
            .oneshot(call("POST", "/api/write?cluster=c", ""))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let text = state
            .metrics
            .encode(cc_common::metrics::Format::Text)
            .unwrap();
        for line in [
            "ccstore_http_requests_total{endpoint=\"write\",code=\"503\"} 1\n",
            "ccstore_http_requests_total{endpoint=\"write\",code=\"200\"} 1\n",
            "ccstore_http_requests_total{endpoint=\"debug\",code=\"503\"} 1\n",
            "ccstore_http_request_duration_seconds_count{endpoint=\"write\"} 2\n",
            "ccstore_restore_in_progress 0\n",
        ] {
            assert!(text.contains(line), "{line}in:\n{text}");
        }
        assert!(
            !text.contains("code=\"404\""),
            "unknown paths are not counted"
        );
    }

    fn state(
        dir: &std::path::Path,
        restore: &Arc<RestoreProgress>,
        verifier: Option<JwtVerifier>,
        metrics_auth: bool,
    ) -> Arc<AppState> {
        let store = Arc::new(MetricStore::new(Registry::default()));
        let persistence =
            Arc::new(Persistence::new(dir, crate::persist::Format::Bin, true, 0).unwrap());
        let sources = crate::metrics::Sources {
            store: Arc::clone(&store),
            persistence,
            restore: Arc::clone(restore),
            memory_cap: 0,
        };
        let metrics = Arc::new(Metrics::new(sources.clone()));
        let status = Arc::new(StatusSources {
            sources,
            metrics: Arc::clone(&metrics),
            checkpoint_interval: std::time::Duration::from_secs(3600),
            started: cc_common::time::now_secs(),
            rates: parking_lot::Mutex::default(),
        });
        Arc::new(AppState {
            store,
            verifier,
            admin_roles: vec!["admin".to_owned()],
            restore: Arc::clone(restore),
            metrics,
            metrics_auth,
            status,
        })
    }

    async fn body_text(r: Response) -> String {
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn metrics_endpoint_is_open_unless_configured_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let restore = Arc::new(RestoreProgress::default());
        restore.done.store(true, Ordering::Release);
        let key =
            cc_common::auth::PublicKey::from_base64("kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0=")
                .unwrap();
        let verifier = || Some(JwtVerifier::new(vec![key.clone()]).unwrap());
        let get = |path: &str| {
            axum::http::Request::builder()
                .uri(path)
                .body(Body::empty())
                .unwrap()
        };
        let open = router(state(dir.path(), &restore, verifier(), false), 1 << 20);
        let r = open.clone().oneshot(get("/metrics")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            cc_common::metrics::TEXT_CONTENT_TYPE
        );
        let r = open.clone().oneshot(get("/api/debug")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the API is not");
        let r = open
            .oneshot(
                axum::http::Request::builder()
                    .method("POST")
                    .uri("/metrics")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");

        let guarded = router(state(dir.path(), &restore, verifier(), true), 1 << 20);
        let r = guarded.clone().oneshot(get("/metrics")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body_text(r).await, "Use JWT Authentication\n");
        // The upstream sample token is valid but has none of the admin roles.
        let sample = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9.eyJ1c2VyIjoiYWRtaW4iLCJyb2xlcyI6WyJST0xFX0FETUlOIiwiUk9MRV9BTkFMWVNUIiwiUk9MRV9VU0VSIl19.d-3_3FZTsadPjDEdsWrrQ7nS0edMAR4zjl-eK7rJU3HziNBfI9PDHDIpJVHTNN5E5SlLGLFXctWyKAkwhXL-Dw";
        let r = guarded
            .oneshot(
                axum::http::Request::builder()
                    .uri("/metrics")
                    .header(header::AUTHORIZATION, format!("Bearer {sample}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn status_page_and_json_answer_during_the_restore_and_follow_the_metrics_switch() {
        let dir = tempfile::tempdir().unwrap();
        let restore = Arc::new(RestoreProgress::default());
        restore.hosts_total.store(40, Ordering::Relaxed);
        restore.hosts_done.store(12, Ordering::Relaxed);
        let key =
            cc_common::auth::PublicKey::from_base64("kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0=")
                .unwrap();
        let verifier = || Some(JwtVerifier::new(vec![key.clone()]).unwrap());
        let get = |path: &str| {
            axum::http::Request::builder()
                .uri(path)
                .body(Body::empty())
                .unwrap()
        };
        let open = router(state(dir.path(), &restore, verifier(), false), 1 << 20);
        let r = open.clone().oneshot(get("/")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(body_text(r).await.contains("loading: 12 of 40 hosts"));
        let r = open.clone().oneshot(get("/status")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
        assert_eq!(json["restore"]["in_progress"], true);
        assert_eq!(json["restore"]["hosts_done"], 12);
        let r = open.oneshot(get("/status/x")).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        let guarded = router(state(dir.path(), &restore, verifier(), true), 1 << 20);
        for path in ["/", "/status"] {
            let r = guarded.clone().oneshot(get(path)).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
    }

    #[test]
    fn raw_query_param_reads_the_first_pair_verbatim() {
        assert_eq!(
            raw_query_param(Some("cluster=alex"), "cluster"),
            Some("alex")
        );
        assert_eq!(
            raw_query_param(Some("x=1&cluster=a%20b&cluster=z"), "cluster"),
            Some("a%20b")
        );
        assert_eq!(raw_query_param(Some("cluster"), "cluster"), Some(""));
        assert_eq!(raw_query_param(Some("clusterx=1"), "cluster"), None);
        assert_eq!(raw_query_param(None, "cluster"), None);
    }
}

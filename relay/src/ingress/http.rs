//! HTTP ingress: what cc-metric-collector's http sink posts (spec `relay.md` §4.3).
//!
//! Request handling, in order: route and method (404/405) → authentication
//! (401, 403 for a valid token without a required role) → overload, storage
//! or shutdown refusal (503 with `Retry-After`) → hop limit (508) → query
//! parameters (400) → `Content-Encoding` (415 if not accepted) → body within
//! `max_body_bytes` (413, 408 if too slow) → concurrency limit (503) →
//! decoding (400, 413 beyond `max_decompressed_bytes`) → line processing →
//! records into every matching upstream queue → group commit → answer.
//!
//! A request takes one of `max_concurrent_requests` slots only once its body
//! is in, so senders whose bodies trickle in (a broken or hostile node) hold
//! no slot and cannot make the collectors wait. What the bodies still
//! arriving may hold in memory is bounded instead, to what the slots allow:
//! `max_concurrent_requests` × `max_body_bytes` bytes per listener (a body
//! waits for room, within `body_read_timeout`).
//!
//! The answer is 2xx **only after the batch is on disk**: an fsync that
//! started after the last insert has returned. Which 2xx depends on the path
//! ([`default_success`]: 200 for the collectors' `/api/write`, 204 for
//! InfluxDB's `/write` and `/api/v2/write`) unless `success_status` fixes
//! one. It carries `X-CC-Relay-Accepted` and `X-CC-Relay-Rejected` line
//! counts.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use bytes::{Bytes, BytesMut};
use cc_common::lineproto::Precision;
use futures_util::StreamExt as _;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::auth::{Auth, authenticate};
use super::text;
use crate::config::ContentEncoding;
use crate::metrics::{IngressLabels, ReasonLabels, RequestLabels};
use crate::runtime::{Accepted, Batch, Refused, RuleGroup, Runtime};

/// Settings of one HTTP listener.
#[derive(Debug)]
pub struct ListenerSettings {
    /// Name in logs and metrics.
    pub name: Arc<str>,
    /// Write paths.
    pub paths: Vec<String>,
    /// Authentication (shared with the SIGHUP handler).
    pub auth: Arc<Auth>,
    /// Body limit before decoding.
    pub max_body_bytes: usize,
    /// Body limit after decoding.
    pub max_decompressed_bytes: usize,
    /// Accepted `Content-Encoding`s.
    pub accept_encodings: Vec<ContentEncoding>,
    /// Longest wait for durability before answering 503.
    pub ack_timeout: Duration,
    /// Longest time to receive the body (408 beyond).
    pub body_read_timeout: Duration,
    /// Requests processed at once once their bodies are in (the rest wait,
    /// within `ack_timeout`); also sets the memory bound of bodies arriving.
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

/// Why an HTTP write was refused; one answer per kind.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A query parameter is malformed (400).
    #[error("{0}")]
    BadParameter(String),
    /// More relays on the way than `max_hops` (508).
    #[error("too many relay hops ({hops} > {max})")]
    Loop {
        /// `X-CC-Relay-Hops` of the request.
        hops: u32,
        /// The listener's `max_hops`.
        max: u32,
    },
    /// A `Content-Encoding` the listener does not accept (415).
    #[error("unsupported Content-Encoding {0:?}")]
    Encoding(String),
    /// The body exceeds `max_body_bytes` (413).
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The decoded body exceeds `max_decompressed_bytes` (413).
    #[error("decoded body larger than {0} bytes")]
    DecodedTooLarge(usize),
    /// The body is not valid in its encoding (400).
    #[error("cannot decode {encoding:?} body: {source}")]
    Decode {
        /// The `Content-Encoding`.
        encoding: ContentEncoding,
        /// What the decoder said.
        #[source]
        source: std::io::Error,
    },
    /// The body broke off (the client went away) or its chunked encoding is
    /// broken (400).
    #[error("request body incomplete or malformed")]
    BodyBroken,
    /// The body did not arrive within `body_read_timeout` (408).
    #[error("request body not received in time")]
    BodyTimeout,
    /// `max_concurrent_requests` stayed busy for `ack_timeout` (503).
    #[error("too many concurrent requests")]
    Busy,
    /// The runtime refused the batch.
    #[error(transparent)]
    Refused(#[from] Refused),
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        if let IngressError::Refused(refused) = self {
            return refused.into_response();
        }
        let status = match &self {
            IngressError::BadParameter(_)
            | IngressError::Decode { .. }
            | IngressError::BodyBroken => StatusCode::BAD_REQUEST,
            IngressError::Loop { .. } => StatusCode::LOOP_DETECTED,
            IngressError::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngressError::TooLarge(_) | IngressError::DecodedTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngressError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngressError::Busy => return unavailable(&self.to_string()),
            IngressError::Refused(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        text(status, format!("{self}\n"))
    }
}

struct Listener {
    settings: ListenerSettings,
    runtime: Arc<Runtime>,
    /// Requests past their body: decoding, processing, waiting for durability.
    permits: Semaphore,
    /// Bytes of bodies held in memory, one permit per byte
    /// ([`body_budget`]).
    body_bytes: Semaphore,
}

/// Bytes the bodies of one listener may hold at once: as many full bodies as
/// requests may be processed at once.
fn body_budget(settings: &ListenerSettings) -> usize {
    settings
        .max_concurrent_requests
        .max(1)
        .saturating_mul(settings.max_body_bytes.max(1))
        .min(Semaphore::MAX_PERMITS)
}

/// The router of one listener.
pub fn router(settings: ListenerSettings, runtime: Arc<Runtime>) -> Router {
    let paths = settings.paths.clone();
    let max_body = settings.max_body_bytes;
    runtime.counters.add_source(&settings.name);
    let state = Arc::new(Listener {
        permits: Semaphore::new(settings.max_concurrent_requests.max(1)),
        body_bytes: Semaphore::new(body_budget(&settings)),
        settings,
        runtime,
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

fn unavailable(reason: &str) -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn handle(State(l): State<Arc<Listener>>, req: Request, success: StatusCode) -> Response {
    let started = std::time::Instant::now();
    let response = match handle_inner(&l, req, success).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    let c = &l.runtime.counters;
    let request = RequestLabels {
        ingress: Arc::clone(&l.settings.name),
        code: response.status().as_u16(),
    };
    c.requests.get_or_create(&request).inc();
    let ingress = IngressLabels {
        ingress: request.ingress,
    };
    c.ack_seconds
        .get_or_create(&ingress)
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn handle_inner(
    l: &Listener,
    req: Request,
    success: StatusCode,
) -> Result<Response, IngressError> {
    let s = &l.settings;
    let params = WriteParams::parse(req.uri().query().unwrap_or(""));
    if let Err(failure) = authenticate(&s.auth, req.headers(), params.user.as_ref()) {
        let labels = ReasonLabels {
            ingress: Arc::clone(&s.name),
            reason: failure.reason,
        };
        l.runtime
            .counters
            .auth_failures
            .get_or_create(&labels)
            .inc();
        return Ok(*failure.response);
    }
    l.runtime.check()?;
    let hops = check_hops(req.headers(), s.max_hops)?;
    let precision = params.precision.map_err(IngressError::BadParameter)?;
    let named = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let Some(encoding) =
        ContentEncoding::from_header(named).filter(|e| s.accept_encodings.contains(e))
    else {
        return Err(IngressError::Encoding(named.to_owned()));
    };
    // From here the batch is on its way: a group commit about to start may
    // wait a moment for it.
    let writing = l.runtime.writing();
    let (body, _held) = tokio::time::timeout(
        s.body_read_timeout,
        read_body(req.into_body(), s.max_body_bytes, &l.body_bytes),
    )
    .await
    .map_err(|_| IngressError::BodyTimeout)??;
    let _permit = tokio::time::timeout(s.ack_timeout, l.permits.acquire())
        .await
        .map_err(|_| IngressError::Busy)?;
    let body = match encoding {
        ContentEncoding::Identity => decode(encoding, body, s.max_decompressed_bytes)?,
        // Decompressing up to `max_decompressed_bytes` takes a while: not
        // on a thread that serves connections.
        _ => {
            let limit = s.max_decompressed_bytes;
            tokio::task::spawn_blocking(move || decode(encoding, body, limit))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "decoding worker failed");
                    IngressError::Refused(Refused::Internal)
                })??
        }
    };
    let query_cluster = params
        .cluster
        .filter(|c| s.trust_query_cluster && !c.is_empty());
    let batch = Batch {
        protocol: "http",
        source: Arc::clone(&s.name),
        body,
        cluster: query_cluster.or_else(|| s.default_cluster.clone()),
        precision: precision.or(s.input_precision),
        hops,
        reject_invalid: s.reject_invalid,
        turn: None,
    };
    let accepted = l
        .runtime
        .accept(writing, &s.rule_groups, batch, s.ack_timeout)
        .await?;
    Ok(answer(&accepted, success))
}

/// Reads a body of at most `max` bytes, holding one permit of `budget` per
/// byte read (returned with the body; dropping it gives the room back).
async fn read_body(
    body: axum::body::Body,
    max: usize,
    budget: &Semaphore,
) -> Result<(Bytes, Option<SemaphorePermit<'_>>), IngressError> {
    let too_large = || IngressError::TooLarge(max);
    let mut chunks = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut held: Option<SemaphorePermit<'_>> = None;
    let mut len = 0usize;
    while let Some(chunk) = chunks.next().await {
        // A read error is a client that went away or sent a broken chunked
        // body.
        let chunk = chunk.map_err(|_| IngressError::BodyBroken)?;
        len = len.checked_add(chunk.len()).ok_or_else(too_large)?;
        if len > max {
            return Err(too_large());
        }
        let n = u32::try_from(chunk.len()).map_err(|_| too_large())?;
        let permit = budget
            .acquire_many(n)
            .await
            .map_err(|_| IngressError::Refused(Refused::ShuttingDown))?;
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        // One chunk (most small bodies) is kept as it is, without a copy.
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            None => joined.extend_from_slice(&chunk),
            Some(f) => {
                joined.reserve(f.len() + chunk.len());
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&chunk);
            }
        }
    }
    let body = first.unwrap_or_else(|| joined.freeze());
    Ok((body, held))
}

/// The request's hop count (`X-CC-Relay-Hops`), refused beyond `max`.
fn check_hops(headers: &axum::http::HeaderMap, max: u32) -> Result<u32, IngressError> {
    let hops = headers
        .get("x-cc-relay-hops")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if hops > max {
        let from = headers
            .get("x-cc-relay-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        tracing::warn!(
            hops,
            from,
            "refusing a request that went through too many relays (loop?)"
        );
        return Err(IngressError::Loop { hops, max });
    }
    Ok(hops)
}

/// 2xx with the line counts; 400 when no line was valid.
fn answer(a: &Accepted, success: StatusCode) -> Response {
    let mut response = if a.accepted == 0 && a.rejected > 0 {
        text(
            StatusCode::BAD_REQUEST,
            format!(
                "no valid line: {}\n",
                a.first_error.as_deref().unwrap_or_default()
            ),
        )
    } else {
        success.into_response()
    };
    let h = response.headers_mut();
    h.insert("x-cc-relay-accepted", HeaderValue::from(a.accepted));
    h.insert("x-cc-relay-rejected", HeaderValue::from(a.rejected));
    response
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match &self {
            Refused::Invalid { .. } => text(StatusCode::BAD_REQUEST, format!("{self}\n")),
            Refused::Internal => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
            _ => unavailable(&self.to_string()),
        }
    }
}

/// Decodes the body per `Content-Encoding`, within `limit` bytes.
fn decode(encoding: ContentEncoding, body: Bytes, limit: usize) -> Result<Bytes, IngressError> {
    let bad = |source| IngressError::Decode { encoding, source };
    let read_limited = |reader: &mut dyn std::io::Read| -> Result<Bytes, IngressError> {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        reader.take(cap).read_to_end(&mut out).map_err(bad)?;
        if out.len() > limit {
            return Err(IngressError::DecodedTooLarge(limit));
        }
        Ok(Bytes::from(out))
    };
    match encoding {
        ContentEncoding::Identity => {
            if body.len() > limit {
                return Err(IngressError::DecodedTooLarge(limit));
            }
            Ok(body)
        }
        // Every member: a gzip file may hold several (RFC 1952 §2.2), and
        // the first alone would silently lose the lines of the others.
        ContentEncoding::Gzip => {
            read_limited(&mut flate2::read::MultiGzDecoder::new(body.as_ref()))
        }
        ContentEncoding::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(body.as_ref()).map_err(bad)?;
            read_limited(&mut decoder)
        }
    }
}

/// What a write request's query string says. Understood: `precision`
/// (`s`, `ms`, `us`, `ns`, and InfluxDB 1's `u` and `n`), `cluster`, and
/// InfluxDB 1's `u`/`p` credentials; InfluxDB's `db`, `rp`, `org`,
/// `bucket` and `consistency` are accepted and ignored (the lines carry
/// their cluster, and the relay has one destination per upstream).
#[derive(Debug, PartialEq, Eq)]
struct WriteParams {
    /// The unit, or why `precision` is not understood (reported after
    /// authentication and the admission checks, like every other refusal of
    /// the request's content).
    precision: Result<Option<Precision>, String>,
    cluster: Option<String>,
    /// `u` and `p`: user and password for basic authentication.
    user: Option<(String, String)>,
}

impl WriteParams {
    fn parse(query: &str) -> WriteParams {
        let mut params = WriteParams {
            precision: Ok(None),
            cluster: None,
            user: None,
        };
        let (mut user, mut password) = (None, None);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "precision" => params.precision = precision_param(&value).map(Some),
                "cluster" => params.cluster = Some(value.into_owned()),
                "u" => user = Some(value.into_owned()),
                "p" => password = Some(value.into_owned()),
                _ => {}
            }
        }
        params.user = user.zip(password);
        params
    }
}

/// `precision`: `s`, `ms`, `us`, `ns`, and InfluxDB 1's `u` and `n`.
fn precision_param(value: &str) -> Result<Precision, String> {
    let unit = match value {
        "n" => "ns",
        "u" => "us",
        "m" | "h" => {
            return Err(format!(
                "precision={value}: timestamps in minutes or hours are not supported; use s, ms, us or ns"
            ));
        }
        other => other,
    };
    unit.parse::<Precision>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: &[&'static [u8]]) -> axum::body::Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn bodies_hold_their_bytes_of_the_budget_until_dropped() {
        let budget = Semaphore::new(10);
        let (body, held) = read_body(body_of(&[b"abc", b"defg", b"h"]), 100, &budget)
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcdefgh");
        assert_eq!(budget.available_permits(), 2);
        // A second body of 8 bytes waits for room ...
        let second = read_body(body_of(&[b"12345678"]), 100, &budget);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err()
        );
        // ... and gets it once the first is done.
        drop(held);
        let (body, _held) = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&body[..], b"12345678");
        assert_eq!(budget.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_and_returns_its_room() {
        let budget = Semaphore::new(100);
        let r = read_body(body_of(&[b"abcd", b"efgh"]), 6, &budget).await;
        assert!(matches!(r, Err(IngressError::TooLarge(6))));
        assert_eq!(budget.available_permits(), 100);
    }

    #[test]
    fn write_parameters_of_every_influxdb_dialect() {
        let p = WriteParams::parse("cluster=a%20b&precision=ms&x&db=metrics&rp=autogen");
        assert_eq!(p.cluster.as_deref(), Some("a b"));
        assert_eq!(p.precision, Ok(Some(Precision::Millis)));
        assert_eq!(p.user, None);
        let v1 = WriteParams::parse("db=x&u=alice&p=s%3Acret&precision=n");
        assert_eq!(v1.precision, Ok(Some(Precision::Nanos)));
        assert_eq!(v1.user, Some(("alice".into(), "s:cret".into())));
        let v2 = WriteParams::parse("org=o&bucket=b&precision=us");
        assert_eq!(v2.precision, Ok(Some(Precision::Micros)));
        assert_eq!(
            WriteParams::parse("precision=u").precision,
            Ok(Some(Precision::Micros))
        );
        assert_eq!(WriteParams::parse("db=x").precision, Ok(None));
        let hours = WriteParams::parse("precision=h&u=alice&p=x");
        assert!(hours.precision.unwrap_err().contains("hours"));
        assert!(hours.user.is_some(), "credentials are read all the same");
        assert!(WriteParams::parse("precision=fortnight").precision.is_err());
        assert_eq!(
            WriteParams::parse("u=alice").user,
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
        assert_eq!(
            decode(ContentEncoding::Gzip, gz.clone(), 1000).unwrap(),
            plain
        );
        assert_eq!(
            decode(ContentEncoding::Gzip, gz.clone(), 999)
                .unwrap_err()
                .into_response()
                .status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let mut two = gz.to_vec();
        two.extend_from_slice(&gz);
        assert_eq!(
            decode(ContentEncoding::Gzip, Bytes::from(two), 2000)
                .unwrap()
                .len(),
            2000,
            "both members"
        );
        let z = Bytes::from(zstd::bulk::compress(&plain, 3).unwrap());
        assert_eq!(decode(ContentEncoding::Zstd, z, 1000).unwrap(), plain);
        assert_eq!(ContentEncoding::from_header("br"), None);
        assert_eq!(
            ContentEncoding::from_header(" X-GZIP "),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(
            ContentEncoding::from_header(""),
            Some(ContentEncoding::Identity)
        );
        assert_eq!(
            decode(ContentEncoding::Gzip, plain, 1000)
                .unwrap_err()
                .into_response()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }
}

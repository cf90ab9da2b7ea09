//! Prometheus exposition shared by both binaries, on top of `prometheus-client`.
//!
//! A process builds one [`Registry`] (with its metric-name prefix, e.g.
//! `ccrelay`), registers its counters, gauges and histograms and the
//! collectors that read state at scrape time, and serves it at `/metrics`
//! with [`response`] (or mounts [`router`]). The glue lives here so that
//! every binary answers scrapes the same way:
//!
//! - **Format by negotiation.** Prometheus asks for OpenMetrics in its
//!   `Accept` header and gets it (`application/openmetrics-text;
//!   version=1.0.0`, ending in `# EOF`); every other client (curl, `promtool`,
//!   older agents) gets the Prometheus text format 0.0.4, whose `# TYPE` lines
//!   name counters with their `_total` suffix. Metric and label names are the
//!   same in both; see [`Format::negotiate`].
//! - **Build information** as a gauge that is always 1 ([`register_build_info`]).
//! - **Scrape-time families** for [`Collector`]s: [`encode_family`] writes one
//!   descriptor and its series, and nothing at all for a family without series
//!   (as the registry does for an empty `Family`).
//!
//! Help texts are written without a final full stop: the registry appends
//! one, and so does [`encode_family`].
//!
//! [`Collector`]: prometheus_client::collector::Collector

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry;

/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// An exposition format `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default).
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics when the
    /// client prefers `application/openmetrics-text` (by `q`, ties going to
    /// OpenMetrics) over `text/plain` and the wildcards, the text format
    /// otherwise, also without a header.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of an answer in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Encodes everything in `registry` (its metrics, then its collectors).
///
/// # Errors
///
/// A collector or label set failed to encode.
pub fn encode(registry: &Registry, format: Format) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?,
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
    }
    Ok(out)
}

/// The answer to a scrape: `registry` in the format the request's `Accept`
/// header asks for, or 500 if encoding failed.
#[must_use]
pub fn response(registry: &Registry, headers: &HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match encode(registry, format) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

/// A router serving `registry` at `/metrics`, to merge into a server's own.
pub fn router<S>(registry: Arc<Registry>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/metrics", get(handler))
        .with_state(registry)
}

async fn handler(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    response(&registry, &headers)
}

/// Registers `<prefix>_build_info`: a gauge that is always 1, whose labels
/// say what runs (`version`, `commit`, …).
pub fn register_build_info(registry: &mut Registry, labels: Vec<(&'static str, String)>) {
    let info: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
    info.get_or_create(&labels).set(1);
    registry.register("build_info", "What is running; always 1", info);
}

/// Writes one family from a [`Collector`](prometheus_client::collector::Collector):
/// its descriptor (`help` gets a final full stop, as registered metrics do),
/// then one series per item of `series`; nothing when `series` is empty.
///
/// # Errors
///
/// As the encoder.
pub fn encode_family<S, M>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (S, M)>,
) -> fmt::Result
where
    S: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let help = format!("{help}.");
    let mut family = encoder.encode_descriptor(name, &help, None, M::TYPE)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

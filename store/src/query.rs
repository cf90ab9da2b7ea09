//! `GET /api/query`: the request, its execution against the tree, and the
//! response in cc-metric-store's exact JSON shape.
//!
//! Per query, selectors are built from `host`, `type`/`type-ids` and
//! `subtype`/`subtype-ids` (one per id, or one aggregated selector); each
//! selector yields the chains it reaches, which are read over `[from, to)`,
//! combined (sum or average, per the metric's `aggregation`), downsampled
//! with LTTB if a coarser `resolution` was asked for, and summarised
//! (avg/min/max).
//!
//! Deliberate differences from upstream (none visible to a client that
//! worked with upstream):
//!
//! - Several chains are combined over the window they all cover; upstream
//!   fails ("data from lower granularities does not align") or not,
//!   depending on the order it happens to visit them in.
//! - Memory is bounded by the data actually held, not by `to − from`: the
//!   nulls an entry makes up (front padding, and gaps between chunks) are
//!   at most [`MAX_ENTRY_NULLS`], and those of a whole request at most
//!   [`MAX_REQUEST_NULLS`]; padding never extends a series beyond the
//!   requested range either. Past those, an entry gets less padding (its
//!   `from` still says where its data starts), and a gap longer than what
//!   is left is not read: the entry starts after it. Queries about jobs
//!   never come near them; a request from 1970 would otherwise cost a null
//!   for every slot since.
//! - Children are visited in name order, so results are reproducible.

use std::io::Write as _;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::Value;

use crate::buffer::ReadWindow;
use crate::config::Aggregation;
use crate::resample::{ResampleError, lttb_owned};
use crate::stats::{
    DATA_DECIMALS, STATS_DECIMALS, Stats, applies_scale, write_fixed, write_fixed_array,
};
use crate::store::MetricStore;
use crate::tree::Level;

/// The most nulls one entry makes up, for front padding and gaps between
/// chunks: 4 Mi slots (48 days at 1 s, 32 MiB of f64), beyond any job
/// cc-backend asks about. Without a bound, a request from `0` (or
/// `i64::MIN`) would allocate a slot for every second (or every frequency
/// step) since then, which a single query turns into gigabytes or an
/// allocation failure.
pub const MAX_ENTRY_NULLS: usize = 1 << 22;

/// The most nulls one request makes up in all entries together: 16 Mi
/// (128 MiB of f64, about 85 MB of JSON; 194 entries padded over a whole
/// day at 1 s).
pub const MAX_REQUEST_NULLS: usize = 1 << 24;

/// A query request (`GET /api/query` body).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueryRequest {
    /// First selector element of every query.
    #[serde(deserialize_with = "null_default")]
    pub cluster: String,
    /// Range start, Unix seconds, inclusive.
    #[serde(deserialize_with = "null_default")]
    pub from: i64,
    /// Range end, Unix seconds, exclusive.
    #[serde(deserialize_with = "null_default")]
    pub to: i64,
    /// Explicit queries.
    #[serde(deserialize_with = "null_default")]
    pub queries: Vec<Query>,
    /// Metrics to query for every host of `cluster` (node level).
    #[serde(rename = "for-all-nodes")]
    pub for_all_nodes: Option<Vec<String>>,
    /// Compute avg/min/max (default true).
    #[serde(rename = "with-stats", deserialize_with = "null_true")]
    pub with_stats: bool,
    /// Include the data points (default true).
    #[serde(rename = "with-data", deserialize_with = "null_true")]
    pub with_data: bool,
    /// Front-pad data that starts after `from` with nulls (default true).
    #[serde(rename = "with-padding", deserialize_with = "null_true")]
    pub with_padding: bool,
}

impl Default for QueryRequest {
    fn default() -> Self {
        QueryRequest {
            cluster: String::new(),
            from: 0,
            to: 0,
            queries: Vec::new(),
            for_all_nodes: None,
            with_stats: true,
            with_data: true,
            with_padding: true,
        }
    }
}

/// One query of a request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Query {
    /// Metric name.
    #[serde(deserialize_with = "null_default")]
    pub metric: String,
    /// Host name.
    #[serde(deserialize_with = "null_default")]
    pub host: String,
    /// Scope word of the first level below the host (`hwthread`, `socket`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Ids appended to `type`.
    #[serde(rename = "type-ids", deserialize_with = "null_default")]
    pub type_ids: Vec<String>,
    /// Scope word of the second level.
    pub subtype: Option<String>,
    /// Ids appended to `subtype`.
    #[serde(rename = "subtype-ids", deserialize_with = "null_default")]
    pub subtype_ids: Vec<String>,
    /// One aggregated result over all ids instead of one per id.
    #[serde(deserialize_with = "null_default")]
    pub aggreg: bool,
    /// Requested seconds per point; 0 = native.
    #[serde(deserialize_with = "null_default")]
    pub resolution: i64,
    /// Factor applied to data and stats; 0 and 1 mean none, `null` is NaN.
    #[serde(rename = "scale-by", deserialize_with = "null_nan")]
    pub scale_by: f64,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            metric: String::new(),
            host: String::new(),
            kind: None,
            type_ids: Vec::new(),
            subtype: None,
            subtype_ids: Vec::new(),
            aggreg: false,
            resolution: 0,
            scale_by: 0.0,
        }
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn null_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

fn null_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Why a request body could not be read (answered 400).
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// The body is empty.
    #[error("EOF")]
    Empty,
    /// The body is not JSON, or a field has the wrong type.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The body is JSON, but not an object.
    #[error("query request must be a JSON object")]
    NotAnObject,
}

/// Why one selector of a query has no result: the `error` of its entry in
/// the (still 200) answer. The texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The metric is not configured.
    #[error("[METRICSTORE]> unknown metric: {0}")]
    UnknownMetric(String),
    /// `from` is after `to`.
    #[error("[METRICSTORE]> invalid time range")]
    InvalidTimeRange,
    /// Several series matched and the metric has no aggregation.
    #[error("[METRICSTORE]> invalid aggregation")]
    InvalidAggregation,
    /// The series that matched have different frequencies.
    #[error(
        "[METRICSTORE]> data from lower granularities does not align \
         (collected data length is different than expected data length)"
    )]
    NotAligned,
    /// The requested resolution cannot be made from the data.
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

impl QueryRequest {
    /// Decodes a request body as upstream does: unknown keys are ignored, keys
    /// match case-insensitively, and anything after the first JSON value is
    /// ignored.
    ///
    /// # Errors
    ///
    /// An empty body ("EOF"), invalid JSON or a wrongly typed field.
    pub fn from_body(body: &[u8]) -> Result<QueryRequest, BadRequest> {
        let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
        let value = match values.next() {
            None => return Err(BadRequest::Empty),
            Some(result) => result?,
        };
        let value = lowercase_keys(value);
        if !value.is_object() {
            return Err(BadRequest::NotAnObject);
        }
        Ok(serde_json::from_value(value)?)
    }
}

/// Lowercases object keys at the request and query level (Go's decoder
/// matches field names case-insensitively).
fn lowercase_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("queries") {
                        lowercase_keys(v)
                    } else {
                        v
                    };
                    (k.to_ascii_lowercase(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(lowercase_keys).collect()),
        other => other,
    }
}

/// One element of a selector: a level name, or a group of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// Descend into this child (an empty name matches nothing).
    Name(String),
    /// Descend into each listed child that exists, in order.
    Group(Vec<String>),
}

/// The selectors of one query (§3.2.3 of the store spec).
#[must_use]
pub fn selectors(cluster: &str, q: &Query) -> Vec<Vec<Element>> {
    let base = || {
        vec![
            Element::Name(cluster.to_owned()),
            Element::Name(q.host.clone()),
        ]
    };
    let ids_element = |word: &str, ids: &[String]| match ids {
        [one] => Element::Name(format!("{word}{one}")),
        many => Element::Group(many.iter().map(|id| format!("{word}{id}")).collect()),
    };
    match &q.kind {
        None => vec![base()],
        Some(kind) if q.aggreg => {
            let mut sel = base();
            sel.push(ids_element(kind, &q.type_ids));
            if let Some(sub) = &q.subtype {
                sel.push(ids_element(sub, &q.subtype_ids));
            }
            vec![sel]
        }
        Some(kind) => {
            let mut out = Vec::new();
            for tid in &q.type_ids {
                match &q.subtype {
                    None => {
                        let mut sel = base();
                        sel.push(Element::Name(format!("{kind}{tid}")));
                        out.push(sel);
                    }
                    Some(sub) => {
                        for sid in &q.subtype_ids {
                            let mut sel = base();
                            sel.push(Element::Name(format!("{kind}{tid}")));
                            sel.push(Element::Name(format!("{sub}{sid}")));
                            out.push(sel);
                        }
                    }
                }
            }
            out
        }
    }
}

/// The levels a selector reaches, in selector order.
fn select_levels(root: &Arc<Level>, selector: &[Element]) -> Vec<Arc<Level>> {
    let mut current = vec![Arc::clone(root)];
    for element in selector {
        let mut next = Vec::new();
        for level in &current {
            match element {
                Element::Name(name) if name.is_empty() => {}
                Element::Name(name) => next.extend(level.child(name)),
                Element::Group(names) => {
                    next.extend(names.iter().filter_map(|n| level.child(n)));
                }
            }
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current
}

/// The outcome of one selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Set when the selector failed; the other fields are then zero.
    pub error: Option<SelectorError>,
    /// The series; `None` when `with-data` is false.
    pub data: Option<Vec<f64>>,
    /// Time of the first point.
    pub from: i64,
    /// End of the last point.
    pub to: i64,
    /// Seconds per point.
    pub resolution: i64,
    /// avg/min/max of the (downsampled) series.
    pub stats: Stats,
}

impl Entry {
    fn error(error: SelectorError) -> Entry {
        Entry {
            error: Some(error),
            data: None,
            from: 0,
            to: 0,
            resolution: 0,
            stats: Stats::ZERO,
        }
    }
}

/// A whole response: generated queries (for-all-nodes) and one row per query.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The queries generated by `for-all-nodes`, echoed for the client.
    pub generated: Vec<Query>,
    /// One row per query (explicit ones first), each with one entry per
    /// selector that found data.
    pub results: Vec<Vec<Entry>>,
}

/// Runs a request against the store.
#[must_use]
pub fn execute(store: &MetricStore, req: &QueryRequest) -> Response {
    let mut generated = Vec::new();
    if let Some(metrics) = &req.for_all_nodes
        && let Some(cluster) = store
            .root()
            .child(&req.cluster)
            .filter(|_| !req.cluster.is_empty())
    {
        for host in cluster.child_names() {
            for metric in metrics {
                generated.push(Query {
                    metric: metric.clone(),
                    host: host.clone(),
                    ..Query::default()
                });
            }
        }
    }
    let mut nulls = MAX_REQUEST_NULLS;
    let results = req
        .queries
        .iter()
        .chain(generated.iter())
        .map(|q| run_query(store, req, q, &mut nulls))
        .collect();
    Response { generated, results }
}

/// `nulls`: what is left of the request's budget of made-up nulls.
fn run_query(store: &MetricStore, req: &QueryRequest, q: &Query, nulls: &mut usize) -> Vec<Entry> {
    let mut row = Vec::new();
    for selector in selectors(&req.cluster, q) {
        match read_selector(store, req, q, &selector, nulls) {
            Ok(Some(entry)) => row.push(entry),
            Ok(None) => {}
            Err(error) => row.push(Entry::error(error)),
        }
    }
    row
}

/// One selector through the whole pipeline; `Ok(None)` when nothing matched.
fn read_selector(
    store: &MetricStore,
    req: &QueryRequest,
    q: &Query,
    selector: &[Element],
    nulls: &mut usize,
) -> Result<Option<Entry>, SelectorError> {
    let Some((metric, info)) = store.registry().lookup(&q.metric) else {
        return Err(SelectorError::UnknownMetric(q.metric.clone()));
    };
    if req.from > req.to {
        return Err(SelectorError::InvalidTimeRange);
    }
    // This entry's share of the request's budget of made-up nulls; what it
    // uses is taken from the request's when it is done.
    let granted = (*nulls).min(MAX_ENTRY_NULLS);
    let mut budget = granted;
    let mut series: Vec<(ReadWindow, Vec<f64>)> = Vec::new();
    for level in select_levels(store.root(), selector) {
        level.visit_chains(metric, &mut |chain| {
            let mut values = Vec::new();
            let window = chain.read_bounded(req.from, req.to, &mut values, &mut budget);
            series.push((window, values));
        });
    }
    let count = series.len();
    let Some((window, mut data)) = combine(series, info.frequency())? else {
        return Ok(None);
    };
    if count > 1 {
        match info.aggregation {
            Aggregation::Sum => {}
            Aggregation::Avg => {
                #[expect(clippy::cast_precision_loss, reason = "a count of chains")]
                let scale = 1.0 / count as f64;
                data.iter_mut().for_each(|v| *v *= scale);
            }
            Aggregation::None => return Err(SelectorError::InvalidAggregation),
        }
    }
    let (mut data, resolution) = lttb_owned(data, window.frequency, q.resolution)?;
    let mut stats = if req.with_stats {
        Stats::of(&data)
    } else {
        Stats::ZERO
    };
    if applies_scale(q.scale_by) {
        stats.scale(q.scale_by);
        data.iter_mut().for_each(|v| *v *= q.scale_by);
    }
    let f = window.frequency.max(1);
    if req.with_padding && window.from / f > req.from / f {
        // Never pad beyond the requested range.
        // In i128: `from` and `to` may be any i64 (`[i64::MIN, i64::MAX]`).
        let range_slots =
            usize::try_from((i128::from(req.to) - i128::from(req.from)) / i128::from(f) + 1)
                .unwrap_or(usize::MAX);
        let wanted = usize::try_from(window.from / f - req.from / f).unwrap_or(0);
        let padding = wanted
            .min(range_slots.saturating_sub(data.len()))
            .min(budget);
        budget -= padding;
        if padding > 0 {
            data.splice(0..0, std::iter::repeat_n(f64::NAN, padding));
        }
    }
    *nulls -= granted - budget;
    Ok(Some(Entry {
        error: None,
        data: req.with_data.then_some(data),
        from: window.from,
        to: window.to,
        resolution,
        stats,
    }))
}

/// Sums several chains' reads over the window they all cover (slot by
/// slot, as upstream pairs them); `Ok(None)` without any chain.
fn combine(
    mut series: Vec<(ReadWindow, Vec<f64>)>,
    frequency: i64,
) -> Result<Option<(ReadWindow, Vec<f64>)>, SelectorError> {
    if series.len() <= 1 {
        return Ok(series.pop());
    }
    let f = series.first().map_or(frequency, |(w, _)| w.frequency);
    if series.iter().any(|(w, _)| w.frequency != f) {
        return Err(SelectorError::NotAligned);
    }
    // The window starts at the latest start. A series' slot holding a time
    // is found as upstream finds it, by whole steps from the series' start
    // (truncating): slots that start less than a step apart are summed
    // together, and the window ends where the first series runs out.
    let from = series.iter().map(|(w, _)| w.from).max().unwrap_or(0);
    // Offsets of the common window in each series (whole slots).
    let offsets: Vec<usize> = series
        .iter()
        .map(|(w, _)| usize::try_from((from - w.from) / f).unwrap_or(0))
        .collect();
    let n = series
        .iter()
        .zip(&offsets)
        .map(|((_, values), &off)| values.len().saturating_sub(off))
        .min()
        .unwrap_or(0);
    let mut out = vec![0.0; n];
    for ((_, values), &off) in series.iter().zip(&offsets) {
        for (acc, v) in out.iter_mut().zip(values.iter().skip(off)) {
            *acc += v;
        }
    }
    let window = ReadWindow {
        from,
        to: from + i64::try_from(n).unwrap_or(0) * f,
        frequency: f,
    };
    Ok(Some((window, out)))
}

/// Writes the response body (with its trailing newline) in upstream's exact
/// field order and number formatting.
#[must_use]
pub fn render(response: &Response) -> Vec<u8> {
    let points: usize = response
        .results
        .iter()
        .flatten()
        .map(|e| e.data.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(64 + points * 7 + response.results.len() * 128);
    out.push(b'{');
    if !response.generated.is_empty() {
        out.extend_from_slice(b"\"queries\":[");
        for (i, q) in response.generated.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_query(&mut out, q);
        }
        out.extend_from_slice(b"],");
    }
    out.extend_from_slice(b"\"results\":[");
    for (i, row) in response.results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (j, entry) in row.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_entry(&mut out, entry);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}\n");
    out
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    out.push(b'{');
    if let Some(error) = &e.error {
        out.extend_from_slice(b"\"error\":");
        write_str(out, &error.to_string());
        out.push(b',');
    }
    if let Some(data) = e.data.as_ref().filter(|d| !d.is_empty()) {
        out.extend_from_slice(b"\"data\":");
        write_fixed_array(out, data, DATA_DECIMALS);
        out.push(b',');
    }
    let _ = write!(
        out,
        "\"from\":{},\"to\":{},\"resolution\":{},\"avg\":",
        e.from, e.to, e.resolution
    );
    write_fixed(out, e.stats.avg, STATS_DECIMALS);
    out.extend_from_slice(b",\"min\":");
    write_fixed(out, e.stats.min, STATS_DECIMALS);
    out.extend_from_slice(b",\"max\":");
    write_fixed(out, e.stats.max, STATS_DECIMALS);
    out.push(b'}');
}

/// An echoed query, fields in upstream's order.
fn write_query(out: &mut Vec<u8>, q: &Query) {
    out.push(b'{');
    if let Some(kind) = &q.kind {
        out.extend_from_slice(b"\"type\":");
        write_str(out, kind);
        out.push(b',');
    }
    if let Some(sub) = &q.subtype {
        out.extend_from_slice(b"\"subtype\":");
        write_str(out, sub);
        out.push(b',');
    }
    out.extend_from_slice(b"\"metric\":");
    write_str(out, &q.metric);
    out.extend_from_slice(b",\"host\":");
    write_str(out, &q.host);
    let _ = write!(out, ",\"resolution\":{}", q.resolution);
    for (key, ids) in [("type-ids", &q.type_ids), ("subtype-ids", &q.subtype_ids)] {
        if !ids.is_empty() {
            let _ = write!(out, ",\"{key}\":");
            let _ = serde_json::to_writer(&mut *out, ids);
        }
    }
    if q.scale_by != 0.0 {
        out.extend_from_slice(b",\"scale-by\":");
        write_fixed(out, q.scale_by, STATS_DECIMALS);
    }
    let _ = write!(out, ",\"aggreg\":{}", q.aggreg);
    out.push(b'}');
}

#[cfg(test)]
mod tests;

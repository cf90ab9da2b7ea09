//! Line handling between ingress and queue (spec `relay.md` §4.5).
//!
//! Every line goes through the same fixed steps: syntax check, timestamp unit
//! detection and normalisation, stamping of missing timestamps, a sanity
//! window, measurement and tag rules, cluster defaulting, validation, and
//! routing to the upstreams whose filters accept it. A line that no step
//! changes is forwarded byte for byte; a line whose only change is its
//! timestamp keeps its measurement, tags and fields exactly as received.
//!
//! Processing never reorders or merges lines.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use cc_common::lineproto::{Line, Precision, escape_key, escape_measurement, parse_lines};

use crate::config::{MissingTimestamp, RuleSet, TimestampConfig, UpstreamFilter, ValidateProfile};

/// The line rules one processing pass applies: the configuration's own
/// types, as loaded (no copies in another shape).
#[derive(Debug, Clone)]
pub struct Rules {
    /// `processing.timestamp`, with the source's `input_precision` if it
    /// sets one.
    pub timestamp: TimestampConfig,
    /// Measurement and tag rules (steps 6–8) of the upstreams processed
    /// together.
    pub set: RuleSet,
    /// Write the default cluster into lines as a tag.
    pub materialize_cluster: bool,
    /// Validation profile: with `ccms`, lines the store would refuse are kept
    /// from `ccms-*` upstreams (and still go to the others).
    pub validate: ValidateProfile,
    /// Longer lines are invalid (`too_long`).
    pub max_line_bytes: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            timestamp: TimestampConfig::default(),
            set: RuleSet::default(),
            materialize_cluster: false,
            validate: ValidateProfile::Syntax,
            max_line_bytes: 64 * 1024,
        }
    }
}

/// One upstream as processing sees it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Upstream name.
    pub name: String,
    /// A `ccms-*` upstream: only lines passing the `ccms` profile.
    pub ccms: bool,
    /// Routing filter (`upstreams[].filter`).
    pub filter: UpstreamFilter,
}

/// Per-request context.
#[derive(Debug, Clone)]
pub struct Context {
    /// Default cluster for lines without a `cluster` tag (query parameter,
    /// listener or global default).
    pub default_cluster: Option<String>,
    /// Unit forced by the request (`?precision=`) or listener.
    pub precision: Option<Precision>,
    /// Receive time, nanoseconds since the epoch.
    pub now_ns: i128,
}

/// Why a line was refused; the label of `ccrelay_ingest_invalid_lines_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invalid {
    /// Not line protocol.
    Syntax,
    /// Longer than `max_line_bytes`.
    TooLong,
    /// Unit not recognisable, overflow, or missing with `missing: drop`.
    Timestamp,
    /// Outside `max_past`/`max_future`.
    TimestampRange,
    /// Fails the `ccms` profile (only counted when that kept it from every
    /// upstream).
    Ccms,
}

impl Invalid {
    /// Label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Syntax => "syntax",
            Invalid::TooLong => "too_long",
            Invalid::Timestamp => "timestamp",
            Invalid::TimestampRange => "timestamp_range",
            Invalid::Ccms => "ccms",
        }
    }
}

/// Something lines are routed to: an upstream, as processing sees it.
pub trait Route {
    /// Its routing filter and profile.
    fn target(&self) -> &Target;
}

impl Route for Target {
    fn target(&self) -> &Target {
        self
    }
}

/// The lines of one batch for one destination.
#[derive(Debug)]
pub struct Routed<'t, R> {
    /// Where they go.
    pub to: &'t R,
    /// Normalised lines, each `\n`-terminated.
    pub lines: Vec<u8>,
    /// How many.
    pub count: u32,
}

/// The outcome of one batch.
#[derive(Debug)]
pub struct Processed<'t, R> {
    /// The lines for each destination given (also those that get none).
    pub routed: Vec<Routed<'t, R>>,
    /// Lines queued for at least one upstream.
    pub accepted: u64,
    /// Lines dropped by measurement rules or routed nowhere.
    pub filtered: u64,
    /// Invalid lines by reason.
    pub invalid: BTreeMap<Invalid, u64>,
    /// The first invalid line's description, for the 400 answer.
    pub first_error: Option<String>,
}

impl<'t, R> Processed<'t, R> {
    fn new(targets: &'t [R]) -> Self {
        Processed {
            routed: targets
                .iter()
                .map(|to| Routed {
                    to,
                    lines: Vec::new(),
                    count: 0,
                })
                .collect(),
            accepted: 0,
            filtered: 0,
            invalid: BTreeMap::new(),
            first_error: None,
        }
    }

    /// Invalid lines in total.
    #[must_use]
    pub fn invalid_total(&self) -> u64 {
        self.invalid.values().sum()
    }

    fn reject(&mut self, why: Invalid, message: impl FnOnce() -> String) {
        *self.invalid.entry(why).or_insert(0) += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

/// Processes a batch for the given targets.
#[must_use]
pub fn process<'t, R: Route>(
    body: &[u8],
    rules: &Rules,
    ctx: &Context,
    targets: &'t [R],
) -> Processed<'t, R> {
    let mut out = Processed::new(targets);
    let out_unit = rules.timestamp.output_precision;
    let now_out = now_in(ctx.now_ns, out_unit);
    let window = Window::new(now_out, out_unit, rules);
    let forced = ctx.precision.or(rules.timestamp.input_precision.fixed());
    let mut line_buf = String::new();
    for result in parse_lines(body) {
        let line = match result {
            Ok(line) => line,
            Err(e) => {
                out.reject(Invalid::Syntax, || e.to_string());
                continue;
            }
        };
        if line.raw().len() > rules.max_line_bytes {
            out.reject(Invalid::TooLong, || {
                format!(
                    "line {}: longer than {} bytes",
                    line.number(),
                    rules.max_line_bytes
                )
            });
            continue;
        }
        // Steps 2-5: timestamp.
        let timestamp = match normalized_timestamp(&line, rules, forced, now_out, &window) {
            Ok(ts) => ts,
            Err((why, message)) => {
                out.reject(why, || message);
                continue;
            }
        };
        // Step 6: measurement rules.
        let name = line.measurement();
        if !rules.set.keeps_measurement(name) {
            out.filtered += 1;
            continue;
        }
        let renamed = rules.set.rename_measurements.get(name).map(String::as_str);
        // Step 7: tag rules.
        let tags = apply_tag_rules(&line, rules);
        // Step 8: cluster (and the host, for validation).
        let (host, line_cluster) = match &tags {
            Some(t) => host_and_cluster_of(t),
            None => host_and_cluster(&line),
        };
        let materialize =
            rules.materialize_cluster && line_cluster.is_none() && ctx.default_cluster.is_some();
        let effective_cluster: Option<&str> =
            line_cluster.as_deref().or(ctx.default_cluster.as_deref());
        // Output text of the line.
        let materialized = ctx.default_cluster.as_deref().filter(|_| materialize);
        let text = line_text(&mut line_buf, &line, timestamp, renamed, tags, materialized);
        // Step 9: validation; step 10: routing.
        let measurement = renamed.unwrap_or(name);
        let ccms_problem = ccms_check(&line, effective_cluster, host);
        let kind = message_type(&line);
        let mut any = false;
        let mut refused_ccms = false;
        for routed in &mut out.routed {
            let target = routed.to.target();
            // The `ccms` profile protects store upstreams only; other
            // upstreams get every syntactically valid line.
            let needs_ccms = target.ccms && rules.validate == ValidateProfile::Ccms;
            if needs_ccms && ccms_problem.is_some() {
                refused_ccms = true;
                continue;
            }
            if !target.filter.accepts(measurement, kind, effective_cluster) {
                continue;
            }
            if routed.lines.capacity() == 0 {
                // Most batches keep most of their lines: room for all of
                // them at once instead of growing the buffer step by step.
                routed.lines.reserve(body.len() + 1);
            }
            routed.lines.extend_from_slice(text.as_bytes());
            routed.lines.push(b'\n');
            routed.count += 1;
            any = true;
        }
        if any {
            out.accepted += 1;
        } else if refused_ccms {
            let problem = ccms_problem.unwrap_or_default();
            out.reject(Invalid::Ccms, || {
                format!("line {}: {problem}", line.number())
            });
        } else {
            out.filtered += 1;
        }
    }
    out
}

/// Steps 2–5: the line's timestamp in the output unit (`None`: kept without
/// one), or why the line is invalid.
fn normalized_timestamp(
    line: &Line<'_>,
    rules: &Rules,
    forced: Option<Precision>,
    now_out: i64,
    window: &Window,
) -> Result<Option<i64>, (Invalid, String)> {
    let out_unit = rules.timestamp.output_precision;
    let timestamp = match line.timestamp() {
        Some(ts) => {
            let unit = forced.or_else(|| Precision::detect(ts).ok());
            let Some(t) = unit.and_then(|u| u.convert(ts, out_unit)) else {
                return Err((
                    Invalid::Timestamp,
                    format!(
                        "line {}: timestamp {ts} has no recognisable unit",
                        line.number()
                    ),
                ));
            };
            Some(t)
        }
        None => match rules.timestamp.missing {
            MissingTimestamp::StampIngest => Some(now_out),
            MissingTimestamp::Keep => None,
            MissingTimestamp::Drop => {
                return Err((
                    Invalid::Timestamp,
                    format!("line {}: no timestamp", line.number()),
                ));
            }
        },
    };
    if let Some(ts) = timestamp
        && !window.contains(ts)
    {
        return Err((
            Invalid::TimestampRange,
            format!(
                "line {}: timestamp {ts} is outside the accepted window",
                line.number()
            ),
        ));
    }
    Ok(timestamp)
}

/// The text a line is forwarded as, without its `\n`: the bytes received
/// when nothing changed, else (written into `buf`) the new timestamp, the
/// renamed measurement, the rewritten tags and the cluster tag
/// `materialized` adds.
fn line_text<'s>(
    buf: &'s mut String,
    line: &Line<'s>,
    timestamp: Option<i64>,
    renamed: Option<&str>,
    tags: Option<Vec<(Cow<'_, str>, Cow<'_, str>)>>,
    materialized: Option<&str>,
) -> &'s str {
    if renamed.is_none()
        && tags.is_none()
        && materialized.is_none()
        && timestamp == line.timestamp()
    {
        return line.raw();
    }
    buf.clear();
    if renamed.is_none() && tags.is_none() && materialized.is_none() {
        buf.push_str(line.raw_without_timestamp());
        if let Some(ts) = timestamp {
            let _ = write!(buf, " {ts}");
        }
    } else {
        let mut tags = tags.unwrap_or_else(|| line.tags().collect());
        if let Some(c) = materialized {
            tags.push((Cow::Borrowed("cluster"), Cow::Owned(c.to_owned())));
            tags.sort_by(|a, b| a.0.cmp(&b.0));
        }
        escape_measurement(buf, renamed.unwrap_or(line.measurement()));
        for (k, v) in &tags {
            buf.push(',');
            escape_key(buf, k);
            buf.push('=');
            escape_key(buf, v);
        }
        buf.push(' ');
        buf.push_str(line.raw_fields());
        if let Some(ts) = timestamp {
            let _ = write!(buf, " {ts}");
        }
    }
    buf
}

fn now_in(now_ns: i128, unit: Precision) -> i64 {
    let per = i128::from(Precision::Nanos.per_second() / unit.per_second());
    i64::try_from(now_ns.div_euclid(per)).unwrap_or(i64::MAX)
}

/// The accepted timestamps of one batch (step 5), in the output unit.
struct Window {
    /// Latest accepted (`now + max_future`), if bounded.
    latest: Option<i64>,
    /// Earliest accepted (`now - max_past`), if bounded.
    earliest: Option<i64>,
}

impl Window {
    fn new(now: i64, unit: Precision, rules: &Rules) -> Self {
        let in_units = |d: std::time::Duration| {
            let per = u128::try_from(unit.per_second()).unwrap_or(1);
            i64::try_from(d.as_nanos() * per / 1_000_000_000).unwrap_or(i64::MAX)
        };
        Window {
            latest: rules
                .timestamp
                .max_future
                .map(|f| now.saturating_add(in_units(f))),
            earliest: rules
                .timestamp
                .max_past
                .map(|p| now.saturating_sub(in_units(p))),
        }
    }

    fn contains(&self, ts: i64) -> bool {
        self.latest.is_none_or(|l| ts <= l) && self.earliest.is_none_or(|e| ts >= e)
    }
}

/// Tags after drop/rename/add/set, sorted; `None` if the rules change nothing.
fn apply_tag_rules<'a>(
    line: &Line<'a>,
    rules: &Rules,
) -> Option<Vec<(Cow<'a, str>, Cow<'a, str>)>> {
    let set = &rules.set;
    if set.drop_tags.is_empty()
        && set.rename_tags.is_empty()
        && set.add_tags.is_empty()
        && set.set_tags.is_empty()
    {
        return None;
    }
    let mut tags: Vec<(Cow<'a, str>, Cow<'a, str>)> = line.tags().collect();
    let count = tags.len();
    tags.retain(|(k, _)| !set.drop_tags.iter().any(|d| d == k));
    let mut changed = tags.len() != count;
    for (old, new) in &set.rename_tags {
        if tags.iter().any(|(k, _)| k == new) {
            continue;
        }
        if let Some(tag) = tags.iter_mut().find(|(k, _)| k == old) {
            tag.0 = Cow::Owned(new.clone());
            changed = true;
        }
    }
    for (k, v) in &set.add_tags {
        if !tags.iter().any(|(key, _)| key == k) {
            tags.push((Cow::Owned(k.clone()), Cow::Owned(v.clone())));
            changed = true;
        }
    }
    for (k, v) in &set.set_tags {
        match tags.iter_mut().find(|(key, _)| key == k) {
            Some(tag) if tag.1 == v.as_str() => {}
            Some(tag) => {
                tag.1 = Cow::Owned(v.clone());
                changed = true;
            }
            None => {
                tags.push((Cow::Owned(k.clone()), Cow::Owned(v.clone())));
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    Some(tags)
}

/// Why a line would not be accepted by cc-metric-store, if it would not.
fn ccms_check(
    line: &Line<'_>,
    cluster: Option<&str>,
    host: Option<Cow<'_, str>>,
) -> Option<String> {
    let (key, value) = line.first_field();
    if key != "value" || !line.has_one_field() {
        return Some("a metric line needs exactly one field, named 'value'".to_owned());
    }
    if value.as_f64().is_none() {
        return Some(format!(
            "field 'value' is a {}, not a number",
            value.kind_name()
        ));
    }
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Some("no hostname (or host) tag".to_owned());
    };
    if has_path_chars(&host) {
        return Some(format!("hostname {host:?} contains '..', '/' or '\\'"));
    }
    let Some(cluster) = cluster.filter(|c| !c.is_empty()) else {
        return Some("no cluster (no cluster tag and no default cluster)".to_owned());
    };
    if has_path_chars(cluster)
        || !cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some(format!(
            "cluster {cluster:?} is not URL-safe ([A-Za-z0-9._-])"
        ));
    }
    None
}

/// The host (the last `hostname` or `host`) and the first `cluster` of tags
/// the rules rewrote (sorted, so one of each).
fn host_and_cluster_of<'a>(
    tags: &[(Cow<'a, str>, Cow<'a, str>)],
) -> (Option<Cow<'a, str>>, Option<Cow<'a, str>>) {
    (
        tags.iter()
            .rev()
            .find(|(k, _)| k == "hostname" || k == "host")
            .map(|(_, v)| v.clone()),
        tags.iter()
            .find(|(k, _)| k == "cluster")
            .map(|(_, v)| v.clone()),
    )
}

/// The line's host (`hostname`, else `host`) and `cluster` tags, in one pass
/// over its tags; the last of each key wins, as with [`Line::tag`].
fn host_and_cluster<'a>(line: &Line<'a>) -> (Option<Cow<'a, str>>, Option<Cow<'a, str>>) {
    let (mut hostname, mut host, mut cluster) = (None, None, None);
    for (key, value) in line.tags() {
        match &*key {
            "hostname" => hostname = Some(value),
            "host" => host = Some(value),
            "cluster" => cluster = Some(value),
            _ => {}
        }
    }
    (hostname.or(host), cluster)
}

fn has_path_chars(s: &str) -> bool {
    s.contains("..") || s.contains('/') || s.contains('\\')
}

/// `metric`, `event`, `log` or `control`, by the line's fields.
fn message_type(line: &Line<'_>) -> &'static str {
    if line.first_field().0 == "value" {
        return "metric";
    }
    for (key, _) in line.fields() {
        match &*key {
            "value" => return "metric",
            "event" => return "event",
            "log" => return "log",
            "control" => return "control",
            _ => {}
        }
    }
    "metric"
}

impl UpstreamFilter {
    /// Whether a line passes this filter.
    #[must_use]
    pub fn accepts(&self, measurement: &str, kind: &str, cluster: Option<&str>) -> bool {
        (self.message_types.is_empty() || self.message_types.iter().any(|t| t.as_str() == kind))
            && (self.include_measurements.is_empty()
                || self.include_measurements.iter().any(|m| m == measurement))
            && !self.exclude_measurements.iter().any(|m| m == measurement)
            && (self.include_clusters.is_empty()
                || cluster.is_some_and(|c| self.include_clusters.iter().any(|i| i == c)))
    }
}

#[cfg(test)]
mod tests;

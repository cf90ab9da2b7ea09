//! The relay's status at a glance (spec `relay.md` §4.11): one snapshot,
//! [`RelayStatus`], of the sources, the upstreams with their queues, and the
//! NATS connections, served as JSON at `/status` for scripts and as a page
//! at `/` for people (see [`cc_common::status_page`]).
//!
//! Counters are totals since start; the rates next to them come from a
//! [`RateWindow`] fed by every request, so they are measured over the time
//! since an earlier look (the page reloads every [`REFRESH_SECS`]), and are
//! `null` on the first look. No secret is in either form: upstream URLs and
//! credentials are not part of the snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cc_common::status_page::{self, Column, Html, Page, RateWindow, Rates, Tone};
use cc_common::time::now_ms;
use serde::Serialize;

use crate::runtime::Runtime;

/// How often the page reloads itself, in seconds.
pub const REFRESH_SECS: u32 = 5;

/// Everything `/status` and `/` show, taken at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    /// `instance_id`.
    pub instance_id: String,
    /// The relay's version.
    pub version: &'static str,
    /// When the snapshot was taken, Unix ms.
    pub time_ms: u64,
    /// The queue storage works (false: the relay is about to exit).
    pub storage_healthy: bool,
    /// Not shutting down.
    pub accepting: bool,
    /// The disk limits are reached: new data is refused.
    pub disk_pressure: bool,
    /// Lines received by all sources since start.
    pub received_lines: u64,
    /// The span the rates are measured over, in seconds; `None` on the first
    /// look (then every rate is `None`).
    pub rate_window_seconds: Option<f64>,
    /// Every source (HTTP listener, NATS input), in start order.
    pub sources: Vec<SourceStatus>,
    /// Every upstream, in configuration order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Every NATS connection (sources' and upstreams').
    pub nats: Vec<NatsStatus>,
}

/// One source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// Its name (the `ingress` label of the metrics).
    pub name: String,
    /// Lines received since start.
    pub received_lines: u64,
    /// Decoded bytes received since start.
    pub received_bytes: u64,
    /// Lines received per second lately.
    pub lines_per_second: Option<f64>,
}

/// One upstream and its queue.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// Its name.
    pub name: String,
    /// The last attempt succeeded.
    pub up: bool,
    /// The last attempt was refused for credentials (401/403).
    pub auth_failing: bool,
    /// The last attempt found no write endpoint (404/405).
    pub misconfigured: bool,
    /// Records queued.
    pub queued_records: u64,
    /// Lines queued (queue depth).
    pub queued_lines: u64,
    /// Stored bytes queued: what `buffer.max_bytes` limits.
    pub stored_bytes: u64,
    /// `buffer.max_bytes`.
    pub limit_bytes: u64,
    /// Age of the oldest queued line in seconds (the lag); 0 when empty.
    pub lag_seconds: u64,
    /// Lines delivered since start.
    pub sent_lines: u64,
    /// Lines delivered per second lately.
    pub sent_lines_per_second: Option<f64>,
    /// Failed attempts since start.
    pub failures: u64,
    /// The wait before the next attempt, ms (0 when up).
    pub backoff_ms: u64,
    /// Last delivery, Unix ms (0: none yet).
    pub last_success_ms: u64,
    /// Text of the last error (empty: none yet). It stays after the
    /// upstream recovers; `up` tells whether it is current.
    pub last_error: String,
    /// When the last error happened, Unix ms (0: none yet).
    pub last_error_ms: u64,
    /// Lines moved to the dead-letter queue since start (refused by the
    /// upstream as invalid or too large).
    pub dead_lettered_lines: u64,
    /// Entries in the dead-letter queue now (`GET /dlq/<upstream>` exports them).
    pub dead_letter_records: u64,
    /// Lines dropped since start by `buffer.max_bytes` (drop_oldest),
    /// `buffer.max_age`, disk pressure, and core NATS lines a full
    /// `reject_new` queue refused.
    pub dropped_lines: u64,
}

/// One NATS connection.
#[derive(Debug, Clone, Serialize)]
pub struct NatsStatus {
    /// `ingress:<name>` or `upstream:<name>`.
    pub role: String,
    /// The connection is up.
    pub connected: bool,
    /// Connections made again after the first.
    pub reconnects: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// For a source: its message counts.
    pub source: Option<NatsSourceStatus>,
}

/// Message counts of a NATS source.
#[derive(Debug, Clone, Serialize)]
pub struct NatsSourceStatus {
    /// Messages received.
    pub messages: u64,
    /// Messages not stored (too large, refused, invalid).
    pub dropped_messages: u64,
    /// Messages lost because the relay fell behind.
    pub slow_consumer_dropped: u64,
}

impl RelayStatus {
    /// A snapshot of `runtime`; `rates` remembers earlier looks.
    #[must_use]
    pub fn collect(
        runtime: &Runtime,
        instance_id: &str,
        rates: &parking_lot::Mutex<RateWindow>,
    ) -> RelayStatus {
        let now = now_ms();
        let queue = runtime.queue();
        let disk = runtime.disk();
        let sources = runtime.counters.per_source();
        let ups = runtime.upstreams();
        let mut counters = BTreeMap::new();
        for s in &sources {
            counters.insert(source_key(&s.name), s.lines);
        }
        for u in ups {
            counters.insert(upstream_key(&u.name), u.counters.sent_lines.get());
        }
        let rates: Rates = rates.lock().observe(Instant::now(), counters);
        let sources = sources
            .into_iter()
            .map(|s| SourceStatus {
                lines_per_second: rates.get(&source_key(&s.name)),
                name: s.name.to_string(),
                received_lines: s.lines,
                received_bytes: s.bytes,
            })
            .collect();
        let upstreams = ups
            .iter()
            .map(|u| {
                let c = &u.counters;
                let q = queue.len(&u.name).unwrap_or_default();
                let dlq = queue.dlq_stats(&u.name).unwrap_or_default();
                let (evicted, _) = disk.evicted(&u.name);
                UpstreamStatus {
                    name: u.name.clone(),
                    up: c.up.load(Ordering::Relaxed),
                    auth_failing: c.auth_failing.load(Ordering::Relaxed),
                    misconfigured: c.misconfigured.load(Ordering::Relaxed),
                    queued_records: q.records,
                    queued_lines: q.lines,
                    stored_bytes: q.stored_bytes,
                    limit_bytes: u.limit.max_bytes,
                    lag_seconds: q
                        .oldest_ingest_ms
                        .map_or(0, |t| now.saturating_sub(t) / 1000),
                    sent_lines: c.sent_lines.get(),
                    sent_lines_per_second: rates.get(&upstream_key(&u.name)),
                    failures: c.failure_reasons.total(),
                    backoff_ms: c.backoff_ms.load(Ordering::Relaxed),
                    last_success_ms: c.last_success_ms.load(Ordering::Relaxed),
                    last_error: c.last_error.lock().clone(),
                    last_error_ms: c.last_error_ms.load(Ordering::Relaxed),
                    dead_lettered_lines: c.dead_lettered.total(),
                    dead_letter_records: dlq.records,
                    dropped_lines: c.dropped_full.lines.get()
                        + c.expired.lines.get()
                        + c.rejected_full.get()
                        + evicted,
                }
            })
            .collect();
        RelayStatus {
            instance_id: instance_id.to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            time_ms: now,
            storage_healthy: queue.is_healthy(),
            accepting: runtime.is_accepting(),
            disk_pressure: disk.pressure.load(Ordering::Relaxed),
            received_lines: runtime.counters.total_lines(),
            rate_window_seconds: rates.span.map(|d| d.as_secs_f64()),
            sources,
            upstreams,
            nats: nats_status(runtime),
        }
    }

    /// The status page.
    #[must_use]
    pub fn render(&self) -> String {
        let now = self.time_ms;
        let mut page = Page::new(&format!("cc-relay {}", self.instance_id), REFRESH_SECS);
        page.subtitle(&Html::text(format!(
            "version {} · {}",
            self.version,
            self.rate_note()
        )));
        page.facts(&[
            ("State", self.state()),
            (
                "Lines received",
                Html::text(status_page::count(self.received_lines)),
            ),
        ]);

        page.section("Sources");
        let rows: Vec<Vec<Html>> = self
            .sources
            .iter()
            .map(|s| {
                vec![
                    Html::text(&s.name),
                    Html::text(status_page::count(s.received_lines)),
                    status_page::rate(s.lines_per_second),
                    Html::text(status_page::bytes(s.received_bytes)),
                ]
            })
            .collect();
        page.table(
            &[
                Column::text("source"),
                Column::num("lines received"),
                Column::num("lines/s"),
                Column::num("bytes received"),
            ],
            &rows,
            "No source has started.",
        );

        page.section("Upstreams");
        let rows: Vec<Vec<Html>> = self
            .upstreams
            .iter()
            .map(|u| upstream_row(u, now))
            .collect();
        page.table(
            &[
                Column::text("upstream"),
                Column::text("state"),
                Column::num("queued lines"),
                Column::num("queued bytes"),
                Column::num("oldest queued"),
                Column::num("sent lines"),
                Column::num("sent/s"),
                Column::text("last success"),
                Column::text("last error"),
                Column::num("dead letters"),
                Column::num("dropped lines"),
            ],
            &rows,
            "No upstream is configured.",
        );
        page.note(&Html::join(
            [
                Html::text(
                    "Dead letters: lines the upstream refused, since start (in brackets the \
                     entries held in the dead-letter queue, which ",
                ),
                Html::code("GET /dlq/UPSTREAM"),
                Html::text(" on this listener exports and "),
                Html::code("POST /dlq/UPSTREAM/replay"),
                Html::text(
                    " sends again). Dropped lines: lost to buffer.max_bytes, buffer.max_age \
                     or disk pressure.",
                ),
            ],
            "",
        ));

        if !self.nats.is_empty() {
            page.section("NATS connections");
            let rows: Vec<Vec<Html>> = self.nats.iter().map(nats_row).collect();
            page.table(
                &[
                    Column::text("role"),
                    Column::text("state"),
                    Column::num("reconnects"),
                    Column::num("messages"),
                    Column::text("last error"),
                ],
                &rows,
                "",
            );
        }
        page.finish("status")
    }

    /// Whether data is taken, and if not why.
    fn state(&self) -> Html {
        if !self.storage_healthy {
            Html::tone(Tone::Bad, "storage failed: refusing data (see the log)")
        } else if !self.accepting {
            Html::tone(Tone::Warn, "shutting down")
        } else if self.disk_pressure {
            Html::tone(Tone::Bad, "disk limits reached: refusing data")
        } else {
            Html::tone(Tone::Ok, "accepting data")
        }
    }

    fn rate_note(&self) -> String {
        match self.rate_window_seconds {
            Some(s) => format!(
                "rates over the last {}",
                status_page::duration(Duration::from_secs_f64(s))
            ),
            None => "rates appear on the next reload".to_owned(),
        }
    }
}

fn source_key(name: &str) -> String {
    format!("source:{name}")
}

fn upstream_key(name: &str) -> String {
    format!("upstream:{name}")
}

fn upstream_row(u: &UpstreamStatus, now: u64) -> Vec<Html> {
    let state = if u.up {
        Html::tone(Tone::Ok, "up")
    } else {
        let mut what = vec!["down"];
        if u.auth_failing {
            what.push("credentials refused");
        }
        if u.misconfigured {
            what.push("no write endpoint");
        }
        let mut text = what.join(", ");
        if u.backoff_ms > 0 {
            text.push_str(&format!(
                "; retry in {}",
                status_page::duration(Duration::from_millis(u.backoff_ms))
            ));
        }
        Html::tone(Tone::Bad, text)
    };
    let queued_bytes = format!(
        "{} of {}",
        status_page::bytes(u.stored_bytes),
        status_page::bytes(u.limit_bytes)
    );
    let lag = if u.queued_lines == 0 {
        Html::none()
    } else {
        let text = status_page::duration(Duration::from_secs(u.lag_seconds));
        Html::tone(
            if u.lag_seconds >= 60 {
                Tone::Warn
            } else {
                Tone::Ok
            },
            text,
        )
    };
    let last_error = if u.last_error.is_empty() {
        Html::none()
    } else {
        let tone = if u.up { Tone::Dim } else { Tone::Bad };
        let mut parts = vec![Html::tone(tone, &u.last_error)];
        if u.last_error_ms > 0 {
            parts.push(Html::ago_ms(u.last_error_ms, now));
        }
        Html::join(parts, " · ")
    };
    let dead = format!(
        "{} ({})",
        status_page::count(u.dead_lettered_lines),
        status_page::count(u.dead_letter_records)
    );
    let dead = if u.dead_lettered_lines > 0 || u.dead_letter_records > 0 {
        Html::tone(Tone::Warn, dead)
    } else {
        Html::text(dead)
    };
    let dropped = if u.dropped_lines > 0 {
        Html::tone(Tone::Warn, status_page::count(u.dropped_lines))
    } else {
        Html::text("0")
    };
    vec![
        Html::text(&u.name),
        state,
        Html::text(status_page::count(u.queued_lines)),
        Html::text(queued_bytes),
        lag,
        Html::text(status_page::count(u.sent_lines)),
        status_page::rate(u.sent_lines_per_second),
        Html::ago_ms(u.last_success_ms, now),
        last_error,
        dead,
        dropped,
    ]
}

fn nats_row(n: &NatsStatus) -> Vec<Html> {
    let state = if n.connected {
        Html::tone(Tone::Ok, "connected")
    } else {
        Html::tone(Tone::Bad, "not connected")
    };
    let messages = n
        .source
        .as_ref()
        .map_or_else(Html::none, |s| Html::text(status_page::count(s.messages)));
    vec![
        Html::text(&n.role),
        state,
        Html::text(status_page::count(n.reconnects)),
        messages,
        n.last_error.as_ref().map_or_else(Html::none, Html::text),
    ]
}

/// The NATS connections: state, reconnects, the last error, and for
/// sources their message counts.
fn nats_status(runtime: &Runtime) -> Vec<NatsStatus> {
    runtime
        .nats
        .all()
        .iter()
        .map(|l| {
            let st = &l.status;
            NatsStatus {
                role: st.role().to_owned(),
                connected: st.is_connected(),
                reconnects: st.reconnects(),
                last_error: st.last_error(),
                source: l.source.as_ref().map(|(_, c)| NatsSourceStatus {
                    messages: c.messages.get(),
                    dropped_messages: c.dropped.total(),
                    slow_consumer_dropped: st.dropped() + st.slow_consumer_events(),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;

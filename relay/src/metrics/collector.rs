//! What `/metrics` reads at scrape time: the queues' sizes, each upstream's
//! counters (labelled `upstream` here, since its handle owns them
//! unlabelled) and health, the drops of every kind, and the storage state.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cc_common::metrics::encode_family;
use cc_common::time::now_ms;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use cc_common::nats::Status;

use crate::nats::{NatsLink, SourceCounters};
use crate::queue::QueueStats;
use crate::runtime::{Runtime, Upstream};

/// The label set of the per-upstream families.
type UpstreamLabel<'a> = [(&'static str, &'a str); 1];

/// The label set of the per-upstream families with a reason.
type ReasonLabel<'a> = [(&'static str, &'a str); 2];

/// The scrape-time part of the relay's metrics.
#[derive(Debug)]
pub struct RelayCollector {
    runtime: Arc<Runtime>,
}

impl RelayCollector {
    /// A collector reading `runtime`.
    #[must_use]
    pub fn new(runtime: Arc<Runtime>) -> Self {
        RelayCollector { runtime }
    }
}

impl Collector for RelayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let ups = self.runtime.upstreams();
        self.queues(&mut encoder, ups)?;
        upstream_counters(&mut encoder, ups)?;
        upstream_state(&mut encoder, ups)?;
        self.drops(&mut encoder, ups)?;
        self.storage(&mut encoder)?;
        self.nats(&mut encoder)
    }
}

fn label(u: &Upstream) -> UpstreamLabel<'_> {
    [("upstream", u.name.as_str())]
}

fn bool_gauge(b: bool) -> ConstGauge {
    ConstGauge::new(i64::from(b))
}

impl RelayCollector {
    fn queues(&self, enc: &mut DescriptorEncoder, ups: &[Arc<Upstream>]) -> fmt::Result {
        let queue = self.runtime.queue();
        let stats: Vec<(UpstreamLabel<'_>, QueueStats)> = ups
            .iter()
            .map(|u| (label(u), queue.len(&u.name).unwrap_or_default()))
            .collect();
        type Field = fn(&QueueStats) -> u64;
        let gauges: [(&str, &str, Field); 4] = [
            ("queue_records", "Records queued per upstream", |q| {
                q.records
            }),
            ("queue_lines", "Lines queued per upstream", |q| q.lines),
            (
                "queue_stored_bytes",
                "Stored (compressed) bytes queued per upstream",
                |q| q.stored_bytes,
            ),
            (
                "queue_raw_bytes",
                "Uncompressed bytes queued per upstream",
                |q| q.raw_bytes,
            ),
        ];
        for (name, help, field) in gauges {
            let series = stats.iter().map(|(l, q)| (*l, ConstGauge::new(field(q))));
            encode_family(enc, name, help, series)?;
        }
        let now = now_ms();
        #[expect(clippy::cast_precision_loss, reason = "an age in seconds")]
        let age = |q: &QueueStats| {
            q.oldest_ingest_ms
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0)
        };
        encode_family(
            enc,
            "queue_oldest_age_seconds",
            "Age of the oldest queued record (lag); 0 when empty",
            stats.iter().map(|(l, q)| (*l, ConstGauge::new(age(q)))),
        )?;
        encode_family(
            enc,
            "queue_limit_bytes",
            "buffer.max_bytes per upstream",
            ups.iter()
                .map(|u| (label(u), ConstGauge::new(u.limit.max_bytes))),
        )?;
        let dlq: Vec<_> = ups
            .iter()
            .map(|u| (label(u), queue.dlq_stats(&u.name).unwrap_or_default()))
            .collect();
        encode_family(
            enc,
            "deadletter_records",
            "Entries held in the dead-letter queue per upstream (a refused line or a corrupt \
             record each); replay and purge lower it",
            dlq.iter().map(|(l, d)| (*l, ConstGauge::new(d.records))),
        )?;
        encode_family(
            enc,
            "deadletter_stored_bytes",
            "Stored bytes of the dead-letter queue per upstream (capped by dead_letter.max_bytes)",
            dlq.iter()
                .map(|(l, d)| (*l, ConstGauge::new(d.stored_bytes))),
        )
    }

    fn drops(&self, enc: &mut DescriptorEncoder, ups: &[Arc<Upstream>]) -> fmt::Result {
        let queue = self.runtime.queue();
        let disk = self.runtime.disk();
        // Disk pressure evicts from every queue, also those of disabled
        // upstreams, which have no handle: their drops are counted all the same.
        let evicted_elsewhere: Vec<(String, u64, u64)> = disk
            .evicted_all()
            .into_iter()
            .filter(|(name, _, _)| !ups.iter().any(|u| &u.name == name))
            .collect();
        let mut lines: Vec<(ReasonLabel<'_>, ConstCounter)> = Vec::new();
        let mut records: Vec<(ReasonLabel<'_>, ConstCounter)> = Vec::new();
        for (name, n_lines, n_records) in &evicted_elsewhere {
            let labels = [("upstream", name.as_str()), ("reason", "disk_pressure")];
            lines.push((labels, ConstCounter::new(*n_lines)));
            records.push((labels, ConstCounter::new(*n_records)));
        }
        for u in ups {
            let name = u.name.as_str();
            let c = &u.counters;
            let (evicted_lines, evicted_records) = disk.evicted(name);
            let corrupt = queue.dlq_stats(name).map_or(0, |d| d.corrupt_total);
            let counts = [
                (
                    "buffer_full",
                    Some(c.dropped_full.lines.get()),
                    Some(c.dropped_full.records.get()),
                ),
                (
                    "max_age",
                    Some(c.expired.lines.get()),
                    Some(c.expired.records.get()),
                ),
                ("disk_pressure", Some(evicted_lines), Some(evicted_records)),
                // Refused before they became records.
                ("rejected_full", Some(c.rejected_full.get()), None),
                // A corrupt record's line count is unknown.
                ("corrupt", None, Some(corrupt)),
            ];
            for (reason, n_lines, n_records) in counts {
                let labels = [("upstream", name), ("reason", reason)];
                if let Some(n) = n_lines {
                    lines.push((labels, ConstCounter::new(n)));
                }
                if let Some(n) = n_records {
                    records.push((labels, ConstCounter::new(n)));
                }
            }
        }
        encode_family(
            enc,
            "dropped_lines",
            "Lines dropped by limits, per upstream and reason",
            lines,
        )?;
        encode_family(
            enc,
            "dropped_records",
            "Queue records dropped by limits or found corrupt, per upstream and reason",
            records,
        )
    }

    /// The NATS connections (by `role`) and the NATS sources' message
    /// counts (by `ingress`).
    fn nats(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let links = self.runtime.nats.all();
        let role = |l: &NatsLink| [("role", l.status.role().to_owned())];
        encode_family(
            enc,
            "nats_connected",
            "1 while the NATS connection is up, by role (ingress:<name>, upstream:<name>)",
            links
                .iter()
                .map(|l| (role(l), bool_gauge(l.status.is_connected()))),
        )?;
        encode_family(
            enc,
            "nats_reconnects",
            "NATS connections made again after the first, by role",
            links
                .iter()
                .map(|l| (role(l), ConstCounter::new(l.status.reconnects()))),
        )?;
        let sources: Vec<(&str, &Arc<Status>, &SourceCounters)> = links
            .iter()
            .filter_map(|l| {
                l.source
                    .as_ref()
                    .map(|(name, c)| (&**name, &l.status, &**c))
            })
            .collect();
        let ingress = |name: &str| [("ingress", name.to_owned())];
        encode_family(
            enc,
            "nats_messages",
            "NATS messages received, by input",
            sources
                .iter()
                .map(|(n, _, c)| (ingress(n), ConstCounter::new(c.messages.get()))),
        )?;
        encode_family(
            enc,
            "nats_slow_consumer",
            "NATS messages lost because the relay fell behind, by input (those the relay's \
             inbox dropped, plus one per slow-consumer event of the client, which undercounts)",
            sources.iter().map(|(n, st, _)| {
                let lost = st.dropped() + st.slow_consumer_events();
                (ingress(n), ConstCounter::new(lost))
            }),
        )?;
        let mut dropped = Vec::new();
        let mut acks = Vec::new();
        for (n, _, c) in &sources {
            for (reason, count) in c.dropped.iter() {
                let labels = [("ingress", (*n).to_owned()), ("reason", reason.to_owned())];
                dropped.push((labels, ConstCounter::new(count.get())));
            }
            for (kind, count) in c.acks.iter() {
                let labels = [("ingress", (*n).to_owned()), ("kind", kind.to_owned())];
                acks.push((labels, ConstCounter::new(count.get())));
            }
        }
        encode_family(
            enc,
            "nats_dropped_messages",
            "NATS messages not stored, by input and reason (too_large, refused, invalid)",
            dropped,
        )?;
        encode_family(
            enc,
            "nats_acks",
            "Answers to JetStream messages, by input and kind (ack, nak, term)",
            acks,
        )?;
        encode_family(
            enc,
            "nats_redelivered",
            "JetStream messages received more than once, by input",
            sources
                .iter()
                .map(|(n, _, c)| (ingress(n), ConstCounter::new(c.redelivered.get()))),
        )?;
        encode_family(
            enc,
            "nats_unacked_messages",
            "JetStream messages received and not answered yet, by input",
            sources.iter().map(|(n, _, c)| {
                (
                    ingress(n),
                    ConstGauge::new(c.unacked.load(Ordering::Relaxed)),
                )
            }),
        )
    }

    #[expect(clippy::cast_precision_loss, reason = "durations as float seconds")]
    fn storage(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let queue = self.runtime.queue();
        let flush = self.runtime.flush_stats().snapshot();
        encode_family(
            enc,
            "sled_flushes",
            "Group-commit flushes (fsyncs)",
            [(NO_LABELS, ConstCounter::new(flush.flushes))],
        )?;
        encode_family(
            enc,
            "sled_flush_seconds_max",
            "Longest flush",
            [(NO_LABELS, ConstGauge::new(flush.max_us as f64 / 1e6))],
        )?;
        encode_family(
            enc,
            "sled_size_on_disk_bytes",
            "Size of the queue database on disk",
            [(
                NO_LABELS,
                ConstGauge::new(queue.size_on_disk().unwrap_or(0)),
            )],
        )?;
        let disk = self.runtime.disk();
        encode_family(
            enc,
            "storage_pressure",
            "1 while disk limits refuse new data",
            [(NO_LABELS, bool_gauge(disk.pressure.load(Ordering::Relaxed)))],
        )?;
        encode_family(
            enc,
            "disk_free_bytes",
            "Free bytes on the data filesystem",
            [(
                NO_LABELS,
                ConstGauge::new(disk.free_bytes.load(Ordering::Relaxed)),
            )],
        )?;
        encode_family(
            enc,
            "storage_healthy",
            "1 while the queue storage works",
            [(NO_LABELS, bool_gauge(queue.is_healthy()))],
        )?;
        let orphans: Vec<(String, u64)> = queue
            .orphans()
            .iter()
            .map(|o| (format!("q:{}", o.upstream), o.stored_bytes))
            .collect();
        encode_family(
            enc,
            "orphan_queue_bytes",
            "Stored bytes in queues of upstreams that are no longer configured",
            orphans
                .iter()
                .map(|(tree, bytes)| ([("tree", tree.as_str())], ConstGauge::new(*bytes))),
        )
    }
}

/// The label set of a family without labels.
const NO_LABELS: [(&str, &str); 0] = [];

/// The counters and the request histogram each upstream's handle owns.
fn upstream_counters(enc: &mut DescriptorEncoder, ups: &[Arc<Upstream>]) -> fmt::Result {
    type Get =
        fn(&crate::runtime::UpstreamCounters) -> &prometheus_client::metrics::counter::Counter;
    let counters: [(&str, &str, Get); 4] = [
        ("upstream_sent_batches", "Batches delivered", |c| {
            &c.sent_batches
        }),
        ("upstream_sent_lines", "Lines delivered", |c| &c.sent_lines),
        ("upstream_sent_bytes", "Bytes delivered", |c| &c.sent_bytes),
        ("upstream_retries", "Attempts that were retries", |c| {
            &c.retries
        }),
    ];
    for (name, help, get) in counters {
        let series = ups.iter().map(|u| (label(u), get(&u.counters).clone()));
        encode_family(enc, name, help, series)?;
    }
    encode_family(
        enc,
        "upstream_failures",
        "Failed send attempts per upstream and reason",
        ups.iter().flat_map(|u| {
            u.counters.failure_reasons.iter().map(|(reason, c)| {
                (
                    [("upstream", u.name.as_str()), ("reason", reason)],
                    c.clone(),
                )
            })
        }),
    )?;
    encode_family(
        enc,
        "deadletter_lines",
        "Lines moved to the dead-letter queue, per upstream and reason",
        ups.iter().flat_map(|u| {
            u.counters.dead_lettered.iter().map(|(reason, c)| {
                (
                    [("upstream", u.name.as_str()), ("reason", reason)],
                    c.clone(),
                )
            })
        }),
    )?;
    encode_family(
        enc,
        "upstream_request_seconds",
        "Duration of requests to the upstream",
        ups.iter()
            .map(|u| (label(u), u.counters.request_seconds.clone())),
    )
}

/// Each upstream's health, as its worker last saw it.
fn upstream_state(enc: &mut DescriptorEncoder, ups: &[Arc<Upstream>]) -> fmt::Result {
    type Flag = fn(&crate::runtime::UpstreamCounters) -> bool;
    let flags: [(&str, &str, Flag); 3] = [
        (
            "upstream_up",
            "1 after the last success, 0 after the last failure",
            |c| c.up.load(Ordering::Relaxed),
        ),
        (
            "upstream_auth_failing",
            "1 while the upstream refuses credentials",
            |c| c.auth_failing.load(Ordering::Relaxed),
        ),
        (
            "upstream_misconfigured",
            "1 while the upstream answers 404/405",
            |c| c.misconfigured.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, flag) in flags {
        let series = ups
            .iter()
            .map(|u| (label(u), bool_gauge(flag(&u.counters))));
        encode_family(enc, name, help, series)?;
    }
    #[expect(clippy::cast_precision_loss, reason = "milliseconds as float seconds")]
    let backoff = |u: &Upstream| u.counters.backoff_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    encode_family(
        enc,
        "upstream_backoff_seconds",
        "Current backoff",
        ups.iter().map(|u| (label(u), ConstGauge::new(backoff(u)))),
    )
}

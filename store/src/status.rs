//! The store's status at a glance: one snapshot, [`StoreStatus`], of what
//! is in memory, what comes in, the checkpoints, the restore and the hosts
//! that stopped reporting, served as JSON at `/status` for scripts and as a
//! page at `/` for people (see [`cc_common::status_page`]). Neither path is
//! part of cc-metric-store's API, which lives under `/api/`.
//!
//! A host is *silent* when none of its series got a sample within
//! [`STALE_AFTER_PERIODS`] of its periods: the rule of the health check and
//! of `ccstore_silent_hosts`, whose count this lists by name, with the time
//! of the host's newest sample.
//!
//! Taking a snapshot walks the tree as a scrape of `/metrics` does (one
//! shared lock at a time), so it runs on a blocking thread; the page reloads
//! every [`REFRESH_SECS`]. Rates come from a [`RateWindow`] fed by every
//! request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cc_common::status_page::{self, Column, Html, Page, RateWindow, Rates, Tone};
use serde::Serialize;

use crate::buffer::STALE_AFTER_PERIODS;
use crate::ingest::{Rejection, Source};
use crate::metrics::{Metrics, Sources};
use crate::tree::Level;

/// How often the page reloads itself, in seconds (a snapshot walks the
/// whole tree).
pub const REFRESH_SECS: u32 = 10;

/// Silent hosts listed on the page per cluster; the JSON lists all.
pub const SILENT_LISTED: usize = 100;

/// What a snapshot is taken from.
#[derive(Debug)]
pub struct StatusSources {
    /// The data, checkpoints, restore and memory cap.
    pub sources: Sources,
    /// The NATS connection, when there is one.
    pub metrics: Arc<Metrics>,
    /// `checkpoint-interval`: a checkpoint older than twice this is overdue.
    pub checkpoint_interval: Duration,
    /// Unix seconds at start.
    pub started: i64,
    /// Earlier looks at the counters, for the rates.
    pub rates: parking_lot::Mutex<RateWindow>,
}

/// Everything `/status` and `/` show, taken at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// The store's version.
    pub version: &'static str,
    /// When the snapshot was taken, Unix seconds.
    pub time: i64,
    /// When the store started, Unix seconds.
    pub start_time: i64,
    /// Loading the checkpoints at start.
    pub restore: RestoreStatus,
    /// Clusters in memory.
    pub clusters: usize,
    /// Hosts in memory.
    pub hosts: usize,
    /// Metrics configured.
    pub metrics: usize,
    /// Series in memory (one per metric and level holding data).
    pub series: usize,
    /// Memory held by the data, as `memory-cap` counts it.
    pub memory_used_bytes: u64,
    /// `memory-cap` in bytes; 0: none.
    pub memory_cap_bytes: u64,
    /// The span the rates are measured over, in seconds; `None` on the
    /// first look (then every rate is `None`).
    pub rate_window_seconds: Option<f64>,
    /// What came in, per source (`http`, `nats`).
    pub ingest: Vec<IngestStatus>,
    /// Checkpoints and the WAL.
    pub checkpoint: CheckpointStatus,
    /// The NATS connection, with NATS ingestion.
    pub nats: Option<NatsStatus>,
    /// A host is silent when none of its series got a sample within this
    /// many of its periods.
    pub silent_after_periods: i64,
    /// Per cluster, in name order: its hosts and the silent ones.
    pub per_cluster: Vec<ClusterStatus>,
}

/// Progress of the restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreStatus {
    /// Still loading (the `/api/` routes answer 503).
    pub in_progress: bool,
    /// Host directories found.
    pub hosts: usize,
    /// Host directories done.
    pub hosts_done: usize,
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub read_bytes: u64,
}

/// What one source delivered.
#[derive(Debug, Clone, Serialize)]
pub struct IngestStatus {
    /// `http` or `nats`.
    pub source: &'static str,
    /// Lines received since start.
    pub lines: u64,
    /// Samples stored since start.
    pub samples: u64,
    /// Lines not stored since start (any reason; `/metrics` has them by reason).
    pub rejected_lines: u64,
    /// Lines per second lately.
    pub lines_per_second: Option<f64>,
    /// Samples per second lately.
    pub samples_per_second: Option<f64>,
}

/// Checkpoints and the WAL.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointStatus {
    /// `checkpoint-interval` in seconds.
    pub interval_seconds: u64,
    /// End of the last round in which every host was saved, Unix seconds;
    /// 0 before the first.
    pub last_success_time: i64,
    /// How long the last round took.
    pub last_duration_seconds: f64,
    /// Rounds finished since start.
    pub rounds: u64,
    /// Host snapshots that failed since start.
    pub failures: u64,
    /// Bytes in WAL files now.
    pub wal_bytes: u64,
    /// Failed WAL writes since start.
    pub wal_errors: u64,
}

/// The NATS connection.
#[derive(Debug, Clone, Serialize)]
pub struct NatsStatus {
    /// The connection is up.
    pub connected: bool,
    /// Connections made again after the first.
    pub reconnects: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

/// One cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Its name.
    pub cluster: String,
    /// Hosts in memory.
    pub hosts: usize,
    /// The silent ones, by name.
    pub silent_hosts: Vec<SilentHost>,
}

/// A host that stopped reporting.
#[derive(Debug, Clone, Serialize)]
pub struct SilentHost {
    /// Its name.
    pub host: String,
    /// Its newest sample, Unix seconds; `None` when it holds none (all freed).
    pub last_sample_time: Option<i64>,
}

impl StatusSources {
    /// A snapshot now. Walks the tree: call it on a blocking thread.
    #[must_use]
    pub fn snapshot(&self) -> StoreStatus {
        let s = &self.sources;
        let store = &s.store;
        let now = cc_common::time::now_secs();
        let mut counters = BTreeMap::new();
        for source in Source::ALL {
            let t = store.ingest_totals(source);
            counters.insert(lines_key(source), t.lines());
            counters.insert(samples_key(source), t.written());
        }
        let rates: Rates = self.rates.lock().observe(Instant::now(), counters);
        let ingest = Source::ALL
            .into_iter()
            .map(|source| {
                let t = store.ingest_totals(source);
                IngestStatus {
                    source: source.label(),
                    lines: t.lines(),
                    samples: t.written(),
                    rejected_lines: Rejection::ALL.into_iter().map(|r| t.rejected(r)).sum(),
                    lines_per_second: rates.get(&lines_key(source)),
                    samples_per_second: rates.get(&samples_key(source)),
                }
            })
            .collect();
        let per_cluster = per_cluster(store.root(), now);
        let census = store.root().census();
        let r = &s.restore;
        let c = s.persistence.checkpoint_stats();
        #[expect(clippy::cast_precision_loss, reason = "a duration as float seconds")]
        let last_duration_seconds = c.last_duration_us.load(Ordering::Relaxed) as f64 / 1e6;
        StoreStatus {
            version: env!("CARGO_PKG_VERSION"),
            time: now,
            start_time: self.started,
            restore: RestoreStatus {
                in_progress: !r.done.load(Ordering::Acquire),
                hosts: r.hosts_total.load(Ordering::Relaxed),
                hosts_done: r.hosts_done.load(Ordering::Relaxed),
                files: r.files.load(Ordering::Relaxed),
                read_bytes: r.bytes.load(Ordering::Relaxed),
            },
            clusters: per_cluster.len(),
            hosts: per_cluster.iter().map(|c| c.hosts).sum(),
            metrics: store.registry().len(),
            series: census.series,
            memory_used_bytes: u64::try_from(census.bytes).unwrap_or(u64::MAX),
            memory_cap_bytes: s.memory_cap,
            rate_window_seconds: rates.span.map(|d| d.as_secs_f64()),
            ingest,
            checkpoint: CheckpointStatus {
                interval_seconds: self.checkpoint_interval.as_secs(),
                last_success_time: c.last_success.load(Ordering::Relaxed),
                last_duration_seconds,
                rounds: c.rounds.load(Ordering::Relaxed),
                failures: c.failures.load(Ordering::Relaxed),
                wal_bytes: s.persistence.wal_on_disk(),
                wal_errors: s.persistence.wal_errors(),
            },
            nats: self.metrics.nats_status().map(|st| NatsStatus {
                connected: st.is_connected(),
                reconnects: st.reconnects(),
                last_error: st.last_error(),
            }),
            silent_after_periods: STALE_AFTER_PERIODS,
            per_cluster,
        }
    }
}

fn lines_key(source: Source) -> String {
    format!("lines:{}", source.label())
}

fn samples_key(source: Source) -> String {
    format!("samples:{}", source.label())
}

/// Every cluster with its host count and silent hosts, names sorted.
fn per_cluster(root: &Level, now: i64) -> Vec<ClusterStatus> {
    let clusters: Vec<(String, Arc<Level>)> = root
        .read()
        .children
        .iter()
        .map(|(name, level)| (name.to_string(), Arc::clone(level)))
        .collect();
    let mut out: Vec<ClusterStatus> = clusters
        .into_iter()
        .map(|(cluster, level)| {
            let hosts: Vec<(String, Arc<Level>)> = level
                .read()
                .children
                .iter()
                .map(|(name, level)| (name.to_string(), Arc::clone(level)))
                .collect();
            let mut silent_hosts: Vec<SilentHost> = hosts
                .iter()
                .filter(|(_, h)| !h.has_fresh_data(now))
                .map(|(host, h)| SilentHost {
                    host: host.clone(),
                    last_sample_time: h.newest_sample(),
                })
                .collect();
            silent_hosts.sort_unstable_by(|a, b| a.host.cmp(&b.host));
            ClusterStatus {
                cluster,
                hosts: hosts.len(),
                silent_hosts,
            }
        })
        .collect();
    out.sort_unstable_by(|a, b| a.cluster.cmp(&b.cluster));
    out
}

impl StoreStatus {
    /// The status page.
    #[must_use]
    pub fn render(&self) -> String {
        let mut page = Page::new("cc-store", REFRESH_SECS);
        let uptime = Duration::from_secs(u64::try_from(self.time - self.start_time).unwrap_or(0));
        let rates = match self.rate_window_seconds {
            Some(s) => format!(
                "rates over the last {}",
                status_page::duration(Duration::from_secs_f64(s))
            ),
            None => "rates appear on the next reload".to_owned(),
        };
        page.subtitle(&Html::text(format!(
            "version {} · up {} · {rates}",
            self.version,
            status_page::duration(uptime)
        )));
        let silent: usize = self.per_cluster.iter().map(|c| c.silent_hosts.len()).sum();
        let mut facts = vec![
            ("Checkpoints", self.restore_state()),
            (
                "In memory",
                Html::text(format!(
                    "{} clusters, {} hosts, {} series of {} configured metrics",
                    status_page::count(self.clusters as u64),
                    status_page::count(self.hosts as u64),
                    status_page::count(self.series as u64),
                    status_page::count(self.metrics as u64),
                )),
            ),
            (
                "Hosts not reporting",
                if silent == 0 {
                    Html::tone(Tone::Ok, "none")
                } else {
                    Html::tone(Tone::Warn, status_page::count(silent as u64))
                },
            ),
            ("Memory", self.memory()),
            ("Last checkpoint", self.last_checkpoint()),
            (
                "WAL on disk",
                Html::text(status_page::bytes(self.checkpoint.wal_bytes)),
            ),
        ];
        if self.checkpoint.failures > 0 || self.checkpoint.wal_errors > 0 {
            facts.push((
                "Write errors",
                Html::tone(
                    Tone::Bad,
                    format!(
                        "{} host snapshots failed, {} WAL writes failed (see the log)",
                        self.checkpoint.failures, self.checkpoint.wal_errors
                    ),
                ),
            ));
        }
        if let Some(n) = &self.nats {
            let state = if n.connected {
                Html::tone(Tone::Ok, "connected")
            } else {
                let error = n.last_error.as_deref().unwrap_or("no error reported");
                Html::tone(Tone::Bad, format!("not connected: {error}"))
            };
            facts.push(("NATS", state));
        }
        page.facts(&facts);

        page.section("Ingest");
        let rows: Vec<Vec<Html>> = self
            .ingest
            .iter()
            .map(|i| {
                let rejected = if i.rejected_lines > 0 {
                    Html::tone(Tone::Warn, status_page::count(i.rejected_lines))
                } else {
                    Html::text("0")
                };
                vec![
                    Html::text(i.source),
                    Html::text(status_page::count(i.lines)),
                    status_page::rate(i.lines_per_second),
                    Html::text(status_page::count(i.samples)),
                    status_page::rate(i.samples_per_second),
                    rejected,
                ]
            })
            .collect();
        page.table(
            &[
                Column::text("source"),
                Column::num("lines"),
                Column::num("lines/s"),
                Column::num("samples"),
                Column::num("samples/s"),
                Column::num("rejected lines"),
            ],
            &rows,
            "",
        );

        page.section("Clusters");
        let rows: Vec<Vec<Html>> = self
            .per_cluster
            .iter()
            .map(|c| {
                let silent = if c.silent_hosts.is_empty() {
                    Html::text("0")
                } else {
                    Html::tone(Tone::Warn, status_page::count(c.silent_hosts.len() as u64))
                };
                vec![
                    Html::text(&c.cluster),
                    Html::text(status_page::count(c.hosts as u64)),
                    silent,
                ]
            })
            .collect();
        page.table(
            &[
                Column::text("cluster"),
                Column::num("hosts"),
                Column::num("not reporting"),
            ],
            &rows,
            "No data yet.",
        );

        page.section("Hosts not reporting");
        self.silent_hosts(&mut page);
        page.finish("status")
    }

    fn restore_state(&self) -> Html {
        let r = &self.restore;
        if r.in_progress {
            Html::tone(
                Tone::Warn,
                format!(
                    "loading: {} of {} hosts, {} files, {} read (the API answers 503 until done)",
                    status_page::count(r.hosts_done as u64),
                    status_page::count(r.hosts as u64),
                    status_page::count(r.files),
                    status_page::bytes(r.read_bytes),
                ),
            )
        } else {
            Html::tone(
                Tone::Ok,
                format!(
                    "loaded at start: {} hosts, {} files, {}",
                    status_page::count(r.hosts_done as u64),
                    status_page::count(r.files),
                    status_page::bytes(r.read_bytes),
                ),
            )
        }
    }

    fn memory(&self) -> Html {
        let used = status_page::bytes(self.memory_used_bytes);
        if self.memory_cap_bytes == 0 {
            return Html::text(format!("{used} (no memory-cap)"));
        }
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let share = self.memory_used_bytes as f64 / self.memory_cap_bytes as f64 * 100.0;
        let text = format!(
            "{used} of {} memory-cap ({share:.0} %)",
            status_page::bytes(self.memory_cap_bytes)
        );
        let tone = if share >= 90.0 { Tone::Warn } else { Tone::Ok };
        Html::tone(tone, text)
    }

    fn last_checkpoint(&self) -> Html {
        let c = &self.checkpoint;
        let interval = Duration::from_secs(c.interval_seconds);
        if c.last_success_time <= 0 {
            return Html::tone(
                Tone::Dim,
                format!(
                    "none since start (every {})",
                    status_page::duration(interval)
                ),
            );
        }
        let age = self.time - c.last_success_time;
        let overdue = age > 2 * i64::try_from(c.interval_seconds).unwrap_or(i64::MAX / 4);
        let when = Html::ago_secs(c.last_success_time, self.time);
        let rest = Html::text(format!(
            ", took {} (every {})",
            status_page::duration(Duration::from_secs_f64(c.last_duration_seconds.max(0.0))),
            status_page::duration(interval)
        ));
        let mut parts = vec![when, rest];
        if overdue {
            parts.push(Html::tone(Tone::Bad, " overdue"));
        }
        Html::join(parts, "")
    }

    fn silent_hosts(&self, page: &mut Page) {
        let mut rows = Vec::new();
        let mut unlisted = 0;
        for c in &self.per_cluster {
            for h in c.silent_hosts.iter().take(SILENT_LISTED) {
                let last = h
                    .last_sample_time
                    .map_or_else(Html::none, |t| Html::ago_secs(t, self.time));
                rows.push(vec![Html::text(&c.cluster), Html::text(&h.host), last]);
            }
            unlisted += c.silent_hosts.len().saturating_sub(SILENT_LISTED);
        }
        page.table(
            &[
                Column::text("cluster"),
                Column::text("host"),
                Column::text("last sample"),
            ],
            &rows,
            "Every host reports.",
        );
        if unlisted > 0 {
            page.note(&Html::tone(
                Tone::Warn,
                format!(
                    "… and {} more (the first {SILENT_LISTED} per cluster are listed; \
                     the JSON has all).",
                    status_page::count(unlisted as u64)
                ),
            ));
        }
        page.note(&Html::text(format!(
            "A host is listed when none of its series got a sample within {} of its \
             periods (the health check's rule). A node that left the cluster stays listed \
             until retention-in-memory frees its data.",
            self.silent_after_periods
        )));
    }
}

#[cfg(test)]
mod tests;

//! The cc-metric-store configuration file: loading, defaults and validation.
//!
//! `cc-store` reads the files written for upstream cc-metric-store (1.5
//! layout, `configs/config.json` upstream) unchanged. Everything is checked
//! once, in [`Config::load`]; the rest of the program reads plain, validated
//! values (a parsed JWT key, [`Duration`]s, enums instead of strings).
//!
//! # Layout
//!
//! The file is one JSON object whose keys are sections:
//!
//! - `main` (required): listen address, TLS files, privileges, JWT key;
//! - `metrics`: metric name → `{"frequency": 60, "aggregation": "sum"}`;
//!   upstream requires it; without it (or with `null`) every metric is
//!   accepted and its frequency learned from its samples;
//! - `metric-store` (required): retention, memory cap, checkpoints, cleanup,
//!   NATS subscriptions;
//! - `nats` (optional): the NATS server to subscribe on.
//!
//! A top-level key `NAME-file` with exactly one hyphen is replaced by the
//! content of the file it names, under key `NAME`: `"metrics-file":
//! "metrics.json"` works, `"metric-store-file"` does not (two hyphens; it is
//! ignored like any unknown key). A relative path is taken from the directory
//! of the config file. Only sections are read this way; if both `NAME` and
//! `NAME-file` are present, the file wins (with a warning). Other top-level
//! keys are ignored with a warning naming them, as upstream ignores them.
//!
//! Inside `main`, `metrics` and `metric-store` unknown keys are errors (a
//! typo must not silently fall back to a default); unknown keys in `nats` are
//! logged and ignored. Errors name the file and the key path, with line and
//! column where serde reports them, e.g.
//! ``config.json: at metric-store.checkpoints.file-fromat (line 12, column 9): unknown field `file-fromat`, …``.
//!
//! Durations are Go duration strings as upstream writes them (`"48h"`,
//! `"90m"`, `"1h30m"`, `"1.5h"`, `"300ms"`, units `ns`, `us`/`µs`, `ms`,
//! `s`, `m`, `h`). Also accepted: humantime spellings (`"2d"`, `"1h 30m"`)
//! and a bare integer number of seconds. A leading `-` is rejected: write
//! `"0s"` where zero means "off".
//!
//! # Where we deliberately differ from upstream
//!
//! - `main.addr` defaults to `0.0.0.0:8082` (upstream: a random port).
//! - Exactly one of `https-cert-file`/`https-key-file` is an error naming the
//!   missing key (upstream silently serves plain HTTP).
//! - `jwt-public-key` is decoded at load, so a bad key stops startup instead
//!   of failing every request.
//! - `metrics.*.frequency` ≤ 0, `checkpoint-interval` of `0s`, an unparsable
//!   duration, and `checkpoints.file-format` other than `wal`/`json` are
//!   errors (upstream panics, crashes, or silently uses a default).
//! - `"cleanup": null` and `"checkpoints": null` mean the defaults (upstream
//!   crashes), and `memory-cap: 0` means no cap.
//! - `nats` with an empty `address` is [`Config::nats`] = `None`.
//! - `checkpoints.max-wal-size` defaults to 16 MiB per host (upstream: 0,
//!   unlimited), so the WAL stays bounded between snapshots; `0` still
//!   turns the limit off.
//!
//! ## Keys beyond upstream
//!
//! Upstream cc-metric-store rejects these keys, so a file using them is for
//! `cc-store` only; all are optional.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `main.max-body-size` | `"256MiB"` | larger request bodies get `413 Payload Too Large` |
//! | `main.admin-roles` | `[]` (off) | when non-empty, `/api/free` and `/api/debug` need a token whose `roles` claim holds one of these |
//! | `main.read-timeout` | `"30s"` | with `write-timeout`: a request not read and answered within their sum gets `408` (upstream: fixed 30 s each); a connection without a whole request head within it (idle or trickling) is closed |
//! | `main.write-timeout` | `"30s"` | see `read-timeout` |
//! | `main.backend-token` | none | API token (role `api`) that the node provider sends to cc-backend's `/api/jobs/used_nodes` (upstream sends none, and cc-backend refuses it) |
//! | `main.metrics-endpoint-auth` | `false` | when true, `/metrics` needs what `/api/debug` needs: a valid token, with one of `admin-roles` when those are set; requires `jwt-public-key` |
//! | `metric-store.checkpoints.wal-fsync-interval` | `"1s"` | how often WAL files are fsynced (upstream never syncs) |
//! | `metric-store.checkpoints.interval` | — | the architecture guide's spelling of `checkpoint-interval`, read as that key (with a notice in the log); both set to different values is an error |
//! | `metric-store.cleanup.interval` | every `retention-in-memory` | how often old checkpoint files are deleted or archived (the architecture guide's key) |
//!
//! `memory-cap` also accepts fractions of a GB (`0.5`); upstream only whole
//! numbers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cc_common::auth::PublicKey;
use cc_common::config::{ByteSize, ConfigError, parse_json};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// `main.addr` when the key is missing or empty.
pub const DEFAULT_ADDR: &str = "0.0.0.0:8082";

/// [`Config::source`] of [`Config::embedded_default`].
pub const EMBEDDED_DEFAULT_SOURCE: &str = "built-in defaults";

/// The configuration used when no file is given: loopback only, no
/// authentication, 48 h in memory, WAL checkpoints under `./var/checkpoints`
/// deleted after the retention window, and ClusterCockpit's usual metrics.
/// The same metric set is in `examples/cc-store/config.json`.
const EMBEDDED_DEFAULT: &str = r#"{
  "main": { "addr": "127.0.0.1:8082" },
  "metric-store": {
    "retention-in-memory": "48h",
    "memory-cap": 0,
    "checkpoints": { "file-format": "wal", "directory": "./var/checkpoints" },
    "cleanup": { "mode": "delete" }
  },
  "metrics": {
    "cpu_load": { "frequency": 60, "aggregation": null },
    "cpu_user": { "frequency": 60, "aggregation": "avg" },
    "cpu_system": { "frequency": 60, "aggregation": "avg" },
    "cpu_idle": { "frequency": 60, "aggregation": "avg" },
    "cpu_iowait": { "frequency": 60, "aggregation": "avg" },
    "cpu_irq": { "frequency": 60, "aggregation": "avg" },
    "ipc": { "frequency": 60, "aggregation": "avg" },
    "clock": { "frequency": 60, "aggregation": "avg" },
    "flops_any": { "frequency": 60, "aggregation": "sum" },
    "flops_dp": { "frequency": 60, "aggregation": "sum" },
    "flops_sp": { "frequency": 60, "aggregation": "sum" },
    "vectorization_ratio": { "frequency": 60, "aggregation": "avg" },
    "mem_bw": { "frequency": 60, "aggregation": "sum" },
    "mem_used": { "frequency": 60, "aggregation": null },
    "mem_cached": { "frequency": 60, "aggregation": null },
    "cpu_power": { "frequency": 60, "aggregation": "sum" },
    "core_power": { "frequency": 60, "aggregation": "sum" },
    "mem_power": { "frequency": 60, "aggregation": "sum" },
    "acc_utilization": { "frequency": 60, "aggregation": "avg" },
    "acc_mem_used": { "frequency": 60, "aggregation": "sum" },
    "acc_power": { "frequency": 60, "aggregation": "sum" },
    "nv_mem_util": { "frequency": 60, "aggregation": "avg" },
    "nv_temp": { "frequency": 60, "aggregation": "avg" },
    "nv_sm_clock": { "frequency": 60, "aggregation": "avg" },
    "net_bw": { "frequency": 60, "aggregation": null },
    "net_bytes_in": { "frequency": 60, "aggregation": null },
    "net_bytes_out": { "frequency": 60, "aggregation": null },
    "ib_bw": { "frequency": 60, "aggregation": null },
    "ib_recv": { "frequency": 60, "aggregation": "sum" },
    "ib_xmit": { "frequency": 60, "aggregation": "sum" },
    "ib_recv_pkts": { "frequency": 60, "aggregation": "sum" },
    "ib_xmit_pkts": { "frequency": 60, "aggregation": "sum" },
    "file_bw": { "frequency": 60, "aggregation": null },
    "lustre_bw": { "frequency": 60, "aggregation": null },
    "lustre_read_bytes": { "frequency": 60, "aggregation": null },
    "lustre_write_bytes": { "frequency": 60, "aggregation": null },
    "lustre_open": { "frequency": 60, "aggregation": null },
    "lustre_close": { "frequency": 60, "aggregation": null },
    "lustre_statfs": { "frequency": 60, "aggregation": null },
    "nfs4_read": { "frequency": 60, "aggregation": null },
    "nfs4_write": { "frequency": 60, "aggregation": null },
    "nfs4_total": { "frequency": 60, "aggregation": null }
  }
}"#;

/// Sections this program reads; other top-level keys are ignored.
pub const SECTIONS: [&str; 4] = ["main", "metrics", "metric-store", "nats"];

/// Every top-level key the loader reads: the [`SECTIONS`] and the
/// `NAME-file` keys that stand for one of them (`main-file`, `metrics-file`,
/// `nats-file`; not `metric-store-file`, whose name has two hyphens). The
/// configuration reference in `docs/` is checked against this list.
#[must_use]
pub fn top_level_keys() -> Vec<String> {
    let sections = SECTIONS.iter().map(|name| (*name).to_owned());
    let files = SECTIONS
        .iter()
        .map(|name| format!("{name}-file"))
        .filter(|key| indirection_target(key).and_then(section_name).is_some());
    sections.chain(files).collect()
}

/// The keys of section `nats` the loader reads (upstream's four); others
/// are logged and ignored, as upstream ignores them. Taken from the struct
/// the section is read into, so this list and the loader cannot disagree;
/// the configuration reference in `docs/` is checked against it.
#[must_use]
pub fn nats_keys() -> &'static [&'static str] {
    struct_keys::<NatsFile>()
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Section `main`: HTTP server, TLS, privileges, authentication.
    pub main: MainConfig,
    /// Section `metrics`: the only metrics accepted, by name. Lines for other
    /// metrics are dropped. Empty when the section is absent (see
    /// [`Config::learn_metrics`]).
    pub metrics: BTreeMap<String, MetricConfig>,
    /// The file has no `metrics` section (ours; upstream requires one): every
    /// metric is accepted and its frequency learned from its samples (see
    /// [`crate::registry`]). An empty section (`"metrics": {}`) still accepts
    /// none, as upstream.
    pub learn_metrics: bool,
    /// Section `metric-store`: retention, checkpoints, cleanup, subscriptions.
    pub metric_store: MetricStoreConfig,
    /// Section `nats`; `None` when absent, `null`, or without an address
    /// (then NATS ingestion is off).
    pub nats: Option<NatsConfig>,
    /// Where this came from, for log lines: the file path as given, or
    /// [`EMBEDDED_DEFAULT_SOURCE`].
    pub source: String,
}

/// Section `main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainConfig {
    /// Listen address `host:port` (`addr`). The host may be a name, an IP
    /// (IPv6 in brackets) or empty (all interfaces, see
    /// [`Self::bind_address`]). Default [`DEFAULT_ADDR`].
    pub addr: String,
    /// PEM certificate chain (`https-cert-file`); set exactly when
    /// `https_key_file` is.
    pub https_cert_file: Option<PathBuf>,
    /// PEM private key (`https-key-file`); set exactly when
    /// `https_cert_file` is.
    pub https_key_file: Option<PathBuf>,
    /// User to switch to after binding (`user`); `None` keeps the current one.
    pub user: Option<String>,
    /// Group to switch to after binding, before `user` (`group`).
    pub group: Option<String>,
    /// cc-backend base URL for the running-jobs node provider (`backend-url`).
    pub backend_url: Option<String>,
    /// API token sent to cc-backend by the node provider (`backend-token`,
    /// ours; cc-backend requires one with the `api` role).
    pub backend_token: Option<Secret>,
    /// Key that verifies API tokens (`jwt-public-key`, standard base64 of the
    /// raw Ed25519 key). `None`: authentication is off.
    pub jwt_public_key: Option<PublicKey>,
    /// `debug`: accepted for compatibility, unused.
    pub debug: DebugConfig,
    /// Largest accepted request body (`max-body-size`, ours, default 256 MiB);
    /// larger bodies get `413`. Upstream has no limit.
    pub max_body_size: ByteSize,
    /// Roles allowed to call `/api/free` and `/api/debug` (`admin-roles`,
    /// ours). Empty (the default) keeps upstream behaviour: any valid token
    /// may. Otherwise the token's `roles` claim must contain one of these.
    pub admin_roles: Vec<String>,
    /// Time allowed to read a request (`read-timeout`, ours, default 30 s).
    /// A request must be read and answered within `read-timeout +
    /// write-timeout`, else it gets 408; a connection that sends no whole
    /// request head within `read-timeout` (idle, or trickling) is closed.
    pub read_timeout: Duration,
    /// Time allowed to write a response (`write-timeout`, ours, default 30 s);
    /// see `read_timeout`.
    pub write_timeout: Duration,
    /// Whether `/metrics` (the store's own metrics) needs a token
    /// (`metrics-endpoint-auth`, ours, default false): when true it is
    /// guarded exactly as `/api/debug` is (a valid token, and one of
    /// `admin-roles` when those are set); when false anyone who can reach
    /// the port may scrape it, as with a Prometheus exporter. Only valid
    /// with `jwt-public-key`.
    pub metrics_endpoint_auth: bool,
}

impl MainConfig {
    /// The certificate and key files when HTTPS is configured.
    #[must_use]
    pub fn https(&self) -> Option<(&Path, &Path)> {
        Some((
            self.https_cert_file.as_deref()?,
            self.https_key_file.as_deref()?,
        ))
    }

    /// [`Self::addr`] in a form the socket API accepts: Go's `":8082"` (all
    /// interfaces) becomes `"0.0.0.0:8082"`; anything else is unchanged.
    #[must_use]
    pub fn bind_address(&self) -> String {
        match self.addr.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.addr.clone(),
        }
    }
}

pub use cc_common::secret::Secret;

/// The `debug` object of `main` and `metric-store`: accepted, unused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DebugConfig {
    /// `dump-to-file`: unused upstream too.
    pub dump_to_file: String,
    /// `gops`: upstream starts the Go diagnostics agent; ignored here.
    pub gops: bool,
}

/// One entry of section `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricConfig {
    /// Seconds between samples; always > 0. Checkpoints written with an
    /// older frequency are the restore code's concern (spec §12 item 13).
    pub frequency: i64,
    /// How buffers of several children combine into one value.
    pub aggregation: Aggregation,
}

/// Spatial aggregation of a metric (`metrics.*.aggregation`): how the
/// buffers of several children (cores, sockets) combine for one timestep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Aggregation {
    /// `"sum"`: add the children (bandwidths, flops, power).
    Sum,
    /// `"avg"`: average the children (clock, utilization, ratios).
    Avg,
    /// `null` or `""` (or an unknown string, with a warning): queries over
    /// several children fail with "invalid aggregation".
    #[default]
    None,
}

/// Section `metric-store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricStoreConfig {
    /// How long data stays in memory (`retention-in-memory`, required); also
    /// the restore window and the cleanup age. Zero disables freeing and
    /// cleanup.
    pub retention_in_memory: Duration,
    /// Memory limit in bytes (`memory-cap`, required, in GB of 10⁹ bytes;
    /// fractions such as `0.5` are accepted); 0 means no cap.
    pub memory_cap_bytes: u64,
    /// Time between checkpoint snapshots (`checkpoint-interval`, default
    /// 12 h); always > 0.
    pub checkpoint_interval: Duration,
    /// `num-workers` as written; 0 means automatic, see [`Self::workers`].
    pub num_workers: usize,
    /// `checkpoints`.
    pub checkpoints: CheckpointsConfig,
    /// `cleanup`: what happens to checkpoints older than the retention.
    pub cleanup: CleanupConfig,
    /// `nats-subscriptions`: subjects to ingest from the `nats` server.
    pub nats_subscriptions: Vec<NatsSubscription>,
    /// `debug`: accepted, unused.
    pub debug: DebugConfig,
}

impl MetricStoreConfig {
    /// Parallelism for checkpoint, restore and archive I/O, WAL shards and
    /// NATS decoding: `num-workers` if set, else `min(cpus / 2 + 1, 10)`.
    #[must_use]
    pub fn workers(&self) -> usize {
        if self.num_workers > 0 {
            return self.num_workers;
        }
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        (cpus / 2 + 1).min(10)
    }

    /// The retention window, or `None` when `retention-in-memory` is zero
    /// (nothing is freed or cleaned up by age).
    #[must_use]
    pub fn retention(&self) -> Option<Duration> {
        Some(self.retention_in_memory).filter(|d| !d.is_zero())
    }
}

/// Default `max-wal-size`: 16 MiB per host. A node with 230 series at a
/// 60 s frequency journals about 0.6 MB per hour (44 bytes per sample), so
/// it reaches the limit after about a day and the 12 h snapshots come
/// first; a node sending 1 280 series every 10 s (20 MB per hour) gets an
/// early snapshot about every 50 minutes. The WAL of `N` hosts never holds
/// much more than `N` × 16 MiB.
pub const DEFAULT_MAX_WAL_SIZE: u64 = 16 << 20;

/// `metric-store.checkpoints`; missing keys keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointsConfig {
    /// `file-format`, default [`FileFormat::Wal`].
    pub file_format: FileFormat,
    /// `directory`, default `./var/checkpoints` (relative to the working
    /// directory, as upstream).
    pub directory: PathBuf,
    /// `max-wal-size`: per-host WAL size limit in bytes (default
    /// [`DEFAULT_MAX_WAL_SIZE`]); a host whose WAL reaches it gets an early
    /// snapshot, which replaces the WAL. 0 means unlimited. A byte-size
    /// string such as `"1GiB"` is accepted too.
    pub max_wal_size: u64,
    /// `wal-fsync-interval` (ours, default 1 s): how often WAL files are
    /// flushed to disk; always > 0.
    pub wal_fsync_interval: Duration,
}

impl Default for CheckpointsConfig {
    fn default() -> Self {
        Self {
            file_format: FileFormat::Wal,
            directory: PathBuf::from("./var/checkpoints"),
            max_wal_size: DEFAULT_MAX_WAL_SIZE,
            wal_fsync_interval: Duration::from_secs(1),
        }
    }
}

/// `metric-store.checkpoints.file-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// `"wal"`: a write-ahead log per host plus binary snapshots.
    #[default]
    Wal,
    /// `"json"`: JSON snapshots only.
    Json,
}

/// `metric-store.cleanup`; `null` or missing means delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupConfig {
    /// `mode`, default [`CleanupMode::Delete`].
    pub mode: CleanupMode,
    /// `directory`: root of the Parquet archive; always set in archive mode.
    pub directory: Option<PathBuf>,
    /// `interval` (cc-store's, as the architecture guide writes it): how
    /// often old checkpoints are cleaned up; `None` means every
    /// `retention-in-memory`, as upstream.
    pub interval: Option<Duration>,
}

impl CleanupConfig {
    /// The archive root when old checkpoints are archived, `None` when they
    /// are deleted.
    #[must_use]
    pub fn archive_directory(&self) -> Option<&Path> {
        match self.mode {
            CleanupMode::Archive => self.directory.as_deref(),
            CleanupMode::Delete => None,
        }
    }
}

/// `metric-store.cleanup.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupMode {
    /// `"delete"`: remove checkpoint files older than the retention.
    #[default]
    Delete,
    /// `"archive"`: move them into Parquet files under `cleanup.directory`.
    Archive,
}

/// One entry of `metric-store.nats-subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSubscription {
    /// `subscribe-to`: the subject (required, non-empty).
    pub subscribe_to: String,
    /// `cluster-tag`: cluster for lines without a `cluster` tag.
    pub cluster_tag: Option<String>,
}

/// Section `nats`. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `address`, e.g. `nats://host:4222`, or several servers separated by
    /// commas (as the Go client accepts); never empty.
    pub address: String,
    /// `username`; used only together with `password`.
    pub username: Option<String>,
    /// `password`; used only together with `username`.
    pub password: Option<String>,
    /// `creds-file-path`: NATS `.creds` file (user JWT and nkey seed).
    pub creds_file_path: Option<PathBuf>,
}

impl NatsConfig {
    /// Username and password when both are set (as upstream, one alone is
    /// not used).
    #[must_use]
    pub fn user_password(&self) -> Option<(&str, &str)> {
        Some((self.username.as_deref()?, self.password.as_deref()?))
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("creds_file_path", &self.creds_file_path)
            .finish()
    }
}

impl Config {
    /// Loads and validates the file at `path`. `NAME-file` paths are taken
    /// relative to the file's directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if this or a `NAME-file` cannot be read,
    /// [`ConfigError::Parse`] for invalid JSON, unknown keys or wrong types,
    /// [`ConfigError::Invalid`] for a missing section or a rejected value; all
    /// name the file and the key path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path)?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_json_str(&text, &path.display().to_string(), base_dir)
    }

    /// Loads and validates `text`; `origin` names it in errors and becomes
    /// [`Config::source`], `base_dir` is where relative `NAME-file` paths start.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn from_json_str(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let sections = split_sections(text, origin, base_dir)?;
        let required = |name: &'static str| {
            sections.get(name).ok_or_else(|| {
                ConfigError::invalid(
                    origin,
                    name,
                    format!("required section `{name}` is missing"),
                )
            })
        };

        let main_part = required("main")?;
        let main = main_config(main_part.parse("main")?, &main_part.origin)?;

        let (metrics, learn_metrics) = match sections.get("metrics") {
            Some(part) => (metrics_config(part.parse("metrics")?, &part.origin)?, false),
            None => (BTreeMap::new(), true),
        };

        let store_part = required("metric-store")?;
        let metric_store = store_config(store_part.parse("metric-store")?, &store_part.origin)?;

        let nats = match sections.get("nats") {
            Some(part) => nats_config(part.parse("nats")?, &part.parse("nats")?, &part.origin),
            None => None,
        };
        if nats.is_none() && !metric_store.nats_subscriptions.is_empty() {
            tracing::warn!(
                file = origin,
                "metric-store.nats-subscriptions is set but there is no nats address: NATS ingestion is off"
            );
        }
        Ok(Self {
            main,
            metrics,
            learn_metrics,
            metric_store,
            nats,
            source: origin.to_owned(),
        })
    }

    /// The built-in configuration used without a config file (see the
    /// crate-private `EMBEDDED_DEFAULT` text): `127.0.0.1:8082`, no
    /// authentication, retention 48 h, no memory cap, WAL checkpoints under
    /// `./var/checkpoints`, cleanup by deletion, ClusterCockpit's usual
    /// metrics at 60 s.
    #[must_use]
    #[expect(
        clippy::expect_used,
        reason = "constant input, checked by the unit test embedded_default_loads"
    )]
    pub fn embedded_default() -> Self {
        // INVARIANT: EMBEDDED_DEFAULT is a constant that the unit test
        // `embedded_default_loads` loads successfully.
        Self::from_json_str(EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_SOURCE, Path::new("."))
            .expect("built-in default configuration is valid")
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The JSON text of one section and where it sits, so errors from parsing
/// it alone point into the right file at the right line.
struct SectionText<'a> {
    /// File (or label) holding the text.
    origin: String,
    text: Cow<'a, str>,
    /// 1-based line and column of the text's first byte in `origin`.
    line: usize,
    column: usize,
}

impl SectionText<'_> {
    /// Deserializes the section; error key paths start with `name` and
    /// positions refer to the whole file.
    fn parse<T: DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        parse_json(&self.text, &self.origin).map_err(|err| match err {
            ConfigError::Parse {
                origin,
                key,
                line,
                column,
                message,
            } => ConfigError::Parse {
                origin,
                key: if key.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}.{key}")
                },
                column: if line <= 1 {
                    column + self.column - 1
                } else {
                    column
                },
                line: line + self.line - 1,
                message,
            },
            other => other,
        })
    }
}

/// Splits the top-level object into the sections we use, following
/// `NAME-file` indirections and warning about other keys.
fn split_sections<'a>(
    text: &'a str,
    origin: &str,
    base_dir: &Path,
) -> Result<BTreeMap<&'static str, SectionText<'a>>, ConfigError> {
    // Syntax errors and a non-object document, with line and column.
    parse_json::<BTreeMap<String, IgnoredAny>>(text, origin)?;
    let top: BTreeMap<String, &'a RawValue> = serde_json::from_str(text)
        .map_err(|err| ConfigError::invalid(origin, "", err.to_string()))?;

    let mut sections = BTreeMap::new();
    for (key, raw) in &top {
        if let Some(name) = section_name(key) {
            if raw.get() != "null" {
                let (line, column) = position_in(text, raw.get());
                let part = SectionText {
                    origin: origin.to_owned(),
                    text: Cow::Borrowed(raw.get()),
                    line,
                    column,
                };
                sections.insert(name, part);
            }
        } else if indirection_target(key).and_then(section_name).is_none() {
            tracing::warn!(
                file = origin,
                key = key.as_str(),
                "ignoring unknown top-level config key"
            );
        }
    }
    for (key, raw) in &top {
        let Some(name) = indirection_target(key).and_then(section_name) else {
            continue;
        };
        let file: String = serde_json::from_str(raw.get()).map_err(|_| {
            ConfigError::invalid(
                origin,
                key.as_str(),
                "expected the path of a JSON file (a string)",
            )
        })?;
        let path = base_dir.join(file);
        if sections.contains_key(name) {
            tracing::warn!(
                file = origin,
                "`{key}` replaces the `{name}` section written inline"
            );
        }
        let part = SectionText {
            origin: path.display().to_string(),
            text: Cow::Owned(read(&path)?),
            line: 1,
            column: 1,
        };
        if part.text.trim() == "null" {
            sections.remove(name);
        } else {
            sections.insert(name, part);
        }
    }
    Ok(sections)
}

/// The section name `key` stands for, if it is one we read.
fn section_name(key: &str) -> Option<&'static str> {
    SECTIONS.into_iter().find(|name| *name == key)
}

/// `NAME` for a key `NAME-file` with exactly one hyphen.
fn indirection_target(key: &str) -> Option<&str> {
    key.strip_suffix("-file")
        .filter(|name| !name.is_empty() && !name.contains('-'))
}

/// 1-based line and (byte) column of `part`, a slice of `text`.
fn position_in(text: &str, part: &str) -> (usize, usize) {
    let offset = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let is_slice_of_text = text
        .get(offset..)
        .is_some_and(|rest| rest.as_ptr() == part.as_ptr() && rest.starts_with(part));
    let Some(before) = text.get(..offset).filter(|_| is_slice_of_text) else {
        return (1, 1);
    };
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, offset - line_start + 1)
}

/// `Some` unless empty or missing: upstream writes "" for "not set".
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MainFile {
    #[serde(default)]
    addr: Option<String>,
    #[serde(default)]
    https_cert_file: Option<String>,
    #[serde(default)]
    https_key_file: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    backend_url: Option<String>,
    #[serde(default)]
    backend_token: Option<String>,
    #[serde(default)]
    jwt_public_key: Option<String>,
    #[serde(default)]
    debug: DebugConfig,
    #[serde(default = "default_max_body_size")]
    max_body_size: ByteSize,
    #[serde(default)]
    admin_roles: Vec<String>,
    #[serde(default = "default_http_timeout", with = "go_duration")]
    read_timeout: Duration,
    #[serde(default = "default_http_timeout", with = "go_duration")]
    write_timeout: Duration,
    #[serde(default)]
    metrics_endpoint_auth: bool,
}

fn default_max_body_size() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(30)
}

fn main_config(file: MainFile, origin: &str) -> Result<MainConfig, ConfigError> {
    let invalid =
        |key: &str, message: String| ConfigError::invalid(origin, format!("main.{key}"), message);
    let addr = non_empty(file.addr).unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    check_listen_addr(&addr).map_err(|m| invalid("addr", m))?;

    let https_cert_file = non_empty(file.https_cert_file).map(PathBuf::from);
    let https_key_file = non_empty(file.https_key_file).map(PathBuf::from);
    match (&https_cert_file, &https_key_file) {
        (Some(_), None) => Err(invalid(
            "https-key-file",
            "missing: https-cert-file is set, and HTTPS needs both files (remove https-cert-file for plain HTTP)".into(),
        )),
        (None, Some(_)) => Err(invalid(
            "https-cert-file",
            "missing: https-key-file is set, and HTTPS needs both files (remove https-key-file for plain HTTP)".into(),
        )),
        _ => Ok(()),
    }?;

    let jwt_public_key = non_empty(file.jwt_public_key)
        .map(|text| PublicKey::from_base64(&text))
        .transpose()
        .map_err(|err| {
            invalid(
                "jwt-public-key",
                format!("{err}; expected the standard base64 of a raw 32-byte Ed25519 public key"),
            )
        })?;

    if file.max_body_size.as_u64() == 0 {
        return Err(invalid("max-body-size", "must be greater than zero".into()));
    }
    for (key, value) in [
        ("read-timeout", file.read_timeout),
        ("write-timeout", file.write_timeout),
    ] {
        if value.is_zero() {
            return Err(invalid(key, "must be greater than zero".into()));
        }
    }
    if file.metrics_endpoint_auth && jwt_public_key.is_none() {
        return Err(invalid(
            "metrics-endpoint-auth",
            "needs jwt-public-key: without a key no token can be checked, and /metrics would be open".into(),
        ));
    }
    Ok(MainConfig {
        addr,
        https_cert_file,
        https_key_file,
        user: non_empty(file.user),
        group: non_empty(file.group),
        backend_url: non_empty(file.backend_url),
        backend_token: non_empty(file.backend_token).map(Secret::new),
        jwt_public_key,
        debug: file.debug,
        max_body_size: file.max_body_size,
        admin_roles: file.admin_roles,
        read_timeout: file.read_timeout,
        write_timeout: file.write_timeout,
        metrics_endpoint_auth: file.metrics_endpoint_auth,
    })
}

/// Accepts `ip:port`, `[ipv6]:port`, `name:port` and Go's `:port`.
fn check_listen_addr(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let expected =
        "expected host:port such as \"0.0.0.0:8082\", \"localhost:8082\" or \"[::]:8082\"";
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} has no port; {expected}"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{addr:?} has an invalid port {port:?}; {expected}"));
    }
    if host.contains([':', '[', ']', '/']) || host.contains(char::is_whitespace) {
        return Err(format!("{addr:?} has an invalid host {host:?}; {expected}"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricFile {
    frequency: i64,
    /// Required, but may be `null`: `deserialize_with` makes serde report a
    /// missing key instead of defaulting to `None`.
    #[serde(deserialize_with = "Option::deserialize")]
    aggregation: Option<String>,
}

fn metrics_config(
    file: BTreeMap<String, MetricFile>,
    origin: &str,
) -> Result<BTreeMap<String, MetricConfig>, ConfigError> {
    if file.is_empty() {
        tracing::warn!(
            file = origin,
            "no metrics configured: every received value will be dropped"
        );
    }
    file.into_iter()
        .map(|(name, metric)| {
            if metric.frequency <= 0 {
                return Err(ConfigError::invalid(
                    origin,
                    format!("metrics.{name}.frequency"),
                    format!("must be a positive number of seconds, got {}", metric.frequency),
                ));
            }
            let aggregation = match metric.aggregation.as_deref() {
                Some("sum") => Aggregation::Sum,
                Some("avg") => Aggregation::Avg,
                None | Some("") => Aggregation::None,
                Some(other) => {
                    tracing::warn!(
                        file = origin,
                        metric = name.as_str(),
                        "unknown aggregation {other:?} (expected \"sum\", \"avg\" or null): using none"
                    );
                    Aggregation::None
                }
            };
            let config = MetricConfig {
                frequency: metric.frequency,
                aggregation,
            };
            Ok((name, config))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MetricStoreFile {
    #[serde(with = "go_duration")]
    retention_in_memory: Duration,
    memory_cap: f64,
    #[serde(default)]
    checkpoint_interval: Option<GoDuration>,
    #[serde(default)]
    num_workers: usize,
    #[serde(default, deserialize_with = "null_as_default")]
    checkpoints: CheckpointsFile,
    #[serde(default, deserialize_with = "null_as_default")]
    cleanup: CleanupFile,
    #[serde(default, deserialize_with = "null_as_default")]
    nats_subscriptions: Vec<NatsSubscriptionFile>,
    #[serde(default, deserialize_with = "null_as_default")]
    debug: DebugConfig,
}

/// GB (10⁹ bytes, as upstream counts) to bytes.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "checked finite and non-negative; saturates at u64::MAX"
)]
fn gb_to_bytes(gb: f64) -> u64 {
    (gb * 1e9).round() as u64
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(12 * 3600)
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct CheckpointsFile {
    file_format: FileFormat,
    directory: PathBuf,
    max_wal_size: ByteSize,
    #[serde(with = "go_duration")]
    wal_fsync_interval: Duration,
    /// The architecture guide's spelling of `checkpoint-interval`.
    interval: Option<GoDuration>,
}

/// A duration in a Go duration string (see [`go_duration`]), for optional
/// keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
struct GoDuration(#[serde(with = "go_duration")] Duration);

impl Default for CheckpointsFile {
    fn default() -> Self {
        let defaults = CheckpointsConfig::default();
        Self {
            file_format: defaults.file_format,
            directory: defaults.directory,
            max_wal_size: ByteSize(defaults.max_wal_size),
            wal_fsync_interval: defaults.wal_fsync_interval,
            interval: None,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CleanupFile {
    mode: CleanupMode,
    directory: Option<String>,
    interval: Option<GoDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NatsSubscriptionFile {
    subscribe_to: String,
    #[serde(default)]
    cluster_tag: Option<String>,
}

/// `null` and a missing key both mean the default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn store_config(file: MetricStoreFile, origin: &str) -> Result<MetricStoreConfig, ConfigError> {
    let invalid = |key: &str, message: &str| {
        ConfigError::invalid(origin, format!("metric-store.{key}"), message)
    };
    if !(file.memory_cap.is_finite() && file.memory_cap >= 0.0) {
        return Err(invalid(
            "memory-cap",
            "must be a number of GB ≥ 0 (0 means no cap)",
        ));
    }
    // The architecture guide writes `checkpoints.interval`; it means the
    // same as upstream's `checkpoint-interval`.
    let (checkpoint_interval, interval_key) = match (
        file.checkpoint_interval,
        file.checkpoints.interval,
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "checkpoints.interval",
                "contradicts metric-store.checkpoint-interval; set only checkpoint-interval",
            ));
        }
        (Some(GoDuration(d)), _) => (d, "checkpoint-interval"),
        (None, Some(GoDuration(d))) => {
            tracing::info!(
                file = origin,
                "metric-store.checkpoints.interval is read as metric-store.checkpoint-interval ({})",
                humantime::format_duration(d)
            );
            (d, "checkpoints.interval")
        }
        (None, None) => (default_checkpoint_interval(), "checkpoint-interval"),
    };
    if checkpoint_interval.is_zero() {
        return Err(invalid(
            interval_key,
            "must be greater than zero, e.g. \"12h\"",
        ));
    }
    let checkpoints = CheckpointsConfig {
        file_format: file.checkpoints.file_format,
        directory: file.checkpoints.directory,
        max_wal_size: file.checkpoints.max_wal_size.as_u64(),
        wal_fsync_interval: file.checkpoints.wal_fsync_interval,
    };
    if checkpoints.directory.as_os_str().is_empty() {
        return Err(invalid("checkpoints.directory", "must not be empty"));
    }
    if checkpoints.wal_fsync_interval.is_zero() {
        return Err(invalid(
            "checkpoints.wal-fsync-interval",
            "must be greater than zero, e.g. \"1s\"",
        ));
    }
    let cleanup = CleanupConfig {
        mode: file.cleanup.mode,
        directory: non_empty(file.cleanup.directory).map(PathBuf::from),
        interval: file.cleanup.interval.map(|GoDuration(d)| d),
    };
    if let Some(every) = cleanup.interval {
        if every.is_zero() {
            return Err(invalid(
                "cleanup.interval",
                "must be greater than zero, e.g. \"1h\"",
            ));
        }
        tracing::info!(
            file = origin,
            "metric-store.cleanup.interval: old checkpoints are cleaned up every {} (a cc-store key \
             from the architecture guide; cc-metric-store cleans up every retention-in-memory)",
            humantime::format_duration(every)
        );
    }
    if cleanup.mode == CleanupMode::Archive && cleanup.directory.is_none() {
        return Err(invalid(
            "cleanup.directory",
            "required when cleanup.mode is \"archive\"",
        ));
    }
    let nats_subscriptions = file
        .nats_subscriptions
        .into_iter()
        .enumerate()
        .map(|(i, sub)| {
            if sub.subscribe_to.is_empty() {
                return Err(invalid(
                    &format!("nats-subscriptions[{i}].subscribe-to"),
                    "must not be empty",
                ));
            }
            Ok(NatsSubscription {
                subscribe_to: sub.subscribe_to,
                cluster_tag: non_empty(sub.cluster_tag),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(MetricStoreConfig {
        retention_in_memory: file.retention_in_memory,
        memory_cap_bytes: gb_to_bytes(file.memory_cap),
        checkpoint_interval,
        num_workers: file.num_workers,
        checkpoints,
        cleanup,
        nats_subscriptions,
        debug: file.debug,
    })
}

/// Section `nats`. Unknown keys are skipped here (no `deny_unknown_fields`)
/// and named in a warning by [`nats_config`], as upstream ignores them.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct NatsFile {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    creds_file_path: Option<String>,
}

/// Reads section `nats`; `keys` are all the keys written in it, for the
/// warning about those the store does not know.
fn nats_config(
    file: NatsFile,
    keys: &BTreeMap<String, IgnoredAny>,
    origin: &str,
) -> Option<NatsConfig> {
    for key in keys
        .keys()
        .filter(|key| !nats_keys().contains(&key.as_str()))
    {
        tracing::warn!(
            file = origin,
            key = format!("nats.{key}"),
            "ignoring unknown config key"
        );
    }
    let Some(address) = non_empty(file.address) else {
        tracing::info!(
            file = origin,
            "nats.address is empty: NATS ingestion is off"
        );
        return None;
    };
    Some(NatsConfig {
        address,
        username: non_empty(file.username),
        password: non_empty(file.password),
        creds_file_path: non_empty(file.creds_file_path).map(PathBuf::from),
    })
}

/// The keys serde reads into the struct `T` (one without `flatten`): the
/// field list its derived `Deserialize` passes to `deserialize_struct`,
/// renamed as in the file. Empty for anything that is not such a struct.
fn struct_keys<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only records the field list it is offered.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("only the field list was wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The error is the point: the struct is never built.
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

mod go_duration;

#[cfg(test)]
mod tests;

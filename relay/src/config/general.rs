//! Sections `log`, `admin` and `storage` (spec `relay.md` §4.2): logging, the admin
//! listener, and the sled and disk-limit settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cc_common::config::{ByteSize, ConfigError};
use cc_common::telemetry::LogFormat;
use serde::{Deserialize, Serialize};

use super::values::{self, Secret, ServerTls};
use super::{Ctx, GIB, KIB, MIB, positive_duration, positive_size};

/// Section `log`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `level`: a `tracing` filter directive (`"info"`, `"cc_relay=debug,info"`);
    /// `--log-level` and `RUST_LOG` override it. Default `info`.
    pub level: String,
    /// `format`: `text` (stderr) or `json` (stdout, for journald/Loki). Default `text`.
    #[serde(with = "values::log_format")]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Section `admin`: the listener for metrics, health and status.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `address`: IP and port; default `127.0.0.1:9109` (loopback only).
    pub address: SocketAddr,
    /// `auth_token_file`: if set, every admin endpoint except `/healthz` requires
    /// `Authorization: Bearer <content of this file>`.
    pub auth_token_file: Option<PathBuf>,
    /// `tls`: serve HTTPS (same shape as an HTTP ingress's `tls`).
    pub tls: Option<ServerTls>,
    /// The token read from `auth_token_file` (not a config key).
    #[serde(skip)]
    pub auth_token: Option<Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9109)),
            auth_token_file: None,
            tls: None,
            auth_token: None,
        }
    }
}

/// Section `storage`: the sled database and the disk limits (§4.6, §4.8).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `cache_capacity`: sled page cache (not a hard RSS cap). Default 128 MiB.
    pub cache_capacity: ByteSize,
    /// `flush_every_ms`: sled's background flush period; `null` turns it off.
    /// Acknowledgements never rely on it. Default 500.
    pub flush_every_ms: Option<u64>,
    /// `group_commit_delay`: wait this long to gather more writers before an
    /// fsync; 0 flushes as soon as one is pending and none is running. Default 0.
    #[serde(with = "cc_common::config::duration")]
    pub group_commit_delay: Duration,
    /// `record_max_raw_bytes`: ingested batches are split at line boundaries into
    /// records of at most this many uncompressed bytes. Default 256 KiB.
    pub record_max_raw_bytes: ByteSize,
    /// `record_max_stored_bytes`: cap after compression (split further above it),
    /// far below sled's blob threshold. Default 64 KiB.
    pub record_max_stored_bytes: ByteSize,
    /// `record_compression`: `zstd` (default) or `none`.
    pub record_compression: RecordCompression,
    /// `zstd_level`: 1–9, default 3.
    pub zstd_level: i32,
    /// `max_disk_bytes`: hard cap on sled's on-disk size. Default 16 GiB.
    pub max_disk_bytes: ByteSize,
    /// `min_free_disk_bytes`: keep at least this much free. Default 1 GiB.
    pub min_free_disk_bytes: ByteSize,
    /// `min_free_disk_percent`: the same as a percentage of the filesystem; the
    /// stricter of the two wins. Default 5.
    pub min_free_disk_percent: f64,
    /// `disk_check_interval`: period of the size and free-space checks. Default 10 s.
    #[serde(with = "cc_common::config::duration")]
    pub disk_check_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            cache_capacity: ByteSize(128 * MIB),
            flush_every_ms: Some(500),
            group_commit_delay: Duration::ZERO,
            record_max_raw_bytes: ByteSize(256 * KIB),
            record_max_stored_bytes: ByteSize(64 * KIB),
            record_compression: RecordCompression::Zstd,
            zstd_level: 3,
            max_disk_bytes: ByteSize(16 * GIB),
            min_free_disk_bytes: ByteSize(GIB),
            min_free_disk_percent: 5.0,
            disk_check_interval: Duration::from_secs(10),
        }
    }
}

/// `storage.record_compression`: how record payloads are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordCompression {
    /// `zstd` at `storage.zstd_level`.
    #[default]
    Zstd,
    /// `none`: payloads stored as received.
    None,
}

impl LogConfig {
    pub(super) fn validate(&self, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::builder()
            .parse(&self.level)
            .map(drop)
            .map_err(|err| {
                ctx.invalid(
                    "log.level",
                    format!(
                        "invalid log filter {:?} ({err}); expected e.g. \"info\" or \"cc_relay=debug,info\"",
                        self.level
                    ),
                )
            })
    }
}

impl AdminConfig {
    pub(super) fn validate(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConfigError> {
        ctx.resolve_opt(&mut self.auth_token_file);
        if let Some(tls) = &mut self.tls {
            ctx.server_tls("admin.tls", tls)?;
        }
        if self.auth_token_file.is_none() && !self.address.ip().is_loopback() {
            ctx.warn(
                "admin.address",
                format!(
                    "admin endpoints on non-loopback address {} without admin.auth_token_file",
                    self.address
                ),
            );
        }
        Ok(())
    }
}

impl StorageConfig {
    pub(super) fn validate(&self, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
        positive_size(ctx, "storage.cache_capacity", self.cache_capacity)?;
        if self.flush_every_ms == Some(0) {
            return Err(ctx.invalid(
                "storage.flush_every_ms",
                "must be positive; use null to turn sled's periodic flush off",
            ));
        }
        positive_size(
            ctx,
            "storage.record_max_raw_bytes",
            self.record_max_raw_bytes,
        )?;
        if self.record_max_raw_bytes.as_u64() > u64::from(u32::MAX) {
            return Err(ctx.invalid(
                "storage.record_max_raw_bytes",
                "must be below 4GiB (records store their length in 32 bits)",
            ));
        }
        positive_size(
            ctx,
            "storage.record_max_stored_bytes",
            self.record_max_stored_bytes,
        )?;
        if !(1..=9).contains(&self.zstd_level) {
            return Err(ctx.invalid(
                "storage.zstd_level",
                format!("must be between 1 and 9, not {}", self.zstd_level),
            ));
        }
        positive_size(ctx, "storage.max_disk_bytes", self.max_disk_bytes)?;
        if !(0.0..100.0).contains(&self.min_free_disk_percent) {
            return Err(ctx.invalid(
                "storage.min_free_disk_percent",
                format!(
                    "must be at least 0 and below 100, not {}",
                    self.min_free_disk_percent
                ),
            ));
        }
        positive_duration(ctx, "storage.disk_check_interval", self.disk_check_interval)?;
        Ok(())
    }
}

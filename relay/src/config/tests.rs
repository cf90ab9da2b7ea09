//! Tests of the relay configuration: the spec's example, defaults, the built-in and
//! shipped configs. Key errors and cross-checks are in `checks`, credentials and
//! redaction in `secrets`; the fixture helpers here serve all three.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cc_common::config::{ByteSize, ConfigError};
use cc_common::lineproto::Precision;
use cc_common::telemetry::LogFormat;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;

mod checks;
mod secrets;

/// Raw test public key, standard base64 (same pair as cc-common's auth tests).
const TEST_PUBLIC_B64: &str = "zIOPoLVxvAImqqKIuqF52thz1Z0J1P8WspgwRYePnWI=";
const TEST_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAzIOPoLVxvAImqqKIuqF52thz1Z0J1P8WspgwRYePnWI=
-----END PUBLIC KEY-----
";
const OTHER_PUBLIC_B64: &str = "VKDImqR9UjKyEBTkMN665JLNafIuZn5kpT4Z6tlzH+o=";

/// A value standing for an upstream token in files.
const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJyZWxheSJ9.c2VjcmV0LXNpZ25hdHVyZQ";

/// The example of spec/relay.md §4.2, verbatim.
const SPEC_EXAMPLE: &str = r#"{
  "instance_id": "rack17-relay",
  "data_dir": "/var/lib/cc-relay",
  "log": { "level": "info", "format": "json" },
  "admin": { "address": "127.0.0.1:9109" },
  "storage": {
    "cache_capacity": "128MiB",
    "flush_every_ms": 500,
    "record_compression": "zstd",
    "max_disk_bytes": "20GiB",
    "min_free_disk_bytes": "2GiB"
  },
  "ingress": {
    "http": [{
      "name": "collectors",
      "address": "0.0.0.0:8080",
      "auth": { "mode": "jwt", "jwt_public_key_file": "/etc/cc-relay/jwt.pub" },
      "max_body_bytes": "32MiB"
    }],
    "nats": [{
      "name": "rack-bus",
      "servers": ["nats://127.0.0.1:4222"],
      "auth": { "creds_file": "/etc/cc-relay/relay.creds" },
      "subjects": [{ "subject": "metrics.rack17", "cluster": "fritz" }],
      "queue_group": "cc-relay"
    }]
  },
  "processing": {
    "default_cluster": "fritz",
    "drop_measurements": ["cpu_guest", "cpu_guest_nice"],
    "add_tags": { "rack": "17" },
    "timestamp": { "output_precision": "s", "missing": "stamp_ingest" },
    "validate": "ccms"
  },
  "upstreams": [{
    "name": "store",
    "type": "ccms-http",
    "url": "https://ccms.example.org:8082/api/write",
    "auth": { "jwt_file": "/etc/cc-relay/store.jwt" },
    "tls": { "ca_file": "/etc/cc-relay/site-ca.pem" },
    "buffer": { "max_bytes": "8GiB", "when_full": "drop_oldest", "max_age": "48h" }
  }]
}"#;

/// A temporary directory holding the files a config refers to.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` to `name` with mode 0600 and returns the path.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Replaces every `/etc/cc-relay/NAME` in `text` by a file `NAME` in the
    /// fixture, created with plausible content for its kind.
    fn rewrite_etc(&self, text: &str) -> String {
        const PREFIX: &str = "/etc/cc-relay/";
        let mut rest = text;
        while let Some(start) = rest.find(PREFIX) {
            let after = &rest[start + PREFIX.len()..];
            let end = after.find('"').unwrap();
            let name = &after[..end];
            let content = if name.ends_with(".pub") {
                TEST_PUBLIC_PEM
            } else if name.ends_with(".jwt") || name.ends_with(".token") {
                TOKEN
            } else {
                "placeholder\n"
            };
            self.file(name, content);
            rest = &after[end..];
        }
        let dir = format!("{}/", self.path().display());
        text.replace(PREFIX, &dir)
    }

    fn load_text(&self, text: &str) -> Result<Config, ConfigError> {
        Config::from_json_str(text, "relay.json", self.path())
    }

    fn load(&self, value: &Value) -> Result<Config, ConfigError> {
        self.load_text(&serde_json::to_string_pretty(value).unwrap())
    }

    fn error(&self, value: &Value) -> String {
        match self.load(value) {
            Ok(_) => panic!("config was accepted: {value:#}"),
            Err(err) => err.to_string(),
        }
    }
}

/// The smallest valid configuration: one open HTTP listener, one store upstream.
fn minimal() -> Value {
    json!({
        "instance_id": "test-relay",
        "ingress": { "http": [{ "name": "collectors", "address": "127.0.0.1:0" }] },
        "upstreams": [{
            "name": "store",
            "type": "ccms-http",
            "url": "http://127.0.0.1:8082/api/write"
        }]
    })
}

/// `minimal()` with the only upstream turned into a `relay-http` one.
fn minimal_relay_upstream() -> Value {
    let mut doc = minimal();
    doc["upstreams"][0]["type"] = json!("relay-http");
    doc
}

fn assert_invalid(err: &str, key: &str, fragment: &str) {
    assert!(
        err.starts_with(&format!("relay.json: {key}: ")),
        "expected key {key} in: {err}"
    );
    assert!(err.contains(fragment), "expected {fragment:?} in: {err}");
}

fn has_warning(config: &Config, key: &str) -> bool {
    config.warnings.iter().any(|w| w.key == key)
}

#[test]
fn spec_example_loads_with_its_nats_ingress() {
    let fx = Fixture::new();
    let text = fx.rewrite_etc(SPEC_EXAMPLE);
    let config = fx.load_text(&text).unwrap();
    let nats = &config.ingress.nats[0];
    assert_eq!(nats.name, "rack-bus");
    assert_eq!(nats.queue_group.as_deref(), Some("cc-relay"));
    assert_eq!(nats.subjects[0].cluster.as_deref(), Some("fritz"));
    let connection = nats.connection.as_ref().unwrap();
    assert_eq!(connection.servers, ["nats://127.0.0.1:4222"]);
    assert_eq!(
        connection.auth.creds_file.as_deref(),
        Some(fx.path().join("relay.creds").as_path())
    );

    assert_eq!(config.instance_id, "rack17-relay");
    assert_eq!(config.data_dir, Path::new("/var/lib/cc-relay"));
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.storage.cache_capacity, ByteSize(128 << 20));
    assert_eq!(config.storage.max_disk_bytes, ByteSize(20 << 30));
    assert_eq!(config.storage.min_free_disk_bytes, ByteSize(2 << 30));
    let http = &config.ingress.http[0];
    assert_eq!(http.auth.mode, AuthMode::Jwt);
    assert_eq!(http.auth.public_keys.len(), 1);
    assert_eq!(http.auth.public_keys[0].to_base64(), TEST_PUBLIC_B64);
    assert_eq!(config.processing.default_cluster.as_deref(), Some("fritz"));
    assert_eq!(config.processing.validate, ValidateProfile::Ccms);
    assert_eq!(config.processing.add_tags["rack"], "17");
    let store = &config.upstreams[0];
    assert_eq!(store.kind, UpstreamType::CcmsHttp);
    assert_eq!(store.buffer.max_bytes, ByteSize(8 << 30));
    assert_eq!(store.buffer.max_age, Duration::from_secs(48 * 3600));
    assert_eq!(
        store.credentials,
        UpstreamCredentials::Bearer(Secret::new(TOKEN))
    );
    assert_eq!(store.rules, config.processing.rules());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn defaults_follow_the_spec() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc.as_object_mut().unwrap().remove("instance_id");
    let config = fx.load(&doc).unwrap();

    assert!(!config.instance_id.is_empty());
    assert!(!config.instance_id.contains('.'));
    assert_eq!(config.data_dir, Path::new("/var/lib/cc-relay"));
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.admin.address.to_string(), "127.0.0.1:9109");
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));

    let s = &config.storage;
    assert_eq!(s.cache_capacity, ByteSize(128 << 20));
    assert_eq!(s.flush_every_ms, Some(500));
    assert_eq!(s.group_commit_delay, Duration::ZERO);
    assert_eq!(s.record_max_raw_bytes, ByteSize(256 << 10));
    assert_eq!(s.record_max_stored_bytes, ByteSize(64 << 10));
    assert_eq!(s.record_compression, RecordCompression::Zstd);
    assert_eq!(s.zstd_level, 3);
    assert_eq!(s.max_disk_bytes, ByteSize(16 << 30));
    assert_eq!(s.min_free_disk_bytes, ByteSize(1 << 30));
    assert!((s.min_free_disk_percent - 5.0).abs() < f64::EPSILON);
    assert_eq!(s.disk_check_interval, Duration::from_secs(10));

    let http = &config.ingress.http[0];
    assert_eq!(
        http.paths,
        ["/api/write", "/api/write/", "/write", "/api/v2/write"],
        "the spec's paths and InfluxDB 2's (issue 10)"
    );
    assert_eq!(http.auth.mode, AuthMode::None);
    assert!(http.auth.accept_x_auth_token);
    assert_eq!(http.auth.leeway, Duration::from_secs(60));
    assert_eq!(http.max_body_bytes, ByteSize(32 << 20));
    assert_eq!(http.max_decompressed_bytes, ByteSize(128 << 20));
    assert_eq!(http.max_line_bytes, ByteSize(64 << 10));
    assert_eq!(http.accept_encodings.len(), 3);
    assert_eq!(http.idle_timeout, Duration::from_secs(120));
    assert_eq!(http.header_read_timeout, Duration::from_secs(10));
    assert_eq!(http.body_read_timeout, Duration::from_secs(30));
    assert_eq!(http.ack_timeout, Duration::from_secs(4));
    assert_eq!(http.max_concurrent_requests, 256);
    assert_eq!(
        http.success_status, None,
        "per path: 204 on /write and /api/v2/write, 200 elsewhere"
    );
    assert_eq!(http.invalid_lines, InvalidLines::Drop);
    assert!(http.trust_query_cluster);
    assert_eq!(http.input_precision, None);
    assert_eq!(http.max_hops, 8);

    let t = &config.processing.timestamp;
    assert_eq!(t.input_precision, InputPrecision::Auto);
    assert_eq!(t.output_precision, Precision::Seconds);
    assert_eq!(t.missing, MissingTimestamp::StampIngest);
    assert_eq!(t.max_future, Some(Duration::from_secs(600)));
    assert_eq!(t.max_past, Some(Duration::from_secs(7 * 86_400)));
    assert!(!config.processing.materialize_cluster);
    assert!(config.processing.rules().is_noop());

    let u = &config.upstreams[0];
    assert!(u.enabled);
    assert_eq!(u.batch.max_bytes, ByteSize(1 << 20));
    assert_eq!(u.batch.max_lines, 50_000);
    assert_eq!(u.batch.linger, Duration::from_secs(1));
    assert_eq!(u.max_in_flight, 1);
    assert_eq!(u.retry.initial_backoff, Duration::from_millis(500));
    assert_eq!(u.retry.max_backoff, Duration::from_secs(30));
    assert!((u.retry.multiplier - 2.0).abs() < f64::EPSILON);
    assert_eq!(u.retry.jitter, Jitter::Full);
    assert_eq!(u.retry.auth_backoff, Duration::from_secs(60));
    assert_eq!(u.retry.poison_attempts, 3);
    assert_eq!(u.buffer.max_bytes, ByteSize(4 << 30));
    assert_eq!(u.buffer.when_full, WhenFull::DropOldest);
    assert_eq!(u.buffer.max_age, Duration::from_secs(48 * 3600));
    assert_eq!(u.dead_letter.max_bytes, ByteSize(64 << 20));
    assert_eq!(u.timeout, Duration::from_secs(30));
    assert_eq!(u.connect_timeout, Duration::from_secs(5));
    assert_eq!(u.pool_idle_timeout, Duration::from_secs(90));
    assert_eq!(u.compress, Compression::None);
    assert_eq!(u.credentials, UpstreamCredentials::None);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn zero_disables_the_timestamp_window() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["processing"]["timestamp"] = json!({ "max_future": "0", "max_past": 0 });
    let config = fx.load(&doc).unwrap();
    assert_eq!(config.processing.timestamp.max_future, None);
    assert_eq!(config.processing.timestamp.max_past, None);
    assert_eq!(
        config.redacted()["processing"]["timestamp"]["max_future"],
        "0s"
    );
}

#[test]
fn embedded_default_loads() {
    let config = Config::embedded_default();
    assert_eq!(config.source, EMBEDDED_DEFAULT_SOURCE);
    assert_eq!(config.data_dir, Path::new("./var/relay"));
    assert_eq!(config.admin.address.to_string(), "127.0.0.1:9109");
    let http = &config.ingress.http[0];
    assert_eq!(http.name, "local");
    assert_eq!(http.address.to_string(), "127.0.0.1:8080");
    assert_eq!(http.auth.mode, AuthMode::None);
    let store = &config.upstreams[0];
    assert_eq!(store.name, "store");
    assert_eq!(store.kind, UpstreamType::CcmsHttp);
    assert_eq!(
        store.url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:8082/api/write"
    );
    assert_eq!(store.credentials, UpstreamCredentials::None);
    assert_eq!(config.processing.default_cluster, None);
    assert_eq!(config.processing.validate, ValidateProfile::Ccms);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn redacted_output_loads_again() {
    let config = Config::embedded_default();
    let text = serde_json::to_string(&config.redacted()).unwrap();
    let again = Config::from_json_str(&text, "again.json", Path::new(".")).unwrap();
    assert_eq!(again.redacted(), config.redacted());
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/cc-relay")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn example_config_loads() {
    let fx = Fixture::new();
    let config = fx
        .load_text(&fx.rewrite_etc(&example("config.json")))
        .unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.ingress.http.len(), 1);
    assert_eq!(config.ingress.http[0].auth.mode, AuthMode::Jwt);
    assert_eq!(config.ingress.http[0].auth.public_keys.len(), 1);
    assert_eq!(config.processing.default_cluster.as_deref(), Some("fritz"));
    let store = &config.upstreams[0];
    assert_eq!(store.kind, UpstreamType::CcmsHttp);
    assert_eq!(
        store.credentials,
        UpstreamCredentials::Bearer(Secret::new(TOKEN))
    );
    assert_eq!(store.buffer.max_bytes, ByteSize(8 << 30));
}

#[test]
fn example_nats_jetstream_loads() {
    let fx = Fixture::new();
    let config = fx
        .load_text(&fx.rewrite_etc(&example("nats-jetstream.json")))
        .unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let nats = &config.ingress.nats[0];
    assert_eq!(nats.mode, NatsMode::Jetstream);
    assert_eq!(nats.durable(), "cc-relay-fritz");
    let connection = nats.connection.as_ref().unwrap();
    assert_eq!(connection.servers.len(), 3);
    assert!(connection.auth.creds_file.is_some());
    assert!(connection.tls.ca_file.is_some());
    assert!(config.ingress.http.is_empty());
}

#[test]
fn example_chain_site_loads() {
    let fx = Fixture::new();
    let config = fx
        .load_text(&fx.rewrite_etc(&example("chain-site.json")))
        .unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let http = &config.ingress.http[0];
    assert!(http.tls.as_ref().unwrap().require_client_cert);
    assert_eq!(http.auth.public_keys.len(), 2);
    assert!(http.accept_encodings.contains(&ContentEncoding::Zstd));
    assert_eq!(config.upstreams[0].buffer.when_full, WhenFull::RejectNew);
    assert!(config.admin.auth_token.is_some());
}

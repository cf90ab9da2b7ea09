use std::path::Path;
use std::time::Duration;

use cc_common::config::{ByteSize, ConfigError};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const SAMPLE_KEY: &str = "kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0=";

/// Upstream's `configs/config.json` (cc-metric-store 1.5), metrics shortened.
const UPSTREAM_EXAMPLE: &str = r#"{
  "main": {
    "addr": "0.0.0.0:8082",
    "https-cert-file": "",
    "https-key-file": "",
    "jwt-public-key": "kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0="
  },
  "nats": {
    "address": "nats://0.0.0.0:4222",
    "username": "root",
    "password": "root"
  },
  "metric-store": {
    "checkpoints": {
      "file-format": "wal",
      "directory": "./var/checkpoints"
    },
    "checkpoint-interval": "12h",
    "memory-cap": 100,
    "retention-in-memory": "48h",
    "cleanup": {
      "mode": "archive",
      "directory": "./var/archive"
    },
    "nats-subscriptions": [
      {
        "subscribe-to": "hpc-nats",
        "cluster-tag": "fritz"
      },
      {
        "subscribe-to": "hpc-nats",
        "cluster-tag": "alex"
      }
    ]
  },
  "metrics": {
    "debug_metric": { "frequency": 60, "aggregation": "avg" },
    "flops_any": { "frequency": 60, "aggregation": "sum" },
    "cpu_load": { "frequency": 60, "aggregation": null }
  }
}"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_json_str(text, "config.json", Path::new("."))
}

fn base() -> Value {
    json!({
        "main": { "addr": "127.0.0.1:8082" },
        "metrics": { "cpu_load": { "frequency": 60, "aggregation": null } },
        "metric-store": { "retention-in-memory": "48h", "memory-cap": 0 }
    })
}

/// `base()` with the value at JSON pointer `at` (parent must exist) set to `value`.
fn with(at: &str, value: Value) -> Value {
    let mut doc = base();
    let (parent, key) = at.rsplit_once('/').unwrap();
    let parent = doc.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    parent.insert(key.to_owned(), value);
    doc
}

fn load_value(doc: &Value) -> Result<Config, ConfigError> {
    load(&serde_json::to_string_pretty(doc).unwrap())
}

fn error_of(doc: &Value) -> ConfigError {
    load_value(doc).unwrap_err()
}

/// The key path of an error, whatever its kind.
fn key_of(err: &ConfigError) -> &str {
    match err {
        ConfigError::Parse { key, .. } | ConfigError::Invalid { key, .. } => key,
        ConfigError::Read { .. } => panic!("unexpected read error: {err}"),
    }
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).unwrap();
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, offset - line_start + 1)
}

#[test]
fn loads_upstream_example_config() {
    let config = load(UPSTREAM_EXAMPLE).unwrap();
    assert_eq!(config.source, "config.json");
    assert_eq!(config.main.addr, "0.0.0.0:8082");
    assert_eq!(config.main.https(), None);
    assert_eq!(
        config.main.jwt_public_key.as_ref().unwrap().to_base64(),
        SAMPLE_KEY
    );

    let nats = config.nats.as_ref().unwrap();
    assert_eq!(nats.address, "nats://0.0.0.0:4222");
    assert_eq!(nats.user_password(), Some(("root", "root")));
    assert_eq!(nats.creds_file_path, None);

    let store = &config.metric_store;
    assert_eq!(store.retention_in_memory, Duration::from_secs(48 * 3600));
    assert_eq!(store.retention(), Some(Duration::from_secs(48 * 3600)));
    assert_eq!(store.memory_cap_bytes, 100_000_000_000);
    assert_eq!(store.checkpoint_interval, Duration::from_secs(12 * 3600));
    assert_eq!(store.checkpoints.file_format, FileFormat::Wal);
    assert_eq!(store.checkpoints.directory, Path::new("./var/checkpoints"));
    assert_eq!(store.cleanup.mode, CleanupMode::Archive);
    assert_eq!(
        store.cleanup.archive_directory(),
        Some(Path::new("./var/archive"))
    );
    assert_eq!(
        store.nats_subscriptions,
        [
            NatsSubscription {
                subscribe_to: "hpc-nats".into(),
                cluster_tag: Some("fritz".into())
            },
            NatsSubscription {
                subscribe_to: "hpc-nats".into(),
                cluster_tag: Some("alex".into())
            },
        ]
    );

    assert_eq!(config.metrics.len(), 3);
    assert_eq!(
        config.metrics["flops_any"],
        MetricConfig {
            frequency: 60,
            aggregation: Aggregation::Sum
        }
    );
    assert_eq!(config.metrics["debug_metric"].aggregation, Aggregation::Avg);
    assert_eq!(config.metrics["cpu_load"].aggregation, Aggregation::None);
}

#[test]
fn omitted_keys_take_their_defaults() {
    let mut doc = base();
    doc["main"] = json!({});
    let config = load_value(&doc).unwrap();
    let main = &config.main;
    assert_eq!(main.addr, DEFAULT_ADDR);
    assert_eq!(
        (main.https_cert_file.as_ref(), main.https_key_file.as_ref()),
        (None, None)
    );
    assert_eq!((main.user.as_ref(), main.group.as_ref()), (None, None));
    assert_eq!(main.backend_url, None);
    assert_eq!(main.jwt_public_key, None);
    assert_eq!(main.debug, DebugConfig::default());
    assert_eq!(main.max_body_size, ByteSize(256 * 1024 * 1024));
    assert!(main.admin_roles.is_empty());
    assert_eq!(main.read_timeout, Duration::from_secs(30));
    assert_eq!(main.write_timeout, Duration::from_secs(30));
    assert!(!main.metrics_endpoint_auth, "/metrics is open by default");

    let store = &config.metric_store;
    assert_eq!(store.checkpoint_interval, Duration::from_secs(12 * 3600));
    assert_eq!(store.num_workers, 0);
    assert!((1..=10).contains(&store.workers()));
    assert_eq!(store.checkpoints, CheckpointsConfig::default());
    assert_eq!(store.checkpoints.directory, Path::new("./var/checkpoints"));
    assert_eq!(store.checkpoints.wal_fsync_interval, Duration::from_secs(1));
    assert_eq!(store.cleanup, CleanupConfig::default());
    assert_eq!(store.cleanup.archive_directory(), None);
    assert!(store.nats_subscriptions.is_empty());
    assert!(config.nats.is_none());
}

#[test]
fn explicit_num_workers_is_not_capped() {
    let config = load_value(&with("/metric-store/num-workers", json!(64))).unwrap();
    assert_eq!(config.metric_store.workers(), 64);
    let err = error_of(&with("/metric-store/num-workers", json!(-1)));
    assert_eq!(key_of(&err), "metric-store.num-workers");
}

#[test]
fn section_file_is_read_relative_to_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/metrics.json"),
        r#"{"mem_bw": {"frequency": 30, "aggregation": "sum"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.json"),
        r#"{"addr": "127.0.0.1:9000"}"#,
    )
    .unwrap();
    let mut doc = base();
    let top = doc.as_object_mut().unwrap();
    top.remove("metrics");
    top.remove("main");
    top.insert("metrics-file".into(), json!("conf.d/metrics.json"));
    top.insert("main-file".into(), json!("main.json"));
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();

    let config = Config::load(&path).unwrap();
    assert_eq!(config.source, path.display().to_string());
    assert_eq!(config.main.addr, "127.0.0.1:9000");
    assert_eq!(config.metrics.keys().collect::<Vec<_>>(), ["mem_bw"]);
    assert_eq!(config.metrics["mem_bw"].frequency, 30);
}

#[test]
fn section_file_replaces_the_inline_section() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("metrics.json"),
        r#"{"mem_bw": {"frequency": 30, "aggregation": "sum"}}"#,
    )
    .unwrap();
    let mut doc = base();
    doc["metrics-file"] = json!("metrics.json");
    let text = serde_json::to_string(&doc).unwrap();
    let config = Config::from_json_str(&text, "config.json", dir.path()).unwrap();
    assert_eq!(config.metrics.keys().collect::<Vec<_>>(), ["mem_bw"]);
}

#[test]
fn errors_in_a_section_file_name_that_file_and_the_section_path() {
    let dir = tempfile::tempdir().unwrap();
    let metrics =
        "{\n  \"mem_bw\": {\"frequency\": 30, \"aggregation\": \"sum\", \"scope\": \"node\"}\n}";
    std::fs::write(dir.path().join("metrics.json"), metrics).unwrap();
    let mut doc = base();
    doc.as_object_mut().unwrap().remove("metrics");
    doc["metrics-file"] = json!("metrics.json");
    let text = serde_json::to_string(&doc).unwrap();
    let err = Config::from_json_str(&text, "config.json", dir.path()).unwrap_err();
    let ConfigError::Parse {
        origin, key, line, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        origin,
        &dir.path().join("metrics.json").display().to_string()
    );
    assert_eq!(key, "metrics.mem_bw.scope");
    assert_eq!(*line, 2);
}

#[test]
fn missing_section_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = base();
    doc["nats-file"] = json!("nats.json");
    let text = serde_json::to_string(&doc).unwrap();
    let err = Config::from_json_str(&text, "config.json", dir.path()).unwrap_err();
    let ConfigError::Read { path, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, &dir.path().join("nats.json"));
}

#[test]
fn section_file_value_must_be_a_string() {
    let mut doc = base();
    doc["metrics-file"] = json!(5);
    let err = error_of(&doc);
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    assert_eq!(key_of(&err), "metrics-file");
}

#[test]
fn metric_store_file_is_not_an_indirection() {
    // Two hyphens: ignored, so its (missing) file is never read ...
    let mut doc = base();
    doc["metric-store-file"] = json!("does-not-exist.json");
    load_value(&doc).unwrap();

    // ... and it does not stand in for the section.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("store.json"),
        r#"{"retention-in-memory": "48h", "memory-cap": 0}"#,
    )
    .unwrap();
    let mut doc = base();
    doc.as_object_mut().unwrap().remove("metric-store");
    doc["metric-store-file"] = json!("store.json");
    let text = serde_json::to_string(&doc).unwrap();
    let err = Config::from_json_str(&text, "config.json", dir.path()).unwrap_err();
    assert_eq!(key_of(&err), "metric-store");
}

#[test]
fn unknown_top_level_keys_are_ignored() {
    let mut doc = base();
    doc["checkpoints"] = json!({"interval": "12h"});
    doc["http-api"] = json!({"address": "localhost:8082"});
    doc["archive-file"] = json!("never-read.json");
    doc["retention-in-memory"] = json!("48h");
    load_value(&doc).unwrap();
}

#[test]
fn missing_sections_are_named_with_the_file() {
    for section in ["main", "metric-store"] {
        let mut doc = base();
        doc.as_object_mut().unwrap().remove(section);
        let err = error_of(&doc);
        assert_eq!(key_of(&err), section);
        let message = err.to_string();
        assert!(message.starts_with("config.json: "), "{message}");
        assert!(
            message.contains(&format!("section `{section}` is missing")),
            "{message}"
        );

        doc[section] = Value::Null;
        assert_eq!(key_of(&error_of(&doc)), section);
    }
}

#[test]
fn without_a_metrics_section_metrics_are_learned() {
    let config = load_value(&base()).unwrap();
    assert!(!config.learn_metrics);
    let mut doc = base();
    doc.as_object_mut().unwrap().remove("metrics");
    let config = load_value(&doc).unwrap();
    assert!(config.learn_metrics, "an absent section learns");
    assert!(config.metrics.is_empty());
    doc["metrics"] = Value::Null;
    assert!(load_value(&doc).unwrap().learn_metrics, "null is absent");
    // An empty section is upstream's "accept nothing".
    doc["metrics"] = json!({});
    let config = load_value(&doc).unwrap();
    assert!(!config.learn_metrics);
    assert!(config.metrics.is_empty());
}

#[test]
fn empty_document_has_no_main_section() {
    let err = load("{}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config.json: main: required section `main` is missing"
    );
}

#[test]
fn invalid_json_reports_line_and_column() {
    let text = "{\n  \"main\": {},\n  \"metrics\": {,}\n}";
    let err = load(text).unwrap_err();
    let ConfigError::Parse {
        origin,
        line,
        column,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(origin, "config.json");
    assert_eq!((*line, *column), (3, 15));
}

#[test]
fn top_level_must_be_an_object() {
    let err = load("[1, 2]").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn unknown_key_in_main_names_key_path_file_and_position() {
    let text = serde_json::to_string_pretty(&with("/main/adress", json!("x"))).unwrap();
    let err = load(&text).unwrap_err();
    let ConfigError::Parse {
        origin,
        key,
        line,
        message,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(origin, "config.json");
    assert_eq!(key, "main.adress");
    assert_eq!(*line, position_of(&text, "\"adress\"").0);
    assert!(message.starts_with("unknown field `adress`"), "{message}");
}

#[test]
fn unknown_key_in_checkpoints_reports_the_file_position() {
    let text = r#"{
  "main": {"addr": "127.0.0.1:8082"},
  "metrics": {},
  "metric-store": {
    "retention-in-memory": "48h",
    "memory-cap": 0,
    "checkpoints": {
      "directory": "./var/checkpoints", "file-fromat": "json"
    }
  }
}"#;
    let err = load(text).unwrap_err();
    let (line, column) = position_of(text, "\"file-fromat\"");
    // serde_json points at the last character read: the key's closing quote.
    let column = column + "\"file-fromat\"".len() - 1;
    let expected = format!(
        "config.json: at metric-store.checkpoints.file-fromat (line {line}, column {column}): unknown field `file-fromat`"
    );
    assert!(
        err.to_string().starts_with(&expected),
        "{err}\nexpected: {expected}"
    );
}

#[test]
fn errors_on_the_first_line_of_a_section_are_shifted_by_its_column() {
    let text = r#"{"main": {"addr": "127.0.0.1:8082"}, "metrics": {"m": {"frequency": "60", "aggregation": null}}}"#;
    let err = load(text).unwrap_err();
    let ConfigError::Parse {
        key, line, column, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(key, "metrics.m.frequency");
    assert_eq!(*line, 1);
    let (_, value_column) = position_of(text, "\"60\"");
    assert_eq!(*column, value_column + "\"60\"".len() - 1);
}

#[test]
fn metrics_endpoint_auth_needs_a_jwt_key() {
    let mut doc = base();
    doc["main"] = json!({"jwt-public-key": SAMPLE_KEY, "metrics-endpoint-auth": true});
    assert!(load_value(&doc).unwrap().main.metrics_endpoint_auth);

    doc["main"] = json!({"metrics-endpoint-auth": true});
    let err = error_of(&doc);
    assert_eq!(key_of(&err), "main.metrics-endpoint-auth");
    assert!(err.to_string().contains("needs jwt-public-key"), "{err}");

    doc["main"] = json!({"metrics-endpoint-auth": "yes"});
    assert!(matches!(error_of(&doc), ConfigError::Parse { .. }));
    doc["main"] = json!({"metrics-auth": true});
    assert!(error_of(&doc).to_string().contains("unknown field"));
}

#[test]
fn unknown_keys_are_rejected_in_strict_sections() {
    for (at, key) in [
        ("/main/debug", json!({"gops": true, "pprof": true})),
        ("/metric-store/interval", json!("12h")),
        (
            "/metric-store/cleanup",
            json!({"mode": "delete", "period": "48h"}),
        ),
        (
            "/metrics/cpu_load",
            json!({"frequency": 60, "aggregation": null, "scope": "node"}),
        ),
        (
            "/metric-store/nats-subscriptions",
            json!([{"subscribe-to": "a", "cluster": "b"}]),
        ),
    ]
    .map(|(at, value)| (at, with(at, value)))
    {
        let err = error_of(&key);
        assert!(matches!(err, ConfigError::Parse { .. }), "{at}: {err}");
        assert!(err.to_string().contains("unknown field"), "{at}: {err}");
    }
}

#[test]
fn debug_objects_are_accepted() {
    let mut doc = with(
        "/main/debug",
        json!({"dump-to-file": "/tmp/dump", "gops": true}),
    );
    doc["metric-store"]["debug"] = json!({"gops": false});
    let config = load_value(&doc).unwrap();
    assert!(config.main.debug.gops);
    assert_eq!(config.main.debug.dump_to_file, "/tmp/dump");
}

#[test]
fn nats_section_tolerates_unknown_keys() {
    let config = load_value(&with(
        "/nats",
        json!({
            "address": "nats://localhost:4222",
            "creds-file-path": "/etc/cc/store.creds",
            "nkey-seed-file": "/etc/cc/seed",
            "tls": {"ca": "x"}
        }),
    ))
    .unwrap();
    let nats = config.nats.unwrap();
    assert_eq!(nats.address, "nats://localhost:4222");
    assert_eq!(
        nats.creds_file_path.as_deref(),
        Some(Path::new("/etc/cc/store.creds"))
    );
    assert_eq!(nats.user_password(), None);
}

#[test]
fn nats_keys_are_upstreams_four() {
    assert_eq!(
        nats_keys(),
        ["address", "username", "password", "creds-file-path"]
    );
}

#[test]
fn top_level_keys_are_the_sections_and_their_file_keys() {
    assert_eq!(
        top_level_keys(),
        [
            "main",
            "metrics",
            "metric-store",
            "nats",
            "main-file",
            "metrics-file",
            "nats-file"
        ]
    );
}

#[test]
fn nats_without_address_is_off() {
    for nats in [
        Value::Null,
        json!({}),
        json!({"address": "", "username": "u"}),
    ] {
        let config = load_value(&with("/nats", nats.clone())).unwrap();
        assert!(config.nats.is_none(), "{nats}");
    }
}

#[test]
fn nats_credentials_need_both_parts_and_debug_hides_the_password() {
    let config = load_value(&with(
        "/nats",
        json!({"address": "nats://h:4222", "username": "u", "password": "s3cret"}),
    ))
    .unwrap();
    let nats = config.nats.unwrap();
    assert_eq!(nats.user_password(), Some(("u", "s3cret")));
    let shown = format!("{nats:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");

    let config = load_value(&with(
        "/nats",
        json!({"address": "nats://h:4222", "username": "u"}),
    ))
    .unwrap();
    assert_eq!(config.nats.unwrap().user_password(), None);
}

#[test]
fn nats_wrong_type_is_an_error() {
    let err = error_of(&with("/nats", json!({"address": 4222})));
    assert_eq!(key_of(&err), "nats.address");
}

#[test]
fn jwt_public_key_is_validated_at_load() {
    let config = load_value(&with("/main/jwt-public-key", json!(SAMPLE_KEY))).unwrap();
    assert_eq!(config.main.jwt_public_key.unwrap().to_base64(), SAMPLE_KEY);

    let short = "kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copA=="; // 31 bytes
    for bad in [
        short,
        "not base64!",
        "kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0",
    ] {
        let err = error_of(&with("/main/jwt-public-key", json!(bad)));
        assert_eq!(key_of(&err), "main.jwt-public-key", "{bad}");
        assert!(
            err.to_string()
                .starts_with("config.json: main.jwt-public-key: "),
            "{err}"
        );
    }
    let err = error_of(&with("/main/jwt-public-key", json!(short)));
    assert!(err.to_string().contains("32 bytes, got 31"), "{err}");

    let config = load_value(&with("/main/jwt-public-key", json!(""))).unwrap();
    assert_eq!(config.main.jwt_public_key, None);
}

#[test]
fn https_needs_both_files() {
    let mut doc = with("/main/https-cert-file", json!("/etc/cc/cert.pem"));
    assert_eq!(key_of(&error_of(&doc)), "main.https-key-file");
    doc["main"]["https-key-file"] = json!("");
    assert_eq!(key_of(&error_of(&doc)), "main.https-key-file");

    let doc = with("/main/https-key-file", json!("/etc/cc/key.pem"));
    assert_eq!(key_of(&error_of(&doc)), "main.https-cert-file");

    let mut doc = with("/main/https-cert-file", json!("/etc/cc/cert.pem"));
    doc["main"]["https-key-file"] = json!("/etc/cc/key.pem");
    let config = load_value(&doc).unwrap();
    assert_eq!(
        config.main.https(),
        Some((Path::new("/etc/cc/cert.pem"), Path::new("/etc/cc/key.pem")))
    );

    // Old files write null for "no TLS".
    let mut doc = with("/main/https-cert-file", Value::Null);
    doc["main"]["https-key-file"] = Value::Null;
    assert_eq!(load_value(&doc).unwrap().main.https(), None);
}

#[test]
fn listen_address_forms() {
    for (addr, bind) in [
        ("0.0.0.0:8082", "0.0.0.0:8082"),
        ("localhost:8082", "localhost:8082"),
        ("[::1]:8082", "[::1]:8082"),
        (":8082", "0.0.0.0:8082"),
        ("node-1.cluster:0", "node-1.cluster:0"),
        ("", DEFAULT_ADDR),
    ] {
        let config = load_value(&with("/main/addr", json!(addr))).unwrap();
        assert_eq!(config.main.bind_address(), bind, "{addr}");
    }
    for bad in [
        "8082",
        "localhost",
        "localhost:99999",
        "::1:8082",
        "local host:80",
        "host:http",
    ] {
        let err = error_of(&with("/main/addr", json!(bad)));
        assert_eq!(key_of(&err), "main.addr", "{bad}");
    }
}

#[test]
fn our_main_additions_parse() {
    let mut doc = base();
    doc["main"] = json!({
        "max-body-size": "1MiB",
        "admin-roles": ["admin", "api"],
        "read-timeout": "1m",
        "write-timeout": 90
    });
    let main = load_value(&doc).unwrap().main;
    assert_eq!(main.max_body_size, ByteSize(1 << 20));
    assert_eq!(main.admin_roles, ["admin", "api"]);
    assert_eq!(main.read_timeout, Duration::from_secs(60));
    assert_eq!(main.write_timeout, Duration::from_secs(90));

    for (key, value) in [
        ("max-body-size", json!(0)),
        ("read-timeout", json!("0s")),
        ("write-timeout", json!(0)),
    ] {
        let err = error_of(&with(&format!("/main/{key}"), value));
        assert_eq!(key_of(&err), format!("main.{key}"));
    }
}

#[test]
fn frequency_must_be_positive() {
    for frequency in [0, -60] {
        let doc = with(
            "/metrics/mem_bw",
            json!({"frequency": frequency, "aggregation": "sum"}),
        );
        let err = error_of(&doc);
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        assert_eq!(key_of(&err), "metrics.mem_bw.frequency");
    }
}

#[test]
fn metric_keys_are_both_required() {
    let err = error_of(&with("/metrics/mem_bw", json!({"frequency": 60})));
    assert_eq!(key_of(&err), "metrics.mem_bw");
    assert!(
        err.to_string().contains("missing field `aggregation`"),
        "{err}"
    );

    let err = error_of(&with("/metrics/mem_bw", json!({"aggregation": "sum"})));
    assert!(
        err.to_string().contains("missing field `frequency`"),
        "{err}"
    );
}

#[test]
fn aggregation_variants() {
    for (written, expected) in [
        (json!("sum"), Aggregation::Sum),
        (json!("avg"), Aggregation::Avg),
        (Value::Null, Aggregation::None),
        (json!(""), Aggregation::None),
        (json!("max"), Aggregation::None),
        (json!("SUM"), Aggregation::None),
    ] {
        let doc = with(
            "/metrics/m",
            json!({"frequency": 10, "aggregation": written}),
        );
        let config = load_value(&doc).unwrap();
        assert_eq!(config.metrics["m"].aggregation, expected, "{written}");
    }
    let err = error_of(&with(
        "/metrics/m",
        json!({"frequency": 10, "aggregation": 1}),
    ));
    assert_eq!(key_of(&err), "metrics.m.aggregation");
}

#[test]
fn required_metric_store_keys() {
    for key in ["retention-in-memory", "memory-cap"] {
        let mut doc = base();
        doc["metric-store"].as_object_mut().unwrap().remove(key);
        let err = error_of(&doc);
        assert_eq!(key_of(&err), "metric-store");
        assert!(
            err.to_string().contains(&format!("missing field `{key}`")),
            "{err}"
        );
    }
}

#[test]
fn zero_retention_disables_it() {
    let config = load_value(&with("/metric-store/retention-in-memory", json!("0s"))).unwrap();
    assert_eq!(config.metric_store.retention(), None);
    let err = error_of(&with("/metric-store/retention-in-memory", json!("-48h")));
    assert_eq!(key_of(&err), "metric-store.retention-in-memory");
    assert!(err.to_string().contains("negative"), "{err}");
}

#[test]
fn checkpoint_interval_must_be_positive() {
    for zero in [json!("0s"), json!("0"), json!(0)] {
        let err = error_of(&with("/metric-store/checkpoint-interval", zero.clone()));
        assert!(matches!(err, ConfigError::Invalid { .. }), "{zero}: {err}");
        assert_eq!(key_of(&err), "metric-store.checkpoint-interval");
    }
    for bad in ["-1h", "twelve hours", "12"] {
        let err = error_of(&with("/metric-store/checkpoint-interval", json!(bad)));
        assert!(matches!(err, ConfigError::Parse { .. }), "{bad}: {err}");
        assert_eq!(key_of(&err), "metric-store.checkpoint-interval");
    }
    let config = load_value(&with("/metric-store/checkpoint-interval", json!("1h30m"))).unwrap();
    assert_eq!(
        config.metric_store.checkpoint_interval,
        Duration::from_secs(5400)
    );
}

#[test]
fn cleanup_null_or_empty_means_delete() {
    for cleanup in [
        Value::Null,
        json!({}),
        json!({"mode": "delete", "directory": ""}),
    ] {
        let config = load_value(&with("/metric-store/cleanup", cleanup.clone())).unwrap();
        assert_eq!(
            config.metric_store.cleanup.mode,
            CleanupMode::Delete,
            "{cleanup}"
        );
        assert_eq!(config.metric_store.cleanup.archive_directory(), None);
    }
}

#[test]
fn archive_cleanup_needs_a_directory() {
    for cleanup in [
        json!({"mode": "archive"}),
        json!({"mode": "archive", "directory": ""}),
    ] {
        let err = error_of(&with("/metric-store/cleanup", cleanup));
        assert_eq!(key_of(&err), "metric-store.cleanup.directory");
    }
    let err = error_of(&with("/metric-store/cleanup", json!({"mode": "zip"})));
    assert_eq!(key_of(&err), "metric-store.cleanup.mode");
}

#[test]
fn file_format_typo_is_an_error() {
    let err = error_of(&with(
        "/metric-store/checkpoints",
        json!({"file-format": "wall"}),
    ));
    assert_eq!(key_of(&err), "metric-store.checkpoints.file-format");
    assert!(err.to_string().contains("unknown variant `wall`"), "{err}");

    let config = load_value(&with(
        "/metric-store/checkpoints",
        json!({"file-format": "json"}),
    ))
    .unwrap();
    assert_eq!(
        config.metric_store.checkpoints.file_format,
        FileFormat::Json
    );
}

#[test]
fn partial_checkpoints_merge_with_defaults() {
    let config = load_value(&with(
        "/metric-store/checkpoints",
        json!({"directory": "/x"}),
    ))
    .unwrap();
    let checkpoints = &config.metric_store.checkpoints;
    assert_eq!(checkpoints.directory, Path::new("/x"));
    assert_eq!(checkpoints.file_format, FileFormat::Wal);
    assert_eq!(checkpoints.max_wal_size, 16 << 20);
    assert_eq!(checkpoints.wal_fsync_interval, Duration::from_secs(1));

    let config = load_value(&with("/metric-store/checkpoints", Value::Null)).unwrap();
    assert_eq!(
        config.metric_store.checkpoints,
        CheckpointsConfig::default()
    );

    let config = load_value(&with(
        "/metric-store/checkpoints",
        json!({"max-wal-size": "1GiB", "wal-fsync-interval": "200ms"}),
    ))
    .unwrap();
    let checkpoints = &config.metric_store.checkpoints;
    assert_eq!(checkpoints.max_wal_size, 1 << 30);
    assert_eq!(checkpoints.wal_fsync_interval, Duration::from_millis(200));
    // 0 turns the limit off, as upstream.
    let config = load_value(&with(
        "/metric-store/checkpoints",
        json!({"max-wal-size": 0}),
    ))
    .unwrap();
    assert_eq!(config.metric_store.checkpoints.max_wal_size, 0);
    assert_eq!(checkpoints.directory, Path::new("./var/checkpoints"));

    for (key, value) in [
        ("directory", json!("")),
        ("wal-fsync-interval", json!("0s")),
        ("max-wal-size", json!(-1)),
    ] {
        let err = error_of(&with("/metric-store/checkpoints", json!({ key: value })));
        assert_eq!(key_of(&err), format!("metric-store.checkpoints.{key}"));
    }
}

#[test]
fn nats_subscriptions_need_a_subject() {
    let err = error_of(&with(
        "/metric-store/nats-subscriptions",
        json!([{"cluster-tag": "a"}]),
    ));
    assert_eq!(key_of(&err), "metric-store.nats-subscriptions[0]");
    let err = error_of(&with(
        "/metric-store/nats-subscriptions",
        json!([{"subscribe-to": "x"}, {"subscribe-to": ""}]),
    ));
    assert_eq!(
        key_of(&err),
        "metric-store.nats-subscriptions[1].subscribe-to"
    );

    let config = load_value(&with(
        "/metric-store/nats-subscriptions",
        json!([{"subscribe-to": "x", "cluster-tag": ""}]),
    ))
    .unwrap();
    assert_eq!(config.metric_store.nats_subscriptions[0].cluster_tag, None);
}

#[test]
fn go_duration_forms() {
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    for (text, expected) in [
        ("48h", s(48 * 3600)),
        ("90m", s(90 * 60)),
        ("1h30m", s(5400)),
        ("1h30m15s", s(5415)),
        ("300ms", ms(300)),
        ("10s", s(10)),
        ("1.5h", s(5400)),
        (".5s", ms(500)),
        ("2.s", s(2)),
        ("1µs", Duration::from_micros(1)),
        ("1μs", Duration::from_micros(1)),
        ("3us", Duration::from_micros(3)),
        ("5ns", Duration::from_nanos(5)),
        ("1m0.5s", ms(60_500)),
        ("0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("+10s", s(10)),
        (" 10s ", s(10)),
        // humantime spellings, accepted as a convenience
        ("1h 30m", s(5400)),
        ("2d", s(2 * 86_400)),
        ("2days", s(2 * 86_400)),
    ] {
        assert_eq!(go_duration::parse(text), Ok(expected), "{text:?}");
    }
    for bad in [
        "", "-1h", "-0s", "10", "1x", "1..5s", "abc", "h", ".s", "1h-30m",
    ] {
        assert!(go_duration::parse(bad).is_err(), "{bad:?}");
    }
    let message = go_duration::parse("-1h").unwrap_err();
    assert!(
        message.contains("negative durations are not allowed"),
        "{message}"
    );
    let message = go_duration::parse("10").unwrap_err();
    assert!(message.contains("missing unit"), "{message}");
    assert!(go_duration::parse("2562047h").is_ok());
    let message = go_duration::parse("2562048h").unwrap_err();
    assert!(
        message.contains("too large"),
        "beyond Go's ~292 years: {message}"
    );
    assert!(
        go_duration::parse("300 years")
            .unwrap_err()
            .contains("too large")
    );
}

#[test]
fn durations_accept_integer_seconds() {
    let config = load_value(&with("/metric-store/retention-in-memory", json!(3600))).unwrap();
    assert_eq!(
        config.metric_store.retention_in_memory,
        Duration::from_secs(3600)
    );
    let err = error_of(&with("/metric-store/retention-in-memory", json!(-1)));
    assert!(err.to_string().contains("negative"), "{err}");
}

#[test]
fn embedded_default_loads() {
    let config =
        Config::from_json_str(EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_SOURCE, Path::new(".")).unwrap();
    assert_eq!(config.source, EMBEDDED_DEFAULT_SOURCE);
    assert_eq!(config.main.addr, "127.0.0.1:8082");
    assert_eq!(config.main.jwt_public_key, None);
    assert_eq!(config.main.https(), None);
    let store = &config.metric_store;
    assert_eq!(store.retention_in_memory, Duration::from_secs(48 * 3600));
    assert_eq!(store.memory_cap_bytes, 0);
    assert_eq!(store.checkpoints.file_format, FileFormat::Wal);
    assert_eq!(store.checkpoints.directory, Path::new("./var/checkpoints"));
    assert_eq!(store.cleanup.mode, CleanupMode::Delete);
    assert!(config.nats.is_none());
    for name in [
        "cpu_load",
        "cpu_user",
        "mem_used",
        "flops_any",
        "mem_bw",
        "clock",
        "cpu_power",
    ] {
        assert_eq!(config.metrics[name].frequency, 60, "{name}");
    }
    assert_eq!(config.metrics["flops_any"].aggregation, Aggregation::Sum);
    assert_eq!(config.metrics["clock"].aggregation, Aggregation::Avg);
    assert_eq!(config.metrics["mem_used"].aggregation, Aggregation::None);

    let again = Config::embedded_default();
    assert_eq!(again.metrics, config.metrics);
}

#[test]
fn example_file_loads_with_the_default_metric_set() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cc-store/config.json");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.metrics, Config::embedded_default().metrics);
    assert!(config.nats.is_some());
    assert_eq!(config.metric_store.nats_subscriptions.len(), 2);
    assert_eq!(config.metric_store.cleanup.mode, CleanupMode::Archive);
    for name in [
        "acc_utilization",
        "acc_mem_used",
        "acc_power",
        "net_bw",
        "ib_bw",
        "lustre_bw",
        "nfs4_read",
    ] {
        assert!(config.metrics.contains_key(name), "{name}");
    }
}

#[test]
fn missing_config_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load(&dir.path().join("config.json")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

proptest! {
    #[test]
    fn duration_parser_never_panics(text in "\\PC{0,24}") {
        let _ = go_duration::parse(&text);
    }

    #[test]
    fn go_duration_components_add_up(h in 0u64..10_000, m in 0u64..600, s in 0u64..600, ms in 0u64..5_000) {
        let text = format!("{h}h{m}m{s}s{ms}ms");
        let expected = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
        prop_assert_eq!(go_duration::parse(&text), Ok(expected));
    }
}

#[test]
fn the_architecture_guides_interval_keys_are_accepted() {
    // `checkpoints.interval` stands for `checkpoint-interval` when that is
    // not set.
    let mut doc = base();
    doc["metric-store"]
        .as_object_mut()
        .unwrap()
        .remove("checkpoint-interval");
    doc["metric-store"]["checkpoints"] = json!({"interval": "6h", "directory": "/x"});
    let config = load_value(&doc).unwrap();
    assert_eq!(
        config.metric_store.checkpoint_interval,
        Duration::from_secs(6 * 3600)
    );
    // The same value twice is fine; two different ones are an error naming
    // the guide's key.
    doc["metric-store"]["checkpoint-interval"] = json!("6h");
    assert!(load_value(&doc).is_ok());
    doc["metric-store"]["checkpoint-interval"] = json!("12h");
    let err = error_of(&doc);
    assert_eq!(key_of(&err), "metric-store.checkpoints.interval");
    doc["metric-store"]
        .as_object_mut()
        .unwrap()
        .remove("checkpoint-interval");
    doc["metric-store"]["checkpoints"]["interval"] = json!("0s");
    assert_eq!(key_of(&error_of(&doc)), "metric-store.checkpoints.interval");

    // `cleanup.interval` sets how often old checkpoints are cleaned up;
    // without it, every retention period.
    let config = load_value(&with(
        "/metric-store/cleanup",
        json!({"mode": "delete", "interval": "1h"}),
    ))
    .unwrap();
    assert_eq!(
        config.metric_store.cleanup.interval,
        Some(Duration::from_secs(3600))
    );
    let config = load_value(&with("/metric-store/cleanup", json!({"mode": "delete"}))).unwrap();
    assert_eq!(config.metric_store.cleanup.interval, None);
    let err = error_of(&with(
        "/metric-store/cleanup",
        json!({"mode": "delete", "interval": "0s"}),
    ));
    assert_eq!(key_of(&err), "metric-store.cleanup.interval");
}

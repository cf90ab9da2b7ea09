//! Tests of the relay configuration: the spec's example, unknown keys, every
//! cross-check, defaults, the shipped examples, secrets and redaction.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cc_common::config::{ByteSize, ConfigError};
use cc_common::lineproto::Precision;
use cc_common::telemetry::LogFormat;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;

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

// ---------------------------------------------------------------- spec example

#[test]
fn spec_example_fails_only_for_its_nats_ingress() {
    let fx = Fixture::new();
    let text = fx.rewrite_etc(SPEC_EXAMPLE);
    let err = fx.load_text(&text).unwrap_err().to_string();
    assert_invalid(
        &err,
        "ingress.nats[0]",
        "NATS ingress is not supported by this version of cc-relay (ingress.nats[0])",
    );

    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["ingress"].as_object_mut().unwrap().remove("nats");
    let config = fx.load(&doc).unwrap();

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

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_keys_name_file_key_path_and_position() {
    let fx = Fixture::new();
    let cases: [(&str, fn(&mut Value)); 6] = [
        ("instanceid", |d| d["instanceid"] = json!("x")),
        ("storage.cach_capacity", |d| {
            d["storage"]["cach_capacity"] = json!("1MiB");
        }),
        ("ingress.http[0].auth.jwt_key", |d| {
            d["ingress"]["http"][0]["auth"]["jwt_key"] = json!("x");
        }),
        ("upstreams[0].buffer.max_byte", |d| {
            d["upstreams"][0]["buffer"]["max_byte"] = json!(1);
        }),
        ("processing.timestamp.precision", |d| {
            d["processing"]["timestamp"]["precision"] = json!("s");
        }),
        ("upstreams[0].auth.token", |d| {
            d["upstreams"][0]["auth"]["token"] = json!("secret-value");
        }),
    ];
    for (key, edit) in cases {
        let mut doc = minimal();
        edit(&mut doc);
        let err = fx.error(&doc);
        let field = key.rsplit('.').next().unwrap();
        assert!(
            err.starts_with(&format!("relay.json: at {key} (line ")),
            "{key}: {err}"
        );
        assert!(
            err.contains(&format!("unknown field `{field}`")),
            "{key}: {err}"
        );
    }
}

#[test]
fn unknown_key_error_has_exact_position() {
    let text = r#"{
  "ingress": { "http": [{ "name": "a" }] },
  "upstreams": [{
    "name": "store",
    "type": "ccms-http",
    "url": "http://127.0.0.1:8082/api/write",
    "buffer": { "max_byte": 1 }
  }]
}"#;
    let err = Config::from_json_str(text, "relay.json", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "relay.json: at upstreams[0].buffer.max_byte (line 7, column 26): unknown field `max_byte`"
        ),
        "{err}"
    );
}

#[test]
fn resolved_fields_are_not_config_keys() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["upstreams"][0]["credentials"] = json!("x");
    assert!(fx.error(&doc).contains("unknown field `credentials`"));
    let mut doc = minimal();
    doc["source"] = json!("x");
    assert!(fx.error(&doc).contains("unknown field `source`"));
}

#[test]
fn wrong_values_are_parse_errors_with_key() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["upstreams"][0]["buffer"]["max_age"] = json!("two days");
    assert!(
        fx.error(&doc)
            .starts_with("relay.json: at upstreams[0].buffer.max_age (line")
    );
    let mut doc = minimal();
    doc["processing"]["drop_measurements_regex"] = json!(["ok_.*", "broken(["]);
    let err = fx.error(&doc);
    assert!(
        err.starts_with("relay.json: at processing.drop_measurements_regex[1] (line"),
        "{err}"
    );
    assert!(err.contains("invalid regular expression"), "{err}");
    let mut doc = minimal();
    doc["upstreams"][0]["url"] = json!("not a url");
    let err = fx.error(&doc);
    assert!(
        err.starts_with("relay.json: at upstreams[0].url (line"),
        "{err}"
    );
    let mut doc = minimal();
    doc["upstreams"][0]["type"] = json!("influx");
    assert!(fx.error(&doc).contains("unknown variant `influx`"));
    let mut doc = minimal();
    doc["processing"]["timestamp"]["input_precision"] = json!("h");
    assert!(fx.error(&doc).contains("expected auto, s, ms, us or ns"));
}

// ---------------------------------------------------------------- cross-checks

#[test]
fn requires_an_ingress_and_an_upstream() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc.as_object_mut().unwrap().remove("ingress");
    assert_invalid(&fx.error(&doc), "ingress", "at least one ingress");
    let mut doc = minimal();
    doc["upstreams"] = json!([]);
    assert_invalid(&fx.error(&doc), "upstreams", "at least one upstream");
    let mut doc = minimal();
    doc.as_object_mut().unwrap().remove("upstreams");
    assert_invalid(&fx.error(&doc), "upstreams", "at least one upstream");
}

#[test]
fn names_must_be_unique() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["ingress"]["http"] = json!([
        { "name": "a", "address": "127.0.0.1:0" },
        { "name": "a", "address": "127.0.0.1:0" }
    ]);
    assert_invalid(&fx.error(&doc), "ingress.http[1].name", "used twice");

    let mut doc = minimal();
    let second = doc["upstreams"][0].clone();
    doc["upstreams"].as_array_mut().unwrap().push(second);
    assert_invalid(&fx.error(&doc), "upstreams[1].name", "used twice");
}

#[test]
fn upstream_names_follow_the_tree_name_rule() {
    let fx = Fixture::new();
    for bad in ["Store", "", "a b", "x".repeat(49).as_str(), "store:1"] {
        let mut doc = minimal();
        doc["upstreams"][0]["name"] = json!(bad);
        assert_invalid(&fx.error(&doc), "upstreams[0].name", "a-z, 0-9");
    }
    let mut doc = minimal();
    doc["upstreams"][0]["name"] = json!("site_b-2");
    fx.load(&doc).unwrap();
}

#[test]
fn ccms_upstream_needs_seconds_and_timestamps() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["processing"]["timestamp"]["output_precision"] = json!("ms");
    assert_invalid(
        &fx.error(&doc),
        "processing.timestamp.output_precision",
        "must be \"s\" with a ccms-http upstream",
    );
    let mut doc = minimal();
    doc["processing"]["timestamp"]["missing"] = json!("keep");
    assert_invalid(
        &fx.error(&doc),
        "processing.timestamp.missing",
        "\"keep\" is refused",
    );

    let mut doc = minimal_relay_upstream();
    doc["processing"]["timestamp"]["output_precision"] = json!("ms");
    doc["processing"]["timestamp"]["missing"] = json!("keep");
    let config = fx.load(&doc).unwrap();
    assert_eq!(
        config.processing.timestamp.output_precision,
        Precision::Millis
    );
    assert_eq!(config.processing.timestamp.missing, MissingTimestamp::Keep);
}

#[test]
fn validate_profile_defaults_by_upstream_type_and_weak_profile_warns() {
    let fx = Fixture::new();
    let config = fx.load(&minimal()).unwrap();
    assert_eq!(config.processing.validate, ValidateProfile::Ccms);
    let config = fx.load(&minimal_relay_upstream()).unwrap();
    assert_eq!(config.processing.validate, ValidateProfile::Syntax);

    let mut doc = minimal();
    doc["processing"]["validate"] = json!("syntax");
    let config = fx.load(&doc).unwrap();
    assert_eq!(config.processing.validate, ValidateProfile::Syntax);
    assert!(has_warning(&config, "processing.validate"));
    assert_eq!(config.redacted()["processing"]["validate"], "syntax");
}

#[test]
fn upstream_limits_are_checked() {
    let fx = Fixture::new();
    let cases: [(&str, Value, &str); 8] = [
        ("max_in_flight", json!(0), "at least 1"),
        ("batch.max_bytes", json!(0), "greater than 0"),
        ("batch.max_lines", json!(0), "at least 1"),
        ("buffer.max_bytes", json!("0B"), "greater than 0"),
        ("retry.multiplier", json!(0.5), "at least 1.0"),
        ("retry.poison_attempts", json!(0), "at least 1"),
        ("retry.max_backoff", json!("100ms"), "initial_backoff"),
        ("timeout", json!("0s"), "greater than 0"),
    ];
    for (key, value, fragment) in cases {
        let mut doc = minimal();
        let target = key
            .split('.')
            .fold(&mut doc["upstreams"][0], |v, part| &mut v[part]);
        *target = value;
        assert_invalid(&fx.error(&doc), &format!("upstreams[0].{key}"), fragment);
    }
}

#[test]
fn http_ingress_values_are_checked() {
    let fx = Fixture::new();
    let cases: [(&str, Value, &str); 7] = [
        ("success_status", json!(201), "must be 200 or 204"),
        ("max_hops", json!(0), "at least 1"),
        ("max_concurrent_requests", json!(0), "at least 1"),
        ("paths", json!(["api/write"]), "must start with '/'"),
        ("accept_encodings", json!([]), "at least one encoding"),
        ("max_line_bytes", json!("1MiB"), "record_max_raw_bytes"),
        ("default_cluster", json!("../etc"), "not usable"),
    ];
    for (key, value, fragment) in cases {
        let mut doc = minimal();
        doc["ingress"]["http"][0][key] = value;
        let err = fx.error(&doc);
        let expected_key = if key == "paths" {
            "ingress.http[0].paths[0]".to_owned()
        } else {
            format!("ingress.http[0].{key}")
        };
        assert_invalid(&err, &expected_key, fragment);
    }
    let mut doc = minimal();
    doc["ingress"]["http"][0]["success_status"] = json!(204);
    assert_eq!(fx.load(&doc).unwrap().ingress.http[0].success_status, 204);
}

#[test]
fn listeners_may_not_share_an_address() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["ingress"]["http"][0]["address"] = json!("0.0.0.0:9109");
    assert_invalid(
        &fx.error(&doc),
        "admin.address",
        "collides with ingress.http[0].address",
    );
}

#[test]
fn jwt_mode_needs_a_key() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "jwt" });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.jwt_public_key",
        "neither jwt_public_key nor jwt_public_key_file",
    );
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] =
        json!({ "mode": "jwt_or_basic", "jwt_public_key": TEST_PUBLIC_B64 });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.basic_users_file",
        "basic_users_file is not set",
    );
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "jwt", "jwt_public_key": "AAAA" });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.jwt_public_key",
        "32 bytes",
    );
}

#[test]
fn jwt_keys_come_from_strings_lists_and_files() {
    let fx = Fixture::new();
    let pem = fx.file("key.pem", TEST_PUBLIC_PEM);
    fx.file("other.b64", &format!("{OTHER_PUBLIC_B64}\n"));
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({
        "mode": "jwt",
        "jwt_public_key": [TEST_PUBLIC_B64, OTHER_PUBLIC_B64],
        "jwt_public_key_file": [pem, "other.b64"]
    });
    let config = fx.load(&doc).unwrap();
    let keys: Vec<String> = config.ingress.http[0]
        .auth
        .public_keys
        .iter()
        .map(|k| k.to_base64())
        .collect();
    assert_eq!(
        keys,
        [
            TEST_PUBLIC_B64,
            OTHER_PUBLIC_B64,
            TEST_PUBLIC_B64,
            OTHER_PUBLIC_B64
        ]
    );
    assert_eq!(
        config.ingress.http[0].auth.jwt_public_key_file[1],
        fx.path().join("other.b64"),
        "relative paths start at the config's directory"
    );

    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] =
        json!({ "mode": "jwt", "jwt_public_key_file": "missing.pub" });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.jwt_public_key_file",
        "cannot read JWT public key file",
    );
}

#[test]
fn basic_users_are_loaded_and_hashes_refused() {
    let fx = Fixture::new();
    fx.file(
        "users",
        "# collectors\nnode01:s3cret:with:colons\n\nnode02:other\r\n",
    );
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "basic", "basic_users_file": "users" });
    let config = fx.load(&doc).unwrap();
    let users = config.ingress.http[0].auth.basic_users.as_ref().unwrap();
    assert_eq!(users.users().collect::<Vec<_>>(), ["node01", "node02"]);
    assert!(users.verify("node01", "s3cret:with:colons"));
    assert!(users.verify("node02", "other"));
    assert!(!users.verify("node02", "othe"));
    assert!(!users.verify("node03", "other"));
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");

    fx.file("hashed", "node01:$argon2id$v=19$m=65536,t=3,p=4$abc$def\n");
    doc["ingress"]["http"][0]["auth"]["basic_users_file"] = json!("hashed");
    let err = fx.error(&doc);
    assert_invalid(
        &err,
        "ingress.http[0].auth.basic_users_file",
        "line 1: hashed passwords are not supported yet",
    );
    assert!(!err.contains("argon2id$"), "{err}");

    fx.file("bcrypt", "node01:$2b$12$abcdefghijklmnopqrstuv\n");
    doc["ingress"]["http"][0]["auth"]["basic_users_file"] = json!("bcrypt");
    assert!(
        fx.error(&doc)
            .contains("hashed passwords are not supported yet")
    );

    fx.file("broken", "node01\n");
    doc["ingress"]["http"][0]["auth"]["basic_users_file"] = json!("broken");
    assert!(fx.error(&doc).contains("line 1: expected user:password"));
}

#[test]
fn server_tls_needs_files_and_a_ca_for_client_certs() {
    let fx = Fixture::new();
    let cert = fx.file("cert.pem", "placeholder");
    let key = fx.file("key.pem", "placeholder");
    let mut doc = minimal();
    doc["ingress"]["http"][0]["tls"] =
        json!({ "cert_file": cert, "key_file": key, "require_client_cert": true });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].tls.require_client_cert",
        "needs client_ca_file",
    );
    doc["ingress"]["http"][0]["tls"] = json!({ "cert_file": cert, "key_file": "nope.pem" });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].tls.key_file",
        "cannot read",
    );
    doc["ingress"]["http"][0]["tls"] = json!({ "cert_file": "cert.pem", "key_file": "key.pem" });
    let config = fx.load(&doc).unwrap();
    assert_eq!(config.ingress.http[0].tls.as_ref().unwrap().cert_file, cert);
}

#[test]
fn upstream_auth_rules() {
    let fx = Fixture::new();
    let token = fx.file("store.jwt", &format!("{TOKEN}\n"));
    let mut doc = minimal();
    doc["upstreams"][0]["auth"] = json!({ "jwt": TOKEN, "jwt_file": token });
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].auth.jwt_file",
        "mutually exclusive",
    );
    doc["upstreams"][0]["auth"] = json!({ "username": "relay" });
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].auth.password_file",
        "needs auth.password_file",
    );
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "missing.jwt" });
    let err = fx.error(&doc);
    assert_invalid(
        &err,
        "upstreams[0].auth.jwt_file",
        "cannot read secret file",
    );
    assert!(err.contains("No such file"), "{err}");

    fx.file("empty.jwt", "\n");
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "empty.jwt" });
    assert_invalid(&fx.error(&doc), "upstreams[0].auth.jwt_file", "is empty");

    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "store.jwt" });
    let config = fx.load(&doc).unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new(TOKEN))
    );

    fx.file("password", "pa55word\n");
    doc["upstreams"][0]["auth"] = json!({ "username": "relay", "password_file": "password" });
    let config = fx.load(&doc).unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Basic {
            username: "relay".to_owned(),
            password: Secret::new("pa55word")
        }
    );

    doc["upstreams"][0]["auth"] = json!({ "jwt": TOKEN });
    let config = fx.load(&doc).unwrap();
    assert!(has_warning(&config, "upstreams[0].auth.jwt"));
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new(TOKEN))
    );
}

#[test]
fn readable_secret_files_are_warned_about() {
    let fx = Fixture::new();
    let token = fx.file("store.jwt", TOKEN);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut doc = minimal();
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": token });
    let config = fx.load(&doc).unwrap();
    let warning = config
        .warnings
        .iter()
        .find(|w| w.key == "upstreams[0].auth.jwt_file")
        .unwrap();
    assert!(warning.message.contains("mode 0644"), "{warning}");
    assert!(!warning.message.contains(TOKEN));
}

#[test]
fn upstream_url_compression_and_type_rules() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["upstreams"][0].as_object_mut().unwrap().remove("url");
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].url",
        "is required for type ccms-http",
    );
    doc["upstreams"][0]["url"] = json!("ftp://store/api/write");
    assert_invalid(&fx.error(&doc), "upstreams[0].url", "http:// or https://");

    let mut doc = minimal();
    doc["upstreams"][0]["compress"] = json!("gzip");
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].compress",
        "must be \"none\" for a ccms-http upstream",
    );
    let mut doc = minimal_relay_upstream();
    doc["upstreams"][0]["compress"] = json!("zstd");
    assert_eq!(
        fx.load(&doc).unwrap().upstreams[0].compress,
        Compression::Zstd
    );

    let mut doc = minimal();
    doc["upstreams"][0] = json!({
        "name": "bus",
        "type": "nats",
        "servers": ["nats://127.0.0.1:4222"],
        "subject": "metrics",
        "mode": "jetstream",
        "jetstream": { "ack_timeout": "5s" },
        "auth": { "creds_file": "/nonexistent/relay.creds" }
    });
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].type",
        "NATS upstreams are not supported by this version of cc-relay",
    );

    let mut doc = minimal();
    doc["upstreams"][0]["subject"] = json!("metrics");
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].subject",
        "only for type nats",
    );

    let mut doc = minimal();
    doc["upstreams"][0]["headers"] = json!({ "Content-Type": "x" });
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].headers.Content-Type",
        "set by the relay",
    );
}

#[test]
fn timestamp_keys_cannot_be_overridden_per_upstream() {
    let fx = Fixture::new();
    for key in ["timestamp", "validate", "materialize_cluster"] {
        let mut doc = minimal();
        doc["upstreams"][0]["processing"] = json!({ key: {} });
        assert_invalid(
            &fx.error(&doc),
            &format!("upstreams[0].processing.{key}"),
            "cannot be set per upstream",
        );
    }
    let mut doc = minimal();
    doc["upstreams"][0]["processing"] = json!({ "output_precision": "s" });
    assert!(fx.error(&doc).contains("unknown field `output_precision`"));
}

#[test]
fn upstream_overrides_replace_single_rule_keys() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["processing"]["default_cluster"] = json!("fritz");
    doc["processing"]["drop_tags"] = json!(["type-id"]);
    doc["processing"]["add_tags"] = json!({ "rack": "17" });
    doc["processing"]["drop_measurements_regex"] = json!(["debug_.*"]);
    let second = json!({
        "name": "archive",
        "type": "relay-http",
        "url": "https://site-relay:8443/api/write?cluster=alex&token=abc",
        "processing": { "default_cluster": "alex", "drop_tags": [], "set_tags": { "site": "b" } }
    });
    doc["upstreams"].as_array_mut().unwrap().push(second);
    let config = fx.load(&doc).unwrap();
    let global = config.processing.rules();
    assert_eq!(config.upstreams[0].rules, global);
    let rules = &config.upstreams[1].rules;
    assert_eq!(rules.default_cluster.as_deref(), Some("alex"));
    assert!(rules.drop_tags.is_empty());
    assert_eq!(rules.add_tags, global.add_tags);
    assert_eq!(rules.set_tags["site"], "b");
    assert!(!rules.keeps_measurement("debug_x"));
    assert!(rules.keeps_measurement("cpu_load"));
    assert!(rules.keeps_measurement("xdebug_x"), "regexes are anchored");
}

#[test]
fn drop_regexes_are_anchored() {
    let regex = AnchoredRegex::new("cpu_.*|mem").unwrap();
    assert!(regex.is_match("cpu_user"));
    assert!(regex.is_match("mem"));
    assert!(!regex.is_match("mem_used"));
    assert!(!regex.is_match("xcpu_user"));
    assert_eq!(regex.pattern(), "cpu_.*|mem");
}

// ---------------------------------------------------------------- defaults

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
    assert_eq!(http.paths, ["/api/write", "/api/write/", "/write"]);
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
    assert_eq!(http.success_status, 200);
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
fn nats_ingress_keys_parse_then_fail_validation() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["ingress"]["nats"] = json!([{
        "name": "bus",
        "servers": ["nats://127.0.0.1:4222", "tls://nats2:4222"],
        "auth": { "user": "relay", "password_file": "/x", "token_file": "/x", "nkey_seed_file": "/x", "creds_file": "/x" },
        "tls": { "ca_file": "/x", "cert_file": "/x", "key_file": "/x", "require": true, "handshake_first": true },
        "subjects": [{ "subject": "metrics.>" }],
        "mode": "jetstream",
        "queue_group": null,
        "jetstream": {
            "stream": "metrics", "create_stream": true,
            "stream_config": { "max_age": "2h", "max_bytes": "4GiB", "storage": "file", "replicas": 1 },
            "durable": "cc-relay-bus", "ack_wait": "30s", "max_ack_pending": 1000, "fetch_batch": 64
        },
        "max_message_bytes": "8MiB",
        "subscription_capacity": 65536,
        "invalid_lines": "reject",
        "input_precision": "ns"
    }]);
    assert_invalid(
        &fx.error(&doc),
        "ingress.nats[0]",
        "NATS ingress is not supported by this version of cc-relay (ingress.nats[0])",
    );
    doc["ingress"]["nats"][0]["jetstream"]["ack_wiat"] = json!("1s");
    assert!(
        fx.error(&doc)
            .starts_with("relay.json: at ingress.nats[0].jetstream.ack_wiat")
    );
}

// ---------------------------------------------------------------- built-in and shipped configs

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

// ---------------------------------------------------------------- secrets

#[test]
fn redacted_output_and_debug_hold_no_secret() {
    let fx = Fixture::new();
    fx.file("admin.token", "admin-token-value");
    fx.file("users", "node01:basic-password-value\n");
    fx.file("store.jwt", "file-token-value");
    fx.file("password", "upstream-password-value");
    let mut doc = minimal();
    doc["admin"]["auth_token_file"] = json!("admin.token");
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "basic", "basic_users_file": "users" });
    doc["upstreams"][0]["auth"] = json!({ "jwt": "inline-token-value" });
    doc["upstreams"][0]["url"] = json!(
        "https://user:url-password-value@store:8082/api/write?cluster=fritz&key=query-secret-value"
    );
    doc["upstreams"][0]["headers"] = json!({ "X-Api-Key": "header-secret-value" });
    doc["upstreams"].as_array_mut().unwrap().push(json!({
        "name": "a",
        "type": "relay-http",
        "url": "https://site:8443/api/write",
        "auth": { "jwt_file": "store.jwt" }
    }));
    doc["upstreams"].as_array_mut().unwrap().push(json!({
        "name": "b",
        "type": "relay-http",
        "url": "https://site:8443/api/write",
        "auth": { "username": "relay", "password_file": "password" }
    }));
    let config = fx.load(&doc).unwrap();

    let redacted = serde_json::to_string_pretty(&config.redacted()).unwrap();
    let debug = format!("{config:?} {:?}", config.warnings);
    for secret in [
        "admin-token-value",
        "basic-password-value",
        "file-token-value",
        "upstream-password-value",
        "inline-token-value",
        "url-password-value",
        "query-secret-value",
        "header-secret-value",
    ] {
        assert!(!redacted.contains(secret), "{secret} in {redacted}");
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    let value = config.redacted();
    assert_eq!(value["upstreams"][0]["auth"]["jwt"], REDACTED);
    assert_eq!(
        value["upstreams"][0]["url"],
        "https://user:***@store:8082/api/write?cluster=fritz&key=***"
    );
    assert_eq!(value["upstreams"][0]["headers"]["X-Api-Key"], REDACTED);
    assert!(redacted.contains("admin.token"), "file names are shown");
    assert!(has_warning(&config, "upstreams[0].url"));
}

#[test]
fn reload_secrets_rereads_files_all_or_nothing() {
    let fx = Fixture::new();
    let token = fx.file("store.jwt", "first-token");
    let mut doc = minimal();
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "store.jwt" });
    let mut config = fx.load(&doc).unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new("first-token"))
    );

    fx.file("store.jwt", "second-token\n");
    config.reload_secrets().unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new("second-token"))
    );
    assert_eq!(
        config.upstreams[0].read_credentials().unwrap(),
        UpstreamCredentials::Bearer(Secret::new("second-token"))
    );

    std::fs::remove_file(&token).unwrap();
    let err = config.reload_secrets().unwrap_err().to_string();
    assert_invalid(
        &err,
        "upstreams[0].auth.jwt_file",
        "cannot read secret file",
    );
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new("second-token")),
        "a failed reload keeps the old credentials"
    );
}

#[test]
fn secret_prints_stars() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
    assert_eq!(secret.expose(), "hunter2");
}

#[test]
fn load_reads_the_file_and_resolves_relative_paths() {
    let fx = Fixture::new();
    fx.file("store.jwt", TOKEN);
    let mut doc = minimal();
    doc["data_dir"] = json!("state");
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "store.jwt" });
    let path = fx.file("relay.json", &doc.to_string());
    let config = Config::load(&path).unwrap();
    assert_eq!(config.source, path.display().to_string());
    assert_eq!(config.data_dir, fx.path().join("state"));
    assert_eq!(
        config.upstreams[0].auth.jwt_file.as_deref(),
        Some(fx.path().join("store.jwt").as_path())
    );

    let err = Config::load(&fx.path().join("missing.json")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn invalid_log_level_and_instance_id_are_rejected() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["log"]["level"] = json!("cc_relay=loud");
    assert_invalid(&fx.error(&doc), "log.level", "invalid log filter");
    let mut doc = minimal();
    doc["log"]["level"] = json!("cc_relay=debug,info");
    fx.load(&doc).unwrap();
    let mut doc = minimal();
    doc["instance_id"] = json!("rack 17");
    assert_invalid(&fx.error(&doc), "instance_id", "not usable");
}

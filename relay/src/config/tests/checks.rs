//! Unknown keys, wrongly typed values, and every validation rule and cross-check,
//! each failing with the key it names.

use super::*;

#[test]
fn unknown_keys_name_file_key_path_and_position() {
    let fx = Fixture::new();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 6] = [
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
    assert_eq!(
        fx.load(&doc).unwrap().ingress.http[0].success_status,
        Some(204)
    );
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
        "upstreams[0].auth.creds_file",
        "cannot read /nonexistent/relay.creds",
    );
    let creds = fx.file("relay.creds", "placeholder\n");
    doc["upstreams"][0]["auth"]["creds_file"] = json!(creds);
    let config = fx.load(&doc).unwrap();
    let bus = &config.upstreams[0];
    assert_eq!(bus.mode, Some(NatsMode::Jetstream));
    assert_eq!(
        bus.connection.as_ref().unwrap().auth.creds_file.as_deref(),
        Some(creds.as_path())
    );
    for (key, value, expected) in [
        (
            "url",
            json!("http://x/api/write"),
            "is not used by type nats",
        ),
        ("compress", json!("gzip"), "is not used by type nats"),
        ("cluster", json!("fritz"), "is not used by type nats"),
        ("timeout", json!("5s"), "is not used by type nats"),
        ("connect_timeout", json!("1s"), "is not used by type nats"),
        (
            "pool_idle_timeout",
            json!("10s"),
            "is not used by type nats",
        ),
        ("subject", json!("metrics.*"), "without wildcards"),
        ("servers", json!([]), "needs at least one server"),
        (
            "servers",
            json!(["http://x:4222"]),
            "is not a NATS server URL",
        ),
        (
            "servers",
            json!(["nats://u:p@x:4222"]),
            "must not carry credentials",
        ),
    ] {
        let mut bad = doc.clone();
        bad["upstreams"][0][key] = value;
        let err = fx.error(&bad);
        assert!(err.contains(expected), "{key}: {err}");
        assert!(!err.contains("u:p@"), "{err}");
    }
    let mut bad = doc.clone();
    bad["upstreams"][0]
        .as_object_mut()
        .unwrap()
        .remove("subject");
    assert_invalid(
        &fx.error(&bad),
        "upstreams[0].subject",
        "is required for type nats",
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

#[test]
fn nats_ingress_keys_are_checked_and_their_files_read() {
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
    // Every file is checked, in order, and named with its key.
    assert_invalid(
        &fx.error(&doc),
        "ingress.nats[0].auth.password_file",
        "cannot read secret file /x",
    );
    let password = fx.file("password", "s3cret\n");
    let token = fx.file("token", "tok\n");
    let seed = fx.file("seed", "SUAEXAMPLE\n");
    let creds = fx.file("creds", "placeholder\n");
    let pem = fx.file("pem", "placeholder\n");
    doc["ingress"]["nats"][0]["auth"] = json!({
        "user": "relay", "password_file": password, "token_file": token,
        "nkey_seed_file": seed, "creds_file": creds
    });
    for key in ["ca_file", "cert_file", "key_file"] {
        doc["ingress"]["nats"][0]["tls"][key] = json!(pem);
    }
    let config = fx.load(&doc).unwrap();
    let nats = &config.ingress.nats[0];
    assert_eq!(nats.durable(), "cc-relay-bus");
    let c = nats.connection.as_ref().unwrap();
    let (user, pass) = c.auth.user_password.as_ref().unwrap();
    assert_eq!((user.as_str(), pass.expose()), ("relay", "s3cret"));
    assert_eq!(c.auth.token.as_ref().unwrap().expose(), "tok");
    assert_eq!(c.auth.nkey_seed.as_ref().unwrap().expose(), "SUAEXAMPLE");
    assert!(c.tls.require && c.tls.handshake_first);
    assert!(!format!("{config:?}").contains("s3cret"));

    let mut bad = doc.clone();
    bad["ingress"]["nats"][0]["auth"]["nkey_seed_file"] = json!(token);
    assert_invalid(
        &fx.error(&bad),
        "ingress.nats[0].auth.nkey_seed_file",
        "does not hold an nkey seed",
    );
    let mut bad = doc.clone();
    bad["ingress"]["nats"][0]["jetstream"]
        .as_object_mut()
        .unwrap()
        .remove("stream");
    assert_invalid(
        &fx.error(&bad),
        "ingress.nats[0].jetstream.stream",
        "is required in JetStream mode",
    );
    for (key, value, expected) in [
        ("subjects", json!([]), "needs at least one subject"),
        (
            "subjects",
            json!([{"subject": "a.>.b"}]),
            "is not a NATS subject",
        ),
        (
            "subjects",
            json!([{"subject": "a b"}]),
            "is not a NATS subject",
        ),
        (
            "subjects",
            json!([{"subject": "a"}, {"subject": "a"}]),
            "listed twice",
        ),
        ("queue_group", json!("two words"), "one word"),
        ("subscription_capacity", json!(0), "at least 1"),
        (
            "tls",
            json!({"cert_file": pem}),
            "tls.cert_file needs tls.key_file",
        ),
    ] {
        let mut bad = doc.clone();
        bad["ingress"]["nats"][0][key] = value;
        let err = fx.error(&bad);
        assert!(err.contains(expected), "{key}: {err}");
    }
    let mut bad = doc.clone();
    bad["ingress"]["nats"][0]["jetstream"]["durable"] = json!("a.b");
    assert_invalid(
        &fx.error(&bad),
        "ingress.nats[0].jetstream.durable",
        "not usable as a JetStream name",
    );
    doc["ingress"]["nats"][0]["jetstream"]["ack_wiat"] = json!("1s");
    assert!(
        fx.error(&doc)
            .starts_with("relay.json: at ingress.nats[0].jetstream.ack_wiat")
    );
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

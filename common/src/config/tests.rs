use std::io::Write as _;
use std::time::Duration;

use super::*;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Main {
    address: String,
    #[serde(default)]
    jwt_public_key: String,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Buffer {
    max_bytes: ByteSize,
    #[serde(with = "duration")]
    flush_interval: Duration,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Upstream {
    address: String,
    buffer: Buffer,
    #[serde(default, with = "option_duration")]
    timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TestConfig {
    main: Main,
    upstreams: Vec<Upstream>,
}

const VALID: &str = r#"{
  "main": {"address": "0.0.0.0:8082", "jwt-public-key": "abc"},
  "upstreams": [
{"address": "a:1", "buffer": {"max-bytes": "64MiB", "flush-interval": "10s"}},
{
  "address": "b:2",
  "buffer": {"max-bytes": 1024, "flush-interval": 30},
  "timeout": "1h30m"
}
  ]
}"#;

fn parse_err(text: &str) -> ConfigError {
    parse_json::<TestConfig>(text, "test.json").unwrap_err()
}

#[test]
fn parses_valid_config_with_sizes_and_durations() {
    let cfg: TestConfig = parse_json(VALID, "test.json").unwrap();
    assert_eq!(cfg.main.jwt_public_key, "abc");
    assert_eq!(cfg.upstreams.len(), 2);
    assert_eq!(cfg.upstreams[0].buffer.max_bytes, ByteSize(64 << 20));
    assert_eq!(
        cfg.upstreams[0].buffer.flush_interval,
        Duration::from_secs(10)
    );
    assert_eq!(cfg.upstreams[0].timeout, None);
    assert_eq!(cfg.upstreams[1].buffer.max_bytes, ByteSize(1024));
    assert_eq!(
        cfg.upstreams[1].buffer.flush_interval,
        Duration::from_secs(30)
    );
    assert_eq!(cfg.upstreams[1].timeout, Some(Duration::from_secs(5400)));
}

#[test]
fn serialized_config_parses_back_identically() {
    let cfg: TestConfig = parse_json(VALID, "test.json").unwrap();
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(text.contains("\"64MiB\""), "{text}");
    assert!(text.contains("\"1h 30m\""), "{text}");
    let again: TestConfig = parse_json(&text, "round-trip").unwrap();
    assert_eq!(cfg, again);
}

#[test]
fn rejects_unknown_key_naming_path_and_position() {
    let text = "{\n  \"main\": {\"address\": \"x\"},\n  \"upstreams\": [\n    {\"adress\": \"a:1\"}\n  ]\n}";
    let err = parse_err(text);
    let msg = err.to_string();
    assert!(
        msg.starts_with("test.json: at upstreams[0].adress (line 4, column 13): unknown field `adress`, expected one of `address`"),
        "{msg}"
    );
    match err {
        ConfigError::Parse {
            key, line, column, ..
        } => {
            assert_eq!(key, "upstreams[0].adress");
            assert_eq!((line, column), (4, 13));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rejects_unknown_key_in_nested_section() {
    let text = r#"{"main": {"address": "x", "jwt-key": "k"}, "upstreams": []}"#;
    let msg = parse_err(text).to_string();
    assert!(msg.contains("at main.jwt-key (line 1,"), "{msg}");
    assert!(msg.contains("unknown field `jwt-key`"), "{msg}");
}

#[test]
fn type_error_names_key_path() {
    let text = r#"{"main": {"address": 5}, "upstreams": []}"#;
    let msg = parse_err(text).to_string();
    assert!(msg.starts_with("test.json: at main.address (line 1, column 22): invalid type: integer `5`, expected a string"), "{msg}");
}

#[test]
fn missing_field_names_section() {
    let text = r#"{"main": {}, "upstreams": []}"#;
    let msg = parse_err(text).to_string();
    assert!(msg.contains("at main (line 1"), "{msg}");
    assert!(msg.contains("missing field `address`"), "{msg}");
}

#[test]
fn bad_duration_names_value_and_example() {
    let text = r#"{"main": {"address": "x"}, "upstreams": [
        {"address": "a", "buffer": {"max-bytes": 1, "flush-interval": "10 parsecs"}}]}"#;
    let msg = parse_err(text).to_string();
    assert!(
        msg.contains("at upstreams[0].buffer.flush-interval (line 2,"),
        "{msg}"
    );
    assert!(msg.contains("\"10 parsecs\""), "{msg}");
    assert!(msg.contains("\"1h30m\""), "{msg}");
}

#[test]
fn bad_size_names_path_and_unit() {
    let text = r#"{"main": {"address": "x"}, "upstreams": [
        {"address": "a", "buffer": {"max-bytes": 1, "flush-interval": "1s"}},
        {"address": "b", "buffer": {"max-bytes": "10XB", "flush-interval": "1s"}}]}"#;
    let msg = parse_err(text).to_string();
    assert!(
        msg.contains("at upstreams[1].buffer.max-bytes (line 3,"),
        "{msg}"
    );
    assert!(msg.contains("unknown unit \"XB\""), "{msg}");
}

#[test]
fn syntax_error_and_trailing_garbage_give_positions() {
    let msg = parse_err("{\"main\": ").to_string();
    assert!(msg.starts_with("test.json: "), "{msg}");
    assert!(msg.contains("line 1, column 9"), "{msg}");

    let ok = r#"{"main": {"address": "x"}, "upstreams": []} x"#;
    let msg = parse_err(ok).to_string();
    assert_eq!(msg, "test.json: line 1, column 45: trailing characters");
}

#[test]
fn missing_file_names_path_and_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    let err = load_json::<TestConfig>(&path).unwrap_err();
    assert!(err.to_string().contains("absent.json"), "{err}");
    match &err {
        ConfigError::Read { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    let source = std::error::Error::source(&err).unwrap();
    assert!(!source.to_string().is_empty());
}

#[test]
fn loads_valid_file_and_names_it_in_errors() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(VALID.as_bytes()).unwrap();
    let cfg: TestConfig = load_json(file.path()).unwrap();
    assert_eq!(cfg.main.address, "0.0.0.0:8082");

    let mut bad = tempfile::NamedTempFile::new().unwrap();
    bad.write_all(br#"{"main": {"address": "x", "port": 1}, "upstreams": []}"#)
        .unwrap();
    let msg = load_json::<TestConfig>(bad.path()).unwrap_err().to_string();
    let expected = format!("{}: at main.port (line 1,", bad.path().display());
    assert!(msg.starts_with(&expected), "{msg}");
}

#[test]
fn invalid_error_displays_file_key_message() {
    let err = ConfigError::invalid("/etc/x.json", "main.addr", "must be host:port");
    assert_eq!(err.to_string(), "/etc/x.json: main.addr: must be host:port");
}

#[derive(Debug, Deserialize)]
struct D {
    #[serde(with = "duration")]
    d: Duration,
}

#[derive(Debug, Deserialize)]
struct OptD {
    #[serde(default, with = "option_duration")]
    d: Option<Duration>,
}

#[test]
fn durations_table() {
    let ok: &[(&str, Duration)] = &[
        (r#""48h""#, Duration::from_secs(48 * 3600)),
        (r#""200ms""#, Duration::from_millis(200)),
        (r#""1h30m""#, Duration::from_secs(5400)),
        (r#""10s""#, Duration::from_secs(10)),
        (r#""0""#, Duration::ZERO),
        (r#""0s""#, Duration::ZERO),
        (r#""1m 5s""#, Duration::from_secs(65)),
        (r#""100us""#, Duration::from_micros(100)),
        ("0", Duration::ZERO),
        ("60", Duration::from_secs(60)),
    ];
    for (json, want) in ok {
        let got: D = serde_json::from_str(&format!(r#"{{"d": {json}}}"#))
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(got.d, *want, "{json}");
    }
    let bad = [
        r#""10""#,
        r#""ten seconds""#,
        r#""-1s""#,
        "-5",
        "1.5",
        r#""""#,
        "true",
    ];
    for json in bad {
        let res = serde_json::from_str::<D>(&format!(r#"{{"d": {json}}}"#));
        assert!(res.is_err(), "{json} should be rejected");
    }
}

#[test]
fn option_duration_handles_null_missing_and_value() {
    let d: OptD = serde_json::from_str(r#"{"d": null}"#).unwrap();
    assert_eq!(d.d, None);
    let d: OptD = serde_json::from_str("{}").unwrap();
    assert_eq!(d.d, None);
    let d: OptD = serde_json::from_str(r#"{"d": "5m"}"#).unwrap();
    assert_eq!(d.d, Some(Duration::from_secs(300)));
    assert!(serde_json::from_str::<OptD>(r#"{"d": "5 moons"}"#).is_err());
}

#[test]
fn byte_size_parse_table() {
    const KI: u64 = 1024;
    let ok: &[(&str, u64)] = &[
        ("100", 100),
        ("100B", 100),
        ("100 b", 100),
        ("0", 0),
        ("512KiB", 512 * KI),
        ("64MiB", 64 * KI * KI),
        ("64 mib", 64 * KI * KI),
        ("20GiB", 20 * KI.pow(3)),
        ("1TiB", KI.pow(4)),
        ("1.5GiB", 3 * KI.pow(3) / 2),
        ("0.5KiB", 512),
        ("0.1KiB", 102),
        ("10MB", 10_000_000),
        ("1GB", 1_000_000_000),
        ("1kB", 1000),
        ("1KB", 1000),
        ("  7 GB  ", 7_000_000_000),
        ("15EiB", 15 << 60),
        ("18446744073709551615", u64::MAX),
    ];
    for (text, want) in ok {
        let got: ByteSize = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(got, ByteSize(*want), "{text}");
    }
    let bad: &[(&str, ByteSizeError)] = &[
        ("", ByteSizeError::Empty),
        ("   ", ByteSizeError::Empty),
        ("-1", ByteSizeError::Negative("-1".into())),
        ("-5MiB", ByteSizeError::Negative("-5MiB".into())),
        ("MiB", ByteSizeError::InvalidNumber("MiB".into())),
        (".5MiB", ByteSizeError::InvalidNumber(".5MiB".into())),
        ("5.MiB", ByteSizeError::InvalidNumber("5.MiB".into())),
        ("1.2.3MiB", ByteSizeError::InvalidNumber("1.2.3MiB".into())),
        (
            "10XB",
            ByteSizeError::UnknownUnit {
                unit: "XB".into(),
                text: "10XB".into(),
            },
        ),
        (
            "64M",
            ByteSizeError::UnknownUnit {
                unit: "M".into(),
                text: "64M".into(),
            },
        ),
        ("16EiB", ByteSizeError::TooLarge("16EiB".into())),
        (
            "18446744073709551616",
            ByteSizeError::TooLarge("18446744073709551616".into()),
        ),
        (
            "99999999999999999999999999999999999999999",
            ByteSizeError::TooLarge("99999999999999999999999999999999999999999".into()),
        ),
    ];
    for (text, want) in bad {
        assert_eq!(text.parse::<ByteSize>().unwrap_err(), *want, "{text}");
    }
}

#[test]
fn byte_size_error_names_unknown_unit() {
    let err = "3 furlongs".parse::<ByteSize>().unwrap_err().to_string();
    assert!(err.contains("\"furlongs\""), "{err}");
}

#[test]
fn byte_size_long_fraction_rounds_down() {
    let got: ByteSize = "1.99999999999999999999999999KiB".parse().unwrap();
    assert_eq!(got, ByteSize(2047));
}

#[test]
fn byte_size_display_round_trips() {
    for n in [
        0,
        1,
        1000,
        1024,
        1536,
        64 << 20,
        20 << 30,
        1 << 40,
        u64::MAX,
    ] {
        let size = ByteSize(n);
        let text = size.to_string();
        assert_eq!(text.parse::<ByteSize>().unwrap(), size, "{text}");
    }
    assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    assert_eq!(ByteSize(1500).to_string(), "1500B");
    assert_eq!(ByteSize(0).to_string(), "0B");
}

#[test]
fn byte_size_from_json() {
    let v: Vec<ByteSize> = serde_json::from_str(r#"[5, "5KiB", "1 GB"]"#).unwrap();
    assert_eq!(
        v,
        vec![ByteSize(5), ByteSize(5120), ByteSize(1_000_000_000)]
    );
    assert!(serde_json::from_str::<ByteSize>("-1").is_err());
    assert!(serde_json::from_str::<ByteSize>("1.5").is_err());
    assert!(serde_json::from_str::<ByteSize>("true").is_err());
    assert_eq!(
        serde_json::to_string(&ByteSize(512 << 10)).unwrap(),
        r#""512KiB""#
    );
}

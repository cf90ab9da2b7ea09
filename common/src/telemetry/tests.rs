use super::*;

#[test]
fn parses_log_formats() {
    assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
    assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert_eq!(" JSON ".parse::<LogFormat>(), Ok(LogFormat::Json));
}

#[test]
fn rejects_unknown_log_format_listing_the_choices() {
    let err = "yaml".parse::<LogFormat>().unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unknown log format "yaml"; expected one of: text, json"#
    );
}

#[test]
fn log_format_display_round_trips() {
    for format in [LogFormat::Text, LogFormat::Json] {
        assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
    }
    assert_eq!(LogFormat::default(), LogFormat::Text);
}

#[test]
fn maps_upstream_log_levels() {
    let cases = [
        ("debug", Some("debug")),
        ("info", Some("info")),
        ("warn", Some("warn")),
        ("warning", Some("warn")),
        ("err", Some("error")),
        ("error", Some("error")),
        ("crit", Some("error")),
        ("DEBUG", Some("debug")),
        (" Warn ", Some("warn")),
        ("trace", None),
        ("fatal", None),
        ("", None),
    ];
    for (level, expected) in cases {
        assert_eq!(go_loglevel_directive(level), expected, "level {level:?}");
    }
}

#[test]
fn every_mapped_level_is_a_valid_directive() {
    for level in ["debug", "info", "warn", "warning", "err", "error", "crit"] {
        let directive = go_loglevel_directive(level).unwrap();
        build_filter(None, directive).unwrap();
    }
}

#[test]
fn uses_default_directive_without_rust_log() {
    let filter = build_filter(None, "warn,cc_common=debug").unwrap();
    assert_eq!(filter.to_string(), "async_nats=off,cc_common=debug,warn");
    let filter = build_filter(Some(OsString::new()), "info").unwrap();
    assert_eq!(filter.to_string(), "async_nats=off,info");
}

#[test]
fn the_nats_client_is_quiet_unless_named() {
    let filter = build_filter(None, "info,async_nats=debug").unwrap();
    assert_eq!(filter.to_string(), "async_nats=debug,info");
}

#[test]
fn rust_log_overrides_default_directive() {
    let filter = build_filter(Some("debug".into()), "info").unwrap();
    assert_eq!(filter.to_string(), "debug");
}

#[test]
fn invalid_rust_log_is_an_error_naming_the_variable() {
    let err = build_filter(Some("info,foo=notalevel".into()), "info").unwrap_err();
    assert!(matches!(err, TelemetryError::InvalidEnvFilter { .. }));
    let message = err.to_string();
    assert!(message.contains("RUST_LOG"), "{message}");
    assert!(message.contains("foo=notalevel"), "{message}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn invalid_default_directive_is_an_error() {
    let err = build_filter(None, "foo=notalevel").unwrap_err();
    assert!(matches!(err, TelemetryError::InvalidDirective { .. }));
    assert!(err.to_string().contains("foo=notalevel"));
}

#[test]
fn second_init_is_an_error_not_a_panic() {
    // The only test that touches the global subscriber. The first call may fail if the
    // environment's RUST_LOG is invalid; the second must fail either way.
    let first = init(LogFormat::Text, "off");
    let second = init(LogFormat::Json, "off");
    match first {
        Ok(()) => assert!(matches!(second, Err(TelemetryError::AlreadyInitialised(_)))),
        Err(TelemetryError::InvalidEnvFilter { .. }) => assert!(second.is_err()),
        Err(other) => panic!("unexpected first init error: {other}"),
    }
}

#[test]
fn a_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
    let throttle = Throttle::new(std::time::Duration::from_secs(3600));
    assert_eq!(throttle.due(), Some(0));
    assert_eq!(throttle.due(), None);
    assert_eq!(throttle.due(), None);
    let open = Throttle::new(std::time::Duration::ZERO);
    assert_eq!(open.due(), Some(0));
    assert_eq!(open.due(), Some(0));
}

use std::borrow::Cow;

use super::*;

#[test]
fn detects_the_unit_by_number_of_digits() {
    let cases = [
        (1_732_870_000, Ok(Precision::Seconds)),
        (1_000_000_000, Ok(Precision::Seconds)),
        (9_999_999_999, Ok(Precision::Seconds)),
        (1_732_870_000_123, Ok(Precision::Millis)),
        (1_732_870_000_123_456, Ok(Precision::Micros)),
        (1_732_870_000_123_456_789, Ok(Precision::Nanos)),
        (i64::MAX, Ok(Precision::Nanos)),
        (999_999_999, Err(UndecidableTimestamp(999_999_999))),
        (10_000_000_000, Err(UndecidableTimestamp(10_000_000_000))),
        (173_287_000_012, Err(UndecidableTimestamp(173_287_000_012))),
        (0, Err(UndecidableTimestamp(0))),
        (-1_732_870_000, Err(UndecidableTimestamp(-1_732_870_000))),
    ];
    for (ts, expected) in cases {
        assert_eq!(Precision::detect(ts), expected, "{ts}");
    }
}

#[test]
fn converts_between_units_with_floor_division() {
    use Precision::*;
    assert_eq!(
        Millis.convert(1_732_870_000_999, Seconds),
        Some(1_732_870_000)
    );
    assert_eq!(
        Nanos.convert(1_732_870_000_999_999_999, Seconds),
        Some(1_732_870_000)
    );
    assert_eq!(
        Micros.convert(1_732_870_000_500_000, Millis),
        Some(1_732_870_000_500)
    );
    assert_eq!(Millis.convert(-1, Seconds), Some(-1));
    assert_eq!(
        Seconds.convert(1_732_870_000, Nanos),
        Some(1_732_870_000_000_000_000)
    );
    assert_eq!(Seconds.convert(1_732_870_000, Seconds), Some(1_732_870_000));
    assert_eq!(Seconds.convert(i64::MAX / 10, Millis), None);
}

#[test]
fn store_reading_of_timestamps_by_magnitude() {
    assert_eq!(
        Precision::seconds_by_magnitude(1_732_870_000),
        1_732_870_000
    );
    assert_eq!(Precision::seconds_by_magnitude(-5), -5);
    assert_eq!(
        Precision::seconds_by_magnitude(10_000_000_000),
        10_000_000_000
    );
    assert_eq!(
        Precision::seconds_by_magnitude(1_732_870_000_123),
        1_732_870_000
    );
    assert_eq!(
        Precision::seconds_by_magnitude(1_732_870_000_123_456),
        1_732_870_000
    );
    assert_eq!(
        Precision::seconds_by_magnitude(1_732_870_000_123_456_789),
        1_732_870_000
    );
}

#[test]
fn precision_names() {
    for p in [
        Precision::Seconds,
        Precision::Millis,
        Precision::Micros,
        Precision::Nanos,
    ] {
        assert_eq!(p.as_str().parse::<Precision>(), Ok(p));
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!("µs".parse::<Precision>(), Ok(Precision::Micros));
    assert_eq!(
        "h".parse::<Precision>().unwrap_err().to_string(),
        "unknown precision \"h\" (expected s, ms, us or ns)"
    );
}

#[test]
fn formats_lines_as_collectors_do() {
    let mut out = String::new();
    let value = FieldValue::Float(35.5);
    write_line(
        &mut out,
        "cpu_load",
        [
            ("cluster", "fritz"),
            ("hostname", "f0201"),
            ("type", "hwthread"),
            ("type-id", "17"),
        ],
        [("value", &value)],
        Some(1_732_870_000),
    )
    .unwrap();
    assert_eq!(
        out,
        "cpu_load,cluster=fritz,hostname=f0201,type=hwthread,type-id=17 value=35.5 1732870000\n"
    );
}

#[test]
fn formats_every_value_kind_and_escape() {
    let line = OwnedLine {
        measurement: "my meas,x".into(),
        tags: vec![("k ey".into(), "v=a,l\\".into())],
        fields: vec![
            ("f".into(), FieldValue::Float(5.0)),
            ("big".into(), FieldValue::Float(1e21)),
            ("i".into(), FieldValue::Integer(-42)),
            ("u".into(), FieldValue::UInteger(42)),
            ("b".into(), FieldValue::Boolean(true)),
            (
                "s".into(),
                FieldValue::String(Cow::Borrowed("say \"hi\"\n\\")),
            ),
        ],
        timestamp: None,
    };
    assert_eq!(
        line.to_string(),
        r#"my\ meas\,x,k\ ey=v\=a\,l\\ f=5.0,big=1e21,i=-42i,u=42u,b=true,s="say \"hi\"\n\\""#
    );
}

/// Measurement, tags, fields, and the expected error.
type Case<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<(&'a str, &'a FieldValue<'a>)>,
    FormatError,
);

#[test]
fn refuses_what_cannot_be_read_back() {
    let nan = FieldValue::Float(f64::NAN);
    let one = FieldValue::Float(1.0);
    let mut out = String::from("kept\n");
    let cases: [Case<'_>; 6] = [
        (
            "",
            vec![],
            vec![("v", &one)],
            FormatError::Empty("measurement"),
        ),
        (
            "m",
            vec![("k", "")],
            vec![("v", &one)],
            FormatError::Empty("tag value"),
        ),
        ("m", vec![], vec![], FormatError::NoFields),
        (
            "m",
            vec![],
            vec![("v", &nan)],
            FormatError::NotFinite("v".into()),
        ),
        (
            "m",
            vec![("k", "a\nb")],
            vec![("v", &one)],
            FormatError::Newline("tag value"),
        ),
        ("#m", vec![], vec![("v", &one)], FormatError::BadStart),
    ];
    for (m, tags, fields, expected) in cases {
        assert_eq!(write_line(&mut out, m, tags, fields, None), Err(expected));
    }
    assert_eq!(out, "kept\n", "nothing is appended on error");
}

use super::*;
use crate::lineproto::{OwnedLine, write_line};
use proptest::prelude::*;

fn one(input: &str) -> Line<'_> {
    let mut it = parse_str(input);
    let line = it.next().expect("one item").expect("valid line");
    assert!(it.next().is_none(), "exactly one line in {input:?}");
    line
}

fn err(input: &str) -> ParseError {
    parse_str(input)
        .next()
        .expect("one item")
        .expect_err("invalid line")
}

fn tags<'a>(line: &Line<'a>) -> Vec<(String, String)> {
    line.tags()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[test]
fn parses_typical_clustercockpit_lines() {
    let batch = "cpu_load,cluster=fritz,hostname=f0101,type=node value=12.5 1718000000\n\
                 cpu_user,cluster=fritz,hostname=f0101,type=hwthread,type-id=17 value=98.1 1718000000\n\
                 mem_used,cluster=fritz,hostname=f0101,type=node,unit=GBytes value=187.25 1718000000\n";
    let lines: Vec<_> = parse_str(batch).map(Result::unwrap).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].measurement(), "cpu_user");
    assert_eq!(
        tags(&lines[1]),
        [
            ("cluster", "fritz"),
            ("hostname", "f0101"),
            ("type", "hwthread"),
            ("type-id", "17")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(lines[1].field("value"), Some(FieldValue::Float(98.1)));
    assert_eq!(lines[2].tag("unit").as_deref(), Some("GBytes"));
    assert_eq!(lines[2].timestamp(), Some(1_718_000_000));
    assert_eq!(
        lines.iter().map(Line::number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn parses_store_spec_tag_layouts() {
    let cases = [
        "flops_any,cluster=c,hostname=h,type=node value=1 1700000000",
        "flops_any,cluster=c,hostname=h value=1 1700000000",
        "flops_any,cluster=c,hostname=h,type=hwthread,type-id=3 value=1 1700000000",
        "flops_any,cluster=c,hostname=h,type-id=3,type=socket value=1 1700000000",
        "acc_utilization,cluster=c,hostname=h,type=accelerator,type-id=00000000:49:00.0 value=1 1700000000",
        "mem_bw,cluster=c,hostname=h,type=socket,type-id=0,stype=memctrl,stype-id=1 value=1 1700000000",
        "net_bw,cluster=c,hostname=h,type=node,stype=network,stype-id=eth0 value=1 1700000000",
        "cpu_load value=1 1700000000",
        "cpu_load,hostname=h value=1",
    ];
    for case in cases {
        let line = one(case);
        assert_eq!(line.raw(), case);
        assert_eq!(line.field("value").and_then(|v| v.as_f64()), Some(1.0));
    }
    let acc = one(cases[4]);
    assert_eq!(acc.tag("type-id").as_deref(), Some("00000000:49:00.0"));
    assert_eq!(one(cases[7]).tag_count(), 0);
    assert_eq!(one(cases[8]).timestamp(), None);
}

#[test]
fn parses_every_value_kind() {
    let line = one(
        "m f1=1,f2=-2.5,f3=1e+21,f4=42i,f5=-9223372036854775808i,f6=18446744073709551615u,\
         f7=t,f8=FALSE,f9=\"a \\\"quoted\\\" \\\\ string, with = signs\",f10=.5,f11=+3 1",
    );
    let fields: Vec<_> = line.fields().map(|(k, v)| (k.into_owned(), v)).collect();
    let expect = [
        FieldValue::Float(1.0),
        FieldValue::Float(-2.5),
        FieldValue::Float(1e21),
        FieldValue::Integer(42),
        FieldValue::Integer(i64::MIN),
        FieldValue::UInteger(u64::MAX),
        FieldValue::Boolean(true),
        FieldValue::Boolean(false),
        FieldValue::String(Cow::Borrowed("a \"quoted\" \\ string, with = signs")),
        FieldValue::Float(0.5),
        FieldValue::Float(3.0),
    ];
    assert_eq!(fields.len(), expect.len());
    for (i, ((k, v), e)) in fields.iter().zip(expect.iter()).enumerate() {
        assert_eq!(k, &format!("f{}", i + 1));
        assert_eq!(v, e, "field {k}");
    }
}

#[test]
fn accepts_every_boolean_spelling() {
    for (text, value) in [
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ] {
        let input = format!("m b={text}");
        let line = one(&input);
        assert_eq!(line.field("b"), Some(FieldValue::Boolean(value)), "{text}");
    }
    assert_eq!(err("m b=tRuE").kind, ErrorKind::InvalidFieldValue);
}

#[test]
fn string_values_unescape_control_sequences() {
    let line = one(r#"event,function=start_job event="{\"jobId\":1}\n\ttab\rcr" 1700000000"#);
    assert_eq!(
        line.field("event"),
        Some(FieldValue::String(Cow::Owned(
            "{\"jobId\":1}\n\ttab\rcr".to_owned()
        )))
    );
}

#[test]
fn unescapes_names_keys_and_tag_values() {
    let line = one(r"my\ meas\,ure\=x,tag\ key\,a\=b=va\ l\,u\=e\\,t2=a=b field\ k\=y=1 5");
    assert_eq!(line.measurement(), r"my meas,ure\=x");
    assert_eq!(
        tags(&line),
        [
            ("tag key,a=b".to_owned(), r"va l,u=e\".to_owned()),
            ("t2".to_owned(), "a=b".to_owned())
        ]
    );
    assert_eq!(line.field("field k=y"), Some(FieldValue::Float(1.0)));
    assert_eq!(line.timestamp(), Some(5));
}

#[test]
fn tag_values_may_hold_unescaped_equals_signs() {
    let line = one("cpu,a=b=c,d=e value=1");
    assert_eq!(
        tags(&line),
        [
            ("a".to_owned(), "b=c".to_owned()),
            ("d".to_owned(), "e".to_owned())
        ]
    );
}

#[test]
fn unescaped_tokens_borrow_from_the_input() {
    let line = one("cpu_load,hostname=f0201 value=1 1");
    assert!(matches!(
        line.tags().next(),
        Some((Cow::Borrowed(_), Cow::Borrowed(_)))
    ));
    assert!(matches!(line.fields().next(), Some((Cow::Borrowed(_), _))));
}

#[test]
fn skips_blank_and_comment_lines_and_handles_crlf() {
    let batch = "# a comment\r\n\r\n  \n\tcpu value=1 10\r\nmem value=2\r\n  # indented comment\nlast value=3 30";
    let lines: Vec<_> = parse_str(batch).map(Result::unwrap).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].raw(), "cpu value=1 10");
    assert_eq!(lines[0].number(), 4);
    assert_eq!(lines[1].raw(), "mem value=2");
    assert_eq!(lines[1].timestamp(), None);
    assert_eq!(lines[2].number(), 7);
    assert_eq!(lines[2].timestamp(), Some(30));
}

#[test]
fn tolerates_extra_blanks_between_sections() {
    let line = one("cpu,a=b   value=1   1700000000  ");
    assert_eq!(line.timestamp(), Some(1_700_000_000));
    assert_eq!(line.raw(), "cpu,a=b   value=1   1700000000");
    assert_eq!(line.raw_without_timestamp(), "cpu,a=b   value=1");
    assert_eq!(line.raw_fields(), "value=1");
    assert_eq!(line.raw_tags(), "a=b");
    assert_eq!(one("m f=\"x y\",g=2i 5").raw_fields(), "f=\"x y\",g=2i");
    assert!(line.has_one_field());
    assert!(!one("m f=\"x y\",g=2i 5").has_one_field());
    let no_ts = one("cpu value=1  \r\n");
    assert_eq!(no_ts.raw(), "cpu value=1");
}

#[test]
fn negative_and_extreme_timestamps() {
    assert_eq!(one("m v=1 -5").timestamp(), Some(-5));
    assert_eq!(one("m v=1 9223372036854775807").timestamp(), Some(i64::MAX));
    assert_eq!(
        err("m v=1 9223372036854775808").kind,
        ErrorKind::InvalidTimestamp
    );
    assert_eq!(err("m v=1 12.5").kind, ErrorKind::InvalidTimestamp);
    assert_eq!(err("m v=1 abc").kind, ErrorKind::InvalidTimestamp);
    assert_eq!(err("m v=1 +5").kind, ErrorKind::InvalidTimestamp);
}

#[test]
fn a_bad_line_never_hides_the_good_ones() {
    let batch = "cpu value=1 1\nbad line here\ncpu value=\"unterminated 2\nmem value=2 2\n,x=y v=1\nnet value=3 3";
    let results: Vec<_> = parse_str(batch).collect();
    assert_eq!(results.len(), 6);
    let good: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|l| (l.number(), l.measurement().to_owned()))
        .collect();
    assert_eq!(
        good,
        [(1, "cpu".into()), (4, "mem".into()), (6, "net".into())]
    );
    let bad: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| (e.line, e.kind))
        .collect();
    assert_eq!(
        bad,
        [
            (2, ErrorKind::MissingFieldEquals),
            (3, ErrorKind::UnterminatedString),
            (5, ErrorKind::MissingMeasurement)
        ]
    );
}

#[test]
fn error_messages_name_line_column_and_quote_the_input() {
    let cases: &[(&str, &str)] = &[
        (
            ",a=b v=1",
            "at line 1:1: missing measurement name (near \",a=b v=1\")",
        ),
        (
            "cpu,host v=1",
            "at line 1:9: expected '=' after tag key (near \" v=1\")",
        ),
        ("cpu,=h v=1", "at line 1:5: empty tag key (near \"=h v=1\")"),
        (
            "cpu,host= v=1",
            "at line 1:10: empty tag value (near \" v=1\")",
        ),
        (
            "cpu,host=h",
            "at line 1:11: line has no fields (near \"cpu,host=h\")",
        ),
        (
            "cpu,host=h ",
            "at line 1:12: line has no fields (near \"pu,host=h \")",
        ),
        (
            "cpu value 1",
            "at line 1:10: expected '=' after field key (near \" 1\")",
        ),
        ("cpu =1", "at line 1:5: empty field key (near \"=1\")"),
        (
            "cpu value=",
            "at line 1:11: missing field value (near \"cpu value=\")",
        ),
        (
            "cpu value=,x=1",
            "at line 1:11: missing field value (near \",x=1\")",
        ),
        (
            "cpu value=12a",
            "at line 1:11: invalid field value (near \"12a\")",
        ),
        (
            "cpu value=nan",
            "at line 1:11: invalid field value (near \"nan\")",
        ),
        (
            "cpu value=inf",
            "at line 1:11: invalid field value (near \"inf\")",
        ),
        (
            "cpu value=1e400",
            "at line 1:11: float field value out of range (near \"1e400\")",
        ),
        (
            "cpu value=9223372036854775808i",
            "at line 1:11: integer field value out of range (near \"9223372036\")",
        ),
        (
            "cpu value=-1u",
            "at line 1:11: invalid field value (near \"-1u\")",
        ),
        (
            "cpu value=\"abc",
            "at line 1:11: unterminated string field value (near \"\\\"abc\")",
        ),
        (
            "cpu value=\"a\"b",
            "at line 1:14: expected ',' or ' ' after field value (near \"b\")",
        ),
        (
            "cpu value=1 1x",
            "at line 1:13: invalid timestamp (near \"1x\")",
        ),
        (
            "cpu value=1 1 2",
            "at line 1:15: unexpected text after timestamp (near \"2\")",
        ),
        (
            "\n\ncpu,hostname=a,type=hwthread,type-id=17 value=1.5.2 1",
            "at line 3:47: invalid field value (near \"1.5.2 1\")",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(err(input).to_string(), *message, "input {input:?}");
    }
}

#[test]
fn doc_example_error_text() {
    let e = err("mem_used,hostname=f0201 1732870000");
    assert_eq!(
        e.to_string(),
        "at line 1:35: expected '=' after field key (near \"1732870000\")"
    );
}

#[test]
fn invalid_utf8_fails_only_its_own_line() {
    let mut batch = b"cpu value=1 1\ncpu,host=".to_vec();
    batch.extend_from_slice(&[0xff, 0xfe]);
    batch.extend_from_slice(b" value=2 2\nmem value=3 3\n");
    let results: Vec<_> = parse_lines(&batch).collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().measurement(), "cpu");
    let e = results[1].as_ref().unwrap_err();
    assert_eq!((e.line, e.column, e.kind), (2, 10, ErrorKind::InvalidUtf8));
    let last = results[2].as_ref().unwrap();
    assert_eq!((last.number(), last.measurement()), (3, "mem"));
}

#[test]
fn invalid_utf8_at_the_very_start_and_end() {
    let results: Vec<_> = parse_lines(b"\xc3").collect();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].as_ref().unwrap_err().kind,
        ErrorKind::InvalidUtf8
    );
    let results: Vec<_> = parse_lines(b"a v=1\n\xe2\x82").collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().line, 2);
}

#[test]
fn utf8_names_are_accepted() {
    let line = one("temperatur,raum=Küche wert=21.5,einheit=\"°C\" 1700000000");
    assert_eq!(line.tag("raum").as_deref(), Some("Küche"));
    assert_eq!(
        line.field("einheit"),
        Some(FieldValue::String(Cow::Borrowed("°C")))
    );
}

#[test]
fn fast_float_path_matches_the_standard_library() {
    for text in [
        "0",
        "-0",
        "35.5",
        "98.1",
        "187.25",
        "0.1",
        "0.30000000000000004",
        "123456789012345",
        "9007199254740991",
        "9007199254740993",
        "1.7976931348623157",
        "0.000000000000000000001",
        "12345678901234567890",
        "1.",
        ".5",
        "00001.25000",
    ] {
        let expected: f64 = text.parse().unwrap();
        let got = parse_float(text.as_bytes()).unwrap();
        assert_eq!(got.to_bits(), expected.to_bits(), "{text}");
    }
}

proptest! {
    #[test]
    fn float_parsing_agrees_with_std(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        for text in [format!("{v}"), format!("{v:?}"), format!("{v:e}"), format!("{v:.3}")] {
            let expected: f64 = text.parse().unwrap();
            let got = parse_float(text.as_bytes()).unwrap();
            prop_assert_eq!(got.to_bits(), expected.to_bits(), "{}", text);
        }
    }

    #[test]
    fn short_decimals_agree_with_std(int in 0u64..100_000_000, frac in 0u32..1_000_000, neg: bool) {
        let text = format!("{}{int}.{frac}", if neg { "-" } else { "" });
        let expected: f64 = text.parse().unwrap();
        prop_assert_eq!(parse_float(text.as_bytes()).unwrap().to_bits(), expected.to_bits());
    }

    #[test]
    fn never_panics_on_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut count = 0;
        for result in parse_lines(&input) {
            count += 1;
            if let Ok(line) = result {
                // Every accessor works on every line the parser accepted.
                let _ = line.tags().count();
                prop_assert!(line.fields().count() >= 1);
                prop_assert_eq!(line.has_one_field(), line.fields().count() == 1);
                let _ = line.raw_without_timestamp();
            }
        }
        prop_assert!(count <= input.iter().filter(|&&b| b == b'\n').count() + 1);
    }

    #[test]
    fn never_panics_on_line_like_text(input in "[a-z,= \\\\\"\\n\\r#0-9.eiu+-]{0,120}") {
        for line in parse_str(&input).flatten() {
            prop_assert!(line.fields().count() >= 1);
            prop_assert_eq!(line.has_one_field(), line.fields().count() == 1);
        }
    }

    #[test]
    fn round_trip(line in owned_line()) {
        let mut text = String::new();
        write_line(
            &mut text,
            &line.measurement,
            line.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            line.fields.iter().map(|(k, v)| (k.as_str(), v)),
            line.timestamp,
        ).unwrap();
        let parsed: Vec<_> = parse_str(&text).collect();
        prop_assert_eq!(parsed.len(), 1, "{}", text);
        let back = OwnedLine::from(parsed[0].as_ref().unwrap());
        prop_assert_eq!(back, line, "{}", text);
    }
}

fn name() -> impl Strategy<Value = String> {
    // Anything but control characters, and not starting with '#' or a tab.
    "[^\\x00-\\x1f\\x7f#][^\\x00-\\x1f\\x7f]{0,12}"
}

fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Integer),
        any::<u64>().prop_map(FieldValue::UInteger),
        any::<bool>().prop_map(FieldValue::Boolean),
        "[ -~äöü°µ\\n\\r\\t]{0,20}".prop_map(|s| FieldValue::String(Cow::Owned(s))),
    ]
}

fn owned_line() -> impl Strategy<Value = OwnedLine> {
    (
        name(),
        proptest::collection::vec((name(), name()), 0..5),
        proptest::collection::vec((name(), field_value()), 1..4),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(measurement, tags, fields, timestamp)| OwnedLine {
            measurement,
            tags,
            fields,
            timestamp,
        })
}

use super::*;
use crate::config::AnchoredRegex;

const NOW_S: i64 = 1_732_870_000;

fn ctx(cluster: Option<&str>) -> Context {
    Context {
        default_cluster: cluster.map(str::to_owned),
        precision: None,
        now_ns: i128::from(NOW_S) * 1_000_000_000 + 123_456_789,
    }
}

fn store_target() -> Target {
    Target {
        name: "store".into(),
        ccms: true,
        filter: UpstreamFilter::default(),
    }
}

fn ccms_rules() -> Rules {
    Rules {
        validate: ValidateProfile::Ccms,
        ..Rules::default()
    }
}

static STORE: std::sync::LazyLock<[Target; 1]> = std::sync::LazyLock::new(|| [store_target()]);

fn run(body: &str, rules: &Rules, ctx: &Context) -> Processed<'static, Target> {
    process(body.as_bytes(), rules, ctx, &*STORE)
}

fn text(p: &Processed<'_, Target>, i: usize) -> String {
    String::from_utf8(p.routed[i].lines.clone()).unwrap()
}

#[test]
fn unmodified_lines_pass_byte_identical() {
    let body = "cpu_load,cluster=fritz,hostname=f0101,type=node value=12.5 1732870000\n\
                mem_used,cluster=fritz,hostname=f0101,type=node,unit=GBytes value=187.25 1732870000\n";
    let p = run(body, &ccms_rules(), &ctx(None));
    assert_eq!(text(&p, 0), body);
    assert_eq!((p.accepted, p.routed[0].count), (2, 2));
}

#[test]
fn timestamps_are_normalised_to_seconds_keeping_the_rest() {
    let body = "m,cluster=c,hostname=h value=1 1732870000123\n\
                m,cluster=c,hostname=h value=2 1732870000123456\n\
                m,cluster=c,hostname=h value=3 1732870000123456789\n\
                m,cluster=c,hostname=h value=4\n";
    let p = run(body, &ccms_rules(), &ctx(None));
    assert_eq!(
        text(&p, 0),
        "m,cluster=c,hostname=h value=1 1732870000\n\
         m,cluster=c,hostname=h value=2 1732870000\n\
         m,cluster=c,hostname=h value=3 1732870000\n\
         m,cluster=c,hostname=h value=4 1732870000\n"
    );
}

#[test]
fn forced_precision_overrides_detection() {
    let mut c = ctx(Some("c"));
    c.precision = Some(Precision::Millis);
    let p = run("m,hostname=h value=1 1732870000500\n", &ccms_rules(), &c);
    assert_eq!(text(&p, 0), "m,hostname=h value=1 1732870000\n");
}

#[test]
fn undecidable_and_out_of_window_timestamps_are_invalid() {
    let body = "m,cluster=c,hostname=h value=1 12345\n\
                m,cluster=c,hostname=h value=1 1600000000\n\
                m,cluster=c,hostname=h value=1 1832870000\n\
                m,cluster=c,hostname=h value=1 1732870000\n";
    let p = run(body, &ccms_rules(), &ctx(None));
    assert_eq!(p.accepted, 1);
    assert_eq!(p.invalid.get(&Invalid::Timestamp), Some(&1));
    assert_eq!(p.invalid.get(&Invalid::TimestampRange), Some(&2));
    assert!(p.first_error.unwrap().starts_with("line 1:"));
}

#[test]
fn the_window_includes_its_edges() {
    // Defaults: 10 minutes ahead, 7 days back, in the output unit.
    let (ahead, back) = (NOW_S + 600, NOW_S - 7 * 86_400);
    let body = format!(
        "m,cluster=c,hostname=h value=1 {ahead}\n\
         m,cluster=c,hostname=h value=1 {}\n\
         m,cluster=c,hostname=h value=1 {back}\n\
         m,cluster=c,hostname=h value=1 {}\n",
        ahead + 1,
        back - 1
    );
    let p = run(&body, &ccms_rules(), &ctx(None));
    assert_eq!(p.accepted, 2);
    assert_eq!(p.invalid.get(&Invalid::TimestampRange), Some(&2));
    assert_eq!(
        text(&p, 0),
        format!("m,cluster=c,hostname=h value=1 {ahead}\nm,cluster=c,hostname=h value=1 {back}\n")
    );

    // In milliseconds the edge is the millisecond, not the second.
    let mut rules = ccms_rules();
    rules.timestamp.output_precision = Precision::Millis;
    rules.timestamp.max_past = None;
    let now_ms = NOW_S * 1000 + 123;
    let body = format!(
        "m,cluster=c,hostname=h value=1 {}\nm,cluster=c,hostname=h value=1 {}\nm,cluster=c,hostname=h value=1 1\n",
        now_ms + 600_000,
        now_ms + 600_001
    );
    let p = run(&body, &rules, &ctx(None));
    assert_eq!(
        p.accepted, 1,
        "the edge passes, one past it and 1 ms into 1970 do not"
    );
    assert_eq!(p.invalid.get(&Invalid::TimestampRange), Some(&1));
    assert_eq!(p.invalid.get(&Invalid::Timestamp), Some(&1));
}

#[test]
fn missing_timestamp_modes() {
    let body = "m,cluster=c,hostname=h value=1\n";
    let mut drop = ccms_rules();
    drop.timestamp.missing = MissingTimestamp::Drop;
    assert_eq!(
        run(body, &drop, &ctx(None))
            .invalid
            .get(&Invalid::Timestamp),
        Some(&1)
    );
    let mut keep = ccms_rules();
    keep.timestamp.missing = MissingTimestamp::Keep;
    assert_eq!(text(&run(body, &keep, &ctx(None)), 0), body);
}

#[test]
fn ccms_validation_keeps_bad_lines_from_the_store_only() {
    let body = "m,cluster=c,hostname=h foo=1 1732870000\n\
                m,cluster=c,hostname=h value=\"x\" 1732870000\n\
                m,cluster=c value=1 1732870000\n\
                m,cluster=a/b,hostname=h value=1 1732870000\n\
                m,hostname=../h value=1 1732870000\n\
                m,hostname=h value=1 1732870000\n\
                m,cluster=c,hostname=ok value=1 1732870000\n";
    let relay = Target {
        name: "relay".into(),
        ccms: false,
        filter: UpstreamFilter::default(),
    };
    let targets = [store_target(), relay];
    let p = process(body.as_bytes(), &ccms_rules(), &ctx(None), &targets);
    assert_eq!(text(&p, 0), "m,cluster=c,hostname=ok value=1 1732870000\n");
    assert_eq!(
        p.routed[1].count, 7,
        "non-store upstreams get every valid line"
    );
    assert_eq!(
        p.invalid.get(&Invalid::Ccms),
        None,
        "routed somewhere, so not invalid"
    );
    let only_store = run(body, &ccms_rules(), &ctx(None));
    assert_eq!(only_store.invalid.get(&Invalid::Ccms), Some(&6));
    // Without ccms validation the store gets everything (and the relay
    // bisects what it refuses).
    let lax = Rules {
        validate: ValidateProfile::None,
        ..Rules::default()
    };
    assert_eq!(run(body, &lax, &ctx(None)).routed[0].count, 7);
}

#[test]
fn default_cluster_satisfies_ccms_without_rewriting_lines() {
    let body = "m,hostname=h value=1 1732870000\n";
    let p = run(body, &ccms_rules(), &ctx(Some("fritz")));
    assert_eq!(text(&p, 0), body);
    let bad = run(body, &ccms_rules(), &ctx(Some("a b")));
    assert_eq!(bad.invalid.get(&Invalid::Ccms), Some(&1));
}

#[test]
fn materialize_cluster_writes_the_default_as_a_sorted_tag() {
    let rules = Rules {
        materialize_cluster: true,
        ..ccms_rules()
    };
    let p = run(
        "m,hostname=h,type=node value=1 1732870000\n",
        &rules,
        &ctx(Some("fritz")),
    );
    assert_eq!(
        text(&p, 0),
        "m,cluster=fritz,hostname=h,type=node value=1 1732870000\n"
    );
}

#[test]
fn measurement_and_tag_rules() {
    let rules = Rules {
        set: RuleSet {
            drop_measurements: vec!["cpu_guest".to_owned()],
            drop_measurements_regex: vec![AnchoredRegex::new("tmp_.*").unwrap()],
            rename_measurements: [("old".to_owned(), "new".to_owned())].into(),
            drop_tags: vec!["unit".to_owned()],
            rename_tags: [("host".to_owned(), "hostname".to_owned())].into(),
            add_tags: [
                ("rack".to_owned(), "17".to_owned()),
                ("cluster".to_owned(), "x".to_owned()),
            ]
            .into(),
            set_tags: [("type".to_owned(), "node".to_owned())].into(),
            ..RuleSet::default()
        },
        ..ccms_rules()
    };
    let body = "cpu_guest,cluster=c,hostname=h value=1 1732870000\n\
                tmp_x,cluster=c,hostname=h value=1 1732870000\n\
                old,cluster=c,host=h,unit=GB,type=socket value=1 1732870000\n";
    let p = run(body, &rules, &ctx(None));
    assert_eq!(p.filtered, 2);
    assert_eq!(
        text(&p, 0),
        "new,cluster=c,hostname=h,rack=17,type=node value=1 1732870000\n"
    );
}

#[test]
fn keep_measurements_and_filters_route_lines() {
    let rules = Rules {
        set: RuleSet {
            keep_measurements: vec!["a".to_owned(), "b".to_owned()],
            ..RuleSet::default()
        },
        ..Rules::default()
    };
    let only_b = Target {
        name: "b".into(),
        ccms: false,
        filter: UpstreamFilter {
            include_measurements: vec!["b".into()],
            ..UpstreamFilter::default()
        },
    };
    let fritz = Target {
        name: "f".into(),
        ccms: false,
        filter: UpstreamFilter {
            include_clusters: vec!["fritz".into()],
            ..UpstreamFilter::default()
        },
    };
    let body = "a,hostname=h value=1 1732870000\nb,hostname=h value=1 1732870000\nc,hostname=h value=1 1732870000\n";
    let targets = [only_b, fritz];
    let p = process(body.as_bytes(), &rules, &ctx(Some("fritz")), &targets);
    assert_eq!(p.routed[0].count, 1);
    assert_eq!(p.routed[1].count, 2);
    assert_eq!((p.accepted, p.filtered), (2, 1));
}

#[test]
fn syntax_errors_and_long_lines_are_counted() {
    let rules = Rules {
        max_line_bytes: 45,
        ..ccms_rules()
    };
    let long = format!(
        "m,cluster=c,hostname={} value=1 1732870000\n",
        "h".repeat(50)
    );
    let body = format!("broken line\n{long}m,cluster=c,hostname=h value=1 1732870000\n");
    let p = run(&body, &rules, &ctx(None));
    assert_eq!(p.invalid.get(&Invalid::Syntax), Some(&1));
    assert_eq!(p.invalid.get(&Invalid::TooLong), Some(&1));
    assert_eq!(p.accepted, 1);
    assert_eq!(p.invalid_total(), 2);
}

#[test]
fn tag_rules_that_change_nothing_keep_the_line_byte_identical() {
    let rules = Rules {
        set: RuleSet {
            drop_tags: vec!["unit".to_owned()],
            set_tags: [("type".to_owned(), "node".to_owned())].into(),
            ..RuleSet::default()
        },
        ..ccms_rules()
    };
    // Unsorted tags stay unsorted when no rule applies.
    let body = "m,type=node,cluster=c,hostname=h value=1 1732870000\n";
    assert_eq!(text(&run(body, &rules, &ctx(None)), 0), body);
}

#[test]
fn host_and_cluster_come_from_one_pass_with_the_last_of_each_key() {
    let body = b"m,cluster=a,host=h1,hostname=h2,cluster=b value=1 1732870000\n\
                 m,host=only value=1 1732870000\n\
                 m,type=node value=1 1732870000\n";
    let lines: Vec<_> = cc_common::lineproto::parse_lines(body)
        .map(Result::unwrap)
        .collect();
    let got: Vec<_> = lines
        .iter()
        .map(|l| {
            let (h, c) = host_and_cluster(l);
            (h.map(Cow::into_owned), c.map(Cow::into_owned))
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("h2".to_owned()), Some("b".to_owned())),
            (Some("only".to_owned()), None),
            (None, None),
        ]
    );
    // The same as looking the tags up one by one.
    for l in &lines {
        assert_eq!(
            host_and_cluster(l),
            (
                l.tag("hostname").or_else(|| l.tag("host")),
                l.tag("cluster")
            )
        );
    }
}

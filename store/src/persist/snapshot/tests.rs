use super::*;

fn sample() -> Snapshot {
    let mut socket = SnapLevel::default();
    socket.metrics.insert(
        "mem_bw".into(),
        SnapMetric {
            frequency: 60,
            start: 1_700_000_000,
            data: vec![10.25, 11.0],
        },
    );
    let mut root = SnapLevel::default();
    root.metrics.insert(
        "mem_used".into(),
        SnapMetric {
            frequency: 60,
            start: 1_700_000_000,
            data: vec![1024.0, f64::NAN, 1030.5],
        },
    );
    root.children.insert("socket0".into(), socket);
    Snapshot {
        from: 1_700_000_000,
        to: 1_700_043_200,
        root,
    }
}

/// NaN-aware equality of two snapshots.
fn same(a: &Snapshot, b: &Snapshot) -> bool {
    fn level(a: &SnapLevel, b: &SnapLevel) -> bool {
        a.metrics.len() == b.metrics.len()
            && a.metrics
                .iter()
                .zip(&b.metrics)
                .all(|((na, ma), (nb, mb))| {
                    na == nb
                        && ma.frequency == mb.frequency
                        && ma.start == mb.start
                        && ma.data.len() == mb.data.len()
                        && ma
                            .data
                            .iter()
                            .zip(&mb.data)
                            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
                })
            && a.children.len() == b.children.len()
            && a.children
                .iter()
                .zip(&b.children)
                .all(|((na, ca), (nb, cb))| na == nb && level(ca, cb))
    }
    a.from == b.from && a.to == b.to && level(&a.root, &b.root)
}

#[test]
fn json_has_upstream_key_order_and_reads_back() {
    let mut out = Vec::new();
    write_json(&sample(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "{\"metrics\":{\"mem_used\":{\"frequency\":60,\"start\":1700000000,\"data\":[1024.0,null,1030.5]}},\
         \"children\":{\"socket0\":{\"metrics\":{\"mem_bw\":{\"frequency\":60,\"start\":1700000000,\"data\":[10.25,11.0]}},\
         \"children\":{},\"from\":1700000000,\"to\":1700043200}},\"from\":1700000000,\"to\":1700043200}\n"
    );
    let back = read_json(text.as_bytes()).unwrap();
    assert!(same(&back, &sample()));
}

#[test]
fn json_written_by_upstream_reads_with_integers_nulls_and_nested_windows() {
    let upstream = r#"{"metrics":{"flops_any":{"frequency":60,"start":1000,"data":[1,null,2.5]}},
        "children":{"socket0":{"metrics":{},"children":{},"from":5,"to":6}},"from":1000,"to":2000}"#;
    let snap = read_json(upstream.as_bytes()).unwrap();
    assert_eq!((snap.from, snap.to), (1000, 2000));
    let m = &snap.root.metrics["flops_any"];
    assert_eq!(m.data[0], 1.0);
    assert!(m.data[1].is_nan());
    assert!(snap.root.children.contains_key("socket0"));
}

#[test]
fn bin_matches_the_byte_layout() {
    let mut root = SnapLevel::default();
    root.metrics.insert(
        "ab".into(),
        SnapMetric {
            frequency: 60,
            start: 7,
            data: vec![0.5],
        },
    );
    root.children.insert("c".into(), SnapLevel::default());
    let mut out = Vec::new();
    write_bin(
        &Snapshot {
            from: 1,
            to: 2,
            root,
        },
        &mut out,
    )
    .unwrap();
    let mut expected = vec![0x01, 0x00, 0x5B, 0xCC];
    expected.extend_from_slice(&1i64.to_le_bytes());
    expected.extend_from_slice(&2i64.to_le_bytes());
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&[2, 0, b'a', b'b']);
    expected.extend_from_slice(&60i64.to_le_bytes());
    expected.extend_from_slice(&7i64.to_le_bytes());
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x3f]);
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&[1, 0, b'c']);
    expected.extend_from_slice(&0u32.to_le_bytes());
    expected.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(out, expected);
}

#[test]
fn bin_round_trips_at_f32_precision_and_keeps_nan() {
    let mut out = Vec::new();
    write_bin(&sample(), &mut out).unwrap();
    let back = read_bin(out.as_slice()).unwrap();
    assert!(same(&back, &sample()), "all sample values are exact in f32");
    assert_eq!(
        read_bin_window(out.as_slice()).unwrap(),
        (1_700_000_000, 1_700_043_200)
    );
}

#[test]
fn every_truncation_of_a_bin_file_is_an_error() {
    let mut out = Vec::new();
    write_bin(&sample(), &mut out).unwrap();
    for cut in 0..out.len() {
        assert!(read_bin(&out[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn corrupt_bin_counts_fail_without_huge_allocations() {
    let mut out = Vec::new();
    write_bin(&sample(), &mut out).unwrap();
    // The value count of the first metric follows magic, window, metric
    // count, name and frequency/start.
    let at = 4 + 16 + 4 + 2 + "mem_used".len() + 16;
    out[at..at + 4].copy_from_slice(&(MAX_VALUES - 1).to_le_bytes());
    assert!(matches!(
        read_bin(out.as_slice()),
        Err(SnapshotError::Io(_))
    ));
    out[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        read_bin(out.as_slice()),
        Err(SnapshotError::Corrupt(_))
    ));
    out[0] = 0;
    assert!(matches!(
        read_bin(out.as_slice()),
        Err(SnapshotError::BadMagic(_))
    ));
}

#[test]
fn file_names_parse_only_when_numeric() {
    assert_eq!(
        parse_file_name("1700000000.bin"),
        Some((1_700_000_000, Format::Bin))
    );
    assert_eq!(parse_file_name("12.json"), Some((12, Format::Json)));
    for name in [
        "1.bin.tmp",
        "x.json",
        ".bin",
        "current.wal",
        "-1.bin",
        "1e3.json",
    ] {
        assert_eq!(parse_file_name(name), None, "{name}");
    }
    assert!(has_snapshot_extension("x.json"));
}

use std::fs;
use std::path::Path;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use tempfile::TempDir;

use super::*;

/// One archived row: cluster, hostname, metric, scope, scope_id, timestamp,
/// frequency, value.
type Row = (String, String, String, String, String, i64, i64, f32);

fn metric(start: i64, frequency: i64, data: &[f64]) -> SnapMetric {
    SnapMetric {
        frequency,
        start,
        data: data.to_vec(),
    }
}

fn snap(from: i64, to: i64, root: SnapLevel) -> Snapshot {
    Snapshot { from, to, root }
}

fn level(metrics: &[(&str, SnapMetric)], children: &[(&str, SnapLevel)]) -> SnapLevel {
    SnapLevel {
        metrics: metrics
            .iter()
            .map(|(n, m)| ((*n).to_owned(), m.clone()))
            .collect(),
        children: children
            .iter()
            .map(|(n, l)| ((*n).to_owned(), l.clone()))
            .collect(),
    }
}

/// A one-metric host level.
fn simple(from: i64, to: i64) -> Snapshot {
    snap(
        from,
        to,
        level(&[("load", metric(from, 60, &[1.0, 2.0]))], &[]),
    )
}

fn host_dir(root: &Path, cluster: &str, host: &str) -> std::path::PathBuf {
    let dir = root.join(cluster).join(host);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn put(dir: &Path, name: &str, s: &Snapshot) {
    let mut bytes = Vec::new();
    if name.ends_with(".json") {
        snapshot::write_json(s, &mut bytes).unwrap();
    } else {
        snapshot::write_bin(s, &mut bytes).unwrap();
    }
    fs::write(dir.join(name), bytes).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

fn read_rows(path: &Path) -> Vec<Row> {
    let reader = SerializedFileReader::new(fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            (
                row.get_string(0).unwrap().clone(),
                row.get_string(1).unwrap().clone(),
                row.get_string(2).unwrap().clone(),
                row.get_string(3).unwrap().clone(),
                row.get_string(4).unwrap().clone(),
                row.get_long(5).unwrap(),
                row.get_long(6).unwrap(),
                row.get_float(7).unwrap(),
            )
        })
        .collect()
}

/// A row from its five string columns and the three others.
fn row([c, h, m, s, id]: [&str; 5], ts: i64, f: i64, v: f32) -> Row {
    (
        c.to_owned(),
        h.to_owned(),
        m.to_owned(),
        s.to_owned(),
        id.to_owned(),
        ts,
        f,
        v,
    )
}

#[test]
fn parses_scope_from_level_name() {
    let cases = [
        ("socket12", "socket", "12"),
        ("cpu0", "hwthread", "0"),
        (
            "accelerator00000000:49:00.0",
            "accelerator",
            "00000000:49:00.0",
        ),
        ("socketX", "socketX", ""),
        ("0", "0", ""),
        ("memoryDomain3", "memoryDomain", "3"),
        ("core7", "core", "7"),
        ("hwthread15", "hwthread", "15"),
        ("unknown", "unknown", ""),
        ("socket", "socket", ""),
    ];
    for (name, scope, id) in cases {
        assert_eq!(
            parse_scope(name),
            (scope.to_owned(), id.to_owned()),
            "{name}"
        );
    }
}

#[test]
fn archives_host_and_socket_rows_without_nans() {
    let tmp = TempDir::new().unwrap();
    let (root, archive) = (tmp.path().join("cp"), tmp.path().join("archive"));
    let dir = host_dir(&root, "fritz", "node001");
    let socket = level(
        &[("mem_bw", metric(1000, 60, &[f64::NAN, 10.0, 11.0]))],
        &[(
            "core3",
            level(&[("ipc", metric(1000, 60, &[f64::NAN, f64::NAN]))], &[]),
        )],
    );
    let root_level = level(
        &[("cpu_load", metric(1000, 60, &[0.5, f64::NAN, 0.75]))],
        &[("socket0", socket)],
    );
    put(&dir, "1000.bin", &snap(1000, 1180, root_level));

    let report = cleanup(&root, 2000, Some(&archive), 1).unwrap();
    assert_eq!(report.errors, Vec::<String>::new());
    assert_eq!((report.files, report.rows), (1, 4));
    let rows = read_rows(&archive.join("fritz/2000.parquet"));
    assert_eq!(
        rows,
        vec![
            row(["fritz", "node001", "cpu_load", "node", ""], 1000, 60, 0.5),
            row(["fritz", "node001", "cpu_load", "node", ""], 1120, 60, 0.75),
            row(
                ["fritz", "node001", "mem_bw", "socket", "0"],
                1060,
                60,
                10.0
            ),
            row(
                ["fritz", "node001", "mem_bw", "socket", "0"],
                1120,
                60,
                11.0
            ),
        ]
    );
    assert!(names(&dir).is_empty());
}

#[test]
fn nested_levels_are_scoped_by_their_own_name() {
    let tmp = TempDir::new().unwrap();
    let (root, archive) = (tmp.path().join("cp"), tmp.path().join("archive"));
    let dir = host_dir(&root, "fritz", "n1");
    let core = level(&[("ipc", metric(1000, 10, &[1.5]))], &[]);
    let socket = level(&[], &[("core3", core)]);
    let root_level = level(
        &[],
        &[
            ("socket1", socket),
            ("cpu7", level(&[("load", metric(1000, 10, &[2.0]))], &[])),
            ("gpu_x", level(&[("util", metric(1000, 10, &[3.0]))], &[])),
        ],
    );
    put(&dir, "1000.json", &snap(1000, 1010, root_level));

    let report = cleanup(&root, 2000, Some(&archive), 1).unwrap();
    assert_eq!((report.files, report.rows), (1, 3));
    assert_eq!(
        read_rows(&archive.join("fritz/2000.parquet")),
        vec![
            row(["fritz", "n1", "load", "hwthread", "7"], 1000, 10, 2.0),
            row(["fritz", "n1", "util", "gpu_x", ""], 1000, 10, 3.0),
            row(["fritz", "n1", "ipc", "core", "3"], 1000, 10, 1.5),
        ]
    );
}

#[test]
fn archive_roundtrip_of_json_file() {
    let tmp = TempDir::new().unwrap();
    let (root, archive) = (tmp.path().join("cp"), tmp.path().join("archive"));
    let dir = host_dir(&root, "testcluster", "node001");
    let root_level = level(
        &[
            ("cpu_load", metric(1000, 60, &[1.0, 2.0, 3.0])),
            ("flops_any", metric(1000, 60, &[4.0, 5.0, 6.0])),
            ("mem_used", metric(1000, 60, &[7.0, 8.0, 9.5])),
        ],
        &[],
    );
    put(&dir, "1000.json", &snap(1000, 1180, root_level));
    fs::write(dir.join("current.wal"), b"wal").unwrap();

    let report = cleanup(&root, 2000, Some(&archive), 2).unwrap();
    assert_eq!(report.errors, Vec::<String>::new());
    assert_eq!((report.files, report.rows), (1, 9));
    assert_eq!(names(&dir), vec!["current.wal"]);

    let path = archive.join("testcluster/2000.parquet");
    let reader = SerializedFileReader::new(fs::File::open(&path).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.num_row_groups(), 1);
    assert_eq!(meta.file_metadata().num_rows(), 9);
    let schema = meta.file_metadata().schema_descr();
    let expected = [
        ("cluster", PhysicalType::BYTE_ARRAY),
        ("hostname", PhysicalType::BYTE_ARRAY),
        ("metric", PhysicalType::BYTE_ARRAY),
        ("scope", PhysicalType::BYTE_ARRAY),
        ("scope_id", PhysicalType::BYTE_ARRAY),
        ("timestamp", PhysicalType::INT64),
        ("frequency", PhysicalType::INT64),
        ("value", PhysicalType::FLOAT),
    ];
    assert_eq!(schema.num_columns(), expected.len());
    for (i, (name, physical)) in expected.iter().enumerate() {
        let column = schema.column(i);
        assert_eq!(column.name(), *name);
        assert_eq!(column.physical_type(), *physical, "{name}");
        assert_eq!(
            column.self_type().get_basic_info().repetition(),
            Repetition::REQUIRED,
            "{name}"
        );
        if *physical == PhysicalType::BYTE_ARRAY {
            assert_eq!(column.logical_type_ref(), Some(&LogicalType::String));
            assert_eq!(column.converted_type(), ConvertedType::UTF8);
        } else {
            assert_eq!(column.logical_type_ref(), None, "{name}");
        }
        assert!(matches!(
            meta.row_group(0).column(i).compression(),
            Compression::ZSTD(_)
        ));
    }

    let rows = read_rows(&path);
    let mut expected = Vec::new();
    for (name, values) in [
        ("cpu_load", [1.0, 2.0, 3.0]),
        ("flops_any", [4.0, 5.0, 6.0]),
        ("mem_used", [7.0, 8.0, 9.5]),
    ] {
        for (i, v) in values.into_iter().enumerate() {
            expected.push(row(
                ["testcluster", "node001", name, "node", ""],
                1000 + 60 * i as i64,
                60,
                v,
            ));
        }
    }
    assert_eq!(rows, expected);
}

#[test]
fn archive_writes_one_row_group_per_host_with_files_in_order() {
    let tmp = TempDir::new().unwrap();
    let (root, archive) = (tmp.path().join("cp"), tmp.path().join("archive"));
    for host in ["a", "b", "c"] {
        let dir = host_dir(&root, "fritz", host);
        put(&dir, "1000.bin", &simple(1000, 1120));
        put(&dir, "500.json", &simple(500, 1000));
    }
    let other = host_dir(&root, "alex", "x");
    put(&other, "700.bin", &simple(700, 820));

    let report = cleanup(&root, 2000, Some(&archive), 2).unwrap();
    assert_eq!(report.errors, Vec::<String>::new());
    assert_eq!((report.files, report.rows), (7, 14));

    let path = archive.join("fritz/2000.parquet");
    let reader = SerializedFileReader::new(fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 3);
    let rows = read_rows(&path);
    assert_eq!(rows.len(), 12);
    let mut hosts_seen = Vec::new();
    for group in rows.chunks(4) {
        let host = &group[0].1;
        assert!(group.iter().all(|r| &r.1 == host));
        hosts_seen.push(host.clone());
        let times: Vec<i64> = group.iter().map(|r| r.5).collect();
        assert_eq!(times, vec![500, 560, 1000, 1060]);
    }
    hosts_seen.sort();
    assert_eq!(hosts_seen, vec!["a", "b", "c"]);
    assert_eq!(read_rows(&archive.join("alex/2000.parquet")).len(), 2);
}

#[test]
fn archive_overwrites_existing_file_and_leaves_no_tmp() {
    let tmp = TempDir::new().unwrap();
    let (root, archive) = (tmp.path().join("cp"), tmp.path().join("archive"));
    let dir = host_dir(&root, "fritz", "n1");
    put(&dir, "1000.bin", &simple(1000, 1120));
    fs::create_dir_all(archive.join("fritz")).unwrap();
    fs::write(archive.join("fritz/2000.parquet"), b"old junk").unwrap();

    let report = cleanup(&root, 2000, Some(&archive), 1).unwrap();
    assert_eq!((report.files, report.rows), (1, 2));
    assert_eq!(read_rows(&archive.join("fritz/2000.parquet")).len(), 2);
    assert_eq!(names(&archive.join("fritz")), vec!["2000.parquet"]);
}

#[test]
fn archive_without_rows_writes_nothing_and_keeps_files() {
    let tmp = TempDir::new().unwrap();
    let (root, archive) = (tmp.path().join("cp"), tmp.path().join("archive"));
    let dir = host_dir(&root, "fritz", "n1");
    let gaps = level(&[("load", metric(1000, 60, &[f64::NAN, f64::NAN]))], &[]);
    put(&dir, "1000.bin", &snap(1000, 1120, gaps));

    let report = cleanup(&root, 2000, Some(&archive), 1).unwrap();
    assert_eq!(report, CleanupReport::default());
    assert_eq!(names(&dir), vec!["1000.bin"]);
    assert!(!archive.join("fritz/2000.parquet").exists());
    assert!(!archive.join("fritz/2000.parquet.tmp").exists());
}

#[test]
fn archive_keeps_and_reports_corrupt_files() {
    let tmp = TempDir::new().unwrap();
    let (root, archive) = (tmp.path().join("cp"), tmp.path().join("archive"));
    let dir = host_dir(&root, "fritz", "n1");
    put(&dir, "1000.bin", &simple(1000, 1120));
    // A valid header, then the level is cut short.
    let mut truncated = Vec::new();
    snapshot::write_bin(&simple(1200, 1320), &mut truncated).unwrap();
    truncated.truncate(30);
    fs::write(dir.join("1200.bin"), truncated).unwrap();
    fs::write(dir.join("1300.json"), b"{\"metrics\":").unwrap();

    let report = cleanup(&root, 2000, Some(&archive), 1).unwrap();
    assert_eq!((report.files, report.rows), (1, 2));
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert!(report.errors[0].contains("1200.bin"), "{:?}", report.errors);
    assert!(
        report.errors[1].contains("1300.json"),
        "{:?}",
        report.errors
    );
    assert_eq!(names(&dir), vec!["1200.bin", "1300.json"]);
}

#[test]
fn archive_keeps_files_when_the_archive_cannot_be_written() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("cp");
    let dir = host_dir(&root, "fritz", "n1");
    put(&dir, "1000.bin", &simple(1000, 1120));
    // The archive "directory" is a file.
    let archive = tmp.path().join("archive");
    fs::write(&archive, b"").unwrap();

    let report = cleanup(&root, 2000, Some(&archive), 1).unwrap();
    assert_eq!((report.files, report.rows), (0, 0));
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(names(&dir), vec!["1000.bin"]);
}

#[test]
fn delete_removes_only_files_entirely_before_the_cutoff() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("cp");
    let dir = host_dir(&root, "fritz", "n1");
    put(&dir, "1000.json", &simple(1000, 1500)); // deleted
    put(&dir, "1500.bin", &simple(1500, 2000)); // deleted: to == cutoff
    put(&dir, "1900.bin", &simple(1900, 2600)); // kept: window reaches past the cutoff
    put(&dir, "1950.json", &simple(1950, 2600)); // kept: same, JSON
    put(&dir, "3000.bin", &simple(3000, 3600)); // kept: newer
    put(&dir, "0.bin", &simple(0, 100)); // kept: zero name
    put(&dir, "abc.json", &simple(0, 100)); // kept and reported
    fs::write(dir.join("current.wal"), b"wal").unwrap();
    fs::write(dir.join("1100.bin.tmp"), b"tmp").unwrap();
    fs::write(dir.join("1200.bin.quarantined"), b"bad").unwrap();
    fs::create_dir(dir.join("1300.json")).unwrap(); // a directory: ignored
    let other = host_dir(&root, "alex", "n2");
    put(&other, "100.bin", &simple(100, 200)); // deleted

    let report = cleanup(&root, 2000, None, 2).unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(report.rows, 0);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].contains("abc.json"));
    assert_eq!(
        names(&dir),
        vec![
            "0.bin",
            "1100.bin.tmp",
            "1200.bin.quarantined",
            "1300.json",
            "1900.bin",
            "1950.json",
            "3000.bin",
            "abc.json",
            "current.wal"
        ]
    );
    assert!(names(&other).is_empty());
}

#[test]
fn delete_keeps_and_reports_corrupt_files() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("cp");
    let dir = host_dir(&root, "fritz", "n1");
    fs::write(
        dir.join("1000.bin"),
        b"\x00\x01\x02\x03garbage garbage garbage",
    )
    .unwrap();
    fs::write(dir.join("1100.bin"), b"\x01\x00\x5b\xcc").unwrap(); // header cut short
    fs::write(dir.join("1200.json"), b"{\"from\":1200,").unwrap();
    put(&dir, "1300.bin", &simple(1300, 1400));

    let report = cleanup(&root, 2000, None, 1).unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(report.errors.len(), 3, "{:?}", report.errors);
    assert!(report.errors[0].contains("1000.bin"));
    assert!(report.errors[0].contains("magic"), "{}", report.errors[0]);
    assert_eq!(names(&dir), vec!["1000.bin", "1100.bin", "1200.json"]);
}

#[test]
fn missing_root_is_nothing_to_do() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("nope");
    assert_eq!(
        cleanup(&root, 2000, None, 4).unwrap(),
        CleanupReport::default()
    );
    assert_eq!(
        cleanup(&root, 2000, Some(&tmp.path().join("a")), 4).unwrap(),
        CleanupReport::default()
    );
    assert!(!tmp.path().join("a").exists());
}

#[test]
fn parallel_helper_stops_early_without_deadlock() {
    let items: Vec<usize> = (0..100).collect();
    let mut seen = 0;
    for_each_parallel(
        &items,
        3,
        |i| *i,
        |_| {
            seen += 1;
            seen < 5
        },
    );
    assert_eq!(seen, 5);
    let mut total = 0;
    for_each_parallel(
        &items,
        8,
        |i| *i,
        |i| {
            total += i;
            true
        },
    );
    assert_eq!(total, 4950);
}

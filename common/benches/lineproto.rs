//! Line-protocol parsing throughput: our parser beside the `influxdb-line-protocol` crate.
//!
//! Both parse the same realistic ClusterCockpit batch (hwthread-, socket- and
//! node-level lines of several hosts, second timestamps) and touch what a
//! consumer needs: the measurement, every tag and the numeric value.
//!
//! Run: `cargo bench -p cc-common --bench lineproto`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cc_common::lineproto;

/// About 10 000 lines: 8 hosts × (72 hwthreads × 3 metrics + 2 sockets × 2 + 10 node metrics)
/// repeated over 5 timestamps, as a rack relay receives them.
fn batch() -> String {
    let mut out = String::new();
    let mut n: u64 = 0;
    let value = |n: &mut u64| {
        *n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = (*n >> 40) % 100_000;
        format!("{}.{}", v / 100, v % 100)
    };
    for step in 0..5u64 {
        let ts = 1_732_870_000 + step * 10;
        for host in 0..8 {
            for metric in ["cpu_load", "cpu_user", "flops_any"] {
                for hw in 0..72 {
                    let v = value(&mut n);
                    out.push_str(&format!(
                        "{metric},cluster=fritz,hostname=f02{host:02},type=hwthread,type-id={hw} value={v} {ts}\n"
                    ));
                }
            }
            for metric in ["mem_bw", "cpu_power"] {
                for socket in 0..2 {
                    let v = value(&mut n);
                    out.push_str(&format!(
                        "{metric},cluster=fritz,hostname=f02{host:02},type=socket,type-id={socket} value={v} {ts}\n"
                    ));
                }
            }
            for metric in [
                "mem_used",
                "net_bytes_in",
                "net_bytes_out",
                "ib_recv",
                "ib_xmit",
                "lustre_read_bw",
                "lustre_write_bw",
                "nfs4_total",
                "disk_free",
                "load_one",
            ] {
                let v = value(&mut n);
                out.push_str(&format!(
                    "{metric},cluster=fritz,hostname=f02{host:02},type=node value={v} {ts}\n"
                ));
            }
        }
    }
    out
}

fn parse(c: &mut Criterion) {
    let input = batch();
    // Both parsers must accept every line, or the comparison is void.
    assert!(lineproto::parse_lines(input.as_bytes()).all(|l| l.is_ok()));
    assert!(influxdb_line_protocol::parse_lines(&input).all(|l| l.is_ok()));
    let mut group = c.benchmark_group("lineproto");
    group.throughput(Throughput::Bytes(input.len() as u64));

    group.bench_function("cc_common", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut tags = 0usize;
            let mut bytes = 0usize;
            for line in lineproto::parse_lines(black_box(input.as_bytes())) {
                let Ok(line) = line else { continue };
                bytes += line.measurement().len();
                for (k, v) in line.tags() {
                    tags += k.len() + v.len();
                }
                sum += line.first_field().1.as_f64().unwrap_or(0.0);
            }
            black_box((sum, tags, bytes))
        })
    });

    // The floor: split lines and sections at the first separators, no
    // escapes, no validation beyond the float parse. Not a usable parser;
    // it shows what the hardware allows.
    group.bench_function("minimal_scanner", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut tags = 0usize;
            let mut bytes = 0usize;
            for line in black_box(input.as_str()).split_terminator('\n') {
                let mut sections = line.splitn(3, ' ');
                let series = sections.next().unwrap_or("");
                let fields = sections.next().unwrap_or("");
                let mut parts = series.split(',');
                bytes += parts.next().unwrap_or("").len();
                for tag in parts {
                    if let Some((k, v)) = tag.split_once('=') {
                        tags += k.len() + v.len();
                    }
                }
                if let Some((_, v)) = fields.split_once('=') {
                    sum += v.parse::<f64>().unwrap_or(0.0);
                }
                black_box(sections.next());
            }
            black_box((sum, tags, bytes))
        })
    });

    group.bench_function("influxdb_line_protocol", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut tags = 0usize;
            let mut bytes = 0usize;
            for line in influxdb_line_protocol::parse_lines(black_box(&input)) {
                let Ok(line) = line else { continue };
                bytes += line.series.measurement.as_str().len();
                if let Some(tag_set) = &line.series.tag_set {
                    for (k, v) in tag_set {
                        tags += k.as_str().len() + v.as_str().len();
                    }
                }
                if let Some((_, influxdb_line_protocol::FieldValue::F64(v))) =
                    line.field_set.first()
                {
                    sum += v;
                }
            }
            black_box((sum, tags, bytes))
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);

//! Number formatting of query responses: the fast fixed-decimal writer
//! against `format!`-style writing, on one host's worth of data (72
//! hwthreads × 24 h at 10 s = 622 080 values).

use std::hint::black_box;
use std::io::Write as _;

use cc_store::stats::{DATA_DECIMALS, write_fixed, write_fixed_array};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Values in one response: 72 hwthreads × 8640 points.
const VALUES: usize = 72 * 8640;

/// Realistic metric values: 0..100 with up to three decimals, about 1 % NaN
/// (gaps), from a fixed-seed generator.
fn values() -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..VALUES)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = state >> 33;
            match r % 100 {
                0 => f64::NAN,
                1..=40 => (r % 10_000) as f64 / 100.0,
                41..=70 => (r % 100_000) as f64 / 1000.0,
                _ => (r % 1_000) as f64 / 10.0,
            }
        })
        .collect()
}

/// The straightforward writer: `{:.3}` through `std::fmt`.
fn write_with_format(out: &mut Vec<u8>, values: &[f64]) {
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if v.is_finite() {
            let _ = write!(out, "{v:.3}");
        } else {
            out.extend_from_slice(b"null");
        }
    }
    out.push(b']');
}

fn numfmt(c: &mut Criterion) {
    let data = values();
    let mut out = Vec::with_capacity(VALUES * 8);
    let mut group = c.benchmark_group("numfmt");
    group.throughput(Throughput::Elements(VALUES as u64));
    group.bench_function("write_fixed_array", |b| {
        b.iter(|| {
            out.clear();
            write_fixed_array(&mut out, black_box(&data), DATA_DECIMALS);
            black_box(out.len())
        });
    });
    group.bench_function("write_fixed_loop", |b| {
        b.iter(|| {
            out.clear();
            for &v in black_box(&data) {
                write_fixed(&mut out, v, DATA_DECIMALS);
                out.push(b',');
            }
            black_box(out.len())
        });
    });
    group.bench_function("format_macro", |b| {
        b.iter(|| {
            out.clear();
            write_with_format(&mut out, black_box(&data));
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, numfmt);
criterion_main!(benches);

use super::*;
use proptest::prelude::*;

/// A deterministic, wiggly series of `n` points.
fn series(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 * 0.37).sin() * 50.0 + (i % 7) as f64)
        .collect()
}

/// Bitwise comparison, so NaN equals NaN.
fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Whether `sub` is a subsequence of `full` (bitwise values, index order).
fn is_subsequence(sub: &[f64], full: &[f64]) -> bool {
    let mut rest = full.iter();
    sub.iter().all(|s| rest.any(|f| f.to_bits() == s.to_bits()))
}

#[test]
fn keeps_first_and_last_points() {
    let data = series(5000);
    let (out, res) = lttb(&data, 10, 60).unwrap();
    assert_eq!(res, 60);
    assert_eq!(out.first(), data.first());
    assert_eq!(out.last(), data.last());
}

#[test]
fn output_has_n_over_step_points() {
    let data = series(8640);
    for (r, expected) in [(20, 4320), (30, 2880), (60, 1440), (600, 144), (3600, 24)] {
        let (out, res) = lttb(&data, 10, r).unwrap();
        assert_eq!(out.len(), expected, "resolution {r}");
        assert_eq!(res, r);
    }
    // Floor division: 1001 / 2 = 500.
    let (out, _) = lttb(&series(1001), 10, 20).unwrap();
    assert_eq!(out.len(), 500);
}

#[test]
fn rejects_resolution_that_is_not_a_multiple() {
    let err = lttb(&series(5000), 10, 25).unwrap_err();
    assert_eq!(
        err,
        ResampleError::NotMultiple {
            frequency: 10,
            resolution: 25
        }
    );
    assert_eq!(
        err.to_string(),
        "new sampling frequency (25) must be a multiple of old frequency (10)"
    );
    // Even when the series is far too short to be downsampled.
    assert!(lttb(&[1.0, 2.0, 3.0], 60, 90).is_err());
    assert!(lttb(&[], 60, 90).is_err());
    assert!(lttb_owned(vec![1.0], 60, 90).is_err());
}

#[test]
fn short_series_pass_through_with_native_frequency() {
    for n in [0, 1, 2, 3, 500, MIN_POINTS - 1] {
        let data = series(n);
        let (out, res) = lttb(&data, 10, 60).unwrap();
        assert_eq!(out, data, "length {n}");
        assert_eq!(res, 10);
    }
    // Exactly the minimum is downsampled.
    let (out, res) = lttb(&series(MIN_POINTS), 10, 20).unwrap();
    assert_eq!((out.len(), res), (MIN_POINTS / 2, 20));
}

#[test]
fn resolution_not_coarser_than_frequency_passes_through() {
    let data = series(5000);
    for (f, r) in [
        (60, 60),
        (60, 30),
        (60, 7),
        (60, 0),
        (0, 60),
        (0, 0),
        (60, -60),
    ] {
        let (out, res) = lttb(&data, f, r).unwrap();
        assert_eq!(out, data, "f {f} r {r}");
        assert_eq!(res, f);
    }
}

#[test]
fn too_coarse_resolution_passes_through() {
    // M = 1000 / 2000 = 0.
    let data = series(1000);
    let (out, res) = lttb(&data, 1, 2000).unwrap();
    assert_eq!((out, res), (data, 1));
}

#[test]
fn one_or_two_target_points_keep_the_ends() {
    let data = series(1000);
    let ends = vec![data[0], data[999]];
    // M = 1: upstream emits first and last.
    assert_eq!(lttb(&data, 1, 1000).unwrap(), (ends.clone(), 1000));
    // M = 2: upstream divides by zero, but still emits first and last.
    assert_eq!(lttb(&data, 1, 500).unwrap(), (ends.clone(), 500));
    assert_eq!(lttb_owned(data, 1, 500).unwrap(), (ends, 500));
}

#[test]
fn negative_frequency_passes_through() {
    // Upstream would panic (negative length); we leave the series alone.
    let data = series(2000);
    assert_eq!(lttb(&data, -10, 20).unwrap(), (data, -10));
}

#[test]
fn owned_variant_returns_the_same_allocation_when_unchanged() {
    let data = series(100);
    let ptr = data.as_ptr();
    let (out, res) = lttb_owned(data, 10, 60).unwrap();
    assert_eq!(res, 10);
    assert_eq!(out.as_ptr(), ptr);
}

#[test]
fn owned_variant_downsamples_in_place() {
    let data = series(3000);
    let expected = lttb(&data, 10, 30).unwrap();
    let ptr = data.as_ptr();
    let got = lttb_owned(data, 10, 30).unwrap();
    assert_eq!(got, expected);
    assert_eq!(got.0.as_ptr(), ptr);
}

#[test]
fn hand_computed_small_example() {
    // N = 7, M = 4: width = 5 / 2 = 2.5, first bucket 1..3.
    // Bucket 0: next bucket 3..=5 (6 clamped to N-2) has centroid (4, 13/3);
    //   areas from point (0, 0): j=1 → |-1·13/3 + 4·1|/2 = 1/6,
    //   j=2 → |-2·13/3 + 4·5|/2 = 17/3 → index 2 (value 5).
    // Bucket 1: candidates 3..5, next bucket is the single point (5, 3);
    //   from (2, 5): j=3 → |(-1)(-2) - (-3)(-3)|/2 = 3.5,
    //   j=4 → |(-2)(-2) - (-3)(3)|/2 = 6.5 → index 4 (value 8).
    let data = [0.0, 1.0, 5.0, 2.0, 8.0, 3.0, 0.0];
    assert_eq!(lttb_points(&data, 4), vec![0.0, 5.0, 8.0, 0.0]);
}

#[test]
fn equal_areas_pick_the_first_candidate() {
    // Bucket 0: next bucket 3..=5 = (-1, 0, 1) has centroid (4, 0); from
    // (0, 0) both candidates (1, 1) and (2, -1) have area 2 → index 1.
    // Bucket 1: from (1, 1) towards (5, 1): j=3 → 4, j=4 → 2 → index 3.
    let data = [0.0, 1.0, -1.0, -1.0, 0.0, 1.0, 0.0];
    assert_eq!(lttb_points(&data, 4), vec![0.0, 1.0, -1.0, 0.0]);
}

#[test]
fn three_target_points_use_an_empty_centroid_bucket() {
    // M = 3: width = N - 2, so the next bucket of the only loop step is empty,
    // its centroid NaN, every area NaN, and the last candidate (N-2) wins.
    let data = [0.0, 9.0, 1.0, 4.0, 0.5];
    assert_eq!(lttb_points(&data, 3), vec![0.0, 4.0, 0.5]);
}

#[test]
fn nan_candidate_takes_its_bucket() {
    // Bucket 0 candidates: index 1 (finite area) then index 2 (NaN → wins).
    // Bucket 1 starts from a NaN point: every area is NaN → last candidate.
    let data = [0.0, 1.0, f64::NAN, 2.0, 8.0, 3.0, 0.0];
    assert!(same(&lttb_points(&data, 4), &[0.0, f64::NAN, 8.0, 0.0]));
}

#[test]
fn nan_area_is_not_displaced_by_a_larger_finite_area() {
    // Index 2 would have by far the largest area, but index 1 is NaN first.
    let data = [0.0, f64::NAN, 100.0, 2.0, 8.0, 3.0, 0.0];
    assert!(same(&lttb_points(&data, 4), &[0.0, f64::NAN, 8.0, 0.0]));
}

#[test]
fn nan_in_centroid_makes_the_last_candidate_win() {
    // Bucket 0: next bucket 3..=5 contains NaN → all areas NaN → index 2 (5),
    // although index 1 (9) would have the larger area otherwise.
    // Bucket 1: centroid (5, 3) is finite; candidate 4 is NaN → wins.
    let data = [0.0, 9.0, 5.0, 2.0, f64::NAN, 3.0, 0.0];
    assert!(same(&lttb_points(&data, 4), &[0.0, 5.0, f64::NAN, 0.0]));
    // Without the NaN, index 1 (area 9) beats index 2.
    let clean = [0.0, 9.0, 5.0, 2.0, 8.0, 3.0, 0.0];
    assert_eq!(lttb_points(&clean, 4)[1], 9.0);
}

#[test]
fn bucket_edges_follow_upstream_float_arithmetic() {
    // N = 1000, M = 333: width = 998 / 331 is not exact; check every output
    // comes from the bucket the f64 arithmetic assigns it to, by tagging each
    // input value with its index and making the bucket's last index the
    // clear winner: a spike at every index.
    let n = 1000;
    let m = 333;
    let data: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let out = lttb_points(&data, m);
    assert_eq!(out.len(), m);
    let width = (n - 2) as f64 / (m - 2) as f64;
    for (k, &v) in out.iter().enumerate().skip(1).take(m - 2) {
        let lo = if k == 1 {
            1
        } else {
            ((k - 1) as f64 * width) as usize + 1
        };
        let hi = (k as f64 * width) as usize + 1; // exclusive
        let idx = v as usize;
        assert!(
            (lo..hi).contains(&idx),
            "point {k}: {idx} not in {lo}..{hi}"
        );
    }
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => -1e3..1e3f64,
        1 => Just(f64::NAN),
        1 => Just(0.0),
    ]
}

proptest! {
    #[test]
    fn downsampled_output_is_an_ordered_subsequence(
        data in prop::collection::vec(value(), 900..2600),
        frequency in 1i64..=60,
        step in 2i64..=40,
    ) {
        let resolution = frequency * step;
        let (out, res) = lttb(&data, frequency, resolution).unwrap();
        let m = data.len() / step as usize;
        if data.len() < MIN_POINTS || m == 0 {
            prop_assert!(same(&out, &data));
            prop_assert_eq!(res, frequency);
        } else {
            prop_assert_eq!(out.len(), m.max(2));
            prop_assert_eq!(res, resolution);
            prop_assert!(is_subsequence(&out, &data));
            prop_assert_eq!(out[0].to_bits(), data[0].to_bits());
            prop_assert_eq!(out[out.len() - 1].to_bits(), data[data.len() - 1].to_bits());
        }
        let (owned, owned_res) = lttb_owned(data.clone(), frequency, resolution).unwrap();
        prop_assert!(same(&owned, &out));
        prop_assert_eq!(owned_res, res);
    }

    #[test]
    fn small_lttb_points_is_an_ordered_subsequence(
        data in prop::collection::vec(value(), 3..60),
        m in 1usize..60,
    ) {
        let out = lttb_points(&data, m);
        if m >= data.len() {
            prop_assert!(same(&out, &data));
        } else {
            prop_assert_eq!(out.len(), m.max(2));
            prop_assert!(is_subsequence(&out, &data));
        }
        let mut owned = data.clone();
        lttb_in_place(&mut owned, m);
        prop_assert!(same(&owned, &out));
    }
}

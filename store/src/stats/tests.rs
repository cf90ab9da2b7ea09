use super::*;
use proptest::prelude::*;

/// What upstream prints (Go's `strconv.AppendFloat(v, 'f', d, 64)`, NaN and
/// infinities mapped to `null`), via the standard library's exact formatter.
fn reference(value: f64, decimals: u32) -> String {
    if value.is_finite() {
        format!("{:.*}", decimals as usize, value)
    } else {
        "null".to_owned()
    }
}

fn fixed(value: f64, decimals: u32) -> String {
    let mut out = Vec::new();
    write_fixed(&mut out, value, decimals);
    String::from_utf8(out).unwrap()
}

fn fixed_array(values: &[f64], decimals: u32) -> String {
    let mut out = Vec::new();
    write_fixed_array(&mut out, values, decimals);
    String::from_utf8(out).unwrap()
}

fn reference_array(values: &[f64], decimals: u32) -> String {
    let items: Vec<String> = values.iter().map(|&v| reference(v, decimals)).collect();
    format!("[{}]", items.join(","))
}

/// Expected strings computed independently with Python's `'%.*f' % (d, v)`,
/// which, like Go's strconv, rounds the exact binary value half to even.
const TABLE: &[(f64, u32, &str)] = &[
    (0.0, 3, "0.000"),
    (1.0, 3, "1.000"),
    (0.012, 3, "0.012"),
    (0.0004, 3, "0.000"),
    (0.0005, 3, "0.001"),
    (-0.0, 3, "-0.000"),
    (-0.0001, 3, "-0.000"),
    (-0.0004999, 3, "-0.000"),
    (-0.0005, 3, "-0.001"),
    (0.0625, 3, "0.062"),
    (0.1875, 3, "0.188"),
    (0.3125, 3, "0.312"),
    (2.5, 0, "2"),
    (3.5, 0, "4"),
    (0.5, 0, "0"),
    (1.5, 0, "2"),
    (0.125, 2, "0.12"),
    (0.375, 2, "0.38"),
    (2.675, 2, "2.67"),
    (1.005, 2, "1.00"),
    (1.115, 2, "1.11"),
    (3.125, 2, "3.12"),
    (3.135, 2, "3.13"),
    (2.0, 2, "2.00"),
    (99.9995, 3, "99.999"),
    (99.9994999, 3, "99.999"),
    (123456.789, 3, "123456.789"),
    (-42.4245, 3, "-42.425"),
    (1000000000000000.0, 0, "1000000000000000"),
    (999999999999.9995, 3, "1000000000000.000"),
    (1000000000000.0, 3, "1000000000000.000"),
    (4503599627370495.5, 0, "4503599627370496"),
    (9007199254740992.0, 0, "9007199254740992"),
    (1e+21, 3, "1000000000000000000000.000"),
    (5e-324, 6, "0.000000"),
    (2.2250738585072014e-308, 3, "0.000"),
    (0.1, 6, "0.100000"),
    (0.123456789, 6, "0.123457"),
    (-123.456, 1, "-123.5"),
    (0.05, 1, "0.1"),
    (0.15, 1, "0.1"),
    (0.25, 1, "0.2"),
    (0.35, 1, "0.3"),
    (1e-07, 6, "0.000000"),
    (5e-07, 6, "0.000000"),
    (1.0000005, 6, "1.000001"),
    (1234.5, 0, "1234"),
];

#[test]
fn formats_the_reference_table() {
    for &(value, decimals, expected) in TABLE {
        assert_eq!(
            fixed(value, decimals),
            expected,
            "{value:e} with {decimals}"
        );
        // And the claim that Rust's formatter rounds like Go's holds here.
        assert_eq!(reference(value, decimals), expected, "{value:e} std");
    }
}

#[test]
fn huge_values_print_every_digit() {
    let expected = "1000000000000000052504760255204420248704468581108159154915854115511\
        8024579889081957863713750804478640437044438328838781769425232353604305756447921\
        8478670698284838720092657580373783023379478809005936895323497079994508111903896\
        7640880074652742780142494579258788820056842838115669472196386865459400540160.000";
    assert_eq!(fixed(1e300, 3), expected);
    assert_eq!(fixed(-f64::MAX, 0).len(), 310);
}

#[test]
fn non_finite_values_are_null() {
    for value in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for decimals in [0, 2, 3, 6, 9] {
            assert_eq!(fixed(value, decimals), "null");
        }
    }
}

#[test]
fn more_than_six_decimals_use_the_exact_path() {
    assert_eq!(fixed(0.1, 20), "0.10000000000000000555");
    assert_eq!(fixed(1.0, 7), "1.0000000");
    assert_eq!(
        fixed(1.0, u32::MAX),
        format!("{:.*}", MAX_DECIMALS as usize, 1.0)
    );
}

#[test]
fn writes_json_arrays() {
    assert_eq!(fixed_array(&[], 3), "[]");
    assert_eq!(
        fixed_array(&[f64::NAN, 1.0, 2.0, 3.0], 3),
        "[null,1.000,2.000,3.000]"
    );
    assert_eq!(
        fixed_array(&[-0.0, 0.0625, f64::INFINITY, 1e20], 2),
        "[-0.00,0.06,null,100000000000000000000.00]"
    );
    assert_eq!(fixed_array(&[0.5, 1.5, 2.5], 0), "[0,2,2]");
    assert_eq!(fixed_array(&[0.1, 0.25], 9), "[0.100000000,0.250000000]");
    // Appends: existing content stays.
    let mut out = b"x:".to_vec();
    write_fixed_array(&mut out, &[1.0], 1);
    assert_eq!(out, b"x:[1.0]");
}

#[test]
fn stats_ignore_nan() {
    let stats = Stats::of(&[f64::NAN, 1.0, 2.0, f64::NAN, 3.0]);
    assert_eq!(
        stats,
        Stats {
            avg: 2.0,
            min: 1.0,
            max: 3.0
        }
    );
}

#[test]
fn stats_of_nothing_are_nan() {
    for data in [&[][..], &[f64::NAN, f64::NAN][..]] {
        let stats = Stats::of(data);
        assert!(stats.avg.is_nan() && stats.min.is_nan() && stats.max.is_nan());
    }
}

#[test]
fn stats_follow_go_min_max() {
    // Go's math.Min(0, -0) is -0 and math.Max(-0, 0) is 0, in either order.
    let a = Stats::of(&[0.0, -0.0]);
    let b = Stats::of(&[-0.0, 0.0]);
    for s in [a, b] {
        assert!(s.min == 0.0 && s.min.is_sign_negative());
        assert!(s.max == 0.0 && s.max.is_sign_positive());
    }
    // Starting from ±MaxFloat64: a series of +Inf keeps min at MaxFloat64.
    let inf = Stats::of(&[f64::INFINITY, f64::INFINITY]);
    assert_eq!((inf.min, inf.max), (f64::MAX, f64::INFINITY));
    let neg = Stats::of(&[f64::NEG_INFINITY]);
    assert_eq!((neg.min, neg.max), (f64::NEG_INFINITY, -f64::MAX));
}

#[test]
fn stats_sum_left_to_right() {
    let data = [0.1, 0.2, 0.3, 1e16, -1e16];
    let sum = ((((0.0 + 0.1) + 0.2) + 0.3) + 1e16) + -1e16;
    assert_eq!(Stats::of(&data).avg, sum / 5.0);
}

#[test]
fn scaling_multiplies_every_field() {
    let mut stats = Stats {
        avg: 2.0,
        min: 1.0,
        max: 3.0,
    };
    stats.scale(0.5);
    assert_eq!(
        stats,
        Stats {
            avg: 1.0,
            min: 0.5,
            max: 1.5
        }
    );
    assert!(!applies_scale(0.0));
    assert!(!applies_scale(1.0));
    assert!(applies_scale(1e-9));
    assert!(applies_scale(f64::NAN));
    let mut zero = Stats::ZERO;
    zero.scale(f64::NAN);
    assert!(zero.avg.is_nan());
}

/// Values that stress the fast path's rounding decision.
fn nasty() -> impl Strategy<Value = f64> {
    prop_oneof![
        // Exact and inexact ties k/2000 (= x.xxx5), k/200, k/2.
        (-2_000_000i64..2_000_000).prop_map(|k| k as f64 / 2000.0),
        (-2_000_000i64..2_000_000).prop_map(|k| k as f64 / 200.0),
        (-2_000_000i64..2_000_000).prop_map(|k| k as f64 / 2.0),
        // Dyadic values: exact ties for several decimal counts.
        (-1_000_000i64..1_000_000, 1u32..20).prop_map(|(k, e)| k as f64 / f64::from(1u32 << e)),
        // A few ulps around x.xxx5 and around decimal grid points.
        (-1_000_000i64..1_000_000, 0u32..7, -4i64..=4).prop_map(|(k, d, ulps)| {
            let base = (k as f64 + 0.5) / 10f64.powi(d as i32);
            f64::from_bits(base.to_bits().wrapping_add_signed(ulps))
        }),
        (-1_000_000i64..1_000_000, 0u32..7, -4i64..=4).prop_map(|(k, d, ulps)| {
            let base = k as f64 / 10f64.powi(d as i32);
            f64::from_bits(base.to_bits().wrapping_add_signed(ulps))
        }),
        // Tiny magnitudes, both signs, down to subnormals.
        (-1e-3..1e-3f64),
        (any::<u64>().prop_map(|b| f64::from_bits(b % (1u64 << 52)))),
        (any::<u64>().prop_map(|b| -f64::from_bits(b % (1u64 << 52)))),
        // Around the fast path's 1e15 bound for each decimal count.
        (0u32..7, -1e3..1e3f64).prop_map(|(d, off)| 1e15 / 10f64.powi(d as i32) + off),
        // Huge values.
        (1e15..1e300f64),
        (-1e300..-1e15f64),
        // Large integers near 2^52 and 2^53 plus halves.
        (0u64..1_000).prop_map(|k| (4_503_599_627_370_496u64 - 500 + k) as f64 + 0.5),
        (0u64..1_000).prop_map(|k| (9_007_199_254_740_992u64 - 500 + k) as f64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn any_bits_format_like_std(bits in any::<u64>(), decimals in 0u32..=7) {
        let value = f64::from_bits(bits);
        prop_assert_eq!(fixed(value, decimals), reference(value, decimals));
    }

    #[test]
    fn nasty_values_format_like_std(value in nasty(), decimals in 0u32..=6) {
        prop_assert_eq!(fixed(value, decimals), reference(value, decimals));
    }

    #[test]
    fn realistic_values_format_like_std(value in -1e6..1e6f64, decimals in 0u32..=6) {
        prop_assert_eq!(fixed(value, decimals), reference(value, decimals));
    }

    #[test]
    fn arrays_format_like_std(
        values in prop::collection::vec(prop_oneof![nasty(), Just(f64::NAN), -1e4..1e4f64], 0..40),
        decimals in 0u32..=7,
    ) {
        prop_assert_eq!(fixed_array(&values, decimals), reference_array(&values, decimals));
    }
}

/// The fast path alone: `None` when it defers to the exact formatter.
fn fast<const D: u32>(value: f64) -> Option<String> {
    let mut buf = [b'~'; BUF_LEN];
    let len = encode::<D>(&mut buf, value)?;
    Some(String::from_utf8(buf[..len].to_vec()).unwrap())
}

#[test]
fn fast_path_defers_only_out_of_range_values() {
    for value in [
        1e12,
        -1e12,
        1e300,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        assert_eq!(fast::<3>(value), None, "{value:e}");
    }
    assert_eq!(fast::<0>(1e15), None);
    assert_eq!(fast::<3>(-0.0).as_deref(), Some("-0.000"));
}

#[test]
fn fast_path_rounds_exact_ties_to_even() {
    assert_eq!(fast::<3>(0.0625).as_deref(), Some("0.062"));
    assert_eq!(fast::<3>(-0.1875).as_deref(), Some("-0.188"));
    assert_eq!(fast::<2>(0.125).as_deref(), Some("0.12"));
    assert_eq!(fast::<2>(0.375).as_deref(), Some("0.38"));
    assert_eq!(fast::<0>(0.5).as_deref(), Some("0"));
    assert_eq!(fast::<0>(1.5).as_deref(), Some("2"));
    assert_eq!(fast::<0>(2.5).as_deref(), Some("2"));
    assert_eq!(fast::<1>(0.25).as_deref(), Some("0.2"));
    assert_eq!(fast::<6>(1.0000005).as_deref(), Some("1.000001"));
    // 2^49 + 0.5 with no decimals: a tie at the top of the exact range.
    assert_eq!(
        fast::<0>(562_949_953_421_312.5).as_deref(),
        Some("562949953421312")
    );
}

#[test]
fn fast_path_resolves_near_ties_exactly() {
    // Binary values just below and above x.xxx5, whose product by 1000 rounds
    // to exactly .5 in f64.
    for i in 0..100_000 {
        let value = f64::from(i) * 0.0137 - 300.0;
        assert_eq!(fast::<3>(value).unwrap(), reference(value, 3), "{value:?}");
    }
    for (value, expected) in [(2.675, "2.67"), (1.005, "1.00"), (-42.4245, "-42.425")] {
        let decimals = expected.len() - expected.find('.').unwrap() - 1;
        let text = match decimals {
            2 => fast::<2>(value),
            _ => fast::<3>(value),
        };
        assert_eq!(text.as_deref(), Some(expected));
    }
}

#[test]
fn fast_path_short_and_long_digit_writers_agree_with_std() {
    // Around the 10^8 switch between the two writers, every decimal count,
    // both signs, and the widest outputs of each.
    for d in 0..=6u32 {
        let unit = 10f64.powi(d as i32);
        for q in [
            0u64,
            1,
            9,
            10,
            99_999_999,
            100_000_000,
            100_000_001,
            999_999_999_999_999,
        ] {
            for sign in [1.0, -1.0] {
                let value = sign * q as f64 / unit;
                let mut out = Vec::new();
                write_fixed(&mut out, value, d);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    reference(value, d),
                    "{q} / 10^{d}"
                );
            }
        }
    }
    assert_eq!(fast::<6>(99.999999).as_deref(), Some("99.999999"));
    assert_eq!(fast::<6>(-100.0).as_deref(), Some("-100.000000"));
    assert_eq!(fast::<0>(99_999_999.0).as_deref(), Some("99999999"));
    assert_eq!(fast::<3>(-99_999.999).as_deref(), Some("-99999.999"));
    assert_eq!(
        fast::<3>(99_999_999_999.999).as_deref(),
        Some("99999999999.999")
    );
}

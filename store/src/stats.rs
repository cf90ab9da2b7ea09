//! Query statistics and the fixed-decimal JSON numbers of the query API.
//!
//! [`Stats`] is §3.2.4 step 4: average, minimum and maximum over the non-NaN
//! values of a (possibly resampled) series, with upstream's `math.Min` /
//! `math.Max` semantics.
//!
//! [`write_fixed`] and [`write_fixed_array`] print numbers the way upstream's
//! JSON does (§3.2.5): a fixed number of decimals (3 for data, 2 for stats),
//! the exact binary value correctly rounded with ties to even (Go's
//! `strconv.AppendFloat(v, 'f', prec, 64)`, which is also what Rust's
//! `format!("{:.prec$}", v)` prints), a `-` for every negative value including
//! `-0.0` and negatives that round to zero (`-0.000`), and `null` for NaN and
//! both infinities (upstream would print an invalid `+Inf`).
//!
//! Formatting is on the hot path of large queries, so up to 6 decimals take a
//! fast path: `|v| · 10^d` is computed in `f64`; when that single rounding
//! cannot have moved it across a rounding boundary (a half-integer) it is
//! rounded as is, and otherwise (rare, but every exact tie is such a case)
//! the rounding error of the product is computed exactly and decides. The
//! integer is then printed with the decimal point inserted. Scaled
//! magnitudes of `10^15` or more and more than 6 decimals go through the
//! standard library's exact formatter instead. Both paths produce identical
//! bytes (see the property tests).

use std::io::Write as _;

#[cfg(test)]
mod tests;

/// Decimals of data points in query responses (`1.000`).
pub const DATA_DECIMALS: u32 = 3;

/// Decimals of `avg`, `min` and `max` in query responses (`2.00`).
pub const STATS_DECIMALS: u32 = 2;

/// Most decimals [`write_fixed`] prints; larger requests are clamped.
pub const MAX_DECIMALS: u32 = 40;

/// Average, minimum and maximum of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Arithmetic mean of the non-NaN values.
    pub avg: f64,
    /// Smallest non-NaN value.
    pub min: f64,
    /// Largest non-NaN value.
    pub max: f64,
}

impl Stats {
    /// What a response reports when statistics were not requested or the
    /// selector failed: three zeros (printed `0.00`).
    pub const ZERO: Stats = Stats {
        avg: 0.0,
        min: 0.0,
        max: 0.0,
    };

    /// Statistics of a series without any non-NaN value: all NaN (`null`).
    pub const NAN: Stats = Stats {
        avg: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
    };

    /// Computes the statistics of the non-NaN values of `data` as upstream
    /// does: `avg` is the left-to-right sum divided by the count; `min` and
    /// `max` start from `±f64::MAX` and follow Go's `math.Min`/`math.Max`
    /// (so `-0.0` wins a minimum against `0.0`, and a series of only `+Inf`
    /// has `min == f64::MAX`). Without any non-NaN value all three are NaN.
    #[must_use]
    pub fn of(data: &[f64]) -> Stats {
        let mut count = 0usize;
        let mut sum = 0.0;
        let mut min = f64::MAX;
        let mut max = -f64::MAX;
        for &x in data.iter().filter(|x| !x.is_nan()) {
            count += 1;
            sum += x;
            min = go_min(min, x);
            max = go_max(max, x);
        }
        if count == 0 {
            return Stats::NAN;
        }
        Stats {
            avg: sum / count as f64,
            min,
            max,
        }
    }

    /// Multiplies all three values by `by`, unconditionally; whether a
    /// query's `scale-by` applies at all is [`applies_scale`]'s decision.
    pub fn scale(&mut self, by: f64) {
        self.avg *= by;
        self.min *= by;
        self.max *= by;
    }
}

/// Whether a query's `scale-by` factor changes its results: anything but 0
/// and 1, NaN included (which turns every value into `null`, as upstream).
#[must_use]
pub fn applies_scale(by: f64) -> bool {
    by != 0.0 && by != 1.0
}

/// Go's `math.Min` for non-NaN operands: `-0.0` is less than `0.0`.
fn go_min(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else if b < a {
        b
    } else if a.is_sign_negative() {
        a
    } else {
        b
    }
}

/// Go's `math.Max` for non-NaN operands: `0.0` is greater than `-0.0`.
fn go_max(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else if b > a {
        b
    } else if a.is_sign_positive() {
        a
    } else {
        b
    }
}

/// Appends `value` with exactly `decimals` digits after the decimal point
/// (none and no point for 0), correctly rounded with ties to even, or `null`
/// when it is NaN or infinite. `decimals` above [`MAX_DECIMALS`] are clamped.
///
/// ```
/// use cc_store::stats::write_fixed;
///
/// let mut out = Vec::new();
/// write_fixed(&mut out, 0.0625, 3);
/// out.push(b' ');
/// write_fixed(&mut out, -0.0001, 3);
/// out.push(b' ');
/// write_fixed(&mut out, f64::NAN, 2);
/// assert_eq!(out, b"0.062 -0.000 null");
/// ```
pub fn write_fixed(out: &mut Vec<u8>, value: f64, decimals: u32) {
    let mut buf = [0u8; BUF_LEN];
    let written = match decimals {
        0 => encode::<0>(&mut buf, value),
        1 => encode::<1>(&mut buf, value),
        2 => encode::<2>(&mut buf, value),
        3 => encode::<3>(&mut buf, value),
        4 => encode::<4>(&mut buf, value),
        5 => encode::<5>(&mut buf, value),
        6 => encode::<6>(&mut buf, value),
        _ => None,
    };
    match written.and_then(|len| buf.get(..len)) {
        Some(text) => out.extend_from_slice(text),
        None => write_exact(out, value, decimals),
    }
}

/// Appends `values` as a JSON array, each element written as by
/// [`write_fixed`]: `[1.000,null,-0.500]`.
pub fn write_fixed_array(out: &mut Vec<u8>, values: &[f64], decimals: u32) {
    match decimals {
        0 => write_array::<0>(out, values),
        1 => write_array::<1>(out, values),
        2 => write_array::<2>(out, values),
        3 => write_array::<3>(out, values),
        4 => write_array::<4>(out, values),
        5 => write_array::<5>(out, values),
        6 => write_array::<6>(out, values),
        _ => {
            out.push(b'[');
            for (i, &value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_exact(out, value, decimals);
            }
            out.push(b']');
        }
    }
}

/// Scratch space of the fast path: a sign, at most 16 integer digits
/// (the scaled value is below `10^15`, so at most 15 plus a carry), a point
/// and at most 6 decimals fit with room to spare.
const BUF_LEN: usize = 32;

/// Fast-path bound on the scaled magnitude `|v| · 10^d` (below `2^50`, so the
/// product's fractional part is exact and its error is at most 1/8).
const FAST_LIMIT: f64 = 1e15;

/// Relative distance from a half-integer below which the fast path computes
/// the exact product instead of trusting the rounded one: `2^-50`, eight
/// times the largest relative error of one `f64` multiplication.
const AMBIGUITY: f64 = 4.0 * f64::EPSILON;

/// `10^d` for the const-generic decimals of the fast path.
const fn pow10(d: u32) -> u64 {
    let mut p = 1u64;
    let mut i = 0;
    while i < d {
        p *= 10;
        i += 1;
    }
    p
}

/// The fast path's rounding: `|value| · 10^D` rounded to an integer, ties
/// to even, or `None` for non-finite values and scaled magnitudes of
/// [`FAST_LIMIT`] or more.
#[inline(always)]
fn round_scaled<const D: u32>(value: f64) -> Option<u64> {
    let unit = const { pow10(D) } as f64;
    let magnitude = value.abs();
    let scaled = magnitude * unit;
    // Infinities are caught by the bound.
    if scaled.is_nan() || scaled >= FAST_LIMIT {
        return None;
    }
    // `whole` and `frac` are exact because `scaled < 2^52`.
    let whole = scaled as i64;
    let frac = scaled - whole as f64;
    // The exact product differs from `scaled` by at most `scaled · 2^-53`, so
    // unless the half-integer `whole + 0.5` lies that close, both round the
    // same way.
    let up = if (frac - 0.5).abs() > scaled * AMBIGUITY {
        frac > 0.5
    } else {
        near_half_rounds_up(magnitude, unit, scaled, frac, whole)
    };
    Some(whole as u64 + u64::from(up))
}

/// Decides the rounding of `magnitude · unit` exactly when its `f64` product
/// `scaled = whole + frac` is within [`AMBIGUITY`] of `whole + 0.5`.
///
/// The exact product is `scaled + error`, with `error` computed exactly
/// (Dekker's two-product), so its distance to the half-integer is
/// `(frac - 0.5) + error`. `frac - 0.5` is exact here (`frac` is close to
/// 0.5 and a multiple of `ulp(scaled)`), and a rounded sum has the sign of
/// the exact sum and is zero only when that is, so the comparison is exact;
/// a zero distance is a true tie, which goes to the even neighbour.
#[inline(never)]
fn near_half_rounds_up(magnitude: f64, unit: f64, scaled: f64, frac: f64, whole: i64) -> bool {
    let distance = (frac - 0.5) + product_error(magnitude, unit, scaled);
    if distance == 0.0 {
        whole % 2 == 1
    } else {
        distance > 0.0
    }
}

/// `a · b - product` computed exactly, where `product` is the rounded `a · b`
/// (Dekker's two-product with Veltkamp splitting; exact without overflow or
/// underflow, which the fast path's range rules out: `a · b < 10^15` and the
/// caller only asks when `product` is about 0.5 or more).
fn product_error(a: f64, b: f64, product: f64) -> f64 {
    let (a_hi, a_lo) = split(a);
    let (b_hi, b_lo) = split(b);
    (((a_hi * b_hi - product) + a_hi * b_lo) + a_lo * b_hi) + a_lo * b_lo
}

/// Veltkamp's split of `x` into two halves of at most 26 significant bits
/// each, with `hi + lo == x` exactly.
fn split(x: f64) -> (f64, f64) {
    const SPLITTER: f64 = 134_217_729.0; // 2^27 + 1
    let c = SPLITTER * x;
    let hi = c - (c - x);
    (hi, x - hi)
}

/// Writes `value` with `D` decimals to the front of `dst` and returns the
/// length, if the fast path can format it (see [`round_scaled`]).
#[inline(always)]
fn encode<const D: u32>(dst: &mut [u8; BUF_LEN], value: f64) -> Option<usize> {
    let rounded = round_scaled::<D>(value)?;
    let negative = value.is_sign_negative();
    if rounded < 100_000_000 {
        Some(short_digits::<D>(dst, negative, rounded))
    } else {
        Some(long_digits::<D>(dst, negative, rounded))
    }
}

/// Writes `rounded / 10^D` (with `rounded < 10^8`) to the front of `dst` and
/// returns the length.
///
/// The eight decimal digits are computed at once in the bytes of a `u64`
/// (most significant digit in the lowest byte, so the little-endian bytes
/// read in order). The integer digits, leading zeros shifted out but at least
/// one kept, go out in one 8-byte store, and the point with the decimals in a
/// second one that overwrites the first one's tail.
#[inline(always)]
fn short_digits<const D: u32>(dst: &mut [u8; BUF_LEN], negative: bool, rounded: u64) -> usize {
    // Two 4-digit halves in 32-bit lanes, high half in the low lane (32-bit
    // division is cheaper, and `rounded < 10^8` fits).
    let rounded = rounded as u32;
    let halves = u64::from(rounded / 10_000) | u64::from(rounded % 10_000) << 32;
    // Per lane: v / 100 (via multiply-shift, exact for v < 10^4) in the low
    // 16 bits, v % 100 in the high 16 bits.
    let high_pairs = ((halves * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let pairs = high_pairs | (halves - high_pairs * 100) << 16;
    // Per 16-bit lane: w / 10 (exact for w < 179) in the low byte, w % 10 in
    // the high byte.
    let tens = ((pairs * 103) >> 10) & 0x000F_000F_000F_000F;
    let digits = tens | (pairs - tens * 10) << 8;
    let ascii = digits | 0x3030_3030_3030_3030;

    let decimals = D as usize;
    let int_slots = 8 - decimals;
    let skip = ((digits.trailing_zeros() / 8) as usize).min(int_slots - 1);
    let int_len = int_slots - skip;
    let sign = usize::from(negative);
    // Overwritten by the first digit unless negative.
    put(dst, 0, b'-');
    let int_mask = u64::MAX.checked_shr(8 * decimals as u32).unwrap_or(0);
    store8(dst, sign, (ascii & int_mask) >> (8 * skip));
    if decimals == 0 {
        return sign + int_len;
    }
    let frac = ascii.checked_shr(8 * int_slots as u32).unwrap_or(0);
    store8(dst, sign + int_len, u64::from(b'.') | frac << 8);
    sign + int_len + 1 + decimals
}

/// Stores the little-endian bytes of `word` at `dst[offset..offset + 8]`;
/// always in range here.
#[inline(always)]
fn store8(dst: &mut [u8; BUF_LEN], offset: usize, word: u64) {
    if let Some(slot) = dst.get_mut(offset..offset + 8) {
        slot.copy_from_slice(&word.to_le_bytes());
    }
}

/// Formats `rounded / 10^D` (any `rounded` below `10^16`) into the front of
/// `buf`, digit by digit, and returns the length.
fn long_digits<const D: u32>(buf: &mut [u8; BUF_LEN], negative: bool, rounded: u64) -> usize {
    let unit = const { pow10(D) };
    let mut int_part = rounded / unit;
    let mut frac_part = rounded % unit;
    let int_digits = int_part.checked_ilog10().map_or(1, |l| l as usize + 1);
    let decimals = D as usize;
    let negative = usize::from(negative);
    let len = negative + int_digits + if decimals > 0 { decimals + 1 } else { 0 };
    if negative == 1 {
        put(buf, 0, b'-');
    }
    let mut pos = len;
    for _ in 0..decimals {
        pos -= 1;
        put(buf, pos, b'0' + (frac_part % 10) as u8);
        frac_part /= 10;
    }
    if decimals > 0 {
        pos -= 1;
        put(buf, pos, b'.');
    }
    for _ in 0..int_digits {
        pos -= 1;
        put(buf, pos, b'0' + (int_part % 10) as u8);
        int_part /= 10;
    }
    len
}

/// Stores `byte` at `buf[pos]`; `pos` is always in range here.
#[inline(always)]
fn put(buf: &mut [u8; BUF_LEN], pos: usize, byte: u8) {
    if let Some(slot) = buf.get_mut(pos) {
        *slot = byte;
    }
}

/// Size of the stack block in which [`write_array`] assembles its output.
const BLOCK_LEN: usize = 4096;

/// [`write_fixed_array`] for `D` decimals, with the fast path inlined.
///
/// Elements are assembled in a stack block with fixed-size stores (a
/// variable-length copy of a few bytes costs more than formatting them, and
/// the block's fill level stays in a register) and the block is appended to
/// `out` when nearly full.
fn write_array<const D: u32>(out: &mut Vec<u8>, values: &[f64]) {
    out.reserve(values.len() * (D as usize + 4) + 2);
    out.push(b'[');
    let mut block = [0u8; BLOCK_LEN];
    let mut fill = 0;
    for (i, &value) in values.iter().enumerate() {
        // Room for a comma and a whole scratch buffer.
        if fill + 1 + BUF_LEN > BLOCK_LEN {
            out.extend_from_slice(block.get(..fill).unwrap_or_default());
            fill = 0;
        }
        if i > 0 {
            if let Some(byte) = block.get_mut(fill) {
                *byte = b',';
            }
            fill += 1;
        }
        let written = block
            .get_mut(fill..)
            .and_then(|rest| rest.first_chunk_mut::<BUF_LEN>())
            .and_then(|dst| encode::<D>(dst, value));
        match written {
            Some(len) => fill += len,
            None => {
                out.extend_from_slice(block.get(..fill).unwrap_or_default());
                fill = 0;
                write_exact(out, value, D);
            }
        }
    }
    out.extend_from_slice(block.get(..fill).unwrap_or_default());
    out.push(b']');
}

/// The slow path: `null` for non-finite values (frequent: gaps are NaN),
/// else the exact formatter.
#[inline]
fn write_exact(out: &mut Vec<u8>, value: f64, decimals: u32) {
    if value.is_finite() {
        write_exact_finite(out, value, decimals);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// The standard library's correctly rounded fixed formatting (rare).
#[cold]
#[inline(never)]
fn write_exact_finite(out: &mut Vec<u8>, value: f64, decimals: u32) {
    let precision = decimals.min(MAX_DECIMALS) as usize;
    // Writing into a Vec<u8> cannot fail.
    let _ = write!(out, "{value:.precision$}");
}

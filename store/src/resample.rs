//! LTTB downsampling of query results (spec §3.2.6).
//!
//! A query may ask for a coarser `resolution` than the metric's native
//! frequency. The series is then reduced with LTTB (largest triangle, three
//! buckets) exactly as cc-lib's resampler does it, so that responses match
//! upstream point for point:
//!
//! - nothing happens when either rate is 0 or the resolution is not coarser;
//! - a resolution that is not a multiple of the frequency is an error, even
//!   for a series too short to be downsampled;
//! - series shorter than [`MIN_POINTS`] are never downsampled and keep the
//!   native frequency as their resolution;
//! - otherwise the output has `N / (resolution / frequency)` points (2 when
//!   that is 1 or 2), bucket edges are computed in `f64` in upstream's
//!   operation order, and a NaN triangle area wins its bucket.
//!
//! Invariant: every output value is an input value, taken in index order, with
//! the first and the last input values always kept.

use std::cell::Cell;

#[cfg(test)]
mod tests;

/// Series shorter than this are returned unchanged, whatever the requested
/// resolution (upstream's `MinimumRequiredPoints`).
pub const MIN_POINTS: usize = 1000;

/// Why a series could not be resampled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// The requested resolution is coarser than the native frequency but not
    /// a whole multiple of it.
    #[error(
        "new sampling frequency ({resolution}) must be a multiple of old frequency ({frequency})"
    )]
    NotMultiple {
        /// Native frequency of the series, in seconds per point.
        frequency: i64,
        /// Requested resolution, in seconds per point.
        resolution: i64,
    },
}

/// Decides what [`lttb`] does with a series of `len` points sampled every
/// `frequency` seconds when `resolution` seconds per point are requested.
///
/// Returns `Ok(None)` when the series stays as it is (its resolution is then
/// `frequency`), or `Ok(Some(m))` when it is reduced to `m` target points (its
/// resolution is then `resolution`; `m` is at least 1, and an `m` below 3
/// still yields the first and the last point).
///
/// A non-positive ratio (only possible with a negative frequency, which
/// upstream does not guard against) leaves the series unchanged.
///
/// # Errors
///
/// [`ResampleError::NotMultiple`] when `resolution > frequency` (both
/// non-zero) and `resolution` is not a multiple of `frequency`.
pub fn target_len(
    len: usize,
    frequency: i64,
    resolution: i64,
) -> Result<Option<usize>, ResampleError> {
    if frequency == 0 || resolution == 0 || resolution <= frequency {
        return Ok(None);
    }
    // `resolution > frequency` rules out `i64::MIN % -1`, so these cannot
    // overflow; checked arithmetic keeps that local knowledge out of the way.
    if resolution.checked_rem(frequency) != Some(0) {
        return Err(ResampleError::NotMultiple {
            frequency,
            resolution,
        });
    }
    let Some(step) = resolution
        .checked_div(frequency)
        .and_then(|s| usize::try_from(s).ok())
        .filter(|&s| s > 0)
    else {
        return Ok(None);
    };
    let m = len / step;
    if m == 0 || len < MIN_POINTS || m >= len {
        return Ok(None);
    }
    Ok(Some(m))
}

/// Downsamples `data` (sampled every `frequency` seconds) to `resolution`
/// seconds per point with LTTB, as upstream does for query results.
///
/// Returns the resulting series, a copy of `data` when nothing is to be done,
/// and its effective resolution: `resolution` when downsampled, `frequency`
/// otherwise. See the module documentation and [`target_len`] for when a
/// series is left unchanged. Use [`lttb_owned`] when the caller owns the
/// vector: it avoids the copy and the second allocation.
///
/// # Errors
///
/// [`ResampleError::NotMultiple`] when `resolution > frequency` (both
/// non-zero) and `resolution` is not a multiple of `frequency`, whatever the
/// length of `data`.
pub fn lttb(
    data: &[f64],
    frequency: i64,
    resolution: i64,
) -> Result<(Vec<f64>, i64), ResampleError> {
    Ok(match target_len(data.len(), frequency, resolution)? {
        None => (data.to_vec(), frequency),
        Some(m) => (lttb_points(data, m), resolution),
    })
}

/// Like [`lttb`], but takes the series by value: an unchanged series is
/// returned as is, and a downsampled one is computed in place, so no memory
/// is allocated or copied. The returned vector keeps the input's capacity.
///
/// # Errors
///
/// As [`lttb`]: [`ResampleError::NotMultiple`] when `resolution > frequency`
/// (both non-zero) and `resolution` is not a multiple of `frequency`; `data`
/// is dropped then.
pub fn lttb_owned(
    mut data: Vec<f64>,
    frequency: i64,
    resolution: i64,
) -> Result<(Vec<f64>, i64), ResampleError> {
    Ok(match target_len(data.len(), frequency, resolution)? {
        None => (data, frequency),
        Some(m) => {
            lttb_in_place(&mut data, m);
            (data, resolution)
        }
    })
}

/// LTTB on `data` with `m` target points, without any of [`lttb`]'s
/// frequency or minimum-length checks (so tests can use small series).
///
/// A series of at most 2 points, or with `m >= data.len()`, is copied
/// unchanged; `m < 3` yields the first and the last point (upstream's result
/// for 1 and 2, where its bucket width is negative or infinite).
pub(crate) fn lttb_points(data: &[f64], m: usize) -> Vec<f64> {
    if data.len() <= 2 || m >= data.len() {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(m.max(2));
    select(
        data.len(),
        m,
        |i| data.get(i).copied().unwrap_or(f64::NAN),
        |v| out.push(v),
    );
    out
}

/// [`lttb_points`] computed in place: the chosen values are moved to the
/// front of `data`, which is then truncated.
fn lttb_in_place(data: &mut Vec<f64>, m: usize) {
    let len = data.len();
    if len <= 2 || m >= len {
        return;
    }
    let cells = Cell::from_mut(data.as_mut_slice()).as_slice_of_cells();
    let mut written = 0;
    // In-place is sound because output slot `k` is written only after every
    // read of input index `k` has happened: bucket `k - 1` (which produces
    // slot `k`) starts at index `k` or later, later buckets and centroids lie
    // strictly to the right of it, and the previously chosen point's value is
    // kept in a local rather than read back. Slot 0 receives `data[0]` itself.
    select(
        len,
        m,
        |i| cells.get(i).map_or(f64::NAN, Cell::get),
        |v| {
            if let Some(cell) = cells.get(written) {
                cell.set(v);
            }
            written += 1;
        },
    );
    data.truncate(written);
}

/// The LTTB selection over `len` points read through `read`, calling `emit`
/// with each output value in order. Requires `len > 2` and `m < len`.
fn select(len: usize, m: usize, read: impl Fn(usize) -> f64, mut emit: impl FnMut(f64)) {
    let last = len - 1;
    emit(read(0));
    if m >= 3 {
        // Upstream: bucketSize := float64(len-2) / float64(m-2).
        let width = (len - 2) as f64 / (m - 2) as f64;
        // `as usize` truncates, which is `floor` for these non-negative values.
        let mut lo = 1usize;
        let mut mid = width as usize + 1;
        let mut prev = 0usize;
        let mut prev_y = read(0);
        for i in 0..m - 2 {
            let hi = (((i + 2) as f64 * width) as usize + 1).min(len - 2);

            // Centroid of the next bucket, mid..=hi. The x sum of consecutive
            // integers is exact in f64 as upstream's running sum is; the y sum
            // runs left to right from +0.0 like upstream's, so any NaN (or
            // opposite infinities) makes it NaN.
            let count = (hi + 1).saturating_sub(mid);
            let x_sum = (mid + hi) * count / 2;
            let cx = x_sum as f64 / count as f64;
            let cy = (mid..=hi).fold(0.0, |sum, j| sum + read(j)) / count as f64;

            let a = prev as f64;
            let mut best = 0usize; // upstream's zero value, used if lo == mid
            let mut best_area = -1.0;
            for j in lo..mid {
                let yj = read(j);
                let area =
                    (((a - j as f64) * (cy - prev_y) - (a - cx) * (yj - prev_y)) * 0.5).abs();
                // A NaN area always takes over and, as `x > NaN` is false,
                // can then only be replaced by a later NaN area.
                if area > best_area || area.is_nan() {
                    best_area = area;
                    best = j;
                }
            }
            let chosen = read(best);
            emit(chosen);
            prev = best;
            prev_y = chosen;
            lo = mid;
            mid = hi;
        }
    }
    emit(read(last));
}

//! Splitting an ingested batch into records at line boundaries (`record_max_raw_bytes`,
//! `record_max_stored_bytes`), so that every stored value stays far below sled's blob
//! threshold (spec §7.3).

use memchr::memchr_iter;

use super::{
    DEFAULT_COMPRESS_THRESHOLD, DEFAULT_MAX_RAW_BYTES, DEFAULT_MAX_STORED_BYTES,
    DEFAULT_ZSTD_LEVEL, HEADER_RESERVE,
};

/// Limits for [`split_payload_with`] (the `storage.record_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLimits {
    /// Uncompressed bytes per record (`record_max_raw_bytes`, default 256 KiB).
    pub max_raw_bytes: usize,
    /// Stored bytes per record after compression, header included
    /// (`record_max_stored_bytes`, default 64 KiB).
    pub max_stored_bytes: usize,
    /// Same meaning as [`crate::queue::QueueConfig::compress_threshold`].
    pub compress_threshold: usize,
    /// zstd level used to check the compressed size.
    pub zstd_level: i32,
}

impl Default for SplitLimits {
    fn default() -> Self {
        SplitLimits {
            max_raw_bytes: DEFAULT_MAX_RAW_BYTES,
            max_stored_bytes: DEFAULT_MAX_STORED_BYTES,
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// Splits `lines` at line boundaries so that each piece, stored as a record, stays
/// within `max_stored_bytes` after compression; other limits are the defaults. See
/// [`split_payload_with`].
#[must_use]
pub fn split_payload(lines: &[u8], max_stored_bytes: usize) -> Vec<&[u8]> {
    split_payload_with(
        lines,
        &SplitLimits {
            max_stored_bytes,
            ..SplitLimits::default()
        },
    )
}

/// Splits `lines` (each `\n`-terminated) into consecutive pieces at line boundaries.
///
/// Pieces are first cut greedily at `max_raw_bytes`; a piece whose stored form (the
/// zstd frame if compression applies and shrinks it, else the raw bytes) exceeds
/// `max_stored_bytes − HEADER_RESERVE` is halved at the line boundary nearest its middle
/// until it fits. A single line that does not fit is a piece of its own. Concatenating
/// the pieces gives `lines` back; an unterminated tail ends up in the last piece.
#[must_use]
pub fn split_payload_with<'a>(lines: &'a [u8], limits: &SplitLimits) -> Vec<&'a [u8]> {
    split_with_compressed(lines, limits)
        .into_iter()
        .map(|(piece, _)| piece)
        .collect()
}

/// Like [`split_payload_with`], also returning each piece's zstd frame when
/// the size check computed one (so that storing the record need not
/// compress it again).
pub(crate) fn split_with_compressed<'a>(
    lines: &'a [u8],
    limits: &SplitLimits,
) -> Vec<(&'a [u8], Option<Vec<u8>>)> {
    let payload_cap = limits
        .max_stored_bytes
        .saturating_sub(HEADER_RESERVE)
        .max(1);
    let max_raw = limits.max_raw_bytes.max(1);
    let mut out = Vec::new();
    let mut rest = lines;
    while !rest.is_empty() {
        // Greedy cut: as many whole lines as fit into max_raw, at least one line.
        let mut cut = 0;
        for nl in memchr_iter(b'\n', rest) {
            let end = nl + 1;
            if end > max_raw && cut > 0 {
                break;
            }
            cut = end;
            if end >= max_raw {
                break;
            }
        }
        // No newline at all, or only an unterminated fragment after the cut: take it
        // along (Record::new will refuse it; splitting never drops bytes).
        let only_fragment_left = rest
            .get(cut..)
            .is_some_and(|t| !t.is_empty() && memchr::memchr(b'\n', t).is_none());
        if cut == 0 || only_fragment_left {
            cut = rest.len();
        }
        let Some((piece, tail)) = rest.split_at_checked(cut) else {
            break;
        };
        fit_piece(piece, payload_cap, limits, &mut out);
        rest = tail;
    }
    out
}

/// Pushes `piece` if its stored form fits `cap`, else halves it at a line boundary.
fn fit_piece<'a>(
    piece: &'a [u8],
    cap: usize,
    limits: &SplitLimits,
    out: &mut Vec<(&'a [u8], Option<Vec<u8>>)>,
) {
    let (len, compressed) = stored_form(piece, limits);
    if len <= cap {
        out.push((piece, compressed));
        return;
    }
    match split_near_middle(piece) {
        Some((left, right)) => {
            fit_piece(left, cap, limits, out);
            fit_piece(right, cap, limits, out);
        }
        // One line: it is its own record whatever its size.
        None => out.push((piece, compressed)),
    }
}

/// Bytes `piece` would occupy as a stored payload (see [`super::Record::encode_with`]).
fn stored_form(piece: &[u8], limits: &SplitLimits) -> (usize, Option<Vec<u8>>) {
    if piece.len() < limits.compress_threshold {
        return (piece.len(), None);
    }
    match super::codec::compress(piece, limits.zstd_level) {
        Ok(c) if c.len() < piece.len() => (c.len(), Some(c)),
        _ => (piece.len(), None),
    }
}

/// Splits after the newline nearest the middle; `None` if `piece` is one line.
fn split_near_middle(piece: &[u8]) -> Option<(&[u8], &[u8])> {
    let mid = piece.len() / 2;
    let inner = |b: usize| b > 0 && b < piece.len();
    let after = piece
        .get(mid..)
        .and_then(|s| memchr::memchr(b'\n', s))
        .map(|i| mid + i + 1)
        .filter(|&b| inner(b));
    let before = piece
        .get(..mid)
        .and_then(|s| memchr::memrchr(b'\n', s))
        .map(|i| i + 1)
        .filter(|&b| inner(b));
    let boundary = match (before, after) {
        (Some(b), Some(a)) => Some(if mid - b <= a - mid { b } else { a }),
        (b, a) => b.or(a),
    }?;
    piece.split_at_checked(boundary)
}

//! zstd with one compression and one decompression context per thread.
//!
//! Creating a zstd context allocates and clears its tables; done per record
//! it cost more than compressing a 100-line payload. The contexts live in
//! thread-locals, so ingest threads and forwarding workers each reuse theirs
//! without locking.

use std::cell::RefCell;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// One zstd frame of `data` at `level`, with the content size in its header.
///
/// # Errors
///
/// What zstd reports (an invalid level, out of memory).
pub(crate) fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let reuse = matches!(&*slot, Some((l, _)) if *l == level);
        if !reuse {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(data),
            None => zstd::bulk::compress(data, level),
        }
    })
}

/// Decompresses one frame of at most `capacity` bytes.
///
/// # Errors
///
/// A damaged frame, or one larger than `capacity`.
pub(crate) fn decompress(stored: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(stored, capacity),
            None => zstd::bulk::decompress(stored, capacity),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_contexts_round_trip_and_follow_the_level() {
        let data = b"cpu_load,hostname=a value=1 1700000000\n".repeat(100);
        for level in [3, 1, 3, 9] {
            let c = compress(&data, level).unwrap();
            assert!(c.len() < data.len());
            assert_eq!(
                c,
                zstd::bulk::compress(&data, level).unwrap(),
                "level {level}"
            );
            assert_eq!(decompress(&c, data.len()).unwrap(), data);
        }
        let c = compress(&data, 3).unwrap();
        assert!(
            decompress(&c, data.len() - 1).is_err(),
            "capacity is a limit"
        );
        assert!(decompress(b"not zstd", 100).is_err());
        // A failed frame leaves the context usable.
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
    }
}

//! The write-ahead log format (`current.wal`, one per host).
//!
//! A file starts with the magic `0xCC1DA701` and holds records, all little
//! endian:
//!
//! | field | bytes | content |
//! |---|---|---|
//! | magic | 4 | `0xCC1DA7A1` |
//! | length | 4 | payload length |
//! | payload | length | `i64` timestamp, `u16` metric name length, name, `u8` selector element count, per element `u8` length and bytes, `f32` value |
//! | crc | 4 | CRC-32 (IEEE) of the payload |
//!
//! The selector is the level path below the host (`[]`, `["socket0"]`,
//! `["socket0", "core3"]`); cluster and host are the file's directories.
//! Reading stops quietly at the first record that is incomplete or fails
//! its checks: that is the torn tail a crash leaves, and everything before it
//! is good.

use std::io::{self, Read};

/// Magic at the start of a WAL file.
pub const FILE_MAGIC: u32 = 0xCC1D_A701;
/// Magic at the start of every record.
pub const RECORD_MAGIC: u32 = 0xCC1D_A7A1;
/// Largest payload a reader accepts.
pub const MAX_PAYLOAD: u32 = 1 << 20;
/// Length of the file header.
pub const HEADER_LEN: u64 = 4;

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    /// Sample time (Unix seconds).
    pub ts: i64,
    /// Metric name.
    pub metric: String,
    /// Level path below the host.
    pub selector: Vec<String>,
    /// The value (stored as f32).
    pub value: f64,
}

/// A name that the WAL format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Metric names are limited to 65 535 bytes.
    #[error("metric name of {0} bytes is too long for the WAL (at most 65535)")]
    MetricTooLong(usize),
    /// Level names are limited to 255 bytes, paths to 255 levels.
    #[error("level name {0:?} is too long for the WAL (at most 255 bytes)")]
    LevelTooLong(String),
}

/// Appends the file header to `buf`.
pub fn encode_header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&FILE_MAGIC.to_le_bytes());
}

/// Appends one record to `buf`; on error `buf` is unchanged.
///
/// # Errors
///
/// Names longer than the format allows.
pub fn encode_record(
    buf: &mut Vec<u8>,
    ts: i64,
    metric: &str,
    selector: &[&str],
    value: f64,
) -> Result<(), EncodeError> {
    let metric_len =
        u16::try_from(metric.len()).map_err(|_| EncodeError::MetricTooLong(metric.len()))?;
    let count =
        u8::try_from(selector.len()).map_err(|_| EncodeError::LevelTooLong(selector.join("/")))?;
    let mut payload_len = 8 + 2 + metric.len() + 1 + 4;
    for element in selector {
        if element.len() > usize::from(u8::MAX) {
            return Err(EncodeError::LevelTooLong((*element).to_owned()));
        }
        payload_len += 1 + element.len();
    }
    let start = buf.len();
    buf.reserve(payload_len + 12);
    buf.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    // The payload is at most 8+2+65535+1+255·256+4 bytes: it fits in u32.
    buf.extend_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes());
    let payload_start = buf.len();
    buf.extend_from_slice(&ts.to_le_bytes());
    buf.extend_from_slice(&metric_len.to_le_bytes());
    buf.extend_from_slice(metric.as_bytes());
    buf.push(count);
    for element in selector {
        // Checked above.
        buf.push(u8::try_from(element.len()).unwrap_or(u8::MAX));
        buf.extend_from_slice(element.as_bytes());
    }
    #[allow(clippy::cast_possible_truncation, reason = "the format stores f32")]
    buf.extend_from_slice(&(value as f32).to_bits().to_le_bytes());
    let crc = crc32fast::hash(buf.get(payload_start..).unwrap_or_default());
    buf.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(buf.len() - start, payload_len + 12);
    Ok(())
}

/// Why reading stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailProblem {
    /// A record did not start with the record magic.
    BadMagic,
    /// A record claimed a payload over [`MAX_PAYLOAD`].
    TooLong(u32),
    /// The file ended inside a record.
    Truncated,
    /// The checksum did not match.
    BadChecksum,
    /// The payload's inner lengths were inconsistent.
    BadPayload,
}

impl std::fmt::Display for TailProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TailProblem::BadMagic => f.write_str("record without its magic"),
            TailProblem::TooLong(n) => write!(f, "record claiming {n} bytes"),
            TailProblem::Truncated => f.write_str("file ends inside a record"),
            TailProblem::BadChecksum => f.write_str("record checksum mismatch"),
            TailProblem::BadPayload => f.write_str("record with inconsistent lengths"),
        }
    }
}

/// Why a WAL could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file does not start with [`FILE_MAGIC`].
    #[error("not a WAL file (magic {0:#010x}, expected 0xcc1da701)")]
    BadMagic(u32),
    /// The file is shorter than its header.
    #[error("WAL file shorter than its header")]
    Empty,
    /// Reading failed.
    #[error("read failed")]
    Io(#[from] io::Error),
}

/// Streams the records of a WAL.
#[derive(Debug)]
pub struct WalReader<R> {
    reader: R,
    /// Bytes of the file that hold good records (header included).
    valid_len: u64,
    stopped: Option<TailProblem>,
    done: bool,
    payload: Vec<u8>,
}

impl<R: Read> WalReader<R> {
    /// Checks the file header.
    ///
    /// # Errors
    ///
    /// A missing or wrong header, or a read error.
    pub fn new(mut reader: R) -> Result<Self, OpenError> {
        let mut magic = [0; 4];
        match reader.read_exact(&mut magic) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(OpenError::Empty),
            Err(e) => return Err(e.into()),
        }
        let magic = u32::from_le_bytes(magic);
        if magic != FILE_MAGIC {
            return Err(OpenError::BadMagic(magic));
        }
        Ok(WalReader {
            reader,
            valid_len: HEADER_LEN,
            stopped: None,
            done: false,
            payload: Vec::new(),
        })
    }

    /// Length of the file up to the end of the last good record.
    #[must_use]
    pub fn valid_len(&self) -> u64 {
        self.valid_len
    }

    /// Why reading stopped early, once it has (`None` at a clean end).
    #[must_use]
    pub fn tail_problem(&self) -> Option<&TailProblem> {
        self.stopped.as_ref()
    }

    fn stop(&mut self, problem: TailProblem) -> Option<io::Result<WalRecord>> {
        self.done = true;
        self.stopped = Some(problem);
        None
    }

    /// The next record, `None` at the end (clean or torn), or a read error.
    pub fn next_record(&mut self) -> Option<io::Result<WalRecord>> {
        if self.done {
            return None;
        }
        let mut head = [0; 8];
        match read_full(&mut self.reader, &mut head) {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(8) => {}
            Ok(_) => return self.stop(TailProblem::Truncated),
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        }
        let [m0, m1, m2, m3, l0, l1, l2, l3] = head;
        if u32::from_le_bytes([m0, m1, m2, m3]) != RECORD_MAGIC {
            return self.stop(TailProblem::BadMagic);
        }
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if len > MAX_PAYLOAD {
            return self.stop(TailProblem::TooLong(len));
        }
        let want = len as usize + 4;
        self.payload.resize(want, 0);
        match read_full(&mut self.reader, &mut self.payload) {
            Ok(n) if n == want => {}
            Ok(_) => return self.stop(TailProblem::Truncated),
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        }
        let (payload, crc) = self.payload.split_at(len as usize);
        let crc = u32::from_le_bytes(crc.try_into().unwrap_or([0; 4]));
        if crc32fast::hash(payload) != crc {
            return self.stop(TailProblem::BadChecksum);
        }
        let Some(record) = decode_payload(payload) else {
            return self.stop(TailProblem::BadPayload);
        };
        self.valid_len += 8 + u64::from(len) + 4;
        Some(Ok(record))
    }
}

impl<R: Read> Iterator for WalReader<R> {
    type Item = io::Result<WalRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// Reads until `buf` is full or the end of input; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn decode_payload(p: &[u8]) -> Option<WalRecord> {
    let mut cur = Cursor { p };
    let ts = i64::from_le_bytes(cur.take(8)?.try_into().ok()?);
    let metric_len = u16::from_le_bytes(cur.take(2)?.try_into().ok()?);
    let metric = std::str::from_utf8(cur.take(usize::from(metric_len))?)
        .ok()?
        .to_owned();
    let count = *cur.take(1)?.first()?;
    let mut selector = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = *cur.take(1)?.first()?;
        selector.push(
            std::str::from_utf8(cur.take(usize::from(len))?)
                .ok()?
                .to_owned(),
        );
    }
    let bits = u32::from_le_bytes(cur.take(4)?.try_into().ok()?);
    if !cur.p.is_empty() {
        return None;
    }
    Some(WalRecord {
        ts,
        metric,
        selector,
        value: f64::from(f32::from_bits(bits)),
    })
}

struct Cursor<'a> {
    p: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.p.len() {
            return None;
        }
        let (head, rest) = self.p.split_at(n);
        self.p = rest;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_encodes_byte_for_byte() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1_700_000_000, "cpu_load", &["hwthread3"], 0.5).unwrap();
        let expected: Vec<u8> = [
            "a1 a7 1d cc 21 00 00 00",
            "00 f1 53 65 00 00 00 00",
            "08 00 63 70 75 5f 6c 6f 61 64",
            "01 09 68 77 74 68 72 65 61 64 33",
            "00 00 00 3f",
            "60 d4 64 fb",
        ]
        .join(" ")
        .split(' ')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
        assert_eq!(buf, expected);
        assert_eq!(buf.len(), 45);
    }

    fn file(records: &[(i64, &str, &[&str], f64)]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_header(&mut buf);
        for (ts, metric, selector, value) in records {
            encode_record(&mut buf, *ts, metric, selector, *value).unwrap();
        }
        buf
    }

    #[test]
    fn records_round_trip_in_order() {
        let bytes = file(&[
            (10, "a", &[], 1.0),
            (20, "b", &["socket0"], f64::NAN),
            (30, "c", &["socket0", "core1"], -2.5),
        ]);
        let mut reader = WalReader::new(bytes.as_slice()).unwrap();
        let records: Vec<WalRecord> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].metric, "a");
        assert!(records[0].selector.is_empty());
        assert!(records[1].value.is_nan());
        assert_eq!(records[2].selector, ["socket0", "core1"]);
        assert_eq!(records[2].value, -2.5);
        assert_eq!(reader.valid_len(), bytes.len() as u64);
        assert_eq!(reader.tail_problem(), None);
    }

    #[test]
    fn a_torn_tail_stops_reading_after_the_last_good_record() {
        let bytes = file(&[(10, "a", &[], 1.0), (20, "b", &[], 2.0)]);
        let good = file(&[(10, "a", &[], 1.0)]).len();
        for cut in good + 1..bytes.len() {
            let mut reader = WalReader::new(&bytes[..cut]).unwrap();
            assert_eq!(reader.by_ref().count(), 1, "cut at {cut}");
            assert_eq!(reader.valid_len(), good as u64);
            assert_eq!(reader.tail_problem(), Some(&TailProblem::Truncated));
        }
    }

    #[test]
    fn flipped_bits_are_caught_by_the_checksum_or_the_magic() {
        let bytes = file(&[(10, "a", &[], 1.0), (20, "bb", &["x"], 2.0)]);
        let second = file(&[(10, "a", &[], 1.0)]).len();
        for i in second..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let mut reader = WalReader::new(bad.as_slice()).unwrap();
            let good: Vec<_> = reader.by_ref().map(Result::unwrap).collect();
            assert_eq!(good.len(), 1, "flip at {i}");
            assert!(reader.tail_problem().is_some());
        }
    }

    #[test]
    fn wrong_header_and_oversized_records_are_reported() {
        assert!(matches!(
            WalReader::new(&[1u8, 2, 3, 4][..]),
            Err(OpenError::BadMagic(_))
        ));
        assert!(matches!(WalReader::new(&[][..]), Err(OpenError::Empty)));
        let mut bytes = file(&[]);
        bytes.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        bytes.extend_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        let mut reader = WalReader::new(bytes.as_slice()).unwrap();
        assert!(reader.next().is_none());
        assert_eq!(
            reader.tail_problem(),
            Some(&TailProblem::TooLong(MAX_PAYLOAD + 1))
        );
    }

    #[test]
    fn names_the_format_cannot_hold_are_refused() {
        let mut buf = Vec::new();
        let long = "x".repeat(256);
        assert!(matches!(
            encode_record(&mut buf, 1, "m", &[&long], 1.0),
            Err(EncodeError::LevelTooLong(_))
        ));
        let huge = "m".repeat(70_000);
        assert!(matches!(
            encode_record(&mut buf, 1, &huge, &[], 1.0),
            Err(EncodeError::MetricTooLong(70_000))
        ));
        assert!(buf.is_empty());
    }
}

//! Host snapshots: the tree of one host's metrics, as `<from>.json` or
//! `<from>.bin` files (cc-metric-store's checkpoint formats).
//!
//! Both formats hold the same tree: per level a map of metrics, each
//! `{frequency, start, data}`, and a map of child levels; the top level is
//! the host and carries the window `from`/`to`.
//!
//! - JSON: `{"metrics":{…},"children":{…},"from":F,"to":T}` at every level,
//!   metric objects `{"frequency":60,"start":…,"data":[1.5,null,…]}`, map
//!   keys sorted, one trailing newline. Upstream writes values rounded to one
//!   decimal; we write every value exactly (the shortest form that reads
//!   back to the same number), which upstream reads just as well. `null` is
//!   NaN.
//! - Binary (little endian, no checksum): magic `0xCC5B0001`, `i64 from`,
//!   `i64 to`, then the host level: `u32` metric count, per metric `u16`
//!   name length, name, `i64 frequency`, `i64 start`, `u32` value count and
//!   the values as `f32` bit patterns; then `u32` child count, per child
//!   `u16` name length, name and the child level. Entries are written sorted.
//!
//! Decoding streams from a reader and never buffers a whole file; every
//! length is checked against what remains plausible, so a corrupt file gives
//! an error, not an allocation of gigabytes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Read, Write};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Magic number at the start of a binary snapshot.
pub const BIN_MAGIC: u32 = 0xCC5B_0001;

/// Longest name the binary format can hold (u16 length).
pub const MAX_NAME_LEN: usize = u16::MAX as usize;

/// Most values one metric may hold in a file we read (a year of 1 s data).
const MAX_VALUES: u32 = 366 * 24 * 3600;

/// Deepest level nesting accepted when reading (host/type/stype is 3).
const MAX_DEPTH: usize = 16;

/// One host's snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Start of the window the snapshot covers (Unix seconds).
    pub from: i64,
    /// End of the window (Unix seconds).
    pub to: i64,
    /// The host level.
    pub root: SnapLevel,
}

/// One level of a snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SnapLevel {
    /// Metrics stored at this level, by name.
    pub metrics: BTreeMap<String, SnapMetric>,
    /// Child levels (`socket0`, `hwthread3`, …) by name.
    pub children: BTreeMap<String, SnapLevel>,
}

impl SnapLevel {
    /// Whether the level holds neither metrics nor children.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.children.is_empty()
    }

    /// Number of values in this level and below.
    #[must_use]
    pub fn value_count(&self) -> usize {
        self.metrics.values().map(|m| m.data.len()).sum::<usize>()
            + self
                .children
                .values()
                .map(SnapLevel::value_count)
                .sum::<usize>()
    }
}

/// The values of one metric at one level: slot `i` starts at
/// `start + i·frequency`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SnapMetric {
    /// Slot width in seconds.
    pub frequency: i64,
    /// Start of slot 0 (Unix seconds).
    pub start: i64,
    /// The values; NaN is a gap.
    #[serde(serialize_with = "ser_values", deserialize_with = "de_values")]
    pub data: Vec<f64>,
}

/// Which file format a snapshot is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// `<from>.json`.
    Json,
    /// `<from>.bin`.
    Bin,
}

impl Format {
    /// The file name extension, without the dot.
    #[must_use]
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Bin => "bin",
        }
    }
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading failed (including a file that ends early).
    #[error("read failed")]
    Io(#[from] io::Error),
    /// The file does not start with the binary magic.
    #[error("not a binary snapshot (magic {0:#010x}, expected 0xcc5b0001)")]
    BadMagic(u32),
    /// A length or count is out of range.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    /// The JSON is malformed.
    #[error("invalid JSON snapshot")]
    Json(#[from] serde_json::Error),
}

/// The name of a snapshot file: its window start, and its format. `None`
/// for other files (including `<from>.bin.tmp` and non-numeric names).
#[must_use]
pub fn parse_file_name(name: &str) -> Option<(i64, Format)> {
    let (stem, format) = if let Some(stem) = name.strip_suffix(".json") {
        (stem, Format::Json)
    } else if let Some(stem) = name.strip_suffix(".bin") {
        (stem, Format::Bin)
    } else {
        return None;
    };
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(|ts| (ts, format))
}

/// Whether `name` looks like a snapshot file (`*.json`, `*.bin`), numeric
/// or not.
#[must_use]
pub fn has_snapshot_extension(name: &str) -> bool {
    name.ends_with(".json") || name.ends_with(".bin")
}

/// Reads a snapshot in `format`.
///
/// # Errors
///
/// See [`SnapshotError`].
pub fn read(format: Format, reader: impl BufRead) -> Result<Snapshot, SnapshotError> {
    match format {
        Format::Json => read_json(reader),
        Format::Bin => read_bin(reader),
    }
}

/// Writes a snapshot in `format`.
///
/// # Errors
///
/// Write errors, and names too long for the binary format.
pub fn write(format: Format, snapshot: &Snapshot, writer: impl Write) -> io::Result<()> {
    match format {
        Format::Json => write_json(snapshot, writer),
        Format::Bin => write_bin(snapshot, writer),
    }
}

// ---------------------------------------------------------------- JSON

#[derive(Serialize)]
struct JsonLevelOut<'a> {
    metrics: &'a BTreeMap<String, SnapMetric>,
    children: BTreeMap<&'a str, JsonLevelOut<'a>>,
    from: i64,
    to: i64,
}

fn json_out<'a>(level: &'a SnapLevel, from: i64, to: i64) -> JsonLevelOut<'a> {
    JsonLevelOut {
        metrics: &level.metrics,
        children: level
            .children
            .iter()
            .map(|(name, child)| (name.as_str(), json_out(child, from, to)))
            .collect(),
        from,
        to,
    }
}

#[derive(Deserialize)]
struct JsonLevelIn {
    #[serde(default)]
    metrics: Option<BTreeMap<String, SnapMetric>>,
    #[serde(default)]
    children: Option<BTreeMap<String, JsonLevelIn>>,
    #[serde(default)]
    from: i64,
    #[serde(default)]
    to: i64,
}

fn from_json_in(level: JsonLevelIn) -> SnapLevel {
    SnapLevel {
        metrics: level.metrics.unwrap_or_default(),
        children: level
            .children
            .unwrap_or_default()
            .into_iter()
            .map(|(name, child)| (name, from_json_in(child)))
            .collect(),
    }
}

/// Writes the JSON form (with a trailing newline).
///
/// # Errors
///
/// Write errors.
pub fn write_json(snapshot: &Snapshot, mut writer: impl Write) -> io::Result<()> {
    serde_json::to_writer(
        &mut writer,
        &json_out(&snapshot.root, snapshot.from, snapshot.to),
    )
    .map_err(io::Error::other)?;
    writer.write_all(b"\n")
}

/// Reads the JSON form. Nested `from`/`to` are ignored; values may be any
/// JSON number or `null`.
///
/// # Errors
///
/// Malformed JSON or a read error.
pub fn read_json(reader: impl Read) -> Result<Snapshot, SnapshotError> {
    json_from(serde_json::Deserializer::from_reader(reader))
}

/// [`read_json`] from bytes in memory (several times faster).
///
/// # Errors
///
/// Malformed JSON.
pub fn read_json_slice(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    json_from(serde_json::Deserializer::from_slice(bytes))
}

fn json_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<Snapshot, SnapshotError> {
    let level = JsonLevelIn::deserialize(&mut de)?;
    de.end()?;
    let (from, to) = (level.from, level.to);
    Ok(Snapshot {
        from,
        to,
        root: from_json_in(level),
    })
}

fn ser_values<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for v in values {
        if v.is_finite() {
            seq.serialize_element(v)?;
        } else {
            seq.serialize_element(&())?;
        }
    }
    seq.end()
}

fn de_values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    struct Values;
    impl<'de> Visitor<'de> for Values {
        type Value = Vec<f64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of numbers and nulls")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f64>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(v) = seq.next_element::<Option<f64>>()? {
                out.push(v.unwrap_or(f64::NAN));
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<f64>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(Values)
}

// ---------------------------------------------------------------- binary

/// Writes the binary form.
///
/// # Errors
///
/// Write errors; a name longer than 65 535 bytes or more than `u32::MAX`
/// entries (`InvalidInput`).
pub fn write_bin(snapshot: &Snapshot, mut writer: impl Write) -> io::Result<()> {
    writer.write_all(&BIN_MAGIC.to_le_bytes())?;
    writer.write_all(&snapshot.from.to_le_bytes())?;
    writer.write_all(&snapshot.to.to_le_bytes())?;
    let mut scratch = Vec::new();
    write_bin_level(&snapshot.root, &mut writer, &mut scratch)
}

fn write_bin_level(level: &SnapLevel, w: &mut impl Write, scratch: &mut Vec<u8>) -> io::Result<()> {
    w.write_all(&count_u32(level.metrics.len())?.to_le_bytes())?;
    for (name, metric) in &level.metrics {
        write_name(w, name)?;
        w.write_all(&metric.frequency.to_le_bytes())?;
        w.write_all(&metric.start.to_le_bytes())?;
        w.write_all(&count_u32(metric.data.len())?.to_le_bytes())?;
        scratch.clear();
        scratch.reserve(metric.data.len() * 4);
        for v in &metric.data {
            #[allow(clippy::cast_possible_truncation, reason = "the format stores f32")]
            scratch.extend_from_slice(&(*v as f32).to_bits().to_le_bytes());
        }
        w.write_all(scratch)?;
    }
    w.write_all(&count_u32(level.children.len())?.to_le_bytes())?;
    for (name, child) in &level.children {
        write_name(w, name)?;
        write_bin_level(child, w, scratch)?;
    }
    Ok(())
}

fn count_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many entries"))
}

fn write_name(w: &mut impl Write, name: &str) -> io::Result<()> {
    let len = u16::try_from(name.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("name of {} bytes is too long for a snapshot", name.len()),
        )
    })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(name.as_bytes())
}

/// Reads the binary form.
///
/// # Errors
///
/// Bad magic, truncation, implausible counts, names that are not UTF-8.
pub fn read_bin(mut reader: impl BufRead) -> Result<Snapshot, SnapshotError> {
    let (from, to) = read_bin_window(&mut reader)?;
    read_bin_body(reader, from, to)
}

/// Reads the rest of a binary snapshot after [`read_bin_window`] (so that a
/// caller can decide from the window whether to read on).
///
/// # Errors
///
/// As [`read_bin`].
pub fn read_bin_body(
    mut reader: impl BufRead,
    from: i64,
    to: i64,
) -> Result<Snapshot, SnapshotError> {
    let mut scratch = Vec::new();
    let root = read_bin_level(&mut reader, 0, &mut scratch)?;
    Ok(Snapshot { from, to, root })
}

/// Reads only the window of a binary snapshot (its first 20 bytes).
///
/// # Errors
///
/// Bad magic or a short file.
pub fn read_bin_window(mut reader: impl Read) -> Result<(i64, i64), SnapshotError> {
    let magic = read_u32(&mut reader)?;
    if magic != BIN_MAGIC {
        return Err(SnapshotError::BadMagic(magic));
    }
    Ok((read_i64(&mut reader)?, read_i64(&mut reader)?))
}

fn read_bin_level(
    r: &mut impl BufRead,
    depth: usize,
    scratch: &mut Vec<u8>,
) -> Result<SnapLevel, SnapshotError> {
    if depth > MAX_DEPTH {
        return Err(SnapshotError::Corrupt(format!(
            "levels nested deeper than {MAX_DEPTH}"
        )));
    }
    let mut level = SnapLevel::default();
    let metrics = read_u32(r)?;
    for _ in 0..metrics {
        let name = read_name(r)?;
        let frequency = read_i64(r)?;
        let start = read_i64(r)?;
        let count = read_u32(r)?;
        if count > MAX_VALUES {
            return Err(SnapshotError::Corrupt(format!(
                "metric {name:?} claims {count} values"
            )));
        }
        // Read through `take` so that a corrupt count fails at the end of
        // the file instead of allocating what it claims.
        let want = u64::from(count) * 4;
        scratch.clear();
        r.by_ref().take(want).read_to_end(scratch)?;
        if scratch.len() as u64 != want {
            return Err(SnapshotError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let data = scratch
            .chunks_exact(4)
            .map(|b| {
                let bits = u32::from_le_bytes([
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                    b.get(2).copied().unwrap_or(0),
                    b.get(3).copied().unwrap_or(0),
                ]);
                f64::from(f32::from_bits(bits))
            })
            .collect();
        level.metrics.insert(
            name,
            SnapMetric {
                frequency,
                start,
                data,
            },
        );
    }
    let children = read_u32(r)?;
    for _ in 0..children {
        let name = read_name(r)?;
        let child = read_bin_level(r, depth + 1, scratch)?;
        level.children.insert(name, child);
    }
    Ok(level)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_i64(r: &mut impl Read) -> io::Result<i64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(i64::from_le_bytes(b))
}

fn read_name(r: &mut impl Read) -> Result<String, SnapshotError> {
    let mut b = [0; 2];
    r.read_exact(&mut b)?;
    let mut name = vec![0; usize::from(u16::from_le_bytes(b))];
    r.read_exact(&mut name)?;
    String::from_utf8(name)
        .map_err(|_| SnapshotError::Corrupt("a level or metric name is not UTF-8".to_owned()))
}

#[cfg(test)]
mod tests;

//! The dead-letter entry: a refused line or a corrupt record, with why it
//! was set aside (`dlq:<upstream>` trees).

use super::*;

/// A dead-lettered line (or corrupt record) with why it was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterEntry {
    /// When it was dead-lettered (Unix ms).
    pub time_ms: u64,
    /// Queue record the lines came from.
    pub record_id: u64,
    /// HTTP status of the rejection, if any.
    pub status: Option<u16>,
    /// Why: `"rejected"`, `"corrupt"`, … (at most 255 bytes are kept).
    pub reason: String,
    /// Default cluster of the record the lines came from (the `?cluster=`
    /// of its requests; empty for none), so that a replay sends them as
    /// they were sent. Version 1 entries did not keep it: empty.
    pub cluster: String,
    /// Hop count of the record the lines came from (version 1: 0).
    pub hops: u8,
    /// The line(s); for `"corrupt"` the undecodable stored value verbatim.
    pub lines: Vec<u8>,
}

/// Dead-letter entry format version written by this build.
pub const DEAD_LETTER_VERSION: u8 = 2;
/// Oldest dead-letter entry version still decoded (no `hops`, no `cluster`).
pub const DEAD_LETTER_VERSION_V1: u8 = 1;

impl DeadLetterEntry {
    /// Encodes the entry (current version; reason truncated to 255 bytes at a
    /// character boundary).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut reason = self.reason.clone();
        truncate_at_char_boundary(&mut reason, 255);
        let mut out = Vec::with_capacity(
            1 + 8 + 8 + 2 + 1 + 1 + reason.len() + 2 + self.cluster.len() + 4 + self.lines.len(),
        );
        out.push(DEAD_LETTER_VERSION);
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        out.extend_from_slice(&self.record_id.to_le_bytes());
        out.extend_from_slice(&self.status.unwrap_or(0).to_le_bytes());
        out.push(self.hops);
        out.push(u8::try_from(reason.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(reason.as_bytes());
        put_str16(&mut out, self.cluster.as_bytes());
        out.extend_from_slice(&crc32c::crc32c(&self.lines).to_le_bytes());
        out.extend_from_slice(&self.lines);
        out
    }

    /// Decodes and verifies an entry of version 1 or 2.
    ///
    /// # Errors
    ///
    /// [`RecordError::Truncated`], [`RecordError::UnsupportedVersion`],
    /// [`RecordError::NotUtf8`], [`RecordError::ChecksumMismatch`].
    pub fn decode(bytes: &[u8]) -> Result<DeadLetterEntry, RecordError> {
        let mut r = Reader::new(bytes, 0);
        let version = r.u8("version")?;
        if version != DEAD_LETTER_VERSION && version != DEAD_LETTER_VERSION_V1 {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let time_ms = r.u64("time_ms")?;
        let record_id = r.u64("record_id")?;
        let status = r.u16("status")?;
        let hops = if version == DEAD_LETTER_VERSION_V1 {
            0
        } else {
            r.u8("hops")?
        };
        let reason_len = usize::from(r.u8("reason_len")?);
        let reason = String::from_utf8(r.take(reason_len, "reason")?.to_vec())
            .map_err(|_| RecordError::NotUtf8("reason"))?;
        let cluster = if version == DEAD_LETTER_VERSION_V1 {
            String::new()
        } else {
            r.str16("cluster")?
        };
        let stored = r.u32("crc32c")?;
        let lines = r.rest().to_vec();
        let computed = crc32c::crc32c(&lines);
        if computed != stored {
            return Err(RecordError::ChecksumMismatch { stored, computed });
        }
        Ok(DeadLetterEntry {
            time_ms,
            record_id,
            status: (status != 0).then_some(status),
            reason,
            cluster,
            hops,
            lines,
        })
    }

    /// Whether the entry holds line protocol that can be sent again: not a
    /// corrupt record set aside verbatim, and not empty.
    #[must_use]
    pub fn is_replayable(&self) -> bool {
        self.reason != crate::queue::sled_store::REASON_CORRUPT && !self.lines.is_empty()
    }
}

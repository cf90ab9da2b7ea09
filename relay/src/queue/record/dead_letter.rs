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
    /// The line(s); for `"corrupt"` the undecodable stored value verbatim.
    pub lines: Vec<u8>,
}

/// Dead-letter entry format version.
pub const DEAD_LETTER_VERSION: u8 = 1;

impl DeadLetterEntry {
    /// Encodes the entry (reason truncated to 255 bytes at a character boundary).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut reason = self.reason.clone();
        truncate_at_char_boundary(&mut reason, 255);
        let mut out = Vec::with_capacity(1 + 8 + 8 + 2 + 1 + reason.len() + 4 + self.lines.len());
        out.push(DEAD_LETTER_VERSION);
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        out.extend_from_slice(&self.record_id.to_le_bytes());
        out.extend_from_slice(&self.status.unwrap_or(0).to_le_bytes());
        out.push(u8::try_from(reason.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(&crc32c::crc32c(&self.lines).to_le_bytes());
        out.extend_from_slice(&self.lines);
        out
    }

    /// Decodes and verifies an entry.
    ///
    /// # Errors
    ///
    /// [`RecordError::Truncated`], [`RecordError::UnsupportedVersion`],
    /// [`RecordError::NotUtf8`], [`RecordError::ChecksumMismatch`].
    pub fn decode(bytes: &[u8]) -> Result<DeadLetterEntry, RecordError> {
        let mut r = Reader::new(bytes, 0);
        let version = r.u8("version")?;
        if version != DEAD_LETTER_VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let time_ms = r.u64("time_ms")?;
        let record_id = r.u64("record_id")?;
        let status = r.u16("status")?;
        let reason_len = usize::from(r.u8("reason_len")?);
        let reason = String::from_utf8(r.take(reason_len, "reason")?.to_vec())
            .map_err(|_| RecordError::NotUtf8("reason"))?;
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
            lines,
        })
    }
}

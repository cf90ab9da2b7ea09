//! Fixed-frequency sample storage for one (level, metric): chunks and chains.
//!
//! A [`Chunk`] holds consecutive slots of one metric at a fixed frequency `f`:
//! slot `k` covers `[start + k·f, start + (k+1)·f)`. Missing slots are NaN. A
//! [`Chain`] is the list of chunks of one (level, metric), oldest first; the
//! newest chunk is the *head* and the only one that is ever written to.
//!
//! Invariants (they are what cc-metric-store clients observe through queries
//! and checkpoints):
//!
//! - The first sample `ts` written to a chain creates a chunk with
//!   `start = ts − f/2`, so slot boundaries are centred on that sample.
//! - A sample before the head's `start` is rejected ([`WriteError::FromPast`]);
//!   older chunks are never written to.
//! - A sample beyond the head's capacity starts a new head re-anchored on that
//!   sample (`start = ts − f/2`), not on the old grid.
//! - Writing into an existing slot overwrites it (last write wins); writing
//!   past the last slot fills the gap with NaN.
//! - Chunks created by writes have capacity [`CHUNK_CAPACITY`]; chunks loaded
//!   from checkpoints are full (`capacity == len`) and flagged `archived`.
//!
//! A chunk's slot array grows with its data: [`FIRST_SLOTS`] slots at
//! first, then doubling up to the chunk's capacity, so a young series costs
//! a few dozen bytes rather than a full chunk. Capacity (how many slots a
//! chunk may hold, which decides where the next chunk starts) is a property
//! of the chunk, not of its allocation.

/// Slots of a chunk created by writes.
pub const CHUNK_CAPACITY: usize = 512;

/// Slots allocated when a chunk gets its first value.
pub const FIRST_SLOTS: usize = 4;

/// A series whose newest slot ended more than this many of its periods ago
/// is stale (cc-metric-store's health rule, §10.1); a host none of whose
/// series is fresh is *silent* (`ccstore_silent_hosts`, the status page).
pub const STALE_AFTER_PERIODS: i64 = 5;

/// A run of consecutive slots at one frequency.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Left edge of slot 0, in Unix seconds.
    pub start: i64,
    /// Slot width in seconds (> 0).
    pub frequency: i64,
    /// The slots written so far (`len ≤ capacity`); NaN marks a gap.
    pub data: Vec<f64>,
    /// Number of slots this chunk may hold.
    pub capacity: usize,
    /// Loaded from a checkpoint, so it need not be written again.
    pub archived: bool,
    /// Written since the chunk was last saved to a checkpoint.
    pub unsaved: bool,
}

impl Chunk {
    /// An empty chunk for writes, anchored so that `ts` is the middle of slot 0.
    #[must_use]
    pub fn new_at(ts: i64, frequency: i64) -> Chunk {
        Chunk {
            start: ts - frequency / 2,
            frequency,
            data: Vec::new(),
            capacity: CHUNK_CAPACITY,
            archived: false,
            unsaved: false,
        }
    }

    /// A full chunk loaded from a checkpoint.
    #[must_use]
    pub fn loaded(start: i64, frequency: i64, data: Vec<f64>) -> Chunk {
        Chunk {
            start,
            frequency,
            capacity: data.len(),
            data,
            archived: true,
            unsaved: false,
        }
    }

    /// Nominal time of slot 0 (`start + f/2`).
    #[must_use]
    pub fn first_write(&self) -> i64 {
        self.start + self.frequency / 2
    }

    /// End used by retention and checkpoints: `first_write + len·f`.
    #[must_use]
    pub fn end(&self) -> i64 {
        self.first_write() + self.len_i64() * self.frequency
    }

    /// End of the last written slot: `start + len·f` (debug dump, health).
    #[must_use]
    pub fn slots_end(&self) -> i64 {
        self.start + self.len_i64() * self.frequency
    }

    /// Number of written slots.
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no slot is written yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn len_i64(&self) -> i64 {
        i64::try_from(self.data.len()).unwrap_or(i64::MAX)
    }

    /// Makes room for `len` slots: at least double the allocation (starting
    /// at [`FIRST_SLOTS`]), but never more than the chunk's capacity.
    fn reserve_slots(&mut self, len: usize) {
        let allocated = self.data.capacity();
        if len <= allocated {
            return;
        }
        let target = allocated
            .saturating_mul(2)
            .max(FIRST_SLOTS)
            .min(self.capacity)
            .max(len);
        self.data.reserve_exact(target - self.data.len());
    }

    /// Appends `value` in the slot after the last one.
    fn push(&mut self, value: f64) {
        self.reserve_slots(self.data.len() + 1);
        self.data.push(value);
    }

    /// Slot index of `t` (truncating towards zero, negative before `start`),
    /// saturating: a query may read from any `t` up to `i64::MAX`.
    fn slot(&self, t: i64) -> i64 {
        let slot = (i128::from(t) - i128::from(self.start)) / i128::from(self.frequency);
        i64::try_from(slot).unwrap_or(if slot < 0 { i64::MIN } else { i64::MAX })
    }
}

/// Why a sample was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The sample is older than the head chunk.
    #[error("cannot write value to buffer from past")]
    FromPast,
}

/// What a checkpoint takes from a chain: the newest chunk, and the older
/// unsaved chunks as runs.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsavedParts {
    /// Older unsaved chunks merged into runs, oldest first: one run unless
    /// a gap of more than a chunk's worth of slots (or a change of
    /// frequency) separates them, so that no run holds a long stretch of
    /// NaN.
    pub older: Vec<Unsaved>,
    /// The newest chunk as it is.
    pub head: Unsaved,
}

/// Runs of values from consecutive chunks (see [`UnsavedParts::older`]).
fn merge_runs(chunks: &[Chunk]) -> Vec<Unsaved> {
    let mut runs = Vec::new();
    let mut from = 0;
    for (i, pair) in chunks.windows(2).enumerate() {
        if let [a, b] = pair {
            let gap = b.start - a.slots_end();
            let limit = i64::try_from(CHUNK_CAPACITY).unwrap_or(i64::MAX) * a.frequency;
            if a.frequency != b.frequency || gap > limit {
                runs.extend(chunks.get(from..=i).and_then(merge_run));
                from = i + 1;
            }
        }
    }
    runs.extend(chunks.get(from..).and_then(merge_run));
    runs
}

/// One run of values from consecutive chunks, on the first chunk's grid
/// (each value goes to the slot holding the middle of its own slot).
fn merge_run(chunks: &[Chunk]) -> Option<Unsaved> {
    let base = chunks.first()?;
    let (start, frequency) = (base.start, base.frequency);
    let mut data: Vec<f64> = Vec::new();
    for chunk in chunks {
        for (j, v) in chunk.data.iter().enumerate() {
            let j = i64::try_from(j).unwrap_or(i64::MAX);
            let middle = chunk.start + j * chunk.frequency + chunk.frequency / 2;
            let Ok(idx) = usize::try_from((middle - start) / frequency) else {
                continue;
            };
            if idx >= data.len() {
                data.resize(idx + 1, f64::NAN);
            }
            if let Some(slot) = data.get_mut(idx) {
                *slot = *v;
            }
        }
    }
    (!data.is_empty()).then_some(Unsaved {
        start,
        frequency,
        data,
    })
}

/// Values taken from a chain for a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsaved {
    /// Start of the first value's slot.
    pub start: i64,
    /// Slot width.
    pub frequency: i64,
    /// The values; NaN for gaps.
    pub data: Vec<f64>,
}

/// What a range read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadWindow {
    /// Effective start: the requested `from`, or the first sample's time if
    /// the request starts before all data.
    pub from: i64,
    /// Effective end: `from + n·f`.
    pub to: i64,
    /// Slot width of the values.
    pub frequency: i64,
}

/// All chunks of one (level, metric), oldest first. Never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    chunks: Vec<Chunk>,
}

impl Chain {
    /// A chain holding one sample.
    #[must_use]
    pub fn with_sample(ts: i64, value: f64, frequency: i64) -> Chain {
        let mut chunk = Chunk::new_at(ts, frequency);
        chunk.push(value);
        chunk.unsaved = true;
        Chain {
            chunks: vec![chunk],
        }
    }

    /// A chain made of the given chunks (oldest first); `None` if empty.
    #[must_use]
    pub fn from_chunks(chunks: Vec<Chunk>) -> Option<Chain> {
        (!chunks.is_empty()).then_some(Chain { chunks })
    }

    /// The chunks, oldest first.
    #[must_use]
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// The newest chunk.
    #[must_use]
    pub fn head(&self) -> Option<&Chunk> {
        self.chunks.last()
    }

    /// Number of stored slots over all chunks.
    #[must_use]
    pub fn value_count(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum()
    }

    /// Bytes held by the slot arrays (capacity, not length).
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.data.capacity() * std::mem::size_of::<f64>())
            .sum()
    }

    /// Moves a chain that holds a single sample onto the slots of
    /// `frequency`, which its metric has just learned (see
    /// [`crate::registry::Registry::observe`]); a chain with more data, or
    /// already at `frequency`, stays as it is.
    pub fn adopt_frequency(&mut self, frequency: i64) {
        if let [only] = self.chunks.as_mut_slice()
            && only.frequency != frequency
            && frequency > 0
            && only.len() == 1
            && !only.archived
            && let Some(&value) = only.data.first()
        {
            let mut chunk = Chunk::new_at(only.first_write(), frequency);
            chunk.push(value);
            chunk.unsaved = true;
            *only = chunk;
        }
    }

    /// Writes one sample at the head.
    ///
    /// # Errors
    ///
    /// [`WriteError::FromPast`] if `ts` is before the head chunk's start.
    pub fn write(&mut self, ts: i64, value: f64) -> Result<(), WriteError> {
        let Some(head) = self.chunks.last_mut() else {
            return Err(WriteError::FromPast);
        };
        if ts < head.start {
            return Err(WriteError::FromPast);
        }
        let k = usize::try_from(head.slot(ts)).unwrap_or(usize::MAX);
        if k >= head.capacity {
            let mut chunk = Chunk::new_at(ts, head.frequency);
            chunk.push(value);
            chunk.unsaved = true;
            self.chunks.push(chunk);
            return Ok(());
        }
        head.unsaved = true;
        if let Some(slot) = head.data.get_mut(k) {
            *slot = value;
        } else {
            head.reserve_slots(k + 1);
            head.data.resize(k, f64::NAN);
            head.data.push(value);
        }
        Ok(())
    }

    /// Reads the slots covering `[from, to)` into `out` (appending), exactly
    /// as cc-metric-store does:
    ///
    /// - a `from` before all data is clamped to the oldest chunk's first sample;
    /// - value `i` is the slot containing `from + i·f` (`from` is not snapped
    ///   to the grid);
    /// - gaps between and inside chunks read as NaN;
    /// - reading stops after the last written slot of the head, so the window
    ///   may end before `to` (or up to `f − 1` seconds after it).
    pub fn read(&self, from: i64, to: i64, out: &mut Vec<f64>) -> ReadWindow {
        let mut unbounded = usize::MAX;
        self.read_bounded(from, to, out, &mut unbounded)
    }

    /// [`Chain::read`] with at most `gap_budget` NaN slots for gaps (taken
    /// from it as they are read). A gap longer than what is left of the
    /// budget is not read: what came before it is dropped and the window
    /// starts after it, at the first slot of the data that follows. So a
    /// read costs the data it returns plus the budget, however long ago its
    /// oldest sample is (one sample from years ago would otherwise be
    /// followed by a NaN for every slot since).
    pub fn read_bounded(
        &self,
        from: i64,
        to: i64,
        out: &mut Vec<f64>,
        gap_budget: &mut usize,
    ) -> ReadWindow {
        let base = out.len();
        let Some(last) = self.chunks.len().checked_sub(1) else {
            return ReadWindow {
                from,
                to: from,
                frequency: 1,
            };
        };
        let mut from = from;
        let mut cur = last;
        // Walk back to the chunk holding `from`.
        while let Some(chunk) = self.chunks.get(cur) {
            if from >= chunk.first_write() {
                break;
            }
            if cur == 0 {
                from = chunk.first_write();
                break;
            }
            cur -= 1;
        }
        let mut t = from;
        let mut frequency = self.chunks.get(cur).map_or(1, |c| c.frequency);
        let mut in_gap = false;
        while t < to {
            let Some(mut chunk) = self.chunks.get(cur) else {
                break;
            };
            let mut k = chunk.slot(t);
            // Past this chunk's capacity: move on to the chunk holding `t`.
            while usize::try_from(k).is_ok_and(|k| k >= chunk.capacity) {
                match self.chunks.get(cur + 1) {
                    Some(next) => {
                        cur += 1;
                        chunk = next;
                        k = chunk.slot(t);
                    }
                    None => break,
                }
            }
            if usize::try_from(k).is_ok_and(|k| k >= chunk.capacity) {
                break;
            }
            frequency = chunk.frequency;
            let value = match usize::try_from(k) {
                // Before this chunk's start (slot indices truncate towards
                // zero, so this is not always a negative k): a gap.
                Ok(k) if k < chunk.len() && t < chunk.start => f64::NAN,
                Ok(k) if k < chunk.len() => {
                    // Inside the written slots, consecutive times map to
                    // consecutive slots: copy the whole run at once.
                    let f = chunk.frequency;
                    // In i128: `to` may be as large as i64::MAX.
                    let times_left = usize::try_from(
                        (i128::from(to) - i128::from(t) + i128::from(f) - 1) / i128::from(f),
                    )
                    .unwrap_or(usize::MAX);
                    let n = (chunk.len() - k).min(times_left).max(1);
                    match chunk.data.get(k..k + n) {
                        Some(run) => out.extend_from_slice(run),
                        None => break,
                    }
                    in_gap = false;
                    t += i64::try_from(n).unwrap_or(1) * f;
                    continue;
                }
                Ok(_) => match self.chunks.get(cur + 1) {
                    // Past the written slots: a gap if a later chunk follows
                    // within the range, else the end of the data.
                    Some(next) if to > next.start => f64::NAN,
                    _ => break,
                },
                Err(_) => f64::NAN,
            };
            // Every NaN made up here is a gap slot (stored NaNs are copied
            // with their runs above). At the first slot of a gap, its whole
            // length is taken from the budget, or the gap is skipped.
            if !in_gap {
                let next_start = if t < chunk.start {
                    chunk.start
                } else {
                    self.chunks.get(cur + 1).map_or(to, |next| next.start)
                };
                let f = i128::from(chunk.frequency.max(1));
                let steps = ((i128::from(next_start) - i128::from(t) + f - 1) / f).max(1);
                match usize::try_from(steps) {
                    Ok(gap) if gap <= *gap_budget => {
                        *gap_budget -= gap;
                        in_gap = true;
                    }
                    _ => {
                        // Restart at the first slot after the gap, on the
                        // same grid, without what came before it.
                        t = i64::try_from(i128::from(t) + steps * f).unwrap_or(i64::MAX);
                        out.truncate(base);
                        from = t;
                        continue;
                    }
                }
            }
            out.push(value);
            t += chunk.frequency;
        }
        ReadWindow {
            from,
            to: t,
            frequency,
        }
    }

    /// The chunks written since the last checkpoint (every chunk if `all`),
    /// and marks them saved. Returns `None` if there is nothing to save.
    ///
    /// The newest chunk comes back on its own, exactly as it is, so that a
    /// restore puts it back with the same start and room and late samples
    /// into it are accepted as before. Older unsaved chunks come back as one
    /// run from the oldest one's start: later chunks are placed on its grid
    /// by the middle of each slot (they share it when samples arrive on
    /// time) and gaps between chunks are NaN.
    pub fn take_unsaved(&mut self, all: bool) -> Option<UnsavedParts> {
        let first = if all {
            self.chunks.iter().position(|c| !c.is_empty())?
        } else {
            self.chunks.iter().position(|c| c.unsaved)?
        };
        let (head, older) = self.chunks.get(first..)?.split_last()?;
        let parts = UnsavedParts {
            older: merge_runs(older),
            head: Unsaved {
                start: head.start,
                frequency: head.frequency,
                data: head.data.clone(),
            },
        };
        for chunk in self.chunks.iter_mut().skip(first) {
            chunk.unsaved = false;
        }
        Some(parts)
    }

    /// Marks the chunks starting at or after `start` as unsaved again (their
    /// snapshot could not be written).
    pub fn mark_unsaved_from(&mut self, start: i64) {
        for chunk in self.chunks.iter_mut().filter(|c| c.start >= start) {
            chunk.unsaved = true;
        }
    }

    /// After a restore: gives the newest chunk the room of a chunk created
    /// by writes ([`CHUNK_CAPACITY`] slots, or its length if longer), as the
    /// chunk it was saved from had, so that WAL replay and new samples fill
    /// it as they would have before.
    pub fn reopen_head(&mut self) {
        if let Some(head) = self.chunks.last_mut() {
            head.capacity = head.capacity.max(head.data.len()).max(CHUNK_CAPACITY);
        }
    }

    /// Adds a chunk read from a checkpoint. A checkpoint written later
    /// supersedes what earlier ones held from its start on, so older chunks
    /// are cut back to end before it.
    pub fn merge_loaded(&mut self, chunk: Chunk) {
        while let Some(head) = self.chunks.last_mut() {
            if head.start >= chunk.start {
                self.chunks.pop();
                continue;
            }
            let keep =
                usize::try_from((chunk.start - head.start + head.frequency - 1) / head.frequency)
                    .unwrap_or(usize::MAX);
            if keep < head.data.len() {
                head.data.truncate(keep);
                head.capacity = keep;
            }
            break;
        }
        self.chunks.push(chunk);
    }

    /// Drops every chunk whose [`Chunk::end`] is before `t` (with
    /// `keep_unsaved`, only up to the first chunk not yet saved to a
    /// checkpoint). Returns how many chunks were dropped; the chain is empty
    /// afterwards if all were.
    pub fn free(&mut self, t: i64, keep_unsaved: bool) -> usize {
        let keep_from = self
            .chunks
            .iter()
            .position(|c| c.end() >= t || (keep_unsaved && c.unsaved))
            .unwrap_or(self.chunks.len());
        self.chunks.drain(..keep_from).count()
    }

    /// Whether every chunk was freed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Health of this chain at `now` (cc-metric-store §10.1): `None` if the
    /// head holds no value, else whether it is stale (its last slot ended
    /// more than [`STALE_AFTER_PERIODS`] periods ago).
    #[must_use]
    pub fn head_is_stale(&self, now: i64) -> Option<bool> {
        let head = self.head().filter(|h| !h.is_empty())?;
        Some(now - head.slots_end() > STALE_AFTER_PERIODS * head.frequency)
    }

    /// Time of the newest sample, Unix seconds: the middle of the head's
    /// last written slot (writes are anchored there); `None` without data.
    #[must_use]
    pub fn newest_sample(&self) -> Option<i64> {
        let head = self.head().filter(|h| !h.is_empty())?;
        Some(head.slots_end() - head.frequency / 2)
    }
}

#[cfg(test)]
mod tests;

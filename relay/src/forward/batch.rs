//! Batch assembly: what a worker takes from the head of its queue next
//! (spec `relay.md` §4.7, "Batch assembly").

use std::sync::Arc;
use std::time::Duration;

use cc_common::time::now_ms;
use tokio_util::sync::CancellationToken;

use super::Worker;
use super::http::Piece;

impl Worker {
    /// Waits for data, then takes the next batch after `cursor` (the records
    /// before it are on the way). `None` if there is nothing to send yet.
    pub(super) async fn next_batch(
        &mut self,
        stop: &CancellationToken,
        cursor: Option<u64>,
        others_on_the_way: bool,
    ) -> Result<Option<Vec<Piece>>, crate::queue::QueueError> {
        let core = Arc::clone(&self.core);
        let settings = &core.settings;
        let stats = core.queue.len(&settings.name)?;
        let Some(oldest) = stats.oldest_ingest_ms else {
            if !others_on_the_way {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = core.upstream.wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            return Ok(None);
        };
        let (max_bytes, probing) = {
            let state = core.state.lock();
            (state.max_bytes, state.probing)
        };
        // Linger for a fuller batch unless one is ready or the data is old enough.
        let full = stats.raw_bytes >= max_bytes || stats.lines >= settings.max_lines;
        let age = Duration::from_millis(now_ms().saturating_sub(oldest));
        if !full
            && age < settings.linger
            && !probing
            && !others_on_the_way
            && !self.draining.is_cancelled()
        {
            let wait = settings.linger - age;
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = self.draining.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(max_age) = settings.max_age {
            let cutoff =
                now_ms().saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
            let removed = core.queue.drop_older_than(&settings.name, cutoff, cursor)?;
            if removed.records > 0 {
                core.upstream
                    .counters
                    .expired
                    .add(removed.lines, removed.records);
                tracing::warn!(upstream = %settings.name, lines = removed.lines, "dropped lines older than buffer.max_age");
            }
        }
        let max_records = if probing { 1 } else { 4096 };
        if others_on_the_way && !probing && !self.draining.is_cancelled() {
            // Linger on the records not yet on the way, as for the first.
            let first = core
                .queue
                .peek_batch(&settings.name, 1, max_bytes, cursor)?;
            if let Some((_, record)) = first.first() {
                let age = Duration::from_millis(now_ms().saturating_sub(record.ingest_time_ms()));
                if age < settings.linger && stats.raw_bytes < max_bytes {
                    tokio::select! {
                        () = stop.cancelled() => return Ok(None),
                        () = self.draining.cancelled() => {}
                        () = tokio::time::sleep(settings.linger - age) => {}
                    }
                }
            }
        }
        // The window on the way grows under the lock that eviction takes.
        let mut in_flight = core.upstream.in_flight.lock();
        let records = core
            .queue
            .peek_batch(&settings.name, max_records, max_bytes, cursor)?;
        // One request carries one default cluster and at most max_lines lines.
        let mut pieces: Vec<Piece> = Vec::new();
        let mut lines = 0u64;
        for (id, record) in records {
            let same_cluster = pieces.first().is_none_or(|p| p.cluster == record.cluster());
            if !same_cluster
                || (!pieces.is_empty()
                    && lines + u64::from(record.line_count()) > settings.max_lines)
            {
                break;
            }
            lines += u64::from(record.line_count());
            pieces.push(Piece {
                id,
                cluster: record.cluster().to_owned(),
                hops: record.hops(),
                ingest_ms: record.ingest_time_ms(),
                lines: record.line_count(),
                body: record.into_payload(),
                part: None,
            });
        }
        if let Some(last) = pieces.last() {
            *in_flight = Some(last.id);
        }
        drop(in_flight);
        Ok((!pieces.is_empty()).then_some(pieces))
    }
}

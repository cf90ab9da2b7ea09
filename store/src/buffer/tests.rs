use super::*;

fn chain_of(chunks: Vec<Chunk>) -> Chain {
    Chain::from_chunks(chunks).unwrap()
}

fn chunk(start: i64, frequency: i64, data: &[f64], capacity: usize) -> Chunk {
    Chunk {
        start,
        frequency,
        data: data.to_vec(),
        capacity,
        archived: false,
        unsaved: false,
    }
}

fn read(chain: &Chain, from: i64, to: i64) -> (Vec<f64>, ReadWindow) {
    let mut out = Vec::new();
    let w = chain.read(from, to, &mut out);
    (out, w)
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || x == y)
}

#[test]
fn end_and_first_write() {
    let c = chunk(90, 10, &[1.0, 2.0, 3.0, 4.0], CHUNK_CAPACITY);
    assert_eq!(c.first_write(), 95);
    assert_eq!(c.end(), 135);
    assert_eq!(c.slots_end(), 130);
}

#[test]
fn first_sample_centres_the_grid() {
    let chain = Chain::with_sample(1000, 1.0, 60);
    assert_eq!(chain.head().unwrap().start, 970);
    let odd = Chain::with_sample(1000, 1.0, 15);
    assert_eq!(odd.head().unwrap().start, 993);
}

#[test]
fn gaps_are_nan_filled() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    chain.write(130, 4.0).unwrap();
    let data = &chain.head().unwrap().data;
    assert_eq!(data.len(), 4);
    assert_eq!(data[0], 1.0);
    assert!(data[1].is_nan() && data[2].is_nan());
    assert_eq!(data[3], 4.0);
}

#[test]
fn overflow_starts_a_new_head_anchored_on_the_sample() {
    let mut chain = chain_of(vec![chunk(95, 10, &[1.0, 2.0], 2)]);
    chain.write(127, 3.0).unwrap();
    assert_eq!(chain.chunks().len(), 2);
    assert_eq!(chain.chunks()[0].data, [1.0, 2.0]);
    let head = chain.head().unwrap();
    assert_eq!((head.start, head.data.as_slice()), (122, &[3.0][..]));
}

#[test]
fn rewriting_a_slot_overwrites_it() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    chain.write(100, 5.0).unwrap();
    chain.write(104, 6.0).unwrap(); // same slot: last write wins
    assert_eq!(chain.head().unwrap().data, [6.0]);
}

#[test]
fn samples_before_the_head_are_rejected() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    assert_eq!(chain.write(50, 2.0), Err(WriteError::FromPast));
    assert_eq!(chain.write(95, 2.0), Ok(()));
    assert_eq!(chain.head().unwrap().data, [2.0]);
}

#[test]
fn late_sample_lands_in_the_next_slot() {
    let mut chain = Chain::with_sample(1000, 1.0, 60);
    chain.write(1060 + 30, 2.0).unwrap(); // 30 s late: slot [1090, 1150)
    assert_eq!(chain.head().unwrap().len(), 3);
}

#[test]
fn read_before_first_write_clamps_from() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    chain.write(110, 2.0).unwrap();
    let (values, w) = read(&chain, 50, 200);
    assert_eq!(values, [1.0, 2.0]);
    assert_eq!((w.from, w.to), (100, 120));
}

#[test]
fn read_across_chained_chunks() {
    let chain = chain_of(vec![
        chunk(95, 10, &[1.0, 2.0, 3.0], 3),
        chunk(125, 10, &[4.0, 5.0, 6.0], CHUNK_CAPACITY),
    ]);
    let (values, w) = read(&chain, 100, 160);
    assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!((w.from, w.to), (100, 160));
}

#[test]
fn read_recomputes_the_index_after_switching_chunks() {
    let chain = chain_of(vec![
        chunk(0, 10, &[1.0, 2.0], 2),
        chunk(0, 10, &[10.0, 20.0, 30.0], CHUNK_CAPACITY),
    ]);
    // Walks back to the first chunk; t = 25 is past its capacity, and in the
    // next chunk (same start) it is slot 2, not slot 0.
    let (values, w) = read(&chain, 0, 30);
    assert_eq!(values, [1.0, 2.0, 30.0]);
    assert_eq!((w.from, w.to), (5, 35));
}

#[test]
fn stored_nan_reads_back_as_nan() {
    let chain = chain_of(vec![chunk(95, 10, &[1.0, f64::NAN, 3.0], CHUNK_CAPACITY)]);
    let (values, _) = read(&chain, 100, 130);
    assert!(same(&values, &[1.0, f64::NAN, 3.0]));
}

#[test]
fn read_stops_after_the_last_written_slot() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    chain.write(110, 2.0).unwrap();
    chain.write(120, 3.0).unwrap();
    let (values, w) = read(&chain, 100, 130);
    assert_eq!(values, [1.0, 2.0, 3.0]);
    assert_eq!((w.from, w.to), (100, 130));
    let (values, w) = read(&chain, 100, 1000);
    assert_eq!(values.len(), 3);
    assert_eq!(w.to, 130);
}

#[test]
fn read_worked_example_of_the_spec() {
    let mut chain = Chain::with_sample(1000, 1.0, 60);
    chain.write(1060, 2.0).unwrap();
    chain.write(1120, 3.0).unwrap();
    let (values, w) = read(&chain, 900, 1200);
    assert_eq!(values, [1.0, 2.0, 3.0]);
    assert_eq!((w.from, w.to, w.frequency), (1000, 1180, 60));
    let (values, w) = read(&chain, 1030, 1200);
    assert_eq!(values, [2.0, 3.0]);
    assert_eq!((w.from, w.to), (1030, 1150));
}

#[test]
fn a_gap_longer_than_the_budget_is_skipped_with_what_came_before_it() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    let later = 100 + 10 * (CHUNK_CAPACITY as i64 + 3);
    chain.write(later, 2.0).unwrap();
    let gap = CHUNK_CAPACITY + 2;
    // Budget enough for the gap: read as the unbounded read does, and the
    // gap's slots are taken from the budget.
    let mut budget = gap + 5;
    let mut out = Vec::new();
    let w = chain.read_bounded(100, later + 10, &mut out, &mut budget);
    let (unbounded, uw) = read(&chain, 100, later + 10);
    assert!(same(&out, &unbounded));
    assert_eq!(w, uw);
    assert_eq!(budget, 5);
    // One slot short: the read starts after the gap, on the same grid.
    let mut budget = gap - 1;
    let mut out = vec![7.0];
    let w = chain.read_bounded(100, later + 10, &mut out, &mut budget);
    assert_eq!(out, [7.0, 2.0], "what was in `out` before stays");
    assert_eq!(budget, gap - 1, "a skipped gap costs nothing");
    assert_eq!((w.from, w.to), (later, later + 10));
    // Nothing in range after the gap: an empty window.
    let mut budget = 0;
    let mut out = Vec::new();
    let w = chain.read_bounded(100, later - 100, &mut out, &mut budget);
    assert_eq!(out, [1.0]);
    assert_eq!(w.from, 100);
}

#[test]
fn gap_between_chunks_reads_as_nan() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    // Far beyond the capacity: a new chunk with a gap before it.
    let later = 100 + 10 * (CHUNK_CAPACITY as i64 + 3);
    chain.write(later, 2.0).unwrap();
    assert_eq!(chain.chunks().len(), 2);
    let (values, w) = read(&chain, 100, later + 10);
    assert_eq!(values.first(), Some(&1.0));
    assert_eq!(values.last(), Some(&2.0));
    assert_eq!(values.len(), CHUNK_CAPACITY + 4);
    assert!(
        values[values.len() - 2].is_nan(),
        "5 s before the new chunk is a gap"
    );
    let inner: Vec<_> = values[1..values.len() - 1]
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .collect();
    assert!(inner.is_empty(), "{inner:?}");
    assert_eq!(w.to, 100 + 10 * (CHUNK_CAPACITY as i64 + 4));
}

#[test]
fn free_drops_old_chunks_and_keeps_the_head() {
    let mut chain = chain_of(vec![
        chunk(0, 10, &[1.0, 2.0], 2),  // end 25
        chunk(20, 10, &[1.0, 2.0], 2), // end 45
        chunk(40, 10, &[1.0, 2.0], 2), // end 65
    ]);
    assert_eq!(chain.free(30, false), 1);
    assert_eq!(chain.chunks().len(), 2);
    assert_eq!(chain.free(100, false), 2);
    assert!(chain.is_empty());
}

#[test]
fn value_count_sums_over_chunks() {
    let chain = chain_of(vec![
        chunk(0, 10, &[1.0; 3], 3),
        chunk(30, 10, &[1.0; 2], 2),
        chunk(50, 10, &[1.0; 5], CHUNK_CAPACITY),
    ]);
    assert_eq!(chain.value_count(), 10);
}

#[test]
fn health_of_the_head() {
    let now = 10_000;
    let recent = Chain::with_sample(now - 50, 1.0, 10); // slots end at now - 45
    assert_eq!(recent.head_is_stale(now), Some(false));
    let old = Chain::with_sample(now - 105, 1.0, 10); // ends 100 s ago
    assert_eq!(old.head_is_stale(now), Some(true));
    let empty = chain_of(vec![chunk(0, 10, &[], CHUNK_CAPACITY)]);
    assert_eq!(empty.head_is_stale(now), None);
}

/// The read algorithm one slot at a time, as specified; the real `read`
/// copies runs of slots and must give the same result.
fn read_slot_by_slot(chain: &Chain, from: i64, to: i64) -> (Vec<f64>, ReadWindow) {
    let chunks = chain.chunks();
    let mut out = Vec::new();
    let mut from = from;
    let mut cur = chunks.len() - 1;
    loop {
        let c = &chunks[cur];
        if from >= c.first_write() {
            break;
        }
        if cur == 0 {
            from = c.first_write();
            break;
        }
        cur -= 1;
    }
    let mut t = from;
    let mut frequency = chunks[cur].frequency;
    while t < to {
        let mut c = &chunks[cur];
        let mut k = (t - c.start) / c.frequency;
        while k >= 0 && k as usize >= c.capacity && cur + 1 < chunks.len() {
            cur += 1;
            c = &chunks[cur];
            k = (t - c.start) / c.frequency;
        }
        if k >= 0 && k as usize >= c.capacity {
            break;
        }
        frequency = c.frequency;
        let v = if k >= 0 && (k as usize) < c.len() {
            if t < c.start {
                f64::NAN
            } else {
                c.data[k as usize]
            }
        } else if k >= 0 {
            match chunks.get(cur + 1) {
                Some(next) if to > next.start => f64::NAN,
                _ => break,
            }
        } else {
            f64::NAN
        };
        out.push(v);
        t += c.frequency;
    }
    (
        out,
        ReadWindow {
            from,
            to: t,
            frequency,
        },
    )
}

proptest::proptest! {
    #[test]
    fn run_copying_read_equals_slot_by_slot(
        writes in proptest::collection::vec((0i64..40_000, -100.0f64..100.0), 1..400),
        from in -1000i64..45_000,
        len in 0i64..50_000,
    ) {
        let mut sorted = writes.clone();
        sorted.sort_by_key(|w| w.0);
        let mut chain = Chain::with_sample(sorted[0].0, sorted[0].1, 10);
        for (ts, v) in &sorted[1..] {
            let _ = chain.write(*ts, *v);
        }
        let (fast, w1) = read(&chain, from, from + len);
        let (slow, w2) = read_slot_by_slot(&chain, from, from + len);
        proptest::prop_assert_eq!(w1, w2);
        proptest::prop_assert!(same(&fast, &slow));
    }
}

#[test]
fn unsaved_chunks_are_taken_once_from_their_start() {
    let mut chain = Chain::with_sample(1000, 1.0, 60);
    chain.write(1060, 2.0).unwrap();
    let u = chain.take_unsaved(false).unwrap();
    assert!(u.older.is_empty());
    assert_eq!((u.head.start, u.head.frequency), (970, 60));
    assert_eq!(u.head.data, vec![1.0, 2.0]);
    assert_eq!(chain.take_unsaved(false), None, "nothing new");
    chain.write(1180, 4.0).unwrap();
    let u = chain.take_unsaved(false).unwrap();
    assert_eq!(u.head.start, 970, "the whole chunk again, from its start");
    assert_eq!(u.head.data.len(), 4);
    assert_eq!(u.head.data[3], 4.0);
    // A late sample rewrites an old slot.
    chain.write(1060, 5.0).unwrap();
    let u = chain.take_unsaved(false).unwrap();
    assert_eq!(u.head.data[1], 5.0);
    assert!(u.head.data[2].is_nan());
    assert_eq!(chain.take_unsaved(true).unwrap().head.data.len(), 4);
}

#[test]
fn older_unsaved_chunks_merge_into_one_run_and_the_head_stays_apart() {
    let mut chain = Chain::with_sample(1000, 1.0, 10);
    // Past the capacity: a new chunk on the same grid, 513 slots later, and
    // a third one 513 slots after that.
    chain.write(1000 + 513 * 10, 2.0).unwrap();
    chain.write(1000 + 1026 * 10, 3.0).unwrap();
    assert_eq!(chain.chunks().len(), 3);
    let u = chain.take_unsaved(false).unwrap();
    assert_eq!(
        u.older.len(),
        1,
        "a gap of 512 slots is within a chunk's worth"
    );
    let older = &u.older[0];
    assert_eq!(older.start, 995);
    assert_eq!(older.data.len(), 514);
    assert_eq!((older.data[0], older.data[513]), (1.0, 2.0));
    assert!(older.data[1..513].iter().all(|v| v.is_nan()));
    assert_eq!(
        (u.head.start, u.head.data.clone()),
        (1000 + 1026 * 10 - 5, vec![3.0])
    );
}

#[test]
fn a_later_checkpoint_supersedes_the_overlapping_part_of_an_earlier_one() {
    let mut chain =
        Chain::from_chunks(vec![Chunk::loaded(100, 10, vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
    chain.merge_loaded(Chunk::loaded(120, 10, vec![9.0, 9.5]));
    assert_eq!(chain.chunks().len(), 2);
    assert_eq!(chain.chunks()[0].data, [1.0, 2.0]);
    assert_eq!(chain.chunks()[0].capacity, 2);
    let mut out = Vec::new();
    chain.read(100, 140, &mut out);
    assert_eq!(out, [1.0, 2.0, 9.0, 9.5]);
    // One that starts before everything replaces it all.
    chain.merge_loaded(Chunk::loaded(50, 10, vec![7.0]));
    assert_eq!(chain.chunks().len(), 1);
}

#[test]
fn freeing_for_retention_keeps_unsaved_chunks() {
    let mut chain = Chain::with_sample(100, 1.0, 10);
    assert_eq!(chain.free(10_000, true), 0, "not saved yet");
    assert!(chain.take_unsaved(false).is_some());
    assert_eq!(chain.free(10_000, true), 1, "saved: may go");
}

#[test]
fn a_long_gap_splits_the_older_run_instead_of_filling_it_with_nan() {
    // A first sample from 1970, then current ones: two runs, not a billion
    // slots of NaN.
    let mut chain = Chain::with_sample(1, 1.0, 10);
    chain.write(1_700_000_000, 2.0).unwrap();
    chain.write(1_700_000_000 + 600 * 10, 3.0).unwrap();
    let u = chain.take_unsaved(false).unwrap();
    assert_eq!(u.older.len(), 2);
    assert_eq!(u.older[0].data, vec![1.0]);
    assert_eq!(u.older[1].data, vec![2.0]);
    assert_eq!(u.head.data, vec![3.0]);
}

#[test]
fn slot_arrays_grow_with_the_data_up_to_the_capacity() {
    let mut chain = Chain::with_sample(0, 1.0, 10);
    assert_eq!(chain.allocated_bytes(), FIRST_SLOTS * 8);
    let mut seen = vec![chain.head().unwrap().data.capacity()];
    for i in 1..CHUNK_CAPACITY {
        chain.write(i64::try_from(i).unwrap() * 10, 1.0).unwrap();
        let allocated = chain.head().unwrap().data.capacity();
        if seen.last() != Some(&allocated) {
            seen.push(allocated);
        }
    }
    assert_eq!(seen, [4, 8, 16, 32, 64, 128, 256, 512]);
    assert_eq!(chain.chunks().len(), 1);
    // The next sample starts a new chunk, small again.
    chain.write(5120, 2.0).unwrap();
    assert_eq!(chain.chunks().len(), 2);
    assert_eq!(chain.head().unwrap().data.capacity(), FIRST_SLOTS);
}

#[test]
fn a_gap_or_a_reopened_head_never_allocates_past_the_capacity() {
    // A jump to slot 300 allocates what it needs, the next doubling stops at 512.
    let mut chain = Chain::with_sample(0, 1.0, 10);
    chain.write(3000, 1.0).unwrap();
    assert_eq!(chain.head().unwrap().data.capacity(), 301);
    chain.write(3010, 1.0).unwrap();
    assert_eq!(chain.head().unwrap().data.capacity(), CHUNK_CAPACITY);
    chain.write(5110, 1.0).unwrap();
    assert_eq!(chain.chunks().len(), 1);
    assert_eq!(chain.head().unwrap().data.capacity(), CHUNK_CAPACITY);

    // A chunk restored with 300 values gets room up to 512 slots, no more.
    let mut restored = chain_of(vec![Chunk::loaded(-5, 10, vec![1.0; 300])]);
    restored.reopen_head();
    for i in 300..CHUNK_CAPACITY {
        restored.write(i64::try_from(i).unwrap() * 10, 1.0).unwrap();
    }
    assert_eq!(restored.chunks().len(), 1);
    assert_eq!(restored.head().unwrap().data.capacity(), CHUNK_CAPACITY);
}

#[test]
fn a_single_sample_chain_moves_onto_a_learned_frequency_and_no_other_does() {
    let mut chain = Chain::with_sample(1000, 1.0, 60);
    chain.adopt_frequency(10);
    let head = chain.head().unwrap();
    assert_eq!(
        (head.frequency, head.first_write(), head.len()),
        (10, 1000, 1)
    );
    chain.write(1010, 2.0).unwrap();
    assert_eq!(chain.head().unwrap().data, [1.0, 2.0]);
    // Two samples: the slots stay.
    chain.adopt_frequency(30);
    assert_eq!(chain.head().unwrap().frequency, 10);
    // A chunk loaded from a checkpoint stays too.
    let mut loaded = chain_of(vec![Chunk::loaded(995, 10, vec![1.0])]);
    loaded.adopt_frequency(60);
    assert_eq!(loaded.head().unwrap().frequency, 10);
}

#[test]
fn reads_up_to_the_end_of_i64() {
    // A chunk at the start of the epoch read until i64::MAX: `to - t`
    // does not overflow.
    let c = chain_of(vec![chunk(-5, 10, &[1.0, 2.0], CHUNK_CAPACITY)]);
    let (data, w) = read(&c, i64::MIN, i64::MAX);
    assert!(same(&data, &[1.0, 2.0]), "{data:?}");
    assert_eq!((w.from, w.to), (0, 20));
    // From past every chunk: nothing, and no overflow in the slot index.
    let (data, _) = read(&c, i64::MAX - 1, i64::MAX);
    assert!(data.is_empty(), "{data:?}");
}

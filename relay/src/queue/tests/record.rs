//! Record and dead-letter codecs, batch splitting.

use proptest::prelude::*;

use super::{collector_lines, meta, random_lines};
use crate::queue::record::{
    DEFAULT_MAX_STORED_BYTES, DeadLetterEntry, FLAG_ZSTD, HEADER_RESERVE, MAX_CLUSTER_LEN,
    MAX_SOURCE_LEN, RECORD_VERSION, Record, RecordError, RecordMeta, SplitLimits, split_payload,
    split_payload_with,
};

/// Lines of uniformly random bytes (no newline inside): zstd cannot shrink them.
fn noise_lines(n: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::new();
    for _ in 0..n {
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = (x >> 24) as u8;
            out.push(if b == b'\n' { b'.' } else { b });
        }
        out.push(b'\n');
    }
    out
}

fn small() -> Record {
    Record::new(
        RecordMeta {
            ingest_time_ms: 0x0102_0304_0506_0708,
            hops: 3,
            cluster: "fritz".into(),
            source: "nats:bus:m".into(),
        },
        b"a value=1 1\nb value=2 2\n".to_vec(),
    )
    .unwrap()
}

#[test]
fn encodes_the_documented_v2_layout() {
    let bytes = small().encode(512);
    let payload = b"a value=1 1\nb value=2 2\n";
    let mut expected = vec![2u8, 0, 3];
    expected.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    expected.extend_from_slice(&2u32.to_le_bytes());
    expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    expected.extend_from_slice(&5u16.to_le_bytes());
    expected.extend_from_slice(b"fritz");
    expected.extend_from_slice(&10u16.to_le_bytes());
    expected.extend_from_slice(b"nats:bus:m");
    expected.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    expected.extend_from_slice(payload);
    assert_eq!(bytes, expected);
    assert_eq!(bytes[0], RECORD_VERSION);
}

#[test]
fn decodes_version_1_records_with_zero_hops() {
    // Spec §4.6 layout as written: no hops byte.
    let payload = b"cpu value=1 1718000000\n";
    let mut v1 = vec![1u8, 0];
    v1.extend_from_slice(&42u64.to_le_bytes());
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v1.extend_from_slice(&0u16.to_le_bytes());
    v1.extend_from_slice(&3u16.to_le_bytes());
    v1.extend_from_slice(b"src");
    v1.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    v1.extend_from_slice(payload);
    let r = Record::decode(&v1).unwrap();
    assert_eq!(r.hops(), 0);
    assert_eq!(r.ingest_time_ms(), 42);
    assert_eq!(r.cluster(), "");
    assert_eq!(r.source(), "src");
    assert_eq!(r.payload(), payload);
    assert_eq!(r.line_count(), 1);
}

#[test]
fn compresses_large_compressible_payloads_only() {
    let big = Record::new(meta(1), collector_lines(200, 7)).unwrap();
    let enc = big.encode(512);
    assert_eq!(enc[1] & FLAG_ZSTD, FLAG_ZSTD);
    assert!(enc.len() < big.payload().len() / 3, "{} bytes", enc.len());
    assert_eq!(Record::decode(&enc).unwrap(), big);

    // Below the threshold, or compression switched off: stored as is.
    assert_eq!(small().encode(512)[1], 0);
    assert_eq!(big.encode(usize::MAX)[1], 0);
    assert_eq!(Record::decode(&big.encode(usize::MAX)).unwrap(), big);

    // Incompressible: zstd would not shrink it, so it is stored raw.
    let noise = Record::new(meta(1), noise_lines(20, 100, 3)).unwrap();
    let enc = noise.encode(0);
    assert_eq!(enc[1], 0);
    assert_eq!(Record::decode(&enc).unwrap(), noise);
}

#[test]
fn new_enforces_record_invariants() {
    assert_eq!(
        Record::new(meta(0), Vec::new()),
        Err(RecordError::EmptyPayload)
    );
    assert_eq!(
        Record::new(meta(0), b"a value=1".to_vec()),
        Err(RecordError::Unterminated)
    );
    let mut m = meta(0);
    m.cluster = "c".repeat(MAX_CLUSTER_LEN + 1);
    assert_eq!(
        Record::new(m, b"x\n".to_vec()),
        Err(RecordError::ClusterTooLong(MAX_CLUSTER_LEN + 1))
    );
    let mut m = meta(0);
    m.source = "é".repeat(MAX_SOURCE_LEN); // 2 bytes each
    let r = Record::new(m, b"x\n".to_vec()).unwrap();
    assert!(r.source().len() <= MAX_SOURCE_LEN);
    assert_eq!(r.source().len(), MAX_SOURCE_LEN);
    assert_eq!(Record::decode(&r.encode(0)).unwrap(), r);
}

#[test]
fn decode_rejects_each_kind_of_damage() {
    let good = small().encode(512);

    for n in 0..good.len() {
        assert!(
            Record::decode(&good[..n]).is_err(),
            "prefix of {n} bytes decoded"
        );
    }

    let mut v = good.clone();
    v[0] = 9;
    assert_eq!(Record::decode(&v), Err(RecordError::UnsupportedVersion(9)));

    let mut v = good.clone();
    v[1] = 0x80;
    assert_eq!(Record::decode(&v), Err(RecordError::UnknownFlags(0x80)));

    // Every byte of the payload is covered by the checksum.
    let payload_start = good.len() - 24;
    for i in payload_start..good.len() {
        let mut v = good.clone();
        v[i] ^= 0x01;
        assert!(
            matches!(
                Record::decode(&v),
                Err(RecordError::ChecksumMismatch { .. })
            ),
            "flip at {i}"
        );
    }

    // An extra byte: raw_len no longer matches.
    let mut v = good.clone();
    v.push(b'\n');
    assert!(matches!(
        Record::decode(&v),
        Err(RecordError::LengthMismatch { .. })
    ));

    // Consistent CRC but a wrong line count.
    let mut v = good.clone();
    v[7] = 0; // line_count is at offset 11; byte 7 is ingest time: still decodes
    assert!(Record::decode(&v).is_ok());
    let mut v = good;
    v[11] = 5;
    assert_eq!(
        Record::decode(&v),
        Err(RecordError::LineCountMismatch {
            expected: 5,
            actual: 2
        })
    );
}

#[test]
fn decode_rejects_damaged_zstd_frames() {
    let big = Record::new(meta(1), collector_lines(300, 1)).unwrap();
    let good = big.encode(512);
    assert_eq!(good[1], FLAG_ZSTD);
    let header = good.len() - (good.len() - 40).min(good.len());
    for i in (header..good.len()).step_by(7) {
        let mut v = good.clone();
        v[i] ^= 0x55;
        // Either the metadata changed (still a valid record) or decoding fails cleanly.
        if let Ok(r) = Record::decode(&v) {
            assert_eq!(
                r.payload(),
                big.payload(),
                "flip at {i} changed the payload"
            );
        }
    }
    // A huge announced raw_len is refused before allocating.
    let mut v = good.clone();
    v[15..19].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Record::decode(&v),
        Err(RecordError::TooLarge { .. })
    ));
    // A raw_len that disagrees with the frame header is refused.
    let mut v = good;
    v[15..19].copy_from_slice(&1_000u32.to_le_bytes());
    assert!(matches!(
        Record::decode(&v),
        Err(RecordError::LengthMismatch { .. })
    ));
}

#[test]
fn dead_letter_entries_round_trip_and_detect_damage() {
    let e = DeadLetterEntry {
        time_ms: 17,
        record_id: 99,
        status: Some(400),
        reason: "rejected".into(),
        cluster: "fritz".into(),
        hops: 3,
        lines: b"bad foo=1 1\n".to_vec(),
    };
    let bytes = e.encode();
    assert_eq!(DeadLetterEntry::decode(&bytes).unwrap(), e);
    let mut v = bytes.clone();
    let last = v.len() - 1;
    v[last] ^= 1;
    assert!(DeadLetterEntry::decode(&v).is_err());
    for n in 0..bytes.len() - e.lines.len() {
        assert!(DeadLetterEntry::decode(&bytes[..n]).is_err());
    }
    let none = DeadLetterEntry {
        status: None,
        reason: "x".repeat(300),
        ..e
    };
    let back = DeadLetterEntry::decode(&none.encode()).unwrap();
    assert_eq!(back.status, None);
    assert_eq!(back.reason.len(), 255);
}

#[test]
fn version_1_dead_letter_entries_still_decode_without_cluster_and_hops() {
    // As the previous build wrote them: no hops byte, no cluster.
    let lines = b"bad foo=1 1\n";
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&17u64.to_le_bytes());
    v1.extend_from_slice(&99u64.to_le_bytes());
    v1.extend_from_slice(&400u16.to_le_bytes());
    v1.push(8);
    v1.extend_from_slice(b"rejected");
    v1.extend_from_slice(&crc32c::crc32c(lines).to_le_bytes());
    v1.extend_from_slice(lines);
    let e = DeadLetterEntry::decode(&v1).unwrap();
    assert_eq!(
        e,
        DeadLetterEntry {
            time_ms: 17,
            record_id: 99,
            status: Some(400),
            reason: "rejected".into(),
            cluster: String::new(),
            hops: 0,
            lines: lines.to_vec(),
        }
    );
    assert!(e.is_replayable());
    assert_eq!(e.encode()[0], 2, "re-encoded as the current version");
    let corrupt = DeadLetterEntry {
        reason: "corrupt".into(),
        ..e.clone()
    };
    assert!(!corrupt.is_replayable());
    let empty = DeadLetterEntry {
        lines: Vec::new(),
        ..e
    };
    assert!(!empty.is_replayable());
    v1[0] = 3;
    assert!(matches!(
        DeadLetterEntry::decode(&v1),
        Err(RecordError::UnsupportedVersion(3))
    ));
}

fn assert_split_ok(input: &[u8], pieces: &[&[u8]], limits: &SplitLimits) {
    assert_eq!(
        pieces.concat(),
        input,
        "pieces do not concatenate to the input"
    );
    for p in pieces {
        assert!(!p.is_empty());
        assert_eq!(p.last(), Some(&b'\n'));
        let r = Record::new(meta(1), p.to_vec()).unwrap();
        let stored = r
            .encode_with(limits.compress_threshold, limits.zstd_level)
            .len();
        let one_line = r.line_count() == 1;
        assert!(
            stored <= limits.max_stored_bytes || one_line,
            "piece of {} lines stored in {stored} bytes",
            r.line_count()
        );
        assert!(p.len() <= limits.max_raw_bytes || one_line);
    }
}

#[test]
fn splits_a_collector_batch_into_few_records_below_the_stored_cap() {
    let batch = collector_lines(5_000, 42);
    assert!(batch.len() > 400_000, "{} bytes", batch.len());
    let limits = SplitLimits::default();
    let pieces = split_payload(&batch, DEFAULT_MAX_STORED_BYTES);
    assert_split_ok(&batch, &pieces, &limits);
    // 256 KiB raw cap: two records, each compressing far below 64 KiB.
    assert_eq!(pieces.len(), 2);
}

#[test]
fn splits_incompressible_data_at_the_stored_cap() {
    let batch = noise_lines(3_000, 100, 9);
    let limits = SplitLimits::default();
    let pieces = split_payload(&batch, DEFAULT_MAX_STORED_BYTES);
    assert_split_ok(&batch, &pieces, &limits);
    assert!(pieces.len() >= batch.len() / (DEFAULT_MAX_STORED_BYTES - HEADER_RESERVE));
    assert!(
        pieces.iter().all(|p| p.len() > 16 * 1024),
        "halving went too far"
    );
}

#[test]
fn an_oversized_line_is_a_record_of_its_own() {
    let mut batch = collector_lines(10, 1);
    let big_line = random_lines(1, 100_000, 5);
    batch.extend_from_slice(&big_line);
    batch.extend_from_slice(&collector_lines(10, 2));
    let pieces = split_payload(&batch, DEFAULT_MAX_STORED_BYTES);
    assert_eq!(pieces.concat(), batch);
    assert!(pieces.contains(&big_line.as_slice()), "{pieces:?}");
    assert_eq!(pieces.len(), 3);
}

#[test]
fn split_edge_cases() {
    assert!(split_payload(b"", 4096).is_empty());
    assert_eq!(split_payload(b"a\n", 4096), vec![b"a\n".as_slice()]);
    // An unterminated tail stays with the last piece (and Record::new refuses it).
    let pieces = split_payload(b"a\nb", 4096);
    assert_eq!(pieces, vec![b"a\nb".as_slice()]);
    assert_eq!(
        Record::new(meta(0), pieces[0].to_vec()),
        Err(RecordError::Unterminated)
    );
    let tiny = SplitLimits {
        max_raw_bytes: 4,
        max_stored_bytes: 1,
        compress_threshold: usize::MAX,
        zstd_level: 3,
    };
    assert_eq!(
        split_payload_with(b"a\nbb\nccccc\nd\n", &tiny),
        vec![
            b"a\n".as_slice(),
            b"bb\n".as_slice(),
            b"ccccc\n".as_slice(),
            b"d\n".as_slice()
        ]
    );
}

#[test]
fn from_batch_builds_records_with_shared_meta() {
    let batch = collector_lines(5_000, 3);
    let m = RecordMeta { hops: 2, ..meta(5) };
    let records = Record::from_batch(&m, &batch, &SplitLimits::default()).unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.meta() == &m));
    let total: u32 = records.iter().map(Record::line_count).sum();
    assert_eq!(total, 5_000);
}

fn arb_record() -> impl Strategy<Value = Record> {
    let line = prop::collection::vec(
        any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
        0..60,
    );
    (
        any::<u64>(),
        any::<u8>(),
        "[a-z0-9._-]{0,20}",
        ".{0,40}",
        prop::collection::vec(line, 1..30),
        any::<bool>(),
    )
        .prop_map(|(t, hops, cluster, source, lines, repeat)| {
            let mut payload = Vec::new();
            for l in &lines {
                payload.extend_from_slice(l);
                payload.push(b'\n');
            }
            if repeat {
                // Make it compressible.
                payload = payload.repeat(20);
            }
            Record::new(
                RecordMeta {
                    ingest_time_ms: t,
                    hops,
                    cluster,
                    source,
                },
                payload,
            )
            .unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode(r in arb_record(), threshold in prop::sample::select(vec![0usize, 64, 512, usize::MAX])) {
        let enc = r.encode(threshold);
        prop_assert_eq!(Record::decode(&enc), Ok(r));
    }

    #[test]
    fn dead_letter_decode_inverts_encode(
        time_ms in any::<u64>(),
        record_id in any::<u64>(),
        status in prop::option::of(1u16..),
        reason in ".{0,60}",
        cluster in ".{0,300}",
        hops in any::<u8>(),
        lines in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let e = DeadLetterEntry { time_ms, record_id, status, reason, cluster, hops, lines };
        prop_assert_eq!(DeadLetterEntry::decode(&e.encode()), Ok(e));
    }

    #[test]
    fn decode_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Record::decode(&bytes);
        let _ = DeadLetterEntry::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_damaged_records(
        r in arb_record(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut enc = r.encode(64);
        for (i, b) in &edits {
            let at = i.index(enc.len());
            enc[at] = *b;
        }
        let _ = Record::decode(&enc);
        let n = cut.index(enc.len() + 1);
        let _ = Record::decode(&enc[..n]);
    }

    #[test]
    fn split_keeps_every_byte_and_the_limits(
        lines in prop::collection::vec((1usize..400, any::<bool>(), any::<u64>()), 0..200),
        max_stored in 1_200usize..6_000,
        max_raw in 1usize..20_000,
    ) {
        let mut input = Vec::new();
        for (len, noisy, seed) in &lines {
            if *noisy {
                input.extend_from_slice(&random_lines(1, *len, *seed));
            } else {
                input.extend_from_slice(&collector_lines(1, *seed));
            }
        }
        let limits = SplitLimits { max_raw_bytes: max_raw, max_stored_bytes: max_stored, ..SplitLimits::default() };
        let pieces = split_payload_with(&input, &limits);
        assert_split_ok(&input, &pieces, &limits);
    }
}

#[test]
fn split_records_reuse_their_compressed_form_byte_for_byte() {
    let batch: Vec<u8> = (0..5000)
        .flat_map(|i| {
            format!(
                "cpu_load,hostname=f{:04},type=hwthread,type-id={} value={}.5 1732870000\n",
                i % 40,
                i % 72,
                i
            )
            .into_bytes()
        })
        .collect();
    let meta = RecordMeta::default();
    let limits = SplitLimits::default();
    let records = Record::from_batch(&meta, &batch, &limits).unwrap();
    assert!(records.len() > 1);
    for r in &records {
        let fresh = Record::new(r.meta().clone(), r.payload().to_vec()).unwrap();
        let a = r.encode_with(limits.compress_threshold, limits.zstd_level);
        let b = fresh.encode_with(limits.compress_threshold, limits.zstd_level);
        assert_eq!(a, b);
        assert!(a.len() <= limits.max_stored_bytes);
        assert_eq!(Record::decode(&a).unwrap(), fresh);
    }
}

//! Fuzzes cc-relay's queue: the record and dead-letter decoders (what a
//! relay reads back from its sled database after a crash or a disk fault),
//! the splitter that cuts a batch into records, and the processing of a batch
//! (what an HTTP body or NATS message goes through before it is queued).
//!
//! Oracles: no panic; a record or dead letter that decodes re-encodes and
//! decodes to the same value; splitting gives the input back when the pieces are
//! concatenated; every line processing routes to an upstream parses again.
//!
//! Run: `cargo fuzz run relay_record` (from the repository root).
#![no_main]

use cc_common::lineproto::parse_lines;
use cc_relay::process::{Context, Rules, Target, process};
use cc_relay::queue::record::{DeadLetterEntry, Record, split_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        for threshold in [0, usize::MAX] {
            let again = Record::decode(&record.encode(threshold)).expect("a decoded record re-encodes");
            assert_eq!(again.payload(), record.payload());
            assert_eq!(again.meta(), record.meta());
        }
    }
    if let Ok(entry) = DeadLetterEntry::decode(data) {
        // Version 1 entries come back as version 2, with the same fields.
        let again = DeadLetterEntry::decode(&entry.encode()).expect("a decoded dead letter re-encodes");
        assert_eq!(again, entry);
    }

    for limit in [1, 512, 64 * 1024] {
        let pieces = split_payload(data, limit);
        assert_eq!(pieces.concat(), data, "splitting keeps every byte in order");
    }

    let targets = [
        Target {
            name: "store".to_owned(),
            ccms: true,
            filter: Default::default(),
        },
        Target {
            name: "relay".to_owned(),
            ccms: false,
            filter: Default::default(),
        },
    ];
    let ctx = Context {
        default_cluster: Some("fuzz".to_owned()),
        precision: None,
        now_ns: 1_700_000_000_000_000_000,
    };
    let processed = process(data, &Rules::default(), &ctx, &targets);
    for routed in &processed.routed {
        let mut lines = 0;
        for line in parse_lines(&routed.lines) {
            if let Err(e) = line {
                panic!("a routed line does not parse ({e}): {:?}", String::from_utf8_lossy(&routed.lines));
            }
            lines += 1;
        }
        assert_eq!(lines, routed.count);
    }
});

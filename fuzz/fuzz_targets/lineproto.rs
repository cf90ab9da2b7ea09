//! Fuzzes the line-protocol parser.
//!
//! Oracles: no panic; every error is one of the kinds the parser documents;
//! every accepted line re-encodes and parses back to the same line.
//!
//! Run: `cargo fuzz run lineproto` (from the repository root).
#![no_main]

use cc_common::lineproto::{ErrorKind, OwnedLine, parse_lines, parse_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for result in parse_lines(data) {
        match result {
            Ok(line) => {
                let owned = OwnedLine::from(&line);
                assert!(!owned.fields.is_empty());
                let mut text = String::new();
                owned.write_to(&mut text).expect("an accepted line can be encoded");
                let mut again = parse_str(&text);
                let back = again.next().expect("one line").expect("re-encoded line parses");
                assert_eq!(OwnedLine::from(&back), owned, "{text:?}");
                assert!(again.next().is_none());
            }
            Err(e) => match e.kind {
                ErrorKind::MissingMeasurement
                | ErrorKind::MissingTagEquals
                | ErrorKind::EmptyTagKey
                | ErrorKind::EmptyTagValue
                | ErrorKind::MissingFields
                | ErrorKind::MissingFieldEquals
                | ErrorKind::EmptyFieldKey
                | ErrorKind::MissingFieldValue
                | ErrorKind::InvalidFieldValue
                | ErrorKind::FloatOutOfRange
                | ErrorKind::IntegerOutOfRange
                | ErrorKind::UnterminatedString
                | ErrorKind::UnexpectedAfterField
                | ErrorKind::InvalidTimestamp
                | ErrorKind::TrailingCharacters
                | ErrorKind::InvalidUtf8 => {}
                other => panic!("undocumented error kind {other:?}"),
            },
        }
    }
});

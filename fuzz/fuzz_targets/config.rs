//! Fuzzes both configuration loaders with arbitrary text: cc-relay's JSON
//! configuration and cc-store's cc-metric-store configuration.
//!
//! Oracle: no panic; a bad file is an error value naming what is wrong.
//!
//! Run: `cargo fuzz run config` (from the repository root).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // File references resolve below a directory that does not exist.
    let base = Path::new("/nonexistent-fuzz-dir");
    if let Err(e) = cc_relay::config::Config::from_json_str(text, "fuzz.json", base) {
        assert!(!e.to_string().is_empty());
    }
    if let Err(e) = cc_store::config::Config::from_json_str(text, "fuzz.json", base) {
        assert!(!e.to_string().is_empty());
    }
});

//! Shared harness of the end-to-end tests: finds the real binaries.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]

use std::path::PathBuf;

/// Path of a workspace binary (`cc-store`, `cc-relay`) built next to the test
/// executable (`target/<profile>/`). `cargo nextest run --workspace` and
/// `cargo build --workspace --bins` build them.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build it first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

//! Build script: records the git commit being built as `CC_RELAY_COMMIT`
//! (the `commit` label of `ccrelay_build_info`), `unknown` when git or the
//! repository is missing (a source tarball).
//!
//! It re-runs when `HEAD` moves: on a checkout (the `HEAD` file) and on a
//! commit (the branch's loose ref, or `packed-refs`). Only files that exist
//! are named, since cargo re-runs a script whose watched file is missing on
//! every build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CC_RELAY_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten().map(PathBuf::from) {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

//! Build script: records the git commit being built as `CC_STORE_COMMIT`
//! (the `commit` label of `ccstore_build_info`), `unknown` without git or
//! outside a repository (a source tarball). It runs again when `HEAD` or
//! the checked-out branch moves.

use std::path::PathBuf;
use std::process::Command;

/// The trimmed output of `git ARGS`, if git succeeds with some.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CC_STORE_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // Files that move with a checkout or a commit; only existing ones, since
    // cargo re-runs a script on every build while a watched file is missing.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let refs = [Some("HEAD"), branch.as_deref(), Some("packed-refs")];
    for name in refs.into_iter().flatten() {
        if let Some(path) = git(&["rev-parse", "--git-path", name]).map(PathBuf::from)
            && path.exists()
        {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

//! The open-file limit a server of a whole cluster needs.
//!
//! cc-store keeps one WAL file open per host and each program a socket per
//! connection, so a cluster of a few thousand nodes needs thousands of
//! descriptors. Started outside a unit that sets `LimitNOFILE` (ours do),
//! a process gets the usual soft limit of 1024, and the thousand-and-first
//! host or connection fails. Go programs such as cc-metric-store raise the
//! soft limit to the hard one at start (Go ≥ 1.19); [`raise_open_files`]
//! does the same, so the hard limit, which the administrator sets, is the
//! one that applies.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The open-file limits after [`raise_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now (the hard limit, unless that failed).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit.
///
/// # Errors
///
/// The system call's error; the limits are unchanged then.
pub fn raise_open_files() -> Result<OpenFiles, nix::Error> {
    let (was, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if was < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(OpenFiles {
        was,
        soft: hard.max(was),
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_becomes_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let limits = raise_open_files().unwrap();
        assert_eq!((limits.soft, limits.hard), (hard, hard));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }
}

//! Command-line interface of `cc-store`.
//!
//! Upstream cc-metric-store is a Go program whose flags are written with one
//! dash (`-config config.json`, `-loglevel debug`). Administrators' unit files
//! and scripts use those spellings, so [`normalize_args`] rewrites the known
//! single-dash flags to their double-dash form before clap sees them; both
//! spellings work.

use std::ffi::OsString;
use std::path::PathBuf;

use cc_common::telemetry::LogFormat;
use clap::Parser;

/// What `--version` prints after the program name: the version and the git
/// commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CC_STORE_COMMIT"),
    ")"
);

/// ClusterCockpit metric store, compatible with cc-metric-store.
///
/// Keeps recent node metrics in memory at fixed frequency, answers
/// cc-backend's queries over HTTP (/api/query, /api/write, /api/free,
/// /api/debug, /api/healthcheck), ingests line protocol over HTTP and from
/// NATS subscriptions (core NATS: at most once, no acknowledgement), and
/// keeps checkpoints (snapshots and a write-ahead log) that are restored at
/// start.
///
/// Signals: SIGTERM/SIGINT drain the NATS subscriptions and store what they
/// delivered, finish in-flight requests, write a last snapshot of everything
/// not yet saved, and exit.
#[derive(Debug, Parser)]
#[command(name = "cc-store", version = VERSION, about, long_about)]
pub struct Cli {
    /// Configuration file in the cc-metric-store format. Without it the store
    /// reads `./config.json` if that exists (as cc-metric-store does), and
    /// otherwise runs on built-in defaults (127.0.0.1:8082, no
    /// authentication, the ClusterCockpit example metrics). Also accepted as
    /// `-config`.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level: debug, info, warn, err or crit (as upstream; also accepted
    /// as `-loglevel`). `RUST_LOG` overrides it.
    #[arg(long = "loglevel", value_name = "LEVEL", default_value = "warn")]
    pub loglevel: String,

    /// Accepted for compatibility (`-logdate`): log lines always carry
    /// timestamps.
    #[arg(long = "logdate")]
    pub logdate: bool,

    /// Log output: `text` (stderr) or `json` (stdout, one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Clean up old checkpoint files once (delete or archive, as configured)
    /// and exit. Also accepted as `-cleanup-checkpoints`.
    #[arg(long = "cleanup-checkpoints")]
    pub cleanup_checkpoints: bool,

    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell) and exit, e.g. `cc-store --completions bash >
    /// /usr/share/bash-completion/completions/cc-store`.
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,

    /// Print the manual page (roff) and exit, e.g. `cc-store --manpage >
    /// /usr/share/man/man1/cc-store.1`.
    #[arg(long)]
    pub manpage: bool,

    /// Load and check the configuration (every key, the JWT key, the
    /// metrics), print a summary and exit: 0 if the store would start with
    /// it, 1 with the reason (file, key and position) otherwise.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Accepted for compatibility (`-dev`, upstream's Swagger UI switch); has
    /// no effect.
    #[arg(long = "dev", hide = true)]
    pub dev: bool,

    /// Accepted for compatibility (`-gops`, upstream's Go diagnostics agent);
    /// has no effect.
    #[arg(long = "gops", hide = true)]
    pub gops: bool,
}

/// Upstream's single-dash flags and their clap spelling.
const GO_FLAGS: &[(&str, &str)] = &[
    ("-config", "--config"),
    ("-loglevel", "--loglevel"),
    ("-logdate", "--logdate"),
    ("-version", "--version"),
    ("-cleanup-checkpoints", "--cleanup-checkpoints"),
    ("-dev", "--dev"),
    ("-gops", "--gops"),
    ("-help", "--help"),
];

/// Rewrites upstream's single-dash long flags (`-config x`, `-config=x`) to
/// the double-dash form. Values (anything after a flag that takes one) and
/// unknown arguments pass through untouched.
#[must_use]
pub fn normalize_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out: Vec<OsString> = Vec::new();
    // The flag whose value is the next argument, if any. Flag and value are
    // joined (`--config=VALUE`) so that a value starting with '-' stays a value.
    let mut pending: Option<&str> = None;
    for arg in args.into_iter().map(Into::into) {
        if let Some(long) = pending.take() {
            let mut joined = OsString::from(format!("{long}="));
            joined.push(&arg);
            out.push(joined);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let long = GO_FLAGS
            .iter()
            .find(|(go, _)| *go == name)
            .map(|(_, long)| *long);
        match (long, value) {
            (Some(long), Some(v)) => out.push(OsString::from(format!("{long}={v}"))),
            (Some(long), None) if VALUE_FLAGS.contains(&long) => pending = Some(long),
            (Some(long), None) => out.push(OsString::from(long)),
            (None, None) if VALUE_FLAGS.contains(&name) => {
                pending = VALUE_FLAGS.iter().find(|f| **f == name).copied();
            }
            (None, _) => out.push(arg),
        }
    }
    if let Some(long) = pending {
        // A trailing flag without its value: let clap report it.
        out.push(OsString::from(long));
    }
    out
}

/// Flags that take a value.
const VALUE_FLAGS: &[&str] = &["--config", "--loglevel", "--log-format"];

/// Writes what `--completions` or `--manpage` asked for to stdout; `false`
/// if neither was given.
///
/// # Errors
///
/// Writing to stdout failed.
pub fn print_docs(cli: &Cli) -> std::io::Result<bool> {
    use clap::CommandFactory as _;
    let mut out = std::io::stdout().lock();
    if let Some(shell) = cli.completions {
        clap_complete::generate(shell, &mut Cli::command(), "cc-store", &mut out);
        return Ok(true);
    }
    if cli.manpage {
        clap_mangen::Man::new(Cli::command()).render(&mut out)?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().copied())).unwrap()
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn accepts_upstream_single_dash_flags() {
        let cli = parse(&[
            "cc-store",
            "-config",
            "/etc/cc-metric-store/config.json",
            "-loglevel",
            "debug",
            "-logdate",
        ]);
        assert_eq!(
            cli.config,
            Some(PathBuf::from("/etc/cc-metric-store/config.json"))
        );
        assert_eq!(cli.loglevel, "debug");
        assert!(cli.logdate);
        let cli = parse(&[
            "cc-store",
            "-config=c.json",
            "-cleanup-checkpoints",
            "-dev",
            "-gops",
        ]);
        assert_eq!(cli.config, Some(PathBuf::from("c.json")));
        assert!(cli.cleanup_checkpoints && cli.dev && cli.gops);
    }

    #[test]
    fn accepts_double_dash_flags() {
        let cli = parse(&["cc-store", "--config", "c.json", "--loglevel=info"]);
        assert_eq!(cli.config, Some(PathBuf::from("c.json")));
        assert_eq!(cli.loglevel, "info");
    }

    #[test]
    fn flag_values_are_never_rewritten() {
        // A config file literally named "-dev" stays a value.
        let cli = parse(&["cc-store", "-config", "-dev"]);
        assert_eq!(cli.config, Some(PathBuf::from("-dev")));
        assert!(!cli.dev);
    }

    #[test]
    fn go_version_flag_prints_version() {
        let err = Cli::try_parse_from(normalize_args(["cc-store", "-version"])).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(Cli::try_parse_from(normalize_args(["cc-store", "-bogus"])).is_err());
    }
}

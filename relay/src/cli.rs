//! Command-line interface of `cc-relay`.

use std::path::PathBuf;

use cc_common::telemetry::LogFormat;
use clap::{Parser, Subcommand};

/// The sled version the queue's on-disk format belongs to (pinned in the
/// workspace's `Cargo.toml`).
macro_rules! sled_version {
    () => {
        "0.34.7"
    };
}

/// The sled version the queue's on-disk format belongs to.
pub const SLED_VERSION: &str = sled_version!();

/// What `--version` prints after the program name: the version, the git
/// commit it was built from and the sled version of its queue.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CC_RELAY_COMMIT"),
    ", sled ",
    sled_version!(),
    ")"
);

/// Per-rack relay for ClusterCockpit metrics.
///
/// Accepts InfluxDB line protocol from cc-metric-collector (HTTP POST to
/// /api/write, or NATS: core subscriptions or a JetStream durable consumer)
/// and from any InfluxDB client (/write, /api/v2/write), keeps every
/// accepted batch on disk until the upstream cc-store (the next relay, or a
/// NATS subject) has acknowledged it, and forwards it with retries, so that
/// store restarts and network outages lose nothing.
///
/// Signals: SIGTERM/SIGINT stop accepting, forward for `shutdown_grace`,
/// then exit (a second one exits at once; queued data stays on disk).
/// SIGHUP re-reads secret files (tokens, passwords, JWT keys, the admin
/// token), TLS certificates, keys and CAs of listeners and upstreams, and
/// `log.level` (unless --log-level or RUST_LOG set it); other changed keys
/// are logged and take effect at the next start.
#[derive(Debug, Parser)]
#[command(name = "cc-relay", version = VERSION, about, long_about)]
pub struct Cli {
    /// Configuration file (JSON). Without it the relay runs on built-in
    /// defaults: HTTP ingress on 127.0.0.1:8080, data under ./var/relay,
    /// forwarding to http://127.0.0.1:8082/api/write.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration and the files it names, print the effective
    /// configuration with secrets redacted, and exit.
    #[arg(long)]
    pub check_config: bool,

    /// Print the built-in default configuration with every key and its
    /// default value (a starting point for a config file), and exit.
    #[arg(long)]
    pub print_default_config: bool,

    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell) and exit, e.g. `cc-relay --completions bash >
    /// /usr/share/bash-completion/completions/cc-relay`.
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,

    /// Print the manual page (roff) and exit, e.g. `cc-relay --manpage >
    /// /usr/share/man/man1/cc-relay.1`.
    #[arg(long)]
    pub manpage: bool,

    /// Log filter, e.g. `info` or `cc_relay=debug,info` (overrides the
    /// configuration; `RUST_LOG` overrides both).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Offline maintenance (the service must be stopped).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Log output: `text` (stderr) or `json` (stdout, one object per line);
    /// overrides the configuration's `log.format`.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Offline maintenance commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The per-upstream queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// The dead-letter queues (lines an upstream refused).
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// `cc-relay queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Records, lines, bytes and the oldest entry of every queue.
    Stats,
    /// Print the queued lines of an upstream, oldest first.
    Dump {
        /// Upstream name.
        upstream: String,
        /// Print at most this many lines.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete everything queued for an upstream.
    Purge {
        /// Upstream name.
        upstream: String,
    },
    /// Delete the queues of upstreams that are no longer configured.
    PurgeOrphans,
}

/// `cc-relay dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print dead-lettered lines of an upstream with their reason.
    Dump {
        /// Upstream name.
        upstream: String,
        /// Print at most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

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
        clap_complete::generate(shell, &mut Cli::command(), "cc-relay", &mut out);
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

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_short_and_long_config_flags() {
        let cli = Cli::try_parse_from(["cc-relay", "-c", "/tmp/x.json"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/tmp/x.json")));
        let cli =
            Cli::try_parse_from(["cc-relay", "--config", "y.json", "--check-config"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("y.json")));
        assert!(cli.check_config);
    }

    #[test]
    fn parses_offline_subcommands() {
        let cli = Cli::try_parse_from([
            "cc-relay", "-c", "x.json", "queue", "dump", "store", "--limit", "5",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Queue(QueueCommand::Dump { ref upstream, limit: 5 })) if upstream == "store"
        ));
        let cli = Cli::try_parse_from(["cc-relay", "dlq", "dump", "store"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Dlq(DlqCommand::Dump { limit: 100, .. }))
        ));
    }

    #[test]
    fn rejects_unknown_log_format() {
        let err = Cli::try_parse_from(["cc-relay", "--log-format", "yaml"]).unwrap_err();
        let ok = Cli::try_parse_from(["cc-relay", "--log-format", "json"]).unwrap();
        assert_eq!(ok.log_format, Some(LogFormat::Json));
        assert!(err.to_string().contains("yaml"), "{err}");
    }
}

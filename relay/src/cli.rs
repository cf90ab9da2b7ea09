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
/// token, NATS credentials: used from each NATS connection's next
/// connection), TLS certificates, keys and CAs of listeners and HTTP
/// upstreams, and
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
    ///
    /// A dead letter is a line an upstream refused (a 4xx such as 400 or 422,
    /// or 413 for that single line; the relay narrows a refused batch down by
    /// bisection), or a queue record that could not be decoded (`corrupt`,
    /// kept as it was stored). Each upstream's dead-letter queue is capped by
    /// `dead_letter.max_bytes`; the oldest entries go first. A running relay
    /// offers export, replay and purge on its admin listener: `GET
    /// /dlq/UPSTREAM`, `POST /dlq/UPSTREAM/replay`, `POST
    /// /dlq/UPSTREAM/purge`.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Sign a JWT and print it (needs no configuration).
    ///
    /// For the tokens collectors send to a relay (`auth.mode: jwt`), a rack
    /// relay sends to a head relay, or a relay sends to cc-store. The
    /// receiving side verifies them with the public half of the key:
    /// `openssl pkey -in KEY -pubout -out key.pub` gives the PEM file for
    /// `jwt_public_key_file`, and `openssl pkey -in KEY -pubout -outform DER
    /// | tail -c 32 | base64` the form of cc-store's `jwt-public-key`. Make
    /// the key with `openssl genpkey -algorithm ed25519 -out KEY` and keep it
    /// off the compute nodes.
    Token(TokenArgs),
}

/// `cc-relay token …`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Ed25519 private key (PEM, PKCS#8), as `openssl genpkey -algorithm
    /// ed25519` writes it.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The `sub` claim: who holds the token (a node, a rack relay, a user).
    #[arg(long, value_name = "NAME")]
    pub sub: String,
    /// A `roles` entry; repeat for several (e.g. `--role relay` for a head
    /// relay's `required_roles`).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Validity from now (`exp`), e.g. `365days`; without it the token does
    /// not expire.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub valid_for: Option<std::time::Duration>,
}

impl TokenArgs {
    /// The claims: `sub`, `roles` (when given), `iat` and, with
    /// `--valid-for`, `exp`, at Unix time `now`.
    #[must_use]
    pub fn claims(&self, now: i64) -> serde_json::Value {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".to_owned(), self.sub.clone().into());
        claims.insert("iat".to_owned(), now.into());
        if !self.roles.is_empty() {
            claims.insert("roles".to_owned(), self.roles.clone().into());
        }
        if let Some(valid) = self.valid_for {
            let secs = i64::try_from(valid.as_secs()).unwrap_or(i64::MAX);
            claims.insert("exp".to_owned(), now.saturating_add(secs).into());
        }
        serde_json::Value::Object(claims)
    }
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
    /// Print the dead letters of an upstream with why they were refused.
    ///
    /// Oldest first, each after a `#` comment line with its time, record id,
    /// HTTP status, default cluster (if any) and reason (the start of the
    /// upstream's answer); corrupt records too, as they were stored.
    Dump {
        /// Upstream name.
        upstream: String,
        /// Print at most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Write the dead-lettered lines of an upstream as line protocol.
    ///
    /// Oldest first, one line each and nothing else (a summary goes to
    /// stderr), as the relay would send them again, except that a line
    /// without a `cluster` tag gets the default cluster its request carried
    /// (`?cluster=`) as a tag, so that each line stands on its own. Corrupt
    /// records are not line protocol and are skipped (`dlq dump` shows them).
    Export {
        /// Upstream name.
        upstream: String,
        /// Write to FILE instead of stdout (replaced if it exists).
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Export at most this many lines (default: all).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Move dead-lettered lines back into the upstream's queue.
    ///
    /// Oldest first, with the default cluster of the request they came in
    /// with; the relay forwards them at its next start with the usual
    /// retries (a line refused again is dead-lettered again). The lines are
    /// on disk in the queue before they leave the dead-letter queue: an
    /// interruption can duplicate a line, never lose one. Corrupt records
    /// stay where they are.
    Replay {
        /// Upstream name.
        upstream: String,
        /// Replay at most this many lines (default: all).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Delete every dead letter of an upstream, corrupt records included.
    Purge {
        /// Upstream name.
        upstream: String,
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

    fn dlq(args: &[&str]) -> DlqCommand {
        let cli = Cli::try_parse_from(["cc-relay", "-c", "x.json", "dlq"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Some(Command::Dlq(c)) => c,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn token_claims_carry_sub_roles_and_expiry() {
        let cli = Cli::try_parse_from([
            "cc-relay",
            "token",
            "--key",
            "k.pem",
            "--sub",
            "rack17",
            "--role",
            "relay",
            "--role",
            "api",
            "--valid-for",
            "1day",
        ])
        .unwrap();
        let Some(Command::Token(args)) = cli.command else {
            panic!("not a token command: {:?}", cli.command);
        };
        assert_eq!(
            args.claims(1000),
            serde_json::json!({"sub": "rack17", "iat": 1000, "roles": ["relay", "api"],
                               "exp": 1000 + 86_400})
        );
        let cli = Cli::try_parse_from(["cc-relay", "token", "--key", "k", "--sub", "n1"]).unwrap();
        let Some(Command::Token(args)) = cli.command else {
            panic!("not a token command");
        };
        assert_eq!(args.claims(5), serde_json::json!({"sub": "n1", "iat": 5}));
        assert!(Cli::try_parse_from(["cc-relay", "token", "--sub", "n1"]).is_err());
    }

    #[test]
    fn parses_dlq_export_replay_and_purge() {
        assert!(matches!(
            dlq(&["export", "store"]),
            DlqCommand::Export { ref upstream, output: None, limit: None } if upstream == "store"
        ));
        assert!(matches!(
            dlq(&["export", "store", "--output", "/tmp/dl.lp", "--limit", "7"]),
            DlqCommand::Export { output: Some(ref p), limit: Some(7), .. } if p == &PathBuf::from("/tmp/dl.lp")
        ));
        assert!(matches!(
            dlq(&["export", "store", "-o", "x.lp"]),
            DlqCommand::Export {
                output: Some(_),
                ..
            }
        ));
        assert!(matches!(
            dlq(&["replay", "store"]),
            DlqCommand::Replay { ref upstream, limit: None } if upstream == "store"
        ));
        assert!(matches!(
            dlq(&["replay", "store", "--limit", "3"]),
            DlqCommand::Replay { limit: Some(3), .. }
        ));
        assert!(matches!(
            dlq(&["purge", "backup"]),
            DlqCommand::Purge { ref upstream } if upstream == "backup"
        ));
    }

    #[test]
    fn dlq_commands_need_an_upstream_and_a_numeric_limit() {
        for args in [
            &["dlq", "export"][..],
            &["dlq", "replay"],
            &["dlq", "purge"],
            &["dlq", "replay", "store", "--limit", "all"],
            &["dlq", "replay", "store", "--limit", "-1"],
        ] {
            let all = ["cc-relay"].iter().chain(args);
            assert!(Cli::try_parse_from(all).is_err(), "{args:?} parsed");
        }
    }

    #[test]
    fn rejects_unknown_log_format() {
        let err = Cli::try_parse_from(["cc-relay", "--log-format", "yaml"]).unwrap_err();
        let ok = Cli::try_parse_from(["cc-relay", "--log-format", "json"]).unwrap();
        assert_eq!(ok.log_format, Some(LogFormat::Json));
        assert!(err.to_string().contains("yaml"), "{err}");
    }
}

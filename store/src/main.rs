//! The `cc-store` binary: parses the command line and runs the store.

use std::process::ExitCode;

use cc_common::telemetry::{self, go_loglevel_directive};
use cc_store::cli::{Cli, normalize_args};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    let Some(directive) = go_loglevel_directive(&cli.loglevel) else {
        eprintln!(
            "cc-store: unknown log level {:?} (expected debug, info, warn, err or crit)",
            cli.loglevel
        );
        return ExitCode::from(2);
    };
    if let Err(e) = telemetry::init(cli.log_format, directive) {
        eprintln!("cc-store: {e}");
        return ExitCode::from(2);
    }
    tracing::error!(
        config = ?cli.config,
        "this build of cc-store has no store service yet; only --help and --version work"
    );
    ExitCode::from(2)
}

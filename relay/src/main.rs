//! The `cc-relay` binary: parses the command line and runs the relay.

use std::process::ExitCode;

use cc_relay::cli::Cli;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) =
        cc_common::telemetry::init(cli.log_format, cli.log_level.as_deref().unwrap_or("info"))
    {
        eprintln!("cc-relay: {e}");
        return ExitCode::from(2);
    }
    tracing::error!(
        config = ?cli.config,
        "this build of cc-relay has no relay service yet; only --help and --version work"
    );
    ExitCode::from(2)
}

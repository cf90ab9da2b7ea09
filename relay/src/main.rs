//! The `cc-relay` binary: parses the command line and runs the relay.

use std::process::ExitCode;

use cc_common::shutdown::{Shutdown, listen_for_signals};
use cc_relay::cli::{Cli, Command};
use cc_relay::config::Config;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cc_relay::cli::print_docs(&cli) {
        Ok(true) => return ExitCode::SUCCESS,
        Ok(false) => {}
        Err(e) => {
            eprintln!("cc-relay: {e}");
            return ExitCode::from(1);
        }
    }
    if cli.print_default_config {
        return match serde_json::to_string_pretty(&Config::embedded_default().redacted()) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cc-relay: {e}");
                ExitCode::from(1)
            }
        };
    }
    // Signing a token needs no configuration.
    if let Some(Command::Token(args)) = &cli.command {
        return token(args);
    }
    let config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cc-relay: {}", cc_common::error_chain(&e));
                return ExitCode::from(1);
            }
        },
        None => Config::embedded_default(),
    };
    if let Some(command) = &cli.command {
        let result = match command {
            Command::Queue(c) => {
                cc_relay::offline::queue(&config, c).map(|text| cc_relay::offline::Printed {
                    stdout: text.into_bytes(),
                    stderr: String::new(),
                })
            }
            Command::Dlq(c) => cc_relay::offline::dlq(&config, c),
            Command::Token(args) => return token(args),
        };
        return match result {
            Ok(printed) => {
                use std::io::Write as _;
                eprint!("{}", printed.stderr);
                let mut stdout = std::io::stdout().lock();
                match stdout
                    .write_all(&printed.stdout)
                    .and_then(|()| stdout.flush())
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("cc-relay: writing to stdout: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(e) => {
                eprintln!("cc-relay: {}", cc_common::error_chain(&e));
                ExitCode::from(1)
            }
        };
    }
    if cli.check_config {
        match serde_json::to_string_pretty(&config.redacted()) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("cc-relay: {e}");
                return ExitCode::from(1);
            }
        }
        for w in &config.warnings {
            eprintln!("warning: {}: {}", w.key, w.message);
        }
        eprintln!("cc-relay: configuration {} is valid", config.source);
        return ExitCode::SUCCESS;
    }
    let level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| config.log.level.clone());
    let format = cli.log_format.unwrap_or(config.log.format);
    if let Err(e) = cc_common::telemetry::init(format, &level) {
        eprintln!("cc-relay: {e}");
        return ExitCode::from(2);
    }
    if cli.config.is_none() {
        tracing::warn!(
            "no --config given: running on built-in defaults (ingress 127.0.0.1:8080, data under ./var/relay, \
             forwarding to http://127.0.0.1:8082/api/write, admin 127.0.0.1:9109)"
        );
    }
    config.log_warnings();
    // A socket per connection.
    match cc_common::rlimit::raise_open_files() {
        Ok(l) => tracing::debug!(was = l.was, now = l.soft, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cc-relay: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = Shutdown::new();
        listen_for_signals(&shutdown)?;
        let options = cc_relay::app::RunOptions {
            config_path: cli.config.clone(),
            log_level_fixed: cli.log_level.is_some(),
        };
        cc_relay::app::run_with(config, shutdown, options).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cc-relay: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `cc-relay token`: prints a signed JWT.
fn token(args: &cc_relay::cli::TokenArgs) -> ExitCode {
    let claims = args.claims(cc_common::time::now_secs());
    match cc_common::auth::sign_token(&args.key, &claims) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cc-relay: {}", cc_common::error_chain(&e));
            ExitCode::from(1)
        }
    }
}

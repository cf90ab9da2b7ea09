//! The `cc-store` binary: parses the command line and runs the store.

use std::process::ExitCode;

use cc_common::shutdown::{Shutdown, listen_for_signals, sighup_stream};
use cc_common::telemetry::{self, go_loglevel_directive};
use cc_store::cli::{Cli, normalize_args};
use cc_store::config::Config;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    match cc_store::cli::print_docs(&cli) {
        Ok(true) => return ExitCode::SUCCESS,
        Ok(false) => {}
        Err(e) => {
            eprintln!("cc-store: {e}");
            return ExitCode::from(1);
        }
    }
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
    // cc-metric-store's default is ./config.json; without it, built-in
    // defaults.
    let default_file = std::path::Path::new("config.json");
    let file = cli
        .config
        .clone()
        .or_else(|| default_file.is_file().then(|| default_file.to_path_buf()));
    if cli.cleanup_checkpoints && file.is_none() {
        // Deleting files on built-in defaults (./var/checkpoints, 48 h)
        // could remove what another configuration keeps.
        eprintln!(
            "cc-store: -cleanup-checkpoints needs a configuration file \
             (-config FILE, or ./config.json): it deletes or archives checkpoints \
             by its retention-in-memory and directories"
        );
        return ExitCode::from(1);
    }
    let config = match &file {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cc-store: {}", cc_common::error_chain(&e));
                return ExitCode::from(1);
            }
        },
        None => {
            tracing::warn!(
                "no --config given and no ./config.json: running on built-in defaults \
                 (127.0.0.1:8082, no authentication, checkpoints under ./var/checkpoints)"
            );
            Config::embedded_default()
        }
    };
    if cli.check_config {
        let ms = &config.metric_store;
        println!(
            "{}: OK: listens on {}, {} metrics, checkpoints in {} ({}, every {}), retention {}, {} NATS subscription(s)",
            config.source,
            config.main.bind_address(),
            config.metrics.len(),
            ms.checkpoints.directory.display(),
            format!("{:?}", ms.checkpoints.file_format).to_lowercase(),
            humantime::format_duration(ms.checkpoint_interval),
            humantime::format_duration(ms.retention_in_memory),
            ms.nats_subscriptions.len()
        );
        return ExitCode::SUCCESS;
    }
    if cli.cleanup_checkpoints {
        return cleanup_once(&config);
    }
    // One WAL file open per host, and a socket per connection.
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
            eprintln!("cc-store: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = Shutdown::new();
        listen_for_signals(&shutdown)?;
        // SIGHUP would end the process without a final snapshot; cc-store
        // has nothing to re-read, so it says so and keeps running.
        let mut hangups = sighup_stream()?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP: cc-store re-reads nothing while running; restart it to apply \
                     configuration changes"
                );
            }
        });
        cc_store::server::run(config, shutdown).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => {
            tracing::info!("cc-store stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cc-store: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `-cleanup-checkpoints`: one cleanup round over the checkpoint directory
/// (delete or archive, as configured), then exit.
fn cleanup_once(config: &Config) -> ExitCode {
    let ms = &config.metric_store;
    let Some(retention) = ms.retention() else {
        println!("Cleanup done: retention-in-memory is 0, so no checkpoint file is old enough.");
        return ExitCode::SUCCESS;
    };
    let cutoff =
        cc_store::api::write::unix_now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let archive = ms.cleanup.archive_directory();
    match cc_store::persist::cleanup::cleanup(
        &ms.checkpoints.directory,
        cutoff,
        archive,
        ms.workers(),
    ) {
        Ok(report) => {
            for error in &report.errors {
                eprintln!("cc-store: kept: {error}");
            }
            match archive {
                Some(dir) => println!(
                    "Cleanup done: {} checkpoint files archived to parquet ({} rows under {}).",
                    report.files,
                    report.rows,
                    dir.display()
                ),
                None => println!("Cleanup done: {} checkpoint files deleted.", report.files),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "cc-store: cleanup of {} failed: {e}",
                ms.checkpoints.directory.display()
            );
            ExitCode::from(1)
        }
    }
}

//! The `mqimg` binary: parse the command line, run the subcommand, map errors to an exit status.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use mqimg::cli::{Cli, Command, EXIT_USAGE, check_config, decode, publish};
use mqimg::config::Settings;
use mqimg::daemon::app::App;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::CheckConfig { config } => check_config::run(&config),
        Command::PrintDefaultConfig => Ok(check_config::print_default_config()),
        Command::Run { config } => run(config.as_deref()),
        Command::Publish(args) => runtime()
            .and_then(|rt| rt.block_on(publish::run(&args)))
            .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        eprintln!("mqimg: {err:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// `mqimg run`: the daemon, until SIGINT or SIGTERM.
fn run(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    mqimg::ops::telemetry::init(&settings.log);
    let app = App::build(settings)?;
    app.log_startup(config);
    runtime()?.block_on(app.run(shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers: stop mqimg with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

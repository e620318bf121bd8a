//! The `mqimg` binary: parse the command line, run the subcommand, map errors to an exit status.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use mqimg::cli::{Cli, Command, EXIT_USAGE, check_config, decode, demo, health, publish};
use mqimg::config::Settings;
use mqimg::daemon::app::App;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::CheckConfig { config } => check_config::run(&config),
        Command::PrintDefaultConfig => Ok(check_config::print_default_config()),
        Command::Health { config, url } => Ok(health::run(config.as_deref(), url.as_deref())),
        Command::Run { config, demo } => run(config.as_deref(), demo),
        Command::Publish(args) => runtime()
            .and_then(|rt| rt.block_on(publish::run(&args)))
            .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        eprintln!("mqimg: {err:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// `mqimg run`: the daemon, until SIGINT or SIGTERM; with `--demo`, making sure it has a broker.
fn run(config: Option<&Path>, demo: bool) -> anyhow::Result<ExitCode> {
    let settings = if demo {
        demo::settings(config)?
    } else {
        Settings::load(config)?
    };
    mqimg::ops::telemetry::init(&settings.log);
    if demo {
        demo::ensure_broker(&settings.broker.url, settings.broker.max_packet_bytes)?;
    }
    let app = App::build(settings)?;
    let built_in = (demo && config.is_none()).then(|| Path::new(demo::BUILT_IN_CONFIG));
    app.log_startup(config.or(built_in));
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

//! The `mqimg` binary: parse the command line, run the subcommand, map errors to an exit status.

use std::process::ExitCode;

use clap::Parser;
use mqimg::cli::{Cli, Command};
use mqimg::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => commands::decode(&args),
        Command::CheckConfig { config } => commands::check_config(&config),
        Command::PrintDefaultConfig => Ok(commands::print_default_config()),
        Command::Run { config } => mqimg::run_daemon(config.as_deref()),
        Command::Publish(args) => runtime().and_then(|rt| rt.block_on(mqimg::publish::run(&args))).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        eprintln!("mqimg: {err:#}");
        ExitCode::from(commands::EXIT_USAGE)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

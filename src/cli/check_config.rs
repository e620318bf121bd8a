//! `mqimg check-config` and `mqimg print-default-config`: the config file's effective settings, and the
//! defaults to start one from.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{DEFAULT_TOML, Settings};
use crate::daemon::mqtt;

/// `mqimg check-config`: validates (the password and TLS files too, as the daemon reads them at
/// startup) and prints the effective settings, passwords masked.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(Some(path))?;
    mqtt::client_options(&settings.broker, settings.broker.client_id.clone())?;
    print!("{}", settings.to_toml());
    eprintln!("mqimg: {} is valid", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `mqimg print-default-config`: the example config, every key at its default.
pub fn print_default_config() -> ExitCode {
    print!("{DEFAULT_TOML}");
    ExitCode::SUCCESS
}

//! The one-shot subcommands: `decode`, `check-config`, `print-default-config`. Each returns the process
//! exit status; `main` only maps errors it cannot handle.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;

use crate::cli::DecodeArgs;
use crate::config::{DEFAULT_TOML, Settings};
use crate::daemon::sink;
use crate::frame::record::Record;
use crate::frame::{self, encode};

/// Exit status when the input was rejected (its failure record is on stdout).
pub const EXIT_REJECTED: u8 = 1;
/// Exit status for usage and I/O errors (clap's convention).
pub const EXIT_USAGE: u8 = 2;

/// `mqimg decode`: one payload → one JSON record line on stdout.
pub fn decode(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(args.config.as_deref())?;
    let payload = read_input(args.file.as_deref())?;
    let options = settings
        .decode
        .options(args.encoding, args.json_field.clone());
    let (record, status) = match frame::process(&payload, None, SystemTime::now(), &options) {
        Ok(mut processed) => {
            if let Some(out) = &args.out {
                let format = encode::format_for_path(out, processed.decoded.format)?;
                let bytes = encode::encode(&processed, format)?;
                sink::write_atomic(out, &bytes)?;
                processed.record.path = Some(out.display().to_string());
            }
            (
                Record::Success(Box::new(processed.record)),
                ExitCode::SUCCESS,
            )
        }
        Err(failure) => {
            eprintln!("mqimg: {}: {}", failure.stage, failure.error);
            (Record::Failure(failure), ExitCode::from(EXIT_REJECTED))
        }
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{}", record.to_json()).context("cannot write to stdout")?;
    Ok(status)
}

fn read_input(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) if path != Path::new("-") => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut buf = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .context("cannot read stdin")?;
            Ok(buf)
        }
    }
}

/// `mqimg check-config`: validates and prints the effective settings, passwords masked.
pub fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(Some(path))?;
    print!("{}", settings.to_toml());
    eprintln!("mqimg: {} is valid", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `mqimg print-default-config`: the example config, every key at its default.
pub fn print_default_config() -> ExitCode {
    print!("{DEFAULT_TOML}");
    ExitCode::SUCCESS
}

//! `mqimg decode`: one payload from a file or stdin → one JSON record line on stdout, and optionally the
//! frame written to a file. Runs the same [`frame::process`] as the daemon's workers, so both make the
//! same records.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;

use crate::cli::{DecodeArgs, EXIT_REJECTED};
use crate::config::Settings;
use crate::daemon::sink;
use crate::frame::record::Record;
use crate::frame::{self, encode};

/// `mqimg decode`: one payload → one JSON record line on stdout.
pub fn run(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(args.config.as_deref())?;
    let payload = read_input(args.file.as_deref())?;
    let options = settings
        .decode
        .options(args.encoding, args.json_field.clone());
    // One frame: the budget only refuses an image that alone needs more than all of it.
    let budget = settings.decode.memory_budget();
    let received_at = SystemTime::now();
    // A decoder bug must end as a failure record, as it does in the daemon's workers, not a crash.
    let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        frame::process(&payload, None, received_at, &options, &budget)
    }))
    .unwrap_or_else(|panic| {
        let what = crate::frame::panic_message(&*panic);
        Err(crate::frame::record::Failure::new(
            None,
            received_at,
            payload.len(),
            crate::frame::record::Stage::Decode,
            format!("the decoder crashed on this payload: {what}"),
        ))
    });
    let (record, status) = match processed {
        Ok(mut processed) => {
            if let Some(out) = &args.out {
                let format = encode::format_for_path(out, processed.decoded.format)?;
                sink::write_atomic_with(out, |file| encode::write(&processed, format, file))?;
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

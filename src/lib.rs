//! mqimg turns camera frames arriving over MQTT into validated RGB images, stored files and JSON records.
//!
//! Data flow:
//!
//! ```text
//! broker → mqtt (EventLoop) ─bounded→ workers×N (payload → decode) ─bounded→ sinks (disk, then records) → ack
//! ```
//!
//! Layout:
//! - [`payload`]: raw / base64 / data URI / JSON envelope → image bytes (pure).
//! - [`decode`]: image bytes → RGB8 under limits checked before allocation (pure, CPU-bound).
//! - [`frame`]: one payload → decoded frame + record; shared by `mqimg decode` and the daemon's workers.
//! - [`record`]: the JSON success/failure records, the product's contract.
//! - [`config`]: typed settings, TOML file + `MQIMG__SECTION__KEY` environment, validation.
//! - [`cli`]: subcommands and flags; [`commands`]: the one-shot ones (`decode`, `check-config`, …).
//! - [`output`]: frame files (`original`, `png`, `ppm`) written atomically.
//! - [`publish`]: `mqimg publish`, a camera-like publisher for trials and benchmarks.

pub mod cli;
pub mod commands;
pub mod config;
pub mod decode;
pub mod frame;
pub mod output;
pub mod payload;
pub mod publish;
pub mod record;

/// `mqimg run`: the daemon.
pub fn run_daemon(config: Option<&std::path::Path>) -> anyhow::Result<std::process::ExitCode> {
    let _ = config;
    anyhow::bail!("the daemon is not implemented yet")
}

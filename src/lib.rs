//! mqimg turns camera frames arriving over MQTT into validated RGB images, stored files and JSON records.
//!
//! How a frame moves, the module layers and the invariants are in `ARCHITECTURE.md` (the one diagram).
//! The modules, lowest layer first; each uses only the ones before it:
//! - [`frame`]: pure frame processing: payload detection, decoding under limits, records, topics, and
//!   the assembly of frames split over many messages.
//! - [`config`]: settings from a TOML file and `MQIMG__…` environment variables, parsed once into types.
//! - [`ops`]: what operators watch: metrics, readiness, the HTTP listener and its live view, logs.
//! - [`daemon`]: the MQTT connection (TCP or TLS), at-least-once delivery, decode workers, frame files,
//!   retention, chunked frames, and the embedded broker of `run --demo` (feature `embedded-broker`).
//! - [`cli`]: subcommands, including the one-shot `decode`, the `publish` camera emulator and the
//!   `health` probe.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod frame;
pub mod ops;

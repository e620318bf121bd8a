//! mqimg turns camera frames arriving over MQTT into validated RGB images, stored files and JSON records.
//!
//! Data flow:
//!
//! ```text
//! broker → mqtt (EventLoop) ─bounded→ delivery ─bounded→ workers×N (payload → decode → file)
//!                                        ↑ ←──bounded── outcomes ───────┘
//!                                        └→ records (QoS 1) → broker PUBACK → frame PUBACK, in arrival order
//! ```
//!
//! Layout:
//! - [`payload`]: raw / base64 / data URI / JSON envelope → image bytes (pure).
//! - [`decode`]: image bytes → RGB8 under limits checked before allocation (pure, CPU-bound).
//! - [`frame`]: one payload → decoded frame + record; shared by `mqimg decode` and the daemon's workers.
//! - [`record`]: the JSON success/failure records, the product's contract.
//! - [`config`]: typed settings, TOML file + `MQIMG__SECTION__KEY` environment, validation.
//! - [`cli`]: subcommands and flags, and the one-shot ones (`decode`, `check-config`, `publish`, …).
//! - [`topic`]: topic filters, matching, record topic templates.
//! - [`output`]: frame files (`original`, `png`, `ppm`) written atomically, named safely.
//! - [`mqtt`]: client options and the poll task that owns rumqttc's event loop.
//! - [`delivery`]: at-least-once bookkeeping: frames to workers, records out, acks in order.
//! - [`pipeline`]: the decode workers (OS threads) and the bounded decode queue.
//! - [`app`]: wiring; [`metrics`]: counters and the summary line; [`http`]: `/metrics`, `/healthz`,
//!   `/readyz`; [`telemetry`]: logging.
//! - [`publish`]: `mqimg publish`, a camera-like publisher for trials and benchmarks.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod frame;
pub mod ops;

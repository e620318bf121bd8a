//! Settings: one TOML file plus `MQIMG__SECTION__KEY` environment overrides, parsed once into typed
//! structs with defaults, then validated. Everything after [`Settings::load`] works with ready values: a
//! [`BrokerAddr`], `Duration`s, an `Option<SocketAddr>`, enums.
//!
//! - `load.rs`: the file as a TOML table, the environment overlaid onto it, unknown keys refused (with
//!   the nearest known key), one typed deserialisation that names the failing key.
//! - `types.rs`: the value types and their TOML forms (units stay in the key names).
//! - `validate.rs`: ranges and checks that involve more than one key.
//!
//! Every key, its default and why it exists is listed in `config/mqimg.toml`, which is also what
//! `mqimg print-default-config` prints.

mod load;
mod storage;
mod types;
mod validate;

#[cfg(test)]
mod chunk_tests;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::frame::chunks::{Fields, Limits as ChunkLimits, Mode, Source};
use crate::frame::decode::{Backend, Limits};
pub use crate::frame::encode::OutputFormat;
use crate::frame::payload::Encoding;
pub use storage::{Retention, SyncMode, TopicRetention};
pub use types::{
    BrokerAddr, BrokerAddrError, LogFilter, LogFilterError, LogFormat, Qos, QosError, Scheme,
    Secret,
};

/// The example config shipped with mqimg: every key at its default.
pub const DEFAULT_TOML: &str = include_str!("../../config/mqimg.toml");

/// Prefix of environment overrides: `MQIMG__BROKER__URL` sets `broker.url`.
const ENV_PREFIX: &str = "MQIMG";

/// Why settings could not be loaded. Each message names the key and its environment form.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {origin}{}: {message}", load::position(*location))]
    Parse {
        /// The file, or `config` for text given directly.
        origin: String,
        /// Line and column (from 1) where the TOML parser stopped, when it says.
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("unknown key {key} ({env}): {}", load::hint(suggestion.as_deref(), known))]
    UnknownKey {
        key: String,
        env: String,
        /// The nearest known key at the same level, when one is close.
        suggestion: Option<String>,
        /// Every key allowed at that level.
        known: Vec<String>,
    },
    #[error("invalid config: {key} ({env}): {problem}")]
    Invalid {
        key: String,
        env: String,
        problem: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            env: env_name(key),
            problem: problem.into(),
        }
    }
}

/// The environment variable that overrides `key`: `broker.url` → `MQIMG__BROKER__URL`,
/// `subscriptions[0].qos` → `MQIMG__SUBSCRIPTIONS__0__QOS`.
pub fn env_name(key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    for part in key.split(['.', '[']) {
        name.push_str("__");
        name.push_str(&part.trim_end_matches(']').to_ascii_uppercase());
    }
    name
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub broker: Broker,
    pub subscriptions: Vec<Subscription>,
    pub output: Output,
    pub retention: Retention,
    pub decode: Decode,
    pub pipeline: Pipeline,
    pub chunks: Chunks,
    pub log: Log,
    pub http: Http,
    /// Old key names the config used (read as their new names), for the startup log: `metrics.listen`.
    #[serde(skip)]
    pub deprecated: Vec<Deprecated>,
}

/// A key read under its old name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deprecated {
    pub old: &'static str,
    pub new: &'static str,
}

/// The one HTTP listener: metrics, health and the live view.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Address to listen on; `None` (empty in TOML) = no HTTP at all.
    #[serde(with = "types::listen_addr")]
    pub listen: Option<SocketAddr>,
    /// Required by every route except `/healthz` (bearer header or `?token=`); `None` = open.
    pub token: Option<Secret>,
    /// Topics whose latest frame, counters and recent records are kept.
    pub max_topics: usize,
    /// Bytes of latest frames kept, all topics together.
    pub max_latest_bytes: usize,
    /// `/stream/` clients at once; more are answered 503.
    pub max_streams: usize,
    /// Base URL consumers reach this listener at; success records then carry `url`.
    pub public_url: Option<String>,
    /// Let the live view show records' `path` (the stored file).
    pub show_paths: bool,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9464))),
            token: None,
            max_topics: 64,
            max_latest_bytes: 64 << 20,
            max_streams: 32,
            public_url: None,
            show_paths: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Broker {
    pub url: BrokerAddr,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A file holding the password (Docker and Kubernetes secrets), read at startup; one trailing
    /// line break is not part of it. `None` (empty in TOML) = none.
    #[serde(with = "types::path_or_off")]
    pub password_file: Option<PathBuf>,
    /// Ping interval when idle (`keep_alive_secs`).
    #[serde(rename = "keep_alive_secs", with = "types::secs")]
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub max_packet_bytes: usize,
    /// First reconnect delay (`reconnect_min_ms`); doubles per failed attempt.
    #[serde(rename = "reconnect_min_ms", with = "types::millis")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay (`reconnect_max_ms`).
    #[serde(rename = "reconnect_max_ms", with = "types::millis")]
    pub reconnect_max: Duration,
    /// How an `mqtts://` broker is authenticated, and how mqimg authenticates to it.
    pub tls: Tls,
}

/// `[broker.tls]`: files are named here and read when the client is set up, so that a missing or
/// wrong one is reported naming its key before anything connects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificates of the CAs trusted to sign the broker's certificate; `None` = the system's.
    #[serde(with = "types::path_or_off")]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to brokers that require one (mutual TLS).
    #[serde(with = "types::path_or_off")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(with = "types::path_or_off")]
    pub client_key_file: Option<PathBuf>,
    /// The name the broker's certificate must hold, when not the host of `broker.url` (a broker
    /// reached by IP address, or through a tunnel).
    #[serde(with = "types::string_or_off")]
    pub server_name: Option<String>,
}

impl Tls {
    /// Whether any key is set (they only mean something with `mqtts://`).
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            url: BrokerAddr::default(),
            client_id: "mqimg".into(),
            username: None,
            password: None,
            password_file: None,
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            max_packet_bytes: 64 << 20,
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            tls: Tls::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub topic: String,
    #[serde(default = "default_qos")]
    pub qos: Qos,
    /// How the frame (assembled, for chunked subscriptions) is wrapped.
    #[serde(default, deserialize_with = "types::choice")]
    pub encoding: Encoding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_field: Option<String>,
    /// How frames are split over messages; `none`: one message, one frame.
    #[serde(default, deserialize_with = "types::choice")]
    pub chunks: Mode,
    /// `json-parts` field names and numbering; unset = `part`, `total` (or `total_parts`), `data`,
    /// `id`, numbered from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_part: Option<u32>,
}

fn default_qos() -> Qos {
    Qos::AtLeastOnce
}

impl Default for Subscription {
    /// A subscription to nothing yet, every other key at its default.
    fn default() -> Self {
        Self {
            topic: String::new(),
            qos: default_qos(),
            encoding: Encoding::default(),
            json_field: None,
            chunks: Mode::default(),
            part_field: None,
            total_field: None,
            data_field: None,
            id_field: None,
            first_part: None,
        }
    }
}

impl Subscription {
    /// How this subscription's chunked messages are read.
    pub fn source(&self) -> Source {
        let defaults = Fields::default();
        let name = |set: &Option<String>, default: String| set.clone().unwrap_or(default);
        Source {
            mode: self.chunks,
            fields: Fields {
                part: name(&self.part_field, defaults.part),
                total: name(&self.total_field, defaults.total),
                data: name(&self.data_field, defaults.data),
                id: name(&self.id_field, defaults.id),
                first_part: self.first_part.unwrap_or(defaults.first_part),
            },
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Output {
    /// Root folder of frame files; `None` (empty in TOML) = no files.
    #[serde(with = "types::path_or_off")]
    pub dir: Option<PathBuf>,
    #[serde(deserialize_with = "types::choice")]
    pub format: OutputFormat,
    pub results_topic: String,
    pub errors_topic: String,
    pub qos: Qos,
    pub retain: bool,
    /// Largest record published; larger ones (huge envelopes' `meta`) are trimmed.
    pub max_record_bytes: usize,
    /// What a frame file must reach before the frame is acked.
    #[serde(deserialize_with = "types::choice")]
    pub sync: SyncMode,
    /// Keep `{dir}/{topic levels}/latest.{ext}` holding each topic's newest frame.
    pub latest: bool,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            dir: None,
            format: OutputFormat::Original,
            results_topic: "mqimg/results/{topic}".into(),
            errors_topic: "mqimg/errors/{topic}".into(),
            qos: Qos::AtLeastOnce,
            retain: false,
            max_record_bytes: 256 << 10,
            sync: SyncMode::default(),
            latest: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Decode {
    pub max_payload_bytes: usize,
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    pub apply_orientation: bool,
    /// Check JPEG entropy-coded data for corruption (a warning in the record).
    pub verify_entropy: bool,
    /// The JPEG decoder: `zune` or `libjpeg-turbo` (builds with the `turbojpeg` feature).
    #[serde(deserialize_with = "types::choice")]
    pub backend: Backend,
    /// Decode threads; 0 = one per core.
    pub workers: usize,
    /// Memory all decodes at once may use, by their header estimates (`frame::budget`).
    pub max_memory_bytes: u64,
}

/// The default `decode.max_memory_bytes`: the largest image the default limits accept (40 Mpx) decodes
/// alone even in its costliest form, a progressive CMYK JPEG (433 MiB estimated).
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 512 << 20;

impl Default for Decode {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_payload_bytes: crate::frame::DEFAULT_MAX_PAYLOAD_BYTES,
            max_width: limits.max_width,
            max_height: limits.max_height,
            max_pixels: limits.max_pixels,
            apply_orientation: limits.apply_orientation,
            verify_entropy: limits.verify_entropy,
            backend: limits.backend,
            workers: 0,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

impl Decode {
    pub fn limits(&self) -> Limits {
        Limits {
            max_width: self.max_width,
            max_height: self.max_height,
            max_pixels: self.max_pixels,
            apply_orientation: self.apply_orientation,
            verify_entropy: self.verify_entropy,
            backend: self.backend,
        }
    }

    /// How payloads read with `encoding` (and `json_field`) are checked against these limits.
    pub fn options(&self, encoding: Encoding, json_field: Option<String>) -> crate::frame::Options {
        crate::frame::Options {
            encoding,
            json_field,
            max_payload_bytes: self.max_payload_bytes,
            limits: self.limits(),
        }
    }

    /// The budget every decode takes its estimated memory from: one per daemon, shared by its workers.
    pub fn memory_budget(&self) -> crate::frame::budget::MemoryBudget {
        crate::frame::budget::MemoryBudget::new(self.max_memory_bytes)
    }

    /// The number of decode workers: `workers`, or one per core when 0.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pipeline {
    /// Frames received and waiting for a decode worker.
    pub queue_frames: usize,
    /// Bytes held for frames in flight (payloads, topics, records) before intake pauses.
    pub max_inflight_bytes: usize,
    /// How long a SIGINT/SIGTERM waits for in-flight frames before exiting (`shutdown_grace_secs`).
    #[serde(rename = "shutdown_grace_secs", with = "types::secs")]
    pub shutdown_grace: Duration,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            queue_frames: 6,
            max_inflight_bytes: 128 << 20,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chunks {
    /// Largest assembled frame; 0 = `decode.max_payload_bytes`.
    pub max_frame_bytes: usize,
    /// Most messages one frame may take.
    pub max_parts: usize,
    /// How long after its first part a frame may still be incomplete (`timeout_secs`).
    #[serde(rename = "timeout_secs", with = "types::secs")]
    pub timeout: Duration,
    /// Where parts wait for the rest of their frame; `None` (empty in TOML) = `{output.dir}/.mqimg-spool`.
    #[serde(with = "types::path_or_off")]
    pub spool_dir: Option<PathBuf>,
}

impl Default for Chunks {
    fn default() -> Self {
        let limits = ChunkLimits::default();
        Self {
            max_frame_bytes: 0,
            max_parts: limits.max_parts,
            timeout: limits.timeout,
            spool_dir: None,
        }
    }
}

impl Chunks {
    /// The limits, `max_payload_bytes` (`decode.max_payload_bytes`) standing in for a 0 `max_frame_bytes`.
    pub fn limits(&self, max_payload_bytes: usize) -> ChunkLimits {
        ChunkLimits {
            max_frame_bytes: if self.max_frame_bytes == 0 {
                max_payload_bytes
            } else {
                self.max_frame_bytes
            },
            max_parts: self.max_parts,
            timeout: self.timeout,
        }
    }
}

/// The spool folder inside `output.dir` when `chunks.spool_dir` is unset. Hidden, and out of reach
/// of frame files: their topic levels never start with a dot (`sink` escapes it).
pub const SPOOL_IN_OUTPUT: &str = ".mqimg-spool";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    #[serde(deserialize_with = "types::choice")]
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset.
    pub level: LogFilter,
    /// Time between one-line summaries (`summary_secs`); `None` (0 in TOML) = off.
    #[serde(rename = "summary_secs", with = "types::secs_or_off")]
    pub summary_interval: Option<Duration>,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: LogFilter::default(),
            summary_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl Settings {
    /// The assembly limits of chunked frames.
    pub fn chunk_limits(&self) -> ChunkLimits {
        self.chunks.limits(self.decode.max_payload_bytes)
    }

    /// Where chunked frames' parts are spooled: `chunks.spool_dir`, else `{output.dir}/.mqimg-spool`;
    /// `None` when neither is set.
    pub fn spool_dir(&self) -> Option<PathBuf> {
        self.chunks
            .spool_dir
            .clone()
            .or_else(|| Some(self.output.dir.as_ref()?.join(SPOOL_IN_OUTPUT)))
    }

    /// The settings as TOML, passwords masked.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

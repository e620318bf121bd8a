//! Settings: one TOML file plus `MQIMG__SECTION__KEY` environment overrides, deserialised into typed
//! structs with defaults, then validated once. Everything after [`Settings::load`] works with valid values.
//!
//! Every key, its default and why it exists is listed in `config/mqimg.toml`, which is also what
//! `mqimg print-default-config` prints.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::frame::decode::Limits;
pub use crate::frame::encode::OutputFormat;
use crate::frame::payload::Encoding;

/// The example config shipped with mqimg: every key at its default.
pub const DEFAULT_TOML: &str = include_str!("../../config/mqimg.toml");

/// Prefix of environment overrides: `MQIMG__BROKER__URL` sets `broker.url`.
const ENV_PREFIX: &str = "MQIMG";

/// Why settings could not be loaded. Each message names the key and its environment form.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config: {0}")]
    Load(String),
    #[error("invalid config: {key} ({env}): {problem}")]
    Invalid {
        key: String,
        env: String,
        problem: String,
    },
}

impl From<config::ConfigError> for ConfigError {
    /// The `config` crate names the key but not its environment form; add it.
    fn from(err: config::ConfigError) -> Self {
        let text = err.to_string();
        let quoted = |after: &str| {
            let rest = &text[text.find(after)? + after.len()..];
            let rest = rest.strip_prefix('`')?;
            Some(rest[..rest.find('`')?].to_owned())
        };
        let key = match (quoted("unknown field "), quoted("for key ")) {
            (Some(field), Some(section)) => Some(format!("{section}.{field}")),
            (Some(field), None) => Some(field),
            (None, key) => key,
        };
        Self::Load(match key {
            Some(key) => format!("{text} (environment: {})", env_name(&key)),
            None => text,
        })
    }
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

/// The environment variable that overrides `key` (`broker.url` → `MQIMG__BROKER__URL`).
pub fn env_name(key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    for part in key.split('.') {
        // Array elements (`subscriptions[0].topic`) have no environment form; name the key anyway.
        name.push_str("__");
        name.push_str(&part.to_ascii_uppercase());
    }
    name
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub broker: Broker,
    pub subscriptions: Vec<Subscription>,
    pub output: Output,
    pub decode: Decode,
    pub pipeline: Pipeline,
    pub log: Log,
    pub metrics: MetricsEndpoint,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsEndpoint {
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); empty = off.
    pub listen: String,
}

impl Default for MetricsEndpoint {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Broker {
    pub url: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub keep_alive_secs: u64,
    pub clean_session: bool,
    pub max_packet_bytes: usize,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "mqimg".into(),
            username: None,
            password: None,
            keep_alive_secs: 30,
            clean_session: false,
            max_packet_bytes: 64 << 20,
            reconnect_min_ms: 250,
            reconnect_max_ms: 30_000,
        }
    }
}

impl Broker {
    /// Host and port of `url`.
    pub fn address(&self) -> Result<(String, u16), ConfigError> {
        parse_broker_url(&self.url)
            .map_err(|problem| ConfigError::invalid("broker.url", problem.to_string()))
    }

    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs)
    }
}

/// Parses `mqtt://host:port` (also `tcp://`, or bare `host:port`; the port defaults to 1883). IPv6
/// hosts keep their brackets (`[::1]`): rumqttc joins host and port into one address string.
pub fn parse_broker_url(url: &str) -> anyhow::Result<(String, u16)> {
    let authority = match url.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("mqtt") || scheme.eq_ignore_ascii_case("tcp") =>
        {
            rest
        }
        Some((scheme, _)) => bail!(
            "unsupported scheme `{scheme}` in broker URL `{url}`: use mqtt://host:port (TLS and websockets are not supported)"
        ),
        None => url,
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if let Some(bad) = authority
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace())
    {
        bail!(
            "broker URL `{url}` has `{bad}` in it: expected mqtt://host:port with no user, path or query"
        );
    }

    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("broker URL `{url}` has an unclosed `[`"))?;
        if inside.is_empty() {
            bail!("broker URL `{url}` has an empty IPv6 address");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                anyhow!("broker URL `{url}`: expected `:port` after `]`, found `{after}`")
            })?),
        };
        (&authority[..inside.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                bail!(
                    "broker URL `{url}`: write IPv6 addresses in brackets, as in mqtt://[::1]:1883"
                )
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("broker URL `{url}` has no host");
    }
    let port = match port {
        None => 1883,
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                bail!("broker URL `{url}` has an invalid port `{port}` (expected 1 to 65535)")
            }
            Ok(port) => port,
        },
    };
    Ok((host.to_owned(), port))
}

/// A password: never printed by `Debug` or in `check-config` output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub topic: String,
    #[serde(default = "default_qos")]
    pub qos: Qos,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_field: Option<String>,
}

fn default_qos() -> Qos {
    Qos::AtLeastOnce
}

/// An MQTT quality of service level, parsed from 0, 1 or 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Qos {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl TryFrom<u8> for Qos {
    type Error = String;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        match level {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            other => Err(format!("{other} is not one of 0, 1, 2")),
        }
    }
}

impl From<Qos> for u8 {
    fn from(qos: Qos) -> Self {
        qos as u8
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Output {
    pub dir: Option<PathBuf>,
    pub format: OutputFormat,
    pub results_topic: String,
    pub errors_topic: String,
    pub qos: Qos,
    pub retain: bool,
    /// Largest record published; larger ones (huge envelopes' `meta`) are trimmed.
    pub max_record_bytes: usize,
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
    /// Decode threads; 0 = one per core.
    pub workers: usize,
}

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
            workers: 0,
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
    /// Seconds a SIGINT/SIGTERM waits for in-flight frames before exiting.
    pub shutdown_grace_secs: u64,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            queue_frames: 6,
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset.
    pub level: String,
    /// Seconds between one-line summaries; 0 = off.
    pub summary_secs: u64,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            summary_secs: 60,
        }
    }
}

impl Settings {
    /// Loads `file` (when given) and the environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// Like [`Settings::load`], with the environment given explicitly (tests must not touch the
    /// process environment, which tests running in parallel share).
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // try_parsing stays off: it would turn client id `0042` into the number 42.
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(env);
        let settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: ranges, and values that only make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        b.address()?;
        if b.client_id.is_empty() && !b.clean_session {
            return Err(ConfigError::invalid(
                "broker.client_id",
                "must not be empty when broker.clean_session = false (the broker keeps the session under this id)",
            ));
        }
        if b.client_id.chars().count() > 23 {
            tracing::debug!("client id longer than 23 characters: some brokers refuse it");
        }
        if b.keep_alive_secs < 1 || b.keep_alive_secs > u64::from(u16::MAX) {
            return Err(ConfigError::invalid(
                "broker.keep_alive_secs",
                format!("{} is outside 1..=65535", b.keep_alive_secs),
            ));
        }
        if b.password.is_some() && b.username.is_none() {
            return Err(ConfigError::invalid(
                "broker.password",
                "is set without broker.username",
            ));
        }
        if b.reconnect_min_ms == 0 || b.reconnect_min_ms > b.reconnect_max_ms {
            return Err(ConfigError::invalid(
                "broker.reconnect_min_ms",
                format!(
                    "{} must be at least 1 and at most broker.reconnect_max_ms ({})",
                    b.reconnect_min_ms, b.reconnect_max_ms
                ),
            ));
        }
        // The client's packet limit must sit above the payload limit: an incoming packet over the
        // client's limit drops the connection, and under a persistent session the broker redelivers it
        // on every reconnect, forever. A payload between the two gets a clean `limits` failure instead.
        let min_packet = self.decode.max_payload_bytes + 64 * 1024;
        if b.max_packet_bytes < min_packet {
            return Err(ConfigError::invalid(
                "broker.max_packet_bytes",
                format!(
                    "{} must exceed decode.max_payload_bytes ({}) by at least 64 KiB (topic and headers), \
                     or an oversized frame would drop the connection instead of failing cleanly",
                    b.max_packet_bytes, self.decode.max_payload_bytes
                ),
            ));
        }
        if b.max_packet_bytes > 268_435_455 {
            return Err(ConfigError::invalid(
                "broker.max_packet_bytes",
                format!(
                    "{} exceeds MQTT's maximum packet size (268435455)",
                    b.max_packet_bytes
                ),
            ));
        }
        for (i, s) in self.subscriptions.iter().enumerate() {
            let key = |k: &str| format!("subscriptions[{i}].{k}");
            crate::frame::topic::validate_filter(&s.topic)
                .map_err(|p| ConfigError::invalid(&key("topic"), p))?;
            for template in [&self.output.results_topic, &self.output.errors_topic] {
                if let Some(record_topic) = crate::frame::topic::render(template, "x") {
                    if crate::frame::topic::matches(&s.topic, &record_topic) {
                        return Err(ConfigError::invalid(
                            &key("topic"),
                            format!(
                                "{:?} also matches the record topic {template:?}: mqimg would consume its own records",
                                s.topic
                            ),
                        ));
                    }
                }
            }
            if s.json_field.as_deref() == Some("") {
                return Err(ConfigError::invalid(
                    &key("json_field"),
                    "must not be empty (leave it unset to probe the usual names)",
                ));
            }
        }
        let o = &self.output;
        for (key, template) in [
            ("output.results_topic", &o.results_topic),
            ("output.errors_topic", &o.errors_topic),
        ] {
            if template.contains(['+', '#']) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{template:?} contains a wildcard; records need a plain topic"),
                ));
            }
        }
        if o.max_record_bytes < 1024 {
            return Err(ConfigError::invalid(
                "output.max_record_bytes",
                format!("{} is below 1024", o.max_record_bytes),
            ));
        }
        let d = &self.decode;
        for (key, value) in [
            ("decode.max_payload_bytes", d.max_payload_bytes as u64),
            ("decode.max_width", u64::from(d.max_width)),
            ("decode.max_height", u64::from(d.max_height)),
            ("decode.max_pixels", d.max_pixels),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::invalid(
                "metrics.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464 (empty turns the endpoint off)",
                    self.metrics.listen
                ),
            ));
        }
        if self.pipeline.queue_frames == 0 {
            return Err(ConfigError::invalid(
                "pipeline.queue_frames",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The settings as TOML, passwords masked.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn load_str(toml: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqimg.toml");
        std::fs::write(&path, toml).unwrap();
        Settings::load_with_env(Some(&path), env(vars))
    }

    #[test]
    fn the_shipped_example_config_lists_the_defaults() {
        let mut shipped = load_str(DEFAULT_TOML, &[]).unwrap();
        // The example's only non-defaults: one subscription and a frames folder, so it runs as is.
        assert_eq!(shipped.subscriptions.len(), 1);
        assert_eq!(shipped.output.dir.as_deref(), Some(Path::new("frames")));
        shipped.subscriptions.clear();
        shipped.output.dir = None;
        assert_eq!(shipped.to_toml(), Settings::default().to_toml());
    }

    #[test]
    fn environment_overrides_the_file_and_keeps_leading_zeros_in_strings() {
        let s = load_str(
            "[broker]\nclient_id = \"cam\"\nkeep_alive_secs = 10\n",
            &[
                ("MQIMG__BROKER__CLIENT_ID", "0042"),
                ("MQIMG__BROKER__KEEP_ALIVE_SECS", "45"),
                ("MQIMG__DECODE__APPLY_ORIENTATION", "false"),
            ],
        )
        .unwrap();
        assert_eq!(s.broker.client_id, "0042");
        assert_eq!(s.broker.keep_alive_secs, 45);
        assert!(!s.decode.apply_orientation);
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = load_str("[broker]\nurll = \"mqtt://x\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        assert!(err.to_string().contains("MQIMG__BROKER__URLL"), "{err}");
    }

    #[test]
    fn a_packet_limit_below_the_payload_limit_is_refused_with_the_env_name() {
        let err = load_str(
            "[broker]\nmax_packet_bytes = 10240\n[decode]\nmax_payload_bytes = 1000000\n",
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("broker.max_packet_bytes"), "{msg}");
        assert!(msg.contains("MQIMG__BROKER__MAX_PACKET_BYTES"), "{msg}");
    }

    #[test]
    fn an_empty_client_id_needs_a_clean_session() {
        let err = load_str("[broker]\nclient_id = \"\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("broker.client_id"), "{err}");
        load_str("[broker]\nclient_id = \"\"\nclean_session = true\n", &[]).unwrap();
    }

    #[test]
    fn subscriptions_default_to_qos_1_and_auto_and_bad_filters_are_named() {
        let s = load_str("[[subscriptions]]\ntopic = \"cams/+/jpeg\"\n", &[]).unwrap();
        assert_eq!(s.subscriptions[0].qos, Qos::AtLeastOnce);
        assert_eq!(s.subscriptions[0].encoding, Encoding::Auto);
        let err = load_str("[[subscriptions]]\ntopic = \"cams/#/x\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("subscriptions[0].topic"), "{err}");
        load_str("[[subscriptions]]\ntopic = \"$share/g/cams/#\"\n", &[]).unwrap();
        let err = load_str("[[subscriptions]]\ntopic = \"#\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("its own records"), "{err}");
    }

    #[test]
    fn passwords_are_masked_in_debug_and_toml() {
        let s = load_str("[broker]\nusername = \"u\"\npassword = \"hunter2\"\n", &[]).unwrap();
        assert_eq!(s.broker.password.as_ref().unwrap().expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.to_toml().contains("hunter2"));
        assert!(s.to_toml().contains("***"));
    }

    #[test]
    fn broker_urls_parse_to_host_and_port() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(parse_broker_url("broker").unwrap(), ("broker".into(), 1883));
        assert_eq!(
            parse_broker_url("tcp://[::1]:1885").unwrap(),
            ("[::1]".into(), 1885)
        );
        assert!(
            parse_broker_url("mqtts://x:8883")
                .unwrap_err()
                .to_string()
                .contains("mqtts")
        );
        assert!(parse_broker_url("mqtt://x:0").is_err());
        assert!(parse_broker_url("mqtt://x:99999").is_err());
    }
}

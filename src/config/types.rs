//! The ready types settings are parsed into, each checked once while the config is read: the broker
//! address, QoS levels, the log filter, passwords that never print, and enums whose errors list every
//! allowed name. Also the serde forms that keep the TOML keys and units (`keep_alive_secs = 30`,
//! `listen = ""`) while the rest of mqimg sees `Duration` and `Option<SocketAddr>`.
//!
//! Not here: checks that involve more than one key (those are in `validate.rs`).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::frame::chunks::Mode;
use crate::frame::decode::Backend;
use crate::frame::encode::OutputFormat;
use crate::frame::payload::Encoding;

/// How mqimg talks to the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// MQTT over plain TCP: `mqtt://` or `tcp://`.
    Mqtt,
    /// MQTT over TLS: `mqtts://` or `ssl://` (the name some clients use), set up by `[broker.tls]`.
    Mqtts,
}

impl Scheme {
    /// The port a URL without one gets (IANA's MQTT and secure MQTT ports).
    pub fn default_port(self) -> u16 {
        match self {
            Self::Mqtt => 1883,
            Self::Mqtts => 8883,
        }
    }

    pub fn is_tls(self) -> bool {
        self == Self::Mqtts
    }

    fn parse(name: &str) -> Option<Self> {
        let is = |names: &[&str]| names.iter().any(|known| name.eq_ignore_ascii_case(known));
        if is(&["mqtt", "tcp"]) {
            Some(Self::Mqtt)
        } else if is(&["mqtts", "ssl"]) {
            Some(Self::Mqtts)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mqtt => "mqtt",
            Self::Mqtts => "mqtts",
        })
    }
}

/// A broker address parsed from `mqtt://host:port` (also `tcp://`, or bare `host:port`) or
/// `mqtts://host:port` (also `ssl://`).
///
/// The host is kept as rumqttc takes it: IPv6 literals keep their brackets (`[::1]`), because rumqttc
/// joins host and port with a colon before resolving.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BrokerAddr {
    scheme: Scheme,
    host: String,
    port: u16,
}

/// Why a broker URL was refused; each message quotes the URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokerAddrError {
    #[error(
        "unsupported scheme `{scheme}` in broker URL `{url}`: use mqtt://host:port, or mqtts://host:port for TLS (websockets are not supported)"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error(
        "broker URL `{url}` has `{found}` in it: expected mqtt://host:port or mqtts://host:port with no user, path or query"
    )]
    UnexpectedCharacter { url: String, found: char },
    #[error("broker URL `{url}` has an unclosed `[`")]
    UnclosedBracket { url: String },
    #[error("broker URL `{url}` has an empty IPv6 address")]
    EmptyIpv6 { url: String },
    #[error("broker URL `{url}`: expected `:port` after `]`, found `{after}`")]
    AfterBracket { url: String, after: String },
    #[error("broker URL `{url}`: write IPv6 addresses in brackets, as in mqtt://[::1]:1883")]
    Ipv6WithoutBrackets { url: String },
    #[error("broker URL `{url}` has no host")]
    NoHost { url: String },
    #[error("broker URL `{url}` has an invalid port `{port}` (expected 1 to 65535)")]
    InvalidPort { url: String, port: String },
}

impl BrokerAddr {
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host as rumqttc takes it (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for BrokerAddr {
    fn default() -> Self {
        Self {
            scheme: Scheme::Mqtt,
            host: "127.0.0.1".into(),
            port: 1883,
        }
    }
}

impl FromStr for BrokerAddr {
    type Err = BrokerAddrError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let owned = || url.to_owned();
        let (scheme, authority) = match url.split_once("://") {
            Some((name, rest)) => match Scheme::parse(name) {
                Some(scheme) => (scheme, rest),
                None => {
                    return Err(BrokerAddrError::UnsupportedScheme {
                        url: owned(),
                        scheme: name.to_owned(),
                    });
                }
            },
            None => (Scheme::Mqtt, url),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if let Some(found) = authority
            .chars()
            .find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace())
        {
            return Err(BrokerAddrError::UnexpectedCharacter {
                url: owned(),
                found,
            });
        }

        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| BrokerAddrError::UnclosedBracket { url: owned() })?;
            if inside.is_empty() {
                return Err(BrokerAddrError::EmptyIpv6 { url: owned() });
            }
            let port =
                match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or_else(|| {
                        BrokerAddrError::AfterBracket {
                            url: owned(),
                            after: after.to_owned(),
                        }
                    })?),
                };
            (&authority[..inside.len() + 2], port)
        } else {
            match authority.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(BrokerAddrError::Ipv6WithoutBrackets { url: owned() });
                }
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(BrokerAddrError::NoHost { url: owned() });
        }
        let port = match port {
            None => scheme.default_port(),
            Some(port) => match port.parse::<u16>() {
                Ok(0) | Err(_) => {
                    return Err(BrokerAddrError::InvalidPort {
                        url: owned(),
                        port: port.to_owned(),
                    });
                }
                Ok(port) => port,
            },
        };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
        })
    }
}

impl TryFrom<String> for BrokerAddr {
    type Error = BrokerAddrError;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        url.parse()
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl From<BrokerAddr> for String {
    fn from(addr: BrokerAddr) -> Self {
        addr.to_string()
    }
}

/// A password: never printed by `Debug` or in `check-config` output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

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
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// An MQTT quality of service level, parsed from 0, 1 or 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "u8")]
pub enum Qos {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

/// A number that is not a QoS level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not one of 0, 1, 2")]
pub struct QosError(String);

impl TryFrom<i64> for Qos {
    type Error = QosError;

    fn try_from(level: i64) -> Result<Self, Self::Error> {
        match level {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            other => Err(QosError(other.to_string())),
        }
    }
}

impl TryFrom<u8> for Qos {
    type Error = QosError;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        Self::try_from(i64::from(level))
    }
}

impl From<Qos> for u8 {
    fn from(qos: Qos) -> Self {
        qos as u8
    }
}

impl<'de> Deserialize<'de> for Qos {
    /// Numbers of any width, and strings (an environment value that is not a number), all get the
    /// same error listing the levels.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Level;
        impl Visitor<'_> for Level {
            type Value = Qos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0, 1 or 2")
            }
            fn visit_i64<E: de::Error>(self, level: i64) -> Result<Qos, E> {
                Qos::try_from(level).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, level: u64) -> Result<Qos, E> {
                i64::try_from(level)
                    .map_or(Err(QosError(level.to_string())), Qos::try_from)
                    .map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, level: &str) -> Result<Qos, E> {
                level
                    .trim()
                    .parse::<i64>()
                    .map_or(Err(QosError(format!("{level:?}"))), Qos::try_from)
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Level)
    }
}

/// An enum read from a fixed set of names, so that a wrong one is answered with all of them.
pub trait Choice: Copy + Serialize + 'static {
    /// Every variant.
    fn all() -> &'static [Self];

    /// The name the config uses for `self` (its serde name).
    fn name(self) -> String {
        match toml::Value::try_from(self) {
            Ok(toml::Value::String(name)) => name,
            _ => String::new(),
        }
    }
}

impl Choice for Encoding {
    fn all() -> &'static [Self] {
        &Encoding::ALL
    }
}

impl Choice for Mode {
    fn all() -> &'static [Self] {
        &Mode::ALL
    }
}

impl Choice for OutputFormat {
    fn all() -> &'static [Self] {
        &[Self::Original, Self::Png, Self::Ppm]
    }
}

impl Choice for Backend {
    fn all() -> &'static [Self] {
        &Backend::ALL
    }
}

impl Choice for LogFormat {
    fn all() -> &'static [Self] {
        &[Self::Text, Self::Json]
    }
}

/// serde's `deserialize_with` for a [`Choice`]: `"jpeg" is not one of original, png, ppm`.
pub(super) fn choice<'de, D: Deserializer<'de>, T: Choice>(deserializer: D) -> Result<T, D::Error> {
    let name = String::deserialize(deserializer)?;
    T::all()
        .iter()
        .copied()
        .find(|variant| variant.name() == name)
        .ok_or_else(|| {
            let names: Vec<String> = T::all().iter().map(|v| v.name()).collect();
            de::Error::custom(format!("{name:?} is not one of {}", names.join(", ")))
        })
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The levels a log filter directive may name.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// A `tracing` filter (`info`, `mqimg=debug,rumqttc=warn`) in which every directive names a level.
///
/// `EnvFilter` alone would take a bare `verbose` for a target name, enable only that target and so
/// silence every line mqimg writes: here it is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogFilter(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogFilterError {
    #[error(
        "{word:?} is not a level: use one of error, warn, info, debug, trace, off, alone or as \
         target=level (as in mqimg=debug,rumqttc=warn)"
    )]
    NotALevel { word: String },
    #[error("{filter:?} is not a log filter: {problem}")]
    Syntax { filter: String, problem: String },
}

impl LogFilter {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LogFilter {
    fn default() -> Self {
        Self("info".into())
    }
}

impl FromStr for LogFilter {
    type Err = LogFilterError;

    fn from_str(filter: &str) -> Result<Self, Self::Err> {
        if filter.trim().is_empty() {
            return Err(LogFilterError::NotALevel {
                word: filter.to_owned(),
            });
        }
        // Empty directives (a trailing comma) are skipped, as `EnvFilter` does.
        for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            // `target[span{field=value}]` carries no level of its own; its `=` is not the level's.
            let level = match directive.rsplit_once('=') {
                Some((_, level)) if !directive.ends_with(']') => level,
                _ => directive,
            };
            if !LEVELS.iter().any(|known| level.eq_ignore_ascii_case(known)) {
                return Err(LogFilterError::NotALevel {
                    word: directive.to_owned(),
                });
            }
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(filter)
            .map_err(|e| LogFilterError::Syntax {
                filter: filter.to_owned(),
                problem: e.to_string(),
            })?;
        Ok(Self(filter.to_owned()))
    }
}

impl TryFrom<String> for LogFilter {
    type Error = LogFilterError;

    fn try_from(filter: String) -> Result<Self, Self::Error> {
        filter.parse()
    }
}

impl From<LogFilter> for String {
    fn from(filter: LogFilter) -> Self {
        filter.0
    }
}

impl AsRef<str> for LogFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

mod forms;
pub(super) use forms::{listen_addr, millis, path_or_off, secs, secs_or_off, string_or_off};

#[cfg(test)]
mod tests;

//! Settings about frame files once written: how durable a write is before its frame is acked
//! (`output.sync`), and what the janitor deletes to keep the disk within bounds (`[retention]`), with
//! their TOML forms (`max_age = "7d"`, `0` or `""` = off) and their checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::types::Choice;
use crate::frame::topic;

/// What a frame file must reach before its frame may be acked (`output.sync`).
///
/// The default is `None`: of the three, only it met the live-latency target (p99 ≤ 3 × a frame's
/// decode time + 10 ms at 50 % load) in the benchmark; the README's Storage section has the figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// The disk, via one `syncfs` per batch of frames (group commit). Also flushes every other
    /// process's writes on that filesystem, so their I/O delays acks.
    Batch,
    /// The disk, via `fdatasync` of each file and its folder, in the worker: no global flush.
    File,
    /// The page cache only: survives a crash of mqimg, not a power loss or a kernel crash.
    #[default]
    None,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::File => "file",
            Self::None => "none",
        }
    }
}

impl Choice for SyncMode {
    fn all() -> &'static [Self] {
        &[Self::Batch, Self::File, Self::None]
    }
}

/// `[retention]`: the janitor's bounds. Everything off by default: mqimg deletes nothing unless told.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Frames older than this are deleted; `None` (`""` in TOML) = no age limit.
    #[serde(with = "age_or_off")]
    pub max_age: Option<Duration>,
    /// Bytes of frame files under `output.dir` kept at most; `None` (0) = no limit.
    #[serde(with = "count_or_off")]
    pub max_bytes: Option<u64>,
    /// Free bytes kept on the filesystem of `output.dir`; `None` (0) = no limit.
    #[serde(with = "count_or_off")]
    pub min_free_bytes: Option<u64>,
    /// Free space kept on that filesystem, in percent of its size; 0 = no limit.
    pub min_free_percent: u8,
    /// Time between sweeps (`interval_secs`); the first runs at startup.
    #[serde(rename = "interval_secs", with = "super::types::secs")]
    pub interval: Duration,
    /// `max_age` by topic filter; the first matching filter wins over `max_age`.
    pub topics: Vec<TopicRetention>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: None,
            max_bytes: None,
            min_free_bytes: None,
            min_free_percent: 0,
            interval: Duration::from_secs(60),
            topics: Vec::new(),
        }
    }
}

/// `[[retention.topics]]`: a longer or shorter life for the frames of some topics.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRetention {
    pub filter: String,
    /// Frames on topics `filter` matches are deleted after this; `None` (`""`) = kept whatever
    /// `retention.max_age` says (the space bounds still apply).
    #[serde(with = "age_or_off")]
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Whether the janitor has anything to do.
    pub fn is_on(&self) -> bool {
        self.max_age.is_some()
            || self.max_bytes.is_some()
            || self.min_free_bytes.is_some()
            || self.min_free_percent > 0
            || self.topics.iter().any(|t| t.max_age.is_some())
    }

    /// The age limit for frames of `topic`: the first matching override, else `max_age`.
    pub fn max_age_for(&self, topic: &str) -> Option<Duration> {
        self.topics
            .iter()
            .find(|t| topic::matches(&t.filter, topic))
            .map_or(self.max_age, |t| t.max_age)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.min_free_percent > 99 {
            return Err(ConfigError::invalid(
                "retention.min_free_percent",
                format!("{} is over 99", self.min_free_percent),
            ));
        }
        if self.interval.is_zero() {
            return Err(ConfigError::invalid(
                "retention.interval_secs",
                "must be at least 1",
            ));
        }
        for (key, age) in std::iter::once(("retention.max_age".to_owned(), self.max_age)).chain(
            self.topics
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("retention.topics[{i}].max_age"), t.max_age)),
        ) {
            if age.is_some_and(|age| age.is_zero()) {
                return Err(ConfigError::invalid(
                    &key,
                    "is 0: frames would be deleted as soon as they are stored (\"\" turns the limit off)",
                ));
            }
        }
        for (i, t) in self.topics.iter().enumerate() {
            topic::validate_filter(&t.filter)
                .map_err(|p| ConfigError::invalid(&format!("retention.topics[{i}].filter"), p))?;
        }
        Ok(())
    }
}

/// An optional age as humantime text (`"7d"`, `"36h"`, `"90min"`), where `""` means no limit.
mod age_or_off {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(age) => serializer.collect_str(&humantime::format_duration(*age)),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        humantime::parse_duration(text.trim()).map(Some).map_err(|e| {
            D::Error::custom(format!(
                "{text:?} is not an age like \"7d\", \"36h\" or \"90min\" ({e}); \"\" = no limit"
            ))
        })
    }
}

/// An optional amount where 0 means no limit.
mod count_or_off {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.unwrap_or(0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        let n = u64::deserialize(deserializer)?;
        Ok((n > 0).then_some(n))
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::config::Settings;

    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_toml_str(toml, Some(env))
    }

    #[test]
    fn retention_is_off_unless_a_bound_is_set() {
        let s = load("", &[]).unwrap();
        assert!(!s.retention.is_on());
        assert_eq!(s.output.sync, SyncMode::default());
        let s = load("[retention]\nmin_free_percent = 5\n", &[]).unwrap();
        assert!(s.retention.is_on());
    }

    #[test]
    fn ages_are_humantime_from_the_file_or_the_environment() {
        let s = load("[retention]\nmax_age = \"7d\"\n", &[]).unwrap();
        assert_eq!(s.retention.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert!(
            s.to_toml().contains("max_age = \"7days\""),
            "{}",
            s.to_toml()
        );
        let s = load(
            "[retention]\nmax_age = \"7d\"\n",
            &[("MQIMG__RETENTION__MAX_AGE", "36h")],
        )
        .unwrap();
        assert_eq!(s.retention.max_age, Some(Duration::from_secs(36 * 3600)));
        let s = load(
            "[retention]\nmax_age = \"7d\"\n",
            &[("MQIMG__RETENTION__MAX_AGE", "")],
        )
        .unwrap();
        assert_eq!(s.retention.max_age, None);
        let err = load("[retention]\nmax_age = \"a week\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("retention.max_age (MQIMG__RETENTION__MAX_AGE): \"a week\" is not an age"),
            "{err}"
        );
        let err = load("[retention]\nmax_age = \"0s\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.max_age"), "{err}");
    }

    #[test]
    fn topic_overrides_win_in_order_and_come_from_the_environment_too() {
        let s = load(
            "[retention]\nmax_age = \"7d\"\ntopics = [{ filter = \"cams/door/#\", max_age = \"30d\" }, \
             { filter = \"cams/+/debug\", max_age = \"\" }]\n",
            &[
                ("MQIMG__RETENTION__TOPICS__2__FILTER", "cams/yard"),
                ("MQIMG__RETENTION__TOPICS__2__MAX_AGE", "1h"),
            ],
        )
        .unwrap();
        let r = &s.retention;
        assert_eq!(
            r.max_age_for("cams/door/jpeg"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(r.max_age_for("cams/x/debug"), None);
        assert_eq!(r.max_age_for("cams/yard"), Some(Duration::from_secs(3600)));
        assert_eq!(
            r.max_age_for("cams/other"),
            Some(Duration::from_secs(7 * 86_400))
        );
        let err = load(
            "[retention]\ntopics = [{ filter = \"a/#/b\", max_age = \"1d\" }]\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("retention.topics[0].filter (MQIMG__RETENTION__TOPICS__0__FILTER)"),
            "{err}"
        );
    }

    #[test]
    fn bounds_out_of_range_and_unknown_modes_are_named() {
        let err = load("[retention]\nmin_free_percent = 100\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.min_free_percent"), "{err}");
        let err = load("[retention]\ninterval_secs = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.interval_secs"), "{err}");
        let err = load("[output]\nsync = \"always\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "output.sync (MQIMG__OUTPUT__SYNC): \"always\" is not one of batch, file, none"
            ),
            "{err}"
        );
        let err = load("[retention]\nmax_size = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key retention.max_size"), "{err}");
    }
}

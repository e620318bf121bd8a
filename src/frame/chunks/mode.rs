//! The modes: their names, and the topics their frames are on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How one subscription's messages make frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One message, one frame.
    #[default]
    None,
    JsonParts,
    StartDataEnd,
    HeaderBlocks,
    TopicIndex,
    UntilEoi,
}

impl Mode {
    /// Every mode, `none` first.
    pub const ALL: [Mode; 6] = [
        Self::None,
        Self::JsonParts,
        Self::StartDataEnd,
        Self::HeaderBlocks,
        Self::TopicIndex,
        Self::UntilEoi,
    ];

    /// The name in config files, on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::JsonParts => "json-parts",
            Self::StartDataEnd => "start-data-end",
            Self::HeaderBlocks => "header-blocks",
            Self::TopicIndex => "topic-index",
            Self::UntilEoi => "until-eoi",
        }
    }

    /// Topic levels a part's topic has below its frame's topic: `/start` (1), `/{id}/{index}/{total}` (3).
    pub fn part_levels(self) -> usize {
        match self {
            Self::StartDataEnd => 1,
            Self::TopicIndex => 3,
            _ => 0,
        }
    }

    /// Filters matching every frame topic the parts that `filter` takes can have: what record topics are
    /// rendered from. `filter` must be valid; a `$share/GROUP/` prefix is dropped.
    pub fn frame_filters(self, filter: &str) -> Vec<String> {
        let inner = crate::frame::topic::unshared(filter);
        let k = self.part_levels();
        if k == 0 {
            return vec![inner.to_owned()];
        }
        let levels: Vec<&str> = inner.split('/').collect();
        let n = levels.len();
        if levels.last() != Some(&"#") {
            return match n.checked_sub(k) {
                Some(keep) if keep > 0 => vec![levels[..keep].join("/")],
                _ => Vec::new(),
            };
        }
        // `F/#` matches topics of `F` plus any number of levels; a part `k` levels below its frame has a
        // frame under `F/#` once it is `k` deeper than `F`, and a prefix of `F` before that.
        let fixed = &levels[..n - 1];
        let mut filters = vec![inner.to_owned()];
        let shortest = fixed.len().saturating_sub(k).max(1);
        for len in shortest..fixed.len() {
            filters.push(fixed[..len].join("/"));
        }
        filters
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that none of the modes has.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown chunks mode \"{name}\", expected one of {expected}")]
pub struct UnknownMode {
    name: String,
    expected: String,
}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| UnknownMode {
                name: name.to_owned(),
                expected: Self::ALL.map(Self::name).join(", "),
            })
    }
}

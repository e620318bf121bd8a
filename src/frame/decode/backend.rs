//! Which library turns JPEG scan data into pixels. Chosen at run time (`decode.backend`) so that one
//! build with the `turbojpeg` feature can test both; everything around the decoder (the marker walk,
//! limits, EXIF orientation, warnings, failure records) is the same for both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The JPEG decoder behind [`super::decode`]. PNG always goes through the png crate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Backend {
    /// zune-jpeg through the `image` crate: pure Rust, always built.
    #[default]
    #[serde(rename = "zune")]
    Zune,
    /// libjpeg-turbo through the `turbojpeg` crate; only in builds with the `turbojpeg` feature.
    #[serde(rename = "libjpeg-turbo")]
    Turbo,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Zune, Backend::Turbo];

    /// The name `decode.backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Zune => "zune",
            Backend::Turbo => "libjpeg-turbo",
        }
    }

    /// Whether this build holds the backend.
    pub fn is_built(self) -> bool {
        match self {
            Backend::Zune => true,
            Backend::Turbo => cfg!(feature = "turbojpeg"),
        }
    }

    /// The backends this build holds: what tests and benchmarks run against.
    pub fn built() -> impl Iterator<Item = Backend> {
        Self::ALL.into_iter().filter(|b| b.is_built())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

//! Decoding: image bytes (JPEG or PNG) → an RGB8 buffer, with limits checked from the header before any
//! pixel allocation.
//!
//! Pure and CPU-bound: callers run it off the async reactor.

use serde::Serialize;

/// Size limits checked from the image header before pixels are allocated. A limit of N allows N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    /// Rotate/flip by the EXIF orientation tag, as OpenCV's `IMREAD_COLOR` does.
    pub apply_orientation: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 40_000_000,
            apply_orientation: true,
        }
    }
}

/// The container format of the image bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
        }
    }
}

/// A decoded frame.
#[derive(Debug)]
pub struct Decoded {
    pub format: Format,
    /// EXIF orientation found (1–8; 1 when there is none).
    pub orientation: u8,
    /// The pixels, after orientation when [`Limits::apply_orientation`] is set.
    pub rgb: image::RgbImage,
    /// Problems that did not stop decoding (e.g. corrupt entropy-coded data).
    pub warnings: Vec<String>,
}

/// Why image bytes did not decode. [`DecodeError::is_limit`] tells the `limits` stage from `decode`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("TODO")]
    Todo,
}

impl DecodeError {
    /// True when the image was refused by a size limit rather than found broken or unsupported.
    pub fn is_limit(&self) -> bool {
        false
    }
}

/// Decodes `bytes` into RGB8 under `limits`.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let _ = (bytes, limits);
    Err(DecodeError::Todo)
}

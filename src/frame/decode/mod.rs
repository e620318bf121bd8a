//! Decoding: image bytes (JPEG or PNG) → an RGB8 buffer, with limits checked from the header before any
//! pixel allocation.
//!
//! Pure and CPU-bound: callers run it off the async reactor. Not responsible for payload formats
//! (base64, JSON envelopes: see `payload`) nor for what happens to the pixels afterwards.
//!
//! This module holds the API and what both formats share (the pixel conversion, warnings); `limits` the
//! size checks, `png` and `jpeg` the formats. JPEG bytes go through a marker walk first, which refuses
//! truncated and unsupported files and warns about damaged ones: see `jpeg`.

mod jpeg;
mod limits;
mod png;
#[cfg(test)]
mod tests;

use std::fmt;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError};
use serde::Serialize;

use crate::frame::hex_head;
use limits::{check_limits, image_limits};

/// Size limits checked from the image header before pixels are allocated. A limit of N allows N.
///
/// Width and height are checked against the dimensions stored in the header, before EXIF orientation:
/// a 1280x720 frame tagged "rotate 90°" passes `max_width = 1280, max_height = 720` and comes out 720x1280.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    /// Rotate/flip by the EXIF orientation tag, as OpenCV's `IMREAD_COLOR` does.
    pub apply_orientation: bool,
    /// Check the Huffman-coded data of sequential JPEGs for corruption (adds 15–20 % to a decode).
    pub verify_entropy: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 40_000_000,
            apply_orientation: true,
            verify_entropy: true,
        }
    }
}

/// The first bytes of every JPEG: the start-of-image marker and the `ff` of the next one.
pub const JPEG_MAGIC: [u8; 3] = [0xff, 0xd8, 0xff];
/// The PNG file signature.
pub const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The container format of the image bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    /// The format whose magic bytes `bytes` starts with.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&JPEG_MAGIC) {
            Some(Format::Jpeg)
        } else if bytes.starts_with(&PNG_MAGIC) {
            Some(Format::Png)
        } else {
            None
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
        })
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

/// The size limit an image broke, with its configured value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Width(u32),
    Height(u32),
    Pixels(u64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Width(max) => write!(f, "{max} (decode.max_width)"),
            Limit::Height(max) => write!(f, "{max} (decode.max_height)"),
            Limit::Pixels(max) => write!(f, "{max} pixels (decode.max_pixels)"),
        }
    }
}

/// Why image bytes did not decode. [`DecodeError::is_limit`] tells the `limits` stage from `decode`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty input: no image bytes")]
    Empty,
    /// Neither the JPEG (`ff d8 ff`) nor the PNG signature; `head` is the first bytes in hex.
    #[error("not a JPEG or PNG image: starts with {head}")]
    UnknownFormat { head: String },
    /// The header declares a size over a [`Limits`] bound; refused before any pixel allocation.
    #[error("image is {width}x{height} ({pixels} pixels), over the limit of {limit}")]
    TooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: Limit,
    },
    /// The `image` crate refused at one of the limits we set as defence in depth (dimensions, allocation).
    #[error("{format} decoder refused the image at a limit: {}", tidy(.cause))]
    CodecLimit { format: Format, cause: ImageError },
    /// The JPEG ends before its end-of-image marker.
    #[error(
        "truncated jpeg: {len} bytes end {inside}, with no end-of-image marker \
         (the last complete segment or scan ends at offset {complete})"
    )]
    Truncated {
        len: usize,
        /// Where the bytes ran out, e.g. "inside the scan data that starts at offset 623".
        inside: String,
        /// 0-based offset just past the last complete segment or scan.
        complete: usize,
    },
    /// A valid JPEG coding the decoder cannot handle (arithmetic, 12-bit, lossless, hierarchical).
    #[error("{feature} is not supported")]
    Unsupported { feature: String },
    /// A JPEG whose marker structure is broken.
    #[error("malformed jpeg at offset {offset}: {detail}")]
    Malformed { offset: usize, detail: String },
    /// The codec failed on the pixel data or headers.
    #[error("{format} decode failed: {}", tidy(.cause))]
    Codec { format: Format, cause: ImageError },
}

impl DecodeError {
    /// True when the image was refused by a size limit rather than found broken or unsupported.
    pub fn is_limit(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::CodecLimit { .. })
    }

    fn from_image(format: Format) -> impl FnOnce(ImageError) -> Self {
        move |cause| match cause {
            ImageError::Limits(_) => Self::CodecLimit { format, cause },
            cause => Self::Codec { format, cause },
        }
    }
}

/// The codec's own message for an `image` error, in our style: without the "Format error decoding Png:"
/// wrapper, a capitalised first word or a trailing period.
fn tidy(cause: &ImageError) -> String {
    let text = match cause {
        ImageError::Decoding(e) => {
            std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
        }
        e => e.to_string(),
    };
    let text = text.trim().trim_end_matches('.').replace('\n', " ");
    let text = text.as_str();
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        // "Bad Huffman code" → "bad Huffman code", but leave "DHT …" alone.
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_owned(),
    }
}

/// Decodes `bytes` into RGB8 under `limits`.
///
/// The format comes from the magic bytes. Sizes are checked against `limits` from the header before any
/// pixel buffer exists. With [`Limits::apply_orientation`] the EXIF orientation is applied (the reported
/// [`Decoded::orientation`] is the tag either way).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    match Format::sniff(bytes) {
        Some(Format::Jpeg) => jpeg::decode(bytes, limits),
        Some(Format::Png) => png::decode(bytes, limits),
        None if bytes.is_empty() => Err(DecodeError::Empty),
        None => Err(DecodeError::UnknownFormat {
            head: hex_head(bytes, HEAD_BYTES),
        }),
    }
}

/// Bytes of the input shown in [`DecodeError::UnknownFormat`].
const HEAD_BYTES: usize = 8;

/// Decodes the pixels under limits, converts them to RGB8 and orients them.
fn pixels(
    mut decoder: impl ImageDecoder,
    format: Format,
    orientation: Orientation,
    limits: &Limits,
) -> Result<image::RgbImage, DecodeError> {
    let (width, height) = decoder.dimensions();
    check_limits(width, height, limits)?;
    let mut budget = image_limits(limits);
    decoder
        .set_limits(budget.clone())
        .map_err(DecodeError::from_image(format))?;
    // `DynamicImage::from_decoder` does not check `max_alloc` itself (`ImageReader::decode` does this).
    budget
        .reserve(decoder.total_bytes())
        .map_err(DecodeError::from_image(format))?;
    let image = DynamicImage::from_decoder(decoder).map_err(DecodeError::from_image(format))?;
    // Free for RGB8 (most JPEGs); one converting copy for gray, RGBA and 16-bit images.
    let rgb = image.into_rgb8();
    if !limits.apply_orientation || orientation == Orientation::NoTransforms {
        return Ok(rgb);
    }
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// At most this many warnings per frame; the rest are counted in a final entry.
const MAX_WARNINGS: usize = 8;

/// A frame's warnings, capped so that a badly damaged frame cannot bloat its record.
#[derive(Default)]
struct Warnings {
    list: Vec<String>,
    suppressed: usize,
}

impl Warnings {
    fn push(&mut self, warning: impl FnOnce() -> String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(warning());
        } else {
            self.suppressed += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.suppressed > 0 {
            self.list
                .push(format!("{} more warnings not shown", self.suppressed));
        }
        self.list
    }
}

//! Decoding: image bytes (JPEG or PNG) → an RGB8 buffer, with limits checked from the header before any
//! pixel allocation.
//!
//! Pure and CPU-bound: callers run it off the async reactor. Not responsible for payload formats
//! (base64, JSON envelopes: see `payload`) nor for what happens to the pixels afterwards.
//!
//! Two steps: [`inspect`] reads the header (sizes checked against the limits, the decode's memory
//! estimated) without allocating pixels, then [`Inspected::decode`]; in between the caller may take the
//! estimate from a [`MemoryBudget`] shared with other decodes ([`Inspected::reserve`]).
//!
//! This module holds the API and what both formats share (orientation, warnings); `limits` the size
//! checks, `memory` the estimates, `png` and `jpeg` the formats. JPEG bytes go through a marker walk
//! first, which refuses truncated and unsupported files and warns about damaged ones: see `jpeg`.

mod backend;
#[cfg(test)]
mod conformance;
mod jpeg;
mod limits;
mod memory;
mod png;
#[cfg(test)]
mod tests;

use std::fmt;

use image::metadata::Orientation;
use image::{DynamicImage, ImageError};
use serde::Serialize;

use crate::frame::budget::{MemoryBudget, OverBudget, Permit};
use crate::frame::hex_head;
pub use backend::Backend;

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
    /// Check the Huffman-coded data of sequential JPEGs for corruption (15–20 % more CPU than the
    /// decode, on a second thread beside it: no longer per frame when a core is free).
    pub verify_entropy: bool,
    /// The JPEG decoder.
    pub backend: Backend,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 40_000_000,
            apply_orientation: true,
            verify_entropy: true,
            backend: Backend::Zune,
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
    /// Decoding would need more memory than the whole budget shared by all decodes.
    #[error("image is {width}x{height}: decoding it {cause} (decode.max_memory_bytes)")]
    OverBudget {
        width: u32,
        height: u32,
        cause: OverBudget,
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
    /// A structure mqimg checks itself before the codec reads it.
    #[error("{format} decode failed: {cause}")]
    Corrupt { format: Format, cause: String },
}

impl DecodeError {
    /// True when the image was refused by a size limit rather than found broken or unsupported.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::OverBudget { .. } | Self::CodecLimit { .. }
        )
    }

    fn from_image(format: Format) -> impl Fn(ImageError) -> Self + Copy {
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
    in_our_style(&text)
}

/// A codec's message in our style: one line, no quotes, no trailing period, and a capitalised first
/// word in lower case ("Bad Huffman code" → "bad Huffman code", but "DHT …" stays).
fn in_our_style(text: &str) -> String {
    let text = text
        .trim()
        .trim_matches('"')
        .trim_end_matches('.')
        .replace('\n', " ");
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text,
    }
}

/// Decodes `bytes` into RGB8 under `limits`: [`inspect`], then [`Inspected::decode`].
///
/// The format comes from the magic bytes. Sizes are checked against `limits` from the header before any
/// pixel buffer exists. With [`Limits::apply_orientation`] the EXIF orientation is applied (the reported
/// [`Decoded::orientation`] is the tag either way).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    inspect(bytes, limits)?.decode()
}

/// Reads the header of `bytes` and checks its size against `limits`, allocating no pixels. JPEGs are
/// walked to their end-of-image marker here (truncation, unsupported codings, damage warnings).
pub fn inspect<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Inspected<'a>, DecodeError> {
    let source = match Format::sniff(bytes) {
        Some(Format::Jpeg) => Source::Jpeg(jpeg::inspect(bytes, limits)?),
        Some(Format::Png) => Source::Png(Box::new(png::inspect(bytes, limits)?)),
        None if bytes.is_empty() => return Err(DecodeError::Empty),
        None => {
            return Err(DecodeError::UnknownFormat {
                head: hex_head(bytes, HEAD_BYTES),
            });
        }
    };
    Ok(Inspected {
        source,
        limits: *limits,
    })
}

/// Bytes of the input shown in [`DecodeError::UnknownFormat`].
const HEAD_BYTES: usize = 8;

/// An image whose header passed the limits, not decoded yet: its size and what decoding it will cost.
pub struct Inspected<'a> {
    source: Source<'a>,
    limits: Limits,
}

enum Source<'a> {
    Jpeg(jpeg::Jpeg<'a>),
    // The png reader carries its row buffers and inflate state inline.
    Png(Box<png::Png<'a>>),
}

impl Inspected<'_> {
    pub fn format(&self) -> Format {
        match self.source {
            Source::Jpeg(_) => Format::Jpeg,
            Source::Png(_) => Format::Png,
        }
    }

    /// Width and height as stored, before orientation.
    pub fn dimensions(&self) -> (u32, u32) {
        match &self.source {
            Source::Jpeg(jpeg) => jpeg.size(),
            Source::Png(png) => png.size(),
        }
    }

    fn orientation(&self) -> Orientation {
        match &self.source {
            Source::Jpeg(jpeg) => jpeg.orientation,
            Source::Png(png) => png.orientation,
        }
    }

    /// The estimated peak memory of [`Inspected::decode`]: the RGB8 output, the decoder's intermediates
    /// and, for orientations that swap width and height, the rotated copy. See `memory`.
    pub fn memory_bytes(&self) -> u64 {
        let decoder = match &self.source {
            Source::Jpeg(jpeg) => jpeg.memory_bytes(),
            Source::Png(png) => png.memory_bytes(),
        };
        let (width, height) = self.dimensions();
        decoder + memory::orientation(width, height, self.transposes())
    }

    /// Whether decoding ends with a rotation that swaps width and height (EXIF orientations 5–8).
    fn transposes(&self) -> bool {
        self.limits.apply_orientation
            && matches!(
                self.orientation(),
                Orientation::Rotate90
                    | Orientation::Rotate270
                    | Orientation::Rotate90FlipH
                    | Orientation::Rotate270FlipH
            )
    }

    /// Takes [`Inspected::memory_bytes`] from `budget`, waiting for other decodes to give enough back;
    /// more than the whole budget is refused at once ([`DecodeError::OverBudget`], a limit).
    pub fn reserve(&self, budget: &MemoryBudget) -> Result<Permit, DecodeError> {
        budget.acquire(self.memory_bytes()).map_err(|cause| {
            let (width, height) = self.dimensions();
            DecodeError::OverBudget {
                width,
                height,
                cause,
            }
        })
    }

    /// Decodes into RGB8 and applies the EXIF orientation when [`Limits::apply_orientation`] is set.
    pub fn decode(self) -> Result<Decoded, DecodeError> {
        let format = self.format();
        let orientation = self.orientation();
        let (rgb, warnings) = match self.source {
            Source::Jpeg(jpeg) => jpeg.pixels(&self.limits)?,
            Source::Png(png) => (png.pixels()?, Vec::new()),
        };
        let rgb = if self.limits.apply_orientation {
            orient(rgb, orientation)
        } else {
            rgb
        };
        Ok(Decoded {
            format,
            orientation: orientation.to_exif(),
            rgb,
            warnings,
        })
    }
}

/// Rotates and flips `rgb` by `orientation`: in place, except the rotations that swap width and height,
/// which write a new buffer (counted in [`Inspected::memory_bytes`]).
fn orient(rgb: image::RgbImage, orientation: Orientation) -> image::RgbImage {
    if orientation == Orientation::NoTransforms {
        return rgb;
    }
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    image.into_rgb8()
}

thread_local! {
    /// The pixel buffer of this thread's last frame, given back by [`recycle`].
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Spare buffers above this size are freed rather than kept: a worker holds at most this much
/// outside `decode.max_memory_bytes` (a 1920x1080 RGB8 frame is 6.2 MB).
const MAX_SPARE_BYTES: usize = 8 << 20;

/// A buffer of `len` bytes, every one of which the caller is about to overwrite: the thread's spare
/// one when it is big enough (no allocation, no page faults, no zeroing), else a new one.
fn pixel_buffer(len: usize) -> Vec<u8> {
    let mut spare = SPARE.take();
    if spare.capacity() >= len {
        // Old pixels stay in the part that is already initialised; only growth is zeroed.
        spare.resize(len, 0);
        spare
    } else {
        vec![0; len]
    }
}

/// Gives a frame's pixels back for the next decode on this thread (see [`pixel_buffer`]); call it
/// once the pixels are no longer needed. Buffers over 8 MiB are freed instead.
pub fn recycle(rgb: image::RgbImage) {
    let buf = rgb.into_raw();
    if buf.capacity() <= MAX_SPARE_BYTES {
        SPARE.set(buf);
    }
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

//! JPEG: the bytes are first walked marker by marker ([`markers::walk_with`], ~50 µs for a 1080p
//! frame), then decoded by zune-jpeg (the `image` crate's JPEG decoder, called directly). The walk
//! finds the frame header (size, coding, precision) so limits and unsupported codings are refused
//! before the decoder sees the bytes, and it insists on the end-of-image marker, because zune-jpeg
//! decodes a truncated JPEG "successfully" into a half-grey frame.
//!
//! What is detected in damaged JPEGs:
//! - refused: missing end-of-image marker (truncation anywhere, scan data included), segments running past
//!   the end, impossible segment lengths, a scan before the frame header, a second frame header; scan
//!   headers libjpeg refuses and the valid codings zune-jpeg 0.5.15 garbles (vertically subsampled,
//!   one-MCU-wide or partially interleaved scans, more than two sequential scans, [`scans`]; a short
//!   last restart interval in a scan of some of the components, `markers`); horizontal sampling
//!   factor 3, which zune-jpeg cannot decode;
//! - decoded with a [`Decoded::warnings`] entry: restart markers out of sequence or fewer/more than the
//!   restart interval implies, markers that may not appear inside scan data, garbage between segments;
//!   and in baseline and extended sequential (Huffman) scans and progressive DC first scans, corrupt
//!   entropy-coded data ([`entropy`]: every Huffman symbol of every block is decoded, without
//!   dequantisation or IDCT; 15–20 % more CPU than the decode alone, on a thread of its own beside
//!   the decoder so a frame takes no longer when a core is free; `decode.verify_entropy` turns it
//!   off): a code not in its table, a DC category over 11, AC coefficients past index 63, data
//!   ending (at a marker, e.g. a corrupt `ff d9`) before the last MCU, more than a byte left over
//!   after the last MCU of a scan or restart interval. One warning per frame,
//!   naming the MCU (and its row) and the byte offset where decoding went wrong
//!   (`fixtures/bad/corrupt-entropy.jpg`: MCU 437 of 1200, row 11 of 30); scan parameters libjpeg
//!   warns about ([`scans`]); an Adobe (APP14) segment too short for its colour transform (ignored,
//!   as libjpeg does, where zune-jpeg refuses the file); chroma halved horizontally in images 2 to
//!   4 pixels wide, which libjpeg replicates and zune-jpeg interpolates (colours differ).
//!
//! Not detected: damage that still decodes to valid symbols in the right number (a changed coefficient
//! value; bytes whose codes fall back in step with as many blocks as before); about a third of single
//! corrupt bytes are flagged, most multi-byte damage is. Of progressive JPEGs only the DC first scans
//! are checked (stray bytes after them included), not the AC and refinement scans. Such frames
//! decode into garbled pixels without a warning: the decoder (zune-jpeg, strict or not) notices nothing.
//!
//! With `decode.backend = "libjpeg-turbo"` (`turbo.rs`, cargo feature `turbojpeg`) libjpeg decodes after
//! the same walk and check, and its own warnings add damage in progressive AC scans (`detection.rs`).

#[cfg(test)]
mod detection;
mod entropy;
mod markers;
mod scans;
#[cfg(test)]
mod tests;
#[cfg(feature = "turbojpeg")]
mod turbo;

use image::error::{LimitError, LimitErrorKind};
use image::metadata::Orientation;
use image::{ColorType, ImageError};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;

use super::{Backend, DecodeError, Format, Limits, in_our_style, memory, pixel_buffer};
pub(super) use markers::Frame;

/// A JPEG the marker walk accepted, not decoded yet.
pub(super) struct Jpeg<'a> {
    bytes: &'a [u8],
    header: markers::Header<'a>,
    pub orientation: Orientation,
    backend: Backend,
}

/// Walks the markers (refusing sizes over `limits`, truncation and unsupported codings) and finds the
/// EXIF orientation. The entropy-coded data is checked later, beside the decode ([`Jpeg::pixels`]).
pub(super) fn inspect<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Jpeg<'a>, DecodeError> {
    let header = markers::walk_with(bytes, limits, false)?;
    // The same parse `ImageDecoder::orientation` does, on the APP1 segment the walk already found,
    // instead of having the decoder parse the headers once more.
    let orientation = header
        .exif
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    Ok(Jpeg {
        bytes,
        header,
        orientation,
        backend: limits.backend,
    })
}

impl Jpeg<'_> {
    pub fn size(&self) -> (u32, u32) {
        (
            u32::from(self.header.frame.width),
            u32::from(self.header.frame.height),
        )
    }

    /// The decode's peak memory, before orientation: see [`memory::jpeg`] and [`memory::turbojpeg`].
    pub fn memory_bytes(&self) -> u64 {
        // The copy with segments renamed (`Header::for_decoder`) lives beside the decode.
        let copies = if self.header.ignored.is_empty() { 1 } else { 2 };
        if self.backend == Backend::Turbo {
            return memory::turbojpeg(
                &self.header.frame,
                self.header.first_scan_components,
                self.bytes.len() * copies,
            );
        }
        memory::jpeg(
            &self.header.frame,
            self.header.first_scan_components,
            self.bytes.len() * copies,
        )
    }

    /// Decodes into RGB8 (not oriented yet), with the walk's warnings.
    ///
    /// With [`Limits::verify_entropy`] the entropy check (a second walk, through every Huffman code)
    /// runs on a thread of its own while the decoder runs: it adds no time to a frame when a core is
    /// free (one decode worker, or fewer frames than cores), and the same CPU as before when none is.
    /// Not zune-jpeg's strict mode instead: it stops on few of the faults the check finds (3.6 % of
    /// the corruption corpus against 44.6 %, `examples/corruption.rs`). The decoder is the one
    /// [`Limits::backend`] names; libjpeg-turbo's own warning joins the check's unless the check
    /// found the same damage.
    pub fn pixels(self, limits: &Limits) -> Result<(image::RgbImage, Vec<String>), DecodeError> {
        let frame = &self.header.frame;
        let checked = limits.verify_entropy && (frame.huffman_sequential || frame.progressive);
        let (width, height) = self.size();
        let bytes = self.header.for_decoder(self.bytes);
        let decode = || decode_with(limits, &bytes, frame, width, height);
        if !checked {
            let (rgb, own) = decode()?;
            return Ok((rgb, with_own_warning(self.header.warnings, own)));
        }
        let check = || markers::walk_with(self.bytes, limits, true).map(|h| h.warnings);
        let (rgb, warnings) = if u64::from(width) * u64::from(height) < CHECK_BESIDE_PIXELS {
            (decode(), check())
        } else {
            std::thread::scope(|s| {
                let checking = std::thread::Builder::new()
                    .name("mqimg-entropy".to_owned())
                    .spawn_scoped(s, check);
                let rgb = decode();
                let warnings = match checking {
                    Ok(thread) => thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    // No thread to be had (a process limit): check here, after the decode.
                    Err(_) => check(),
                };
                (rgb, warnings)
            })
        };
        let (rgb, own) = rgb?;
        // The checking walk refuses nothing the first one accepted; its warnings include the first's.
        let warnings = warnings.unwrap_or(self.header.warnings);
        Ok((rgb, with_own_warning(warnings, own)))
    }
}

/// The pixels from the decoder [`Limits::backend`] names, with the decoder's own warning (libjpeg's
/// message; zune-jpeg gives none).
fn decode_with(
    limits: &Limits,
    bytes: &[u8],
    frame: &Frame,
    width: u32,
    height: u32,
) -> Result<(image::RgbImage, Option<String>), DecodeError> {
    match limits.backend {
        Backend::Zune => Ok((decode_zune(bytes, limits, width, height)?, None)),
        #[cfg(feature = "turbojpeg")]
        Backend::Turbo => turbo::decode(bytes, frame),
        #[cfg(not(feature = "turbojpeg"))]
        Backend::Turbo => {
            let _ = frame;
            Err(DecodeError::Unsupported {
                feature: "decoding with libjpeg-turbo in a build without the `turbojpeg` feature"
                    .to_owned(),
            })
        }
    }
}

/// `warnings` with the decoder's own (`own`) added, unless they already tell of it.
#[cfg(feature = "turbojpeg")]
fn with_own_warning(mut warnings: Vec<String>, own: Option<String>) -> Vec<String> {
    if let Some(message) = own {
        turbo::add_warning(&message, &mut warnings);
    }
    warnings
}

/// zune-jpeg has no warnings of its own.
#[cfg(not(feature = "turbojpeg"))]
fn with_own_warning(warnings: Vec<String>, _own: Option<String>) -> Vec<String> {
    warnings
}

/// Below this many pixels the entropy check runs after the decode, on the same thread: starting a
/// thread (~20 µs) would cost more than the check (~0.1 ms at 256x256) saves.
const CHECK_BESIDE_PIXELS: u64 = 256 * 256;

/// Decodes with zune-jpeg (called directly rather than through the `image` crate's wrapper, which
/// copies the input and parses the headers twice) into a reused buffer ([`pixel_buffer`]).
fn decode_zune(
    bytes: &[u8],
    limits: &Limits,
    width: u32,
    height: u32,
) -> Result<image::RgbImage, DecodeError> {
    let pixels = usize::try_from(u64::from(width) * u64::from(height)).map_err(|_| {
        DecodeError::Unsupported {
            feature: format!("a {width}x{height} image on this platform"),
        }
    })?;
    let rgb_len = pixels * 3;
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(limits.max_width as usize)
        .set_max_height(limits.max_height as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(codec_error)?;
    let input = decoder
        .input_colorspace()
        .ok_or_else(|| corrupt("no colour space after the headers"))?;
    // zune-jpeg converts CMYK and YCCK to RGB itself; grey and grey-alpha are decoded into the start
    // of the RGB buffer and widened in place: no second full-size buffer.
    let (out, color) = match input {
        ColorSpace::Luma => (ColorSpace::Luma, ColorType::L8),
        ColorSpace::LumaA => (ColorSpace::LumaA, ColorType::La8),
        ColorSpace::RGBA => (ColorSpace::RGBA, ColorType::Rgba8),
        _ => (ColorSpace::RGB, ColorType::Rgb8),
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(out));
    let total = decoder
        .output_buffer_size()
        .ok_or_else(|| corrupt("no output size after the headers"))?;
    let mut buf = pixel_buffer(total.max(rgb_len));
    decoder
        .decode_into(&mut buf[..total])
        .map_err(codec_error)?;
    widen_to_rgb8(&mut buf, color, pixels)?;
    buf.truncate(rgb_len);
    image::RgbImage::from_raw(width, height, buf).ok_or_else(|| DecodeError::Unsupported {
        feature: format!("jpeg output of {rgb_len} bytes for {width}x{height}"),
    })
}

fn corrupt(cause: &str) -> DecodeError {
    DecodeError::Corrupt {
        format: Format::Jpeg,
        cause: cause.to_owned(),
    }
}

/// zune-jpeg's error as a [`DecodeError`], as the `image` crate's wrapper would have made it.
fn codec_error(error: DecodeErrors) -> DecodeError {
    match error {
        DecodeErrors::Unsupported(scheme) => DecodeError::Unsupported {
            feature: format!("{scheme:?}"),
        },
        DecodeErrors::LargeDimensions(_) => DecodeError::CodecLimit {
            format: Format::Jpeg,
            cause: ImageError::Limits(LimitError::from_kind(LimitErrorKind::DimensionError)),
        },
        other => corrupt(&zune_message(&other)),
    }
}

/// zune-jpeg's message for `error` ([`in_our_style`]).
fn zune_message(error: &DecodeErrors) -> String {
    in_our_style(&format!("{error:?}"))
}

/// Turns `pixels` pixels of `color` at the start of `buf` into RGB8 in place, as
/// `DynamicImage::into_rgb8` would (grey replicated, alpha dropped). `buf` holds at least
/// `pixels * 3` bytes.
fn widen_to_rgb8(buf: &mut [u8], color: ColorType, pixels: usize) -> Result<(), DecodeError> {
    match color {
        ColorType::Rgb8 => {}
        // Backwards: pixel i's source (i, or 2i) lies at or before its target 3i, and every pixel
        // after it is already moved.
        ColorType::L8 => {
            for i in (0..pixels).rev() {
                let v = buf[i];
                buf[3 * i..3 * i + 3].fill(v);
            }
        }
        ColorType::La8 => {
            for i in (0..pixels).rev() {
                let v = buf[2 * i];
                buf[3 * i..3 * i + 3].fill(v);
            }
        }
        // Forwards: pixel i's target 3i lies at or before its source 4i.
        ColorType::Rgba8 => {
            for i in 0..pixels {
                buf.copy_within(4 * i..4 * i + 3, 3 * i);
            }
        }
        other => {
            return Err(DecodeError::Unsupported {
                feature: format!("jpeg decoded as {other:?}"),
            });
        }
    }
    Ok(())
}

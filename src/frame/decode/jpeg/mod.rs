//! JPEG: the bytes are first walked marker by marker ([`markers::walk`], ~50 µs for a 1080p frame), then
//! decoded by the `image` crate. The walk finds the frame header (size, coding, precision) so limits and
//! unsupported codings are refused before the `image` crate sees the bytes, and it insists on the
//! end-of-image marker, because the `image` crate decodes a truncated JPEG "successfully" into a
//! half-grey frame.
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
//!   dequantisation or IDCT; it adds 15–20 % to a decode; `decode.verify_entropy` turns it off): a code not in its table, a DC category over 11, AC
//!   coefficients past index 63, data ending (at a marker, e.g. a corrupt `ff d9`) before the last MCU,
//!   more than a byte left over after the last MCU of a scan or restart interval. One warning per frame,
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

mod entropy;
mod markers;
mod scans;
#[cfg(test)]
mod tests;

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::metadata::Orientation;
use image::{ColorType, ImageDecoder as _};

use super::limits::{check_limits, image_limits};
use super::{DecodeError, Format, Limits, memory};
pub(super) use markers::Frame;

/// A JPEG the marker walk accepted, not decoded yet.
pub(super) struct Jpeg<'a> {
    bytes: &'a [u8],
    header: markers::Header<'a>,
    pub orientation: Orientation,
}

/// Walks the markers (refusing sizes over `limits`, truncation and unsupported codings) and finds the
/// EXIF orientation.
pub(super) fn inspect<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Jpeg<'a>, DecodeError> {
    let header = markers::walk(bytes, limits)?;
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
    })
}

impl Jpeg<'_> {
    pub fn size(&self) -> (u32, u32) {
        (
            u32::from(self.header.frame.width),
            u32::from(self.header.frame.height),
        )
    }

    /// The decode's peak memory, before orientation: see [`memory::jpeg`].
    pub fn memory_bytes(&self) -> u64 {
        // A copy with segments renamed (`Header::for_decoder`) is a second input beside the decoder's.
        let copies = if self.header.ignored.is_empty() { 1 } else { 2 };
        memory::jpeg(
            &self.header.frame,
            self.header.first_scan_components,
            self.bytes.len() * copies,
        )
    }

    /// Decodes into RGB8 (not oriented yet); the walk's warnings come along.
    pub fn pixels(self, limits: &Limits) -> Result<(image::RgbImage, Vec<String>), DecodeError> {
        let err = DecodeError::from_image(Format::Jpeg);
        let bytes = self.header.for_decoder(self.bytes);
        let mut decoder = JpegDecoder::new(Cursor::new(&*bytes)).map_err(err)?;
        let (width, height) = decoder.dimensions();
        check_limits(width, height, limits)?;
        let mut budget = image_limits(limits);
        decoder.set_limits(budget.clone()).map_err(err)?;
        let total = decoder.total_bytes();
        budget.reserve(total).map_err(err)?;
        let color = decoder.color_type();
        let pixels = usize::try_from(u64::from(width) * u64::from(height)).map_err(|_| {
            DecodeError::Unsupported {
                feature: format!("a {width}x{height} image on this platform"),
            }
        })?;
        let rgb_len = pixels * 3;
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        // Grey and grey-alpha pixels are decoded into the RGB buffer itself and widened in place: no
        // second full-size buffer.
        let mut buf = vec![0u8; total.max(rgb_len)];
        decoder.read_image(&mut buf[..total]).map_err(err)?;
        widen_to_rgb8(&mut buf, color, pixels)?;
        buf.truncate(rgb_len);
        buf.shrink_to_fit();
        let rgb = image::RgbImage::from_raw(width, height, buf).ok_or_else(|| {
            DecodeError::Unsupported {
                feature: format!("jpeg output of {rgb_len} bytes for {width}x{height}"),
            }
        })?;
        Ok((rgb, self.header.warnings))
    }
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

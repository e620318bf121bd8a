//! JPEG: the bytes are first walked marker by marker ([`markers::walk`], ~50 µs for a 1080p frame), then
//! decoded by the `image` crate. The walk finds the frame header (size, coding, precision) so limits and
//! unsupported codings are refused before the `image` crate sees the bytes, and it insists on the
//! end-of-image marker, because the `image` crate decodes a truncated JPEG "successfully" into a
//! half-grey frame.
//!
//! What is detected in damaged JPEGs:
//! - refused: missing end-of-image marker (truncation anywhere, scan data included), segments running past
//!   the end, impossible segment lengths, a scan before the frame header, a second frame header;
//! - decoded with a [`Decoded::warnings`] entry: restart markers out of sequence or fewer/more than the
//!   restart interval implies, markers that may not appear inside scan data, garbage between segments;
//!   and in baseline and extended sequential (Huffman) scans, corrupt entropy-coded data ([`entropy`]:
//!   every Huffman symbol of every block is decoded, without dequantisation or IDCT; it adds 15–20 % to
//!   a decode; `decode.verify_entropy` turns it off): a code not in its table, a DC category over 11, AC
//!   coefficients past index 63, data ending (at a marker, e.g. a corrupt `ff d9`) before the last MCU,
//!   more than a byte left over after the last MCU of a scan or restart interval. One warning per frame,
//!   naming the MCU (and its row) and the byte offset where decoding went wrong
//!   (`fixtures/bad/corrupt-entropy.jpg`: MCU 437 of 1200, row 11 of 30).
//!
//! Not detected: damage that still decodes to valid symbols in the right number (a changed coefficient
//! value; bytes whose codes fall back in step with as many blocks as before); about a third of single
//! corrupt bytes are flagged, most multi-byte damage is. Progressive JPEGs are not checked. Such frames
//! decode into garbled pixels without a warning: the decoder (zune-jpeg, strict or not) notices nothing.

mod entropy;
mod markers;
#[cfg(test)]
mod tests;

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::metadata::Orientation;

use super::{DecodeError, Decoded, Format, Limits, pixels};

/// Decodes a JPEG once the walk has accepted it; the walk's warnings become the frame's.
pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let header = markers::walk(bytes, limits)?;
    // The same parse `ImageDecoder::orientation` does, on the APP1 segment the walk already found,
    // instead of having the decoder parse the headers once more.
    let orientation = header
        .exif
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let decoder =
        JpegDecoder::new(Cursor::new(bytes)).map_err(DecodeError::from_image(Format::Jpeg))?;
    let rgb = pixels(decoder, Format::Jpeg, orientation, limits)?;
    Ok(Decoded {
        format: Format::Jpeg,
        orientation: orientation.to_exif(),
        rgb,
        warnings: header.warnings,
    })
}

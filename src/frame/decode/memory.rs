//! What a decode will cost in memory, estimated from the header before anything is allocated: the
//! bytes a frame takes from the decode budget ([`crate::frame::budget`]).
//!
//! Each estimate is the RGB8 output plus what the decoder keeps beside it, counted from the decoders'
//! sources (png 0.18; zune-jpeg 0.5 through image 0.25) and checked against the peak RSS of
//! `mqimg decode` on 40-megapixel frames, less the process's own: a PNG of any layout needs its output
//! and a few rows; a baseline JPEG (4:2:0, 4:4:4, CMYK, grey) its output, its input copied once and a
//! few MCU rows; a progressive one also all its coefficients (measured +3 bytes a pixel at 4:2:0, +6 at
//! 4:4:4, +8 for CMYK). The measured peaks stay 2–5 MiB under the estimates; two layouts are
//! over-estimated, not investigated further: progressive grey (80 MiB under) and a sequential 4:2:0
//! JPEG with one scan per component (`jpegtran -scans`: +1 byte a pixel measured, 3 estimated). `tests/it/memory.rs` holds the real binary's peak on a PNG bomb to its
//! RGB8 buffer plus a constant, and the daemon's to the budget plus a constant.

use super::jpeg::Frame;

/// Allocations that do not grow with the image (the decoder structs, Huffman and zlib tables, inflate
/// windows), with a margin.
pub(super) const FIXED: u64 = 2 << 20;

/// Bytes of the RGB8 output of a `width` x `height` image.
pub(super) fn rgb(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height) * 3
}

/// A PNG decoded row by row into the RGB8 output. `line_bytes` is one row as the png crate hands it
/// over (up to 8 bytes a pixel): its row buffer, the unfiltering buffer (the row being filtered, the
/// one above, the unread rest of the inflated stream) and our converted row.
pub(super) fn png(width: u32, height: u32, line_bytes: u64) -> u64 {
    rgb(width, height) + 6 * line_bytes + FIXED
}

/// A JPEG decoded by zune-jpeg straight into the RGB8 output (grey and two-component images into the
/// same buffer, widened in place).
///
/// Beside the output zune-jpeg keeps, for progressive JPEGs and sequential ones whose first scan lacks
/// a component, every component's coefficients (`i16`, padded to whole MCUs) until the last scan;
/// otherwise a few rows of MCUs per component. It reads the input in place: `input_bytes`, counted
/// when the `image` crate's wrapper copied the input, stays in the estimate only as a margin (the
/// measured peaks above were taken with it). The spare pixel buffer each worker keeps between frames
/// (`decode::recycle`, up to 8 MiB) is outside every estimate.
pub(super) fn jpeg(frame: &Frame, first_scan_components: usize, input_bytes: usize) -> u64 {
    let (width, height) = (u64::from(frame.width), u64::from(frame.height));
    let single = frame.components.len() == 1;
    let sampling = |c: &(u8, u8, u8)| {
        if single {
            // zune-jpeg resets a lone component's sampling factors to 1x1.
            (1, 1)
        } else {
            (u64::from(c.1), u64::from(c.2))
        }
    };
    let h_max = frame
        .components
        .iter()
        .map(|c| sampling(c).0)
        .max()
        .unwrap_or(1);
    let v_max = frame
        .components
        .iter()
        .map(|c| sampling(c).1)
        .max()
        .unwrap_or(1);
    let mcus_x = width.div_ceil(8 * h_max);
    let mcus_y = height.div_ceil(8 * v_max);
    let whole_image = frame.progressive || first_scan_components < frame.components.len();
    let per_component = |c: &(u8, u8, u8)| {
        let (h, v) = sampling(c);
        let (columns, rows) = (mcus_x * h * 8, mcus_y * v * 8);
        if whole_image {
            // All coefficients, as i16.
            columns * rows * 2
        } else {
            // One MCU row of coefficients, the rows around it and the upsampled rows, all i16.
            columns * v_max * 8 * 2 * 4
        }
    };
    let intermediates: u64 = frame.components.iter().map(per_component).sum();
    rgb(u32::from(frame.width), u32::from(frame.height))
        + intermediates
        + input_bytes as u64
        + FIXED
}

/// A JPEG decoded by libjpeg-turbo (the `turbojpeg` backend) into the output.
///
/// libjpeg, like zune-jpeg, reads the input in place and keeps either every coefficient (`i16`, padded
/// to whole MCUs: progressive and multi-scan sequential JPEGs) or a few rows of samples (bytes, fewer
/// than [`jpeg`] counts as `i16`), and its output comes from the same reused buffers; so: [`jpeg`],
/// `input_bytes` included as the same margin. A 4-component (CMYK) frame comes out as CMYK, 4 bytes a
/// pixel, and is narrowed to RGB8 in place: one byte a pixel more.
/// Checked like the others against `mqimg decode`'s peak RSS less the process's own (issue 14): the 4K
/// baseline, the progressive 720p and the CMYK 1024x768 fixtures peak 1.3–2.1 MiB under their estimates.
pub(super) fn turbojpeg(frame: &Frame, first_scan_components: usize, input_bytes: usize) -> u64 {
    let cmyk = if frame.components.len() == 4 {
        u64::from(frame.width) * u64::from(frame.height)
    } else {
        0
    };
    jpeg(frame, first_scan_components, input_bytes) + cmyk
}

/// Orientations 5 to 8 swap width and height: the rotation writes a second RGB8 buffer.
pub(super) fn orientation(width: u32, height: u32, transposes: bool) -> u64 {
    if transposes { rgb(width, height) } else { 0 }
}

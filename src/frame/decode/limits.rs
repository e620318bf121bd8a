//! Size limits: the header checks that refuse an image before any pixel allocation, and the `image`
//! crate's own limits set behind them as defence in depth.

use super::{DecodeError, Limit, Limits};

/// Checks header dimensions against `limits`.
pub(super) fn check_limits(width: u32, height: u32, limits: &Limits) -> Result<(), DecodeError> {
    let pixels = u64::from(width) * u64::from(height);
    let limit = if width > limits.max_width {
        Limit::Width(limits.max_width)
    } else if height > limits.max_height {
        Limit::Height(limits.max_height)
    } else if pixels > limits.max_pixels {
        Limit::Pixels(limits.max_pixels)
    } else {
        return Ok(());
    };
    Err(DecodeError::TooLarge {
        width,
        height,
        pixels,
        limit,
    })
}

/// Bytes per pixel of the widest layout a decoder hands back (RGBA, 16 bits per channel).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// Headroom in the allocation limit for the decoders' own row and table buffers.
const ALLOC_SLACK: u64 = 64 << 20;

/// The `image` crate's limits, set as defence in depth behind our own header checks.
pub(super) fn image_limits(limits: &Limits) -> image::Limits {
    let mut out = image::Limits::default();
    out.max_image_width = Some(limits.max_width);
    out.max_image_height = Some(limits.max_height);
    out.max_alloc = Some(
        limits
            .max_pixels
            .saturating_mul(MAX_BYTES_PER_PIXEL)
            .saturating_add(ALLOC_SLACK),
    );
    out
}

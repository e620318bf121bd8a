//! Image decoding under limits (`frame::decode::decode`): JPEG (marker walk, entropy check, zune-jpeg
//! through `image`) and PNG (`png` through `image`).
//!
//! Checks, beyond "no panic, no hang, no allocation over 256 MB": a decoded image is within the limits
//! (width and height as stored, i.e. swapped back for a 90° EXIF orientation), its buffer is exactly
//! width x height x 3 bytes, the orientation is 1-8, warnings are capped (8 plus a "more" line) and
//! one line each; error messages are one line, and a size refusal names a size over the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqimg::frame::decode::{DecodeError, decode};
use mqimg_fuzz::{LIMITS, one_line};

fuzz_target!(|bytes: &[u8]| {
    match decode(bytes, &LIMITS) {
        Ok(decoded) => {
            let (mut width, mut height) = decoded.rgb.dimensions();
            assert!(
                (1..=8).contains(&decoded.orientation),
                "orientation {}",
                decoded.orientation
            );
            if LIMITS.apply_orientation && decoded.orientation >= 5 {
                std::mem::swap(&mut width, &mut height);
            }
            assert!(
                width <= LIMITS.max_width && height <= LIMITS.max_height,
                "{width}x{height}"
            );
            assert!(u64::from(width) * u64::from(height) <= LIMITS.max_pixels);
            assert_eq!(
                decoded.rgb.as_raw().len(),
                width as usize * height as usize * 3
            );
            assert!(
                decoded.warnings.len() <= 9,
                "{} warnings",
                decoded.warnings.len()
            );
            for warning in &decoded.warnings {
                assert!(one_line(warning), "multi-line warning {warning:?}");
            }
        }
        Err(err) => {
            let message = err.to_string();
            assert!(one_line(&message), "multi-line message {message:?}");
            if let DecodeError::TooLarge {
                width,
                height,
                pixels,
                ..
            } = err
            {
                assert_eq!(pixels, u64::from(width) * u64::from(height));
                assert!(
                    width > LIMITS.max_width
                        || height > LIMITS.max_height
                        || pixels > LIMITS.max_pixels,
                    "refused {width}x{height} within the limits"
                );
            }
        }
    }
});

//! The libjpeg-turbo backend (`decode.backend = "libjpeg-turbo"`, cargo feature `turbojpeg`): the
//! pixels of a JPEG the marker walk accepted, through the `turbojpeg` crate (TurboJPEG 3 API, built
//! from the crate's bundled source).
//!
//! The walk has already refused what it refuses for zune-jpeg (limits, truncation, codings), so
//! libjpeg only sees JPEGs whose size, coding and structure passed the same checks, and the output
//! buffer is sized from the walk's frame header. libjpeg's fatal errors, raised by `longjmp` inside C,
//! end in TurboJPEG's own `setjmp` and come back as `Err`: nothing unwinds through Rust. Where the two
//! decoders still part (libjpeg fails on a reserved `ff c8` marker inside scan data, which zune-jpeg
//! decodes with a warning) the frame fails at stage `decode`.
//!
//! libjpeg's warnings (corrupt data, extraneous bytes) do not stop the decode: TurboJPEG finishes the
//! image and then returns -1 with the first warning's text, which the crate turns into an `Err` like a
//! fatal error's. They are told apart here by libjpeg's message table (`jerror.h`, `JWRN_*`), which
//! is fixed for the bundled version: the pixels are complete after a warning and unusable after an
//! error. A fatal error after a warning leaves the fatal one's text, so it is never taken for a
//! warning.

use std::cell::RefCell;

use image::error::{DecodingError, ImageFormatHint};
use image::{ImageError, ImageFormat};
use turbojpeg::{Decompressor, Image, PixelFormat};

use super::markers::Frame;
use crate::frame::decode::{DecodeError, Format, pixel_buffer};

thread_local! {
    /// One decompressor per decode worker, set up once rather than per frame: TurboJPEG resets it
    /// at the start of each decode, after an error too.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Decodes into RGB8 (not oriented yet), into a reused buffer ([`pixel_buffer`]); with libjpeg's
/// warning, if it gave one, for [`add_warning`].
pub(super) fn decode(
    bytes: &[u8],
    frame: &Frame,
) -> Result<(image::RgbImage, Option<String>), DecodeError> {
    let (width, height) = (usize::from(frame.width), usize::from(frame.height));
    // libjpeg converts grey and YCbCr (or RGB) JPEGs to RGB itself, but four-component ones only to
    // CMYK: those are narrowed below, as zune-jpeg does it.
    let cmyk = frame.components.len() == 4;
    let (format, channels) = if cmyk {
        (PixelFormat::CMYK, 4)
    } else {
        (PixelFormat::RGB, 3)
    };
    let mut buf = pixel_buffer(width * height * channels);
    let image = Image {
        pixels: buf.as_mut_slice(),
        width,
        pitch: width * channels,
        height,
        format,
    };
    let outcome = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(Decompressor::new().map_err(fatal)?),
        };
        Ok(decompressor.decompress(bytes, image))
    })?;
    let own = match outcome {
        Ok(()) => None,
        Err(turbojpeg::Error::TurboJpegError(message)) if is_warning(&message) => Some(message),
        Err(turbojpeg::Error::TurboJpegError(message)) => return Err(fatal(message)),
        Err(other) => return Err(fatal(other)),
    };
    if cmyk {
        cmyk_to_rgb(&mut buf, width * height);
    }
    let rgb = image::RgbImage::from_raw(u32::from(frame.width), u32::from(frame.height), buf)
        .ok_or_else(|| DecodeError::Unsupported {
            feature: format!("jpeg output for {width}x{height}"),
        })?;
    Ok((rgb, own))
}

/// Adds libjpeg's warning `message` to `warnings` in our words, unless they already tell of it.
pub(super) fn add_warning(message: &str, warnings: &mut Vec<String>) {
    if let Verdict::New(text) = warning(message, warnings) {
        warnings.push(text);
    }
}

/// Whether `message`, which TurboJPEG returned with -1, is a warning (the pixels are complete).
fn is_warning(message: &str) -> bool {
    warning(message, &[]) != Verdict::Fatal
}

/// A libjpeg failure as the same [`DecodeError::Codec`] a zune-jpeg failure is (the `decode` stage).
fn fatal(cause: impl ToString) -> DecodeError {
    let cause = cause.to_string();
    let mut chars = cause.chars();
    // "Bogus marker length" → "bogus marker length", as `tidy` words zune-jpeg's.
    let text: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => cause,
    };
    DecodeError::Codec {
        format: Format::Jpeg,
        cause: ImageError::Decoding(DecodingError::new(
            ImageFormatHint::Exact(ImageFormat::Jpeg),
            format!("libjpeg-turbo: {text}"),
        )),
    }
}

/// What a message TurboJPEG returned with -1 means.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// An error: no image.
    Fatal,
    /// A warning about what the walk (or the entropy check) already reported.
    Known,
    /// A warning to add, worded as ours.
    New(String),
}

/// Where libjpeg's warning comes from: it names neither offset nor MCU.
const SOURCE: &str = "libjpeg-turbo, which does not say where";

/// Classifies `message` (libjpeg's text) against the warnings the walk made (`walk`).
fn warning(message: &str, walk: &[String]) -> Verdict {
    let walk_said = |needle: &str| walk.iter().any(|w| w.contains(needle));
    let corrupt = |what: String, below: &str| {
        if walk_said("corrupt entropy-coded data") {
            // mqimg's own check found the same damage, and says where.
            Verdict::Known
        } else {
            Verdict::New(format!(
                "corrupt entropy-coded data: {what} ({SOURCE}); {below}"
            ))
        }
    };
    const GARBLED_BELOW: &str = "rows below it are likely garbled";
    if let Some(rest) = message.strip_prefix("Corrupt JPEG data: ") {
        if rest == "bad Huffman code" {
            return corrupt("invalid huffman code".to_owned(), GARBLED_BELOW);
        }
        if rest == "premature end of data segment" {
            return corrupt("premature end of data".to_owned(), GARBLED_BELOW);
        }
        // "%u extraneous bytes before marker 0x%02x"
        if let Some((count, marker)) = rest
            .split_once(" extraneous bytes before marker 0x")
            .and_then(|(n, m)| Some((n.parse::<usize>().ok()?, m)))
        {
            // The walk words garbage between segments "N extraneous bytes at offset P before
            // marker ffXX": libjpeg sees the same bytes.
            if walk.iter().any(|w| {
                w.starts_with(&format!("{count} extraneous bytes at offset "))
                    && w.ends_with(&format!("before marker ff{marker}"))
            }) {
                return Verdict::Known;
            }
            return corrupt(
                format!("{count} extraneous bytes before marker ff{marker}"),
                "blocks before it may be garbled",
            );
        }
        // "found marker 0x%02x instead of RST%d"
        if let Some((marker, rst)) = rest
            .strip_prefix("found marker 0x")
            .and_then(|r| r.split_once(" instead of RST"))
        {
            if walk_said("restart marker") {
                return Verdict::Known;
            }
            return corrupt(
                format!("marker ff{marker} where restart marker {rst} was expected"),
                GARBLED_BELOW,
            );
        }
        return Verdict::New(format!("corrupt jpeg data: {rest} ({SOURCE})"));
    }
    // The scan-header warnings `scans` words itself.
    if message == "Invalid SOS parameters for sequential JPEG" {
        return if walk_said("as a sequential jpeg must") {
            Verdict::Known
        } else {
            Verdict::New(format!(
                "invalid scan parameters for a sequential jpeg ({SOURCE})"
            ))
        };
    }
    if message.starts_with("Inconsistent progression sequence") {
        return if walk_said("out of progression sequence") {
            Verdict::Known
        } else {
            Verdict::New(format!("{} ({SOURCE})", lower_first(message)))
        };
    }
    // The other `JWRN_*` texts of jerror.h 3.1.
    const OTHERS: [&str; 4] = [
        "Premature end of JPEG file",
        "Warning: unknown JFIF revision number",
        "Unknown Adobe color transform code",
        "Application transferred too many scanlines",
    ];
    if OTHERS.iter().any(|p| message.starts_with(p)) {
        let text = message.strip_prefix("Warning: ").unwrap_or(message);
        return Verdict::New(format!("libjpeg-turbo: {}", lower_first(text)));
    }
    Verdict::Fatal
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Narrows `pixels` CMYK pixels at the start of `buf` to RGB8 in place, as zune-jpeg converts them:
/// libjpeg hands over the stored (Adobe-inverted) values, YCCK already turned to such CMYK, and each
/// channel is `c * k / 255`.
fn cmyk_to_rgb(buf: &mut Vec<u8>, pixels: usize) {
    // Forwards: pixel i's target 3i lies at or before its source 4i.
    for i in 0..pixels {
        let k = buf[4 * i + 3];
        for c in 0..3 {
            buf[3 * i + c] = blinn(buf[4 * i + c], k);
        }
    }
    // The capacity stays: the buffer goes back to the thread's spare (`recycle`).
    buf.truncate(pixels * 3);
}

/// `a * b / 255`, rounded, as zune-jpeg computes it (Jim Blinn's exact 8-bit product).
fn blinn(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    // At most 255 * 255 + 128 → 255.
    u8::try_from((t + (t >> 8)) >> 8).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::frame::decode::tests::{fixture, marker_offset, with};
    use crate::frame::decode::{Backend, Limits, decode, inspect};

    /// Every JPEG fixture the zune tests decode.
    const FIXTURES: [&str; 14] = [
        "seed/seed-frame.jpg",
        "frames/photo-640x480.jpg",
        "frames/photo-1280x720.jpg",
        "frames/photo-1920x1080.jpg",
        "frames/photo-3840x2160.jpg",
        "variants/camera-original-reconyx-2048x1536.jpg",
        "variants/cmyk-adobe-1024x768.jpg",
        "variants/exif-orientation6-1280x720.jpg",
        "variants/gray-1280x720.jpg",
        "variants/huffman-227x149.jpg",
        "variants/progressive-1280x720.jpg",
        "variants/restart-1280x720.jpg",
        "variants/subsampling422-1280x720.jpg",
        "variants/subsampling444-1280x720.jpg",
    ];

    #[test]
    fn every_fixture_decodes_close_to_zune_jpeg() {
        for path in FIXTURES {
            let bytes = fixture(path);
            let zune = decode(&bytes, &with(Backend::Zune)).unwrap();
            let turbo = decode(&bytes, &with(Backend::Turbo)).unwrap();
            assert_eq!(turbo.orientation, zune.orientation, "{path}");
            assert_eq!(turbo.warnings, zune.warnings, "{path}");
            assert_eq!(turbo.rgb.dimensions(), zune.rgb.dimensions(), "{path}");
            let diffs: Vec<u8> = turbo
                .rgb
                .as_raw()
                .iter()
                .zip(zune.rgb.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
            let max = diffs.iter().copied().max().unwrap();
            // The IDCT and upsampling rounding of the two differ; measured: mean 0.005–0.281,
            // max 1–5 (CMYK and grey 0.01 / 1, as both convert them the same way). The bound is
            // the one the seed frame keeps against libjpeg-turbo's djpeg, a little widened.
            assert!(mean < 0.3 && max <= 6, "{path}: mean {mean:.3}, max {max}");
        }
    }

    #[test]
    fn the_seed_frame_is_exactly_libjpeg_turbos() {
        let reference = image::load_from_memory(&fixture("seed/seed-frame.decoded-rgb.png"))
            .unwrap()
            .into_rgb8();
        let ours = decode(&fixture("seed/seed-frame.jpg"), &with(Backend::Turbo)).unwrap();
        assert!(ours.rgb == reference);
    }

    #[test]
    fn refusals_are_the_walks_whatever_the_backend() {
        let seed = fixture("seed/seed-frame.jpg");
        let mut inputs = vec![
            fixture("bad/bomb-16384x16384.jpg"),
            fixture("bad/truncated-half.jpg"),
            fixture("variants/arithmetic-227x149.jpg"),
            fixture("variants/precision12-149x227.jpg"),
            seed[..seed.len() - 1].to_vec(),
        ];
        let mut short = seed.clone();
        short[4..6].copy_from_slice(&[0, 1]);
        inputs.push(short);
        for bytes in inputs {
            let zune = decode(&bytes, &with(Backend::Zune)).unwrap_err();
            let turbo = decode(&bytes, &with(Backend::Turbo)).unwrap_err();
            assert_eq!(turbo.to_string(), zune.to_string());
            assert_eq!(turbo.is_limit(), zune.is_limit());
        }
    }

    /// libjpeg's `longjmp` on a fatal error ends inside TurboJPEG: the decode fails like zune-jpeg's
    /// (stage `decode`), the thread goes on and its decompressor decodes the next frame.
    #[test]
    fn a_libjpeg_error_is_a_codec_failure_and_the_next_frame_decodes() {
        let seed = fixture("seed/seed-frame.jpg");
        // The quantisation tables become a comment: the walk has no reason to refuse that.
        let mut no_tables = seed.clone();
        no_tables[marker_offset(&seed, 0xdb) + 1] = 0xfe;
        let e = decode(&no_tables, &with(Backend::Turbo)).unwrap_err();
        assert!(matches!(e, DecodeError::Codec { .. }), "{e:?}");
        assert!(!e.is_limit());
        assert_eq!(
            e.to_string(),
            "jpeg decode failed: libjpeg-turbo: quantization table 0x00 was not defined"
        );
        assert!(decode(&no_tables, &with(Backend::Zune)).is_err());
        let decoded = decode(&seed, &with(Backend::Turbo)).unwrap();
        assert_eq!(decoded.rgb.dimensions(), (100, 100));
    }

    #[test]
    fn estimates_are_zunes_plus_the_cmyk_output() {
        for path in FIXTURES {
            let bytes = fixture(path);
            let zune = inspect(&bytes, &with(Backend::Zune)).unwrap();
            let turbo = inspect(&bytes, &with(Backend::Turbo)).unwrap();
            let (width, height) = zune.dimensions();
            let cmyk = if path.contains("cmyk") {
                u64::from(width) * u64::from(height)
            } else {
                0
            };
            assert_eq!(turbo.memory_bytes(), zune.memory_bytes() + cmyk, "{path}");
        }
        // Orientation is counted alike.
        let rotated = fixture("variants/exif-orientation6-1280x720.jpg");
        let upright = Limits {
            apply_orientation: false,
            ..with(Backend::Turbo)
        };
        let turbo = inspect(&rotated, &with(Backend::Turbo)).unwrap();
        let unrotated = inspect(&rotated, &upright).unwrap();
        assert_eq!(
            turbo.memory_bytes() - unrotated.memory_bytes(),
            1280 * 720 * 3
        );
    }

    #[test]
    fn warnings_are_told_from_errors_by_libjpegs_message_table() {
        for fatal in [
            "Bogus marker length",
            "Unsupported marker type 0x05",
            "Huffman table 0x01 was not defined",
            "tj3Decompress8(): Invalid argument",
        ] {
            assert_eq!(warning(fatal, &[]), Verdict::Fatal, "{fatal}");
        }
        assert_eq!(
            warning("Corrupt JPEG data: bad Huffman code", &[]),
            Verdict::New(
                "corrupt entropy-coded data: invalid huffman code (libjpeg-turbo, which does not \
                 say where); rows below it are likely garbled"
                    .to_owned()
            )
        );
        assert_eq!(
            warning("Corrupt JPEG data: 3 extraneous bytes before marker 0xd9", &[]),
            Verdict::New(
                "corrupt entropy-coded data: 3 extraneous bytes before marker ffd9 (libjpeg-turbo, \
                 which does not say where); blocks before it may be garbled"
                    .to_owned()
            )
        );
        assert_eq!(
            warning("Premature end of JPEG file", &[]),
            Verdict::New("libjpeg-turbo: premature end of JPEG file".to_owned())
        );
    }

    #[test]
    fn warnings_the_walk_already_gave_are_not_repeated() {
        let walk = |w: &str| vec![w.to_owned()];
        for (message, said) in [
            (
                "Corrupt JPEG data: 4 extraneous bytes before marker 0xdb",
                "4 extraneous bytes at offset 20 before marker ffdb",
            ),
            (
                "Corrupt JPEG data: premature end of data segment",
                "corrupt entropy-coded data: premature end of data in MCU 3 of 9 (row 1 of 3)",
            ),
            (
                "Corrupt JPEG data: found marker 0xd9 instead of RST3",
                "restart markers out of sequence at offset 900",
            ),
        ] {
            assert_eq!(warning(message, &walk(said)), Verdict::Known, "{message}");
        }
        // Other garbage than the walk's is still reported.
        assert!(matches!(
            warning(
                "Corrupt JPEG data: 5 extraneous bytes before marker 0xdb",
                &walk("4 extraneous bytes at offset 20 before marker ffdb")
            ),
            Verdict::New(_)
        ));
    }

    #[test]
    fn cmyk_narrows_in_place_as_zune_does() {
        let mut buf = vec![255, 0, 128, 255, 255, 255, 255, 0, 10, 20, 30, 128];
        cmyk_to_rgb(&mut buf, 3);
        assert_eq!(buf, [255, 0, 128, 0, 0, 0, 5, 10, 15]);
    }
}

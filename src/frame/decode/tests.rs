//! Tests through [`decode`]: formats, limits, orientation, colour, errors. The JPEG walk and the PNG
//! specifics are tested next to their code, with the helpers here.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;
use crate::frame::decode::limits::image_limits;
use image::{ImageDecoder as _, Rgb};

pub(super) fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

pub(super) fn ok(bytes: &[u8]) -> Decoded {
    decode(bytes, &Limits::default()).unwrap()
}

pub(super) fn err(bytes: &[u8]) -> DecodeError {
    decode(bytes, &Limits::default()).unwrap_err()
}

/// The default limits, decoding JPEGs with `backend`.
pub(super) fn with(backend: Backend) -> Limits {
    Limits {
        backend,
        ..Limits::default()
    }
}

/// `bytes` decoded by each JPEG backend of this build (zune-jpeg, and libjpeg-turbo with the
/// `turbojpeg` feature): the pixel and warning tests hold for both, with the same tolerances.
pub(super) fn ok_each(bytes: &[u8]) -> impl Iterator<Item = (Backend, Decoded)> {
    Backend::built().map(|backend| (backend, decode(bytes, &with(backend)).unwrap()))
}

pub(super) fn limits(max_width: u32, max_height: u32, max_pixels: u64) -> Limits {
    Limits {
        max_width,
        max_height,
        max_pixels,
        ..Limits::default()
    }
}

/// Offset of the first `ff <marker>` pair in `bytes`.
pub(super) fn marker_offset(bytes: &[u8], marker: u8) -> usize {
    bytes.windows(2).position(|w| w == [0xff, marker]).unwrap()
}

/// Offset of the first entropy-coded byte of the first scan.
pub(super) fn scan_start(bytes: &[u8]) -> usize {
    let sos = marker_offset(bytes, 0xda);
    sos + 2 + usize::from(u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]))
}

#[test]
fn every_valid_fixture_decodes_to_its_size_without_warnings() {
    for (path, format, width, height) in [
        ("frames/photo-640x480.jpg", Format::Jpeg, 640, 480),
        ("frames/photo-640x480.png", Format::Png, 640, 480),
        ("frames/photo-1280x720.jpg", Format::Jpeg, 1280, 720),
        ("frames/photo-1920x1080.jpg", Format::Jpeg, 1920, 1080),
        ("frames/photo-3840x2160.jpg", Format::Jpeg, 3840, 2160),
        (
            "variants/camera-original-reconyx-2048x1536.jpg",
            Format::Jpeg,
            2048,
            1536,
        ),
        ("variants/cmyk-adobe-1024x768.jpg", Format::Jpeg, 1024, 768),
        (
            "variants/exif-orientation6-1280x720.jpg",
            Format::Jpeg,
            720,
            1280,
        ),
        ("variants/gray-1280x720.jpg", Format::Jpeg, 1280, 720),
        ("variants/huffman-227x149.jpg", Format::Jpeg, 227, 149),
        ("variants/progressive-1280x720.jpg", Format::Jpeg, 1280, 720),
        ("variants/restart-1280x720.jpg", Format::Jpeg, 1280, 720),
        (
            "variants/subsampling422-1280x720.jpg",
            Format::Jpeg,
            1280,
            720,
        ),
        (
            "variants/subsampling444-1280x720.jpg",
            Format::Jpeg,
            1280,
            720,
        ),
        ("seed/seed-frame.jpg", Format::Jpeg, 100, 100),
        ("seed/seed-frame.decoded-rgb.png", Format::Png, 100, 100),
    ] {
        for (backend, decoded) in ok_each(&fixture(path)) {
            assert_eq!(decoded.format, format, "{path} ({backend})");
            assert_eq!(
                decoded.rgb.dimensions(),
                (width, height),
                "{path} ({backend})"
            );
            assert!(
                decoded.warnings.is_empty(),
                "{path} ({backend}): {:?}",
                decoded.warnings
            );
        }
    }
}

#[test]
fn bombs_are_refused_from_the_frame_header() {
    for (path, side) in [
        ("bad/bomb-16384x16384.jpg", 16384u32),
        ("bad/bomb-65000x65000.jpg", 65000),
    ] {
        let e = err(&fixture(path));
        assert!(e.is_limit(), "{path}");
        // `TooLarge` is only made by our own header checks; the image crate's refusals are `CodecLimit`.
        assert!(
            matches!(e, DecodeError::TooLarge { width, height, limit: Limit::Width(8192), .. }
                if width == side && height == side),
            "{path}: {e:?}"
        );
        let pixels = u64::from(side) * u64::from(side);
        assert_eq!(
            e.to_string(),
            format!(
                "image is {side}x{side} ({pixels} pixels), over the limit of 8192 (decode.max_width)"
            )
        );
    }
}

#[test]
fn bombs_are_refused_before_the_scan_data_is_read() {
    // Cut right after the frame header: a walk that went on would report truncation, and no decoder
    // (let alone a pixel buffer) is ever created.
    let bomb = fixture("bad/bomb-65000x65000.jpg");
    let sof = marker_offset(&bomb, 0xc0);
    let sof_end = sof + 2 + usize::from(u16::from_be_bytes([bomb[sof + 2], bomb[sof + 3]]));
    let e = err(&bomb[..sof_end]);
    assert!(matches!(e, DecodeError::TooLarge { .. }), "{e:?}");
}

#[test]
fn pixel_limit_applies_to_width_times_height() {
    let bomb = fixture("bad/bomb-16384x16384.jpg");
    let e = decode(&bomb, &limits(65535, 65535, 40_000_000)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "image is 16384x16384 (268435456 pixels), over the limit of 40000000 pixels (decode.max_pixels)"
    );
    assert!(e.is_limit());
}

#[test]
fn limits_allow_exactly_the_limit_and_refuse_one_less() {
    let bytes = fixture("variants/huffman-227x149.jpg");
    let pixels = 227 * 149;
    assert!(decode(&bytes, &limits(227, 149, pixels)).is_ok());
    for (limits, expected) in [
        (limits(226, 149, pixels), Limit::Width(226)),
        (limits(227, 148, pixels), Limit::Height(148)),
        (limits(227, 149, pixels - 1), Limit::Pixels(pixels - 1)),
    ] {
        let e = decode(&bytes, &limits).unwrap_err();
        assert!(
            matches!(e, DecodeError::TooLarge { width: 227, height: 149, limit, .. } if limit == expected),
            "{e:?}"
        );
    }
}

#[test]
fn image_crate_limits_back_up_our_own() {
    let l = image_limits(&limits(100, 200, 1000));
    assert_eq!(l.max_image_width, Some(100));
    assert_eq!(l.max_image_height, Some(200));
    assert_eq!(l.max_alloc, Some(1000 * 8 + (64 << 20)));
    let e = DecodeError::from_image(Format::Png)(ImageError::Limits(
        image::error::LimitError::from_kind(image::error::LimitErrorKind::InsufficientMemory),
    ));
    assert!(e.is_limit());
    assert!(
        e.to_string()
            .starts_with("png decoder refused the image at a limit: "),
        "{e}"
    );
}

#[test]
fn exif_orientation_6_is_applied_by_default() {
    let bytes = fixture("variants/exif-orientation6-1280x720.jpg");
    for (backend, rotated) in ok_each(&bytes) {
        assert_eq!(rotated.orientation, 6);
        assert_eq!(rotated.rgb.dimensions(), (720, 1280));
        let stored = decode(
            &bytes,
            &Limits {
                apply_orientation: false,
                ..with(backend)
            },
        )
        .unwrap();
        assert_eq!(stored.orientation, 6);
        assert_eq!(stored.rgb.dimensions(), (1280, 720));
        // Rotated 90° clockwise: the stored bottom-left corner is now the top-left one.
        for (x, y) in [(0, 0), (5, 100), (719, 1279), (300, 17)] {
            assert_eq!(
                rotated.rgb.get_pixel(x, y),
                stored.rgb.get_pixel(y, 719 - x),
                "({x}, {y}) {backend}"
            );
        }
    }
}

#[test]
fn orientation_limits_use_the_stored_dimensions() {
    let bytes = fixture("variants/exif-orientation6-1280x720.jpg");
    for backend in Backend::built() {
        let limits = Limits {
            backend,
            ..limits(1280, 720, 1280 * 720)
        };
        let decoded = decode(&bytes, &limits).unwrap();
        assert_eq!(decoded.rgb.dimensions(), (720, 1280), "{backend}");
    }
}

#[test]
fn frames_without_exif_report_orientation_1() {
    assert_eq!(ok(&fixture("frames/photo-640x480.jpg")).orientation, 1);
    assert_eq!(ok(&fixture("frames/photo-640x480.png")).orientation, 1);
}

/// Mean and max absolute per-channel difference between two equally sized RGB images.
fn difference(a: &image::RgbImage, b: &image::RgbImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions());
    let diffs = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| x.abs_diff(y))
        .collect::<Vec<_>>();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    (mean, diffs.into_iter().max().unwrap())
}

#[test]
fn seed_frame_matches_the_libjpeg_turbo_reference() {
    let reference = image::load_from_memory(&fixture("seed/seed-frame.decoded-rgb.png"))
        .unwrap()
        .into_rgb8();
    for (backend, ours) in ok_each(&fixture("seed/seed-frame.jpg")) {
        let (mean, max) = difference(&ours.rgb, &reference);
        // Measured with image 0.25.9 / zune-jpeg 0.5.15: mean 0.149, max 3 (IDCT and chroma
        // upsampling rounding differ from libjpeg-turbo's); the libjpeg-turbo backend: 0, 0.
        assert!(
            mean < 0.25 && max <= 4,
            "{backend}: mean {mean:.3}, max {max}"
        );
    }
}

#[test]
fn grayscale_comes_out_as_equal_rgb_channels() {
    for (backend, decoded) in ok_each(&fixture("variants/gray-1280x720.jpg")) {
        assert!(
            decoded.rgb.pixels().all(|Rgb([r, g, b])| r == g && g == b),
            "{backend}"
        );
    }
}

/// Mean of each channel over a rectangle.
fn region_mean(rgb: &image::RgbImage, x: u32, y: u32, w: u32, h: u32) -> [f64; 3] {
    let mut sum = [0.0; 3];
    for py in y..y + h {
        for px in x..x + w {
            for (s, &v) in sum.iter_mut().zip(&rgb.get_pixel(px, py).0) {
                *s += f64::from(v);
            }
        }
    }
    sum.map(|s| s / f64::from(w * h))
}

#[test]
fn adobe_cmyk_decodes_to_plausible_rgb() {
    for (backend, decoded) in ok_each(&fixture("variants/cmyk-adobe-1024x768.jpg")) {
        let rgb = decoded.rgb;
        // A daylight savanna photo: a pale blue sky patch between the trees and a grey elephant
        // flank. Not inverted (the sky would be dark and orange), not black.
        // Measured: sky (241, 247, 253), flank (123, 88, 102).
        let [r, g, b] = region_mean(&rgb, 600, 180, 60, 60);
        assert!(
            r > 200.0 && b > 200.0 && b > r,
            "{backend}: sky ({r:.0}, {g:.0}, {b:.0})"
        );
        let flank = region_mean(&rgb, 480, 400, 40, 40);
        assert!(
            flank.iter().all(|v| (50.0..160.0).contains(v)),
            "{backend}: flank {flank:?}"
        );
    }
}

#[test]
fn bad_inputs_are_rejected_with_the_right_kind() {
    assert!(matches!(err(&fixture("bad/empty.jpg")), DecodeError::Empty));
    assert_eq!(err(&[]).to_string(), "empty input: no image bytes");

    let random = fixture("bad/random-65536.bin");
    let e = err(&random);
    let head = random[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        e.to_string(),
        format!("not a JPEG or PNG image: starts with {head}")
    );

    for text in ["bad/bad-padding.b64", "bad/invalid-chars.b64"] {
        assert!(
            matches!(err(&fixture(text)), DecodeError::UnknownFormat { .. }),
            "{text}"
        );
    }

    let truncated = fixture("bad/truncated-half.jpg");
    let start = scan_start(&truncated);
    for backend in Backend::built() {
        let e = decode(&truncated, &with(backend)).unwrap_err();
        assert!(!e.is_limit());
        assert_eq!(
            e.to_string(),
            format!(
                "truncated jpeg: 53114 bytes end inside the scan data that starts at offset \
                 {start}, with no end-of-image marker (the last complete segment or scan ends at \
                 offset {start})"
            ),
            "{backend}"
        );
    }
}

#[test]
fn unknown_formats_are_named_by_their_first_bytes() {
    assert_eq!(
        err(b"<html><body>").to_string(),
        "not a JPEG or PNG image: starts with 3c 68 74 6d 6c 3e 3c 62"
    );
    assert_eq!(
        err(&[0xff, 0xd8]).to_string(),
        "not a JPEG or PNG image: starts with ff d8"
    );
}

#[test]
fn warnings_are_capped() {
    let mut warnings = Warnings::default();
    for i in 0..20 {
        warnings.push(|| format!("w{i}"));
    }
    let list = warnings.finish();
    assert_eq!(list.len(), MAX_WARNINGS + 1);
    assert_eq!(list[MAX_WARNINGS], "12 more warnings not shown");
}

/// zune-jpeg's pixels exactly; libjpeg-turbo's are compared with zune's in `jpeg::turbo`.
#[test]
fn every_jpeg_fixture_decodes_as_the_image_crate_converts_it() {
    // Grey comes out of zune-jpeg into the RGB buffer and is widened in place; the rest is RGB already.
    for path in [
        "frames/photo-640x480.jpg",
        "variants/gray-1280x720.jpg",
        "variants/cmyk-adobe-1024x768.jpg",
        "variants/progressive-1280x720.jpg",
        "variants/subsampling444-1280x720.jpg",
        "variants/exif-orientation6-1280x720.jpg",
    ] {
        let bytes = fixture(path);
        let mut expected = image::load_from_memory(&bytes).unwrap();
        let orientation = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap()
            .orientation()
            .unwrap();
        expected.apply_orientation(orientation);
        assert_eq!(ok(&bytes).rgb, expected.into_rgb8(), "{path}");
    }
}

#[test]
fn jpeg_estimates_count_coefficients_only_when_the_decoder_keeps_them() {
    let estimate = |path: &str| {
        let bytes = fixture(path);
        let inspected = inspect(&bytes, &Limits::default()).unwrap();
        let (width, height) = inspected.dimensions();
        let known = u64::from(width) * u64::from(height) * 3 + bytes.len() as u64 + memory::FIXED;
        (inspected.memory_bytes() - known) as f64 / f64::from(width * height)
    };
    // Bytes a pixel beyond the RGB8 output, the input copy and the fixed part, for the same 1280x720
    // frame: a baseline JPEG needs a few rows, 4:2:0 or 4:4:4 alike; a progressive 4:2:0 one all its
    // coefficients instead: 1 + 2 x 1/4 samples a pixel, 2 bytes each.
    let baseline = estimate("frames/photo-1280x720.jpg");
    let full = estimate("variants/subsampling444-1280x720.jpg");
    let progressive = estimate("variants/progressive-1280x720.jpg");
    assert!(baseline < 0.5 && full < 0.5, "{baseline} {full}");
    assert!((progressive - 3.0).abs() < 0.01, "{progressive}");
}

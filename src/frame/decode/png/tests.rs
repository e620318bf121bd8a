//! PNG decoding: limits from IHDR, every layout against the image crate's own conversion (the behaviour
//! before row-by-row decoding), Adam7, errors, and the memory estimate.
#![expect(clippy::unwrap_used, reason = "tests")]

use image::ImageEncoder as _;
use image::codecs::png::PngEncoder;

use crate::frame::budget::MemoryBudget;
use crate::frame::decode::tests::{err, fixture, limits, ok};
use crate::frame::decode::{DecodeError, Format, Limit, Limits, PNG_MAGIC, decode, inspect};

#[test]
fn png_limits_are_checked_from_ihdr() {
    let bytes = fixture("frames/photo-640x480.png");
    assert!(decode(&bytes, &limits(640, 480, 640 * 480)).is_ok());
    let e = decode(&bytes, &limits(639, 480, 640 * 480)).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::TooLarge {
                limit: Limit::Width(639),
                ..
            }
        ),
        "{e:?}"
    );
    // A patched IHDR (its CRC no longer matches) is refused by our check before the PNG decoder runs.
    let mut bomb = bytes.clone();
    bomb[16..24].copy_from_slice(&[0, 0, 0xfd, 0xe8, 0, 0, 0xfd, 0xe8]);
    let e = err(&bomb);
    assert_eq!(
        e.to_string(),
        "image is 65000x65000 (4225000000 pixels), over the limit of 8192 (decode.max_width)"
    );
}

fn png(width: u32, height: u32, color: image::ExtendedColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(data, width, height, color)
        .unwrap();
    out
}

#[test]
fn png_rgba8_drops_alpha() {
    let bytes = png(
        2,
        1,
        image::ExtendedColorType::Rgba8,
        &[10, 20, 30, 0, 40, 50, 60, 255],
    );
    let decoded = ok(&bytes);
    assert_eq!(decoded.format, Format::Png);
    assert_eq!(decoded.rgb.as_raw(), &[10, 20, 30, 40, 50, 60]);
}

#[test]
fn png_16_bit_scales_to_8_bit() {
    let samples: [u16; 6] = [0xffff, 0x8080, 0x0000, 0x0101, 0x7f7f, 0xfefe];
    let data = samples
        .iter()
        .flat_map(|s| s.to_ne_bytes())
        .collect::<Vec<_>>();
    let decoded = ok(&png(2, 1, image::ExtendedColorType::Rgb16, &data));
    assert_eq!(decoded.rgb.as_raw(), &[255, 128, 0, 1, 127, 254]);
}

#[test]
fn png_gray_becomes_equal_channels() {
    let decoded = ok(&png(3, 1, image::ExtendedColorType::L8, &[0, 128, 255]));
    assert_eq!(
        decoded.rgb.as_raw(),
        &[0, 0, 0, 128, 128, 128, 255, 255, 255]
    );
    let data = [0xffffu16, 0x8080]
        .iter()
        .flat_map(|s| s.to_ne_bytes())
        .collect::<Vec<_>>();
    let decoded = ok(&png(2, 1, image::ExtendedColorType::L16, &data));
    assert_eq!(decoded.rgb.as_raw(), &[255, 255, 255, 128, 128, 128]);
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// zlib around `raw` with stored (uncompressed) blocks, as a PNG's IDAT holds it.
fn zlib_stored(raw: &[u8]) -> Vec<u8> {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks = raw.chunks(65535).collect::<Vec<_>>();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    if raw.is_empty() {
        zlib.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    zlib.extend_from_slice(&(b << 16 | a).to_be_bytes());
    zlib
}

/// A PNG built by hand (the image crate's encoder writes no palettes, low bit depths or Adam7):
/// IHDR fields, extra chunks before IDAT, and the filtered rows (`raw`, filter bytes included).
fn raw_png(
    (width, height): (u32, u32),
    depth: u8,
    color_type: u8,
    interlaced: bool,
    chunks: &[(&[u8; 4], &[u8])],
    raw: &[u8],
) -> Vec<u8> {
    let mut out = PNG_MAGIC.to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color_type, 0, 0, u8::from(interlaced)]);
    chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in chunks {
        chunk(&mut out, kind, data);
    }
    chunk(&mut out, b"IDAT", &zlib_stored(raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A one-row palette PNG.
fn palette_png(width: u32, palette: &[[u8; 3]], indices: &[u8]) -> Vec<u8> {
    let mut raw = vec![0]; // filter type none, one row
    raw.extend_from_slice(indices);
    let plte: &[u8] = palette.as_flattened();
    raw_png((width, 1), 8, 3, false, &[(b"PLTE", plte)], &raw)
}

/// The Adam7 passes: first column, first row, column step, row step.
const ADAM7: [(u32, u32, u32, u32); 7] = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
];

/// The filtered data of an Adam7-interlaced image of whole-byte pixels (`pixel_bytes` each) taken
/// from `data` (rows of `width` pixels).
fn adam7_raw(width: u32, height: u32, pixel_bytes: usize, data: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in ADAM7 {
        if x0 >= width || y0 >= height {
            continue;
        }
        for y in (y0..height).step_by(dy as usize) {
            raw.push(0);
            for x in (x0..width).step_by(dx as usize) {
                let at = (y * width + x) as usize * pixel_bytes;
                raw.extend_from_slice(&data[at..at + pixel_bytes]);
            }
        }
    }
    raw
}

/// Deterministic bytes that use every value.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// What decoding did before it went row by row: the image crate's decoder and `into_rgb8`.
fn as_the_image_crate_decodes(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .unwrap()
        .into_rgb8()
}

#[test]
fn every_layout_decodes_as_the_image_crate_converts_it() {
    use image::ExtendedColorType::*;
    let (width, height) = (37, 11);
    for (color, bytes_per_pixel) in [
        (L8, 1),
        (La8, 2),
        (Rgb8, 3),
        (Rgba8, 4),
        (L16, 2),
        (La16, 4),
        (Rgb16, 6),
        (Rgba16, 8),
    ] {
        let data = noise(width * height * bytes_per_pixel);
        let bytes = png(width as u32, height as u32, color, &data);
        assert_eq!(
            ok(&bytes).rgb,
            as_the_image_crate_decodes(&bytes),
            "{color:?}"
        );
    }
}

#[test]
fn low_bit_depths_and_transparency_decode_as_the_image_crate_converts_them() {
    // 2-bit grey, 3 pixels a row padded to a byte.
    let grey2 = raw_png((3, 2), 2, 0, false, &[], &[0, 0b0001_1011, 0, 0b1110_0100]);
    // A palette with tRNS (becomes RGBA, alpha dropped) and RGB with a tRNS colour key.
    let plte: &[u8] = &[255, 0, 0, 0, 255, 0, 0, 0, 255];
    let trns: &[u8] = &[0, 128];
    let palette = raw_png(
        (3, 1),
        8,
        3,
        false,
        &[(b"PLTE", plte), (b"tRNS", trns)],
        &[0, 2, 1, 0],
    );
    let key: &[u8] = &[0, 10, 0, 20, 0, 30];
    let keyed = raw_png(
        (2, 1),
        8,
        2,
        false,
        &[(b"tRNS", key)],
        &[0, 10, 20, 30, 1, 2, 3],
    );
    for bytes in [grey2, palette, keyed] {
        assert_eq!(ok(&bytes).rgb, as_the_image_crate_decodes(&bytes));
    }
}

#[test]
fn adam7_interlaced_pngs_are_put_together_row_by_row() {
    // Odd sizes, so that some passes are short or empty.
    for (width, height, depth, color_type, pixel_bytes) in [
        (13, 9, 8, 2, 3),
        (5, 3, 16, 6, 8),
        (1, 1, 8, 0, 1),
        (9, 17, 16, 4, 4),
    ] {
        let data = noise((width * height) as usize * pixel_bytes);
        let interlaced = raw_png(
            (width, height),
            depth,
            color_type,
            true,
            &[],
            &adam7_raw(width, height, pixel_bytes, &data),
        );
        let mut rows = Vec::new();
        for row in data.chunks(width as usize * pixel_bytes) {
            rows.push(0);
            rows.extend_from_slice(row);
        }
        let plain = raw_png((width, height), depth, color_type, false, &[], &rows);
        let decoded = ok(&interlaced).rgb;
        assert_eq!(
            decoded,
            ok(&plain).rgb,
            "{width}x{height} type {color_type}"
        );
        assert_eq!(decoded, as_the_image_crate_decodes(&interlaced));
    }
}

#[test]
fn a_png_bomb_is_estimated_at_its_rgb_buffer_before_any_decoding() {
    // The header of a 16-bit RGBA 8192x4882 PNG, whose image data is never reached.
    let bytes = raw_png((8192, 4882), 16, 6, false, &[], &[]);
    let inspected = inspect(&bytes, &Limits::default()).unwrap();
    assert_eq!(inspected.dimensions(), (8192, 4882));
    let rgb = 8192 * 4882 * 3;
    let estimate = inspected.memory_bytes();
    assert!(
        (rgb..rgb + (3 << 20)).contains(&estimate),
        "{estimate} for an RGB8 buffer of {rgb}"
    );
    let e = inspected
        .reserve(&MemoryBudget::new(100_000_000))
        .unwrap_err();
    assert!(e.is_limit());
    assert_eq!(
        e.to_string(),
        format!(
            "image is 8192x4882: decoding it needs an estimated {estimate} bytes, \
             over the memory budget of 100000000 bytes (decode.max_memory_bytes)"
        )
    );
}

#[test]
fn png_palette_expands_to_rgb() {
    let bytes = palette_png(3, &[[255, 0, 0], [0, 0, 255], [1, 2, 3]], &[1, 0, 2]);
    assert_eq!(ok(&bytes).rgb.as_raw(), &[0, 0, 255, 255, 0, 0, 1, 2, 3]);
}

#[test]
fn broken_pngs_fail_in_the_png_decoder() {
    let bytes = fixture("frames/photo-640x480.png");
    let e = err(&bytes[..bytes.len() / 2]);
    assert!(
        matches!(
            e,
            DecodeError::Codec {
                format: Format::Png,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("png decode failed: "), "{e}");
    assert!(!e.is_limit());

    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x55;
    let e = err(&flipped);
    assert!(
        matches!(
            e,
            DecodeError::Codec {
                format: Format::Png,
                ..
            }
        ),
        "{e:?}"
    );

    let e = err(&bytes[..20]);
    assert!(
        matches!(
            e,
            DecodeError::Codec {
                format: Format::Png,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn an_exif_chunk_orients_the_png_as_the_image_crate_reads_it() {
    // Big-endian TIFF, one IFD entry: Orientation (0x0112), SHORT, 1 value: 6 (rotate 90° clockwise).
    let exif: &[u8] = &[
        b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0,
    ];
    let (width, height) = (3, 2);
    let data = noise(width * height * 3);
    let mut rows = Vec::new();
    for row in data.chunks(width * 3) {
        rows.push(0);
        rows.extend_from_slice(row);
    }
    let bytes = raw_png((3, 2), 8, 2, false, &[(b"eXIf", exif)], &rows);
    let decoded = ok(&bytes);
    assert_eq!(decoded.orientation, 6);
    assert_eq!(decoded.rgb.dimensions(), (2, 3));
    let mut expected = image::DynamicImage::ImageRgb8(as_the_image_crate_decodes(&bytes));
    expected.apply_orientation(image::metadata::Orientation::Rotate90);
    assert_eq!(decoded.rgb, expected.into_rgb8());
    // The rotation writes a second buffer: the estimate counts it.
    let inspected = inspect(&bytes, &Limits::default()).unwrap();
    let unrotated = Limits {
        apply_orientation: false,
        ..Limits::default()
    };
    let plain = inspect(&bytes, &unrotated).unwrap();
    assert_eq!(inspected.memory_bytes(), plain.memory_bytes() + 3 * 2 * 3);
}

/// Big-endian TIFF with one IFD entry: Orientation (0x0112), SHORT, 1 value.
fn exif_orientation(value: u8) -> Vec<u8> {
    vec![
        b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, value, 0, 0, 0, 0, 0,
        0,
    ]
}

/// A 3x2 RGB PNG with `exif` in an eXIf chunk after the image data (as libpng's `pngtest.png` keeps
/// it), its CRC spoilt when `bad_crc`.
fn png_with_exif_after_the_image_data(exif: &[u8], bad_crc: bool) -> Vec<u8> {
    let data = noise(3 * 2 * 3);
    let mut rows = Vec::new();
    for row in data.chunks(3 * 3) {
        rows.push(0);
        rows.extend_from_slice(row);
    }
    let mut bytes = raw_png((3, 2), 8, 2, false, &[], &rows);
    let iend = bytes.split_off(bytes.len() - 12);
    chunk(&mut bytes, b"eXIf", exif);
    if bad_crc {
        *bytes.last_mut().unwrap() ^= 1;
    }
    bytes.extend_from_slice(&iend);
    bytes
}

/// Issue 9, finding 2: libpng's `pngtest.png` (orientation 5 after IDAT) came out unrotated.
#[test]
fn an_exif_chunk_after_the_image_data_orients_the_png_too() {
    let before = raw_png(
        (3, 2),
        8,
        2,
        false,
        &[(b"eXIf", &exif_orientation(5))],
        &[0; 2 * 10],
    );
    let after = png_with_exif_after_the_image_data(&exif_orientation(5), false);
    for bytes in [&before, &after] {
        let decoded = ok(bytes);
        assert_eq!(decoded.orientation, 5);
        assert_eq!(decoded.rgb.dimensions(), (2, 3));
        let mut expected = image::DynamicImage::ImageRgb8(as_the_image_crate_decodes(bytes));
        expected.apply_orientation(image::metadata::Orientation::Rotate90FlipH);
        assert_eq!(decoded.rgb, expected.into_rgb8());
        // The transposed copy is counted from the header, before any row is decoded.
        let inspected = inspect(bytes, &Limits::default()).unwrap();
        let unrotated = Limits {
            apply_orientation: false,
            ..Limits::default()
        };
        let plain = inspect(bytes, &unrotated).unwrap();
        assert_eq!(inspected.memory_bytes(), plain.memory_bytes() + 3 * 2 * 3);
    }
}

#[test]
fn an_exif_chunk_after_the_image_data_with_a_bad_crc_is_ignored() {
    let decoded = ok(&png_with_exif_after_the_image_data(
        &exif_orientation(5),
        true,
    ));
    assert_eq!(decoded.orientation, 1);
    assert_eq!(decoded.rgb.dimensions(), (3, 2));
}

#[test]
fn a_palette_that_is_not_whole_rgb_entries_is_refused_before_the_png_crate_reads_it() {
    // Found by fuzzing: png 0.18.1 panics on a 4-byte PLTE (fixtures/fuzz-regressions/).
    let bytes = include_bytes!(
        "../../../../fixtures/fuzz-regressions/decode-png-plte-not-multiple-of-3.png"
    );
    let err = crate::frame::decode::decode(bytes, &Limits::default()).unwrap_err();
    assert!(
        err.to_string().contains("palette (PLTE) is 4 bytes"),
        "{err}"
    );
    assert!(!err.is_limit());
}

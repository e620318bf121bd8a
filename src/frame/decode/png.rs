//! PNG: the size from IHDR checked before the `png` crate allocates anything, then the shared pixel path.

use std::io::Cursor;

use image::ImageDecoder as _;
use image::codecs::png::PngDecoder;

use super::limits::{check_limits, image_limits};
use super::{DecodeError, Decoded, Format, Limits, pixels};

/// Decodes a PNG; an IHDR over `limits` is refused before the decoder exists.
pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    // IHDR is always the first chunk: signature, length, "IHDR", width, height (big-endian).
    if let Some(ihdr) = bytes.get(12..24)
        && ihdr.starts_with(b"IHDR")
    {
        let width = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
        let height = u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]);
        check_limits(width, height, limits)?;
    }
    let mut decoder = PngDecoder::with_limits(Cursor::new(bytes), image_limits(limits))
        .map_err(DecodeError::from_image(Format::Png))?;
    let orientation = decoder
        .orientation()
        .map_err(DecodeError::from_image(Format::Png))?;
    let rgb = pixels(decoder, Format::Png, orientation, limits)?;
    Ok(Decoded {
        format: Format::Png,
        orientation: orientation.to_exif(),
        rgb,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use image::ImageEncoder as _;
    use image::codecs::png::PngEncoder;

    use crate::frame::decode::tests::{err, fixture, limits, ok};
    use crate::frame::decode::{DecodeError, Format, Limit, PNG_MAGIC, decode};

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

    /// A palette PNG built by hand (the image crate's encoder writes no palettes): zlib with one stored block.
    fn palette_png(width: u32, palette: &[[u8; 3]], indices: &[u8]) -> Vec<u8> {
        let mut raw = vec![0]; // filter type none, one row
        raw.extend_from_slice(indices);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &raw {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        let len = u16::try_from(raw.len()).unwrap();
        let mut zlib = vec![0x78, 0x01, 0x01];
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(&raw);
        zlib.extend_from_slice(&(b << 16 | a).to_be_bytes());

        let mut out = PNG_MAGIC.to_vec();
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&1u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"PLTE", palette.as_flattened());
        chunk(&mut out, b"IDAT", &zlib);
        chunk(&mut out, b"IEND", &[]);
        out
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
}

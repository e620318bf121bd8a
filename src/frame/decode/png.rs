//! PNG: the size from IHDR checked before the `png` crate allocates anything, then a row-by-row
//! decode straight into the RGB8 output. 16-bit, alpha, grey and palette images never exist at full
//! size in their own layout: each row is converted as it comes (Adam7 passes included), so the only
//! full-size allocation is the RGB8 buffer. The conversion is the `image` crate's `into_rgb8`: 16-bit
//! samples rounded (`(v + 128) / 257`), grey replicated, alpha dropped (not composited).

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ImageError, ImageFormat};
use png::{BitDepth, ColorType, InterlaceInfo, Transformations};

use super::limits::{check_limits, image_limits};
use super::{DecodeError, Format, Limits, PNG_MAGIC, memory};

/// A PNG whose header chunks (everything before the image data) were read, not decoded yet.
pub(super) struct Png<'a> {
    reader: png::Reader<Cursor<&'a [u8]>>,
    pub orientation: Orientation,
}

/// Reads the header chunks; an IHDR over `limits` is refused before the decoder exists.
pub(super) fn inspect<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Png<'a>, DecodeError> {
    // IHDR is always the first chunk: signature, length, "IHDR", width, height (big-endian).
    if let Some(ihdr) = bytes.get(12..24)
        && ihdr.starts_with(b"IHDR")
    {
        let width = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
        let height = u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]);
        check_limits(width, height, limits)?;
    }
    check_palette(bytes)?;
    let max_alloc = image_limits(limits).max_alloc.unwrap_or(u64::MAX);
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: usize::try_from(max_alloc).unwrap_or(usize::MAX),
        },
    );
    // Palette to RGB, low bit depths to 8 bits, tRNS to an alpha channel (dropped below); 16-bit
    // samples stay, for the same rounding as the image crate.
    decoder.set_transformations(Transformations::EXPAND);
    // Never read: skipping them spares their decompression.
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let reader = decoder.read_info().map_err(codec)?;
    let (width, height) = reader.info().size();
    check_limits(width, height, limits)?;
    // The png crate reads an eXIf chunk after the image data only once every row is decoded: too
    // late for the memory estimate, which counts the rotated copy.
    let orientation = reader
        .info()
        .exif_metadata
        .as_deref()
        .or_else(|| exif_after_image_data(bytes))
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    Ok(Png {
        reader,
        orientation,
    })
}

/// A PLTE chunk must hold whole RGB entries, at most 256 of them. The `png` crate (0.18.1) panics on
/// one that does not (found by fuzzing, `fixtures/fuzz-regressions/`): refuse it before the crate
/// reads it. Walks the chunk headers up to the image data.
fn check_palette(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        if kind == b"IDAT" || kind == b"IEND" {
            break;
        }
        if kind == b"PLTE" && (len % 3 != 0 || len > 768 || len == 0) {
            return Err(DecodeError::Corrupt {
                format: Format::Png,
                cause: format!(
                    "the palette (PLTE) is {len} bytes: it must hold 1 to 256 RGB entries of 3 bytes"
                ),
            });
        }
        at = at.saturating_add(12).saturating_add(len);
    }
    Ok(())
}

impl Png<'_> {
    pub fn size(&self) -> (u32, u32) {
        self.reader.info().size()
    }

    /// The decode's peak memory, before orientation: see [`memory::png`].
    pub fn memory_bytes(&self) -> u64 {
        let (width, height) = self.size();
        let line = self.reader.output_line_size(width).unwrap_or(usize::MAX);
        memory::png(width, height, line as u64)
    }

    /// Decodes into RGB8 (not oriented yet).
    pub fn pixels(mut self) -> Result<image::RgbImage, DecodeError> {
        let (width, height) = self.size();
        let convert = converter(self.reader.output_color_type())?;
        let stride = usize::try_from(u64::from(width) * 3).map_err(|_| too_large(width, height))?;
        let len = stride
            .checked_mul(usize::try_from(height).map_err(|_| too_large(width, height))?)
            .ok_or_else(|| too_large(width, height))?;
        let mut rgb = vec![0u8; len];
        // Adam7 rows are converted here, then spread into place.
        let mut pass_row = Vec::new();
        let mut y = 0;
        while let Some(row) = self.reader.next_interlaced_row().map_err(codec)? {
            match row.interlace() {
                InterlaceInfo::Null(_) => {
                    let Some(out) = rgb.get_mut(y * stride..(y + 1) * stride) else {
                        break;
                    };
                    convert(row.data(), out);
                    y += 1;
                }
                InterlaceInfo::Adam7(pass) => {
                    pass_row.resize(stride, 0);
                    let pixels = convert(row.data(), &mut pass_row);
                    png::expand_interlaced_row(&mut rgb, stride, &pass_row[..pixels * 3], pass, 24);
                }
            }
        }
        image::RgbImage::from_raw(width, height, rgb).ok_or_else(|| too_large(width, height))
    }
}

/// The data of the first eXIf chunk in `bytes` whose CRC is right, found by hopping from chunk to
/// chunk (nothing is decompressed). libpng and OpenCV read it after the image data too.
fn exif_after_image_data(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = PNG_MAGIC.len();
    while let Some(header) = bytes.get(at..at + 8) {
        let len = usize::try_from(u32::from_be_bytes(header[..4].try_into().ok()?)).ok()?;
        let data_end = at.checked_add(8)?.checked_add(len)?;
        let crc = bytes.get(data_end..data_end + 4)?;
        match &header[4..] {
            b"IEND" => return None,
            b"eXIf" if crc32fast::hash(&bytes[at + 4..data_end]).to_be_bytes() == crc => {
                return Some(&bytes[at + 8..data_end]);
            }
            _ => at = data_end + 4,
        }
    }
    None
}

fn too_large(width: u32, height: u32) -> DecodeError {
    DecodeError::Unsupported {
        feature: format!("a {width}x{height} image on this platform"),
    }
}

/// Converts one row of the png crate's output to RGB8; returns the pixels converted (as many as fit
/// in both).
type Convert = fn(&[u8], &mut [u8]) -> usize;

/// The row conversion for the png crate's output layout (after `EXPAND`: grey, grey-alpha, RGB or
/// RGBA at 8 or 16 bits).
fn converter((color, depth): (ColorType, BitDepth)) -> Result<Convert, DecodeError> {
    Ok(match (color, depth) {
        (ColorType::Rgb, BitDepth::Eight) => rgb8_row,
        (ColorType::Rgba, BitDepth::Eight) => row::<4, false>,
        (ColorType::Grayscale, BitDepth::Eight) => row::<1, false>,
        (ColorType::GrayscaleAlpha, BitDepth::Eight) => row::<2, false>,
        (ColorType::Rgb, BitDepth::Sixteen) => row::<3, true>,
        (ColorType::Rgba, BitDepth::Sixteen) => row::<4, true>,
        (ColorType::Grayscale, BitDepth::Sixteen) => row::<1, true>,
        (ColorType::GrayscaleAlpha, BitDepth::Sixteen) => row::<2, true>,
        (color, depth) => {
            return Err(DecodeError::Unsupported {
                feature: format!("png output {color:?} at {depth:?} bits"),
            });
        }
    })
}

fn rgb8_row(src: &[u8], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len()) / 3 * 3;
    dst[..n].copy_from_slice(&src[..n]);
    n / 3
}

/// `CHANNELS` samples a pixel (1 or 2: grey first; 3 or 4: RGB first), 16-bit big-endian when `WIDE`.
fn row<const CHANNELS: usize, const WIDE: bool>(src: &[u8], dst: &mut [u8]) -> usize {
    let bytes = if WIDE { 2 * CHANNELS } else { CHANNELS };
    let mut n = 0;
    for (pixel, out) in src.chunks_exact(bytes).zip(dst.chunks_exact_mut(3)) {
        let sample = |i: usize| {
            if WIDE {
                // The image crate's u16 to u8: round(v * 255 / 65535).
                let v = u32::from(u16::from_be_bytes([pixel[2 * i], pixel[2 * i + 1]]));
                ((v + 128) / 257) as u8
            } else {
                pixel[i]
            }
        };
        if CHANNELS < 3 {
            out.fill(sample(0));
        } else {
            out[0] = sample(0);
            out[1] = sample(1);
            out[2] = sample(2);
        }
        n += 1;
    }
    n
}

/// A png crate error as the image crate reports it (`ImageError::from_png`), so messages stay the same.
fn codec(e: png::DecodingError) -> DecodeError {
    use image::error::{
        DecodingError, LimitError, LimitErrorKind, ParameterError, ParameterErrorKind,
    };
    let cause = match e {
        png::DecodingError::IoError(e) => ImageError::IoError(e),
        e @ png::DecodingError::Format(_) => {
            ImageError::Decoding(DecodingError::new(ImageFormat::Png.into(), e))
        }
        e @ png::DecodingError::Parameter(_) => ImageError::Parameter(ParameterError::from_kind(
            ParameterErrorKind::Generic(e.to_string()),
        )),
        png::DecodingError::LimitsExceeded => {
            ImageError::Limits(LimitError::from_kind(LimitErrorKind::InsufficientMemory))
        }
    };
    DecodeError::from_image(Format::Png)(cause)
}

#[cfg(test)]
mod tests;

//! What bytes a frame file holds: the image as received, PNG or PPM. Pure: it writes to any
//! `io::Write` the caller opens.
//!
//! Streamed, never built in memory first: a PPM or PNG of a 40-megapixel frame would otherwise double
//! the frame's memory beyond what the decode budget counts.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::frame::Processed;
use crate::frame::decode::Format;

/// How stored frames are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// The image bytes as received (`.jpg` or `.png` by their format): no re-encode.
    #[default]
    Original,
    /// PNG (JPEGs re-encoded with fast compression).
    Png,
    /// Binary PPM (P6) of the RGB buffer.
    Ppm,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "cannot write a {found:?} image as .{ext}: mqimg writes the original bytes, .png or .ppm"
    )]
    WrongFormat { found: Format, ext: String },
    #[error("unknown output extension {0:?}: use .jpg, .png or .ppm")]
    UnknownExtension(String),
}

/// The format to write for `path`, chosen by its extension (`mqimg decode --out`).
pub fn format_for_path(path: &Path, image: Format) -> Result<OutputFormat, EncodeError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" if image == Format::Jpeg => Ok(OutputFormat::Original),
        "png" if image == Format::Png => Ok(OutputFormat::Original),
        "png" => Ok(OutputFormat::Png),
        "ppm" => Ok(OutputFormat::Ppm),
        "jpg" | "jpeg" => Err(EncodeError::WrongFormat { found: image, ext }),
        _ => Err(EncodeError::UnknownExtension(ext)),
    }
}

/// The file extension a frame gets in `format`.
pub fn extension(format: OutputFormat, image: Format) -> &'static str {
    match format {
        OutputFormat::Original => image.extension(),
        OutputFormat::Png => "png",
        OutputFormat::Ppm => "ppm",
    }
}

/// Whether the frame file in `format` is the image as received (nothing to convert).
pub fn is_original(format: OutputFormat, image: Format) -> bool {
    format == OutputFormat::Original || (format == OutputFormat::Png && image == Format::Png)
}

/// Writes the frame file's bytes in `format` to `out`: the image bytes themselves when no conversion
/// is needed.
pub fn write(frame: &Processed<'_>, format: OutputFormat, out: &mut dyn Write) -> io::Result<()> {
    let rgb = &frame.decoded.rgb;
    match format {
        OutputFormat::Original => out.write_all(&frame.image),
        OutputFormat::Png if frame.decoded.format == Format::Png => out.write_all(&frame.image),
        OutputFormat::Png => {
            let mut buffered = BufWriter::with_capacity(PNG_CHUNK_BYTES, out);
            let mut encoder = png::Encoder::new(&mut buffered, rgb.width(), rgb.height());
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            // Fast compression: the default level costs 30x the time for ~10 % smaller files.
            encoder.set_compression(png::Compression::Fast);
            encoder.set_filter(png::Filter::Adaptive);
            let mut writer = encoder.write_header().map_err(png_error)?;
            let mut stream = writer
                .stream_writer_with_size(PNG_CHUNK_BYTES)
                .map_err(png_error)?;
            stream.write_all(rgb.as_raw())?;
            stream.finish().map_err(png_error)?;
            // Writes IEND, which dropping the writer would do without reporting an error.
            writer.finish().map_err(png_error)?;
            buffered.flush()
        }
        OutputFormat::Ppm => {
            write!(out, "P6\n{} {}\n255\n", rgb.width(), rgb.height())?;
            out.write_all(rgb.as_raw())
        }
    }
}

/// Image data per PNG IDAT chunk, and the write buffer in front of the file.
const PNG_CHUNK_BYTES: usize = 256 << 10;

/// The PNG encoder's errors as I/O errors: with a valid RGB8 buffer only writing can fail.
fn png_error(e: png::EncodingError) -> io::Error {
    match e {
        png::EncodingError::IoError(e) => e,
        e => io::Error::other(format!("cannot encode png: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::path::PathBuf;
    use std::time::SystemTime;

    use crate::frame::budget::MemoryBudget;
    use crate::frame::{Options, process};

    fn processed(bytes: &[u8]) -> Processed<'_> {
        let budget = MemoryBudget::new(1 << 30);
        process(bytes, None, SystemTime::now(), &Options::default(), &budget).unwrap()
    }

    fn written(frame: &Processed<'_>, format: OutputFormat) -> Vec<u8> {
        let mut out = Vec::new();
        write(frame, format, &mut out).unwrap();
        out
    }

    #[test]
    fn ppm_is_a_header_and_the_rgb_bytes() {
        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/seed/seed-frame.jpg"
        ))
        .unwrap();
        let frame = processed(&jpeg);
        let ppm = written(&frame, OutputFormat::Ppm);
        let header = b"P6\n100 100\n255\n";
        assert_eq!(&ppm[..header.len()], header);
        assert_eq!(&ppm[header.len()..], frame.decoded.rgb.as_raw().as_slice());
    }

    #[test]
    fn a_jpeg_written_as_png_decodes_to_the_same_pixels() {
        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/frames/photo-640x480.jpg"
        ))
        .unwrap();
        let frame = processed(&jpeg);
        let png = written(&frame, OutputFormat::Png);
        assert_eq!(written(&frame, OutputFormat::Original), jpeg);
        let again = processed(&png);
        assert_eq!(again.decoded.format, Format::Png);
        assert_eq!(again.decoded.rgb, frame.decoded.rgb);
        // A PNG is stored as received.
        assert_eq!(written(&again, OutputFormat::Png), png);
    }

    #[test]
    fn the_extension_picks_the_format() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            format_for_path(&p("x.jpg"), Format::Jpeg).unwrap(),
            OutputFormat::Original
        );
        assert_eq!(
            format_for_path(&p("x.PNG"), Format::Jpeg).unwrap(),
            OutputFormat::Png
        );
        assert_eq!(
            format_for_path(&p("x.png"), Format::Png).unwrap(),
            OutputFormat::Original
        );
        assert_eq!(
            format_for_path(&p("x.ppm"), Format::Png).unwrap(),
            OutputFormat::Ppm
        );
        assert!(format_for_path(&p("x.jpg"), Format::Png).is_err());
        assert!(format_for_path(&p("x.gif"), Format::Jpeg).is_err());
    }
}

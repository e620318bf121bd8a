//! What bytes a frame file holds: the image as received, PNG or PPM. Pure: no files.

use std::borrow::Cow;
use std::path::Path;

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
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
    #[error("cannot encode PNG: {0}")]
    Png(#[from] image::ImageError),
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

/// The bytes of the frame file in `format`: the image bytes themselves when no conversion is needed.
pub fn encode<'p>(
    frame: &'p Processed<'_>,
    format: OutputFormat,
) -> Result<Cow<'p, [u8]>, EncodeError> {
    let rgb = &frame.decoded.rgb;
    match format {
        OutputFormat::Original => Ok(Cow::Borrowed(&frame.image)),
        OutputFormat::Png if frame.decoded.format == Format::Png => Ok(Cow::Borrowed(&frame.image)),
        OutputFormat::Png => {
            let mut out = Vec::with_capacity(rgb.as_raw().len() / 2);
            // Fast compression: the default level costs 30x the time for ~10 % smaller files.
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
                .write_image(
                    rgb.as_raw(),
                    rgb.width(),
                    rgb.height(),
                    image::ExtendedColorType::Rgb8,
                )?;
            Ok(Cow::Owned(out))
        }
        OutputFormat::Ppm => {
            let header = format!("P6\n{} {}\n255\n", rgb.width(), rgb.height());
            let mut out = Vec::with_capacity(header.len() + rgb.as_raw().len());
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(rgb.as_raw());
            Ok(Cow::Owned(out))
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::path::PathBuf;

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

//! JPEG versions of a frame for viewers: scaled (`?width=N`) or re-encoded (PNG frames on a stream).
//! Each is made on first request only — so only while someone watches — at most once per frame and
//! width, on the blocking pool (never the reactor), at most `renders` at a time.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat};
use tokio::sync::{OnceCell, Semaphore};

use super::Frame;
use crate::frame::decode::Format;

/// Widths cached per frame. Viewers use one or two (the gallery's tiles, a stream); a client asking for
/// many more gets them made each time, and each one waits for a render slot.
const CACHED_WIDTHS: usize = 4;
/// Quality of the JPEGs made here: for eyes, not for analysis.
const JPEG_QUALITY: u8 = 80;

/// A JPEG a viewer gets.
#[derive(Clone, Debug)]
pub struct Jpeg {
    pub bytes: Bytes,
    pub width: u32,
    pub height: u32,
}

/// Why a JPEG could not be made: the frame decoded once already, so this is a bug or an exhausted
/// machine, not the camera's fault.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot re-encode the frame: {0}")]
    Image(#[from] image::ImageError),
    #[error("the render task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the live view is shutting down")]
    Closed,
}

/// The versions of one frame made so far, by width.
#[derive(Debug, Default)]
pub(super) struct Renditions {
    made: Mutex<Vec<(u32, Arc<OnceCell<Jpeg>>)>>,
}

impl Renditions {
    /// The slot for `width`, when one is (or can be) kept.
    fn slot(&self, width: u32) -> Option<Arc<OnceCell<Jpeg>>> {
        let mut made = self.made.lock().ok()?;
        if let Some((_, cell)) = made.iter().find(|(w, _)| *w == width) {
            return Some(Arc::clone(cell));
        }
        (made.len() < CACHED_WIDTHS).then(|| {
            let cell = Arc::new(OnceCell::new());
            made.push((width, Arc::clone(&cell)));
            cell
        })
    }
}

impl Frame {
    /// The frame as a JPEG at most `width` pixels wide (its own width when `None`), aspect kept.
    /// A JPEG frame at its own width is its bytes as received.
    pub async fn jpeg(
        self: &Arc<Self>,
        width: Option<u32>,
        renders: &Arc<Semaphore>,
    ) -> Result<Jpeg, RenderError> {
        let width = width.map_or(self.width, |w| w.clamp(1, self.width));
        if self.format == Format::Jpeg && width == self.width {
            return Ok(Jpeg {
                bytes: self.bytes.clone(),
                width: self.width,
                height: self.height,
            });
        }
        let make = || async {
            let _slot = renders
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| RenderError::Closed)?;
            let frame = Arc::clone(self);
            tokio::task::spawn_blocking(move || frame.render(width)).await?
        };
        match self.renditions.slot(width) {
            Some(cell) => cell.get_or_try_init(make).await.cloned(),
            None => make().await,
        }
    }

    /// Decodes the frame again (it passed the decode limits once), scales it and encodes a JPEG.
    fn render(&self, width: u32) -> Result<Jpeg, RenderError> {
        let format = match self.format {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
        };
        let mut image = image::load_from_memory_with_format(&self.bytes, format)?;
        if let Some(orientation) = Orientation::from_exif(self.orientation)
            && orientation != Orientation::NoTransforms
        {
            image.apply_orientation(orientation);
        }
        let height = scaled_height(image.width(), image.height(), width);
        let image = if width < image.width() {
            image.thumbnail_exact(width, height)
        } else {
            image
        };
        let rgb = DynamicImage::ImageRgb8(image.into_rgb8());
        let mut out = Vec::with_capacity(rgb.as_bytes().len() / 8);
        rgb.write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))?;
        Ok(Jpeg {
            bytes: Bytes::from(out),
            width: rgb.width(),
            height: rgb.height(),
        })
    }
}

/// The height that keeps the aspect of `w`×`h` at `width`, rounded, at least 1.
fn scaled_height(w: u32, h: u32, width: u32) -> u32 {
    let (w, h, width) = (u64::from(w.max(1)), u64::from(h), u64::from(width));
    u32::try_from((h * width + w / 2) / w)
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_aspect_is_kept_and_never_reaches_zero() {
        assert_eq!(scaled_height(1280, 720, 320), 180);
        assert_eq!(scaled_height(640, 480, 100), 75);
        assert_eq!(scaled_height(4000, 1, 10), 1);
        assert_eq!(scaled_height(3, 2, 2), 1);
    }

    #[test]
    fn no_more_than_the_cached_widths_are_kept() {
        let renditions = Renditions::default();
        for width in 0..CACHED_WIDTHS as u32 {
            assert!(renditions.slot(width + 1).is_some());
        }
        assert!(renditions.slot(1).is_some(), "a kept width is found again");
        assert!(renditions.slot(999).is_none());
        assert_eq!(renditions.made.lock().unwrap().len(), CACHED_WIDTHS);
    }
}

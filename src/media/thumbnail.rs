//! Thumbnails (spec "Thumbnails"): `crop` fills the requested box exactly, `scale` fits the
//! image inside it keeping its aspect ratio. Requested sizes snap to a fixed list (as Synapse
//! and Dendrite do) so one upload has a bounded number of thumbnails on disk.
use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::error::{MatrixError, Result};

/// The sizes thumbnails are made in: the smallest one covering the request is used.
pub const THUMBNAIL_SIZES: &[(u32, u32)] = &[(32, 32), (96, 96), (320, 240), (640, 480), (800, 600)];

/// Largest source image we decode (pixels per side); larger ones are not thumbnailed.
const MAX_SOURCE_SIDE: u32 = 10_000;
/// Memory the decoder may use for one source image.
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Crop,
    Scale,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crop => "crop",
            Method::Scale => "scale",
        }
    }
}

/// The smallest standard size at least as large as the request, else the largest.
pub fn snap(width: u64, height: u64) -> (u32, u32) {
    THUMBNAIL_SIZES
        .iter()
        .copied()
        .find(|&(w, h)| u64::from(w) >= width && u64::from(h) >= height)
        .unwrap_or(*THUMBNAIL_SIZES.last().expect("sizes"))
}

/// Decode `source` and make a `w` x `h` thumbnail: (content type, file extension, bytes).
/// PNG keeps transparency; everything else becomes JPEG.
pub fn make(source: &[u8], w: u32, h: u32, method: Method) -> Result<(&'static str, &'static str, Vec<u8>)> {
    let cannot = |e: &dyn std::fmt::Display| MatrixError::Unknown(format!("Cannot generate a thumbnail: {e}"));
    let mut reader = ImageReader::new(Cursor::new(source)).with_guessed_format().map_err(|e| cannot(&e))?;
    if reader.format().is_none() {
        return Err(cannot(&"not an image"));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_SOURCE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| cannot(&e))?;
    let out = match method {
        Method::Crop => img.resize_to_fill(w, h, FilterType::Triangle),
        // Never enlarge: a small image is its own thumbnail.
        Method::Scale if img.width() <= w && img.height() <= h => img,
        Method::Scale => img.resize(w, h, FilterType::Triangle),
    };
    let mut buf = Cursor::new(Vec::new());
    if out.color().has_alpha() {
        out.write_to(&mut buf, ImageFormat::Png).map_err(|e| cannot(&e))?;
        Ok(("image/png", "png", buf.into_inner()))
    } else {
        DynamicImage::ImageRgb8(out.to_rgb8()).write_to(&mut buf, ImageFormat::Jpeg).map_err(|e| cannot(&e))?;
        Ok(("image/jpeg", "jpg", buf.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_snap_up_to_the_next_standard_size() {
        assert_eq!(snap(1, 1), (32, 32));
        assert_eq!(snap(33, 10), (96, 96));
        assert_eq!(snap(100, 100), (320, 240));
        assert_eq!(snap(5000, 5000), (800, 600));
    }

    #[test]
    fn crop_fills_and_scale_keeps_the_aspect_ratio() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(400, 200, image::Rgb([200, 10, 10])));
        let mut png = Cursor::new(Vec::new());
        img.write_to(&mut png, ImageFormat::Png).unwrap();
        let png = png.into_inner();
        let (ct, _, crop) = make(&png, 96, 96, Method::Crop).unwrap();
        assert_eq!(ct, "image/jpeg");
        let crop = image::load_from_memory(&crop).unwrap();
        assert_eq!((crop.width(), crop.height()), (96, 96));
        let (_, _, scaled) = make(&png, 320, 240, Method::Scale).unwrap();
        let scaled = image::load_from_memory(&scaled).unwrap();
        assert_eq!((scaled.width(), scaled.height()), (320, 160));
        assert!(make(b"not an image at all", 32, 32, Method::Crop).is_err());
    }
}

//! Image decoding with `image`: the format is taken from the content, not the name.

use std::path::Path;

use image::{ImageReader, Limits, RgbImage};

use polymodal_core::{Error, Result};

/// Largest width or height accepted; larger headers are treated as corrupt.
pub const MAX_SIDE: u32 = 16_384;

/// Decodes an image file (PNG or JPEG in this build) to RGB, naming the file in errors.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&bytes).map_err(|reason| Error::decode(path, "image", reason))
}

/// Decodes an image held in memory to RGB.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| e.to_string())?;
    Ok(image.into_rgb8())
}

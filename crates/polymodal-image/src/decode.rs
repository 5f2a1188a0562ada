//! Image decoding with `image`: the format is taken from the content, not the
//! name; EXIF orientation is applied; grey, alpha and 16-bit images become RGB8.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use polymodal_core::{Error, Result};

/// Largest width or height accepted; larger headers are treated as corrupt.
pub const MAX_SIDE: u32 = 16_384;

/// Largest decoded image accepted, in bytes (a 16k x 16k RGBA image is 1 GiB).
pub const MAX_BYTES: u64 = 512 << 20;

/// Decodes an image file (PNG, JPEG, WebP, GIF's first frame, BMP, TIFF) to
/// upright RGB, naming the file in errors.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&bytes).map_err(|reason| Error::decode(path, "image", reason))
}

/// Decodes an image held in memory to upright RGB. Alpha is dropped (as
/// Pillow's `convert("RGB")` does); 16-bit channels are rounded to 8 bits.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF)".into());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_BYTES);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    // A broken EXIF block should not lose the picture: treat it as upright.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    // `into_decoder` checks the dimensions but not the buffer size.
    limits
        .reserve(decoder.total_bytes())
        .map_err(|e| e.to_string())?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, ImageFormat, Rgb};

    #[test]
    fn sixteen_bit_png_rounds_to_eight_bits() {
        let wide: ImageBuffer<Rgb<u16>, Vec<u16>> =
            ImageBuffer::from_fn(3, 1, |x, _| Rgb([x as u16 * 30_000, 65_535, 128]));
        let mut bytes = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb16(wide)
            .write_to(&mut bytes, ImageFormat::Png)
            .unwrap();
        let rgb = decode_rgb(bytes.get_ref()).unwrap();
        // (c + 128) / 257, the correctly rounded 16-to-8-bit conversion.
        assert_eq!(rgb.get_pixel(1, 0).0, [117, 255, 0]);
        assert_eq!(rgb.get_pixel(2, 0).0, [233, 255, 0]);
    }

    #[test]
    fn text_and_empty_input_are_errors() {
        assert!(decode_rgb(b"").is_err());
        let error = decode_rgb(b"plain text, not a picture").unwrap_err();
        assert!(error.contains("supported format"), "{error}");
    }
}

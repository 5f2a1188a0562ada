//! Any bytes through image decoding (format from the content, limits, EXIF)
//! and, when they decode, the CLIP preprocessing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polymodal_image::{ImagePreprocess, decode_rgb};

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode_rgb(data) {
        if image.width() as u64 * image.height() as u64 <= 1 << 20 {
            let values = ImagePreprocess::clip(16).apply(&image).expect("a decoded image preprocesses");
            assert_eq!(values.len(), 3 * 16 * 16);
        }
    }
});

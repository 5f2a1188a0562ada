//! Every supported image format and pixel layout decodes to the RGB that
//! Pillow decodes (upright after EXIF orientation). Fixtures:
//! `scripts/parity/image.py`.

use std::path::PathBuf;

use polymodal::image::load_rgb;

fn images() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/media/images")
}

#[test]
fn formats_decode_like_pillow() {
    let bytes = std::fs::read(images().join("pillow-decoded.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for name in file.names() {
        let file_name = name.strip_prefix("pillow.").unwrap();
        let expected = file.tensor(name).unwrap();
        let image = load_rgb(images().join(file_name)).unwrap();
        let (height, width) = (expected.shape()[0], expected.shape()[1]);
        assert_eq!(
            image.dimensions(),
            (width as u32, height as u32),
            "{file_name}"
        );
        assert_eq!(
            image.as_raw().len(),
            expected.data().len(),
            "{file_name}: {} bytes decoded, {} from Pillow",
            image.as_raw().len(),
            expected.data().len()
        );
        let max = image
            .as_raw()
            .iter()
            .zip(expected.data())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        // Lossless formats must match exactly; JPEG decoders (zune-jpeg
        // here, libjpeg-turbo in Pillow) round their IDCT differently.
        let allowed = if file_name.ends_with(".jpg") { 3 } else { 0 };
        eprintln!("{file_name}: max diff {max}");
        assert!(max <= allowed, "{file_name}: {max}");
        checked += 1;
    }
    assert_eq!(checked, 9);
    // The EXIF-rotated JPEG was saved 37 wide and 23 high: upright it is 23 x 37.
    assert_eq!(
        load_rgb(images().join("exif-rotated.jpg"))
            .unwrap()
            .dimensions(),
        (23, 37)
    );
}

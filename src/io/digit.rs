//! Reading a user's image of a digit as the network's input, prepared the way MNIST's digits were:
//! grey, a white digit on black, scaled to fit a 20x20 box and centred by its centre of mass in 28x28.

use crate::error::InputError;
use image::imageops::FilterType;
use image::GrayImage;
use std::path::Path;

/// MNIST's digits are 28x28: the digit preparation here is for models trained on such images.
pub const MNIST_SIDE: usize = 28;

/// MNIST scaled each digit to fit this box (keeping its aspect ratio) before placing it in 28x28.
const BOX: u32 = 20;
/// ... and put its centre of mass here (pixel coordinates, 0-based): every MNIST test digit has its
/// centre of mass within half a pixel of (14, 14).
const CENTRE: f64 = 14.0;
/// Pixels at least this bright count as ink when finding the digit's bounding box (background noise,
/// JPEG ringing and anti-aliasing stay below it).
const INK: u8 = 32;

/// An image ready for the network, and a hint when it does not look like MNIST's white-on-black.
#[derive(Clone, Debug, PartialEq)]
pub struct Digit {
    /// `MNIST_SIDE^2` grey pixels, row-major.
    pub pixels: Vec<u8>,
    /// Set when the image's border (its background) is light after `invert` was or was not applied:
    /// the network would see a dark digit on white, which it was never trained on.
    pub hint: Option<String>,
}

/// Reads `path` (PNG or any format the `image` crate decodes; any size and colour) as a [`Digit`].
///
/// Transparent pixels become the background (black, or white with `invert`), colour becomes luma, and
/// `invert` turns a black-on-white image into white-on-black. An image of exactly 28x28 keeps its scale
/// (it is taken to be in MNIST's format already); any other size is cropped to the digit's bounding box
/// and scaled so that its longer side is 20 pixels. Either way the digit is then moved so that its
/// centre of mass is at (14, 14), as MNIST's were: an off-centre digit scores as well as a centred one.
pub fn load_digit(path: &Path, invert: bool) -> Result<Digit, InputError> {
    let reader =
        image::ImageReader::open(path).map_err(|e| InputError::unreadable(path, "image", &e))?;
    let img = reader
        .with_guessed_format()
        .map_err(|e| InputError::file(path, format!("cannot read image: {e}")))?
        .decode()
        .map_err(|e| InputError::file(path, format!("cannot decode image: {e}")))?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(InputError::file(path, "image has no pixels"));
    }
    // Composite over the background, then make the ink bright.
    let bg: u16 = if invert { 255 } else { 0 };
    let la = img.to_luma_alpha8();
    let grey = GrayImage::from_fn(w, h, |x, y| {
        let [l, a] = la.get_pixel(x, y).0;
        let v = (l as u16 * a as u16 + bg * (255 - a as u16) + 127) / 255;
        image::Luma([if invert { 255 - v as u8 } else { v as u8 }])
    });
    let blank = !grey.pixels().any(|p| p.0[0] >= INK);
    let hint = if blank {
        Some(format!(
            "{}: the image is blank (no pixel as bright as {INK}/255{}): its prediction means nothing",
            path.display(),
            if invert { " after --invert" } else { "" }
        ))
    } else {
        light_background(&grey).then(|| {
            let fix = if invert { "drop --invert" } else { "pass --invert" };
            format!(
                "{}: its background is light, but the network reads a white digit on black: {fix} if the digit is dark",
                path.display()
            )
        })
    };
    Ok(Digit {
        pixels: prepare(grey),
        hint,
    })
}

/// A white-on-black digit of any size (`w * h` grey pixels, row-major: a web page's drawing) prepared
/// as [`load_digit`] prepares a file's: `MNIST_SIDE^2` pixels, scaled and centred as MNIST's were.
pub fn prepare_grey(w: u32, h: u32, pixels: Vec<u8>) -> Option<Vec<u8>> {
    GrayImage::from_raw(w, h, pixels).map(prepare)
}

/// An image of exactly 28x28 keeps its scale; any other is fitted to MNIST's box; then centred by mass.
fn prepare(grey: GrayImage) -> Vec<u8> {
    let side = MNIST_SIDE as u32;
    let scaled = if grey.dimensions() == (side, side) {
        grey
    } else {
        fit_box(&grey)
    };
    centre_by_mass(&scaled)
}

/// The mean of the image's outermost pixels is above mid-grey.
fn light_background(img: &GrayImage) -> bool {
    let (w, h) = img.dimensions();
    let border = img
        .enumerate_pixels()
        .filter(|(x, y, _)| *x == 0 || *y == 0 || *x == w - 1 || *y == h - 1);
    let (sum, n) = border.fold((0u64, 0u64), |(s, n), (_, _, p)| (s + p.0[0] as u64, n + 1));
    sum > 128 * n
}

/// Crops to the ink's bounding box, scales its longer side to `BOX` (area averaging when shrinking, so
/// thin strokes keep their weight) and places it in the middle of a black 28x28 image. An image with no
/// ink is scaled whole.
fn fit_box(img: &GrayImage) -> GrayImage {
    let ink: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] >= INK)
        .map(|(x, y, _)| (x, y))
        .collect();
    let (x0, y0, x1, y1) = match ink.first() {
        None => (0, 0, img.width() - 1, img.height() - 1),
        Some(&(x, y)) => ink.iter().fold((x, y, x, y), |(a, b, c, d), &(x, y)| {
            (a.min(x), b.min(y), c.max(x), d.max(y))
        }),
    };
    let crop = image::imageops::crop_imm(img, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    let (cw, ch) = crop.dimensions();
    let scale = BOX as f64 / cw.max(ch) as f64;
    let (tw, th) = (
        ((cw as f64 * scale).round() as u32).clamp(1, BOX),
        ((ch as f64 * scale).round() as u32).clamp(1, BOX),
    );
    let fitted = if scale < 1.0 {
        image::imageops::thumbnail(&crop, tw, th)
    } else {
        image::imageops::resize(&crop, tw, th, FilterType::Triangle)
    };
    let side = MNIST_SIDE as u32;
    let mut out = GrayImage::new(side, side);
    image::imageops::replace(
        &mut out,
        &fitted,
        ((side - tw) / 2).into(),
        ((side - th) / 2).into(),
    );
    out
}

/// Moves the image by whole pixels so that its centre of mass lands on (`CENTRE`, `CENTRE`); what moves
/// out of the frame is dropped, what moves in is black. A black image is returned as it is.
fn centre_by_mass(img: &GrayImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let (mut m, mut mx, mut my) = (0f64, 0f64, 0f64);
    for (x, y, p) in img.enumerate_pixels() {
        let v = p.0[0] as f64;
        m += v;
        mx += v * x as f64;
        my += v * y as f64;
    }
    if m == 0.0 {
        return img.as_raw().clone();
    }
    let (dx, dy) = (
        (CENTRE - mx / m).round() as i64,
        (CENTRE - my / m).round() as i64,
    );
    let mut out = vec![0u8; (w * h) as usize];
    for (x, y, p) in img.enumerate_pixels() {
        let (nx, ny) = (x as i64 + dx, y as i64 + dy);
        if (0..w as i64).contains(&nx) && (0..h as i64).contains(&ny) {
            out[(ny * w as i64 + nx) as usize] = p.0[0];
        }
    }
    out
}

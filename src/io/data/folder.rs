//! An image-folder data set: `DIR/train/<class>/*.png|*.jpg` and `DIR/test/<class>/...`, as
//! torchvision's `ImageFolder` reads it. Classes are the training folder's subfolders, sorted by name;
//! images are grey if every one of them is, RGB otherwise (alpha dropped); they must share one size, or
//! are resized (triangle filter) to `--image-size` where they differ from it.

use super::ImageSet;
use crate::error::InputError;
use image::imageops::FilterType;
use image::DynamicImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The file kinds read; anything else in a class folder (a README, `.DS_Store`) is skipped.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Whether `dir` looks like an image folder: it has `train/` and `test/` subfolders.
pub fn detect(dir: &Path) -> bool {
    dir.join("train").is_dir() && dir.join("test").is_dir()
}

/// The subfolders of `dir`, sorted by name (hidden ones skipped).
fn class_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, InputError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| InputError::unreadable(dir, "folder", &e))? {
        let entry = entry.map_err(|e| InputError::unreadable(dir, "folder", &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The image files of one class folder, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| InputError::unreadable(dir, "folder", &e))? {
        let path = entry
            .map_err(|e| InputError::unreadable(dir, "folder", &e))?
            .path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if path.is_file() && ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Every (file, label) of one split, its class folders looked up in `classes`.
fn listing(split: &Path, classes: &[String]) -> Result<Vec<(PathBuf, u8)>, InputError> {
    let mut files = Vec::new();
    for (name, dir) in class_dirs(split)? {
        let Some(label) = classes.iter().position(|c| *c == name) else {
            return Err(InputError::file(
                &dir,
                format!(
                    "class '{name}' has no folder in {}",
                    split.with_file_name("train").display()
                ),
            ));
        };
        let images = image_files(&dir)?;
        if images.is_empty() {
            return Err(InputError::file(&dir, "holds no .png or .jpg images"));
        }
        files.extend(images.into_iter().map(|p| (p, label as u8)));
    }
    if files.is_empty() {
        return Err(InputError::file(split, "holds no class folders"));
    }
    Ok(files)
}

fn decode(path: &Path) -> Result<DynamicImage, InputError> {
    let bytes = std::fs::read(path).map_err(|e| InputError::unreadable(path, "image", &e))?;
    image::load_from_memory(&bytes)
        .map_err(|e| InputError::file(path, format!("cannot decode image: {e}")))
}

fn is_grey(img: &DynamicImage) -> bool {
    !img.color().has_color()
}

/// Decodes `files` into one set of `side`x`side` (or their own common size) images of `channels`.
fn to_set(
    files: &[(PathBuf, u8)],
    images: Vec<DynamicImage>,
    (rows, cols): (usize, usize),
    channels: usize,
) -> ImageSet {
    let mut pixels = Vec::with_capacity(files.len() * rows * cols * channels);
    for img in images {
        let img = if (img.height() as usize, img.width() as usize) == (rows, cols) {
            img
        } else {
            img.resize_exact(cols as u32, rows as u32, FilterType::Triangle)
        };
        if channels == 1 {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        } else {
            pixels.extend_from_slice(img.to_rgb8().as_raw());
        }
    }
    ImageSet {
        images: pixels,
        labels: files.iter().map(|(_, l)| *l).collect(),
        rows,
        cols,
        channels,
    }
}

/// The training set, the test set and the class names of the image folder `dir`; images resized to
/// `image_size` squares where given. The training images are put in a fixed shuffled order (seed 0),
/// so that the validation set (the last images) holds every class, as it does for MNIST's file.
pub fn load(
    dir: &Path,
    image_size: Option<usize>,
) -> Result<(ImageSet, ImageSet, Vec<String>), InputError> {
    let classes: Vec<String> = class_dirs(&dir.join("train"))?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if classes.len() > 256 {
        return Err(InputError::file(
            &dir.join("train"),
            format!("{} class folders; at most 256 are supported", classes.len()),
        ));
    }
    let mut train = listing(&dir.join("train"), &classes)?;
    train.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
    let test = listing(&dir.join("test"), &classes)?;
    let decode_all = |files: &[(PathBuf, u8)]| -> Result<Vec<DynamicImage>, InputError> {
        files.par_iter().map(|(p, _)| decode(p)).collect()
    };
    let (train_img, test_img) = (decode_all(&train)?, decode_all(&test)?);
    let size = match image_size {
        Some(s) => (s, s),
        None => {
            let first = &train_img[0];
            let want = (first.height(), first.width());
            let odd = train_img
                .iter()
                .zip(&train)
                .chain(test_img.iter().zip(&test))
                .find(|(img, _)| (img.height(), img.width()) != want);
            if let Some((img, (path, _))) = odd {
                return Err(InputError::file(
                    path,
                    format!(
                        "image is {}x{}, {} is {}x{}: give --image-size to resize them all to one size",
                        img.height(),
                        img.width(),
                        train[0].0.display(),
                        want.0,
                        want.1
                    ),
                ));
            }
            (want.0 as usize, want.1 as usize)
        }
    };
    let channels = if train_img.iter().chain(&test_img).all(is_grey) {
        1
    } else {
        3
    };
    Ok((
        to_set(&train, train_img, size, channels),
        to_set(&test, test_img, size, channels),
        classes,
    ))
}

/// Writes `set` as PNG files under `dir/<split>/<class name>/<index>.png` (for tests and examples).
pub fn write_split(
    dir: &Path,
    split: &str,
    set: &ImageSet,
    names: &[String],
) -> std::io::Result<()> {
    let per = set.pixels();
    for (i, (img, &label)) in set.images.chunks_exact(per).zip(&set.labels).enumerate() {
        let class_dir = dir.join(split).join(&names[label as usize]);
        std::fs::create_dir_all(&class_dir)?;
        let (w, h) = (set.cols as u32, set.rows as u32);
        let color = if set.channels == 1 {
            image::ExtendedColorType::L8
        } else {
            image::ExtendedColorType::Rgb8
        };
        image::save_buffer(class_dir.join(format!("{i:05}.png")), img, w, h, color)
            .map_err(std::io::Error::other)?;
    }
    Ok(())
}

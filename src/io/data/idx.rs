//! IDX data sets (MNIST, Fashion-MNIST, KMNIST, EMNIST: any image size, classes from the labels).
//!
//! The `mnist` crate reads only raw files from fixed names and panics on malformed input, so the IDX
//! parsing here is our own: gz or raw, every header field and length checked before use, and every
//! problem reported as one line naming the file.

use super::{read_maybe_gz, ImageSet};
use crate::error::InputError;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The standard names of the training pair of an IDX directory (each raw or with `.gz`).
pub const TRAIN_FILES: (&str, &str) = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
/// The standard names of the test pair.
pub const TEST_FILES: (&str, &str) = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");

/// Whether `dir` looks like an IDX directory: any of its four standard files is there.
pub fn detect(dir: &Path) -> bool {
    [TRAIN_FILES.0, TRAIN_FILES.1, TEST_FILES.0, TEST_FILES.1]
        .iter()
        .any(|stem| dir.join(stem).exists() || dir.join(format!("{stem}.gz")).exists())
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses an IDX3 u8 image file: returns (count, rows, cols, pixels).
pub fn parse_images(
    path: &Path,
    bytes: &[u8],
) -> Result<(usize, usize, usize, Vec<u8>), InputError> {
    if bytes.len() < 16 {
        return Err(InputError::file(
            path,
            format!(
                "truncated header: {} bytes, an IDX image file needs 16",
                bytes.len()
            ),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        return Err(InputError::file(
            path,
            format!("wrong magic number 0x{magic:08x}: not an IDX u8 image file (expected 0x{IMAGES_MAGIC:08x})"),
        ));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if rows == 0 || cols == 0 {
        return Err(InputError::file(
            path,
            format!("bad image dimensions {rows}x{cols}"),
        ));
    }
    let want = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| InputError::file(path, "header sizes overflow"))?;
    let have = bytes.len() - 16;
    if have != want {
        let what = if have < want { "truncated" } else { "too long" };
        return Err(InputError::file(
            path,
            format!(
                "{what}: header says {n} images of {rows}x{cols} ({want} bytes), file has {have}"
            ),
        ));
    }
    Ok((n, rows, cols, bytes[16..].to_vec()))
}

/// Parses an IDX1 u8 label file.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, InputError> {
    if bytes.len() < 8 {
        return Err(InputError::file(
            path,
            format!(
                "truncated header: {} bytes, an IDX label file needs 8",
                bytes.len()
            ),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        return Err(InputError::file(
            path,
            format!("wrong magic number 0x{magic:08x}: not an IDX u8 label file (expected 0x{LABELS_MAGIC:08x})"),
        ));
    }
    let n = be_u32(bytes, 4) as usize;
    let have = bytes.len() - 8;
    if have != n {
        let what = if have < n { "truncated" } else { "too long" };
        return Err(InputError::file(
            path,
            format!("{what}: header says {n} labels, file has {have}"),
        ));
    }
    Ok(bytes[8..].to_vec())
}

/// The file `stem` in `dir`, as `stem.gz` or raw `stem`.
pub fn find_file(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() {
        gz
    } else {
        dir.join(stem)
    }
}

/// The contents of the file `stem` in `dir` (raw or `.gz`) and the path they came from. Where both
/// are there, they must hold the same bytes (after decoding): otherwise which one was meant is not
/// ours to guess.
fn read_member(dir: &Path, stem: &str) -> Result<(PathBuf, Vec<u8>), InputError> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    match (gz.exists(), raw.exists()) {
        (true, true) => {
            let (a, b) = (read_maybe_gz(&gz)?, read_maybe_gz(&raw)?);
            if a != b {
                return Err(InputError::file(
                    dir,
                    format!(
                        "holds both {stem} and {stem}.gz, and they differ ({} and {} bytes after decoding): remove the one not meant",
                        b.len(),
                        a.len()
                    ),
                ));
            }
            Ok((gz, a))
        }
        (true, false) => Ok((gz.clone(), read_maybe_gz(&gz)?)),
        _ => Ok((raw.clone(), read_maybe_gz(&raw)?)),
    }
}

/// Loads one standard pair ([`TRAIN_FILES`] or [`TEST_FILES`]) of the IDX directory `dir`, any size.
pub fn load_set(dir: &Path, files: (&str, &str)) -> Result<ImageSet, InputError> {
    if !dir.is_dir() {
        return Err(InputError::file(dir, "data directory not found"));
    }
    let images = read_member(dir, files.0)?;
    let labels = read_member(dir, files.1)?;
    pair_from_bytes(images, labels)
}

/// Loads one image file and its label file, checking they agree.
pub fn load_pair(images: &Path, labels: &Path) -> Result<ImageSet, InputError> {
    pair_from_bytes(
        (images.to_path_buf(), read_maybe_gz(images)?),
        (labels.to_path_buf(), read_maybe_gz(labels)?),
    )
}

/// [`load_pair`] on contents already read, each with the path it came from.
pub(crate) fn pair_from_bytes(
    (images, image_bytes): (PathBuf, Vec<u8>),
    (labels, label_bytes): (PathBuf, Vec<u8>),
) -> Result<ImageSet, InputError> {
    let (images, labels) = (images.as_path(), labels.as_path());
    let (n, rows, cols, pixels) = parse_images(images, &image_bytes)?;
    let labels_v = parse_labels(labels, &label_bytes)?;
    if labels_v.len() != n {
        return Err(InputError::file(
            labels,
            format!(
                "{} labels but {} has {n} images",
                labels_v.len(),
                images.display()
            ),
        ));
    }
    if n == 0 {
        return Err(InputError::file(images, "holds no images"));
    }
    Ok(ImageSet {
        images: pixels,
        labels: labels_v,
        rows,
        cols,
        channels: 1,
    })
}

/// The test images (from `test_images`) have the training images' size, or an error naming the file.
pub(crate) fn same_size(
    train: &ImageSet,
    test: &ImageSet,
    test_images: &Path,
) -> Result<(), InputError> {
    if (test.rows, test.cols) == (train.rows, train.cols) {
        return Ok(());
    }
    Err(InputError::file(
        test_images,
        format!(
            "images are {}x{}, the training images are {}x{}",
            test.rows, test.cols, train.rows, train.cols
        ),
    ))
}

/// Loads the training and test sets of an IDX directory; the test images must have the training
/// images' size. Returns them with the test image file's path (for errors about the test set).
pub fn load(dir: &Path) -> Result<(ImageSet, ImageSet, PathBuf, PathBuf), InputError> {
    let train = load_set(dir, TRAIN_FILES)?;
    let test = load_set(dir, TEST_FILES)?;
    same_size(&train, &test, &find_file(dir, TEST_FILES.0))?;
    Ok((
        train,
        test,
        find_file(dir, TRAIN_FILES.1),
        find_file(dir, TEST_FILES.1),
    ))
}

/// The training labels (they number the classes) and the test set of an IDX directory, without
/// the training images, with the two label files' paths. Returns (training labels, test set,
/// training label file, test label file).
pub fn load_test(dir: &Path) -> Result<(Vec<u8>, ImageSet, PathBuf, PathBuf), InputError> {
    if !dir.is_dir() {
        return Err(InputError::file(dir, "data directory not found"));
    }
    let (train_path, bytes) = read_member(dir, TRAIN_FILES.1)?;
    let train_labels = parse_labels(&train_path, &bytes)?;
    if train_labels.is_empty() {
        return Err(InputError::file(&train_path, "holds no labels"));
    }
    let test = load_set(dir, TEST_FILES)?;
    Ok((train_labels, test, train_path, find_file(dir, TEST_FILES.1)))
}

/// Encodes a grey set as IDX image and label files (the inverse of the loader).
pub fn encode(set: &ImageSet) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(set.channels, 1, "IDX holds grey images");
    let n = set.len() as u32;
    let mut images = Vec::with_capacity(16 + set.images.len());
    for v in [IMAGES_MAGIC, n, set.rows as u32, set.cols as u32] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend_from_slice(&set.images);
    let mut labels = Vec::with_capacity(8 + set.labels.len());
    for v in [LABELS_MAGIC, n] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend_from_slice(&set.labels);
    (images, labels)
}

/// Writes `train` and `test` as the four standard raw IDX files in `dir` (for tests and small data sets).
pub fn write_dir(dir: &Path, train: &ImageSet, test: &ImageSet) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (set, prefix) in [(train, "train"), (test, "t10k")] {
        let (images, labels) = encode(set);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images)?;
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels)?;
    }
    Ok(())
}

//! IDX data sets (MNIST and anything in its format): loading, validation, the train/validation split,
//! and seeded epoch orders.
//!
//! The `mnist` crate reads only raw files from fixed names and panics on malformed input, so the IDX
//! parsing here is our own: gz or raw, every header field and length checked before use, and every
//! problem reported as one line naming the file.

use crate::error::InputError;
use flate2::read::GzDecoder;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Images per validation split, taken from the end of the training file (as the study did).
pub const DEFAULT_VALIDATION: usize = 5000;

/// Labelled images, row-major u8 pixels.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }
    /// The samples `start..end` as a new set.
    pub fn slice(&self, start: usize, end: usize) -> ImageSet {
        let p = self.pixels();
        ImageSet {
            images: self.images[start * p..end * p].to_vec(),
            labels: self.labels[start..end].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// Train, validation and test sets.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: ImageSet,
}

/// Reads a whole file, inflating it if it is gzip (by its magic bytes, not its name).
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, InputError> {
    let raw = std::fs::read(path).map_err(|e| InputError::unreadable(path, "file", &e))?;
    if raw.is_empty() {
        return Err(InputError::file(path, "empty file"));
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| InputError::file(path, format!("corrupt or truncated gzip data ({e})")))?;
        if out.is_empty() {
            return Err(InputError::file(
                path,
                "empty file (after gzip decompression)",
            ));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
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

/// Parses an IDX1 u8 label file, checking every label is below `classes`.
pub fn parse_labels(path: &Path, bytes: &[u8], classes: usize) -> Result<Vec<u8>, InputError> {
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
    let labels = bytes[8..].to_vec();
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(InputError::file(
            path,
            format!("label {l} at index {i} is out of range 0..{}", classes - 1),
        ));
    }
    Ok(labels)
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

/// The standard names of the training pair of an IDX directory (each raw or with `.gz`).
pub const TRAIN_FILES: (&str, &str) = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
/// The standard names of the test pair.
pub const TEST_FILES: (&str, &str) = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");

/// Loads one standard pair ([`TRAIN_FILES`] or [`TEST_FILES`]) of the IDX directory `dir`.
pub fn load_set(dir: &Path, files: (&str, &str)) -> Result<ImageSet, InputError> {
    if !dir.is_dir() {
        return Err(InputError::file(dir, "data directory not found"));
    }
    let images = read_member(dir, files.0)?;
    let labels = read_member(dir, files.1)?;
    pair_from_bytes(
        images,
        labels,
        crate::model::IMAGE_SIDE,
        crate::model::CLASSES,
    )
}

/// Loads one image file and its label file, checking they agree and the images are `side x side`.
pub fn load_pair(
    images: &Path,
    labels: &Path,
    side: usize,
    classes: usize,
) -> Result<ImageSet, InputError> {
    pair_from_bytes(
        (images.to_path_buf(), read_maybe_gz(images)?),
        (labels.to_path_buf(), read_maybe_gz(labels)?),
        side,
        classes,
    )
}

/// [`load_pair`] on contents already read, each with the path it came from.
fn pair_from_bytes(
    (images, image_bytes): (PathBuf, Vec<u8>),
    (labels, label_bytes): (PathBuf, Vec<u8>),
    side: usize,
    classes: usize,
) -> Result<ImageSet, InputError> {
    let (images, labels) = (images.as_path(), labels.as_path());
    let (n, rows, cols, pixels) = parse_images(images, &image_bytes)?;
    if rows != side || cols != side {
        return Err(InputError::file(
            images,
            format!("images are {rows}x{cols}, the models need {side}x{side}"),
        ));
    }
    let labels_v = parse_labels(labels, &label_bytes, classes)?;
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
    })
}

/// Loads the four standard IDX files from `dir` (gz or raw) and splits off the last `validation` training
/// images as the validation set.
pub fn load_dir(dir: &Path, validation: usize) -> Result<Splits, InputError> {
    let train = load_set(dir, TRAIN_FILES)?;
    let test = load_set(dir, TEST_FILES)?;
    split(train, test, validation).map_err(|msg| InputError::file(dir, msg))
}

/// Splits the last `validation` samples of `train` off as the validation set.
pub fn split(train: ImageSet, test: ImageSet, validation: usize) -> Result<Splits, String> {
    let n = train.len();
    if validation >= n {
        return Err(format!(
            "{n} training images: too few to hold out {validation} for validation"
        ));
    }
    let val = train.slice(n - validation, n);
    let train = train.slice(0, n - validation);
    Ok(Splits { train, val, test })
}

/// The order of the `n` training samples in `epoch`: a seeded shuffle, the same for the same (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mix = seed
        ^ (epoch as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix));
    order
}

/// The MNIST copy shipped in the repository: `data/mnist` under the working directory, else the one
/// beside the crate's sources.
pub fn default_data_dir() -> PathBuf {
    let local = PathBuf::from("data/mnist");
    if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
    }
}

/// Encodes a set as IDX image and label files (the inverse of the loader).
pub fn encode_idx(set: &ImageSet) -> (Vec<u8>, Vec<u8>) {
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
pub fn write_idx_dir(dir: &Path, train: &ImageSet, test: &ImageSet) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (set, prefix) in [(train, "train"), (test, "t10k")] {
        let (images, labels) = encode_idx(set);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images)?;
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels)?;
    }
    Ok(())
}

/// A small learnable synthetic set: each class is a bright horizontal bar at its own height, plus noise.
pub fn synthetic(n: usize, seed: u64) -> ImageSet {
    use rand::Rng;
    let side = crate::model::IMAGE_SIDE;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = vec![0u8; n * side * side];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let label = rng.random_range(0..crate::model::CLASSES);
        labels[i] = label as u8;
        let img = &mut images[i * side * side..(i + 1) * side * side];
        for p in img.iter_mut() {
            *p = rng.random_range(0..40);
        }
        let row = 2 + label * 2;
        for x in 4..24 {
            img[row * side + x] = 255;
        }
    }
    ImageSet {
        images,
        labels,
        rows: side,
        cols: side,
    }
}

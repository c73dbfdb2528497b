//! Data sets: IDX (MNIST and its kin), CIFAR-10/100 binary and image folders, detected from the
//! directory's contents; the train/validation split, the per-channel normalisation computed on the
//! training images, and seeded epoch orders.

pub mod cifar;
pub mod folder;
pub mod idx;

use crate::backend::PixelNorm;
use crate::error::InputError;
use crate::model::file::Shape;
use flate2::read::GzDecoder;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use idx::{find_file, load_pair, load_set, TEST_FILES, TRAIN_FILES};

/// Images per validation split, taken from the end of the training file (as the study did).
pub const DEFAULT_VALIDATION: usize = 5000;

/// Labelled images, row-major u8 pixels, channels interleaved (NHWC).
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    pub channels: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Bytes per image: rows x cols x channels.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols * self.channels
    }
    /// One image's shape, as a model's input.
    pub fn shape(&self) -> Shape {
        Shape::Image {
            h: self.rows,
            w: self.cols,
            c: self.channels,
        }
    }
    /// Classes as an IDX set counts them: the largest label plus one.
    pub fn classes(&self) -> usize {
        class_count(&self.labels)
    }
    /// The normalisation an IDX set of these images gets (see [`pixel_norm`]): for tools that take a
    /// bare set (bench, profile, gradcheck).
    pub fn norm(&self) -> PixelNorm {
        pixel_norm(DataFormat::Idx, self)
    }
    /// The samples `start..end` as a new set.
    pub fn slice(&self, start: usize, end: usize) -> ImageSet {
        let p = self.pixels();
        ImageSet {
            images: self.images[start * p..end * p].to_vec(),
            labels: self.labels[start..end].to_vec(),
            ..*self
        }
    }
}

/// The kind of directory a data set was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    Idx,
    Cifar(cifar::Cifar),
    ImageFolder,
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataFormat::Idx => "IDX",
            DataFormat::Cifar(cifar::Cifar::Ten) => "CIFAR-10",
            DataFormat::Cifar(cifar::Cifar::Hundred { coarse: false }) => "CIFAR-100 (fine labels)",
            DataFormat::Cifar(cifar::Cifar::Hundred { coarse: true }) => {
                "CIFAR-100 (coarse labels)"
            }
            DataFormat::ImageFolder => "image folder",
        })
    }
}

/// What a data set is, beyond its images: where it came from, its classes, and how its pixels are
/// normalised (what a checkpoint must carry to use a model on new images).
#[derive(Clone, Debug, PartialEq)]
pub struct DataInfo {
    pub format: DataFormat,
    pub class_names: Vec<String>,
    pub norm: PixelNorm,
}

impl DataInfo {
    /// MNIST's: IDX, the digits 0-9, the published normalisation.
    pub fn mnist() -> Self {
        DataInfo {
            format: DataFormat::Idx,
            class_names: (0..10).map(|c| c.to_string()).collect(),
            norm: PixelNorm::mnist(),
        }
    }
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }
}

/// How to read a data directory, beyond its path.
#[derive(Clone, Debug, Default)]
pub struct DataOptions {
    /// Resize an image folder's images to this square where they differ from it.
    pub image_size: Option<usize>,
    /// CIFAR-100: its 20 coarse labels instead of its 100 fine ones.
    pub coarse: bool,
}

/// Train, validation and test sets, and what they are.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: ImageSet,
    pub info: DataInfo,
}

impl Splits {
    /// One image's shape.
    pub fn shape(&self) -> Shape {
        self.train.shape()
    }
    /// One line for the user: `IDX, 28x28x1, 10 classes, 55000 train / 5000 validation / 10000 test`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {}, {} classes, {} train / {} validation / {} test",
            self.info.format,
            self.shape(),
            self.info.classes(),
            self.train.len(),
            self.val.len(),
            self.test.len()
        )
    }
}

/// Reads a whole file, inflating it if it is gzip (by its magic bytes, not its name).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, InputError> {
    let raw = std::fs::read(path).map_err(|e| InputError::unreadable(path, "file", &e))?;
    inflate_maybe_gz(path, raw)
}

/// A file's contents as read (from disk, or fetched by a web page), inflated if they are gzip (by
/// their magic bytes, not the name); `path` names the file in errors.
pub fn inflate_maybe_gz(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, InputError> {
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

/// An IDX data set from its four files' contents (gzip or raw; a web page fetches them), each with the
/// name it is known by for errors, in the order `train images, train labels, test images, test
/// labels`; the last `validation` training images held out, as [`load`] does.
pub fn idx_from_contents(
    files: [(&str, Vec<u8>); 4],
    validation: usize,
) -> Result<Splits, InputError> {
    let [train_images, train_labels, test_images, test_labels] = files.map(|(name, raw)| {
        let path = PathBuf::from(name);
        inflate_maybe_gz(&path, raw).map(|bytes| (path, bytes))
    });
    let train = idx::pair_from_bytes(train_images?, train_labels?)?;
    let (test_images, test_labels) = (test_images?, test_labels?);
    let test_name = test_images.0.clone();
    let test = idx::pair_from_bytes(test_images, test_labels)?;
    idx::same_size(&train, &test, &test_name)?;
    split(train, test, validation).map_err(|msg| InputError::file(&test_name, msg))
}

/// A data directory's format, found from what it holds; a CIFAR tarball extracted as it ships
/// (`DIR/cifar-10-batches-bin/`) is looked into. Returns the directory the files are in.
pub fn detect(dir: &Path, opts: &DataOptions) -> Result<(DataFormat, PathBuf), InputError> {
    if !dir.is_dir() {
        return Err(InputError::file(dir, "data directory not found"));
    }
    for d in [
        dir.to_path_buf(),
        dir.join("cifar-10-batches-bin"),
        dir.join("cifar-100-binary"),
    ] {
        if let Some(kind) = cifar::detect(&d, opts.coarse) {
            return Ok((DataFormat::Cifar(kind), d));
        }
    }
    if idx::detect(dir) {
        Ok((DataFormat::Idx, dir.to_path_buf()))
    } else if folder::detect(dir) {
        Ok((DataFormat::ImageFolder, dir.to_path_buf()))
    } else {
        Err(InputError::file(
            dir,
            "not a data set: expected IDX files (train-images-idx3-ubyte[.gz], ...), CIFAR binary files (data_batch_1.bin or train.bin, ...), or train/ and test/ folders of class folders of images",
        ))
    }
}

/// The format of `dir` and the directory that holds its files, with the options checked against it.
fn checked_format(dir: &Path, opts: &DataOptions) -> Result<(DataFormat, PathBuf), InputError> {
    let (format, dir) = detect(dir, opts)?;
    if opts.image_size.is_some() && format != DataFormat::ImageFolder {
        return Err(InputError::value(format!(
            "--image-size: {} is {format}, whose images all have one size already; it resizes image folders only",
            dir.display()
        )));
    }
    if opts.coarse && !matches!(format, DataFormat::Cifar(cifar::Cifar::Hundred { .. })) {
        return Err(InputError::value(format!(
            "--coarse-labels: {} is {format}; only CIFAR-100 has coarse labels",
            dir.display()
        )));
    }
    Ok((format, dir))
}

/// Classes as an IDX set counts them from its labels: the largest plus one.
fn class_count(labels: &[u8]) -> usize {
    labels.iter().max().map_or(0, |&m| m as usize + 1)
}

/// An IDX set's classes: 0 to its largest training label; every test label must be one of them.
fn idx_classes(
    train_labels: &[u8],
    test: &ImageSet,
    train_path: &Path,
    test_path: &Path,
) -> Result<Vec<String>, InputError> {
    let classes = class_count(train_labels);
    if let Some((i, &l)) = test
        .labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(InputError::file(
            test_path,
            format!(
                "label {l} at index {i} is out of range: the training labels ({}) are 0..{}",
                train_path.display(),
                classes.saturating_sub(1)
            ),
        ));
    }
    Ok((0..classes).map(|c| c.to_string()).collect())
}

/// The training and test sets of `dir` (any format) and their class names, before any split. The
/// test labels must name classes the training set has.
fn read_sets(
    dir: &Path,
    opts: &DataOptions,
) -> Result<(DataFormat, ImageSet, ImageSet, Vec<String>), InputError> {
    let (format, dir) = checked_format(dir, opts)?;
    match format {
        DataFormat::Idx => {
            let (train, test, train_labels, test_labels) = idx::load(&dir)?;
            let names = idx_classes(&train.labels, &test, &train_labels, &test_labels)?;
            Ok((format, train, test, names))
        }
        DataFormat::Cifar(kind) => {
            let (train, test, names) = cifar::load(&dir, kind)?;
            Ok((format, train, test, names))
        }
        DataFormat::ImageFolder => {
            let (train, test, names) = folder::load(&dir, opts.image_size)?;
            Ok((format, train, test, names))
        }
    }
}

/// Loads the data set in `dir` (IDX, CIFAR or an image folder) and splits off the last `validation`
/// training images as the validation set; the normalisation is computed on the rest.
pub fn load(dir: &Path, validation: usize, opts: &DataOptions) -> Result<Splits, InputError> {
    let (format, train, test, names) = read_sets(dir, opts)?;
    split_as(train, test, validation, format, names).map_err(|msg| InputError::file(dir, msg))
}

/// [`load`] with the default options.
pub fn load_dir(dir: &Path, validation: usize) -> Result<Splits, InputError> {
    load(dir, validation, &DataOptions::default())
}

/// The test set of `dir` and its format and class names (for `eval`, `predict`, `model --data`),
/// without decoding the training images where the format allows: IDX reads the training labels
/// only (they number the classes), CIFAR its test file only. An image folder is read whole: its
/// colours and size are decided over the training images too.
pub fn load_test(
    dir: &Path,
    opts: &DataOptions,
) -> Result<(ImageSet, DataFormat, Vec<String>), InputError> {
    let (format, dir) = checked_format(dir, opts)?;
    match format {
        DataFormat::Idx => {
            let (train_labels, test, train_path, test_path) = idx::load_test(&dir)?;
            let names = idx_classes(&train_labels, &test, &train_path, &test_path)?;
            Ok((test, format, names))
        }
        DataFormat::Cifar(kind) => {
            let (test, names) = cifar::load_test(&dir, kind)?;
            Ok((test, format, names))
        }
        DataFormat::ImageFolder => {
            let (_, test, names) = folder::load(&dir, opts.image_size)?;
            Ok((test, format, names))
        }
    }
}

/// Splits the last `validation` samples of `train` off as the validation set; an IDX-style set (classes
/// numbered by the largest training label).
pub fn split(train: ImageSet, test: ImageSet, validation: usize) -> Result<Splits, String> {
    let classes = train.classes();
    if let Some(&l) = test.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(format!(
            "test label {l} is not a class of the training set (0..{})",
            classes.saturating_sub(1)
        ));
    }
    let names = (0..classes).map(|c| c.to_string()).collect();
    split_as(train, test, validation, DataFormat::Idx, names)
}

fn split_as(
    train: ImageSet,
    test: ImageSet,
    validation: usize,
    format: DataFormat,
    class_names: Vec<String>,
) -> Result<Splits, String> {
    let n = train.len();
    if validation >= n {
        return Err(format!(
            "{n} training images: too few to hold out {validation} for validation"
        ));
    }
    let val = train.slice(n - validation, n);
    let train = train.slice(0, n - validation);
    let norm = pixel_norm(format, &train);
    Ok(Splits {
        train,
        val,
        test,
        info: DataInfo {
            format,
            class_names,
            norm,
        },
    })
}

/// Per-channel mean and standard deviation of `train`'s pixels scaled to [0, 1]. An IDX set of 28x28
/// grey images whose figures agree with MNIST's published 0.1307 and 0.3081 to within 5e-4 uses
/// those: they are what torchvision and the study normalise MNIST with, and computing them on our
/// 55,000 training images gives 0.13072 and 0.30820, which would move every study figure in its last
/// bits. Any other data set (Fashion-MNIST's mean is 0.286) gets its own figures.
pub fn pixel_norm(format: DataFormat, train: &ImageSet) -> PixelNorm {
    let c = train.channels.max(1);
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    for px in train.images.chunks_exact(c) {
        for (ch, &v) in px.iter().enumerate() {
            let v = v as f64 / 255.0;
            sum[ch] += v;
            sq[ch] += v * v;
        }
    }
    let count = (train.images.len() / c).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    // A constant channel has no spread; 1 keeps it finite (it carries no information anyway).
    let std: Vec<f64> = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q / count - m * m).max(0.0).sqrt())
        .map(|s| if s > 1e-6 { s } else { 1.0 })
        .collect();
    let mnist = PixelNorm::mnist();
    let mnist_like = format == DataFormat::Idx
        && train.shape() == (Shape::Image { h: 28, w: 28, c: 1 })
        && (mean[0] - mnist.mean[0] as f64).abs() < 5e-4
        && (std[0] - mnist.std[0] as f64).abs() < 5e-4;
    if mnist_like {
        mnist
    } else {
        PixelNorm {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: std.iter().map(|&s| s as f32).collect(),
        }
    }
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

pub use idx::{encode as encode_idx, write_dir as write_idx_dir};

/// A small learnable synthetic set of 28x28 grey images in 10 classes: each class is a bright
/// horizontal bar at its own height, plus noise.
pub fn synthetic(n: usize, seed: u64) -> ImageSet {
    synthetic_shaped(n, seed, (28, 28, 1), 10)
}

/// [`synthetic`] of any shape (rows, cols, channels) and up to `rows / 2 - 1` classes; in colour, the
/// bar is brightest in channel `class % channels`.
pub fn synthetic_shaped(
    n: usize,
    seed: u64,
    (rows, cols, channels): (usize, usize, usize),
    classes: usize,
) -> ImageSet {
    use rand::Rng;
    assert!(
        2 + 2 * classes <= rows + 1,
        "{classes} classes need taller images than {rows}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per = rows * cols * channels;
    let mut images = vec![0u8; n * per];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let label = rng.random_range(0..classes);
        labels[i] = label as u8;
        let img = &mut images[i * per..(i + 1) * per];
        for p in img.iter_mut() {
            *p = rng.random_range(0..40);
        }
        let row = 2 + label * 2;
        for x in cols / 7..cols * 6 / 7 {
            for c in 0..channels {
                let bright = if c == label % channels { 255 } else { 128 };
                img[(row * cols + x) * channels + c] = bright;
            }
        }
    }
    ImageSet {
        images,
        labels,
        rows,
        cols,
        channels,
    }
}

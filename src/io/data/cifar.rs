//! CIFAR-10 and CIFAR-100 in their binary form (the `-binary` tarballs, extracted): records of one
//! label byte (CIFAR-100: coarse then fine) and 3x32x32 pixels, channel-planar. Read into interleaved
//! (NHWC) images as every other set is.

use super::{read_maybe_gz, ImageSet};
use crate::error::InputError;
use std::path::{Path, PathBuf};

/// CIFAR images: 32x32, RGB.
pub const SIDE: usize = 32;
const PIXELS: usize = SIDE * SIDE * 3;

/// Which CIFAR, and for CIFAR-100 which of its two labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar {
    Ten,
    Hundred { coarse: bool },
}

impl Cifar {
    /// Label bytes before each record's pixels.
    fn label_bytes(self) -> usize {
        match self {
            Cifar::Ten => 1,
            Cifar::Hundred { .. } => 2,
        }
    }
    pub fn classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::Hundred { coarse: true } => 20,
            Cifar::Hundred { coarse: false } => 100,
        }
    }
    /// The training files and the test file, in order.
    fn files(self) -> (Vec<String>, &'static str) {
        match self {
            Cifar::Ten => (
                (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
                "test_batch.bin",
            ),
            Cifar::Hundred { .. } => (vec!["train.bin".into()], "test.bin"),
        }
    }
    /// The file of class names, one per line, in label order.
    fn names_file(self) -> &'static str {
        match self {
            Cifar::Ten => "batches.meta.txt",
            Cifar::Hundred { coarse: true } => "coarse_label_names.txt",
            Cifar::Hundred { coarse: false } => "fine_label_names.txt",
        }
    }
}

/// Which CIFAR `dir` holds, if any: CIFAR-10 by its `data_batch_1.bin` or `test_batch.bin`, CIFAR-100
/// by its `train.bin` or `test.bin` (`coarse` picks its label).
pub fn detect(dir: &Path, coarse: bool) -> Option<Cifar> {
    let has = |f: &str| dir.join(f).exists() || dir.join(format!("{f}.gz")).exists();
    if has("data_batch_1.bin") || has("test_batch.bin") {
        Some(Cifar::Ten)
    } else if has("train.bin") || has("test.bin") {
        Some(Cifar::Hundred { coarse })
    } else {
        None
    }
}

/// Parses one CIFAR binary file into interleaved images.
pub fn parse(path: &Path, bytes: &[u8], kind: Cifar) -> Result<ImageSet, InputError> {
    let record = kind.label_bytes() + PIXELS;
    if !bytes.len().is_multiple_of(record) {
        return Err(InputError::file(
            path,
            format!(
                "truncated or not a {} file: {} bytes is not a whole number of {record}-byte records ({} records and {} bytes over)",
                if kind == Cifar::Ten { "CIFAR-10" } else { "CIFAR-100" },
                bytes.len(),
                bytes.len() / record,
                bytes.len() % record
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut images = vec![0u8; n * PIXELS];
    let mut labels = Vec::with_capacity(n);
    for (i, (rec, img)) in bytes
        .chunks_exact(record)
        .zip(images.chunks_exact_mut(PIXELS))
        .enumerate()
    {
        let label = match kind {
            Cifar::Ten | Cifar::Hundred { coarse: true } => rec[0],
            Cifar::Hundred { coarse: false } => rec[1],
        };
        if label as usize >= kind.classes() {
            return Err(InputError::file(
                path,
                format!(
                    "record {i}: label {label} is out of range 0..{}",
                    kind.classes() - 1
                ),
            ));
        }
        labels.push(label);
        let planes = &rec[kind.label_bytes()..];
        let plane = SIDE * SIDE;
        for (p, px) in img.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = planes[c * plane + p];
            }
        }
    }
    Ok(ImageSet {
        images,
        labels,
        rows: SIDE,
        cols: SIDE,
        channels: 3,
    })
}

fn load_files(dir: &Path, names: &[String], kind: Cifar) -> Result<ImageSet, InputError> {
    let mut all: Option<ImageSet> = None;
    for name in names {
        let path = dir.join(name);
        let set = parse(&path, &read_maybe_gz(&path)?, kind)?;
        match &mut all {
            None => all = Some(set),
            Some(a) => {
                a.images.extend_from_slice(&set.images);
                a.labels.extend_from_slice(&set.labels);
            }
        }
    }
    let set = all.expect("at least one file");
    if set.is_empty() {
        return Err(InputError::file(&dir.join(&names[0]), "holds no images"));
    }
    Ok(set)
}

/// The training set, the test set and the class names of the CIFAR directory `dir`. Without the
/// names file the classes are named by number.
pub fn load(dir: &Path, kind: Cifar) -> Result<(ImageSet, ImageSet, Vec<String>), InputError> {
    let (train_files, _) = kind.files();
    let train = load_files(dir, &train_files, kind)?;
    let (test, names) = load_test(dir, kind)?;
    Ok((train, test, names))
}

/// The test set and the class names of the CIFAR directory `dir` (the training files unread).
pub fn load_test(dir: &Path, kind: Cifar) -> Result<(ImageSet, Vec<String>), InputError> {
    let (_, test_file) = kind.files();
    let test = load_files(dir, &[test_file.to_string()], kind)?;
    let names_path: PathBuf = dir.join(kind.names_file());
    let names = if names_path.exists() {
        let text = std::fs::read_to_string(&names_path)
            .map_err(|e| InputError::unreadable(&names_path, "file", &e))?;
        let names: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if names.len() != kind.classes() {
            return Err(InputError::file(
                &names_path,
                format!("{} class names, expected {}", names.len(), kind.classes()),
            ));
        }
        names
    } else {
        (0..kind.classes()).map(|i| i.to_string()).collect()
    };
    Ok((test, names))
}

/// Writes `set` (interleaved RGB 32x32) as one CIFAR binary file: the inverse of [`parse`]. For
/// CIFAR-100 the coarse label written is `label % 20`.
pub fn encode(set: &ImageSet, kind: Cifar) -> Vec<u8> {
    assert_eq!((set.rows, set.cols, set.channels), (SIDE, SIDE, 3));
    let plane = SIDE * SIDE;
    let mut out = Vec::with_capacity(set.len() * (kind.label_bytes() + PIXELS));
    for (img, &label) in set.images.chunks_exact(PIXELS).zip(&set.labels) {
        match kind {
            Cifar::Ten => out.push(label),
            Cifar::Hundred { .. } => out.extend_from_slice(&[label % 20, label]),
        }
        for c in 0..3 {
            out.extend((0..plane).map(|p| img[p * 3 + c]));
        }
    }
    out
}

/// Writes a CIFAR directory for `train` and `test` (CIFAR-10: the training set in five batch files).
pub fn write_dir(
    dir: &Path,
    train: &ImageSet,
    test: &ImageSet,
    kind: Cifar,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (train_files, test_file) = kind.files();
    let per = train.len().div_ceil(train_files.len());
    for (i, name) in train_files.iter().enumerate() {
        let (a, b) = ((i * per).min(train.len()), ((i + 1) * per).min(train.len()));
        std::fs::write(dir.join(name), encode(&train.slice(a, b), kind))?;
    }
    std::fs::write(dir.join(test_file), encode(test, kind))
}

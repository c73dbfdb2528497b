//! The IDX loader: every malformed file is an error naming the file and the problem (never a panic),
//! gz and raw files load the same, the train/validation split, and the seeded epoch orders.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use wgtrain::error::InputError;
use wgtrain::io::data::{self, ImageSet};

mod support;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// A directory holding a small valid data set (60 training and 20 test images, raw IDX).
fn valid_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::synthetic_dir(dir.path(), 60, 20, 1);
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// IDX image bytes with an arbitrary header.
fn images_bytes(magic: u32, n: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [magic, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend(std::iter::repeat_n(7u8, body));
    v
}

/// Loads `dir` expecting an error; checks it names `path` and says `problem`, and returns the message.
fn expect_error(dir: &Path, validation: usize, path: &Path, problem: &str) -> String {
    let err = match data::load_dir(dir, validation) {
        Ok(_) => panic!(
            "{}: loaded, expected an error about {problem}",
            path.display()
        ),
        Err(e) => e,
    };
    assert!(
        matches!(&err, InputError::File { path: p, .. } if p == path),
        "error should be about {}: {err:?}",
        path.display()
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message should name {}: {msg}",
        path.display()
    );
    assert!(
        msg.to_lowercase().contains(problem),
        "message should say '{problem}': {msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

fn replace(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn valid_directory_loads() {
    let dir = valid_dir();
    let s = data::load_dir(dir.path(), 10).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (50, 10, 20));
    assert_eq!((s.train.rows, s.train.cols), (28, 28));
    assert_eq!(s.train.images.len(), 50 * 784);
}

#[test]
fn missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    expect_error(&missing, 10, &missing, "not found");
}

#[test]
fn missing_file() {
    for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let dir = valid_dir();
        let path = dir.path().join(name);
        std::fs::remove_file(&path).unwrap();
        expect_error(dir.path(), 10, &path, "not found");
    }
}

#[test]
fn empty_file() {
    for name in [TRAIN_IMAGES, TEST_LABELS] {
        let dir = valid_dir();
        let path = replace(dir.path(), name, b"");
        expect_error(dir.path(), 10, &path, "empty");
    }
    // Also empty after decompression.
    let dir = valid_dir();
    std::fs::remove_file(dir.path().join(TRAIN_LABELS)).unwrap();
    let path = replace(dir.path(), &format!("{TRAIN_LABELS}.gz"), &gzip(b""));
    expect_error(dir.path(), 10, &path, "empty");
}

#[test]
fn truncated_header() {
    let dir = valid_dir();
    let path = replace(
        dir.path(),
        TRAIN_IMAGES,
        &images_bytes(0x803, 60, 28, 28, 0)[..10],
    );
    expect_error(dir.path(), 10, &path, "truncated header");
    let dir = valid_dir();
    let path = replace(dir.path(), TEST_LABELS, &[0, 0, 8, 1, 0]);
    expect_error(dir.path(), 10, &path, "truncated header");
}

#[test]
fn truncated_body() {
    let dir = valid_dir();
    let full = std::fs::read(dir.path().join(TRAIN_IMAGES)).unwrap();
    let path = replace(dir.path(), TRAIN_IMAGES, &full[..full.len() - 5]);
    let msg = expect_error(dir.path(), 10, &path, "truncated");
    assert!(msg.contains("60 images"), "{msg}");
    let dir = valid_dir();
    let full = std::fs::read(dir.path().join(TEST_LABELS)).unwrap();
    let path = replace(dir.path(), TEST_LABELS, &full[..full.len() - 1]);
    expect_error(dir.path(), 10, &path, "truncated");
}

#[test]
fn too_long_body() {
    let dir = valid_dir();
    let mut full = std::fs::read(dir.path().join(TRAIN_LABELS)).unwrap();
    full.push(3);
    let path = replace(dir.path(), TRAIN_LABELS, &full);
    expect_error(dir.path(), 10, &path, "too long");
}

#[test]
fn wrong_magic() {
    // A label file where the images should be, and the other way round.
    let dir = valid_dir();
    let labels = std::fs::read(dir.path().join(TRAIN_LABELS)).unwrap();
    let images = std::fs::read(dir.path().join(TRAIN_IMAGES)).unwrap();
    let path = replace(dir.path(), TRAIN_IMAGES, &labels);
    expect_error(dir.path(), 10, &path, "wrong magic number 0x00000801");
    let dir = valid_dir();
    let path = replace(dir.path(), TRAIN_LABELS, &images);
    expect_error(dir.path(), 10, &path, "wrong magic number 0x00000803");
    // Not IDX at all.
    let dir = valid_dir();
    let path = replace(dir.path(), TEST_IMAGES, b"<html>not found</html>");
    expect_error(dir.path(), 10, &path, "wrong magic");
}

#[test]
fn wrong_dimensions() {
    // Any size loads; the test images must have the training images' size.
    let dir = valid_dir();
    replace(
        dir.path(),
        TRAIN_IMAGES,
        &images_bytes(0x803, 60, 20, 20, 60 * 400),
    );
    let path = dir.path().join(TEST_IMAGES);
    let msg = expect_error(dir.path(), 10, &path, "28x28");
    assert!(msg.contains("the training images are 20x20"), "{msg}");
    let dir = valid_dir();
    let path = replace(dir.path(), TEST_IMAGES, &images_bytes(0x803, 20, 0, 28, 0));
    expect_error(dir.path(), 10, &path, "dimensions");
    // A header whose sizes overflow must not allocate or panic.
    let dir = valid_dir();
    let path = replace(
        dir.path(),
        TEST_IMAGES,
        &images_bytes(0x803, u32::MAX, u32::MAX, u32::MAX, 4),
    );
    expect_error(dir.path(), 10, &path, "overflow");
}

#[test]
fn any_image_size_and_class_count_loads() {
    // KMNIST-, EMNIST-like sets: other sizes, more classes (the count comes from the labels).
    let dir = tempfile::tempdir().unwrap();
    let train = data::synthetic_shaped(60, 1, (20, 24, 1), 9);
    let test = data::synthetic_shaped(20, 2, (20, 24, 1), 9);
    data::write_idx_dir(dir.path(), &train, &test).unwrap();
    let s = data::load_dir(dir.path(), 10).unwrap();
    assert_eq!((s.train.rows, s.train.cols, s.train.channels), (20, 24, 1));
    assert_eq!(s.info.classes(), train.classes());
    assert_eq!(s.info.format.to_string(), "IDX");
    assert_eq!(s.train.images, train.images[..50 * 480]);
}

#[test]
fn label_out_of_range() {
    // A training label beyond 9 is one more class; a test label no training image has is an error.
    let dir = valid_dir();
    let mut labels = std::fs::read(dir.path().join(TRAIN_LABELS)).unwrap();
    labels[8 + 17] = 10;
    replace(dir.path(), TRAIN_LABELS, &labels);
    assert_eq!(data::load_dir(dir.path(), 10).unwrap().info.classes(), 11);
    let dir = valid_dir();
    let mut labels = std::fs::read(dir.path().join(TEST_LABELS)).unwrap();
    labels[8] = 255;
    let path = replace(dir.path(), TEST_LABELS, &labels);
    let msg = expect_error(
        dir.path(),
        10,
        &path,
        "label 255 at index 0 is out of range",
    );
    assert!(msg.contains("0..9"), "{msg}");
}

#[test]
fn image_label_count_mismatch() {
    let dir = valid_dir();
    let test = data::synthetic(20, 2);
    let short = ImageSet {
        labels: test.labels[..19].to_vec(),
        ..test.clone()
    };
    let (_, labels) = data::encode_idx(&short);
    let path = replace(dir.path(), TEST_LABELS, &labels);
    let msg = expect_error(dir.path(), 10, &path, "19 labels");
    assert!(msg.contains("20 images"), "{msg}");
}

#[test]
fn corrupt_gzip() {
    let dir = valid_dir();
    let raw = std::fs::read(dir.path().join(TRAIN_IMAGES)).unwrap();
    std::fs::remove_file(dir.path().join(TRAIN_IMAGES)).unwrap();
    let gz = gzip(&raw);
    let name = format!("{TRAIN_IMAGES}.gz");
    // Cut short.
    let path = replace(dir.path(), &name, &gz[..gz.len() / 2]);
    expect_error(dir.path(), 10, &path, "gzip");
    // Garbage after a gzip magic.
    let mut garbage = vec![0x1f, 0x8b];
    garbage.extend(std::iter::repeat_n(0xAB, 100));
    let path = replace(dir.path(), &name, &garbage);
    expect_error(dir.path(), 10, &path, "gzip");
    // A damaged checksum (the gzip trailer's CRC32).
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xFF;
    let path = replace(dir.path(), &name, &bad_crc);
    expect_error(dir.path(), 10, &path, "gzip");
}

#[test]
fn gz_and_raw_load_identically() {
    let raw_dir = valid_dir();
    let gz_dir = tempfile::tempdir().unwrap();
    for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let bytes = std::fs::read(raw_dir.path().join(name)).unwrap();
        std::fs::write(gz_dir.path().join(format!("{name}.gz")), gzip(&bytes)).unwrap();
    }
    let a = data::load_dir(raw_dir.path(), 10).unwrap();
    let b = data::load_dir(gz_dir.path(), 10).unwrap();
    for (x, y) in [(&a.train, &b.train), (&a.val, &b.val), (&a.test, &b.test)] {
        assert_eq!(x.images, y.images);
        assert_eq!(x.labels, y.labels);
        assert_eq!((x.rows, x.cols), (y.rows, y.cols));
    }
    // And they are what was written.
    let train = data::synthetic(60, 1);
    assert_eq!(a.train.images, train.images[..50 * 784]);
    assert_eq!(a.val.labels, train.labels[50..]);
    assert_eq!(a.test.labels, data::synthetic(20, 2).labels);
}

#[test]
fn split_takes_the_last_images_for_validation() {
    let train = data::synthetic(100, 3);
    let test = data::synthetic(10, 4);
    let s = data::split(train.clone(), test.clone(), 30).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (70, 30, 10));
    // In order, and together they are the whole training file.
    let mut images = s.train.images.clone();
    images.extend_from_slice(&s.val.images);
    let mut labels = s.train.labels.clone();
    labels.extend_from_slice(&s.val.labels);
    assert_eq!(images, train.images);
    assert_eq!(labels, train.labels);
    assert_eq!(s.val.labels, train.labels[70..]);
    assert_eq!(s.test.labels, test.labels);
    // Holding out everything (or more) is an error, through load_dir naming the directory.
    assert!(data::split(train.clone(), test.clone(), 100).is_err());
    let dir = valid_dir();
    let msg = expect_error(dir.path(), 60, dir.path(), "too few");
    assert!(msg.contains("60"), "{msg}");
    // Zero validation images is allowed.
    let s = data::split(train, test, 0).unwrap();
    assert_eq!((s.train.len(), s.val.len()), (100, 0));
}

#[test]
fn epoch_order_is_a_seeded_permutation() {
    let n = 1000;
    let a = data::epoch_order(n, 7, 0);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>(), "a permutation");
    assert_ne!(a, (0..n as u32).collect::<Vec<_>>(), "shuffled");
    assert_eq!(
        a,
        data::epoch_order(n, 7, 0),
        "same seed and epoch, same order"
    );
    assert_ne!(
        a,
        data::epoch_order(n, 7, 1),
        "another epoch, another order"
    );
    assert_ne!(a, data::epoch_order(n, 8, 0), "another seed, another order");
    assert_ne!(
        data::epoch_order(n, 7, 1),
        data::epoch_order(n, 6, 0),
        "(seed, epoch) pairs do not collide trivially"
    );
    for epoch in 0..5 {
        let mut o = data::epoch_order(n, 3, epoch);
        o.sort_unstable();
        assert_eq!(o.len(), n);
        assert!(o.windows(2).all(|w| w[0] + 1 == w[1]));
    }
}

/// The real MNIST shipped in data/mnist: the study's 55,000 / 5,000 / 10,000 split and the known
/// label counts (from data/mnist's README).
#[test]
fn real_mnist() {
    let dir = data::default_data_dir();
    let s = data::load_dir(&dir, data::DEFAULT_VALIDATION).unwrap();
    assert_eq!(
        (s.train.len(), s.val.len(), s.test.len()),
        (55000, 5000, 10000)
    );
    assert_eq!((s.train.rows, s.train.cols), (28, 28));
    let counts = |labels: &[&[u8]]| {
        let mut c = [0usize; 10];
        for l in labels.iter().flat_map(|l| l.iter()) {
            c[*l as usize] += 1;
        }
        c
    };
    assert_eq!(
        counts(&[&s.test.labels]),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(
        counts(&[&s.train.labels, &s.val.labels]),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let mean = s
        .train
        .images
        .iter()
        .chain(&s.val.images)
        .map(|&p| p as f64)
        .sum::<f64>()
        / (60000.0 * 784.0 * 255.0);
    assert!((mean - 0.1307).abs() < 1e-4, "mean pixel {mean}");
    // Computed on the 55,000 training images: 0.13072 and 0.30820, which round to the published
    // constants MNIST keeps (so the study's figures stay bit for bit).
    assert_eq!(s.info.norm, wgtrain::backend::PixelNorm::mnist());
    assert_eq!(s.info.format.to_string(), "IDX");
    assert_eq!(
        s.info.class_names,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
}

/// What a web page does (issue 21): the four files' contents as fetched, gzip decoded in memory, give
/// exactly the splits `load_dir` reads from disk; a corrupt file is an error naming it.
#[test]
fn idx_from_contents_equals_loading_the_directory() {
    let dir = data::default_data_dir();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    let from_disk = data::load_dir(&dir, 5000).unwrap();
    let fetched = data::idx_from_contents(names.map(|n| (n, read(n))), 5000).unwrap();
    for (a, b) in [
        (&fetched.train, &from_disk.train),
        (&fetched.val, &from_disk.val),
        (&fetched.test, &from_disk.test),
    ] {
        assert_eq!((&a.images, &a.labels), (&b.images, &b.labels));
    }
    assert_eq!(fetched.info.norm, from_disk.info.norm);
    assert_eq!(fetched.info.class_names, from_disk.info.class_names);
    assert_eq!(fetched.describe(), from_disk.describe());

    let mut files = names.map(|n| (n, read(n)));
    files[2].1.truncate(1000);
    let err = data::idx_from_contents(files, 5000)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t10k-images-idx3-ubyte.gz: corrupt or truncated gzip data"),
        "{err}"
    );
}

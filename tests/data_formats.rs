//! Data sets beyond MNIST: CIFAR-10 and CIFAR-100 binary directories, image folders, the format
//! detected from the directory, per-channel normalisation computed on the training images, and every
//! malformed file a one-line error naming it. Sets are generated here (the repository ships MNIST only).

use std::path::Path;
use wgtrain::backend::PixelNorm;
use wgtrain::error::InputError;
use wgtrain::io::data::cifar::{self, Cifar};
use wgtrain::io::data::{self, folder, DataOptions, ImageSet};

mod support;
use support::{assert_input_error, ok, wgtrain};

fn rgb(n: usize, seed: u64) -> ImageSet {
    data::synthetic_shaped(n, seed, (32, 32, 3), 10)
}

fn names() -> Vec<String> {
    (0..10).map(|c| format!("c{c}")).collect()
}

/// A CIFAR-10 directory of 60 training and 20 test images.
fn cifar10_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cifar::write_dir(dir.path(), &rgb(60, 1), &rgb(20, 2), Cifar::Ten).unwrap();
    dir
}

fn load(dir: &Path, val: usize, opts: &DataOptions) -> Result<data::Splits, InputError> {
    data::load(dir, val, opts)
}

/// `load` must fail with a one-line error about `path` saying `problem`.
fn expect_error(dir: &Path, opts: &DataOptions, path: &Path, problem: &str) -> String {
    let err = match load(dir, 10, opts) {
        Ok(_) => panic!("{}: loaded, expected '{problem}'", dir.display()),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "should name {}: {msg}",
        path.display()
    );
    assert!(msg.contains(problem), "should say '{problem}': {msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn cifar_records_are_read_channel_planar_into_interleaved_pixels() {
    // One hand-made CIFAR-10 record, independent of our encoder: label 7, the red plane all 1 except
    // pixel 5 (200), green all 2, blue all 3.
    let dir = tempfile::tempdir().unwrap();
    let mut rec = vec![7u8];
    let mut red = vec![1u8; 1024];
    red[5] = 200;
    rec.extend(red);
    rec.extend([2u8; 1024]);
    rec.extend([3u8; 1024]);
    let set = cifar::parse(&dir.path().join("x.bin"), &rec, Cifar::Ten).unwrap();
    assert_eq!(
        (set.rows, set.cols, set.channels, set.labels.clone()),
        (32, 32, 3, vec![7])
    );
    assert_eq!(&set.images[..6], &[1, 2, 3, 1, 2, 3]);
    assert_eq!(&set.images[15..18], &[200, 2, 3]);
    // CIFAR-100: coarse then fine label.
    let mut rec100 = vec![4u8, 93];
    rec100.extend(&rec[1..]);
    let fine = cifar::parse(
        Path::new("t.bin"),
        &rec100,
        Cifar::Hundred { coarse: false },
    )
    .unwrap();
    let coarse =
        cifar::parse(Path::new("t.bin"), &rec100, Cifar::Hundred { coarse: true }).unwrap();
    assert_eq!((fine.labels[0], coarse.labels[0]), (93, 4));
    assert_eq!(fine.images, set.images);
}

#[test]
fn cifar10_directory_loads_with_names_and_its_own_normalisation() {
    let dir = cifar10_dir();
    let (train, test) = (rgb(60, 1), rgb(20, 2));
    let s = load(dir.path(), 10, &DataOptions::default()).unwrap();
    assert_eq!(s.info.format.to_string(), "CIFAR-10");
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (50, 10, 20));
    assert_eq!(s.shape().to_string(), "32x32x3");
    assert_eq!(s.train.images, train.images[..50 * 3072]);
    assert_eq!(s.val.labels, train.labels[50..]);
    assert_eq!(s.test.images, test.images);
    assert_eq!(
        s.info.class_names,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    // Per channel, on the 50 training images only (not the validation or test images).
    let (mut sum, mut sq) = ([0f64; 3], [0f64; 3]);
    for (i, &p) in s.train.images.iter().enumerate() {
        let v = p as f64 / 255.0;
        sum[i % 3] += v;
        sq[i % 3] += v * v;
    }
    let n = (50 * 1024) as f64;
    for c in 0..3 {
        let mean = sum[c] / n;
        let std = (sq[c] / n - mean * mean).sqrt();
        assert_eq!(s.info.norm.mean[c], mean as f32, "channel {c}");
        assert_eq!(s.info.norm.std[c], std as f32, "channel {c}");
    }
    assert_ne!(
        s.info.norm.mean[0], s.info.norm.mean[1],
        "channels differ in this set"
    );
    // The names file, where the directory has it; the tarball's nesting is looked into.
    let nested = tempfile::tempdir().unwrap();
    let inner = nested.path().join("cifar-10-batches-bin");
    cifar::write_dir(&inner, &train, &test, Cifar::Ten).unwrap();
    std::fs::write(inner.join("batches.meta.txt"), names().join("\n") + "\n\n").unwrap();
    let s = load(nested.path(), 10, &DataOptions::default()).unwrap();
    assert_eq!(s.info.class_names, names());
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    let train = data::synthetic_shaped(40, 1, (32, 32, 3), 10);
    let mut train100 = train.clone();
    for (i, l) in train100.labels.iter_mut().enumerate() {
        *l = (*l as usize * 10 + i % 10) as u8; // fine labels 0..99
    }
    cifar::write_dir(
        dir.path(),
        &train100,
        &train100.slice(0, 10),
        Cifar::Hundred { coarse: false },
    )
    .unwrap();
    let fine = load(dir.path(), 5, &DataOptions::default()).unwrap();
    assert_eq!(fine.info.format.to_string(), "CIFAR-100 (fine labels)");
    assert_eq!(fine.info.classes(), 100);
    assert_eq!(fine.train.labels, train100.labels[..35]);
    let opts = DataOptions {
        coarse: true,
        ..Default::default()
    };
    let coarse = load(dir.path(), 5, &opts).unwrap();
    assert_eq!(coarse.info.classes(), 20);
    let want: Vec<u8> = train100.labels[..35].iter().map(|l| l % 20).collect();
    assert_eq!(coarse.train.labels, want);
    // --coarse-labels on anything else says why.
    let msg = load(cifar10_dir().path(), 5, &opts)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("only CIFAR-100 has coarse labels"), "{msg}");
}

#[test]
fn bad_cifar_files_are_one_line_errors_naming_them() {
    let opts = DataOptions::default();
    // Truncated: not a whole number of records.
    let dir = cifar10_dir();
    let path = dir.path().join("data_batch_3.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    expect_error(
        dir.path(),
        &opts,
        &path,
        "not a whole number of 3073-byte records",
    );
    // A label beyond the class count.
    let dir = cifar10_dir();
    let path = dir.path().join("test_batch.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3073 * 4] = 10;
    std::fs::write(&path, &bytes).unwrap();
    expect_error(
        dir.path(),
        &opts,
        &path,
        "record 4: label 10 is out of range 0..9",
    );
    // A missing batch, an empty one, a names file of the wrong length.
    let dir = cifar10_dir();
    let path = dir.path().join("data_batch_5.bin");
    std::fs::remove_file(&path).unwrap();
    expect_error(dir.path(), &opts, &path, "not found");
    let dir = cifar10_dir();
    let path = dir.path().join("data_batch_2.bin");
    std::fs::write(&path, b"").unwrap();
    expect_error(dir.path(), &opts, &path, "empty");
    let dir = cifar10_dir();
    let path = dir.path().join("batches.meta.txt");
    std::fs::write(&path, "cat\ndog\n").unwrap();
    expect_error(dir.path(), &opts, &path, "2 class names, expected 10");
}

/// An image folder of `train` and `test` under `dir`, classes named by [`names`].
fn folder_dir(train: &ImageSet, test: &ImageSet) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    folder::write_split(dir.path(), "train", train, &names()).unwrap();
    folder::write_split(dir.path(), "test", test, &names()).unwrap();
    dir
}

/// The (label, pixels) pairs of a set, sorted: its content regardless of order.
fn content(set: &ImageSet) -> Vec<(u8, Vec<u8>)> {
    let mut v: Vec<(u8, Vec<u8>)> = set
        .images
        .chunks(set.pixels())
        .zip(&set.labels)
        .map(|(img, &l)| (l, img.to_vec()))
        .collect();
    v.sort();
    v
}

#[test]
fn image_folders_load_rgb_and_grey_with_classes_from_folder_names() {
    let (train, test) = (rgb(40, 1), rgb(12, 2));
    let dir = folder_dir(&train, &test);
    // A stray file is skipped, as are hidden folders.
    std::fs::write(
        dir.path()
            .join(format!("train/c{}/README.txt", train.labels[0])),
        "notes",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("train/.cache")).unwrap();
    let s = load(dir.path(), 0, &DataOptions::default()).unwrap();
    assert_eq!(s.info.format.to_string(), "image folder");
    assert_eq!(s.info.class_names, names());
    assert_eq!(s.shape().to_string(), "32x32x3");
    assert_eq!(content(&s.train), content(&train), "PNG is lossless");
    assert_eq!(content(&s.test), content(&test));
    // The training images are shuffled (seed 0) so that a validation split holds every class.
    let s = load(dir.path(), 20, &DataOptions::default()).unwrap();
    let mut val_classes = s.val.labels.clone();
    val_classes.sort();
    val_classes.dedup();
    assert!(val_classes.len() >= 5, "validation classes {val_classes:?}");
    assert_eq!(
        s.train.labels,
        load(dir.path(), 20, &DataOptions::default())
            .unwrap()
            .train
            .labels
    );
    // Grey PNGs make a grey set.
    let grey = data::synthetic_shaped(20, 3, (24, 24, 1), 10);
    let dir = folder_dir(&grey, &grey.slice(0, 5));
    let s = load(dir.path(), 0, &DataOptions::default()).unwrap();
    assert_eq!(s.shape().to_string(), "24x24x1");
    // Classes are the folders there are: a class with no image has no folder, and the labels of the
    // later ones close up; by name, every image is where it was.
    let named = |set: &ImageSet, names: &[String]| {
        let mut v: Vec<(String, Vec<u8>)> = set
            .images
            .chunks(set.pixels())
            .zip(&set.labels)
            .map(|(img, &l)| (names[l as usize].clone(), img.to_vec()))
            .collect();
        v.sort();
        v
    };
    assert!(named(&s.train, &s.info.class_names) == named(&grey, &names()));
}

#[test]
fn image_folders_of_mixed_sizes_need_image_size() {
    let (train, test) = (rgb(20, 1), rgb(6, 2));
    let dir = folder_dir(&train, &test);
    let odd = dir.path().join(format!("test/c{}/odd.png", test.labels[0]));
    image::RgbImage::from_pixel(40, 20, image::Rgb([9, 9, 9]))
        .save(&odd)
        .unwrap();
    let msg = expect_error(dir.path(), &DataOptions::default(), &odd, "20x40");
    assert!(msg.contains("--image-size"), "{msg}");
    let opts = DataOptions {
        image_size: Some(16),
        ..Default::default()
    };
    let s = load(dir.path(), 0, &opts).unwrap();
    assert_eq!(s.shape().to_string(), "16x16x3");
    assert_eq!(s.test.len(), 7);
    // --image-size is for image folders only.
    let msg = load(cifar10_dir().path(), 0, &opts)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("resizes image folders only"), "{msg}");
}

#[test]
fn bad_image_folders_are_one_line_errors_naming_the_file() {
    let (train, test) = (rgb(20, 1), rgb(6, 2));
    let opts = DataOptions::default();
    let dir = folder_dir(&train, &test);
    let bad = dir
        .path()
        .join(format!("train/c{}/broken.png", train.labels[1]));
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    expect_error(dir.path(), &opts, &bad, "cannot decode image");
    let dir = folder_dir(&train, &test);
    let bad = dir
        .path()
        .join(format!("train/c{}/cut.jpg", train.labels[2]));
    std::fs::write(&bad, [0xff, 0xd8, 0xff, 0xe0, 0, 16]).unwrap();
    expect_error(dir.path(), &opts, &bad, "cannot decode image");
    // A test class the training folder lacks, an empty class folder.
    let dir = folder_dir(&train, &test);
    let extra = dir.path().join("test/zebra");
    std::fs::create_dir_all(&extra).unwrap();
    let some_png = dir
        .path()
        .join(format!("test/c{}/00000.png", test.labels[0]));
    std::fs::copy(some_png, extra.join("z.png")).unwrap();
    expect_error(dir.path(), &opts, &extra, "class 'zebra' has no folder in");
    let dir = folder_dir(&train, &test);
    let empty = dir.path().join(format!("train/c{}", train.labels[3]));
    for f in empty.read_dir().unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    expect_error(dir.path(), &opts, &empty, "holds no .png or .jpg images");
}

#[test]
fn a_directory_of_no_known_format_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let msg = expect_error(
        dir.path(),
        &DataOptions::default(),
        dir.path(),
        "not a data set",
    );
    for want in ["IDX", "CIFAR", "train/ and test/"] {
        assert!(msg.contains(want), "{want}: {msg}");
    }
}

#[test]
fn only_mnist_itself_keeps_the_published_normalisation() {
    // A grey 28x28 IDX set with other statistics (Fashion-MNIST's mean is 0.286) gets its own.
    let set = data::synthetic(200, 1);
    let s = data::split(set.clone(), data::synthetic(20, 2), 20).unwrap();
    assert_ne!(s.info.norm, PixelNorm::mnist());
    let mean = s
        .train
        .images
        .iter()
        .map(|&p| p as f64 / 255.0)
        .sum::<f64>()
        / s.train.images.len() as f64;
    assert_eq!(s.info.norm.mean, vec![mean as f32]);
}

/// The whole path from the command line: train on a CIFAR-format set (the loss falls), the checkpoint
/// carries the data, eval and predict need nothing else, and other data is refused by name.
#[test]
fn cli_trains_evaluates_and_predicts_on_cifar_format_data() {
    let tmp = tempfile::tempdir().unwrap();
    let cifar = tmp.path().join("cifar");
    cifar::write_dir(&cifar, &rgb(400, 1), &rgb(60, 2), Cifar::Ten).unwrap();
    std::fs::write(cifar.join("batches.meta.txt"), names().join("\n")).unwrap();
    let (c, ck, out) = (
        cifar.to_str().unwrap(),
        tmp.path().join("ck.safetensors"),
        tmp.path().join("run"),
    );
    let run = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        c,
        "--val-size",
        "40",
        "--model",
        "lenet5",
        "--batch",
        "20",
        "--steps",
        "36",
        "--log-every",
        "1",
        "--save",
        ck.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(run.clone());
    let stderr = support::text(&run.stderr);
    assert!(
        stderr.contains("CIFAR-10, 32x32x3, 10 classes, 360 train / 40 validation / 60 test"),
        "{stderr}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    assert!(
        metrics.contains("\"data_format\": \"CIFAR-10\""),
        "{metrics}"
    );
    assert!(metrics.contains("\"input\": \"32x32x3\""), "{metrics}");
    let losses: Vec<f64> = std::fs::read_to_string(out.join("losses.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let first: f64 = losses[..6].iter().sum::<f64>() / 6.0;
    let last: f64 = losses[losses.len() - 6..].iter().sum::<f64>() / 6.0;
    assert!(
        last < 0.5 * first,
        "loss should fall: first {first}, last {last}"
    );
    let ck = ck.to_str().unwrap();
    let report = ok(wgtrain(&[
        "eval",
        "--backend",
        "cpu",
        "--checkpoint",
        ck,
        "--data",
        c,
    ]));
    assert!(report.contains("test: 60 images"), "{report}");
    assert!(report.contains("classes: 0 c0, 1 c1"), "{report}");
    // The default data (MNIST) is not what it was trained on.
    assert_input_error(
        &wgtrain(&["eval", "--backend", "cpu", "--checkpoint", ck]),
        &[
            "data/mnist",
            "28x28x1",
            "trained on CIFAR-10 images of 32x32x3",
        ],
    );
    // predict: a colour PNG of another size is resized; classes are named.
    let img = tmp.path().join("bar.png");
    let one = rgb(1, 9);
    image::RgbImage::from_raw(32, 32, one.images.clone())
        .unwrap()
        .save(&img)
        .unwrap();
    let big = tmp.path().join("big.png");
    image::imageops::resize(
        &image::open(&img).unwrap().to_rgb8(),
        64,
        64,
        image::imageops::FilterType::Nearest,
    )
    .save(&big)
    .unwrap();
    let pred = ok(wgtrain(&[
        "predict",
        "--backend",
        "cpu",
        "--checkpoint",
        ck,
        img.to_str().unwrap(),
        big.to_str().unwrap(),
    ]));
    let want = format!("c{} (", one.labels[0]);
    for line in pred.lines() {
        assert!(
            line.split(": ").nth(1).unwrap().starts_with(&want),
            "{want}: {pred}"
        );
    }
    // Resuming on other data is refused, naming both.
    let other = tmp.path().join("other");
    cifar::write_dir(&other, &rgb(400, 5), &rgb(60, 2), Cifar::Ten).unwrap();
    assert_input_error(
        &wgtrain(&[
            "train",
            "--backend",
            "cpu",
            "--data",
            other.to_str().unwrap(),
            "--val-size",
            "40",
            "--resume",
            ck,
            "--steps",
            "40",
        ]),
        &[
            "cannot resume",
            "training data of classes c0, c1, c2",
            "classes 0, 1, 2",
        ],
    );
}

#[test]
fn checkpoints_from_before_the_data_record_load_as_mnist() {
    use wgtrain::io::checkpoint::Checkpoint;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("d");
    support::synthetic_dir(&data_dir, 300, 100, 1);
    let ck = tmp.path().join("ck.safetensors");
    let mut args = support::tiny_train(data_dir.to_str().unwrap());
    args.extend(["--steps", "3", "--save", ck.to_str().unwrap()]);
    ok(wgtrain(&args));
    // Strip the `data` record, as a checkpoint of an older wgtrain has none.
    let mut c = Checkpoint::load(&ck).unwrap();
    assert!(c.meta.data.is_some());
    c.meta.data = None;
    c.save(&ck).unwrap();
    let c = Checkpoint::load(&ck).unwrap();
    assert_eq!(c.meta.data().norm, PixelNorm::mnist());
    assert_eq!(c.spec().unwrap().input().to_string(), "28x28x1");
    ok(wgtrain(&[
        "eval",
        "--backend",
        "cpu",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--data",
        data_dir.to_str().unwrap(),
    ]));
}

/// eval, predict and `model --data` need the test set only: IDX reads the training labels (they
/// number the classes) but not the training images, CIFAR its test file only.
#[test]
fn the_test_set_loads_without_decoding_the_training_images() {
    use wgtrain::io::data::idx;
    let opts = DataOptions::default();
    let dir = tempfile::tempdir().unwrap();
    let train = data::synthetic(50, 1);
    data::write_idx_dir(dir.path(), &train, &data::synthetic(20, 2)).unwrap();
    let train_images = idx::find_file(dir.path(), idx::TRAIN_FILES.0);
    std::fs::write(&train_images, b"not an IDX file").unwrap();
    let (test, format, names) = data::load_test(dir.path(), &opts).unwrap();
    assert_eq!(format.to_string(), "IDX");
    assert_eq!((test.len(), names.len()), (20, train.classes()));
    let err = load(dir.path(), 10, &opts).unwrap_err().to_string();
    assert!(err.contains(&train_images.display().to_string()), "{err}");
    // A test label the training labels do not have is still refused, naming both files.
    let few = ImageSet {
        labels: vec![0; 50],
        ..train.clone()
    };
    data::write_idx_dir(dir.path(), &few, &data::synthetic(20, 2)).unwrap();
    let err = data::load_test(dir.path(), &opts).unwrap_err().to_string();
    assert!(
        err.contains("out of range") && err.contains(idx::TRAIN_FILES.1),
        "{err}"
    );
    // CIFAR: a training file that is not one.
    let c = cifar10_dir();
    std::fs::write(c.path().join("data_batch_1.bin"), b"short").unwrap();
    let (test, _, names) = data::load_test(c.path(), &opts).unwrap();
    assert_eq!((test.len(), names.len()), (20, 10));
    assert!(load(c.path(), 10, &opts).is_err());
}

//! `wgtrain predict`: reading images (grey, colour, alpha, any size, inverted), classifying them with a
//! checkpoint, and bad images or checkpoints as one-line errors.

use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::io::checkpoint::Checkpoint;
use wgtrain::io::data::{self, ImageSet};
use wgtrain::io::digit::load_digit;
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::tools::predict::predict_pixels;
use wgtrain::train::{train_with, Persist, Silent, TrainConfig};

mod support;
use support::{assert_input_error, wgtrain};

fn test_set() -> ImageSet {
    data::synthetic(40, 8)
}

/// A cnn3-bn checkpoint trained for one epoch on the synthetic bars (shared by the tests of this file).
fn checkpoint() -> &'static Path {
    static CK: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = CK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cnn3-bn.safetensors");
        let data = data::split(data::synthetic(330, 7), test_set(), 30).unwrap();
        let cfg = TrainConfig {
            model: ModelSpec::parse("cnn3-bn").unwrap(),
            optim: OptimKind::Adam,
            lr: 0.001,
            recipe: Default::default(),
            batch: 10,
            steps: 30,
            seed: 1,
            log_every: 30,
            eval_each_epoch: false,
            out: None,
        };
        let persist = Persist {
            resume: None,
            save: Some(&path),
        };
        train_with(&CpuBackend::new(), &data, &cfg, &mut Silent, persist).unwrap();
        (dir, path)
    });
    path
}

fn sample(set: &ImageSet, i: usize) -> (GrayImage, u8) {
    let p = set.pixels();
    let img = GrayImage::from_raw(28, 28, set.images[i * p..(i + 1) * p].to_vec()).unwrap();
    (img, set.labels[i])
}

/// The first MNIST test digits (the copy in data/mnist): already scaled and centred by mass.
fn mnist() -> ImageSet {
    static SET: OnceLock<ImageSet> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
        let mut set = data::load_set(&dir, data::TEST_FILES).unwrap();
        let p = set.pixels();
        set.images.truncate(20 * p);
        set.labels.truncate(20);
        set
    })
    .clone()
}

#[test]
fn mnist_digits_load_exactly_and_inverted_ones_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let (img, _) = sample(&mnist(), i);
        let path = dir.path().join("a.png");
        img.save(&path).unwrap();
        let digit = load_digit(&path, false).unwrap();
        assert_eq!(digit.pixels, img.as_raw().clone(), "MNIST digit {i}");
        assert_eq!(digit.hint, None);
        let inverted: Vec<u8> = img.as_raw().iter().map(|p| 255 - p).collect();
        let ipath = dir.path().join("inv.png");
        GrayImage::from_raw(28, 28, inverted)
            .unwrap()
            .save(&ipath)
            .unwrap();
        assert_eq!(
            load_digit(&ipath, true).unwrap().pixels,
            img.as_raw().clone()
        );
        // Issue 12, point 12: dark on light without --invert (or light on dark with it) is named.
        let hint = load_digit(&ipath, false).unwrap().hint.expect("a hint");
        assert!(
            hint.contains("inv.png") && hint.contains("pass --invert"),
            "{hint}"
        );
        let hint = load_digit(&path, true).unwrap().hint.expect("a hint");
        assert!(hint.contains("drop --invert"), "{hint}");
    }
}

/// Issue 12, point 12: an off-centre digit is moved back to where MNIST's centre of mass is, and a
/// digit drawn small in a corner of a large canvas is scaled to MNIST's 20-pixel box and centred.
#[test]
fn digits_are_centred_by_mass_and_scaled_to_the_mnist_box() {
    let dir = tempfile::tempdir().unwrap();
    let com = |px: &[u8]| {
        let m: f64 = px.iter().map(|&v| v as f64).sum();
        let cx: f64 = px
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 * (i % 28) as f64)
            .sum();
        let cy: f64 = px
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 * (i / 28) as f64)
            .sum();
        (cx / m, cy / m)
    };
    for i in 0..20 {
        let (img, _) = sample(&mnist(), i);
        // Moved up to 3 pixels left and up, as far as its margins allow (nothing falls off the frame).
        let lit = |p: &&u8| **p > 0;
        let raw = img.as_raw();
        let x0 = (0..28)
            .find(|&x| (0..28).map(|y| &raw[y * 28 + x]).any(|p| lit(&p)))
            .unwrap();
        let y0 = raw.iter().position(|p| lit(&p)).unwrap() / 28;
        let (dx, dy) = (x0.min(3) as i32, y0.min(3) as i32);
        assert!(dx + dy > 0, "digit {i} touches the corner");
        let shifted = GrayImage::from_fn(28, 28, |x, y| {
            let (sx, sy) = (x as i32 + dx, y as i32 + dy);
            if (0..28).contains(&sx) && (0..28).contains(&sy) {
                *img.get_pixel(sx as u32, sy as u32)
            } else {
                Luma([0])
            }
        });
        let path = dir.path().join("off.png");
        shifted.save(&path).unwrap();
        assert_eq!(
            load_digit(&path, false).unwrap().pixels,
            img.as_raw().clone(),
            "digit {i}"
        );

        // 3x larger, in the top-left corner of a 200x120 canvas.
        let big = image::imageops::resize(&img, 84, 84, image::imageops::FilterType::Nearest);
        let mut canvas = GrayImage::new(200, 120);
        image::imageops::replace(&mut canvas, &big, 0, 0);
        let path = dir.path().join("corner.png");
        canvas.save(&path).unwrap();
        let px = load_digit(&path, false).unwrap().pixels;
        let (cx, cy) = com(&px);
        assert!(
            (cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5,
            "digit {i}: ({cx}, {cy})"
        );
        let ink: Vec<usize> = (0..784).filter(|&k| px[k] >= 32).collect();
        let span = |f: &dyn Fn(usize) -> usize| {
            ink.iter().map(|&k| f(k)).max().unwrap() - ink.iter().map(|&k| f(k)).min().unwrap() + 1
        };
        let longer = span(&|k| k % 28).max(span(&|k| k / 28));
        assert!(
            (19..=20).contains(&longer),
            "digit {i}: longer side {longer}"
        );
    }
}

#[test]
fn colour_alpha_and_size_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    // Grey as RGB: the same pixels.
    let (img, _) = sample(&mnist(), 5);
    let rgb = RgbImage::from_fn(28, 28, |x, y| {
        let v = img.get_pixel(x, y).0[0];
        Rgb([v, v, v])
    });
    let path = dir.path().join("rgb.png");
    rgb.save(&path).unwrap();
    assert_eq!(
        load_digit(&path, false).unwrap().pixels,
        img.as_raw().clone()
    );

    // 4x upscaled: back to nearly the same 28x28 (an area-like filter).
    let big = image::imageops::resize(&img, 112, 112, image::imageops::FilterType::Nearest);
    let path = dir.path().join("big.png");
    big.save(&path).unwrap();
    let back = load_digit(&path, false).unwrap().pixels;
    let max_diff = back
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    assert!(max_diff <= 128, "max diff {max_diff}");
    let bright_rows = |px: &[u8]| -> Vec<usize> {
        (0..28)
            .filter(|r| {
                px[r * 28..(r + 1) * 28]
                    .iter()
                    .filter(|&&v| v > 200)
                    .count()
                    > 10
            })
            .collect()
    };
    assert_eq!(bright_rows(&back), bright_rows(img.as_raw()));

    // Wide image: padded to a square (aspect kept), so the content sits in the middle rows.
    let wide = GrayImage::from_pixel(56, 28, Luma([255]));
    let path = dir.path().join("wide.png");
    wide.save(&path).unwrap();
    let px = load_digit(&path, false).unwrap().pixels;
    assert_eq!(px[0], 0, "top row is padding");
    assert_eq!(px[14 * 28 + 14], 255, "middle is the image");

    // Transparent pixels are background: black, or white before --invert (so black again after).
    let rgba = RgbaImage::from_fn(28, 28, |x, _| {
        if x < 14 {
            Rgba([255, 255, 255, 0])
        } else {
            Rgba([0, 0, 0, 255])
        }
    });
    let path = dir.path().join("alpha.png");
    rgba.save(&path).unwrap();
    let px = load_digit(&path, false).unwrap().pixels;
    assert!(px.iter().all(|&v| v == 0));
    // ... and the white half is then centred by its mass (columns 14-27 move to 7-20).
    let px = load_digit(&path, true).unwrap().pixels;
    assert_eq!(px[14 * 28 + 3], 0, "transparent -> background");
    assert_eq!(px[14 * 28 + 14], 255, "black ink -> white after --invert");
}

#[test]
fn bad_images_are_one_line_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let check = |path: &Path, needle: &str| {
        let err = load_digit(path, false).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains(needle), "'{needle}' not in {err}");
        assert!(!err.contains('\n'));
    };
    check(&dir.path().join("missing.png"), "image not found");
    let text = dir.path().join("text.png");
    std::fs::write(&text, "not an image").unwrap();
    check(&text, "cannot decode image");
    let mut png = Vec::new();
    GrayImage::new(28, 28)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 2]).unwrap();
    check(&cut, "cannot decode image");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    check(&empty, "cannot decode image");
    check(dir.path(), "");
}

#[test]
fn predictions_match_the_model_and_are_probabilities() {
    let ck = Checkpoint::load(checkpoint()).unwrap();
    let be = CpuBackend::new();
    let mut model = ck.build_model(&be, 8).unwrap();
    let set = test_set();
    let images: Vec<Vec<u8>> = (0..set.len())
        .map(|i| sample(&set, i).0.into_raw())
        .collect();
    let preds = predict_pixels(&be, &mut model, &images, 3, &ck.meta.data());
    let report = wgtrain::tools::predict::evaluate_checkpoint(&be, &ck, &set, 16).unwrap();
    let mut correct = 0;
    for ((top, probs), &label) in preds.iter().zip(&set.labels) {
        assert_eq!(top.len(), 3);
        assert!(top[0].prob >= top[1].prob && top[1].prob >= top[2].prob);
        let sum: f32 = probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        assert_eq!(probs[top[0].class], top[0].prob);
        correct += (top[0].class == label as usize) as usize;
    }
    assert_eq!(correct as f64 / set.len() as f64, report.test_acc);
    assert!(
        report.test_acc > 0.8,
        "the bars are learnable: {}",
        report.test_acc
    );
}

#[test]
fn cli_predict() {
    let dir = tempfile::tempdir().unwrap();
    let set = test_set();
    let ck = checkpoint().to_str().unwrap();
    let mut paths = Vec::new();
    for i in 0..3 {
        let (img, _) = sample(&set, i);
        let p = dir.path().join(format!("digit{i}.png"));
        img.save(&p).unwrap();
        paths.push(p.to_str().unwrap().to_string());
    }
    // Black on white, for --invert.
    let (img, _) = sample(&set, 0);
    let inv = GrayImage::from_fn(28, 28, |x, y| Luma([255 - img.get_pixel(x, y).0[0]]));
    let inv_path = dir.path().join("inverted.png");
    inv.save(&inv_path).unwrap();

    let predict = |extra: &[&str]| {
        wgtrain(
            &[
                &["predict", "--checkpoint", ck, "--backend", "cpu"][..],
                extra,
            ]
            .concat(),
        )
    };
    let all: Vec<&str> = paths.iter().map(String::as_str).collect();
    let out = predict(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    for (line, p) in text.lines().zip(&paths) {
        assert!(line.starts_with(&format!("{p}: ")), "{line}");
        assert_eq!(line.matches('%').count(), 3, "top 3: {line}");
    }

    let out = predict(&["--json", "--top", "2", &paths[0]]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &json[0];
    assert_eq!(first["image"], paths[0].as_str());
    assert_eq!(first["top"].as_array().unwrap().len(), 2);
    assert_eq!(first["probs"].as_array().unwrap().len(), 10);

    let out = predict(&["--json", "--invert", inv_path.to_str().unwrap()]);
    assert!(out.status.success());
    let inv_json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inv_json[0]["probs"], first["probs"],
        "--invert undoes the inversion"
    );

    // Dark on light without --invert: still answered, with a note that names the file and the flag.
    let out = predict(&[inv_path.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("inverted.png") && err.contains("pass --invert"),
        "{err}"
    );

    // Bad input: one line, exit 2, naming the file.
    let text_file = dir.path().join("notes.png");
    std::fs::write(&text_file, "hello").unwrap();
    let out = wgtrain(&[
        "predict",
        "--checkpoint",
        ck,
        &paths[0],
        text_file.to_str().unwrap(),
    ]);
    // The readable image is still classified; each bad one is an error line; exit 2 at the end.
    assert_eq!(out.status.code(), Some(2));
    let (stdout, stderr) = (support::text(&out.stdout), support::text(&out.stderr));
    assert!(stdout.contains(&format!("{}: ", paths[0])), "{stdout}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("notes.png: cannot decode image"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    let out = wgtrain(&["predict", "--checkpoint", ck, text_file.to_str().unwrap()]);
    assert_input_error(&out, &["notes.png: cannot decode image"]);
    let out = wgtrain(&["predict", "--checkpoint", ck, "/nonexistent/seven.png"]);
    assert_input_error(&out, &["seven.png: image not found"]);
    let out = wgtrain(&["predict", "--checkpoint", "/nonexistent/ck.st", &paths[0]]);
    assert_input_error(&out, &["ck.st: checkpoint not found"]);
    let out = wgtrain(&["predict", "--checkpoint", ck, "--top", "0", &paths[0]]);
    assert_input_error(&out, &["--top must be at least 1"]);
}

//! Checkpoints: what they hold, exact resumption (2 epochs straight == 1 epoch + resume 1 epoch, bit for
//! bit), and every way a checkpoint file can be bad, through the library and the CLI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::Backend;
use wgtrain::error::is_input_error;
use wgtrain::io::checkpoint::{Checkpoint, META_KEY};
use wgtrain::io::data::{self, DataInfo, Splits};
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::train::{train_with, Persist, Silent, TrainConfig};

mod support;
use support::{assert_input_error, ok, wgtrain};

const BATCH: usize = 10;
const VAL: usize = 30;

/// 300 training images (30 steps of 10 per epoch), 30 validation, 50 test.
fn tiny() -> Splits {
    data::split(data::synthetic(330, 7), data::synthetic(50, 8), VAL).unwrap()
}

fn cfg(model: &str, optim: OptimKind, steps: usize) -> TrainConfig {
    TrainConfig {
        model: ModelSpec::parse(model).unwrap(),
        optim,
        lr: optim.default_lr(),
        recipe: Default::default(),
        batch: BATCH,
        steps,
        seed: 3,
        log_every: 7,
        eval_each_epoch: true,
        out: None,
    }
}

fn run(
    data: &Splits,
    c: &TrainConfig,
    resume: Option<&Checkpoint>,
    save: &Path,
) -> wgtrain::train::Trained<CpuBackend> {
    let persist = Persist {
        resume,
        save: Some(save),
    };
    train_with(&CpuBackend::new(), data, c, &mut Silent, persist).unwrap()
}

fn assert_bit_identical(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.meta, b.meta);
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (name, ta) in &a.tensors {
        let tb = &b.tensors[name];
        assert_eq!(ta.shape, tb.shape, "{name}");
        let same = ta
            .data
            .iter()
            .zip(&tb.data)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "tensor {name} differs");
    }
}

/// Trains `total` steps straight and `first` + resume; the checkpoints must match bit for bit.
fn check_resume(model: &str, optim: OptimKind, first: usize, total: usize) {
    let data = tiny();
    let dir = tempfile::tempdir().unwrap();
    let (straight, part, resumed) = (
        dir.path().join("straight.safetensors"),
        dir.path().join("part.safetensors"),
        dir.path().join("resumed.safetensors"),
    );
    let full = run(&data, &cfg(model, optim, total), None, &straight);
    run(&data, &cfg(model, optim, first), None, &part);
    let ck = Checkpoint::load(&part).unwrap();
    assert_eq!(ck.meta.step, first);
    let cont = run(&data, &cfg(model, optim, total), Some(&ck), &resumed);

    let a = Checkpoint::load(&straight).unwrap();
    let b = Checkpoint::load(&resumed).unwrap();
    assert_eq!(a.meta.step, total);
    assert_bit_identical(&a, &b);
    assert_eq!(
        std::fs::read(&straight).unwrap(),
        std::fs::read(&resumed).unwrap(),
        "the files are byte-identical too"
    );
    // The returned models agree with the files, and so do the final metrics.
    let be = CpuBackend::new();
    let from_model = Checkpoint::capture(
        &be,
        &cont.model,
        &cont.optimizer,
        BATCH,
        3,
        30,
        data.train.len(),
        &data.info,
    );
    assert_bit_identical(&from_model, &b);
    assert_eq!(full.result.test_acc, cont.result.test_acc);
    assert_eq!(full.result.test_loss, cont.result.test_loss);
    assert_eq!(full.result.val_loss, cont.result.val_loss);
    assert_eq!(cont.result.steps, total);
    assert_eq!(cont.result.losses.len(), total - first);
    assert_eq!(full.result.losses[first..], cont.result.losses[..]);
}

#[test]
fn resume_after_one_epoch_is_bit_identical_fc8_bn_adam() {
    check_resume("fc8-bn", OptimKind::Adam, 30, 60);
}

#[test]
fn resume_mid_epoch_is_bit_identical_cnn3_bn_rmsprop() {
    check_resume("cnn3-bn", OptimKind::RmsProp, 45, 60);
}

#[test]
fn resume_plain_sgd_is_bit_identical() {
    check_resume("fc8", OptimKind::Sgd, 12, 40);
}

#[test]
fn checkpoint_holds_weights_stats_moments_and_config() {
    let data = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let t = run(&data, &cfg("fc8-bn", OptimKind::Adam, 45), None, &path);
    let ck = Checkpoint::load(&path).unwrap();
    let m = &ck.meta;
    assert_eq!(
        (m.model.as_str(), m.optim, m.batch, m.seed, m.step),
        ("fc8-bn", OptimKind::Adam, BATCH, 3, 45)
    );
    assert_eq!((m.steps_per_epoch, m.train_len), (30, 300));
    assert_eq!((m.epoch, m.epoch_step), (1, 15));
    assert_eq!(m.lr, 0.001);
    assert_eq!(m.backend, "cpu");
    for name in [
        "fc1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "fc8.bias",
        "optim.fc1.weight.m",
        "optim.fc1.weight.v",
        "optim.bn7.bias.v",
    ] {
        assert!(ck.tensors.contains_key(name), "{name} missing");
    }
    assert_eq!(ck.tensors["fc1.weight"].shape, vec![256, 784]);
    // Running statistics moved off their initial values, and are stored as they are in the model.
    let be = CpuBackend::new();
    let rv = t
        .model
        .buffers()
        .into_iter()
        .find(|b| b.name == "bn1.running_var")
        .map(|b| be.read(&b.value))
        .unwrap();
    assert_eq!(ck.tensors["bn1.running_var"].data, rv);
    assert!(rv.iter().any(|&v| v != 1.0));
    // The metadata is plain JSON, readable by any safetensors reader.
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&header.metadata().as_ref().unwrap()[META_KEY]).unwrap();
    assert_eq!(json["model"], "fc8-bn");
    assert_eq!(json["optim"], "adam");
    assert_eq!(json["step"], 45);
    assert_eq!(json["epoch_step"], 15);
}

#[test]
fn a_loaded_model_evaluates_like_the_trained_one() {
    let data = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let t = run(&data, &cfg("cnn3-bn", OptimKind::Adam, 30), None, &path);
    let ck = Checkpoint::load(&path).unwrap();
    let r = wgtrain::tools::predict::evaluate_checkpoint(&CpuBackend::new(), &ck, &data.test, 16)
        .unwrap();
    assert_eq!(r.images, 50);
    assert!((r.test_acc - t.result.test_acc).abs() < 1e-9);
    assert!((r.test_loss - t.result.test_loss).abs() < 1e-4);
    assert_eq!(r.confusion.iter().flatten().sum::<u64>(), 50);
    let diag: u64 = (0..10).map(|i| r.confusion[i][i]).sum();
    assert_eq!(diag as f64 / 50.0, r.test_acc);
}

// ---- bad checkpoints ----

/// A valid checkpoint's bytes (fc8, SGD, before any training step).
fn valid_bytes() -> Vec<u8> {
    let be = CpuBackend::new();
    let model = wgtrain::model::Model::new(&be, ModelSpec::parse("fc8").unwrap(), 1, 0);
    let opt = wgtrain::optim::Optimizer::new(OptimKind::Sgd, 0.01);
    Checkpoint::capture(&be, &model, &opt, 10, 0, 30, 300, &DataInfo::mnist())
        .to_bytes()
        .unwrap()
}

/// `bytes` re-serialised with its tensors changed by `edit` and its metadata JSON by `meta`.
fn rewrite(
    bytes: &[u8],
    edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
    meta: impl Fn(&mut serde_json::Value),
) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .iter()
        .map(|(n, v)| (n.to_string(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&header.metadata().as_ref().unwrap()[META_KEY]).unwrap();
    meta(&mut json);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let info = HashMap::from([(META_KEY.to_string(), json.to_string())]);
    safetensors::serialize(views, Some(info)).unwrap()
}

fn load_err(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, String) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = match Checkpoint::load(&path) {
        Ok(ck) => ck
            .build_model(&CpuBackend::new(), 1)
            .err()
            .expect("a bad checkpoint must not load"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with(&path.display().to_string()),
        "names the file: {msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    (path, msg)
}

/// Every bad checkpoint of the issue, with the words its error must contain.
fn bad_checkpoints() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = valid_bytes();
    let mut out = vec![
        ("empty.safetensors", Vec::new(), "empty file"),
        (
            "truncated.safetensors",
            good[..good.len() - 100].to_vec(),
            "truncated or corrupt",
        ),
        (
            "header-cut.safetensors",
            good[..20].to_vec(),
            "truncated or corrupt",
        ),
        (
            "garbage.safetensors",
            b"this is not a checkpoint at all, just text".to_vec(),
            "truncated or corrupt",
        ),
    ];
    let mut flipped = good.clone();
    flipped[12] ^= 0x55; // inside the JSON header
    out.push(("flipped.safetensors", flipped, "corrupt"));
    // A valid safetensors file without wgtrain's metadata.
    let st = safetensors::SafeTensors::deserialize(&good).unwrap();
    let plain = safetensors::serialize(st.iter(), None).unwrap();
    out.push(("plain.safetensors", plain, "not a wgtrain checkpoint"));
    out.push((
        "other-model.safetensors",
        rewrite(&good, |_| {}, |m| m["model"] = "fc8-bn".into()),
        "tensor 'bn1.",
    ));
    out.push((
        "unknown-model.safetensors",
        rewrite(&good, |_| {}, |m| m["model"] = "resnet50".into()),
        "unknown model 'resnet50'",
    ));
    out.push((
        "bad-shape.safetensors",
        rewrite(
            &good,
            |t| {
                let fc2 = t.iter_mut().find(|(n, _, _)| n == "fc2.weight").unwrap();
                fc2.1 = vec![256, 128];
            },
            |_| {},
        ),
        "tensor 'fc2.weight' has shape [256, 128], model fc8 needs [128, 256]",
    ));
    out.push((
        "missing-tensor.safetensors",
        rewrite(&good, |t| t.retain(|(n, _, _)| n != "fc3.bias"), |_| {}),
        "tensor 'fc3.bias' that model fc8 needs is missing",
    ));
    out.push((
        "extra-tensor.safetensors",
        rewrite(
            &good,
            |t| t.push(("conv1.weight".into(), vec![1], vec![0; 4])),
            |_| {},
        ),
        "tensor 'conv1.weight' is not part of model fc8",
    ));
    out.push((
        "bad-meta.safetensors",
        rewrite(&good, |_| {}, |m| m["step"] = "many".into()),
        "corrupt 'wgtrain' metadata",
    ));
    out.push((
        "future.safetensors",
        rewrite(&good, |_| {}, |m| m["format"] = 99.into()),
        "format 99 is not supported",
    ));
    out
}

#[test]
fn bad_checkpoints_are_one_line_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, needle) in bad_checkpoints() {
        let (_, msg) = load_err(dir.path(), name, &bytes);
        assert!(msg.contains(needle), "{name}: '{needle}' not in: {msg}");
    }
    let missing = dir.path().join("nope.safetensors");
    let msg = Checkpoint::load(&missing).unwrap_err().to_string();
    assert!(
        msg.contains("nope.safetensors: checkpoint not found"),
        "{msg}"
    );
    // A valid file still loads after all that.
    let ok = dir.path().join("ok.safetensors");
    std::fs::write(&ok, valid_bytes()).unwrap();
    Checkpoint::load(&ok)
        .unwrap()
        .build_model(&CpuBackend::new(), 4)
        .unwrap();
}

#[test]
fn resume_checks_the_run_matches() {
    let data = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    run(&data, &cfg("fc8", OptimKind::Adam, 30), None, &path);
    let ck = Checkpoint::load(&path).unwrap();
    let be = CpuBackend::new();
    let try_resume = |c: &TrainConfig, d: &Splits| {
        let persist = Persist {
            resume: Some(&ck),
            save: None,
        };
        let err = train_with(&be, d, c, &mut Silent, persist)
            .err()
            .expect("a mismatched resume must fail");
        assert!(is_input_error(&err), "{err:#}");
        format!("{err:#}")
    };
    let mut c = cfg("fc8", OptimKind::Adam, 60);
    c.batch = 15;
    assert!(try_resume(&c, &data).contains("batch 10, this run asks for 15"));
    let c = cfg("fc8-bn", OptimKind::Adam, 60);
    assert!(try_resume(&c, &data).contains("model fc8, this run asks for fc8-bn"));
    let c = cfg("fc8", OptimKind::Sgd, 60);
    assert!(try_resume(&c, &data).contains("optimizer adam"));
    let mut c = cfg("fc8", OptimKind::Adam, 60);
    c.seed = 4;
    assert!(try_resume(&c, &data).contains("seed 3"));
    let c = cfg("fc8", OptimKind::Adam, 30);
    assert!(try_resume(&c, &data).contains("already at step 30"));
    let other = data::split(data::synthetic(230, 7), data::synthetic(50, 8), VAL).unwrap();
    let c = cfg("fc8", OptimKind::Adam, 60);
    assert!(try_resume(&c, &other).contains("training set of 300 images"));

    // A save path that cannot be written (under a regular file) fails before any training; a missing
    // directory is created instead (issue 16).
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("ck.safetensors");
    let persist = Persist {
        resume: None,
        save: Some(&under_file),
    };
    let err = train_with(
        &be,
        &data,
        &cfg("fc8", OptimKind::Adam, 5),
        &mut Silent,
        persist,
    )
    .err()
    .unwrap();
    assert!(is_input_error(&err));
    assert!(format!("{err}").contains("not a directory"), "{err}");
}

// ---- the CLI ----

fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    support::synthetic_dir(&dir, 330, 50, 7);
    dir
}

#[test]
fn cli_save_resume_eval() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let d = data.to_str().unwrap();
    let ck = |name: &str| root.path().join(name).to_str().unwrap().to_string();
    let common = [
        "--data",
        d,
        "--val-size",
        "30",
        "--batch",
        "10",
        "--backend",
        "cpu",
        "--quiet",
        "--model",
        "fc8-bn",
    ];
    let train = |extra: &[&str]| {
        let mut args = vec!["train"];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        wgtrain(&args)
    };
    let out = ok(train(&["--epochs", "2", "--save", &ck("straight.st")]));
    assert!(out.contains("saved checkpoint"), "{out}");
    ok(train(&["--epochs", "1", "--save", &ck("one.st")]));
    // Resuming takes model, optimizer, batch and seed from the checkpoint; --epochs counts the whole run.
    let resumed = wgtrain(&[
        "train",
        "--data",
        d,
        "--val-size",
        "30",
        "--backend",
        "cpu",
        "--quiet",
        "--resume",
        &ck("one.st"),
        "--epochs",
        "2",
        "--save",
        &ck("resumed.st"),
        "--json",
    ]);
    let out = ok(resumed);
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["steps"], 60);
    assert_eq!(json["model"], "fc8-bn");
    assert_eq!(
        std::fs::read(ck("straight.st")).unwrap(),
        std::fs::read(ck("resumed.st")).unwrap(),
        "CLI resume is bit-identical"
    );

    // Resume conflicts and dead ends.
    assert_input_error(
        &wgtrain(&[
            "train",
            "--data",
            d,
            "--val-size",
            "30",
            "--resume",
            &ck("one.st"),
            "--model",
            "cnn3",
            "--epochs",
            "2",
            "--backend",
            "cpu",
            "-q",
        ]),
        &["model fc8-bn, this run asks for cnn3"],
    );
    assert_input_error(
        &wgtrain(&[
            "train",
            "--data",
            d,
            "--val-size",
            "30",
            "--resume",
            &ck("straight.st"),
            "--epochs",
            "2",
            "--backend",
            "cpu",
            "-q",
        ]),
        &["already at step 60"],
    );
    assert_input_error(
        &wgtrain(&[
            "train",
            "--data",
            d,
            "--val-size",
            "30",
            "--resume",
            &ck("nope.st"),
            "--backend",
            "cpu",
        ]),
        &["nope.st: checkpoint not found"],
    );

    // eval: text, JSON and the plot.
    let out = ok(wgtrain(&[
        "eval",
        "--checkpoint",
        &ck("straight.st"),
        "--data",
        d,
        "--backend",
        "cpu",
    ]));
    assert!(out.contains("test: 50 images, accuracy"), "{out}");
    assert!(out.contains("confusion matrix"), "{out}");
    assert!(out.contains("recall"), "{out}");
    let plot = ck("confusion.png");
    let out = ok(wgtrain(&[
        "eval",
        "--checkpoint",
        &ck("straight.st"),
        "--data",
        d,
        "--backend",
        "cpu",
        "--json",
        "--plot",
        &plot,
        "--batch",
        "7",
    ]));
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["images"], 50);
    assert_eq!(r["step"], 60);
    let confusion = r["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 10);
    let total: u64 = confusion
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 50);
    assert_eq!(json["test_acc"], r["test_acc"], "eval agrees with train");
    let png = std::fs::read(&plot).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let img = image::load_from_memory(&png).unwrap();
    assert!(img.width() >= 600 && img.height() >= 600);
}

#[test]
fn cli_bad_checkpoints_exit_2_with_one_line() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let img = root.path().join("digit.png");
    image::GrayImage::new(28, 28).save(&img).unwrap();
    for (name, bytes, needle) in bad_checkpoints() {
        let path = root.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec![
                "eval",
                "--checkpoint",
                p,
                "--data",
                data.to_str().unwrap(),
                "--backend",
                "cpu",
            ],
            vec![
                "predict",
                "--checkpoint",
                p,
                img.to_str().unwrap(),
                "--backend",
                "cpu",
            ],
            vec![
                "train",
                "--resume",
                p,
                "--data",
                data.to_str().unwrap(),
                "--val-size",
                "30",
                "--backend",
                "cpu",
                "-q",
                "--epochs",
                "3",
            ],
        ] {
            let out = wgtrain(&args);
            assert_input_error(&out, &[needle]);
            assert!(String::from_utf8_lossy(&out.stderr).contains(name));
        }
    }
    assert_input_error(
        &wgtrain(&[
            "eval",
            "--checkpoint",
            "/nonexistent/ck.st",
            "--backend",
            "cpu",
        ]),
        &["ck.st: checkpoint not found"],
    );
    // A good checkpoint with a bad data directory is still a one-line input error.
    let good = root.path().join("good.st");
    std::fs::write(&good, valid_bytes()).unwrap();
    assert_input_error(
        &wgtrain(&[
            "eval",
            "--checkpoint",
            good.to_str().unwrap(),
            "--data",
            "/nonexistent-data",
            "--backend",
            "cpu",
        ]),
        &["data directory not found"],
    );
}

// ---- backend-neutral files ----

#[test]
fn checkpoints_are_backend_neutral_cpu() {
    support::cross_backend(&CpuBackend::new(), &CpuBackend::new());
}

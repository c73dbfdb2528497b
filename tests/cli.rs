//! The `wgtrain` binary as a user meets it: help, a tiny training run with its JSON and files, and bad
//! input reported as one `error:` line with exit code 2 (never a panic or a backtrace).

use std::path::Path;

mod support;
use support::{assert_input_error, synthetic_dir, text, tiny_train, wgtrain};

/// A data directory of raw IDX files: 300 synthetic training images and 100 test images.
fn synthetic_data(dir: &Path) {
    synthetic_dir(dir, 300, 100, 1);
}

#[test]
fn help_lists_commands_and_options() {
    let out = wgtrain(&["--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(help.contains("train"), "{help}");
    assert!(help.contains("Usage"), "{help}");

    let out = wgtrain(&["train", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for opt in [
        "--model",
        "--optim",
        "--lr",
        "--epochs",
        "--steps",
        "--batch",
        "--seed",
        "--backend",
        "--adapter",
        "--data",
        "--val-size",
        "--out",
        "--log-every",
        "--json",
        "--quiet",
    ] {
        assert!(
            help.contains(opt),
            "train --help should list {opt}:\n{help}"
        );
    }
    // The model names and the optimizers are spelled out.
    for word in ["fc8-bn", "cnn7", "sgd", "rmsprop", "adam"] {
        assert!(help.contains(word), "train --help should mention {word}");
    }
}

#[test]
fn version_prints() {
    let out = wgtrain(&["--version"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn tiny_training_run_prints_json_and_writes_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let out_dir = tmp.path().join("out");
    synthetic_data(&data_dir);
    let out = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        data_dir.to_str().unwrap(),
        "--val-size",
        "100",
        "--steps",
        "5",
        "--batch",
        "10",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let last = stdout.lines().last().expect("some output");
    let json: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {last}"));
    for key in [
        "model",
        "optim",
        "lr",
        "batch",
        "epochs",
        "steps",
        "start_step",
        "seed",
        "backend",
        "device",
        "train_loss",
        "val_acc",
        "test_acc",
        "seconds",
        "images_per_s",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks {key}: {last}");
    }
    assert_eq!(json["model"], "fc8-bn");
    assert_eq!(json["optim"], "adam");
    assert_eq!(json["backend"], "cpu");
    assert_eq!(json["steps"], 5);
    assert_eq!(json["batch"], 10);
    assert_eq!(json["seed"], 1);
    for key in ["val_acc", "test_acc"] {
        let acc = json[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{key} {acc}");
    }
    assert!(json["train_loss"].as_f64().unwrap().is_finite());
    assert!(json["images_per_s"].as_f64().unwrap() > 0.0);
    // 200 training images in batches of 10: 5 steps are a quarter epoch.
    assert!((json["epochs"].as_f64().unwrap() - 0.25).abs() < 1e-9);

    for name in ["losses.csv", "epochs.csv", "metrics.json"] {
        assert!(out_dir.join(name).is_file(), "{name} missing in --out");
    }
    let losses = std::fs::read_to_string(out_dir.join("losses.csv")).unwrap();
    let lines: Vec<&str> = losses.lines().collect();
    assert_eq!(lines[0], "step,epoch,loss");
    assert_eq!(
        lines.len(),
        1 + 5,
        "a header and one line per step:\n{losses}"
    );
    assert!(lines[1].starts_with("1,1,"), "{losses}");
    let epochs = std::fs::read_to_string(out_dir.join("epochs.csv")).unwrap();
    assert!(epochs.starts_with("epoch,step,train_loss,val_loss,val_acc"));
    assert_eq!(epochs.lines().count(), 2, "{epochs}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["test_acc"], json["test_acc"]);
    assert_eq!(metrics["model"], "fc8-bn");
}

#[test]
fn missing_data_directory_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let out = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        missing.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert_input_error(&out, &[missing.to_str().unwrap(), "not found"]);
}

#[test]
fn corrupt_data_file_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic_data(tmp.path());
    let bad = tmp.path().join("train-labels-idx1-ubyte");
    std::fs::write(&bad, b"\x00\x00\x08\x01\x00\x00\x01\x2cgarbage").unwrap();
    let out = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        tmp.path().to_str().unwrap(),
        "--val-size",
        "100",
        "--steps",
        "1",
    ]);
    assert_input_error(&out, &[bad.to_str().unwrap(), "truncated"]);

    // A corrupt gzip file, too.
    let gz = tmp.path().join("t10k-images-idx3-ubyte.gz");
    std::fs::write(&gz, b"\x1f\x8b\x08\x00garbage").unwrap();
    synthetic_data(tmp.path());
    let out = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        tmp.path().to_str().unwrap(),
        "--val-size",
        "100",
        "--steps",
        "1",
    ]);
    assert_input_error(&out, &[gz.to_str().unwrap(), "gzip"]);
}

#[test]
fn unknown_model_exits_2() {
    let out = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--model",
        "resnet50",
        "--steps",
        "1",
    ]);
    assert_input_error(&out, &["resnet50"]);
}

#[test]
fn bad_values_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic_data(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let base = [
        "train",
        "--backend",
        "cpu",
        "--data",
        dir,
        "--val-size",
        "100",
    ];
    for (extra, mention) in [
        (&["--optim", "adagrad"][..], "adagrad"),
        (&["--batch", "0"][..], "--batch"),
        (&["--steps", "0"][..], "--steps"),
        (&["--lr=-1"][..], "--lr"),
        (&["--lr", "-1"][..], "--lr -1: must be a positive number"),
        (&["--lr", "nan"][..], "--lr"),
        (&["--batch", "500"][..], "--batch"),
        // The CPU backend runs no GPU kernels: naming a set with it is a mistake.
        (&["--kernels", "tiled"][..], "--kernels tiled"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = wgtrain(&args);
        assert_input_error(&out, &[mention]);
    }
    // Too many validation images for the training file names the directory.
    let out = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        dir,
        "--val-size",
        "300",
    ]);
    assert_input_error(&out, &[dir, "validation"]);
}

#[test]
fn a_diverging_run_stops_with_exit_1_and_keeps_its_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let out_dir = tmp.path().join("out");
    synthetic_data(&data_dir);
    let out = wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--model",
        "fc8",
        "--optim",
        "sgd",
        "--lr",
        "1e30",
        "--data",
        data_dir.to_str().unwrap(),
        "--val-size",
        "100",
        "--steps",
        "20",
        "--batch",
        "10",
        "--log-every",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: training diverged"),
        "last stderr line: {last}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Every loss up to the bad one was written and flushed; the bad one is the last line.
    let losses = std::fs::read_to_string(out_dir.join("losses.csv")).unwrap();
    let rows: Vec<&str> = losses.lines().skip(1).collect();
    assert!(!rows.is_empty(), "losses.csv lost its lines");
    let bad = rows
        .last()
        .unwrap()
        .rsplit(',')
        .next()
        .unwrap()
        .to_lowercase();
    assert!(
        bad.contains("nan") || bad.contains("inf"),
        "last loss {bad}"
    );
}

#[test]
fn a_named_adapter_that_is_not_there_is_an_error_not_a_fallback() {
    // With adapters present it matches none; with none at all there is no GPU: exit 2 either way.
    let out = wgtrain(&[
        "train",
        "--adapter",
        "no-such-adapter-xyz",
        "--steps",
        "1",
        "-q",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(
        lines[0].starts_with("error:") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// Issue 12, point 3: with `--backend auto` on a machine without a real GPU the CPU fallback is
/// announced by a note, but `-q` silences it, and a bad request is still one line of error (it is
/// checked before a backend is chosen).
#[test]
fn auto_backend_notes_are_quiet_and_never_precede_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    synthetic_data(&data_dir);
    let d = data_dir.to_str().unwrap();
    let base = [
        "train",
        "--backend",
        "auto",
        "--data",
        d,
        "--val-size",
        "100",
    ];
    let run = |extra: &[&str]| wgtrain(&[&base[..], extra].concat());
    let out = run(&["--steps", "2", "--batch", "10", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "-q: nothing on stderr");
    assert_input_error(
        &run(&["--batch", "1000"]),
        &["--batch 1000", "200 training images"],
    );
    // A resume that cannot continue (another model) is refused before any backend is opened.
    let ck = tmp.path().join("ck.st");
    let saved = run(&[
        "--steps",
        "2",
        "--batch",
        "10",
        "-q",
        "--save",
        ck.to_str().unwrap(),
    ]);
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    assert_input_error(
        &run(&["--resume", ck.to_str().unwrap(), "--model", "cnn3"]),
        &["this run asks for cnn3"],
    );
}

/// Issue 12, point 11: every command's help writes defaults one way (`[default: ...]`), gradcheck
/// defaults its model like train and graph, and the backend values are described.
#[test]
fn help_is_consistent() {
    for cmd in [
        "train",
        "sweep",
        "report",
        "bench",
        "profile",
        "graph",
        "eval",
        "predict",
        "devices",
        "gradcheck",
    ] {
        let help = text(&wgtrain(&[cmd, "--help"]).stdout);
        assert!(help.contains("Usage"), "{cmd}: {help}");
        assert!(
            !help.contains("(default"),
            "{cmd}: a default written in parentheses:\n{help}"
        );
    }
    let gradcheck = text(&wgtrain(&["gradcheck", "--help"]).stdout);
    assert!(gradcheck.contains("[default: fc8-bn]"), "{gradcheck}");
    let train = text(&wgtrain(&["train", "--help"]).stdout);
    assert!(train.contains("cpu:  The CPU reference backend"), "{train}");
}

/// Issue 12, point 6: a resumed run says where it resumed, in its progress and in its summary.
#[test]
fn a_resumed_run_says_where_it_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    synthetic_data(&data_dir);
    let ck = tmp.path().join("ck.st");
    let (d, c) = (data_dir.to_str().unwrap(), ck.to_str().unwrap());
    let base = tiny_train(d);
    let first = wgtrain(&[&base[..], &["--steps", "4", "--save", c]].concat());
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains("training 4 steps"),
        "{}",
        text(&first.stderr)
    );
    let out = wgtrain(&[&base[..], &["--steps", "8", "--resume", c, "--json"]].concat());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming at step 4, training to step 8"),
        "{stderr}"
    );
    assert!(stdout.contains("steps 5-8 (resumed at step 4)"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["start_step"], 4);
    assert_eq!(json["steps"], 8);
}

/// Issue 12, point 4: an output path the user gave that cannot be written is bad input, one line and
/// exit 2, for --out as for --save.
#[test]
fn unwritable_paths_are_input_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    synthetic_data(&data_dir);
    let d = data_dir.to_str().unwrap();
    // A regular file stands where a directory is needed: no write permission is involved (CI is root).
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("out");
    let u = under_file.to_str().unwrap();
    let base = ["--backend", "cpu", "--data", d, "--val-size", "100"];
    let train = |flag: &str| {
        let mut args = vec!["train", "--steps", "1", "--batch", "10", flag, u];
        args.extend(base);
        wgtrain(&args)
    };
    assert_input_error(&train("--out"), &[u]);
    assert_input_error(&train("--save"), &["out"]);
    let mut sweep = vec!["sweep", "--quick", "--tables", "1", "--out", u];
    sweep.extend(base);
    assert_input_error(&wgtrain(&sweep), &[u]);
}

/// Issue 12, point 7: outside a terminal (here a pipe) progress comes at every `--log-every` point, and
/// a run that stops inside an epoch does not claim the epoch (20 steps of the 20 per epoch here vs 12).
#[test]
fn piped_progress_follows_log_every_and_names_a_partial_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    synthetic_data(&data_dir);
    let d = data_dir.to_str().unwrap();
    let run = |steps: &str| {
        let mut args = tiny_train(d);
        args.extend(["--log-every", "3", "--steps", steps]);
        let out = wgtrain(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let part = run("12");
    let steps: Vec<&str> = part.lines().filter(|l| l.contains("/12 loss")).collect();
    assert_eq!(
        steps.len(),
        4,
        "one line per log point (3, 6, 9, 12):\n{part}"
    );
    assert!(steps[0].contains("step 3/12"), "{part}");
    assert!(
        part.contains("step 12 (part of epoch 1) train loss"),
        "{part}"
    );
    assert!(!part.contains("epoch 1 train loss"), "{part}");
    let whole = run("20");
    assert!(whole.contains("epoch 1 train loss"), "{whole}");
    assert!(!whole.contains("part of epoch"), "{whole}");
}

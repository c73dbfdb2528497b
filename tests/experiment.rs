//! Experiment files (`wgtrain sweep FILE`): the grid they describe, their one-line errors, a quick
//! experiment end to end with its report, cells.csv and runs.csv, and `wgtrain report` rebuilding it.

use std::path::Path;
use wgtrain::study::experiment::{Experiment, Stats};

mod support;
use support::{assert_input_error, ok, wgtrain};

fn parse(text: &str) -> Result<Experiment, String> {
    Experiment::parse(Path::new("exp.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn the_grid_is_the_product_of_the_axes_with_zipped_ones_together() {
    let e = parse(
        r#"version = 1
[axes]
model = ["fc8", "cnn3"]
optim = ["sgd", "adam"]
seed = [1, 2, 3]
"#,
    )
    .unwrap();
    assert_eq!(e.points.len(), 2 * 2 * 3);
    // Each optimizer at its own default learning rate.
    assert!(e.points.iter().all(|p| p.lr == p.optim.default_lr()));
    let keys = e.keys(Path::new("out"), false);
    let distinct: std::collections::HashSet<&String> = keys.iter().map(|(k, _)| k).collect();
    assert_eq!(distinct.len(), 12, "{keys:?}");
    assert_eq!(
        e.sweeps(Path::new("out"), false).len(),
        3,
        "one sweep per seed"
    );
    // Zipped: optimizer i with learning rate i, crossed with the models.
    let z = parse(
        r#"version = 1
[axes]
model = ["fc8", "cnn3"]
optim = ["sgd", "adam"]
lr = [0.1, 0.003]
zip = [["optim", "lr"]]
"#,
    )
    .unwrap();
    let pairs: Vec<(String, f32)> = z
        .points
        .iter()
        .map(|p| (p.optim.name().to_string(), p.lr))
        .collect();
    assert_eq!(z.points.len(), 4);
    for (o, lr) in pairs {
        assert_eq!(lr, if o == "sgd" { 0.1 } else { 0.003 });
    }
}

#[test]
fn recipes_are_settings_and_axes_with_their_own_keys() {
    let e = parse(
        r#"version = 1
[settings]
lr_schedule = "cosine"
warmup = 5
[axes]
model = ["fc8"]
optim = ["sgd"]
momentum = [0.0, 0.9]
weight_decay = [0.0, 0.0005]
"#,
    )
    .unwrap();
    assert_eq!(e.points.len(), 4);
    assert!(e.points.iter().all(|p| p.recipe.warmup == 5));
    let keys: Vec<String> = e
        .keys(Path::new("o"), false)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "fc8_sgd_lr0.01_b110_e1_seed1_cosine_w5",
            "fc8_sgd_lr0.01_b110_e1_seed1_mom0.9_cosine_w5",
            "fc8_sgd_lr0.01_b110_e1_seed1_wd0.0005_cosine_w5",
            "fc8_sgd_lr0.01_b110_e1_seed1_mom0.9_wd0.0005_cosine_w5",
        ]
    );
    let bad =
        parse("version = 1\n[axes]\nmodel = [\"fc8\"]\noptim = [\"adam\"]\nmomentum = [0.9]\n");
    let msg = bad.unwrap_err();
    assert!(
        msg.contains("exp.toml: adam with momentum 0.9: --momentum and --nesterov are SGD's"),
        "{msg}"
    );
}

#[test]
fn bad_experiment_files_are_one_line_errors() {
    for (text, want) in [
        (
            "version = 1\n[axes]\nmodel = [\"fc8\"]\nseeds = [1, 2]\n",
            "exp.toml: line 4: unknown field `seeds`",
        ),
        (
            "version = 1\n[axes]\nmodel = [\"nowhere/mine.toml\"]\n",
            "exp.toml: axes.model: nowhere/mine.toml: model file not found",
        ),
        (
            "version = 1\n[axes]\nmodel = [\"fc8\"]\nseed = []\n",
            "exp.toml: axes.seed is empty: the grid has no run",
        ),
        (
            "version = 1\n[axes]\nmodel = [\"fc8\"]\noptim = [\"sgd\", \"adam\"]\nlr = [0.1]\nzip = [[\"optim\", \"lr\"]]\n",
            "zipped axes need as many each",
        ),
        (
            "version = 1\n[axes]\nmodel = [\"fc8\"]\n[report]\nrows = \"depth\"\n",
            "exp.toml: report.rows: unknown axis 'depth'",
        ),
        (
            "version = 2\n[axes]\nmodel = [\"fc8\"]\n",
            "exp.toml: version 2 is not one this wgtrain reads",
        ),
        (
            "version = 1\n[axes]\nmodel = [\"fc8\"]\noptim = [\"lamb\"]\n",
            "axes.optim: unknown optimizer 'lamb'",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.contains(want), "want '{want}' in: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

#[test]
fn stats_are_mean_sample_std_n_min_max() {
    let s = Stats::of(&[1.0, 2.0, 4.0]).unwrap();
    assert_eq!((s.n, s.min, s.max), (3, 1.0, 4.0));
    assert!((s.mean - 7.0 / 3.0).abs() < 1e-12);
    // Sample variance: ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3.
    assert!((s.std.unwrap() - (7.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert_eq!(Stats::of(&[5.0]).unwrap().std, None);
    assert!(Stats::of(&[]).is_none());
}

#[test]
fn a_quick_experiment_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    support::synthetic_dir(&tmp.path().join("data"), 300, 100, 1);
    let file = tmp.path().join("exp.toml");
    std::fs::write(
        &file,
        r#"version = 1
title = "fc8 against fc8-bn"
[settings]
data = "data"        # relative to this file
val_size = 100
steps = 12
[axes]
model = ["fc8", "fc8-bn"]
optim = ["adam"]
seed = [1, 2]
batch = [10]
[report]
rows = "model"
columns = "optim"
metric = "val_acc"
"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    let stdout = ok(wgtrain(&["sweep", f, "--out", o, "--backend", "cpu", "-q"]));
    assert!(
        stdout.contains("4 runs trained, 0 already done"),
        "{stdout}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.starts_with("# fc8 against fc8-bn"), "{report}");
    assert!(report.contains("4 of 4 runs finished"), "{report}");
    assert!(report.contains("(n=2)"), "{report}");
    assert!(report.contains("![Training loss by optim and model](figures/experiment.png)"));
    for ext in ["png", "svg"] {
        let fig = out.join(format!("figures/experiment.{ext}"));
        assert!(
            std::fs::metadata(&fig).unwrap().len() > 1000,
            "{}",
            fig.display()
        );
    }
    // cells.csv: each cell's mean and std are those of its runs in runs.csv.
    let runs: Vec<csv::StringRecord> = csv::Reader::from_path(out.join("runs.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(runs.len(), 4);
    let cells: Vec<csv::StringRecord> = csv::Reader::from_path(out.join("cells.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(cells.len(), 2);
    let header = csv::Reader::from_path(out.join("runs.csv"))
        .unwrap()
        .headers()
        .unwrap()
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for cell in &cells {
        let vals: Vec<f64> = runs
            .iter()
            .filter(|r| r[col("model")] == cell[0])
            .map(|r| r[col("val_acc")].parse().unwrap())
            .collect();
        let s = Stats::of(&vals).unwrap();
        assert_eq!(cell[3].parse::<f64>().unwrap(), s.mean);
        assert_eq!(cell[4].parse::<f64>().unwrap(), s.std.unwrap());
        assert_eq!(&cell[5], "2");
    }
    // Again: nothing to do; `wgtrain report` rebuilds the same report from the directory alone.
    let again = ok(wgtrain(&["sweep", f, "--out", o, "--backend", "cpu", "-q"]));
    assert!(again.contains("0 runs trained, 4 already done"), "{again}");
    std::fs::remove_file(out.join("report.md")).unwrap();
    ok(wgtrain(&["report", "--out", o]));
    assert_eq!(
        std::fs::read_to_string(out.join("report.md")).unwrap(),
        report
    );
    // The study's own options do not mix with a file.
    assert_input_error(
        &wgtrain(&["sweep", f, "--out", o, "--tables", "1", "--backend", "cpu"]),
        &["exp.toml", "--tables"],
    );
}

//! Experiment files (`wgtrain sweep FILE`): the grid they describe (vars, tables), their one-line
//! errors, the study as such a file, quick experiments end to end with their reports, cells.csv and
//! runs.csv, and `wgtrain report` rebuilding them.

use std::path::Path;
use wgtrain::study::experiment::{Experiment, Stats};

mod support;
use support::{assert_input_error, ok, wgtrain};

fn parse(text: &str) -> Result<Experiment, String> {
    Experiment::parse(Path::new("exp.toml"), text).map_err(|e| e.to_string())
}

/// A temporary directory with a generated data set in `data/` (300 training, 100 test images) and
/// the experiment file `exp.toml` holding `text`.
fn experiment_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    support::synthetic_dir(&tmp.path().join("data"), 300, 100, 1);
    let file = tmp.path().join("exp.toml");
    std::fs::write(&file, text).unwrap();
    (tmp, file)
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
fn vars_write_model_names_and_tables_take_their_own_axes() {
    let e = parse(
        r#"version = 1
[axes]
optim = ["sgd"]
seed = [1, 2]
vars = { bn = ["", "-bn"] }

[[table]]
title = "depth"
axes = { model = ["cnn{layers}{bn}"], vars = { layers = ["3", "5"] } }
rows = "bn"
columns = "layers"
row_labels = ["plain", "batch norm"]
published = [[63.18, 78.09], [83.57, nan]]

[[table]]
title = "optimizers"
axes = { model = ["cnn3{bn}"], optim = ["sgd", "adam"] }
rows = "bn"
columns = "optim"
panels = "rows"
"#,
    )
    .unwrap();
    assert_eq!(e.tables.len(), 2);
    let t = &e.tables[0];
    assert_eq!(t.points.len(), 2 * 2 * 2, "layers x bn x seeds");
    let mut models: Vec<String> = t.points.iter().map(|p| p.model.name()).collect();
    models.dedup();
    models.sort();
    models.dedup();
    assert_eq!(models, ["cnn3", "cnn3-bn", "cnn5", "cnn5-bn"]);
    assert_eq!(t.row_values, ["", "-bn"]);
    assert_eq!(t.row_labels, ["plain", "batch norm"]);
    assert_eq!(t.column_labels, ["3", "5"], "labels default to the values");
    assert_eq!(t.published_at(0, 1), Some(78.09));
    assert_eq!(t.published_at(1, 1), None, "nan: no published figure");
    assert_eq!(t.cell("-bn", "5").count(), 2, "one run per seed");
    assert!(e.tables[1].panels_by_rows && !t.panels_by_rows);
    assert_eq!(t.figure, "table1");
    // cnn3 and cnn3-bn with sgd are in both tables: the experiment trains them once.
    assert_eq!(e.points.len(), 8 + 4);
    let keys = e.keys(Path::new("o"), false);
    let distinct: std::collections::HashSet<&String> = keys.iter().map(|(k, _)| k).collect();
    assert_eq!(distinct.len(), keys.len());
}

#[test]
fn bad_tables_and_vars_are_one_line_errors() {
    let table = |body: &str| {
        format!("version = 1\n[axes]\nmodel = [\"fc8{{bn}}\"]\nvars = {{ bn = [\"\", \"-bn\"] }}\n{body}")
    };
    for (text, want) in [
        (
            "version = 1\n[axes]\nmodel = [\"fc8\"]\nvars = { bn = [\"\", \"-bn\"] }\n".to_string(),
            "exp.toml: axes.vars.bn: no model name uses {bn}",
        ),
        (
            "version = 1\n[axes]\nmodel = [\"fc8{optim}\"]\nvars = { optim = [\"x\"] }\n"
                .to_string(),
            "exp.toml: axes.vars.optim: a var needs a name of its own",
        ),
        (
            "version = 1\n[axes]\nmodel = [\"cnn{depth}\"]\n".to_string(),
            "exp.toml: axes.model: 'cnn{depth}' names a var that axes.vars does not give",
        ),
        (
            table("[report]\nrows = \"bn\"\npublished = [[1.0]]\n"),
            "exp.toml: report.published: needs 2 rows of 1 figures",
        ),
        (
            table("[report]\nrows = \"bn\"\nrow_labels = [\"no\"]\n"),
            "exp.toml: report.row_labels: 1 labels for 2 values",
        ),
        (
            table("[report]\nrows = \"bn\"\n[[table]]\nrows = \"bn\"\n"),
            "exp.toml: give [report] (one table) or [[table]]s, not both",
        ),
        (
            table("[[table]]\nrows = \"bn\"\ncolumns = \"layers\"\n"),
            "exp.toml: table 1: table.columns: unknown axis 'layers' (the axes are model, optim",
        ),
        (
            table("[[table]]\nrows = \"bn\"\npanels = \"diagonal\"\n"),
            "exp.toml: table 1: table.panels: 'diagonal' is not",
        ),
        (
            "version = 1\n[[table]]\naxes = { optim = [\"sgd\"] }\n".to_string(),
            "exp.toml: table 1: axes.model is missing",
        ),
    ] {
        let e = parse(&text).unwrap_err();
        assert!(e.contains(want), "want '{want}' in: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

/// The study's tables are experiments/study.toml's: their runs, and the study's figures as
/// docs/MODELS.md states them.
#[test]
fn the_study_is_an_experiment_file() {
    use wgtrain::study::grid::{grid, study_tables, TABLES};
    use wgtrain::study::sweep::SweepConfig;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/study.toml");
    let on_disk = Experiment::load(&file).unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        wgtrain::study::experiment::STUDY_FILE
    );
    let tables = study_tables();
    assert_eq!(tables.len(), 4);
    // The published figures, table by table, as docs/MODELS.md's "The study" writes them.
    let models_md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/MODELS.md"))
            .unwrap();
    let study = &models_md[models_md.find("## The study").unwrap()..];
    let study = &study[..study.find("\n## ").unwrap()];
    let rows: Vec<Vec<Option<f64>>> = study
        .lines()
        .filter(|l| l.starts_with("| no batchnorm |") || l.starts_with("| batchnorm |"))
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .skip(1)
                .map(|c| c.parse().ok())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 8);
    for (t, pair) in tables.iter().zip(rows.chunks(2)) {
        for (row, want) in pair.iter().enumerate() {
            let ours: Vec<Option<f64>> = t.columns.iter().map(|c| c.study[row]).collect();
            assert_eq!(&ours, want, "{}", t.title);
        }
    }
    // 26 distinct runs; `wgtrain sweep experiments/study.toml` trains the same ones under the same
    // keys as `wgtrain sweep`.
    let runs = grid(&TABLES);
    assert_eq!(runs.len(), 26);
    let out = Path::new("o");
    let study_keys: std::collections::BTreeSet<String> = runs
        .iter()
        .map(|g| SweepConfig::new(out).key(&g.spec))
        .collect();
    let file_keys: std::collections::BTreeSet<String> = on_disk
        .keys(out, false)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(study_keys, file_keys);
    assert_eq!(
        runs.iter().filter(|g| g.tables == [2, 3, 4]).count(),
        2,
        "cnn7 and cnn7-bn at SGD's lr 0.01 are in Tables II, III and IV"
    );
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
    let (tmp, file) = experiment_file(
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
    );
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
            .filter(|r| r[col("model")] == cell[2])
            .map(|r| r[col("val_acc")].parse().unwrap())
            .collect();
        let s = Stats::of(&vals).unwrap();
        assert_eq!((&cell[1], &cell[5]), ("model", "val_acc"));
        assert_eq!(cell[6].parse::<f64>().unwrap(), s.mean);
        assert_eq!(cell[7].parse::<f64>().unwrap(), s.std.unwrap());
        assert_eq!(&cell[8], "2");
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

/// Two tables sharing runs, with published figures: each table's cells, its "(published)" and "†"
/// marks, its own figure; the shared runs trained once.
#[test]
fn a_quick_experiment_with_tables_and_published_figures() {
    let (tmp, file) = experiment_file(
        r#"version = 1
title = "two tables"
[settings]
data = "data"
val_size = 100
steps = 6
[axes]
optim = ["sgd"]
seed = [1, 2]
batch = [10]
vars = { bn = ["", "-bn"] }

[[table]]
title = "A: by optimizer"
axes = { model = ["fc8{bn}"], optim = ["sgd", "adam"] }
rows = "bn"
row_labels = ["plain", "bn"]
columns = "optim"
# -1 lies outside any accuracy; nan: nothing published.
published = [[-1.0, nan], [-1.0, nan]]
figure_title = "A's losses"
compare = "nothing in particular"

[[table]]
title = "B: by depth"
axes = { model = ["cnn{layers}{bn}"], vars = { layers = ["3"] } }
rows = "bn"
columns = "layers"
figure = "depth"
"#,
    );
    let out = tmp.path().join("out");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    let stdout = ok(wgtrain(&["sweep", f, "--out", o, "--backend", "cpu", "-q"]));
    // Table A: 2 models x 2 optimizers x 2 seeds; table B: 2 models x 2 seeds.
    assert!(
        stdout.contains("12 runs trained, 0 already done"),
        "{stdout}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("12 of 12 runs finished"), "{report}");
    let a = &report[report.find("## A: by optimizer").unwrap()..report.find("## B").unwrap()];
    let cells =
        |line: &str| -> Vec<String> { line.split('|').map(|c| c.trim().to_string()).collect() };
    let head = a.lines().find(|l| l.starts_with("| bn \\ optim")).unwrap();
    assert_eq!(cells(head), ["", "bn \\ optim", "sgd", "adam", ""], "{a}");
    assert_eq!(a.matches("(n=2) (-1.00) †").count(), 2, "{a}");
    assert_eq!(a.matches("(n=2) (–)").count(), 2, "{a}");
    assert!(a.contains("| plain ") && a.contains("| bn "), "{a}");
    assert!(
        a.contains("![A's losses (compare nothing in particular)](figures/table1.png)"),
        "{a}"
    );
    let b = &report[report.find("## B: by depth").unwrap()..];
    let head = b.lines().find(|l| l.starts_with("| bn \\ layers")).unwrap();
    assert_eq!(cells(head), ["", "bn \\ layers", "3", ""], "{b}");
    assert!(!b.contains('†') && b.contains("figures/depth.png"), "{b}");
    for name in ["table1", "depth"] {
        let png = out.join(format!("figures/{name}.png"));
        assert!(
            std::fs::metadata(&png).unwrap().len() > 1000,
            "{}",
            png.display()
        );
    }
    let cells = std::fs::read_to_string(out.join("cells.csv")).unwrap();
    assert_eq!(cells.lines().count(), 1 + 4 + 2, "{cells}");
    assert!(
        cells
            .lines()
            .skip(1)
            .take(4)
            .all(|l| l.starts_with("1,bn,")),
        "{cells}"
    );
    assert_eq!(cells.matches(",-1\n").count(), 2, "{cells}");
}

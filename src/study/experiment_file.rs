//! The experiment file format (`wgtrain sweep FILE`), read and checked: a versioned TOML file naming
//! shared settings, axes as lists (models or model files, optimizers, learning rates, seeds, batch
//! sizes, recipes, and `vars`: words substituted into model names; some zipped together instead of
//! crossed) and the report's tables (which axis down the rows, which across, which figure in the
//! cells, figures published elsewhere to compare with). The study itself is such a file:
//! `experiments/study.toml`, built in as [`STUDY_FILE`]. Running and reporting: `experiment.rs`.

use crate::error::InputError;
use crate::model::ModelSpec;
use crate::optim::{LrSchedule, OptimKind, Recipe};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The study's batch size (500 steps per epoch on 55,000 images), every experiment's default.
pub const STUDY_BATCH: usize = 110;

/// One training run of the grid: which model, which optimizer, which learning rate.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub model: ModelSpec,
    pub optim: OptimKind,
    pub lr: f32,
}

impl RunSpec {
    pub fn with_lr(model: ModelSpec, optim: OptimKind, lr: f32) -> Self {
        RunSpec { model, optim, lr }
    }
    /// `fc8-bn_adam_lr0.001`: the part of a run key that says what is trained.
    /// The run's key in the sweep whose settings signature is `sig` (see `SweepConfig::signature`),
    /// e.g. `cnn7-bn_sgd_lr0.01_b110_e1_seed1`; also its directory name under `runs/`.
    pub fn key(&self, sig: &str) -> String {
        format!("{}_{sig}", self.id())
    }
    pub fn id(&self) -> String {
        format!("{}_{}_lr{}", self.model.name(), self.optim.name(), self.lr)
    }
}

/// The experiment file format this wgtrain reads.
pub const FORMAT_VERSION: u32 = 1;
/// The study's tables as an experiment file (`experiments/study.toml`, built in): `wgtrain sweep`
/// with no file runs it.
pub const STUDY_FILE: &str = include_str!("../../experiments/study.toml");
/// Where [`STUDY_FILE`] lives in the repository, for its messages.
pub const STUDY_PATH: &str = "experiments/study.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    version: u32,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    axes: Axes,
    /// The one table of an experiment without `[[table]]`s.
    #[serde(default)]
    report: Option<TableSpec>,
    #[serde(default)]
    table: Vec<TableSpec>,
}

/// What every run shares.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The data directory, relative to the experiment file [default: the MNIST copy in data/mnist].
    #[serde(default)]
    pub data: Option<PathBuf>,
    #[serde(default = "default_val_size")]
    pub val_size: usize,
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub steps: Option<usize>,
    /// Evaluate on only the first this many validation and test images.
    #[serde(default)]
    pub eval_limit: Option<usize>,
    /// The recipe every run shares (as `train`'s options; the axes of the same names override them).
    #[serde(default)]
    pub momentum: f32,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub weight_decay: f32,
    #[serde(default)]
    pub lr_schedule: Option<String>,
    #[serde(default)]
    pub warmup: u64,
    #[serde(default)]
    pub clip_norm: Option<f32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data: None,
            val_size: default_val_size(),
            epochs: None,
            steps: None,
            eval_limit: None,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            lr_schedule: None,
            warmup: 0,
            clip_norm: None,
        }
    }
}

fn default_val_size() -> usize {
    crate::io::data::DEFAULT_VALIDATION
}

/// The axes: each a list of values; the grid is their product (zipped ones go together). Every one is
/// optional so that a table's axes can replace only some of the file's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axes {
    pub model: Option<Vec<String>>,
    /// [default: adam]
    pub optim: Option<Vec<String>>,
    /// Learning rates [default: each optimizer's own].
    pub lr: Option<Vec<f32>>,
    /// [default: 1]
    pub seed: Option<Vec<u64>>,
    /// [default: the study's 110]
    pub batch: Option<Vec<usize>>,
    /// Recipe axes [default: the settings' one value].
    pub weight_decay: Option<Vec<f32>>,
    pub momentum: Option<Vec<f32>>,
    pub lr_schedule: Option<Vec<String>>,
    /// Groups of axes taken together, element by element (equal lengths), e.g. `[["optim", "lr"]]`.
    pub zip: Option<Vec<Vec<String>>>,
    /// Axes of words written into model names as `{name}`: `bn = ["", "-bn"]` with
    /// `model = ["cnn7{bn}"]` runs cnn7 and cnn7-bn, and a table can put `bn` down its rows.
    pub vars: Option<BTreeMap<String, Vec<String>>>,
}

impl Axes {
    /// These axes where given, `base`'s elsewhere (vars merged by name, these winning).
    fn over(&self, base: &Axes) -> Axes {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.as_ref().or(b.as_ref()).cloned()
        }
        let mut vars = base.vars.clone().unwrap_or_default();
        vars.extend(self.vars.clone().unwrap_or_default());
        Axes {
            model: pick(&self.model, &base.model),
            optim: pick(&self.optim, &base.optim),
            lr: pick(&self.lr, &base.lr),
            seed: pick(&self.seed, &base.seed),
            batch: pick(&self.batch, &base.batch),
            weight_decay: pick(&self.weight_decay, &base.weight_decay),
            momentum: pick(&self.momentum, &base.momentum),
            lr_schedule: pick(&self.lr_schedule, &base.lr_schedule),
            zip: pick(&self.zip, &base.zip),
            vars: Some(vars),
        }
    }
}

/// A table of the report as the file writes it (`[report]`, or each `[[table]]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSpec {
    title: Option<String>,
    /// This table's grid: the file's `[axes]` with these in place of the same names.
    axes: Option<Axes>,
    rows: Option<String>,
    columns: Option<String>,
    metric: Option<String>,
    /// Names shown for the rows' and columns' values, in order (default: the values).
    row_labels: Option<Vec<String>>,
    column_labels: Option<Vec<String>>,
    /// Figures to compare with (e.g. a paper's), rows x columns, in the report's units (percent for
    /// accuracies); `nan` where there is none. The report shows them in parentheses, with "†" where
    /// one lies outside our lowest to highest.
    published: Option<Vec<Vec<f64>>>,
    /// The figure's panels: one per column value (default) or one per row value ("rows").
    panels: Option<String>,
    /// The figure's file stem under figures/, its title, and what to compare it with.
    figure: Option<String>,
    figure_title: Option<String>,
    compare: Option<String>,
}

const AXES: [&str; 8] = [
    "model",
    "optim",
    "lr",
    "seed",
    "batch",
    "weight_decay",
    "momentum",
    "lr_schedule",
];
const METRICS: [&str; 6] = [
    "test_acc",
    "val_acc",
    "test_loss",
    "val_loss",
    "train_loss",
    "images_per_s",
];

/// One point of the grid: a value on every axis (`lr`: the optimizer's default unless given).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub model: ModelSpec,
    pub optim: OptimKind,
    pub lr: f32,
    pub seed: u64,
    pub batch: usize,
    pub recipe: Recipe,
    /// The value of each of the table's vars.
    pub vars: Vec<(String, String)>,
}

impl Point {
    /// This point's value on `axis`, as the report shows it.
    pub fn value(&self, axis: &str) -> String {
        match axis {
            "model" => self.model.name(),
            "optim" => self.optim.name().to_string(),
            "lr" => self.lr.to_string(),
            "seed" => self.seed.to_string(),
            "batch" => self.batch.to_string(),
            "weight_decay" => self.recipe.weight_decay.to_string(),
            "momentum" => self.recipe.momentum.to_string(),
            "lr_schedule" => self.recipe.schedule.name(),
            _ => self
                .vars
                .iter()
                .find(|(k, _)| k == axis)
                .map_or_else(String::new, |(_, v)| v.clone()),
        }
    }
    /// The training run this point is (points that differ only in vars are one run).
    pub fn run(&self) -> RunSpec {
        RunSpec::with_lr(self.model.clone(), self.optim, self.lr)
    }
    fn same_run(&self, o: &Point) -> bool {
        self.run().id() == o.run().id()
            && (self.seed, self.batch, self.recipe) == (o.seed, o.batch, o.recipe)
    }
}

/// One table of the report, checked: its grid and its layout.
#[derive(Clone, Debug)]
pub struct Table {
    /// The heading (None: the experiment's one table, under the experiment's title).
    pub title: Option<String>,
    pub points: Vec<Point>,
    pub rows: String,
    pub columns: String,
    pub metric: String,
    /// The distinct values down the rows and across the columns, in grid order, and their labels.
    pub row_values: Vec<String>,
    pub column_values: Vec<String>,
    pub row_labels: Vec<String>,
    pub column_labels: Vec<String>,
    /// Published figures per row and column (empty: none given).
    pub published: Vec<Vec<Option<f64>>>,
    /// Panels of the figure by row value instead of by column value.
    pub panels_by_rows: bool,
    pub figure: String,
    pub figure_title: String,
    pub compare: Option<String>,
}

impl Table {
    /// The points of the cell at row value `rv` and column value `cv`.
    pub fn cell<'a>(&'a self, rv: &'a str, cv: &'a str) -> impl Iterator<Item = &'a Point> + 'a {
        self.points
            .iter()
            .filter(move |p| p.value(&self.rows) == rv && p.value(&self.columns) == cv)
    }
    /// The published figure of row `r`, column `c` (indices), if any.
    pub fn published_at(&self, r: usize, c: usize) -> Option<f64> {
        self.published
            .get(r)
            .and_then(|row| row.get(c))
            .copied()
            .flatten()
    }
}

/// A checked experiment: its settings, every run of its grid, and its tables.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub path: PathBuf,
    pub text: String,
    pub title: String,
    pub settings: Settings,
    /// Every distinct run of every table, in table order.
    pub points: Vec<Point>,
    pub tables: Vec<Table>,
}

/// Whether `s` can be a file stem or var name: letters, digits, `_` and `-`.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The points of `a`'s grid; errors say `at` (e.g. "table 2: ") where.
fn grid_of(
    a: &Axes,
    s: &Settings,
    base: &Path,
    at: &str,
    models: &mut BTreeMap<String, ModelSpec>,
) -> Result<Vec<Point>, String> {
    let templates = a
        .model
        .clone()
        .ok_or_else(|| format!("{at}axes.model is missing: name at least one model"))?;
    let vars = a.vars.clone().unwrap_or_default();
    for name in vars.keys() {
        if AXES.contains(&name.as_str()) || !plain_name(name) || name.contains('-') {
            return Err(format!(
                "{at}axes.vars.{name}: a var needs a name of its own (letters, digits, _), not an axis"
            ));
        }
        let mark = format!("{{{name}}}");
        if !templates.iter().any(|t| t.contains(&mark)) {
            return Err(format!(
                "{at}axes.vars.{name}: no model name uses {mark}, so its values would train the same runs"
            ));
        }
    }
    let optims = a
        .optim
        .clone()
        .unwrap_or_else(|| vec!["adam".into()])
        .iter()
        .map(|o| OptimKind::parse(o).map_err(|e| format!("{at}axes.optim: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let lrs = a.lr.clone().unwrap_or_default();
    if let Some(lr) = lrs.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
        return Err(format!("{at}axes.lr: {lr} is not a positive number"));
    }
    let seeds = a.seed.clone().unwrap_or_else(|| vec![1]);
    let batches = a.batch.clone().unwrap_or_else(|| vec![STUDY_BATCH]);
    if batches.contains(&0) {
        return Err(format!("{at}axes.batch: a batch of 0"));
    }
    let schedules = a
        .lr_schedule
        .clone()
        .unwrap_or_else(|| vec![s.lr_schedule.clone().unwrap_or_else(|| "constant".into())])
        .iter()
        .map(|x| LrSchedule::parse(x).map_err(|e| format!("{at}{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let decays = a
        .weight_decay
        .clone()
        .unwrap_or_else(|| vec![s.weight_decay]);
    let momenta = a.momentum.clone().unwrap_or_else(|| vec![s.momentum]);
    let mut lens: BTreeMap<String, usize> = [
        ("model", templates.len()),
        ("optim", optims.len()),
        ("lr", if a.lr.is_some() { lrs.len() } else { 1 }),
        ("seed", seeds.len()),
        ("batch", batches.len()),
        ("weight_decay", decays.len()),
        ("momentum", momenta.len()),
        ("lr_schedule", schedules.len()),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    for (name, values) in &vars {
        lens.insert(name.clone(), values.len());
    }
    if let Some((axis, _)) = lens.iter().find(|(_, &n)| n == 0) {
        let axis = if AXES.contains(&axis.as_str()) {
            axis.clone()
        } else {
            format!("vars.{axis}")
        };
        return Err(format!("{at}axes.{axis} is empty: the grid has no run"));
    }
    let names: Vec<String> = AXES
        .iter()
        .map(|x| x.to_string())
        .chain(vars.keys().cloned())
        .collect();
    // Groups of axes: each zip group, then every axis in no group (the fixed axes, then the vars).
    let mut groups: Vec<Vec<String>> = Vec::new();
    for z in a.zip.iter().flatten() {
        let mut g: Vec<String> = Vec::new();
        for name in z {
            if !names.contains(name) {
                return Err(format!(
                    "{at}axes.zip: unknown axis '{name}' (the axes are {})",
                    names.join(", ")
                ));
            }
            if groups.iter().flatten().chain(&g).any(|x| x == name) {
                return Err(format!("{at}axes.zip: axis '{name}' is zipped twice"));
            }
            g.push(name.clone());
        }
        let n: Vec<usize> = g.iter().map(|x| lens[x]).collect();
        if n.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!(
                "{at}axes.zip: {} have {} values: zipped axes need as many each",
                g.join(", "),
                n.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        groups.push(g);
    }
    for axis in &names {
        if !groups.iter().flatten().any(|x| x == axis) {
            groups.push(vec![axis.clone()]);
        }
    }
    // The product over groups: an index per axis for each point.
    let mut picks: Vec<BTreeMap<&str, usize>> = vec![BTreeMap::new()];
    for g in &groups {
        let n = lens[&g[0]];
        picks = picks
            .into_iter()
            .flat_map(|p| {
                (0..n).map(move |i| {
                    let mut q = p.clone();
                    for axis in g {
                        q.insert(axis.as_str(), i);
                    }
                    q
                })
            })
            .collect();
    }
    let mut points = Vec::with_capacity(picks.len());
    for p in &picks {
        let optim = optims[p["optim"]];
        let recipe = Recipe {
            momentum: momenta[p["momentum"]],
            nesterov: s.nesterov,
            weight_decay: decays[p["weight_decay"]],
            schedule: schedules[p["lr_schedule"]],
            warmup: s.warmup,
            clip_norm: s.clip_norm,
        };
        recipe
            .check(optim)
            .map_err(|e| format!("{at}{} with {}: {e}", optim.name(), recipe.describe()))?;
        let point_vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v[p[k.as_str()]].clone()))
            .collect();
        let template = &templates[p["model"]];
        let mut name = template.clone();
        for (k, v) in &point_vars {
            name = name.replace(&format!("{{{k}}}"), v);
        }
        if name.contains('{') {
            return Err(format!(
                "{at}axes.model: '{template}' names a var that axes.vars does not give"
            ));
        }
        if !models.contains_key(&name) {
            // A model file is relative to the experiment file, as the data directory is.
            let candidate = base.join(&name);
            let spec_name = if crate::model::file::builtin(&name).is_none() && candidate.is_file() {
                candidate.display().to_string()
            } else {
                name.clone()
            };
            let spec = ModelSpec::parse(&spec_name).map_err(|e| format!("{at}axes.model: {e}"))?;
            models.insert(name.clone(), spec);
        }
        points.push(Point {
            model: models[&name].clone(),
            optim,
            lr: if a.lr.is_some() {
                lrs[p["lr"]]
            } else {
                optim.default_lr()
            },
            seed: seeds[p["seed"]],
            batch: batches[p["batch"]],
            recipe,
            vars: point_vars,
        });
    }
    Ok(points)
}

/// Checks a table's layout against its points: rows and columns name axes, labels and published
/// figures fit, the metric is known.
fn table_of(
    t: &TableSpec,
    points: Vec<Point>,
    at: &str,
    what: &str,
    default_figure: String,
) -> Result<Table, String> {
    let vars: Vec<String> = points
        .first()
        .map(|p| p.vars.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let known = || -> String {
        AXES.iter()
            .map(|x| x.to_string())
            .chain(vars.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = t.rows.clone().unwrap_or_else(|| "model".into());
    let columns = t.columns.clone().unwrap_or_else(|| "optim".into());
    for (key, axis) in [("rows", &rows), ("columns", &columns)] {
        if !AXES.contains(&axis.as_str()) && !vars.contains(axis) {
            return Err(format!(
                "{at}{what}.{key}: unknown axis '{axis}' (the axes are {})",
                known()
            ));
        }
    }
    if rows == columns {
        return Err(format!("{at}{what}: rows and columns are both '{rows}'"));
    }
    let metric = t.metric.clone().unwrap_or_else(|| "test_acc".into());
    if !METRICS.contains(&metric.as_str()) {
        return Err(format!(
            "{at}{what}.metric: unknown figure '{metric}' (one of {})",
            METRICS.join(", ")
        ));
    }
    let distinct = |axis: &str| {
        let mut v: Vec<String> = Vec::new();
        for p in &points {
            let x = p.value(axis);
            if !v.contains(&x) {
                v.push(x);
            }
        }
        v
    };
    let (row_values, column_values) = (distinct(&rows), distinct(&columns));
    let labels = |key: &str, given: &Option<Vec<String>>, values: &[String]| match given {
        None => Ok(values.to_vec()),
        Some(l) if l.len() == values.len() => Ok(l.clone()),
        Some(l) => Err(format!(
            "{at}{what}.{key}: {} labels for {} values ({})",
            l.len(),
            values.len(),
            values.join(", ")
        )),
    };
    let row_labels = labels("row_labels", &t.row_labels, &row_values)?;
    let column_labels = labels("column_labels", &t.column_labels, &column_values)?;
    let published = match &t.published {
        None => Vec::new(),
        Some(p) => {
            if p.len() != row_values.len() || p.iter().any(|r| r.len() != column_values.len()) {
                return Err(format!(
                    "{at}{what}.published: needs {} rows of {} figures (nan where there is none)",
                    row_values.len(),
                    column_values.len()
                ));
            }
            p.iter()
                .map(|r| r.iter().map(|v| v.is_finite().then_some(*v)).collect())
                .collect()
        }
    };
    let panels_by_rows = match t.panels.as_deref() {
        None | Some("columns") => false,
        Some("rows") => true,
        Some(x) => {
            return Err(format!(
                "{at}{what}.panels: '{x}' is not \"rows\" or \"columns\""
            ))
        }
    };
    let figure = t.figure.clone().unwrap_or(default_figure);
    if !plain_name(&figure) {
        return Err(format!(
            "{at}{what}.figure: '{figure}' is not a plain file name (letters, digits, _ and -)"
        ));
    }
    let figure_title = t.figure_title.clone().unwrap_or_else(|| {
        let (panel, line) = if panels_by_rows {
            (&rows, &columns)
        } else {
            (&columns, &rows)
        };
        format!("Training loss by {panel} and {line}")
    });
    Ok(Table {
        title: t.title.clone(),
        points,
        rows,
        columns,
        metric,
        row_values,
        column_values,
        row_labels,
        column_labels,
        published,
        panels_by_rows,
        figure,
        figure_title,
        compare: t.compare.clone(),
    })
}

impl Experiment {
    /// Reads and checks the experiment file `path`: unknown keys, a missing model file, values out of
    /// range and an empty grid are one-line errors naming the file.
    pub fn load(path: &Path) -> Result<Experiment, InputError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError::unreadable(path, "experiment file", &e))?;
        Self::parse(path, &text)
    }

    /// The study (`experiments/study.toml`, built in).
    pub fn study() -> Experiment {
        Self::parse(Path::new(STUDY_PATH), STUDY_FILE).expect("the built-in study file is valid")
    }

    pub fn parse(path: &Path, text: &str) -> Result<Experiment, InputError> {
        let err = |m: String| InputError::file(path, m);
        let raw: RawExperiment = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            err(format!("line {line}: {}", e.message().trim()))
        })?;
        if raw.version != FORMAT_VERSION {
            return Err(err(format!(
                "version {} is not one this wgtrain reads (it reads version {FORMAT_VERSION})",
                raw.version
            )));
        }
        let s = &raw.settings;
        if s.epochs.is_some() && s.steps.is_some() {
            return Err(err("settings: give epochs or steps, not both".into()));
        }
        if s.epochs == Some(0) || s.steps == Some(0) || s.eval_limit == Some(0) {
            return Err(err(
                "settings: epochs, steps and eval_limit must be at least 1".into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut models = BTreeMap::new();
        let mut tables = Vec::new();
        if raw.table.is_empty() {
            let t = raw.report.clone().unwrap_or_default();
            if t.axes.is_some() {
                return Err(err(
                    "report.axes: the axes of an experiment's one table are [axes]".into(),
                ));
            }
            let points = grid_of(&raw.axes, s, base, "", &mut models).map_err(err)?;
            tables.push(table_of(&t, points, "", "report", "experiment".into()).map_err(err)?);
        } else {
            if raw.report.is_some() {
                return Err(err(
                    "give [report] (one table) or [[table]]s, not both".into()
                ));
            }
            for (i, t) in raw.table.iter().enumerate() {
                let at = format!("table {}: ", i + 1);
                let axes = t.axes.clone().unwrap_or_default().over(&raw.axes);
                let points = grid_of(&axes, s, base, &at, &mut models).map_err(err)?;
                let table =
                    table_of(t, points, &at, "table", format!("table{}", i + 1)).map_err(err)?;
                if tables.iter().any(|o: &Table| o.figure == table.figure) {
                    return Err(err(format!(
                        "{at}table.figure: '{}' is another table's figure too",
                        table.figure
                    )));
                }
                tables.push(table);
            }
        }
        let mut points: Vec<Point> = Vec::new();
        for p in tables.iter().flat_map(|t| &t.points) {
            if !points.iter().any(|q| q.same_run(p)) {
                points.push(p.clone());
            }
        }
        Ok(Experiment {
            path: path.to_path_buf(),
            text: text.to_string(),
            title: raw.title.unwrap_or_else(|| path.display().to_string()),
            settings: raw.settings,
            points,
            tables,
        })
    }

    /// The data directory (relative to the experiment file), if the file names one.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        self.settings.data.as_ref().map(|d| base.join(d))
    }
}

//! Experiment files (`wgtrain sweep FILE`): a versioned TOML file naming shared settings, axes as lists
//! (models or model files, optimizers, learning rates, seeds, batch sizes; some zipped together instead
//! of crossed) and the report's table (which axis down the rows, which across, which figure in the
//! cells). The grid is run as one study-style sweep per (batch, seed), so it resumes, shards and shares
//! a directory (`--jobs`) as the study does; the report's cells are the mean ± sample std over every
//! run a cell covers (the seeds), and `cells.csv` holds them as data.

use super::grid::{GridRun, RunSpec};
use super::report::write_runs_csv;
pub use super::stats::Stats;
use super::store::{read_records, RunRecord, RunStatus, RESULTS_FILE};
use super::sweep::{Budget, SweepConfig};
use crate::error::InputError;
use crate::io::atomic::write_atomic;
use crate::io::markdown;
use crate::model::ModelSpec;
use crate::optim::{LrSchedule, OptimKind, Recipe};
use anyhow::Result;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The experiment file format this wgtrain reads.
pub const FORMAT_VERSION: u32 = 1;
/// The copy of the experiment file kept in the sweep directory (so `wgtrain report` can rebuild it).
pub const EXPERIMENT_FILE: &str = "experiment.toml";
/// The table cells as data, beside report.md.
pub const CELLS_CSV: &str = "cells.csv";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    version: u32,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    settings: Settings,
    axes: Axes,
    #[serde(default)]
    report: ReportSpec,
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

/// The axes: each a list of values; the grid is their product (zipped ones go together).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axes {
    pub model: Vec<String>,
    #[serde(default = "default_optims")]
    pub optim: Vec<String>,
    /// Learning rates [default: each optimizer's own].
    #[serde(default)]
    pub lr: Vec<f32>,
    #[serde(default = "default_seeds")]
    pub seed: Vec<u64>,
    #[serde(default = "default_batches")]
    pub batch: Vec<usize>,
    /// Recipe axes [default: the settings' one value].
    #[serde(default)]
    pub weight_decay: Vec<f32>,
    #[serde(default)]
    pub momentum: Vec<f32>,
    #[serde(default)]
    pub lr_schedule: Vec<String>,
    /// Groups of axes taken together, element by element (equal lengths), e.g. `[["optim", "lr"]]`.
    #[serde(default)]
    pub zip: Vec<Vec<String>>,
}

fn default_optims() -> Vec<String> {
    vec!["adam".into()]
}
fn default_seeds() -> Vec<u64> {
    vec![1]
}
fn default_batches() -> Vec<usize> {
    vec![super::grid::STUDY_BATCH]
}

/// The report's table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    #[serde(default = "default_rows")]
    pub rows: String,
    #[serde(default = "default_columns")]
    pub columns: String,
    #[serde(default = "default_metric")]
    pub metric: String,
}

impl Default for ReportSpec {
    fn default() -> Self {
        ReportSpec {
            rows: default_rows(),
            columns: default_columns(),
            metric: default_metric(),
        }
    }
}

fn default_rows() -> String {
    "model".into()
}
fn default_columns() -> String {
    "optim".into()
}
fn default_metric() -> String {
    "test_acc".into()
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

/// One point of the grid: a value on every axis (`lr` None: the optimizer's default).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub model: ModelSpec,
    pub optim: OptimKind,
    pub lr: f32,
    pub seed: u64,
    pub batch: usize,
    pub recipe: Recipe,
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
            _ => String::new(),
        }
    }
}

/// A checked experiment: its settings, every point of its grid, and its report.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub path: PathBuf,
    pub text: String,
    pub title: String,
    pub settings: Settings,
    pub points: Vec<Point>,
    pub report: ReportSpec,
}

impl Experiment {
    /// Reads and checks the experiment file `path`: unknown keys, a missing model file, values out of
    /// range and an empty grid are one-line errors naming the file.
    pub fn load(path: &Path) -> Result<Experiment, InputError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError::unreadable(path, "experiment file", &e))?;
        Self::parse(path, &text)
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
        let a = &raw.axes;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut models = Vec::new();
        for m in &a.model {
            // A model file is relative to the experiment file, as the data directory is.
            let candidate = base.join(m);
            let name = if crate::model::file::builtin(m).is_none() && candidate.is_file() {
                candidate.display().to_string()
            } else {
                m.clone()
            };
            models.push(ModelSpec::parse(&name).map_err(|e| err(format!("axes.model: {e}")))?);
        }
        let optims = a
            .optim
            .iter()
            .map(|o| OptimKind::parse(o).map_err(|e| err(format!("axes.optim: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(lr) = a.lr.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
            return Err(err(format!("axes.lr: {lr} is not a positive number")));
        }
        if a.batch.contains(&0) {
            return Err(err("axes.batch: a batch of 0".into()));
        }
        let schedules = if a.lr_schedule.is_empty() {
            vec![s.lr_schedule.clone().unwrap_or_else(|| "constant".into())]
        } else {
            a.lr_schedule.clone()
        };
        let schedules = schedules
            .iter()
            .map(|x| LrSchedule::parse(x).map_err(|e| err(format!("{e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let one_or = |v: &Vec<f32>, d: f32| if v.is_empty() { vec![d] } else { v.clone() };
        let decays = one_or(&a.weight_decay, s.weight_decay);
        let momenta = one_or(&a.momentum, s.momentum);
        let lens: BTreeMap<&str, usize> = [
            ("model", models.len()),
            ("optim", optims.len()),
            ("lr", a.lr.len().max(1)),
            ("seed", a.seed.len()),
            ("batch", a.batch.len()),
            ("weight_decay", decays.len()),
            ("momentum", momenta.len()),
            ("lr_schedule", schedules.len()),
        ]
        .into_iter()
        .collect();
        if let Some((axis, _)) = lens.iter().find(|(_, &n)| n == 0) {
            return Err(err(format!("axes.{axis} is empty: the grid has no run")));
        }
        // Groups of axes: each zip group, then every axis in no group, in AXES order.
        let mut groups: Vec<Vec<&str>> = Vec::new();
        for z in &a.zip {
            let mut g = Vec::new();
            for name in z {
                let Some(axis) = AXES.iter().find(|x| **x == name.as_str()) else {
                    return Err(err(format!(
                        "axes.zip: unknown axis '{name}' (the axes are {})",
                        AXES.join(", ")
                    )));
                };
                if groups.iter().flatten().chain(&g).any(|x| x == axis) {
                    return Err(err(format!("axes.zip: axis '{name}' is zipped twice")));
                }
                g.push(*axis);
            }
            let n: Vec<usize> = g.iter().map(|x| lens[x]).collect();
            if n.windows(2).any(|w| w[0] != w[1]) {
                return Err(err(format!(
                    "axes.zip: {} have {} values: zipped axes need as many each",
                    g.join(", "),
                    n.iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            groups.push(g);
        }
        for axis in AXES {
            if !groups.iter().flatten().any(|x| *x == axis) {
                groups.push(vec![axis]);
            }
        }
        // The product over groups: an index per axis for each point.
        let mut picks: Vec<BTreeMap<&str, usize>> = vec![BTreeMap::new()];
        for g in &groups {
            let n = lens[g[0]];
            picks = picks
                .into_iter()
                .flat_map(|p| {
                    (0..n).map(move |i| {
                        let mut q = p.clone();
                        for axis in g {
                            q.insert(*axis, i);
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
                .map_err(|e| err(format!("{} with {}: {e}", optim.name(), recipe.describe())))?;
            points.push(Point {
                model: models[p["model"]].clone(),
                optim,
                lr: a.lr.get(p["lr"]).copied().unwrap_or(optim.default_lr()),
                seed: a.seed[p["seed"]],
                batch: a.batch[p["batch"]],
                recipe,
            });
        }
        let r = &raw.report;
        for (what, axis) in [("rows", &r.rows), ("columns", &r.columns)] {
            if !AXES.contains(&axis.as_str()) {
                return Err(err(format!(
                    "report.{what}: unknown axis '{axis}' (the axes are {})",
                    AXES.join(", ")
                )));
            }
        }
        if r.rows == r.columns {
            return Err(err(format!(
                "report: rows and columns are both '{}'",
                r.rows
            )));
        }
        if !METRICS.contains(&r.metric.as_str()) {
            return Err(err(format!(
                "report.metric: unknown figure '{}' (one of {})",
                r.metric,
                METRICS.join(", ")
            )));
        }
        Ok(Experiment {
            path: path.to_path_buf(),
            text: text.to_string(),
            title: raw.title.unwrap_or_else(|| path.display().to_string()),
            settings: raw.settings,
            points,
            report: raw.report,
        })
    }

    /// The data directory (relative to the experiment file), if the file names one.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        self.settings.data.as_ref().map(|d| base.join(d))
    }

    /// One sweep per (batch, seed, recipe) of the grid, in the file's order, each with its points' runs;
    /// `quick` replaces the budget with `sweep --quick`'s.
    pub fn sweeps(&self, out: &Path, quick: bool) -> Vec<SweepConfig> {
        let mut order: Vec<(usize, u64, Recipe)> = Vec::new();
        for p in &self.points {
            if !order.contains(&(p.batch, p.seed, p.recipe)) {
                order.push((p.batch, p.seed, p.recipe));
            }
        }
        order
            .into_iter()
            .map(|(batch, seed, recipe)| {
                let mut cfg = SweepConfig::new(out);
                if quick {
                    cfg = cfg.quick();
                } else {
                    cfg.budget = match (self.settings.steps, self.settings.epochs) {
                        (Some(s), _) => Budget::Steps(s),
                        (None, e) => Budget::Epochs(e.unwrap_or(1)),
                    };
                    cfg.eval_limit = self.settings.eval_limit;
                }
                cfg.batch = batch;
                cfg.seed = seed;
                cfg.recipe = recipe;
                cfg.report = false;
                let mut runs: Vec<GridRun> = Vec::new();
                for p in self
                    .points
                    .iter()
                    .filter(|p| (p.batch, p.seed, p.recipe) == (batch, seed, recipe))
                {
                    let spec = RunSpec::with_lr(p.model.clone(), p.optim, p.lr);
                    if !runs.iter().any(|g| g.spec.id() == spec.id()) {
                        runs.push(GridRun {
                            spec,
                            tables: Vec::new(),
                        });
                    }
                }
                cfg.runs = Some(runs);
                cfg
            })
            .collect()
    }

    /// The run key of every point, with the point (in grid order).
    pub fn keys(&self, out: &Path, quick: bool) -> Vec<(String, Point)> {
        let sweeps = self.sweeps(out, quick);
        self.points
            .iter()
            .map(|p| {
                let cfg = sweeps
                    .iter()
                    .find(|c| (c.batch, c.seed, c.recipe) == (p.batch, p.seed, p.recipe))
                    .expect("every point has its sweep");
                let spec = RunSpec::with_lr(p.model.clone(), p.optim, p.lr);
                (cfg.key(&spec), p.clone())
            })
            .collect()
    }
}

fn metric_of(r: &RunRecord, metric: &str) -> Option<f64> {
    if r.status != RunStatus::Ok {
        return None;
    }
    match metric {
        "test_acc" => r.test_acc,
        "val_acc" => r.val_acc,
        "test_loss" => r.test_loss,
        "val_loss" => r.val_loss,
        "train_loss" => r.train_loss,
        "images_per_s" => r.images_per_s,
        _ => None,
    }
}

/// A metric as the report shows it: accuracies in percent.
fn show(metric: &str, v: f64) -> String {
    match metric {
        "test_acc" | "val_acc" => format!("{:.2}", v * 100.0),
        "images_per_s" => format!("{v:.0}"),
        _ => format!("{v:.4}"),
    }
}

/// Writes the experiment's report.md, cells.csv and runs.csv in `out` from its results.jsonl.
pub fn write_experiment_report(
    exp: &Experiment,
    out: &Path,
    quick: bool,
    warn: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let records = read_records(&out.join(RESULTS_FILE), warn)?;
    let by_key: BTreeMap<&str, &RunRecord> = records.iter().map(|r| (r.key.as_str(), r)).collect();
    let keys = exp.keys(out, quick);
    let (rows_axis, cols_axis, metric) = (
        exp.report.rows.as_str(),
        exp.report.columns.as_str(),
        exp.report.metric.as_str(),
    );
    let mut row_vals: Vec<String> = Vec::new();
    let mut col_vals: Vec<String> = Vec::new();
    for (_, p) in &keys {
        for (vals, axis) in [(&mut row_vals, rows_axis), (&mut col_vals, cols_axis)] {
            let v = p.value(axis);
            if !vals.contains(&v) {
                vals.push(v);
            }
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        rows_axis, cols_axis, "metric", "mean", "std", "n", "min", "max", "runs",
    ])?;
    let mut table: Vec<Vec<String>> = Vec::new();
    let (mut done, mut planned) = (0, 0);
    for rv in &row_vals {
        let mut line = vec![rv.clone()];
        for cv in &col_vals {
            let cell: Vec<&(String, Point)> = keys
                .iter()
                .filter(|(_, p)| p.value(rows_axis) == *rv && p.value(cols_axis) == *cv)
                .collect();
            planned += cell.len();
            let values: Vec<f64> = cell
                .iter()
                .filter_map(|(k, _)| by_key.get(k.as_str()))
                .inspect(|_| done += 1)
                .filter_map(|r| metric_of(r, metric))
                .collect();
            let text = match Stats::of(&values) {
                None if cell.is_empty() => String::new(),
                None => "–".into(),
                Some(s) => {
                    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
                    csv.write_record([
                        rv.as_str(),
                        cv.as_str(),
                        metric,
                        &s.mean.to_string(),
                        &opt(s.std),
                        &s.n.to_string(),
                        &s.min.to_string(),
                        &s.max.to_string(),
                        &cell.len().to_string(),
                    ])?;
                    match s.std {
                        Some(sd) => format!(
                            "{} ± {} (n={})",
                            show(metric, s.mean),
                            show(metric, sd),
                            s.n
                        ),
                        None => show(metric, s.mean),
                    }
                }
            };
            line.push(text);
        }
        table.push(line);
    }
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", exp.title);
    let _ = writeln!(
        md,
        "Experiment `{}`: {done} of {planned} runs finished{}. Each cell: {metric}{} over the runs \
         with that {rows_axis} and {cols_axis} (every other axis, such as the seed, pooled): mean ± \
         sample standard deviation (n), or the one value; \"–\" marks runs not finished yet. \
         As data: `{CELLS_CSV}` (cells), `runs.csv` (runs).\n",
        exp.path.display(),
        if quick {
            " (`--quick`: a smoke budget, not comparable with full runs)"
        } else {
            ""
        },
        if metric.ends_with("_acc") {
            " (percent)"
        } else {
            ""
        },
    );
    let mut header = vec![format!("{rows_axis} \\ {cols_axis}")];
    header.extend(col_vals.iter().cloned());
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    md.push_str(&markdown::table(&header_refs, &table));
    md.push('\n');
    match render_experiment_figure(exp, out, &keys, &row_vals, &col_vals)? {
        Some(png) => {
            let _ = writeln!(
                md,
                "![Training loss by {cols_axis} and {rows_axis}]({png})\n\nAlso as [SVG]({}).",
                png.replace(".png", ".svg")
            );
        }
        None => {
            let _ = writeln!(md, "_No loss curves yet._");
        }
    }
    write_atomic(
        &out.join(CELLS_CSV),
        &csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    write_runs_csv(out, &records)?;
    let path = out.join(super::report::REPORT_FILE);
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// The quick flag an experiment directory was swept with: its copy of the file records it.
pub const QUICK_MARK: &str = "# swept with --quick\n";

/// Keeps a copy of the experiment file in `out` (with a mark if `quick`), for `wgtrain report`.
pub fn keep_copy(exp: &Experiment, out: &Path, quick: bool) -> Result<(), InputError> {
    let text = if quick {
        format!("{QUICK_MARK}{}", exp.text)
    } else {
        exp.text.clone()
    };
    // Relative paths in the copy would now be relative to `out`: keep the original's location too.
    let text = format!(
        "# from {}\n{text}",
        exp.path
            .canonicalize()
            .unwrap_or_else(|_| exp.path.clone())
            .display()
    );
    write_atomic(&out.join(EXPERIMENT_FILE), text.as_bytes())
}

/// The experiment a sweep directory holds, if any: its original file (the copy's first line names
/// it) read again, and whether it was swept with `--quick`.
pub fn stored(out: &Path) -> Result<Option<(Experiment, bool)>, InputError> {
    let copy = out.join(EXPERIMENT_FILE);
    if !copy.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&copy).map_err(|e| InputError::unreadable(&copy, "file", &e))?;
    let original = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# from "))
        .map(PathBuf::from)
        .ok_or_else(|| InputError::file(&copy, "not an experiment copy wgtrain wrote"))?;
    let quick = text.contains(QUICK_MARK);
    let body: String = text
        .lines()
        .skip(1)
        .filter(|l| *l != QUICK_MARK.trim_end())
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(Some((Experiment::parse(&original, &body)?, quick)))
}

/// An experiment's sweeps, one after another on whichever backend was chosen.
pub struct ExperimentJob<'a> {
    pub data: crate::io::data::Splits,
    pub sweeps: Vec<SweepConfig>,
    pub observer: &'a mut dyn super::sweep::SweepObserver,
}

impl crate::backend::select::OnBackend for ExperimentJob<'_> {
    type Output = super::sweep::SweepSummary;
    fn run<B: crate::backend::Backend + 'static>(self, be: &B) -> Result<Self::Output> {
        let mut all = super::sweep::SweepSummary::default();
        for cfg in &self.sweeps {
            let s = super::sweep::run_sweep(be, &self.data, cfg, self.observer)?;
            all.executed.extend(s.executed);
            all.skipped.extend(s.skipped);
            all.diverged.extend(s.diverged);
            all.elsewhere.extend(s.elsewhere);
        }
        Ok(all)
    }
}

/// A cell's loss curve: the mean over its runs of each run's smoothed loss, step by step, and the
/// lowest and highest of them (the band), over the steps every run has.
struct CellCurve {
    label: String,
    mean: Vec<(f64, f64)>,
    low: Vec<f64>,
    high: Vec<f64>,
}

fn cell_curve(label: String, runs: &[Vec<(f64, f64)>]) -> Option<CellCurve> {
    let n = runs.iter().map(Vec::len).min()?;
    if n == 0 {
        return None;
    }
    let window = super::figures::smoothing_window(n);
    let smooth: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| super::figures::moving_average(&r[..n], window))
        .collect();
    let at = |i: usize| smooth.iter().map(move |s| s[i].1);
    Some(CellCurve {
        label,
        mean: (0..n)
            .map(|i| (smooth[0][i].0, at(i).sum::<f64>() / smooth.len() as f64))
            .collect(),
        low: (0..n)
            .map(|i| at(i).fold(f64::INFINITY, f64::min))
            .collect(),
        high: (0..n)
            .map(|i| at(i).fold(f64::NEG_INFINITY, f64::max))
            .collect(),
    })
}

struct ExperimentFigure<'a> {
    title: &'a str,
    /// One panel per column value: its curves, one per row value.
    panels: Vec<(String, Vec<CellCurve>)>,
}

impl crate::io::plot_file::Figure for ExperimentFigure<'_> {
    fn draw<DB: plotters::prelude::DrawingBackend>(
        &self,
        root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<()> {
        use crate::io::plot_file::plot_err;
        use plotters::prelude::*;
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root
            .titled(
                self.title,
                ("sans-serif", 26).into_font().style(FontStyle::Bold),
            )
            .map_err(plot_err)?;
        let (body, foot) = root.split_vertically(root.dim_in_pixel().1 - 28);
        foot.draw_text(
            "line: mean over the cell's runs (seeds) of the smoothed training loss; band: lowest to highest run",
            &("sans-serif", 15).into_text_style(&foot),
            (12, 4),
        )
        .map_err(plot_err)?;
        let curves = || self.panels.iter().flat_map(|(_, c)| c.iter());
        let xmax = curves()
            .filter_map(|c| c.mean.last().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let ymax = (curves()
            .flat_map(|c| c.high.iter().copied())
            .fold(0.0, f64::max)
            * 1.1)
            .clamp(0.1, 10.0);
        let areas = body.split_evenly((1, self.panels.len().max(1)));
        for ((title, cells), area) in self.panels.iter().zip(areas) {
            let mut chart = super::figures::loss_chart(&area, title, xmax, ymax)?;
            for (i, c) in cells.iter().enumerate() {
                let color = super::figures::COLORS[i % super::figures::COLORS.len()];
                let band: Vec<(f64, f64)> = c
                    .mean
                    .iter()
                    .zip(&c.high)
                    .map(|(p, h)| (p.0, h.min(ymax)))
                    .chain(
                        c.mean
                            .iter()
                            .zip(&c.low)
                            .rev()
                            .map(|(p, l)| (p.0, l.min(ymax))),
                    )
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(band, color.mix(0.2).filled())))
                    .map_err(plot_err)?;
                chart
                    .draw_series(LineSeries::new(
                        c.mean.iter().map(|p| (p.0, p.1.min(ymax))),
                        color.stroke_width(3),
                    ))
                    .map_err(plot_err)?
                    .label(c.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                    });
            }
            if !cells.is_empty() {
                super::figures::draw_legend(&mut chart)?;
            }
        }
        root.present().map_err(plot_err)?;
        Ok(())
    }
}

/// Draws the experiment's loss figure (`figures/experiment.png` and `.svg`): a panel per column
/// value, a mean curve with its band per row value. Returns the PNG's path relative to `out`, or
/// None if no run has losses yet.
fn render_experiment_figure(
    exp: &Experiment,
    out: &Path,
    keys: &[(String, Point)],
    rows: &[String],
    cols: &[String],
) -> Result<Option<String>> {
    crate::io::font::register_font();
    let (ra, ca) = (exp.report.rows.as_str(), exp.report.columns.as_str());
    let mut panels = Vec::new();
    for cv in cols {
        let mut cells = Vec::new();
        for rv in rows {
            let runs: Vec<Vec<(f64, f64)>> = keys
                .iter()
                .filter(|(_, p)| p.value(ra) == *rv && p.value(ca) == *cv)
                .filter_map(|(k, _)| {
                    super::figures::read_losses(&out.join("runs").join(k).join("losses.csv")).ok()
                })
                .filter(|l| !l.is_empty())
                .collect();
            let label = format!("{rv} (n={})", runs.len());
            if let Some(c) = cell_curve(label, &runs) {
                cells.push(c);
            }
        }
        panels.push((format!("{ca} {cv}"), cells));
    }
    if panels.iter().all(|(_, c)| c.is_empty()) {
        return Ok(None);
    }
    let dir = out.join("figures");
    std::fs::create_dir_all(&dir)
        .map_err(|e| InputError::file(&dir, format!("cannot create: {e}")))?;
    let width = (520 * panels.len().max(1)) as u32;
    let fig = ExperimentFigure {
        title: &exp.title,
        panels,
    };
    for ext in ["png", "svg"] {
        crate::io::plot_file::save_figure(
            &fig,
            &dir.join(format!("experiment.{ext}")),
            (width, 480),
        )?;
    }
    Ok(Some("figures/experiment.png".into()))
}

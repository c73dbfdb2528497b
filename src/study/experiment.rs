//! Running an experiment file (`wgtrain sweep FILE`; the format: `experiment_file.rs`): one
//! study-style sweep per (batch, seed, recipe) of its grid, so it resumes, shards and shares a
//! directory (`--jobs`) as the study does; and its report: per table, cells of mean ± sample std over
//! every run a cell covers (the seeds) beside any published figures, `cells.csv` holding them as data,
//! and a loss figure per table with a band over the seeds.

pub use super::experiment_file::{
    Axes, Experiment, Point, Settings, Table, FORMAT_VERSION, STUDY_FILE, STUDY_PATH,
};
use super::figures::{draw_lines, read_runs, Line};
use super::grid::GridRun;
use super::report::write_runs_csv;
pub use super::stats::Stats;
use super::store::{read_records, RunRecord, RunStatus, RESULTS_FILE};
use super::sweep::{Budget, SweepConfig};
use crate::error::InputError;
use crate::io::atomic::write_atomic;
use crate::io::markdown;
use crate::optim::Recipe;
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The copy of the experiment file kept in the sweep directory (so `wgtrain report` can rebuild it).
pub const EXPERIMENT_FILE: &str = "experiment.toml";
/// The table cells as data, beside report.md.
pub const CELLS_CSV: &str = "cells.csv";

impl Experiment {
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
                    let spec = p.run();
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
        self.keyed(&self.points, out, quick)
    }

    /// The run key of each of `points` (some table's), with the point.
    pub fn keyed(&self, points: &[Point], out: &Path, quick: bool) -> Vec<(String, Point)> {
        let sweeps = self.sweeps(out, quick);
        points
            .iter()
            .map(|p| {
                let cfg = sweeps
                    .iter()
                    .find(|c| (c.batch, c.seed, c.recipe) == (p.batch, p.seed, p.recipe))
                    .expect("every point has its sweep");
                (cfg.key(&p.run()), p.clone())
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

/// A published figure (already in the report's units) as precise as ours are shown.
fn show_published(metric: &str, p: f64) -> String {
    show(
        metric,
        if metric.ends_with("_acc") {
            p / 100.0
        } else {
            p
        },
    )
}

/// A metric in the units the report shows (and `published` is written in): accuracies in percent.
fn shown_units(metric: &str, v: f64) -> f64 {
    if metric.ends_with("_acc") {
        v * 100.0
    } else {
        v
    }
}

/// The run keys of the cell at row value `rv` and column value `cv` of table `t`.
fn cell_keys<'a>(t: &Table, keys: &'a [(String, Point)], rv: &str, cv: &str) -> Vec<&'a String> {
    keys.iter()
        .filter(|(_, p)| p.value(&t.rows) == rv && p.value(&t.columns) == cv)
        .map(|(k, _)| k)
        .collect()
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
    let all = exp.keys(out, quick);
    let done = all
        .iter()
        .filter(|(k, _)| by_key.contains_key(k.as_str()))
        .count();
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "table",
        "rows",
        "row",
        "columns",
        "column",
        "metric",
        "mean",
        "std",
        "n",
        "min",
        "max",
        "runs",
        "published",
    ])?;
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", exp.title);
    let _ = writeln!(
        md,
        "Experiment `{}`: {done} of {} runs finished{}. Each cell: the table's figure over the runs \
         with that row and column (every other axis, such as the seed, pooled): mean ± sample \
         standard deviation (n), or the one value; a published figure follows in parentheses, with \
         \"†\" where it lies outside our lowest to highest of several runs; \"–\" marks runs not finished yet. \
         Figures: a line per cell, the mean over its runs, in a band from the lowest to the highest. \
         As data: `{CELLS_CSV}` (cells), `runs.csv` (runs).\n",
        exp.path.display(),
        all.len(),
        if quick {
            " (`--quick`: a smoke budget, not comparable with full runs)"
        } else {
            ""
        },
    );
    for (n, t) in exp.tables.iter().enumerate() {
        if let Some(title) = &t.title {
            let _ = writeln!(md, "## {title}\n");
        }
        let keys = exp.keyed(&t.points, out, quick);
        let metric = t.metric.as_str();
        let _ = writeln!(
            md,
            "{metric}{}: {} down, {} across.\n",
            if metric.ends_with("_acc") {
                " (percent)"
            } else {
                ""
            },
            t.rows,
            t.columns
        );
        let mut body: Vec<Vec<String>> = Vec::new();
        for (r, rv) in t.row_values.iter().enumerate() {
            let mut line = vec![t.row_labels[r].clone()];
            for (c, cv) in t.column_values.iter().enumerate() {
                let cell = cell_keys(t, &keys, rv, cv);
                let values: Vec<f64> = cell
                    .iter()
                    .filter_map(|k| by_key.get(k.as_str()))
                    .filter_map(|r| metric_of(r, metric))
                    .collect();
                let published = t.published_at(r, c);
                let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
                let mut outside = false;
                let mut text = match Stats::of(&values) {
                    None if cell.is_empty() => String::new(),
                    None => "–".into(),
                    Some(s) => {
                        csv.write_record([
                            (n + 1).to_string(),
                            t.rows.clone(),
                            rv.clone(),
                            t.columns.clone(),
                            cv.clone(),
                            metric.to_string(),
                            s.mean.to_string(),
                            opt(s.std),
                            s.n.to_string(),
                            s.min.to_string(),
                            s.max.to_string(),
                            cell.len().to_string(),
                            opt(published),
                        ])?;
                        outside = s.n > 1
                            && published.is_some_and(|p| {
                                p < shown_units(metric, s.min) - 1e-9
                                    || p > shown_units(metric, s.max) + 1e-9
                            });
                        let mean = show(metric, s.mean);
                        match s.std {
                            Some(sd) => format!("{mean} ± {} (n={})", show(metric, sd), s.n),
                            None => mean,
                        }
                    }
                };
                if !t.published.is_empty() && !cell.is_empty() {
                    let p = published.map_or("–".to_string(), |p| show_published(metric, p));
                    text = format!("{text} ({p}){}", if outside { " †" } else { "" });
                }
                line.push(text);
            }
            body.push(line);
        }
        let mut header = vec![format!("{} \\ {}", t.rows, t.columns)];
        header.extend(t.column_labels.iter().cloned());
        let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
        md.push_str(&markdown::table(&header_refs, &body));
        md.push('\n');
        match render_table_figure(t, out, &keys, &by_key, warn)? {
            Some(png) => {
                let compare = t
                    .compare
                    .as_ref()
                    .map_or(String::new(), |c| format!(" (compare {c})"));
                let _ = writeln!(
                    md,
                    "![{}{compare}]({png})\n\nAlso as [SVG]({}).\n",
                    t.figure_title,
                    png.replace(".png", ".svg")
                );
            }
            None => {
                let _ = writeln!(md, "_No loss curves yet._\n");
            }
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

/// Draws a table's loss figure (`figures/<figure>.png` and `.svg`): a panel per column value (or per
/// row value), a line per cell, the mean over its finished runs with a band. Returns the PNG's path
/// relative to `out`, or None if no run has losses yet.
fn render_table_figure(
    t: &Table,
    out: &Path,
    keys: &[(String, Point)],
    records: &BTreeMap<&str, &RunRecord>,
    warn: &mut dyn FnMut(&str),
) -> Result<Option<String>> {
    let (panel_axis, panel_values, panel_labels, line_values, line_labels) = if t.panels_by_rows {
        (
            &t.rows,
            &t.row_values,
            &t.row_labels,
            &t.column_values,
            &t.column_labels,
        )
    } else {
        (
            &t.columns,
            &t.column_values,
            &t.column_labels,
            &t.row_values,
            &t.row_labels,
        )
    };
    let panels = panel_values
        .iter()
        .zip(panel_labels)
        .map(|(pv, pl)| {
            let lines = line_values
                .iter()
                .zip(line_labels)
                .enumerate()
                .map(|(color, (lv, ll))| {
                    let (rv, cv) = if t.panels_by_rows { (pv, lv) } else { (lv, pv) };
                    let cell: Vec<String> = cell_keys(t, keys, rv, cv)
                        .into_iter()
                        .filter(|k| records.contains_key(k.as_str()))
                        .cloned()
                        .collect();
                    let runs = read_runs(out, &cell, warn);
                    Line {
                        label: format!("{ll} (n={})", runs.len()),
                        color,
                        runs,
                    }
                })
                .collect();
            let title = if pl == pv {
                format!("{panel_axis} {pv}")
            } else {
                pl.clone()
            };
            (title, lines)
        })
        .collect();
    draw_lines(out, &t.figure, &t.figure_title, panels, (520, 480))
}

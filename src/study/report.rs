//! The sweep's report: `report.md` with the study's four tables (ours beside the study's), per-run
//! details, and loss-over-iterations figures (PNG and SVG, drawn with plotters) like the study's
//! Figures 3-9.
//!
//! plotters draws text through its `ab_glyph` feature, which knows no system fonts: the bundled DejaVu
//! Sans (assets/, freely licensed) is registered once as "sans-serif" before anything is drawn.

use super::figures::{figure_of, render_figure};
use super::grid::{grid, study_tables, StudyTable, TABLES};
use super::store::{
    append_record, read_records, repair_tail, warn_once, RunRecord, RunStatus, RESULTS_FILE,
};
use crate::error::InputError;
use crate::io::atomic::write_atomic;
use crate::io::markdown;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The report file in a sweep directory.
pub const REPORT_FILE: &str = "report.md";

/// Formats a fraction as a percentage with two decimals, e.g. "97.50%".
pub fn percent(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// One table cell: "ours (study)", e.g. "97.50% (97.21%)"; a missing run is "–", a diverged one
/// "diverged".
pub fn cell(ours: Option<&RunRecord>, study: Option<f64>) -> String {
    let ours = match ours {
        None => "–".to_string(),
        Some(r) => match (r.status, r.test_acc) {
            (RunStatus::Ok, Some(a)) => percent(a),
            _ => "diverged".to_string(),
        },
    };
    let study = study.map_or("–".to_string(), |s| format!("{s:.2}%"));
    format!("{ours} ({study})")
}

/// Picks which sweep (settings signature) to report: `wanted` if given, else the one with the most
/// runs (ties: the most recently finished). Others present are mentioned through `warn`.
pub fn choose_sweep(
    records: &[RunRecord],
    wanted: Option<&str>,
    warn: &mut dyn FnMut(&str),
) -> Option<String> {
    let mut counts: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for r in records {
        let e = counts.entry(&r.sweep).or_insert((0, 0));
        e.0 += 1;
        e.1 = e.1.max(r.finished_unix);
    }
    let chosen = match wanted {
        Some(w) => w.to_string(),
        None => counts
            .iter()
            .max_by_key(|(_, &(n, t))| (n, t))
            .map(|(s, _)| s.to_string())?,
    };
    for (s, (n, _)) in &counts {
        if *s != chosen {
            warn(&format!(
                "the results also hold {n} run(s) of sweep {s}, not in this report (report them with --sweep {s})"
            ));
        }
    }
    Some(chosen)
}

/// The records of sweep `sig`, one per key (the first one written wins).
fn by_key<'a>(records: &'a [RunRecord], sig: &str) -> HashMap<&'a str, &'a RunRecord> {
    let mut map = HashMap::new();
    for r in records.iter().filter(|r| r.sweep == sig) {
        map.entry(r.key.as_str()).or_insert(r);
    }
    map
}

/// The markdown of one study table, "ours (study)" per cell: over the seeds of `sigs` (one sweep per
/// seed), "mean ± std (n=k) (study)", with "†" where the study's figure lies outside our lowest to
/// highest. Each cell's figures are also returned as rows of cells.csv.
pub fn table_markdown(
    t: &StudyTable,
    records: &HashMap<&str, &RunRecord>,
    sigs: &[String],
) -> (String, Vec<Vec<String>>) {
    let headers: Vec<String> = t.columns.iter().map(|c| c.header.clone()).collect();
    let mut head = vec![""];
    head.extend(headers.iter().map(String::as_str));
    let mut csv_rows = Vec::new();
    let body: Vec<Vec<String>> = t
        .row_labels
        .iter()
        .enumerate()
        .map(|(row, name)| {
            std::iter::once(name.to_string())
                .chain(t.columns.iter().zip(&headers).map(|(c, h)| {
                    let recs: Vec<&RunRecord> = sigs
                        .iter()
                        .filter_map(|sig| records.get(c.runs[row].key(sig).as_str()).copied())
                        .collect();
                    let accs: Vec<f64> = recs
                        .iter()
                        .filter(|r| r.status == RunStatus::Ok)
                        .filter_map(|r| r.test_acc)
                        .collect();
                    let stats = super::stats::Stats::of(&accs);
                    if let Some(st) = stats {
                        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
                        csv_rows.push(vec![
                            t.number.to_string(),
                            name.to_string(),
                            h.clone(),
                            st.mean.to_string(),
                            opt(st.std),
                            st.n.to_string(),
                            st.min.to_string(),
                            st.max.to_string(),
                            opt(c.study[row].map(|v| v / 100.0)),
                        ]);
                    }
                    match (sigs.len(), stats) {
                        (1, _) | (_, None) => cell(recs.first().copied(), c.study[row]),
                        (_, Some(st)) => {
                            let study =
                                c.study[row].map_or("–".to_string(), |s| format!("{s:.2}%"));
                            let outside = c.study[row].is_some_and(|s| {
                                s / 100.0 < st.min - 1e-12 || s / 100.0 > st.max + 1e-12
                            });
                            format!(
                                "{:.2} ± {:.2}% (n={}) ({study}){}",
                                st.mean * 100.0,
                                st.std.unwrap_or(0.0) * 100.0,
                                st.n,
                                if outside { " †" } else { "" }
                            )
                        }
                    }
                }))
                .collect()
        })
        .collect();
    (markdown::table(&head, &body), csv_rows)
}

/// The sweeps that differ from `sig` only in their seed (`sig` first, then by seed), for reporting
/// several seeds of one grid together.
pub fn seed_group(records: &[RunRecord], sig: &str) -> Vec<String> {
    let strip = |s: &str| -> Option<(String, u64)> {
        let at = s.find("_seed")?;
        let rest = &s[at + 5..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let seed = digits.parse().ok()?;
        Some((format!("{}_seed*{}", &s[..at], &rest[digits.len()..]), seed))
    };
    let Some((pattern, _)) = strip(sig) else {
        return vec![sig.to_string()];
    };
    let mut group: Vec<(u64, String)> = Vec::new();
    for r in records {
        if let Some((p, seed)) = strip(&r.sweep) {
            if p == pattern && !group.iter().any(|(_, g)| *g == r.sweep) {
                group.push((seed, r.sweep.clone()));
            }
        }
    }
    group.sort();
    let mut out = vec![sig.to_string()];
    out.extend(group.into_iter().map(|(_, g)| g).filter(|g| g != sig));
    out
}

fn describe_sweep(recs: &[&RunRecord]) -> String {
    let distinct = |f: &dyn Fn(&RunRecord) -> String| -> String {
        let mut seen: Vec<String> = Vec::new();
        for r in recs {
            let v = f(r);
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.join(", ")
    };
    let Some(first) = recs.first() else {
        return "no runs finished yet.".to_string();
    };
    let budget = if first.sweep.contains("_st") {
        format!("{} steps", first.steps)
    } else {
        format!(
            "{} epoch(s) ({} steps)",
            first.epochs.round() as u64,
            first.steps
        )
    };
    format!(
        "{budget} per run, batch {}, seed {}; {} training images, validation accuracy on {} images, \
         test accuracy on {} images. Backend: {}. Device: {}. Data: {}.",
        first.batch,
        first.seed,
        distinct(&|r| r.train_images.to_string()),
        distinct(&|r| r.val_images.to_string()),
        distinct(&|r| r.test_images.to_string()),
        distinct(&|r| r.backend.clone()),
        distinct(&|r| r.device.clone()),
        distinct(&|r| if r.data.is_empty() {
            "?".into()
        } else {
            r.data.clone()
        }),
    )
}

fn opt_percent(v: Option<f64>) -> String {
    v.map_or("–".into(), percent)
}

fn opt_num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// Builds report.md (and the figures) for sweep `sig` of `records`, or for the sweep with the most
/// runs when `sig` is None. Returns the report's path.
pub fn write_report(
    dir: &Path,
    records: &[RunRecord],
    sig: Option<&str>,
    warn: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let mut others = Vec::new();
    let sig = choose_sweep(records, sig, &mut |m| others.push(m.to_string())).unwrap_or_default();
    // The same grid with other seeds is reported with it (mean ± std per cell); others are noted.
    let seeds = seed_group(records, &sig);
    for m in others {
        if !seeds.iter().any(|g| m.contains(&format!("sweep {g},"))) {
            warn(&m);
        }
    }
    let map = by_key(records, &sig);
    let mut all_seeds = HashMap::new();
    for g in &seeds {
        all_seeds.extend(by_key(records, g));
    }
    let all_grid = grid(&TABLES);
    // This sweep's records in grid order, then any outside the study's grid in file order.
    let mut ordered: Vec<&RunRecord> = all_grid
        .iter()
        .filter_map(|g| map.get(g.spec.key(&sig).as_str()).copied())
        .collect();
    let in_grid: HashSet<&str> = ordered.iter().map(|r| r.key.as_str()).collect();
    let mut seen = HashSet::new();
    for r in records.iter().filter(|r| r.sweep == sig) {
        if !in_grid.contains(r.key.as_str()) && seen.insert(r.key.as_str()) {
            ordered.push(r);
        }
    }

    let mut md = String::new();
    let _ = writeln!(md, "# The study, reproduced by `wgtrain sweep`\n");
    let _ = writeln!(
        md,
        "Sweep `{sig}`: {} runs of the study's {} finished. {}\n",
        ordered
            .iter()
            .filter(|r| in_grid.contains(r.key.as_str()))
            .count(),
        all_grid.len(),
        describe_sweep(&ordered)
    );
    if ordered.iter().any(|r| r.quick) {
        let _ = writeln!(
            md,
            "**Quick smoke budget (`--quick`)**: a few steps per run on a subset of the validation and \
             test sets; these numbers check the pipeline and are not comparable with the study's.\n"
        );
    }
    if seeds.len() > 1 {
        let _ = writeln!(
            md,
            "Each cell: test accuracy over the {} seeds' sweeps ({}) as mean ± sample standard \
             deviation (n), then the study's, in percent; \"†\" marks a study figure outside our lowest \
             to highest; \"–\" marks a run not finished yet (or a figure the study did not report). \
             Figures: each line the mean over the seeds, in a band from the lowest to the highest; \
             the runs below: sweep `{sig}`. As data: `{STUDY_CELLS_CSV}`.\n",
            seeds.len(),
            seeds.join(", ")
        );
    } else {
        let _ = writeln!(
            md,
            "Each cell: test accuracy of our run (the study's), both in percent; \"–\" marks a run not \
             finished yet (or a figure the study did not report).\n"
        );
    }
    let mut cells_csv = csv::Writer::from_writer(Vec::new());
    cells_csv.write_record([
        "table", "row", "column", "mean", "std", "n", "min", "max", "study",
    ])?;
    for t in study_tables() {
        let _ = writeln!(md, "## {}\n", t.title);
        let (table, rows) = table_markdown(&t, &all_seeds, &seeds);
        for r in rows {
            cells_csv.write_record(&r)?;
        }
        md.push_str(&table);
        md.push('\n');
        let fig = figure_of(&t);
        match render_figure(dir, &fig, &all_seeds, &seeds, warn)? {
            Some(png) => {
                let _ = writeln!(
                    md,
                    "![{} (compare {})]({png})\n\nAlso as [SVG]({}).\n",
                    fig.title,
                    fig.compare,
                    png.replace(".png", ".svg")
                );
            }
            None => {
                let _ = writeln!(md, "_No loss curves yet for this table._\n");
            }
        }
    }
    let _ = writeln!(md, "## Runs\n");
    let _ = writeln!(
        md,
        "Accuracy on the validation and test sets after the last step; train loss is the mean over the \
         last epoch. Per-step losses: `runs/<key>/losses.csv`; all fields: `{RESULTS_FILE}`; every run of \
         every sweep in this directory as one table (for pandas or R): `{RUNS_CSV}`.\n"
    );
    let rows: Vec<Vec<String>> = ordered
        .iter()
        .map(|r| {
            let tables: Vec<String> = r.tables.iter().map(u8::to_string).collect();
            let status = match r.status {
                RunStatus::Ok => "ok".to_string(),
                RunStatus::Diverged => format!("diverged at step {}", r.diverged_at.unwrap_or(0)),
            };
            vec![
                r.key.clone(),
                tables.join(", "),
                status,
                r.steps.to_string(),
                opt_num(r.train_loss, 4),
                opt_percent(r.val_acc),
                opt_percent(r.test_acc),
                opt_num(r.test_loss, 4),
                r.backend.clone(),
                r.device.clone(),
                opt_num(r.images_per_s, 0),
                format!("{:.1}", r.seconds),
            ]
        })
        .collect();
    md.push_str(&markdown::table(
        &[
            "key",
            "tables",
            "status",
            "steps",
            "train loss",
            "val acc",
            "test acc",
            "test loss",
            "backend",
            "device",
            "images/s",
            "seconds",
        ],
        &rows,
    ));
    write_runs_csv(dir, records)?;
    write_atomic(
        &dir.join(STUDY_CELLS_CSV),
        &cells_csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    let path = dir.join(REPORT_FILE);
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// Copies into `dir` every run of the sweep directories `others` that `dir` lacks: its line of
/// results.jsonl and its `runs/<key>/` files. Returns how many runs were imported.
pub fn merge_into(dir: &Path, others: &[PathBuf], warn: &mut dyn FnMut(&str)) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let results = dir.join(RESULTS_FILE);
    let mut have: HashSet<String> = read_records(&results, warn)?
        .into_iter()
        .map(|r| r.key)
        .collect();
    let mut imported = 0;
    for other in others {
        let theirs = other.join(RESULTS_FILE);
        if !theirs.is_file() {
            return Err(InputError::file(&theirs, "no results file to merge").into());
        }
        for r in read_records(&theirs, warn)? {
            if !have.insert(r.key.clone()) {
                continue;
            }
            let src = other.join("runs").join(&r.key);
            if src.is_dir() {
                let dst = dir.join("runs").join(&r.key);
                std::fs::create_dir_all(&dst)
                    .with_context(|| format!("{}: cannot create", dst.display()))?;
                for entry in std::fs::read_dir(&src)? {
                    let entry = entry?;
                    if entry.file_type()?.is_file() {
                        std::fs::copy(entry.path(), dst.join(entry.file_name())).with_context(
                            || format!("copying {} into {}", entry.path().display(), dst.display()),
                        )?;
                    }
                }
            } else {
                warn(&format!(
                    "{}: missing; run {} merged without its loss curve",
                    src.display(),
                    r.key
                ));
            }
            append_record(&results, &r)?;
            imported += 1;
        }
    }
    Ok(imported)
}

/// `wgtrain report`: merges `others` into `dir` (if any), then rebuilds `dir/report.md` for sweep
/// `sig` (default: the sweep with the most runs).
pub fn build_report(
    dir: &Path,
    others: &[PathBuf],
    sig: Option<&str>,
    warn: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    if others.is_empty() && !dir.join(RESULTS_FILE).is_file() {
        return Err(InputError::file(
            &dir.join(RESULTS_FILE),
            "no results here (run `wgtrain sweep --out DIR` first, or merge shards with --merge)",
        )
        .into());
    }
    if let Some(m) = repair_tail(&dir.join(RESULTS_FILE))? {
        warn(&m);
    }
    let mut warn = warn_once(warn);
    merge_into(dir, others, &mut warn)?;
    let records = read_records(&dir.join(RESULTS_FILE), &mut warn)?;
    if let Some(s) = sig {
        if !records.iter().any(|r| r.sweep == s) {
            let mut known: Vec<&str> = records.iter().map(|r| r.sweep.as_str()).collect();
            known.sort();
            known.dedup();
            return Err(InputError::value(format!(
                "--sweep {s}: no such sweep in {} (it holds: {})",
                dir.join(RESULTS_FILE).display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
            .into());
        }
    }
    write_report(dir, &records, sig, &mut warn)
}

/// The study tables' cells as data (table, row, column, mean, std, n, min, max, the study's figure).
pub const STUDY_CELLS_CSV: &str = "cells.csv";

/// The file of every run, one row each, for pandas or R (written beside report.md).
pub const RUNS_CSV: &str = "runs.csv";

/// One row of [`RUNS_CSV`]: a run's configuration and every figure it measured (the per-epoch
/// figures and the per-step losses stay in results.jsonl and runs/<key>/).
#[derive(serde::Serialize)]
struct RunRow<'a> {
    key: &'a str,
    sweep: &'a str,
    tables: String,
    status: &'static str,
    model: &'a str,
    optim: &'a str,
    lr: f32,
    recipe: String,
    batch: usize,
    epochs: f64,
    steps: usize,
    seed: u64,
    quick: bool,
    data: &'a str,
    train_images: usize,
    val_images: usize,
    test_images: usize,
    backend: &'a str,
    device: &'a str,
    kernels: Option<&'a str>,
    train_loss: Option<f64>,
    val_loss: Option<f64>,
    val_acc: Option<f64>,
    test_loss: Option<f64>,
    test_acc: Option<f64>,
    images_per_s: Option<f64>,
    seconds: f64,
    diverged_at: Option<usize>,
    shard: &'a str,
    finished_unix: u64,
    version: &'a str,
}

/// Writes [`RUNS_CSV`] in `dir`: every record of `records` (every sweep the directory holds), in
/// file order, atomically.
pub fn write_runs_csv(dir: &Path, records: &[RunRecord]) -> Result<PathBuf> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        let tables: Vec<String> = r.tables.iter().map(u8::to_string).collect();
        w.serialize(RunRow {
            key: &r.key,
            sweep: &r.sweep,
            tables: tables.join(" "),
            status: match r.status {
                RunStatus::Ok => "ok",
                RunStatus::Diverged => "diverged",
            },
            model: &r.model,
            optim: &r.optim,
            lr: r.lr,
            recipe: r.recipe.describe(),
            batch: r.batch,
            epochs: r.epochs,
            steps: r.steps,
            seed: r.seed,
            quick: r.quick,
            data: &r.data,
            train_images: r.train_images,
            val_images: r.val_images,
            test_images: r.test_images,
            backend: &r.backend,
            device: &r.device,
            kernels: r.kernels.as_deref(),
            train_loss: r.train_loss,
            val_loss: r.val_loss,
            val_acc: r.val_acc,
            test_loss: r.test_loss,
            test_acc: r.test_acc,
            images_per_s: r.images_per_s,
            seconds: r.seconds,
            diverged_at: r.diverged_at,
            shard: &r.shard,
            finished_unix: r.finished_unix,
            version: &r.version,
        })?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(RUNS_CSV);
    write_atomic(&path, &bytes)?;
    Ok(path)
}

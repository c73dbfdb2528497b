//! The sweep's report: `report.md` with the study's four tables (ours beside the study's), per-run
//! details, and loss-over-iterations figures (PNG and SVG, drawn with plotters) like the study's
//! Figures 3-9.
//!
//! plotters draws text through its `ab_glyph` feature, which knows no system fonts: the bundled DejaVu
//! Sans (assets/, freely licensed) is registered once as "sans-serif" before anything is drawn.

use crate::error::InputError;
use crate::sweep::{
    grid, read_records, study_tables, RunRecord, RunSpec, RunStatus, StudyTable, RESULTS_FILE,
    TABLES,
};
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The report file in a sweep directory.
pub const REPORT_FILE: &str = "report.md";
/// The folder of figures in a sweep directory.
pub const FIGURES_DIR: &str = "figures";

const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans as "sans-serif" (every style); idempotent.
pub fn register_font() {
    FONT.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            // The bytes are a valid TTF compiled into the binary; failing here is a build defect.
            if plotters::style::register_font("sans-serif", style, FONT_BYTES).is_err() {
                panic!("the bundled assets/DejaVuSans.ttf is not a valid font");
            }
        }
    });
}

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

fn key_of(run: &RunSpec, sig: &str) -> String {
    format!("{}_{sig}", run.id())
}

/// The markdown of one study table, "ours (study)" per cell.
pub fn table_markdown(t: &StudyTable, records: &HashMap<&str, &RunRecord>, sig: &str) -> String {
    let mut s = String::new();
    let header = |h: &str| match t.number {
        3 => format!("CNN-{h}"),
        4 => format!("lr {h}"),
        _ => h.to_string(),
    };
    let _ = write!(s, "| |");
    for c in &t.columns {
        let _ = write!(s, " {} |", header(&c.header));
    }
    s.push('\n');
    s.push_str("|---|");
    for _ in &t.columns {
        s.push_str("---|");
    }
    s.push('\n');
    for (row, name) in ["no batchnorm", "batchnorm"].iter().enumerate() {
        let _ = write!(s, "| {name} |");
        for c in &t.columns {
            let rec = records.get(key_of(&c.runs[row], sig).as_str()).copied();
            let _ = write!(s, " {} |", cell(rec, c.study[row]));
        }
        s.push('\n');
    }
    s
}

/// A comparison drawn as one figure: panels side by side, each with one loss curve per run.
pub struct FigureSpec {
    /// File stem under figures/.
    pub name: String,
    pub title: String,
    /// Which of the study's figures it corresponds to.
    pub study_figures: &'static str,
    pub panels: Vec<Panel>,
}

pub struct Panel {
    pub title: String,
    /// (legend label, run)
    pub lines: Vec<(String, RunSpec)>,
}

/// The figures of one study table.
pub fn figure_of(t: &StudyTable) -> FigureSpec {
    let rows = ["no batchnorm", "batchnorm"];
    let by_row = |label: &dyn Fn(&str) -> String| -> Vec<Panel> {
        (0..2)
            .map(|row| Panel {
                title: rows[row].to_string(),
                lines: t
                    .columns
                    .iter()
                    .map(|c| (label(&c.header), c.runs[row]))
                    .collect(),
            })
            .collect()
    };
    match t.number {
        1 => FigureSpec {
            name: "table1_fc8_optimizers".into(),
            title: "FC-8: training loss by optimizer".into(),
            study_figures: "Figures 3-4",
            panels: by_row(&|h| h.to_string()),
        },
        2 => FigureSpec {
            name: "table2_cnn7_optimizers".into(),
            title: "CNN-7: training loss without and with batch norm, per optimizer".into(),
            study_figures: "Figures 5-7",
            panels: t
                .columns
                .iter()
                .map(|c| Panel {
                    title: c.header.clone(),
                    lines: vec![
                        (rows[0].to_string(), c.runs[0]),
                        (rows[1].to_string(), c.runs[1]),
                    ],
                })
                .collect(),
        },
        3 => FigureSpec {
            name: "table3_cnn_depth".into(),
            title: "CNN with SGD: training loss by depth".into(),
            study_figures: "Figure 8",
            panels: by_row(&|h| format!("CNN-{h}")),
        },
        _ => FigureSpec {
            name: "table4_cnn7_lr".into(),
            title: "CNN-7 with SGD: training loss by learning rate".into(),
            study_figures: "Figure 9",
            panels: by_row(&|h| format!("lr {h}")),
        },
    }
}

/// Reads a run's losses.csv (`step,epoch,loss`): (step, loss) pairs, non-finite losses left out.
pub fn read_losses(path: &Path) -> Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::file(path, format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut f = line.split(',');
        let (Some(step), Some(_), Some(loss)) = (f.next(), f.next(), f.next()) else {
            continue; // a half-written last line
        };
        if let (Ok(s), Ok(l)) = (step.trim().parse::<f64>(), loss.trim().parse::<f64>()) {
            if l.is_finite() {
                out.push((s, l));
            }
        }
    }
    Ok(out)
}

/// The moving-average window used for `n` points: about a twentieth of the run, 1 to 100 steps.
pub fn smoothing_window(n: usize) -> usize {
    (n / 20).clamp(1, 100)
}

/// Trailing moving average over `window` points (shorter at the start).
pub fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= window {
            sum -= points[i - window].1;
        }
        out.push((x, sum / (i + 1).min(window) as f64));
    }
    out
}

/// tab10, the colours most plotting tools use for categories.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A run's curve ready to draw.
struct Curve {
    label: String,
    /// The line's place in its panel, which picks its colour (stable while runs are missing).
    color: usize,
    raw: Vec<(f64, f64)>,
    smooth: Vec<(f64, f64)>,
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e:?}")
}

fn draw_figure<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    panels: &[(String, Vec<Curve>)],
    window: usize,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(title, ("sans-serif", 28).into_font().style(FontStyle::Bold))
        .map_err(plot_err)?;
    let (body, foot) = root.split_vertically(root.dim_in_pixel().1 - 28);
    let legend = if window > 1 {
        format!("bold: {window}-step moving average; faint: loss of each step")
    } else {
        "loss of each step (too few steps to smooth)".to_string()
    };
    foot.draw_text(&legend, &("sans-serif", 16).into_text_style(&foot), (12, 4))
        .map_err(plot_err)?;
    // One scale for every panel, so panels compare at a glance.
    let curves_all = || panels.iter().flat_map(|(_, c)| c.iter());
    let xmax = curves_all()
        .flat_map(|c| c.raw.last().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let ymax_smooth = curves_all()
        .flat_map(|c| c.smooth.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let ymax = (ymax_smooth * 1.1).clamp(0.1, 10.0);
    let areas = body.split_evenly((1, panels.len().max(1)));
    for ((ptitle, curves), area) in panels.iter().zip(areas) {
        let mut chart = ChartBuilder::on(&area)
            .caption(ptitle, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("iteration (optimizer step)")
            .y_desc("training loss (cross-entropy)")
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .axis_desc_style(("sans-serif", 17))
            .label_style(("sans-serif", 14))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(plot_err)?;
        for c in curves {
            let color = COLORS[c.color % COLORS.len()];
            let clip = |p: &(f64, f64)| (p.0, p.1.min(ymax));
            chart
                .draw_series(LineSeries::new(
                    c.raw.iter().map(clip),
                    color.mix(0.22).stroke_width(1),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(LineSeries::new(
                    c.smooth.iter().map(clip),
                    color.stroke_width(3),
                ))
                .map_err(plot_err)?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
        }
        if !curves.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .label_font(("sans-serif", 16))
                .draw()
                .map_err(plot_err)?;
        }
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Draws `fig` from the runs' losses.csv under `dir/runs/`, as `figures/<name>.png` and `.svg`.
/// Returns the PNG's path relative to `dir`, or None if no run of the figure has losses yet.
pub fn render_figure(
    dir: &Path,
    fig: &FigureSpec,
    records: &HashMap<&str, &RunRecord>,
    sig: &str,
    warn: &mut dyn FnMut(&str),
) -> Result<Option<String>> {
    register_font();
    let mut panels = Vec::new();
    let mut longest = 0;
    let mut any = false;
    let mut loaded = Vec::new();
    for p in &fig.panels {
        let mut curves = Vec::new();
        for (color, (label, run)) in p.lines.iter().enumerate() {
            let key = key_of(run, sig);
            if !records.contains_key(key.as_str()) {
                continue;
            }
            let csv = dir.join("runs").join(&key).join("losses.csv");
            match read_losses(&csv) {
                Ok(raw) if !raw.is_empty() => {
                    longest = longest.max(raw.len());
                    any = true;
                    curves.push((label.clone(), color, raw));
                }
                Ok(_) => warn(&format!(
                    "{}: no losses; left out of the figure",
                    csv.display()
                )),
                Err(e) => warn(&format!("{e:#}; left out of the figure")),
            }
        }
        loaded.push((p.title.clone(), curves));
    }
    if !any {
        return Ok(None);
    }
    let window = smoothing_window(longest);
    for (title, curves) in loaded {
        let curves = curves
            .into_iter()
            .map(|(label, color, raw)| Curve {
                label,
                color,
                smooth: moving_average(&raw, window),
                raw,
            })
            .collect();
        panels.push((title, curves));
    }
    let figdir = dir.join(FIGURES_DIR);
    std::fs::create_dir_all(&figdir)
        .with_context(|| format!("{}: cannot create", figdir.display()))?;
    let size = ((620 * fig.panels.len()) as u32, 560u32);
    let png = figdir.join(format!("{}.png", fig.name));
    let svg = figdir.join(format!("{}.svg", fig.name));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_figure(root, &fig.title, &panels, window)
            .with_context(|| format!("{}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw_figure(root, &fig.title, &panels, window)
            .with_context(|| format!("{}", svg.display()))?;
    }
    Ok(Some(format!("{FIGURES_DIR}/{}.png", fig.name)))
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
    let sig = choose_sweep(records, sig, warn).unwrap_or_default();
    let map = by_key(records, &sig);
    let all_grid = grid(&TABLES);
    // This sweep's records in grid order, then any outside the study's grid in file order.
    let mut ordered: Vec<&RunRecord> = all_grid
        .iter()
        .filter_map(|g| map.get(key_of(&g.spec, &sig).as_str()).copied())
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
    let _ = writeln!(
        md,
        "Each cell: test accuracy of our run (the study's), both in percent; \"–\" marks a run not \
         finished yet (or a figure the study did not report).\n"
    );
    for t in study_tables() {
        let _ = writeln!(md, "## Table {}: {}\n", t.roman(), t.title);
        md.push_str(&table_markdown(&t, &map, &sig));
        md.push('\n');
        let fig = figure_of(&t);
        match render_figure(dir, &fig, &map, &sig, warn)? {
            Some(png) => {
                let _ = writeln!(
                    md,
                    "![{} (compare the study's {})]({png})\n\nAlso as [SVG]({}).\n",
                    fig.title,
                    fig.study_figures,
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
         last epoch. Per-step losses: `runs/<key>/losses.csv`; all fields: `{RESULTS_FILE}`.\n"
    );
    md.push_str(
        "| key | tables | status | steps | train loss | val acc | test acc | test loss | backend | device | images/s | seconds |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &ordered {
        let tables: Vec<String> = r.tables.iter().map(u8::to_string).collect();
        let status = match r.status {
            RunStatus::Ok => "ok".to_string(),
            RunStatus::Diverged => format!("diverged at step {}", r.diverged_at.unwrap_or(0)),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {status} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            r.key,
            tables.join(", "),
            r.steps,
            opt_num(r.train_loss, 4),
            opt_percent(r.val_acc),
            opt_percent(r.test_acc),
            opt_num(r.test_loss, 4),
            r.backend,
            r.device,
            opt_num(r.images_per_s, 0),
            r.seconds
        );
    }
    let path = dir.join(REPORT_FILE);
    write_unique_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// Writes through a temporary file named after this process, then renames: concurrent writers (two
/// shards finishing at once) never mix their bytes, and a crash never leaves half a report.
fn write_unique_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
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
            crate::sweep::append_record(&results, &r)?;
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
    merge_into(dir, others, warn)?;
    let records = read_records(&dir.join(RESULTS_FILE), warn)?;
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
    write_report(dir, &records, sig, warn)
}

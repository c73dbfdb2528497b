//! The loss-over-iterations figures of the report (PNG and SVG, drawn with plotters), one per study
//! table, like the study's Figures 3-9: a moving average over the faint per-step loss of each run.

use super::grid::{RunSpec, StudyTable};
use super::store::RunRecord;
use crate::error::InputError;
use crate::io::font::register_font;
use crate::io::plot_file::{plot_err, save_figure, Figure};
use anyhow::{Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// The folder of figures in a sweep directory.
pub const FIGURES_DIR: &str = "figures";

/// A comparison drawn as one figure: panels side by side, each with one loss curve per run.
pub struct FigureSpec {
    /// File stem under figures/.
    pub name: String,
    pub title: String,
    /// What to compare it with, e.g. "the study's Figures 3-4".
    pub compare: String,
    pub panels: Vec<Panel>,
}

pub struct Panel {
    pub title: String,
    /// (legend label, run)
    pub lines: Vec<(String, RunSpec)>,
}

/// The figure of one study table: a panel per row (a line per column) or per column (a line per row).
pub fn figure_of(t: &StudyTable) -> FigureSpec {
    let panels = if t.panels_by_rows {
        (0..2)
            .map(|row| Panel {
                title: t.row_labels[row].clone(),
                lines: t
                    .columns
                    .iter()
                    .map(|c| (c.header.clone(), c.runs[row].clone()))
                    .collect(),
            })
            .collect()
    } else {
        t.columns
            .iter()
            .map(|c| Panel {
                title: c.header.clone(),
                lines: (0..2)
                    .map(|row| (t.row_labels[row].clone(), c.runs[row].clone()))
                    .collect(),
            })
            .collect()
    };
    FigureSpec {
        name: t.figure.clone(),
        title: t.figure_title.clone(),
        compare: t.compare.clone(),
        panels,
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
pub(crate) const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A loss-over-iterations panel on `area`: both axes from 0, the study's labels and grid.
pub(crate) fn loss_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    xmax: f64,
    ymax: f64,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
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
    Ok(chart)
}

/// The legend of the labelled series, upper right, on a light box.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// A line of a figure: its legend label and the losses of every run it stands for (one per seed).
pub struct Line {
    pub label: String,
    /// The line's place in its panel, which picks its colour (stable while runs are missing).
    pub color: usize,
    pub runs: Vec<Vec<(f64, f64)>>,
}

/// A line ready to draw: one run's faint per-step loss under its moving average, or over several
/// runs the mean of their moving averages inside a band from the lowest to the highest.
struct Curve {
    label: String,
    color: usize,
    raw: Vec<(f64, f64)>,
    smooth: Vec<(f64, f64)>,
    band: Option<(Vec<f64>, Vec<f64>)>,
}

impl Curve {
    fn of(line: Line, window: usize) -> Option<Curve> {
        let n = line.runs.iter().map(Vec::len).min().filter(|&n| n > 0)?;
        if line.runs.len() == 1 {
            let raw = line.runs.into_iter().next()?;
            return Some(Curve {
                label: line.label,
                color: line.color,
                smooth: moving_average(&raw, window),
                raw,
                band: None,
            });
        }
        let smooth: Vec<Vec<(f64, f64)>> = line
            .runs
            .iter()
            .map(|r| moving_average(&r[..n], window))
            .collect();
        let at = |i: usize| smooth.iter().map(move |s| s[i].1);
        Some(Curve {
            label: line.label,
            color: line.color,
            raw: Vec::new(),
            smooth: (0..n)
                .map(|i| (smooth[0][i].0, at(i).sum::<f64>() / smooth.len() as f64))
                .collect(),
            band: Some((
                (0..n)
                    .map(|i| at(i).fold(f64::INFINITY, f64::min))
                    .collect(),
                (0..n)
                    .map(|i| at(i).fold(f64::NEG_INFINITY, f64::max))
                    .collect(),
            )),
        })
    }
}

/// One figure's panels, ready to draw on any backend.
struct LossFigure<'a> {
    title: &'a str,
    panels: &'a [(String, Vec<Curve>)],
    window: usize,
}

impl Figure for LossFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        draw_figure(root, self.title, self.panels, self.window)
    }
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
    let curves_all = || panels.iter().flat_map(|(_, c)| c.iter());
    let (smoothed, unsmoothed) = if window > 1 {
        (format!("{window}-step moving average"), "")
    } else {
        (
            "loss of each step".to_string(),
            " (too few steps to smooth)",
        )
    };
    let mut legend = Vec::new();
    if curves_all().any(|c| c.band.is_none()) {
        legend.push(if window > 1 {
            format!("bold: {smoothed}; faint: loss of each step")
        } else {
            smoothed.clone()
        });
    }
    if curves_all().any(|c| c.band.is_some()) {
        legend.push(format!(
            "line with band: the mean over the seeds of each run's {smoothed}, from the lowest to the highest seed"
        ));
    }
    let legend = format!("{}{unsmoothed}", legend.join("; "));
    foot.draw_text(&legend, &("sans-serif", 16).into_text_style(&foot), (12, 4))
        .map_err(plot_err)?;
    // One scale for every panel, so panels compare at a glance.
    let xmax = curves_all()
        .flat_map(|c| c.smooth.last().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let ymax_smooth = curves_all()
        .flat_map(|c| {
            c.smooth
                .iter()
                .map(|p| p.1)
                .chain(c.band.iter().flat_map(|b| b.1.iter().copied()))
        })
        .fold(0.0f64, f64::max);
    let ymax = (ymax_smooth * 1.1).clamp(0.1, 10.0);
    let areas = body.split_evenly((1, panels.len().max(1)));
    for ((ptitle, curves), area) in panels.iter().zip(areas) {
        let mut chart = loss_chart(&area, ptitle, xmax, ymax)?;
        for c in curves {
            let color = COLORS[c.color % COLORS.len()];
            let clip = |p: &(f64, f64)| (p.0, p.1.min(ymax));
            if let Some((low, high)) = &c.band {
                let outline: Vec<(f64, f64)> = c
                    .smooth
                    .iter()
                    .zip(high)
                    .map(|(p, h)| (p.0, h.min(ymax)))
                    .chain(
                        c.smooth
                            .iter()
                            .zip(low)
                            .rev()
                            .map(|(p, l)| (p.0, l.min(ymax))),
                    )
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        outline,
                        color.mix(0.2).filled(),
                    )))
                    .map_err(plot_err)?;
            }
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
            draw_legend(&mut chart)?;
        }
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Reads the losses of the runs `keys` (under `dir/runs/`) that have any; the others are noted
/// through `warn` (a run not finished yet has no record and is not asked for).
pub fn read_runs(dir: &Path, keys: &[String], warn: &mut dyn FnMut(&str)) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    for key in keys {
        let csv = dir.join("runs").join(key).join("losses.csv");
        match read_losses(&csv) {
            Ok(raw) if !raw.is_empty() => runs.push(raw),
            Ok(_) => warn(&format!(
                "{}: no losses; left out of the figure",
                csv.display()
            )),
            Err(e) => warn(&format!("{e:#}; left out of the figure")),
        }
    }
    runs
}

/// Draws panels of lines as `dir/figures/<name>.png` and `.svg`, each panel `panel_width` wide.
/// Returns the PNG's path relative to `dir`, or None if no line has losses yet.
pub fn draw_lines(
    dir: &Path,
    name: &str,
    title: &str,
    panels: Vec<(String, Vec<Line>)>,
    size: (u32, u32),
) -> Result<Option<String>> {
    register_font();
    let longest = panels
        .iter()
        .flat_map(|(_, lines)| lines.iter().flat_map(|l| l.runs.iter().map(Vec::len)))
        .max()
        .unwrap_or(0);
    if longest == 0 {
        return Ok(None);
    }
    let window = smoothing_window(longest);
    let panels: Vec<(String, Vec<Curve>)> = panels
        .into_iter()
        .map(|(t, lines)| {
            (
                t,
                lines
                    .into_iter()
                    .filter_map(|l| Curve::of(l, window))
                    .collect(),
            )
        })
        .collect();
    let count = panels.len().max(1) as u32;
    let figdir = dir.join(FIGURES_DIR);
    std::fs::create_dir_all(&figdir)
        .map_err(|e| InputError::file(&figdir, format!("cannot create: {e}")))?;
    let figure = LossFigure {
        title,
        panels: &panels,
        window,
    };
    for ext in ["png", "svg"] {
        let path = figdir.join(format!("{name}.{ext}"));
        save_figure(&figure, &path, (size.0 * count, size.1))
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(Some(format!("{FIGURES_DIR}/{name}.png")))
}

/// Draws `fig` from the runs' losses.csv under `dir/runs/`, as `figures/<name>.png` and `.svg`: each
/// line over the runs of the sweeps `sigs` (one per seed) that `records` holds. Returns the PNG's
/// path relative to `dir`, or None if no run of the figure has losses yet.
pub fn render_figure(
    dir: &Path,
    fig: &FigureSpec,
    records: &HashMap<&str, &RunRecord>,
    sigs: &[String],
    warn: &mut dyn FnMut(&str),
) -> Result<Option<String>> {
    let panels = fig
        .panels
        .iter()
        .map(|p| {
            let lines = p
                .lines
                .iter()
                .enumerate()
                .map(|(color, (label, run))| {
                    let keys: Vec<String> = sigs
                        .iter()
                        .map(|sig| run.key(sig))
                        .filter(|k| records.contains_key(k.as_str()))
                        .collect();
                    let runs = read_runs(dir, &keys, warn);
                    let label = if runs.len() > 1 {
                        format!("{label} (n={})", runs.len())
                    } else {
                        label.clone()
                    };
                    Line { label, color, runs }
                })
                .collect();
            (p.title.clone(), lines)
        })
        .collect();
    draw_lines(dir, &fig.name, &fig.title, panels, (620, 560))
}

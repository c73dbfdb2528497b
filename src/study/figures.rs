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
                    .map(|c| (label(&c.header), c.runs[row].clone()))
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
                        (rows[0].to_string(), c.runs[0].clone()),
                        (rows[1].to_string(), c.runs[1].clone()),
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

/// A run's curve ready to draw.
struct Curve {
    label: String,
    /// The line's place in its panel, which picks its colour (stable while runs are missing).
    color: usize,
    raw: Vec<(f64, f64)>,
    smooth: Vec<(f64, f64)>,
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
        let mut chart = loss_chart(&area, ptitle, xmax, ymax)?;
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
            draw_legend(&mut chart)?;
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
            let key = run.key(sig);
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
        .map_err(|e| InputError::file(&figdir, format!("cannot create: {e}")))?;
    let size = ((620 * fig.panels.len()) as u32, 560u32);
    let figure = LossFigure {
        title: &fig.title,
        panels: &panels,
        window,
    };
    for ext in ["png", "svg"] {
        let path = figdir.join(format!("{}.{ext}", fig.name));
        save_figure(&figure, &path, size).with_context(|| format!("{}", path.display()))?;
    }
    Ok(Some(format!("{FIGURES_DIR}/{}.png", fig.name)))
}

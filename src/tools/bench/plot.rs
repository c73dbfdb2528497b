//! `wgtrain bench --plot`: images/s against batch size, one line per backend and model.

use super::measure::Measurement;
use super::tables::num;
use crate::error::InputError;
use crate::io::plot_file::{save_figure, Figure};
use anyhow::Result;
use std::path::Path;

/// Line colours of the figure (distinct on white).
const COLORS: [plotters::style::RGBColor; 6] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(148, 103, 189),
    plotters::style::RGBColor(140, 86, 75),
];

/// Draws images/s against batch size (both axes logarithmic), one line per backend and model: SVG
/// when `path` ends in `.svg`, else PNG.
pub fn plot(rows: &[Measurement], path: &Path) -> Result<()> {
    let train: Vec<&Measurement> = rows
        .iter()
        .filter(|r| r.kind == "train" && r.error.is_none())
        .collect();
    if train.is_empty() {
        return Err(InputError::value("--plot: no training measurements to draw").into());
    }
    crate::io::font::register_font();
    let mut series: Vec<Series> = Vec::new();
    for r in &train {
        let label = format!(
            "{} {} ({})",
            r.model.as_deref().unwrap_or(""),
            r.backend,
            r.device
        );
        let p = (r.batch.unwrap_or(1) as f64, r.throughput());
        match series.iter_mut().find(|(l, _)| *l == label) {
            Some((_, pts)) => pts.push(p),
            None => series.push((label, vec![p])),
        }
    }
    for (_, pts) in &mut series {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let pts = || series.iter().flat_map(|(_, p)| p.iter());
    anyhow::ensure!(
        pts().any(|p| p.1 > 0.0),
        "--plot: no positive throughput to draw"
    );
    // The x ticks are the measured batch sizes themselves: a log axis places its own ticks at powers of
    // ten, and a single batch size (or 64..512) would get no tick label at all.
    let mut batches: Vec<f64> = pts().map(|p| p.0).collect();
    batches.sort_by(f64::total_cmp);
    batches.dedup();
    save_figure(
        &ThroughputFigure {
            series: &series,
            batches,
            path,
        },
        path,
        (960, 640),
    )
}

/// The throughput lines, ready to draw on any backend.
struct ThroughputFigure<'a> {
    series: &'a [Series],
    batches: Vec<f64>,
    path: &'a Path,
}

impl Figure for ThroughputFigure<'_> {
    fn draw<DB: plotters::prelude::DrawingBackend>(
        &self,
        root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<()> {
        draw(root, self.series, self.batches.clone(), self.path)
    }
}

type Series = (String, Vec<(f64, f64)>);

fn draw<DB: plotters::prelude::DrawingBackend>(
    root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    batches: Vec<f64>,
    path: &Path,
) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: cannot draw: {e}", path.display());
    let pts = || series.iter().flat_map(|(_, p)| p.iter());
    let (xmin, xmax) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = pts()
        .filter(|p| p.1 > 0.0)
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("training throughput by batch size", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (xmin / 1.3..xmax * 1.3)
                .log_scale()
                .with_key_points(batches),
            // Room below the lowest line for the legend.
            (ymin / 12.0..ymax * 2.0).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("batch size (images per step)")
        .y_desc("images/s (median)")
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{}", y.round() as i64)
            } else {
                num(*y)
            }
        })
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, p)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(p.iter().map(|&q| Circle::new(q, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

//! Using a checkpoint: test accuracy, loss and confusion matrix (`wgtrain eval`), and the classes of
//! image files (`wgtrain predict`).

use crate::backend::select::OnBackend;
use crate::backend::Backend;
use crate::backend::PixelNorm;
use crate::io::checkpoint::Checkpoint;
use crate::io::data::ImageSet;
use crate::io::plot_file::{plot_err, save_figure, Figure};
use crate::model::Model;
use crate::train::BatchBuffers;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `wgtrain eval` reports; also its `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub checkpoint: String,
    pub model: String,
    pub optim: String,
    pub step: usize,
    pub epochs: f64,
    pub backend: String,
    pub device: String,
    pub images: usize,
    /// The training data's format and class names, from the checkpoint.
    pub data_format: String,
    pub class_names: Vec<String>,
    pub test_acc: f64,
    pub test_loss: f64,
    /// `confusion[true][predicted]`: how many test images of class `true` the model called `predicted`.
    pub confusion: Vec<Vec<u64>>,
}

impl EvalReport {
    /// Per-class recall: the share of each true class the model got right.
    pub fn recall(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: u64 = row.iter().sum();
                if n == 0 {
                    f64::NAN
                } else {
                    row[i] as f64 / n as f64
                }
            })
            .collect()
    }

    /// The confusion matrix as aligned text, rows true classes, columns predictions.
    pub fn confusion_text(&self) -> String {
        let width = self
            .confusion
            .iter()
            .flatten()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(4);
        let mut s = format!("{:>10}", "true\\pred");
        for c in 0..self.confusion.len() {
            s += &format!(" {c:>width$}");
        }
        s += &format!(" {:>8}\n", "recall");
        let recall = self.recall();
        for (i, row) in self.confusion.iter().enumerate() {
            s += &format!("{i:>10}");
            for v in row {
                s += &format!(" {v:>width$}");
            }
            // A class absent from the data has no recall: "-", not NaN%.
            if recall[i].is_nan() {
                s += &format!(" {:>8}\n", "-");
            } else {
                s += &format!(" {:>7.2}%\n", recall[i] * 100.0);
            }
        }
        s
    }
}

/// `(log(sum(exp(z))), argmax(z))` in f64.
fn lse_argmax(z: &[f32]) -> (f64, usize) {
    let (mut best, mut arg) = (f32::NEG_INFINITY, 0);
    for (i, &v) in z.iter().enumerate() {
        if v > best {
            best = v;
            arg = i;
        }
    }
    let m = best as f64;
    let sum: f64 = z.iter().map(|&v| ((v as f64) - m).exp()).sum();
    (m + sum.ln(), arg)
}

/// The logits of `model` (evaluation mode) for every image of `images` (u8, the model's input shape
/// each, normalised by `norm`), in order.
async fn logits_of<B: Backend>(
    be: &B,
    model: &mut Model<B>,
    images: &[u8],
    n: usize,
    norm: &PixelNorm,
) -> Vec<Vec<f32>> {
    let pixels = model.spec.input().len();
    let classes = model.spec.classes();
    let mut ds = be.upload_dataset(images, &vec![0u8; n], pixels, norm);
    be.set_order(&mut ds, &(0..n as u32).collect::<Vec<_>>());
    let cap = model.capacity;
    let mut bufs = BatchBuffers::new(be, cap, pixels);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let b = cap.min(n - start);
        be.gather_batch(&ds, start, b, &mut bufs.x, &mut bufs.y);
        let logits = be.read_async(model.forward(be, &bufs.x, b, false)).await;
        out.extend(logits[..b * classes].chunks(classes).map(<[f32]>::to_vec));
        start += b;
    }
    out
}

/// Accuracy, mean loss and confusion matrix of `ck` on `test`, in batches of `batch`.
pub fn evaluate_checkpoint<B: Backend + 'static>(
    be: &B,
    ck: &Checkpoint,
    test: &ImageSet,
    batch: usize,
) -> Result<EvalReport> {
    let n = test.len();
    let mut model = ck.build_model(be, batch.clamp(1, n.max(1)))?;
    let data = ck.meta.data();
    let logits = pollster::block_on(logits_of(be, &mut model, &test.images, n, &data.norm));
    let classes = model.spec.classes();
    let mut confusion = vec![vec![0u64; classes]; classes];
    let (mut correct, mut loss) = (0usize, 0.0f64);
    for (z, &label) in logits.iter().zip(&test.labels) {
        let (lse, pred) = lse_argmax(z);
        loss += lse - z[label as usize] as f64;
        correct += (pred == label as usize) as usize;
        confusion[label as usize][pred] += 1;
    }
    Ok(EvalReport {
        checkpoint: ck
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        model: ck.meta.model.clone(),
        optim: ck.meta.optim.name().to_string(),
        step: ck.meta.step,
        epochs: ck.meta.epochs(),
        backend: be.kind().to_string(),
        device: be.device_name(),
        images: n,
        data_format: data.format,
        class_names: data.class_names,
        test_acc: correct as f64 / n.max(1) as f64,
        test_loss: loss / n.max(1) as f64,
        confusion,
    })
}

/// `wgtrain eval` on whichever backend was chosen.
pub struct EvalJob {
    pub checkpoint: Checkpoint,
    pub test: ImageSet,
    pub batch: usize,
}

impl OnBackend for EvalJob {
    type Output = EvalReport;
    fn run<B: Backend + 'static>(self, be: &B) -> Result<EvalReport> {
        evaluate_checkpoint(be, &self.checkpoint, &self.test, self.batch)
    }
}

/// Draws the confusion matrix as a heat map with the counts written in the cells: PNG, or SVG for a
/// `.svg` name (see [`save_figure`]).
pub fn plot_confusion(report: &EvalReport, path: &Path) -> Result<()> {
    crate::io::font::register_font();
    save_figure(&ConfusionFigure(report), path, (760, 760))
}

struct ConfusionFigure<'a>(&'a EvalReport);

impl Figure for ConfusionFigure<'_> {
    fn draw<DB: plotters::prelude::DrawingBackend>(
        &self,
        root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<()> {
        draw_confusion(self.0, root).map_err(plot_err)
    }
}

fn draw_confusion<DB: plotters::prelude::DrawingBackend>(
    report: &EvalReport,
    root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>> {
    use plotters::prelude::*;
    let k = report.confusion.len();
    let top = k as f64 - 0.5;
    // Row `t` (true class) is drawn at height k-1-t, so class 0 is at the top as in the printed matrix.
    let class_at = |v: f64| -> Option<usize> {
        let r = v.round();
        ((v - r).abs() < 1e-6 && r >= 0.0 && r < k as f64).then_some(r as usize)
    };
    root.fill(&WHITE)?;
    let title = format!(
        "{} step {}: test accuracy {:.2}% ({} images)",
        report.model,
        report.step,
        report.test_acc * 100.0,
        report.images
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..top, -0.5f64..top)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(k)
        .y_labels(k)
        .x_desc("predicted class")
        .y_desc("true class")
        .x_label_formatter(&|v| class_at(*v).map_or(String::new(), |c| c.to_string()))
        .y_label_formatter(&|v| class_at(*v).map_or(String::new(), |c| (k - 1 - c).to_string()))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    // Shade by the share of the true class's row, so rare classes read as well as common ones.
    let (light, dark) = ((247.0, 251.0, 255.0), (8.0, 48.0, 107.0));
    for (t, row) in report.confusion.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (p, &v) in row.iter().enumerate() {
            let share = v as f64 / total as f64;
            let mix = |a: f64, b: f64| (a + (b - a) * share) as u8;
            let fill = RGBColor(
                mix(light.0, dark.0),
                mix(light.1, dark.1),
                mix(light.2, dark.2),
            );
            let (x, y) = (p as f64, (k - 1 - t) as f64);
            let cell = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
            chart.draw_series([
                Rectangle::new(cell, fill.filled()),
                Rectangle::new(cell, RGBColor(200, 200, 200).stroke_width(1)),
            ])?;
            if v > 0 {
                let colour = if share > 0.5 { WHITE } else { BLACK };
                let style = TextStyle::from(("sans-serif", 15).into_font())
                    .color(&colour)
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ));
                chart.draw_series(std::iter::once(Text::new(v.to_string(), (x, y), style)))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// A class and its probability.
#[derive(Clone, Debug, Serialize)]
pub struct ClassProb {
    pub class: usize,
    /// The class's name (its folder, CIFAR's label name; the digit for MNIST).
    pub name: String,
    pub prob: f32,
}

/// The classes of one image, most likely first.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub image: String,
    pub top: Vec<ClassProb>,
    /// Softmax probability of every class, in class order.
    pub probs: Vec<f32>,
}

/// Softmax in f64, returned as f32 probabilities.
fn softmax(z: &[f32]) -> Vec<f32> {
    let (lse, _) = lse_argmax(z);
    z.iter().map(|&v| ((v as f64) - lse).exp() as f32).collect()
}

/// The top `k` classes of each image (u8 pixels in the model's input shape, as
/// [`crate::io::digit::load_digit`] or [`crate::io::picture::load_picture`] give) under `model`,
/// normalised and named as `data` says.
pub fn predict_pixels<B: Backend>(
    be: &B,
    model: &mut Model<B>,
    images: &[Vec<u8>],
    k: usize,
    data: &crate::io::checkpoint::CheckpointData,
) -> Vec<(Vec<ClassProb>, Vec<f32>)> {
    pollster::block_on(predict_pixels_async(be, model, images, k, data))
}

/// [`predict_pixels`] with its read-back awaited (a web page's).
pub async fn predict_pixels_async<B: Backend>(
    be: &B,
    model: &mut Model<B>,
    images: &[Vec<u8>],
    k: usize,
    data: &crate::io::checkpoint::CheckpointData,
) -> Vec<(Vec<ClassProb>, Vec<f32>)> {
    let flat: Vec<u8> = images.concat();
    logits_of(be, model, &flat, images.len(), &data.norm)
        .await
        .iter()
        .map(|z| {
            let probs = softmax(z);
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let top = order
                .iter()
                .take(k.max(1))
                .map(|&c| ClassProb {
                    class: c,
                    name: data
                        .class_names
                        .get(c)
                        .cloned()
                        .unwrap_or_else(|| c.to_string()),
                    prob: probs[c],
                })
                .collect();
            (top, probs)
        })
        .collect()
}

/// `wgtrain predict` on whichever backend was chosen: the images are already read.
pub struct PredictJob {
    pub checkpoint: Checkpoint,
    /// Image files and their pixels.
    pub images: Vec<(PathBuf, Vec<u8>)>,
    pub top: usize,
}

impl OnBackend for PredictJob {
    type Output = Vec<Prediction>;
    fn run<B: Backend + 'static>(self, be: &B) -> Result<Vec<Prediction>> {
        let cap = self.images.len().clamp(1, 256);
        let mut model = self.checkpoint.build_model(be, cap)?;
        let pixels: Vec<Vec<u8>> = self.images.iter().map(|(_, p)| p.clone()).collect();
        let out = predict_pixels(
            be,
            &mut model,
            &pixels,
            self.top,
            &self.checkpoint.meta.data(),
        );
        Ok(self
            .images
            .iter()
            .zip(out)
            .map(|((path, _), (top, probs))| Prediction {
                image: path.display().to_string(),
                top,
                probs,
            })
            .collect())
    }
}

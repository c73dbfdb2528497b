//! The one training loop, generic over [`Backend`]: steps, evaluation, metrics and their files.
//!
//! Per-step losses are copied into a device buffer and read back only at log points, so a GPU runs a
//! whole log interval without waiting for the host. Everything written to `--out` is flushed as it goes:
//! a crash or Ctrl-C keeps every line already logged.

pub mod files;
pub mod progress;
pub mod request;
pub mod trainer;

pub use trainer::Trainer;

use crate::backend::{Backend, Mat};
use crate::error::InputError;
use crate::io::checkpoint::Checkpoint;
use crate::io::data::{DataInfo, ImageSet, Splits};
use crate::model::{Model, ModelSpec};
use crate::optim::{OptimKind, Optimizer, Recipe};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to train and how long.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub model: ModelSpec,
    pub optim: OptimKind,
    pub lr: f32,
    /// Momentum, weight decay, schedule, warm-up, clipping (`Recipe::default()`: none of them).
    pub recipe: Recipe,
    pub batch: usize,
    /// Total optimizer steps (from `--epochs` or `--steps`).
    pub steps: usize,
    pub seed: u64,
    /// Read losses back (and report progress) every this many steps.
    pub log_every: usize,
    /// Evaluate on the validation set at every epoch end (the test set is evaluated once, at the end).
    pub eval_each_epoch: bool,
    pub out: Option<PathBuf>,
}

impl TrainConfig {
    /// Steps in one pass over `train_len` samples (the last partial batch is dropped, as the study did).
    pub fn steps_per_epoch(train_len: usize, batch: usize) -> usize {
        (train_len / batch).max(1)
    }
}

/// Accuracy and mean loss over a whole set.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EvalResult {
    pub acc: f64,
    pub loss: f64,
}

/// Validation figures at the end of an epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// The run stopped inside this epoch (`--steps` not a multiple of the epoch's steps).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Everything a run produced; also the JSON that `--json` prints and `metrics.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainResult {
    pub model: String,
    pub optim: String,
    pub lr: f32,
    /// Momentum, weight decay, schedule, warm-up and clipping.
    #[serde(default)]
    pub recipe: Recipe,
    pub batch: usize,
    pub epochs: f64,
    pub steps: usize,
    /// The step this invocation started from: 0, or where the resumed checkpoint stopped.
    pub start_step: usize,
    pub seed: u64,
    pub backend: String,
    pub device: String,
    /// The data set's format (`IDX`, `CIFAR-10`, `image folder`, ...), one image's shape and the class
    /// count.
    #[serde(default)]
    pub data_format: String,
    #[serde(default)]
    pub input: String,
    #[serde(default)]
    pub classes: usize,
    /// The GPU kernel set (`--kernels`: "tiled" or "emulated"); absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
    /// Mean training loss over the last epoch (or the whole run, if shorter).
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    /// Wall time of the whole run, evaluation included.
    pub seconds: f64,
    /// Training images per second (training steps only, evaluation excluded).
    pub images_per_s: f64,
    /// Wall time of the training steps alone (`seconds` less evaluation and saving).
    #[serde(default)]
    pub train_seconds: f64,
    #[serde(skip)]
    pub losses: Vec<f32>,
    #[serde(skip)]
    pub epoch_metrics: Vec<EpochMetrics>,
}

/// A run stopped because the loss stopped being a number.
#[derive(Debug, thiserror::Error)]
#[error("training diverged: loss is {loss} at step {step}; stopping (results so far are kept)")]
pub struct Diverged {
    pub step: usize,
    pub loss: f32,
}

/// Hooks for showing progress; all optional.
pub trait Observer {
    /// Before the first step: the step the run starts from (0, or where a resumed checkpoint stopped)
    /// and the step it trains to.
    fn start(&mut self, _first_step: usize, _total_steps: usize) {}
    /// After a log point: the step count so far and the latest loss.
    fn log(&mut self, _step: usize, _loss: f32) {}
    fn epoch(&mut self, _m: &EpochMetrics) {}
    /// A problem that does not stop the run (an output that could not be written).
    fn warn(&mut self, _msg: &str) {}
    fn finish(&mut self) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {}

/// The device-side copies of the three splits.
pub struct DeviceData<B: Backend> {
    pub train: B::Dataset,
    pub train_len: usize,
    pub val: (B::Dataset, usize),
    pub test: (B::Dataset, usize),
}

impl<B: Backend> DeviceData<B> {
    /// Uploads the splits once; batches are gathered on the device from then on.
    pub fn upload(be: &B, data: &Splits) -> Self {
        let norm = &data.info.norm;
        let up = |s: &ImageSet| {
            let ds = be.upload_dataset(&s.images, &s.labels, s.pixels(), norm);
            (ds, s.len())
        };
        let (train, train_len) = up(&data.train);
        DeviceData {
            train,
            train_len,
            val: up(&data.val),
            test: up(&data.test),
        }
    }
}

/// Scratch tensors for one batch: inputs, labels, and the eval accumulator.
pub struct BatchBuffers<B: Backend> {
    pub x: B::Tensor,
    pub y: B::Tensor,
    acc: B::Tensor,
}

impl<B: Backend> BatchBuffers<B> {
    pub fn new(be: &B, batch: usize, pixels: usize) -> Self {
        BatchBuffers {
            x: be.zeros(batch * pixels),
            y: be.zeros(batch),
            acc: be.zeros(2),
        }
    }
}

/// Accuracy and mean loss of `model` (evaluation mode) over a whole device data set, in order. Its
/// one wait on the device is the read of the sums at the end.
pub async fn evaluate<B: Backend>(
    be: &B,
    model: &mut Model<B>,
    ds: &B::Dataset,
    n: usize,
    bufs: &mut BatchBuffers<B>,
) -> EvalResult {
    be.fill(&mut bufs.acc, 0.0);
    let batch = model.capacity;
    let classes = model.spec.classes();
    let mut start = 0;
    while start < n {
        let b = batch.min(n - start);
        be.gather_batch(ds, start, b, &mut bufs.x, &mut bufs.y);
        let logits = model.forward(be, &bufs.x, b, false);
        be.eval_batch(logits, &bufs.y, &mut bufs.acc, Mat::new(b, classes));
        start += b;
    }
    let acc = be.read_async(&bufs.acc).await;
    EvalResult {
        acc: acc[0] as f64 / n as f64,
        loss: acc[1] as f64 / n as f64,
    }
}

/// One training step on the batch at `start` of the current order; the loss stays on the device.
pub fn train_step<B: Backend>(
    be: &B,
    model: &mut Model<B>,
    opt: &mut Optimizer,
    ds: &B::Dataset,
    start: usize,
    bufs: &mut BatchBuffers<B>,
) {
    let batch = model.capacity;
    be.gather_batch(ds, start, batch, &mut bufs.x, &mut bufs.y);
    model.set_step(opt.steps);
    model.forward(be, &bufs.x, batch, true);
    model.backward(be, &bufs.x, &bufs.y, batch);
    opt.step(be, model);
}

/// Trains `cfg.model` on `data` and evaluates it on the validation and test sets. An output that could
/// not be written is an error here (see [`train_with`] to keep the figures as well).
pub fn train<B: Backend + 'static>(
    be: &B,
    data: &Splits,
    cfg: &TrainConfig,
    obs: &mut dyn Observer,
) -> Result<TrainResult> {
    let t = train_with(be, data, cfg, obs, Persist::default())?;
    match t.write_failure {
        Some(e) => Err(e.into()),
        None => Ok(t.result),
    }
}

/// Where a run starts and where it keeps its model, beyond [`TrainConfig`].
#[derive(Clone, Copy, Default)]
pub struct Persist<'a> {
    /// Continue from this checkpoint (same model, optimizer, batch, seed and training set as `cfg`;
    /// `cfg.lr` may differ). `cfg.steps` stays the total, counting the steps the checkpoint already did.
    pub resume: Option<&'a Checkpoint>,
    /// Write a checkpoint here at every epoch end and at the end of the run.
    pub save: Option<&'a Path>,
}

/// A finished run: its figures, and the model and optimizer as they ended.
pub struct Trained<B: Backend> {
    pub result: TrainResult,
    pub model: Model<B>,
    pub optimizer: Optimizer,
    /// The first output that could not be written (a full disk, a path gone read-only). Training went
    /// on without that output, so the figures above are whole; the caller reports this after them.
    pub write_failure: Option<InputError>,
}

/// [`train`], optionally continuing from a checkpoint and saving one; returns the final model too.
/// A [`Trainer`] driven to the end on this thread, its log points awaited through `pollster`.
pub fn train_with<B: Backend + 'static>(
    be: &B,
    data: &Splits,
    cfg: &TrainConfig,
    obs: &mut dyn Observer,
    persist: Persist,
) -> Result<Trained<B>> {
    let mut run = Trainer::new(be, data, cfg, persist, obs)?;
    while !run.finished() {
        run.step();
        if run.at_log_point() {
            pollster::block_on(run.log(obs))?;
        }
    }
    pollster::block_on(run.finish(obs))
}

/// The most optimizer steps a run may ask for: its per-step losses are kept in memory (4 bytes each),
/// so this bounds them to 4 GiB, and a count beyond it is a typo rather than a plan (at a million
/// steps a second it would take 12 days).
pub const MAX_STEPS: usize = 1 << 30;

/// `steps` if at most [`MAX_STEPS`], else a one-line error naming `flag`.
pub fn check_step_count(flag: &str, steps: usize) -> Result<(), InputError> {
    if steps > MAX_STEPS {
        return Err(InputError::value(format!(
            "{flag}: {steps} steps is more than the {MAX_STEPS} a run may have (its per-step losses are kept in memory)"
        )));
    }
    Ok(())
}

/// Whether `ck` can be continued by the run `cfg` describes on a training set of `train_len` images
/// (`spe` steps per epoch): same model, optimizer, batch, seed and data, and steps still to do.
pub fn check_resume(
    ck: &Checkpoint,
    cfg: &TrainConfig,
    info: &DataInfo,
    train_len: usize,
    spe: usize,
) -> Result<()> {
    let m = &ck.meta;
    let name = || {
        ck.path
            .as_ref()
            .map_or("the checkpoint".to_string(), |p| p.display().to_string())
    };
    let mismatch = |what: &str, ours: String, theirs: String| -> anyhow::Error {
        InputError::value(format!(
            "cannot resume from {}: it was trained with {what} {theirs}, this run asks for {ours}",
            name()
        ))
        .into()
    };
    if cfg.model.name() != m.model {
        return Err(mismatch("model", cfg.model.name(), m.model.clone()));
    }
    if cfg.optim != m.optim {
        return Err(mismatch(
            "optimizer",
            cfg.optim.name().into(),
            m.optim.name().into(),
        ));
    }
    if cfg.recipe != m.recipe {
        let show = |r: &Recipe| match r.describe() {
            d if d.is_empty() => "no momentum, weight decay, schedule or clipping".to_string(),
            d => d,
        };
        return Err(mismatch("the recipe", show(&cfg.recipe), show(&m.recipe)));
    }
    let schedule_spans_run = cfg.recipe.schedule == crate::optim::LrSchedule::Cosine;
    if schedule_spans_run && m.total_steps != cfg.steps as u64 {
        return Err(mismatch(
            "a cosine schedule over",
            format!("{} steps", cfg.steps),
            format!("{} steps", m.total_steps),
        ));
    }
    if cfg.batch != m.batch {
        return Err(mismatch(
            "batch",
            cfg.batch.to_string(),
            m.batch.to_string(),
        ));
    }
    if cfg.seed != m.seed {
        return Err(mismatch("seed", cfg.seed.to_string(), m.seed.to_string()));
    }
    if train_len != m.train_len || spe != m.steps_per_epoch {
        return Err(mismatch(
            "a training set of",
            format!("{train_len} images"),
            format!("{} images", m.train_len),
        ));
    }
    // The same images (shape), classes (names) and normalisation (a function of the training images).
    let theirs = m.data();
    let ours = crate::io::checkpoint::CheckpointData::new(cfg.model.input(), info);
    let names = |d: &crate::io::checkpoint::CheckpointData| {
        let first: Vec<&str> = d.class_names.iter().take(3).map(String::as_str).collect();
        format!("classes {} ...", first.join(", "))
    };
    let norm = |d: &crate::io::checkpoint::CheckpointData| {
        format!("pixel mean {:?} and std {:?}", d.norm.mean, d.norm.std)
    };
    let differ = if ours.input != theirs.input {
        Some((
            format!("{} images of {}", theirs.format, theirs.shape()),
            format!("{} images of {}", ours.format, ours.shape()),
        ))
    } else if ours.class_names != theirs.class_names {
        Some((names(&theirs), names(&ours)))
    } else if ours.norm != theirs.norm {
        Some((norm(&theirs), norm(&ours)))
    } else {
        None
    };
    if let Some((theirs, ours)) = differ {
        return Err(mismatch("training data of", ours, theirs));
    }
    if m.step >= cfg.steps {
        return Err(InputError::value(format!(
            "{} is already at step {} (epoch {:.2}); ask for more than that with --epochs or --steps (they count the whole run)",
            name(),
            m.step,
            m.epochs()
        ))
        .into());
    }
    Ok(())
}

/// The model and optimizer of `ck`, after checking it continues the run `cfg` describes.
fn resume_state<B: Backend + 'static>(
    be: &B,
    ck: &Checkpoint,
    cfg: &TrainConfig,
    info: &DataInfo,
    train_len: usize,
    spe: usize,
) -> Result<(Model<B>, Optimizer)> {
    check_resume(ck, cfg, info, train_len, spe)?;
    let (model, mut opt) = ck.restore(be, cfg.batch)?;
    opt.lr = cfg.lr;
    opt.total_steps = cfg.steps as u64;
    Ok((model, opt))
}

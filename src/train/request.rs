//! A training run as the user asked for it (`wgtrain train`): options left out take the checkpoint's
//! values when resuming, else the defaults; the result is a checked [`TrainConfig`] and a job that runs
//! it with progress on whichever backend was chosen.

use super::progress::TrainProgress;
use super::{check_resume, train_with, Persist, TrainConfig, TrainResult};
use crate::backend::select::OnBackend;
use crate::backend::Backend;
use crate::error::{at_least_one, InputError};
use crate::io::checkpoint::Checkpoint;
use crate::io::data::{self, Splits};
use crate::model::ModelSpec;
use crate::optim::{LrSchedule, OptimKind, Recipe};
use anyhow::Result;
use std::path::PathBuf;

/// The default model of `wgtrain train`.
pub const DEFAULT_MODEL: &str = "fc8-bn";
/// The study's batch: 500 steps per epoch on 55,000 images.
pub const DEFAULT_BATCH: usize = 110;

/// Every `wgtrain train` option; `None` means "not given".
#[derive(Clone, Debug, Default)]
pub struct TrainRequest {
    pub model: Option<String>,
    pub optim: Option<String>,
    pub lr: Option<f32>,
    /// The recipe's parts (each from the checkpoint when resuming and not given).
    pub momentum: Option<f32>,
    pub nesterov: bool,
    pub weight_decay: Option<f32>,
    pub lr_schedule: Option<String>,
    pub warmup: Option<u64>,
    pub clip_norm: Option<f32>,
    pub epochs: Option<usize>,
    pub steps: Option<usize>,
    pub batch: Option<usize>,
    pub seed: Option<u64>,
    pub data: Option<PathBuf>,
    pub val_size: usize,
    pub data_options: data::DataOptions,
    pub out: Option<PathBuf>,
    pub log_every: usize,
    pub save: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub quiet: bool,
}

impl TrainRequest {
    /// Loads the checkpoint and the data, fills in what was not given, checks every value, and returns
    /// the job to run.
    pub fn resolve(self) -> Result<TrainJob> {
        // Output paths first: a path that cannot be written must not cost an epoch of training.
        if let Some(dir) = &self.out {
            crate::io::output::prepare_dir(dir, "--out")?;
        }
        if let Some(path) = &self.save {
            crate::io::output::prepare_file(path, "--save")?;
        }
        let resume = self.resume.as_deref().map(Checkpoint::load).transpose()?;
        let meta = resume.as_ref().map(|ck| &ck.meta);
        // The data first: the model's shapes follow from its images and classes.
        let data_dir = self.data.clone().unwrap_or_else(data::default_data_dir);
        let data = data::load(&data_dir, self.val_size, &self.data_options)?;
        let (input, classes) = (data.shape(), data.info.classes());
        let model = match (&self.model, &resume) {
            (Some(m), _) => ModelSpec::parse_for(m, input, classes)?,
            (None, Some(ck)) => ck.spec()?,
            (None, None) => ModelSpec::parse_for(DEFAULT_MODEL, input, classes)?,
        };
        let optim = match &self.optim {
            Some(o) => OptimKind::parse(o).map_err(|e| InputError::value(e.to_string()))?,
            None => meta.map_or(OptimKind::Adam, |m| m.optim),
        };
        let lr = self
            .lr
            .unwrap_or_else(|| meta.map_or(optim.default_lr(), |m| m.lr));
        if !(lr.is_finite() && lr > 0.0) {
            return Err(InputError::value(format!("--lr {lr}: must be a positive number")).into());
        }
        let base = meta.map(|m| m.recipe).unwrap_or_default();
        let recipe = Recipe {
            momentum: self.momentum.unwrap_or(base.momentum),
            nesterov: self.nesterov || (self.momentum.is_none() && base.nesterov),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            schedule: match &self.lr_schedule {
                Some(s) => LrSchedule::parse(s)?,
                None => base.schedule,
            },
            warmup: self.warmup.unwrap_or(base.warmup),
            clip_norm: self.clip_norm.or(base.clip_norm),
        };
        recipe.check(optim)?;
        let batch = at_least_one(
            "--batch",
            self.batch
                .unwrap_or_else(|| meta.map_or(DEFAULT_BATCH, |m| m.batch)),
        )?;
        let seed = self.seed.unwrap_or_else(|| meta.map_or(1, |m| m.seed));
        let spe = TrainConfig::steps_per_epoch(data.train.len(), batch);
        let steps = match (self.steps, self.epochs) {
            (Some(s), _) => at_least_one("--steps", s)?,
            (None, e) => {
                let e = at_least_one("--epochs", e.unwrap_or(1))?;
                e.checked_mul(spe).ok_or_else(|| {
                    InputError::value(format!("--epochs {e}: too many steps to count"))
                })?
            }
        };
        let flag = if self.steps.is_some() {
            "--steps"
        } else {
            "--epochs"
        };
        super::check_step_count(flag, steps)?;
        if batch > data.train.len() {
            return Err(InputError::value(format!(
                "--batch {batch} is larger than the {} training images",
                data.train.len()
            ))
            .into());
        }
        model.check_batch_memory("--batch", batch)?;
        let cfg = TrainConfig {
            model,
            optim,
            lr,
            recipe,
            batch,
            steps,
            seed,
            log_every: at_least_one("--log-every", self.log_every)?,
            eval_each_epoch: true,
            out: self.out,
        };
        // Checked here, before a backend is chosen, so that a bad request is one line of error and
        // nothing else.
        if let Some(ck) = &resume {
            ck.check()?;
            check_resume(ck, &cfg, &data.info, data.train.len(), spe)?;
        }
        Ok(TrainJob {
            data_dir,
            data,
            cfg,
            quiet: self.quiet,
            resume,
            save: self.save,
        })
    }
}

/// A resolved training run, ready for [`crate::backend::select::run_on`].
pub struct TrainJob {
    pub data_dir: PathBuf,
    pub data: Splits,
    pub cfg: TrainConfig,
    pub quiet: bool,
    pub resume: Option<Checkpoint>,
    pub save: Option<PathBuf>,
}

/// A finished `wgtrain train`: its figures, and the first output that could not be written, if any
/// (reported after the figures: the run itself went on).
pub struct TrainOutcome {
    pub result: TrainResult,
    pub write_failure: Option<InputError>,
}

impl OnBackend for TrainJob {
    type Output = TrainOutcome;
    fn run<B: Backend + 'static>(self, be: &B) -> Result<TrainOutcome> {
        let label = format!(
            "{} {} {}",
            self.cfg.model.name(),
            self.cfg.optim.name(),
            be.kind()
        );
        if !self.quiet {
            // Here, once the backend is chosen: a bad request stays one line of error and nothing else.
            eprintln!(
                "note: data: {} ({})",
                self.data_dir.display(),
                self.data.describe()
            );
        }
        let mut progress = TrainProgress::new(label, self.quiet);
        let persist = Persist {
            resume: self.resume.as_ref(),
            save: self.save.as_deref(),
        };
        let t = train_with(be, &self.data, &self.cfg, &mut progress, persist)?;
        Ok(TrainOutcome {
            result: t.result,
            write_failure: t.write_failure,
        })
    }
}

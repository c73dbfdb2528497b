//! A training run as a steppable object: [`Trainer::step`] records one optimizer step without waiting
//! for the device, [`Trainer::log`] is the awaited log point (losses read back, files written, the
//! epoch's evaluation and checkpoint at its end), [`Trainer::finish`] the test set and the figures.
//!
//! Natively `train_with` drives it with `pollster`; a web page awaits each log point and gives the
//! browser its event loop between them, so the page stays responsive while it trains.

use super::files::RunFiles;
use super::{
    evaluate, resume_state, train_step, BatchBuffers, DeviceData, Diverged, EpochMetrics, Observer,
    Persist, TrainConfig, TrainResult, Trained,
};
use crate::backend::Backend;
use crate::error::InputError;
use crate::io::checkpoint::Checkpoint;
use crate::io::data::{epoch_order, Splits};
use crate::model::Model;
use crate::optim::Optimizer;
use anyhow::Result;
use std::path::Path;
use web_time::Instant;

/// One run in progress. Between [`Trainer::new`] and [`Trainer::finish`], call [`Trainer::step`]
/// until [`Trainer::finished`], and [`Trainer::log`] whenever [`Trainer::at_log_point`] says so.
pub struct Trainer<'a, B: Backend> {
    be: &'a B,
    data: &'a Splits,
    cfg: &'a TrainConfig,
    model: Model<B>,
    opt: Optimizer,
    dev: DeviceData<B>,
    bufs: BatchBuffers<B>,
    files: Option<RunFiles>,
    save: Option<&'a Path>,
    /// Steps per epoch, and the interval between log points (at most an epoch).
    spe: usize,
    log_every: usize,
    /// The step this invocation started from (0, or the resumed checkpoint's).
    start: usize,
    step: usize,
    /// The step whose loss was the last one read back.
    logged: usize,
    /// The step the current epoch ends at, and when its first step began; `None` between epochs.
    epoch: Option<(usize, Instant)>,
    /// One slot per step of an epoch: each step's loss is copied here on the device.
    step_losses: B::Tensor,
    /// Grown as the run goes: `cfg.steps` may be far more than a run will reach before it is stopped.
    losses: Vec<f32>,
    /// The first write that failed; its output is dropped, training goes on (see `Trained`).
    write_failure: Option<InputError>,
    epoch_metrics: Vec<EpochMetrics>,
    train_seconds: f64,
    started: Instant,
}

impl<'a, B: Backend + 'static> Trainer<'a, B> {
    /// Checks `cfg` against the data (and the checkpoint, when resuming), builds the model and
    /// optimizer, uploads the data and creates the run's files; then tells `obs` where it starts.
    pub fn new(
        be: &'a B,
        data: &'a Splits,
        cfg: &'a TrainConfig,
        persist: Persist<'a>,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        let started = Instant::now();
        let (input, classes) = (data.shape(), data.info.classes());
        if (cfg.model.input(), cfg.model.classes()) != (input, classes) {
            return Err(InputError::value(format!(
                "model {} is built for {} images in {} classes, the data has {input} images in {classes}",
                cfg.model.name(),
                cfg.model.input(),
                cfg.model.classes()
            ))
            .into());
        }
        let spe = TrainConfig::steps_per_epoch(data.train.len(), cfg.batch);
        let (model, opt) = match persist.resume {
            Some(ck) => resume_state(be, ck, cfg, &data.info, data.train.len(), spe)?,
            None => (
                Model::new(be, cfg.model.clone(), cfg.batch, cfg.seed),
                Optimizer::with_recipe(cfg.optim, cfg.lr, cfg.recipe, cfg.steps as u64),
            ),
        };
        let start = opt.steps as usize;
        if let Some(path) = persist.save {
            crate::io::output::prepare_file(path, "--save")?;
        }
        let dev = DeviceData::upload(be, data);
        let bufs = BatchBuffers::new(be, cfg.batch, data.train.pixels());
        let files = cfg.out.as_deref().map(RunFiles::create).transpose()?;
        anyhow::ensure!(
            dev.train_len >= cfg.batch,
            InputError::value(format!(
                "--batch {} is larger than the {} training images",
                cfg.batch, dev.train_len
            ))
        );
        obs.start(start, cfg.steps);
        Ok(Trainer {
            be,
            data,
            cfg,
            model,
            opt,
            bufs,
            files,
            save: persist.save,
            spe,
            log_every: cfg.log_every.clamp(1, spe),
            start,
            step: start,
            logged: start,
            epoch: None,
            step_losses: be.zeros(spe),
            losses: Vec::new(),
            write_failure: None,
            epoch_metrics: Vec::new(),
            train_seconds: 0.0,
            started,
            dev,
        })
    }

    /// Every step of the run is recorded (what is left is [`Trainer::finish`]).
    pub fn finished(&self) -> bool {
        self.step >= self.cfg.steps
    }

    /// Steps done so far, counting a resumed checkpoint's.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The run's total steps (`cfg.steps`).
    pub fn total_steps(&self) -> usize {
        self.cfg.steps
    }

    /// Every loss read back so far (one per step since this invocation's first).
    pub fn losses(&self) -> &[f32] {
        &self.losses
    }

    /// The model as it stands (its tensors may still be in flight on the device).
    pub fn model(&self) -> &Model<B> {
        &self.model
    }

    /// Records one training step (starting an epoch first where one begins); waits for nothing.
    pub fn step(&mut self) {
        debug_assert!(!self.finished(), "step after the last step");
        let spe = self.spe;
        if self.epoch.is_none() {
            let epoch = self.step / spe;
            let began = Instant::now();
            let order = epoch_order(self.dev.train_len, self.cfg.seed, epoch);
            self.be.set_order(&mut self.dev.train, &order);
            self.epoch = Some((((epoch + 1) * spe).min(self.cfg.steps), began));
            self.logged = self.step;
        }
        train_step(
            self.be,
            &mut self.model,
            &mut self.opt,
            &self.dev.train,
            (self.step % spe) * self.cfg.batch,
            &mut self.bufs,
        );
        let slot = self.step % spe;
        self.be
            .copy(&self.model.head.loss, 0, &mut self.step_losses, slot, 1);
        self.step += 1;
    }

    /// The last step ended a log interval or an epoch: [`Trainer::log`] is due.
    pub fn at_log_point(&self) -> bool {
        match self.epoch {
            Some((end, _)) => {
                self.step > self.logged
                    && (self.step.is_multiple_of(self.log_every) || self.step == end)
            }
            None => false,
        }
    }

    /// Reads the losses since the last log point back (the one wait on the device), writes them,
    /// stops the run if one is not a number; at an epoch's end evaluates on the validation set and
    /// saves the checkpoint.
    pub async fn log(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let Some((end, began)) = self.epoch else {
            return Ok(());
        };
        let (spe, step, logged) = (self.spe, self.step, self.logged);
        let epoch = logged / spe;
        let all = self.be.read_async(&self.step_losses).await;
        self.be.health()?;
        let fresh = &all[logged % spe..logged % spe + (step - logged)];
        for (i, &l) in fresh.iter().enumerate() {
            if let Some(f) = self.files.as_mut() {
                f.loss(logged + i + 1, epoch + 1, l);
            }
            if !l.is_finite() {
                if let Some(f) = self.files.as_mut() {
                    f.flush_losses()?;
                }
                obs.finish();
                return Err(Diverged {
                    step: logged + i + 1,
                    loss: l,
                }
                .into());
            }
        }
        self.losses.extend_from_slice(fresh);
        if let Some(Err(e)) = self.files.as_mut().map(RunFiles::flush_losses) {
            self.files = None;
            self.failed(e, "training goes on without the run's files", obs);
        }
        self.logged = step;
        obs.log(step, *self.losses.last().expect("at least one loss"));
        if step == end {
            self.train_seconds += began.elapsed().as_secs_f64();
            self.epoch = None;
            self.end_epoch(epoch, obs).await;
        }
        Ok(())
    }

    /// An epoch's validation (where asked for, and always after the last step) and checkpoint.
    async fn end_epoch(&mut self, epoch: usize, obs: &mut dyn Observer) {
        let (spe, step) = (self.spe, self.step);
        let epoch_losses =
            &self.losses[(epoch * spe).max(self.start) - self.start..step - self.start];
        let train_loss =
            epoch_losses.iter().map(|&l| l as f64).sum::<f64>() / epoch_losses.len() as f64;
        if self.cfg.eval_each_epoch || step == self.cfg.steps {
            let (ds, n) = (&self.dev.val.0, self.dev.val.1);
            let v = evaluate(self.be, &mut self.model, ds, n, &mut self.bufs).await;
            let m = EpochMetrics {
                epoch: epoch + 1,
                step,
                train_loss,
                val_loss: v.loss,
                val_acc: v.acc,
                partial: step < (epoch + 1) * spe,
            };
            if let Some(Err(e)) = self.files.as_mut().map(|f| f.epoch(&m)) {
                self.files = None;
                self.failed(e, "training goes on without the run's files", obs);
            }
            obs.epoch(&m);
            self.epoch_metrics.push(m);
        }
        if let Some(path) = self.save {
            let ck = Checkpoint::capture(
                self.be,
                &self.model,
                &self.opt,
                self.cfg.batch,
                self.cfg.seed,
                spe,
                self.dev.train_len,
                &self.data.info,
            );
            if let Err(e) = ck.save(path) {
                self.save = None;
                self.failed(e, "training goes on without saving", obs);
            }
        }
    }

    /// A write that failed: warned about, its output dropped, the first one kept for the caller.
    fn failed(&mut self, e: InputError, note: &str, obs: &mut dyn Observer) {
        obs.warn(&format!("{e}; {note}"));
        self.write_failure.get_or_insert(e);
    }

    /// After the last step's log point: the test set, the run's figures and `metrics.json`.
    pub async fn finish(mut self, obs: &mut dyn Observer) -> Result<Trained<B>> {
        obs.finish();
        let (ds, n) = (&self.dev.test.0, self.dev.test.1);
        let test = evaluate(self.be, &mut self.model, ds, n, &mut self.bufs).await;
        let last = self
            .epoch_metrics
            .last()
            .cloned()
            .expect("the last epoch is always evaluated");
        let (cfg, data, be) = (self.cfg, self.data, self.be);
        let result = TrainResult {
            model: cfg.model.name(),
            optim: cfg.optim.name().to_string(),
            lr: cfg.lr,
            recipe: cfg.recipe,
            batch: cfg.batch,
            epochs: cfg.steps as f64 / self.spe as f64,
            steps: cfg.steps,
            start_step: self.start,
            seed: cfg.seed,
            backend: be.kind().to_string(),
            device: be.device_name(),
            data_format: data.info.format.to_string(),
            input: data.shape().to_string(),
            classes: data.info.classes(),
            kernels: be.kernels().map(String::from),
            train_loss: last.train_loss,
            val_loss: last.val_loss,
            val_acc: last.val_acc,
            test_loss: test.loss,
            test_acc: test.acc,
            seconds: self.started.elapsed().as_secs_f64(),
            images_per_s: ((cfg.steps - self.start) * cfg.batch) as f64
                / self.train_seconds.max(1e-9),
            train_seconds: self.train_seconds,
            losses: self.losses,
            epoch_metrics: self.epoch_metrics,
        };
        let mut write_failure = self.write_failure;
        if let Some(Err(e)) = self.files.map(|f| f.metrics(&result)) {
            write_failure.get_or_insert(e);
        }
        Ok(Trained {
            result,
            model: self.model,
            optimizer: self.opt,
            write_failure,
        })
    }
}

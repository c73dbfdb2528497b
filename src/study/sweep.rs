//! The study's experiment grid (Tables I-IV, docs/MODELS.md), run headless, sharded and resumable.
//!
//! Every finished run appends one JSON line to `DIR/results.jsonl` (written whole with one `write_all`,
//! under an exclusive `flock`, then fsynced), and its per-step losses go to `DIR/runs/<key>/losses.csv`.
//! A rerun reads the file back and skips every run whose key is there, so killing a sweep at any moment
//! loses at most the run in progress. A malformed or half-written line (a crash mid-write) is skipped
//! with a warning, and the next append starts on a fresh line.
//!
//! A run's key names everything that changes its result: model, optimizer, learning rate, batch,
//! budget (epochs or steps), seed, and the evaluation subset (`--quick`). Runs that two tables share
//! (CNN-7 with SGD at 0.01 is in Tables II, III and IV) have one key and are run once.
//!
//! `--shard I/N` runs the grid entries `I, I+N, I+2N, ...` (in grid order), so N processes, machines or
//! Slurm array tasks given the same options split one sweep between them.

use super::grid::{grid, GridRun, RunSpec, Shard, STUDY_BATCH, TABLES};
use super::report::write_report;
use super::store::{
    append_record, claim_next, read_records, repair_tail, unix_now, RunRecord, RunStatus,
    RESULTS_FILE,
};
use crate::backend::select::OnBackend;
use crate::backend::Backend;
use crate::error::InputError;
use crate::io::data::Splits;
use crate::train::progress::{bar_style, TrainProgress};
use crate::train::{train, Diverged, Observer, TrainConfig, TrainResult};
use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;
use web_time::Instant;

/// `--quick`: optimizer steps per run.
pub const QUICK_STEPS: usize = 20;
/// `--quick`: images of the validation and of the test set evaluated (the first ones of each).
pub const QUICK_EVAL: usize = 500;

/// How long each run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// Passes over the training set (`train len / batch` steps each).
    Epochs(usize),
    /// A fixed number of optimizer steps.
    Steps(usize),
}

/// Everything that defines a sweep, besides the data and the backend.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// The sweep directory: results.jsonl, runs/<key>/, report.md, figures/.
    pub out: PathBuf,
    /// Tables whose runs to train (ignored when `runs` is given).
    pub tables: Vec<u8>,
    /// Train exactly these runs instead of the tables' grid (tests, partial reruns).
    pub runs: Option<Vec<GridRun>>,
    pub budget: Budget,
    pub batch: usize,
    /// Seed of every run's weights and shuffling (each run uses it; it is recorded).
    pub seed: u64,
    pub shard: Shard,
    /// Evaluate only the first this many validation and test images (`--quick`).
    pub eval_limit: Option<usize>,
    /// Whether this is the `--quick` smoke budget (recorded, and flagged in the report).
    pub quick: bool,
    /// Read losses back (and update progress) every this many steps.
    pub log_every: usize,
    /// Build report.md and the figures when the sweep ends.
    pub report: bool,
    /// Recorded with every run: where the data came from.
    pub data_label: String,
    /// Momentum, weight decay, schedule, warm-up and clipping of every run (the study: none).
    pub recipe: crate::optim::Recipe,
}

impl SweepConfig {
    /// The study's sweep: all four tables, one epoch, batch 110, seed 1, into `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        SweepConfig {
            out: out.into(),
            tables: TABLES.to_vec(),
            runs: None,
            budget: Budget::Epochs(1),
            batch: STUDY_BATCH,
            seed: 1,
            shard: Shard::default(),
            eval_limit: None,
            quick: false,
            log_every: 50,
            report: true,
            data_label: String::new(),
            recipe: Default::default(),
        }
    }

    /// The `--quick` smoke budget: [`QUICK_STEPS`] steps per run, [`QUICK_EVAL`] validation and test
    /// images.
    pub fn quick(mut self) -> Self {
        self.budget = Budget::Steps(QUICK_STEPS);
        self.eval_limit = Some(QUICK_EVAL);
        self.quick = true;
        self
    }

    /// The settings every run of this sweep shares, as they appear in its keys:
    /// `b110_e1_seed1` or, with `--quick`, `b110_st20_seed1_eval500`.
    pub fn signature(&self) -> String {
        let budget = match self.budget {
            Budget::Epochs(e) => format!("e{e}"),
            Budget::Steps(s) => format!("st{s}"),
        };
        let mut sig = format!("b{}_{budget}_seed{}", self.batch, self.seed);
        if let Some(n) = self.eval_limit {
            sig.push_str(&format!("_eval{n}"));
        }
        sig + &self.recipe.tag()
    }

    /// The key of `run` in this sweep, e.g. `cnn7-bn_sgd_lr0.01_b110_e1_seed1`; also its directory name.
    pub fn key(&self, run: &RunSpec) -> String {
        run.key(&self.signature())
    }

    /// The runs this sweep covers (all shards).
    pub fn selected(&self) -> Vec<GridRun> {
        self.runs.clone().unwrap_or_else(|| grid(&self.tables))
    }

    /// Checks the values a user can get wrong.
    pub fn validate(&self) -> Result<(), InputError> {
        if self.batch == 0 {
            return Err(InputError::value("batch must be at least 1"));
        }
        match self.budget {
            Budget::Epochs(0) => return Err(InputError::value("--epochs must be at least 1")),
            Budget::Steps(0) => return Err(InputError::value("--steps must be at least 1")),
            _ => {}
        }
        if self.eval_limit == Some(0) {
            return Err(InputError::value(
                "the evaluation subset must hold at least 1 image",
            ));
        }
        if self.tables.is_empty() && self.runs.is_none() {
            return Err(InputError::value("--tables: no table selected"));
        }
        Ok(())
    }
}

/// Hooks for showing a sweep's progress; all optional.
pub trait SweepObserver {
    /// Before the first run: how many runs this shard owns, and how many of them are already done.
    fn plan(&mut self, _owned: usize, _done: usize) {}
    /// A one-line message (a skipped malformed line, a diverged run).
    fn note(&mut self, _msg: &str) {}
    /// The observer of the run about to start (`index` counts from 1 among the runs left to do).
    fn run_started(&mut self, _index: usize, _of: usize, _key: &str) -> Box<dyn Observer> {
        Box::new(crate::train::Silent)
    }
    fn run_finished(&mut self, _record: &RunRecord) {}
    fn finish(&mut self) {}
}

/// A sweep observer that shows nothing.
pub struct SilentSweep;
impl SweepObserver for SilentSweep {}

/// What a sweep did.
#[derive(Clone, Debug, Default)]
pub struct SweepSummary {
    /// Keys this call trained, in order.
    pub executed: Vec<String>,
    /// Keys of this shard found already done in results.jsonl.
    pub skipped: Vec<String>,
    /// Of `executed`, those whose loss diverged.
    pub diverged: Vec<String>,
    /// Keys another sweep process on the same directory trained, or is training (their claims).
    pub elsewhere: Vec<String>,
    /// The report, if one was built.
    pub report: Option<PathBuf>,
}

/// Runs this shard's part of the sweep `cfg` on `be`, skipping runs already in results.jsonl, then
/// (if `cfg.report`) rebuilds the report from everything in the directory.
pub fn run_sweep<B: Backend + 'static>(
    be: &B,
    data: &Splits,
    cfg: &SweepConfig,
    obs: &mut dyn SweepObserver,
) -> Result<SweepSummary> {
    cfg.validate()?;
    // A directory the user named that cannot be written is their input's problem (exit 2).
    std::fs::create_dir_all(&cfg.out).map_err(|e| {
        InputError::file(&cfg.out, format!("cannot create the sweep directory: {e}"))
    })?;
    let results = cfg.out.join(RESULTS_FILE);
    let data = limit_eval(data, cfg.eval_limit);
    let spe = TrainConfig::steps_per_epoch(data.train.len(), cfg.batch);
    if data.train.len() < cfg.batch {
        return Err(InputError::value(format!(
            "batch {} is larger than the {} training images",
            cfg.batch,
            data.train.len()
        ))
        .into());
    }
    let steps = match cfg.budget {
        Budget::Epochs(e) => e * spe,
        Budget::Steps(s) => s,
    };

    if let Some(m) = repair_tail(&results)? {
        obs.note(&m);
    }
    // Lines that are not records (a hand edit) are noted once per command, here, not again at the report.
    let mut warned = HashSet::new();
    let mut note_once = |m: &str, obs: &mut dyn SweepObserver| {
        if warned.insert(m.to_string()) {
            obs.note(m)
        }
    };
    let done: HashSet<String> = read_records(&results, &mut |m| note_once(m, obs))?
        .into_iter()
        .map(|r| r.key)
        .collect();
    let mine: Vec<(GridRun, String)> = cfg
        .selected()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| cfg.shard.owns(*i))
        .map(|(_, g)| {
            let key = cfg.key(&g.spec);
            (g, key)
        })
        .collect();
    let mut summary = SweepSummary::default();
    let todo: Vec<&(GridRun, String)> = mine
        .iter()
        .filter(|(_, k)| {
            let finished = done.contains(k);
            if finished {
                summary.skipped.push(k.clone());
            }
            !finished
        })
        .collect();
    obs.plan(mine.len(), summary.skipped.len());
    let todo_keys: Vec<String> = todo.iter().map(|(_, k)| k.clone()).collect();

    // Each run is claimed under the store's lock before it is trained, so that several sweeps on one
    // directory (by hand, or Slurm tasks without --shard) share the grid; the claim goes once the
    // run's record is in.
    let mut n = 0;
    while let Some(claim) = claim_next(&cfg.out, &todo_keys)? {
        let (g, key) = todo
            .iter()
            .map(|(g, k)| (g, k))
            .find(|(_, k)| **k == claim.key)
            .expect("claimed keys come from the list");
        n += 1;
        let tcfg = TrainConfig {
            model: g.spec.model.for_data(data.shape(), data.info.classes())?,
            optim: g.spec.optim,
            lr: g.spec.lr,
            recipe: cfg.recipe,
            batch: cfg.batch,
            steps,
            seed: cfg.seed,
            log_every: cfg.log_every,
            eval_each_epoch: true,
            out: Some(cfg.out.join("runs").join(key)),
        };
        let mut run_obs = obs.run_started(n, todo.len(), key);
        let t0 = Instant::now();
        let outcome = train(be, &data, &tcfg, run_obs.as_mut());
        drop(run_obs);
        // The run's model and data are dropped; free the GPU bind groups that still hold them.
        be.release_cached();
        let base = |status| RunRecord {
            key: key.clone(),
            sweep: cfg.signature(),
            tables: g.tables.clone(),
            status,
            model: g.spec.model.name(),
            optim: g.spec.optim.name().to_string(),
            lr: g.spec.lr,
            recipe: cfg.recipe,
            batch: cfg.batch,
            epochs: steps as f64 / spe as f64,
            steps,
            seed: cfg.seed,
            quick: cfg.quick,
            backend: be.kind().to_string(),
            device: be.device_name(),
            kernels: be.kernels().map(String::from),
            train_loss: None,
            val_loss: None,
            val_acc: None,
            test_loss: None,
            test_acc: None,
            seconds: t0.elapsed().as_secs_f64(),
            images_per_s: None,
            diverged_at: None,
            diverged_loss: None,
            epoch_metrics: Vec::new(),
            train_images: data.train.len(),
            val_images: data.val.len(),
            test_images: data.test.len(),
            data: cfg.data_label.clone(),
            shard: cfg.shard.to_string(),
            finished_unix: unix_now(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let record = match outcome {
            Ok(r) => from_result(base(RunStatus::Ok), r),
            Err(e) => match e.downcast_ref::<Diverged>() {
                Some(d) => {
                    obs.note(&format!("{key}: {d}"));
                    summary.diverged.push(key.clone());
                    RunRecord {
                        diverged_at: Some(d.step),
                        diverged_loss: Some(d.loss.to_string()),
                        ..base(RunStatus::Diverged)
                    }
                }
                None => return Err(e.context(format!("sweep run {key}"))),
            },
        };
        append_record(&results, &record)?;
        drop(claim);
        summary.executed.push(key.clone());
        obs.run_finished(&record);
    }
    summary.elsewhere = todo_keys
        .iter()
        .filter(|k| !summary.executed.contains(k))
        .cloned()
        .collect();
    obs.finish();

    if cfg.report {
        let records = read_records(&results, &mut |m| note_once(m, obs))?;
        let path = write_report(&cfg.out, &records, Some(&cfg.signature()), &mut |m| {
            obs.note(m)
        })?;
        summary.report = Some(path);
    }
    Ok(summary)
}

fn from_result(base: RunRecord, r: TrainResult) -> RunRecord {
    RunRecord {
        train_loss: Some(r.train_loss),
        val_loss: Some(r.val_loss),
        val_acc: Some(r.val_acc),
        test_loss: Some(r.test_loss),
        test_acc: Some(r.test_acc),
        seconds: r.seconds,
        images_per_s: Some(r.images_per_s),
        epoch_metrics: r.epoch_metrics,
        backend: r.backend,
        device: r.device,
        kernels: r.kernels,
        epochs: r.epochs,
        ..base
    }
}

/// The splits with validation and test cut to their first `limit` images.
fn limit_eval(data: &Splits, limit: Option<usize>) -> Splits {
    let cut = |s: &crate::io::data::ImageSet| match limit {
        Some(n) if n < s.len() => s.slice(0, n),
        _ => s.clone(),
    };
    Splits {
        train: data.train.clone(),
        val: cut(&data.val),
        test: cut(&data.test),
        info: data.info.clone(),
    }
}

/// A sweep on whichever backend [`crate::backend::select::run_on`] picks.
pub struct SweepJob<'a> {
    pub data: Splits,
    pub cfg: SweepConfig,
    pub observer: &'a mut dyn SweepObserver,
}

impl OnBackend for SweepJob<'_> {
    type Output = SweepSummary;
    fn run<B: Backend + 'static>(self, be: &B) -> Result<SweepSummary> {
        run_sweep(be, &self.data, &self.cfg, self.observer)
    }
}

/// Progress on a terminal: an overall bar (runs) above a per-run bar (steps); plain lines on stderr
/// otherwise (CI logs, Slurm output files). `quiet` shows only warnings.
pub struct SweepProgress {
    quiet: bool,
    label: String,
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    started: Instant,
}

impl SweepProgress {
    /// `label` prefixes plain lines (e.g. "shard 1/4").
    pub fn new(label: impl Into<String>, quiet: bool) -> Self {
        SweepProgress {
            quiet,
            label: label.into(),
            multi: None,
            overall: None,
            started: Instant::now(),
        }
    }

    fn line(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }
}

impl SweepObserver for SweepProgress {
    fn plan(&mut self, owned: usize, done: usize) {
        if self.quiet {
            return;
        }
        let msg = format!(
            "{}: {owned} runs, {done} already done, {} to train",
            self.label,
            owned - done
        );
        if std::io::stderr().is_terminal() && owned > done {
            let multi = MultiProgress::new();
            let overall = multi.add(
                ProgressBar::new(owned as u64).with_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30.green/white}] {pos}/{len} runs {msg} ({elapsed}<{eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                ),
            );
            overall.set_prefix("sweep");
            overall.set_position(done as u64);
            overall.reset_eta();
            overall.enable_steady_tick(Duration::from_millis(200));
            self.multi = Some(multi);
            self.overall = Some(overall);
        }
        self.line(&msg);
    }
    fn note(&mut self, msg: &str) {
        self.line(&format!("warning: {msg}"));
    }
    fn run_started(&mut self, index: usize, of: usize, key: &str) -> Box<dyn Observer> {
        if self.quiet {
            return Box::new(TrainProgress::new(key, true));
        }
        match &self.multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new(1).with_style(bar_style()));
                bar.enable_steady_tick(Duration::from_millis(200));
                if let Some(o) = &self.overall {
                    o.set_message(key.to_string());
                }
                Box::new(TrainProgress::with_bar(key, bar))
            }
            None => {
                eprintln!("{}: run {index}/{of}: {key}", self.label);
                Box::new(TrainProgress::new(key, false))
            }
        }
    }
    fn run_finished(&mut self, r: &RunRecord) {
        if let Some(o) = &self.overall {
            o.inc(1);
        }
        if self.quiet {
            return;
        }
        let what = match (r.status, r.val_acc, r.test_acc) {
            (RunStatus::Ok, Some(v), Some(t)) => format!(
                "val {:.2}%, test {:.2}%, {:.0} images/s",
                v * 100.0,
                t * 100.0,
                r.images_per_s.unwrap_or(0.0)
            ),
            _ => format!("diverged at step {}", r.diverged_at.unwrap_or(0)),
        };
        self.line(&format!(
            "{}: done {} in {:.1}s: {what}",
            self.label, r.key, r.seconds
        ));
    }
    fn finish(&mut self) {
        if let Some(o) = self.overall.take() {
            o.finish_and_clear();
        }
        if let Some(m) = self.multi.take() {
            let _ = m.clear();
        }
        if !self.quiet {
            eprintln!(
                "{}: finished in {:.1}s",
                self.label,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

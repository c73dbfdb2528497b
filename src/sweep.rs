//! The study's experiment grid (Tables I-IV of DESIGN.md), run headless, sharded and resumable.
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

use crate::backend::Backend;
use crate::data::Splits;
use crate::device::OnBackend;
use crate::error::InputError;
use crate::model::{Arch, ModelSpec};
use crate::optim::OptimKind;
use crate::progress::{bar_style, TrainProgress};
use crate::train::{train, Diverged, EpochMetrics, Observer, TrainConfig, TrainResult};
use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The results file in a sweep directory.
pub const RESULTS_FILE: &str = "results.jsonl";
/// The study's batch size (500 steps per epoch on 55,000 images).
pub const STUDY_BATCH: usize = 110;
/// `--quick`: optimizer steps per run.
pub const QUICK_STEPS: usize = 20;
/// `--quick`: images of the validation and of the test set evaluated (the first ones of each).
pub const QUICK_EVAL: usize = 500;
/// The study's tables, by number.
pub const TABLES: [u8; 4] = [1, 2, 3, 4];

/// One training run of the grid: which model, which optimizer, which learning rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunSpec {
    pub model: ModelSpec,
    pub optim: OptimKind,
    pub lr: f32,
}

impl RunSpec {
    /// `optim` at its default learning rate (MODELS.md).
    pub fn new(model: ModelSpec, optim: OptimKind) -> Self {
        RunSpec {
            model,
            optim,
            lr: optim.default_lr(),
        }
    }
    pub fn with_lr(model: ModelSpec, optim: OptimKind, lr: f32) -> Self {
        RunSpec { model, optim, lr }
    }
    /// `fc8-bn_adam_lr0.001`: the part of a run key that says what is trained.
    pub fn id(&self) -> String {
        format!("{}_{}_lr{}", self.model.name(), self.optim.name(), self.lr)
    }
}

/// A column of one of the study's tables: its header, the run without and with batch norm, and the
/// test accuracies (percent) the study reported for them.
#[derive(Clone, Debug)]
pub struct StudyColumn {
    pub header: String,
    pub runs: [RunSpec; 2],
    pub study: [Option<f64>; 2],
}

/// One of the study's Tables I-IV: rows "no batchnorm" and "batchnorm", one column per variant.
#[derive(Clone, Debug)]
pub struct StudyTable {
    pub number: u8,
    pub title: &'static str,
    /// What the columns vary ("optimizer", "convolution layers", "learning rate").
    pub varies: &'static str,
    pub columns: Vec<StudyColumn>,
}

impl StudyTable {
    /// The roman numeral the study used.
    pub fn roman(&self) -> &'static str {
        ["I", "II", "III", "IV"][(self.number - 1) as usize]
    }
}

fn spec(arch: Arch, batchnorm: bool) -> ModelSpec {
    ModelSpec { arch, batchnorm }
}

/// Tables I-IV as DESIGN.md states them (the study's test accuracies in percent).
pub fn study_tables() -> Vec<StudyTable> {
    let optims = [
        ("SGD", OptimKind::Sgd),
        ("RMSProp", OptimKind::RmsProp),
        ("Adam", OptimKind::Adam),
    ];
    let by_optim = |arch: Arch, study: [[f64; 2]; 3]| -> Vec<StudyColumn> {
        optims
            .iter()
            .zip(study)
            .map(|(&(header, o), s)| StudyColumn {
                header: header.to_string(),
                runs: [
                    RunSpec::new(spec(arch, false), o),
                    RunSpec::new(spec(arch, true), o),
                ],
                study: [Some(s[0]), Some(s[1])],
            })
            .collect()
    };
    let depth = [
        (3, [63.18, 83.57]),
        (5, [78.09, 86.28]),
        (7, [60.65, 80.69]),
    ]
    .into_iter()
    .map(|(l, s)| StudyColumn {
        header: l.to_string(),
        runs: [
            RunSpec::new(spec(Arch::Cnn(l), false), OptimKind::Sgd),
            RunSpec::new(spec(Arch::Cnn(l), true), OptimKind::Sgd),
        ],
        study: [Some(s[0]), Some(s[1])],
    })
    .collect();
    let lrs: [(f32, [Option<f64>; 2]); 6] = [
        (0.001, [Some(66.94), Some(81.25)]),
        (0.002, [Some(79.41), Some(88.98)]),
        (0.005, [Some(93.04), Some(94.79)]),
        (0.01, [Some(94.54), None]),
        (0.02, [Some(96.73), None]),
        (0.1, [Some(98.52), None]),
    ];
    let by_lr = lrs
        .into_iter()
        .map(|(lr, study)| StudyColumn {
            header: lr.to_string(),
            runs: [
                RunSpec::with_lr(spec(Arch::Cnn(7), false), OptimKind::Sgd, lr),
                RunSpec::with_lr(spec(Arch::Cnn(7), true), OptimKind::Sgd, lr),
            ],
            study,
        })
        .collect();
    vec![
        StudyTable {
            number: 1,
            title: "Fully connected network, 8 layers (FC-8), by optimizer",
            varies: "optimizer",
            columns: by_optim(Arch::Fc8, [[9.58, 17.60], [86.23, 97.31], [95.17, 97.21]]),
        },
        StudyTable {
            number: 2,
            title: "CNN with 7 convolution layers (CNN-7), by optimizer",
            varies: "optimizer",
            columns: by_optim(
                Arch::Cnn(7),
                [[60.65, 80.69], [98.85, 99.02], [98.98, 98.82]],
            ),
        },
        StudyTable {
            number: 3,
            title: "CNN with 3, 5 or 7 convolution layers, SGD (lr 0.01)",
            varies: "convolution layers",
            columns: depth,
        },
        StudyTable {
            number: 4,
            title: "CNN-7 with SGD, by learning rate",
            varies: "learning rate",
            columns: by_lr,
        },
    ]
}

/// A run of the grid and the study tables it appears in.
#[derive(Clone, Debug, PartialEq)]
pub struct GridRun {
    pub spec: RunSpec,
    /// Every study table this run is a cell of (whether or not that table was selected).
    pub tables: Vec<u8>,
}

/// The distinct runs of the selected tables, in table order (Table I first; within a table, column by
/// column, without batch norm before with). A run two tables share appears once, where it first occurs.
pub fn grid(tables: &[u8]) -> Vec<GridRun> {
    let all = study_tables();
    let mut runs: Vec<GridRun> = Vec::new();
    for t in all.iter().filter(|t| tables.contains(&t.number)) {
        for c in &t.columns {
            for r in c.runs {
                if !runs.iter().any(|g| g.spec.id() == r.id()) {
                    runs.push(GridRun {
                        spec: r,
                        tables: tables_of(&all, &r),
                    });
                }
            }
        }
    }
    runs
}

fn tables_of(all: &[StudyTable], r: &RunSpec) -> Vec<u8> {
    all.iter()
        .filter(|t| {
            t.columns
                .iter()
                .any(|c| c.runs.iter().any(|x| x.id() == r.id()))
        })
        .map(|t| t.number)
        .collect()
}

/// Parses `--tables 1,2,3,4` (numbers 1-4, or roman I-IV; duplicates ignored).
pub fn parse_tables(s: &str) -> Result<Vec<u8>, InputError> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        let n = match part.to_ascii_uppercase().as_str() {
            "1" | "I" => 1,
            "2" | "II" => 2,
            "3" | "III" => 3,
            "4" | "IV" => 4,
            _ => {
                return Err(InputError::value(format!(
                    "--tables {s}: unknown table '{part}' (the study has tables 1, 2, 3 and 4)"
                )))
            }
        };
        out.insert(n);
    }
    Ok(out.into_iter().collect())
}

/// `--shard I/N`: this process runs grid entries `I, I+N, I+2N, ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let bad = |why: &str| InputError::value(format!("--shard {s}: {why}"));
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected I/N, e.g. 0/4 (shard I of N, counting from 0)"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| bad("I must be a whole number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| bad("N must be a whole number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad(&format!(
                "I must be below N (shards are numbered 0 to {})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }
    /// Whether the grid entry at `position` is this shard's.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

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
        sig
    }

    /// The key of `run` in this sweep, e.g. `cnn7-bn_sgd_lr0.01_b110_e1_seed1`; also its directory name.
    pub fn key(&self, run: &RunSpec) -> String {
        format!("{}_{}", run.id(), self.signature())
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

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Trained to the end and evaluated.
    Ok,
    /// The loss stopped being a number; the run stopped there (a result of the study too).
    Diverged,
}

/// One line of results.jsonl: a finished run's configuration and everything it measured (all of
/// [`TrainResult`] except the per-step losses, which are in `runs/<key>/losses.csv`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub key: String,
    /// The settings shared by the whole sweep ([`SweepConfig::signature`]).
    pub sweep: String,
    /// The study tables this run is a cell of.
    pub tables: Vec<u8>,
    pub status: RunStatus,
    pub model: String,
    pub optim: String,
    pub lr: f32,
    pub batch: usize,
    pub epochs: f64,
    pub steps: usize,
    pub seed: u64,
    pub quick: bool,
    pub backend: String,
    pub device: String,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    /// Wall time of the whole run, evaluation included.
    pub seconds: f64,
    /// Training images per second (evaluation excluded).
    pub images_per_s: Option<f64>,
    /// For a diverged run: the step whose loss was not finite, and that loss (as text: NaN is no JSON).
    #[serde(default)]
    pub diverged_at: Option<usize>,
    #[serde(default)]
    pub diverged_loss: Option<String>,
    #[serde(default)]
    pub epoch_metrics: Vec<EpochMetrics>,
    pub train_images: usize,
    pub val_images: usize,
    pub test_images: usize,
    /// Where the data came from.
    #[serde(default)]
    pub data: String,
    /// The shard that ran it, e.g. "0/4".
    pub shard: String,
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix: u64,
    /// The wgtrain version that ran it.
    pub version: String,
}

impl RunRecord {
    /// The run this record is of, parsed back (None if a field is not one this version knows).
    pub fn spec(&self) -> Option<RunSpec> {
        Some(RunSpec {
            model: ModelSpec::parse(&self.model).ok()?,
            optim: OptimKind::parse(&self.optim).ok()?,
            lr: self.lr,
        })
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Holds an exclusive or shared `flock` on a file until dropped (a no-op off Unix).
struct FileLock<'a>(#[allow(dead_code)] &'a File);

impl<'a> FileLock<'a> {
    fn new(file: &'a File, exclusive: bool) -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let op = if exclusive {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            };
            loop {
                // SAFETY: flock on a file descriptor this `File` owns for the lock's whole lifetime.
                let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
                if rc == 0 {
                    break;
                }
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
        #[cfg(not(unix))]
        let _ = exclusive;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: as in `new`; unlocking a lock this process holds.
            unsafe {
                libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

/// Appends `record` to `path` as one JSON line: one `write_all` under an exclusive `flock`, then
/// flush and fsync. If the file ends in a half-written line (a crash mid-append), the new line starts
/// on a fresh one so it is never glued to the remains.
pub fn append_record(path: &Path, record: &RunRecord) -> Result<()> {
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("{}: cannot open for appending", path.display()))?;
    let _lock =
        FileLock::new(&file, true).with_context(|| format!("{}: cannot lock", path.display()))?;
    let len = file.metadata()?.len();
    if len > 0 && last_byte(&file, len)? != b'\n' {
        line.insert(0, '\n');
    }
    (&file)
        .write_all(line.as_bytes())
        .with_context(|| format!("{}: cannot append", path.display()))?;
    (&file).flush()?;
    file.sync_all()
        .with_context(|| format!("{}: cannot sync", path.display()))?;
    Ok(())
}

fn last_byte(file: &File, len: u64) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut b, len - 1)?;
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut b)?;
    }
    Ok(b[0])
}

/// Reads every well-formed record of a results file (none if the file does not exist). A line that is
/// not a complete record (a crash mid-write, a hand edit) is skipped and reported through `warn`.
pub fn read_records(path: &Path, warn: &mut dyn FnMut(&str)) -> Result<Vec<RunRecord>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(InputError::file(path, format!("cannot read: {e}")).into()),
    };
    let mut bytes = Vec::new();
    {
        let _lock = FileLock::new(&file, false)
            .with_context(|| format!("{}: cannot lock", path.display()))?;
        (&file)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read", path.display()))?;
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<RunRecord>(line) {
            Ok(r) => out.push(r),
            Err(e) => warn(&format!(
                "{} line {}: not a complete run record ({e}); skipped (that run counts as not done)",
                path.display(),
                i + 1
            )),
        }
    }
    Ok(out)
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
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("{}: cannot create the sweep directory", cfg.out.display()))?;
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

    let done: HashSet<String> = read_records(&results, &mut |m| obs.note(m))?
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

    for (n, (g, key)) in todo.iter().enumerate() {
        let tcfg = TrainConfig {
            model: g.spec.model,
            optim: g.spec.optim,
            lr: g.spec.lr,
            batch: cfg.batch,
            steps,
            seed: cfg.seed,
            log_every: cfg.log_every,
            eval_each_epoch: true,
            out: Some(cfg.out.join("runs").join(key)),
        };
        let mut run_obs = obs.run_started(n + 1, todo.len(), key);
        let t0 = Instant::now();
        let outcome = train(be, &data, &tcfg, run_obs.as_mut());
        drop(run_obs);
        let base = |status| RunRecord {
            key: key.clone(),
            sweep: cfg.signature(),
            tables: g.tables.clone(),
            status,
            model: g.spec.model.name(),
            optim: g.spec.optim.name().to_string(),
            lr: g.spec.lr,
            batch: cfg.batch,
            epochs: steps as f64 / spe as f64,
            steps,
            seed: cfg.seed,
            quick: cfg.quick,
            backend: be.kind().to_string(),
            device: be.device_name(),
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
        summary.executed.push(key.clone());
        obs.run_finished(&record);
    }
    obs.finish();

    if cfg.report {
        let records = read_records(&results, &mut |m| obs.note(m))?;
        let path =
            crate::report::write_report(&cfg.out, &records, Some(&cfg.signature()), &mut |m| {
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
        epochs: r.epochs,
        ..base
    }
}

/// The splits with validation and test cut to their first `limit` images.
fn limit_eval(data: &Splits, limit: Option<usize>) -> Splits {
    let cut = |s: &crate::data::ImageSet| match limit {
        Some(n) if n < s.len() => s.slice(0, n),
        _ => s.clone(),
    };
    Splits {
        train: data.train.clone(),
        val: cut(&data.val),
        test: cut(&data.test),
    }
}

/// A sweep on whichever backend [`crate::device::run_on`] picks.
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

//! `wgtrain bench`: training-step and matmul throughput of each backend, measured honestly.
//!
//! Every measurement is warm (pipelines compiled, bind groups and optimizer state created, thread pools
//! started) and every timed interval ends with [`Backend::sync`], so GPU work that was only queued is
//! never counted as done. A training step is the whole step the trainer runs: gather and normalise the
//! batch from a data set already resident on the device, forward, backward and the optimizer update.
//! Each figure is the median of several repeats, reported with the fastest and slowest repeat.

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, Gemm};
use crate::error::InputError;
use crate::io::data::{self, ImageSet};
use crate::model::{Model, ModelSpec, CLASSES, IMAGE_SIDE};
use crate::optim::{OptimKind, Optimizer};
use crate::train::{train_step, BatchBuffers};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Models benchmarked when none are named.
pub const DEFAULT_MODELS: &str = "fc8-bn,cnn7-bn";
/// Batch sizes benchmarked when none are named.
pub const DEFAULT_BATCHES: &str = "32,110,512,2048";
/// Matmul shapes (m x k x n) benchmarked when none are named: fc8's first layer at batch 110, then two
/// squares.
pub const DEFAULT_MATMULS: &str = "110x784x256,512x512x512,1024x1024x1024";
/// Default repeats of each measurement (the machine may be shared: the median of five resists one
/// disturbed repeat).
pub const DEFAULT_REPEATS: usize = 5;
/// Default timed images per repeat: the step count is scaled to the batch size from this.
pub const DEFAULT_IMAGES: usize = 512;
/// A repeat runs at least this long (estimated from the last warm-up step) unless `--steps` is given,
/// so that fast CPU configurations are not timed over a millisecond.
pub const MIN_REPEAT: Duration = Duration::from_millis(500);
/// Upper bound on the scaled step count.
const MAX_STEPS: usize = 2000;
/// Matmul calls per repeat are chosen to take about this long (at least one call).
const MATMUL_REPEAT: Duration = Duration::from_millis(300);
const MAX_MATMUL_CALLS: usize = 5000;
/// Batch of the probe step that starts every warm-up of a larger batch.
const PROBE_BATCH: usize = 32;
/// A full step estimated (from the probe) to take longer than this gets no full-batch warm-up.
const SLOW_STEP: Duration = Duration::from_secs(5);
/// Synthetic images used when no MNIST copy is found.
const SYNTHETIC_IMAGES: usize = 16_384;

/// A backend on the `--backend` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSel {
    Cpu,
    /// A GPU adapter: the best one, or the one whose name contains the filter.
    Gpu(Option<String>),
}

impl BackendSel {
    pub fn label(&self) -> String {
        match self {
            BackendSel::Cpu => "cpu".into(),
            BackendSel::Gpu(None) => "gpu".into(),
            BackendSel::Gpu(Some(f)) => format!("gpu:{f}"),
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub models: Vec<ModelSpec>,
    pub batches: Vec<usize>,
    /// Timed steps per repeat; `None`: `images / batch`, at least [`MIN_REPEAT`] long.
    pub steps: Option<usize>,
    /// Timed images per repeat when `steps` is `None`.
    pub images: usize,
    pub warmup: usize,
    pub repeats: usize,
    /// Matmul shapes `(m, k, n)`.
    pub matmuls: Vec<(usize, usize, usize)>,
    /// `None`: cpu and every GPU adapter wgpu sees.
    pub backends: Option<Vec<BackendSel>>,
    pub optim: OptimKind,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            models: parse_models(DEFAULT_MODELS).expect("valid default"),
            batches: parse_batches(DEFAULT_BATCHES).expect("valid default"),
            steps: None,
            images: DEFAULT_IMAGES,
            warmup: 1,
            repeats: DEFAULT_REPEATS,
            matmuls: parse_matmuls(DEFAULT_MATMULS).expect("valid default"),
            backends: None,
            optim: OptimKind::Adam,
            seed: 1,
        }
    }
}

impl BenchConfig {
    /// Checks the numbers a user can get wrong (the list parsers check the rest).
    pub fn validate(&self, data_len: usize) -> Result<(), InputError> {
        if self.repeats == 0 {
            return Err(InputError::value("--repeats must be at least 1"));
        }
        if self.steps == Some(0) {
            return Err(InputError::value("--steps must be at least 1"));
        }
        if self.images == 0 {
            return Err(InputError::value("--images must be at least 1"));
        }
        if let Some(&b) = self.batches.iter().find(|&&b| b > data_len) {
            return Err(InputError::value(format!(
                "--batch {b}: the data set has only {data_len} images"
            )));
        }
        Ok(())
    }
}

fn split_list(flag: &str, s: &str) -> Result<Vec<String>, InputError> {
    let items: Vec<String> = s
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if items.is_empty() {
        return Err(InputError::value(format!("{flag}: empty list")));
    }
    Ok(items)
}

/// `fc8-bn,cnn7-bn` -> specs.
pub fn parse_models(s: &str) -> Result<Vec<ModelSpec>, InputError> {
    split_list("--models", s)?
        .iter()
        .map(|m| ModelSpec::parse(m).map_err(|e| InputError::value(format!("--models: {e}"))))
        .collect()
}

/// `32,110` -> batch sizes, each at least 1.
pub fn parse_batches(s: &str) -> Result<Vec<usize>, InputError> {
    split_list("--batch", s)?
        .iter()
        .map(|b| match b.parse::<usize>() {
            Ok(0) => Err(InputError::value(
                "--batch: a batch size must be at least 1",
            )),
            Ok(v) => Ok(v),
            Err(_) => Err(InputError::value(format!(
                "--batch: '{b}' is not a batch size (expected e.g. 32,110,512)"
            ))),
        })
        .collect()
}

/// `110x784x256,512x512x512` -> shapes; `none` -> no matmul rows.
pub fn parse_matmuls(s: &str) -> Result<Vec<(usize, usize, usize)>, InputError> {
    if s.trim() == "none" {
        return Ok(Vec::new());
    }
    split_list("--matmul", s)?
        .iter()
        .map(|t| {
            let dims: Vec<Option<usize>> = t
                .split(['x', 'X'])
                .map(|d| d.trim().parse::<usize>().ok().filter(|&v| v > 0))
                .collect();
            match dims.as_slice() {
                [Some(m), Some(k), Some(n)] => Ok((*m, *k, *n)),
                _ => Err(InputError::value(format!(
                    "--matmul: '{t}' is not MxKxN with positive sizes (e.g. 512x512x512), nor 'none'"
                ))),
            }
        })
        .collect()
}

/// `cpu,gpu,gpu:nvidia` -> backends.
pub fn parse_backends(s: &str) -> Result<Vec<BackendSel>, InputError> {
    let mut out = Vec::new();
    for t in split_list("--backend", s)? {
        let sel = match t.to_lowercase().as_str() {
            "cpu" => BackendSel::Cpu,
            "gpu" => BackendSel::Gpu(None),
            other => match other.strip_prefix("gpu:") {
                Some(f) if !f.is_empty() => BackendSel::Gpu(Some(t[4..].to_string())),
                _ => {
                    return Err(InputError::value(format!(
                        "--backend: unknown backend '{t}' (expected cpu, gpu or gpu:ADAPTER-NAME)"
                    )))
                }
            },
        };
        if !out.contains(&sel) {
            out.push(sel);
        }
    }
    Ok(out)
}

/// The data set the steps gather from: the MNIST training file of `dir` (or of the default data
/// directory), else, when no directory was named and the default one has no MNIST, a synthetic set.
/// Returns the set and a one-word description of it.
pub fn load_data(dir: Option<&Path>) -> Result<(ImageSet, String), InputError> {
    let named = dir.is_some();
    let dir = dir.map_or_else(data::default_data_dir, Path::to_path_buf);
    let images = data::find_file(&dir, data::TRAIN_FILES.0);
    let labels = data::find_file(&dir, data::TRAIN_FILES.1);
    if !(named || images.exists() && labels.exists()) {
        let set = data::synthetic(SYNTHETIC_IMAGES, 1);
        let desc = format!("synthetic ({} images)", set.len());
        return Ok((set, desc));
    }
    let set = data::load_pair(&images, &labels, IMAGE_SIDE, CLASSES)?;
    let desc = format!("{} ({} images)", images.display(), set.len());
    Ok((set, desc))
}

/// Median, minimum and maximum of the repeats.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// The statistics of `v` (not empty); the median of an even count is the mean of the middle two.
    pub fn of(v: &[f64]) -> Stat {
        assert!(!v.is_empty(), "no samples");
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Stat {
            median,
            min: s[0],
            max: s[n - 1],
        }
    }
    fn map(&self, f: impl Fn(f64) -> f64) -> Stat {
        let (a, b) = (f(self.min), f(self.max));
        Stat {
            median: f(self.median),
            min: a.min(b),
            max: a.max(b),
        }
    }
}

/// One line of the bench: a training configuration or a matmul shape on one backend.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// "train" or "matmul".
    pub kind: &'static str,
    /// "cpu" or "gpu".
    pub backend: &'static str,
    /// The CPU model or the GPU adapter's name.
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optim: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Timed steps (or matmul calls) per repeat.
    pub steps: usize,
    /// Untimed steps (or calls) before the first repeat, and their batch size.
    pub warmup_steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_batch: Option<usize>,
    pub repeats: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<Stat>,
    /// Milliseconds per training step, or per matmul call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_per_step: Option<Stat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_per_call: Option<Stat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<Stat>,
    /// GPU rows: median throughput over the CPU's median on the same configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup_vs_cpu: Option<f64>,
    /// Why the measurement could not be made (then there are no figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Measurement {
    fn key(
        &self,
    ) -> (
        &'static str,
        Option<String>,
        Option<usize>,
        [Option<usize>; 3],
    ) {
        (
            self.kind,
            self.model.clone(),
            self.batch,
            [self.m, self.k, self.n],
        )
    }
    /// The median throughput: images/s or GFLOP/s.
    pub fn throughput(&self) -> f64 {
        self.images_per_s
            .or(self.gflops)
            .map_or(f64::NAN, |s| s.median)
    }
}

/// What a backend must offer the bench beyond [`Backend`]: a way to free its caches between
/// configurations.
pub trait BenchBackend: Backend + 'static {
    /// Frees whatever the backend caches for tensors that were dropped (GPU bind groups).
    fn release(&self) {}
}

impl BenchBackend for CpuBackend {}

#[cfg(feature = "gpu")]
impl BenchBackend for crate::backend::gpu::GpuBackend {
    fn release(&self) {
        self.release_cached();
    }
}

/// Seconds of `f`, including finishing the device work it queued.
fn timed<B: Backend>(be: &B, f: impl FnOnce()) -> f64 {
    be.sync();
    let t = Instant::now();
    f();
    be.sync();
    t.elapsed().as_secs_f64()
}

/// Timed steps per repeat: `--steps`, else enough for `images` and for [`MIN_REPEAT`] going by the
/// last warm-up step.
fn steps_for(cfg: &BenchConfig, batch: usize, warm_step_s: f64) -> usize {
    if let Some(s) = cfg.steps {
        return s;
    }
    let by_images = cfg.images.div_ceil(batch);
    let by_time = if warm_step_s > 0.0 {
        (MIN_REPEAT.as_secs_f64() / warm_step_s).ceil() as usize
    } else {
        MAX_STEPS
    };
    by_images.max(by_time).clamp(1, MAX_STEPS)
}

/// Training throughput of `spec` at `batch` on `be`, on the resident data set `ds` of `n` images.
pub fn bench_train<B: BenchBackend>(
    be: &B,
    cfg: &BenchConfig,
    spec: ModelSpec,
    batch: usize,
    ds: &B::Dataset,
    n: usize,
) -> Result<Measurement> {
    let mut model = Model::new(be, spec, batch, cfg.seed);
    let mut opt = Optimizer::new(cfg.optim, cfg.optim.default_lr());
    let mut bufs = BatchBuffers::new(be, batch, IMAGE_SIDE * IMAGE_SIDE);
    let batches = n / batch;
    let mut pos = 0usize;
    let mut step = |model: &mut Model<B>, opt: &mut Optimizer, bufs: &mut BatchBuffers<B>| {
        train_step(be, model, opt, ds, (pos % batches) * batch, bufs);
        pos += 1;
    };
    // Warm-up. A probe step at a small batch first compiles every pipeline and allocates the optimizer
    // state; when it shows that one full step would be slow (cnn7-bn at batch 2048 on a software
    // adapter), the full-batch warm-up is skipped: what it would add (bind groups for the new shapes,
    // first touch of the larger buffers) is negligible beside such a step.
    let mut warm_s = 0.0;
    let (mut warmup_steps, mut warmup_batch) = (cfg.warmup.max(1), batch);
    if batch > PROBE_BATCH {
        let probe_s = timed(be, || {
            be.gather_batch(ds, 0, PROBE_BATCH, &mut bufs.x, &mut bufs.y);
            model.forward(be, &bufs.x, PROBE_BATCH, true);
            model.backward(be, &bufs.x, &bufs.y, PROBE_BATCH);
            opt.step(be, &mut model);
        });
        warm_s = probe_s * batch as f64 / PROBE_BATCH as f64;
        if warm_s > SLOW_STEP.as_secs_f64() {
            (warmup_steps, warmup_batch) = (1, PROBE_BATCH);
        }
    }
    if warmup_batch == batch {
        for _ in 0..warmup_steps {
            warm_s = timed(be, || step(&mut model, &mut opt, &mut bufs));
        }
    }
    let steps = steps_for(cfg, batch, warm_s);
    let mut secs = Vec::with_capacity(cfg.repeats);
    for _ in 0..cfg.repeats {
        secs.push(timed(be, || {
            for _ in 0..steps {
                step(&mut model, &mut opt, &mut bufs);
            }
        }));
        be.health()?;
    }
    // The loss must still be a number: a bench of a broken step measures nothing.
    let loss = be.read(&model.head.loss)[0];
    anyhow::ensure!(
        loss.is_finite(),
        "{} batch {batch}: the loss became {loss}",
        spec.name()
    );
    drop((model, bufs));
    be.release();
    let ms = Stat::of(&secs).map(|s| s * 1e3 / steps as f64);
    Ok(Measurement {
        kind: "train",
        backend: be.kind(),
        device: be.device_name(),
        model: Some(spec.name()),
        batch: Some(batch),
        optim: Some(cfg.optim.name()),
        m: None,
        k: None,
        n: None,
        steps,
        warmup_steps,
        warmup_batch: Some(warmup_batch),
        repeats: cfg.repeats,
        images_per_s: Some(ms.map(|ms| batch as f64 * 1e3 / ms)),
        ms_per_step: Some(ms),
        ms_per_call: None,
        gflops: None,
        speedup_vs_cpu: None,
        error: None,
    })
}

/// Matmul throughput `c[m x n] = a[m x k] * b[k x n]` on `be`.
pub fn bench_matmul<B: BenchBackend>(
    be: &B,
    cfg: &BenchConfig,
    (m, k, n): (usize, usize, usize),
) -> Result<Measurement> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut rand =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let a = be.upload(&rand(m * k));
    let b = be.upload(&rand(k * n));
    let mut c = be.zeros(m * n);
    let call = |c: &mut B::Tensor| be.matmul(&Gemm::new(m, k, n), &a, &b, c);
    let mut warm_s = 0.0;
    for _ in 0..cfg.warmup.max(1) + 1 {
        warm_s = timed(be, || call(&mut c));
    }
    be.health()?;
    let calls = match cfg.steps {
        Some(s) => s,
        None if warm_s > 0.0 => {
            ((MATMUL_REPEAT.as_secs_f64() / warm_s).ceil() as usize).clamp(1, MAX_MATMUL_CALLS)
        }
        None => MAX_MATMUL_CALLS,
    };
    let mut secs = Vec::with_capacity(cfg.repeats);
    for _ in 0..cfg.repeats {
        secs.push(timed(be, || {
            for _ in 0..calls {
                call(&mut c);
            }
        }));
        be.health()?;
    }
    drop((a, b, c));
    be.release();
    let ms = Stat::of(&secs).map(|s| s * 1e3 / calls as f64);
    let flop = 2.0 * m as f64 * k as f64 * n as f64;
    Ok(Measurement {
        kind: "matmul",
        backend: be.kind(),
        device: be.device_name(),
        model: None,
        batch: None,
        optim: None,
        m: Some(m),
        k: Some(k),
        n: Some(n),
        steps: calls,
        warmup_steps: cfg.warmup.max(1) + 1,
        warmup_batch: None,
        repeats: cfg.repeats,
        images_per_s: None,
        ms_per_step: None,
        ms_per_call: Some(ms),
        gflops: Some(ms.map(|ms| flop / (ms * 1e-3) / 1e9)),
        speedup_vs_cpu: None,
        error: None,
    })
}

/// One measurement to make.
#[derive(Clone, Copy, Debug)]
enum Job {
    Matmul((usize, usize, usize)),
    Train(ModelSpec, usize),
}

/// A row for a measurement that could not be made (e.g. a tensor larger than the adapter allows).
fn failed_row<B: Backend>(be: &B, cfg: &BenchConfig, job: Job, err: &anyhow::Error) -> Measurement {
    let (model, batch, optim, mkn) = match job {
        Job::Matmul((m, k, n)) => (None, None, None, [Some(m), Some(k), Some(n)]),
        Job::Train(spec, b) => (
            Some(spec.name()),
            Some(b),
            Some(cfg.optim.name()),
            [None; 3],
        ),
    };
    Measurement {
        kind: if model.is_some() { "train" } else { "matmul" },
        backend: be.kind(),
        device: be.device_name(),
        model,
        batch,
        optim,
        m: mkn[0],
        k: mkn[1],
        n: mkn[2],
        steps: 0,
        warmup_steps: 0,
        warmup_batch: None,
        repeats: 0,
        images_per_s: None,
        ms_per_step: None,
        ms_per_call: None,
        gflops: None,
        speedup_vs_cpu: None,
        error: Some(format!("{err:#}").replace('\n', " ")),
    }
}

/// Every matmul shape, then every model at every batch size, on the backend `open` makes; `on_row`
/// sees each measurement as it is made. A measurement that fails becomes a row with its error, and a
/// device left unsound by it (a GPU validation error, out of memory, a lost device) is replaced by a
/// fresh one from `open` for the rest.
pub fn bench_backend<B: BenchBackend>(
    open: &mut dyn FnMut() -> Result<B>,
    cfg: &BenchConfig,
    data: &ImageSet,
    on_row: &mut dyn FnMut(&Measurement),
) -> Result<Vec<Measurement>> {
    let mut jobs: Vec<Job> = cfg.matmuls.iter().map(|&s| Job::Matmul(s)).collect();
    for &spec in &cfg.models {
        jobs.extend(cfg.batches.iter().map(|&b| Job::Train(spec, b)));
    }
    let mut be = open()?;
    let mut ds: Option<B::Dataset> = None;
    let mut rows = Vec::new();
    for job in jobs {
        let r = match job {
            Job::Matmul(shape) => bench_matmul(&be, cfg, shape),
            Job::Train(spec, batch) => {
                let ds = ds.get_or_insert_with(|| {
                    let mut ds = be.upload_dataset(&data.images, &data.labels, data.pixels());
                    be.set_order(&mut ds, &data::epoch_order(data.len(), cfg.seed, 0));
                    ds
                });
                bench_train(&be, cfg, spec, batch, ds, data.len())
            }
        };
        let row = match r {
            Ok(row) => row,
            Err(e) => {
                let row = failed_row(&be, cfg, job, &e);
                if be.health().is_err() {
                    ds = None;
                    be = open()?;
                }
                row
            }
        };
        on_row(&row);
        rows.push(row);
    }
    drop(ds);
    be.release();
    Ok(rows)
}

/// The backends to measure: the named ones, or the CPU and every GPU adapter wgpu sees. A software
/// adapter such as Mesa's lavapipe counts: the bench measures whatever is there (and says what it is).
pub fn resolve_backends(cfg: &BenchConfig, notice: &mut dyn FnMut(&str)) -> Vec<BackendSel> {
    if let Some(b) = &cfg.backends {
        return b.clone();
    }
    #[cfg_attr(not(feature = "gpu"), allow(unused_mut))]
    let mut out = vec![BackendSel::Cpu];
    #[cfg(feature = "gpu")]
    {
        let adapters = crate::backend::gpu::list_adapters();
        if adapters.is_empty() {
            notice("no GPU adapter found; measuring the CPU backend only");
        }
        for a in adapters {
            let sel = BackendSel::Gpu(Some(a.name));
            if !out.contains(&sel) {
                out.push(sel);
            }
        }
    }
    #[cfg(not(feature = "gpu"))]
    notice("this build has no GPU backend (feature `gpu` is off); measuring the CPU backend only");
    out
}

/// Runs the whole bench: every backend of `cfg` (see [`resolve_backends`]), each measured in turn, then
/// the GPU/CPU speed-ups filled in. `notice` gets one-line progress and notes.
pub fn run(
    cfg: &BenchConfig,
    data: &ImageSet,
    notice: &mut dyn FnMut(&str),
) -> Result<Vec<Measurement>> {
    cfg.validate(data.len())?;
    let explicit = cfg.backends.is_some();
    let mut rows = Vec::new();
    for sel in resolve_backends(cfg, notice) {
        match &sel {
            BackendSel::Cpu => {
                let mut on_row = |r: &Measurement| notice(&progress_line(r));
                let mut open = || Ok(CpuBackend::new());
                rows.extend(bench_backend(&mut open, cfg, data, &mut on_row)?);
            }
            #[cfg(feature = "gpu")]
            BackendSel::Gpu(filter) => {
                use crate::backend::gpu::GpuBackend;
                match GpuBackend::new(filter.as_deref(), true) {
                    Ok(gpu) => {
                        let info = gpu.adapter_info();
                        notice(&format!(
                            "gpu: {} ({:?} {:?}, matmul kernel {:?})",
                            info.name, info.backend, info.device_type, gpu.matmul_kernel
                        ));
                        let mut first = Some(gpu);
                        let mut open = || match first.take() {
                            Some(g) => Ok(g),
                            None => GpuBackend::new(filter.as_deref(), true),
                        };
                        let mut on_row = |r: &Measurement| notice(&progress_line(r));
                        rows.extend(bench_backend(&mut open, cfg, data, &mut on_row)?);
                    }
                    Err(e) if !explicit => notice(&format!("{e:#}; skipping {}", sel.label())),
                    Err(e) => return Err(e),
                }
            }
            #[cfg(not(feature = "gpu"))]
            BackendSel::Gpu(_) => {
                let _ = explicit;
                return Err(InputError::value(
                    "--backend gpu: this build of wgtrain has no GPU backend (feature `gpu` is off)",
                )
                .into());
            }
        }
    }
    fill_speedups(&mut rows);
    Ok(rows)
}

/// Sets `speedup_vs_cpu` on every non-CPU row that has a CPU twin (same model and batch, or same shape).
pub fn fill_speedups(rows: &mut [Measurement]) {
    let cpu: Vec<(_, f64)> = rows
        .iter()
        .filter(|r| r.backend == "cpu" && r.error.is_none())
        .map(|r| (r.key(), r.throughput()))
        .collect();
    for r in rows
        .iter_mut()
        .filter(|r| r.backend != "cpu" && r.error.is_none())
    {
        if let Some((_, c)) = cpu.iter().find(|(k, _)| *k == r.key()) {
            r.speedup_vs_cpu = Some(r.throughput() / c);
        }
    }
}

/// A number with about four significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// The "steps x repeats" cell.
fn counts(r: &Measurement) -> String {
    if r.error.is_some() {
        "—".to_string()
    } else {
        format!("{}x{}", r.steps, r.repeats)
    }
}

/// A statistic's cell: "median (min–max)", or "failed" for a row with an error.
fn cell(s: Option<Stat>) -> String {
    s.map_or_else(|| "failed (see below)".to_string(), |s| stat(&s))
}

fn stat(s: &Stat) -> String {
    format!("{} ({}–{})", num(s.median), num(s.min), num(s.max))
}

fn what(r: &Measurement) -> String {
    match (&r.model, r.batch) {
        (Some(m), Some(b)) => format!("{} {m} batch {b}", r.backend),
        _ => format!(
            "{} matmul {}x{}x{}",
            r.backend,
            r.m.unwrap_or(0),
            r.k.unwrap_or(0),
            r.n.unwrap_or(0)
        ),
    }
}

fn progress_line(r: &Measurement) -> String {
    if let Some(e) = &r.error {
        return format!("{}: FAILED: {e}", what(r));
    }
    match (r.kind, &r.model) {
        ("train", Some(m)) => format!(
            "{} {m} batch {}: {} images/s, {} ms/step ({} steps x {})",
            r.backend,
            r.batch.unwrap_or(0),
            r.images_per_s.map_or(String::new(), |s| stat(&s)),
            r.ms_per_step.map_or(String::new(), |s| stat(&s)),
            r.steps,
            r.repeats
        ),
        _ => format!(
            "{} matmul {}x{}x{}: {} GFLOP/s ({} calls x {})",
            r.backend,
            r.m.unwrap_or(0),
            r.k.unwrap_or(0),
            r.n.unwrap_or(0),
            r.gflops.map_or(String::new(), |s| stat(&s)),
            r.steps,
            r.repeats
        ),
    }
}

fn speedup(r: &Measurement) -> String {
    r.speedup_vs_cpu
        .map_or_else(String::new, |s| format!("{}x", num(s)))
}

/// The measurements as two markdown tables (training steps, then matmul), medians with (min–max), and
/// a legend naming each device.
pub fn format_tables(rows: &[Measurement]) -> String {
    let mut out = String::new();
    let mut devices: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !devices.contains(&(r.backend, r.device.as_str())) {
            devices.push((r.backend, r.device.as_str()));
        }
    }
    for (b, d) in &devices {
        out += &format!("{b}: {d}\n");
    }
    // Training rows grouped by model and batch, so each GPU row sits under its CPU twin.
    let first = |f: &dyn Fn(&Measurement) -> String, r: &Measurement| {
        rows.iter().position(|x| f(x) == f(r)).unwrap_or(0)
    };
    let mut sorted: Vec<&Measurement> = rows.iter().filter(|r| r.kind == "train").collect();
    sorted.sort_by_key(|r| {
        (
            first(&|x| x.model.clone().unwrap_or_default(), r),
            r.batch,
            first(&|x| format!("{}/{}", x.backend, x.device), r),
        )
    });
    let train: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|r| {
            vec![
                r.model.clone().unwrap_or_default(),
                r.batch.map_or(String::new(), |b| b.to_string()),
                r.backend.to_string(),
                cell(r.images_per_s),
                cell(r.ms_per_step),
                counts(r),
                speedup(r),
            ]
        })
        .collect();
    if !train.is_empty() {
        out += "\n";
        out += &crate::io::markdown::table(
            &[
                "model",
                "batch",
                "backend",
                "images/s median (min–max)",
                "ms/step median (min–max)",
                "steps x repeats",
                "gpu/cpu",
            ],
            &train,
        );
    }
    let mm: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.kind == "matmul")
        .map(|r| {
            vec![
                format!(
                    "{}x{}x{}",
                    r.m.unwrap_or(0),
                    r.k.unwrap_or(0),
                    r.n.unwrap_or(0)
                ),
                r.backend.to_string(),
                cell(r.gflops),
                cell(r.ms_per_call),
                counts(r),
                speedup(r),
            ]
        })
        .collect();
    if !mm.is_empty() {
        out += "\n";
        out += &crate::io::markdown::table(
            &[
                "matmul m x k x n",
                "backend",
                "GFLOP/s median (min–max)",
                "ms/call median (min–max)",
                "calls x repeats",
                "gpu/cpu",
            ],
            &mm,
        );
    }
    let failed: Vec<&Measurement> = rows.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        out += "\n";
        for r in failed {
            out += &format!(
                "failed: {}: {}\n",
                what(r),
                r.error.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// Line colours of the figure (distinct on white).
const COLORS: [plotters::style::RGBColor; 6] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(148, 103, 189),
    plotters::style::RGBColor(140, 86, 75),
];

/// Draws images/s against batch size (both axes logarithmic), one line per backend and model, as PNG.
pub fn plot(rows: &[Measurement], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: cannot draw: {e}", path.display());
    let train: Vec<&Measurement> = rows
        .iter()
        .filter(|r| r.kind == "train" && r.error.is_none())
        .collect();
    if train.is_empty() {
        return Err(InputError::value("--plot: no training measurements to draw").into());
    }
    crate::io::font::register_font();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
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
    let (xmin, xmax) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = pts()
        .filter(|p| p.1 > 0.0)
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    anyhow::ensure!(ymin <= ymax, "--plot: no positive throughput to draw");
    let root = BitMapBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("training throughput by batch size", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (xmin / 1.3..xmax * 1.3).log_scale(),
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

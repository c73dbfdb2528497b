//! Timing one configuration: a warm training step or matmul, repeated, every interval ending with
//! [`Backend::sync`]; the figures are the median, fastest and slowest repeat.

use super::BenchConfig;
use crate::backend::{Backend, Gemm};
use crate::io::data::{self, ImageSet};
use crate::model::{Model, ModelSpec};
use crate::optim::Optimizer;
use crate::train::{train_step, BatchBuffers};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Duration;
use web_time::Instant;

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
    /// The GPU kernel set (`--kernels`: "tiled" or "emulated"); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<&'static str>,
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
    /// GPU training rows: CPU time of the recording (calling) thread per step, in microseconds: what
    /// the host spends recording, encoding and submitting a step's dispatches (the final submit and
    /// wait included), measurable on a software adapter too, where the device's work runs on other
    /// threads (`CLOCK_THREAD_CPUTIME_ID`; waits for the device sleep).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_us_per_step: Option<Stat>,
    /// GPU training rows: compute dispatches recorded per step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches_per_step: Option<f64>,
    /// GPU rows: median throughput over the CPU's median on the same configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup_vs_cpu: Option<f64>,
    /// Why the measurement could not be made (then there are no figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Measurement {
    pub(super) fn key(
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

/// The calling thread's CPU time so far, in seconds (0 where it cannot be read).
pub fn thread_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given and nothing else.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
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
pub fn bench_train<B: Backend + 'static>(
    be: &B,
    cfg: &BenchConfig,
    spec: ModelSpec,
    batch: usize,
    ds: &B::Dataset,
    n: usize,
) -> Result<Measurement> {
    let mut model = Model::new(be, spec.clone(), batch, cfg.seed);
    let mut opt = Optimizer::new(cfg.optim, cfg.optim.default_lr());
    let mut bufs = BatchBuffers::new(be, batch, spec.input().len());
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
    let mut host = Vec::with_capacity(cfg.repeats);
    let dispatches0 = be.dispatch_count();
    for _ in 0..cfg.repeats {
        // The host's CPU over the steps and the final submit and wait (`timed` syncs before, with
        // nothing pending since the last repeat's or warm-up's sync, and after): steps share submits,
        // so the submitting is part of what a step costs the host.
        let t0 = thread_cpu_seconds();
        secs.push(timed(be, || {
            for _ in 0..steps {
                step(&mut model, &mut opt, &mut bufs);
            }
        }));
        host.push(thread_cpu_seconds() - t0);
        be.health()?;
    }
    // Only a GPU counts dispatches; on the CPU the "host" does the compute itself.
    let dispatches_per_step = be
        .dispatch_count()
        .zip(dispatches0)
        .map(|(d1, d0)| (d1 - d0) as f64 / (steps * cfg.repeats) as f64);
    let host_us_per_step =
        dispatches_per_step.map(|_| Stat::of(&host).map(|v| v * 1e6 / steps as f64));
    // The loss must still be a number: a bench of a broken step measures nothing.
    let loss = be.read(&model.head.loss)[0];
    anyhow::ensure!(
        loss.is_finite(),
        "{} batch {batch}: the loss became {loss}",
        spec.name()
    );
    drop((model, bufs));
    be.release_cached();
    let ms = Stat::of(&secs).map(|s| s * 1e3 / steps as f64);
    Ok(Measurement {
        kind: "train",
        backend: be.kind(),
        device: be.device_name(),
        kernels: be.kernels(),
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
        host_us_per_step,
        dispatches_per_step,
        speedup_vs_cpu: None,
        error: None,
    })
}

/// Matmul throughput `c[m x n] = a[m x k] * b[k x n]` on `be`.
pub fn bench_matmul<B: Backend + 'static>(
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
    be.release_cached();
    let ms = Stat::of(&secs).map(|s| s * 1e3 / calls as f64);
    let flop = 2.0 * m as f64 * k as f64 * n as f64;
    Ok(Measurement {
        kind: "matmul",
        backend: be.kind(),
        device: be.device_name(),
        kernels: be.kernels(),
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
        host_us_per_step: None,
        dispatches_per_step: None,
        error: None,
    })
}

/// One measurement to make.
#[derive(Clone, Debug)]
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
        kernels: be.kernels(),
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
        host_us_per_step: None,
        dispatches_per_step: None,
        error: Some(format!("{err:#}").replace('\n', " ")),
    }
}

/// Every matmul shape, then every model at every batch size, on the backend `open` makes; `on_row`
/// sees each measurement as it is made. A measurement that fails becomes a row with its error, and a
/// device left unsound by it (a GPU validation error, out of memory, a lost device) is replaced by a
/// fresh one from `open` for the rest.
pub fn bench_backend<B: Backend + 'static>(
    open: &mut dyn FnMut() -> Result<B>,
    cfg: &BenchConfig,
    data: &ImageSet,
    on_row: &mut dyn FnMut(&Measurement),
) -> Result<Vec<Measurement>> {
    let mut jobs: Vec<Job> = cfg.matmuls.iter().map(|&s| Job::Matmul(s)).collect();
    for spec in &cfg.models {
        jobs.extend(cfg.batches.iter().map(|&b| Job::Train(spec.clone(), b)));
    }
    let mut be = open()?;
    let mut ds: Option<B::Dataset> = None;
    let mut rows = Vec::new();
    for job in jobs {
        let r = match job.clone() {
            Job::Matmul(shape) => bench_matmul(&be, cfg, shape),
            Job::Train(spec, batch) => {
                let ds = ds.get_or_insert_with(|| {
                    let mut ds =
                        be.upload_dataset(&data.images, &data.labels, data.pixels(), &data.norm());
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
    be.release_cached();
    Ok(rows)
}

//! `wgtrain bench`: training-step and matmul throughput of each backend, measured honestly.
//!
//! Every measurement is warm (pipelines compiled, bind groups and optimizer state created, thread pools
//! started) and every timed interval ends with [`Backend::sync`], so GPU work that was only queued is
//! never counted as done. A training step is the whole step the trainer runs: gather and normalise the
//! batch from a data set already resident on the device, forward, backward and the optimizer update.
//! Each figure is the median of several repeats, reported with the fastest and slowest repeat.

mod measure;
mod plot;
mod tables;

pub use measure::{
    bench_backend, bench_matmul, bench_train, thread_cpu_seconds, Measurement, Stat, MIN_REPEAT,
};
pub use plot::plot;
pub use tables::format_tables;

use crate::backend::cpu::CpuBackend;
use crate::backend::KernelChoice;
use crate::error::InputError;
use crate::io::data::{self, ImageSet};
use crate::model::ModelSpec;
use crate::optim::OptimKind;
use anyhow::Result;
use std::path::Path;
use tables::progress_line;

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
    /// The kernel set of every GPU backend (`--kernels`).
    pub kernels: KernelChoice,
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
            kernels: KernelChoice::Auto,
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
        if self.models.is_empty() && self.matmuls.is_empty() {
            return Err(InputError::value(
                "--models none and --matmul none: nothing to measure",
            ));
        }
        check_kernels(self.backends.as_deref(), self.kernels)?;
        if let Some(&b) = self.batches.iter().find(|&&b| b > data_len) {
            return Err(InputError::value(format!(
                "--batch {b}: the data set has only {data_len} images"
            )));
        }
        if let Some(&b) = self.batches.iter().max() {
            for m in &self.models {
                m.check_batch_memory("--batch", b)?;
            }
        }
        for &(m, k, n) in &self.matmuls {
            let floats = m as u128 * k as u128 + k as u128 * n as u128 + m as u128 * n as u128;
            crate::error::check_memory(&format!("--matmul {m}x{k}x{n}"), 4 * floats)?;
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

/// `fc8-bn,cnn7-bn` -> specs, for MNIST's images.
pub fn parse_models(s: &str) -> Result<Vec<ModelSpec>, InputError> {
    parse_models_for(s, &data::synthetic(1, 1))
}

/// `fc8-bn,models/x.toml` -> specs for the images and classes of `data`.
pub fn parse_models_for(s: &str, data: &ImageSet) -> Result<Vec<ModelSpec>, InputError> {
    if s.trim() == "none" {
        return Ok(Vec::new());
    }
    let (input, classes) = (data.shape(), data.classes());
    split_list("--models", s)?
        .iter()
        .map(|m| {
            ModelSpec::parse_for(m, input, classes)
                .map_err(|e| InputError::value(format!("--models: {e}")))
        })
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

/// `--kernels` names a GPU kernel set: an input error when `backends` (`None`: the default list,
/// which takes every GPU) has no GPU on it.
pub fn check_kernels(
    backends: Option<&[BackendSel]>,
    kernels: KernelChoice,
) -> Result<(), InputError> {
    let no_gpu = backends.is_some_and(|b| b.iter().all(|s| *s == BackendSel::Cpu));
    if no_gpu && kernels != KernelChoice::Auto {
        return Err(InputError::value(format!(
            "--kernels {}: the CPU backend runs no GPU kernels (add gpu to --backend)",
            kernels.name()
        )));
    }
    Ok(())
}

/// The data set the steps gather from: the training set of `dir` (any format `train --data` reads),
/// or of the default data directory, else, when no directory was named and the default one has no
/// MNIST, a synthetic set. Returns the set and a one-line description of it.
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
    // Through train's loader: a directory holding raw and .gz files that differ is refused.
    let all = data::load(&dir, 0, &data::DataOptions::default())?;
    let desc = format!(
        "{} ({}, {} training images of {})",
        dir.display(),
        all.info.format,
        all.train.len(),
        all.shape()
    );
    Ok((all.train, desc))
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
    // Every model for these images and classes (a no-op for the MNIST-shaped sets most callers pass).
    let mut bound = cfg.clone();
    for m in bound.models.iter_mut() {
        *m = m.for_data(data.shape(), data.classes())?;
    }
    let cfg = &bound;
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
                match GpuBackend::open(filter.as_deref(), true, cfg.kernels) {
                    Ok(gpu) => {
                        let info = gpu.adapter_info();
                        notice(&format!(
                            "gpu: {} ({:?} {:?}, {} kernels)",
                            info.name,
                            info.backend,
                            info.device_type,
                            gpu.style.name()
                        ));
                        let mut first = Some(gpu);
                        let mut open = || match first.take() {
                            Some(g) => Ok(g),
                            None => GpuBackend::open(filter.as_deref(), true, cfg.kernels),
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

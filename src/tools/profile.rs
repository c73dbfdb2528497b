//! `wgtrain profile`: where a training step's time goes, op by op, on any backend.
//!
//! [`Profiled`] wraps a backend and implements [`Backend`] itself, so the unchanged model, optimizer and
//! training step run on it. With profiling on, every op is timed alone: the device is synced before and
//! after it, so queued GPU work is charged to the op that queued it (on a GPU this serialises the step
//! and adds a wait per op; the report gives the unsynced step time beside the sum for that reason). On a
//! GPU the dispatches each op records are counted too. Each op's work (multiply-adds, or the least
//! memory traffic it needs) turns its time into GFLOP/s or GB/s.

use super::bench::BackendSel;
use crate::backend::cpu::CpuBackend;
use crate::backend::KernelChoice;
use crate::backend::{
    conv_backward_unfused, conv_forward_unfused, Act, Backend, BnBackward, BnEval, BnSpec, BnTrain,
    ConvBackward, ConvForward, ConvGeom, Gemm, Mat, OptimRule, OptimStep, PoolGeom, PoolKind,
    Trans,
};
use crate::error::InputError;
use crate::io::data::ImageSet;
use crate::io::markdown;
use crate::model::{Model, ModelSpec};
use crate::optim::{OptimKind, Optimizer};
use crate::train::{train_step, BatchBuffers};
use anyhow::Result;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use web_time::Instant;

/// What an op does, for its rate: floating-point operations or bytes moved (at least).
#[derive(Clone, Copy, Debug)]
enum Work {
    Flops(f64),
    Bytes(f64),
}

const F32: f64 = 4.0;

/// Accumulated figures of one op label.
#[derive(Clone, Debug, Default)]
struct Acc {
    calls: u64,
    seconds: f64,
    dispatches: u64,
    flops: f64,
    bytes: f64,
}

/// How `wgtrain profile` times each op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Timing {
    /// Device timestamps around each op where the backend has them (a GPU with timestamp queries),
    /// else syncs.
    Auto,
    /// Each op alone: the device synced before and after it, timed on the host.
    Sync,
}

/// An op timed with device timestamps: its label, work, dispatches and its two marks.
struct Pending {
    label: String,
    work: Work,
    dispatches: u64,
    marks: (Option<usize>, Option<usize>),
}

/// A backend whose ops are timed one by one while profiling is on.
pub struct Profiled<B: Backend> {
    pub inner: B,
    on: Cell<bool>,
    /// Timing with device timestamps (no syncs) rather than host clocks between syncs.
    timestamps: Cell<bool>,
    pending: RefCell<Vec<Pending>>,
    acc: RefCell<BTreeMap<String, Acc>>,
}

impl<B: Backend> Profiled<B> {
    pub fn new(inner: B) -> Self {
        Profiled {
            inner,
            on: Cell::new(false),
            timestamps: Cell::new(false),
            pending: RefCell::new(Vec::new()),
            acc: RefCell::new(BTreeMap::new()),
        }
    }

    /// Starts timing ops: with device timestamps if `timing` allows and the backend has them, else
    /// between syncs. Returns whether timestamps are used.
    pub fn start_profiling(&self, timing: Timing) -> bool {
        let timestamps = timing == Timing::Auto && self.inner.timer_start();
        self.timestamps.set(timestamps);
        self.on.set(true);
        timestamps
    }

    /// Stops timing; with timestamps, waits for the device and charges each op its interval. What was
    /// recorded stays.
    pub fn stop_profiling(&self) -> Result<()> {
        self.on.set(false);
        if !self.timestamps.replace(false) {
            return Ok(());
        }
        let times = self.inner.timer_finish()?;
        for p in self.pending.take() {
            let (Some(t0), Some(t1)) = (p.marks.0.map(|i| times[i]), p.marks.1.map(|i| times[i]))
            else {
                anyhow::bail!(
                    "more ops than the profiler's timestamps can hold: use fewer --steps"
                );
            };
            self.charge(p.label, p.work, p.dispatches, (t1 - t0).max(0.0));
        }
        Ok(())
    }

    fn charge(&self, label: String, work: Work, dispatches: u64, seconds: f64) {
        let mut acc = self.acc.borrow_mut();
        let a = acc.entry(label).or_default();
        a.calls += 1;
        a.seconds += seconds;
        a.dispatches += dispatches;
        match work {
            Work::Flops(v) => a.flops += v,
            Work::Bytes(v) => a.bytes += v,
        }
    }

    /// Runs `f` (one op); with profiling on, charged to `label`: between two device timestamps, or
    /// alone between two syncs.
    fn op<R>(&self, label: impl FnOnce() -> String, work: Work, f: impl FnOnce() -> R) -> R {
        if !self.on.get() {
            return f();
        }
        let d0 = self.inner.dispatch_count().unwrap_or(0);
        if self.timestamps.get() {
            let m0 = self.inner.timer_mark(false);
            let r = f();
            let m1 = self.inner.timer_mark(true);
            self.pending.borrow_mut().push(Pending {
                label: label(),
                work,
                dispatches: self.inner.dispatch_count().unwrap_or(0) - d0,
                marks: (m0, m1),
            });
            return r;
        }
        self.inner.sync();
        let t0 = Instant::now();
        let r = f();
        self.inner.sync();
        let seconds = t0.elapsed().as_secs_f64();
        let d = self.inner.dispatch_count().unwrap_or(0) - d0;
        self.charge(label(), work, d, seconds);
        r
    }

    /// The rows recorded so far, per step of `steps`, slowest first.
    fn rows(&self, steps: usize) -> Vec<OpRow> {
        let acc = self.acc.borrow();
        let total: f64 = acc.values().map(|a| a.seconds).sum();
        let n = steps.max(1) as f64;
        let mut rows: Vec<OpRow> = acc
            .iter()
            .map(|(op, a)| OpRow {
                op: op.clone(),
                calls_per_step: a.calls as f64 / n,
                dispatches_per_step: self.inner.dispatch_count().map(|_| a.dispatches as f64 / n),
                ms_per_step: a.seconds * 1e3 / n,
                share: if total > 0.0 { a.seconds / total } else { 0.0 },
                gflops: (a.flops > 0.0).then(|| a.flops / a.seconds.max(1e-12) / 1e9),
                gbytes_per_s: (a.bytes > 0.0).then(|| a.bytes / a.seconds.max(1e-12) / 1e9),
            })
            .collect();
        rows.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
        rows
    }
}

fn matmul_label(g: &Gemm) -> String {
    let form = match (g.ta, g.tb) {
        (Trans::N, Trans::T) => "NT: x W^T (forward)",
        (Trans::T, Trans::N) => "TN: dy^T x (weight grad)",
        (Trans::N, Trans::N) => "NN: dy W (input grad)",
        (Trans::T, Trans::T) => "TT",
    };
    format!("matmul {form}")
}

impl<B: Backend> Backend for Profiled<B> {
    type Tensor = B::Tensor;
    type Dataset = B::Dataset;

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn device_name(&self) -> String {
        self.inner.device_name()
    }
    fn kernels(&self) -> Option<&'static str> {
        self.inner.kernels()
    }
    fn zeros(&self, len: usize) -> B::Tensor {
        self.inner.zeros(len)
    }
    fn upload(&self, data: &[f32]) -> B::Tensor {
        self.inner.upload(data)
    }
    fn write(&self, t: &mut B::Tensor, data: &[f32]) {
        self.inner.write(t, data)
    }
    fn read_async(&self, t: &B::Tensor) -> impl std::future::Future<Output = Vec<f32>> {
        self.inner.read_async(t)
    }
    fn len(&self, t: &B::Tensor) -> usize {
        self.inner.len(t)
    }
    fn fill(&self, t: &mut B::Tensor, value: f32) {
        let bytes = self.inner.len(t) as f64 * F32;
        self.op(
            || "fill".into(),
            Work::Bytes(bytes),
            || self.inner.fill(t, value),
        )
    }
    fn copy(&self, src: &B::Tensor, so: usize, dst: &mut B::Tensor, d: usize, len: usize) {
        self.op(
            || "copy".into(),
            Work::Bytes(2.0 * len as f64 * F32),
            || self.inner.copy(src, so, dst, d, len),
        )
    }
    fn sync(&self) {
        self.inner.sync()
    }
    fn health(&self) -> Result<()> {
        self.inner.health()
    }
    fn dispatch_count(&self) -> Option<u64> {
        self.inner.dispatch_count()
    }
    fn arena(&self, lens: &[usize]) -> Option<(B::Tensor, Vec<B::Tensor>)> {
        self.inner.arena(lens)
    }
    fn max_binding_len(&self) -> Option<usize> {
        self.inner.max_binding_len()
    }
    fn view(&self, t: &B::Tensor, offset: usize, len: usize) -> B::Tensor {
        self.inner.view(t, offset, len)
    }
    fn release_cached(&self) {
        self.inner.release_cached()
    }

    fn upload_dataset(
        &self,
        images: &[u8],
        labels: &[u8],
        pixels: usize,
        norm: &crate::backend::PixelNorm,
    ) -> B::Dataset {
        self.inner.upload_dataset(images, labels, pixels, norm)
    }
    fn set_order(&self, ds: &mut B::Dataset, order: &[u32]) {
        self.inner.set_order(ds, order)
    }
    fn gather_batch(
        &self,
        ds: &B::Dataset,
        start: usize,
        batch: usize,
        x: &mut B::Tensor,
        y: &mut B::Tensor,
    ) {
        // Bytes of the images and labels read, f32 batch and labels written; the pixel count per image
        // is the tensor's length over the batch.
        let pixels = self.inner.len(x) / batch.max(1);
        let bytes = (batch * pixels) as f64 * (1.0 + F32) + batch as f64 * (1.0 + F32);
        self.op(
            || "gather_batch".into(),
            Work::Bytes(bytes),
            || self.inner.gather_batch(ds, start, batch, x, y),
        )
    }

    fn matmul(&self, g: &Gemm, a: &B::Tensor, b: &B::Tensor, c: &mut B::Tensor) {
        self.op(
            || matmul_label(g),
            Work::Flops(g.flops()),
            || self.inner.matmul(g, a, b, c),
        )
    }
    fn matmul_bias_act(
        &self,
        g: &Gemm,
        a: &B::Tensor,
        b: &B::Tensor,
        c: &mut B::Tensor,
        bias: Option<&B::Tensor>,
        act: Option<Act>,
    ) {
        self.op(
            || matmul_label(g),
            Work::Flops(g.flops()),
            || self.inner.matmul_bias_act(g, a, b, c, bias, act),
        )
    }
    fn bias_act(&self, x: &mut B::Tensor, bias: Option<&B::Tensor>, shape: Mat, act: Option<Act>) {
        let label = match (bias, act) {
            (None, Some(a)) => a.name(),
            _ => "bias_act",
        };
        let bytes = (2 * shape.len() + bias.map_or(0, |_| shape.cols)) as f64 * F32;
        self.op(
            || label.into(),
            Work::Bytes(bytes),
            || self.inner.bias_act(x, bias, shape, act),
        )
    }
    fn pool(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        x: &B::Tensor,
        y: &mut B::Tensor,
        arg: &mut B::Tensor,
    ) {
        let bytes = (g.in_len() + 2 * g.out_len()) as f64 * F32;
        self.op(
            || format!("{}pool", kind.name()),
            Work::Bytes(bytes),
            || self.inner.pool(kind, g, x, y, arg),
        )
    }
    fn pool_backward(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        dy: &B::Tensor,
        arg: &B::Tensor,
        dx: &mut B::Tensor,
    ) {
        let bytes = (g.in_len() + 2 * g.out_len()) as f64 * F32;
        self.op(
            || format!("{}pool_backward", kind.name()),
            Work::Bytes(bytes),
            || self.inner.pool_backward(kind, g, dy, arg, dx),
        )
    }
    fn dropout(
        &self,
        d: &crate::backend::dropout::DropoutStep,
        x: &B::Tensor,
        y: &mut B::Tensor,
        mask: &mut B::Tensor,
        len: usize,
    ) {
        self.op(
            || "dropout".into(),
            Work::Bytes(3.0 * len as f64 * F32),
            || self.inner.dropout(d, x, y, mask, len),
        )
    }
    fn dropout_backward(&self, mask: &B::Tensor, dy: &mut B::Tensor, len: usize) {
        self.op(
            || "dropout_backward".into(),
            Work::Bytes(3.0 * len as f64 * F32),
            || self.inner.dropout_backward(mask, dy, len),
        )
    }
    fn activation(&self, act: Act, x: &B::Tensor, y: &mut B::Tensor, len: usize) {
        self.op(
            || act.name().into(),
            Work::Bytes(2.0 * len as f64 * F32),
            || self.inner.activation(act, x, y, len),
        )
    }
    fn activation_backward(&self, act: Act, y: &B::Tensor, dy: &mut B::Tensor, len: usize) {
        self.op(
            || format!("{}_backward", act.name()),
            Work::Bytes(3.0 * len as f64 * F32),
            || self.inner.activation_backward(act, y, dy, len),
        )
    }
    fn bias_grad(&self, dy: &B::Tensor, db: &mut B::Tensor, shape: Mat) {
        let bytes = (shape.len() + shape.cols) as f64 * F32;
        self.op(
            || "bias_grad".into(),
            Work::Bytes(bytes),
            || self.inner.bias_grad(dy, db, shape),
        )
    }
    fn conv_forward(&self, g: &ConvGeom, out_c: usize, f: ConvForward<'_, B::Tensor>) -> bool {
        if !self.inner.fuses_conv() {
            // Through this wrapper, so that the im2col and the matmul are timed apart.
            return conv_forward_unfused(self, g, out_c, f);
        }
        let flops = Gemm::new(g.col_rows(), g.col_cols(), out_c).flops();
        self.op(
            || {
                format!(
                    "conv forward {}x{}x{} k{} s{} -> {}",
                    g.h, g.w, g.c, g.k, g.stride, out_c
                )
            },
            Work::Flops(flops),
            || self.inner.conv_forward(g, out_c, f),
        )
    }
    fn conv_backward(&self, g: &ConvGeom, out_c: usize, b: ConvBackward<'_, B::Tensor>) {
        if !self.inner.fuses_conv() {
            return conv_backward_unfused(self, g, out_c, b);
        }
        let products = if b.dx.is_some() { 2.0 } else { 1.0 };
        let flops = products * Gemm::new(g.col_rows(), g.col_cols(), out_c).flops();
        self.op(
            || {
                format!(
                    "conv backward {}x{}x{} k{} s{} -> {}",
                    g.h, g.w, g.c, g.k, g.stride, out_c
                )
            },
            Work::Flops(flops),
            || self.inner.conv_backward(g, out_c, b),
        )
    }
    fn im2col(&self, x: &B::Tensor, col: &mut B::Tensor, g: &ConvGeom) {
        let bytes = (g.col_rows() * g.col_cols() + g.n * g.h * g.w * g.c) as f64 * F32;
        self.op(
            || "im2col".into(),
            Work::Bytes(bytes),
            || self.inner.im2col(x, col, g),
        )
    }
    fn col2im(&self, col: &B::Tensor, dx: &mut B::Tensor, g: &ConvGeom) {
        let bytes = (g.col_rows() * g.col_cols() + g.n * g.h * g.w * g.c) as f64 * F32;
        self.op(
            || "col2im".into(),
            Work::Bytes(bytes),
            || self.inner.col2im(col, dx, g),
        )
    }

    fn bn_forward_train(
        &self,
        bn: &BnSpec,
        x: &B::Tensor,
        y: &mut B::Tensor,
        t: BnTrain<'_, B::Tensor>,
    ) {
        let bytes = 2.0 * bn.shape.len() as f64 * F32;
        self.op(
            || "bn_forward_train".into(),
            Work::Bytes(bytes),
            || self.inner.bn_forward_train(bn, x, y, t),
        )
    }
    fn bn_forward_eval(
        &self,
        bn: &BnSpec,
        x: &B::Tensor,
        y: &mut B::Tensor,
        t: BnEval<'_, B::Tensor>,
    ) {
        let bytes = 2.0 * bn.shape.len() as f64 * F32;
        self.op(
            || "bn_forward_eval".into(),
            Work::Bytes(bytes),
            || self.inner.bn_forward_eval(bn, x, y, t),
        )
    }
    fn bn_backward(
        &self,
        bn: &BnSpec,
        x: &B::Tensor,
        dy: &B::Tensor,
        dx: &mut B::Tensor,
        t: BnBackward<'_, B::Tensor>,
    ) {
        let bytes = 3.0 * bn.shape.len() as f64 * F32;
        self.op(
            || "bn_backward".into(),
            Work::Bytes(bytes),
            || self.inner.bn_backward(bn, x, dy, dx, t),
        )
    }

    fn softmax_ce(
        &self,
        logits: &B::Tensor,
        labels: &B::Tensor,
        dlogits: &mut B::Tensor,
        loss: &mut B::Tensor,
        shape: Mat,
        accumulate: bool,
    ) {
        let bytes = (2 * shape.len() + shape.rows) as f64 * F32;
        self.op(
            || "softmax_ce".into(),
            Work::Bytes(bytes),
            || {
                self.inner
                    .softmax_ce(logits, labels, dlogits, loss, shape, accumulate)
            },
        )
    }
    fn eval_batch(&self, logits: &B::Tensor, labels: &B::Tensor, out: &mut B::Tensor, shape: Mat) {
        let bytes = (shape.len() + shape.rows) as f64 * F32;
        self.op(
            || "eval_batch".into(),
            Work::Bytes(bytes),
            || self.inner.eval_batch(logits, labels, out, shape),
        )
    }

    fn clip_scale(&self, grads: &[&B::Tensor], max_norm: f32, scale: &mut B::Tensor) {
        let bytes: f64 = grads.iter().map(|g| self.inner.len(g) as f64 * F32).sum();
        self.op(
            || "clip_scale".into(),
            Work::Bytes(bytes),
            || self.inner.clip_scale(grads, max_norm, scale),
        )
    }

    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut B::Tensor,
        g: &B::Tensor,
        state: &mut [B::Tensor],
        scale: &B::Tensor,
    ) {
        // Read w, g and each moment; write w and each moment.
        let name = match step.rule {
            OptimRule::Sgd { momentum, .. } if momentum != 0.0 => "sgd_momentum",
            OptimRule::Sgd { .. } => "sgd",
            OptimRule::RmsProp { .. } => "rmsprop",
            OptimRule::Adam {
                decoupled: true, ..
            } => "adamw",
            OptimRule::Adam { .. } => "adam",
        };
        let tensors = 3.0 + 2.0 * state.len() as f64;
        let bytes = tensors * self.inner.len(w) as f64 * F32;
        self.op(
            || format!("optim {name}"),
            Work::Bytes(bytes),
            || self.inner.optim_step(step, w, g, state, scale),
        )
    }
}

/// One op's share of a training step.
#[derive(Clone, Debug, Serialize)]
pub struct OpRow {
    pub op: String,
    pub calls_per_step: f64,
    /// GPU only: compute dispatches per step.
    pub dispatches_per_step: Option<f64>,
    pub ms_per_step: f64,
    /// Of the sum of all ops' times.
    pub share: f64,
    /// Matmuls: achieved GFLOP/s.
    pub gflops: Option<f64>,
    /// Other ops: GB/s of the least memory traffic the op needs (each tensor read or written once).
    pub gbytes_per_s: Option<f64>,
}

/// A whole profile: one model, batch and backend.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub model: String,
    pub optim: String,
    pub batch: usize,
    pub backend: String,
    pub device: String,
    /// The GPU kernel set (`--kernels`: "tiled" or "emulated"); absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
    /// How each op was timed.
    pub timing: String,
    pub steps: usize,
    /// The sum of the ops' times per step (as `timing` says).
    pub ops_ms_per_step: f64,
    /// A training step without per-op syncs, timed over the same number of steps.
    pub step_ms: f64,
    pub dispatches_per_step: Option<f64>,
    /// GPU: the recording thread's CPU time per step of that unsynced run and its final submit and
    /// wait, in microseconds (what the host spends recording and submitting; as `wgtrain bench`'s
    /// `host_us_per_step`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_us_per_step: Option<f64>,
    pub ops: Vec<OpRow>,
}

/// Profiles `run.steps` training steps of `run.spec` at `run.batch` on `be`, after `warmup` unprofiled
/// steps.
pub fn profile<B: Backend + 'static>(
    be: B,
    run: &ProfileRun,
    warmup: usize,
    data: &ImageSet,
) -> Result<Profile> {
    let ProfileRun {
        spec,
        optim,
        batch,
        steps,
        timing,
        kernels: _,
    } = run.clone();
    if batch > data.len() {
        return Err(InputError::value(format!(
            "--batch {batch}: the data set has only {} images",
            data.len()
        ))
        .into());
    }
    let be = Profiled::new(be);
    let ds = be.upload_dataset(&data.images, &data.labels, data.pixels(), &data.norm());
    let mut model = Model::new(&be, spec.clone(), batch, 1);
    let mut opt = Optimizer::new(optim, optim.default_lr());
    let mut bufs = BatchBuffers::new(&be, batch, data.pixels());
    let batches = data.len() / batch;
    let mut pos = 0usize;
    let mut step =
        |model: &mut Model<Profiled<B>>, opt: &mut Optimizer, bufs: &mut BatchBuffers<_>| {
            train_step(&be, model, opt, &ds, (pos % batches) * batch, bufs);
            pos += 1;
        };
    for _ in 0..warmup.max(1) {
        step(&mut model, &mut opt, &mut bufs);
    }
    be.sync();
    let t0 = Instant::now();
    let c0 = super::bench::thread_cpu_seconds();
    for _ in 0..steps {
        step(&mut model, &mut opt, &mut bufs);
    }
    be.sync();
    // As `bench` counts it: the steps and the final submit and wait, which steps share.
    let host_s = super::bench::thread_cpu_seconds() - c0;
    let step_ms = t0.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let d0 = be.dispatch_count();
    let timestamps = be.start_profiling(timing);
    for _ in 0..steps {
        step(&mut model, &mut opt, &mut bufs);
    }
    be.stop_profiling()?;
    let dispatches = be
        .dispatch_count()
        .zip(d0)
        .map(|(d1, d0)| (d1 - d0) as f64 / steps as f64);
    be.health()?;
    let loss = be.read(&model.head.loss)[0];
    anyhow::ensure!(loss.is_finite(), "the loss became {loss}");
    let ops = be.rows(steps);
    Ok(Profile {
        model: spec.name(),
        optim: optim.name().to_string(),
        batch,
        backend: be.kind().to_string(),
        device: be.device_name(),
        kernels: be.kernels().map(String::from),
        timing: if timestamps {
            "device timestamps before and after each op; the step runs unsynced, as in training"
        } else {
            "each op alone: the device synced before and after it"
        }
        .into(),
        steps,
        ops_ms_per_step: ops.iter().map(|r| r.ms_per_step).sum(),
        step_ms,
        dispatches_per_step: dispatches,
        host_us_per_step: dispatches.map(|_| host_s * 1e6 / steps as f64),
        ops,
    })
}

/// The backends profiled when none are named: the CPU, and the best GPU adapter if there is one.
pub fn default_backends(notice: &mut dyn FnMut(&str)) -> Vec<BackendSel> {
    #[cfg_attr(not(feature = "gpu"), allow(unused_mut))]
    let mut out = vec![BackendSel::Cpu];
    #[cfg(feature = "gpu")]
    if crate::backend::gpu::list_adapters().is_empty() {
        notice("no GPU adapter found; profiling the CPU backend only");
    } else {
        out.push(BackendSel::Gpu(None));
    }
    #[cfg(not(feature = "gpu"))]
    notice("this build has no GPU backend (feature `gpu` is off); profiling the CPU backend only");
    out
}

/// What `wgtrain profile` runs on each backend.
#[derive(Clone, Debug)]
pub struct ProfileRun {
    pub spec: ModelSpec,
    pub optim: OptimKind,
    pub batch: usize,
    pub steps: usize,
    pub timing: Timing,
    /// The GPU kernel set (`--kernels`).
    pub kernels: KernelChoice,
}

/// Profiles on each backend selected (`cpu`, `gpu`, `gpu:NAME`), in turn.
pub fn profile_backends(
    backends: &[BackendSel],
    run: &ProfileRun,
    data: &ImageSet,
    notice: &mut dyn FnMut(&str),
) -> Result<Vec<Profile>> {
    let r = run;
    super::bench::check_kernels(Some(backends), r.kernels)?;
    let mut out = Vec::new();
    for sel in backends {
        notice(&format!("profiling {} on {}", r.spec.name(), sel.label()));
        match sel {
            BackendSel::Cpu => out.push(profile(CpuBackend::new(), r, 1, data)?),
            #[cfg(feature = "gpu")]
            BackendSel::Gpu(filter) => {
                let gpu =
                    crate::backend::gpu::GpuBackend::open(filter.as_deref(), true, r.kernels)?;
                out.push(profile(gpu, r, 2, data)?);
            }
            #[cfg(not(feature = "gpu"))]
            BackendSel::Gpu(_) => return Err(InputError::value(
                "--backend gpu: this build of wgtrain has no GPU backend (feature `gpu` is off)",
            )
            .into()),
        }
    }
    Ok(out)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |x| format!("{x:.digits$}"))
}

/// A profile as a heading line and a markdown table, slowest op first, with a total row.
pub fn format_profile(p: &Profile) -> String {
    let mut out = format!(
        "{} {} batch {} on {} ({}{}), {} steps; {}.\n\
         Step without per-op syncs: {:.2} ms; sum of the ops: {:.2} ms{}.\n\n",
        p.model,
        p.optim,
        p.batch,
        p.backend,
        p.device,
        p.kernels
            .as_deref()
            .map_or(String::new(), |k| format!(", {k} kernels")),
        p.steps,
        p.timing,
        p.step_ms,
        p.ops_ms_per_step,
        match (p.dispatches_per_step, p.host_us_per_step) {
            (Some(d), Some(h)) => format!(
                "; {d:.0} dispatches per step, recorded in {h:.0} µs of host CPU ({:.2} µs each)",
                h / d.max(1.0)
            ),
            (Some(d), None) => format!("; {d:.0} dispatches per step"),
            _ => String::new(),
        },
    );
    let gpu = p.dispatches_per_step.is_some();
    let mut header = vec!["op", "calls/step"];
    if gpu {
        header.push("dispatches/step");
    }
    header.extend(["ms/step", "share", "GFLOP/s", "GB/s"]);
    let mut body: Vec<Vec<String>> = p
        .ops
        .iter()
        .map(|r| {
            let mut row = vec![r.op.clone(), format!("{:.0}", r.calls_per_step)];
            if gpu {
                row.push(opt(r.dispatches_per_step, 0));
            }
            row.extend([
                format!("{:.3}", r.ms_per_step),
                format!("{:.1}%", r.share * 100.0),
                opt(r.gflops, 2),
                opt(r.gbytes_per_s, 2),
            ]);
            row
        })
        .collect();
    let mut total = vec![
        "total".to_string(),
        format!("{:.0}", p.ops.iter().map(|r| r.calls_per_step).sum::<f64>()),
    ];
    if gpu {
        total.push(opt(p.dispatches_per_step, 0));
    }
    total.extend([
        format!("{:.3}", p.ops_ms_per_step),
        "100%".into(),
        String::new(),
        String::new(),
    ]);
    body.push(total);
    out += &markdown::table(&header, &body);
    out
}

//! The reference backend: plain f32 Rust, simple enough to be obviously right.
//!
//! Matmul goes through the `gemm` crate (see [`super::cpu_matmul`]) so that the CPU throughput figure is
//! honest; the other ops are direct loops, parallel over independent rows or samples with rayon where
//! it pays. Every output element is computed by one thread in a fixed order, so runs are bit-identical.

use super::cpu_bn::{self, with_act, Affine, DxCols, GradRows};
use super::cpu_conv;
use super::cpu_pool;
use super::dropout::{pcg, DropoutStep};
use super::wide::multiversion;
use super::{
    Act, Backend, BnBackward, BnEval, BnSpec, BnTrain, ConvBackward, ConvForward, ConvGeom, Gemm,
    Mat, OptimRule, OptimStep, PixelNorm, PoolGeom, PoolKind,
};
use rayon::prelude::*;

/// Elements per rayon task of the row-wise ops, at least: smaller ops stay on the calling thread, where
/// they finish before a pool thread would have woken.
const PAR_ROW_ELEMS: usize = 1 << 15;
/// Rows per partial sum of the column reductions. Fixed, so that the partials and the order they are
/// added in do not depend on the thread count: the same bits on any number of threads.
const SUM_ROWS: usize = 1024;
/// Elements per rayon task of the element-wise ops.
const PAR_ELEMS: usize = 1 << 14;
/// Images per rayon task of the batch gather.
const GATHER_IMAGES: usize = 32;

/// Elements per task of a row-wise op over rows of `cols`: whole rows, at least [`PAR_ROW_ELEMS`].
fn row_chunk(cols: usize) -> usize {
    PAR_ROW_ELEMS.div_ceil(cols.max(1)) * cols
}

/// `f(i, chunk)` over `data`'s chunks of `size`, in parallel when there is more than one. A single chunk
/// runs inline: handing one task to rayon's pool from outside it costs a cross-thread wake-up (tens of
/// microseconds) that a small layer's op cannot repay. Which thread runs a chunk never changes its result.
fn for_chunks<T: Send>(data: &mut [T], size: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if data.len() <= size {
        if !data.is_empty() {
            f(0, data);
        }
    } else {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
    }
}

#[derive(Default, Clone, Debug)]
pub struct CpuBackend;

/// A data set in host memory.
pub struct CpuDataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    pixels: usize,
    order: Vec<u32>,
    /// [`PixelNorm::table`].
    table: Vec<f32>,
    channels: usize,
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

/// The CPU's model name from /proc/cpuinfo, for reports.
pub fn cpu_model_name() -> String {
    let threads = rayon::current_num_threads();
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let plural = if threads == 1 { "" } else { "s" };
    format!("{name} ({threads} thread{plural})")
}

impl Backend for CpuBackend {
    type Tensor = Vec<f32>;
    type Dataset = CpuDataset;

    fn kind(&self) -> &'static str {
        "cpu"
    }
    fn device_name(&self) -> String {
        cpu_model_name()
    }
    fn zeros(&self, len: usize) -> Vec<f32> {
        vec![0.0; len]
    }
    fn upload(&self, data: &[f32]) -> Vec<f32> {
        data.to_vec()
    }
    fn write(&self, t: &mut Vec<f32>, data: &[f32]) {
        t.copy_from_slice(data);
    }
    fn read_async(&self, t: &Vec<f32>) -> impl std::future::Future<Output = Vec<f32>> {
        std::future::ready(t.clone())
    }
    fn len(&self, t: &Vec<f32>) -> usize {
        t.len()
    }
    fn fill(&self, t: &mut Vec<f32>, value: f32) {
        t.fill(value);
    }
    fn copy(&self, src: &Vec<f32>, src_off: usize, dst: &mut Vec<f32>, dst_off: usize, len: usize) {
        dst[dst_off..dst_off + len].copy_from_slice(&src[src_off..src_off + len]);
    }
    fn sync(&self) {}

    fn upload_dataset(
        &self,
        images: &[u8],
        labels: &[u8],
        pixels: usize,
        norm: &PixelNorm,
    ) -> CpuDataset {
        CpuDataset {
            images: images.to_vec(),
            labels: labels.to_vec(),
            pixels,
            order: (0..labels.len() as u32).collect(),
            table: norm.table(),
            channels: norm.channels(),
        }
    }
    fn set_order(&self, ds: &mut CpuDataset, order: &[u32]) {
        ds.order = order.to_vec();
    }
    fn gather_batch(
        &self,
        ds: &CpuDataset,
        start: usize,
        batch: usize,
        x: &mut Vec<f32>,
        y: &mut Vec<f32>,
    ) {
        let (p, ch) = (ds.pixels, ds.channels);
        for_chunks(&mut x[..batch * p], GATHER_IMAGES * p, |chunk, xs| {
            for (j, xi) in xs.chunks_mut(p).enumerate() {
                let i = ds.order[start + chunk * GATHER_IMAGES + j] as usize;
                let src = &ds.images[i * p..(i + 1) * p];
                // Channel c looks up its own 256 entries; grey images in one pass.
                if ch == 1 {
                    let table = &ds.table[..256];
                    xi.iter_mut()
                        .zip(src)
                        .for_each(|(d, &s)| *d = table[s as usize]);
                    continue;
                }
                for (dp, sp) in xi.chunks_mut(ch).zip(src.chunks(ch)) {
                    for (c, (d, &s)) in dp.iter_mut().zip(sp).enumerate() {
                        *d = ds.table[c * 256 + s as usize];
                    }
                }
            }
        });
        for (yb, &i) in y[..batch].iter_mut().zip(&ds.order[start..start + batch]) {
            *yb = ds.labels[i as usize] as f32;
        }
    }

    fn matmul(&self, g: &Gemm, a: &Vec<f32>, b: &Vec<f32>, c: &mut Vec<f32>) {
        super::cpu_matmul::matmul(g, a, b, c);
    }

    fn bias_act(&self, x: &mut Vec<f32>, bias: Option<&Vec<f32>>, shape: Mat, act: Option<Act>) {
        let (rows, cols) = (shape.rows, shape.cols);
        let bias = bias.map(|b| &b[..]);
        for_chunks(&mut x[..rows * cols], row_chunk(cols), |_, chunk| {
            bias_act_rows(chunk, bias, cols, act)
        });
    }

    fn activation(&self, act: Act, x: &Vec<f32>, y: &mut Vec<f32>, len: usize) {
        for_chunks(&mut y[..len], PAR_ELEMS, |i, yc| {
            let xc = &x[i * PAR_ELEMS..];
            yc.iter_mut().zip(xc).for_each(|(y, &x)| *y = act.apply(x))
        });
    }

    fn activation_backward(&self, act: Act, y: &Vec<f32>, dy: &mut Vec<f32>, len: usize) {
        for_chunks(&mut dy[..len], PAR_ELEMS, |i, dc| {
            let yc = &y[i * PAR_ELEMS..];
            dc.iter_mut()
                .zip(yc)
                .for_each(|(d, &y)| *d = act.grad(y, *d))
        });
    }

    fn pool(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        arg: &mut Vec<f32>,
    ) {
        let per_image = g.out_h() * g.out_w() * g.c;
        // One image per task: every output is computed alone, so threads change nothing.
        let out = y[..g.out_len()].par_chunks_mut(per_image);
        match kind {
            PoolKind::Max => out
                .zip(arg[..g.out_len()].par_chunks_mut(per_image))
                .enumerate()
                .for_each(|(n, (yi, ai))| cpu_pool::pool_image(kind, g, x, n, yi, Some(ai))),
            PoolKind::Avg => out
                .enumerate()
                .for_each(|(n, yi)| cpu_pool::pool_image(kind, g, x, n, yi, None)),
        }
    }

    fn pool_backward(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        dy: &Vec<f32>,
        arg: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) {
        // One image per task; each input's gradient is summed in a fixed order, so threads change nothing.
        dx[..g.in_len()]
            .par_chunks_mut(g.h * g.w * g.c)
            .enumerate()
            .for_each(|(n, dxi)| cpu_pool::unpool_image(kind, g, dy, arg, n, dxi));
    }

    fn dropout(
        &self,
        d: &DropoutStep,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        mask: &mut Vec<f32>,
        len: usize,
    ) {
        let task = |(k, (y, mask)): (usize, (&mut [f32], &mut [f32]))| {
            dropout_run(d, k * PAR_ELEMS, x, y, mask)
        };
        let (y, mask) = (&mut y[..len], &mut mask[..len]);
        if len <= PAR_ELEMS {
            task((0, (y, mask)));
        } else {
            let chunks = y
                .par_chunks_mut(PAR_ELEMS)
                .zip(mask.par_chunks_mut(PAR_ELEMS));
            chunks.enumerate().for_each(task);
        }
    }

    fn dropout_backward(&self, mask: &Vec<f32>, dy: &mut Vec<f32>, len: usize) {
        for_chunks(&mut dy[..len], PAR_ELEMS, |k, dy| {
            let mask = &mask[k * PAR_ELEMS..];
            dy.iter_mut().zip(mask).for_each(|(d, m)| *d *= m);
        });
    }

    fn bias_grad(&self, dy: &Vec<f32>, db: &mut Vec<f32>, shape: Mat) {
        let (rows, cols) = (shape.rows, shape.cols);
        let acc = column_sums(rows, cols, |rs, acc| {
            cpu_bn::sum_rows(&dy[rs.start * cols..rs.end * cols], cols, acc)
        });
        db.iter_mut().zip(&acc).for_each(|(d, &a)| *d = a as f32);
    }

    fn im2col(&self, x: &Vec<f32>, col: &mut Vec<f32>, g: &ConvGeom) {
        let cc = g.col_cols();
        let per_image = g.out_h() * g.out_w() * cc;
        for_chunks(&mut col[..g.col_rows() * cc], per_image, |n, sample| {
            cpu_conv::im2col_rows(g, x, n * g.out_h() * g.out_w(), sample)
        });
    }

    fn col2im(&self, col: &Vec<f32>, dx: &mut Vec<f32>, g: &ConvGeom) {
        let per_image = g.out_h() * g.out_w() * g.col_cols();
        // Each input element gathers its taps in (oy, ox) order: the same on any number of threads.
        for_chunks(
            &mut dx[..g.n * g.h * g.w * g.c],
            g.h * g.w * g.c,
            |n, sample| cpu_conv::col2im_image(g, &col[n * per_image..(n + 1) * per_image], sample),
        );
    }

    fn conv_forward(&self, g: &ConvGeom, out_c: usize, f: ConvForward<'_, Vec<f32>>) -> bool {
        let (bias, act) = (f.bias.map(|b| &b[..]), f.act);
        cpu_conv::forward(g, out_c, f, |rows| bias_act_rows(rows, bias, out_c, act))
    }
    fn conv_backward(&self, g: &ConvGeom, out_c: usize, b: ConvBackward<'_, Vec<f32>>) {
        cpu_conv::backward(self, g, out_c, b)
    }
    fn fuses_conv(&self) -> bool {
        true
    }

    fn bn_forward_train(
        &self,
        bn: &BnSpec,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        t: BnTrain<'_, Vec<f32>>,
    ) {
        let (rows, cols, momentum, eps) = (bn.shape.rows, bn.shape.cols, bn.momentum, bn.eps);
        let BnTrain {
            gamma,
            beta,
            mean,
            invstd,
            running_mean,
            running_var,
        } = t;
        let (mu, var) = column_mean_var(&x[..rows * cols], rows, cols);
        for c in 0..cols {
            mean[c] = mu[c];
            invstd[c] = 1.0 / (var[c] + eps).sqrt();
            let unbiased = if rows > 1 {
                var[c] * rows as f32 / (rows - 1) as f32
            } else {
                var[c]
            };
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mu[c];
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased;
        }
        normalise_rows(x, y, bn, |c| (mean[c], invstd[c], gamma[c], beta[c]));
    }

    fn bn_forward_eval(
        &self,
        bn: &BnSpec,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        t: BnEval<'_, Vec<f32>>,
    ) {
        let invstd: Vec<f32> = t
            .running_var
            .iter()
            .map(|v| 1.0 / (v + bn.eps).sqrt())
            .collect();
        normalise_rows(x, y, bn, |c| {
            (t.running_mean[c], invstd[c], t.gamma[c], t.beta[c])
        });
    }

    fn bn_backward(
        &self,
        bn: &BnSpec,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        t: BnBackward<'_, Vec<f32>>,
    ) {
        let (rows, cols) = (bn.shape.rows, bn.shape.cols);
        let BnBackward {
            out,
            gamma,
            mean,
            invstd,
            dgamma,
            dbeta,
        } = t;
        // [sum dy | sum dy * xhat] per column, dy through the fused activation.
        let (mean, invstd) = (&mean[..cols], &invstd[..cols]);
        let rows_of = |rs: std::ops::Range<usize>| GradRows {
            x: &x[rs.start * cols..rs.end * cols],
            dy: &dy[rs.start * cols..rs.end * cols],
            out: &out[rs.start * cols..rs.end * cols],
            cols,
        };
        let sums = column_sums(rows, 2 * cols, |rs, acc| {
            cpu_bn::grad_sums_rows(rows_of(rs), mean, invstd, bn.act, acc)
        });
        for c in 0..cols {
            dbeta[c] = sums[c] as f32;
            dgamma[c] = sums[cols + c] as f32;
        }
        let r = rows as f32;
        // Per column: gamma * invstd / r (the same f32 operations, hoisted out of the rows).
        let k: Vec<f32> = gamma
            .iter()
            .zip(invstd.iter())
            .map(|(g, is)| g * is / r)
            .collect();
        let p = DxCols {
            k: &k,
            mean,
            invstd,
            dbeta: &dbeta[..cols],
            dgamma: &dgamma[..cols],
            r,
        };
        let chunk = row_chunk(cols);
        for_chunks(&mut dx[..rows * cols], chunk, |i, dxc| {
            let first = i * chunk / cols;
            let rs = first..first + dxc.len() / cols;
            cpu_bn::dx_rows(rows_of(rs), &p, bn.act, dxc)
        });
    }

    fn softmax_ce(
        &self,
        logits: &Vec<f32>,
        labels: &Vec<f32>,
        dlogits: &mut Vec<f32>,
        loss: &mut Vec<f32>,
        shape: Mat,
        accumulate: bool,
    ) {
        let (rows, cols) = (shape.rows, shape.cols);
        let mut total = 0.0f32;
        for r in 0..rows {
            let z = &logits[r * cols..(r + 1) * cols];
            let label = labels[r] as usize;
            let (lse, _) = log_sum_exp(z);
            total += lse - z[label];
            for (c, d) in dlogits[r * cols..(r + 1) * cols].iter_mut().enumerate() {
                let p = (z[c] - lse).exp();
                *d = (p - if c == label { 1.0 } else { 0.0 }) / rows as f32;
            }
        }
        let mean = total / rows as f32;
        loss[0] = if accumulate { loss[0] + mean } else { mean };
    }

    fn eval_batch(&self, logits: &Vec<f32>, labels: &Vec<f32>, out: &mut Vec<f32>, shape: Mat) {
        let (rows, cols) = (shape.rows, shape.cols);
        let (mut correct, mut loss_sum) = (0.0f32, 0.0f32);
        for r in 0..rows {
            let z = &logits[r * cols..(r + 1) * cols];
            let label = labels[r] as usize;
            let (lse, argmax) = log_sum_exp(z);
            loss_sum += lse - z[label];
            if argmax == label {
                correct += 1.0;
            }
        }
        out[0] += correct;
        out[1] += loss_sum;
    }

    fn clip_scale(&self, grads: &[&Vec<f32>], max_norm: f32, scale: &mut Vec<f32>) {
        let sum: f64 = grads
            .iter()
            .flat_map(|g| g.iter())
            .map(|&v| v as f64 * v as f64)
            .sum();
        scale[0] = (max_norm as f64 / (sum.sqrt() + 1e-6)).min(1.0) as f32;
    }

    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut Vec<f32>,
        g: &Vec<f32>,
        state: &mut [Vec<f32>],
        scale: &Vec<f32>,
    ) {
        let (lr, wd) = (step.lr, step.weight_decay);
        let s = if step.clip { scale[0] } else { 1.0 };
        let decoupled = matches!(
            step.rule,
            OptimRule::Adam {
                decoupled: true,
                ..
            }
        );
        // The gradient the rule sees (clipped, and with L2 decay) and AdamW's decay of the weight, exactly
        // as optim.wgsl forms them, chosen here once so that the loops inside are branch-free and vectorise.
        let identity = |w: f32| w;
        let decay = |w: f32| w - lr * wd * w;
        match (step.clip, wd != 0.0 && !decoupled, wd != 0.0 && decoupled) {
            (false, false, false) => optim_chunks(step, w, g, state, |g, _| g, identity),
            (true, false, false) => optim_chunks(step, w, g, state, |g, _| g * s, identity),
            (false, true, _) => optim_chunks(step, w, g, state, |g, w| g + wd * w, identity),
            (true, true, _) => optim_chunks(step, w, g, state, |g, w| g * s + wd * w, identity),
            (false, false, true) => optim_chunks(step, w, g, state, |g, _| g, decay),
            (true, false, true) => optim_chunks(step, w, g, state, |g, _| g * s, decay),
        }
    }
}

/// One optimizer step over `w` with `grad(g, w)` the gradient the rule sees and `decay(w)` the weight
/// before the rule's update: in parallel over chunks of [`PAR_ELEMS`] of the weights, their gradients
/// and the state. Every element is updated alone, so the chunks and the threads change nothing.
fn optim_chunks(
    step: &OptimStep,
    w: &mut [f32],
    g: &[f32],
    state: &mut [Vec<f32>],
    grad: impl Fn(f32, f32) -> f32 + Sync,
    decay: impl Fn(f32) -> f32 + Sync,
) {
    let lr = step.lr;
    // The rule element by element over one chunk of the weights, their gradients and the state
    // (`s0`, `s1`: the rule's state vectors, empty where it has fewer).
    let update = |w: &mut [f32], g: &[f32], s0: &mut [f32], s1: &mut [f32]| match step.rule {
        OptimRule::Sgd { momentum: 0.0, .. } => {
            for (wi, &gi) in w.iter_mut().zip(g) {
                *wi -= lr * grad(gi, *wi);
            }
        }
        OptimRule::Sgd { momentum, nesterov } => {
            for ((wi, &gi), buf) in w.iter_mut().zip(g).zip(s0) {
                let gi = grad(gi, *wi);
                *buf = momentum * *buf + gi;
                let update = if nesterov { gi + momentum * *buf } else { *buf };
                *wi -= lr * update;
            }
        }
        OptimRule::RmsProp { rho, eps } => {
            for ((wi, &gi), ms) in w.iter_mut().zip(g).zip(s0) {
                let gi = grad(gi, *wi);
                *ms = rho * *ms + (1.0 - rho) * gi * gi;
                *wi -= lr * gi / (ms.sqrt() + eps);
            }
        }
        OptimRule::Adam {
            beta1,
            beta2,
            eps,
            t,
            ..
        } => {
            let (c1, c2) = adam_corrections(beta1, beta2, t);
            for (((wi, &gi), m), v) in w.iter_mut().zip(g).zip(s0).zip(s1) {
                let gi = grad(gi, *wi);
                let w = decay(*wi);
                *m = beta1 * *m + (1.0 - beta1) * gi;
                *v = beta2 * *v + (1.0 - beta2) * gi * gi;
                *wi = w - lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            }
        }
    };
    let n = w.len();
    let mut chunks = state.iter_mut().map(|s| s[..n].chunks_mut(PAR_ELEMS));
    let (s0, s1) = (chunks.next(), chunks.next());
    let tasks: Vec<_> = w
        .chunks_mut(PAR_ELEMS)
        .zip(g[..n].chunks(PAR_ELEMS))
        .zip(state_chunks(s0, n).into_iter().zip(state_chunks(s1, n)))
        .collect();
    // Every element is updated alone, so the chunks and the threads change nothing.
    if tasks.len() == 1 {
        tasks
            .into_iter()
            .for_each(|((w, g), (s0, s1))| update(w, g, s0, s1));
    } else {
        tasks
            .into_par_iter()
            .for_each(|((w, g), (s0, s1))| update(w, g, s0, s1));
    }
}

/// An optimizer state vector's chunks of [`PAR_ELEMS`], or, for a state vector the rule lacks, as many
/// empty chunks as `n` weights make.
fn state_chunks(s: Option<std::slice::ChunksMut<'_, f32>>, n: usize) -> Vec<&mut [f32]> {
    match s {
        Some(s) => s.collect(),
        None => (0..n.div_ceil(PAR_ELEMS))
            .map(|_| Default::default())
            .collect(),
    }
}

/// Adam's bias corrections `(1 - beta1^t, 1 - beta2^t)`, computed in f64 so both backends agree.
pub fn adam_corrections(beta1: f32, beta2: f32, t: u64) -> (f32, f32) {
    let t = t.max(1) as i32;
    (
        (1.0 - (beta1 as f64).powi(t)) as f32,
        (1.0 - (beta2 as f64).powi(t)) as f32,
    )
}

/// `(log(sum(exp(z))), argmax(z))`, stable.
fn log_sum_exp(z: &[f32]) -> (f32, usize) {
    let (argmax, max) = z
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        });
    let sum: f32 = z.iter().map(|v| (v - max).exp()).sum();
    (max + sum.ln(), argmax)
}

/// Per-column mean and biased variance of `x[rows x cols]`: two passes, f64 sums, so the reference's
/// own rounding stays far below the 1e-4 the GPU is held to (a plain f32 sum over 10^5 rows does not).
fn column_mean_var(x: &[f32], rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
    let of = |rs: std::ops::Range<usize>| &x[rs.start * cols..rs.end * cols];
    let sum = column_sums(rows, cols, |rs, acc| cpu_bn::sum_rows(of(rs), cols, acc));
    let mean: Vec<f32> = sum.iter().map(|s| (s / rows as f64) as f32).collect();
    let sq = column_sums(rows, cols, |rs, acc| {
        cpu_bn::sum_sq_dev_rows(of(rs), cols, &mean, acc)
    });
    let var = sq.iter().map(|v| (v / rows as f64) as f32).collect();
    (mean, var)
}

/// Column sums in f64: `add(rows, acc)` adds the terms of a run of rows, in order, into `acc`
/// (`width` long). Chunks of [`SUM_ROWS`] rows are summed in parallel, then the chunks are added in
/// order.
fn column_sums(
    rows: usize,
    width: usize,
    add: impl Fn(std::ops::Range<usize>, &mut [f64]) + Sync,
) -> Vec<f64> {
    let partial = |chunk: usize| {
        let mut acc = vec![0.0f64; width];
        add(
            chunk * SUM_ROWS..((chunk + 1) * SUM_ROWS).min(rows),
            &mut acc,
        );
        acc
    };
    let chunks = rows.div_ceil(SUM_ROWS);
    // One chunk is summed inline (see `for_chunks`); it is added to zeros all the same, as below.
    let partials: Vec<Vec<f64>> = if chunks == 1 {
        vec![partial(0)]
    } else {
        (0..chunks).into_par_iter().map(partial).collect()
    };
    let mut total = vec![0.0f64; width];
    for p in partials {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    total
}

multiversion! {
    /// Dropout of elements `start..start + y.len()`: each one's mask value (as
    /// [`DropoutStep::mask`]) and `y = x * mask`. The per-pass part of the hash is computed once, so
    /// what is left per element vectorises (AVX-512's variable shifts, for PCG's).
    fn dropout_run(d: &DropoutStep, start: usize, x: &[f32], y: &mut [f32], mask: &mut [f32]) {
        let (seed, threshold, scale) = (d.seed(), d.threshold(), d.scale());
        let x = &x[start..start + y.len()];
        for (j, ((y, m), x)) in y.iter_mut().zip(mask.iter_mut()).zip(x).enumerate() {
            let kept = pcg((start + j) as u32 ^ seed) >= threshold;
            *m = if kept { scale } else { 0.0 };
            *y = x * *m;
        }
    }
}

multiversion! {
    /// [`Backend::bias_act`] on whole rows of `cols`: compiled once per activation (`with_act!`) and
    /// for AVX-512, so the activation's loop vectorises (tanh's in particular, `act_math`).
    fn bias_act_rows(rows: &mut [f32], bias: Option<&[f32]>, cols: usize, act: Option<Act>) {
        if let Some(b) = bias {
            let b = &b[..cols];
            // Rows of fewer than 64 values are short for a vector loop: 16 of them at a time against
            // the bias repeated 16 times make a long one (the same additions). Wider rows take the
            // bias as it is.
            let mut repeated;
            let pattern = if cols < 64 {
                repeated = [0.0f32; 64 * 16];
                let p = &mut repeated[..cols * 16];
                p.iter_mut().zip(b.iter().cycle()).for_each(|(p, b)| *p = *b);
                &*p
            } else {
                b
            };
            let (runs, ragged) = rows.split_at_mut(rows.len() / pattern.len() * pattern.len());
            for run in runs.chunks_exact_mut(pattern.len()) {
                run.iter_mut().zip(pattern).for_each(|(v, b)| *v += b);
            }
            for row in ragged.chunks_mut(cols) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
        // Over the whole run, not row by row: rows can be a few values wide (LeNet-5's first
        // convolution has 6 channels), too short for a vector loop.
        with_act!(act, |apply, _grad| if act.is_some() {
            rows.iter_mut().for_each(|v| *v = apply(*v));
        })
    }
}

/// `y = act(gamma * (x - mean) * invstd + beta)` per column (the activation if `bn.act`); `stats(c)` gives
/// (mean, invstd, gamma, beta).
fn normalise_rows(
    x: &[f32],
    y: &mut [f32],
    bn: &BnSpec,
    stats: impl Fn(usize) -> (f32, f32, f32, f32) + Sync,
) {
    let (rows, cols) = (bn.shape.rows, bn.shape.cols);
    let (mut m, mut is, mut g, mut b) = (
        vec![0.0; cols],
        vec![0.0; cols],
        vec![0.0; cols],
        vec![0.0; cols],
    );
    for c in 0..cols {
        (m[c], is[c], g[c], b[c]) = stats(c);
    }
    let p = Affine {
        mean: &m,
        invstd: &is,
        gamma: &g,
        beta: &b,
    };
    let chunk = row_chunk(cols);
    for_chunks(&mut y[..rows * cols], chunk, |i, yc| {
        let xc = &x[i * chunk..i * chunk + yc.len()];
        cpu_bn::normalise_rows(xc, yc, cols, &p, bn.act)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bias over rows narrower than 64 (16 rows at a time, then a ragged end of 5) and wider ones:
    /// each value gets its own column's bias.
    #[test]
    fn bias_act_adds_each_column_its_bias() {
        for cols in [6, 63, 64, 70] {
            let rows = 16 * 3 + 5;
            let mut x: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let bias: Vec<f32> = (0..cols).map(|c| 1000.0 * (c + 1) as f32).collect();
            bias_act_rows(&mut x, Some(&bias), cols, None);
            for (i, v) in x.iter().enumerate() {
                assert_eq!(*v, i as f32 + bias[i % cols], "{cols} columns, element {i}");
            }
        }
    }

    /// The vectorised, chunked dropout drops exactly the elements [`DropoutStep::mask`] (the
    /// per-element definition) names, past several parallel tasks and a ragged end, and its backward
    /// pass applies that mask.
    #[test]
    fn dropout_drops_the_elements_the_hash_names() {
        let d = DropoutStep {
            key: 0x1234_5678_9abc_def0,
            step: (1 << 32) + 7,
            p: 0.3,
        };
        let n = 3 * PAR_ELEMS + 5;
        let x: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect();
        let (mut y, mut mask) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        CpuBackend.dropout(&d, &x, &mut y, &mut mask, n);
        for i in 0..n {
            let m = d.mask(i);
            assert_eq!(mask[i].to_bits(), m.to_bits(), "mask of element {i}");
            assert_eq!(
                y[i].to_bits(),
                (x[i] * m).to_bits(),
                "output of element {i}"
            );
        }
        let dropped = mask.iter().filter(|&&m| m == 0.0).count();
        assert!(
            dropped > n / 4 && dropped < n * 2 / 5,
            "{dropped} of {n} dropped"
        );

        let mut dy = x.clone();
        CpuBackend.dropout_backward(&mask, &mut dy, n);
        for i in 0..n {
            assert_eq!(
                dy[i].to_bits(),
                (x[i] * mask[i]).to_bits(),
                "gradient of element {i}"
            );
        }
    }
}

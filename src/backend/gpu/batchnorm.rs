//! `shaders/batchnorm.wgsl`: batch norm over the rows of `[rows x cols]`. Every column sum adds
//! chunks of [`CHUNK_ROWS`] rows in chunk order, so a workgroup that goes over all the chunks of its
//! columns (the fused kernels, for few rows) gives the bits of the per-chunk passes (many rows, where
//! the chunks run in parallel). Forward: 1 dispatch, 3, or 5 over very many rows; backward: 1, 2 or 3.
//! CPU twins: `CpuBackend::bn_forward_train`, `bn_forward_eval`, `bn_backward`. Tests:
//! `tests/gpu_ops.rs` `batchnorm_forward_backward`, `fused_column_sums_match_passes`.

use super::launch::{Family, GpuBuf, Kernel, Launcher, ParamsKind};
use super::reduce::{chunks_of, fuses, CHUNK_ROWS};
use super::{u, GpuBackend, GpuTensor, Scratch};
use crate::backend::{Act, BnBackward, BnEval, BnSpec, BnTrain};
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    rows: u32,
    cols: u32,
    chunks: u32,
    chunk_rows: u32,
    momentum: f32,
    eps: f32,
    unbias: f32,
    /// 1: the finishers stored mean and invstd, and the passes read them.
    finished: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// `entry` with the fused activation (the ACT pipeline constant).
fn kernel(entry: &'static str, bn: &BnSpec) -> Kernel {
    Kernel::new(Family::BatchNorm, entry).with_consts(&["ACT"], &[Act::code_of(bn.act)])
}

/// Chunks of [`CHUNK_ROWS`] rows in `bn`'s tensor.
fn chunks(bn: &BnSpec) -> usize {
    chunks_of(bn.shape.rows)
}

/// Whether `bn` runs as the fused kernels on `be`.
fn fused(be: &GpuBackend, bn: &BnSpec) -> bool {
    fuses(be, chunks(bn))
}

fn params(bn: &BnSpec, finished: bool) -> Params {
    let rows = bn.shape.rows;
    Params {
        rows: u(rows),
        cols: u(bn.shape.cols),
        chunks: u(chunks(bn)),
        chunk_rows: u(CHUNK_ROWS),
        momentum: bn.momentum,
        eps: bn.eps,
        // The running variance is unbiased, as PyTorch's.
        unbias: if rows > 1 {
            rows as f32 / (rows - 1) as f32
        } else {
            1.0
        },
        finished: finished.into(),
    }
}

/// Workgroups of the 16-column kernels: one per 16 columns and per chunk (`chunks`).
fn column_blocks(bn: &BnSpec, chunks: usize) -> (u32, u32, u32) {
    (u(bn.shape.cols.div_ceil(16)), u(chunks), 1)
}

/// Few rows: `bn_forward_fused` (1 dispatch). Many: `bn_sum_partials`, `bn_sqdev_partials` (which
/// finishes the mean), `bn_normalise_chunks` (which finishes invstd); finishing also moves the
/// running statistic. Very many: `bn_finish_mean` and `bn_finish_invstd` finish them once, between
/// the passes (5 dispatches).
pub(super) fn forward_train(
    be: &GpuBackend,
    bn: &BnSpec,
    x: &GpuTensor,
    y: &GpuTensor,
    t: BnTrain<'_, GpuTensor>,
) {
    let (mean, invstd) = ((14, &t.mean.buf), (15, &t.invstd.buf));
    let (running_mean, running_var) = ((16, &t.running_mean.buf), (17, &t.running_var.buf));
    let normalise = [
        (1, &x.buf),
        (5, &y.buf),
        (6, &t.gamma.buf),
        (7, &t.beta.buf),
        mean,
        invstd,
        running_var,
    ];
    if fused(be, bn) {
        be.l.launch(
            kernel("bn_forward_fused", bn),
            &[&normalise[..], &[running_mean]].concat(),
            &params(bn, false),
            ParamsKind::Static,
            column_blocks(bn, 1),
        );
        return;
    }
    let chunks = chunks(bn);
    let finishers = chunks > be.column_sums.finish_in_pass_max_chunks;
    let p = params(bn, finishers);
    let partial = be.scratch(Scratch::Partial, 2 * chunks * bn.shape.cols);
    let pass = |kernel: Kernel, bindings: &[(u32, &GpuBuf)]| {
        be.l.launch(
            kernel,
            bindings,
            &p,
            ParamsKind::Static,
            column_blocks(bn, chunks),
        );
    };
    let finish = |entry, stat, running| {
        if finishers {
            be.l.launch(
                Kernel::new(Family::BatchNorm, entry),
                &[(18, &partial), stat, running],
                &p,
                ParamsKind::Static,
                Launcher::groups_1d(bn.shape.cols),
            );
        }
    };
    // Only the last pass applies the activation.
    let plain = |entry| Kernel::new(Family::BatchNorm, entry);
    pass(plain("bn_sum_partials"), &[(1, &x.buf), (18, &partial)]);
    finish("bn_finish_mean", mean, running_mean);
    pass(
        plain("bn_sqdev_partials"),
        &[(1, &x.buf), (18, &partial), mean, running_mean],
    );
    finish("bn_finish_invstd", invstd, running_var);
    pass(
        kernel("bn_normalise_chunks", bn),
        &[&normalise[..], &[(18, &partial)]].concat(),
    );
}

/// `bn_eval`: one invocation per element, with the running statistics (and the fused activation).
pub(super) fn forward_eval(
    be: &GpuBackend,
    bn: &BnSpec,
    x: &GpuTensor,
    y: &GpuTensor,
    t: BnEval<'_, GpuTensor>,
) {
    be.l.launch(
        kernel("bn_eval", bn),
        &[
            (1, &x.buf),
            (5, &y.buf),
            (6, &t.gamma.buf),
            (7, &t.beta.buf),
            (8, &t.running_mean.buf),
            (9, &t.running_var.buf),
        ],
        &params(bn, false),
        ParamsKind::Static,
        Launcher::groups_1d(bn.shape.len()),
    );
}

/// Few rows, on a device that grants 9 storage buffers a stage: `bn_backward_fused` (1 dispatch).
/// Otherwise dbeta and dgamma (few rows: `bn_grad_sums`; many: `bn_grad_partials` then
/// `bn_grad_finish`), which also go side by side into one buffer for `bn_backward_dx` (one invocation
/// per element). With a fused activation, dy is taken through it from the forward output in all.
pub(super) fn backward(
    be: &GpuBackend,
    bn: &BnSpec,
    x: &GpuTensor,
    dy: &GpuTensor,
    dx: &GpuTensor,
    t: BnBackward<'_, GpuTensor>,
) {
    let coef = be.scratch(Scratch::BnCoef, 2 * bn.shape.cols);
    let terms = [
        (1, &x.buf),
        (10, &dy.buf),
        (12, &t.out.buf),
        (8, &t.mean.buf),
        (9, &t.invstd.buf),
    ];
    let grads = [(19, &t.dbeta.buf), (20, &t.dgamma.buf)];
    if fused(be, bn) && be.fuses_bn_backward() {
        be.l.launch(
            kernel("bn_backward_fused", bn),
            &[&terms[..], &grads[..], &[(5, &dx.buf), (6, &t.gamma.buf)]].concat(),
            &params(bn, false),
            ParamsKind::Static,
            column_blocks(bn, 1),
        );
        return;
    }
    let outputs = [&grads[..], &[(13, &coef)]].concat();
    if fused(be, bn) {
        be.l.launch(
            kernel("bn_grad_sums", bn),
            &[&terms[..], &outputs[..]].concat(),
            &params(bn, false),
            ParamsKind::Static,
            column_blocks(bn, 1),
        );
    } else {
        let chunks = chunks(bn);
        let partial = be.scratch(Scratch::Partial, 2 * chunks * bn.shape.cols);
        be.l.launch(
            kernel("bn_grad_partials", bn),
            &[&terms[..], &[(18, &partial)]].concat(),
            &params(bn, false),
            ParamsKind::Static,
            column_blocks(bn, chunks),
        );
        be.l.launch(
            Kernel::new(Family::BatchNorm, "bn_grad_finish"),
            &[&[(18, &partial)][..], &outputs[..]].concat(),
            &params(bn, false),
            ParamsKind::Static,
            Launcher::groups_1d(bn.shape.cols),
        );
    }
    be.l.launch(
        kernel("bn_backward_dx", bn),
        &[
            (1, &x.buf),
            (5, &dx.buf),
            (6, &t.gamma.buf),
            (8, &t.mean.buf),
            (9, &t.invstd.buf),
            (10, &dy.buf),
            (12, &t.out.buf),
            (13, &coef),
        ],
        &params(bn, false),
        ParamsKind::Static,
        Launcher::groups_1d(bn.shape.len()),
    );
}

params_layout_test!(
    Family::BatchNorm,
    Params,
    [rows, cols, chunks, chunk_rows, momentum, eps, unbias, finished]
);

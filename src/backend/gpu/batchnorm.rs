//! `shaders/batchnorm.wgsl`: batch norm over the rows of `[rows x cols]`, with its statistics summed by
//! `reduce.wgsl`. CPU twins: `CpuBackend::bn_forward_train`, `bn_forward_eval`, `bn_backward`.
//! Test: `tests/gpu_ops.rs` `batchnorm_forward_backward`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::reduce::{column_sum_into, partials};
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
    _pad: u32,
    momentum: f32,
    eps: f32,
    unbias: f32,
    _pad1: f32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// `entry` with the fused ReLU on or off (the RELU pipeline constant).
fn kernel(entry: &'static str, bn: &BnSpec) -> Kernel {
    Kernel::new(Family::BatchNorm, entry).with_consts(&["ACT"], &[Act::code_of(bn.act)])
}

fn params(bn: &BnSpec, chunks: u32) -> Params {
    let rows = bn.shape.rows;
    Params {
        rows: u(rows),
        cols: u(bn.shape.cols),
        chunks,
        _pad: 0,
        momentum: bn.momentum,
        eps: bn.eps,
        // The running variance is unbiased, as PyTorch's.
        unbias: if rows > 1 {
            rows as f32 / (rows - 1) as f32
        } else {
            1.0
        },
        _pad1: 0.0,
    }
}

/// Mean (`sum_partials`, `bn_mean`), invstd (`sqdev_partials`, `bn_var`; both finishers also move the
/// running statistics, one invocation per column), then `bn_normalise` (one invocation per element,
/// the fused ReLU included).
pub(super) fn forward_train(
    be: &GpuBackend,
    bn: &BnSpec,
    x: &GpuTensor,
    y: &GpuTensor,
    t: BnTrain<'_, GpuTensor>,
) {
    let cols = Launcher::groups_1d(bn.shape.cols);
    let sums = partials(be, "sum_partials", &[(1, &x.buf)], None, bn.shape);
    be.l.launch(
        Kernel::new(Family::BatchNorm, "bn_mean"),
        &[(2, &sums.buf), (3, &t.mean.buf), (4, &t.running_mean.buf)],
        &params(bn, sums.chunks),
        ParamsKind::Static,
        cols,
    );
    let sq = partials(
        be,
        "sqdev_partials",
        &[(1, &x.buf), (3, &t.mean.buf)],
        None,
        bn.shape,
    );
    be.l.launch(
        Kernel::new(Family::BatchNorm, "bn_var"),
        &[(2, &sq.buf), (3, &t.invstd.buf), (4, &t.running_var.buf)],
        &params(bn, sq.chunks),
        ParamsKind::Static,
        cols,
    );
    be.l.launch(
        kernel("bn_normalise", bn),
        &[
            (1, &x.buf),
            (5, &y.buf),
            (6, &t.gamma.buf),
            (7, &t.beta.buf),
            (8, &t.mean.buf),
            (9, &t.invstd.buf),
        ],
        &params(bn, sq.chunks),
        ParamsKind::Static,
        Launcher::groups_1d(bn.shape.len()),
    );
}

/// `bn_eval`: one invocation per element, with the running statistics (and the fused ReLU).
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
        &params(bn, 0),
        ParamsKind::Static,
        Launcher::groups_1d(bn.shape.len()),
    );
}

/// dbeta (`sum_partials`, `column_sum`), dgamma (`xhat_dot_partials`, `column_sum`), the per-column
/// values packed into one buffer (`bn_pack`), then `bn_backward_dx` (one invocation per element); with
/// a fused ReLU, dy is masked by the forward output in all three.
pub(super) fn backward(
    be: &GpuBackend,
    bn: &BnSpec,
    x: &GpuTensor,
    dy: &GpuTensor,
    dx: &GpuTensor,
    t: BnBackward<'_, GpuTensor>,
) {
    // dbeta and dgamma through the fused activation: dy taken through it from the forward output.
    let through = bn.act.map(|a| (&t.out.buf, a));
    let sums = partials(be, "sum_partials", &[(1, &dy.buf)], through, bn.shape);
    column_sum_into(be, &sums, &t.dbeta.buf, bn.shape);
    let dots = partials(
        be,
        "xhat_dot_partials",
        &[
            (1, &x.buf),
            (2, &dy.buf),
            (3, &t.mean.buf),
            (4, &t.invstd.buf),
        ],
        through,
        bn.shape,
    );
    column_sum_into(be, &dots, &t.dgamma.buf, bn.shape);
    let coef = be.scratch(Scratch::BnCoef, 5 * bn.shape.cols);
    be.l.launch(
        Kernel::new(Family::BatchNorm, "bn_pack"),
        &[
            (6, &t.gamma.buf),
            (7, &t.dbeta.buf),
            (8, &t.mean.buf),
            (9, &t.invstd.buf),
            (11, &t.dgamma.buf),
            (13, &coef),
        ],
        &params(bn, dots.chunks),
        ParamsKind::Static,
        Launcher::groups_1d(bn.shape.cols),
    );
    be.l.launch(
        kernel("bn_backward_dx", bn),
        &[
            (1, &x.buf),
            (5, &dx.buf),
            (10, &dy.buf),
            (12, &t.out.buf),
            (13, &coef),
        ],
        &params(bn, dots.chunks),
        ParamsKind::Static,
        Launcher::groups_1d(bn.shape.len()),
    );
}

params_layout_test!(
    Family::BatchNorm,
    Params,
    [rows, cols, chunks, _pad, momentum, eps, unbias, _pad1]
);

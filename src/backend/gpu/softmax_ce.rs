//! `shaders/softmax_ce.wgsl`: the fused softmax cross-entropy head and the evaluation counts, each a
//! per-row kernel (one invocation per row) then a one-workgroup finisher that sums the rows in a fixed
//! tree order. CPU twins: `CpuBackend::softmax_ce`, `eval_batch`. Test: `tests/gpu_ops.rs`
//! `softmax_ce_and_eval`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor, Scratch};
use crate::backend::Mat;
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

fn params(shape: Mat, accumulate: bool) -> Params {
    Params {
        rows: u(shape.rows),
        cols: u(shape.cols),
        accumulate: accumulate as u32,
        _pad: 0,
    }
}

/// `softmax_ce_rows` (dlogits and each row's loss) then `loss_finish` (the mean into `loss[0]`).
pub(super) fn softmax_ce(
    be: &GpuBackend,
    logits: &GpuTensor,
    labels: &GpuTensor,
    dlogits: &GpuTensor,
    loss: &GpuTensor,
    shape: Mat,
    accumulate: bool,
) {
    let per_row = be.scratch(Scratch::Rows, shape.rows * 2);
    let p = params(shape, accumulate);
    be.l.launch(
        Kernel::new(Family::SoftmaxCe, "softmax_ce_rows"),
        &[
            (1, &logits.buf),
            (2, &labels.buf),
            (3, &dlogits.buf),
            (4, &per_row),
        ],
        &p,
        ParamsKind::Static,
        Launcher::groups_1d(shape.rows),
    );
    be.l.launch(
        Kernel::new(Family::SoftmaxCe, "loss_finish"),
        &[(4, &per_row), (5, &loss.buf)],
        &p,
        ParamsKind::Static,
        (1, 1, 1),
    );
}

/// `eval_rows` (correct or not, and the loss, per row) then `eval_finish` (both summed into `out`).
pub(super) fn eval_batch(
    be: &GpuBackend,
    logits: &GpuTensor,
    labels: &GpuTensor,
    out: &GpuTensor,
    shape: Mat,
) {
    let per_row = be.scratch(Scratch::Rows, shape.rows * 2);
    let p = params(shape, true);
    be.l.launch(
        Kernel::new(Family::SoftmaxCe, "eval_rows"),
        &[(1, &logits.buf), (2, &labels.buf), (4, &per_row)],
        &p,
        ParamsKind::Static,
        Launcher::groups_1d(shape.rows),
    );
    be.l.launch(
        Kernel::new(Family::SoftmaxCe, "eval_finish"),
        &[(4, &per_row), (5, &out.buf)],
        &p,
        ParamsKind::Static,
        (1, 1, 1),
    );
}

params_layout_test!(Family::SoftmaxCe, Params, [rows, cols, accumulate, _pad]);

//! `shaders/softmax_ce.wgsl`: the fused softmax cross-entropy head and the evaluation counts. Many
//! rows: a per-row kernel (one invocation per row) then a one-workgroup finisher that sums the rows in
//! a fixed tree order. Few rows (as many as batch norm's fused column sums take): one workgroup does
//! both, adding in the same order, so with the same bits and a dispatch fewer. CPU twins:
//! `CpuBackend::softmax_ce`, `eval_batch`. Tests: `tests/gpu_ops.rs` `softmax_ce_and_eval`,
//! `fused_row_sums_match_passes`.

use super::launch::{Family, GpuBuf, Kernel, Launcher, ParamsKind};
use super::reduce::{chunks_of, fuses};
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

/// `softmax_ce_fused`, or `softmax_ce_rows` (dlogits and each row's loss) then `loss_finish` (the
/// mean into `loss[0]`).
pub(super) fn softmax_ce(
    be: &GpuBackend,
    logits: &GpuTensor,
    labels: &GpuTensor,
    dlogits: &GpuTensor,
    loss: &GpuTensor,
    shape: Mat,
    accumulate: bool,
) {
    let inputs = [(1, &logits.buf), (2, &labels.buf), (3, &dlogits.buf)];
    rows_then_finish(
        be,
        ["softmax_ce_fused", "softmax_ce_rows", "loss_finish"],
        &inputs,
        &loss.buf,
        params(shape, accumulate),
        1,
    );
}

/// `eval_fused`, or `eval_rows` (correct or not, and the loss, per row) then `eval_finish` (both
/// summed into `out`).
pub(super) fn eval_batch(
    be: &GpuBackend,
    logits: &GpuTensor,
    labels: &GpuTensor,
    out: &GpuTensor,
    shape: Mat,
) {
    rows_then_finish(
        be,
        ["eval_fused", "eval_rows", "eval_finish"],
        &[(1, &logits.buf), (2, &labels.buf)],
        &out.buf,
        params(shape, true),
        2,
    );
}

/// One workgroup (`entries[0]`) over few rows; over many, the row kernel `entries[1]`, which writes
/// `per_row` values a row into scratch, then the finisher `entries[2]`.
fn rows_then_finish(
    be: &GpuBackend,
    entries: [&'static str; 3],
    inputs: &[(u32, &GpuBuf)],
    out: &GpuBuf,
    p: Params,
    per_row: usize,
) {
    let rows = p.rows as usize;
    let kernel = |entry| Kernel::new(Family::SoftmaxCe, entry);
    if fuses(be, chunks_of(rows)) {
        let bindings = [inputs, &[(5, out)]].concat();
        be.l.launch(
            kernel(entries[0]),
            &bindings,
            &p,
            ParamsKind::Static,
            (1, 1, 1),
        );
        return;
    }
    let scratch = be.scratch(Scratch::Rows, rows * per_row);
    be.l.launch(
        kernel(entries[1]),
        &[inputs, &[(4, &scratch)]].concat(),
        &p,
        ParamsKind::Static,
        Launcher::groups_1d(rows),
    );
    be.l.launch(
        kernel(entries[2]),
        &[(4, &scratch), (5, out)],
        &p,
        ParamsKind::Static,
        (1, 1, 1),
    );
}

params_layout_test!(Family::SoftmaxCe, Params, [rows, cols, accumulate, _pad]);

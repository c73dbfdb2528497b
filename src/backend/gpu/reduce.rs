//! `shaders/reduce.wgsl`: deterministic column sums of a `[rows x cols]` tensor in two passes, partial
//! sums over chunks of [`CHUNK_ROWS`] rows, then each column's chunks added in order (so a run gives
//! the same bits every time on a given GPU): the bias gradient. Batch norm's sums (batchnorm.wgsl)
//! take the same chunks and lanes. CPU twin: `CpuBackend::bias_grad` (f64 sums). Test:
//! `tests/gpu_ops.rs` `bias_grad_many_rows`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor, Scratch};
use crate::backend::Mat;
use bytemuck::{Pod, Zeroable};

/// Rows per partial sum.
pub(super) const CHUNK_ROWS: usize = 256;

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    chunks: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `db[c] = sum_r dy[r, c]`: `sum_partials` writes each chunk's sums of [`CHUNK_ROWS`] rows
/// ((ceil(cols / 16), chunks, 1) workgroups of 16 columns x 16 row lanes), then `column_sum` adds each
/// column's chunks in order (one invocation per column).
pub(super) fn bias_grad(be: &GpuBackend, dy: &GpuTensor, db: &GpuTensor, shape: Mat) {
    let chunks = shape.rows.div_ceil(CHUNK_ROWS).max(1);
    let partial = be.scratch(Scratch::Partial, chunks * shape.cols);
    let p = params(shape, u(chunks));
    be.l.launch(
        Kernel::new(Family::Reduce, "sum_partials"),
        &[(1, &dy.buf), (5, &partial)],
        &p,
        ParamsKind::Static,
        (u(shape.cols.div_ceil(16)), u(chunks), 1),
    );
    be.l.launch(
        Kernel::new(Family::Reduce, "column_sum"),
        &[(5, &partial), (6, &db.buf)],
        &p,
        ParamsKind::Static,
        Launcher::groups_1d(shape.cols),
    );
}

fn params(shape: Mat, chunks: u32) -> Params {
    Params {
        rows: u(shape.rows),
        cols: u(shape.cols),
        chunk_rows: u(CHUNK_ROWS),
        chunks,
    }
}

params_layout_test!(Family::Reduce, Params, [rows, cols, chunk_rows, chunks]);

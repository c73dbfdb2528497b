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

/// Chunks of [`CHUNK_ROWS`] rows in `rows` (at least one).
pub(super) fn chunks_of(rows: usize) -> usize {
    rows.div_ceil(CHUNK_ROWS).max(1)
}

/// How column sums over chunks of [`CHUNK_ROWS`] rows are spread over dispatches. Every choice adds
/// the same terms in the same order, so gives the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnSums {
    /// Up to this many chunks, one fused kernel goes over all of them (one workgroup per 16 columns),
    /// instead of a pass per chunk.
    pub fused_max_chunks: usize,
    /// Up to this many chunks, each of batch norm's passes adds up the statistic it needs from the
    /// chunk partials itself (every workgroup, serially: chunks^2 loads per column block); beyond,
    /// a finisher dispatch adds them once and the passes read the result.
    pub finish_in_pass_max_chunks: usize,
}

impl Default for ColumnSums {
    /// 8 chunks (2,048 rows) fused: one workgroup per 16 columns then reads each of their elements
    /// (three times in batch norm's forward), which on a real GPU costs less than the dispatches it
    /// saves. 512 chunks (131,072 rows) finished in the passes: lane 0 of a column adds at most 512
    /// partials, a few microseconds on a real GPU, against a dispatch each.
    fn default() -> Self {
        ColumnSums {
            fused_max_chunks: 8,
            finish_in_pass_max_chunks: 512,
        }
    }
}

/// Whether a column sum over `chunks` chunks runs as one fused kernel on `be`.
pub(super) fn fuses(be: &GpuBackend, chunks: usize) -> bool {
    chunks <= be.column_sums.fused_max_chunks
}

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
/// column's chunks in order (one invocation per column); over few rows `column_sum_fused` does both.
pub(super) fn bias_grad(be: &GpuBackend, dy: &GpuTensor, db: &GpuTensor, shape: Mat) {
    let chunks = chunks_of(shape.rows);
    let p = params(shape, u(chunks));
    let blocks = u(shape.cols.div_ceil(16));
    if fuses(be, chunks) {
        be.l.launch(
            Kernel::new(Family::Reduce, "column_sum_fused"),
            &[(1, &dy.buf), (6, &db.buf)],
            &p,
            ParamsKind::Static,
            (blocks, 1, 1),
        );
        return;
    }
    let partial = be.scratch(Scratch::Partial, chunks * shape.cols);
    be.l.launch(
        Kernel::new(Family::Reduce, "sum_partials"),
        &[(1, &dy.buf), (5, &partial)],
        &p,
        ParamsKind::Static,
        (blocks, u(chunks), 1),
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

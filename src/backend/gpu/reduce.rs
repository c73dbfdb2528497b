//! `shaders/reduce.wgsl`: deterministic column sums of a `[rows x cols]` tensor in two passes, a
//! partials kernel over chunks of [`CHUNK_ROWS`] rows, then `column_sum` adding each column's chunks in
//! order (so a run gives the same bits every time on a given GPU). Serves the bias gradient and batch
//! norm's statistics over many rows. CPU twin: `CpuBackend::bias_grad` (f64 sums). Test:
//! `tests/gpu_ops.rs` `bias_grad_many_rows`.

use super::launch::{Family, GpuBuf, Kernel, Launcher, ParamsKind};
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

/// Partial sums waiting in scratch for [`column_sum_into`] (or batch norm's finishers).
pub(super) struct Partials {
    pub buf: GpuBuf,
    pub chunks: u32,
}

/// `partial[chunk, c] = sum over the chunk's rows r of term(r, c)`, where the partials kernel `entry`
/// (`sum_partials`, `sqdev_partials`) defines the term from `bindings` (1: the tensor, 3: the mean).
/// Dispatch: (ceil(cols / 16), chunks, 1) workgroups of 16 columns x 16 row lanes.
pub(super) fn partials(
    be: &GpuBackend,
    entry: &'static str,
    bindings: &[(u32, &GpuBuf)],
    shape: Mat,
) -> Partials {
    let chunks = shape.rows.div_ceil(CHUNK_ROWS).max(1);
    let buf = be.scratch(Scratch::Partial, chunks * shape.cols);
    let mut b: Vec<(u32, &GpuBuf)> = bindings.to_vec();
    b.push((5, &buf));
    be.l.launch(
        Kernel::new(Family::Reduce, entry),
        &b,
        &params(shape, u(chunks)),
        ParamsKind::Static,
        (u(shape.cols.div_ceil(16)), u(chunks), 1),
    );
    Partials {
        buf,
        chunks: u(chunks),
    }
}

/// `out[c] = sum of the chunks of column c`, in chunk order: one invocation per column.
pub(super) fn column_sum_into(be: &GpuBackend, p: &Partials, out: &GpuBuf, shape: Mat) {
    be.l.launch(
        Kernel::new(Family::Reduce, "column_sum"),
        &[(5, &p.buf), (6, out)],
        &params(shape, p.chunks),
        ParamsKind::Static,
        Launcher::groups_1d(shape.cols),
    );
}

/// `db[c] = sum_r dy[r, c]`.
pub(super) fn bias_grad(be: &GpuBackend, dy: &GpuTensor, db: &GpuTensor, shape: Mat) {
    let p = partials(be, "sum_partials", &[(1, &dy.buf)], shape);
    column_sum_into(be, &p, &db.buf, shape);
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

//! `shaders/matmul.wgsl`: the matrix products of every Linear and Conv2d, forward and backward.
//! CPU twin: `CpuBackend::matmul` (matrixmultiply's sgemm). Tests: `tests/gpu_ops.rs` `matmul_*`.

use super::launch::{Family, Kernel, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::{Gemm, Trans};
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`): the shape and the strides that read each operand as
/// stored or transposed.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    m: u32,
    k: u32,
    n: u32,
    accumulate: u32,
    a_row: u32,
    a_k: u32,
    b_k: u32,
    b_col: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// Which matmul kernel an adapter runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Workgroup-memory tiles (`matmul_tiled`): for real GPUs.
    Tiled,
    /// No workgroup memory or barriers (`matmul_direct`): for CPU-emulated adapters (lavapipe).
    Direct,
}

/// Records `c = op(a) * op(b) (+ c)`: one dispatch covering C in 64x64 (tiled) or 32x32 (direct) tiles.
pub(super) fn matmul(be: &GpuBackend, g: &Gemm, a: &GpuTensor, b: &GpuTensor, c: &GpuTensor) {
    let (m, k, n) = (g.m, g.k, g.n);
    assert!(
        a.len >= m * k && b.len >= k * n && c.len >= m * n,
        "matmul shape"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (a_row, a_k) = match g.ta {
        Trans::N => (k, 1),
        Trans::T => (1, m),
    };
    let (b_k, b_col) = match g.tb {
        Trans::N => (n, 1),
        Trans::T => (1, k),
    };
    let params = Params {
        m: u(m),
        k: u(k),
        n: u(n),
        accumulate: g.accumulate as u32,
        a_row: u(a_row),
        a_k: u(a_k),
        b_k: u(b_k),
        b_col: u(b_col),
    };
    let (entry, tile) = match be.matmul_kernel {
        MatmulKernel::Tiled => ("matmul_tiled", 64),
        MatmulKernel::Direct => ("matmul_direct", 32),
    };
    be.l.launch(
        Kernel(Family::Matmul, entry),
        &[(1, &a.buf), (2, &b.buf), (3, &c.buf)],
        &params,
        ParamsKind::Static,
        (u(n.div_ceil(tile)), u(m.div_ceil(tile)), 1),
    );
}

params_layout_test!(
    Family::Matmul,
    Params,
    [m, k, n, accumulate, a_row, a_k, b_k, b_col]
);

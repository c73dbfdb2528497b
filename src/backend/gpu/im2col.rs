//! `shaders/im2col.wgsl`: a convolution's unfolding (`im2col`, one invocation per col element) and
//! its adjoint (`col2im`, one invocation per image element, gathering every tap that read it, so no
//! atomics). CPU twins: `CpuBackend::im2col`, `col2im`. Test: `tests/gpu_ops.rs`
//! `im2col_col2im_stride_and_padding`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::ConvGeom;
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`); the layer's geometry is in the pipeline constants.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    n: u32,
    total: u32,
    _pad0: u32,
    _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// The names of the pipeline constants that fix a layer's geometry (see [`kernel`]).
const GEOMETRY: &[&str] = &["C", "H", "W", "K", "STRIDE", "PAD", "OH", "OW"];

/// `entry` specialised to the geometry of `g` (all but the batch size): one pipeline per layer, so
/// the kernels divide by constants.
fn kernel(entry: &'static str, g: &ConvGeom) -> Kernel {
    let values = [g.c, g.h, g.w, g.k, g.stride, g.pad, g.out_h(), g.out_w()].map(u);
    Kernel::new(Family::Im2col, entry).with_consts(GEOMETRY, &values)
}

fn params(g: &ConvGeom, total: usize) -> Params {
    Params {
        n: u(g.n),
        total: u(total),
        _pad0: 0,
        _pad1: 0,
    }
}

pub(super) fn im2col(be: &GpuBackend, x: &GpuTensor, col: &GpuTensor, g: &ConvGeom) {
    let total = g.col_rows() * g.col_cols();
    be.l.launch(
        kernel("im2col", g),
        &[(1, &x.buf), (2, &col.buf)],
        &params(g, total),
        ParamsKind::Static,
        Launcher::groups_1d(total),
    );
}

pub(super) fn col2im(be: &GpuBackend, col: &GpuTensor, dx: &GpuTensor, g: &ConvGeom) {
    let total = g.n * g.h * g.w * g.c;
    be.l.launch(
        kernel("col2im", g),
        &[(1, &col.buf), (2, &dx.buf)],
        &params(g, total),
        ParamsKind::Static,
        Launcher::groups_1d(total),
    );
}

params_layout_test!(Family::Im2col, Params, [n, total, _pad0, _pad1]);

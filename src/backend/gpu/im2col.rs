//! `shaders/im2col.wgsl`: a convolution's unfolding (`im2col`, one invocation per col element) and
//! its adjoint (`col2im`, one invocation per image element, gathering every tap that read it, so no
//! atomics). CPU twins: `CpuBackend::im2col`, `col2im`. Test: `tests/gpu_ops.rs`
//! `im2col_col2im_stride_and_padding`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::ConvGeom;
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    total: u32,
    _pad0: u32,
    _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 48);

fn params(g: &ConvGeom, total: usize) -> Params {
    Params {
        n: u(g.n),
        c: u(g.c),
        h: u(g.h),
        w: u(g.w),
        k: u(g.k),
        stride: u(g.stride),
        pad: u(g.pad),
        oh: u(g.out_h()),
        ow: u(g.out_w()),
        total: u(total),
        _pad0: 0,
        _pad1: 0,
    }
}

pub(super) fn im2col(be: &GpuBackend, x: &GpuTensor, col: &GpuTensor, g: &ConvGeom) {
    let total = g.col_rows() * g.col_cols();
    be.l.launch(
        Kernel(Family::Im2col, "im2col"),
        &[(1, &x.buf), (2, &col.buf)],
        &params(g, total),
        ParamsKind::Static,
        Launcher::groups_1d(total),
    );
}

pub(super) fn col2im(be: &GpuBackend, col: &GpuTensor, dx: &GpuTensor, g: &ConvGeom) {
    let total = g.n * g.h * g.w * g.c;
    be.l.launch(
        Kernel(Family::Im2col, "col2im"),
        &[(1, &col.buf), (2, &dx.buf)],
        &params(g, total),
        ParamsKind::Static,
        Launcher::groups_1d(total),
    );
}

params_layout_test!(
    Family::Im2col,
    Params,
    [n, c, h, w, k, stride, pad, oh, ow, total, _pad0, _pad1]
);

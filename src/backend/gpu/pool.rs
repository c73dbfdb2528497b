//! `shaders/pool.wgsl`: max and average pooling (one invocation per output element) and their
//! backward passes (one per input element, gathering the windows that hold it: no atomics, the same
//! sums everywhere). CPU twins: `CpuBackend::pool`, `pool_backward`. Test: `tests/gpu_ops.rs`
//! `pooling_forward_and_backward`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::{PoolGeom, PoolKind};
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`); the layer's geometry is in the pipeline constants.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    n: u32,
    total: u32,
    inv_area: f32,
    _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// The pipeline constants that fix a layer's geometry.
const GEOMETRY: &[&str] = &["C", "H", "W", "KH", "KW", "STRIDE", "OH", "OW"];

/// `{max,avg}_{forward,backward}` specialised to the geometry of `g` (all but the batch size).
fn kernel(kind: PoolKind, pass: &str, g: &PoolGeom) -> Kernel {
    let entry = match (kind, pass) {
        (PoolKind::Max, "forward") => "max_forward",
        (PoolKind::Avg, "forward") => "avg_forward",
        (PoolKind::Max, _) => "max_backward",
        (PoolKind::Avg, _) => "avg_backward",
    };
    let values = [g.c, g.h, g.w, g.kh, g.kw, g.stride, g.out_h(), g.out_w()].map(u);
    Kernel::new(Family::Pool, entry).with_consts(GEOMETRY, &values)
}

fn params(g: &PoolGeom, total: usize) -> Params {
    Params {
        n: u(g.n),
        total: u(total),
        inv_area: g.inv_area(),
        _pad0: 0,
    }
}

pub(super) fn forward(
    be: &GpuBackend,
    kind: PoolKind,
    g: &PoolGeom,
    x: &GpuTensor,
    y: &GpuTensor,
    arg: &GpuTensor,
) {
    let total = g.out_len();
    // Only max pooling has positions to keep (the average kernels do not declare `arg`).
    let bound = [(1, &x.buf), (2, &y.buf), (3, &arg.buf)];
    let used = if kind == PoolKind::Max { 3 } else { 2 };
    be.l.launch(
        kernel(kind, "forward", g),
        &bound[..used],
        &params(g, total),
        ParamsKind::Static,
        Launcher::groups_1d(total),
    );
}

pub(super) fn backward(
    be: &GpuBackend,
    kind: PoolKind,
    g: &PoolGeom,
    dy: &GpuTensor,
    arg: &GpuTensor,
    dx: &GpuTensor,
) {
    let total = g.in_len();
    let bound = [(1, &dy.buf), (2, &dx.buf), (3, &arg.buf)];
    let used = if kind == PoolKind::Max { 3 } else { 2 };
    be.l.launch(
        kernel(kind, "backward", g),
        &bound[..used],
        &params(g, total),
        ParamsKind::Static,
        Launcher::groups_1d(total),
    );
}

params_layout_test!(Family::Pool, Params, [n, total, inv_area, _pad0]);

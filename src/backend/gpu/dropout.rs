//! `shaders/dropout.wgsl`: dropout's forward (mask from the counter-based generator, then `y = x *
//! mask`) and backward (`dy *= mask`). CPU twins: `CpuBackend::dropout`, `dropout_backward`, with the
//! generator in `backend/dropout.rs`. Test: `tests/gpu_ops.rs` `dropout_masks_agree`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::dropout::DropoutStep;
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    len: u32,
    threshold: u32,
    key_lo: u32,
    key_hi: u32,
    step_lo: u32,
    step_hi: u32,
    scale: f32,
    _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

pub(super) fn forward(
    be: &GpuBackend,
    d: &DropoutStep,
    x: &GpuTensor,
    y: &GpuTensor,
    mask: &GpuTensor,
    len: usize,
) {
    let params = Params {
        len: u(len),
        threshold: d.threshold(),
        key_lo: d.key as u32,
        key_hi: (d.key >> 32) as u32,
        step_lo: d.step as u32,
        step_hi: (d.step >> 32) as u32,
        scale: d.scale(),
        _pad0: 0,
    };
    // The step changes every training step: one bind group, its uniform rewritten.
    be.l.launch(
        Kernel::new(Family::Dropout, "dropout_forward"),
        &[(1, &x.buf), (2, &y.buf), (3, &mask.buf)],
        &params,
        ParamsKind::Dynamic,
        Launcher::groups_1d(len),
    );
}

pub(super) fn backward(be: &GpuBackend, mask: &GpuTensor, dy: &GpuTensor, len: usize) {
    let params = Params {
        len: u(len),
        ..Params::zeroed()
    };
    be.l.launch(
        Kernel::new(Family::Dropout, "dropout_backward"),
        &[(1, &mask.buf), (2, &dy.buf)],
        &params,
        ParamsKind::Static,
        Launcher::groups_1d(len),
    );
}

params_layout_test!(
    Family::Dropout,
    Params,
    [len, threshold, key_lo, key_hi, step_lo, step_hi, scale, _pad0]
);

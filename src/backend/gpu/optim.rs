//! `shaders/optim.wgsl`: one optimizer update of a parameter tensor, one invocation per element.
//! CPU twin: `CpuBackend::optim_step`. Tests: `tests/gpu_ops.rs` `optimizer_updates`,
//! `adam_step_count_changes_between_steps_on_one_tensor`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::cpu::adam_corrections;
use crate::backend::OptimStep;
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
    _pad3: f32,
    _pad4: f32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 48);

/// `sgd`, `rmsprop` (state: mean square) or `adam` (state: the two moments; its bias corrections
/// change every step, so its uniform is `Dynamic`).
pub(super) fn step(
    be: &GpuBackend,
    step: &OptimStep,
    w: &GpuTensor,
    g: &GpuTensor,
    state: &[GpuTensor],
) {
    let mut p = Params {
        len: u(w.len),
        c1: 1.0,
        c2: 1.0,
        ..Params::zeroed()
    };
    let groups = Launcher::groups_1d(w.len);
    match *step {
        OptimStep::Sgd { lr } => {
            p.lr = lr;
            be.l.launch(
                Kernel::new(Family::Optim, "sgd"),
                &[(1, &w.buf), (2, &g.buf)],
                &p,
                ParamsKind::Static,
                groups,
            );
        }
        OptimStep::RmsProp { lr, rho, eps } => {
            (p.lr, p.beta1, p.eps) = (lr, rho, eps);
            be.l.launch(
                Kernel::new(Family::Optim, "rmsprop"),
                &[(1, &w.buf), (2, &g.buf), (3, &state[0].buf)],
                &p,
                ParamsKind::Static,
                groups,
            );
        }
        OptimStep::Adam {
            lr,
            beta1,
            beta2,
            eps,
            t,
        } => {
            let (c1, c2) = adam_corrections(beta1, beta2, t);
            (p.lr, p.beta1, p.beta2, p.eps, p.c1, p.c2) = (lr, beta1, beta2, eps, c1, c2);
            be.l.launch(
                Kernel::new(Family::Optim, "adam"),
                &[
                    (1, &w.buf),
                    (2, &g.buf),
                    (3, &state[0].buf),
                    (4, &state[1].buf),
                ],
                &p,
                ParamsKind::Dynamic,
                groups,
            );
        }
    }
}

params_layout_test!(
    Family::Optim,
    Params,
    [len, _pad0, _pad1, _pad2, lr, beta1, beta2, eps, c1, c2, _pad3, _pad4]
);

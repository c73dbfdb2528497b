//! `shaders/optim.wgsl`: one optimizer update of a parameter tensor, one invocation per element, and
//! the gradients' global norm for clipping. CPU twins: `CpuBackend::optim_step`,
//! `CpuBackend::clip_scale`. Tests: `tests/gpu_ops.rs` `optimizer_updates`, `clip_scale_and_recipes`,
//! `adam_step_count_changes_between_steps_on_one_tensor`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::cpu::adam_corrections;
use crate::backend::{OptimRule, OptimStep};
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    len: u32,
    nesterov: u32,
    clip: u32,
    decoupled: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
    wd: f32,
    momentum: f32,
    max_norm: f32,
    first: u32,
    last: u32,
    _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 64);

/// `sgd`, `sgd_momentum` (state: the momentum buffer), `rmsprop` (state: mean square) or `adam`
/// (state: the two moments). A schedule changes the learning rate every step and Adam's bias
/// corrections change anyway, so the uniform is `Dynamic` (one bind group per tensor, rewritten).
pub(super) fn step(
    be: &GpuBackend,
    step: &OptimStep,
    w: &GpuTensor,
    g: &GpuTensor,
    state: &[GpuTensor],
    scale: &GpuTensor,
) {
    let mut p = Params {
        len: u(w.len),
        clip: step.clip as u32,
        lr: step.lr,
        wd: step.weight_decay,
        c1: 1.0,
        c2: 1.0,
        ..Params::zeroed()
    };
    // The scale is bound even when not read (`p.clip` is 0): every update entry point uses it.
    let mut bufs = vec![(1, &w.buf), (2, &g.buf), (5, &scale.buf)];
    let entry = match step.rule {
        OptimRule::Sgd { momentum, nesterov } if momentum != 0.0 => {
            (p.momentum, p.nesterov) = (momentum, nesterov as u32);
            bufs.push((3, &state[0].buf));
            "sgd_momentum"
        }
        OptimRule::Sgd { .. } => "sgd",
        OptimRule::RmsProp { rho, eps } => {
            (p.beta1, p.eps) = (rho, eps);
            bufs.push((3, &state[0].buf));
            "rmsprop"
        }
        OptimRule::Adam {
            beta1,
            beta2,
            eps,
            t,
            decoupled,
        } => {
            let (c1, c2) = adam_corrections(beta1, beta2, t);
            (p.beta1, p.beta2, p.eps, p.c1, p.c2) = (beta1, beta2, eps, c1, c2);
            p.decoupled = decoupled as u32;
            bufs.push((3, &state[0].buf));
            bufs.push((4, &state[1].buf));
            "adam"
        }
    };
    be.l.launch(
        Kernel::new(Family::Optim, entry),
        &bufs,
        &p,
        ParamsKind::Dynamic,
        Launcher::groups_1d(w.len),
    );
}

/// `grad_sumsq` over each tensor of `grads` in turn (one workgroup each), accumulating in `scale`,
/// the last turning the sum into the clipping factor.
pub(super) fn clip_scale(be: &GpuBackend, grads: &[&GpuTensor], max_norm: f32, scale: &GpuTensor) {
    for (i, g) in grads.iter().enumerate() {
        let p = Params {
            len: u(g.len),
            max_norm,
            first: (i == 0) as u32,
            last: (i + 1 == grads.len()) as u32,
            ..Params::zeroed()
        };
        be.l.launch(
            Kernel::new(Family::Optim, "grad_sumsq"),
            &[(2, &g.buf), (6, &scale.buf)],
            &p,
            ParamsKind::Static,
            (1, 1, 1),
        );
    }
}

params_layout_test!(
    Family::Optim,
    Params,
    [
        len, nesterov, clip, decoupled, lr, beta1, beta2, eps, c1, c2, wd, momentum, max_norm,
        first, last, _pad
    ]
);

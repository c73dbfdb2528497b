//! `shaders/elementwise.wgsl`: the epilogues over a `[rows x cols]` tensor, one invocation per element.
//! CPU twins: `CpuBackend::bias_act`, `CpuBackend::activation`, `CpuBackend::activation_backward`.
//! Tests: `tests/gpu_ops.rs` `bias_act_every_activation`, `activations_forward_and_backward`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor};
use crate::backend::{Act, Mat};
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    rows: u32,
    cols: u32,
    act: u32,
    len: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `x = act(x + bias)` per column (`bias_act`), or `x = act(x)` (`act_in_place`), in place.
pub(super) fn bias_act(
    be: &GpuBackend,
    x: &GpuTensor,
    bias: Option<&GpuTensor>,
    shape: Mat,
    act: Option<Act>,
) {
    let params = Params {
        rows: u(shape.rows),
        cols: u(shape.cols),
        act: Act::code_of(act),
        len: u(shape.len()),
    };
    let groups = Launcher::groups_1d(shape.len());
    match bias {
        Some(b) => be.l.launch(
            Kernel::new(Family::Elementwise, "bias_act"),
            &[(1, &x.buf), (2, &b.buf)],
            &params,
            ParamsKind::Static,
            groups,
        ),
        None if act.is_some() => be.l.launch(
            Kernel::new(Family::Elementwise, "act_in_place"),
            &[(1, &x.buf)],
            &params,
            ParamsKind::Static,
            groups,
        ),
        None => {}
    }
}

/// The kernel `entry` specialised for `act` (the ACT pipeline constant).
fn act_kernel(entry: &'static str, act: Act) -> Kernel {
    Kernel::new(Family::Elementwise, entry).with_consts(&["ACT"], &[act.code()])
}

fn flat(len: usize) -> Params {
    Params {
        rows: u(len),
        cols: 1,
        act: 0,
        len: u(len),
    }
}

/// `y = act(x)` over `len` elements.
pub(super) fn activation(be: &GpuBackend, act: Act, x: &GpuTensor, y: &GpuTensor, len: usize) {
    be.l.launch(
        act_kernel("act_forward", act),
        &[(1, &y.buf), (2, &x.buf)],
        &flat(len),
        ParamsKind::Static,
        Launcher::groups_1d(len),
    );
}

/// `dy = act'(.) * dy` from the output `y`, in place over `len` elements.
pub(super) fn activation_backward(
    be: &GpuBackend,
    act: Act,
    y: &GpuTensor,
    dy: &GpuTensor,
    len: usize,
) {
    be.l.launch(
        act_kernel("act_backward", act),
        &[(1, &dy.buf), (2, &y.buf)],
        &flat(len),
        ParamsKind::Static,
        Launcher::groups_1d(len),
    );
}

params_layout_test!(Family::Elementwise, Params, [rows, cols, act, len]);

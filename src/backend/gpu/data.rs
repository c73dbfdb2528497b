//! `shaders/data.wgsl`: a batch gathered on the GPU from the u8 data set kept there (packed four bytes
//! to a u32) in the epoch's shuffled order, normalised on the way through the host-computed
//! [`crate::backend::PixelNorm::table`] (so the inputs equal the CPU's exactly). CPU twin:
//! `CpuBackend::gather_batch`.
//! Test: `tests/gpu_ops.rs` `gather_batch_normalises_in_order`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuDataset, GpuTensor};
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    start: u32,
    batch: u32,
    pixels: u32,
    channels: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `gather`: one invocation per pixel of the batch. The batch position changes every step, so the
/// uniform is `Dynamic` (one bind group, rewritten).
pub(super) fn gather(
    be: &GpuBackend,
    ds: &GpuDataset,
    start: usize,
    batch: usize,
    x: &GpuTensor,
    y: &GpuTensor,
) {
    let params = Params {
        start: u(start),
        batch: u(batch),
        pixels: u(ds.pixels),
        channels: u(ds.channels),
    };
    be.l.launch(
        Kernel::new(Family::Data, "gather"),
        &[
            (1, &ds.images),
            (2, &ds.labels),
            (3, &ds.order),
            (4, &x.buf),
            (5, &y.buf),
            (6, &ds.table),
        ],
        &params,
        ParamsKind::Dynamic,
        Launcher::groups_1d(batch * ds.pixels),
    );
}

params_layout_test!(Family::Data, Params, [start, batch, pixels, channels]);

//! `shaders/matmul.wgsl`: the matrix products of every Linear and Conv2d, forward and backward.
//! CPU twin: `CpuBackend::matmul` (the gemm crate, `backend/cpu_matmul.rs`). Tests: `tests/gpu_ops.rs` `matmul_*`.

use super::launch::{Family, Kernel, Launcher, ParamsKind};
use super::{u, GpuBackend, GpuTensor, KernelStyle, Scratch};
use crate::backend::{Gemm, Trans};
use bytemuck::{Pod, Zeroable};

/// The uniform at binding 0 (WGSL `Params`): the shape and the split-K slicing.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    m: u32,
    k: u32,
    n: u32,
    accumulate: u32,
    k_split: u32,
    splits: u32,
    epilogue: u32,
    _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

impl KernelStyle {
    /// Workgroups a dispatch should reach before its K is split: enough to occupy every compute unit
    /// of a real GPU several times over, or every thread of a CPU-emulated adapter. A constant, so a
    /// given shape is always split the same way (and sums in the same order) on a given adapter. On
    /// lavapipe (2 cores) 8 beat 16, 4 and 2: each split costs a pass writing partials and another
    /// summing them, which for fc8-bn's small products outweighed the parallelism gained.
    fn target_workgroups(self) -> usize {
        match self {
            KernelStyle::Tiled => 256,
            KernelStyle::Direct => 8,
        }
    }
}

/// Rows and columns of C per workgroup (64x64 tiles; the subgroup kernels' default shape).
const TILE: usize = 64;
/// Rows and columns of C per workgroup of `matmul_tiled_small`.
const SMALL_TILE: usize = 16;
/// K per slice is a multiple of this (the kernels' accumulation blocks).
const K_BLOCK: usize = 256;

/// `entry` of `family` specialised to the transposed form of `g`: a pipeline per form, fixed strides
/// inside.
fn kernel(family: Family, entry: &'static str, g: &Gemm) -> Kernel {
    let t = |x: Trans| (x == Trans::T) as u32;
    Kernel::new(family, entry).with_consts(&["A_T", "B_T"], &[t(g.ta), t(g.tb)])
}

/// The subgroup twin (matmul_sg.wgsl) of a vec4 kernel: same blocking, shared A loads.
fn subgroup_entry(vec4: &'static str) -> &'static str {
    match vec4 {
        "matmul_nn_v4" => "matmul_nn_sg",
        "matmul_nt_v4" => "matmul_nt_sg",
        "matmul_tn_v4" => "matmul_tn_sg",
        other => unreachable!("{other} has no subgroup twin"),
    }
}

/// The vec4 kernel of a CPU-emulated adapter for `g`'s form, if the dimension it reads as vec4 is a
/// multiple of 4 (the rest run `matmul_direct`).
fn vec4_entry(g: &Gemm) -> Option<&'static str> {
    let four = |x: usize| x.is_multiple_of(4);
    match (g.ta, g.tb) {
        (Trans::N, Trans::N) if four(g.k) && four(g.n) => Some("matmul_nn_v4"),
        (Trans::N, Trans::T) if four(g.k) => Some("matmul_nt_v4"),
        (Trans::T, Trans::N) if four(g.m) && four(g.n) => Some("matmul_tn_v4"),
        _ => None,
    }
}

/// `(splits, k_split)`: how many K slices a product of `tiles` workgroups gets so that the dispatch
/// reaches `target` workgroups, each slice at least [`K_BLOCK`] long and a multiple of it.
pub(super) fn split_k(k: usize, tiles: usize, target: usize) -> (usize, usize) {
    let want = target.div_ceil(tiles.max(1)).min(k.div_ceil(K_BLOCK));
    if want <= 1 {
        return (1, k);
    }
    let k_split = k.div_ceil(want).next_multiple_of(K_BLOCK);
    (k.div_ceil(k_split), k_split)
}

/// Which kernel runs a product, with which tile, and how many tiles cover C.
#[derive(Debug, PartialEq)]
struct Plan {
    family: Family,
    entry: &'static str,
    /// The bindings of A and B: 5 and 6 for the kernels that read them as vec4, else 1 and 2.
    ab: (u32, u32),
    /// The subgroup kernels' override constants RG and CG (see matmul_sg.wgsl).
    rg: usize,
    cg: usize,
    /// Workgroups along n and m (before split-K).
    tiles: (usize, usize),
}

/// Picks the kernel for `g` on an adapter of `style` (`subgroups`: it has 8-lane subgroups).
/// Real GPUs: 64x64 tiles, or 16x16 where C has fewer than 64 rows or columns and 64x64 tiles would
/// not reach the target number of workgroups. CPU-emulated adapters: the subgroup or vec4 kernels
/// where the vec4 dimension allows, tiled 8 RG rows x 512 / RG columns (as few row blocks as cover m),
/// or for an NT product with fewer columns than rows and under 64 of them, B shared
/// (matmul_nt_sg_cols: 512 / CG rows x 8 CG columns); else matmul_direct.
fn plan(style: KernelStyle, subgroups: bool, g: &Gemm) -> Plan {
    let (m, n) = (g.m, g.n);
    let small =
        (m < TILE || n < TILE) && n.div_ceil(TILE) * m.div_ceil(TILE) < style.target_workgroups();
    let (family, entry, ab) = match (style, vec4_entry(g)) {
        (KernelStyle::Tiled, _) if small => (Family::Matmul, "matmul_tiled_small", (1, 2)),
        (KernelStyle::Tiled, _) => (Family::Matmul, "matmul_tiled", (1, 2)),
        (KernelStyle::Direct, Some(e)) if subgroups => {
            (Family::MatmulSg, subgroup_entry(e), (5, 6))
        }
        (KernelStyle::Direct, Some(e)) => (Family::Matmul, e, (5, 6)),
        (KernelStyle::Direct, None) => (Family::Matmul, "matmul_direct", (1, 2)),
    };
    let blocks = |x: usize| x.div_ceil(8).next_power_of_two().min(8);
    let (entry, rg, cg) = match family {
        Family::MatmulSg if entry == "matmul_nt_sg" && n < TILE && n < m => {
            ("matmul_nt_sg_cols", 8, blocks(n))
        }
        Family::MatmulSg => (entry, blocks(m), 8),
        _ => (entry, TILE / 8, 8),
    };
    let tiles = match entry {
        "matmul_nt_sg_cols" => (n.div_ceil(8 * cg), m.div_ceil(TILE * 8 / cg)),
        "matmul_tiled_small" => (n.div_ceil(SMALL_TILE), m.div_ceil(SMALL_TILE)),
        _ => (n.div_ceil(TILE * 8 / rg), m.div_ceil(8 * rg)),
    };
    Plan {
        family,
        entry,
        ab,
        rg,
        cg,
        tiles,
    }
}

/// What a matmul adds to each finished element of C (the `epilogue` flags of the WGSL).
pub(super) struct Epilogue<'a> {
    pub bias: Option<&'a GpuTensor>,
    pub act: Option<crate::backend::Act>,
}

/// Records `c = op(a) * op(b) (+ c)`, then `+ bias` and ReLU as `epi` asks: one dispatch of the
/// [`plan`]'s tiles times the split-K slices, and, when K is split, `splitk_sum` adding the slices'
/// partials (in a scratch buffer) in order into C.
pub(super) fn matmul(
    be: &GpuBackend,
    g: &Gemm,
    a: &GpuTensor,
    b: &GpuTensor,
    c: &GpuTensor,
    epi: Epilogue<'_>,
) {
    let (m, k, n) = (g.m, g.k, g.n);
    assert!(
        a.len >= m * k && b.len >= k * n && c.len >= m * n,
        "matmul shape"
    );
    if m == 0 || n == 0 {
        return;
    }
    let flags = epi.bias.is_some() as u32 | crate::backend::Act::code_of(epi.act) << 1;
    // Every kernel declares the bias binding; without a bias it gets B again (never read).
    let bias = epi.bias.map_or(&b.buf, |t| &t.buf);
    let target = be.style.target_workgroups();
    let Plan {
        family,
        entry,
        ab,
        rg,
        cg,
        tiles,
    } = plan(be.style, be.subgroup_kernels, g);
    let (splits, k_split) = split_k(k, tiles.0 * tiles.1, target);
    let params = Params {
        m: u(m),
        k: u(k),
        n: u(n),
        accumulate: (g.accumulate && splits == 1) as u32,
        k_split: u(k_split),
        splits: u(splits),
        // Applied where C is finished: by splitk_sum when K is split, never to the partials.
        epilogue: if splits == 1 { flags } else { 0 },
        _pad1: 0,
    };
    // The vec4 kernels bind A and B as arrays of vec4 (bindings 5 and 6), the others as f32 (1 and 2).
    let kernel = match family {
        Family::MatmulSg => {
            let t = |x: Trans| (x == Trans::T) as u32;
            Kernel::new(family, entry).with_consts(
                &["A_T", "B_T", "RG", "CG"],
                &[t(g.ta), t(g.tb), rg as u32, cg as u32],
            )
        }
        _ => kernel(family, entry, g),
    };
    let groups = (u(tiles.0), u(tiles.1), u(splits));
    if splits == 1 {
        let bufs = [(ab.0, &a.buf), (ab.1, &b.buf), (3, &c.buf), (7, bias)];
        be.l.launch(kernel, &bufs, &params, ParamsKind::Static, groups);
        return;
    }
    let partial = be.scratch(Scratch::SplitK, splits * m * n);
    let bufs = [(ab.0, &a.buf), (ab.1, &b.buf), (3, &partial), (7, bias)];
    be.l.launch(kernel, &bufs, &params, ParamsKind::Static, groups);
    let sum = Params {
        accumulate: g.accumulate as u32,
        epilogue: flags,
        ..params
    };
    be.l.launch(
        Kernel::new(Family::Matmul, "splitk_sum"),
        &[(3, &c.buf), (4, &partial), (7, bias)],
        &sum,
        ParamsKind::Static,
        Launcher::groups_1d(m * n),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel each layer shape of the models gets, and that every lane of a tile has real work.
    #[test]
    fn plans_fit_the_shape() {
        let nt = |m, k, n| Gemm::new(m, k, n).b_t();
        let tn = |m, k, n| Gemm::new(m, k, n).a_t();
        let real = |g: &Gemm| plan(KernelStyle::Tiled, false, g);
        // fc8's first layer on a GPU: 64x64 tiles. A conv's dW (16 x 144, K = 86,240): 16x16 tiles,
        // one row of them instead of a 64-row tile with 48 empty rows.
        assert_eq!(real(&nt(110, 784, 256)).entry, "matmul_tiled");
        let dw = real(&tn(16, 86_240, 144));
        assert_eq!((dw.entry, dw.tiles), ("matmul_tiled_small", (9, 1)));
        // Big enough in both dimensions, or enough 64x64 tiles anyway: the big tile.
        assert_eq!(real(&nt(32_768, 64, 32)).entry, "matmul_tiled");
        assert_eq!(real(&nt(4096, 64, 32)).entry, "matmul_tiled_small");
        // lavapipe: the same dW with 2 row blocks (16 rows) per tile, the conv forward (86,240 x 16)
        // with B shared across lanes and 2 column blocks, and no subgroups: the vec4 kernels.
        let emu = |g: &Gemm, sg| plan(KernelStyle::Direct, sg, g);
        let dw = emu(&tn(16, 86_240, 144), true);
        assert_eq!((dw.entry, dw.rg, dw.tiles), ("matmul_tn_sg", 2, (1, 1)));
        let fwd = emu(&nt(86_240, 144, 16), true);
        assert_eq!(
            (fwd.entry, fwd.cg, fwd.tiles),
            ("matmul_nt_sg_cols", 2, (1, 337))
        );
        assert_eq!(emu(&nt(110, 784, 256), false).entry, "matmul_nt_v4");
        // Each vec4 kernel and its subgroup twin, NN included.
        let nn = Gemm::new(8, 8, 8);
        assert_eq!(emu(&nn, false).entry, "matmul_nn_v4");
        assert_eq!(emu(&nn, true).entry, "matmul_nn_sg");
        assert_eq!(emu(&nt(8, 8, 8), true).entry, "matmul_nt_sg");
        assert_eq!(emu(&tn(8, 8, 8), false).entry, "matmul_tn_v4");
        // conv1's K = 9 taps is no multiple of 4: the scalar kernel.
        assert_eq!(emu(&nt(86_240, 9, 16), true).entry, "matmul_direct");
    }

    #[test]
    fn split_k_fills_the_target_in_whole_blocks() {
        // A conv's weight gradient: 16 x 144 output (3 tiles), K = 86,240.
        let (s, ks) = split_k(86_240, 3, 256);
        assert_eq!(ks % 256, 0);
        assert_eq!(s, 86_240usize.div_ceil(ks));
        // Slices cover K exactly once; their count is the target's (86) but for rounding to blocks.
        assert!(s * ks >= 86_240 && (s - 1) * ks < 86_240, "{s} x {ks}");
        assert!((80..=86).contains(&s), "{s} x {ks}");
        // Enough tiles already, or too short a K: no split.
        assert_eq!(split_k(512, 64, 16), (1, 512));
        assert_eq!(split_k(200, 1, 256), (1, 200));
        assert_eq!(split_k(0, 1, 256), (1, 0));
        // 784 over 2 slices of 512 (the last one short).
        assert_eq!(split_k(784, 8, 16), (2, 512));
    }
}

params_layout_test!(
    Family::Matmul,
    Params,
    [m, k, n, accumulate, k_split, splits, epilogue, _pad1]
);

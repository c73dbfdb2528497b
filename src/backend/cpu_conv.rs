//! The CPU backend's convolutions: im2col, col2im, and forward and backward passes that build the
//! column matrix a tile at a time, in cache, and multiply it there.
//!
//! Materialised whole, a column matrix is megabytes (cnn7-bn's second convolution: 21,560 x 144
//! floats, 12 MB at batch 110): im2col streams it out to memory and the matmul streams it back. Built
//! in tiles of [`TILE_BYTES`] on the thread that multiplies them, it stays in the core's cache. The
//! arithmetic is the unfused sequence's, element for element: the forward's and dx's products are
//! row-independent (each output row is the same `gemm` dot product however many rows a call has, down
//! to [`MIN_TILE_ROWS`]), and the weight gradient keeps [`cpu_matmul::matmul`]'s k slices, partials
//! and sums. So the bits are those of im2col + matmul + col2im, on any number of threads
//! (`tests/cpu_conv.rs`).

use super::cpu_conv_direct::{self, DIRECT_MAX_TAPS, MIN_TILE_ROWS};
use super::cpu_matmul::{self, with_tile, K_SLICE};
use super::wide::multiversion;
use super::{conv_backward_unfused, Backend, ConvBackward, ConvForward, ConvGeom, Gemm};
use rayon::prelude::*;

/// Bytes of one tile of the column matrix: well inside a core's L2 cache beside the weights and the
/// output rows.
const TILE_BYTES: usize = 512 << 10;

/// Rows of the column matrix per tile: as many as fill [`TILE_BYTES`], at least [`MIN_TILE_ROWS`].
fn tile_rows(g: &ConvGeom) -> usize {
    (TILE_BYTES / 4 / g.col_cols()).max(MIN_TILE_ROWS)
}

/// `0..total` in consecutive near-equal parts of at least `want` (or one part, the whole), and `data`
/// (`per` elements per unit) cut to match: (first unit, its slice) per part.
fn parts<T>(data: &mut [T], per: usize, total: usize, want: usize) -> Vec<(usize, &mut [T])> {
    let n = (total / want.max(1)).max(1);
    let mut rest = &mut data[..total * per];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (start, end) = (i * total / n, (i + 1) * total / n);
        let (part, tail) = std::mem::take(&mut rest).split_at_mut((end - start) * per);
        out.push((start, part));
        rest = tail;
    }
    out
}

/// `y = act(im2col(x) W^T + bias)`, tile by tile in parallel; `col` is left untouched (returns false:
/// it does not hold the columns).
pub fn forward(
    g: &ConvGeom,
    out_c: usize,
    f: ConvForward<'_, Vec<f32>>,
    bias_act: impl Fn(&mut [f32]) + Sync,
) -> bool {
    let (rows, taps) = (g.col_rows(), g.col_cols());
    let (x, w) = (&f.x[..], &f.w[..]);
    let direct = one_channel_direct(g, out_c);
    // The one-channel kernel where it applies, else a lane per output channel where that does.
    let by_channel = !direct && cpu_conv_direct::by_channel_direct(g, out_c);
    let wt = if by_channel {
        cpu_conv_direct::tap_major_weights(g, w, out_c)
    } else {
        Vec::new()
    };
    parts(f.y, out_c, rows, tile_rows(g))
        .into_par_iter()
        .for_each(|(r0, yt)| {
            if direct {
                one_channel_rows(g, x, w, out_c, r0, yt);
            } else if by_channel {
                cpu_conv_direct::by_channel_rows(g, x, &wt, out_c, r0, yt);
            } else {
                let n = yt.len() / out_c;
                with_tile(n * taps, |col| {
                    im2col_rows(g, x, r0, col);
                    cpu_matmul::matmul_here(&Gemm::new(n, taps, out_c).b_t(), col, w, yt);
                });
            }
            bias_act(yt);
        });
    false
}

/// Whether the forward of `g` goes by [`one_channel_rows`]: one input channel (a grey image's first
/// convolution, whose column rows of k*k floats made im2col and a skinny product most of LeNet-5's
/// step), 2 to [`DIRECT_MAX_OUT`] outputs (more go by `cpu_conv_direct`'s lane per channel), and on
/// AVX-512, where `gemm`'s sum of each output is one fused multiply-add chain over the taps in order
/// from zero. Elsewhere `gemm` takes other paths
/// that round differently (matrix-vector for one output, other kernels below [`MIN_TILE_ROWS`] rows or
/// for a 1x1 kernel, blocks past [`DIRECT_MAX_TAPS`] taps), so those keep im2col and the product.
fn one_channel_direct(g: &ConvGeom, out_c: usize) -> bool {
    let fma = super::wide::has_x86_64_v4();
    fma && g.c == 1
        && g.k >= 2
        && g.k * g.k <= DIRECT_MAX_TAPS
        && (2..=DIRECT_MAX_OUT).contains(&out_c)
        && g.col_rows() >= MIN_TILE_ROWS
}

/// Most output channels [`one_channel_rows`] keeps in its accumulators, a lane per pixel.
const DIRECT_MAX_OUT: usize = 8;

multiversion! {
    /// Rows `r0..` of `y = im2col(x) W^T` (before the bias) for one input channel, without the column
    /// matrix, [`PX`] output pixels of an output row at a time, their sums in registers (the channel
    /// count rounded up to 4, 6 or 8, a constant of each compiled copy; a lane per pixel). Each output
    /// is a fused multiply-add chain over the taps in order from zero, as `gemm` sums it, so the bits
    /// are the unfused product's (`tests/cpu_conv.rs`).
    pub fn one_channel_rows(g: &ConvGeom, x: &[f32], w: &[f32], out_c: usize, r0: usize, y: &mut [f32]) {
        assert!(g.c == 1 && out_c <= DIRECT_MAX_OUT);
        match out_c {
            ..=4 => one_channel_rows_of::<4>(g, x, w, out_c, r0, y),
            5..=6 => one_channel_rows_of::<6>(g, x, w, out_c, r0, y),
            _ => one_channel_rows_of::<8>(g, x, w, out_c, r0, y),
        }
    }
}

/// Output pixels [`one_channel_rows`] computes together.
const PX: usize = 16;

/// [`one_channel_rows`] with `OC` channels' sums (`out_c` of them stored); inlined into its
/// AVX-512 copy.
#[inline(always)]
fn one_channel_rows_of<const OC: usize>(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    out_c: usize,
    r0: usize,
    y: &mut [f32],
) {
    let (oh, ow, k, s) = (g.out_h(), g.out_w(), g.k, g.stride);
    let taps = k * k;
    // The weights tap-major, OC to a tap, zero past out_c.
    let mut wt = vec![[0.0f32; OC]; taps];
    for (oc, wo) in w.chunks_exact(taps).take(out_c).enumerate() {
        for (wt, &v) in wt.iter_mut().zip(wo) {
            wt[oc] = v;
        }
    }
    // The k image rows under an output row, zero-padded, long enough for a chunk of PX pixels
    // starting at any output column.
    let span = (ow + PX) * s + k;
    let mut padded = vec![0.0f32; k * span];
    let end = r0 + y.len() / out_c;
    let mut r = r0;
    while r < end {
        let (n, p) = (r / (oh * ow), r % (oh * ow));
        let (oy, ox_start) = (p / ow, p % ow);
        let ox_end = ow.min(ox_start + (end - r));
        for (ky, dst) in padded.chunks_exact_mut(span).enumerate() {
            dst.fill(0.0);
            if let Some(iy) = image_row(g, oy, ky) {
                let src = &x[(n * g.h + iy) * g.w..][..g.w];
                dst[g.pad..g.pad + g.w].copy_from_slice(src);
            }
        }
        let mut ox0 = ox_start;
        while ox0 < ox_end {
            let count = PX.min(ox_end - ox0);
            let first = r - r0 + (ox0 - ox_start);
            let yt = &mut y[first * out_c..(first + count) * out_c];
            let at = ox0 * s;
            let rows = PaddedRows {
                data: &padded,
                span,
                k,
                stride: s,
            };
            one_channel_chunk_by_pixel::<OC>(rows, at, &wt, out_c, yt);
            ox0 += count;
        }
        r += ox_end - ox_start;
    }
}

/// [`PX`] pixels' outputs (the first pixel's taps at `at` in the padded rows; `y` holds `out_c`
/// outputs of each pixel there is), each output channel's sums one register with a lane per pixel,
/// transposed as they are stored. For up to 8 channels, where a lane per channel leaves most of each
/// register empty (LeNet-5's 6: 1.6 ms a step against 1.9-2.3).
#[inline(always)]
fn one_channel_chunk_by_pixel<const OC: usize>(
    rows: PaddedRows<'_>,
    at: usize,
    wt: &[[f32; OC]],
    out_c: usize,
    y: &mut [f32],
) {
    let mut acc = [[0.0f32; PX]; OC];
    for (t, wt) in wt.iter().enumerate() {
        let row = rows.tap(t, at);
        // Stride 1 (the usual first convolution) loads the 16 pixels' taps at once.
        let xs: [f32; PX] = if rows.stride == 1 {
            row[..PX].try_into().expect("PX floats")
        } else {
            std::array::from_fn(|i| row[i * rows.stride])
        };
        for (a, &wv) in acc.iter_mut().zip(wt) {
            for (a, &v) in a.iter_mut().zip(&xs) {
                *a = v.mul_add(wv, *a);
            }
        }
    }
    for (i, yr) in y.chunks_exact_mut(out_c).enumerate() {
        for (v, a) in yr.iter_mut().zip(&acc) {
            *v = a[i];
        }
    }
}

/// The k zero-padded image rows under one output row, `span` floats each.
#[derive(Clone, Copy)]
struct PaddedRows<'a> {
    data: &'a [f32],
    span: usize,
    k: usize,
    stride: usize,
}

impl PaddedRows<'_> {
    /// Tap `t`'s values from the pixel whose first tap is at `at`: every `stride`-th float on.
    #[inline(always)]
    fn tap(&self, t: usize, at: usize) -> &[f32] {
        &self.data[(t / self.k) * self.span + at + t % self.k..]
    }
}

/// `dw (+)= dy^T im2col(x)` in [`K_SLICE`] slices whose columns are built as they are multiplied, and
/// `dx = col2im(dy W)` image tile by image tile. A batch of one slice or less goes the unfused way.
pub fn backward<B: Backend<Tensor = Vec<f32>>>(
    be: &B,
    g: &ConvGeom,
    out_c: usize,
    b: ConvBackward<'_, Vec<f32>>,
) {
    let (rows, taps) = (g.col_rows(), g.col_cols());
    if rows <= K_SLICE || b.col_ready {
        return conv_backward_unfused(be, g, out_c, b);
    }
    let x = &b.x[..];
    let mut dw = Gemm::new(out_c, rows, taps).a_t();
    if b.accumulate {
        dw = dw.accumulate();
    }
    if one_channel_dw_direct(g, out_c) {
        let padded = padded_images(g, x);
        let slice = |ks: std::ops::Range<usize>, partial: &mut [f32]| {
            one_channel_dw_slice(g, &padded, b.dy, out_c, ks, partial)
        };
        cpu_matmul::split_k(&dw, b.dw, true, slice);
    } else {
        let columns =
            |ks: std::ops::Range<usize>, tile: &mut [f32]| im2col_rows(g, x, ks.start, tile);
        cpu_matmul::matmul_b_by_slices(&dw, b.dy, columns, b.dw);
    }
    let Some(dx) = b.dx else { return };
    let (per_image, image_len) = (g.out_h() * g.out_w(), g.h * g.w * g.c);
    let images = tile_rows(g).div_ceil(per_image);
    let (dy, w) = (&b.dy[..], &b.w[..]);
    parts(dx, image_len, g.n, images)
        .into_par_iter()
        .for_each(|(n0, dxt)| {
            let r0 = n0 * per_image;
            let n = dxt.len() / image_len * per_image;
            with_tile(n * taps, |dcol| {
                let gemm = Gemm::new(n, out_c, taps);
                cpu_matmul::matmul_here(&gemm, &dy[r0 * out_c..], w, dcol);
                for (dxi, coli) in dxt.chunks_mut(image_len).zip(dcol.chunks(per_image * taps)) {
                    col2im_image(g, coli, dxi);
                }
            });
        });
}

/// Whether the weight gradient of `g` (past one [`K_SLICE`] of rows) goes by
/// [`one_channel_dw_slice`]: one input channel, a 2x2, 3x3, 4x4 or 5x5 kernel and 2 to 16 outputs (32
/// for 3x3), on AVX-512. `gemm` runs each slice's product `dy^T col` as the `[taps x k] [k x out_c]`
/// product (it turns a row-major result into a column-major one), and with both sides at most 64 that
/// is its packed kernel with k blocks of 512, except for slices of 1 or 2 rows (its `gevv`, without
/// fused multiply-adds): the rounding [`one_channel_dw_slice`] repeats.
fn one_channel_dw_direct(g: &ConvGeom, out_c: usize) -> bool {
    let fma = super::wide::has_x86_64_v4();
    let most_out = if g.k == 3 { 32 } else { 16 };
    fma && g.c == 1 && (2..=5).contains(&g.k) && (2..=most_out).contains(&out_c)
}

/// `gemm`'s depth block when both sides of a product are at most 64: its sums are fused
/// multiply-add chains from zero over blocks of this many of k, each block then added to the total.
const GEMM_SMALL_KC: usize = 512;

/// The batch's images zero-padded on every side by `g.pad`, one channel: each tap of each output
/// pixel is then one load at a fixed offset, with no test for the border.
fn padded_images(g: &ConvGeom, x: &[f32]) -> Vec<f32> {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let mut out = vec![0.0f32; g.n * hp * wp];
    for (img, src) in out.chunks_exact_mut(hp * wp).zip(x.chunks_exact(g.h * g.w)) {
        cpu_conv_direct::pad_image(g, src, wp, img);
    }
    out
}

multiversion! {
    /// One [`K_SLICE`] of a one-channel convolution's weight gradient, `partial = dy[ks]^T col[ks]`
    /// (`[out_c x taps]`), without the column matrix, rounded as `gemm` rounds it (see
    /// [`one_channel_dw_direct`]): per output a fused multiply-add chain from zero over each block of
    /// [`GEMM_SMALL_KC`] rows in order, the blocks added; a slice of 1 or 2 rows as plain products
    /// and their sum. Each row loads its `dy` (a lane per output channel) and each tap's value from
    /// `padded` ([`padded_images`]); the sums stay in registers.
    pub fn one_channel_dw_slice(
        g: &ConvGeom,
        padded: &[f32],
        dy: &[f32],
        out_c: usize,
        ks: std::ops::Range<usize>,
        partial: &mut [f32],
    ) {
        match (g.k, out_c) {
            (2, ..=8) => dw_slice_of::<4, 8, 4>(g, padded, dy, out_c, ks, partial),
            (2, _) => dw_slice_of::<4, 16, 4>(g, padded, dy, out_c, ks, partial),
            (3, ..=8) => dw_slice_of::<9, 8, 9>(g, padded, dy, out_c, ks, partial),
            (3, ..=16) => dw_slice_of::<9, 16, 9>(g, padded, dy, out_c, ks, partial),
            (3, _) => dw_slice_of::<9, 32, 9>(g, padded, dy, out_c, ks, partial),
            (4, ..=8) => dw_slice_of::<16, 8, 8>(g, padded, dy, out_c, ks, partial),
            (4, _) => dw_slice_of::<16, 16, 8>(g, padded, dy, out_c, ks, partial),
            (5, ..=8) => dw_slice_of::<25, 8, 13>(g, padded, dy, out_c, ks, partial),
            _ => dw_slice_of::<25, 16, 13>(g, padded, dy, out_c, ks, partial),
        }
    }
}

/// [`one_channel_dw_slice`] with `TAPS` taps (k * k) and `OC` lanes of output channels (`out_c` of
/// them used), the rows walked once per group of `G` taps (at most 16 sums in registers). Its helpers
/// are functions inlined into the AVX-512 copy, not closures: a closure is compiled on its own,
/// without the copy's features, and its `mul_add` would be a library call.
#[inline(always)]
fn dw_slice_of<const TAPS: usize, const OC: usize, const G: usize>(
    g: &ConvGeom,
    padded: &[f32],
    dy: &[f32],
    out_c: usize,
    ks: std::ops::Range<usize>,
    partial: &mut [f32],
) {
    assert!(g.k * g.k == TAPS && out_c <= OC && ks.end <= g.col_rows());
    let wp = g.w + 2 * g.pad;
    let offsets: [usize; TAPS] = std::array::from_fn(|t| (t / g.k) * wp + t % g.k);
    let rows = DwRows {
        g,
        padded,
        dy,
        out_c,
        offsets,
    };
    let total = match ks.len() {
        // `gemm`'s gevv: `l1 * r1 + l0 * r0`, each product and the sum rounded.
        1 | 2 => {
            let mut acc = [[0.0f32; OC]; TAPS];
            for (i, r) in ks.clone().enumerate() {
                let (d, base) = (rows.dy_row::<OC>(r), rows.base(r));
                for (a, &off) in acc.iter_mut().zip(&offsets) {
                    for (a, &d) in a.iter_mut().zip(&d) {
                        let p = padded[base + off] * d;
                        *a = if i == 0 { p } else { p + *a };
                    }
                }
            }
            acc
        }
        _ => {
            let mut total = rows.chain::<OC, G>(ks.start..ks.end.min(ks.start + GEMM_SMALL_KC));
            let mut at = ks.start + GEMM_SMALL_KC;
            while at < ks.end {
                let block = rows.chain::<OC, G>(at..ks.end.min(at + GEMM_SMALL_KC));
                for (t, b) in total.iter_mut().zip(&block) {
                    t.iter_mut().zip(b).for_each(|(t, b)| *t += b);
                }
                at += GEMM_SMALL_KC;
            }
            total
        }
    };
    for (oc, row) in partial.chunks_exact_mut(TAPS).take(out_c).enumerate() {
        for (p, a) in row.iter_mut().zip(&total) {
            *p = a[oc];
        }
    }
}

/// What [`dw_slice_of`] reads: the padded images, `dy`, and each tap's offset from a pixel's first
/// (an array of `TAPS`, so the loops over it have a constant trip count and unroll).
#[derive(Clone, Copy)]
struct DwRows<'a, const TAPS: usize> {
    g: &'a ConvGeom,
    padded: &'a [f32],
    dy: &'a [f32],
    out_c: usize,
    offsets: [usize; TAPS],
}

impl<const TAPS: usize> DwRows<'_, TAPS> {
    /// Row `r`'s dy, a lane per output channel. Past `out_c` the lanes hold whatever follows (the
    /// next row's dy, or zero at the end): their sums are never stored. One wide load where it fits,
    /// since `out_c` narrow stores read back as one vector stall the load.
    #[inline(always)]
    fn dy_row<const OC: usize>(&self, r: usize) -> [f32; OC] {
        let start = r * self.out_c;
        if let Some(wide) = self.dy.get(start..start + OC) {
            return wide.try_into().expect("OC floats");
        }
        let mut d = [0.0f32; OC];
        for (d, &v) in d.iter_mut().zip(&self.dy[start..start + self.out_c]) {
            *d = v;
        }
        d
    }

    /// The offset in the padded images of row `r`'s first tap.
    #[inline(always)]
    fn base(&self, r: usize) -> usize {
        let g = self.g;
        let (oh, ow) = (g.out_h(), g.out_w());
        let (n, p) = (r / (oh * ow), r % (oh * ow));
        (n * (g.h + 2 * g.pad) + (p / ow) * g.stride) * (g.w + 2 * g.pad) + (p % ow) * g.stride
    }

    /// Per tap, per output channel: one fused multiply-add chain from zero over the rows `rs`, in
    /// order, `G` taps at a time.
    #[inline(always)]
    fn chain<const OC: usize, const G: usize>(
        &self,
        rs: std::ops::Range<usize>,
    ) -> [[f32; OC]; TAPS] {
        let mut acc = [[0.0f32; OC]; TAPS];
        for first in (0..TAPS).step_by(G) {
            let group = self.chain_group::<OC, G>(rs.clone(), first);
            for (a, g) in acc[first..].iter_mut().zip(&group) {
                *a = *g;
            }
        }
        acc
    }

    /// [`Self::chain`] for taps `first..first + G` (a tap past the last repeats the first, and is
    /// dropped by the caller). `G` sums and their offsets are local arrays, so the tap loop unrolls
    /// and the sums stay in registers across the rows.
    #[inline(always)]
    fn chain_group<const OC: usize, const G: usize>(
        &self,
        rs: std::ops::Range<usize>,
        first: usize,
    ) -> [[f32; OC]; G] {
        let offsets: [usize; G] = std::array::from_fn(|i| self.offsets[(first + i) % TAPS]);
        let ow = self.g.out_w();
        let mut acc = [[0.0f32; OC]; G];
        let (mut base, mut ox) = (self.base(rs.start), rs.start % ow);
        for r in rs {
            let d = self.dy_row::<OC>(r);
            for (a, &off) in acc.iter_mut().zip(&offsets) {
                let v = self.padded[base + off];
                for (a, &d) in a.iter_mut().zip(&d) {
                    *a = v.mul_add(d, *a);
                }
            }
            ox += 1;
            if ox == ow {
                ox = 0;
                base = self.base(r + 1);
            } else {
                base += self.g.stride;
            }
        }
        acc
    }
}

/// Rows `r0..` of the column matrix, as many as `col` holds (see [`im2col_row`]). The common short
/// kernel rows (k * c = 3, 5, 9 floats: a grey or RGB image's first convolution) get their own loop
/// with copies of a size known when compiled.
pub fn im2col_rows(g: &ConvGeom, x: &[f32], r0: usize, col: &mut [f32]) {
    match g.k * g.c {
        3 => im2col_rows_of::<3>(g, x, r0, col),
        5 => im2col_rows_of::<5>(g, x, r0, col),
        9 => im2col_rows_of::<9>(g, x, r0, col),
        _ => im2col_rows_of::<0>(g, x, r0, col),
    }
}

/// [`im2col_rows`] with kernel rows of `KC` floats (0: known only at run time). It walks the output
/// pixels in order instead of dividing out each row's position, keeps the image offset of each
/// kernel row while the output row stays the same, and copies whole kernel rows for the pixels whose
/// kernel lies inside the image across; the others (and the padding) go through [`im2col_row`].
fn im2col_rows_of<const KC: usize>(g: &ConvGeom, x: &[f32], r0: usize, col: &mut [f32]) {
    let (oh, ow, k, c) = (g.out_h(), g.out_w(), g.k, g.c);
    let kc = k * c;
    debug_assert!(KC == 0 || KC == kc);
    let (mut n, p) = (r0 / (oh * ow), r0 % (oh * ow));
    let (mut oy, mut ox) = (p / ow, p % ow);
    // Offset in `x` of image row iy(ky) of output row (n, oy), or None where it is padding.
    let row_offsets = |n: usize, oy: usize, out: &mut Vec<Option<usize>>| {
        out.clear();
        out.extend((0..k).map(|ky| image_row(g, oy, ky).map(|iy| (n * g.h + iy) * g.w * c)));
    };
    let mut offsets = Vec::with_capacity(k);
    row_offsets(n, oy, &mut offsets);
    for row in col.chunks_exact_mut(g.col_cols()) {
        let x0 = (ox * g.stride) as isize - g.pad as isize;
        if x0 >= 0 && x0 as usize + k <= g.w {
            let at = x0 as usize * c;
            for (dst, off) in row.chunks_exact_mut(kc).zip(&offsets) {
                match off {
                    Some(o) if KC > 0 => dst[..KC].copy_from_slice(&x[o + at..o + at + KC]),
                    Some(o) => copy_run(dst, &x[o + at..o + at + kc]),
                    None => zero_run(dst),
                }
            }
        } else {
            im2col_row(g, x, n, oy, ox, row);
        }
        ox += 1;
        if ox == ow {
            ox = 0;
            oy += 1;
            if oy == oh {
                oy = 0;
                n += 1;
            }
            row_offsets(n, oy, &mut offsets);
        }
    }
}

/// The column row of output pixel (`oy`, `ox`) of image `n`: its k*k*c taps, zero where the kernel
/// hangs over the padding.
#[inline(always)]
fn im2col_row(g: &ConvGeom, x: &[f32], n: usize, oy: usize, ox: usize, row: &mut [f32]) {
    let c = g.c;
    // A kernel row's taps are contiguous in the image (NHWC) and in the column row: copy them whole.
    let kc = g.k * c;
    let (kx0, kx1, ix0) = kernel_columns_inside(g, ox);
    for ky in 0..g.k {
        let dst = &mut row[ky * kc..(ky + 1) * kc];
        let Some(iy) = image_row(g, oy, ky).filter(|_| kx0 < kx1) else {
            zero_run(dst);
            continue;
        };
        zero_run(&mut dst[..kx0 * c]);
        zero_run(&mut dst[kx1 * c..]);
        let src = ((n * g.h + iy) * g.w + ix0) * c;
        copy_run(&mut dst[kx0 * c..kx1 * c], &x[src..src + (kx1 - kx0) * c]);
    }
}

/// Copies a short run of a kernel row's taps (k * c floats; the kernel rows of the sizes
/// [`im2col_rows`] compiles in, where the padding cuts them, and all others) in fixed-size moves:
/// `copy_from_slice` of an unknown length calls `memmove`, and on runs this short the call was most of
/// im2col's time (a third of a LeNet-5 CPU step in `perf`).
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    assert_eq!(n, src.len());
    if n > 32 {
        dst.copy_from_slice(src);
    } else if n >= 8 {
        // Whole eights, then the last eight again, overlapping what is already copied.
        for (d, s) in dst.chunks_exact_mut(8).zip(src.chunks_exact(8)) {
            d.copy_from_slice(s);
        }
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// `fill(0.0)` for the same short runs (the padding's share of a row), without a `memset` call.
#[inline(always)]
fn zero_run(dst: &mut [f32]) {
    let n = dst.len();
    if n > 32 {
        dst.fill(0.0);
    } else if n >= 8 {
        for d in dst.chunks_exact_mut(8) {
            d.fill(0.0);
        }
        dst[n - 8..].fill(0.0);
    } else if n >= 4 {
        dst[..4].fill(0.0);
        dst[n - 4..].fill(0.0);
    } else {
        for d in dst {
            *d = 0.0;
        }
    }
}

multiversion! {
    /// One image's `dx` from its rows of the column matrix: each input element gathers its taps in
    /// (oy, ox) order, one tap per output pixel.
    pub fn col2im_image(g: &ConvGeom, col: &[f32], dx: &mut [f32]) {
        let (oh, ow, cc, c) = (g.out_h(), g.out_w(), g.col_cols(), g.c);
        let kc = g.k * c;
        dx.fill(0.0);
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &col[(oy * ow + ox) * cc..(oy * ow + ox + 1) * cc];
                let (kx0, kx1, ix0) = kernel_columns_inside(g, ox);
                if kx0 >= kx1 {
                    continue;
                }
                for ky in 0..g.k {
                    let Some(iy) = image_row(g, oy, ky) else {
                        continue;
                    };
                    let dst = (iy * g.w + ix0) * c;
                    let src = &row[ky * kc + kx0 * c..ky * kc + kx1 * c];
                    dx[dst..dst + src.len()]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(d, s)| *d += s);
                }
            }
        }
    }
}

/// The image row under kernel row `ky` of output row `oy`, or None where that is padding.
#[inline(always)]
fn image_row(g: &ConvGeom, oy: usize, ky: usize) -> Option<usize> {
    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
    (0..g.h as isize).contains(&iy).then_some(iy as usize)
}

/// The kernel columns `kx0..kx1` of output column `ox` that fall inside the image, and the image
/// column `ix0` of the first.
fn kernel_columns_inside(g: &ConvGeom, ox: usize) -> (usize, usize, usize) {
    let x0 = (ox * g.stride) as isize - g.pad as isize;
    let kx0 = (-x0).max(0) as usize;
    let kx1 = (g.w as isize - x0).clamp(0, g.k as isize) as usize;
    (kx0, kx1.max(kx0), (x0 + kx0 as isize).max(0) as usize)
}

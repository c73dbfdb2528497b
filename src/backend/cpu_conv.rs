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

use super::cpu_matmul::{self, with_tile, K_SLICE};
use super::wide::multiversion;
use super::{conv_backward_unfused, Backend, ConvBackward, ConvForward, ConvGeom, Gemm};
use rayon::prelude::*;

/// Bytes of one tile of the column matrix: well inside a core's L2 cache beside the weights and the
/// output rows.
const TILE_BYTES: usize = 512 << 10;

/// The fewest rows a tile's product may have. Below it `gemm` takes other paths for small products
/// (a dot-product kernel when m * n <= 256, matrix-vector at m = 1, another k blocking at m, n <= 64)
/// whose sums round differently from the whole matrix's product.
const MIN_TILE_ROWS: usize = 257;

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
    parts(f.y, out_c, rows, tile_rows(g))
        .into_par_iter()
        .for_each(|(r0, yt)| {
            let n = yt.len() / out_c;
            with_tile(n * taps, |col| {
                im2col_rows(g, x, r0, col);
                cpu_matmul::matmul_here(&Gemm::new(n, taps, out_c).b_t(), col, w, yt);
            });
            bias_act(yt);
        });
    false
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
    let columns = |ks: std::ops::Range<usize>, tile: &mut [f32]| im2col_rows(g, x, ks.start, tile);
    cpu_matmul::matmul_b_by_slices(&dw, b.dy, columns, b.dw);
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

/// Rows `r0..` of the column matrix, as many as `col` holds (see [`im2col_row`]).
pub fn im2col_rows(g: &ConvGeom, x: &[f32], r0: usize, col: &mut [f32]) {
    for (i, row) in col.chunks_mut(g.col_cols()).enumerate() {
        im2col_row(g, x, r0 + i, row);
    }
}

/// Row `r` of the column matrix (output pixel `r` of the batch, image-major): its k*k*c taps, zero
/// where the kernel hangs over the padding.
fn im2col_row(g: &ConvGeom, x: &[f32], r: usize, row: &mut [f32]) {
    let (oh, ow, c) = (g.out_h(), g.out_w(), g.c);
    let (n, p) = (r / (oh * ow), r % (oh * ow));
    let (oy, ox) = (p / ow, p % ow);
    // A kernel row's taps are contiguous in the image (NHWC) and in the column row: copy them whole.
    let kc = g.k * c;
    let (kx0, kx1, ix0) = kernel_columns_inside(g, ox);
    for ky in 0..g.k {
        let dst = &mut row[ky * kc..(ky + 1) * kc];
        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
        if iy < 0 || iy >= g.h as isize || kx0 >= kx1 {
            dst.fill(0.0);
            continue;
        }
        dst[..kx0 * c].fill(0.0);
        dst[kx1 * c..].fill(0.0);
        let src = ((n * g.h + iy as usize) * g.w + ix0) * c;
        dst[kx0 * c..kx1 * c].copy_from_slice(&x[src..src + (kx1 - kx0) * c]);
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
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = (iy as usize * g.w + ix0) * c;
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

/// The kernel columns `kx0..kx1` of output column `ox` that fall inside the image, and the image
/// column `ix0` of the first.
fn kernel_columns_inside(g: &ConvGeom, ox: usize) -> (usize, usize, usize) {
    let x0 = (ox * g.stride) as isize - g.pad as isize;
    let kx0 = (-x0).max(0) as usize;
    let kx1 = (g.w as isize - x0).clamp(0, g.k as isize) as usize;
    (kx0, kx1.max(kx0), (x0 + kx0 as isize).max(0) as usize)
}

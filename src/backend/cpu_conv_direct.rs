//! The CPU backend's direct forward convolution with a lane per output channel (several input
//! channels, or one with more outputs than `cpu_conv`'s lane-per-pixel kernel keeps): each output
//! computed from zero-padded images and the weights, without a column matrix, rounded as `gemm`
//! rounds the column matrix's product.
//!
//! The unfused forward is `im2col(x) W^T`, which `gemm` 0.19 runs as the column-major product
//! `[out_c x taps] [taps x rows]`. With rows past [`MIN_TILE_ROWS`] that is its packed kernel, and with
//! at most [`DIRECT_MAX_TAPS`] taps its depth block holds all of them: each output is one fused
//! multiply-add chain from zero over the taps in order (ky, kx, channel). [`by_channel_rows`] forms
//! the same chain, the padding's zeros included (they can turn a -0 sum into +0), so the bits are the
//! unfused forward's (`tests/cpu_conv.rs`). Building and re-reading the column matrix was a third of
//! the convolutions' forward time in cnn7-bn.

use super::ConvGeom;

/// The fewest rows a product may have for its sums to be `gemm`'s packed kernel's. Below it `gemm`
/// takes other paths for small products (a dot-product kernel when m * n <= 256, matrix-vector at
/// m = 1, another k blocking at m, n <= 64) that round differently; `cpu_conv`'s tiles keep at least
/// this many rows.
pub const MIN_TILE_ROWS: usize = 257;

/// Most taps a direct forward sums: `gemm` adds a longer sum in depth blocks, each chained from zero,
/// and then the blocks.
pub const DIRECT_MAX_TAPS: usize = 512;

/// Whether the forward of `g` can go by [`by_channel_rows`] (`cpu_conv` first takes its lane-per-pixel
/// kernel for one input channel and up to 8 outputs; above, on cnn7's first convolution, this one took
/// 0.5-0.6 ms a step against 1.0-1.4): a kernel of 2 or more, at most [`DIRECT_MAX_TAPS`] taps, 2 to
/// 64 outputs, rows past [`MIN_TILE_ROWS`], weights of at most [`BY_CHANNEL_MAX_WEIGHT_BYTES`], on
/// AVX-512. Elsewhere `gemm` takes paths that round otherwise (more than one depth block, a
/// matrix-vector product for one output, a dot-product kernel for small products).
pub fn by_channel_direct(g: &ConvGeom, out_c: usize) -> bool {
    let fma = super::wide::has_x86_64_v4();
    fma && g.k >= 2
        && g.col_cols() <= DIRECT_MAX_TAPS
        && (2..=64).contains(&out_c)
        && g.col_rows() >= MIN_TILE_ROWS
        && g.col_cols() * lanes_for(out_c) * 4 <= BY_CHANNEL_MAX_WEIGHT_BYTES
}

/// Largest tap-major weights [`by_channel_rows`] takes: every chunk of pixels reads all of them, so
/// they must stay in the core's first-level cache. Past it `gemm`'s blocking is as fast or faster
/// (vgg-small's 14x14x32 -> 64, 72 KB: 4.4 ms a step against 3.6 in one profile).
const BY_CHANNEL_MAX_WEIGHT_BYTES: usize = 40 << 10;

/// The weights tap-major, `lanes` to a tap (out_c rounded up to 16, 32 or 64), zero past out_c: a
/// tap's weights for every output are then one to four vector loads.
pub fn tap_major_weights(g: &ConvGeom, w: &[f32], out_c: usize) -> Vec<f32> {
    let (taps, lanes) = (g.col_cols(), lanes_for(out_c));
    let mut wt = vec![0.0f32; taps * lanes];
    for (oc, wo) in w.chunks_exact(taps).take(out_c).enumerate() {
        for (t, &v) in wo.iter().enumerate() {
            wt[t * lanes + oc] = v;
        }
    }
    wt
}

/// Image `img` (`h x w x c`) into `padded` (rows of `wp` pixels of `c`), behind `g.pad` zero rows
/// and columns. Only the image's own pixels are written: the zeros around them, written when
/// `padded` was made, stay for every image padded into it.
pub fn pad_image(g: &ConvGeom, img: &[f32], wp: usize, padded: &mut [f32]) {
    let c = g.c;
    let row_len = g.w * c;
    for (iy, src) in img.chunks_exact(row_len).enumerate() {
        let at = ((iy + g.pad) * wp + g.pad) * c;
        padded[at..at + row_len].copy_from_slice(src);
    }
}

/// Output-channel lanes for `out_c` outputs.
fn lanes_for(out_c: usize) -> usize {
    match out_c {
        ..=16 => 16,
        17..=32 => 32,
        _ => 64,
    }
}

/// Rows `r0..` of `y = im2col(x) W^T` (before the bias) for `g` (see [`by_channel_direct`]),
/// `wt` from [`tap_major_weights`]. An image at a time is zero-padded into a scratch buffer; then a
/// few output pixels of an output row at a time, each pixel's sums one to four AVX-512 registers with
/// a lane per output channel (16 registers of sums in all), and per tap one broadcast of each pixel's
/// input and one load of the tap's weights per register.
///
/// Written with AVX-512 intrinsics: the same loops in plain Rust were turned by the compiler's
/// vectoriser into gathers across the pixels for 16 outputs (12-40 ms against `gemm`'s 1.3).
pub fn by_channel_rows(
    g: &ConvGeom,
    x: &[f32],
    wt: &[f32],
    out_c: usize,
    r0: usize,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(
            super::wide::has_x86_64_v4(),
            "by_channel_rows needs AVX-512"
        );
        // SAFETY: the CPU has AVX-512F, just checked.
        unsafe { avx512::rows(g, x, wt, out_c, r0, y) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, x, wt, out_c, r0, y);
        unreachable!("by_channel_direct is false off x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{lanes_for, pad_image, ConvGeom};
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };

    #[target_feature(enable = "avx512f")]
    pub fn rows(g: &ConvGeom, x: &[f32], wt: &[f32], out_c: usize, r0: usize, y: &mut [f32]) {
        match lanes_for(out_c) {
            16 => rows_of::<1, 16>(g, x, wt, out_c, r0, y),
            32 => rows_of::<2, 8>(g, x, wt, out_c, r0, y),
            _ => rows_of::<4, 4>(g, x, wt, out_c, r0, y),
        }
    }

    /// [`rows`] with `V` registers of 16 output lanes per pixel and `PX` pixels a chunk.
    #[target_feature(enable = "avx512f")]
    fn rows_of<const V: usize, const PX: usize>(
        g: &ConvGeom,
        x: &[f32],
        wt: &[f32],
        out_c: usize,
        r0: usize,
        y: &mut [f32],
    ) {
        let (oh, ow, c, k, s) = (g.out_h(), g.out_w(), g.c, g.k, g.stride);
        let per_image = oh * ow;
        // Padded rows of `wp` pixels: wide enough for a chunk of PX pixels from any output column.
        let wp = (g.w + 2 * g.pad).max((ow + PX - 1) * s + k);
        let mut padded = vec![0.0f32; (g.h + 2 * g.pad) * wp * c];
        let end = r0 + y.len() / out_c;
        let mut r = r0;
        let mut lanes = [0.0f32; 64];
        while r < end {
            let n = r / per_image;
            let image_end = end.min((n + 1) * per_image);
            pad_image(
                g,
                &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c],
                wp,
                &mut padded,
            );
            while r < image_end {
                let p = r % per_image;
                let (oy, ox) = (p / ow, p % ow);
                let count = PX.min(ow - ox).min(image_end - r);
                let at = ((oy * s) * wp + ox * s) * c;
                let acc = chunk::<V, PX>(&padded[at..], wt, g, wp);
                let first = r - r0;
                let out = &mut y[first * out_c..(first + count) * out_c];
                for (yr, a) in out.chunks_exact_mut(out_c).zip(&acc) {
                    for (v, reg) in a.iter().enumerate() {
                        // SAFETY: `lanes` holds 64 floats, and v < V <= 4.
                        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr().add(16 * v), *reg) };
                    }
                    yr.copy_from_slice(&lanes[..out_c]);
                }
                r += count;
            }
        }
    }

    /// The sums of `PX` pixels (the first's taps start at `data[0]`, the next `stride` pixels on)
    /// for every output lane: per pixel and lane one fused multiply-add chain from zero over the
    /// taps in order.
    #[target_feature(enable = "avx512f")]
    fn chunk<const V: usize, const PX: usize>(
        data: &[f32],
        wt: &[f32],
        g: &ConvGeom,
        wp: usize,
    ) -> [[__m512; V]; PX] {
        let (c, k, s) = (g.c, g.k, g.stride);
        let (run, step, lanes) = (k * c, s * c, 16 * V);
        // Every read below lies inside `data` and `wt` (checked once here, not per tap and pixel).
        assert!(data.len() >= (k - 1) * wp * c + (PX - 1) * step + run);
        assert!(wt.len() >= k * run * lanes);
        let mut acc = [[_mm512_setzero_ps(); V]; PX];
        // Kernel row ky's taps are one run of k * c floats in the padded image, and of weights.
        for ky in 0..k {
            let row = data[ky * wp * c..].as_ptr();
            let w_row = wt[ky * run * lanes..].as_ptr();
            for j in 0..run {
                // SAFETY: j < run and v < V, inside `wt` by the assert above.
                let w: [__m512; V] = std::array::from_fn(|v| unsafe {
                    _mm512_loadu_ps(w_row.add(j * lanes + 16 * v))
                });
                for (i, a) in acc.iter_mut().enumerate() {
                    // SAFETY: i < PX and j < run, inside `data` by the assert above.
                    let xv = _mm512_set1_ps(unsafe { *row.add(i * step + j) });
                    for (a, w) in a.iter_mut().zip(&w) {
                        *a = _mm512_fmadd_ps(xv, *w, *a);
                    }
                }
            }
        }
        acc
    }
}

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

use super::cpu_conv::{DIRECT_MAX_OUT, DIRECT_MAX_TAPS, MIN_TILE_ROWS};
use super::ConvGeom;

/// Whether the forward of `g` goes by [`by_channel_rows`]: 2 or more input channels (or one and more
/// than [`DIRECT_MAX_OUT`] outputs: cnn7's first convolution, 0.5-0.6 ms a step against 1.0-1.4 by
/// lanes per pixel), a kernel of 2 or more, at most [`DIRECT_MAX_TAPS`] taps, 2 to 64 outputs, rows past [`MIN_TILE_ROWS`], on
/// AVX-512. Elsewhere `gemm` takes paths that round otherwise (more than one depth block, a
/// matrix-vector product for one output, a dot-product kernel for small products).
pub fn by_channel_direct(g: &ConvGeom, out_c: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    let fma = super::wide::has_x86_64_v4();
    #[cfg(not(target_arch = "x86_64"))]
    let fma = false;
    fma && (g.c >= 2 || out_c > DIRECT_MAX_OUT)
        && g.k >= 2
        && g.col_cols() <= DIRECT_MAX_TAPS
        && (2..=64).contains(&out_c)
        && g.col_rows() >= MIN_TILE_ROWS
}

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

/// Whether a convolution's input gradient (past one `K_SLICE` of rows, where `cpu_conv` tiles it)
/// goes by [`dx_image`]: a kernel of 2 or more, 3 to 512 outputs, on AVX-512. The unfused `dy W` is
/// `gemm`'s `[taps x out_c] [out_c x rows]`, whose depth (the outputs) fits one block, so each column
/// value is one fused multiply-add chain from zero over the outputs in order; with 1 or 2 outputs it
/// is `gemm`'s gevv, which rounds otherwise.
pub fn dx_direct(g: &ConvGeom, out_c: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    let fma = super::wide::has_x86_64_v4();
    #[cfg(not(target_arch = "x86_64"))]
    let fma = false;
    fma && g.k >= 2 && (3..=DIRECT_MAX_TAPS).contains(&out_c)
}

/// Registers of 16 taps' sums per pixel in one pass of [`dx_image`] (with [`DX_PIXELS`] pixels, 24
/// registers of sums).
const DX_MAX_REGS: usize = 6;

/// Output pixels [`dx_image`] computes together, each load of the weights serving all of them.
const DX_PIXELS: usize = 4;

/// The weights `[out_c x taps]` with each output's row padded to `padded_taps`: whole groups of
/// `regs` registers of 16 taps, the groups [`dx_image`] sums in one pass.
pub struct DxWeights {
    w: Vec<f32>,
    padded_taps: usize,
    regs: usize,
}

impl DxWeights {
    pub fn new(g: &ConvGeom, w: &[f32], out_c: usize) -> Self {
        let taps = g.col_cols();
        let vectors = taps.div_ceil(16);
        let groups = vectors.div_ceil(DX_MAX_REGS);
        let regs = vectors.div_ceil(groups);
        let padded_taps = groups * regs * 16;
        let mut padded = vec![0.0f32; out_c * padded_taps];
        for (dst, src) in padded
            .chunks_exact_mut(padded_taps)
            .zip(w.chunks_exact(taps))
        {
            dst[..taps].copy_from_slice(src);
        }
        DxWeights {
            w: padded,
            padded_taps,
            regs,
        }
    }
}

/// One image's `dx` from its `dy` (`out_h * out_w` rows of `out_c`): for [`DX_PIXELS`] output pixels
/// at a time, each tap's column value is formed in registers (a lane per tap) as `gemm` forms it, and
/// the pixels' rows are then added into `dx` in order as `col2im` adds them: the bits of the
/// unfused `col2im(dy W)`, without the column matrix's gradient.
pub fn dx_image(
    g: &ConvGeom,
    dy: &[f32],
    wts: &DxWeights,
    out_c: usize,
    dx: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(super::wide::has_x86_64_v4(), "dx_image needs AVX-512");
        // SAFETY: the CPU has AVX-512F, just checked.
        unsafe { avx512::dx_image(g, dy, wts, out_c, dx, scratch) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, dy, wts, out_c, dx, scratch);
        unreachable!("dx_direct is false off x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{lanes_for, ConvGeom, DxWeights, DX_PIXELS};
    use crate::backend::cpu_conv::add_pixel_taps;
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
        assert!(wt.len() >= k * run * lanes && lanes_for(1) <= lanes);
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

    /// Image `img` (`h x w x c`) into `padded` (`hp x wp x c`), `g.pad` zeros before each row and column
    /// and zeros after; the zeros written once per call are never overwritten.
    fn pad_image(g: &ConvGeom, img: &[f32], wp: usize, padded: &mut [f32]) {
        let c = g.c;
        let row_len = g.w * c;
        for (iy, src) in img.chunks_exact(row_len).enumerate() {
            let at = ((iy + g.pad) * wp + g.pad) * c;
            padded[at..at + row_len].copy_from_slice(src);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub fn dx_image(
        g: &ConvGeom,
        dy: &[f32],
        wts: &DxWeights,
        out_c: usize,
        dx: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        match wts.regs {
            1 => dx_image_of::<1>(g, dy, wts, out_c, dx, scratch),
            2 => dx_image_of::<2>(g, dy, wts, out_c, dx, scratch),
            3 => dx_image_of::<3>(g, dy, wts, out_c, dx, scratch),
            4 => dx_image_of::<4>(g, dy, wts, out_c, dx, scratch),
            5 => dx_image_of::<5>(g, dy, wts, out_c, dx, scratch),
            _ => dx_image_of::<6>(g, dy, wts, out_c, dx, scratch),
        }
    }

    /// [`dx_image`] with `R` registers of 16 taps per pixel and pass.
    #[target_feature(enable = "avx512f")]
    fn dx_image_of<const R: usize>(
        g: &ConvGeom,
        dy: &[f32],
        wts: &DxWeights,
        out_c: usize,
        dx: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let (per_image, taps, tp) = (g.out_h() * g.out_w(), g.col_cols(), wts.padded_taps);
        assert!(R == wts.regs && wts.w.len() >= out_c * tp && dy.len() >= per_image * out_c);
        scratch.resize(DX_PIXELS * tp, 0.0);
        dx.fill(0.0);
        let w = wts.w.as_ptr();
        for p0 in (0..per_image).step_by(DX_PIXELS) {
            let count = DX_PIXELS.min(per_image - p0);
            // A pixel past the image repeats the last one; its row is never added.
            let pixel = |i: usize| (p0 + i).min(per_image - 1);
            for g0 in (0..tp).step_by(16 * R) {
                let mut acc = [[_mm512_setzero_ps(); R]; DX_PIXELS];
                for oc in 0..out_c {
                    let d: [__m512; DX_PIXELS] =
                        std::array::from_fn(|i| _mm512_set1_ps(dy[pixel(i) * out_c + oc]));
                    for v in 0..R {
                        // SAFETY: oc < out_c and g0 + 16 * v + 16 <= tp, inside `wts.w` by the
                        // assert above.
                        let wv = unsafe { _mm512_loadu_ps(w.add(oc * tp + g0 + 16 * v)) };
                        for (a, d) in acc.iter_mut().zip(&d) {
                            a[v] = _mm512_fmadd_ps(*d, wv, a[v]);
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    for (v, reg) in a.iter().enumerate() {
                        let at = i * tp + g0 + 16 * v;
                        let out: &mut [f32; 16] =
                            (&mut scratch[at..at + 16]).try_into().expect("16 lanes");
                        // SAFETY: `out` is 16 floats.
                        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *reg) };
                    }
                }
            }
            for i in 0..count {
                add_pixel_taps(g, p0 + i, &scratch[i * tp..i * tp + taps], dx);
            }
        }
    }
}

//! The CPU backend's pooling, one image at a time, each function compiled twice by [`multiversion`]
//! (the channels of a window side by side vectorise).

use super::wide::multiversion;
use super::{PoolGeom, PoolKind};

multiversion! {
    /// Image `n`'s pooled outputs `yi` (and for max pooling each one's position in its window, `ai`):
    /// each output scans its window in row-major order, the first maximum winning.
    pub fn pool_image(kind: PoolKind, g: &PoolGeom, x: &[f32], n: usize, yi: &mut [f32], ai: Option<&mut [f32]>) {
        let (ow, c) = (g.out_w(), g.c);
        let mut ai = ai;
        for (p, yp) in yi.chunks_mut(c).enumerate() {
            let (oy, ox) = (p / ow, p % ow);
            let window = |ky: usize, kx: usize| {
                let at = ((n * g.h + oy * g.stride + ky) * g.w + ox * g.stride + kx) * c;
                &x[at..at + c]
            };
            match kind {
                PoolKind::Max => {
                    let ap = ai.as_deref_mut().map(|a| &mut a[p * c..(p + 1) * c]);
                    let ap = ap.expect("max pooling keeps its positions");
                    yp.copy_from_slice(window(0, 0));
                    ap.fill(0.0);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let pos = (ky * g.kw + kx) as f32;
                            for ((best, a), &v) in yp.iter_mut().zip(ap.iter_mut()).zip(window(ky, kx)) {
                                if v > *best {
                                    *best = v;
                                    *a = pos;
                                }
                            }
                        }
                    }
                }
                PoolKind::Avg => {
                    yp.fill(0.0);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            for (s, &v) in yp.iter_mut().zip(window(ky, kx)) {
                                *s += v;
                            }
                        }
                    }
                    for s in yp.iter_mut() {
                        *s *= g.inv_area();
                    }
                }
            }
        }
    }
}

multiversion! {
    /// Image `n`'s input gradient `dxi`: each input sums, in window order, the gradients of the windows
    /// that hold it (for max pooling only those whose maximum it was); average pooling scales by
    /// 1 / area.
    pub fn unpool_image(kind: PoolKind, g: &PoolGeom, dy: &[f32], arg: &[f32], n: usize, dxi: &mut [f32]) {
        let (oh, ow, c, s) = (g.out_h(), g.out_w(), g.c, g.stride);
        let finish = |sum: f32| match kind {
            PoolKind::Max => sum,
            PoolKind::Avg => sum * g.inv_area(),
        };
        if s >= g.kh && s >= g.kw {
            // Windows that do not overlap (the usual 2x2, stride 2): each input lies in one window at
            // most, so its gradient is that window's one term, `0.0 + dy` as the general loop below
            // sums it, and 0 outside every window. Scattered window by window, channels side by side.
            dxi.fill(0.0);
            let dyi = &dy[n * oh * ow * c..(n + 1) * oh * ow * c];
            for (p, dyp) in dyi.chunks(c).enumerate() {
                let (oy, ox) = (p / ow, p % ow);
                let o = (n * oh * ow + p) * c;
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let at = ((oy * s + ky) * g.w + ox * s + kx) * c;
                        let d = &mut dxi[at..at + c];
                        let pos = (ky * g.kw + kx) as f32;
                        match kind {
                            PoolKind::Max => {
                                let ap = &arg[o..o + c];
                                for ((d, &dy), &a) in d.iter_mut().zip(dyp).zip(ap) {
                                    *d = if a == pos { 0.0 + dy } else { 0.0 };
                                }
                            }
                            PoolKind::Avg => {
                                for (d, &dy) in d.iter_mut().zip(dyp) {
                                    *d = finish(0.0 + dy);
                                }
                            }
                        }
                    }
                }
            }
            return;
        }
        // The first window holding position `pos` along a side with windows of `k`.
        let first = |pos: usize, k: usize| {
            if pos < k {
                0
            } else {
                (pos + 1 - k).div_ceil(s)
            }
        };
        for (j, d) in dxi.iter_mut().enumerate() {
            let (ch, ix, iy) = (j % c, (j / c) % g.w, j / (c * g.w));
            let mut sum = 0.0f32;
            for oy in first(iy, g.kh)..(iy / s + 1).min(oh) {
                for ox in first(ix, g.kw)..(ix / s + 1).min(ow) {
                    let o = ((n * oh + oy) * ow + ox) * c + ch;
                    let pos = (iy - oy * s) * g.kw + (ix - ox * s);
                    if kind == PoolKind::Avg || arg[o] as usize == pos {
                        sum += dy[o];
                    }
                }
            }
            *d = finish(sum);
        }
    }
}

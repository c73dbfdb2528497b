//! The CPU backend's matrix products, through the `gemm` crate: AVX-512 kernels where the CPU has them
//! (chosen at run time), packing that suits skinny products, threads from rayon's pool.
//!
//! A product over a long inner dimension (a convolution's weight gradient `dy^T col`: k is the batch's
//! output pixels, tens of thousands, while m and n are a few dozen) leaves the threads nothing to share
//! when split over m and n. It is split over k instead, into slices of [`K_SLICE`]: each slice is
//! multiplied on one thread into its own partial product, and the partials are added in slice order.
//! The slices depend on k alone, so the bits do not depend on the thread count.

use super::{Gemm, Trans};
use rayon::prelude::*;
use std::cell::Cell;
use std::thread::LocalKey;

/// Inner-dimension length of one slice of a split product.
pub const K_SLICE: usize = 1024;

/// `c = a b` (or `c += a b` with `g.accumulate`), `a` and `b` read as `g` says.
pub fn matmul(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    matmul_on(g, a, b, c, true)
}

/// [`matmul`] on the calling thread alone (one tile of a loop that is parallel already): the same bits.
pub fn matmul_here(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    matmul_on(g, a, b, c, false)
}

fn matmul_on(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32], parallel: bool) {
    let (m, k, n) = (g.m, g.k, g.n);
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "matmul shape"
    );
    if m == 0 || n == 0 {
        return;
    }
    let threads = if parallel {
        threads(g)
    } else {
        gemm::Parallelism::None
    };
    if k <= K_SLICE {
        // SAFETY: the assert above keeps every access of the three matrices in bounds.
        unsafe { product(g, 0..k, a, b, &mut c[..m * n], g.accumulate, threads) };
        return;
    }
    split_k(g, c, parallel, |ks, partial| {
        // SAFETY: as above; `ks` lies inside 0..k.
        unsafe { product(g, ks, a, b, partial, false, gemm::Parallelism::None) };
    });
}

/// `c (+)= a b` split over k as [`matmul`] splits it (`g.k` > [`K_SLICE`], `b` stored `[k x n]`), with
/// the rows `ks` of `b` written by `b_rows(ks, tile)` into a scratch tile just before their slice is
/// multiplied: a convolution's weight gradient builds its column matrix so, a cache-sized slice at a
/// time. The same slices, products and sums as [`matmul`]: the same bits.
pub fn matmul_b_by_slices(
    g: &Gemm,
    a: &[f32],
    b_rows: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
    c: &mut [f32],
) {
    let (m, k, n) = (g.m, g.k, g.n);
    assert!(k > K_SLICE && g.tb == Trans::N, "matmul_b_by_slices: {g:?}");
    assert!(a.len() >= m * k && c.len() >= m * n, "matmul shape");
    split_k(g, c, true, |ks, partial| {
        with_tile(ks.len() * n, |tile| {
            b_rows(ks.clone(), tile);
            // SAFETY: `tile` holds exactly b's rows `ks`; a is in bounds by the assert above.
            unsafe { product_b_at(g, ks, a, tile, partial, gemm::Parallelism::None) };
        })
    });
}

/// `slice(ks, partial)` writes `a[:, ks] b[ks, :]` into `partial` for each [`K_SLICE`] of k, in
/// parallel or not; the partials are then added in slice order into `c`. A caller that computes a
/// slice's product itself must round it as `gemm` does (see `cpu_conv`'s direct weight gradient).
pub fn split_k(
    g: &Gemm,
    c: &mut [f32],
    parallel: bool,
    slice: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    let (m, k, n) = (g.m, g.k, g.n);
    with_kept(&PARTIALS, k.div_ceil(K_SLICE) * m * n, |partials| {
        let one = |(s, partial): (usize, &mut [f32])| {
            slice(s * K_SLICE..((s + 1) * K_SLICE).min(k), partial)
        };
        if parallel {
            partials.par_chunks_mut(m * n).enumerate().for_each(one);
        } else {
            partials.chunks_mut(m * n).enumerate().for_each(one);
        }
        let (first, rest) = partials.split_at_mut(m * n);
        for partial in rest.chunks(m * n) {
            first.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
        }
        let c = &mut c[..m * n];
        if g.accumulate {
            c.iter_mut().zip(first.iter()).for_each(|(c, t)| *c += t);
        } else {
            c.copy_from_slice(first);
        }
    })
}

thread_local! {
    /// Each thread's partial products for [`split_k`], kept between calls: megabytes for a large
    /// convolution's weight gradient, which, freshly allocated each step, the allocator returned to the
    /// system and took back page by page (page zeroing was 8 % of vgg-small's CPU samples).
    static PARTIALS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's scratch tile, kept between calls (see [`with_tile`]).
    static TILE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `f` on this thread's scratch tile of `len` floats (contents unspecified), grown as needed and kept:
/// a tile per task would be a fresh allocation and its page faults each time.
pub fn with_tile<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_kept(&TILE, len, f)
}

/// `f` on `len` floats of the buffer this thread keeps in `cell` (contents unspecified), grown as
/// needed. The buffer is taken out of the cell, not borrowed, and put back after: a call nested on
/// this thread (rayon runs other tasks on a thread while it waits) finds the cell empty and allocates
/// its own.
fn with_kept<R>(
    cell: &'static LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut kept = cell.take();
    if kept.len() < len {
        kept.resize(len, 0.0);
    }
    let out = f(&mut kept[..len]);
    cell.set(kept);
    out
}

/// Multiply-adds below which a product runs on the calling thread. Smaller ones, split by `gemm` over
/// rayon's threads, took longer than on one (LeNet-5's fully connected products, up to 5.3 million, in
/// 0.50 ms a step on two threads against 0.32 on one; fc8-bn's step 1.63 ms against 1.35 with its
/// 22-million product still split). `gemm` splits over m and n only, so the bits are the same.
const PARALLEL_MIN_MACS: usize = 1 << 24;

/// rayon's threads for the product `g`, or none if it is small (see [`PARALLEL_MIN_MACS`]).
fn threads(g: &Gemm) -> gemm::Parallelism {
    if g.m * g.n * g.k < PARALLEL_MIN_MACS {
        return gemm::Parallelism::None;
    }
    gemm::Parallelism::Rayon(rayon::current_num_threads())
}

/// `c (+)= a[:, ks] b[ks, :]`: the product over the inner indices `ks` only.
///
/// # Safety
/// `a`, `b` and `c` must hold the matrices `g` describes, and `ks` must lie inside `0..g.k`.
unsafe fn product(
    g: &Gemm,
    ks: std::ops::Range<usize>,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
    threads: gemm::Parallelism,
) {
    let (rsb, _) = b_strides(g);
    // SAFETY: the caller's contract; b's row ks.start lies inside it.
    unsafe {
        let b_ks = b.as_ptr().add(ks.start * rsb);
        gemm_at(g, ks, a, b_ks, c, accumulate, threads)
    }
}

/// As [`product`] into a fresh `c`, with `b_ks` holding b's rows `ks` only (b stored `[k x n]`).
///
/// # Safety
/// As [`product`]; `b_ks` must hold `ks.len() x n` floats.
unsafe fn product_b_at(
    g: &Gemm,
    ks: std::ops::Range<usize>,
    a: &[f32],
    b_ks: &[f32],
    c: &mut [f32],
    threads: gemm::Parallelism,
) {
    assert!(b_ks.len() >= ks.len() * g.n, "matmul shape");
    // SAFETY: the caller's contract and the assert.
    unsafe { gemm_at(g, ks, a, b_ks.as_ptr(), c, false, threads) }
}

/// (row stride, column stride) of b as stored.
fn b_strides(g: &Gemm) -> (usize, usize) {
    match g.tb {
        Trans::N => (g.n, 1),
        Trans::T => (1, g.k),
    }
}

/// The `gemm` call for the inner indices `ks`, b's element (ks.start, 0) at `b_ks`.
///
/// # Safety
/// `a` and `c` must hold the matrices `g` describes, `ks` lie inside `0..g.k`, and `b_ks` point at b's
/// row `ks.start` with `ks.len()` rows readable at b's strides.
unsafe fn gemm_at(
    g: &Gemm,
    ks: std::ops::Range<usize>,
    a: &[f32],
    b_ks: *const f32,
    c: &mut [f32],
    accumulate: bool,
    threads: gemm::Parallelism,
) {
    let (m, k, n) = (g.m, g.k, g.n);
    // (row stride, column stride) of each operand as stored.
    let (rsa, csa) = match g.ta {
        Trans::N => (k, 1),
        Trans::T => (1, m),
    };
    let (rsb, csb) = b_strides(g);
    // SAFETY: the caller's contract; column ks.start of a lies inside it.
    unsafe {
        gemm::gemm(
            m,
            n,
            ks.len(),
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr().add(ks.start * csa),
            csa as isize,
            rsa as isize,
            b_ks,
            csb as isize,
            rsb as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a b` on the calling thread for a `g` split over k, the operands from `salt`.
    fn split_here(g: &Gemm, salt: usize) -> Vec<u32> {
        let value = |i: usize| ((i * 7919 + salt * 104_729) % 1000) as f32 / 500.0 - 1.0;
        let a: Vec<f32> = (0..g.m * g.k).map(value).collect();
        let b: Vec<f32> = (0..g.k * g.n).map(|i| value(i + 1)).collect();
        let mut c = vec![0.0; g.m * g.n];
        matmul_here(g, &a, &b, &mut c);
        c.iter().map(|v| v.to_bits()).collect()
    }

    /// The partials [`split_k`] keeps on a thread carry nothing into its next product: after a larger
    /// one, a product has the bits it has on a fresh thread.
    #[test]
    fn kept_partials_carry_nothing_over() {
        let small = Gemm::new(5, 2 * K_SLICE + 37, 7);
        let fresh = std::thread::spawn(move || split_here(&small, 3))
            .join()
            .unwrap();
        split_here(&Gemm::new(6, 3 * K_SLICE, 9), 1);
        assert_eq!(split_here(&small, 3), fresh);
    }

    /// A product long enough in k to be split (three slices, the last one short), every transposition,
    /// overwriting and accumulating: against an f64 triple loop, and the same bits on 1 and 3 threads.
    #[test]
    fn split_products_match_the_definition_on_any_thread_count() {
        let (m, k, n) = (5, 2 * K_SLICE + 37, 7);
        let value =
            |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 1000) as f32 / 500.0 - 1.0;
        let a: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i, 2)).collect();
        let c0: Vec<f32> = (0..m * n).map(|i| value(i, 3)).collect();
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                for accumulate in [false, true] {
                    let g = Gemm {
                        m,
                        k,
                        n,
                        ta,
                        tb,
                        accumulate,
                    };
                    let on = |threads: usize| {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let mut c = c0.clone();
                        pool.install(|| matmul(&g, &a, &b, &mut c));
                        c
                    };
                    let c = on(1);
                    let bits = |c: &[f32]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&c), bits(&on(3)), "{g:?}: 1 and 3 threads");
                    for i in 0..m {
                        for j in 0..n {
                            let at = |ta: Trans, rows: usize, cols: usize, r: usize, col: usize| {
                                match ta {
                                    Trans::N => r * cols + col,
                                    Trans::T => col * rows + r,
                                }
                            };
                            let mut want: f64 = if accumulate {
                                c0[i * n + j] as f64
                            } else {
                                0.0
                            };
                            for l in 0..k {
                                want += a[at(ta, m, k, i, l)] as f64 * b[at(tb, k, n, l, j)] as f64;
                            }
                            let got = c[i * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                                "{g:?} [{i},{j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

//! The CPU backend's batch-norm passes over a run of rows (`[rows x cols]`, a channel per column), each
//! compiled twice by [`multiversion`]: the loops vectorise across the columns, and every column's sum
//! still adds its rows in order, in f64.

use super::wide::multiversion;
use super::Act;

/// `$body` with `$apply` bound to `$act`'s function and `$grad` to its gradient from the output
/// (identities when `$act` is `None`), each a closure of its own type per activation: the loops inside
/// are compiled once per activation and vectorise, where a match per element would not.
macro_rules! with_act {
    ($act:expr, |$apply:ident, $grad:ident| $body:expr) => {
        match $act {
            None => {
                #[allow(unused_variables)]
                let ($apply, $grad) = (|v: f32| v, |_y: f32, dy: f32| dy);
                $body
            }
            Some(Act::Relu) => with_act!(@one Act::Relu, $apply, $grad, $body),
            Some(Act::Sigmoid) => with_act!(@one Act::Sigmoid, $apply, $grad, $body),
            Some(Act::Tanh) => with_act!(@one Act::Tanh, $apply, $grad, $body),
        }
    };
    (@one $a:expr, $apply:ident, $grad:ident, $body:expr) => {{
        #[allow(unused_variables)]
        let ($apply, $grad) = (|v: f32| $a.apply(v), |y: f32, dy: f32| $a.grad(y, dy));
        $body
    }};
}
pub(crate) use with_act;

/// Rows of the backward pass: the input, the gradient arriving, and the forward's output (after the
/// fused activation, which the gradient is taken through).
#[derive(Clone, Copy)]
pub struct GradRows<'a> {
    pub x: &'a [f32],
    pub dy: &'a [f32],
    pub out: &'a [f32],
    pub cols: usize,
}

/// Per-column `y = act(gamma * (x - mean) * invstd + beta)`.
pub struct Affine<'a> {
    pub mean: &'a [f32],
    pub invstd: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

/// Per-column values of the input gradient `dx = k * (r * dy - dbeta - xhat * dgamma)`.
pub struct DxCols<'a> {
    pub k: &'a [f32],
    pub mean: &'a [f32],
    pub invstd: &'a [f32],
    pub dbeta: &'a [f32],
    pub dgamma: &'a [f32],
    /// The batch's row count, as f32.
    pub r: f32,
}

/// `$f::<W>(args)` with `W` the column count where it is one of the common widths (a
/// convolution's channels), else `$f::<0>` (the width known only at run time). In the first, the
/// row loops have a constant trip count, and the per-column values and sums are local arrays that
/// stay in registers across the rows instead of a round trip through memory each row. The operations
/// and their order are the same in every copy, so the bits are too (tested below).
macro_rules! by_width {
    ($cols:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $cols {
            16 => $f::<16>($($arg),*),
            32 => $f::<32>($($arg),*),
            64 => $f::<64>($($arg),*),
            128 => $f::<128>($($arg),*),
            _ => $f::<0>($($arg),*),
        }
    };
}

/// `body(acc)` on a local copy of `acc` (`W` of it, when `W` is not 0), written back after.
#[inline(always)]
fn sums_local<const W: usize>(acc: &mut [f64], body: impl FnOnce(&mut [f64])) {
    if W == 0 {
        return body(acc);
    }
    let mut local = [0.0f64; W];
    local.copy_from_slice(&acc[..W]);
    body(&mut local);
    acc[..W].copy_from_slice(&local);
}

/// `W` where it is not 0, else `cols`: a constant row length in the [`by_width`] copies.
#[inline(always)]
fn width<const W: usize>(cols: usize) -> usize {
    if W == 0 {
        cols
    } else {
        assert_eq!(cols, W);
        W
    }
}

/// A per-column slice's first `W` values as a local array (see [`by_width`]).
#[inline(always)]
fn local<const W: usize>(v: &[f32]) -> [f32; W] {
    v[..W].try_into().expect("W columns")
}

multiversion! {
    /// `acc[c] += x[r, c]` over the rows of `x`, in f64.
    pub fn sum_rows(x: &[f32], cols: usize, acc: &mut [f64]) {
        by_width!(cols, sum_rows_of(x, cols, acc))
    }
}

#[inline(always)]
fn sum_rows_of<const W: usize>(x: &[f32], cols: usize, acc: &mut [f64]) {
    let cols = width::<W>(cols);
    sums_local::<W>(acc, |acc| {
        for row in x.chunks_exact(cols) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
    })
}

multiversion! {
    /// `acc[c] += (x[r, c] - mean[c])^2` over the rows of `x`, in f64.
    pub fn sum_sq_dev_rows(x: &[f32], cols: usize, mean: &[f32], acc: &mut [f64]) {
        by_width!(cols, sum_sq_dev_rows_of(x, cols, mean, acc))
    }
}

#[inline(always)]
fn sum_sq_dev_rows_of<const W: usize>(x: &[f32], cols: usize, mean: &[f32], acc: &mut [f64]) {
    let cols = width::<W>(cols);
    let body = |mean: &[f32], acc: &mut [f64]| {
        for row in x.chunks_exact(cols) {
            for ((a, &v), &m) in acc.iter_mut().zip(row).zip(mean) {
                let d = (v - m) as f64;
                *a += d * d;
            }
        }
    };
    if W == 0 {
        return body(mean, acc);
    }
    let mean = local::<W>(mean);
    sums_local::<W>(acc, |acc| body(&mean, acc))
}

multiversion! {
    /// `acc = [sum dy | sum dy * xhat]` per column (`2 * cols` long), dy taken through `act`.
    pub fn grad_sums_rows(rows: GradRows<'_>, mean: &[f32], invstd: &[f32], act: Option<Act>, acc: &mut [f64]) {
        with_act!(act, |_apply, grad| by_width!(rows.cols, grad_sums_of(rows, mean, invstd, grad, acc)))
    }
}

#[inline(always)]
fn grad_sums_of<const W: usize>(
    rows: GradRows<'_>,
    mean: &[f32],
    invstd: &[f32],
    grad: impl Fn(f32, f32) -> f32,
    acc: &mut [f64],
) {
    let GradRows { x, dy, out, cols } = rows;
    let cols = width::<W>(cols);
    let body = |mean: &[f32], invstd: &[f32], sum_dy: &mut [f64], sum_dy_xhat: &mut [f64]| {
        let rows = x
            .chunks_exact(cols)
            .zip(dy.chunks_exact(cols))
            .zip(out.chunks_exact(cols));
        for ((xr, dyr), yr) in rows {
            let per_col = mean
                .iter()
                .zip(invstd)
                .zip(sum_dy.iter_mut())
                .zip(sum_dy_xhat.iter_mut());
            for (((&x, &dy), &y), (((&m, &is), s), sx)) in xr.iter().zip(dyr).zip(yr).zip(per_col) {
                let dy = grad(y, dy);
                let xhat = (x - m) * is;
                *s += dy as f64;
                *sx += (dy * xhat) as f64;
            }
        }
    };
    let (sum_dy, sum_dy_xhat) = acc.split_at_mut(cols);
    if W == 0 {
        return body(mean, invstd, sum_dy, sum_dy_xhat);
    }
    let (mean, invstd) = (local::<W>(mean), local::<W>(invstd));
    sums_local::<W>(sum_dy, |sum_dy| {
        sums_local::<W>(sum_dy_xhat, |sum_dy_xhat| {
            body(&mean, &invstd, sum_dy, sum_dy_xhat)
        })
    })
}

multiversion! {
    /// `y = act(gamma * (x - mean) * invstd + beta)` over the rows of `x`.
    pub fn normalise_rows(x: &[f32], y: &mut [f32], cols: usize, p: &Affine<'_>, act: Option<Act>) {
        with_act!(act, |apply, _grad| by_width!(cols, normalise_of(x, y, cols, p, apply)))
    }
}

#[inline(always)]
fn normalise_of<const W: usize>(
    x: &[f32],
    y: &mut [f32],
    cols: usize,
    p: &Affine<'_>,
    apply: impl Fn(f32) -> f32,
) {
    let cols = width::<W>(cols);
    let mut body = |m: &[f32], is: &[f32], g: &[f32], b: &[f32]| {
        for (yr, xr) in y.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            let per_col = m.iter().zip(is).zip(g).zip(b);
            for ((y, &x), (((&m, &is), &g), &b)) in yr.iter_mut().zip(xr).zip(per_col) {
                *y = apply(g * (x - m) * is + b);
            }
        }
    };
    if W == 0 {
        return body(p.mean, p.invstd, p.gamma, p.beta);
    }
    body(
        &local::<W>(p.mean),
        &local::<W>(p.invstd),
        &local::<W>(p.gamma),
        &local::<W>(p.beta),
    )
}

multiversion! {
    /// `dx = k * (r * dy - dbeta - xhat * dgamma)` over the rows, dy taken through `act`.
    pub fn dx_rows(rows: GradRows<'_>, p: &DxCols<'_>, act: Option<Act>, dx: &mut [f32]) {
        with_act!(act, |_apply, grad| by_width!(rows.cols, dx_of(rows, p, grad, dx)))
    }
}

#[inline(always)]
fn dx_of<const W: usize>(
    rows: GradRows<'_>,
    p: &DxCols<'_>,
    grad: impl Fn(f32, f32) -> f32,
    dx: &mut [f32],
) {
    let GradRows { x, dy, out, cols } = rows;
    let cols = width::<W>(cols);
    let r = p.r;
    let mut body = |k: &[f32], m: &[f32], is: &[f32], db: &[f32], dg: &[f32]| {
        let rows = x
            .chunks_exact(cols)
            .zip(dy.chunks_exact(cols))
            .zip(out.chunks_exact(cols));
        for (dxr, ((xr, dyr), yr)) in dx.chunks_exact_mut(cols).zip(rows) {
            let per_col = k.iter().zip(m).zip(is).zip(db).zip(dg);
            for ((((d, &x), &dy), &y), ((((&k, &m), &is), &db), &dg)) in
                dxr.iter_mut().zip(xr).zip(dyr).zip(yr).zip(per_col)
            {
                let dy = grad(y, dy);
                let xhat = (x - m) * is;
                *d = k * (r * dy - db - xhat * dg);
            }
        }
    };
    if W == 0 {
        return body(p.k, p.mean, p.invstd, p.dbeta, p.dgamma);
    }
    let l = local::<W>;
    body(&l(p.k), &l(p.mean), &l(p.invstd), &l(p.dbeta), &l(p.dgamma))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + salt * 104_729) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    fn bits<T: Copy + Into<f64>>(v: &[T]) -> Vec<u64> {
        v.iter().map(|&x| x.into().to_bits()).collect()
    }

    /// Every pass's width copies (and its AVX-512 copy, where the CPU has one) against the copy with
    /// the width known only at run time, bit for bit, with and without an activation, from sums that do
    /// not start at zero. 24 columns takes the run-time copy on both sides.
    #[test]
    fn width_copies_round_as_the_run_time_width() {
        for cols in [16, 24, 32, 64, 128] {
            let rows = 37;
            let (x, dy) = (values(rows * cols, 1), values(rows * cols, 2));
            let out: Vec<f32> = values(rows * cols, 3).iter().map(|v| v.max(0.0)).collect();
            let (mean, invstd) = (values(cols, 4), values(cols, 5));
            let (gamma, beta, k) = (values(cols, 6), values(cols, 7), values(cols, 8));
            let start: Vec<f64> = values(2 * cols, 9)
                .iter()
                .map(|&v| v as f64 * 1e3)
                .collect();
            let rows_of = GradRows {
                x: &x,
                dy: &dy,
                out: &out,
                cols,
            };

            let (mut want, mut got) = (start[..cols].to_vec(), start[..cols].to_vec());
            sum_rows_of::<0>(&x, cols, &mut want);
            sum_rows(&x, cols, &mut got);
            assert_eq!(bits(&want), bits(&got), "sum_rows, {cols} columns");

            let (mut want, mut got) = (start[..cols].to_vec(), start[..cols].to_vec());
            sum_sq_dev_rows_of::<0>(&x, cols, &mean, &mut want);
            sum_sq_dev_rows(&x, cols, &mean, &mut got);
            assert_eq!(bits(&want), bits(&got), "sum_sq_dev_rows, {cols} columns");

            for act in [None, Some(Act::Relu), Some(Act::Tanh)] {
                let (mut want, mut got) = (start.clone(), start.clone());
                with_act!(act, |_apply, grad| grad_sums_of::<0>(
                    rows_of, &mean, &invstd, grad, &mut want
                ));
                grad_sums_rows(rows_of, &mean, &invstd, act, &mut got);
                assert_eq!(
                    bits(&want),
                    bits(&got),
                    "grad_sums_rows {act:?}, {cols} columns"
                );

                let p = Affine {
                    mean: &mean,
                    invstd: &invstd,
                    gamma: &gamma,
                    beta: &beta,
                };
                let (mut want, mut got) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
                with_act!(act, |apply, _grad| normalise_of::<0>(
                    &x, &mut want, cols, &p, apply
                ));
                normalise_rows(&x, &mut got, cols, &p, act);
                assert_eq!(
                    bits(&want),
                    bits(&got),
                    "normalise_rows {act:?}, {cols} columns"
                );

                let p = DxCols {
                    k: &k,
                    mean: &mean,
                    invstd: &invstd,
                    dbeta: &beta,
                    dgamma: &gamma,
                    r: 37.0,
                };
                let (mut want, mut got) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
                with_act!(act, |_apply, grad| dx_of::<0>(rows_of, &p, grad, &mut want));
                dx_rows(rows_of, &p, act, &mut got);
                assert_eq!(bits(&want), bits(&got), "dx_rows {act:?}, {cols} columns");
            }
        }
    }
}

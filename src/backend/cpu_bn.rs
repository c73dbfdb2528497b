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

multiversion! {
    /// `acc[c] += x[r, c]` over the rows of `x`, in f64.
    pub fn sum_rows(x: &[f32], cols: usize, acc: &mut [f64]) {
        for row in x.chunks_exact(cols) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
    }
}

multiversion! {
    /// `acc[c] += (x[r, c] - mean[c])^2` over the rows of `x`, in f64.
    pub fn sum_sq_dev_rows(x: &[f32], cols: usize, mean: &[f32], acc: &mut [f64]) {
        for row in x.chunks_exact(cols) {
            for ((a, &v), &m) in acc.iter_mut().zip(row).zip(mean) {
                let d = (v - m) as f64;
                *a += d * d;
            }
        }
    }
}

multiversion! {
    /// `acc = [sum dy | sum dy * xhat]` per column (`2 * cols` long), dy taken through `act`.
    pub fn grad_sums_rows(rows: GradRows<'_>, mean: &[f32], invstd: &[f32], act: Option<Act>, acc: &mut [f64]) {
        let GradRows { x, dy, out, cols } = rows;
        let (sum_dy, sum_dy_xhat) = acc.split_at_mut(cols);
        with_act!(act, |_apply, grad| {
            let rows = x.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(out.chunks_exact(cols));
            for ((xr, dyr), yr) in rows {
                let per_col = mean.iter().zip(invstd).zip(sum_dy.iter_mut()).zip(sum_dy_xhat.iter_mut());
                for (((&x, &dy), &y), (((&m, &is), s), sx)) in xr.iter().zip(dyr).zip(yr).zip(per_col) {
                    let dy = grad(y, dy);
                    let xhat = (x - m) * is;
                    *s += dy as f64;
                    *sx += (dy * xhat) as f64;
                }
            }
        })
    }
}

multiversion! {
    /// `y = act(gamma * (x - mean) * invstd + beta)` over the rows of `x`.
    pub fn normalise_rows(x: &[f32], y: &mut [f32], cols: usize, p: &Affine<'_>, act: Option<Act>) {
        with_act!(act, |apply, _grad| {
            for (yr, xr) in y.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
                let per_col = p.mean.iter().zip(p.invstd).zip(p.gamma).zip(p.beta);
                for ((y, &x), (((&m, &is), &g), &b)) in yr.iter_mut().zip(xr).zip(per_col) {
                    *y = apply(g * (x - m) * is + b);
                }
            }
        })
    }
}

multiversion! {
    /// `dx = k * (r * dy - dbeta - xhat * dgamma)` over the rows, dy taken through `act`.
    pub fn dx_rows(rows: GradRows<'_>, p: &DxCols<'_>, act: Option<Act>, dx: &mut [f32]) {
        let GradRows { x, dy, out, cols } = rows;
        with_act!(act, |_apply, grad| {
            let rows = x.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(out.chunks_exact(cols));
            for (dxr, ((xr, dyr), yr)) in dx.chunks_exact_mut(cols).zip(rows) {
                let per_col = p.k.iter().zip(p.mean).zip(p.invstd).zip(p.dbeta).zip(p.dgamma);
                for ((((d, &x), &dy), &y), ((((&k, &m), &is), &db), &dg)) in
                    dxr.iter_mut().zip(xr).zip(dyr).zip(yr).zip(per_col)
                {
                    let dy = grad(y, dy);
                    let xhat = (x - m) * is;
                    *d = k * (p.r * dy - db - xhat * dg);
                }
            }
        })
    }
}

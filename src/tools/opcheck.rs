//! Every op of one backend against another (a GPU against the CPU reference) at small, odd shapes, with
//! every read-back awaited: what a web page runs on the browser's adapter, where `tests/gpu_ops.rs`
//! (native, with its chunked and kernel-set variants) cannot go. Each case is one line of the report.
//! Natively `tests/gpu_tools.rs` runs it too, and shows it catches a wrong kernel.

use crate::backend::dropout::DropoutStep;
use crate::backend::{
    Act, Backend, BnBackward, BnEval, BnSpec, BnTrain, ConvGeom, Gemm, Mat, OptimRule, OptimStep,
    PixelNorm, PoolGeom, PoolKind, Trans,
};
use crate::tools::gradcheck::max_rel_diff;
use serde::Serialize;

/// One compared output.
#[derive(Clone, Debug, Serialize)]
pub struct OpCheck {
    pub op: String,
    pub rel_err: f32,
    /// The bound: 0 for ops that must agree exactly (pooling, dropout, data, copies), else a rounding
    /// bound as in tests/gpu_ops.rs.
    pub tol: f32,
    pub pass: bool,
}

/// Values in [-1, 1) from a fixed sequence (a 64-bit LCG; the tests' `rand_vec` too).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The backend under test and the reference, and the report so far.
struct Pair<'a, G: Backend, C: Backend> {
    g: &'a G,
    c: &'a C,
    out: Vec<OpCheck>,
}

impl<G: Backend, C: Backend> Pair<'_, G, C> {
    fn up(&self, v: &[f32]) -> (G::Tensor, C::Tensor) {
        (self.g.upload(v), self.c.upload(v))
    }
    fn zeros(&self, n: usize) -> (G::Tensor, C::Tensor) {
        (self.g.zeros(n), self.c.zeros(n))
    }
    async fn compare(&mut self, op: String, t: &(G::Tensor, C::Tensor), tol: f32) {
        let (g, c) = (self.g.read_async(&t.0).await, self.c.read_async(&t.1).await);
        let rel_err = if g.len() == c.len() {
            max_rel_diff(&g, &c)
        } else {
            f32::INFINITY
        };
        self.out.push(OpCheck {
            op,
            rel_err,
            tol,
            pass: rel_err <= tol,
        });
    }
}

/// Runs every case on `gpu` and `cpu`; the report has a line per compared output.
pub async fn check_ops<G: Backend, C: Backend>(gpu: &G, cpu: &C) -> Vec<OpCheck> {
    let mut p = Pair {
        g: gpu,
        c: cpu,
        out: Vec::new(),
    };
    matmuls(&mut p).await;
    elementwise(&mut p).await;
    pooling_and_dropout(&mut p).await;
    convolution(&mut p).await;
    batchnorm(&mut p).await;
    loss_and_updates(&mut p).await;
    data(&mut p).await;
    p.out
}

/// Every transposition form, accumulation, odd shapes, a long inner dimension, fused bias and ReLU.
async fn matmuls<G: Backend, C: Backend>(p: &mut Pair<'_, G, C>) {
    for (m, k, n) in [(1, 1, 1), (7, 13, 5), (33, 17, 65), (10, 2000, 9)] {
        for (ta, tb) in [
            (Trans::N, Trans::N),
            (Trans::N, Trans::T),
            (Trans::T, Trans::N),
            (Trans::T, Trans::T),
        ] {
            for accumulate in [false, true] {
                let gemm = Gemm {
                    m,
                    k,
                    n,
                    ta,
                    tb,
                    accumulate,
                };
                let (a, b) = (p.up(&values(m * k, 1)), p.up(&values(k * n, 2)));
                let mut c = p.up(&values(m * n, 3));
                p.g.matmul(&gemm, &a.0, &b.0, &mut c.0);
                p.c.matmul(&gemm, &a.1, &b.1, &mut c.1);
                p.compare(
                    format!("matmul {m}x{k}x{n} {ta:?}{tb:?} acc={accumulate}"),
                    &c,
                    1e-5,
                )
                .await;
            }
        }
    }
    let (m, k, n) = (9, 31, 12);
    let gemm = Gemm::new(m, k, n);
    let (a, b, bias) = (
        p.up(&values(m * k, 4)),
        p.up(&values(k * n, 5)),
        p.up(&values(n, 6)),
    );
    let mut c = p.zeros(m * n);
    p.g.matmul_bias_act(&gemm, &a.0, &b.0, &mut c.0, Some(&bias.0), Some(Act::Relu));
    p.c.matmul_bias_act(&gemm, &a.1, &b.1, &mut c.1, Some(&bias.1), Some(Act::Relu));
    p.compare(format!("matmul_bias_act {m}x{k}x{n} relu"), &c, 1e-5)
        .await;
}

/// Bias and activation, forward and backward; the bias gradient.
async fn elementwise<G: Backend, C: Backend>(p: &mut Pair<'_, G, C>) {
    let shape = Mat::new(11, 7);
    let x = values(shape.len(), 7);
    let bias = p.up(&values(shape.cols, 8));
    for act in Act::ALL {
        let mut y = p.up(&x);
        p.g.bias_act(&mut y.0, Some(&bias.0), shape, Some(act));
        p.c.bias_act(&mut y.1, Some(&bias.1), shape, Some(act));
        p.compare(format!("bias_act {act:?} 11x7"), &y, 1e-6).await;
        let (xi, mut out) = (p.up(&x), p.zeros(x.len()));
        p.g.activation(act, &xi.0, &mut out.0, x.len());
        p.c.activation(act, &xi.1, &mut out.1, x.len());
        p.compare(format!("activation {act:?} 77"), &out, 1e-6)
            .await;
        let mut dy = p.up(&values(x.len(), 9));
        p.g.activation_backward(act, &out.0, &mut dy.0, x.len());
        p.c.activation_backward(act, &out.1, &mut dy.1, x.len());
        p.compare(format!("activation_backward {act:?} 77"), &dy, 1e-6)
            .await;
    }
    let rows = Mat::new(301, 5);
    let (dy, mut db) = (p.up(&values(rows.len(), 10)), p.zeros(rows.cols));
    p.g.bias_grad(&dy.0, &mut db.0, rows);
    p.c.bias_grad(&dy.1, &mut db.1, rows);
    p.compare("bias_grad 301x5".into(), &db, 1e-5).await;
}

/// Max and average pooling (ties included) and dropout: exact.
async fn pooling_and_dropout<G: Backend, C: Backend>(p: &mut Pair<'_, G, C>) {
    for (n, h, w, kh, kw, stride, c) in [
        (3, 4, 4, 2, 2, 2, 2),
        (2, 5, 7, 3, 3, 2, 5),
        (2, 3, 5, 3, 5, 1, 13),
    ] {
        let geom = PoolGeom {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
        };
        // A coarse grid, so windows hold ties.
        let x: Vec<f32> = values(geom.in_len(), 11)
            .iter()
            .map(|v| (v * 4.0).round() / 4.0)
            .collect();
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let name = format!("{}pool {n}x{h}x{w}x{c} {kh}x{kw}/{stride}", kind.name());
            let xi = p.up(&x);
            let (mut y, mut arg) = (p.zeros(geom.out_len()), p.zeros(geom.out_len()));
            p.g.pool(kind, &geom, &xi.0, &mut y.0, &mut arg.0);
            p.c.pool(kind, &geom, &xi.1, &mut y.1, &mut arg.1);
            p.compare(name.clone(), &y, 0.0).await;
            let (dy, mut dx) = (p.up(&values(geom.out_len(), 12)), p.zeros(geom.in_len()));
            p.g.pool_backward(kind, &geom, &dy.0, &arg.0, &mut dx.0);
            p.c.pool_backward(kind, &geom, &dy.1, &arg.1, &mut dx.1);
            p.compare(format!("{name} backward"), &dx, 0.0).await;
        }
    }
    let n = 1001;
    let d = DropoutStep {
        key: 3,
        step: 7,
        p: 0.4,
    };
    let (x, mut y, mut mask) = (p.up(&values(n, 13)), p.zeros(n), p.zeros(n));
    p.g.dropout(&d, &x.0, &mut y.0, &mut mask.0, n);
    p.c.dropout(&d, &x.1, &mut y.1, &mut mask.1, n);
    p.compare("dropout p=0.4 mask".into(), &mask, 0.0).await;
    p.compare("dropout p=0.4".into(), &y, 0.0).await;
    let mut dy = p.up(&values(n, 14));
    p.g.dropout_backward(&mask.0, &mut dy.0, n);
    p.c.dropout_backward(&mask.1, &mut dy.1, n);
    p.compare("dropout_backward".into(), &dy, 0.0).await;
}

/// im2col and col2im with stride and padding.
async fn convolution<G: Backend, C: Backend>(p: &mut Pair<'_, G, C>) {
    for g in [
        ConvGeom {
            n: 2,
            c: 3,
            h: 7,
            w: 6,
            k: 3,
            stride: 1,
            pad: 1,
        },
        ConvGeom {
            n: 1,
            c: 2,
            h: 9,
            w: 9,
            k: 5,
            stride: 2,
            pad: 2,
        },
    ] {
        let col_len = g.n * g.out_h() * g.out_w() * g.k * g.k * g.c;
        let x = p.up(&values(g.n * g.h * g.w * g.c, 15));
        let mut col = p.zeros(col_len);
        p.g.im2col(&x.0, &mut col.0, &g);
        p.c.im2col(&x.1, &mut col.1, &g);
        p.compare(format!("im2col {g:?}"), &col, 0.0).await;
        let dcol = p.up(&values(col_len, 16));
        let mut dx = p.zeros(g.n * g.h * g.w * g.c);
        p.g.col2im(&dcol.0, &mut dx.0, &g);
        p.c.col2im(&dcol.1, &mut dx.1, &g);
        p.compare(format!("col2im {g:?}"), &dx, 1e-6).await;
    }
}

/// Batch norm in training (with its running statistics) and evaluation, and its backward through a
/// fused ReLU.
async fn batchnorm<G: Backend, C: Backend>(p: &mut Pair<'_, G, C>) {
    let shape = Mat::new(37, 6);
    let bn = BnSpec {
        shape,
        momentum: 0.1,
        eps: 1e-5,
        act: Some(Act::Relu),
    };
    let x = p.up(&values(shape.len(), 17)
        .iter()
        .map(|v| v * 3.0 + 0.5)
        .collect::<Vec<_>>());
    let gamma = p.up(&values(shape.cols, 18)
        .iter()
        .map(|v| v + 1.5)
        .collect::<Vec<_>>());
    let beta = p.up(&values(shape.cols, 19));
    let (mut mean, mut invstd) = (p.zeros(shape.cols), p.zeros(shape.cols));
    let (mut rmean, mut rvar) = (p.zeros(shape.cols), p.up(&vec![1.0; shape.cols]));
    let mut y = p.zeros(shape.len());
    p.g.bn_forward_train(
        &bn,
        &x.0,
        &mut y.0,
        BnTrain {
            gamma: &gamma.0,
            beta: &beta.0,
            mean: &mut mean.0,
            invstd: &mut invstd.0,
            running_mean: &mut rmean.0,
            running_var: &mut rvar.0,
        },
    );
    p.c.bn_forward_train(
        &bn,
        &x.1,
        &mut y.1,
        BnTrain {
            gamma: &gamma.1,
            beta: &beta.1,
            mean: &mut mean.1,
            invstd: &mut invstd.1,
            running_mean: &mut rmean.1,
            running_var: &mut rvar.1,
        },
    );
    p.compare("bn_forward_train 37x6 relu".into(), &y, 1e-5)
        .await;
    p.compare("bn running_var".into(), &rvar, 1e-5).await;
    let dy = p.up(&values(shape.len(), 20));
    let (mut dx, mut dgamma, mut dbeta) = (
        p.zeros(shape.len()),
        p.zeros(shape.cols),
        p.zeros(shape.cols),
    );
    p.g.bn_backward(
        &bn,
        &x.0,
        &dy.0,
        &mut dx.0,
        BnBackward {
            out: &y.0,
            gamma: &gamma.0,
            mean: &mean.0,
            invstd: &invstd.0,
            dgamma: &mut dgamma.0,
            dbeta: &mut dbeta.0,
        },
    );
    p.c.bn_backward(
        &bn,
        &x.1,
        &dy.1,
        &mut dx.1,
        BnBackward {
            out: &y.1,
            gamma: &gamma.1,
            mean: &mean.1,
            invstd: &invstd.1,
            dgamma: &mut dgamma.1,
            dbeta: &mut dbeta.1,
        },
    );
    p.compare("bn_backward dx".into(), &dx, 1e-4).await;
    p.compare("bn_backward dgamma".into(), &dgamma, 1e-5).await;
    p.compare("bn_backward dbeta".into(), &dbeta, 1e-5).await;
    let mut ye = p.zeros(shape.len());
    p.g.bn_forward_eval(
        &bn,
        &x.0,
        &mut ye.0,
        BnEval {
            gamma: &gamma.0,
            beta: &beta.0,
            running_mean: &rmean.0,
            running_var: &rvar.0,
        },
    );
    p.c.bn_forward_eval(
        &bn,
        &x.1,
        &mut ye.1,
        BnEval {
            gamma: &gamma.1,
            beta: &beta.1,
            running_mean: &rmean.1,
            running_var: &rvar.1,
        },
    );
    p.compare("bn_forward_eval 37x6 relu".into(), &ye, 1e-5)
        .await;
}

/// Softmax cross-entropy, the evaluation sums, clipping's scale and every optimizer's update.
async fn loss_and_updates<G: Backend, C: Backend>(p: &mut Pair<'_, G, C>) {
    let shape = Mat::new(37, 10);
    let logits = p.up(&values(shape.len(), 21)
        .iter()
        .map(|v| v * 5.0)
        .collect::<Vec<_>>());
    let labels = p.up(&(0..shape.rows)
        .map(|r| (r * 7 % shape.cols) as f32)
        .collect::<Vec<_>>());
    let (mut dl, mut loss) = (p.zeros(shape.len()), p.up(&[0.5]));
    p.g.softmax_ce(&logits.0, &labels.0, &mut dl.0, &mut loss.0, shape, true);
    p.c.softmax_ce(&logits.1, &labels.1, &mut dl.1, &mut loss.1, shape, true);
    p.compare("softmax_ce dlogits 37x10".into(), &dl, 1e-5)
        .await;
    p.compare("softmax_ce loss".into(), &loss, 1e-6).await;
    let mut acc = p.up(&[1.0, 2.0]);
    p.g.eval_batch(&logits.0, &labels.0, &mut acc.0, shape);
    p.c.eval_batch(&logits.1, &labels.1, &mut acc.1, shape);
    p.compare("eval_batch".into(), &acc, 1e-5).await;

    let (g1, g2) = (p.up(&values(300, 22)), p.up(&values(77, 23)));
    let mut scale = p.zeros(1);
    p.g.clip_scale(&[&g1.0, &g2.0], 0.5, &mut scale.0);
    p.c.clip_scale(&[&g1.1, &g2.1], 0.5, &mut scale.1);
    p.compare("clip_scale".into(), &scale, 1e-6).await;

    let n = 1000;
    let grad = p.up(&values(n, 24));
    let rules = [
        OptimRule::Sgd {
            momentum: 0.9,
            nesterov: true,
        },
        OptimRule::RmsProp {
            rho: 0.9,
            eps: 1e-8,
        },
        OptimRule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 3,
            decoupled: true,
        },
    ];
    for rule in rules {
        let step = OptimStep {
            rule,
            lr: 0.01,
            weight_decay: 1e-3,
            clip: true,
        };
        let mut w = p.up(&values(n, 25));
        let s1: Vec<f32> = values(n, 26).iter().map(|v| v * 0.1).collect();
        let s2: Vec<f32> = values(n, 27).iter().map(|v| v.abs() * 0.01).collect();
        let (a, b) = (p.up(&s1), p.up(&s2));
        // RMSProp's one state is a mean square: non-negative.
        let (mut gs, mut cs) = match rule {
            OptimRule::RmsProp { .. } => (vec![b.0, a.0], vec![b.1, a.1]),
            _ => (vec![a.0, b.0], vec![a.1, b.1]),
        };
        p.g.optim_step(&step, &mut w.0, &grad.0, &mut gs, &scale.0);
        p.c.optim_step(&step, &mut w.1, &grad.1, &mut cs, &scale.1);
        let name = match rule {
            OptimRule::Sgd { .. } => "sgd nesterov",
            OptimRule::RmsProp { .. } => "rmsprop",
            OptimRule::Adam { .. } => "adamw",
        };
        p.compare(format!("optim_step {name} w"), &w, 1e-6).await;
        let state = (gs.remove(0), cs.remove(0));
        p.compare(format!("optim_step {name} state"), &state, 1e-6)
            .await;
    }
}

/// A batch gathered in a shuffled order and normalised (3 channels); copy and fill.
async fn data<G: Backend, C: Backend>(p: &mut Pair<'_, G, C>) {
    let norm = PixelNorm {
        mean: vec![0.49, 0.48, 0.45],
        std: vec![0.25, 0.24, 0.26],
    };
    let (n, pixels) = (9, 15);
    let images: Vec<u8> = (0..n * pixels).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let order: Vec<u32> = vec![8, 3, 0, 5, 1, 7, 2, 6, 4];
    let mut gds = p.g.upload_dataset(&images, &labels, pixels, &norm);
    let mut cds = p.c.upload_dataset(&images, &labels, pixels, &norm);
    p.g.set_order(&mut gds, &order);
    p.c.set_order(&mut cds, &order);
    let (mut x, mut y) = (p.zeros(4 * pixels), p.zeros(4));
    p.g.gather_batch(&gds, 3, 4, &mut x.0, &mut y.0);
    p.c.gather_batch(&cds, 3, 4, &mut x.1, &mut y.1);
    p.compare("gather_batch x (3 channels)".into(), &x, 0.0)
        .await;
    p.compare("gather_batch labels".into(), &y, 0.0).await;
    let src = p.up(&values(50, 28));
    let mut dst = p.zeros(40);
    p.g.fill(&mut dst.0, 0.25);
    p.c.fill(&mut dst.1, 0.25);
    p.g.copy(&src.0, 7, &mut dst.0, 3, 20);
    p.c.copy(&src.1, 7, &mut dst.1, 3, 20);
    p.compare("fill and copy".into(), &dst, 0.0).await;
}

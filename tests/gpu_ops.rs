//! Every GPU kernel against its CPU twin on random shapes, including shapes that fit no tile.
//! Runs on lavapipe in CI (WGTRAIN_REQUIRE_GPU=1); skipped with a notice where no adapter exists.

mod support;

use support::{gpu, rand_vec};
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::gpu::{ColumnSums, GpuBackend, KernelStyle, DYNAMIC_SLOTS_PER_BLOCK};
use wgtrain::backend::{
    Act, Backend, BnBackward, BnEval, BnSpec, BnTrain, ConvGeom, Gemm, Mat, OptimRule, OptimStep,
    PixelNorm, PoolGeom, PoolKind, Trans,
};
use wgtrain::tools::gradcheck::max_rel_diff;

const TOL: f32 = 1e-5;

/// Every matmul kernel set this adapter runs: the real-GPU tiles, the vec4 kernels of CPU-emulated
/// adapters, and their subgroup twins where the device has 8-lane subgroups (lavapipe).
fn kernel_sets(g: &GpuBackend) -> Vec<(KernelStyle, bool)> {
    let mut sets = vec![(KernelStyle::Tiled, false), (KernelStyle::Direct, false)];
    if g.subgroup_kernels {
        sets.push((KernelStyle::Direct, true));
    }
    sets
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f32) {
    let err = max_rel_diff(gpu, cpu);
    assert!(err <= tol, "{what}: max rel diff {err:.3e} > {tol:.0e}");
}

fn check_matmul(
    g: &GpuBackend,
    m: usize,
    k: usize,
    n: usize,
    ta: Trans,
    tb: Trans,
    accumulate: bool,
) {
    let cpu = CpuBackend::new();
    let a = rand_vec(m * k, 1);
    let b = rand_vec(k * n, 2);
    let c0 = rand_vec(m * n, 3);
    let mut cc = c0.clone();
    let gemm = Gemm {
        m,
        k,
        n,
        ta,
        tb,
        accumulate,
    };
    cpu.matmul(&gemm, &a, &b, &mut cc);
    let (ga, gb) = (g.upload(&a), g.upload(&b));
    let mut gc = g.upload(&c0);
    g.matmul(&gemm, &ga, &gb, &mut gc);
    assert_close(
        &format!(
            "matmul {m}x{k}x{n} {ta:?}{tb:?} acc={accumulate} {:?} subgroups={}",
            g.style, g.subgroup_kernels
        ),
        &g.read(&gc),
        &cc,
        TOL,
    );
}

fn matmul_all_forms_and_odd_shapes() {
    let mut g = gpu();
    for (kernel, subgroups) in kernel_sets(&g) {
        g.style = kernel;
        g.subgroup_kernels = subgroups;
        // Odd shapes (the f32 kernels), and shapes whose dimensions are multiples of 4 but not of the
        // 8x8 blocks (the vec4 kernels of CPU-emulated adapters, in every form they serve).
        let shapes = [
            (1, 1, 1),
            (7, 13, 5),
            (65, 17, 66),
            (110, 784, 33),
            (36, 20, 44),
            (4, 8, 12),
        ];
        for &(m, k, n) in &shapes {
            for ta in [Trans::N, Trans::T] {
                for tb in [Trans::N, Trans::T] {
                    check_matmul(&g, m, k, n, ta, tb, false);
                }
            }
        }
        check_matmul(&g, 9, 70, 3, Trans::N, Trans::N, true);
    }
}

/// A long K over a small C is split into slices whose partials `splitk_sum` adds in order (two
/// dispatches instead of one), in every transposed form, overwriting or accumulating into C.
fn matmul_split_k_long_k() {
    let mut g = gpu();
    for (kernel, subgroups) in kernel_sets(&g) {
        g.style = kernel;
        g.subgroup_kernels = subgroups;
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                for accumulate in [false, true] {
                    let before = g.dispatch_count().unwrap();
                    check_matmul(&g, 16, 5000, 40, ta, tb, accumulate);
                    assert_eq!(g.dispatch_count().unwrap() - before, 2, "split into slices");
                }
            }
        }
        // A short K is not split.
        let before = g.dispatch_count().unwrap();
        check_matmul(&g, 16, 200, 40, Trans::N, Trans::N, true);
        assert_eq!(g.dispatch_count().unwrap() - before, 1);
    }
}

/// The fused epilogue (bias, an activation, both; every activation) of a layer's forward matmul, split
/// or not, on both styles.
fn matmul_epilogue() {
    let mut g = gpu();
    let cpu = CpuBackend::new();
    for (style, subgroups) in kernel_sets(&g) {
        g.style = style;
        g.subgroup_kernels = subgroups;
        for &(m, k, n) in &[(37, 20, 13), (16, 5000, 40)] {
            let (a, b, bias) = (rand_vec(m * k, 30), rand_vec(n * k, 31), rand_vec(n, 32));
            let gemm = Gemm::new(m, k, n).b_t();
            let acts = [
                (true, None),
                (false, Some(Act::Relu)),
                (true, Some(Act::Relu)),
                (true, Some(Act::Sigmoid)),
                (false, Some(Act::Tanh)),
            ];
            for (with_bias, act) in acts {
                let mut cc = vec![0.0; m * n];
                cpu.matmul_bias_act(&gemm, &a, &b, &mut cc, with_bias.then_some(&bias), act);
                let gbias = g.upload(&bias);
                let mut gc = g.zeros(m * n);
                let (ga, gb) = (g.upload(&a), g.upload(&b));
                g.matmul_bias_act(&gemm, &ga, &gb, &mut gc, with_bias.then_some(&gbias), act);
                let what = format!("{m}x{k}x{n} bias={with_bias} act={act:?} {style:?}");
                // Sigmoid and tanh squash the product's values into [-1, 1] but keep its absolute
                // rounding differences (a sum over K = 5000 here): relative to their outputs, those are
                // gradcheck's size, not the matmul's.
                let tol = match act {
                    Some(Act::Sigmoid | Act::Tanh) => 1e-4,
                    _ => TOL,
                };
                assert_close(&what, &g.read(&gc), &cc, tol);
                if act == Some(Act::Relu) {
                    assert!(cc.contains(&0.0), "{what}: some outputs clip");
                }
            }
        }
    }
}

fn matmul_layer_size() {
    let mut g = gpu();
    for (kernel, subgroups) in kernel_sets(&g) {
        g.style = kernel;
        g.subgroup_kernels = subgroups;
        check_matmul(&g, 110, 784, 256, Trans::N, Trans::T, false);
    }
}

/// The epilogue on its own (`bias_act`, and `act_in_place` without a bias), for every activation.
fn bias_act_every_activation() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let (rows, cols) = (13, 37);
    let shape = Mat::new(rows, cols);
    let x = rand_vec(rows * cols, 4);
    let bias = rand_vec(cols, 5);
    let mut cases = vec![(true, None)];
    for act in Act::ALL {
        cases.extend([(true, Some(act)), (false, Some(act))]);
    }
    for (with_bias, act) in cases {
        let mut cx = x.clone();
        cpu.bias_act(&mut cx, with_bias.then_some(&bias), shape, act);
        let mut gx = g.upload(&x);
        let gb = g.upload(&bias);
        g.bias_act(&mut gx, with_bias.then_some(&gb), shape, act);
        assert_close(
            &format!("bias_act {with_bias} {act:?}"),
            &g.read(&gx),
            &cx,
            TOL,
        );
    }
}

/// Every activation's forward and backward kernels against their CPU twins, on 1,000 values (4
/// workgroups, the last partial) spread over both saturated ends and the kink.
fn activations_forward_and_backward() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let n = 1000;
    let x: Vec<f32> = rand_vec(n, 8).iter().map(|v| v * 8.0).collect();
    let dy = rand_vec(n, 9);
    for act in Act::ALL {
        let mut cy = vec![0.0; n];
        cpu.activation(act, &x, &mut cy, n);
        let mut gy = g.zeros(n);
        g.activation(act, &g.upload(&x), &mut gy, n);
        assert_close(act.name(), &g.read(&gy), &cy, 1e-6);
        let mut cdy = dy.clone();
        cpu.activation_backward(act, &cy, &mut cdy, n);
        let mut gdy = g.upload(&dy);
        g.activation_backward(act, &g.upload(&cy), &mut gdy, n);
        assert_close(act.name(), &g.read(&gdy), &cdy, 1e-6);
    }
}

/// Pooling kernels against their CPU twins, exactly (the same comparisons and the same sums in the same
/// order): windows side by side, overlapping, leaving pixels out, a global average over a rectangle,
/// and values with ties (max pooling keeps the first maximum on both).
fn pooling_forward_and_backward() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let geoms = [
        (3, 4, 4, 2, 2, 2, 2),
        (2, 5, 7, 3, 3, 2, 5),
        (1, 7, 7, 2, 2, 2, 1),
        (2, 3, 5, 3, 5, 1, 13),
    ];
    for (n, h, w, kh, kw, stride, c) in geoms {
        let geom = PoolGeom {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
        };
        // Values on a coarse grid, so many windows hold ties.
        let x: Vec<f32> = rand_vec(geom.in_len(), 10)
            .iter()
            .map(|v| (v * 4.0).round() / 4.0)
            .collect();
        let dy = rand_vec(geom.out_len(), 11);
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let what = format!("{}pool {geom:?}", kind.name());
            let (mut cy, mut carg) = (vec![0.0; geom.out_len()], vec![0.0; geom.out_len()]);
            cpu.pool(kind, &geom, &x, &mut cy, &mut carg);
            let (mut gy, mut garg) = (g.zeros(geom.out_len()), g.zeros(geom.out_len()));
            g.pool(kind, &geom, &g.upload(&x), &mut gy, &mut garg);
            assert_close(&what, &g.read(&gy), &cy, 0.0);
            if kind == PoolKind::Max {
                assert_close(&what, &g.read(&garg), &carg, 0.0);
            }
            let mut cdx = vec![0.0; geom.in_len()];
            cpu.pool_backward(kind, &geom, &dy, &carg, &mut cdx);
            let mut gdx = g.zeros(geom.in_len());
            g.pool_backward(kind, &geom, &g.upload(&dy), &garg, &mut gdx);
            assert_close(&what, &g.read(&gdx), &cdx, 0.0);
        }
    }
}

/// Dropout's masks, outputs and gradients on the GPU equal the CPU twin's exactly (the same u32 hash),
/// for several probabilities, layers (keys) and steps; the dropped share is near p; another step or
/// another layer drops other elements.
fn dropout_masks_agree() {
    use wgtrain::backend::dropout::DropoutStep;
    let g = gpu();
    let cpu = CpuBackend::new();
    let n = 10_007;
    let x = rand_vec(n, 12);
    let dy = rand_vec(n, 13);
    let mut masks = Vec::new();
    for (p, key, step) in [
        (0.0, 1, 0),
        (0.25, 1, 0),
        (0.5, 1, 0),
        (0.5, 1, 1),
        (0.5, 2, 0),
        (0.9, 3, 1 << 40),
    ] {
        let d = DropoutStep { key, step, p };
        let (mut cy, mut cm) = (vec![0.0; n], vec![0.0; n]);
        cpu.dropout(&d, &x, &mut cy, &mut cm, n);
        let (mut gy, mut gm) = (g.zeros(n), g.zeros(n));
        g.dropout(&d, &g.upload(&x), &mut gy, &mut gm, n);
        let what = format!("dropout {d:?}");
        assert_close(&what, &g.read(&gm), &cm, 0.0);
        assert_close(&what, &g.read(&gy), &cy, 0.0);
        let mut cdy = dy.clone();
        cpu.dropout_backward(&cm, &mut cdy, n);
        let mut gdy = g.upload(&dy);
        g.dropout_backward(&g.upload(&cm), &mut gdy, n);
        assert_close(&what, &g.read(&gdy), &cdy, 0.0);
        let dropped = cm.iter().filter(|&&m| m == 0.0).count() as f32 / n as f32;
        assert!((dropped - p).abs() < 0.02, "{what}: dropped {dropped}");
        masks.push(cm);
    }
    assert_ne!(masks[2], masks[3], "another step, another mask");
    assert_ne!(masks[2], masks[4], "another layer, another mask");
}

fn bias_grad_many_rows() {
    let g = gpu();
    let cpu = CpuBackend::new();
    // 1000 rows: several reduction chunks; 19 columns: a partial column block.
    for &(rows, cols) in &[(1, 1), (1000, 19)] {
        let dy = rand_vec(rows * cols, 7);
        let mut cdb = vec![0.0; cols];
        cpu.bias_grad(&dy, &mut cdb, Mat::new(rows, cols));
        let mut gdb = g.zeros(cols);
        g.bias_grad(&g.upload(&dy), &mut gdb, Mat::new(rows, cols));
        assert_close("bias_grad", &g.read(&gdb), &cdb, TOL);
    }
}

fn im2col_col2im_stride_and_padding() {
    let g = gpu();
    let cpu = CpuBackend::new();
    for &(stride, pad, side) in &[(1, 1, 5), (2, 1, 7), (2, 0, 6), (1, 0, 4)] {
        let geom = ConvGeom {
            n: 2,
            c: 3,
            h: side,
            w: side,
            k: 3,
            stride,
            pad,
        };
        let x = rand_vec(geom.n * side * side * geom.c, 8);
        let mut ccol = vec![0.0; geom.col_rows() * geom.col_cols()];
        cpu.im2col(&x, &mut ccol, &geom);
        let mut gcol = g.zeros(ccol.len());
        g.im2col(&g.upload(&x), &mut gcol, &geom);
        assert_close("im2col", &g.read(&gcol), &ccol, 0.0);

        let dcol = rand_vec(ccol.len(), 9);
        let mut cdx = vec![0.0; x.len()];
        cpu.col2im(&dcol, &mut cdx, &geom);
        let mut gdx = g.zeros(x.len());
        g.col2im(&g.upload(&dcol), &mut gdx, &geom);
        assert_close(
            &format!("col2im s{stride} p{pad}"),
            &g.read(&gdx),
            &cdx,
            TOL,
        );
    }
}

fn batchnorm_forward_backward() {
    let g = gpu();
    let cpu = CpuBackend::new();
    // Without and with a fused activation (the forward applies it, the backward takes dy through it
    // from the output).
    let cases = [
        (2, 3, None),
        (300, 17, None),
        (2, 3, Some(Act::Relu)),
        (300, 17, Some(Act::Relu)),
        (300, 17, Some(Act::Sigmoid)),
        (40, 5, Some(Act::Tanh)),
        // More than 8 chunks of 256 rows: the per-chunk passes, not the fused kernels.
        (2100, 17, None),
        (2100, 17, Some(Act::Relu)),
    ];
    for &(rows, cols, act) in &cases {
        let x: Vec<f32> = rand_vec(rows * cols, 10)
            .iter()
            .map(|v| 3.0 * v + 0.5)
            .collect();
        let gamma = rand_vec(cols, 11);
        let beta = rand_vec(cols, 12);
        let rm0 = rand_vec(cols, 13);
        let rv0: Vec<f32> = rand_vec(cols, 14).iter().map(|v| v.abs() + 0.5).collect();
        let (mut cy, mut cm, mut cs, mut crm, mut crv) = (
            vec![0.0; x.len()],
            vec![0.0; cols],
            vec![0.0; cols],
            rm0.clone(),
            rv0.clone(),
        );
        let bn = BnSpec {
            shape: Mat::new(rows, cols),
            momentum: 0.1,
            eps: 1e-5,
            act,
        };
        let t = BnTrain {
            gamma: &gamma,
            beta: &beta,
            mean: &mut cm,
            invstd: &mut cs,
            running_mean: &mut crm,
            running_var: &mut crv,
        };
        cpu.bn_forward_train(&bn, &x, &mut cy, t);
        let (gx, gg, gbeta) = (g.upload(&x), g.upload(&gamma), g.upload(&beta));
        let (mut gy, mut gm, mut gs, mut grm, mut grv) = (
            g.zeros(x.len()),
            g.zeros(cols),
            g.zeros(cols),
            g.upload(&rm0),
            g.upload(&rv0),
        );
        let t = BnTrain {
            gamma: &gg,
            beta: &gbeta,
            mean: &mut gm,
            invstd: &mut gs,
            running_mean: &mut grm,
            running_var: &mut grv,
        };
        g.bn_forward_train(&bn, &gx, &mut gy, t);
        assert_close("bn y", &g.read(&gy), &cy, 1e-5);
        let clipped = cy.iter().filter(|&&v| v == 0.0).count();
        assert_eq!(
            clipped > 0,
            act == Some(Act::Relu),
            "the ReLU clips some outputs"
        );
        assert_close("bn mean", &g.read(&gm), &cm, 1e-5);
        assert_close("bn invstd", &g.read(&gs), &cs, 1e-5);
        assert_close("bn running mean", &g.read(&grm), &crm, 1e-5);
        assert_close("bn running var", &g.read(&grv), &crv, 1e-5);

        let mut cey = vec![0.0; x.len()];
        let t = BnEval {
            gamma: &gamma,
            beta: &beta,
            running_mean: &crm,
            running_var: &crv,
        };
        cpu.bn_forward_eval(&bn, &x, &mut cey, t);
        let mut gey = g.zeros(x.len());
        let t = BnEval {
            gamma: &gg,
            beta: &gbeta,
            running_mean: &grm,
            running_var: &grv,
        };
        g.bn_forward_eval(&bn, &gx, &mut gey, t);
        assert_close("bn eval", &g.read(&gey), &cey, 1e-5);

        let dy = rand_vec(x.len(), 15);
        let (mut cdx, mut cdg, mut cdb) = (vec![0.0; x.len()], vec![0.0; cols], vec![0.0; cols]);
        let t = BnBackward {
            out: &cy,
            gamma: &gamma,
            mean: &cm,
            invstd: &cs,
            dgamma: &mut cdg,
            dbeta: &mut cdb,
        };
        cpu.bn_backward(&bn, &x, &dy, &mut cdx, t);
        let (mut gdx, mut gdg, mut gdb) = (g.zeros(x.len()), g.zeros(cols), g.zeros(cols));
        // The CPU's output as the mask on both sides: the masks are the same by construction.
        let gout = g.upload(&cy);
        let t = BnBackward {
            out: &gout,
            gamma: &gg,
            mean: &gm,
            invstd: &gs,
            dgamma: &mut gdg,
            dbeta: &mut gdb,
        };
        g.bn_backward(&bn, &gx, &g.upload(&dy), &mut gdx, t);
        assert_close("bn dbeta", &g.read(&gdb), &cdb, 1e-5);
        assert_close("bn dgamma", &g.read(&gdg), &cdg, 1e-5);
        assert_close("bn dx", &g.read(&gdx), &cdx, 1e-4);
    }
}

/// Batch norm's forward and backward on `g`: y, mean, invstd, running mean and variance, dbeta,
/// dgamma, dx, as the device wrote them.
fn batchnorm_outputs(g: &GpuBackend, rows: usize, cols: usize, act: Option<Act>) -> Vec<Vec<f32>> {
    let x: Vec<f32> = rand_vec(rows * cols, 20)
        .iter()
        .map(|v| 3.0 * v + 0.5)
        .collect();
    let bn = BnSpec {
        shape: Mat::new(rows, cols),
        momentum: 0.1,
        eps: 1e-5,
        act,
    };
    let (gx, gamma, beta) = (
        g.upload(&x),
        g.upload(&rand_vec(cols, 21)),
        g.upload(&rand_vec(cols, 22)),
    );
    let (mut y, mut mean, mut invstd) = (g.zeros(x.len()), g.zeros(cols), g.zeros(cols));
    let (mut rm, mut rv) = (g.upload(&rand_vec(cols, 23)), g.upload(&vec![1.0; cols]));
    let t = BnTrain {
        gamma: &gamma,
        beta: &beta,
        mean: &mut mean,
        invstd: &mut invstd,
        running_mean: &mut rm,
        running_var: &mut rv,
    };
    g.bn_forward_train(&bn, &gx, &mut y, t);
    let (mut dx, mut dgamma, mut dbeta) = (g.zeros(x.len()), g.zeros(cols), g.zeros(cols));
    let t = BnBackward {
        out: &y,
        gamma: &gamma,
        mean: &mean,
        invstd: &invstd,
        dgamma: &mut dgamma,
        dbeta: &mut dbeta,
    };
    g.bn_backward(&bn, &gx, &g.upload(&rand_vec(x.len(), 24)), &mut dx, t);
    [&y, &mean, &invstd, &rm, &rv, &dbeta, &dgamma, &dx]
        .iter()
        .map(|t| g.read(t))
        .collect()
}

/// Whether two results are equal bit for bit (the fused kernels' promise), NaNs and signed zeros
/// included.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits())
}

/// The ways column sums are spread over dispatches (batch norm, the bias gradient) round alike: one
/// fused kernel (batch norm's backward one dispatch where 9 storage buffers are granted, else the
/// fused sums then dx, as in a browser), per-chunk passes that finish the statistics themselves, and
/// passes with finisher dispatches in between.
fn fused_column_sums_match_passes() {
    let mut g = gpu();
    let web = support::gpu_web_limits(wgtrain::backend::KernelChoice::Auto);
    assert!(!web.fuses_bn_backward(), "8 storage buffers a stage");
    let names = [
        "y",
        "mean",
        "invstd",
        "running mean",
        "running var",
        "dbeta",
        "dgamma",
        "dx",
    ];
    let ways = [
        (
            "fused",
            ColumnSums {
                fused_max_chunks: usize::MAX,
                finish_in_pass_max_chunks: 0,
            },
        ),
        (
            "passes",
            ColumnSums {
                fused_max_chunks: 0,
                finish_in_pass_max_chunks: usize::MAX,
            },
        ),
        (
            "finishers",
            ColumnSums {
                fused_max_chunks: 0,
                finish_in_pass_max_chunks: 0,
            },
        ),
    ];
    // One row; a partial column block; 8 chunks with a fused ReLU.
    for &(rows, cols, act) in &[
        (1, 3, None),
        (300, 17, Some(Act::Sigmoid)),
        (2048, 33, Some(Act::Relu)),
    ] {
        let outputs = |g: &GpuBackend| {
            let mut out = batchnorm_outputs(g, rows, cols, act);
            let mut db = g.zeros(cols);
            g.bias_grad(
                &g.upload(&rand_vec(rows * cols, 25)),
                &mut db,
                Mat::new(rows, cols),
            );
            out.push(g.read(&db));
            out
        };
        let mut results = Vec::new();
        for (way, sums) in ways {
            g.column_sums = sums;
            results.push((way, outputs(&g)));
        }
        results.push(("fused within WebGPU's limits", outputs(&web)));
        let (first, want) = &results[0];
        for (way, got) in &results[1..] {
            for ((name, a), b) in names.iter().chain(&["bias grad"]).zip(want).zip(got) {
                assert!(
                    same_bits(a, b),
                    "{name} at {rows}x{cols}: {way} differs from {first}"
                );
            }
        }
    }
}

/// Logits whose row losses are 0 (the label far ahead) except rows 0 (2^24), 256 and 257 (about
/// 1.31 each): added in another order than the row kernels' finisher (rows 256 and 257 first),
/// their sum rounds to another value.
fn order_sensitive_logits(rows: usize, cols: usize, labels: &[f32]) -> Vec<f32> {
    let mut z = vec![0.0; rows * cols];
    for (r, row) in z.chunks_mut(cols).enumerate() {
        let (label, next) = (labels[r] as usize, (labels[r] as usize + 1) % cols);
        match r {
            0 => row[next] = 16_777_216.0,
            256 | 257 => {
                row.fill(-50.0);
                row[label] = 0.0;
                row[next] = 1.0;
            }
            _ => row[label] = 50.0,
        }
    }
    z
}

/// The one-workgroup softmax cross-entropy and evaluation kernels (few rows) give the bits of the
/// per-row kernels and their finishers: one row, a partial workgroup, more rows than lanes.
fn fused_row_sums_match_passes() {
    let mut g = gpu();
    let cols = 10;
    for rows in [1, 37, 300, 2048] {
        let shape = Mat::new(rows, cols);
        let labels: Vec<f32> = (0..rows).map(|r| (r * 7 % cols) as f32).collect();
        let logits: Vec<f32> = if rows == 2048 {
            order_sensitive_logits(rows, cols, &labels)
        } else {
            rand_vec(rows * cols, 26).iter().map(|v| v * 5.0).collect()
        };
        let (gz, gy) = (g.upload(&logits), g.upload(&labels));
        let mut results = Vec::new();
        for fused_max_chunks in [usize::MAX, 0] {
            g.column_sums.fused_max_chunks = fused_max_chunks;
            // Not accumulated: the sum's last bits would be lost in the addition.
            let (mut gd, mut gl) = (g.zeros(rows * cols), g.zeros(1));
            g.softmax_ce(&gz, &gy, &mut gd, &mut gl, shape, false);
            let mut counts = g.zeros(2);
            g.eval_batch(&gz, &gy, &mut counts, shape);
            results.push([g.read(&gd), g.read(&gl), g.read(&counts)]);
        }
        g.column_sums = ColumnSums::default();
        for (name, (a, b)) in ["dlogits", "loss", "eval counts"]
            .iter()
            .zip(results[0].iter().zip(&results[1]))
        {
            assert!(
                same_bits(a, b),
                "{name} at {rows} rows: fused differs from the passes"
            );
        }
    }
}

fn softmax_ce_and_eval() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let (rows, cols) = (37, 10);
    let shape = Mat::new(rows, cols);
    let logits: Vec<f32> = rand_vec(rows * cols, 16).iter().map(|v| v * 5.0).collect();
    let labels: Vec<f32> = (0..rows).map(|r| (r * 7 % cols) as f32).collect();
    let (mut cd, mut cl) = (vec![0.0; rows * cols], vec![0.5]);
    cpu.softmax_ce(&logits, &labels, &mut cd, &mut cl, shape, true);
    let (gz, gy) = (g.upload(&logits), g.upload(&labels));
    let (mut gd, mut gl) = (g.zeros(rows * cols), g.upload(&[0.5]));
    g.softmax_ce(&gz, &gy, &mut gd, &mut gl, shape, true);
    assert_close("softmax_ce dlogits", &g.read(&gd), &cd, 1e-5);
    assert_close("softmax_ce loss", &g.read(&gl), &cl, 1e-6);

    let mut cacc = vec![1.0, 2.0];
    cpu.eval_batch(&logits, &labels, &mut cacc, shape);
    let mut gacc = g.upload(&[1.0, 2.0]);
    g.eval_batch(&gz, &gy, &mut gacc, shape);
    let ga = g.read(&gacc);
    assert_eq!(ga[0], cacc[0], "correct count");
    assert_close("eval loss sum", &ga[1..], &cacc[1..], 1e-5);
}

fn adam(t: u64, decoupled: bool) -> OptimRule {
    OptimRule::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        t,
        decoupled,
    }
}

/// One update of `step` on both backends from the same values; compares w and the state.
fn compare_update(g: &GpuBackend, step: OptimStep, states: [&Vec<f32>; 2], scale: f32) {
    let cpu = CpuBackend::new();
    let n = states[0].len();
    let w = rand_vec(n, 17);
    let grad = rand_vec(n, 18);
    let mut cw = w.clone();
    let mut cs = vec![states[0].clone(), states[1].clone()];
    cpu.optim_step(&step, &mut cw, &grad, &mut cs, &vec![scale]);
    let mut gw = g.upload(&w);
    let mut gs = vec![g.upload(states[0]), g.upload(states[1])];
    g.optim_step(
        &step,
        &mut gw,
        &g.upload(&grad),
        &mut gs,
        &g.upload(&[scale]),
    );
    assert_close(&format!("{step:?} w"), &g.read(&gw), &cw, 1e-6);
    assert_close(&format!("{step:?} s1"), &g.read(&gs[0]), &cs[0], 1e-6);
    assert_close(&format!("{step:?} s2"), &g.read(&gs[1]), &cs[1], 1e-6);
}

fn optimizer_updates() {
    let g = gpu();
    let n = 1000;
    let s1: Vec<f32> = rand_vec(n, 19).iter().map(|v| v * 0.1).collect();
    let s2: Vec<f32> = rand_vec(n, 20).iter().map(|v| v.abs() * 0.01).collect();
    let sgd = OptimRule::Sgd {
        momentum: 0.0,
        nesterov: false,
    };
    let rmsprop = OptimRule::RmsProp {
        rho: 0.9,
        eps: 1e-8,
    };
    for step in [
        OptimStep::plain(sgd, 0.01),
        OptimStep::plain(rmsprop, 0.001),
        OptimStep::plain(adam(3, false), 0.001),
        OptimStep::plain(adam(4, false), 0.001),
    ] {
        // RMSProp's one state is a mean square, so non-negative (a negative one is a NaN on both sides,
        // which the comparison rejects); Adam's second is too.
        let states = match step.rule {
            OptimRule::RmsProp { .. } => [&s2, &s1],
            _ => [&s1, &s2],
        };
        // The scale is bound but not read: a 0 there would zero every update if it were.
        compare_update(&g, step, states, 0.0);
    }
}

/// The recipes' kernels against the CPU: momentum (and Nesterov), L2 weight decay on every rule,
/// AdamW's decoupled decay, a clipped gradient; and the clip scale over several tensors.
fn clip_scale_and_recipes() {
    let g = gpu();
    let n = 777;
    let s1: Vec<f32> = rand_vec(n, 29).iter().map(|v| v * 0.1).collect();
    let s2: Vec<f32> = rand_vec(n, 30).iter().map(|v| v.abs() * 0.01).collect();
    let rules = [
        OptimRule::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        OptimRule::Sgd {
            momentum: 0.8,
            nesterov: true,
        },
        OptimRule::Sgd {
            momentum: 0.0,
            nesterov: false,
        },
        OptimRule::RmsProp {
            rho: 0.9,
            eps: 1e-8,
        },
        adam(5, false),
        adam(5, true),
    ];
    for rule in rules {
        for (weight_decay, clip) in [(0.0, true), (0.01, false), (0.05, true)] {
            let step = OptimStep {
                rule,
                lr: 0.01,
                weight_decay,
                clip,
            };
            let states = match rule {
                OptimRule::RmsProp { .. } => [&s2, &s1],
                _ => [&s1, &s2],
            };
            compare_update(&g, step, states, 0.37);
        }
    }
    // The norm of three tensors together (the second longer than a workgroup's stride many times).
    let cpu = CpuBackend::new();
    let parts = [rand_vec(5, 31), rand_vec(3000, 32), rand_vec(1, 33)];
    let norm: f64 = parts
        .iter()
        .flatten()
        .map(|&v| v as f64 * v as f64)
        .sum::<f64>()
        .sqrt();
    for max_norm in [0.5 * norm as f32, 2.0 * norm as f32] {
        let mut cs = vec![0.0];
        cpu.clip_scale(&parts.iter().collect::<Vec<_>>(), max_norm, &mut cs);
        let want = (max_norm as f64 / (norm + 1e-6)).min(1.0) as f32;
        assert!(
            (cs[0] - want).abs() <= 1e-6 * want,
            "cpu {} vs {want}",
            cs[0]
        );
        let up: Vec<_> = parts.iter().map(|p| g.upload(p)).collect();
        let mut gs = g.upload(&[7.0]);
        g.clip_scale(&up.iter().collect::<Vec<_>>(), max_norm, &mut gs);
        assert_close("clip scale", &g.read(&gs), &cs, 1e-6);
    }
}

fn adam_step_count_changes_between_steps_on_one_tensor() {
    // The bias corrections are a dynamic uniform: two queued steps must each see their own t.
    let g = gpu();
    let cpu = CpuBackend::new();
    let n = 50;
    let (w, grad) = (rand_vec(n, 21), rand_vec(n, 22));
    let (mut cw, mut cs) = (w.clone(), vec![vec![0.0; n], vec![0.0; n]]);
    let (mut gw, mut gs, gg) = (g.upload(&w), vec![g.zeros(n), g.zeros(n)], g.upload(&grad));
    let (cscale, gscale) = (vec![1.0], g.upload(&[1.0]));
    for t in 1..=3 {
        let step = OptimStep::plain(adam(t, false), 0.01);
        cpu.optim_step(&step, &mut cw, &grad, &mut cs, &cscale);
        g.optim_step(&step, &mut gw, &gg, &mut gs, &gscale);
    }
    assert_close("adam x3", &g.read(&gw), &cw, 1e-6);
}

/// Adam steps of more tensors than one block of dynamic uniform slots holds, queued without a read:
/// each bind group's corrections are a slot, changed every step; each step is submitted when the next
/// one changes a slot it reads.
fn dynamic_uniforms_of_many_tensors() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let (count, n) = (DYNAMIC_SLOTS_PER_BLOCK + 4, 40);
    let grads: Vec<Vec<f32>> = (0..count).map(|i| rand_vec(n, 100 + i as u64)).collect();
    let mut cw: Vec<Vec<f32>> = (0..count).map(|i| rand_vec(n, 200 + i as u64)).collect();
    let mut gw: Vec<_> = cw.iter().map(|w| g.upload(w)).collect();
    let mut cs = vec![vec![vec![0.0; n]; 2]; count];
    let mut gs: Vec<Vec<_>> = (0..count).map(|_| vec![g.zeros(n), g.zeros(n)]).collect();
    let gg: Vec<_> = grads.iter().map(|v| g.upload(v)).collect();
    let (cscale, gscale) = (vec![1.0], g.upload(&[1.0]));
    for t in 1..=3 {
        // Each tensor its own rate, so a slot read in place of another's gives other values.
        for i in 0..count {
            let step = OptimStep::plain(adam(t, false), 0.01 * (i + 1) as f32);
            cpu.optim_step(&step, &mut cw[i], &grads[i], &mut cs[i], &cscale);
            g.optim_step(&step, &mut gw[i], &gg[i], &mut gs[i], &gscale);
        }
    }
    for i in 0..count {
        assert_close(&format!("adam tensor {i}"), &g.read(&gw[i]), &cw[i], 1e-6);
    }
}

fn gather_batch_normalises_in_order() {
    let g = gpu();
    let cpu = CpuBackend::new();
    // Grey with MNIST's constants, and RGB with a norm per channel: the GPU reads the host's table, so
    // its inputs equal the CPU's exactly; the CPU's equal the formula.
    let rgb = PixelNorm {
        mean: vec![0.49, 0.48, 0.45],
        std: vec![0.25, 0.24, 0.26],
    };
    for (norm, pixels) in [(PixelNorm::mnist(), 7), (rgb, 3 * 5)] {
        // 7 and 15 bytes: not multiples of 4, so bytes straddle the packed u32 words.
        let n = 9;
        let images: Vec<u8> = (0..n * pixels).map(|i| (i * 37 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let order: Vec<u32> = vec![8, 3, 0, 5, 1, 7, 2, 6, 4];
        let mut cds = cpu.upload_dataset(&images, &labels, pixels, &norm);
        cpu.set_order(&mut cds, &order);
        let mut gds = g.upload_dataset(&images, &labels, pixels, &norm);
        g.set_order(&mut gds, &order);
        let (mut cx, mut cy) = (vec![0.0; 4 * pixels], vec![0.0; 4]);
        cpu.gather_batch(&cds, 3, 4, &mut cx, &mut cy);
        let (mut gx, mut gy) = (g.zeros(4 * pixels), g.zeros(4));
        g.gather_batch(&gds, 3, 4, &mut gx, &mut gy);
        assert_eq!(g.read(&gx), cx, "gather x, {} channels", norm.channels());
        assert_eq!(g.read(&gy), cy, "gather labels");
        let c = norm.channels();
        for (b, &i) in order[3..7].iter().enumerate() {
            for px in 0..pixels {
                let p = images[i as usize * pixels + px];
                let want = (p as f32 / 255.0 - norm.mean[px % c]) / norm.std[px % c];
                assert_eq!(
                    cx[b * pixels + px],
                    want,
                    "cpu gather, sample {i} byte {px}"
                );
            }
        }
    }
}

fn copy_and_fill() {
    let g = gpu();
    let src = g.upload(&[1.0, 2.0, 3.0, 4.0]);
    let mut dst = g.upload(&[9.0; 6]);
    g.copy(&src, 1, &mut dst, 2, 3);
    assert_eq!(g.read(&dst), vec![9.0, 9.0, 2.0, 3.0, 4.0, 9.0]);
    g.fill(&mut dst, 0.0);
    assert_eq!(g.read(&dst), vec![0.0; 6]);
    g.fill(&mut dst, 1.5);
    assert_eq!(g.read(&dst), vec![1.5; 6]);
}

fn a_wrong_kernel_result_is_caught() {
    // The comparison the tests above rely on must reject a kernel that is slightly off: here the GPU
    // matmul of A·B^T is compared with the CPU result of A·B^T plus a 1e-3 error in one element.
    let g = gpu();
    let cpu = CpuBackend::new();
    let (m, k, n) = (7, 13, 5);
    let (a, b) = (rand_vec(m * k, 23), rand_vec(n * k, 24));
    let mut cc = vec![0.0; m * n];
    cpu.matmul(&Gemm::new(m, k, n).b_t(), &a, &b, &mut cc);
    let mut gc = g.zeros(m * n);
    g.matmul(
        &Gemm::new(m, k, n).b_t(),
        &g.upload(&a),
        &g.upload(&b),
        &mut gc,
    );
    let mut wrong = g.read(&gc);
    assert!(max_rel_diff(&wrong, &cc) <= TOL, "the right result passes");
    wrong[17] += 1e-3 * cc.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        max_rel_diff(&wrong, &cc) > TOL,
        "a 1e-3 error must be rejected"
    );
    // And a kernel run with the wrong transpose flag is far off.
    let mut gt = g.zeros(m * n);
    g.matmul(&Gemm::new(m, k, n), &g.upload(&a), &g.upload(&b), &mut gt);
    assert!(
        max_rel_diff(&g.read(&gt), &cc) > 1e-2,
        "a wrong-layout matmul must be rejected"
    );
}

fn main() -> std::process::ExitCode {
    support::run_gpu_tests(&[
        (
            "matmul_all_forms_and_odd_shapes",
            matmul_all_forms_and_odd_shapes,
        ),
        ("matmul_split_k_long_k", matmul_split_k_long_k),
        ("matmul_epilogue", matmul_epilogue),
        ("matmul_layer_size", matmul_layer_size),
        ("bias_act_every_activation", bias_act_every_activation),
        (
            "activations_forward_and_backward",
            activations_forward_and_backward,
        ),
        ("pooling_forward_and_backward", pooling_forward_and_backward),
        ("dropout_masks_agree", dropout_masks_agree),
        ("bias_grad_many_rows", bias_grad_many_rows),
        (
            "im2col_col2im_stride_and_padding",
            im2col_col2im_stride_and_padding,
        ),
        ("batchnorm_forward_backward", batchnorm_forward_backward),
        (
            "fused_column_sums_match_passes",
            fused_column_sums_match_passes,
        ),
        ("softmax_ce_and_eval", softmax_ce_and_eval),
        ("fused_row_sums_match_passes", fused_row_sums_match_passes),
        ("optimizer_updates", optimizer_updates),
        (
            "adam_step_count_changes_between_steps_on_one_tensor",
            adam_step_count_changes_between_steps_on_one_tensor,
        ),
        (
            "dynamic_uniforms_of_many_tensors",
            dynamic_uniforms_of_many_tensors,
        ),
        (
            "gather_batch_normalises_in_order",
            gather_batch_normalises_in_order,
        ),
        ("clip_scale_and_recipes", clip_scale_and_recipes),
        ("copy_and_fill", copy_and_fill),
        (
            "a_wrong_kernel_result_is_caught",
            a_wrong_kernel_result_is_caught,
        ),
    ])
}

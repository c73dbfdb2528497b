//! The CPU reference's backward passes against central finite differences, one layer type at a time,
//! plus a whole model on a sample of its parameters.
//!
//! Method: for a layer with output `y`, the scalar objective is `L = sum(y * R)` for a fixed random `R`,
//! so the analytic gradients are what `backward` gives for `dy = R`. Every input element and every
//! parameter element is moved by `+-eps` and `(L(+) - L(-)) / (x(+) - x(-))` is compared with the
//! analytic value (the denominator is the step f32 actually took, not the nominal `2 eps`).
//! The objective is summed in f64, so the only f32 noise is in the layer's own outputs.
//!
//! The comparison is [`max_rel_diff`]: `max |analytic - numeric| / max |numeric|` over one tensor must be
//! at most [`TOL`]. Why 1e-2 is the right size: the f32 rounding of `L` (about 1e-7 relative, on sums of
//! at most a few hundred terms of order 1) divided by the `2 eps = 1e-2` step gives errors around 1e-5
//! absolute, and the truncation error of central differences is `O(eps^2)` ~ 1e-5 relative for the
//! smooth layers (batch norm, softmax); observed errors are printed and sit near 1e-4 or below.
//! A gradient that is off by 5% in its largest element, or a batch-norm dx without its mean and
//! variance terms, is far above the tolerance: the tests at the bottom show the same check rejects both.
//!
//! ReLU kinks: an element whose `+-eps` move changes which outputs are exactly zero (the only way a
//! ReLU output is 0.0 in f32 arithmetic on random data) straddles a kink; such elements are skipped
//! and counted, and a check fails if more than a quarter of a tensor's elements had to be skipped.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::{Act, Backend, ConvGeom, PoolGeom, PoolKind};
use wgtrain::model::layers::{
    Activation, BatchNorm, Conv2d, Dropout, Epilogue, Layer, Linear, Pool2d, SoftmaxCrossEntropy,
};
use wgtrain::model::{Model, ModelSpec};
use wgtrain::tools::gradcheck::max_rel_diff;

mod support;
use support::rand_uniform;

/// Largest accepted `max |analytic - numeric| / max |numeric|` per tensor.
const TOL: f32 = 1e-2;
/// The finite-difference step.
const EPS: f32 = 5e-3;

type Cpu = CpuBackend;

/// Central differences of `objective` with respect to every element of `point`.
/// `objective` returns the scalar and a "kink signature" (which outputs are exactly zero); elements whose
/// move changes the signature are returned as `None`.
fn numeric_grad(
    point: &mut [f32],
    eps: f32,
    mut objective: impl FnMut(&[f32]) -> (f64, Vec<bool>),
) -> Vec<Option<f32>> {
    let (_, base_sig) = objective(point);
    (0..point.len())
        .map(|i| {
            let orig = point[i];
            let (hi, lo) = (orig + eps, orig - eps);
            point[i] = hi;
            let (lp, sp) = objective(point);
            point[i] = lo;
            let (lm, sm) = objective(point);
            point[i] = orig;
            if sp != base_sig || sm != base_sig {
                None
            } else {
                Some(((lp - lm) / (hi as f64 - lo as f64)) as f32)
            }
        })
        .collect()
}

/// The check itself: `analytic` against the finite differences `numeric` (skipped elements excluded).
/// Returns the observed error and the number of skipped elements, or why the check failed.
fn compare(
    what: &str,
    analytic: &[f32],
    numeric: &[Option<f32>],
    tol: f32,
) -> Result<(f32, usize), String> {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    let skipped = numeric.iter().filter(|v| v.is_none()).count();
    if skipped * 4 > numeric.len() {
        return Err(format!(
            "{what}: {skipped} of {} elements straddle a ReLU kink",
            numeric.len()
        ));
    }
    let (a, n): (Vec<f32>, Vec<f32>) = analytic
        .iter()
        .zip(numeric)
        .filter_map(|(&a, n)| n.map(|n| (a, n)))
        .unzip();
    if n.iter().all(|v| v.abs() < 1e-6) {
        return Err(format!(
            "{what}: the numeric gradient is all zero; the test data exercise nothing"
        ));
    }
    let err = max_rel_diff(&a, &n);
    if err <= tol {
        Ok((err, skipped))
    } else {
        let worst = a
            .iter()
            .zip(&n)
            .enumerate()
            .max_by(|x, y| (x.1 .0 - x.1 .1).abs().total_cmp(&(y.1 .0 - y.1 .1).abs()))
            .map(|(i, (a, n))| format!("element {i}: analytic {a}, numeric {n}"))
            .unwrap_or_default();
        Err(format!(
            "{what}: max relative difference {err:.3e} > {tol:.0e} ({worst})"
        ))
    }
}

/// Which outputs are exactly zero (a ReLU's dead units).
fn zero_signature(y: &[f32]) -> Vec<bool> {
    y.iter().map(|&v| v == 0.0).collect()
}

/// `sum(y * r)` in f64.
fn dot(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// The analytic gradients of one layer for the objective `sum(y * R)`: `(dx, [dparam])`.
fn analytic(
    layer: &mut dyn Layer<Cpu>,
    x: &[f32],
    batch: usize,
    r: &[f32],
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let be = CpuBackend::new();
    let x_t = x.to_vec();
    layer.forward(&be, &x_t, batch, true);
    let out_len = layer.out_per_sample() * batch;
    let mut dy = be.zeros(be.len(layer.output()));
    dy[..out_len].copy_from_slice(r);
    layer.backward(&be, &x_t, &mut dy, batch, true);
    let dx = layer.grad_input()[..x.len()].to_vec();
    let dparams = layer.params().iter().map(|p| p.grad.clone()).collect();
    (dx, dparams)
}

/// Changes an analytic gradient before the comparison: `(tensor name or "x", the layer input, gradient)`.
type Tamper<'a> = &'a dyn Fn(&str, &[f32], &mut Vec<f32>);

/// One checked tensor: its label, the observed error and how many elements were skipped at kinks.
type Report = Vec<(String, f32, usize)>;

/// Checks every gradient of `layer` (input and each parameter) for `L = sum(y * R)` by finite differences.
/// `tamper` may change the analytic gradients before the comparison (`"x"` or the parameter's name):
/// the tests of the check itself use it to feed a wrong gradient.
fn check_layer_with(
    what: &str,
    layer: &mut dyn Layer<Cpu>,
    x: &[f32],
    batch: usize,
    seed: u64,
    tamper: Tamper,
) -> Result<Report, String> {
    let be = CpuBackend::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let out_len = layer.out_per_sample() * batch;
    let r = rand_uniform(&mut rng, out_len, -1.0, 1.0);
    let (mut dx, dparams) = analytic(layer, x, batch, &r);
    let mut report = Vec::new();

    // Input gradient.
    tamper("x", x, &mut dx);
    let mut xp = x.to_vec();
    let num = numeric_grad(&mut xp, EPS, |xv| {
        layer.forward(&be, &xv.to_vec(), batch, true);
        let y = &layer.output()[..out_len];
        (dot(y, &r), zero_signature(y))
    });
    let label = format!("{what} dx");
    let (err, skipped) = compare(&label, &dx, &num, TOL)?;
    report.push((label, err, skipped));

    // Parameter gradients.
    let names: Vec<String> = layer.params().iter().map(|p| p.name.clone()).collect();
    for (i, (name, mut grad)) in names.into_iter().zip(dparams).enumerate() {
        let mut value = layer.params()[i].value.clone();
        tamper(&name, x, &mut grad);
        let num = numeric_grad(&mut value, EPS, |v| {
            layer.params_mut()[i].value.copy_from_slice(v);
            layer.forward(&be, &x.to_vec(), batch, true);
            let y = &layer.output()[..out_len];
            (dot(y, &r), zero_signature(y))
        });
        layer.params_mut()[i].value.copy_from_slice(&value);
        let label = format!("{what} d{name}");
        let (err, skipped) = compare(&label, &grad, &num, TOL)?;
        report.push((label, err, skipped));
    }
    Ok(report)
}

/// A layer under test and its input.
type Case = (Box<dyn Layer<Cpu>>, Vec<f32>);

/// Checks the layer and input that `make(seed)` builds, with the true gradients. For a layer with a
/// ReLU, data where some element's `+-eps` move straddles a kink are drawn again (next seed), so that
/// in the end every element of every tensor is checked; data without ReLU pass on the first draw.
fn check_layer(what: &str, batch: usize, make: impl Fn(u64) -> Case) {
    const DRAWS: u64 = 40;
    for seed in 0..DRAWS {
        let (mut layer, x) = make(seed);
        match check_layer_with(what, layer.as_mut(), &x, batch, 1000 + seed, &|_, _, _| {}) {
            Ok(report) if report.iter().all(|(_, _, skipped)| *skipped == 0) => {
                for (label, err, _) in report {
                    println!("{label}: max relative difference {err:.2e} (data draw {seed})");
                }
                return;
            }
            Ok(_) => continue,
            Err(e) if e.contains("straddle") => continue,
            Err(e) => panic!("gradient check failed: {e}"),
        }
    }
    panic!("{what}: every one of {DRAWS} data draws has an element at a ReLU kink");
}

/// Gives every parameter of `layer` random values (biases and BN beta included, so they matter).
fn randomise_params(layer: &mut dyn Layer<Cpu>, rng: &mut impl Rng, lo: f32, hi: f32) {
    for p in layer.params_mut() {
        let n = p.value.len();
        p.value = rand_uniform(rng, n, lo, hi);
    }
}

/// A Linear layer with random weights and bias, and an input of `batch` rows.
fn linear(
    (inputs, outputs): (usize, usize),
    bias: bool,
    act: Option<Act>,
    (batch, capacity): (usize, usize),
) -> impl Fn(u64) -> Case {
    move |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let be = CpuBackend::new();
        let mut l = Linear::new(
            &be,
            "fc",
            (inputs, outputs),
            Epilogue { bias, act },
            capacity,
            &mut rng,
        );
        randomise_params(&mut l, &mut rng, -0.5, 0.5);
        assert_eq!(l.params().len(), if bias { 2 } else { 1 });
        let x = rand_uniform(&mut rng, batch * inputs, -1.0, 1.0);
        (Box::new(l), x)
    }
}

#[test]
fn linear_with_bias() {
    check_layer("linear", 4, linear((7, 5), true, None, (4, 4)));
}

#[test]
fn linear_without_bias() {
    check_layer("linear (no bias)", 3, linear((6, 4), false, None, (3, 3)));
}

#[test]
fn linear_with_fused_relu() {
    // Both sides of the ReLU are exercised: some outputs are clipped, most are not.
    let (mut l, x) = linear((8, 6), true, Some(Act::Relu), (5, 5))(0);
    l.forward(&CpuBackend::new(), &x, 5, true);
    let zeros = l.output().iter().filter(|&&v| v == 0.0).count();
    assert!(zeros > 3 && zeros < 27, "{zeros} of 30 outputs are clipped");
    check_layer(
        "linear+relu",
        5,
        linear((8, 6), true, Some(Act::Relu), (5, 5)),
    );
    check_layer(
        "linear (no bias)+relu",
        5,
        linear((8, 6), false, Some(Act::Relu), (5, 5)),
    );
}

#[test]
fn linear_short_batch() {
    // A batch below the layer's capacity (the last, short batch of an epoch).
    check_layer(
        "linear+relu batch 4 of 6",
        4,
        linear((5, 3), true, Some(Act::Relu), (4, 6)),
    );
}

fn geom(n: usize, c: usize, side: usize, stride: usize, pad: usize) -> ConvGeom {
    ConvGeom {
        n,
        c,
        h: side,
        w: side,
        k: 3,
        stride,
        pad,
    }
}

/// A 3x3 convolution with random weights (and bias) for `geom` (capacity `geom.n`), and an input of
/// `batch` NHWC images.
fn conv(
    g: ConvGeom,
    out_c: usize,
    bias: bool,
    act: Option<Act>,
    batch: usize,
) -> impl Fn(u64) -> Case {
    move |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut c = Conv2d::new(
            &CpuBackend::new(),
            "conv",
            g,
            out_c,
            Epilogue { bias, act },
            &mut rng,
        );
        randomise_params(&mut c, &mut rng, -0.5, 0.5);
        assert_eq!(c.params().len(), if bias { 2 } else { 1 });
        let x = rand_uniform(&mut rng, batch * g.h * g.w * g.c, -1.0, 1.0);
        (Box::new(c), x)
    }
}

#[test]
fn conv_stride1_pad1() {
    let g = geom(2, 2, 5, 1, 1);
    assert_eq!((g.out_h(), g.out_w()), (5, 5));
    check_layer("conv s1 p1", 2, conv(g, 3, true, None, 2));
}

#[test]
fn conv_stride2_pad1() {
    let g = geom(2, 3, 6, 2, 1);
    assert_eq!((g.out_h(), g.out_w()), (3, 3));
    check_layer("conv s2 p1", 2, conv(g, 2, true, None, 2));
}

#[test]
fn conv_stride2_pad1_odd_side() {
    // 5x5 at stride 2: (5 + 2 - 3) / 2 + 1 = 3, like 7x7 -> 4x4 in the CNNs.
    let g = geom(2, 2, 5, 2, 1);
    assert_eq!((g.out_h(), g.out_w()), (3, 3));
    check_layer("conv s2 p1 5x5", 2, conv(g, 3, true, None, 2));
}

#[test]
fn conv_stride1_pad0() {
    let g = geom(2, 2, 5, 1, 0);
    assert_eq!((g.out_h(), g.out_w()), (3, 3));
    check_layer("conv s1 p0", 2, conv(g, 3, true, None, 2));
}

#[test]
fn conv_stride2_pad0() {
    let g = geom(2, 3, 6, 2, 0);
    assert_eq!((g.out_h(), g.out_w()), (2, 2));
    check_layer("conv s2 p0", 2, conv(g, 2, true, None, 2));
}

#[test]
fn conv_fused_relu_and_no_bias() {
    check_layer(
        "conv s1 p1 +relu",
        2,
        conv(geom(2, 2, 5, 1, 1), 3, true, Some(Act::Relu), 2),
    );
    check_layer(
        "conv s2 p1 no bias +relu",
        2,
        conv(geom(2, 2, 6, 2, 1), 3, false, Some(Act::Relu), 2),
    );
}

#[test]
fn conv_short_batch() {
    check_layer(
        "conv batch 2 of 3",
        2,
        conv(geom(3, 2, 5, 2, 1), 2, true, Some(Act::Relu), 2),
    );
}

/// Batch norm over `channels` with `spatial` rows per sample, random gamma (0.5..1.5) and beta.
fn batchnorm(
    channels: usize,
    spatial: usize,
    act: Option<Act>,
    (batch, capacity): (usize, usize),
) -> impl Fn(u64) -> Case {
    move |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bn = BatchNorm::new(&CpuBackend::new(), "bn", channels, spatial, act, capacity);
        bn.params_mut()[0].value = rand_uniform(&mut rng, channels, 0.5, 1.5);
        bn.params_mut()[1].value = rand_uniform(&mut rng, channels, -0.5, 0.5);
        let x = rand_uniform(&mut rng, batch * spatial * channels, -1.0, 2.0);
        (Box::new(bn), x)
    }
}

#[test]
fn batchnorm_1d() {
    check_layer("batchnorm1d", 6, batchnorm(4, 1, None, (6, 6)));
}

#[test]
fn batchnorm_2d() {
    // Batch 2 of 3x3 images with 3 channels: 18 rows per channel.
    check_layer("batchnorm2d", 2, batchnorm(3, 9, None, (2, 2)));
}

/// Sigmoid and tanh fused into the layer before them (their backward from the layer's output), in a
/// Linear, a Conv2d and a BatchNorm, as ReLU is.
#[test]
fn fused_sigmoid_and_tanh() {
    for act in [Act::Sigmoid, Act::Tanh] {
        let name = act.name();
        check_layer(name, 4, linear((7, 5), true, Some(act), (4, 4)));
        check_layer(name, 2, conv(geom(2, 2, 5, 2, 1), 3, false, Some(act), 2));
        check_layer(name, 6, batchnorm(3, 1, Some(act), (6, 6)));
        check_layer(name, 2, batchnorm(2, 4, Some(act), (2, 2)));
    }
}

#[test]
fn batchnorm_with_fused_relu() {
    check_layer(
        "batchnorm1d +relu",
        8,
        batchnorm(3, 1, Some(Act::Relu), (8, 8)),
    );
    check_layer(
        "batchnorm2d +relu",
        3,
        batchnorm(2, 4, Some(Act::Relu), (3, 3)),
    );
}

#[test]
fn batchnorm_short_batch() {
    check_layer("batchnorm2d batch 3 of 5", 3, batchnorm(3, 4, None, (3, 5)));
}

#[test]
fn standalone_relu() {
    check_layer("relu", 3, |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Inputs at least 0.05 (10 steps) from the kink, on both sides.
        let x: Vec<f32> = (0..21)
            .map(|_| {
                let v: f32 = rng.random_range(0.05..1.0);
                if rng.random_bool(0.5) {
                    v
                } else {
                    -v
                }
            })
            .collect();
        (
            Box::new(Activation::new(&CpuBackend::new(), Act::Relu, 7, 3)),
            x,
        )
    });
}

/// Sigmoid and tanh as layers of their own: smooth, so every element is checked (inputs up to 3 in
/// size, where both saturate partly).
#[test]
fn standalone_sigmoid_and_tanh() {
    for act in [Act::Sigmoid, Act::Tanh] {
        check_layer(act.name(), 3, |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let x: Vec<f32> = (0..21).map(|_| rng.random_range(-3.0..3.0)).collect();
            (Box::new(Activation::new(&CpuBackend::new(), act, 7, 3)), x)
        });
    }
}

/// A pooling layer on `batch` images of `h x w x c` whose values are distinct multiples of 0.05, so no
/// `+-eps` move changes which element is a window's maximum.
fn pool_case(kind: PoolKind, geom: PoolGeom) -> impl Fn(u64) -> Case {
    move |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = geom.in_len();
        let mut x: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
        for i in (1..n).rev() {
            x.swap(i, rng.random_range(0..=i));
        }
        (Box::new(Pool2d::new(&CpuBackend::new(), kind, geom)), x)
    }
}

fn pool_geom(n: usize, c: usize, h: usize, w: usize, k: usize, stride: usize) -> PoolGeom {
    PoolGeom {
        n,
        c,
        h,
        w,
        kh: k,
        kw: k,
        stride,
    }
}

/// Max and average pooling: windows side by side, overlapping (3x3 every 2), and leaving the last row
/// and column out (5x5 by 2x2 every 2); a global average over a 3x4 image.
#[test]
fn pooling() {
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for (h, w, k, s) in [(4, 4, 2, 2), (5, 5, 3, 2), (5, 5, 2, 2)] {
            check_layer(kind.name(), 2, pool_case(kind, pool_geom(2, 3, h, w, k, s)));
        }
    }
    let global = PoolGeom {
        kh: 3,
        kw: 4,
        ..pool_geom(2, 3, 3, 4, 1, 1)
    };
    check_layer("global avg", 2, pool_case(PoolKind::Avg, global));
}

/// Dropout at a fixed step (its mask is then fixed): dx is dy times the mask.
#[test]
fn dropout() {
    check_layer("dropout", 3, |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = rand_uniform(&mut rng, 3 * 12, -1.0, 1.0);
        let mut layer = Dropout::new(&CpuBackend::new(), 0.3, seed + 7, 12, 3);
        layer.set_step(5);
        (Box::new(layer), x)
    });
}

/// A flatten renames its input: it owns no tensor, and the model hands its input to the next layer
/// (and that layer's input gradient back, which `whole_model_cnn3` checks through cnn3's flatten).
#[test]
fn flatten_owns_nothing_and_passes_its_input_on() {
    let be = CpuBackend::new();
    let mut model = Model::new(&be, ModelSpec::parse("cnn3").unwrap(), 2, 1);
    let k = model
        .layers
        .iter()
        .position(|l| l.passes_input_on())
        .expect("cnn3 flattens");
    assert!(model.layers[k].output().is_empty());
    assert!(model.layers[k].grad_input().is_empty());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = rand_uniform(&mut rng, 2 * 28 * 28, 0.0, 1.0);
    let logits = model.forward(&be, &x, 2, true).to_vec();
    // The dense layer after the flatten, run on the output of the layer before it, gives the logits.
    let features = model.layers[k - 1].output().clone();
    let dense = &mut model.layers[k + 1];
    dense.forward(&be, &features, 2, true);
    assert_eq!(dense.output(), &logits);
}

/// Finite differences of the head's mean loss with respect to the logits.
fn head_numeric(
    head: &mut SoftmaxCrossEntropy<Cpu>,
    logits: &[f32],
    labels: &[f32],
) -> Vec<Option<f32>> {
    let be = CpuBackend::new();
    let rows = labels.len();
    let mut point = logits.to_vec();
    numeric_grad(&mut point, EPS, |z| {
        head.forward_backward(&be, &z.to_vec(), &labels.to_vec(), rows);
        (head.loss[0] as f64, Vec::new())
    })
}

/// The loss head: its mean loss against a direct f64 computation, and `dlogits` against finite
/// differences of that loss.
#[test]
fn softmax_cross_entropy() {
    let be = CpuBackend::new();
    let mut rng = ChaCha8Rng::seed_from_u64(70);
    let (rows, classes) = (4, 10);
    let mut head = SoftmaxCrossEntropy::new(&be, classes, rows);
    let logits = rand_uniform(&mut rng, rows * classes, -3.0, 3.0);
    let labels: Vec<f32> = (0..rows)
        .map(|_| rng.random_range(0..classes) as f32)
        .collect();
    head.forward_backward(&be, &logits, &labels, rows);
    let expected: f64 = (0..rows)
        .map(|r| {
            let z = &logits[r * classes..(r + 1) * classes];
            let lse = z.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            lse - z[labels[r] as usize] as f64
        })
        .sum::<f64>()
        / rows as f64;
    assert!(
        (head.loss[0] as f64 - expected).abs() < 1e-5 * expected.max(1.0),
        "loss {} vs {expected}",
        head.loss[0]
    );
    let dlogits = head.dlogits.clone();
    // p - y sums to zero over each row.
    for r in 0..rows {
        let s: f32 = dlogits[r * classes..(r + 1) * classes].iter().sum();
        assert!(s.abs() < 1e-6, "row {r} of dlogits sums to {s}");
    }
    let num = head_numeric(&mut head, &logits, &labels);
    let (err, _) =
        compare("softmax-ce dlogits", &dlogits, &num, TOL).unwrap_or_else(|e| panic!("{e}"));
    println!("softmax-ce dlogits: max relative difference {err:.2e}");
}

/// A whole model (layers chained through `Model::backward`, loss head included), one parameter tensor
/// at a time, by directional derivatives: the tensor `w` is moved to `w +- h d` for a unit direction `d`
/// (the analytic gradient's own direction, then a random one) and `(L(+) - L(-)) / 2h` must match
/// `<grad, d>` to within `MODEL_TOL * |grad|` (the size `<grad, d>` can have).
///
/// Why not element by element: a network has thousands of ReLU units, so moving any early weight
/// crosses some kink, and the loss in f32 has noise near 1e-6. One scalar per direction has a large
/// signal instead (and the loss is summed in f64 from the logits). The step `h` is sized by the gradient
/// (`h = c / |grad|`, so the loss moves by about `c`) and tried on a ladder `c` = 1e-1 .. 3e-4: too
/// large a step measures curvature and kinks, too small a one f32 noise, and the true derivative lies at
/// the bottom of that U. A direction passes at the first rung within tolerance. A gradient that is
/// wrong (misplaced, or scaled by 5%) is wrong on every rung, so this still fails (see
/// `model_check_rejects_a_scaled_or_misplaced_gradient`); the per-element checks above are the sharp ones.
fn check_model_with(
    name: &str,
    batch: usize,
    seed: u64,
    tamper: &dyn Fn(&str, &mut Vec<f32>),
) -> Result<(), String> {
    const MODEL_TOL: f64 = 1e-2;
    const LADDER: [f64; 6] = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4];
    let be = CpuBackend::new();
    let spec = ModelSpec::parse(name).unwrap();
    let mut model = Model::new(&be, spec, batch, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    // Non-zero biases and betas, so their gradients are not tied to the initial zeros.
    for p in model.params_mut() {
        if p.shape.len() == 1 {
            for v in p.value.iter_mut() {
                *v += rng.random_range(-0.2..0.2);
            }
        }
    }
    let x = rand_uniform(&mut rng, batch * 28 * 28, -0.5, 2.5);
    let labels: Vec<f32> = (0..batch).map(|i| (i % 10) as f32).collect();
    model.forward(&be, &x, batch, true);
    model.backward(&be, &x, &labels, batch);
    let mut grads: Vec<Vec<f32>> = model.params().iter().map(|p| p.grad.clone()).collect();
    let names: Vec<String> = model.params().iter().map(|p| p.name.clone()).collect();
    for (g, pname) in grads.iter_mut().zip(&names) {
        tamper(pname, g);
    }
    // The mean cross-entropy of the logits, in f64 (the head's own f32 sum would add noise).
    let loss = |model: &mut Model<Cpu>| -> f64 {
        let logits = model.forward(&be, &x, batch, true);
        logits
            .chunks(10)
            .zip(&labels)
            .map(|(z, &label)| {
                let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let lse = max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
                lse - z[label as usize] as f64
            })
            .sum::<f64>()
            / batch as f64
    };
    for (i, pname) in names.iter().enumerate() {
        let g = &grads[i];
        let norm = g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        if norm < 1e-6 {
            return Err(format!(
                "{name} d{pname}: zero gradient; the test data exercise nothing"
            ));
        }
        let random = rand_uniform(&mut rng, g.len(), -1.0, 1.0);
        let rnorm = random
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let v0 = model.params()[i].value.clone();
        let directions: [(&str, Vec<f32>); 2] = [
            (
                "gradient",
                g.iter().map(|&v| (v as f64 / norm) as f32).collect(),
            ),
            (
                "random",
                random.iter().map(|&v| (v as f64 / rnorm) as f32).collect(),
            ),
        ];
        for (dir_name, d) in directions {
            let mut best: Option<(f64, f64, f64, f64)> = None;
            for c in LADDER {
                let h = (c / norm) as f32;
                let plus: Vec<f32> = v0.iter().zip(&d).map(|(v, d)| v + h * d).collect();
                let minus: Vec<f32> = v0.iter().zip(&d).map(|(v, d)| v - h * d).collect();
                model.params_mut()[i].value.copy_from_slice(&plus);
                let lp = loss(&mut model);
                model.params_mut()[i].value.copy_from_slice(&minus);
                let lm = loss(&mut model);
                model.params_mut()[i].value.copy_from_slice(&v0);
                let numeric = (lp - lm) / (2.0 * h as f64);
                // <grad, realised step> / 2h: the step f32 actually took.
                let analytic: f64 = g
                    .iter()
                    .zip(plus.iter().zip(&minus))
                    .map(|(&g, (&p, &m))| g as f64 * (p as f64 - m as f64))
                    .sum::<f64>()
                    / (2.0 * h as f64);
                let err = (numeric - analytic).abs() / norm;
                if best.is_none_or(|b| err < b.0) {
                    best = Some((err, c, analytic, numeric));
                }
                if err <= MODEL_TOL {
                    break; // within tolerance: this direction passes
                }
            }
            let (err, c, analytic, numeric) = best.expect("a ladder has rungs");
            let line = format!(
                "{name} d{pname} along the {dir_name} direction: analytic {analytic:.5e}, \
                 numeric {numeric:.5e}, error {err:.2e} of |grad| {norm:.3e} (step: loss moves {c:.0e})"
            );
            if err > MODEL_TOL {
                return Err(format!("{line} > {MODEL_TOL}"));
            }
            println!("{line}");
        }
    }
    Ok(())
}

fn check_model(name: &str, batch: usize, seed: u64) {
    check_model_with(name, batch, seed, &|_, _| {})
        .unwrap_or_else(|e| panic!("gradient check failed: {e}"));
}

#[test]
fn whole_model_fc8() {
    check_model("fc8", 4, 80);
}

#[test]
fn whole_model_fc8_bn() {
    check_model("fc8-bn", 6, 81);
}

#[test]
fn whole_model_cnn3() {
    check_model("cnn3", 2, 82);
}

#[test]
fn whole_model_cnn3_bn() {
    check_model("cnn3-bn", 2, 83);
}

/// The seed's three-layer network (sigmoid, tanh): docs/MODELS.md derives these gradients by hand.
#[test]
fn whole_model_mlp3() {
    check_model("mlp3", 4, 84);
}

// ---- The check can fail: the same function rejects deliberately wrong gradients. ----

/// Scales the largest-magnitude element of the gradient named `target` by `factor`.
fn scale_largest(target: &'static str, factor: f32) -> impl Fn(&str, &[f32], &mut Vec<f32>) {
    move |name, _x, g| {
        if name == target {
            let i = (0..g.len())
                .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
                .unwrap();
            g[i] *= factor;
        }
    }
}

#[test]
fn check_rejects_a_gradient_scaled_by_1_05_in_one_element() {
    type Maker = Box<dyn Fn(u64) -> Case>;
    let cases: [(&str, Maker, usize, &[&'static str]); 2] = [
        (
            "linear",
            Box::new(linear((7, 5), true, None, (4, 4))),
            4,
            &["x", "fc.weight", "fc.bias"],
        ),
        (
            "conv s2 p1",
            Box::new(conv(geom(2, 2, 5, 2, 1), 3, true, None, 2)),
            2,
            &["x", "conv.weight", "conv.bias"],
        ),
    ];
    for (what, make, batch, targets) in cases {
        // Untampered, the layer and data pass ...
        let (mut layer, x) = make(0);
        check_layer_with(what, layer.as_mut(), &x, batch, 1, &|_, _, _| {})
            .expect("the true gradient passes");
        // ... and 5% off in the largest element of any one gradient is rejected.
        for &target in targets {
            let (mut layer, x) = make(0);
            let err = check_layer_with(
                what,
                layer.as_mut(),
                &x,
                batch,
                1,
                &scale_largest(target, 1.05),
            )
            .expect_err("a gradient 5% off in one element must fail the check");
            println!("{target} x1.05 rejected as expected: {err}");
            assert!(err.contains("max relative difference"), "{err}");
        }
    }
}

#[test]
fn model_check_rejects_a_scaled_or_misplaced_gradient() {
    type Tamper = Box<dyn Fn(&mut Vec<f32>)>;
    let cases: [(&str, &str, Tamper); 3] = [
        (
            "fc3.weight",
            "x1.05",
            Box::new(|g| g.iter_mut().for_each(|v| *v *= 1.05)),
        ),
        (
            "bn2.weight",
            "x0.95",
            Box::new(|g| g.iter_mut().for_each(|v| *v *= 0.95)),
        ),
        ("fc2.weight", "reversed", Box::new(|g| g.reverse())),
    ];
    for (target, how, f) in cases {
        let tamper = |name: &str, g: &mut Vec<f32>| {
            if name == target {
                f(g)
            }
        };
        let err = check_model_with("fc8-bn", 6, 81, &tamper)
            .expect_err("a wrong model gradient must fail the check");
        println!("{target} {how} rejected as expected: {err}");
        assert!(err.contains(target), "{err}");
    }
}

#[test]
fn check_rejects_batchnorm_dx_without_mean_and_variance_terms() {
    let (channels, spatial, batch) = (3, 4, 2);
    let make = batchnorm(channels, spatial, None, (batch, batch));
    let r_seed = 7;
    let (mut bn, x) = make(0);
    check_layer_with("batchnorm2d", bn.as_mut(), &x, batch, r_seed, &|_, _, _| {})
        .expect("the true gradient passes");
    let gamma = bn.params()[0].value.clone();
    // The naive dx = gamma * invstd * dy, as if the batch mean and variance did not depend on x.
    let naive = move |name: &str, x: &[f32], dx: &mut Vec<f32>| {
        if name != "x" {
            return;
        }
        let rows = x.len() / channels;
        // dy is R, drawn first from the check's seed.
        let dy = rand_uniform(&mut ChaCha8Rng::seed_from_u64(r_seed), x.len(), -1.0, 1.0);
        for c in 0..channels {
            let col: Vec<f64> = (0..rows).map(|i| x[i * channels + c] as f64).collect();
            let mean = col.iter().sum::<f64>() / rows as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
            let invstd = 1.0 / (var + 1e-5).sqrt();
            for i in 0..rows {
                let k = i * channels + c;
                dx[k] = (gamma[c] as f64 * invstd * dy[k] as f64) as f32;
            }
        }
    };
    let (mut bn, x) = make(0);
    let err = check_layer_with("batchnorm2d", bn.as_mut(), &x, batch, r_seed, &naive)
        .expect_err("batch-norm dx without the mean and variance terms must fail the check");
    println!("rejected as expected: {err}");
    assert!(err.contains("dx"), "{err}");
}

#[test]
fn check_rejects_softmax_gradient_without_the_mean() {
    // p - y without the 1/B of the mean loss.
    let be = CpuBackend::new();
    let mut rng = ChaCha8Rng::seed_from_u64(98);
    let (rows, classes) = (3, 10);
    let mut head = SoftmaxCrossEntropy::new(&be, classes, rows);
    let logits = rand_uniform(&mut rng, rows * classes, -2.0, 2.0);
    let labels = vec![1.0, 4.0, 9.0];
    head.forward_backward(&be, &logits, &labels, rows);
    let right = head.dlogits.clone();
    let wrong: Vec<f32> = right.iter().map(|g| g * rows as f32).collect();
    let num = head_numeric(&mut head, &logits, &labels);
    compare("softmax-ce", &right, &num, TOL).expect("the true gradient passes");
    let err = compare("softmax-ce (no 1/B)", &wrong, &num, TOL).expect_err("must fail");
    println!("rejected as expected: {err}");
}

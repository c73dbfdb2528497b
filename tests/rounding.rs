//! Evidence for the gradcheck design: on the CPU reference alone, summing the same batch in another
//! order changes the gradients only at f32 rounding level, yet one Adam or RMSProp step from those two
//! gradients differs far beyond 1e-4, because the update divides each gradient by its own magnitude and
//! so turns the noise of mathematically-zero gradients into full +-lr steps. That is why gradcheck feeds
//! both backends the same gradients when it checks the optimizer kernels.

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::Backend;
use wgtrain::io::data::{synthetic, ImageSet};
use wgtrain::model::{Model, ModelSpec};
use wgtrain::optim::{OptimKind, Optimizer};
use wgtrain::tools::gradcheck::max_rel_diff;
use wgtrain::train::BatchBuffers;

/// Gradients and post-step weights of fc8-bn on `data` (all of it as one batch), for `kind`.
fn grads_and_step(data: &ImageSet, kind: OptimKind) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let be = CpuBackend::new();
    let n = data.len();
    let mut model = Model::new(&be, ModelSpec::parse("fc8-bn").unwrap(), n, 1);
    let mut bufs = BatchBuffers::new(&be, n, data.pixels());
    let ds = be.upload_dataset(&data.images, &data.labels, data.pixels(), &data.norm());
    be.gather_batch(&ds, 0, n, &mut bufs.x, &mut bufs.y);
    model.forward(&be, &bufs.x, n, true);
    model.backward(&be, &bufs.x, &bufs.y, n);
    let grads = model.params().iter().map(|p| p.grad.clone()).collect();
    Optimizer::new(kind, kind.default_lr()).step(&be, &mut model);
    (
        grads,
        model.params().iter().map(|p| p.value.clone()).collect(),
    )
}

fn reversed(data: &ImageSet) -> ImageSet {
    let (n, p) = (data.len(), data.pixels());
    let mut out = data.clone();
    for i in 0..n {
        out.images[i * p..(i + 1) * p].copy_from_slice(&data.images[(n - 1 - i) * p..(n - i) * p]);
        out.labels[i] = data.labels[n - 1 - i];
    }
    out
}

#[test]
fn summation_order_alone_moves_an_adaptive_step_beyond_1e4() {
    // A few batch sizes: how far one step moves depends on where the rounding happens to fall (it moves
    // with the GEMM's kernels: 32 images alone went beyond 1e-4 with matrixmultiply, not with gemm),
    // but the worst of them goes beyond 1e-4.
    let (mut worst_step, mut worst_gain) = (0.0f32, 0.0f32);
    for (kind, data) in [OptimKind::RmsProp, OptimKind::Adam]
        .into_iter()
        .flat_map(|kind| [32, 64, 110].map(move |n| (kind, synthetic(n, 9))))
    {
        let (g1, w1) = grads_and_step(&data, kind);
        let (g2, w2) = grads_and_step(&reversed(&data), kind);
        let grad_err = g1
            .iter()
            .zip(&g2)
            .map(|(a, b)| max_rel_diff(a, b))
            .fold(0.0f32, f32::max);
        let step_err = w1
            .iter()
            .zip(&w2)
            .map(|(a, b)| max_rel_diff(a, b))
            .fold(0.0f32, f32::max);
        assert!(
            grad_err < 1e-5,
            "{kind:?}: gradients should agree to rounding, got {grad_err:.2e}"
        );
        // The step amplifies the gradients' difference, by orders of magnitude at worst.
        worst_gain = worst_gain.max(step_err / grad_err);
        eprintln!("{kind:?}, {} images: gradients differ by {grad_err:.2e}, weights after one step by {step_err:.2e}", data.len());
        worst_step = worst_step.max(step_err);
    }
    assert!(
        worst_gain > 50.0,
        "the step amplified the gradients' difference {worst_gain:.1}x at most"
    );
    assert!(
        worst_step > 1e-4,
        "expected an adaptive step beyond 1e-4, got {worst_step:.2e}"
    );
}

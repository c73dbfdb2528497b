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
    let data = synthetic(32, 9);
    let mut worst_step = 0.0f32;
    for kind in [OptimKind::RmsProp, OptimKind::Adam] {
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
        // The step amplifies the gradients' difference by orders of magnitude.
        assert!(
            step_err > 50.0 * grad_err,
            "{kind:?}: step {step_err:.2e} vs gradients {grad_err:.2e}"
        );
        eprintln!("{kind:?}: gradients differ by {grad_err:.2e}, weights after one step by {step_err:.2e}");
        worst_step = worst_step.max(step_err);
    }
    assert!(
        worst_step > 1e-4,
        "expected an adaptive step beyond 1e-4, got {worst_step:.2e}"
    );
}

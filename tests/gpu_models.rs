//! Whole models on the GPU against the CPU reference, and training on the GPU.

mod support;

use support::gpu;
use wgtrain::backend::KernelChoice;
use wgtrain::io::data::{split, synthetic};
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::tools::gradcheck::{gradcheck, Tolerance};
use wgtrain::train::{train, Silent, TrainConfig};

fn check_model(name: &str, batch: usize) {
    check_model_on(&gpu(), name, batch);
}

fn check_model_on(g: &wgtrain::backend::gpu::GpuBackend, name: &str, batch: usize) {
    let data = synthetic(batch, 5);
    let r = gradcheck(
        g,
        ModelSpec::parse(name).unwrap(),
        batch,
        1,
        &data,
        Tolerance::default(),
    );
    let worst = r.worst().unwrap();
    assert!(
        r.pass,
        "{name}: loss rel {:.2e}, worst {} {} {:.2e}",
        r.loss_rel_err, worst.what, worst.name, worst.rel_err
    );
    // Every parameter is checked: gradient, and weights after each of the three optimizers.
    let grads = r.tensors.iter().filter(|t| t.what == "grad").count();
    assert!(
        grads > 0
            && r.tensors
                .iter()
                .filter(|t| t.what.starts_with("step:"))
                .count()
                == 3 * grads
    );
}

fn gradcheck_fc8_bn() {
    check_model("fc8-bn", 8);
}

fn gradcheck_cnn7_bn() {
    check_model("cnn7-bn", 4);
}

fn gradcheck_cnn3_plain() {
    check_model("cnn3", 3);
}

/// A model file of the user's (issue 18) that uses every layer type and option the study's models do
/// not: a 5x5 "same" convolution with bias, a valid strided one without, batch norm 2d and 1d, max,
/// average and global average pooling (overlapping windows too), sigmoid and tanh, dropout, a ReLU that
/// is not fused (after flatten), dense layers with and without bias.
const MIXED_MODEL: &str = include_str!("fixtures/every_layer.toml");

/// The same layers as [`MIXED_MODEL`] with the study's: batch norm, fused ReLUs, flatten.
const MIXED_MODEL_BN: &str = r#"
version = 1
[[layer]]
type = "conv2d"
filters = 6
kernel = 5
padding = "same"
[[layer]]
type = "relu"
[[layer]]
type = "conv2d"
filters = 8
kernel = 3
stride = 3
bias = false
[[layer]]
type = "batchnorm"
[[layer]]
type = "flatten"
[[layer]]
type = "relu"
[[layer]]
type = "dense"
units = 24
bias = false
[[layer]]
type = "batchnorm"
[[layer]]
type = "relu"
[[layer]]
type = "dense"
units = "classes"
"#;

fn gradcheck_model_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("mixed.toml", MIXED_MODEL),
        ("mixed-bn.toml", MIXED_MODEL_BN),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        check_model(path.to_str().unwrap(), 6);
    }
}

/// The built-ins beyond the study: the seed's three-layer network and LeNet-5.
fn gradcheck_mlp3_and_lenet5() {
    check_model("mlp3", 8);
    check_model("lenet5", 4);
}

/// vgg-small on 32x32 RGB images (the per-channel input path, three-channel convolutions): every
/// gradient and optimizer step on the GPU against the CPU.
fn gradcheck_vgg_small_on_rgb_images() {
    let data = wgtrain::io::data::synthetic_shaped(4, 5, (32, 32, 3), 10);
    let spec = ModelSpec::parse_for("vgg-small", data.shape(), 10).unwrap();
    let r = gradcheck(&gpu(), spec, 4, 1, &data, Tolerance::default());
    let worst = r.worst().unwrap();
    assert!(
        r.pass,
        "vgg-small: loss rel {:.2e}, worst {} {} {:.2e}",
        r.loss_rel_err, worst.what, worst.name, worst.rel_err
    );
    // 4 convolutions (no bias), 5 batch norms (scale and shift), 2 dense weights and the last bias.
    assert_eq!(r.tensors.iter().filter(|t| t.what == "grad").count(), 17);
}

/// cnn7 without batch norm, where (on lavapipe, seed 1) rounding leaves a conv7 output at 1.5e-6 on the
/// CPU and clipped to 0 on the GPU: unaligned, that one ReLU kink moves conv7's weight gradient by 9e-2.
fn gradcheck_cnn7_plain_across_relu_kinks() {
    check_model("cnn7", 16);
}

/// Convolutions whose column matrix would exceed the binding limit work through the batch in chunks
/// of 64 images (cnn7-bn at batch 2048 on lavapipe's 128 MiB). A pretended limit of 176,400 floats
/// makes every cnn3-bn convolution chunk at batch 130 (64 + 64 + 2 images): still the CPU's figures.
fn gradcheck_cnn3_bn_with_chunked_convolutions() {
    use wgtrain::backend::Backend;
    let dispatches = |g: &wgtrain::backend::gpu::GpuBackend| {
        let before = g.dispatch_count().unwrap();
        check_model_on(g, "cnn3-bn", 130);
        g.dispatch_count().unwrap() - before
    };
    let whole = dispatches(&gpu());
    let chunked = dispatches(&gpu().with_binding_limit(176_400 * 4));
    assert!(
        chunked > whole,
        "no chunking: {chunked} dispatches vs {whole}"
    );
}

fn gradcheck_rejects_what_it_cannot_vouch_for() {
    // The same comparison with a bound below f32 rounding must fail: the check is live.
    let g = gpu();
    let data = synthetic(8, 5);
    let r = gradcheck(
        &g,
        ModelSpec::parse("fc8-bn").unwrap(),
        8,
        1,
        &data,
        Tolerance {
            tensor: 1e-12,
            loss: 1e-12,
        },
    );
    assert!(
        !r.pass,
        "a bound of 1e-12 cannot hold between two f32 implementations"
    );
}

/// The real-GPU kernels (workgroup-memory tiles, split-K to 256 workgroups) on whole models, whatever
/// the adapter: what every real GPU would run, checked here on the software drivers.
fn gradcheck_tiled_kernels() {
    let g = support::gpu_with(KernelChoice::Tiled);
    assert_eq!(g.style.name(), "tiled");
    for (name, batch) in [("fc8-bn", 8), ("cnn3-bn", 6), ("cnn5", 5)] {
        check_model_on(&g, name, batch);
    }
}

/// Eight Adam steps of `model` on the kernel set `kernels`.
fn losses_with(kernels: KernelChoice, model: &str) -> Vec<f32> {
    let g = support::gpu_with(kernels);
    let data = split(synthetic(200, 3), synthetic(20, 4), 20).unwrap();
    let cfg = TrainConfig {
        model: ModelSpec::parse(model).unwrap(),
        optim: OptimKind::Adam,
        lr: 0.01,
        recipe: Default::default(),
        batch: 16,
        steps: 8,
        seed: 7,
        log_every: 4,
        eval_each_epoch: false,
        out: None,
    };
    let r = train(&g, &data, &cfg, &mut Silent).unwrap();
    assert_eq!(r.kernels.as_deref(), Some(g.style.name()));
    r.losses
}

/// Same seed, same losses, bit for bit, on a given adapter and kernel set: no atomics, and every sum
/// in an order fixed by the shape (split-K slices, column chunks), for both kernel sets; cnn3-bn
/// (convolutions, batch norm) and fc8.
fn same_seed_same_losses_on_each_kernel_set() {
    for kernels in [KernelChoice::Tiled, KernelChoice::Emulated] {
        for model in ["cnn3-bn", "fc8"] {
            let (a, b) = (losses_with(kernels, model), losses_with(kernels, model));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{model} on {kernels:?}: {a:?} vs {b:?}");
        }
    }
}

/// The two kernel sets sum in different orders, so their runs part by rounding only: the first
/// losses agree within gradcheck's loss bound (1e-5).
fn tiled_and_emulated_losses_agree_at_first() {
    let tiled = losses_with(KernelChoice::Tiled, "cnn3-bn");
    let emulated = losses_with(KernelChoice::Emulated, "cnn3-bn");
    for (s, (t, e)) in tiled.iter().zip(&emulated).take(3).enumerate() {
        let rel = (t - e).abs() / e.abs();
        assert!(
            rel <= 1e-5,
            "step {s}: tiled {t} vs emulated {e} (rel {rel:.2e})"
        );
    }
}

fn fifty_gpu_steps_lower_the_loss_and_track_the_cpu() {
    let g = gpu();
    let all = synthetic(1700, 3);
    let test = synthetic(100, 4);
    let data = split(all, test, 100).unwrap();
    let cfg = TrainConfig {
        model: ModelSpec::parse("fc8-bn").unwrap(),
        optim: OptimKind::Adam,
        lr: 0.01,
        recipe: Default::default(),
        batch: 32,
        steps: 50,
        seed: 1,
        log_every: 25,
        eval_each_epoch: false,
        out: None,
    };
    let gr = train(&g, &data, &cfg, &mut Silent).unwrap();
    let cr = train(
        &wgtrain::backend::cpu::CpuBackend::new(),
        &data,
        &cfg,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(gr.losses.len(), 50);
    let first: f32 = gr.losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = gr.losses[40..].iter().sum::<f32>() / 10.0;
    assert!(
        last < 0.7 * first,
        "GPU loss did not fall: first 10 steps {first:.4}, last 10 {last:.4}"
    );
    for (s, (gl, cl)) in gr.losses.iter().zip(&cr.losses).take(5).enumerate() {
        assert!(
            (gl - cl).abs() <= 1e-3 * cl.abs(),
            "step {s}: gpu loss {gl} vs cpu {cl}"
        );
    }
}

/// What a web page opens (issue 21): WebGPU's default limits, which every browser grants (8 storage
/// buffers per shader stage, 128 MiB per binding, 16 KiB of workgroup memory). Every built-in model on
/// both kernel sets: a pipeline over a limit is a validation error (`health`), which also leaves the
/// compared tensors wrong.
fn every_model_fits_webgpu_default_limits() {
    use wgtrain::backend::Backend;
    for kernels in [KernelChoice::Tiled, KernelChoice::Emulated] {
        let g = support::gpu_web_limits(kernels);
        assert_eq!(g.max_binding_len(), Some((128 << 20) / 4));
        for name in [
            "fc8",
            "fc8-bn",
            "cnn3",
            "cnn3-bn",
            "cnn5",
            "cnn5-bn",
            "cnn7",
            "cnn7-bn",
            "mlp3",
            "lenet5",
            "vgg-small",
        ] {
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check_model_on(&g, name, 8)
            }));
            g.health()
                .unwrap_or_else(|e| panic!("{name}, {kernels:?} kernels: {e}"));
            checked.unwrap();
        }
    }
}

fn main() -> std::process::ExitCode {
    support::run_gpu_tests(&[
        (
            "every_model_fits_webgpu_default_limits",
            every_model_fits_webgpu_default_limits,
        ),
        ("gradcheck_fc8_bn", gradcheck_fc8_bn),
        ("gradcheck_cnn7_bn", gradcheck_cnn7_bn),
        ("gradcheck_cnn3_plain", gradcheck_cnn3_plain),
        ("gradcheck_model_files", gradcheck_model_files),
        ("gradcheck_mlp3_and_lenet5", gradcheck_mlp3_and_lenet5),
        (
            "gradcheck_vgg_small_on_rgb_images",
            gradcheck_vgg_small_on_rgb_images,
        ),
        (
            "gradcheck_cnn7_plain_across_relu_kinks",
            gradcheck_cnn7_plain_across_relu_kinks,
        ),
        (
            "gradcheck_cnn3_bn_with_chunked_convolutions",
            gradcheck_cnn3_bn_with_chunked_convolutions,
        ),
        (
            "gradcheck_rejects_what_it_cannot_vouch_for",
            gradcheck_rejects_what_it_cannot_vouch_for,
        ),
        ("gradcheck_tiled_kernels", gradcheck_tiled_kernels),
        (
            "same_seed_same_losses_on_each_kernel_set",
            same_seed_same_losses_on_each_kernel_set,
        ),
        (
            "tiled_and_emulated_losses_agree_at_first",
            tiled_and_emulated_losses_agree_at_first,
        ),
        (
            "fifty_gpu_steps_lower_the_loss_and_track_the_cpu",
            fifty_gpu_steps_lower_the_loss_and_track_the_cpu,
        ),
    ])
}

//! The one support module of the integration tests (each test file has `mod support;`): running the
//! binary, asserting a user error, seeded random values, synthetic data directories, and the GPU
//! backend or a counted skip.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use wgtrain::backend::Backend;
use wgtrain::io::checkpoint::Checkpoint;
use wgtrain::io::data;
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::tools::profile::{format_profile, Profile, ProfileRun, Timing};
use wgtrain::train::{train_with, Persist, Silent, TrainConfig};

/// Runs the `wgtrain` binary. Backtraces are switched on, so that any panic or `{:?}`-printed error
/// shows in stderr (and the input-error assertion rejects it).
pub fn wgtrain(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_wgtrain"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .expect("run wgtrain");
    forward_validation_messages(&out.stdout);
    out
}

/// Under the Vulkan validation layer (CI), a child process's messages land in its captured stdout;
/// their first lines are copied to this process's stdout, past the test harness's capture, so that the
/// CI log holds every message of the run (see `.ci/run`).
fn forward_validation_messages(child_stdout: &[u8]) {
    use std::io::Write as _;
    let stdout = String::from_utf8_lossy(child_stdout);
    let mut lines = stdout
        .lines()
        .filter(|l| l.contains("Validation") && l.contains("[ "))
        .peekable();
    if lines.peek().is_some() {
        let mut out = std::io::stdout().lock();
        for l in lines {
            let _ = writeln!(out, "(child wgtrain) {l}");
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the run succeeded; returns its stdout.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts `out` is a user error: exit code 2 and stderr exactly one line `error: ...` mentioning
/// every one of `mentions`, with no panic or backtrace.
pub fn assert_input_error(out: &Output, mentions: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit status {:?}, stderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr should be one line:\n{stderr}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    for m in mentions {
        assert!(lines[0].contains(m), "stderr should mention {m}: {stderr}");
    }
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "Stack"] {
        assert!(!stderr.contains(bad), "{bad} in stderr: {stderr}");
    }
}

/// Writes an IDX data directory (raw files) of `train` and `test` synthetic images.
pub fn synthetic_dir(dir: &Path, train: usize, test: usize, seed: u64) {
    data::write_idx_dir(
        dir,
        &data::synthetic(train, seed),
        &data::synthetic(test, seed + 1),
    )
    .unwrap();
}

/// `train` on the CPU over a set `synthetic_dir` wrote to `data` (300 training and 100 test images):
/// 100 images held out, batches of 10.
pub fn tiny_train(data: &str) -> Vec<&str> {
    vec![
        "train",
        "--backend",
        "cpu",
        "--data",
        data,
        "--val-size",
        "100",
        "--batch",
        "10",
    ]
}

/// Deterministic pseudo-random values in [-1, 1) from a seed (no RNG state to pass around): the op
/// check's sequence (`wgtrain::tools::opcheck::values`).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    wgtrain::tools::opcheck::values(n, seed)
}

/// `n` values uniform in [lo, hi) from `rng`.
pub fn rand_uniform(rng: &mut impl rand::Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// The adapter the GPU tests run on: the one whose name contains `WGTRAIN_TEST_ADAPTER` (CI runs the
/// GPU test binaries once per Vulkan driver: `llvmpipe`, then `SwiftShader`), else the best one.
pub fn test_adapter() -> Option<String> {
    std::env::var("WGTRAIN_TEST_ADAPTER")
        .ok()
        .filter(|v| !v.is_empty())
}

/// The GPU backend on the test adapter (any adapter, lavapipe included, unless `WGTRAIN_TEST_ADAPTER`
/// names one), for a test that `run_gpu_tests` runs: it has already checked that the adapter exists,
/// so a failure here is a test failure.
#[cfg(feature = "gpu")]
pub fn gpu() -> wgtrain::backend::gpu::GpuBackend {
    gpu_with(wgtrain::backend::KernelChoice::Auto)
}

/// [`gpu_with`] within WebGPU's default limits, as a web page opens it (8 storage buffers a stage,
/// 128 MiB a binding).
#[cfg(feature = "gpu")]
#[allow(dead_code)]
pub fn gpu_web_limits(
    kernels: wgtrain::backend::KernelChoice,
) -> wgtrain::backend::gpu::GpuBackend {
    use wgtrain::backend::gpu::{choose_adapter, instance, GpuBackend};
    let adapter = choose_adapter(&instance(), test_adapter().as_deref(), true)
        .unwrap_or_else(|e| panic!("no GPU adapter is usable: {e:#}"));
    GpuBackend::on_adapter_web_limits(&adapter, kernels)
        .unwrap_or_else(|e| panic!("the adapter within WebGPU's default limits: {e:#}"))
}

/// [`gpu`] with the kernel set `kernels`.
#[cfg(feature = "gpu")]
pub fn gpu_with(kernels: wgtrain::backend::KernelChoice) -> wgtrain::backend::gpu::GpuBackend {
    wgtrain::backend::gpu::GpuBackend::open(test_adapter().as_deref(), true, kernels)
        .unwrap_or_else(|e| panic!("no GPU adapter is usable: {e:#}"))
}

/// The `main` of a GPU test binary (`harness = false` in Cargo.toml): runs `tests` like `cargo test`
/// does, except that without a GPU adapter each is reported as ignored ("skipped: no GPU adapter") and
/// counted in the closing line's "ignored", never as passed, after a one-line notice. With
/// `WGTRAIN_REQUIRE_GPU=1` (CI) they run anyway and fail.
#[cfg(feature = "gpu")]
pub fn run_gpu_tests(tests: &[(&'static str, fn())]) -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Completion, Trial};
    let args = Arguments::from_args();
    let required = std::env::var("WGTRAIN_REQUIRE_GPU").is_ok_and(|v| v == "1");
    // One probe for the binary; each test opens its own backend.
    let probe = wgtrain::backend::gpu::GpuBackend::new(test_adapter().as_deref(), true);
    if let Ok(g) = &probe {
        let i = g.adapter_info();
        eprintln!(
            "note: GPU tests on {} ({:?} {:?}, driver {} {})",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        );
    }
    let missing = probe.err().map(|e| format!("{e:#}"));
    let skip = missing.is_some() && !required;
    if let (true, Some(why)) = (skip, &missing) {
        eprintln!(
            "note: skipping {} GPU tests ({why}); WGTRAIN_REQUIRE_GPU=1 makes them fail instead",
            tests.len()
        );
    }
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            Trial::ignorable_test(name, move || {
                if skip {
                    return Ok(Completion::ignored_with("skipped: no GPU adapter"));
                }
                test();
                Ok(Completion::Completed)
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Checkpoints are backend-neutral: trains cnn3-bn on `a`, loads the checkpoint on `b` (exactly the same tensors, the same test figures), resumes
/// there, and loads the result back on `a`.
pub fn cross_backend<A: Backend + 'static, B: Backend + 'static>(a: &A, b: &B) {
    let data = data::split(data::synthetic(330, 7), data::synthetic(50, 8), 30).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    let persist = |resume, save| Persist { resume, save };
    let cfg = |steps| TrainConfig {
        model: ModelSpec::parse("cnn3-bn").unwrap(),
        optim: OptimKind::Adam,
        lr: OptimKind::Adam.default_lr(),
        recipe: Default::default(),
        batch: 10,
        steps,
        seed: 3,
        log_every: 7,
        eval_each_epoch: true,
        out: None,
    };
    let c = cfg(8);
    train_with(a, &data, &c, &mut Silent, persist(None, Some(&first))).unwrap();
    let ck = Checkpoint::load(&first).unwrap();
    let (model, opt) = ck.restore(b, 10).unwrap();
    let again = Checkpoint::capture(b, &model, &opt, 10, 3, 30, data.train.len(), &data.info);
    assert_eq!(
        again.tensors,
        ck.tensors,
        "{} -> {}: same tensors",
        a.kind(),
        b.kind()
    );
    let ra = wgtrain::tools::predict::evaluate_checkpoint(a, &ck, &data.test, 16).unwrap();
    let rb = wgtrain::tools::predict::evaluate_checkpoint(b, &ck, &data.test, 16).unwrap();
    assert!((ra.test_loss - rb.test_loss).abs() <= 1e-4 * ra.test_loss.max(1.0));
    let c = cfg(12);
    train_with(b, &data, &c, &mut Silent, persist(Some(&ck), Some(&second))).unwrap();
    let back = Checkpoint::load(&second).unwrap();
    assert_eq!(back.meta.step, 12);
    assert_eq!(back.meta.backend, b.kind());
    back.restore(a, 4).unwrap();
    wgtrain::tools::predict::evaluate_checkpoint(a, &back, &data.test, 16).unwrap();
}

fn calls(p: &Profile, op: &str) -> f64 {
    p.ops
        .iter()
        .find(|r| r.op.starts_with(op))
        .unwrap_or_else(|| panic!("no op {op} in {:?}", p.ops))
        .calls_per_step
}

/// A profile of fc8-bn counts each op of a step and its shares add up. `adam_calls`: 23 on the CPU (one update per parameter tensor), 1 on a GPU (all of them at once).
pub fn check_fc8_bn_profile(p: &Profile, adam_calls: f64) {
    // fc8-bn: 8 linear layers (7 without bias, each followed by batch norm), Adam on 7 weights,
    // 1 bias and 7 gammas and betas.
    assert_eq!(calls(p, "matmul NT"), 8.0);
    assert_eq!(calls(p, "matmul TN"), 8.0);
    assert_eq!(
        calls(p, "matmul NN"),
        7.0,
        "no input gradient for the first layer"
    );
    assert_eq!(calls(p, "bn_forward_train"), 7.0);
    assert_eq!(calls(p, "bn_backward"), 7.0);
    assert_eq!(calls(p, "optim adam"), adam_calls);
    assert_eq!(calls(p, "gather_batch"), 1.0);
    let share: f64 = p.ops.iter().map(|r| r.share).sum();
    assert!((share - 1.0).abs() < 1e-9, "shares add up to {share}");
    let sum: f64 = p.ops.iter().map(|r| r.ms_per_step).sum();
    assert!((sum - p.ops_ms_per_step).abs() < 1e-9);
    assert!(p.ops.iter().all(|r| r.ms_per_step > 0.0), "{:?}", p.ops);
    for r in &p.ops {
        let matmul = r.op.starts_with("matmul");
        assert_eq!(r.gflops.is_some(), matmul, "{r:?}");
        assert_eq!(r.gbytes_per_s.is_some(), !matmul, "{r:?}");
    }
    let table = format_profile(p);
    assert!(table.contains("| total"), "{table}");
}

/// A bench statistic is present, finite and ordered: 0 < min <= median <= max.
pub fn assert_stat(v: &serde_json::Value, field: &str) -> wgtrain::tools::bench::Stat {
    let s = &v[field];
    let get = |k: &str| {
        s[k].as_f64()
            .unwrap_or_else(|| panic!("{field}.{k} missing in {v}"))
    };
    let (median, min, max) = (get("median"), get("min"), get("max"));
    assert!(
        min > 0.0 && min <= median && median <= max && max.is_finite(),
        "{field}: median {median} not within [{min}, {max}] in {v}"
    );
    wgtrain::tools::bench::Stat { median, min, max }
}

/// Records a measurement at the end of every epoch of a training run (the memory tests).
pub struct AtEachEpoch<F: FnMut() -> u64> {
    pub measure: F,
    pub values: Vec<u64>,
}

impl<F: FnMut() -> u64> wgtrain::train::Observer for AtEachEpoch<F> {
    fn epoch(&mut self, _m: &wgtrain::train::EpochMetrics) {
        let v = (self.measure)();
        self.values.push(v);
    }
}

/// Trains `model` with Adam for `epochs` epochs of 20 steps of 20 (400 synthetic images, 100 held out
/// for validation, evaluated each epoch) and returns `measure()` at the end of each epoch.
pub fn measure_each_epoch<B: Backend + 'static>(
    be: &B,
    model: &str,
    epochs: usize,
    measure: impl FnMut() -> u64,
) -> Vec<u64> {
    let data = data::split(data::synthetic(500, 1), data::synthetic(100, 2), 100).unwrap();
    let cfg = TrainConfig {
        model: ModelSpec::parse(model).unwrap(),
        optim: OptimKind::Adam,
        lr: 0.001,
        recipe: Default::default(),
        batch: 20,
        steps: 20 * epochs,
        seed: 1,
        log_every: 10,
        eval_each_epoch: true,
        out: None,
    };
    let mut obs = AtEachEpoch {
        measure,
        values: Vec::new(),
    };
    let persist = Persist {
        resume: None,
        save: None,
    };
    train_with(be, &data, &cfg, &mut obs, persist).unwrap();
    assert_eq!(obs.values.len(), epochs);
    obs.values
}

/// The profile the tests run: Adam, batch 16, 2 profiled steps.
pub fn profile_run(spec: ModelSpec, timing: Timing) -> ProfileRun {
    ProfileRun {
        spec,
        optim: OptimKind::Adam,
        batch: 16,
        steps: 2,
        timing,
        kernels: wgtrain::backend::KernelChoice::Auto,
    }
}

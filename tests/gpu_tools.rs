//! The tools on the GPU backend (lavapipe in CI): bench rows and speed-ups, checkpoints moving between
//! backends, the profile's dispatch counts, and a sweep releasing each run's buffers. Their CPU twins sit
//! in bench.rs, checkpoint.rs, profile.rs and sweep.rs; these are here because a GPU test binary reports
//! its tests as skipped, not passed, when there is no adapter (see `support::run_gpu_tests`).

mod support;

use support::{assert_stat, cross_backend, gpu};
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::Backend;
use wgtrain::io::data;
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::study::grid::grid;
use wgtrain::study::sweep::{run_sweep, Budget, SweepConfig, SweepObserver};
use wgtrain::tools::bench::{self, BackendSel, BenchConfig};
use wgtrain::tools::profile::{profile, Timing};
use wgtrain::train::{Observer, Silent};

/// Bench rows on the GPU name the adapter, every figure is finite and ordered, and each GPU row carries
/// its speed-up over the CPU row of the same configuration.
fn gpu_bench_rows_and_speedups() {
    let adapter = gpu().adapter_info().name.clone();
    let cfg = BenchConfig {
        models: bench::parse_models("fc8-bn").unwrap(),
        batches: vec![4],
        steps: Some(1),
        images: 16,
        warmup: 1,
        repeats: 3,
        matmuls: bench::parse_matmuls("8x16x4").unwrap(),
        // Adapter names may hold commas ("llvmpipe (LLVM 15.0.6, 256 bits)"): name it directly.
        backends: Some(vec![
            BackendSel::Cpu,
            BackendSel::Gpu(Some(adapter.clone())),
        ]),
        optim: OptimKind::Adam,
        seed: 1,
        kernels: Default::default(),
    };
    let rows = bench::run(&cfg, &data::synthetic(64, 3), &mut |_: &str| {}).unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows[2..] {
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(v["backend"], "gpu");
        assert!(v["device"].as_str().unwrap().contains(&adapter), "{v}");
        assert!(v.get("error").is_none(), "{v}");
        let f = if r.kind == "train" {
            "images_per_s"
        } else {
            "gflops"
        };
        assert_stat(&v, f);
        assert!(r.speedup_vs_cpu.is_some_and(|s| s > 0.0), "{v}");
        if r.kind == "train" {
            // The recording thread's CPU time and the dispatches of a step (issue 20): the same count
            // as the profiler's for the same model, and some host time per step.
            assert!(assert_stat(&v, "host_us_per_step").median > 0.0, "{v}");
            let profiled = profile(
                gpu(),
                &support::profile_run(ModelSpec::parse("fc8-bn").unwrap(), Timing::Sync),
                1,
                &data::synthetic(64, 3),
            )
            .unwrap();
            assert_eq!(r.dispatches_per_step, profiled.dispatches_per_step, "{v}");
        }
    }
    // The CPU rows have neither (the host does the compute there).
    assert!(rows[..2].iter().all(|r| r.host_us_per_step.is_none()));
}

/// A checkpoint written on either backend loads on the other.
fn checkpoints_move_between_cpu_and_gpu() {
    let g = gpu();
    cross_backend(&CpuBackend::new(), &g);
    cross_backend(&g, &CpuBackend::new());
}

/// The GPU profile counts dispatches, and the step's total is the sum of its ops'. With `--timing
/// auto` each op is timed by device timestamps where the adapter writes them (lavapipe does), else
/// between syncs; `--timing sync` always syncs. Both give every op a time.
fn gpu_profile_counts_dispatches() {
    let set = data::synthetic(64, 3);
    let spec = ModelSpec::parse("fc8-bn").unwrap();
    let has_timestamps = {
        let g = gpu();
        let started = g.timer_start();
        let marks = (g.timer_mark(false), g.timer_mark(true));
        let times = g.timer_finish().unwrap();
        assert_eq!(times.len(), if started { 2 } else { 0 }, "{marks:?}");
        started
    };
    for timing in [Timing::Auto, Timing::Sync] {
        let p = profile(gpu(), &support::profile_run(spec.clone(), timing), 1, &set).unwrap();
        support::check_fc8_bn_profile(&p, 1.0);
        let per_op: f64 = p.ops.iter().filter_map(|r| r.dispatches_per_step).sum();
        assert_eq!(p.dispatches_per_step, Some(per_op));
        assert!(p.host_us_per_step.is_some_and(|h| h > 0.0), "{p:?}");
        // Batch norm over a small batch: one fused kernel forward; backward one too where the
        // adapter grants 9 storage buffers a stage, else the gradient sums and dx.
        let backward = if gpu().fuses_bn_backward() { 1.0 } else { 2.0 };
        let bn = |op: &str| {
            p.ops
                .iter()
                .find(|r| r.op == op)
                .unwrap()
                .dispatches_per_step
        };
        assert_eq!(bn("bn_forward_train"), Some(7.0 * 1.0));
        assert_eq!(bn("bn_backward"), Some(7.0 * backward));
        assert_eq!(bn("softmax_ce"), Some(1.0));
        let stamped = timing == Timing::Auto && has_timestamps;
        assert_eq!(p.timing.contains("timestamps"), stamped, "{}", p.timing);
        assert_eq!(
            p.timing.contains("synced before and after"),
            !stamped,
            "{}",
            p.timing
        );
    }
}

struct Quiet;
impl SweepObserver for Quiet {
    fn note(&mut self, _msg: &str) {}
    fn run_started(&mut self, _index: usize, _of: usize, _key: &str) -> Box<dyn Observer> {
        Box::new(Silent)
    }
}

/// A sweep on the GPU frees each run's cached bind groups (which keep that run's model and data set
/// alive on the device) when the run ends, so device memory does not grow run after run.
fn gpu_sweep_releases_each_runs_buffers() {
    let g = gpu();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    data::write_idx_dir(&dir, &data::synthetic(260, 7), &data::synthetic(60, 8)).unwrap();
    let splits = data::load_dir(&dir, 40).unwrap();
    let mut cfg = SweepConfig::new(tmp.path().join("s"));
    cfg.runs = Some(grid(&[1]).into_iter().take(2).collect());
    cfg.budget = Budget::Steps(3);
    cfg.log_every = 1;
    cfg.data_label = "synthetic".into();
    cfg.report = false;
    let s = run_sweep(&g, &splits, &cfg, &mut Quiet).unwrap();
    assert_eq!(s.executed.len(), 2);
    assert_eq!(
        g.cached_bind_groups(),
        0,
        "bind groups of finished runs still cached"
    );
}

/// Issue 12, point 9: `--backend gpu` on a software adapter says that the CPU backend is faster
/// (unless -q); on a real GPU it says nothing of the kind.
fn a_software_adapter_is_named_as_slow() {
    let software = gpu().adapter_info().device_type == wgpu::DeviceType::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    support::synthetic_dir(&dir, 120, 20, 1);
    let adapter = support::test_adapter();
    let run = |quiet: bool| {
        let mut args = vec![
            "train",
            "--backend",
            "gpu",
            "--data",
            dir.to_str().unwrap(),
            "--val-size",
            "20",
            "--batch",
            "10",
            "--steps",
            "1",
        ];
        if quiet {
            args.push("-q");
        }
        if let Some(name) = &adapter {
            args.extend(["--adapter", name.as_str()]);
        }
        let out = support::wgtrain(&args);
        assert!(out.status.success(), "{}", support::text(&out.stderr));
        support::text(&out.stderr)
    };
    let said = run(false);
    let hint = said
        .lines()
        .filter(|l| l.contains("is a software adapter"))
        .count();
    assert_eq!(hint, usize::from(software), "{said}");
    if software {
        assert!(said.contains("--backend cpu"), "{said}");
    }
    assert!(!run(true).contains("software adapter"));
}

/// Issue 12: the GPU backend's device buffers (tensors, data set, cached uniforms, staging) hold the
/// same number of bytes after epoch 3 as after epoch 1: nothing is allocated per step or per epoch.
fn gpu_training_memory_is_flat_across_epochs() {
    let g = gpu();
    for model in ["fc8-bn", "cnn3-bn"] {
        let bytes = support::measure_each_epoch(&g, model, 3, || g.allocated_bytes());
        eprintln!(
            "{model} gpu: device buffer bytes after epochs 1, 2, 3: {} {} {}",
            bytes[0], bytes[1], bytes[2]
        );
        assert!(bytes[0] > 0);
        assert_eq!(
            bytes[0], bytes[2],
            "{model}: device buffer bytes differ between epochs 1 and 3"
        );
        g.release_cached();
    }
}

/// The op check a web page runs on the browser's adapter (src/tools/opcheck.rs), here on the test
/// adapter with the native kernels' choice: every case within its bound, and all of the op families
/// there.
fn opcheck_every_op_agrees_with_the_cpu() {
    let g = gpu();
    let report = pollster::block_on(wgtrain::tools::opcheck::check_ops(&g, &CpuBackend::new()));
    let failed: Vec<_> = report.iter().filter(|c| !c.pass).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for family in [
        "matmul ",
        "matmul_bias_act",
        "bias_act",
        "activation",
        "bias_grad",
        "maxpool",
        "avgpool",
        "dropout",
        "im2col",
        "col2im",
        "bn_forward_train",
        "bn_backward",
        "bn_forward_eval",
        "softmax_ce",
        "eval_batch",
        "clip_scale",
        "optim_step",
        "gather_batch",
        "fill and copy",
    ] {
        assert!(
            report.iter().any(|c| c.op.starts_with(family)),
            "no {family} case"
        );
    }
    g.health().unwrap();
}

fn main() -> std::process::ExitCode {
    support::run_gpu_tests(&[
        (
            "opcheck_every_op_agrees_with_the_cpu",
            opcheck_every_op_agrees_with_the_cpu,
        ),
        ("gpu_bench_rows_and_speedups", gpu_bench_rows_and_speedups),
        (
            "checkpoints_move_between_cpu_and_gpu",
            checkpoints_move_between_cpu_and_gpu,
        ),
        (
            "gpu_profile_counts_dispatches",
            gpu_profile_counts_dispatches,
        ),
        (
            "gpu_sweep_releases_each_runs_buffers",
            gpu_sweep_releases_each_runs_buffers,
        ),
        (
            "a_software_adapter_is_named_as_slow",
            a_software_adapter_is_named_as_slow,
        ),
        (
            "gpu_training_memory_is_flat_across_epochs",
            gpu_training_memory_is_flat_across_epochs,
        ),
    ])
}

//! `wgtrain bench`: the library on the CPU backend with a tiny configuration (JSON fields, medians
//! inside their min–max, speed-ups, tables), and bad input through the binary (one line, exit code 2).

use std::process::Output;
use wgtrain::io::data;

mod support;
use wgtrain::optim::OptimKind;
use wgtrain::tools::bench::{self, BackendSel, BenchConfig, Measurement, Stat};

fn tiny() -> BenchConfig {
    BenchConfig {
        models: bench::parse_models("fc8-bn,cnn3").unwrap(),
        batches: bench::parse_batches("4,8").unwrap(),
        steps: Some(2),
        images: 16,
        warmup: 1,
        repeats: 3,
        matmuls: bench::parse_matmuls("8x16x4").unwrap(),
        backends: Some(vec![BackendSel::Cpu]),
        optim: OptimKind::Adam,
        seed: 1,
        kernels: Default::default(),
    }
}

#[test]
fn cpu_bench_rows_have_every_field_and_consistent_statistics() {
    let cfg = tiny();
    let set = data::synthetic(64, 3);
    let mut notes = Vec::new();
    let rows: Vec<Measurement> =
        bench::run(&cfg, &set, &mut |m: &str| notes.push(m.to_string())).unwrap();
    // One matmul row, then 2 models x 2 batches.
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(
        notes.len(),
        5,
        "one progress line per measurement: {notes:?}"
    );
    let device = wgtrain::backend::cpu::cpu_model_name();

    let mm: serde_json::Value = serde_json::to_value(&rows[0]).unwrap();
    assert_eq!(mm["kind"], "matmul");
    assert_eq!(mm["backend"], "cpu");
    assert_eq!(mm["device"], device.as_str());
    assert_eq!(
        (mm["m"].as_u64(), mm["k"].as_u64(), mm["n"].as_u64()),
        (Some(8), Some(16), Some(4))
    );
    support::assert_stat(&mm, "gflops");
    support::assert_stat(&mm, "ms_per_call");
    assert_eq!(mm["steps"], 2);
    assert_eq!(mm["repeats"], 3);

    let mut seen = Vec::new();
    for r in &rows[1..] {
        let line = serde_json::to_string(r).unwrap();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "train");
        assert_eq!(v["backend"], "cpu");
        assert_eq!(v["device"], device.as_str());
        let batch = v["batch"].as_u64().expect("batch") as f64;
        let ips = support::assert_stat(&v, "images_per_s");
        let ms = support::assert_stat(&v, "ms_per_step");
        // The two are the same measurement: images/s = batch / s per step.
        let rel = (ips.median - batch * 1e3 / ms.median).abs() / ips.median;
        assert!(rel < 1e-9, "images/s and ms/step disagree: {v}");
        assert!(
            (ips.max - batch * 1e3 / ms.min).abs() / ips.max < 1e-9,
            "{v}"
        );
        assert_eq!(v["steps"], 2);
        assert!(
            v.get("speedup_vs_cpu").is_none(),
            "a CPU row has no speed-up: {v}"
        );
        seen.push((v["model"].as_str().unwrap().to_string(), batch as usize));
    }
    assert_eq!(
        seen,
        [("fc8-bn", 4), ("fc8-bn", 8), ("cnn3", 4), ("cnn3", 8)].map(|(m, b)| (m.to_string(), b))
    );

    let tables = bench::format_tables(&rows);
    assert!(tables.contains("| fc8-bn"), "{tables}");
    assert!(tables.contains("8x16x4"), "{tables}");
}

#[test]
fn speedups_pair_each_gpu_row_with_its_cpu_twin() {
    let mut rows = bench::run(&tiny(), &data::synthetic(64, 3), &mut |_: &str| {}).unwrap();
    let mut gpu = rows[1].clone();
    gpu.backend = "gpu";
    gpu.images_per_s = gpu.images_per_s.map(|s| Stat {
        median: s.median * 2.0,
        ..s
    });
    rows.push(gpu);
    bench::fill_speedups(&mut rows);
    let s = rows.last().unwrap().speedup_vs_cpu.expect("speed-up");
    assert!((s - 2.0).abs() < 1e-9, "{s}");
    assert!(rows[..rows.len() - 1]
        .iter()
        .all(|r| r.speedup_vs_cpu.is_none()));

    // A measurement that failed (e.g. a tensor over the adapter's binding limit) has no figures and no
    // speed-up; the tables say so and give the reason.
    let mut failed = rows[2].clone();
    failed.backend = "gpu";
    failed.images_per_s = None;
    failed.ms_per_step = None;
    failed.error = Some("buffer binding exceeds the limit".into());
    rows.push(failed);
    bench::fill_speedups(&mut rows);
    assert!(rows.last().unwrap().speedup_vs_cpu.is_none());
    let v = serde_json::to_value(rows.last().unwrap()).unwrap();
    assert!(
        v.get("images_per_s").is_none() && v["error"].is_string(),
        "{v}"
    );
    let tables = bench::format_tables(&rows);
    assert!(
        tables.contains("failed: gpu fc8-bn batch 8: buffer binding exceeds the limit"),
        "{tables}"
    );
}

#[test]
fn statistics_of_repeats() {
    let s = Stat::of(&[3.0, 1.0, 2.0]);
    assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
    let s = Stat::of(&[4.0, 1.0, 2.0, 10.0]);
    assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
}

#[test]
fn list_parsers_reject_bad_values() {
    assert!(bench::parse_batches("32,0").is_err());
    assert!(bench::parse_batches("32,x").is_err());
    assert!(bench::parse_batches("").is_err());
    assert!(bench::parse_models("fc8-bn,resnet").is_err());
    assert!(bench::parse_backends("cpu,tpu").is_err());
    assert!(bench::parse_backends("gpu:").is_err());
    assert_eq!(
        bench::parse_backends("CPU, gpu:llvm ,cpu").unwrap(),
        vec![BackendSel::Cpu, BackendSel::Gpu(Some("llvm".into()))]
    );
    assert!(bench::parse_matmuls("none").unwrap().is_empty());
    assert!(bench::parse_models("none").unwrap().is_empty());
    assert!(bench::parse_matmuls("2x3").is_err());
    assert!(bench::parse_matmuls("2x0x3").is_err());
    let mut cfg = tiny();
    cfg.batches = vec![65];
    assert!(
        cfg.validate(64).is_err(),
        "a batch larger than the data set"
    );
}

/// `wgtrain bench ARGS`.
fn wgtrain_bench(args: &[&str]) -> Output {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    support::wgtrain(&all)
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    for (args, needle) in [
        (&["--batch", "0"][..], "--batch"),
        (&["--batch", "32,abc"][..], "--batch"),
        (&["--models", "fc9"][..], "fc9"),
        (&["--backend", "tpu"][..], "tpu"),
        (&["--matmul", "3x3"][..], "--matmul"),
        (&["--repeats", "0"][..], "--repeats"),
        (&["--steps", "0"][..], "--steps"),
        (
            &["--backend", "cpu", "--kernels", "emulated"][..],
            "--kernels emulated",
        ),
        (
            &["--models", "none", "--matmul", "none"][..],
            "nothing to measure",
        ),
    ] {
        let out = wgtrain_bench(args);
        support::assert_input_error(&out, &[needle]);
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn cli_json_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    data::write_idx_dir(dir.path(), &data::synthetic(64, 1), &data::synthetic(16, 2)).unwrap();
    let png = dir.path().join("bench.png");
    let out = wgtrain_bench(&[
        "--backend",
        "cpu",
        "--models",
        "fc8",
        "--batch",
        "4,16",
        "--steps",
        "1",
        "--repeats",
        "3",
        "--matmul",
        "4x4x4",
        "--json",
        "--data",
        dir.path().to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0]["kind"], "matmul");
    support::assert_stat(&lines[0], "gflops");
    for v in &lines[1..] {
        assert_eq!(v["model"], "fc8");
        support::assert_stat(v, "images_per_s");
        support::assert_stat(v, "ms_per_step");
    }
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "--plot writes a PNG");
}

/// Issue 12, point 10: the x axis is labelled with the measured batch sizes, also when there is only
/// one (a log axis on its own puts ticks at powers of ten, none of which falls near 110).
#[test]
fn plot_ticks_are_the_measured_batch_sizes() {
    let mut cfg = tiny();
    cfg.models = bench::parse_models("fc8").unwrap();
    cfg.matmuls = Vec::new();
    cfg.steps = Some(1);
    let set = data::synthetic(256, 3);
    let dir = tempfile::tempdir().unwrap();
    for batches in ["110", "32,110"] {
        cfg.batches = bench::parse_batches(batches).unwrap();
        let rows = bench::run(&cfg, &set, &mut |_: &str| {}).unwrap();
        let svg = dir.path().join("plot.svg");
        bench::plot(&rows, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        let ticks: Vec<&str> = text
            .split("</text>")
            .filter_map(|t| t.rsplit('>').next())
            .filter(|t| t.trim().parse::<u32>().is_ok())
            .map(str::trim)
            .collect();
        for b in batches.split(',') {
            assert!(ticks.contains(&b), "no tick {b} among {ticks:?}");
        }
    }
}

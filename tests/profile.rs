//! `wgtrain profile`: every op of a step is counted and timed, the shares add up, and the GPU's
//! dispatches per step are the sum of its ops'; bad input is one line with exit 2.

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::io::data;
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::tools::profile::{format_profile, profile, Profile};

mod support;
use support::{assert_input_error, ok, wgtrain};

fn calls(p: &Profile, op: &str) -> f64 {
    p.ops
        .iter()
        .find(|r| r.op.starts_with(op))
        .unwrap_or_else(|| panic!("no op {op} in {:?}", p.ops))
        .calls_per_step
}

/// `adam_calls`: 23 on the CPU (one update per parameter tensor), 1 on a GPU (all of them at once).
fn check(p: &Profile, adam_calls: f64) {
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

#[test]
fn cpu_profile_counts_every_op_of_a_step() {
    let set = data::synthetic(64, 3);
    let spec = ModelSpec::parse("fc8-bn").unwrap();
    let p = profile(CpuBackend::new(), spec, OptimKind::Adam, 16, 2, 1, &set).unwrap();
    check(&p, 23.0);
    assert_eq!(p.dispatches_per_step, None);
}

#[cfg(feature = "gpu")]
#[test]
fn gpu_profile_counts_dispatches() {
    let Some(gpu) = support::gpu() else { return };
    let set = data::synthetic(64, 3);
    let spec = ModelSpec::parse("fc8-bn").unwrap();
    let p = profile(gpu, spec, OptimKind::Adam, 16, 2, 1, &set).unwrap();
    check(&p, 1.0);
    let per_op: f64 = p.ops.iter().filter_map(|r| r.dispatches_per_step).sum();
    assert_eq!(p.dispatches_per_step, Some(per_op));
    // Batch norm forward: two column reductions (2 dispatches each) and 3 more kernels.
    let bn = p.ops.iter().find(|r| r.op == "bn_forward_train").unwrap();
    assert_eq!(bn.dispatches_per_step, Some(7.0 * 5.0));
}

#[test]
fn cli_profile_json_and_bad_input() {
    let out = ok(wgtrain(&[
        "profile",
        "--backend",
        "cpu",
        "--model",
        "fc8",
        "--batch",
        "8",
        "--steps",
        "1",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["model"], "fc8");
    assert_eq!(v["backend"], "cpu");
    assert!(v["ops"].as_array().unwrap().len() > 5, "{v}");
    assert_input_error(
        &wgtrain(&["profile", "--backend", "cpu", "--model", "vgg"]),
        &["vgg"],
    );
    assert_input_error(
        &wgtrain(&["profile", "--backend", "cpu", "--steps", "0"]),
        &["--steps"],
    );
    assert_input_error(&wgtrain(&["profile", "--backend", "tpu"]), &["tpu"]);
}

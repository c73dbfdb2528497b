//! `wgtrain profile`: every op of a step is counted and timed, the shares add up, and the GPU's
//! dispatches per step are the sum of its ops'; bad input is one line with exit 2.

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::io::data;
use wgtrain::model::ModelSpec;
use wgtrain::tools::profile::{profile, Timing};

mod support;
use support::{assert_input_error, ok, wgtrain};

#[test]
fn cpu_profile_counts_every_op_of_a_step() {
    let set = data::synthetic(64, 3);
    let spec = ModelSpec::parse("fc8-bn").unwrap();
    let p = profile(
        CpuBackend::new(),
        &support::profile_run(spec, Timing::Auto),
        1,
        &set,
    )
    .unwrap();
    support::check_fc8_bn_profile(&p, 23.0);
    assert_eq!(p.dispatches_per_step, None);
    assert_eq!(p.host_us_per_step, None);
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
    assert_input_error(
        &wgtrain(&["profile", "--backend", "cpu", "--kernels", "tiled"]),
        &["--kernels tiled"],
    );
}

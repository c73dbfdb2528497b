//! Metal and DX12 at the shader level, without either: every compute pipeline the 8 models build is
//! taken through naga (the translator wgpu itself uses) to MSL, HLSL (shader model 6.0) and SPIR-V, and
//! any error fails the test.
//!
//! The pipelines are not listed by hand. Each kernel set runs the models on wgpu's noop backend (a
//! device that executes nothing): training steps with each optimizer, evaluation with a short last
//! batch, at the batch sizes the tools use, so the backend's own plans (`matmul::plan`, split-K, the
//! convolution geometries and chunks, the fused-ReLU variants) pick every family, entry point and
//! override set exactly as on a real device, and the launcher records what it made.

use std::collections::BTreeMap;
use wgtrain::backend::gpu::{GpuBackend, PipelineInfo};
use wgtrain::backend::KernelChoice;
use wgtrain::io::data::{split, synthetic};
use wgtrain::model::file::BUILTINS;
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::train::{train, Silent, TrainConfig};

/// Batch sizes the tools use: predict (1 image), gradcheck (16), train and sweep (110), eval (500) and
/// the largest bench batch (2048, where cnn7-bn's convolutions work in chunks under a 128 MiB binding).
const BATCHES: [usize; 5] = [1, 16, 110, 500, 2048];

/// The backend on a noop adapter with subgroups of `subgroup` lanes, `storage_buffers` storage buffers
/// a stage, and the kernel set `kernels`. (The
/// noop adapter calls itself a CPU whatever its options say, so `auto` gives the emulated kernels; the
/// tiled ones are asked for by name, as `--kernels tiled` does.) The emulated kernels take the subgroup
/// matmuls where subgroups are 8 lanes, as on lavapipe.
fn noop_backend(kernels: KernelChoice, subgroup: u32, storage_buffers: u32) -> GpuBackend {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::NOOP;
    // lavapipe's binding limit, so that the largest batches take the chunked convolutions; at most the
    // 8 bind groups wgpu itself handles.
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 128 << 20,
        max_bind_groups: 8,
        max_storage_buffers_per_shader_stage: storage_buffers,
        ..wgpu::Limits::unlimited()
    };
    desc.backend_options.noop = wgpu::NoopBackendOptions {
        enable: true,
        subgroup_min_size: Some(subgroup),
        subgroup_max_size: Some(subgroup),
        limits: Some(limits),
        ..Default::default()
    };
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::NOOP))
        .into_iter()
        .next()
        .expect("the noop adapter");
    GpuBackend::on_adapter(&adapter, kernels).expect("a noop device")
}

/// Every built-in model, and a model file with every layer type the built-ins lack (pooling of each
/// kind, dropout, activations fused and not).
fn every_model() -> Vec<ModelSpec> {
    let mut specs: Vec<ModelSpec> = BUILTINS
        .iter()
        .map(|(name, _)| ModelSpec::parse(name).unwrap())
        .collect();
    specs.push(
        ModelSpec::from_text(
            "tests/fixtures/every_layer.toml",
            include_str!("fixtures/every_layer.toml"),
        )
        .unwrap(),
    );
    specs
}

/// Runs every model at every batch (Adam), and at batch 110 with SGD and RMSProp too, on `be`: one
/// training step, then evaluation of a validation set one image longer than the batch (so a short last
/// batch) and of the test set.
fn build_every_model(be: &GpuBackend) {
    for spec in every_model() {
        // The largest layer output per image: a batch whose outputs pass the 128 MiB binding limit is
        // refused with an error (vgg-small at 2048), so it is not a batch that model runs at.
        let widest = spec
            .network()
            .layers
            .iter()
            .map(|l| l.output.len())
            .max()
            .unwrap();
        for batch in BATCHES.into_iter().filter(|b| b * widest * 4 <= 128 << 20) {
            let optims: &[OptimKind] = if batch == 110 {
                &[OptimKind::Sgd, OptimKind::RmsProp, OptimKind::Adam]
            } else {
                &[OptimKind::Adam]
            };
            let data = split(synthetic(2 * batch + 1, 1), synthetic(batch, 2), batch + 1).unwrap();
            for &optim in optims {
                let cfg = TrainConfig {
                    // A set this small lacks some classes: the model is built for those it has.
                    model: spec.for_data(data.shape(), data.info.classes()).unwrap(),
                    optim,
                    lr: optim.default_lr(),
                    recipe: Default::default(),
                    batch,
                    steps: 1,
                    seed: 1,
                    log_every: 1,
                    eval_each_epoch: true,
                    out: None,
                };
                train(be, &data, &cfg, &mut Silent)
                    .unwrap_or_else(|e| panic!("{} batch {batch}: {e:#}", spec.name()));
                wgtrain::backend::Backend::release_cached(be);
            }
        }
    }
}

/// The pipelines of each kernel set, keyed by a readable name (family, entry, constants).
fn every_pipeline() -> BTreeMap<String, (PipelineInfo, Vec<&'static str>)> {
    // The last set is a browser's: 8 storage buffers a stage (batch norm's backward as the fused
    // sums then dx), and column sums fused only within one chunk, so the softmax and evaluation row
    // kernels and their finishers are built too (at batches 500 and 2048).
    let sets = [
        ("tiled", KernelChoice::Tiled, 32, 64),
        ("emulated, 8-lane subgroups", KernelChoice::Auto, 8, 64),
        ("emulated, 4-lane subgroups", KernelChoice::Auto, 4, 64),
        ("tiled, 8 storage buffers", KernelChoice::Tiled, 32, 8),
    ];
    let mut all: BTreeMap<String, (PipelineInfo, Vec<&'static str>)> = BTreeMap::new();
    for (set, kernels, lanes, storage_buffers) in sets {
        let mut be = noop_backend(kernels, lanes, storage_buffers);
        if storage_buffers == 8 {
            be.column_sums.fused_max_chunks = 1;
        }
        let expected = if set.starts_with("tiled") {
            "tiled"
        } else {
            "emulated"
        };
        assert_eq!(be.style.name(), expected, "{set}");
        assert_eq!(be.subgroup_kernels, lanes == 8, "{set}");
        build_every_model(&be);
        let made = be.pipelines_made();
        for p in made {
            let key = format!("{} {} {:?}", p.family, p.entry, p.constants);
            all.entry(key)
                .or_insert_with(|| (p, Vec::new()))
                .1
                .push(set);
        }
    }
    all
}

/// The module of `wgsl` with the override `constants` applied and `entry` alone kept, validated with
/// the capabilities `caps` of a target.
fn specialise(
    wgsl: &str,
    entry: &str,
    constants: &[(&str, f64)],
    caps: naga::valid::Capabilities,
) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
    validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
    let info = validator
        .validate(&module)
        .map_err(|e| e.emit_to_string(wgsl))?;
    let values: naga::back::PipelineConstants = constants
        .iter()
        .map(|&(name, v)| (name.to_string(), v))
        .collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, entry)),
        &values,
    )
    .map_err(|e| format!("overrides: {e}"))?;
    Ok((module.into_owned(), info.into_owned()))
}

fn to_msl(wgsl: &str, entry: &str, constants: &[(&str, f64)]) -> Result<String, String> {
    let (module, info) = specialise(
        wgsl,
        entry,
        constants,
        naga::back::msl::supported_capabilities(),
    )?;
    let options = naga::back::msl::Options {
        // Metal 2.4 (macOS 12, iOS 15): SIMD-group functions included.
        lang_version: (2, 4),
        fake_missing_bindings: true,
        ..Default::default()
    };
    let pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
        ..Default::default()
    };
    naga::back::msl::write_string(&module, &info, &options, &pipeline)
        .map(|(text, _)| text)
        .map_err(|e| format!("MSL: {e}"))
}

fn to_hlsl(wgsl: &str, entry: &str, constants: &[(&str, f64)]) -> Result<String, String> {
    let (module, info) = specialise(
        wgsl,
        entry,
        constants,
        naga::back::hlsl::supported_capabilities(),
    )?;
    let options = naga::back::hlsl::Options {
        // Shader model 6.0: wave (subgroup) intrinsics.
        shader_model: naga::back::hlsl::ShaderModel::V6_0,
        fake_missing_bindings: true,
        ..Default::default()
    };
    let pipeline = naga::back::hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
    };
    let mut text = String::new();
    naga::back::hlsl::Writer::new(&mut text, &options, &pipeline)
        .write(&module, &info, None)
        .map_err(|e| format!("HLSL: {e}"))?;
    Ok(text)
}

fn to_spirv(wgsl: &str, entry: &str, constants: &[(&str, f64)]) -> Result<Vec<u32>, String> {
    let (module, info) = specialise(
        wgsl,
        entry,
        constants,
        naga::back::spv::supported_capabilities(),
    )?;
    let options = naga::back::spv::Options {
        lang_version: (1, 3),
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| format!("SPIR-V: {e}"))
}

#[test]
fn every_pipeline_of_the_models_translates_to_msl_hlsl_and_spirv() {
    let all = every_pipeline();
    let mut failures = Vec::new();
    let mut counts = [0usize; 3];
    let mut per_family: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, (p, _sets)) in &all {
        let c = &p.constants;
        *per_family.entry(p.family.as_str()).or_default() += 1;
        match to_msl(&p.wgsl, p.entry, c) {
            Ok(text) => {
                assert!(text.contains("kernel void"), "{key}: no kernel in the MSL");
                counts[0] += 1;
            }
            Err(e) => failures.push(format!("{key}: {e}")),
        }
        match to_hlsl(&p.wgsl, p.entry, c) {
            Ok(text) => {
                assert!(
                    text.contains("[numthreads("),
                    "{key}: no kernel in the HLSL"
                );
                counts[1] += 1;
            }
            Err(e) => failures.push(format!("{key}: {e}")),
        }
        match to_spirv(&p.wgsl, p.entry, c) {
            Ok(words) => {
                assert_eq!(words.first(), Some(&0x0723_0203), "{key}: no SPIR-V magic");
                counts[2] += 1;
            }
            Err(e) => failures.push(format!("{key}: {e}")),
        }
    }
    let by_set = |set: &str| all.values().filter(|(_, s)| s.contains(&set)).count();
    // Straight to stderr, past the test harness's capture: CI's log shows the counts of a passing run.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "translated {} pipelines ({} in the tiled set, {} emulated with 8-lane subgroups, {} emulated \
         with 4-lane subgroups; by family {per_family:?}): MSL {}, HLSL {}, SPIR-V {}",
        all.len(),
        by_set("tiled"),
        by_set("emulated, 8-lane subgroups"),
        by_set("emulated, 4-lane subgroups"),
        counts[0],
        counts[1],
        counts[2]
    );
    assert!(
        failures.is_empty(),
        "{} translations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Both kernel sets reach their own matmuls, every family is there, and both ways of the kernels
    // that fuse over few rows.
    let entries: Vec<&str> = all.values().map(|(p, _)| p.entry).collect();
    for e in [
        "matmul_tiled",
        "matmul_tiled_small",
        "matmul_direct",
        "matmul_nt_v4",
        "matmul_nt_sg",
        "matmul_nt_sg_cols",
        "splitk_sum",
        "im2col",
        "col2im",
        "bn_eval",
        "bn_backward_fused",
        "bn_grad_sums",
        "bn_backward_dx",
        "softmax_ce_fused",
        "softmax_ce_rows",
        "loss_finish",
        "eval_fused",
        "eval_rows",
        "eval_finish",
        "sgd",
        "rmsprop",
        "adam",
        "gather",
    ] {
        assert!(entries.contains(&e), "no pipeline runs {e}: {entries:?}");
    }
}

//! The one support module of the integration tests (each test file has `mod support;`): running the
//! binary, asserting a user error, seeded random values, synthetic data directories, and the GPU
//! backend or a counted skip.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use wgtrain::io::data;

/// Runs the `wgtrain` binary. Backtraces are switched on, so that any panic or `{:?}`-printed error
/// shows in stderr (and the input-error assertion rejects it).
pub fn wgtrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgtrain"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .env("NODEVICE_SELECT", "1")
        .output()
        .expect("run wgtrain")
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

/// Deterministic pseudo-random values in [-1, 1) from a seed (no RNG state to pass around).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `n` values uniform in [lo, hi) from `rng`.
pub fn rand_uniform(rng: &mut impl rand::Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// The GPU backend on any adapter (lavapipe included). Without one: a printed notice and `None`, unless
/// `WGTRAIN_REQUIRE_GPU=1` (CI), where a missing adapter fails the test.
#[cfg(feature = "gpu")]
pub fn gpu() -> Option<wgtrain::backend::gpu::GpuBackend> {
    // Keep Mesa's device-select layer from probing for a display (it prints an error on headless machines).
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        eprintln!("note: set NODEVICE_SELECT=1 to silence Mesa's display probe");
    }
    match wgtrain::backend::gpu::GpuBackend::new(None, true) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("WGTRAIN_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("WGTRAIN_REQUIRE_GPU=1 but no GPU adapter is usable: {e:#}");
            }
            eprintln!("skipping GPU test: no GPU adapter ({e:#})");
            None
        }
    }
}

//! Shared by the GPU tests: the GPU backend, or a skip notice where there is none.

#![allow(dead_code)]

use wgtrain::backend::gpu::GpuBackend;

/// The GPU backend on any adapter (lavapipe included). Without one: a printed notice and `None`, unless
/// `WGTRAIN_REQUIRE_GPU=1` (CI), where a missing adapter fails the test.
pub fn gpu() -> Option<GpuBackend> {
    // Keep Mesa's device-select layer from probing for a display (it prints an error on headless machines).
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        eprintln!("note: set NODEVICE_SELECT=1 to silence Mesa's display probe");
    }
    match GpuBackend::new(None, true) {
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

/// Deterministic pseudo-random values in [-1, 1).
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

//! Memory stays flat over a run: the process's resident set after epoch 1 and after epoch 3 of a CPU
//! training run are equal within a small bound (nothing grows per step or per epoch). One test in this
//! binary, so that no other test's allocations run beside it. The GPU backend's buffer bytes are
//! checked the same way in gpu_tools.rs.

#![cfg(target_os = "linux")]

mod support;

use wgtrain::backend::cpu::CpuBackend;

/// Resident set size of this process, in bytes (/proc/self/statm: pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

#[test]
fn cpu_training_memory_is_flat_across_epochs() {
    const MIB: f64 = (1 << 20) as f64;
    let be = CpuBackend::new();
    for model in ["fc8-bn", "cnn3-bn"] {
        let rss = support::measure_each_epoch(&be, model, 3, rss_bytes);
        let grew = rss[2] as f64 - rss[0] as f64;
        eprintln!(
            "{model} cpu: RSS after epochs 1, 2, 3: {:.1}, {:.1}, {:.1} MiB (epoch 3 - epoch 1: {:+.2} MiB)",
            rss[0] as f64 / MIB,
            rss[1] as f64 / MIB,
            rss[2] as f64 / MIB,
            grew / MIB
        );
        // Allocator noise is well under a MiB here; a buffer kept per step or a model rebuilt per epoch
        // would be several.
        assert!(
            grew.abs() <= 1.0 * MIB,
            "{model}: RSS grew by {:.2} MiB",
            grew / MIB
        );
    }
}

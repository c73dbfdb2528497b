//! Loops compiled for the CPU the program runs on, chosen at run time.
//!
//! The crate is built for baseline x86-64 (SSE2) so that one binary runs anywhere; the CPU backend's
//! own loops (batch norm's passes) are worth four times the lanes on an AVX-512
//! machine. Only the instruction width changes, never an operation or its order: the same bits.

/// `f()` compiled for AVX-512 (x86-64-v4) when the CPU has it, else as built (SSE2): the loops `f`
/// inlines then run 16 lanes wide instead of 4. The same IEEE operations in the same order, so the same
/// bits (Rust never contracts `a * b + c` into a fused multiply-add). Wraps a rayon task's own loop,
/// never a parallel call: code on the pool's threads is compiled as the crate is.
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,avx,fma,bmi1,bmi2")]
        unsafe fn x86_64_v4<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has just been found to have AVX-512 (and with it the rest of x86-64-v4).
        return unsafe { x86_64_v4(f) };
    }
    f()
}

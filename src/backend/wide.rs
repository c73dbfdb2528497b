//! Loops compiled for the CPU the program runs on, chosen at run time.
//!
//! The crate is built for baseline x86-64 (SSE2) so that one binary runs anywhere; the CPU backend's
//! own loops (batch norm's passes) are worth four times the lanes on an AVX-512 machine. Only the
//! instruction width changes, never an operation or its order: the same bits (Rust never contracts
//! `a * b + c` into a fused multiply-add).

/// Defines `fn name(args)` twice, as written and compiled for AVX-512 (x86-64-v4), and calls the second
/// where the CPU has it. The body is written out in both, so its loops and the closures defined in it
/// are compiled with the features; a closure passed in from outside would not be (`perf annotate`
/// showed batch norm's sums two lanes wide through such a wrapper).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,avx,fma,bmi1,bmi2")]
                unsafe fn x86_64_v4($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has just been found to have AVX-512, and with it x86-64-v4.
                    return unsafe { x86_64_v4($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

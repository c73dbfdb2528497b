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
                if $crate::backend::wide::has_x86_64_v4() {
                    // SAFETY: the CPU has just been found to have every feature enabled above.
                    return unsafe { x86_64_v4($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// Whether this CPU has every feature [`multiversion`]'s second copy is compiled with (checked one by
/// one: an AVX-512F CPU without BW, VL or DQ, such as Xeon Phi, takes the first copy). The standard
/// library caches the CPU's answers, so a call costs a few loads.
#[cfg(target_arch = "x86_64")]
pub fn has_x86_64_v4() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx512f")
        && has!("avx512vl")
        && has!("avx512bw")
        && has!("avx512dq")
        && has!("avx2")
        && has!("avx")
        && has!("fma")
        && has!("bmi1")
        && has!("bmi2")
}

/// Off x86-64 there is no AVX-512 copy: always false.
#[cfg(not(target_arch = "x86_64"))]
pub fn has_x86_64_v4() -> bool {
    false
}

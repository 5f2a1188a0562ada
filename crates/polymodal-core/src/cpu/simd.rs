//! [`wide_fn!`]: a loop compiled for the widest vector instructions the CPU
//! has.

use std::sync::atomic::{AtomicU8, Ordering};

/// The copies of a [`wide_fn!`] function, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Level {
    /// As the crate is built (SSE2 on x86-64).
    Baseline = 0,
    /// AVX2 + FMA.
    Avx2 = 1,
    /// AVX-512 (with AVX2 + FMA).
    Avx512 = 2,
}

/// The widest copy that may run: tests lower it to check that every copy
/// computes the same values.
static CEILING: AtomicU8 = AtomicU8::new(Level::Avx512 as u8);

/// Whether the copy for `level` may run (the CPU is asked separately).
#[inline(always)]
pub(super) fn allowed(level: Level) -> bool {
    CEILING.load(Ordering::Relaxed) >= level as u8
}

/// Runs `f` with no copy wider than `level` (then lifts the ceiling).
/// Functions running on other threads meanwhile use narrower copies too;
/// they compute the same values, which is what this is for.
#[cfg(test)]
pub(super) fn with_ceiling<R>(level: Level, f: impl FnOnce() -> R) -> R {
    CEILING.store(level as u8, Ordering::Relaxed);
    let result = f();
    CEILING.store(Level::Avx512 as u8, Ordering::Relaxed);
    result
}

/// Defines a function whose body is compiled three times, for AVX-512,
/// for AVX2 + FMA and as the crate is built, and runs the widest the CPU
/// has.
///
/// The crate is built for its target's baseline, SSE2 on x86-64, so its
/// own loops run four lanes at a time where the CPU may have sixteen:
/// PyTorch's batch norm and pooling loops use them, and on AVX-512
/// machines polymodal's, in SSE2, were a fifth of an AV-MNIST epoch
/// (`perf`, docs/benchmarks.md). Results do not change with the set: Rust
/// never fuses `a * b + c` on its own, and sums in the body fix their
/// order themselves (explicit lanes, as `norm::lanes_sum`), so every copy
/// computes the same values. The body is a function of its own, always
/// inlined into the copies (a closure passed to a dispatcher was not
/// always inlined, and then ran in SSE2).
macro_rules! wide_fn {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident$(<$($lt:lifetime),+>)?($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name$(<$($lt),+>)?($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body$(<$($lt),+>)?($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512$(<$($lt),+>)?($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2$(<$($lt),+>)?($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                use $crate::cpu::simd::{Level, allowed};
                if allowed(Level::Avx512) && std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the copy is built for.
                    return unsafe { avx512($($arg),*) };
                }
                if allowed(Level::Avx2)
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(super) use wide_fn;

//! The C allocator's settings for tensor work on the CPU.
//!
//! Flex allocates every intermediate tensor afresh. With glibc's defaults,
//! buffers above its (dynamic) mmap threshold get their own mapping, and
//! memory freed by the worker threads' arenas is handed back to the kernel
//! at once: each training step then pays page faults to get the memory
//! again and, with several threads, TLB shoot-downs to give it back. On the
//! 2-core VM of `docs/benchmarks.md`, `perf` put a large share of an
//! AV-MNIST convolution block's step in the kernel (`clear_page`,
//! `native_write_msr`, `smp_call_function_many_cond`).

use std::sync::Once;

/// Buffers up to this size come from the heap rather than their own
/// mapping (glibc's largest allowed threshold on 64-bit).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free memory at the top of a heap kept for reuse before any is returned.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Sets the C allocator up for tensor work, once per process: on Linux
/// with glibc, `mallopt` raises the mmap threshold to 32 MiB and the trim
/// threshold to 256 MiB, so freed tensor buffers are reused rather than
/// unmapped and faulted in again; the cost is up to 256 MiB of freed memory
/// kept mapped. Elsewhere it does nothing.
///
/// It changes process-wide state, so the library never calls it on its
/// own: the `polymodal` command line and the benchmarks call it first
/// thing, and programs that train on the CPU should too (or preload an
/// allocator such as jemalloc, the usual advice for PyTorch on the CPU).
pub fn tune_allocator() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: `mallopt` only changes allocator parameters; both values
        // are within the ranges glibc documents.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    });
}

"""Timing shared by the Python sides of the benchmarks, done as the Rust
side does it (`polymodal_benches::best_of`)."""
import time


def best_of(reps, work, sync=lambda: None):
    """The fastest of `reps` timed passes of `work` (at least one), in
    seconds, after one untimed warm-up pass; `sync` waits for work queued on
    a device (CUDA) before a pass counts as done."""
    def timed():
        start = time.perf_counter()
        work()
        sync()
        return time.perf_counter() - start
    timed()
    return min(timed() for _ in range(max(reps, 1)))

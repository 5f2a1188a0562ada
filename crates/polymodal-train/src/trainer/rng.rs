//! [`RngGuard`]: one seeded run at a time on the backend's random generator.

use std::marker::PhantomData;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use burn::prelude::*;

/// Which thread holds the generator, and how many guards it holds.
struct Holder {
    thread: Option<ThreadId>,
    depth: usize,
}

static HOLDER: Mutex<Holder> = Mutex::new(Holder {
    thread: None,
    depth: 0,
});
static RELEASED: Condvar = Condvar::new();

/// Exclusive use of the backend's random generator by one thread.
///
/// Burn's backends draw every random number (initial weights, dropout)
/// from one generator per process, and [`Device::seed`] resets that one
/// generator. Two seeded runs on two threads of one process would draw
/// from it in turns and neither would be reproducible. A guard makes the
/// other threads' guards wait until it is dropped, so a run that seeds,
/// builds its model and trains under one guard draws exactly the numbers
/// its seed gives. Guards nest on one thread (a trainer called under the
/// guard of the code that seeded it takes a second one).
///
/// [`Trainer::train`](crate::Trainer::train) takes a guard itself, and Burn
/// draws a layer's random initial weights when they are first read, which
/// for a model in training is inside it. Code that draws random numbers
/// outside a guard (a random tensor, a model run before training) is not
/// held back and can still change a run on another thread.
///
/// ```
/// use burn::prelude::*;
/// use polymodal_train::RngGuard;
///
/// let device = Device::flex();
/// let draw = || {
///     let _guard = RngGuard::seeded(&device, 7);
///     Tensor::<1>::random([4], burn::tensor::Distribution::Default, &device).into_data()
/// };
/// assert_eq!(draw(), draw());
/// ```
#[must_use = "the generator is released when the guard is dropped"]
pub struct RngGuard {
    // A guard belongs to the thread that took it.
    _not_send: PhantomData<*const ()>,
}

impl RngGuard {
    /// Waits until no other thread holds the generator, then holds it.
    pub fn hold() -> Self {
        let me = thread::current().id();
        let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
        while holder.thread.is_some_and(|t| t != me) {
            holder = RELEASED
                .wait(holder)
                .unwrap_or_else(PoisonError::into_inner);
        }
        holder.thread = Some(me);
        holder.depth += 1;
        Self {
            _not_send: PhantomData,
        }
    }

    /// [`Self::hold`], then seeds `device`'s generator with `seed`.
    pub fn seeded(device: &Device, seed: u64) -> Self {
        let guard = Self::hold();
        device.seed(seed);
        guard
    }
}

impl Drop for RngGuard {
    fn drop(&mut self) {
        let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
        holder.depth -= 1;
        if holder.depth == 0 {
            holder.thread = None;
            RELEASED.notify_all();
        }
    }
}

impl std::fmt::Debug for RngGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RngGuard")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Another thread's guard waits for the first to be dropped; the same
    /// thread's nested guard does not.
    #[test]
    fn a_guard_holds_other_threads_back_until_dropped() {
        let outer = RngGuard::hold();
        let nested = RngGuard::hold();
        let taken = Arc::new(AtomicBool::new(false));
        let other = {
            let taken = taken.clone();
            thread::spawn(move || {
                let _guard = RngGuard::hold();
                taken.store(true, Ordering::SeqCst);
            })
        };
        thread::sleep(Duration::from_millis(100));
        assert!(!taken.load(Ordering::SeqCst), "taken while held");
        drop(nested);
        thread::sleep(Duration::from_millis(100));
        assert!(
            !taken.load(Ordering::SeqCst),
            "taken while the outer guard is held"
        );
        drop(outer);
        other.join().unwrap();
        assert!(taken.load(Ordering::SeqCst));
    }

    /// Seeded draws under guards on two threads give each seed's numbers,
    /// however the threads interleave.
    #[test]
    fn seeded_runs_on_two_threads_draw_their_own_numbers() {
        let device = Device::flex();
        let run = |seed: u64| {
            let device = device.clone();
            move || {
                let _guard = RngGuard::seeded(&device, seed);
                (0..20)
                    .map(|_| {
                        thread::yield_now();
                        Tensor::<1>::random([8], burn::tensor::Distribution::Default, &device)
                            .into_data()
                    })
                    .collect::<Vec<_>>()
            }
        };
        let alone = (run(1)(), run(2)());
        let together = {
            let (a, b) = (thread::spawn(run(1)), thread::spawn(run(2)));
            (a.join().unwrap(), b.join().unwrap())
        };
        assert_eq!(alone, together);
        assert_ne!(alone.0, alone.1);
    }
}

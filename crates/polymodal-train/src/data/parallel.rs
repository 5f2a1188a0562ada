//! Work on worker threads: a map over all cores ([`parallel_map`]) and a
//! loader running ahead of its consumer ([`prefetch`]).

use std::sync::mpsc::sync_channel;

use polymodal_core::{Error, Result};

/// Batches decoded ahead of the one being trained on.
const PREFETCH: usize = 2;

/// `f` over `items` on all cores, in order; the first failure is returned.
pub(crate) fn parallel_map<T: Sync, U: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<U> + Sync,
) -> Result<Vec<U>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(workers).max(1);
    let parts: Vec<Result<Vec<U>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a decoding thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Runs `body` over what `load` gives for each chunk, in order, while a
/// worker thread loads the next chunks. When `body` returns (or stops at an
/// error) the worker stops too.
pub(super) fn prefetch<T: Send, R>(
    chunks: Vec<Vec<usize>>,
    load: impl Fn(&[usize]) -> Result<T> + Send,
    body: impl FnOnce(&mut dyn Iterator<Item = Result<T>>) -> Result<R>,
) -> Result<R> {
    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel(PREFETCH);
        scope.spawn(move || {
            for chunk in chunks {
                // A closed channel means the consumer stopped: stop too.
                if sender.send(load(&chunk)).is_err() {
                    break;
                }
            }
        });
        body(&mut receiver.into_iter())
    })
}

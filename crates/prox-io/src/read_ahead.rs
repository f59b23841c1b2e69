//! Reading ahead on a thread of its own, so that decompressing and parsing overlap with the
//! work on the records already read.

use std::ops::ControlFlow;
use std::sync::mpsc;

/// Items produced on a thread of their own, up to `depth` batches of `batch` items ahead of
/// the consumer, so that reading (decompressing, parsing) overlaps with what the consumer does
/// with the items. `produce` hands each item to the callback it is given, and stops when the
/// callback says [`ControlFlow::Break`] (the consumer has gone).
///
/// ```
/// use std::ops::ControlFlow;
/// let squares: Vec<u64> = prox_io::read_ahead(4, 2, |emit| {
///     for n in 0..10u64 {
///         if emit(n * n).is_break() {
///             return;
///         }
///     }
/// })
/// .collect();
/// assert_eq!(squares[9], 81);
/// ```
pub fn read_ahead<T, F>(batch: usize, depth: usize, produce: F) -> impl Iterator<Item = T>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn FnMut(T) -> ControlFlow<()>) + Send + 'static,
{
    let batch = batch.max(1);
    let (sender, receiver) = mpsc::sync_channel::<Vec<T>>(depth.max(1));
    std::thread::spawn(move || {
        let mut pending = Vec::with_capacity(batch);
        let mut gone = false;
        produce(&mut |item| {
            pending.push(item);
            if pending.len() >= batch {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(batch));
                if sender.send(full).is_err() {
                    gone = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if !gone && !pending.is_empty() {
            let _ = sender.send(pending);
        }
    });
    receiver.into_iter().flatten()
}

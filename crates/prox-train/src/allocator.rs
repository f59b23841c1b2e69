//! How a training process should hold its memory.
//!
//! A step's activations and gradients are freed during the backward pass and allocated again,
//! at the same sizes, by the next step's forward pass. mimalloc (the allocator of `prox`)
//! returns freed memory to the system after a delay shorter than a step, so every step faulted
//! its hundreds of megabytes in again, zeroing each page: on a 2-core Intel Xeon that took a
//! quarter of a fine-tuning step. Training keeps its peak anyway, so keeping the freed memory
//! costs no more than the peak the process has already reached.

/// `mi_option_purge_delay` of mimalloc's `mimalloc.h` (the same in its v2 and v3), which
/// libmimalloc-sys does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep freed memory for reuse instead of returning it to the system. Call
/// it before training, in a process whose global allocator is mimalloc; elsewhere it changes
/// nothing.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: setting an option is thread-safe in mimalloc and takes effect from the next
    // purge; -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

//! Every environment variable `prox` reads, in one place.

/// Log filter in `tracing` syntax (`info`, `prox=debug`), overriding `-v`/`-q`.
pub const PROX_LOG: &str = "PROX_LOG";

/// Caps the engine's Q8_0 kernel (`portable`, `avx2`), to run or benchmark a lower path on a
/// richer CPU; an unknown value is an error.
pub const PROX_Q8_KERNEL: &str = prox_engine::q8::KERNEL_ENV;

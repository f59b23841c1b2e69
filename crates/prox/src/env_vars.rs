//! Every environment variable `prox` reads, in one place.

/// Log filter in `tracing` syntax (`info`, `prox=debug`), overriding `-v`/`-q`.
pub const PROX_LOG: &str = "PROX_LOG";

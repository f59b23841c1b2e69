//! prox-pack's integration tests, one binary: the reference's packed files reproduced byte
//! for byte, and any packing read back the same.

#![allow(clippy::unwrap_used)] // a test fails loudly on any unexpected error

mod golden;
mod round_trip;

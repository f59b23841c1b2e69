//! prox-program's integration tests, one binary: the reference's executor vectors, faithful
//! quirks, strict differences, hostile and generated programs, and replayed regressions.

mod faithful;
mod golden;
mod harness;
mod hostile;
mod properties;
mod regressions;
mod strict;

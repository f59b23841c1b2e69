//! prox-refine's integration tests, one binary, over a scripted backend: the stages'
//! destinations and counts, and tasks committed, resumed and skipped in a run folder.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod refiner;
mod scripted;
mod task;

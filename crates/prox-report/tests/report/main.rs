//! prox-report's integration tests, one binary: reports of run folders written by the
//! contract (hostile documents included), and the report in a real browser.

#![allow(clippy::unwrap_used)] // test code: a failure is a test failure

mod browser;
mod report;
mod support;

//! prox-math's integration tests, one binary: prompts, answer extraction and grading against
//! GAIR-NLP's math-evaluation-harness, and `run` over a scripted generator.

use prox_math::Harness;

mod answers;
mod equal;
mod prompts;
mod run;

/// The harness folder of the fixtures: data and prompt files of eight datasets.
fn fixture_harness() -> Harness {
    Harness::open(&prox_test::fixture("math-eval/harness")).expect("the fixture harness opens")
}

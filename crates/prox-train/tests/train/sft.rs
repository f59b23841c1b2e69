//! Supervised fine-tuning: the masked loss against a hand computation from the logits, no
//! contribution from prompt positions, token-weighted accumulation, and a short run on the
//! tiny fixture model that lowers the loss, accounts for every row, resumes to exactly the
//! uninterrupted run's weights and leaves a model the engine loads and generates with.

use std::path::Path;

use prox_engine::{Device, LogitsAt};
use prox_train::{
    accumulate_sft_gradients, sft_loss, LabelledSequence, Rng, SftExample, SftOptions, SftRecipe,
    SftTrainer, Silent, TrainableModel,
};

use crate::harness::{
    assert_restarts_are_refused, assert_same_checkpoint, logged, small_config, VOCAB,
};

fn small_model() -> TrainableModel {
    TrainableModel::init(&small_config(), 11, &Device::Cpu).unwrap()
}

fn examples() -> Vec<SftExample> {
    let mut rng = Rng::new(4);
    [(9, 5), (14, 3), (6, 5), (11, 1)]
        .iter()
        .enumerate()
        .map(|(i, &(len, prompt_len))| SftExample {
            line: i as u64 + 1,
            ids: (0..len).map(|_| rng.below(VOCAB as u64) as u32).collect(),
            prompt_len,
        })
        .collect()
}

fn labelled(examples: &[SftExample]) -> Vec<LabelledSequence> {
    examples.iter().map(SftExample::labelled).collect()
}

fn log_softmax_at(row: &[f32], label: u32) -> f64 {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let sum: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    f64::from(row[label as usize]) - max - sum.ln()
}

#[test]
fn the_masked_loss_is_the_mean_cross_entropy_of_the_target_tokens_computed_by_hand() {
    let model = small_model();
    let examples = examples();
    let mut sum = 0.0;
    let mut count = 0;
    for example in &examples {
        // Each example alone, all logits: the batch must match it although it packs them.
        let inputs = &example.ids[..example.ids.len() - 1];
        let logits = model
            .llama
            .forward_uncached(&[inputs], &LogitsAt::All)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (position, &label) in example.ids.iter().enumerate().skip(example.prompt_len) {
            sum -= log_softmax_at(&logits[position - 1], label);
            count += 1;
        }
    }
    assert_eq!(count, 4 + 11 + 1 + 10);
    let by_hand = sum / f64::from(count);
    let loss = sft_loss(&model, &labelled(&examples), f64::from(count))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let loss = f64::from(loss);
    assert!(
        (loss - by_hand).abs() < 1e-5 * by_hand,
        "{loss} vs {by_hand}"
    );
}

#[test]
fn labels_of_prompt_positions_change_neither_the_loss_nor_any_gradient() {
    let model = small_model();
    let batch = labelled(&examples());
    let mut changed = batch.clone();
    for seq in &mut changed {
        for (label, counted) in seq.labels.iter_mut().zip(&seq.mask) {
            if !counted {
                *label = (*label + 7) % VOCAB as u32;
            }
        }
    }
    assert_ne!(batch, changed);
    let (loss, grads) = accumulate_sft_gradients(&model, std::slice::from_ref(&batch)).unwrap();
    let (loss_changed, grads_changed) =
        accumulate_sft_gradients(&model, std::slice::from_ref(&changed)).unwrap();
    assert_eq!(loss, loss_changed);
    assert!(grads == grads_changed, "a prompt label moved a gradient");

    // A target label does count.
    let mut target_changed = batch.clone();
    let last = target_changed[0].labels.len() - 1;
    target_changed[0].labels[last] = (target_changed[0].labels[last] + 1) % VOCAB as u32;
    let (loss_target, _) =
        accumulate_sft_gradients(&model, std::slice::from_ref(&target_changed)).unwrap();
    assert_ne!(loss, loss_target);
}

#[test]
fn micro_batches_accumulate_to_the_token_mean_of_the_whole_batch() {
    let model = small_model();
    let batch = labelled(&examples());
    let (loss_one, grads_one) =
        accumulate_sft_gradients(&model, std::slice::from_ref(&batch)).unwrap();
    let split = vec![batch[..1].to_vec(), batch[1..].to_vec()];
    let (loss_two, grads_two) = accumulate_sft_gradients(&model, &split).unwrap();
    assert!((loss_one - loss_two).abs() < 1e-5, "{loss_one} {loss_two}");
    for (a, b) in grads_one.iter().zip(&grads_two) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 + 1e-4 * x.abs(), "{x} {y}");
        }
    }
}

const PROGRAMS: [&str; 4] = [
    "drop_doc()",
    "keep_doc()",
    "remove_lines(start=0, end=2)",
    "normalize(source_str=\"Click here\", target_str=\"\")",
];

/// Four examples repeated three times, and five rows that cannot be trained on.
fn write_sft_data(path: &Path) {
    let mut lines = Vec::new();
    for round in 0..3 {
        for (i, program) in PROGRAMS.iter().enumerate() {
            let row = if i == 3 {
                serde_json::json!({"prompt_ids": [1, 518, 25580, 29962, 4123 + round, 518, 29914, 25580, 29962], "target": program})
            } else {
                serde_json::json!({
                    "prompt": format!("<s>[INST] Document {i}: some text of the web. [/INST]"),
                    "target": program,
                })
            };
            lines.push(row.to_string());
        }
    }
    lines.push("{not json".to_owned());
    lines.push(serde_json::json!({"prompt": "no target"}).to_string());
    lines.push(serde_json::json!({"prompt": "x", "target": ""}).to_string());
    lines.push(serde_json::json!({"prompt_ids": [1, 32000], "target": "drop_doc()"}).to_string());
    lines.push(
        serde_json::json!({"prompt": "long ".repeat(100), "target": "drop_doc()"}).to_string(),
    );
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn options(data: &Path, out: &Path) -> SftOptions {
    SftOptions {
        data: data.to_path_buf(),
        init_from: prox_test::fixture("tiny-llama"),
        out: out.to_path_buf(),
        recipe: SftRecipe {
            epochs: 3,
            micro_batch: 2,
            global_batch: 4,
            lr: 3e-3,
            min_lr: 3e-4,
            max_length: Some(64),
            val_fraction: 0.2,
            seed: 5,
            ..SftRecipe::default()
        },
        save_interval: 0,
        resume: false,
        device: Device::Cpu,
    }
}

#[test]
fn finetuning_the_tiny_model_learns_resumes_exactly_and_leaves_a_model_that_generates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sft.jsonl");
    write_sft_data(&data);

    let clean_out = dir.path().join("clean");
    let mut clean = SftTrainer::new(options(&data, &clean_out)).unwrap();
    let summary = clean.summary().clone();
    assert_eq!(summary.rows, 17);
    assert_eq!(
        (
            summary.examples,
            summary.train_examples,
            summary.validation_examples
        ),
        (12, 9, 3)
    );
    let rejected: Vec<(&str, u64)> = summary
        .rejected
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        rejected,
        [
            ("empty_target", 1),
            ("invalid_prompt_ids", 1),
            ("invalid_row", 1),
            ("no_target", 1),
            ("too_long", 1)
        ]
    );
    let rejected_lines = std::fs::read_to_string(clean_out.join("rejected.jsonl")).unwrap();
    assert_eq!(rejected_lines.lines().count(), 5);
    assert!(rejected_lines.contains("\"line\":17"), "{rejected_lines}");
    assert_eq!((summary.steps_per_epoch, summary.max_steps), (3, 9));
    assert_eq!(summary.warmup_steps, 1);

    let last = clean.run(&mut Silent, None).unwrap().unwrap();
    assert_eq!(last, clean_out.join("checkpoints/step-00000009"));
    let log = logged(&clean_out, |m| m.lr);
    let losses: Vec<f64> = log.iter().filter(|l| l.2.is_some()).map(|l| l.1).collect();
    let first_epoch = losses[..3].iter().sum::<f64>() / 3.0;
    let last_epoch = losses[6..].iter().sum::<f64>() / 3.0;
    assert!(
        last_epoch < 0.7 * first_epoch,
        "the training loss falls: {first_epoch} -> {last_epoch}"
    );
    let validations: Vec<(u64, f64)> = log
        .iter()
        .filter(|l| l.2.is_none())
        .map(|l| (l.0, l.1))
        .collect();
    assert_eq!(
        validations.iter().map(|v| v.0).collect::<Vec<_>>(),
        [3, 6, 9]
    );
    assert!(validations[2].1 < validations[0].1, "{validations:?}");
    assert!(clean_out.join("loss.svg").is_file());

    // Killed after step 4: the checkpoint of epoch 1 (step 3) is the last one written.
    let killed_out = dir.path().join("killed");
    let mut killed = SftTrainer::new(options(&data, &killed_out)).unwrap();
    killed.run(&mut Silent, Some(4)).unwrap();
    drop(killed);
    assert_restarts_are_refused(|resume, lr| {
        let mut restart = options(&data, &killed_out);
        restart.resume = resume;
        restart.recipe.lr = lr;
        SftTrainer::new(restart).err().map(|e| e.to_string())
    });

    let mut again = options(&data, &killed_out);
    again.resume = true;
    let mut resumed = SftTrainer::new(again).unwrap();
    assert_eq!(resumed.step(), 3);
    resumed.run(&mut Silent, None).unwrap();
    assert!(
        resumed.params() == clean.params(),
        "the resumed parameters differ from the uninterrupted run's"
    );
    assert_same_checkpoint(&clean_out, &killed_out, "checkpoints/step-00000009");
    assert_eq!(log, logged(&killed_out, |m| m.lr));

    // The checkpoint is a Hugging Face folder the engine loads, tokenizer included.
    let model = prox_engine::Model::load(&last, &prox_engine::LoadOptions::default()).unwrap();
    let tokenizer = model.tokenizer.as_ref().unwrap();
    let prompt = tokenizer
        .encode("<s>[INST] Document 0: some text of the web. [/INST]", true)
        .unwrap();
    let generated = prox_engine::generate(
        &model.llama,
        &[prox_engine::Request {
            prompt_ids: prompt,
            max_new_tokens: 6,
        }],
        &prox_engine::GenerateOptions::default(),
    )
    .unwrap();
    let generation = generated[0].as_ref().unwrap();
    assert!(!generation.ids.is_empty());
}

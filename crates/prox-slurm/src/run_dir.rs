//! What Slurm runs add to a run folder (docs/run-folder.md): a run folder per stage when the
//! stages run as separate jobs, and `slurm/` (the submission settings and the job ids). The
//! files of each stage's run folder are [`prox_run::RunLayout`]'s.

use std::path::{Path, PathBuf};

use prox_run::{read_json_if_present, RunLayout};
use serde::{Deserialize, Serialize};

use crate::script::Resources;
use crate::Error;

/// Which part of the pipeline a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Both stages in one task, in the run folder itself.
    All,
    /// The document stage alone, in `RUN_DIR/doc`.
    Doc,
    /// The chunk stage alone, reading `RUN_DIR/doc/output`, in `RUN_DIR/chunk`.
    Chunk,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::All => "all",
            Stage::Doc => "doc",
            Stage::Chunk => "chunk",
        }
    }
}

/// The run folder of one stage's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDir {
    stage: Stage,
    layout: RunLayout,
}

impl StageDir {
    pub fn new(run_dir: &Path, stage: Stage) -> Self {
        let root = match stage {
            Stage::All => run_dir.to_owned(),
            Stage::Doc => run_dir.join("doc"),
            Stage::Chunk => run_dir.join("chunk"),
        };
        Self {
            stage,
            layout: RunLayout::new(root),
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn name(&self) -> &'static str {
        self.stage.name()
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where each file of the stage's run folder is.
    pub fn layout(&self) -> &RunLayout {
        &self.layout
    }
}

/// How a run is submitted, recorded at the first `submit` so that a later `submit` on the same
/// run folder needs no arguments and cannot change what the tasks compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitSettings {
    pub tasks: u32,
    /// The refine arguments given after `--`, without the run folder, task count and rank.
    pub refine_args: Vec<String>,
    pub separate_stages: bool,
    pub max_parallel: Option<u32>,
    pub launch_server: Option<String>,
    /// Seconds a launched server has to answer, when not the default.
    #[serde(default)]
    pub server_ready_seconds: Option<u64>,
    pub resources: Resources,
}

/// One `sbatch` submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub stage: Stage,
    /// The `--array` value.
    pub array: String,
    pub offset: u32,
    pub ranks: Vec<u32>,
    /// Job ids this job waits for (`--dependency=afterok`).
    #[serde(default)]
    pub after: Vec<String>,
    /// Seconds since the Unix epoch.
    pub submitted_at: u64,
    /// The whole `sbatch` command line.
    pub command: Vec<String>,
}

/// Every submission of a run, oldest first (`slurm/jobs.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsFile {
    pub jobs: Vec<JobRecord>,
}

/// `RUN_DIR/slurm/`: what `prox slurm` keeps about a run.
#[derive(Debug, Clone)]
pub struct SlurmDir {
    root: PathBuf,
}

impl SlurmDir {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            root: run_dir.join("slurm"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn script(&self, stage: Stage) -> PathBuf {
        self.root.join(format!("{}.sbatch", stage.name()))
    }

    pub fn settings_path(&self) -> PathBuf {
        self.root.join("submit.json")
    }

    pub fn jobs_path(&self) -> PathBuf {
        self.root.join("jobs.json")
    }

    pub fn settings(&self) -> Result<Option<SubmitSettings>, Error> {
        Ok(read_json_if_present(&self.settings_path())?)
    }

    pub fn jobs(&self) -> Result<JobsFile, Error> {
        Ok(read_json_if_present(&self.jobs_path())?.unwrap_or_default())
    }

    pub fn write_settings(&self, settings: &SubmitSettings) -> Result<(), Error> {
        Ok(prox_io::write_json(&self.settings_path(), settings)?)
    }

    pub fn write_jobs(&self, jobs: &JobsFile) -> Result<(), Error> {
        Ok(prox_io::write_json(&self.jobs_path(), jobs)?)
    }
}

/// The last `lines` lines of a text file (lossily decoded), empty when it cannot be read.
pub fn tail_lines(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_stages_have_a_run_folder_each() {
        let all = StageDir::new(Path::new("/r"), Stage::All);
        assert_eq!(all.root(), Path::new("/r"));
        assert_eq!(
            all.layout().done_marker(3),
            Path::new("/r/done/task-00003.json")
        );
        let chunk = StageDir::new(Path::new("/r"), Stage::Chunk);
        assert_eq!(
            chunk.layout().progress(0),
            Path::new("/r/chunk/progress/task-00000.json")
        );
        assert_eq!(
            StageDir::new(Path::new("/r"), Stage::Doc).root(),
            Path::new("/r/doc")
        );
    }

    #[test]
    fn a_broken_jobs_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let slurm = SlurmDir::new(dir.path());
        assert_eq!(slurm.jobs().unwrap(), JobsFile::default());
        std::fs::create_dir_all(slurm.root()).unwrap();
        std::fs::write(slurm.jobs_path(), "{").unwrap();
        let error = slurm.jobs().unwrap_err().to_string();
        assert!(error.contains("jobs.json"), "{error}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_lines(&path, 2), "c\nd");
        assert_eq!(tail_lines(&path, 10), "a\nb\nc\nd");
        assert_eq!(tail_lines(&dir.path().join("none"), 3), "");
    }
}

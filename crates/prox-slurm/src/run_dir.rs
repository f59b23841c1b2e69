//! What Slurm runs add to a run folder (docs/run-folder.md): a run folder per stage when the
//! stages run as separate jobs, and `slurm/` (the submission settings and the job ids). The
//! files of each stage's run folder are [`prox_run::RunLayout`]'s.

use std::path::{Path, PathBuf};

use prox_run::{read_json_if_present, RunLayout, Stage};
use serde::{Deserialize, Serialize};

use crate::script::Resources;
use crate::Error;

/// What a job runs: both stages in one task, or one [`Stage`] when the stages run as separate
/// jobs; `all`, `doc` or `chunk` in `slurm/jobs.json` and in `prox status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStage {
    /// Both stages in one task, in the run folder itself.
    All,
    /// The document stage alone, in `RUN_DIR/doc`.
    Doc,
    /// The chunk stage alone, reading `RUN_DIR/doc/output`, in `RUN_DIR/chunk`.
    Chunk,
}

impl JobStage {
    pub fn name(self) -> &'static str {
        match self.stage() {
            None => "all",
            Some(stage) => stage.as_str(),
        }
    }

    /// The one stage the job runs; `None` for both.
    pub fn stage(self) -> Option<Stage> {
        match self {
            JobStage::All => None,
            JobStage::Doc => Some(Stage::Doc),
            JobStage::Chunk => Some(Stage::Chunk),
        }
    }
}

/// The run folder of one stage's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDir {
    stage: JobStage,
    layout: RunLayout,
}

impl StageDir {
    pub fn new(run_dir: &Path, stage: JobStage) -> Self {
        let root = match stage.stage() {
            None => run_dir.to_owned(),
            Some(stage) => run_dir.join(stage.as_str()),
        };
        Self {
            stage,
            layout: RunLayout::new(root),
        }
    }

    pub fn stage(&self) -> JobStage {
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

/// What one `submit` asks for: on the first submission of a run, its settings; on a later
/// one, what it may change (`None` and empty lists keep the first submission's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitRequest {
    pub tasks: Option<u32>,
    pub refine_args: Vec<String>,
    pub separate_stages: bool,
    pub max_parallel: Option<u32>,
    pub launch_server: Option<String>,
    pub server_ready_seconds: Option<u64>,
    pub resources: Resources,
}

/// The settings of the first submission that a later one may not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FixedSetting {
    Tasks,
    RefineArgs,
    SeparateStages,
    LaunchServer,
}

impl SubmitSettings {
    /// The settings of a submission: the request's on the first submission of a run folder;
    /// on a later one, the `recorded` first submission's with the resources, the parallelism
    /// and the server's wait changed as requested. What the tasks compute may not change.
    pub fn resolve(
        request: &SubmitRequest,
        recorded: Option<&SubmitSettings>,
    ) -> Result<SubmitSettings, Error> {
        let Some(recorded) = recorded else {
            let tasks = request.tasks.ok_or(Error::NoTaskCount)?;
            if request.refine_args.is_empty() {
                return Err(Error::NoRefineArgs);
            }
            return Ok(SubmitSettings {
                tasks,
                refine_args: request.refine_args.clone(),
                separate_stages: request.separate_stages,
                max_parallel: request.max_parallel,
                launch_server: request.launch_server.clone(),
                server_ready_seconds: request.server_ready_seconds,
                resources: request.resources.clone(),
            });
        };
        let changed = |setting, recorded: String| Error::SettingChanged { setting, recorded };
        if request.tasks.is_some_and(|tasks| tasks != recorded.tasks) {
            return Err(changed(FixedSetting::Tasks, recorded.tasks.to_string()));
        }
        if !request.refine_args.is_empty() && request.refine_args != recorded.refine_args {
            return Err(changed(
                FixedSetting::RefineArgs,
                format!("{:?}", recorded.refine_args),
            ));
        }
        if request.separate_stages && !recorded.separate_stages {
            return Err(changed(FixedSetting::SeparateStages, "false".to_owned()));
        }
        if request.launch_server.is_some() && request.launch_server != recorded.launch_server {
            return Err(changed(
                FixedSetting::LaunchServer,
                format!("{:?}", recorded.launch_server),
            ));
        }
        let (new, old) = (&request.resources, &recorded.resources);
        Ok(SubmitSettings {
            max_parallel: request.max_parallel.or(recorded.max_parallel),
            server_ready_seconds: request
                .server_ready_seconds
                .or(recorded.server_ready_seconds),
            resources: Resources {
                partition: new.partition.clone().or_else(|| old.partition.clone()),
                cpus_per_task: new.cpus_per_task.or(old.cpus_per_task),
                gpus_per_task: new.gpus_per_task.or(old.gpus_per_task),
                mem: new.mem.clone().or_else(|| old.mem.clone()),
                time: new.time.clone().or_else(|| old.time.clone()),
                extra: if new.extra.is_empty() {
                    old.extra.clone()
                } else {
                    new.extra.clone()
                },
            },
            ..recorded.clone()
        })
    }
}

impl FixedSetting {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            FixedSetting::Tasks => "the number of tasks",
            FixedSetting::RefineArgs => "the refine arguments",
            FixedSetting::SeparateStages => "separate stages",
            FixedSetting::LaunchServer => "the server command",
        }
    }
}

/// One `sbatch` submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub stage: JobStage,
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

    pub fn script(&self, stage: JobStage) -> PathBuf {
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
        let all = StageDir::new(Path::new("/r"), JobStage::All);
        assert_eq!(all.root(), Path::new("/r"));
        assert_eq!(
            all.layout().done_marker(3),
            Path::new("/r/done/task-00003.json")
        );
        let chunk = StageDir::new(Path::new("/r"), JobStage::Chunk);
        assert_eq!(
            chunk.layout().progress(0),
            Path::new("/r/chunk/progress/task-00000.json")
        );
        assert_eq!(
            StageDir::new(Path::new("/r"), JobStage::Doc).root(),
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
    fn a_resubmission_keeps_the_computation_and_may_change_resources() {
        let first = SubmitRequest {
            tasks: Some(4),
            refine_args: vec!["--input".into(), "x".into()],
            resources: Resources {
                time: Some("1:00:00".into()),
                mem: Some("4G".into()),
                extra: vec!["--account=a".into()],
                ..Resources::default()
            },
            ..SubmitRequest::default()
        };
        let recorded = SubmitSettings::resolve(&first, None).unwrap();
        let again = SubmitRequest {
            resources: Resources {
                time: Some("8:00:00".into()),
                ..Resources::default()
            },
            max_parallel: Some(2),
            ..SubmitRequest::default()
        };
        let settings = SubmitSettings::resolve(&again, Some(&recorded)).unwrap();
        assert_eq!(settings.resources.time.as_deref(), Some("8:00:00"));
        assert_eq!(settings.resources.mem.as_deref(), Some("4G"));
        assert_eq!(settings.resources.extra, recorded.resources.extra);
        assert_eq!(settings.max_parallel, Some(2));
        assert_eq!(settings.refine_args, recorded.refine_args);
        let fixed =
            |request: SubmitRequest| match SubmitSettings::resolve(&request, Some(&recorded))
                .unwrap_err()
            {
                Error::SettingChanged { setting, .. } => setting,
                error => panic!("{error}"),
            };
        let more_tasks = SubmitRequest {
            tasks: Some(5),
            ..SubmitRequest::default()
        };
        assert_eq!(fixed(more_tasks), FixedSetting::Tasks);
        let other_args = SubmitRequest {
            refine_args: vec!["--input".into(), "y".into()],
            ..SubmitRequest::default()
        };
        assert_eq!(fixed(other_args), FixedSetting::RefineArgs);
        let split = SubmitRequest {
            separate_stages: true,
            ..SubmitRequest::default()
        };
        assert_eq!(fixed(split), FixedSetting::SeparateStages);
    }

    #[test]
    fn a_first_submission_needs_tasks_and_refine_arguments() {
        let no_tasks = SubmitSettings::resolve(&SubmitRequest::default(), None).unwrap_err();
        assert!(matches!(no_tasks, Error::NoTaskCount), "{no_tasks}");
        let request = SubmitRequest {
            tasks: Some(2),
            ..SubmitRequest::default()
        };
        let no_args = SubmitSettings::resolve(&request, None).unwrap_err();
        assert!(matches!(no_args, Error::NoRefineArgs), "{no_args}");
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

use std::path::PathBuf;

/// What went wrong talking to Slurm, reading or writing the run folder, or supervising an
/// inference server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot run `{program}`: is Slurm installed and on PATH?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot understand the output of `{command}`: {output:?}")]
    Output { command: String, output: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] prox_io::Error),
    #[error(transparent)]
    Run(#[from] prox_run::Error),
    #[error(
        "cannot tell how many tasks {} has: it has no slurm/submit.json and its run.json \
         gives no `tasks`",
        run_dir.display()
    )]
    UnknownTaskCount { run_dir: PathBuf },
    #[error("the number of tasks is needed on the first submission of a run folder")]
    NoTaskCount,
    #[error("the refine arguments are missing")]
    NoRefineArgs,
    #[error(
        "{} would differ from the first submission's (slurm/submit.json), which has {recorded}",
        setting.describe()
    )]
    SettingChanged {
        setting: crate::run_dir::FixedSetting,
        recorded: String,
    },
    #[error(
        "one server per task cannot serve both the document model ({doc}) and the chunk model \
         ({chunk})"
    )]
    TwoServedModels { doc: String, chunk: String },
    #[error("the inference server command is empty")]
    EmptyServerCommand,
    #[error("cannot start the inference server `{command}`")]
    ServerSpawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the inference server exited ({status}) before it answered on port {port}; \
         the last lines of {}:\n{log_tail}",
        log.display()
    )]
    ServerDied {
        status: String,
        port: u16,
        log: PathBuf,
        log_tail: String,
    },
    #[error(
        "the inference server did not answer http://127.0.0.1:{port}/v1/models within \
         {seconds} s; the last lines of {}:\n{log_tail}",
        log.display()
    )]
    ServerTimeout {
        port: u16,
        seconds: u64,
        log: PathBuf,
        log_tail: String,
    },
    #[error("cannot find a free port on 127.0.0.1")]
    NoFreePort(#[source] std::io::Error),
}

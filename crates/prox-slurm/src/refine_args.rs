//! The `prox refine` arguments a run's tasks get (given to `submit` after `--`), and what
//! submitting needs to know of them: the models a launched server serves, the flags that
//! `submit` sets itself, and the input list the chunk stage replaces.

use prox_run::{Stage, Stages};

use crate::run_dir::{JobStage, SubmitSettings};
use crate::Error;

/// The refine arguments, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefineInvocation {
    /// The arguments as given.
    pub args: Vec<String>,
    pub preset: Option<String>,
    pub doc_model: Option<String>,
    pub chunk_model: Option<String>,
    /// `doc,chunk`, `doc` or `chunk`.
    pub stages: Option<String>,
    /// The arguments without `--input PATH…` (the chunk stage reads the document stage's
    /// output instead).
    pub without_inputs: Vec<String>,
}

impl RefineInvocation {
    pub fn new(args: &[String]) -> Self {
        RefineInvocation {
            args: args.to_vec(),
            preset: flag_value(args, "--preset"),
            doc_model: flag_value(args, "--doc-model"),
            chunk_model: flag_value(args, "--chunk-model"),
            stages: flag_value(args, "--stages"),
            without_inputs: without_inputs(args),
        }
    }

    /// Whether the arguments give `flag`, with a value or not.
    pub fn gives(&self, flag: &str) -> bool {
        flag_value(&self.args, flag).is_some() || self.args.iter().any(|arg| arg == flag)
    }

    /// The first flag the arguments give that `submit` sets itself for every task.
    pub fn reserved_flag(&self, settings: &SubmitSettings) -> Option<&'static str> {
        let mut reserved = vec!["--output", "--tasks", "--rank", "--log-file"];
        if settings.separate_stages {
            reserved.push("--stages");
        }
        if settings.launch_server.is_some() {
            reserved.extend(["--backend", "--endpoint"]);
        }
        reserved.into_iter().find(|flag| self.gives(flag))
    }

    /// The model a task of `stage` serves: the stage's model, else the default (the preset's).
    /// Both stages in one job serve one model only when the two are the same.
    pub fn served_model(
        &self,
        stage: JobStage,
        default_doc: String,
        default_chunk: String,
    ) -> Result<String, Error> {
        let doc = self.doc_model.clone().unwrap_or(default_doc);
        let chunk = self.chunk_model.clone().unwrap_or(default_chunk);
        let stage = stage.stage().or_else(|| {
            // A job of both stages whose `--stages` names one runs that one.
            self.stages.as_deref()?.parse::<Stages>().ok()?.single()
        });
        match stage {
            Some(Stage::Doc) => Ok(doc),
            Some(Stage::Chunk) => Ok(chunk),
            None if doc == chunk => Ok(doc),
            None => Err(Error::TwoServedModels { doc, chunk }),
        }
    }
}

/// The value of `--flag VALUE` or `--flag=VALUE` (the last one given).
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut value = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            value = iter.next().cloned();
        } else if let Some(rest) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            value = Some(rest.to_owned());
        }
    }
    value
}

fn without_inputs(args: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut in_input = false;
    for arg in args {
        if arg == "--input" {
            in_input = true;
        } else if arg.starts_with("--input=") {
            in_input = false;
        } else if in_input && !arg.starts_with('-') {
            // A path of the --input list.
        } else {
            in_input = false;
            kept.push(arg.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of a command line.
    fn strings(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_chunk_stage_drops_the_input_list_and_keeps_the_rest() {
        let args = strings("--input a b --doc-model m --input=c --workers 2");
        assert_eq!(
            RefineInvocation::new(&args).without_inputs,
            strings("--doc-model m --workers 2")
        );
    }

    #[test]
    fn flag_values_come_in_both_spellings() {
        let invocation = RefineInvocation::new(&strings("--doc-model d --chunk-model=c"));
        assert_eq!(invocation.doc_model.as_deref(), Some("d"));
        assert_eq!(invocation.chunk_model.as_deref(), Some("c"));
        assert_eq!(invocation.stages, None);
        assert!(invocation.gives("--chunk-model"));
        assert!(!invocation.gives("--rank"));
    }

    #[test]
    fn submit_keeps_its_own_flags() {
        let settings = SubmitSettings {
            tasks: 2,
            refine_args: Vec::new(),
            separate_stages: true,
            max_parallel: None,
            launch_server: None,
            server_ready_seconds: None,
            resources: Default::default(),
        };
        let stages = RefineInvocation::new(&strings("--input x --stages=doc"));
        assert_eq!(stages.reserved_flag(&settings), Some("--stages"));
        let rank = RefineInvocation::new(&strings("--rank 1"));
        assert_eq!(rank.reserved_flag(&settings), Some("--rank"));
        let backend = RefineInvocation::new(&strings("--backend openai"));
        assert_eq!(backend.reserved_flag(&settings), None);
    }
}

//! The two refining stages, by the program each one runs, and which of them a run runs: one
//! vocabulary for run folders, flags, reports and prompts.

use std::fmt;
use std::str::FromStr;

/// A refining stage: the document stage runs document programs (keep or drop the whole
/// document), the chunk stage runs chunk programs (edit the lines of each chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Stage {
    /// Keep or drop the whole document.
    Doc,
    /// Edit the lines of each chunk.
    Chunk,
}

impl Stage {
    /// Both stages, in the order they run.
    pub const ALL: [Stage; 2] = [Stage::Doc, Stage::Chunk];

    /// The stage's name in files and flags: `doc` or `chunk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Doc => "doc",
            Stage::Chunk => "chunk",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage name that is neither `doc` nor `chunk`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage `{0}` (expected `doc` or `chunk`)")]
pub struct ParseStageError(pub String);

impl FromStr for Stage {
    type Err = ParseStageError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == name)
            .ok_or_else(|| ParseStageError(name.to_owned()))
    }
}

/// Which stages run; in `run.json` as `{"doc": true, "chunk": true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stages {
    pub doc: bool,
    pub chunk: bool,
}

impl Stages {
    /// Both stages: the whole pipeline.
    pub const BOTH: Stages = Stages {
        doc: true,
        chunk: true,
    };

    /// One stage alone.
    pub fn only(stage: Stage) -> Stages {
        Stages {
            doc: stage == Stage::Doc,
            chunk: stage == Stage::Chunk,
        }
    }

    pub fn contains(self, stage: Stage) -> bool {
        match stage {
            Stage::Doc => self.doc,
            Stage::Chunk => self.chunk,
        }
    }

    /// The stages that run, in the order they run.
    pub fn iter(self) -> impl Iterator<Item = Stage> {
        Stage::ALL
            .into_iter()
            .filter(move |&stage| self.contains(stage))
    }

    /// The stage of a set of one; `None` for both (or none).
    pub fn single(self) -> Option<Stage> {
        match (self.doc, self.chunk) {
            (true, false) => Some(Stage::Doc),
            (false, true) => Some(Stage::Chunk),
            _ => None,
        }
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Stage::as_str).collect()
    }
}

impl FromStr for Stages {
    type Err = String;

    /// `doc,chunk`, `doc` or `chunk`: the stages in the order they run.
    fn from_str(value: &str) -> Result<Self, String> {
        let mut stages = Stages {
            doc: false,
            chunk: false,
        };
        for name in value.split(',').map(str::trim) {
            match name.parse() {
                Ok(Stage::Doc) if !stages.doc && !stages.chunk => stages.doc = true,
                Ok(Stage::Chunk) if !stages.chunk => stages.chunk = true,
                _ => return Err(format!("expected doc,chunk, doc or chunk, not {value:?}")),
            }
        }
        Ok(stages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_named_as_they_parse() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
            assert_eq!(stage.to_string(), stage.as_str());
        }
        let error = "both".parse::<Stage>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown stage `both` (expected `doc` or `chunk`)"
        );
    }

    #[test]
    fn a_set_lists_its_stages_in_running_order() {
        assert_eq!(Stages::BOTH.names(), ["doc", "chunk"]);
        assert_eq!(Stages::only(Stage::Chunk).names(), ["chunk"]);
        assert_eq!(
            Stages::only(Stage::Doc).iter().collect::<Vec<_>>(),
            [Stage::Doc]
        );
        assert!(!Stages::only(Stage::Doc).contains(Stage::Chunk));
        for stage in Stage::ALL {
            assert_eq!(Stages::only(stage).single(), Some(stage));
        }
        assert_eq!(Stages::BOTH.single(), None);
    }

    #[test]
    fn a_set_parses_in_running_order_without_repeats() {
        assert_eq!("doc,chunk".parse::<Stages>(), Ok(Stages::BOTH));
        assert_eq!(" chunk ".parse::<Stages>(), Ok(Stages::only(Stage::Chunk)));
        for wrong in ["chunk,doc", "doc,doc", "", "both", "doc,"] {
            assert_eq!(
                wrong.parse::<Stages>(),
                Err(format!("expected doc,chunk, doc or chunk, not {wrong:?}")),
            );
        }
    }
}

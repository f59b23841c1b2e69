//! What running a program did to a document.

use std::fmt;

/// Why a document was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// The document-stage program asked for it (`drop_doc()`).
    DocProgram,
    /// The chunk program removed so much that the kept-word ratio fell to `1 - threshold_2`.
    LowRatio,
    /// The result has `min_words` words or fewer.
    FewWords,
    /// The document has no words at all (the reference divides by zero here).
    NoWords,
}

impl DropReason {
    /// Every reason, in a stable order (for reports and stats).
    pub const ALL: [DropReason; 4] = [
        DropReason::DocProgram,
        DropReason::LowRatio,
        DropReason::FewWords,
        DropReason::NoWords,
    ];

    /// The reason's name in outputs and stats: `doc_program`, `low_ratio`, `few_words`, `no_words`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::DocProgram => "doc_program",
            DropReason::LowRatio => "low_ratio",
            DropReason::FewWords => "few_words",
            DropReason::NoWords => "no_words",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with one line of a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    /// 1-based line of the program the problem is on; `None` for problems found after parsing
    /// (the reference counts a removal range outside the document as an error of the program).
    pub line: Option<usize>,
    /// What was wrong, for people.
    pub reason: String,
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// The fate of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The document stays, with this text.
    Kept {
        /// The resulting text.
        text: String,
        /// Whether `text` differs from the input.
        modified: bool,
    },
    /// The program had too many errors (`error_op` or more), or its edit kept a smaller share
    /// of the words than `threshold_1`: the original text is kept.
    Ignored {
        /// The original text.
        text: String,
    },
    /// The document is dropped.
    Dropped(DropReason),
}

impl Verdict {
    /// The text in the reference's layout: the kept text, or `""` for a dropped document.
    pub fn text(&self) -> &str {
        match self {
            Verdict::Kept { text, .. } | Verdict::Ignored { text } => text,
            Verdict::Dropped(_) => "",
        }
    }
}

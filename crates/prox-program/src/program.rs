//! The typed form of a program: what each line of model output asks for.

use crate::outcome::ProgramError;
use crate::Mode;

/// An operation a program can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `drop_doc()`: drop the whole document (document stage).
    DropDoc,
    /// `keep_doc()`: keep the document as it is (document stage).
    KeepDoc,
    /// `remove_lines(start=I, end=J)`: remove the 0-based lines `I..=J`. `I > J` removes
    /// nothing; the parts of the range outside the document remove nothing either.
    RemoveLines {
        /// First line to remove.
        start: i64,
        /// Last line to remove (inclusive).
        end: i64,
    },
    /// `remove_lines(all=True)`: remove every line.
    RemoveAllLines,
    /// `normalize(source_str="S", target_str="T")`: replace every occurrence of `S` in the
    /// whole text by `T`; without a target, delete them. An empty source changes nothing.
    Normalize {
        /// The string to look for.
        source: String,
        /// Its replacement; `None` deletes.
        target: Option<String>,
    },
}

impl Call {
    /// The function name the call is written with.
    pub fn name(&self) -> &'static str {
        match self {
            Call::DropDoc => "drop_doc",
            Call::KeepDoc => "keep_doc",
            Call::RemoveLines { .. } | Call::RemoveAllLines => "remove_lines",
            Call::Normalize { .. } => "normalize",
        }
    }
}

/// What one line of a program is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// An operation to run.
    Call(Call),
    /// A known function that changes nothing (`untouch_doc()`).
    NoOp(String),
    /// A `#` comment.
    Comment,
    /// Nothing: an empty or all-whitespace line, or a code fence.
    Blank,
    /// Text that does nothing and is not an error either; says why. The faithful reader
    /// ignores every line that does not start with `remove_lines` or `normalize`.
    Ignored(&'static str),
    /// A line that does nothing because of its errors (see [`ProgramLine::errors`]).
    Error,
}

/// One line of a program, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramLine {
    /// 1-based line number in the program text.
    pub line: usize,
    /// What the line does.
    pub kind: LineKind,
    /// Every problem on the line, each counting as one error of the program. A faithful line
    /// can hold a call *and* an error: the reference counts a missing `)` and still runs what
    /// it could read.
    pub errors: Vec<String>,
}

impl ProgramLine {
    pub(crate) fn new(line: usize, kind: LineKind) -> Self {
        Self {
            line,
            kind,
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            kind: LineKind::Error,
            errors: vec![reason.into()],
        }
    }

    /// The call on this line, if any.
    pub fn call(&self) -> Option<&Call> {
        match &self.kind {
            LineKind::Call(call) => Some(call),
            _ => None,
        }
    }
}

/// A parsed program: one entry per line of its text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    /// How it was read.
    pub mode: Mode,
    /// Every line, in order.
    pub lines: Vec<ProgramLine>,
}

impl Program {
    /// The calls, in program order, with their line numbers.
    pub fn calls(&self) -> impl Iterator<Item = (usize, &Call)> + '_ {
        self.lines
            .iter()
            .filter_map(|line| line.call().map(|call| (line.line, call)))
    }

    /// Every parse problem, in order. Execution can add more (ranges outside the document).
    pub fn errors(&self) -> impl Iterator<Item = ProgramError> + '_ {
        self.lines.iter().flat_map(|line| {
            line.errors.iter().map(|reason| ProgramError {
                line: Some(line.line),
                reason: reason.clone(),
            })
        })
    }

    /// How many parse problems the program has.
    pub fn error_count(&self) -> usize {
        self.lines.iter().map(|line| line.errors.len()).sum()
    }
}

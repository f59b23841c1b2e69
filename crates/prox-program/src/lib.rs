//! The ProX program language: small language models write one program per document, and this
//! crate runs it.
//!
//! A **document program** keeps or drops the whole document (`drop_doc()`, `keep_doc()`). A
//! **chunk program** edits it, one call per line:
//!
//! ```text
//! remove_lines(start=0, end=2)                  # 0-based, inclusive
//! normalize(source_str="Click here", target_str="")
//! untouch_doc()
//! ```
//!
//! Normalizations run first, on the whole text, in program order; the marked lines are
//! removed afterwards, whatever the order of the calls. Then the reference's decision picks
//! the result from word counts ([`Thresholds`]): a document that lost nearly all its words is
//! dropped, one of `min_words` words or fewer is dropped, a program with `error_op` errors or
//! more is ignored (the original text is kept), and otherwise the edited text is kept.
//!
//! Programs are read in one of two [`Mode`]s into typed lines ([`parse`], [`Program`]), which
//! the same code then runs (only the faithful document stage reads no lines: the reference
//! tests for a substring there):
//!
//! - [`Mode::Faithful`] (the default) reads programs the way the reference does, by splitting
//!   strings, and reproduces its output byte for byte, quirks included.
//! - [`Mode::Strict`] reads each line as a Python call with a real tokenizer.
//!
//! # Example
//!
//! ```
//! use prox_program::{DropReason, Executor, Mode, Thresholds, Verdict};
//!
//! let text = "Home | About\n\
//!             The first line of a long article about rivers and the towns on them.\n\
//!             A second line says more about how those towns grew along the banks.\n\
//!             Share on Twitter";
//! let program = "remove_lines(start=0, end=0)\nremove_lines(start=3, end=3)";
//!
//! let executor = Executor::new(Mode::Faithful, Thresholds::default());
//! let outcome = executor.run_chunk(text, program);
//! assert_eq!(outcome.lines_removed, 2);
//! assert!(outcome.verdict.text().starts_with("The first line"));
//!
//! let doc = executor.run_doc("drop_doc()");
//! assert_eq!(doc.verdict(text), Verdict::Dropped(DropReason::DocProgram));
//!
//! // Positional arguments are an error to the reference, but fine when read strictly.
//! let strict = Executor::new(Mode::Strict, Thresholds::default());
//! assert_eq!(executor.run_chunk(text, "remove_lines(0, 0)").errors.len(), 1);
//! assert_eq!(strict.run_chunk(text, "remove_lines(0, 0)").lines_removed, 1);
//! ```
//!
//! # Faithful mode
//!
//! The reference (`utils/chunk_utils.py` and `utils/doc_utils.py` of GAIR-NLP/ProX) parses
//! by splitting strings; faithful mode keeps all of it:
//!
//! - The document stage drops a document when `drop` appears anywhere in its program
//!   (`undrop`, `# don't drop` included).
//! - The program loses the spaces at its two ends, then splits on `\n`. Lines are not
//!   stripped: an indented call (after the first line) is ignored.
//! - A line that starts with `remove_lines` and holds `all=True` anywhere removes every line.
//!   Any other line starting with `remove_lines` takes the text between the first `(` and the
//!   first `)`, splits it on `,` and reads `int()` of the text after the first `=` of the
//!   first two parts, whatever the names: `remove_lines(3, 7)` is an error. A line starting
//!   with `normalize` reads `source_str`/`target_str` the same way, strips `"` from both ends
//!   and interprets no escape; with a comma in a string (three parts or more) the line is
//!   silently skipped, and a two-part call with source `""` or `" "` is skipped too, while the
//!   one-part `normalize(source_str=" ")` deletes every space.
//! - No `(`: one error. No `)`: one error, and the line goes on without its last character
//!   (which can cost a second error).
//! - Ranges are merged; each merged range starting past the last line is an error, and
//!   each one ending past it is an error.
//! - Every other line is ignored.
//!
//! Where faithful mode cannot follow the reference:
//!
//! - Where the reference divides by zero (a text with no words) the document is dropped with
//!   [`DropReason::NoWords`].
//! - Python's integers are unbounded; line numbers beyond `i64` saturate, which changes
//!   nothing short of two different such numbers meeting in one program's range merge.
//!   Like CPython 3.11, a number of more than 4300 digits is an error.
//! - Normalize calls past [`Limits::max_normalize_bytes`] are skipped (see below).
//!
//! Every rule has a test in `tests/faithful.rs`; `tests/golden.rs` runs the 3001 reference
//! vectors.
//!
//! # Hostile programs
//!
//! Programs are model output, so nothing in them may panic or run away. Parsing is one pass
//! over each line; ranges are merged arithmetically (`remove_lines(start=0,
//! end=99999999999999)` costs as much as `end=1`), so a chunk program runs in time about
//! linear in its length and the text's, except for normalize: each call reads the whole
//! text, as in the reference. Their total work is bounded by [`Limits::max_normalize_bytes`]
//! (bytes read and written by one program's normalize calls, 1 GiB by default, which also
//! bounds how far `a` → `aa` calls can grow a text). Once it is spent, that call and every
//! later normalize call are skipped, with one error.
//!
//! # Strict mode: how it differs
//!
//! Strict mode reads each line as one Python call: `name(arguments)`, keyword or positional,
//! strings in single or double quotes with Python escapes, integers, `True`/`False`, a
//! trailing `# comment`. Blank lines, `#` lines and code fences (lines starting with
//! `` ``` ``) are skipped. Each line that is not one well-formed call of a known function
//! with the right arguments counts one error. The same calls then run the same way, with
//! the same thresholds; the differences, each with a test in `tests/strict.rs`:
//!
//! 1. **Indentation**: whitespace around every line is ignored; faithful ignores an indented
//!    line.
//! 2. **Positional arguments**: `remove_lines(3, 7)` and `normalize("a", "b")` are calls;
//!    faithful counts the first an error.
//! 3. **Argument names**: only `start`/`line_start`, `end`/`line_end`, `all`, `source_str`,
//!    `target_str`; any other name or an extra argument is an error. Faithful reads the
//!    first two arguments whatever their names and ignores the rest.
//! 4. **Commas in strings** are part of the string; faithful skips the line silently.
//! 5. **`)` in strings** is part of the string; faithful cuts the arguments at the first `)`.
//! 6. **`=` in strings** is part of the string; faithful reads up to the second `=`.
//! 7. **Quotes**: single-quoted strings are strings, and spaces around `=` are allowed;
//!    faithful keeps single quotes (and, after a space, double quotes) as text.
//! 8. **Escapes** (`\"`, `\\`, `\t`, `\uXXXX`, …) are interpreted; faithful keeps them as
//!    written. A string holding a line break (`\n`) is an error, since it would renumber the
//!    lines after it.
//! 9. **Function names** must match exactly: faithful runs any line *starting* with
//!    `remove_lines` or `normalize` (`remove_lines_all(...)`, `normalized(...)`).
//! 10. **`all=True`** only as `remove_lines(all=True)`; faithful removes every line when
//!     `all=True` appears anywhere on a `remove_lines` line, even in a comment.
//! 11. **Unknown functions** (`drop_chunk()`, `print()`) and other text are errors; the no-ops
//!     `untouch_doc()`, `keep_chunk()` and `skip_chunk()` are known and do nothing;
//!     faithful ignores every line that does not start with `remove_lines` or `normalize`.
//! 12. **Unclosed calls** and text after the call (other than a comment) are one error and
//!     do nothing; faithful reads what it can of an unclosed call.
//! 13. **Integers** are ASCII literals (leading zeros and `_` allowed) that must fit `i64`,
//!     else an error; faithful uses Python's `int()`, which also takes Unicode digits, and
//!     saturates.
//! 14. **Empty `source_str`** is an error; faithful does nothing, silently.
//! 15. **`normalize(source_str=" ")`** with one argument is skipped like the two-argument
//!     form; faithful deletes every space of the text.
//! 16. **`drop_doc()` in a chunk program** is an error (`keep_doc()` there does nothing);
//!     faithful ignores both.
//! 17. **The document stage** parses the program: the document is dropped when it holds a
//!     `drop_doc()` call and no `keep_doc()` call. Unknown functions and unreadable lines
//!     are errors that do not decide anything (`undrop` keeps the document); `drop_doc()`
//!     with `keep_doc()` keeps the document, with an error; chunk calls are errors. Faithful
//!     drops on the substring `drop`.

pub mod outcome;
pub mod program;

mod execute;
mod faithful;
mod pyint;
mod stage;
mod strict;
mod words;

use std::fmt;
use std::str::FromStr;

pub use outcome::{DropReason, ProgramError, Verdict};
pub use program::{Call, LineKind, Program, ProgramLine};
pub use stage::{ParseStageError, Stage, Stages};
pub use words::{count_words, is_py_space};

/// How programs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// As the reference reads them, quirks included: outputs match it byte for byte.
    #[default]
    Faithful,
    /// As Python calls, with a real tokenizer (see the crate docs for every difference).
    Strict,
}

impl Mode {
    /// The mode's name: `faithful` or `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Faithful => "faithful",
            Mode::Strict => "strict",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is neither `faithful` nor `strict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode `{0}` (expected `faithful` or `strict`)")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "faithful" => Ok(Mode::Faithful),
            "strict" => Ok(Mode::Strict),
            other => Err(ParseModeError(other.to_owned())),
        }
    }
}

/// The numbers of the reference's keep-or-drop decision for chunk programs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Keep an edit only if the kept-word ratio is at least this (reference: 0.0).
    pub threshold_1: f64,
    /// Drop the document when the kept-word ratio is at most `1 - threshold_2` and the
    /// program has fewer than `error_op` errors (reference: 0.95).
    pub threshold_2: f64,
    /// A program with this many errors or more is ignored (reference: 2).
    pub error_op: usize,
    /// A result of this many words or fewer is dropped, even from a program that did nothing
    /// or was ignored (reference: 10).
    pub min_words: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            threshold_1: 0.0,
            threshold_2: 0.95,
            error_op: 2,
            min_words: 10,
        }
    }
}

/// Bounds on the work one program may cause, whatever it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes that the normalize calls of one chunk program may read and write together
    /// (each call reads the whole text, and writes it again when it replaces something).
    pub max_normalize_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_normalize_bytes: 1 << 30,
        }
    }
}

/// What a document program decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocOutcome {
    /// Whether the document stays.
    pub keep: bool,
    /// Problems with the program (strict mode only; faithful mode reads no structure).
    pub errors: Vec<ProgramError>,
}

impl DocOutcome {
    /// The verdict for the document the program was written for.
    pub fn verdict(&self, text: &str) -> Verdict {
        if self.keep {
            Verdict::Kept {
                text: text.to_owned(),
                modified: false,
            }
        } else {
            Verdict::Dropped(DropReason::DocProgram)
        }
    }
}

/// What a chunk program did to a document.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkOutcome {
    /// The fate of the document.
    pub verdict: Verdict,
    /// Problems with the program, in program order, then the ranges outside the document.
    pub errors: Vec<ProgramError>,
    /// Lines the program's edit removed (whether or not the verdict keeps the edit).
    pub lines_removed: usize,
    /// Occurrences the normalize calls replaced (whether or not the verdict keeps the edit).
    pub normalizations: usize,
    /// Words of the input text (Python's `len(text.split())`).
    pub words_before: usize,
    /// Words of the edited text.
    pub words_after: usize,
    /// Whether the program was ignored and the original text kept (`verdict` is `Ignored`).
    pub program_ignored: bool,
}

/// Runs document and chunk programs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Executor {
    mode: Mode,
    thresholds: Thresholds,
    limits: Limits,
}

impl Executor {
    /// An executor that reads programs in `mode` and decides with `thresholds`.
    pub fn new(mode: Mode, thresholds: Thresholds) -> Self {
        Self {
            mode,
            thresholds,
            limits: Limits::default(),
        }
    }

    /// The same executor with other work limits.
    pub fn with_limits(self, limits: Limits) -> Self {
        Self { limits, ..self }
    }

    /// How this executor reads programs.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The numbers it decides with.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// The work limits it runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs a document-stage program.
    pub fn run_doc(&self, program: &str) -> DocOutcome {
        match self.mode {
            Mode::Faithful => DocOutcome {
                keep: !faithful::doc_drops(program),
                errors: Vec::new(),
            },
            Mode::Strict => strict_doc(strict::lines(program)),
        }
    }

    /// Runs a chunk-stage program on `text`: parses each line once and runs it as it comes.
    pub fn run_chunk(&self, text: &str, program: &str) -> ChunkOutcome {
        let mut run = execute::ChunkRun::new(text, self.limits);
        match self.mode {
            Mode::Faithful => faithful::lines(program).for_each(|line| run.apply(&line)),
            Mode::Strict => strict::lines(program).for_each(|line| run.apply(&line)),
        }
        run.finish(&self.thresholds)
    }

    /// Runs a chunk program parsed beforehand (in either mode) on `text`.
    pub fn run_chunk_program(&self, text: &str, program: &Program) -> ChunkOutcome {
        let mut run = execute::ChunkRun::new(text, self.limits);
        program.lines.iter().for_each(|line| run.apply(line));
        run.finish(&self.thresholds)
    }
}

/// The strict document stage: the calls decide, problems are reported.
fn strict_doc(lines: impl Iterator<Item = ProgramLine>) -> DocOutcome {
    let mut errors = Vec::new();
    let (mut drop_line, mut keep_line) = (None, None);
    for line in lines {
        errors.extend(line.errors.iter().map(|reason| ProgramError {
            line: Some(line.line),
            reason: reason.clone(),
        }));
        match line.call() {
            Some(Call::DropDoc) => drop_line = drop_line.or(Some(line.line)),
            Some(Call::KeepDoc) => keep_line = keep_line.or(Some(line.line)),
            Some(chunk_call) => errors.push(ProgramError {
                line: Some(line.line),
                reason: format!(
                    "{}() belongs to the chunk stage, not a document program",
                    chunk_call.name()
                ),
            }),
            None => {}
        }
    }
    if let (Some(drop), Some(keep)) = (drop_line, keep_line) {
        errors.push(ProgramError {
            line: Some(drop.max(keep)),
            reason: "both drop_doc() and keep_doc(): the document is kept".to_owned(),
        });
    }
    DocOutcome {
        keep: drop_line.is_none() || keep_line.is_some(),
        errors,
    }
}

/// Parses a program into its typed lines. Parsing never fails: problems are recorded on
/// their lines. Faithful parsing reads chunk programs (the reference's document stage is a
/// substring test, see [`Executor::run_doc`]).
pub fn parse(program: &str, mode: Mode) -> Program {
    let lines = match mode {
        Mode::Faithful => faithful::lines(program).collect(),
        Mode::Strict => strict::lines(program).collect(),
    };
    Program { mode, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for mode in [Mode::Faithful, Mode::Strict] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        assert!("Strict".parse::<Mode>().is_err());
    }

    #[test]
    fn default_thresholds_are_the_reference_ones() {
        let t = Thresholds::default();
        assert_eq!(
            (t.threshold_1, t.threshold_2, t.error_op, t.min_words),
            (0.0, 0.95, 2, 10)
        );
    }
}

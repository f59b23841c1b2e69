//! What the faithful and strict tests share: the text they edit and the checks they make.

use prox_program::{ChunkOutcome, DropReason, Executor, Mode, Thresholds, Verdict};

/// Six lines of five words: removing one line keeps the document, removing all drops it.
pub const TEXT: &str = "zero alpha beta gamma delta\n\
                        one alpha beta gamma delta\n\
                        two alpha beta gamma delta\n\
                        three alpha beta gamma delta\n\
                        four alpha beta gamma delta\n\
                        five alpha beta gamma delta";

/// [`TEXT`] without its lines numbered (from 0) in `lines`.
pub fn without(lines: &[usize]) -> String {
    TEXT.split('\n')
        .enumerate()
        .filter(|(i, _)| !lines.contains(i))
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `program` run on `text` as a chunk program in `mode`, with the default thresholds.
pub fn run_chunk(mode: Mode, text: &str, program: &str) -> ChunkOutcome {
    Executor::new(mode, Thresholds::default()).run_chunk(text, program)
}

/// The document stage of `executor` drops any document for `program`.
pub fn assert_doc_program_drops(executor: &Executor, program: &str) {
    assert_eq!(
        executor.run_doc(program).verdict("text"),
        Verdict::Dropped(DropReason::DocProgram),
        "{program}"
    );
}

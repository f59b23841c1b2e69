//! What a refinement run did, for people: per-document diffs, a stratified sample, charts, a
//! self-contained HTML report and a terminal view; and the score chart of an evaluation over a
//! checkpoint series ([`ScoreChart`]).

mod charts;
mod diff;
mod error;
mod html;
mod report;
mod run;
mod sample;
mod series;
mod terminal;

pub use charts::{calls_by_kind, ChartData, Charts, CALL_KINDS};
pub use diff::{DiffLine, DocumentDiff, ProgramLineView, Segment};
pub use error::Error;
pub use html::{content_security_policy, MAX_LINES_SHOWN};
pub use prox_run::{Stats, StatsSource};
pub use report::{Report, ReportOptions, SampledDocument};
pub use run::{
    DocumentRow, DroppedAt, Execution, FailureRow, Found, Item, Outcome, RunFolder, Stage,
};
pub use sample::StratifiedSample;
pub use series::ScoreChart;
pub use terminal::{printable, write_document, write_failure};

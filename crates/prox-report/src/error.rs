/// Why a run folder could not be read or a report not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Run(#[from] prox_run::Error),
    #[error(transparent)]
    Records(#[from] prox_io::Error),
    #[error("cannot draw the chart `{chart}`: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
    #[error("cannot render the report")]
    Render(#[from] minijinja::Error),
}

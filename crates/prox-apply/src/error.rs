/// Why an apply run stopped. A bad record or an unreadable file does not stop it: it goes to
/// the failures file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot list the inputs")]
    ListInputs(#[source] prox_io::Error),
    #[error("internal error: the document counts do not add up: {0}")]
    Unbalanced(String),
    #[error(transparent)]
    Io(#[from] prox_io::Error),
}

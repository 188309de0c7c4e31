//! Every way a request can be wrong, each mapped to the status it earns.

/// Why a request was rejected. Each variant maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The request line is not `method SP target SP HTTP-version`.
    #[error("invalid request line")]
    InvalidRequestLine,
    // (the http helper completes this list)
}

impl ParseError {
    /// The status code to answer with before closing the connection.
    pub fn status(self) -> u16 {
        400
    }
}

//! Logging Python exceptions with their tracebacks to the error log.

use pyo3::prelude::*;

/// Logs `err` with its full traceback at error level, after `context`
/// (e.g. `Error handling request /path`).
pub fn log_exception(py: Python<'_>, err: &PyErr, context: &str) {
    let _ = (py, err, context);
    todo!()
}

/// `ExceptionType: message`, one line, for the master's exit message.
pub fn one_line(py: Python<'_>, err: &PyErr) -> String {
    let _ = (py, err);
    todo!()
}

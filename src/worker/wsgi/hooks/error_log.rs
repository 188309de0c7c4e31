//! The Python logging bridge of the hooks: the `rgunicorn.error` logger
//! (`worker.log`, `server.log`), whose records reach the worker's error log
//! at their level. The Python half is error_logger.py.

use crate::logging::LogLevel;
use pyo3::prelude::*;
use std::ffi::CStr;

/// The name of the logger given to hooks as `worker.log` and `server.log`
/// (gunicorn's error logger name, with our prefix).
pub const LOGGER_NAME: &str = "rgunicorn.error";

/// The error log sink of the `rgunicorn.error` logger's handler.
#[pyfunction]
fn write_error_log(levelno: i32, message: &str) {
    LogLevel::from_python_number(levelno).log(message);
}

/// A `logging.Handler` subclass forwarding formatted records to a sink
/// (`write_error_log`), and the function that attaches it to the
/// `rgunicorn.error` logger (error_logger.py).
const LOGGER_SETUP: &CStr =
    match CStr::from_bytes_with_nul(concat!(include_str!("error_logger.py"), "\0").as_bytes()) {
        Ok(source) => source,
        Err(_) => panic!("error_logger.py contains a NUL byte"),
    };

/// The `rgunicorn.error` logger, whose records reach the error log.
pub(super) fn error_logger<'py>(py: Python<'py>, level: LogLevel) -> PyResult<Bound<'py, PyAny>> {
    let setup = PyModule::from_code(
        py,
        LOGGER_SETUP,
        c"<rgunicorn hooks logging>",
        c"rgunicorn_hooks_logging",
    )?;
    let sink = wrap_pyfunction!(write_error_log, py)?;
    setup.call_method1("error_logger", (LOGGER_NAME, sink, level.python_number()))
}

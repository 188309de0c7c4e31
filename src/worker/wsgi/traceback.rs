//! Logging Python exceptions with their tracebacks to the error log.
//!
//! Formatting goes through Python's own `traceback` module, so a record reads
//! exactly as the traceback `python3` would print.

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTypeMethods};

/// Logs `err` with its full traceback at error level, after `context`
/// (e.g. `Error handling request /path`), as one log record.
pub fn log_exception(py: Python<'_>, err: &PyErr, context: &str) {
    match format_traceback(py, err) {
        Ok(text) => log::error!("{context}\n{}", text.trim_end()),
        Err(_) => log::error!("{context}: {}", one_line(py, err)),
    }
}

/// The text of `traceback.format_exception` for `err`.
fn format_traceback(py: Python<'_>, err: &PyErr) -> PyResult<String> {
    let lines = py.import("traceback")?.call_method1(
        "format_exception",
        (err.get_type(py), err.value(py), err.traceback(py)),
    )?;
    let joined = PyString::new(py, "").call_method1("join", (lines,))?;
    joined.extract()
}

/// `ExceptionType: message`, one line, for the master's exit message. The
/// type is module-qualified unless it is a builtin (as Python prints it); an
/// empty message leaves the type alone.
pub fn one_line(py: Python<'_>, err: &PyErr) -> String {
    let type_name = err
        .get_type(py)
        .fully_qualified_name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "Exception".to_string());
    let message = err
        .value(py)
        .str()
        .map(|text| text.to_string())
        .unwrap_or_default();
    let message = message.lines().next().unwrap_or("").trim();
    if message.is_empty() {
        type_name
    } else {
        format!("{type_name}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::exceptions::{PyKeyError, PyValueError};

    #[test]
    fn one_line_is_type_colon_message() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let err = PyValueError::new_err("bad value\nsecond line");
            assert_eq!(one_line(py, &err), "ValueError: bad value");
            let err = PyKeyError::new_err(());
            assert_eq!(one_line(py, &err), "KeyError");
            let err = py.import("no_such_module_rgunicorn").unwrap_err();
            assert_eq!(
                one_line(py, &err),
                "ModuleNotFoundError: No module named 'no_such_module_rgunicorn'"
            );
        });
    }

    #[test]
    fn traceback_text_names_the_raising_line() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let err = py
                .run(
                    c"def f():\n    raise RuntimeError('boom')\nf()\n",
                    None,
                    None,
                )
                .unwrap_err();
            let text = format_traceback(py, &err).unwrap();
            assert!(
                text.starts_with("Traceback (most recent call last):"),
                "{text}"
            );
            assert!(text.contains("in f"), "{text}");
            assert!(text.trim_end().ends_with("RuntimeError: boom"), "{text}");
        });
    }
}

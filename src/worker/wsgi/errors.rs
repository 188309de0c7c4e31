//! `wsgi.errors`: a text stream whose lines go to the error log.
//!
//! Each complete line becomes one `log::error!` record; a partial line waits
//! for its newline, a `flush()`, or the stream being dropped.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The `wsgi.errors` stream.
#[pyclass(module = "rgunicorn")]
#[derive(Default)]
pub struct ErrorStream {
    /// Text written since the last newline.
    partial: String,
}

impl ErrorStream {
    /// An empty stream.
    pub fn new() -> ErrorStream {
        ErrorStream::default()
    }

    /// Appends `text`, logging every line it completes.
    fn push(&mut self, text: &str) {
        let mut rest = text;
        while let Some(newline) = rest.find('\n') {
            let (line, tail) = (&rest[..newline], &rest[newline + 1..]);
            if self.partial.is_empty() {
                log::error!("{line}");
            } else {
                self.partial.push_str(line);
                log::error!("{}", self.partial);
                self.partial.clear();
            }
            rest = tail;
        }
        self.partial.push_str(rest);
    }

    /// Logs the partial line, if any.
    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            log::error!("{}", self.partial);
            self.partial.clear();
        }
    }
}

/// The text of a `write()` argument, or a TypeError naming its type.
fn text_of<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<std::borrow::Cow<'a, str>> {
    match value.cast::<PyString>() {
        Ok(text) => text.to_cow(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "wsgi.errors.write() argument must be str, not {}",
            type_name(value)
        ))),
    }
}

/// The type name of `value`, for error messages.
pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

#[pymethods]
impl ErrorStream {
    /// Writes `text`; returns the number of characters written.
    fn write(&mut self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = text_of(text)?;
        self.push(&text);
        Ok(text.chars().count())
    }

    /// Writes each string of `lines` (no newlines are added).
    fn writelines(&mut self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line = line?;
            self.push(&text_of(&line)?);
        }
        Ok(())
    }

    /// Logs any partial line now.
    fn flush(&mut self) {
        self.flush_partial();
    }
}

impl Drop for ErrorStream {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_wait_for_newline_or_flush() {
        let mut stream = ErrorStream::new();
        stream.push("par");
        stream.push("tial");
        assert_eq!(stream.partial, "partial");
        stream.push(" line\nnext\nrest");
        assert_eq!(stream.partial, "rest");
        stream.flush_partial();
        assert_eq!(stream.partial, "");
    }

    #[test]
    fn write_rejects_bytes_with_a_type_error() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let stream = Bound::new(py, ErrorStream::new()).unwrap();
            let written = stream.call_method1("write", ("héllo\n",)).unwrap();
            assert_eq!(written.extract::<usize>().unwrap(), 6);
            let err = stream.call_method1("write", (pyo3::types::PyBytes::new(py, b"x"),));
            let err = err.unwrap_err();
            assert!(err.is_instance_of::<PyTypeError>(py));
            assert!(err.to_string().contains("not bytes"), "{err}");
            stream
                .call_method1("writelines", (vec!["a", "b\n"],))
                .unwrap();
            stream.call_method0("flush").unwrap();
        });
    }
}

//! `start_response` and the `write` callable it returns: they validate what
//! the app says and record it for the connection to send.
//!
//! Validation follows PEP 3333 and RFC 9110: the status is `NNN reason`, a
//! header name is a token, no value holds a control character (CR/LF/NUL
//! would let the app split the response), and everything is latin-1. The
//! accepted status and headers are kept as latin-1 bytes in one buffer with
//! spans into it, so recording a header allocates nothing once the buffers
//! have grown. The buffers outlive their request: a dropped `StartResponse`
//! leaves them to the next one on its thread. What is recorded here is
//! valid, so the response writer does not check it again
//! (`http::begin_validated_response`).

use super::errors::type_name;
use crate::http;
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use std::cell::RefCell;
use std::ops::Range;

/// Buffers of dropped `StartResponse`s kept per thread, at most this many.
const MAX_SPARE: usize = 4;
/// A buffer grown beyond this (a huge header set) is freed, not kept.
const MAX_KEPT_BYTES: usize = 16 * 1024;

/// The reusable buffers of one `StartResponse`.
#[derive(Debug, Default)]
struct Buffers {
    head: Vec<u8>,
    headers: Vec<HeaderRanges>,
}

thread_local! {
    /// Buffers left by dropped `StartResponse`s for the next request.
    static SPARE: RefCell<Vec<Buffers>> = const { RefCell::new(Vec::new()) };
}

/// One recorded header: ranges of the name and value in the head buffer.
#[derive(Debug, Clone)]
struct HeaderRanges {
    name: Range<usize>,
    value: Range<usize>,
}

/// The `start_response` callable for one request. The connection reads the
/// recorded status and headers once the app has returned (or yielded).
#[pyclass(module = "rgunicorn")]
#[derive(Debug)]
pub struct StartResponse {
    /// Latin-1 bytes of the status, then of every header name and value.
    head: Vec<u8>,
    /// The status's range in `head`, once start_response has been called.
    status: Option<Range<usize>>,
    headers: Vec<HeaderRanges>,
    headers_sent: bool,
    /// Bytes passed to `write()` and not yet taken by the connection.
    written: Vec<u8>,
}

impl StartResponse {
    /// A fresh callable for one request, with the buffers of an earlier
    /// one when there are some.
    pub fn new() -> StartResponse {
        let spare = SPARE
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten();
        let Buffers { head, headers } = spare.unwrap_or_else(|| Buffers {
            head: Vec::with_capacity(256),
            headers: Vec::with_capacity(8),
        });
        StartResponse {
            head,
            status: None,
            headers,
            headers_sent: false,
            written: Vec::new(),
        }
    }
    /// The status line given by the app (`b"200 OK"`), latin-1 encoded, if
    /// start_response has been called.
    pub fn status(&self) -> Option<&[u8]> {
        self.status.clone().map(|range| &self.head[range])
    }
    /// The status code, if start_response has been called.
    pub fn status_code(&self) -> Option<u16> {
        http::status_code(self.status()?)
    }
    /// The headers given by the app, latin-1 encoded, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (&self.head[h.name.clone()], &self.head[h.value.clone()]))
    }
    /// Whether `mark_headers_sent` has been called.
    pub fn headers_sent(&self) -> bool {
        self.headers_sent
    }
    /// Marks the headers as sent: a later call with exc_info re-raises it.
    pub fn mark_headers_sent(&mut self) {
        self.headers_sent = true;
    }
    /// Takes the bytes the app passed to `write()` since the last call.
    pub fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.written)
    }

    /// Validates and records `status` and `headers`. A first call records
    /// into the (reused) buffers; a replacing call (with exc_info) records
    /// into new ones and swaps them in only on success, so a failed call
    /// leaves what was recorded before.
    fn record(&mut self, status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.status.is_none() {
            self.head.clear();
            self.headers.clear();
            let recorded = record_into(&mut self.head, &mut self.headers, status, headers);
            if recorded.is_err() {
                self.head.clear();
                self.headers.clear();
            }
            self.status = Some(recorded?);
        } else {
            let (mut head, mut header_ranges) = (Vec::new(), Vec::new());
            let status = record_into(&mut head, &mut header_ranges, status, headers)?;
            self.head = head;
            self.headers = header_ranges;
            self.status = Some(status);
        }
        Ok(())
    }
}

impl Default for StartResponse {
    fn default() -> StartResponse {
        StartResponse::new()
    }
}

impl Drop for StartResponse {
    /// Leaves the buffers to the next `StartResponse` of this thread.
    fn drop(&mut self) {
        if self.head.capacity() > MAX_KEPT_BYTES
            || self.headers.capacity() * std::mem::size_of::<HeaderRanges>() > MAX_KEPT_BYTES
        {
            return;
        }
        let mut buffers = Buffers {
            head: std::mem::take(&mut self.head),
            headers: std::mem::take(&mut self.headers),
        };
        buffers.head.clear();
        buffers.headers.clear();
        // A thread that is exiting has no spares to keep.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < MAX_SPARE {
                spare.push(buffers);
            }
        });
    }
}

/// Validates `status` and `headers`, appending them to `head` and their
/// ranges to `ranges`; returns the status's range.
fn record_into(
    head: &mut Vec<u8>,
    ranges: &mut Vec<HeaderRanges>,
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
) -> PyResult<Range<usize>> {
    let status = record_status(head, status)?;
    let list = headers.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "headers must be a list of (name, value) tuples, not {}",
            type_name(headers)
        ))
    })?;
    for item in list.iter() {
        let (name, value) = header_pair(&item)?;
        ranges.push(record_header(head, &name, &value)?);
    }
    Ok(status)
}

fn record_status(head: &mut Vec<u8>, status: &Bound<'_, PyAny>) -> PyResult<Range<usize>> {
    let text = str_argument(status, "status")?;
    let range = push_latin1(head, &text, "status")?;
    let bytes = &head[range.clone()];
    // PEP 3333 asks for the reason phrase that HTTP lets a status omit.
    let well_formed = bytes.len() > 3 && http::status_code(bytes).is_some();
    if !well_formed {
        return Err(PyValueError::new_err(format!(
            "status {:?} is not a 3-digit code, a space and a reason phrase without \
             control characters",
            &*text
        )));
    }
    Ok(range)
}

fn record_header(
    head: &mut Vec<u8>,
    name: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> PyResult<HeaderRanges> {
    let name_text = str_argument(name, "header name")?;
    let value_text = str_argument(value, "header value")?;
    let name_range = push_latin1(head, &name_text, "header name")?;
    if !http::is_token(&head[name_range.clone()]) {
        return Err(PyValueError::new_err(format!(
            "header name {:?} is not a token",
            &*name_text
        )));
    }
    // RFC 9110 section 5.5: surrounding SP/HTAB are not part of the value.
    let trimmed = value_text.trim_matches([' ', '\t']);
    let value_range = push_latin1(head, trimmed, "header value")?;
    if !http::is_field_value(&head[value_range.clone()]) {
        return Err(PyValueError::new_err(format!(
            "header value {:?} of {:?} contains a control character",
            &*value_text, &*name_text
        )));
    }
    Ok(HeaderRanges {
        name: name_range,
        value: value_range,
    })
}

/// The two items of one `(name, value)` header entry (a tuple, or a list as
/// gunicorn also accepts).
fn header_pair<'py>(item: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let pair = if let Ok(tuple) = item.cast::<PyTuple>() {
        (tuple.len() == 2).then(|| (tuple.get_item(0), tuple.get_item(1)))
    } else if let Ok(list) = item.cast::<PyList>() {
        (list.len() == 2).then(|| (list.get_item(0), list.get_item(1)))
    } else {
        None
    };
    match pair {
        Some((name, value)) => Ok((name?, value?)),
        None => Err(PyTypeError::new_err(format!(
            "each header must be a (name, value) tuple, not {} {}",
            type_name(item),
            item.repr().map(|r| r.to_string()).unwrap_or_default()
        ))),
    }
}

/// The text of `value`, which must be a str (`what` names it in the error).
fn str_argument<'a>(
    value: &'a Bound<'_, PyAny>,
    what: &str,
) -> PyResult<std::borrow::Cow<'a, str>> {
    match value.cast::<PyString>() {
        Ok(text) => text.to_cow(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be str, not {}",
            type_name(value)
        ))),
    }
}

/// Appends `text` to `buf` as latin-1; returns its range, or a ValueError
/// when a character is above U+00FF.
fn push_latin1(buf: &mut Vec<u8>, text: &str, what: &str) -> PyResult<Range<usize>> {
    let start = buf.len();
    if text.is_ascii() {
        buf.extend_from_slice(text.as_bytes());
    } else {
        for c in text.chars() {
            let byte = u8::try_from(u32::from(c)).map_err(|_| {
                PyValueError::new_err(format!(
                    "{what} {text:?} is not latin-1 encodable (contains {c:?})"
                ))
            })?;
            buf.push(byte);
        }
    }
    Ok(start..buf.len())
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, headers, exc_info=None)` (PEP 3333).
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let exc_info = exc_info.filter(|info| !info.is_none());
        {
            let mut this = slf.try_borrow_mut()?;
            match exc_info {
                Some(info) if this.headers_sent => {
                    drop(this);
                    return Err(reraise(info));
                }
                Some(_) => {}
                None if this.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response() called a second time without exc_info: response \
                         headers already set",
                    ));
                }
                None => {}
            }
            this.record(status, headers)?;
        }
        Ok(Write {
            start_response: slf.clone().unbind(),
        })
    }
}

/// The error that re-raises `exc_info[1]` with its traceback `exc_info[2]`.
fn reraise(exc_info: &Bound<'_, PyAny>) -> PyErr {
    let value = match exc_info.get_item(1) {
        Ok(value) => value,
        Err(err) => return err,
    };
    let traceback = exc_info.get_item(2).ok().filter(|tb| !tb.is_none());
    let value = match traceback {
        Some(tb) => value.call_method1("with_traceback", (tb,)).unwrap_or(value),
        None => value,
    };
    PyErr::from_value(value)
}

/// The `write(data)` callable returned by `start_response` (PEP 3333's
/// imperative output, for legacy apps).
#[pyclass(module = "rgunicorn")]
pub struct Write {
    start_response: Py<StartResponse>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}",
                type_name(data)
            ))
        })?;
        let mut start_response = self.start_response.bind(py).try_borrow_mut()?;
        if start_response.status.is_none() {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        start_response.written.extend_from_slice(data.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyDict;

    fn start_response(py: Python<'_>) -> Bound<'_, StartResponse> {
        super::super::test_support::python();
        Bound::new(py, StartResponse::new()).unwrap()
    }

    fn eval<'py>(py: Python<'py>, code: &std::ffi::CStr) -> Bound<'py, PyAny> {
        py.eval(code, None, None).unwrap()
    }

    fn error_of(result: PyResult<Bound<'_, PyAny>>) -> (String, String) {
        super::super::test_support::attach(|py| {
            let err = result.unwrap_err();
            (super::super::traceback::one_line(py, &err), err.to_string())
        })
    }

    #[test]
    fn status_and_headers_are_recorded_as_latin1_bytes() {
        super::super::test_support::attach(|py| {
            let sr = start_response(py);
            let headers = eval(
                py,
                c"[('Content-Type', 'text/plain'), ('X-Name', ' caf\\xe9\\t ')]",
            );
            sr.call1(("200 OK", headers)).unwrap();
            let sr = sr.borrow();
            assert_eq!(sr.status(), Some(&b"200 OK"[..]));
            assert_eq!(sr.status_code(), Some(200));
            let headers: Vec<(&[u8], &[u8])> = sr.headers().collect();
            assert_eq!(
                headers,
                vec![
                    (&b"Content-Type"[..], &b"text/plain"[..]),
                    (b"X-Name", b"caf\xe9")
                ]
            );
        });
    }

    #[test]
    fn response_splitting_and_bad_names_are_rejected() {
        super::super::test_support::attach(|py| {
            let cases: &[(&std::ffi::CStr, &str)] = &[
                (
                    c"('200 OK', [('X', 'a\\r\\nSet-Cookie: evil')])",
                    "ValueError",
                ),
                (c"('200 OK', [('X', 'a\\nb')])", "ValueError"),
                (c"('200 OK', [('X', 'a\\x00b')])", "ValueError"),
                (c"('200 OK', [('Bad Name', 'v')])", "ValueError"),
                (c"('200 OK', [('X\\r\\nY', 'v')])", "ValueError"),
                (c"('200 OK', [('', 'v')])", "ValueError"),
                (c"('200 OK', [('X', '\\u20ac')])", "ValueError"),
                (c"('200 OK\\r\\nX: y', [])", "ValueError"),
                (c"('200', [])", "ValueError"),
                (c"('OK 200', [])", "ValueError"),
                (c"(b'200 OK', [])", "TypeError"),
                (c"('200 OK', (('X', 'v'),))", "TypeError"),
                (c"('200 OK', [('X', 1)])", "TypeError"),
                (c"('200 OK', [(b'X', 'v')])", "TypeError"),
                (c"('200 OK', [('X', 'v', 'w')])", "TypeError"),
                (c"('200 OK', ['X: v'])", "TypeError"),
            ];
            for (args, expected_type) in cases {
                let sr = start_response(py);
                let args = eval(py, args).cast_into::<PyTuple>().unwrap();
                let (line, _) = error_of(sr.call1(args.clone()));
                assert!(line.starts_with(expected_type), "{args}: {line}");
                assert_eq!(sr.borrow().status(), None, "{args}");
                assert_eq!(sr.borrow().headers().count(), 0, "{args}");
            }
        });
    }

    #[test]
    fn type_errors_name_the_offending_type() {
        super::super::test_support::attach(|py| {
            let sr = start_response(py);
            let (line, _) = error_of(sr.call1((200, PyList::empty(py))));
            assert_eq!(line, "TypeError: status must be str, not int");
            let (line, _) = error_of(sr.call1(("200 OK", eval(py, c"[('X', None)]"))));
            assert_eq!(line, "TypeError: header value must be str, not NoneType");
            let (line, _) = error_of(sr.call1(("200 OK", PyDict::new(py))));
            assert!(line.contains("not dict"), "{line}");
        });
    }

    #[test]
    fn second_call_without_exc_info_is_an_assertion_error() {
        super::super::test_support::attach(|py| {
            let sr = start_response(py);
            sr.call1(("200 OK", PyList::empty(py))).unwrap();
            let (line, _) = error_of(sr.call1(("500 Oops", PyList::empty(py))));
            assert!(line.starts_with("AssertionError: start_response() called a second time"));
            assert_eq!(sr.borrow().status(), Some(&b"200 OK"[..]));
        });
    }

    #[test]
    fn exc_info_before_headers_are_sent_replaces_the_response() {
        super::super::test_support::attach(|py| {
            let sr = start_response(py);
            sr.call1(("200 OK", eval(py, c"[('X-A', '1')]"))).unwrap();
            let exc_info = eval(py, c"(ValueError, ValueError('x'), None)");
            let headers = eval(py, c"[('X-B', '2')]");
            sr.call1(("500 Internal Server Error", headers, exc_info))
                .unwrap();
            let sr = sr.borrow();
            assert_eq!(sr.status(), Some(&b"500 Internal Server Error"[..]));
            assert_eq!(
                sr.headers().collect::<Vec<_>>(),
                vec![(&b"X-B"[..], &b"2"[..])]
            );
        });
    }

    #[test]
    fn failed_replacement_keeps_the_earlier_response() {
        super::super::test_support::attach(|py| {
            let sr = start_response(py);
            sr.call1(("200 OK", eval(py, c"[('X-A', '1')]"))).unwrap();
            let exc_info = eval(py, c"(ValueError, ValueError('x'), None)");
            let bad_headers = eval(py, c"[('X-B', 'a\\r\\nb')]");
            let err = sr.call1(("500 Oops", bad_headers, exc_info)).unwrap_err();
            assert!(err.is_instance_of::<PyValueError>(py));
            let sr = sr.borrow();
            assert_eq!(sr.status(), Some(&b"200 OK"[..]));
            assert_eq!(
                sr.headers().collect::<Vec<_>>(),
                vec![(&b"X-A"[..], &b"1"[..])]
            );
        });
    }

    #[test]
    fn exc_info_after_headers_are_sent_is_reraised_with_its_traceback() {
        super::super::test_support::attach(|py| {
            let sr = start_response(py);
            sr.call1(("200 OK", PyList::empty(py))).unwrap();
            sr.borrow_mut().mark_headers_sent();
            let exc_info = py
                .import("sys")
                .unwrap()
                .getattr("exc_info")
                .unwrap()
                .call0()
                .unwrap();
            assert!(exc_info.get_item(0).unwrap().is_none());
            let raised = py
                .run(c"def f():\n    raise KeyError('late')\nf()\n", None, None)
                .unwrap_err();
            let info = PyTuple::new(
                py,
                [
                    raised.get_type(py).into_any(),
                    raised.value(py).clone().into_any(),
                    raised.traceback(py).unwrap().into_any(),
                ],
            )
            .unwrap();
            let err = sr.call1(("500 Oops", PyList::empty(py), info)).unwrap_err();
            assert!(err.value(py).is(raised.value(py)));
            let tb = err.traceback(py).expect("the traceback is kept");
            assert!(tb.format().unwrap().contains("in f"));
            assert_eq!(sr.borrow().status(), Some(&b"200 OK"[..]));
        });
    }

    #[test]
    fn write_needs_bytes_and_appends_to_the_buffer() {
        super::super::test_support::attach(|py| {
            let sr = start_response(py);
            let write = sr.call1(("200 OK", PyList::empty(py))).unwrap();
            write.call1((PyBytes::new(py, b"hello "),)).unwrap();
            write.call1((PyBytes::new(py, b"world"),)).unwrap();
            let (line, _) = error_of(write.call1(("text",)));
            assert_eq!(line, "TypeError: write() argument must be bytes, not str");
            assert_eq!(sr.borrow_mut().take_written(), b"hello world");
            assert!(sr.borrow_mut().take_written().is_empty());
        });
    }
}

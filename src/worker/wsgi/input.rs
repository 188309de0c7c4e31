//! `wsgi.input`: the request body, fully received before the app runs, in
//! memory or spooled to a temporary file.
//!
//! The reader never returns more than the body: `read`, `readline`,
//! `readlines` and line iteration all stop at its end. A spooled body is read
//! with `pread` at the reader's own position, so the file's offset is
//! irrelevant.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::os::unix::fs::FileExt;

/// How much of a spooled body `readline` looks at per `pread`.
const LINE_SCAN_CHUNK: usize = 8192;

/// A complete request body.
#[derive(Debug)]
pub enum RequestBody {
    Memory(Vec<u8>),
    /// A spooled temporary file (already unlinked) holding `len` bytes,
    /// positioned anywhere: the reader seeks.
    File(std::fs::File, u64),
}

impl RequestBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(bytes) => bytes.len() as u64,
            RequestBody::File(_, len) => *len,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The file-like object given to the app as `wsgi.input`.
#[pyclass(module = "rgunicorn")]
pub struct WsgiInput {
    body: RequestBody,
    /// Bytes already returned to the app.
    position: u64,
}

impl WsgiInput {
    /// Wraps a complete body.
    pub fn new(body: RequestBody) -> WsgiInput {
        WsgiInput { body, position: 0 }
    }

    /// The whole body's length in bytes (read or not).
    pub fn body_len(&self) -> u64 {
        self.body.len()
    }

    /// Bytes not yet read.
    fn remaining(&self) -> u64 {
        self.body.len() - self.position
    }

    /// How many bytes a read of `size` (negative: all) returns.
    fn clamp(&self, size: Option<i64>) -> usize {
        let remaining = self.remaining();
        match size {
            Some(size) if size >= 0 => (size as u64).min(remaining) as usize,
            _ => remaining as usize,
        }
    }

    /// Returns the next `len` bytes (all available: `len` was clamped).
    fn take<'py>(&mut self, py: Python<'py>, len: usize) -> PyResult<Bound<'py, PyBytes>> {
        let start = self.position;
        let bytes = match &self.body {
            RequestBody::Memory(bytes) => {
                PyBytes::new(py, &bytes[start as usize..start as usize + len])
            }
            RequestBody::File(file, _) => PyBytes::new_with(py, len, |buf| {
                // The disk may block: other app threads run meanwhile.
                py.detach(|| file.read_exact_at(buf, start))
                    .map_err(|e| PyOSError::new_err(format!("reading the request body: {e}")))
            })?,
        };
        self.position += len as u64;
        Ok(bytes)
    }

    /// The length of the next line (through its `\n`), at most `limit`.
    fn line_len(&self, py: Python<'_>, limit: usize) -> PyResult<usize> {
        let start = self.position;
        match &self.body {
            RequestBody::Memory(bytes) => {
                let window = &bytes[start as usize..start as usize + limit];
                Ok(window
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(limit, |i| i + 1))
            }
            RequestBody::File(file, _) => {
                let mut chunk = [0u8; LINE_SCAN_CHUNK];
                let mut scanned = 0;
                while scanned < limit {
                    let want = (limit - scanned).min(LINE_SCAN_CHUNK);
                    let part = &mut chunk[..want];
                    py.detach(|| file.read_exact_at(part, start + scanned as u64))
                        .map_err(|e| {
                            PyOSError::new_err(format!("reading the request body: {e}"))
                        })?;
                    if let Some(i) = chunk[..want].iter().position(|&b| b == b'\n') {
                        return Ok(scanned + i + 1);
                    }
                    scanned += want;
                }
                Ok(limit)
            }
        }
    }
}

#[pymethods]
impl WsgiInput {
    /// Reads up to `size` bytes (all that remain when `size` is negative or
    /// None). Returns `b""` at the end of the body.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let len = self.clamp(size);
        self.take(py, len)
    }

    /// Reads one line, including its `\n`, but at most `size` bytes.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let len = self.line_len(py, self.clamp(size))?;
        self.take(py, len)
    }

    /// Reads lines until the body ends or, when `hint` is positive, until
    /// the lines read total at least `hint` bytes.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let limit = hint.filter(|&h| h > 0).map(|h| h as u64);
        let lines = PyList::empty(py);
        let mut total = 0u64;
        while self.remaining() > 0 && limit.is_none_or(|limit| total < limit) {
            let len = self.line_len(py, self.clamp(None))?;
            lines.append(self.take(py, len)?)?;
            total += len as u64;
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let len = self.line_len(py, self.clamp(None))?;
        self.take(py, len).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const BODY: &[u8] = b"first line\nsecond\n\nlast without newline";

    fn spooled(bytes: &[u8]) -> RequestBody {
        let path = std::env::temp_dir().join(format!(
            "rgunicorn-input-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all(bytes).unwrap();
        // Leave the file offset at the end: the reader must not depend on it.
        RequestBody::File(file, bytes.len() as u64)
    }

    fn bodies() -> Vec<RequestBody> {
        vec![RequestBody::Memory(BODY.to_vec()), spooled(BODY)]
    }

    fn input<'py>(py: Python<'py>, body: RequestBody) -> Bound<'py, WsgiInput> {
        Bound::new(py, WsgiInput::new(body)).unwrap()
    }

    fn bytes(value: Bound<'_, PyAny>) -> Vec<u8> {
        value.extract().unwrap()
    }

    #[test]
    fn read_returns_sizes_asked_and_never_more_than_the_body() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            for body in bodies() {
                let input = input(py, body);
                assert_eq!(bytes(input.call_method1("read", (5,)).unwrap()), b"first");
                assert_eq!(bytes(input.call_method1("read", (0,)).unwrap()), b"");
                let rest = bytes(input.call_method0("read").unwrap());
                assert_eq!(rest, &BODY[5..]);
                assert_eq!(bytes(input.call_method1("read", (10,)).unwrap()), b"");
                assert_eq!(bytes(input.call_method0("read").unwrap()), b"");
            }
        });
    }

    #[test]
    fn read_accepts_none_and_negative_sizes() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            for body in bodies() {
                let input = input(py, body);
                let none = py.None();
                assert_eq!(bytes(input.call_method1("read", (none,)).unwrap()), BODY);
            }
            let input = input(py, RequestBody::Memory(BODY.to_vec()));
            assert_eq!(bytes(input.call_method1("read", (-1,)).unwrap()), BODY);
        });
    }

    #[test]
    fn readline_stops_after_newline_size_or_body_end() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            for body in bodies() {
                let input = input(py, body);
                assert_eq!(bytes(input.call_method1("readline", (3,)).unwrap()), b"fir");
                assert_eq!(bytes(input.call_method0("readline").unwrap()), b"st line\n");
                assert_eq!(
                    bytes(input.call_method1("readline", (-1,)).unwrap()),
                    b"second\n"
                );
                assert_eq!(bytes(input.call_method0("readline").unwrap()), b"\n");
                let last = bytes(input.call_method0("readline").unwrap());
                assert_eq!(last, b"last without newline");
                assert_eq!(bytes(input.call_method0("readline").unwrap()), b"");
            }
        });
    }

    #[test]
    fn readlines_and_iteration_yield_every_line() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let expected: Vec<&[u8]> =
                vec![b"first line\n", b"second\n", b"\n", b"last without newline"];
            for body in bodies() {
                let lines: Vec<Vec<u8>> = input(py, body)
                    .call_method0("readlines")
                    .unwrap()
                    .extract()
                    .unwrap();
                assert_eq!(lines, expected);
            }
            for body in bodies() {
                let input = input(py, body);
                let lines: Vec<Vec<u8>> = input
                    .try_iter()
                    .unwrap()
                    .map(|line| line.unwrap().extract().unwrap())
                    .collect();
                assert_eq!(lines, expected);
            }
            for body in bodies() {
                let input = input(py, body);
                let lines: Vec<Vec<u8>> = input
                    .call_method1("readlines", (12,))
                    .unwrap()
                    .extract()
                    .unwrap();
                assert_eq!(lines, expected[..2]);
            }
        });
    }

    #[test]
    fn another_python_thread_may_read_the_body() {
        super::super::test_support::attach(|py| {
            let globals = pyo3::types::PyDict::new(py);
            globals.set_item("body", input(py, spooled(BODY))).unwrap();
            let code = c"import threading
out = []
t = threading.Thread(target=lambda: out.append(body.read()))
t.start()
t.join()
";
            py.run(code, Some(&globals), None).unwrap();
            let out: Vec<Vec<u8>> = globals.get_item("out").unwrap().unwrap().extract().unwrap();
            assert_eq!(out, vec![BODY.to_vec()]);
        });
    }

    #[test]
    fn long_line_in_a_spooled_body_spans_scan_chunks() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let mut body = vec![b'x'; LINE_SCAN_CHUNK * 2 + 17];
            body.push(b'\n');
            body.extend_from_slice(b"tail");
            let input = input(py, spooled(&body));
            let line = bytes(input.call_method0("readline").unwrap());
            assert_eq!(line.len(), LINE_SCAN_CHUNK * 2 + 18);
            assert_eq!(bytes(input.call_method0("read").unwrap()), b"tail");
        });
    }
}

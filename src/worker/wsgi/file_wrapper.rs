//! `wsgi.file_wrapper`: wraps a file-like object so the event loop can send a
//! real file with sendfile, or iterate it in blocks otherwise.

use pyo3::prelude::*;
use std::os::fd::RawFd;

/// The object the app returns to ask for a file to be sent.
#[pyclass(module = "rgunicorn", unsendable)]
pub struct FileWrapper {
    // (the python helper completes this)
}

impl FileWrapper {
    /// The file descriptor and current offset to sendfile from, when the
    /// wrapped object is a real file (has a working `fileno()`).
    pub fn sendfile_source(&self, py: Python<'_>) -> Option<(RawFd, u64)> {
        let _ = py;
        todo!()
    }
}

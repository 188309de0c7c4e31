//! `wsgi.input`: the request body, fully received before the app runs, in
//! memory or spooled to a temporary file.

use pyo3::prelude::*;

/// A complete request body.
#[derive(Debug)]
pub enum RequestBody {
    Memory(Vec<u8>),
    /// A spooled temporary file (already unlinked) holding `len` bytes,
    /// positioned anywhere: the reader seeks.
    File(std::fs::File, u64),
}

/// The file-like object given to the app as `wsgi.input`.
#[pyclass(module = "rgunicorn", unsendable)]
pub struct WsgiInput {
    // (the python helper completes this)
}

impl WsgiInput {
    /// Wraps a complete body.
    pub fn new(body: RequestBody) -> WsgiInput {
        let _ = body;
        todo!()
    }
}

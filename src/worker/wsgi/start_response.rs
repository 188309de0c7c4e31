//! `start_response` and the `write` callable it returns: they validate what
//! the app says and record it for the connection to send.

use pyo3::prelude::*;

/// The `start_response` callable for one request. The connection reads the
/// recorded status and headers once the app has returned (or yielded).
#[pyclass(module = "rgunicorn", unsendable)]
pub struct StartResponse {
    // (the python helper completes this)
}

impl StartResponse {
    /// A fresh callable for one request.
    pub fn new() -> StartResponse {
        todo!()
    }
    /// The status line given by the app (`b"200 OK"`), latin-1 encoded, if
    /// start_response has been called.
    pub fn status(&self) -> Option<&[u8]> {
        todo!()
    }
    /// The headers given by the app, latin-1 encoded, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        std::iter::empty()
    }
    /// Marks the headers as sent: a later call with exc_info re-raises it.
    pub fn mark_headers_sent(&mut self) {
        todo!()
    }
    /// Takes the bytes the app passed to `write()` since the last call.
    pub fn take_written(&mut self) -> Vec<u8> {
        todo!()
    }
}

impl Default for StartResponse {
    fn default() -> Self {
        Self::new()
    }
}

//! The PEP 3333 environ: a per-worker template dict of constant keys, copied
//! per request and filled from the parsed request head.

use crate::http::RequestHead;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::net::SocketAddr;

/// Where a connection came from and arrived at.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// A unix socket (REMOTE_ADDR is empty, as gunicorn's).
    Unix,
}

/// What the environ is built from: the request head, the buffer its spans
/// index, and the connection's two ends.
pub struct RequestInfo<'a> {
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    pub peer: &'a Endpoint,
    pub local: &'a Endpoint,
}

/// The constant part of every environ, built once per worker.
pub struct EnvironTemplate {
    // (the python helper completes this)
}

impl EnvironTemplate {
    /// Builds the template (wsgi.version, wsgi.errors, wsgi.file_wrapper,
    /// SCRIPT_NAME, SERVER_SOFTWARE, the multiprocess flags, ...).
    pub fn new(py: Python<'_>) -> PyResult<EnvironTemplate> {
        let _ = py;
        todo!()
    }

    /// A fresh environ for one request, with `input` as `wsgi.input`.
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        request: &RequestInfo<'_>,
        input: Bound<'py, super::input::WsgiInput>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let _ = (py, request, input);
        todo!()
    }
}

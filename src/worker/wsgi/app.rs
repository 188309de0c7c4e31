//! Loading the application: import `module`, then resolve the expression
//! after the colon (a name, or a factory call with literal arguments only).

use crate::config::AppSpec;
use pyo3::prelude::*;

/// Imports and returns the WSGI callable named by `spec`.
pub fn load(py: Python<'_>, spec: &AppSpec) -> PyResult<Py<PyAny>> {
    let _ = (py, spec);
    todo!()
}

//! The app as the hooks see it when `post_request` is defined: a forwarder
//! that remembers each call's `start_response`, so `resp` can show the
//! status and headers the app chose.

use super::super::start_response::StartResponse;
use pyo3::prelude::*;
use std::sync::Mutex;

/// Stands in for the app when a `post_request` hook exists: forwards each
/// call and keeps the `start_response` it was given, so the hook can be
/// shown the status and headers the app chose.
#[pyclass(module = "rgunicorn", frozen)]
pub(super) struct RecordingApp {
    app: Py<PyAny>,
    last_start_response: Mutex<Option<Py<StartResponse>>>,
}

impl RecordingApp {
    pub(super) fn new(app: Py<PyAny>) -> RecordingApp {
        RecordingApp {
            app,
            last_start_response: Mutex::new(None),
        }
    }

    /// The `start_response` of the latest call, taken (once).
    pub(super) fn take_last_start_response(&self) -> Option<Py<StartResponse>> {
        self.last_start_response.lock().ok()?.take()
    }
}

#[pymethods]
impl RecordingApp {
    fn __call__(
        &self,
        py: Python<'_>,
        environ: Bound<'_, PyAny>,
        start_response: Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        if let Ok(recorded) = start_response.cast::<StartResponse>() {
            if let Ok(mut slot) = self.last_start_response.lock() {
                *slot = Some(recorded.clone().unbind());
            }
        }
        self.app.call1(py, (environ, start_response))
    }
}

//! `wsgi.errors`: a text stream whose lines go to the error log.

use pyo3::prelude::*;

/// The `wsgi.errors` stream.
#[pyclass(module = "rgunicorn", unsendable)]
pub struct ErrorStream {}

//! Test helpers: one embedded interpreter per test process, started through
//! [`super::interpreter::start`] exactly as a worker starts it.

use crate::config::Settings;
use std::sync::Once;

static START: Once = Once::new();

/// Starts the interpreter once for this test process (with default settings
/// and no virtualenv); afterwards tests use `Python::attach`.
pub(crate) fn python() {
    START.call_once(|| {
        let mut settings =
            <Settings as clap::Parser>::try_parse_from(["rgunicorn", "x:app"]).unwrap();
        settings.virtualenv = None;
        super::interpreter::start(&settings, &crate::proc_title::original_args())
            .expect("the test interpreter starts");
    });
}

/// `Python::attach` after making sure the interpreter is started (attaching
/// first would fail and poison pyo3's own start-up guard for the process).
pub(crate) fn attach<F, R>(f: F) -> R
where
    F: for<'py> FnOnce(pyo3::Python<'py>) -> R,
{
    python();
    pyo3::Python::attach(f)
}

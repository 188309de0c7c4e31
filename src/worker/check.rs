//! `--check-config`: the worker's boot path up to the application import,
//! run once in a Python program the master started (the master never
//! loads Python). Nothing is served.

use super::wsgi;
use crate::config::Settings;
use pyo3::prelude::*;

/// Changes to `--chdir`, starts the interpreter, imports the hooks module
/// (without running any hook) and the application, as a worker would.
/// Returns the reason, one line, when any step fails; the traceback of an
/// app that raises is logged first.
pub fn check_app(settings: &Settings, argv: &[std::ffi::OsString]) -> Result<(), String> {
    if let Some(dir) = &settings.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| format!("--chdir: cannot change to '{}': {e}", dir.display()))?;
    }
    wsgi::interpreter::start(settings, argv).map_err(|e| e.to_string())?;
    Python::attach(|py| {
        let master_pid = nix::unistd::getppid().as_raw();
        wsgi::hooks::load(py, settings, master_pid, 0).map_err(|e| e.to_string())?;
        match wsgi::app::load(py, &settings.app) {
            Ok(_) => Ok(()),
            Err(e) => {
                wsgi::traceback::log_exception(py, &e, "Exception while importing the app");
                Err(wsgi::traceback::one_line(py, &e))
            }
        }
    })
}

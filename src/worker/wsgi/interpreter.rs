//! Starting the embedded CPython: the interpreter the binary was built for
//! (verified at run time), with the user's virtualenv, `--chdir` and
//! `--pythonpath` applied exactly as `python3` would see them.

use crate::config::Settings;

/// Why the interpreter could not start. Each message is one line for the log.
#[derive(Debug, thiserror::Error)]
pub enum InterpreterError {
    /// The libpython the dynamic loader gave us is not the one we were built
    /// against (a different version or a different installation).
    #[error("wrong libpython loaded: {0}")]
    WrongLibpython(String),
    /// Initialisation failed (bad virtualenv, missing stdlib, ...).
    #[error("cannot start Python: {0}")]
    Init(String),
}

/// Initialises CPython in this (freshly forked) process. Must be called at
/// most once, before any `Python::attach`.
pub fn start(settings: &Settings) -> Result<(), InterpreterError> {
    let _ = settings;
    todo!()
}

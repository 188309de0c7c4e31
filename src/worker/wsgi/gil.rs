//! Whether the event loop's thread holds the GIL. With one app thread per
//! worker the loop holds it (and releases it only around `poll`), so the
//! loop calls the app itself at no cost; with `--threads N` the loop runs
//! without it and never touches Python on the request path: the few
//! lifecycle calls it makes (hooks on a stop, the `--reload` check) attach
//! for their duration.

use pyo3::prelude::*;

/// The event loop's standing with the interpreter.
#[derive(Clone, Copy)]
pub enum Gil<'py> {
    /// The loop holds the GIL (one app thread: the loop is it).
    Held(Python<'py>),
    /// The loop runs without the GIL (app threads call the app).
    Released,
}

impl Gil<'_> {
    /// Runs `f` with the GIL: at once when held, else attaching for it.
    pub fn with<R>(self, f: impl for<'a> FnOnce(Python<'a>) -> R) -> R {
        match self {
            Gil::Held(py) => f(py),
            Gil::Released => Python::attach(f),
        }
    }

    /// Runs the blocking `f` (the poll) without the GIL.
    pub fn without<R: Send>(self, f: impl Send + FnOnce() -> R) -> R {
        match self {
            Gil::Held(py) => py.detach(f),
            Gil::Released => f(),
        }
    }
}

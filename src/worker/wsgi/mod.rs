//! The Python side of a worker: PEP 3333 objects and the embedded interpreter.
//!
//! Everything here runs with the GIL held by the worker's event loop thread.
//! Nothing here touches sockets: the connection module moves bytes.
//!
//! The Python classes are not `unsendable`: an app may hand `wsgi.input` or
//! `wsgi.errors` to a thread of its own (pyo3 checks borrows at run time).

pub mod app;
pub mod environ;
pub mod errors;
pub mod expected_python;
pub mod file_wrapper;
pub mod hooks;
pub mod input;
pub mod interpreter;
pub mod start_response;
pub mod traceback;

#[cfg(test)]
pub(crate) mod test_support;

//! The Python side of a worker: PEP 3333 objects and the embedded interpreter.
//!
//! Everything here runs with the GIL held: by the worker's event loop thread
//! with one app thread, by the app threads with `--threads` (`app_thread`).
//! This room also holds the request/response unit (`exchange`, with the
//! pump in `response`) and the queue it fills (`out_queue`), which the
//! connection writes to its socket; nothing here opens, reads or polls a
//! socket.
//!
//! The Python classes are not `unsendable`: an app may hand `wsgi.input` or
//! `wsgi.errors` to a thread of its own (pyo3 checks borrows at run time).

pub mod access_entry;
pub mod app;
pub mod environ;
pub mod errors;
pub mod exchange;
pub mod expected_python;
pub mod file_wrapper;
pub mod gil;
pub mod hooks;
pub mod input;
pub mod interpreter;
pub mod out_queue;
pub mod response;
pub mod start_response;
pub mod traceback;

#[cfg(test)]
pub(crate) mod test_support;

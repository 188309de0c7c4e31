//! The Python side of a worker: PEP 3333 objects and the embedded interpreter.
//!
//! Everything here runs with the GIL held by the worker's event loop thread.
//! Nothing here touches sockets: the connection module moves bytes.

pub mod app;
pub mod environ;
pub mod errors;
pub mod file_wrapper;
pub mod input;
pub mod interpreter;
pub mod start_response;
pub mod traceback;

#[cfg(test)]
pub(crate) mod test_support;

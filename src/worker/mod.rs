//! A worker process: after the fork it resets signal handling, starts the
//! embedded interpreter, imports the application and serves connections from
//! its event loop until told to stop.

mod connection;
mod event_loop;
pub mod wsgi;

/// Exit code: the worker could not start (interpreter, sockets, signals).
pub const WORKER_BOOT_ERROR: i32 = 3;
/// Exit code: the application could not be imported or found.
pub const APP_LOAD_ERROR: i32 = 4;

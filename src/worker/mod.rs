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

use crate::config::Settings;
use crate::listener::Listener;
use std::os::fd::OwnedFd;

/// What the master hands a worker at fork time.
pub struct WorkerContext<'a> {
    /// The effective settings.
    pub settings: &'a Settings,
    /// The master's listening sockets (inherited across the fork; the worker
    /// duplicates what it needs).
    pub listeners: &'a [Listener],
    /// Write end of a pipe to the master: on a boot or app-load failure the
    /// worker writes one line (e.g. `ModuleNotFoundError: No module named
    /// 'x'`) before exiting, and the master quotes it in its exit message.
    pub boot_report: OwnedFd,
    /// The master's pid: if the parent changes, the master is gone and the
    /// worker exits.
    pub master_pid: i32,
}

/// Runs a worker in the freshly forked child. Returns the process exit code
/// (0, [`WORKER_BOOT_ERROR`] or [`APP_LOAD_ERROR`]); the caller exits with it.
pub fn run(ctx: WorkerContext<'_>) -> i32 {
    let _ = ctx;
    todo!()
}

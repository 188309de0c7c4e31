//! The master process (gunicorn's arbiter): binds the sockets, forks the
//! workers and supervises them. It never initialises Python.
//!
//! [`run`] is the whole master: `--chdir`, signal handlers, sockets, then the
//! [`arbiter::Arbiter`] loop until a stop signal or a halt.

pub mod arbiter;
pub mod signals;
pub mod sockets;

use crate::config::Settings;
use arbiter::{Arbiter, ArbiterError};
use signals::SignalQueue;
use sockets::{os_error_text, BoundSockets, SocketError};
use std::path::PathBuf;

/// The name workers report in `Using worker:`.
pub const WORKER_CLASS: &str = "mio";

/// Why the master stopped with an error. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// `--chdir` names a directory we cannot enter.
    #[error("--chdir: cannot change to '{}': {reason}", .path.display())]
    Chdir { path: PathBuf, reason: String },
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(String),
    /// A `--bind` address could not be bound.
    #[error(transparent)]
    Sockets(#[from] SocketError),
    /// The arbiter halted (a worker could not boot or load the app) or failed.
    #[error(transparent)]
    Arbiter(#[from] ArbiterError),
}

impl MasterError {
    /// The process exit code: 3 or 4 when a worker could not boot or load
    /// the app (gunicorn's codes), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            MasterError::Arbiter(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// Runs the master until a stop signal (`Ok`) or an error.
pub fn run(mut settings: Settings) -> Result<(), MasterError> {
    log::info!("Starting rgunicorn {}", env!("CARGO_PKG_VERSION"));
    if let Some(dir) = settings.chdir.take() {
        settings.chdir = Some(change_directory(dir)?);
    }
    let signals = SignalQueue::install().map_err(|e| MasterError::Signals(os_error_text(&e)))?;
    let sockets = BoundSockets::bind_all(&settings.bind, settings.backlog)?;
    let pid = std::process::id();
    for listener in sockets.listeners() {
        log::info!("Listening at: {} ({pid})", listener.url());
    }
    log::info!("Using worker: {WORKER_CLASS}");
    Arbiter::new(settings, sockets, signals).run()?;
    Ok(())
}

/// `--chdir`: enters `dir` (before binding, so relative unix socket paths
/// and the app's imports are relative to it) and returns it absolute, so a
/// worker that changes directory again lands in the same place.
fn change_directory(dir: PathBuf) -> Result<PathBuf, MasterError> {
    let chdir_error = |dir: &PathBuf, e: std::io::Error| MasterError::Chdir {
        path: dir.clone(),
        reason: os_error_text(&e),
    };
    std::env::set_current_dir(&dir).map_err(|e| chdir_error(&dir, e))?;
    std::env::current_dir().map_err(|e| chdir_error(&dir, e))
}

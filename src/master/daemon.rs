//! `--daemon`: detaching the master from the terminal, as gunicorn does
//! before it creates its sockets: fork (the launching process exits 0),
//! `setsid` (a new session without a controlling terminal), fork again (so
//! the daemon, not a session leader, can never reacquire one), umask 022,
//! and stdin/stdout on /dev/null — stderr too, unless the error log goes to
//! a file (it is then already on fd 2). The working directory is kept, as
//! gunicorn keeps it, so relative paths (`--pid`, unix sockets, the app)
//! mean what they meant to the launcher.
//!
//! It must run while the master is single-threaded, before any socket or
//! signal handler exists.

use nix::unistd::{fork, setsid, ForkResult};
use std::io::Write;
use std::os::fd::AsRawFd;

/// Why the master could not detach. One line each.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `fork(2)` failed.
    #[error("--daemon: cannot fork: {0}")]
    Fork(nix::Error),
    /// `setsid(2)` failed.
    #[error("--daemon: cannot start a new session: {0}")]
    Session(nix::Error),
    /// /dev/null could not be opened or put on the standard streams.
    #[error("--daemon: cannot redirect the standard streams to /dev/null: {0}")]
    DevNull(std::io::Error),
}

/// Detaches: returns in the daemon (a grandchild of the caller); the
/// launching process and the intermediate one exit 0 here.
pub fn daemonize() -> Result<(), DaemonError> {
    log::logger().flush();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    exit_in_parent()?;
    setsid().map_err(DaemonError::Session)?;
    exit_in_parent()?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    redirect_standard_streams(!crate::logging::logs_to_file())
}

/// Forks; the parent exits 0 at once, the child returns.
fn exit_in_parent() -> Result<(), DaemonError> {
    // SAFETY: the master is single-threaded here (no signal handler, poll
    // thread or interpreter exists yet), so the child may run any code;
    // the parent only calls `_exit`, which runs no destructors and flushes
    // nothing that the child will flush again.
    match unsafe { fork() }.map_err(DaemonError::Fork)? {
        ForkResult::Parent { .. } => {
            // SAFETY: `_exit` ends this process at once; nothing of it is
            // used afterwards.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Child => Ok(()),
    }
}

/// Puts /dev/null on stdin and stdout, and on stderr when `stderr_too`
/// (and on the launcher's stderr the logger keeps aside).
fn redirect_standard_streams(stderr_too: bool) -> Result<(), DaemonError> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(DaemonError::DevNull)?;
    crate::logging::detach_original_stderr(&null);
    let mut targets = vec![libc::STDIN_FILENO, libc::STDOUT_FILENO];
    if stderr_too {
        targets.push(libc::STDERR_FILENO);
    }
    for target in targets {
        // SAFETY: dup2 atomically replaces a standard fd with a duplicate
        // of the open /dev/null; Rust's std handles refer to fds 0-2 by
        // number and are unbuffered (stdout was flushed before the fork).
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(DaemonError::DevNull(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

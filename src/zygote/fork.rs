//! One fork request: CPython's fork protocol around the fork (one clone
//! whose parent is the master, `sibling`; or, in a zygote with threads, a
//! double fork with the worker's pid back through a pipe), and the
//! worker's side (its descriptors turned into a `WorkerContext`, then the
//! worker).

use super::sibling::{self, Cloned};
use crate::config::Settings;
use crate::heartbeat::Heartbeat;
use crate::listener::Listener;
use crate::metrics::WorkerMetrics;
use crate::worker::{self, WorkerContext, WORKER_BOOT_ERROR};
use crate::zygote_channel::{Channel, ForkReply, ForkRequest};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult};
use pyo3::prelude::*;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

/// What every forked worker is given besides its request.
pub(super) struct Forker<'a> {
    pub settings: &'a Settings,
    pub argv: &'a [std::ffi::OsString],
    pub listeners: &'a [Listener],
    pub serves_tls: &'a [bool],
    pub master_pid: i32,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub channel: &'a Channel,
    pub app: &'a Py<PyAny>,
}

impl Forker<'_> {
    /// Forks one worker for `request`; returns its pid (or why not). The
    /// worker's side never returns from here.
    pub(super) fn fork_worker(&self, py: Python<'_>, request: ForkRequest) -> ForkReply {
        let _ = io::stderr().flush();
        // SAFETY: called with the GIL held (the zygote is attached for its
        // whole life), on the main thread, right before the fork.
        unsafe { pyo3::ffi::PyOS_BeforeFork() };
        let reply = match sibling::clone_as_sibling() {
            Ok(Cloned::Parent(pid)) => {
                drop(request);
                ForkReply::Forked(pid)
            }
            Ok(Cloned::Child) => {
                let code = self.become_worker(py, request);
                let _ = io::stderr().flush();
                // SAFETY: `_exit` ends the worker without returning into
                // the zygote's loop or running its destructors.
                unsafe { libc::_exit(code) }
            }
            Err(why) => {
                log::debug!("Zygote: forking twice ({why})");
                self.fork_twice(py, request)
            }
        };
        // SAFETY: pairs with PyOS_BeforeFork above, GIL held, in the zygote.
        unsafe { pyo3::ffi::PyOS_AfterFork_Parent() };
        reply
    }

    /// The fallback fork (a zygote with threads, or a kernel without
    /// clone3): glibc's `fork()` twice, so that at-fork locks and handlers
    /// run; the intermediate child exits at once and the worker is adopted
    /// by the master (a child subreaper). Called between PyOS_BeforeFork
    /// and PyOS_AfterFork_Parent.
    fn fork_twice(&self, py: Python<'_>, request: ForkRequest) -> ForkReply {
        let (pid_read, pid_write) = match pipe2(OFlag::O_CLOEXEC) {
            Ok(pipe) => pipe,
            Err(e) => return ForkReply::Failed(format!("cannot make a pipe: {e}")),
        };
        // SAFETY: glibc's fork takes its own and the libraries' at-fork
        // locks, so it is sound with other threads (which the app should
        // not start at import under --preload, docs/preload.md); the
        // intermediate child only forks again and `_exit`s.
        let forked = unsafe { fork() };
        match forked {
            Err(e) => ForkReply::Failed(format!("fork failed: {e}")),
            Ok(ForkResult::Parent { child }) => {
                drop(pid_write);
                drop(request);
                let pid = read_pid(pid_read);
                while let Err(Errno::EINTR) = waitpid(child, None) {}
                match pid {
                    Some(pid) => ForkReply::Forked(pid),
                    None => ForkReply::Failed("the second fork failed".to_string()),
                }
            }
            Ok(ForkResult::Child) => {
                drop(pid_read);
                self.intermediate(py, request, pid_write)
            }
        }
    }

    /// The intermediate child: forks the worker, tells the zygote its pid
    /// and exits at once, orphaning the worker to the master.
    fn intermediate(&self, py: Python<'_>, request: ForkRequest, pid_write: OwnedFd) -> ! {
        // SAFETY: this process has one thread (a copy of the zygote's,
        // between PyOS_BeforeFork and the after-fork call, which the worker
        // makes); it only writes a pid and `_exit`s.
        match unsafe { fork() } {
            Ok(ForkResult::Parent { child }) => {
                let _ = std::fs::File::from(pid_write).write_all(&child.as_raw().to_le_bytes());
                // SAFETY: `_exit` ends the intermediate without running any
                // destructor or atexit handler of the zygote.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Child) => {
                drop(pid_write);
                let code = self.become_worker(py, request);
                let _ = io::stderr().flush();
                // SAFETY: as above: the worker never returns into the zygote.
                unsafe { libc::_exit(code) }
            }
            // SAFETY: as above.
            Err(_) => unsafe { libc::_exit(1) },
        }
    }

    /// The worker's side: CPython's after-fork steps, then the worker with
    /// the descriptors the master sent.
    fn become_worker(&self, py: Python<'_>, request: ForkRequest) -> i32 {
        // SAFETY: the GIL is held (copied from the zygote's thread), on the
        // only thread, right after fork.
        unsafe { pyo3::ffi::PyOS_AfterFork_Child() };
        // SAFETY: the worker must not keep the zygote's channel; the fd is
        // closed once here and the `Channel` is never dropped in this
        // process (it `_exit`s).
        unsafe {
            libc::close(self.channel.as_fd().as_raw_fd());
        }
        let ForkRequest {
            age,
            boot_report,
            heartbeat,
            metrics,
            listeners,
        } = request;
        let pages = Heartbeat::from_inherited(heartbeat).and_then(|heartbeat| {
            let metrics = metrics.map(WorkerMetrics::from_inherited).transpose()?;
            Ok((heartbeat, metrics))
        });
        let (heartbeat, metrics) = match pages {
            Ok(pages) => pages,
            Err(e) => {
                let reason = format!("cannot map the worker's shared pages: {e}");
                log::error!("{reason}");
                let _ = writeln!(std::fs::File::from(boot_report), "{reason}");
                return WORKER_BOOT_ERROR;
            }
        };
        let own: Vec<Listener> = self
            .listeners
            .iter()
            .zip(listeners)
            .map(|(listener, fd)| listener.same_kind(fd))
            .collect();
        let context = WorkerContext {
            settings: self.settings,
            argv: self.argv,
            listeners: if own.is_empty() { self.listeners } else { &own },
            serves_tls: self.serves_tls,
            boot_report,
            master_pid: self.master_pid,
            heartbeat,
            metrics,
            age,
            tls: self.tls.clone(),
        };
        // A panic must never unwind into the copy of the zygote's loop.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            worker::run_preloaded(py, context, self.app)
        }))
        .unwrap_or(1)
    }
}

/// The worker's pid, as the intermediate child wrote it (None if it could
/// not fork and wrote nothing).
fn read_pid(pipe: OwnedFd) -> Option<i32> {
    let mut bytes = [0u8; 4];
    std::fs::File::from(pipe).read_exact(&mut bytes).ok()?;
    Some(i32::from_le_bytes(bytes))
}

//! The preload zygote (`--preload`): a process of its own (the Python
//! program, `rgunicorn-python`, started by the master with the zygote's
//! role), that starts the interpreter and imports the app once, runs
//! `gc.collect()` then `gc.freeze()` (so the cyclic collector never writes
//! to the imported objects and the workers keep sharing their pages), then
//! forks a worker each time the master asks over its channel
//! (`zygote_channel`).
//!
//! Each fork runs CPython's fork protocol (`PyOS_BeforeFork`, then
//! `PyOS_AfterFork_Parent` here and `PyOS_AfterFork_Child` in the worker,
//! which runs the `os.register_at_fork` handlers: `random` is reseeded in
//! every worker). The fork is one `clone3(CLONE_PARENT)` (`sibling`), so
//! the worker is the master's own child, which supervises and reaps it
//! like any worker; a zygote with threads forks twice with glibc's fork
//! instead (a short-lived intermediate child forks the worker and exits,
//! and the master, a child subreaper, adopts it). The worker then enters
//! the worker's one serving path through [`worker::run_preloaded`].
//!
//! Supervision stays in the master; the zygote only imports and forks. It
//! must not outlive the master, and ends when the master closes the
//! channel or sends SIGTERM (its default action: the zygote holds no state
//! worth a graceful stop).

mod fork;
mod sibling;

use crate::config::Settings;
use crate::heartbeat::{Heartbeat, Phase};
use crate::listener::Listener;
use crate::worker::wsgi;
use crate::worker::{self, APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use crate::zygote_channel::{Channel, ChannelError, ForkReply};
use pyo3::prelude::*;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// What the zygote is given at start (rebuilt from the master's handoff).
pub struct ZygoteContext<'a> {
    /// The effective settings (the workers it forks serve with these).
    pub settings: &'a Settings,
    /// The command line rgunicorn was started with: the app's `sys.argv`.
    pub argv: &'a [std::ffi::OsString],
    /// The master's listening sockets, inherited, passed on to the workers.
    pub listeners: &'a [Listener],
    /// Whether each of `listeners` serves TLS.
    pub serves_tls: &'a [bool],
    /// The zygote's end of the channel the master asks for workers on.
    pub channel: Channel,
    /// Write end of a pipe to the master: on a boot or app-load failure
    /// the zygote writes one line before exiting, as a worker does.
    pub boot_report: OwnedFd,
    /// The master's pid (the workers' parent once adopted).
    pub master_pid: i32,
    /// The zygote's slot: `Serving` once the app is imported and frozen.
    pub heartbeat: Heartbeat,
    /// With `--certfile`: the TLS configuration the workers serve with.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Runs the zygote (the Python program started with the zygote's role). Returns the process exit
/// code (0 when the master closed the channel, [`WORKER_BOOT_ERROR`] or
/// [`APP_LOAD_ERROR`] when it could not start); the caller exits with it.
pub fn run(ctx: ZygoteContext<'_>) -> i32 {
    let settings = ctx.settings;
    crate::proc_title::set(&format!("rgunicorn: zygote [{}]", settings.proc_name()));
    let mut report = std::fs::File::from(ctx.boot_report);
    let mut fail = |code: i32, reason: &str| {
        log::error!("{reason}");
        let _ = writeln!(report, "{reason}");
        code
    };
    if !worker::die_with_master(ctx.master_pid) {
        return 0;
    }
    if let Err(reason) = worker::start_python(settings, ctx.argv) {
        return fail(WORKER_BOOT_ERROR, &reason);
    }
    Python::attach(|py| {
        let app = match wsgi::app::load(py, &settings.app) {
            Ok(app) => app,
            Err(e) => {
                wsgi::traceback::log_exception(py, &e, "Exception in zygote process");
                return fail(APP_LOAD_ERROR, &wsgi::traceback::one_line(py, &e));
            }
        };
        if let Err(e) = freeze_the_heap(py) {
            log::warn!(
                "--preload: cannot freeze the imported objects (the workers share less): {}",
                wsgi::traceback::one_line(py, &e)
            );
        }
        log::info!(
            "Zygote (pid:{}) imported the app; forking workers from it",
            std::process::id()
        );
        announce_ready(&ctx.heartbeat, ctx.master_pid);
        let forker = fork::Forker {
            settings,
            argv: ctx.argv,
            listeners: ctx.listeners,
            serves_tls: ctx.serves_tls,
            master_pid: ctx.master_pid,
            tls: ctx.tls,
            channel: &ctx.channel,
            app: &app,
        };
        serve_fork_requests(py, &forker)
    })
}

/// `gc.collect()`, then `gc.freeze()`: everything imported moves to the
/// permanent generation, which the collector never walks (nor writes to).
fn freeze_the_heap(py: Python<'_>) -> PyResult<()> {
    let gc = py.import("gc")?;
    gc.call_method0("collect")?;
    gc.call_method0("freeze")?;
    Ok(())
}

/// Tells the master the zygote is ready: `Serving` in its slot, and
/// SIGCHLD to wake the master's loop now.
fn announce_ready(heartbeat: &Heartbeat, master_pid: i32) {
    heartbeat.set_phase(Phase::Serving);
    // SAFETY: kill has no memory preconditions; a master that is gone is
    // noticed when the channel closes.
    unsafe {
        libc::kill(master_pid, libc::SIGCHLD);
    }
}

/// Forks a worker for each request until the master closes the channel.
fn serve_fork_requests(py: Python<'_>, forker: &fork::Forker<'_>) -> i32 {
    loop {
        // Without the GIL while waiting (threads the app started anyway
        // may run); with it again for the fork.
        let channel = forker.channel;
        let reply = match py.detach(|| channel.recv_request()) {
            Ok(request) => forker.fork_worker(py, request),
            Err(ChannelError::Closed) => return 0,
            Err(ChannelError::Malformed(why)) => ForkReply::Failed(why.to_string()),
            Err(e) => {
                log::error!("Zygote: cannot read fork requests: {e}");
                return 1;
            }
        };
        if let ForkReply::Failed(reason) = &reply {
            log::error!("Zygote: cannot fork a worker: {reason}");
        }
        match forker.channel.send_reply(&reply) {
            Ok(()) => {}
            Err(ChannelError::Closed) => return 0,
            Err(e) => {
                log::error!("Zygote: cannot answer the master: {e}");
                return 1;
            }
        }
    }
}

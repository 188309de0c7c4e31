//! `rgunicorn-python`, the Python program: the only program of rgunicorn
//! that links libpython. The master (`rgunicorn`, no Python in it) forks
//! and execs it for each worker and for `--check-config`, with a
//! [`Handoff`] on an inherited descriptor; started by hand it says so in
//! one line and exits 2.
//!
//! This file is thin: it reads the handoff, sets up the error log as the
//! master has it, turns the handoff's descriptors back into the objects
//! they were (listeners, heartbeat and metrics pages, the TLS
//! configuration built from the master's bytes) and enters
//! `worker::run`, the `--preload` zygote's `zygote::run`, or the app check.
#![deny(clippy::undocumented_unsafe_blocks)]

// The library's rooms, under the names the worker's modules use
// (`crate::config`, `crate::heartbeat`, ...), so `src/worker/` reads the same
// in this program as the floor plan (tests/architecture.rs) reads it.
pub use rgunicorn::{
    config, handoff, heartbeat, http, ip_allow_list, listener, local_time, logging, metrics,
    os_error, proc_title, proxy_protocol, shared_memory, statsd, tls_info, x509_name,
    zygote_channel, SERVER_SOFTWARE,
};

#[path = "worker/mod.rs"]
pub mod worker;
#[path = "zygote/mod.rs"]
pub mod zygote;

use handoff::{
    take_inherited_fd, Handoff, HandoffError, Role, WorkerFacts, ZygoteFacts, PYTHON_PROGRAM,
    WORKER_BOOT_ERROR,
};
use heartbeat::Heartbeat;
use listener::Listener;
use metrics::WorkerMetrics;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let handoff = match Handoff::from_args(&args) {
        Ok(handoff) => handoff,
        Err(err) => {
            eprintln!("{PYTHON_PROGRAM}: {err}");
            std::process::exit(err.exit_code());
        }
    };
    if let Some(path) = &handoff.log_file {
        logging::adopt_log_file(path);
    }
    if let Err(err) = logging::init(handoff.settings.log_level) {
        eprintln!("{PYTHON_PROGRAM}: {err}");
        std::process::exit(WORKER_BOOT_ERROR);
    }
    let code = match &handoff.role {
        Role::Worker(facts) => run_worker(&handoff, facts),
        Role::Zygote(facts) => run_zygote(&handoff, facts),
        Role::Check { report } => check(&handoff, *report),
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process as a forked worker always ended:
    // without finalising the interpreter or running C atexit handlers
    // (the worker ran Python's own on its way out).
    unsafe { libc::_exit(code) }
}

/// A worker: rebuilds its context from the handoff and runs it. Returns
/// the exit code.
fn run_worker(handoff: &Handoff, facts: &WorkerFacts) -> i32 {
    let boot_report = match take_inherited_fd(facts.boot_report) {
        Ok(fd) => fd,
        Err(err) => return boot_failure(None, &err.to_string()),
    };
    let inherited = match Inherited::take(handoff, facts) {
        Ok(inherited) => inherited,
        Err(reason) => return boot_failure(Some(boot_report), &reason),
    };
    if let Err(reason) = connect_statsd(&handoff.settings) {
        return boot_failure(Some(boot_report), &reason);
    }
    let context = worker::WorkerContext {
        settings: &handoff.settings,
        argv: &handoff.argv,
        listeners: &inherited.listeners,
        serves_tls: &facts.serves_tls,
        boot_report,
        master_pid: facts.master_pid,
        heartbeat: inherited.heartbeat,
        metrics: inherited.metrics,
        age: facts.age,
        tls: inherited.tls,
    };
    // A panic ends this worker with a plain failure code (replaced, not
    // halted), as it did when workers were forked copies of the master.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(context))).unwrap_or(1)
}

/// The `--preload` zygote: rebuilds its context from the handoff and runs
/// it. Returns the exit code.
fn run_zygote(handoff: &Handoff, facts: &ZygoteFacts) -> i32 {
    let boot_report = match take_inherited_fd(facts.boot_report) {
        Ok(fd) => fd,
        Err(err) => return boot_failure(None, &err.to_string()),
    };
    let taken = adopt_listeners(&facts.listeners).and_then(|listeners| {
        let heartbeat = Heartbeat::from_inherited(take(facts.heartbeat)?)
            .map_err(|e| format!("the zygote's heartbeat page: {e}"))?;
        let channel = zygote_channel::Channel::from_fd(take(facts.channel)?);
        Ok((listeners, heartbeat, channel, tls_config(handoff)?))
    });
    let (listeners, heartbeat, channel, tls) = match taken {
        Ok(taken) => taken,
        Err(reason) => return boot_failure(Some(boot_report), &reason),
    };
    // The workers it forks inherit the client.
    if let Err(reason) = connect_statsd(&handoff.settings) {
        return boot_failure(Some(boot_report), &reason);
    }
    let context = zygote::ZygoteContext {
        settings: &handoff.settings,
        argv: &handoff.argv,
        listeners: &listeners,
        serves_tls: &facts.serves_tls,
        channel,
        boot_report,
        master_pid: facts.master_pid,
        heartbeat,
        tls,
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| zygote::run(context))).unwrap_or(1)
}

/// The objects a worker's descriptors and bytes stand for.
struct Inherited {
    listeners: Vec<Listener>,
    heartbeat: Heartbeat,
    metrics: Option<WorkerMetrics>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Inherited {
    fn take(handoff: &Handoff, facts: &WorkerFacts) -> Result<Inherited, String> {
        let listeners = adopt_listeners(&facts.listeners)?;
        let heartbeat = Heartbeat::from_inherited(take(facts.heartbeat)?)
            .map_err(|e| format!("the heartbeat page: {e}"))?;
        let metrics = match facts.metrics {
            None => None,
            Some(fd) => Some(
                WorkerMetrics::from_inherited(take(fd)?)
                    .map_err(|e| format!("the metrics page: {e}"))?,
            ),
        };
        let tls = tls_config(handoff)?;
        Ok(Inherited {
            listeners,
            heartbeat,
            metrics,
            tls,
        })
    }
}

/// The inherited listening sockets.
fn adopt_listeners(fds: &[i32]) -> Result<Vec<Listener>, String> {
    fds.iter()
        .map(|fd| {
            Listener::adopt(*fd).map_err(|e| format!("cannot use listening socket fd {fd}: {e}"))
        })
        .collect()
}

/// The TLS configuration built from the master's bytes (with `--certfile`).
fn tls_config(handoff: &Handoff) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
    match &handoff.tls {
        None => Ok(None),
        Some(material) => handoff::tls::server_config(&handoff.settings, material)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

fn take(fd: i32) -> Result<OwnedFd, String> {
    take_inherited_fd(fd).map_err(|e: HandoffError| e.to_string())
}

/// `--statsd-host`: this worker's own client (the master checked that the
/// address resolves and can be sent to before it started any worker).
fn connect_statsd(settings: &config::Settings) -> Result<(), String> {
    let Some(config::BindAddress::Tcp { host, port }) = &settings.statsd_host else {
        return Ok(());
    };
    let statsd = statsd::Statsd::connect(
        host,
        *port,
        &settings.statsd_prefix,
        &settings.dogstatsd_tags,
    )
    .map_err(|e| format!("--statsd-host: cannot send to {host}:{port}: {e}"))?;
    statsd::install(statsd);
    Ok(())
}

/// Logs a boot failure, reports it to the master when the pipe is there,
/// and returns [`WORKER_BOOT_ERROR`].
fn boot_failure(report: Option<OwnedFd>, reason: &str) -> i32 {
    log::error!("{reason}");
    if let Some(report) = report {
        let _ = writeln!(std::fs::File::from(report), "{reason}");
    }
    WORKER_BOOT_ERROR
}

/// `--check-config`: imports the app as a worker would. 0 when it loads;
/// else 1, with the reason (one line) written to the master's report pipe.
fn check(handoff: &Handoff, report: i32) -> i32 {
    let report = take_inherited_fd(report).ok();
    match worker::check::check_app(&handoff.settings, &handoff.argv) {
        Ok(()) => 0,
        Err(reason) => {
            match report {
                Some(report) => {
                    let _ = writeln!(std::fs::File::from(report), "{reason}");
                }
                None => eprintln!("Error: {reason}"),
            }
            1
        }
    }
}

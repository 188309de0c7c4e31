//! A worker process (the `rgunicorn-python` program, started by the master
//! with fork and exec): it resets signal handling, starts the embedded
//! interpreter, imports the application and serves connections from its
//! event loop until told to stop.

mod accept_interest;
mod access_log;
mod app_threads;
pub mod check;
mod connection;
mod event_loop;
pub mod forwarded;
pub mod identity;
mod recycling;
mod reloader;
mod request_body;
mod request_metrics;
mod route_times;
mod signals;
mod stream;
mod threaded_calls;
mod tls_session;
pub mod wsgi;

/// The exit codes the master reads (their home is the handoff, the door
/// both programs name).
pub use crate::handoff::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};

use crate::config::Settings;
use crate::heartbeat::Heartbeat;
use crate::http::{HttpDate, Limits};
use crate::listener::Listener;
use connection::{AppCalls, Shared, Timeouts};
use event_loop::EventLoop;
use pyo3::prelude::*;
use signals::SignalPipe;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsgi::exchange::AppContext;
use wsgi::gil::Gil;
use wsgi::response::ResponseOptions;

/// What a worker is given at start (rebuilt from the master's handoff).
pub struct WorkerContext<'a> {
    /// The effective settings.
    pub settings: &'a Settings,
    /// The command line rgunicorn was started with: the app's `sys.argv`.
    pub argv: &'a [std::ffi::OsString],
    /// The listening sockets (inherited from the master; the worker
    /// duplicates what it needs).
    pub listeners: &'a [Listener],
    /// Whether each of `listeners` serves TLS (with `tls`).
    pub serves_tls: &'a [bool],
    /// Write end of a pipe to the master: on a boot or app-load failure the
    /// worker writes one line (e.g. `ModuleNotFoundError: No module named
    /// 'x'`) before exiting, and the master quotes it in its exit message.
    pub boot_report: OwnedFd,
    /// The master's pid: if the parent changes, the master is gone and the
    /// worker exits.
    pub master_pid: i32,
    /// This worker's liveness slot, shared with the master.
    pub heartbeat: Heartbeat,
    /// This worker's request counters, shared with the master (with
    /// `--metrics-bind` or `--statsd-host`).
    pub metrics: Option<crate::metrics::WorkerMetrics>,
    /// Spawn order (1 for the first worker; gunicorn's `worker.age`).
    pub age: u64,
    /// With `--certfile`: the TLS configuration, loaded by the master, for
    /// the connections accepted on the listeners that serve TLS.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Runs a worker. Returns the process exit code (0, [`WORKER_BOOT_ERROR`]
/// or [`APP_LOAD_ERROR`]); the caller exits with it.
pub fn run(ctx: WorkerContext<'_>) -> i32 {
    let WorkerContext {
        settings,
        argv,
        listeners,
        serves_tls,
        boot_report,
        master_pid,
        heartbeat,
        metrics,
        age,
        tls,
    } = ctx;
    crate::proc_title::set(&format!("rgunicorn: worker [{}]", settings.proc_name()));
    let mut report = std::fs::File::from(boot_report);
    let mut fail = |code: i32, reason: &str| {
        log::error!("{reason}");
        let _ = writeln!(report, "{reason}");
        code
    };

    if let Err(e) = identity::switch_to(settings.user.as_ref(), settings.group, settings.initgroups)
    {
        return fail(WORKER_BOOT_ERROR, &e.to_string());
    }
    let signals = match SignalPipe::install() {
        Ok(signals) => signals,
        Err(e) => {
            return fail(
                WORKER_BOOT_ERROR,
                &format!("cannot install signal handlers: {e}"),
            )
        }
    };
    if !signals::die_with_master(master_pid) {
        return 0;
    }
    for (key, value) in &settings.raw_env {
        // The worker is single-threaded here, before Python starts (which
        // reads the environment once, into os.environ).
        std::env::set_var(key, value);
    }
    if settings.capture_output {
        crate::logging::capture_output();
    }
    if let Err(e) = wsgi::interpreter::start(settings, argv) {
        return fail(WORKER_BOOT_ERROR, &e.to_string());
    }
    Python::attach(|py| {
        let hooks = match wsgi::hooks::load(py, settings, master_pid, age) {
            Ok(hooks) => hooks,
            Err(e) => return fail(WORKER_BOOT_ERROR, &e.to_string()),
        };
        if let Some(hooks) = &hooks {
            hooks.post_fork(py);
        }
        let app = match wsgi::app::load(py, &settings.app) {
            Ok(app) => app,
            Err(e) => {
                wsgi::traceback::log_exception(py, &e, "Exception in worker process");
                return fail(APP_LOAD_ERROR, &wsgi::traceback::one_line(py, &e));
            }
        };
        if let Some(hooks) = &hooks {
            hooks.post_worker_init(py, &app);
        }
        let hooks = hooks.map(Arc::new);
        reloader::start(py, settings);
        if let Err(e) = dump_tracebacks_on_abort(py) {
            log::warn!(
                "cannot install the stuck-worker traceback dump: {}",
                wsgi::traceback::one_line(py, &e)
            );
        }
        let access_log = match &settings.access_logfile {
            None => None,
            Some(target) => {
                match access_log::AccessLog::open(target, &settings.access_log_format) {
                    Ok(log) => Some(Arc::new(Mutex::new(log))),
                    Err(e) => return fail(WORKER_BOOT_ERROR, &e.to_string()),
                }
            }
        };
        let options = ResponseOptions {
            keep_environ: access_log
                .as_ref()
                .is_some_and(|log| log.lock().is_ok_and(|log| log.format().needs_environ())),
            // sendfile cannot go through TLS: file bodies are then read
            // and encrypted like any other body.
            sendfile: !settings.no_sendfile && tls.is_none(),
        };
        let multithread = settings.threads > 1;
        let mut contexts = Vec::with_capacity(settings.threads);
        for _ in 0..settings.threads {
            let environ = wsgi::environ::EnvironTemplate::new(py).and_then(|environ| {
                environ.set_multithread(py, multithread)?;
                Ok(environ)
            });
            match environ {
                Ok(environ) => contexts.push(AppContext {
                    app: app.clone_ref(py),
                    environ,
                    date: HttpDate::new(),
                    hooks: hooks.clone(),
                    access_log: access_log
                        .clone()
                        .map(|log| log as Arc<dyn wsgi::access_entry::AccessRecorder>),
                    options,
                }),
                Err(e) => return fail(WORKER_BOOT_ERROR, &wsgi::traceback::one_line(py, &e)),
            }
        }
        let heartbeat = Arc::new(heartbeat);
        let poll = match mio::Poll::new() {
            Ok(poll) => poll,
            Err(e) => {
                return fail(
                    WORKER_BOOT_ERROR,
                    &format!("cannot start the event loop: {e}"),
                )
            }
        };
        let calls = match multithread {
            false => AppCalls::Inline(contexts.pop().expect("one context per thread")),
            true => {
                let started =
                    mio::Waker::new(poll.registry(), event_loop::WAKER).and_then(|waker| {
                        threaded_calls::start(contexts, waker, Arc::clone(&heartbeat))
                    });
                match started {
                    Ok(threads) => AppCalls::Threads(threads),
                    Err(e) => {
                        return fail(
                            WORKER_BOOT_ERROR,
                            &format!("cannot start the app threads: {e}"),
                        )
                    }
                }
            }
        };
        let shared = Shared {
            calls,
            date: HttpDate::new(),
            limits: Limits {
                underscores: settings.header_map,
                request_line: settings.limit_request_line,
                fields: settings.limit_request_fields,
                field_size: settings.limit_request_field_size,
            },
            timeouts: Timeouts {
                head: Duration::from_secs(settings.header_timeout),
                keepalive: Duration::from_secs(settings.keepalive),
                body_idle: Duration::from_secs(settings.body_timeout),
                send: Duration::from_secs(settings.send_timeout),
                linger: Duration::from_secs(2),
            },
            body_min_rate: settings.body_min_rate,
            body_limit: settings.limit_request_body,
            stopping: false,
            heartbeat,
            metrics: request_metrics::RequestMetrics::new(metrics),
            requests_done: 0,
            max_requests: recycling::max_requests_with_jitter(
                settings.max_requests,
                settings.max_requests_jitter,
            ),
            access_log,
            scheme_policy: forwarded::SchemePolicy::new(
                settings.forwarded_allow_ips.clone(),
                settings.secure_scheme_headers.clone(),
            ),
            proxy_protocol: settings
                .proxy_protocol
                .then(|| settings.proxy_allow_from.clone()),
            hooks,
            tls,
        };
        let listening: Vec<(&Listener, bool)> =
            listeners.iter().zip(serves_tls.iter().copied()).collect();
        let mut event_loop = match EventLoop::new(
            poll,
            &listening,
            signals,
            shared,
            settings.worker_connections,
            master_pid,
            Duration::from_secs(settings.graceful_timeout),
        ) {
            Ok(event_loop) => event_loop,
            Err(e) => {
                return fail(
                    WORKER_BOOT_ERROR,
                    &format!("cannot start the event loop: {e}"),
                )
            }
        };
        // Serving once the listeners are in the poll: the master may now
        // retire the worker this one replaces.
        event_loop.start_serving();
        let code = match multithread {
            false => event_loop.run(Gil::Held(py)),
            true => py.detach(|| event_loop.run(Gil::Released)),
        };
        finish_python(py);
        code
    })
}

/// Enables Python's faulthandler: on SIGABRT (sent by the master to a
/// worker stuck past `--timeout`) and on fatal signals (SIGSEGV, ...) it
/// writes every thread's Python traceback to stderr (the error log), then
/// lets the signal end the process. It runs in the C signal handler, so it
/// fires even while the application is blocked.
fn dump_tracebacks_on_abort(py: Python<'_>) -> PyResult<()> {
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("all_threads", true)?;
    py.import("faulthandler")?
        .call_method("enable", (), Some(&kwargs))?;
    Ok(())
}

/// What a Python program does on its way out, short of finalising the
/// interpreter (which could wait forever on the app's threads): runs the
/// `atexit` handlers the app registered (metrics flushes, temp file
/// clean-up), logging any exception, then flushes `sys.stdout` and
/// `sys.stderr` so the last prints are not lost.
fn finish_python(py: Python<'_>) {
    if let Err(e) = py
        .import("atexit")
        .and_then(|atexit| atexit.call_method0("_run_exitfuncs"))
    {
        wsgi::traceback::log_exception(py, &e, "Error in atexit handlers");
    }
    if let Ok(sys) = py.import("sys") {
        for name in ["stdout", "stderr"] {
            if let Ok(stream) = sys.getattr(name) {
                let _ = stream.call_method0("flush");
            }
        }
    }
}

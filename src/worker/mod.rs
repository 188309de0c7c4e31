//! A worker process (the `rgunicorn-python` program, started by the master
//! with fork and exec): it resets signal handling, starts the embedded
//! interpreter, imports the application and serves connections from its
//! event loop until told to stop ([`run`]). A worker forked by the
//! `--preload` zygote skips the interpreter start and the import and enters
//! the same serving path ([`run_preloaded`]); the zygote starts Python with
//! [`start_python`].

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
use connection::{AppCalls, ReadChunk, Shared, Timeouts};
use event_loop::EventLoop;
use pyo3::prelude::*;
use signals::SignalPipe;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    crate::proc_title::set(&format!("rgunicorn: worker [{}]", ctx.settings.proc_name()));
    let mut report = BootReport(std::fs::File::from(ctx.boot_report));
    let settings = ctx.settings;
    if let Err(reason) = start_python_first_steps(settings) {
        return report.fail(WORKER_BOOT_ERROR, &reason);
    }
    let signals = match install_signals(ctx.master_pid) {
        Ok(Some(signals)) => signals,
        Ok(None) => return 0,
        Err(reason) => return report.fail(WORKER_BOOT_ERROR, &reason),
    };
    if let Err(reason) = start_python_last_steps(settings, ctx.argv) {
        return report.fail(WORKER_BOOT_ERROR, &reason);
    }
    let parts = Parts {
        settings,
        listeners: ctx.listeners,
        serves_tls: ctx.serves_tls,
        master_pid: ctx.master_pid,
        heartbeat: ctx.heartbeat,
        metrics: ctx.metrics,
        age: ctx.age,
        tls: ctx.tls,
        signals,
    };
    Python::attach(|py| {
        let hooks = match wsgi::hooks::load(py, settings, parts.master_pid, parts.age) {
            Ok(hooks) => hooks,
            Err(e) => return report.fail(WORKER_BOOT_ERROR, &e.to_string()),
        };
        if let Some(hooks) = &hooks {
            hooks.post_fork(py);
        }
        let app = match wsgi::app::load(py, &settings.app) {
            Ok(app) => app,
            Err(e) => {
                wsgi::traceback::log_exception(py, &e, "Exception in worker process");
                return report.fail(APP_LOAD_ERROR, &wsgi::traceback::one_line(py, &e));
            }
        };
        serve(py, parts, &mut report, hooks, app)
    })
}

/// What a process does once before the app is imported, whether it then
/// serves (a worker) or forks workers (the preload zygote): switches to
/// `--user`/`--group`, applies `--env` and `--capture-output`, and starts
/// the interpreter. Returns the one-line reason it failed.
pub fn start_python(settings: &Settings, argv: &[std::ffi::OsString]) -> Result<(), String> {
    start_python_first_steps(settings)?;
    start_python_last_steps(settings, argv)
}

/// The identity switch: before anything else the worker does.
fn start_python_first_steps(settings: &Settings) -> Result<(), String> {
    identity::switch_to(settings.user.as_ref(), settings.group, settings.initgroups)
        .map_err(|e| e.to_string())
}

/// The environment, output capture and the interpreter (`argv` is its
/// `sys.argv`).
fn start_python_last_steps(settings: &Settings, argv: &[std::ffi::OsString]) -> Result<(), String> {
    for (key, value) in &settings.raw_env {
        // The process is single-threaded here, before Python starts (which
        // reads the environment once, into os.environ).
        std::env::set_var(key, value);
    }
    if settings.capture_output {
        crate::logging::capture_output();
    }
    wsgi::interpreter::start(settings, argv).map_err(|e| e.to_string())
}

/// Signal handling for a worker, and its tie to the master: `None` when
/// the master is already gone.
fn install_signals(master_pid: i32) -> Result<Option<SignalPipe>, String> {
    let signals =
        SignalPipe::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    Ok(signals::die_with_master(master_pid).then_some(signals))
}

/// Asks the kernel to end this process (SIGTERM) when the master dies;
/// false when it is already gone. For the preload zygote, which is not a
/// worker but must not outlive the master either.
pub fn die_with_master(master_pid: i32) -> bool {
    signals::die_with_master(master_pid)
}

/// How long a worker forked twice by the zygote (one with threads) waits to
/// be adopted by the master (the zygote's intermediate child exits right
/// after the fork). A worker cloned as the master's child is at once.
const ADOPTION_LIMIT: Duration = Duration::from_secs(5);

/// Runs a worker forked by the preload zygote, which already started the
/// interpreter and imported `app` (CPython's after-fork steps in the child
/// have run). From here it is the same worker as [`run`]'s: hooks
/// (`post_fork`, `post_worker_init`), signals, the event loop. Returns the
/// process exit code.
pub fn run_preloaded(py: Python<'_>, ctx: WorkerContext<'_>, app: &Py<PyAny>) -> i32 {
    crate::proc_title::set(&format!("rgunicorn: worker [{}]", ctx.settings.proc_name()));
    let mut report = BootReport(std::fs::File::from(ctx.boot_report));
    if !wait_for_adoption(ctx.master_pid) {
        return 0;
    }
    let signals = match install_signals(ctx.master_pid) {
        Ok(Some(signals)) => signals,
        Ok(None) => return 0,
        Err(reason) => return report.fail(WORKER_BOOT_ERROR, &reason),
    };
    let settings = ctx.settings;
    let parts = Parts {
        settings,
        listeners: ctx.listeners,
        serves_tls: ctx.serves_tls,
        master_pid: ctx.master_pid,
        heartbeat: ctx.heartbeat,
        metrics: ctx.metrics,
        age: ctx.age,
        tls: ctx.tls,
        signals,
    };
    let hooks = match wsgi::hooks::load(py, settings, parts.master_pid, parts.age) {
        Ok(hooks) => hooks,
        Err(e) => return report.fail(WORKER_BOOT_ERROR, &e.to_string()),
    };
    if let Some(hooks) = &hooks {
        hooks.post_fork(py);
    }
    serve(py, parts, &mut report, hooks, app.clone_ref(py))
}

/// Waits until the master is this process's parent (returns at once for a
/// worker the zygote cloned as the master's child): a worker forked twice
/// is orphaned by the zygote's short-lived intermediate child and adopted
/// by the master (a child subreaper). False if that does not happen
/// within [`ADOPTION_LIMIT`] (the master is gone).
fn wait_for_adoption(master_pid: i32) -> bool {
    let deadline = std::time::Instant::now() + ADOPTION_LIMIT;
    loop {
        // SAFETY: getppid has no preconditions and cannot fail.
        if unsafe { libc::getppid() } == master_pid {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The pipe a worker writes its one-line failure to before exiting.
struct BootReport(std::fs::File);

impl BootReport {
    /// Logs `reason`, reports it to the master and returns `code`.
    fn fail(&mut self, code: i32, reason: &str) -> i32 {
        log::error!("{reason}");
        let _ = writeln!(self.0, "{reason}");
        code
    }
}

/// What [`serve`] needs besides the app and the hooks.
struct Parts<'a> {
    settings: &'a Settings,
    listeners: &'a [Listener],
    serves_tls: &'a [bool],
    master_pid: i32,
    heartbeat: Heartbeat,
    metrics: Option<crate::metrics::WorkerMetrics>,
    age: u64,
    tls: Option<Arc<rustls::ServerConfig>>,
    signals: SignalPipe,
}

/// The one serving path, for a worker that imported `app` itself and for
/// one forked by the zygote: `post_worker_init`, the `--reload` watcher,
/// the access log, the app threads, the event loop until told to stop.
fn serve(
    py: Python<'_>,
    parts: Parts<'_>,
    report: &mut BootReport,
    hooks: Option<wsgi::hooks::Hooks>,
    app: Py<PyAny>,
) -> i32 {
    let Parts {
        settings,
        listeners,
        serves_tls,
        master_pid,
        heartbeat,
        metrics,
        age: _,
        tls,
        signals,
    } = parts;
    let mut fail = |code: i32, reason: &str| report.fail(code, reason);
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
        Some(target) => match access_log::AccessLog::open(target, &settings.access_log_format) {
            Ok(log) => Some(Arc::new(Mutex::new(log))),
            Err(e) => return fail(WORKER_BOOT_ERROR, &e.to_string()),
        },
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
            let started = mio::Waker::new(poll.registry(), event_loop::WAKER)
                .and_then(|waker| threaded_calls::start(contexts, waker, Arc::clone(&heartbeat)));
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
        now: Instant::now(),
        read_chunk: ReadChunk::default(),
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

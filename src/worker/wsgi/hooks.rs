//! Worker hooks (`--hooks MODULE`): importing the user's hook module, the
//! Python objects its functions receive (gunicorn's `server`, `worker`,
//! `req` and `resp`, as far as our process model allows), and calling them.
//!
//! Hooks are looked up once, by gunicorn's names; each is optional. A hook
//! that raises is logged with its traceback and the worker carries on (a
//! raising `pre_request` does not fail its request). Nothing here runs when
//! no hook module is configured: the worker holds `Option<Hooks>` and the
//! request path only checks it. Master-side hooks do not exist: the master
//! never starts Python (docs/hooks.md says what to use instead).
//!
//! The objects are `types.SimpleNamespace` instances (users may hang their
//! own attributes on them, e.g. a start time on `req` in `pre_request` read
//! back in `post_request`), except `cfg`, a read-only [`Config`].

use super::super::forwarded::UrlScheme;
use super::environ::{latin1, Endpoint};
use super::start_response::StartResponse;
use super::traceback::{log_exception, one_line};
use crate::config::Settings;
use crate::http::RequestHead;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// The hook names looked up in the module, in the order they run.
const HOOK_NAMES: [&str; 7] = [
    "post_fork",
    "post_worker_init",
    "pre_request",
    "post_request",
    "worker_int",
    "worker_abort",
    "worker_exit",
];

/// gunicorn's master-side hooks: never called here.
const MASTER_HOOK_NAMES: [&str; 8] = [
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "pre_exec",
    "child_exit",
    "nworkers_changed",
    "on_exit",
];

/// The name of the logger given to hooks as `worker.log` and `server.log`
/// (gunicorn's error logger name, with our prefix).
pub const LOGGER_NAME: &str = "rgunicorn.error";

/// Why the hook module cannot be used. Each message is one line naming the
/// module, for the master's exit message.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// Importing the module failed (missing, syntax error, raised).
    #[error("--hooks {module}: {reason}")]
    Import { module: String, reason: String },
    /// The module defines a hook name as something that cannot be called.
    #[error("--hooks {module}: '{name}' is not callable (it is {kind})")]
    NotCallable {
        module: String,
        name: &'static str,
        kind: String,
    },
    /// Building the objects the hooks receive failed.
    #[error("--hooks {module}: cannot prepare the hook objects: {reason}")]
    Setup { module: String, reason: String },
}

/// The settings hooks can read as `server.cfg` / `worker.cfg`, named as
/// gunicorn's `cfg` attributes. Read-only.
#[pyclass(module = "rgunicorn", name = "Config", frozen, get_all)]
pub struct Config {
    wsgi_app: String,
    workers: u32,
    bind: Vec<String>,
    backlog: u32,
    timeout: u64,
    graceful_timeout: u64,
    keepalive: u64,
    worker_connections: usize,
    max_requests: u64,
    max_requests_jitter: u64,
    limit_request_line: usize,
    limit_request_fields: usize,
    limit_request_field_size: usize,
    chdir: Option<String>,
    pythonpath: Vec<String>,
    loglevel: String,
    accesslog: Option<String>,
    hooks: Option<String>,
}

#[pymethods]
impl Config {
    fn __repr__(&self) -> String {
        format!(
            "<rgunicorn.Config wsgi_app={:?} workers={} bind={:?} timeout={}>",
            self.wsgi_app, self.workers, self.bind, self.timeout
        )
    }
}

impl Config {
    fn from_settings(settings: &Settings) -> Config {
        let path_text = |path: &std::path::PathBuf| path.display().to_string();
        Config {
            wsgi_app: settings.app.to_string(),
            workers: settings.workers,
            bind: settings.bind.iter().map(ToString::to_string).collect(),
            backlog: settings.backlog,
            timeout: settings.timeout,
            graceful_timeout: settings.graceful_timeout,
            keepalive: settings.keepalive,
            worker_connections: settings.worker_connections,
            max_requests: settings.max_requests,
            max_requests_jitter: settings.max_requests_jitter,
            limit_request_line: settings.limit_request_line,
            limit_request_fields: settings.limit_request_fields,
            limit_request_field_size: settings.limit_request_field_size,
            chdir: settings.chdir.as_ref().map(path_text),
            pythonpath: settings.pythonpath.iter().map(path_text).collect(),
            loglevel: settings.log_level.clone(),
            accesslog: settings.access_logfile.clone(),
            hooks: settings.hooks.clone(),
        }
    }
}

/// Installed as the Python-level SIGABRT handler when `worker_abort` is
/// defined: calls it, then ends the process by SIGABRT as it would have
/// ended without the hook.
#[pyclass(module = "rgunicorn", frozen)]
struct AbortHandler {
    hook: Py<PyAny>,
    worker: Py<PyAny>,
}

#[pymethods]
impl AbortHandler {
    fn __call__(&self, py: Python<'_>, _signum: Bound<'_, PyAny>, _frame: Bound<'_, PyAny>) {
        let worker = self.worker.bind(py);
        let _ = worker.setattr("alive", false);
        if let Err(e) = self.hook.call1(py, (worker,)) {
            log_exception(py, &e, "Exception in worker_abort hook");
        }
        flush_python_streams(py);
        // SAFETY: signal(2) with SIG_DFL takes no pointers; afterwards
        // abort(3) raises SIGABRT with its default action, so the master sees
        // the worker end by SIGABRT exactly as without the hook.
        unsafe {
            libc::signal(libc::SIGABRT, libc::SIG_DFL);
        }
        std::process::abort();
    }
}

/// The error log sink of the `rgunicorn.error` logger's handler.
#[pyfunction]
fn write_error_log(levelno: i32, message: &str) {
    match levelno {
        50.. => log::error!(target: crate::logging::CRITICAL, "{message}"),
        40..=49 => log::error!("{message}"),
        30..=39 => log::warn!("{message}"),
        20..=29 => log::info!("{message}"),
        _ => log::debug!("{message}"),
    }
}

/// A `logging.Handler` subclass forwarding formatted records to a sink
/// (`write_error_log`), and the function that attaches it to the
/// `rgunicorn.error` logger.
const LOGGER_SETUP: &std::ffi::CStr = c"
import logging

class ErrorLogHandler(logging.Handler):
    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def emit(self, record):
        try:
            self.sink(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)

def error_logger(name, sink, level):
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if isinstance(handler, ErrorLogHandler):
            logger.removeHandler(handler)
    logger.addHandler(ErrorLogHandler(sink))
    logger.setLevel(level)
    logger.propagate = False
    return logger
";

/// The `logging` level number of a `--log-level` name.
fn python_log_level(level: &str) -> i32 {
    match level {
        "debug" => 10,
        "warning" => 30,
        "error" => 40,
        "critical" => 50,
        _ => 20,
    }
}

/// The `rgunicorn.error` logger, whose records reach the error log.
fn error_logger<'py>(py: Python<'py>, level: &str) -> PyResult<Bound<'py, PyAny>> {
    let setup = PyModule::from_code(
        py,
        LOGGER_SETUP,
        c"<rgunicorn hooks logging>",
        c"rgunicorn_hooks_logging",
    )?;
    let sink = wrap_pyfunction!(write_error_log, py)?;
    setup.call_method1("error_logger", (LOGGER_NAME, sink, python_log_level(level)))
}

/// What the worker knows about one request while its hooks run: the `req`
/// object (shared by `pre_request` and `post_request`), and once built, the
/// environ and the app's `start_response`.
pub struct HookedRequest {
    req: Py<PyAny>,
    environ: Option<Py<PyAny>>,
    start_response: Option<Py<StartResponse>>,
}

impl HookedRequest {
    /// Keeps the environ for `post_request`.
    pub fn keep_environ(&mut self, environ: &Bound<'_, PyAny>) {
        self.environ = Some(environ.clone().unbind());
    }

    /// Keeps the `start_response` the app was given, so `resp` can show the
    /// status and headers it chose.
    pub fn keep_start_response(&mut self, py: Python<'_>, start_response: &Py<StartResponse>) {
        self.start_response = Some(start_response.clone_ref(py));
    }
}

/// How a request ended, for `post_request`'s `resp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The app's response was completed with this many body bytes.
    Completed { body_sent: u64 },
    /// The app raised before its headers were sent: the client got our 500.
    ServerError,
}

/// The hooks of one worker and the objects they receive.
pub struct Hooks {
    /// `types.SimpleNamespace`, the type of `req` and `resp`.
    namespace: Py<PyAny>,
    worker: Py<PyAny>,
    server: Py<PyAny>,
    post_fork: Option<Py<PyAny>>,
    post_worker_init: Option<Py<PyAny>>,
    pre_request: Option<Py<PyAny>>,
    post_request: Option<Py<PyAny>>,
    worker_int: Option<Py<PyAny>>,
    worker_exit: Option<Py<PyAny>>,
    /// Whether `worker_abort` is installed as Python's SIGABRT handler.
    abort_handler: bool,
}

/// Imports the `--hooks` module, if one is configured, and prepares the
/// objects its hooks receive. On failure the traceback (if any) is logged
/// and the error is one line naming the module.
pub fn load(
    py: Python<'_>,
    settings: &Settings,
    master_pid: i32,
    age: u64,
) -> Result<Option<Hooks>, HooksError> {
    let Some(module_name) = settings.hooks.as_deref() else {
        return Ok(None);
    };
    let module = import_hook_module(py, module_name).map_err(|e| {
        if !is_missing_module(py, &e, module_name) {
            log_exception(
                py,
                &e,
                &format!("Exception importing --hooks {module_name}"),
            );
        }
        HooksError::Import {
            module: module_name.to_string(),
            reason: one_line(py, &e),
        }
    })?;
    warn_about_master_hooks(&module, module_name);
    let mut found: [Option<Py<PyAny>>; HOOK_NAMES.len()] = Default::default();
    for (slot, name) in found.iter_mut().zip(HOOK_NAMES) {
        *slot = lookup_hook(&module, module_name, name)?;
    }
    let setup_error = |e: PyErr| HooksError::Setup {
        module: module_name.to_string(),
        reason: one_line(py, &e),
    };
    let names: Vec<&str> = HOOK_NAMES
        .iter()
        .zip(&found)
        .filter(|(_, hook)| hook.is_some())
        .map(|(name, _)| *name)
        .collect();
    log::debug!("Hooks from {module_name}: {}", names.join(", "));
    let namespace = py
        .import("types")
        .and_then(|types| types.getattr("SimpleNamespace"))
        .map_err(setup_error)?;
    let (worker, server) =
        hook_objects(py, &namespace, settings, master_pid, age).map_err(setup_error)?;
    let [post_fork, post_worker_init, pre_request, post_request, worker_int, worker_abort, worker_exit] =
        found;
    let abort_handler = match worker_abort {
        Some(hook) => install_abort_handler(py, hook, &worker),
        None => false,
    };
    Ok(Some(Hooks {
        namespace: namespace.unbind(),
        worker: worker.unbind(),
        server: server.unbind(),
        post_fork,
        post_worker_init,
        pre_request,
        post_request,
        worker_int,
        worker_exit,
        abort_handler,
    }))
}

/// Imports the hook module: a dotted module name, or the path of a `.py`
/// file (e.g. an existing `gunicorn.conf.py`), relative to the working
/// directory.
fn import_hook_module<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    if !name.ends_with(".py") {
        return py
            .import("importlib")?
            .call_method1("import_module", (name,));
    }
    let util = py.import("importlib.util")?;
    let spec = util.call_method1("spec_from_file_location", (HOOK_FILE_MODULE, name))?;
    if spec.is_none() {
        return Err(pyo3::exceptions::PyImportError::new_err(format!(
            "cannot load {name}"
        )));
    }
    let module = util.call_method1("module_from_spec", (&spec,))?;
    py.import("sys")?
        .getattr("modules")?
        .set_item(HOOK_FILE_MODULE, &module)?;
    spec.getattr("loader")?
        .call_method1("exec_module", (&module,))?;
    Ok(module)
}

/// The module name a hook file given by path is imported as.
const HOOK_FILE_MODULE: &str = "rgunicorn_hooks";

/// Logs, once, the master-side gunicorn hooks `module` defines: rgunicorn
/// never calls them.
fn warn_about_master_hooks(module: &Bound<'_, PyAny>, module_name: &str) {
    let defined: Vec<&str> = MASTER_HOOK_NAMES
        .iter()
        .copied()
        .filter(|name| module.getattr(*name).is_ok_and(|hook| !hook.is_none()))
        .collect();
    if !defined.is_empty() {
        log::warn!(
            "--hooks {module_name}: {} run in gunicorn's master, which rgunicorn never \
             gives Python; they are not called (see docs/hooks.md)",
            defined.join(", ")
        );
    }
}

/// Whether `err` only says that `module_name` itself does not exist (its
/// one-line message says all; a traceback would add nothing).
fn is_missing_module(py: Python<'_>, err: &PyErr, module_name: &str) -> bool {
    err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py)
        && err
            .value(py)
            .getattr("name")
            .and_then(|name| name.extract::<String>())
            .is_ok_and(|name| name == module_name)
}

/// The hook `name` in `module`: None when absent (or None), an error when
/// it is not callable.
fn lookup_hook(
    module: &Bound<'_, PyAny>,
    module_name: &str,
    name: &'static str,
) -> Result<Option<Py<PyAny>>, HooksError> {
    let Ok(hook) = module.getattr(name) else {
        return Ok(None);
    };
    if hook.is_none() {
        return Ok(None);
    }
    if !hook.is_callable() {
        return Err(HooksError::NotCallable {
            module: module_name.to_string(),
            name,
            kind: super::errors::type_name(&hook),
        });
    }
    Ok(Some(hook.unbind()))
}

/// The `worker` and `server` objects, with a shared read-only `cfg` and the
/// `rgunicorn.error` logger as `log`.
fn hook_objects<'py>(
    py: Python<'py>,
    namespace: &Bound<'py, PyAny>,
    settings: &Settings,
    master_pid: i32,
    age: u64,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let cfg = Bound::new(py, Config::from_settings(settings))?;
    let log = error_logger(py, &settings.log_level)?;
    let worker = PyDict::new(py);
    worker.set_item("pid", std::process::id())?;
    worker.set_item("ppid", master_pid)?;
    worker.set_item("age", age)?;
    worker.set_item("alive", true)?;
    worker.set_item("booted", false)?;
    worker.set_item("app", py.None())?;
    worker.set_item("wsgi", py.None())?;
    worker.set_item("cfg", &cfg)?;
    worker.set_item("log", &log)?;
    let server = PyDict::new(py);
    server.set_item("pid", master_pid)?;
    server.set_item("num_workers", settings.workers)?;
    server.set_item("cfg", &cfg)?;
    server.set_item("log", &log)?;
    Ok((
        namespace.call((), Some(&worker))?,
        namespace.call((), Some(&server))?,
    ))
}

/// Makes a SIGABRT (sent by the master to a worker stuck past `--timeout`)
/// call `worker_abort`. Python runs signal handlers in the main thread
/// between bytecodes, so this only happens if the stuck code returns to the
/// interpreter; faulthandler, enabled later, still dumps the tracebacks
/// first from the C signal handler and then chains to this one.
fn install_abort_handler(py: Python<'_>, hook: Py<PyAny>, worker: &Bound<'_, PyAny>) -> bool {
    let installed = Bound::new(
        py,
        AbortHandler {
            hook,
            worker: worker.clone().unbind(),
        },
    )
    .and_then(|handler| {
        let signal = py.import("signal")?;
        signal.call_method1("signal", (signal.getattr("SIGABRT")?, handler))
    });
    if let Err(e) = &installed {
        log::warn!("worker_abort hook not installed: {}", one_line(py, e));
    }
    installed.is_ok()
}

impl Hooks {
    /// Runs `post_fork(server, worker)`: the interpreter is up, the app is
    /// not imported yet.
    pub fn post_fork(&self, py: Python<'_>) {
        if let Some(hook) = &self.post_fork {
            self.call(py, hook, "post_fork", (&self.server, &self.worker));
        }
    }

    /// Records the loaded app as `worker.app` and runs
    /// `post_worker_init(worker)`.
    pub fn post_worker_init(&self, py: Python<'_>, app: &Py<PyAny>) {
        let worker = self.worker.bind(py);
        let recorded = worker
            .setattr("app", app)
            .and_then(|()| worker.setattr("wsgi", app))
            .and_then(|()| worker.setattr("booted", true));
        if let Err(e) = recorded {
            log_exception(py, &e, "Cannot set worker.app for the hooks");
        }
        if let Some(hook) = &self.post_worker_init {
            self.call(py, hook, "post_worker_init", (&self.worker,));
        }
    }

    /// Before the app is called: builds `req` (if a request hook exists) and
    /// runs `pre_request(worker, req)`. A raising `pre_request` is logged and
    /// the request goes on.
    pub fn before_request(
        &self,
        py: Python<'_>,
        buf: &[u8],
        head: &RequestHead,
        peer: &Endpoint,
        scheme: UrlScheme,
    ) -> Option<HookedRequest> {
        if self.pre_request.is_none() && self.post_request.is_none() {
            return None;
        }
        let namespace = self.namespace.bind(py);
        let req = match request_object(namespace, buf, head, peer, scheme) {
            Ok(req) => req,
            Err(e) => {
                log_exception(py, &e, "Cannot build the request object for the hooks");
                return None;
            }
        };
        if let Some(hook) = &self.pre_request {
            self.call(py, hook, "pre_request", (&self.worker, &req));
        }
        Some(HookedRequest {
            req: req.unbind(),
            environ: None,
            start_response: None,
        })
    }

    /// Runs `post_request(worker, req, environ, resp)` once the response is
    /// complete.
    pub fn after_request(&self, py: Python<'_>, hooked: HookedRequest, outcome: Outcome) {
        let Some(hook) = &self.post_request else {
            return;
        };
        let resp = match response_object(self.namespace.bind(py), &hooked, outcome) {
            Ok(resp) => resp,
            Err(e) => {
                log_exception(py, &e, "Cannot build the response object for the hooks");
                return;
            }
        };
        let environ = match &hooked.environ {
            Some(environ) => environ.bind(py).clone(),
            None => PyDict::new(py).into_any(),
        };
        self.call(
            py,
            hook,
            "post_request",
            (&self.worker, &hooked.req, environ, resp),
        );
    }

    /// Runs the Python signal handlers of signals that arrived while the
    /// worker was in its own loop rather than in Python code: a SIGABRT
    /// that found the worker idle runs `worker_abort` now, not in the middle
    /// of some later request. Nothing to do without a `worker_abort` hook.
    pub fn run_pending_signals(&self, py: Python<'_>) {
        if !self.handles_signals() {
            return;
        }
        if let Err(e) = py.check_signals() {
            log_exception(py, &e, "Exception in a Python signal handler");
        }
    }

    /// Whether a Python signal handler of ours (`worker_abort`) is
    /// installed, so the loop should let pending signals run.
    pub fn handles_signals(&self) -> bool {
        self.abort_handler
    }

    /// Marks the worker as stopping (`worker.alive = False`).
    pub fn stopping(&self, py: Python<'_>) {
        let _ = self.worker.bind(py).setattr("alive", false);
    }

    /// Runs `worker_int(worker)`: the worker got INT or QUIT and is about
    /// to exit at once.
    pub fn worker_int(&self, py: Python<'_>) {
        self.stopping(py);
        if let Some(hook) = &self.worker_int {
            self.call(py, hook, "worker_int", (&self.worker,));
        }
    }

    /// Runs `worker_exit(server, worker)`: the worker's loop is over and
    /// the process exits normally next.
    pub fn worker_exit(&self, py: Python<'_>) {
        self.stopping(py);
        if let Some(hook) = &self.worker_exit {
            self.call(py, hook, "worker_exit", (&self.server, &self.worker));
        }
    }

    /// Calls one hook; an exception is logged with its traceback.
    fn call<'py, A>(&self, py: Python<'py>, hook: &Py<PyAny>, name: &str, args: A)
    where
        A: pyo3::call::PyCallArgs<'py>,
    {
        if let Err(e) = hook.bind(py).call1(args) {
            log_exception(py, &e, &format!("Exception in {name} hook"));
        }
    }
}

/// gunicorn's `req`: method, uri, path, query (still percent-encoded),
/// version tuple, headers as `(NAME, value)` with upper-cased names,
/// remote_addr (`(host, port)`, or `''` on a unix socket), scheme (`https`
/// when a trusted proxy says so, as `wsgi.url_scheme`).
fn request_object<'py>(
    namespace: &Bound<'py, PyAny>,
    buf: &[u8],
    head: &RequestHead,
    peer: &Endpoint,
    scheme: UrlScheme,
) -> PyResult<Bound<'py, PyAny>> {
    let py = namespace.py();
    let headers = PyList::empty(py);
    let mut upper = Vec::new();
    for header in &head.headers {
        upper.clear();
        upper.extend(header.name.get(buf).iter().map(u8::to_ascii_uppercase));
        headers.append((latin1(py, &upper)?, latin1(py, header.value.get(buf))?))?;
    }
    let version = match head.version {
        crate::http::Version::Http10 => (1, 0),
        crate::http::Version::Http11 => (1, 1),
    };
    let remote_addr = match peer {
        Endpoint::Tcp(addr) => (addr.ip().to_string(), addr.port())
            .into_pyobject(py)?
            .into_any(),
        Endpoint::Unix => PyString::new(py, "").into_any(),
    };
    let fields = PyDict::new(py);
    fields.set_item("method", latin1(py, head.method.get(buf))?)?;
    fields.set_item("uri", latin1(py, head.target.get(buf))?)?;
    fields.set_item("path", latin1(py, head.path.get(buf))?)?;
    fields.set_item("query", latin1(py, head.query.get(buf))?)?;
    fields.set_item("fragment", "")?;
    fields.set_item("version", version)?;
    fields.set_item("headers", headers)?;
    fields.set_item("remote_addr", &remote_addr)?;
    fields.set_item("peer_addr", remote_addr)?;
    let scheme = match scheme {
        UrlScheme::Http => "http",
        UrlScheme::Https => "https",
    };
    fields.set_item("scheme", scheme)?;
    namespace.call((), Some(&fields))
}

/// gunicorn's `resp`, as far as `post_request` needs it: `status` (str),
/// `status_code` (int), `headers` (the app's, as `(name, value)` tuples) and
/// `sent` (body bytes).
fn response_object<'py>(
    namespace: &Bound<'py, PyAny>,
    hooked: &HookedRequest,
    outcome: Outcome,
) -> PyResult<Bound<'py, PyAny>> {
    let py = namespace.py();
    let fields = PyDict::new(py);
    let headers = PyList::empty(py);
    match (outcome, &hooked.start_response) {
        (Outcome::Completed { body_sent }, Some(start_response)) => {
            let start_response = start_response.borrow(py);
            let status = start_response
                .status()
                .unwrap_or(b"500 Internal Server Error");
            fields.set_item("status", latin1(py, status)?)?;
            fields.set_item("status_code", start_response.status_code().unwrap_or(500))?;
            for (name, value) in start_response.headers() {
                headers.append(PyTuple::new(py, [latin1(py, name)?, latin1(py, value)?])?)?;
            }
            fields.set_item("sent", body_sent)?;
        }
        (Outcome::Completed { body_sent }, None) => {
            fields.set_item("status", py.None())?;
            fields.set_item("status_code", py.None())?;
            fields.set_item("sent", body_sent)?;
        }
        (Outcome::ServerError, _) => {
            fields.set_item("status", "500 Internal Server Error")?;
            fields.set_item("status_code", 500)?;
            fields.set_item("sent", 0)?;
        }
    }
    fields.set_item("headers", headers)?;
    namespace.call((), Some(&fields))
}

/// Flushes `sys.stdout` and `sys.stderr` before the process ends abruptly.
fn flush_python_streams(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        for name in ["stdout", "stderr"] {
            if let Ok(stream) = sys.getattr(name) {
                let _ = stream.call_method0("flush");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::attach;
    use super::*;
    use crate::http::{parse_head, Limits, Status};

    fn namespace(py: Python<'_>) -> Bound<'_, PyAny> {
        py.import("types")
            .unwrap()
            .getattr("SimpleNamespace")
            .unwrap()
    }

    fn parsed(raw: &[u8]) -> RequestHead {
        let mut head = RequestHead::default();
        assert!(matches!(
            parse_head(raw, &mut head, &Limits::default()),
            Ok(Status::Complete(_))
        ));
        head
    }

    fn attr(object: &Bound<'_, PyAny>, name: &str) -> String {
        object.getattr(name).unwrap().repr().unwrap().to_string()
    }

    #[test]
    fn req_has_gunicorns_attributes() {
        attach(|py| {
            let raw = b"POST /a%20b/c?x=1&y HTTP/1.0\r\nHost: h\r\nx-Trace-Id: \xe9t\xe9\r\n\r\n";
            let head = parsed(raw);
            let peer = Endpoint::Tcp("127.0.0.1:4321".parse().unwrap());
            let req = request_object(&namespace(py), raw, &head, &peer, UrlScheme::Http).unwrap();
            let cases = [
                ("method", "'POST'"),
                ("uri", "'/a%20b/c?x=1&y'"),
                ("path", "'/a%20b/c'"),
                ("query", "'x=1&y'"),
                ("version", "(1, 0)"),
                ("headers", "[('HOST', 'h'), ('X-TRACE-ID', 'été')]"),
                ("remote_addr", "('127.0.0.1', 4321)"),
                ("scheme", "'http'"),
            ];
            for (name, expected) in cases {
                assert_eq!(attr(&req, name), expected, "req.{name}");
            }
            let unix = request_object(
                &namespace(py),
                raw,
                &head,
                &Endpoint::Unix,
                UrlScheme::Https,
            )
            .unwrap();
            assert_eq!(attr(&unix, "remote_addr"), "''");
            assert_eq!(attr(&unix, "scheme"), "'https'");
        });
    }

    #[test]
    fn resp_for_our_500_has_no_app_headers() {
        attach(|py| {
            let hooked = HookedRequest {
                req: py.None(),
                environ: None,
                start_response: None,
            };
            let resp = response_object(&namespace(py), &hooked, Outcome::ServerError).unwrap();
            assert_eq!(attr(&resp, "status"), "'500 Internal Server Error'");
            assert_eq!(attr(&resp, "status_code"), "500");
            assert_eq!(attr(&resp, "headers"), "[]");
            assert_eq!(attr(&resp, "sent"), "0");
        });
    }

    #[test]
    fn hooks_are_optional_but_must_be_callable() {
        attach(|py| {
            let module = PyModule::from_code(
                py,
                c"post_fork = None\nworker_int = 'text'\ndef pre_request(w, r): pass\n",
                c"hooks_under_test.py",
                c"hooks_under_test",
            )
            .unwrap()
            .into_any();
            assert!(lookup_hook(&module, "m", "post_fork").unwrap().is_none());
            assert!(lookup_hook(&module, "m", "worker_exit").unwrap().is_none());
            assert!(lookup_hook(&module, "m", "pre_request").unwrap().is_some());
            let err = lookup_hook(&module, "m", "worker_int").unwrap_err();
            assert_eq!(
                err.to_string(),
                "--hooks m: 'worker_int' is not callable (it is str)"
            );
        });
    }

    #[test]
    fn log_levels_map_to_python_numbers() {
        let cases = [
            ("debug", 10),
            ("info", 20),
            ("warning", 30),
            ("error", 40),
            ("critical", 50),
        ];
        for (name, number) in cases {
            assert_eq!(python_log_level(name), number, "{name}");
        }
    }

    #[test]
    fn cfg_is_read_only_and_shows_the_settings() {
        attach(|py| {
            let settings = <Settings as clap::Parser>::try_parse_from([
                "rgunicorn",
                "-w",
                "3",
                "-b",
                "127.0.0.1:9000",
                "-b",
                "unix:/tmp/s",
                "pkg.mod:app",
            ])
            .unwrap();
            let cfg = Bound::new(py, Config::from_settings(&settings))
                .unwrap()
                .into_any();
            assert_eq!(attr(&cfg, "workers"), "3");
            assert_eq!(attr(&cfg, "bind"), "['127.0.0.1:9000', 'unix:/tmp/s']");
            assert_eq!(attr(&cfg, "wsgi_app"), "'pkg.mod:app'");
            assert!(cfg.setattr("workers", 5).is_err());
        });
    }
}

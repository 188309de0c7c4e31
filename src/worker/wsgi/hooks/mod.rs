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
//!
//! This file owns loading and calling; beside it: `config` (the `cfg`
//! mirror), `objects` (`req` and `resp`), `abort` (the `worker_abort`
//! SIGABRT handler) and `error_log` (the Python logging bridge, with
//! error_logger.py).

mod abort;
mod config;
mod error_log;
mod objects;

pub use error_log::LOGGER_NAME;

use super::start_response::StartResponse;
use super::traceback::{log_exception, one_line};
use crate::config::{hooks_called_by, HookCaller, Settings};
use crate::http::{RequestHead, UrlScheme};
use crate::listener::Endpoint;
use abort::install_abort_handler;
use config::Config;
use error_log::error_logger;
use objects::{request_object, response_object};
use pyo3::prelude::*;
use pyo3::types::PyDict;

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
    let defined: Vec<&str> = hooks_called_by(HookCaller::Master)
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
    let log = error_logger(py, settings.log_level)?;
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

impl Hooks {
    /// Runs `post_fork(server, worker)`: the interpreter is up, the app is
    /// not imported yet (with `--preload` it is: the worker was forked from
    /// the zygote that imported it).
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
        if self.abort_handler {
            if let Err(e) = py.check_signals() {
                log_exception(py, &e, "Exception in a Python signal handler");
            }
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

#[cfg(test)]
mod tests {
    use super::super::test_support::attach;
    use super::*;

    #[test]
    fn the_hooks_called_are_gunicorns_worker_hooks() {
        let mut called = HOOK_NAMES.to_vec();
        let mut worker: Vec<&str> = hooks_called_by(HookCaller::Worker).collect();
        called.sort_unstable();
        worker.sort_unstable();
        assert_eq!(called, worker);
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
}

//! `worker_abort`: the Python-level SIGABRT handler that calls the hook and
//! then lets the process end by SIGABRT as it would have without it.

use super::super::traceback::{log_exception, one_line};
use pyo3::prelude::*;

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

/// Makes a SIGABRT (sent by the master to a worker stuck past `--timeout`)
/// call `worker_abort`. Python runs signal handlers in the main thread
/// between bytecodes, so this only happens if the stuck code returns to the
/// interpreter; faulthandler, enabled later, still dumps the tracebacks
/// first from the C signal handler and then chains to this one.
pub(super) fn install_abort_handler(
    py: Python<'_>,
    hook: Py<PyAny>,
    worker: &Bound<'_, PyAny>,
) -> bool {
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

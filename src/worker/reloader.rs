//! `--reload`: a worker watches the source files the application loaded
//! and, when one changes, asks the master for a graceful reload through its
//! heartbeat slot (no signal: a worker that dropped root with `--user` may
//! not signal the master). The master takes the requests of all workers in
//! one go, so one change means one reload, however many workers saw it; it
//! boots a fresh set of workers importing the new code, and if the new code
//! does not load, the old workers keep serving.
//!
//! The master never runs Python, so the workers are the ones who know which
//! files are loaded: the `__file__` of every module in `sys.modules`, taken
//! once after the app is loaded and again only when `sys.modules` grows,
//! plus the `--reload-extra-file`s. The check is one `stat` per file, at
//! most once a second, from the event loop's tick. The state lives in a
//! thread-local because only the worker's main thread runs the loop.

use crate::config::Settings;
use crate::heartbeat::Heartbeat;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// How often the files are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    static RELOADER: RefCell<Option<Reloader>> = const { RefCell::new(None) };
}

/// The watched files and what they looked like last time.
struct Reloader {
    /// Each file's modification time when last seen (`None`: missing).
    mtimes: HashMap<PathBuf, Option<SystemTime>>,
    /// `len(sys.modules)` when the module files were last collected.
    modules_seen: usize,
    next_check: Instant,
}

/// With `--reload`: starts watching (call once the app is loaded).
pub fn start(py: Python<'_>, settings: &Settings) {
    if !settings.reload {
        return;
    }
    let mut reloader = Reloader {
        mtimes: HashMap::new(),
        modules_seen: 0,
        next_check: Instant::now() + CHECK_INTERVAL,
    };
    for path in &settings.reload_extra_files {
        reloader.watch(path.clone());
    }
    reloader.collect_module_files(py);
    RELOADER.with(|cell| *cell.borrow_mut() = Some(reloader));
}

/// Whether `--reload` is watching (so the loop need not take the GIL for
/// [`on_tick`] otherwise).
pub fn is_watching() -> bool {
    RELOADER.with(|cell| cell.borrow().is_some())
}

/// From the event loop's tick: at most once a second, checks the watched
/// files and asks the master to reload when one changed.
pub fn on_tick(py: Python<'_>, heartbeat: &Heartbeat) {
    RELOADER.with(|cell| {
        if let Some(reloader) = cell.borrow_mut().as_mut() {
            reloader.check(py, heartbeat);
        }
    });
}

impl Reloader {
    fn check(&mut self, py: Python<'_>, heartbeat: &Heartbeat) {
        let now = Instant::now();
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_INTERVAL;
        if modules_count(py) != Some(self.modules_seen) {
            self.collect_module_files(py);
        }
        if let Some(path) = self.first_changed() {
            log::info!("Worker reloading: {} modified", path.display());
            heartbeat.request_reload();
        }
    }

    /// Records the current mtime of every changed file; returns the first.
    fn first_changed(&mut self) -> Option<PathBuf> {
        let mut changed = None;
        for (path, seen) in self.mtimes.iter_mut() {
            let now = modified(path);
            if now != *seen {
                *seen = now;
                changed.get_or_insert_with(|| path.clone());
            }
        }
        changed
    }

    /// Starts watching `path` at its current mtime (no-op if watched).
    fn watch(&mut self, path: PathBuf) {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.mtimes.entry(path) {
            let mtime = modified(entry.key());
            entry.insert(mtime);
        }
    }

    /// Adds the files of the modules loaded since the last collection.
    fn collect_module_files(&mut self, py: Python<'_>) {
        match module_files(py) {
            Ok((count, files)) => {
                self.modules_seen = count;
                for file in files {
                    self.watch(file);
                }
            }
            Err(e) => log::warn!(
                "--reload: cannot list the loaded modules: {}",
                super::wsgi::traceback::one_line(py, &e)
            ),
        }
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn sys_modules<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    Ok(py
        .import("sys")?
        .getattr("modules")?
        .cast_into::<PyDict>()?)
}

fn modules_count(py: Python<'_>) -> Option<usize> {
    sys_modules(py).ok().map(|modules| modules.len())
}

/// `len(sys.modules)` and the `__file__` of each module that has one.
fn module_files(py: Python<'_>) -> PyResult<(usize, Vec<PathBuf>)> {
    let modules = sys_modules(py)?;
    // A copy: importing (another thread) may change the dict meanwhile.
    let values: Bound<'_, PyList> = modules.values();
    let mut files = Vec::with_capacity(values.len());
    for module in values.iter() {
        let Ok(file) = module.getattr(pyo3::intern!(py, "__file__")) else {
            continue;
        };
        if let Ok(path) = file.extract::<PathBuf>() {
            files.push(path);
        }
    }
    Ok((values.len(), files))
}

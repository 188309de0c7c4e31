//! Starting the embedded CPython: the interpreter the binary is told to run
//! ([`expected_python`]: the wheel's launcher at run time, or `build.rs`),
//! verified against what the dynamic loader really loaded, with the user's
//! virtualenv, `--chdir` and `--pythonpath` applied exactly as `python3`
//! would see them.
//!
//! Start-up order: take the expected interpreter (which also gives the app
//! back the caller's `LD_LIBRARY_PATH`), verify the loaded libpython and its
//! version against it, verify the virtualenv (if any) was made by the same
//! Python `major.minor`, initialise CPython from a `PyConfig` whose
//! `program_name` is the virtualenv's `bin/python` (so CPython's own path
//! calculation reads `pyvenv.cfg`, exactly as when `python3` runs there) or
//! the expected interpreter's executable, then put the working directory and
//! `--pythonpath` at the front of `sys.path` as gunicorn does.
//!
//! This module never runs a different interpreter silently: every mismatch is
//! an [`InterpreterError`] with a one-line explanation.

use super::expected_python::{self, short_version, version_word, ExpectedPython, Origin};
use crate::config::Settings;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why the interpreter could not start. Each message is one line for the log.
#[derive(Debug, thiserror::Error)]
pub enum InterpreterError {
    /// The libpython the dynamic loader gave us is not the one we were built
    /// against (a different version or a different installation).
    #[error("wrong libpython loaded: {0}")]
    WrongLibpython(String),
    /// The virtualenv is missing, incomplete, or made by another Python.
    #[error("--virtualenv {}: {problem}", path.display())]
    Virtualenv { path: PathBuf, problem: String },
    /// Nothing says which interpreter to run.
    #[error("{0}")]
    Unknown(#[from] expected_python::ExpectedPythonError),
    /// Initialisation failed (bad virtualenv, missing stdlib, ...).
    #[error("cannot start Python: {0}")]
    Init(String),
}

/// Initialises CPython in this process, with `argv` (the command line
/// rgunicorn was started with) as `sys.argv`. Must be called at most once,
/// before any `Python::attach`.
///
/// Returns with the GIL released: callers use `Python::attach`.
pub fn start(settings: &Settings, argv: &[std::ffi::OsString]) -> Result<(), InterpreterError> {
    let expected = expected_python::take()?;
    verify_version(&expected)?;
    verify_libpython(&expected)?;
    // An empty $VIRTUAL_ENV means none.
    let virtualenv = settings
        .virtualenv
        .as_ref()
        .filter(|v| !v.as_os_str().is_empty());
    let program = match virtualenv {
        Some(venv) => verify_virtualenv(venv, &expected)?,
        None => expected.executable.clone(),
    };
    initialize(&program, argv, settings.capture_output)?;
    Python::attach(|py| prepend_sys_path(py, &settings.pythonpath))
        .map_err(|e| InterpreterError::Init(format!("cannot set sys.path: {e}")))
}

/// What to do about a mismatch, for the end of a message.
fn remedy(expected: &ExpectedPython) -> &'static str {
    match expected.origin {
        Origin::Launcher => "start rgunicorn with the Python it is installed in",
        Origin::Build => "check LD_LIBRARY_PATH or rebuild rgunicorn",
    }
}

/// Check (a): the loaded libpython reports the expected version (and so
/// the `major.minor` the binary's ABI is for).
fn verify_version(expected: &ExpectedPython) -> Result<(), InterpreterError> {
    // SAFETY: Py_GetVersion may be called before initialisation; it returns
    // a pointer to a static NUL-terminated buffer owned by libpython.
    let runtime = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) };
    let runtime = runtime.to_string_lossy();
    let loaded = version_word(&runtime);
    if loaded != expected.version {
        return Err(InterpreterError::WrongLibpython(format!(
            "Python {loaded} is loaded, but rgunicorn was told to run {}; {}",
            expected.describe(),
            remedy(expected)
        )));
    }
    if short_version(loaded).as_deref() != Some(expected_python::ABI_VERSION) {
        return Err(InterpreterError::WrongLibpython(format!(
            "Python {loaded} is loaded, but this rgunicorn is built for Python {}",
            expected_python::ABI_VERSION
        )));
    }
    Ok(())
}

/// Check (b): the shared object that defines `Py_Initialize` in this
/// process is the expected libpython (skipped when libpython is linked
/// statically).
fn verify_libpython(expected: &ExpectedPython) -> Result<(), InterpreterError> {
    let Some(expected_path) = &expected.libpython else {
        return Ok(());
    };
    let canonical = expected_path.canonicalize().map_err(|e| {
        InterpreterError::WrongLibpython(format!(
            "the libpython of {} ({}) is gone: {e}",
            expected.describe(),
            expected_path.display()
        ))
    })?;
    let loaded = loaded_libpython()?;
    let loaded_canonical = loaded.canonicalize().unwrap_or_else(|_| loaded.clone());
    if loaded_canonical != canonical {
        return Err(InterpreterError::WrongLibpython(format!(
            "{} is loaded, but {} has {}; {}",
            loaded.display(),
            expected.describe(),
            canonical.display(),
            remedy(expected)
        )));
    }
    Ok(())
}

/// The path of the shared object that defines `Py_Initialize`, as the
/// dynamic loader reports it.
fn loaded_libpython() -> Result<PathBuf, InterpreterError> {
    let symbol = ffi::Py_Initialize as *const libc::c_void;
    // SAFETY: Dl_info is plain data (pointers and integers); all-zero is a
    // valid value that dladdr overwrites.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `symbol` is the address of a function in a loaded object and
    // `info` is a valid, writable Dl_info.
    let found = unsafe { libc::dladdr(symbol, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err(InterpreterError::WrongLibpython(
            "cannot tell which libpython is loaded (dladdr failed)".to_string(),
        ));
    }
    // SAFETY: dladdr succeeded, so dli_fname points to a NUL-terminated path
    // owned by the loader, valid while the object stays loaded (for ever).
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Ok(PathBuf::from(OsString::from(std::ffi::OsStr::from_bytes(
        name.to_bytes(),
    ))))
}

/// Check (c): `venv` is a virtualenv made by the expected Python
/// `major.minor`. Returns its `bin/python`, the program name CPython starts
/// from.
fn verify_virtualenv(venv: &Path, expected: &ExpectedPython) -> Result<PathBuf, InterpreterError> {
    let problem = |problem: String| InterpreterError::Virtualenv {
        path: venv.to_path_buf(),
        problem,
    };
    // Relative to the working directory (after --chdir), symlinks kept so
    // sys.prefix reads as the user wrote it.
    let venv = &std::path::absolute(venv)
        .map_err(|e| problem(format!("cannot make the path absolute: {e}")))?;
    if !venv.is_dir() {
        return Err(problem("no such directory".to_string()));
    }
    let cfg_path = venv.join("pyvenv.cfg");
    let cfg = std::fs::read_to_string(&cfg_path)
        .map_err(|e| problem(format!("not a virtualenv: cannot read pyvenv.cfg: {e}")))?;
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Err(problem(
            "not a virtualenv: bin/python is missing (or a broken link)".to_string(),
        ));
    }
    let created_with = pyvenv_short_version(&cfg).ok_or_else(|| {
        problem("pyvenv.cfg names no Python version (no `version` or `version_info`)".to_string())
    })?;
    let running = short_version(&expected.version).unwrap_or_default();
    if created_with != running {
        let remedy = match expected.origin {
            Origin::Launcher => format!(
                "install rgunicorn into it and run its bin/rgunicorn ({})",
                venv.join("bin").join("rgunicorn").display()
            ),
            Origin::Build => format!("rebuild rgunicorn with PYO3_PYTHON={}", python.display()),
        };
        return Err(problem(format!(
            "created with Python {created_with}, but rgunicorn runs {}; {remedy}",
            expected.describe()
        )));
    }
    Ok(python)
}

/// `major.minor` from a pyvenv.cfg's `version` (venv, virtualenv) or
/// `version_info` (uv, virtualenv) key.
fn pyvenv_short_version(cfg: &str) -> Option<String> {
    cfg.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| matches!(key.trim(), "version" | "version_info"))
        .find_map(|(_, value)| short_version(value))
}

/// Turns a failed `PyStatus` into an error message.
fn check_status(status: ffi::PyStatus, what: &str) -> Result<(), InterpreterError> {
    // SAFETY: PyStatus_Exception only reads the by-value struct.
    if unsafe { ffi::PyStatus_Exception(status) } == 0 {
        return Ok(());
    }
    let text = |ptr: *const libc::c_char| {
        if ptr.is_null() {
            return None;
        }
        // SAFETY: non-null PyStatus strings are static C strings in libpython.
        let text = unsafe { CStr::from_ptr(ptr) };
        Some(text.to_string_lossy().into_owned())
    };
    let message = match (text(status.func), text(status.err_msg)) {
        (Some(func), Some(msg)) => format!("{what}: {func}: {msg}"),
        (None, Some(msg)) => format!("{what}: {msg}"),
        _ => format!("{what}: exit status {}", status.exitcode),
    };
    Err(InterpreterError::Init(message))
}

/// A C string for a path (paths never contain NUL on Unix, but check).
fn c_path(path: &Path) -> Result<CString, InterpreterError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| InterpreterError::Init(format!("path contains NUL: {}", path.display())))
}

/// Runs `Py_InitializeFromConfig` with `program` as program name and
/// executable, `args` (rgunicorn's command line, which the master captured
/// before its process title overwrote it) as `sys.argv`, and no signal
/// handlers; then releases the GIL.
fn initialize(
    program: &Path,
    args: &[std::ffi::OsString],
    unbuffered_stdio: bool,
) -> Result<(), InterpreterError> {
    let program = c_path(program)?;
    let args: Vec<CString> = args
        .iter()
        .filter_map(|arg| CString::new(arg.as_bytes()).ok())
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();

    let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: PyConfig_InitPythonConfig fully initialises the struct it is
    // given (a valid, writable PyConfig-sized buffer).
    unsafe { ffi::PyConfig_InitPythonConfig(config.as_mut_ptr()) };
    // SAFETY: initialised just above.
    let mut config = unsafe { config.assume_init() };
    let result = configure_and_initialize(&mut config, &program, &mut argv, unbuffered_stdio);
    // SAFETY: `config` was initialised by PyConfig_InitPythonConfig; Clear
    // frees the strings it owns and may be called exactly once here.
    unsafe { ffi::PyConfig_Clear(&mut config) };
    result?;
    // SAFETY: Py_InitializeFromConfig succeeded, so this thread holds the
    // GIL; releasing it lets every later user go through Python::attach. The
    // returned thread state stays registered for this thread and is reused
    // by PyGILState_Ensure.
    unsafe { ffi::PyEval_SaveThread() };
    Ok(())
}

/// Fills `config` and initialises the interpreter from it.
fn configure_and_initialize(
    config: &mut ffi::PyConfig,
    program: &CStr,
    argv: &mut [*const libc::c_char],
    unbuffered_stdio: bool,
) -> Result<(), InterpreterError> {
    // The worker owns signals (and SIGPIPE): Python must not install its own.
    config.install_signal_handlers = 0;
    // --capture-output: each print reaches the error log as it happens, not
    // when a block buffer fills.
    if unbuffered_stdio {
        config.buffered_stdio = 0;
    }
    // Our argv is rgunicorn's command line, not Python options.
    config.parse_argv = 0;
    let config_ptr: *mut ffi::PyConfig = config;
    // SAFETY: config_ptr points to an initialised PyConfig; the field
    // pointers are derived from it and `program` is a NUL-terminated string
    // that PyConfig_SetBytesString copies.
    let status = unsafe {
        ffi::PyConfig_SetBytesString(
            config_ptr,
            std::ptr::addr_of_mut!((*config_ptr).program_name),
            program.as_ptr(),
        )
    };
    check_status(status, "setting program_name")?;
    // SAFETY: as above, for the executable field.
    let status = unsafe {
        ffi::PyConfig_SetBytesString(
            config_ptr,
            std::ptr::addr_of_mut!((*config_ptr).executable),
            program.as_ptr(),
        )
    };
    check_status(status, "setting executable")?;
    // SAFETY: argv holds argv.len() pointers to NUL-terminated strings that
    // outlive the call; CPython copies them.
    let status = unsafe {
        ffi::PyConfig_SetBytesArgv(config_ptr, argv.len() as ffi::Py_ssize_t, argv.as_mut_ptr())
    };
    check_status(status, "setting argv")?;
    // SAFETY: the config is complete; this is the process's only
    // initialisation (the caller's contract).
    let status = unsafe { ffi::Py_InitializeFromConfig(config_ptr) };
    check_status(status, "initialising")
}

/// Puts the working directory, then each `--pythonpath` entry, at the front
/// of `sys.path`, skipping those already there (gunicorn's order: the last
/// `--pythonpath` entry ends up first, the working directory after them).
fn prepend_sys_path(py: Python<'_>, pythonpath: &[PathBuf]) -> PyResult<()> {
    let os = py.import("os")?;
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    let prepend = |entry: Bound<'_, PyAny>| -> PyResult<()> {
        if !sys_path.contains(&entry)? {
            sys_path.insert(0, entry)?;
        }
        Ok(())
    };
    prepend(os.call_method0("getcwd")?)?;
    let abspath = os.getattr("path")?.getattr("abspath")?;
    let fsdecode = os.getattr("fsdecode")?;
    for entry in pythonpath {
        let raw = PyBytes::new(py, entry.as_os_str().as_bytes());
        prepend(abspath.call1((fsdecode.call1((raw,))?,))?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyvenv_version_is_read_from_version_or_version_info() {
        assert_eq!(
            pyvenv_short_version("home = /usr/bin\nversion = 3.12.1\n").as_deref(),
            Some("3.12")
        );
        assert_eq!(
            pyvenv_short_version("home=/x\nversion_info=3.11.7.final.0\n").as_deref(),
            Some("3.11")
        );
        assert_eq!(pyvenv_short_version("home = /usr/bin\n"), None);
        assert_eq!(pyvenv_short_version("version = three\n"), None);
    }

    /// What a cargo-built test binary expects: its build interpreter.
    fn build_python() -> ExpectedPython {
        let expected = expected_python::take().unwrap();
        assert_eq!(expected.origin, Origin::Build);
        expected
    }

    fn build_short_version() -> String {
        short_version(&build_python().version).unwrap()
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rgunicorn-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        dir
    }

    #[test]
    fn virtualenv_of_another_python_is_rejected_with_a_rebuild_hint() {
        let venv = scratch_dir("venv312");
        std::fs::write(
            venv.join("pyvenv.cfg"),
            "home = /usr/bin\nversion = 3.12.1\n",
        )
        .unwrap();
        std::fs::write(venv.join("bin/python"), "").unwrap();
        let build = build_python();
        let message = verify_virtualenv(&venv, &build).unwrap_err().to_string();
        std::fs::remove_dir_all(&venv).unwrap();
        let expected = format!(
            "--virtualenv {dir}: created with Python 3.12, but rgunicorn runs Python {version} \
             ({executable}); rebuild rgunicorn with PYO3_PYTHON={dir}/bin/python",
            dir = venv.display(),
            version = build.version,
            executable = build.executable.display(),
        );
        if build_short_version() != "3.12" {
            assert_eq!(message, expected);
        }
    }

    #[test]
    fn virtualenv_without_pyvenv_cfg_or_python_is_rejected() {
        let venv = scratch_dir("notvenv");
        let build = build_python();
        let message = verify_virtualenv(&venv, &build).unwrap_err().to_string();
        assert!(message.contains("cannot read pyvenv.cfg"), "{message}");
        let cfg = format!("version = {}.0\n", build_short_version());
        std::fs::write(venv.join("pyvenv.cfg"), cfg).unwrap();
        let message = verify_virtualenv(&venv, &build).unwrap_err().to_string();
        assert!(message.contains("bin/python is missing"), "{message}");
        std::fs::write(venv.join("bin/python"), "").unwrap();
        assert_eq!(
            verify_virtualenv(&venv, &build).unwrap(),
            venv.join("bin/python")
        );
        std::fs::remove_dir_all(&venv).unwrap();
        let missing = verify_virtualenv(Path::new("/nonexistent/venv"), &build).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "--virtualenv /nonexistent/venv: no such directory"
        );
    }

    #[test]
    fn loaded_libpython_is_the_build_interpreters() {
        let build = build_python();
        verify_version(&build).unwrap();
        verify_libpython(&build).unwrap();
        if let Some(built) = &build.libpython {
            let loaded = loaded_libpython().unwrap().canonicalize().unwrap();
            assert_eq!(loaded, built.canonicalize().unwrap());
        }
    }

    #[test]
    fn a_launcher_naming_another_libpython_or_version_is_refused() {
        let build = build_python();
        let elsewhere = ExpectedPython {
            origin: Origin::Launcher,
            executable: PathBuf::from("/usr/bin/python3"),
            libpython: Some(PathBuf::from("/dev/null")),
            version: build.version.clone(),
        };
        let message = verify_libpython(&elsewhere).unwrap_err().to_string();
        assert!(
            message.starts_with("wrong libpython loaded: ")
                && message.contains("but Python ")
                && message.contains("has /dev/null; start rgunicorn with the Python"),
            "{message}"
        );
        let older = ExpectedPython {
            version: "3.0.1".to_string(),
            ..elsewhere
        };
        let message = verify_version(&older).unwrap_err().to_string();
        assert!(
            message.contains("but rgunicorn was told to run Python 3.0.1 (/usr/bin/python3)"),
            "{message}"
        );
    }

    #[test]
    fn started_interpreter_is_the_build_one_with_cwd_on_sys_path() {
        super::super::test_support::python();
        super::super::test_support::attach(|py| {
            let sys = py.import("sys").unwrap();
            let version: String = sys.getattr("version").unwrap().extract().unwrap();
            assert_eq!(version_word(&version), build_python().version);
            let path: Vec<String> = sys.getattr("path").unwrap().extract().unwrap();
            let cwd = std::env::current_dir().unwrap();
            assert!(path.iter().any(|p| Path::new(p) == cwd), "{path:?}");
            let argv: Vec<String> = sys.getattr("argv").unwrap().extract().unwrap();
            assert!(!argv.is_empty());
        });
    }

    /// Runs in a child process (see the test below): starts Python with the
    /// virtualenv named by `RGUNICORN_TEST_VENV` and prints what it sees.
    #[test]
    #[ignore = "run by virtualenv_site_packages_are_on_sys_path in a child process"]
    fn child_prints_sys_prefix_and_path() {
        let venv = std::env::var("RGUNICORN_TEST_VENV").expect("RGUNICORN_TEST_VENV");
        let settings = <Settings as clap::Parser>::try_parse_from([
            "rgunicorn",
            "--virtualenv",
            &venv,
            "--pythonpath",
            "/tmp/first-extra,/tmp/second-extra",
            "x:app",
        ])
        .unwrap();
        start(&settings, &crate::proc_title::original_args()).unwrap();
        Python::attach(|py| {
            let sys = py.import("sys").unwrap();
            let prefix: String = sys.getattr("prefix").unwrap().extract().unwrap();
            let path: Vec<String> = sys.getattr("path").unwrap().extract().unwrap();
            println!("PREFIX={prefix}");
            println!("PATH={}", path.join("|"));
        });
    }

    /// Runs `command` to completion, killing it (by its pid) if it takes
    /// more than a minute.
    fn run_bounded(mut command: std::process::Command) -> std::process::Output {
        use std::process::Stdio;
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let output = child.wait_with_output();
            let _ = done_tx.send(());
            output
        });
        if done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_err()
        {
            // SAFETY: kill(2) on the pid of a child we spawned and have not
            // reaped yet (the waiter thread is still waiting on it).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        waiter.join().unwrap().unwrap()
    }

    #[test]
    fn virtualenv_site_packages_are_on_sys_path() {
        let venv = std::env::temp_dir().join(format!("rgunicorn-realvenv-{}", std::process::id()));
        let mut create = std::process::Command::new(build_python().executable);
        create.args(["-m", "venv", "--without-pip"]).arg(&venv);
        assert!(run_bounded(create).status.success());
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "worker::wsgi::interpreter::tests::child_prints_sys_prefix_and_path",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RGUNICORN_TEST_VENV", &venv);
        let output = run_bounded(child);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        std::fs::remove_dir_all(&venv).unwrap();
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let venv = venv.to_string_lossy();
        assert!(stdout.contains(&format!("PREFIX={venv}\n")), "{stdout}");
        let path_line = stdout.lines().find(|l| l.starts_with("PATH=")).unwrap();
        let entries: Vec<&str> = path_line["PATH=".len()..].split('|').collect();
        let site = format!("{venv}/lib/python{}/site-packages", build_short_version());
        assert!(entries.contains(&site.as_str()), "{entries:?}");
        assert_eq!(entries[0], "/tmp/second-extra");
        assert_eq!(entries[1], "/tmp/first-extra");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Path::new(entries[2]), cwd);
    }
}

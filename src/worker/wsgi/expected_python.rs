//! Which Python a worker must run, and who says so: the launcher of the
//! Python wheel at run time, or `build.rs` for a cargo-built binary.
//!
//! The wheel's binary (`--features wheel`) records no path of the build
//! machine. Its launcher (`python/rgunicorn/launcher.py`, the `rgunicorn`
//! command of the wheel and `python -m rgunicorn`) runs under the
//! interpreter being served, reads its `sysconfig`, and execs the binary
//! with that interpreter's `LIBDIR` first on `LD_LIBRARY_PATH` and these
//! facts in the environment:
//!
//! * [`LAUNCH_PYTHON`], `sys.executable`: the program the embedded
//!   interpreter starts as (so a virtualenv's `pyvenv.cfg` is read);
//! * [`LAUNCH_LIBPYTHON`], `LIBDIR/libpython3.X.so.1.0`: the library that
//!   must be the one loaded;
//! * [`LAUNCH_VERSION`], the version word of `sys.version` (`3.11.7`);
//! * [`LAUNCH_ORIGINAL_LD_LIBRARY_PATH`], the caller's `LD_LIBRARY_PATH`,
//!   when it had one.
//!
//! The master never reads them (it never starts Python) and keeps them, so
//! a USR2 successor exec'd from it loads the same libpython. Each worker
//! takes them out of its own environment before Python starts, and puts
//! `LD_LIBRARY_PATH` back as the caller had it: the app and its
//! subprocesses see the environment the user gave. (A worker program
//! separate from the master could take the same facts the same way.)
//!
//! A cargo-built binary has an rpath to the build interpreter's `LIBDIR`
//! and the facts `build.rs` recorded; the launcher's facts, when present,
//! win (`LD_LIBRARY_PATH` wins over the rpath too, so they describe what the
//! loader did).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `sys.executable` of the interpreter the launcher ran under.
pub const LAUNCH_PYTHON: &str = "RGUNICORN_LAUNCH_PYTHON";
/// The libpython the launcher put first on the library path.
pub const LAUNCH_LIBPYTHON: &str = "RGUNICORN_LAUNCH_LIBPYTHON";
/// The version word of that interpreter's `sys.version`.
pub const LAUNCH_VERSION: &str = "RGUNICORN_LAUNCH_VERSION";
/// The caller's `LD_LIBRARY_PATH` (absent when the caller had none).
pub const LAUNCH_ORIGINAL_LD_LIBRARY_PATH: &str = "RGUNICORN_LAUNCH_ORIGINAL_LD_LIBRARY_PATH";
const LD_LIBRARY_PATH: &str = "LD_LIBRARY_PATH";

/// The CPython `major.minor` whose ABI the binary is compiled for (the
/// soname of the libpython it needs).
pub const ABI_VERSION: &str = env!("RGUNICORN_PYTHON_SHORT_VERSION");
/// The build interpreter's full `sys.version` (empty for the wheel).
const BUILD_VERSION: &str = env!("RGUNICORN_PYTHON_VERSION");
/// The build interpreter's executable, symlinks resolved (empty for the wheel).
const BUILD_EXECUTABLE: &str = env!("RGUNICORN_PYTHON_EXECUTABLE");
/// The directory of the build interpreter's libpython (empty for the wheel).
const BUILD_LIBDIR: &str = env!("RGUNICORN_PYTHON_LIBDIR");
/// The file name of the build interpreter's libpython (empty for the wheel).
const BUILD_LDLIBRARY: &str = env!("RGUNICORN_PYTHON_LDLIBRARY");
/// `1` when pyo3 links libpython as a shared library.
const BUILD_SHARED: &str = env!("RGUNICORN_PYTHON_SHARED");

/// Who named the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The wheel's launcher, at run time.
    Launcher,
    /// `build.rs`, for a cargo-built binary.
    Build,
}

/// The interpreter a worker must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPython {
    pub origin: Origin,
    /// The program name CPython starts from when there is no `--virtualenv`.
    pub executable: PathBuf,
    /// The libpython that must be the one loaded (`None`: linked statically).
    pub libpython: Option<PathBuf>,
    /// The version word of `sys.version`, e.g. `3.11.7`.
    pub version: String,
}

/// Why the expected interpreter is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpectedPythonError {
    /// The wheel's binary was started without its launcher.
    #[error(
        "this rgunicorn binary belongs to the Python wheel and records no interpreter: \
         start it with the `rgunicorn` command or `python -m rgunicorn`"
    )]
    NotLaunched,
    /// The launcher's variables are incomplete.
    #[error("{0} is not set, but {LAUNCH_PYTHON} is: start rgunicorn with its launcher")]
    Incomplete(&'static str),
}

impl ExpectedPython {
    /// A short description for messages: `Python 3.11.7 (/usr/bin/python3)`.
    pub fn describe(&self) -> String {
        format!("Python {} ({})", self.version, self.executable.display())
    }
}

/// Reads the expected interpreter and, when the launcher named it, removes
/// the launcher's variables from this process's environment and restores
/// the caller's `LD_LIBRARY_PATH`. Call in a worker, single-threaded, before
/// Python starts (CPython copies the environment into `os.environ`).
pub fn take() -> Result<ExpectedPython, ExpectedPythonError> {
    let Some(executable) = std::env::var_os(LAUNCH_PYTHON) else {
        return from_build();
    };
    let variable =
        |name: &'static str| std::env::var_os(name).ok_or(ExpectedPythonError::Incomplete(name));
    let libpython = PathBuf::from(variable(LAUNCH_LIBPYTHON)?);
    let version = variable(LAUNCH_VERSION)?.to_string_lossy().into_owned();
    let original = std::env::var_os(LAUNCH_ORIGINAL_LD_LIBRARY_PATH);
    let current = std::env::var_os(LD_LIBRARY_PATH);
    // Only undo what the launcher did: a `--env LD_LIBRARY_PATH=...` given
    // to rgunicorn (applied before this) is the user's and stays.
    if current == Some(launcher_library_path(&libpython, original.as_ref())) {
        match original {
            Some(value) => std::env::set_var(LD_LIBRARY_PATH, value),
            None => std::env::remove_var(LD_LIBRARY_PATH),
        }
    }
    for name in [
        LAUNCH_PYTHON,
        LAUNCH_LIBPYTHON,
        LAUNCH_VERSION,
        LAUNCH_ORIGINAL_LD_LIBRARY_PATH,
    ] {
        std::env::remove_var(name);
    }
    Ok(ExpectedPython {
        origin: Origin::Launcher,
        executable: PathBuf::from(executable),
        libpython: Some(libpython),
        version,
    })
}

/// The `LD_LIBRARY_PATH` the launcher sets: the libpython's directory, then
/// the caller's value if it had a non-empty one.
fn launcher_library_path(libpython: &Path, original: Option<&OsString>) -> OsString {
    let mut value = libpython
        .parent()
        .map(|dir| dir.as_os_str().to_os_string())
        .unwrap_or_default();
    if let Some(original) = original.filter(|o| !o.is_empty()) {
        value.push(":");
        value.push(original);
    }
    value
}

/// The facts `build.rs` recorded (none for the wheel's binary).
fn from_build() -> Result<ExpectedPython, ExpectedPythonError> {
    if cfg!(feature = "wheel") || BUILD_EXECUTABLE.is_empty() {
        return Err(ExpectedPythonError::NotLaunched);
    }
    let libpython =
        (BUILD_SHARED == "1" && !BUILD_LIBDIR.is_empty() && !BUILD_LDLIBRARY.is_empty())
            .then(|| Path::new(BUILD_LIBDIR).join(BUILD_LDLIBRARY));
    Ok(ExpectedPython {
        origin: Origin::Build,
        executable: PathBuf::from(BUILD_EXECUTABLE),
        libpython,
        version: version_word(BUILD_VERSION).to_string(),
    })
}

/// The version word of a `sys.version` string (`3.11.7` of
/// `3.11.7 (main, ...) [GCC 12.2.0]`).
pub fn version_word(version: &str) -> &str {
    version.split_whitespace().next().unwrap_or("")
}

/// `major.minor` of a version such as `3.11.7` (`None` if it has no two
/// numeric parts).
pub fn short_version(version: &str) -> Option<String> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.trim();
    let minor = parts.next()?.trim();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(major) && numeric(minor)).then(|| format!("{major}.{minor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_word_is_the_first_word_of_sys_version() {
        assert_eq!(
            version_word("3.11.7 (main, May  9 2026) [GCC 12]"),
            "3.11.7"
        );
        assert_eq!(version_word(""), "");
    }

    #[test]
    fn short_version_is_major_dot_minor() {
        assert_eq!(short_version("3.12.1").as_deref(), Some("3.12"));
        assert_eq!(short_version("3.11.7.final.0").as_deref(), Some("3.11"));
        assert_eq!(short_version("three"), None);
        assert_eq!(short_version("3"), None);
    }

    #[test]
    fn launcher_library_path_puts_libdir_before_the_callers_value() {
        let lib = Path::new("/opt/py/lib/libpython3.11.so.1.0");
        assert_eq!(launcher_library_path(lib, None), "/opt/py/lib");
        let empty = OsString::new();
        assert_eq!(launcher_library_path(lib, Some(&empty)), "/opt/py/lib");
        let theirs = OsString::from("/x:/y");
        assert_eq!(
            launcher_library_path(lib, Some(&theirs)),
            "/opt/py/lib:/x:/y"
        );
    }

    #[test]
    fn a_cargo_built_binary_expects_its_build_interpreter() {
        let expected = from_build().unwrap();
        assert_eq!(expected.origin, Origin::Build);
        assert_eq!(expected.executable, Path::new(BUILD_EXECUTABLE));
        assert_eq!(
            short_version(&expected.version).as_deref(),
            Some(ABI_VERSION)
        );
    }
}

//! The error log: gunicorn's line format
//! `[%Y-%m-%d %H:%M:%S %z] [PID] [LEVEL] message`, on stderr.
//!
//! `--error-logfile FILE` makes fd 2 itself the file: it is opened for
//! appending and `dup2`ed onto stderr, so the logger, Python's tracebacks
//! (faulthandler) and an app's prints to stderr all land in it. [`reopen`]
//! (USR1, after logrotate moved the file) opens the path afresh and puts the
//! new file on fd 2 the same way; each process (master, every worker) does
//! it for itself. With `-` (the default) stderr is left as it is.
//!
//! The logger is installed once in each program: by the master, and by each
//! Python program it starts, at the master's `--log-level` and on the
//! master's fd 2 (inherited across fork and exec, with the path handed
//! over for USR1, [`adopt_log_file`]); the PID is read per line. Each line reaches stderr in one
//! `write`, so lines from several processes sharing the stream never
//! interleave. Levels are gunicorn's names: `log::Level::Warn` prints as
//! `WARNING`, and an error logged with `target: CRITICAL` prints as
//! `CRITICAL` (the `log` crate has no such level).

use crate::local_time::LocalTime;
use crate::os_error::os_error_text;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `--error-logfile` path, when the log goes to a file.
static LOG_FILE: OnceLock<PathBuf> = OnceLock::new();
/// The stderr the process started with, kept (close-on-exec) when fd 2
/// was replaced by the log file, so fatal start-up errors still reach the
/// operator's terminal.
static ORIGINAL_STDERR: OnceLock<OwnedFd> = OnceLock::new();

/// The `log` target that marks an error as `CRITICAL`:
/// `log::error!(target: logging::CRITICAL, "WORKER TIMEOUT (pid:{pid})")`.
pub const CRITICAL: &str = "critical";

/// `--log-level`: gunicorn's five levels, the one map between their names,
/// the `log` crate's filters and Python's `logging` numbers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    /// Every level, most verbose first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
    ];

    /// The level named `text` (any case, surrounding spaces ignored).
    pub fn parse(text: &str) -> Option<LogLevel> {
        let name = text.trim();
        LogLevel::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(name))
    }

    /// gunicorn's name: `debug`, `info`, `warning`, `error`, `critical`.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }

    /// Python's `logging` number for this level (`logging.INFO` is 20).
    pub fn python_number(self) -> i32 {
        match self {
            LogLevel::Debug => 10,
            LogLevel::Info => 20,
            LogLevel::Warning => 30,
            LogLevel::Error => 40,
            LogLevel::Critical => 50,
        }
    }

    /// The level of a Python `logging` number: each level covers the
    /// numbers from its own up to the next one's (below 20 is debug).
    pub fn from_python_number(number: i32) -> LogLevel {
        LogLevel::ALL
            .into_iter()
            .rev()
            .find(|level| number >= level.python_number())
            .unwrap_or(LogLevel::Debug)
    }

    /// Logs `message` at this level (critical is an error with the
    /// [`CRITICAL`] target).
    pub fn log(self, message: &str) {
        match self {
            LogLevel::Critical => log::error!(target: CRITICAL, "{message}"),
            LogLevel::Error => log::error!("{message}"),
            LogLevel::Warning => log::warn!("{message}"),
            LogLevel::Info => log::info!("{message}"),
            LogLevel::Debug => log::debug!("{message}"),
        }
    }
}

/// Why the logger could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A logger is already installed in this process.
    #[error("the logger is already installed")]
    AlreadyInstalled,
    /// The `--error-logfile` could not be opened or put on stderr.
    #[error("--error-logfile: cannot open '{}': {reason}", .path.display())]
    Open { path: PathBuf, reason: String },
}

/// Sends the log to `error_logfile` (`-`: leave it on stderr). Called once,
/// before [`init`]; later calls are refused.
pub fn set_log_file(error_logfile: &Path) -> Result<(), LoggingError> {
    if error_logfile == Path::new("-") {
        return Ok(());
    }
    let file = open_for_appending(error_logfile)?;
    // SAFETY: dup of fd 2 with close-on-exec; it only creates a new fd.
    let saved = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if saved >= 0 {
        // SAFETY: `saved` is a fresh fd this process owns and nothing else
        // refers to.
        let _ = ORIGINAL_STDERR.set(unsafe { OwnedFd::from_raw_fd(saved) });
    }
    put_on_stderr(error_logfile, &file)?;
    LOG_FILE
        .set(error_logfile.to_path_buf())
        .map_err(|_| LoggingError::AlreadyInstalled)
}

/// The `--error-logfile` path, when the log goes to a file (for the
/// programs the master starts).
pub fn log_file() -> Option<&'static Path> {
    LOG_FILE.get().map(PathBuf::as_path)
}

/// In a program the master started: fd 2, inherited, already is the log
/// file at `path`; remembers the path so [`reopen`] (USR1) can open it
/// afresh. Called once, before [`init`].
pub fn adopt_log_file(path: &Path) {
    let _ = LOG_FILE.set(path.to_path_buf());
}

/// USR1: opens the log file again (it may have been moved by logrotate)
/// and makes it this process's stderr. Nothing to do when logging to
/// stderr.
pub fn reopen() -> Result<(), LoggingError> {
    match LOG_FILE.get() {
        Some(path) => open_onto_stderr(path),
        None => Ok(()),
    }
}

/// Whether the log goes to a file rather than the inherited stderr.
pub fn logs_to_file() -> bool {
    LOG_FILE.get().is_some()
}

/// Writes one line to the stderr the process started with, when the log
/// was moved to a file (so a fatal error is seen where the command was
/// run, as well as in the log). Does nothing otherwise.
pub fn write_to_original_stderr(line: &str) {
    if let Some(fd) = ORIGINAL_STDERR.get() {
        if let Ok(clone) = fd.try_clone() {
            let _ = std::fs::File::from(clone).write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// `--daemon`: points the saved original stderr at `null` (an open
/// /dev/null), so the daemon holds no terminal or pipe of its launcher.
pub fn detach_original_stderr(null: &std::fs::File) {
    if let Some(fd) = ORIGINAL_STDERR.get() {
        // SAFETY: dup3 atomically makes the saved fd (owned by
        // ORIGINAL_STDERR, kept open) a close-on-exec duplicate of
        // /dev/null; no Rust object buffers writes to it.
        unsafe { libc::dup3(null.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC) };
    }
}

/// Opens `path` for appending and `dup2`s it onto fd 2.
fn open_onto_stderr(path: &Path) -> Result<(), LoggingError> {
    let file = open_for_appending(path)?;
    put_on_stderr(path, &file)
}

fn open_for_appending(path: &Path) -> Result<std::fs::File, LoggingError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| open_error(path, &e))
}

fn open_error(path: &Path, error: &std::io::Error) -> LoggingError {
    LoggingError::Open {
        path: path.to_path_buf(),
        reason: os_error_text(error),
    }
}

/// Set by [`capture_output`]: fd 1 follows fd 2 through every reopen.
static CAPTURING_STDOUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--capture-output`: from now on this process's stdout (fd 1) goes to the
/// error log too, also after USR1 reopens it.
pub fn capture_output() {
    CAPTURING_STDOUT.store(true, std::sync::atomic::Ordering::Relaxed);
    stdout_to_stderr();
}

fn stdout_to_stderr() {
    let _ = std::io::stdout().flush();
    // SAFETY: dup2 replaces fd 1 with a duplicate of fd 2 (the error log);
    // both are open for the life of the process.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
}

/// `dup2`s the open log `file` onto fd 2.
fn put_on_stderr(path: &Path, file: &std::fs::File) -> Result<(), LoggingError> {
    let _ = std::io::stderr().flush();
    // SAFETY: dup2 atomically replaces fd 2 with a duplicate of the open
    // file; the Rust stderr handle is unbuffered and refers to fd 2 by
    // number, so it simply writes to the new file from now on.
    if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(open_error(path, &std::io::Error::last_os_error()));
    }
    if CAPTURING_STDOUT.load(std::sync::atomic::Ordering::Relaxed) {
        stdout_to_stderr();
    }
    Ok(())
}

/// Installs the logger at `level`.
pub fn init(level: LogLevel) -> Result<(), LoggingError> {
    let mut builder = env_logger::Builder::new();
    match level {
        LogLevel::Debug => builder.filter_level(log::LevelFilter::Debug),
        LogLevel::Info => builder.filter_level(log::LevelFilter::Info),
        LogLevel::Warning => builder.filter_level(log::LevelFilter::Warn),
        LogLevel::Error => builder.filter_level(log::LevelFilter::Error),
        LogLevel::Critical => builder
            .filter_level(log::LevelFilter::Off)
            .filter_module(CRITICAL, log::LevelFilter::Error),
    };
    builder
        .target(env_logger::Target::Stderr)
        .write_style(env_logger::WriteStyle::Never)
        .format(|buf, record| {
            // gunicorn's statsd logger counts each warning, error and
            // critical line (`gunicorn.log.error`, ...).
            crate::statsd::count_log_line(level_name(record));
            writeln!(
                buf,
                "[{}] [{}] [{}] {}",
                timestamp(),
                std::process::id(),
                level_name(record),
                record.args()
            )
        })
        .try_init()
        .map_err(|_| LoggingError::AlreadyInstalled)
}

/// gunicorn's level name for a record.
fn level_name(record: &log::Record<'_>) -> &'static str {
    match record.level() {
        log::Level::Error if record.target() == CRITICAL => "CRITICAL",
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug | log::Level::Trace => "DEBUG",
    }
}

/// The local time now as `2026-11-23 09:30:00 +0000`.
pub fn timestamp() -> String {
    LocalTime::now().error_log_format()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_gunicorns_shape() {
        let stamp = timestamp();
        let bytes = stamp.as_bytes();
        assert_eq!(bytes.len(), "2026-11-23 09:30:00 +0000".len(), "{stamp}");
        for (index, byte) in bytes.iter().enumerate() {
            let expected_digit = !matches!(index, 4 | 7 | 10 | 13 | 16 | 19 | 20);
            assert_eq!(byte.is_ascii_digit(), expected_digit, "{stamp} at {index}");
        }
        assert!(matches!(bytes[20], b'+' | b'-'), "{stamp}");
    }

    #[test]
    fn levels_use_gunicorns_names() {
        let cases: &[(log::Level, &str, &str)] = &[
            (log::Level::Error, "rgunicorn::master", "ERROR"),
            (log::Level::Error, CRITICAL, "CRITICAL"),
            (log::Level::Warn, "x", "WARNING"),
            (log::Level::Info, "x", "INFO"),
            (log::Level::Debug, "x", "DEBUG"),
            (log::Level::Trace, "x", "DEBUG"),
        ];
        for (level, target, expected) in cases {
            let record = log::Record::builder().level(*level).target(target).build();
            assert_eq!(level_name(&record), *expected);
        }
    }

    #[test]
    fn a_missing_directory_is_a_one_line_open_error() {
        let err = open_onto_stderr(Path::new("/nonexistent-dir/x.log")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--error-logfile: cannot open '/nonexistent-dir/x.log': No such file or directory"
        );
    }

    #[test]
    fn unknown_levels_are_rejected() {
        assert_eq!(LogLevel::parse("loud"), None);
        assert_eq!(LogLevel::parse(" Warning "), Some(LogLevel::Warning));
    }

    #[test]
    fn log_levels_map_to_python_numbers() {
        let cases = [
            (LogLevel::Debug, 10),
            (LogLevel::Info, 20),
            (LogLevel::Warning, 30),
            (LogLevel::Error, 40),
            (LogLevel::Critical, 50),
        ];
        for (level, number) in cases {
            assert_eq!(level.python_number(), number, "{level:?}");
            assert_eq!(LogLevel::from_python_number(number), level);
            assert_eq!(LogLevel::from_python_number(number + 9), level);
        }
        assert_eq!(LogLevel::from_python_number(0), LogLevel::Debug);
        assert_eq!(LogLevel::from_python_number(99), LogLevel::Critical);
    }
}

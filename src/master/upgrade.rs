//! USR2 binary upgrade, gunicorn's way: the master forks and execs the
//! binary on disk (the path it was started from, so a replaced binary is
//! the one run) with its own argv and environment plus
//! `RGUNICORN_FD=fd1,fd2,...` naming its listening sockets, which the child
//! keeps open across the exec. The new master adopts those sockets instead
//! of binding (`sockets::BoundSockets::open`), so both masters accept on
//! the same sockets and no connection is refused during the handover.
//!
//! The `--metrics-bind` socket goes along the same way, named apart by
//! `RGUNICORN_METRICS_FD` so that no worker ever accepts on it.
//!
//! This module owns the command capture, the fd list encoding and the
//! fork+exec; the arbiter decides when (and handles the pid file).

use super::signals;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// The variable naming the inherited listening fds.
pub const FD_VARIABLE: &str = "RGUNICORN_FD";
/// gunicorn's name for it, accepted too.
pub const GUNICORN_FD_VARIABLE: &str = "GUNICORN_FD";
/// Set (to `1`) when the handed-over sockets came from systemd: the new
/// master then treats them as systemd's (ignores `--bind`, never removes
/// their files).
pub const SYSTEMD_OWNED_VARIABLE: &str = "RGUNICORN_FD_SYSTEMD";
/// The variable naming the inherited `--metrics-bind` socket.
pub const METRICS_FD_VARIABLE: &str = "RGUNICORN_METRICS_FD";

/// The sockets an old master handed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InheritedFds {
    /// The fds, in the old master's order.
    pub fds: Vec<RawFd>,
    /// Whether systemd owns them (socket activation of the old master).
    pub systemd_owned: bool,
    /// The old master's `--metrics-bind` socket, if it had one.
    pub metrics_fd: Option<RawFd>,
}

/// Why the inherited-fd variable cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// An entry of the list is not a file descriptor number.
    #[error("{variable}: '{entry}' is not a file descriptor number")]
    BadFd {
        variable: &'static str,
        entry: String,
    },
}

/// How this process was started: what USR2 runs again.
#[derive(Debug, Clone)]
pub struct LaunchCommand {
    /// The executable, as resolved at start.
    pub executable: PathBuf,
    /// The arguments, `argv[0]` included.
    pub arguments: Vec<OsString>,
    /// The directory rgunicorn was started in (before `--chdir`): relative
    /// paths on the command line, `-c FILE` and `./rgunicorn.toml` are
    /// relative to it, for a USR2 successor and a HUP re-read alike.
    pub working_dir: PathBuf,
}

impl LaunchCommand {
    /// Captures this process's executable and arguments. Call before the
    /// process title is set (it overwrites the memory the arguments are
    /// read from).
    pub fn capture() -> LaunchCommand {
        let arguments: Vec<OsString> = std::env::args_os().collect();
        let executable = std::env::current_exe()
            .ok()
            .or_else(|| arguments.first().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("rgunicorn"));
        let working_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        LaunchCommand {
            executable,
            arguments,
            working_dir,
        }
    }
}

/// Parses an fd list such as `3,4,5` (spaces and empty entries ignored).
pub fn parse_fd_list(variable: &'static str, value: &str) -> Result<Vec<RawFd>, UpgradeError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<RawFd>()
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| UpgradeError::BadFd {
                    variable,
                    entry: entry.to_string(),
                })
        })
        .collect()
}

/// Formats fds for [`FD_VARIABLE`]: `3,4,5`.
pub fn format_fd_list(fds: &[RawFd]) -> String {
    fds.iter()
        .map(RawFd::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the inherited fds (`RGUNICORN_FD`, else `GUNICORN_FD`) and unsets
/// the variables, so workers and later upgrades never see them. Call while
/// the master is single-threaded.
pub fn take_inherited_fds() -> Result<InheritedFds, UpgradeError> {
    let ours = std::env::var(FD_VARIABLE).ok();
    let gunicorns = std::env::var(GUNICORN_FD_VARIABLE).ok();
    let systemd_owned = std::env::var(SYSTEMD_OWNED_VARIABLE).is_ok_and(|v| v == "1");
    for name in [FD_VARIABLE, GUNICORN_FD_VARIABLE, SYSTEMD_OWNED_VARIABLE] {
        std::env::remove_var(name);
    }
    let metrics = std::env::var(METRICS_FD_VARIABLE).ok();
    std::env::remove_var(METRICS_FD_VARIABLE);
    let metrics_fd = match metrics {
        Some(value) => parse_fd_list(METRICS_FD_VARIABLE, &value)?.first().copied(),
        None => None,
    };
    let fds = match (ours, gunicorns) {
        (Some(value), _) => parse_fd_list(FD_VARIABLE, &value)?,
        (None, Some(value)) => parse_fd_list(GUNICORN_FD_VARIABLE, &value)?,
        (None, None) => Vec::new(),
    };
    Ok(InheritedFds {
        fds,
        systemd_owned,
        metrics_fd,
    })
}

/// Forks and execs a new master running `command` with `listeners` open in
/// it and named by [`FD_VARIABLE`] (and [`SYSTEMD_OWNED_VARIABLE`] when
/// `systemd_owned`), and the `--metrics-bind` socket named by
/// [`METRICS_FD_VARIABLE`]. Returns the new master's pid.
pub fn spawn_new_master(
    command: &LaunchCommand,
    listeners: &[RawFd],
    systemd_owned: bool,
    metrics: Option<RawFd>,
) -> io::Result<i32> {
    let program = c_string(command.executable.clone().into_os_string())?;
    let working_dir = c_string(command.working_dir.clone().into_os_string())?;
    let arguments = command
        .arguments
        .iter()
        .cloned()
        .map(c_string)
        .collect::<io::Result<Vec<_>>>()?;
    let mut environment = std::env::vars_os()
        .filter(|(name, _)| {
            name != FD_VARIABLE
                && name != GUNICORN_FD_VARIABLE
                && name != SYSTEMD_OWNED_VARIABLE
                && name != METRICS_FD_VARIABLE
        })
        .map(|(name, value)| {
            let mut pair = name;
            pair.push("=");
            pair.push(value);
            c_string(pair)
        })
        .collect::<io::Result<Vec<_>>>()?;
    environment.push(c_string(
        format!("{FD_VARIABLE}={}", format_fd_list(listeners)).into(),
    )?);
    if systemd_owned {
        environment.push(c_string(format!("{SYSTEMD_OWNED_VARIABLE}=1").into())?);
    }
    if let Some(fd) = metrics {
        environment.push(c_string(format!("{METRICS_FD_VARIABLE}={fd}").into())?);
    }
    let kept_open: Vec<RawFd> = listeners.iter().copied().chain(metrics).collect();
    let argv = null_terminated(&arguments);
    let envp = null_terminated(&environment);

    let blocked = signals::block_for_fork()?;
    // SAFETY: the master is single-threaded. The child only makes
    // async-signal-safe calls (sigaction, fcntl, sigprocmask, execve, _exit)
    // on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        blocked.reset_in_child();
        exec_in_child(&program, &argv, &envp, &kept_open, &working_dir);
    }
    blocked.restore();
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// The child side: keeps the listeners open across exec, unblocks signals
/// and execs; `_exit(127)` if the exec fails.
fn exec_in_child(
    program: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    listeners: &[RawFd],
    working_dir: &CString,
) -> ! {
    // SAFETY: fcntl on fds this process holds; sigprocmask with a valid,
    // empty set; chdir with a NUL-terminated path; execve with NUL-terminated strings and null-terminated
    // arrays that outlive the call (it only returns on failure); `_exit`
    // ends the child without running the master's destructors.
    unsafe {
        for fd in listeners {
            let flags = libc::fcntl(*fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Where the operator started rgunicorn, so the successor resolves
        // relative paths as its predecessor did (chdir is async-signal-safe).
        libc::chdir(working_dir.as_ptr());
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        libc::_exit(127)
    }
}

fn c_string(text: OsString) -> io::Result<CString> {
    CString::new(text.into_vec()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument or environment variable contains a NUL byte",
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_lists_parse() {
        let cases: &[(&str, Option<Vec<RawFd>>)] = &[
            ("3", Some(vec![3])),
            ("3,4,5", Some(vec![3, 4, 5])),
            (" 3 , 4 ", Some(vec![3, 4])),
            ("3,,4,", Some(vec![3, 4])),
            ("", Some(vec![])),
            ("x", None),
            ("3,-1", None),
            ("3;4", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_fd_list(FD_VARIABLE, text).ok(), *expected, "{text:?}");
        }
        assert_eq!(
            parse_fd_list(GUNICORN_FD_VARIABLE, "3,x")
                .unwrap_err()
                .to_string(),
            "GUNICORN_FD: 'x' is not a file descriptor number"
        );
    }

    #[test]
    fn fd_lists_round_trip() {
        assert_eq!(format_fd_list(&[3, 4, 10]), "3,4,10");
        assert_eq!(format_fd_list(&[]), "");
        assert_eq!(
            parse_fd_list(FD_VARIABLE, &format_fd_list(&[5, 6])).unwrap(),
            vec![5, 6]
        );
    }

    #[test]
    fn the_launch_command_names_an_executable_that_exists() {
        let command = LaunchCommand::capture();
        assert!(command.executable.exists());
        assert!(!command.arguments.is_empty());
    }
}

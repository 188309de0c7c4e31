//! Starting the Python program, the one way the master does it: for a
//! worker, for `--check-config`, and (with `--preload`) the zygote. The
//! master links no Python; `rgunicorn-python` (beside the master's own
//! executable) is the only program that does.
//!
//! [`PythonProgram::find`] opens that program once, at start, before any
//! socket is bound: a missing program stops the start with one line naming
//! its path. The master keeps it open and execs that very file
//! (`fexecve`), so the master and its Python programs always come from one
//! build, even after the files on disk are replaced (a USR2 upgrade starts
//! the new build's pair).
//!
//! [`start`] writes the [`Handoff`] (whose [`Role`](crate::handoff::Role)
//! says what the program is for) into a memfd, forks, and in the child
//! resets the master's signals, keeps exactly the given descriptors (and
//! the handoff) open across exec, and execs the program with
//! `--handoff-fd N`. Nothing else of the master crosses: every other
//! descriptor of the master is close-on-exec.

use super::signals;
use crate::handoff::{Handoff, HANDOFF_FD_FLAG, PYTHON_PROGRAM, WORKER_BOOT_ERROR};
use nix::unistd::Pid;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why the Python program cannot be used. One line.
#[derive(Debug, thiserror::Error)]
pub enum PythonProcessError {
    /// The program is not beside the master's executable.
    #[error(
        "cannot open the Python program {}: {reason} (it is built and installed beside {}; \
         `cargo build` builds both programs, `cargo run` only the master)",
        .path.display(), .master.display()
    )]
    Missing {
        path: PathBuf,
        master: PathBuf,
        reason: String,
    },
    /// The master's own executable is unknown (no `/proc/self/exe`).
    #[error("cannot find the Python program: the master's executable is unknown: {0}")]
    NoExecutable(String),
}

/// The Python program, opened (`O_PATH`) for exec.
#[derive(Debug)]
pub struct PythonProgram {
    path: PathBuf,
    file: OwnedFd,
}

impl PythonProgram {
    /// Opens [`PYTHON_PROGRAM`] in the directory of this process's own
    /// executable (`/proc/self/exe`): `target/debug/` for a cargo build,
    /// the scripts directory of the wheel.
    pub fn find() -> Result<PythonProgram, PythonProcessError> {
        let master = std::env::current_exe()
            .map_err(|e| PythonProcessError::NoExecutable(crate::os_error::os_error_text(&e)))?;
        let path = master
            .parent()
            .unwrap_or(Path::new("/"))
            .join(PYTHON_PROGRAM);
        PythonProgram::open(&path).map_err(|e| PythonProcessError::Missing {
            path: path.clone(),
            master: master.clone(),
            reason: crate::os_error::os_error_text(&e),
        })
    }

    fn open(path: &Path) -> io::Result<PythonProgram> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        Ok(PythonProgram {
            path: path.to_path_buf(),
            file: file.into(),
        })
    }

    /// Where the program was found.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Starts `program` with `handoff`. `inherit` are the descriptors the
/// handoff names (they stay open across exec in the child only; the
/// master's copies keep close-on-exec). If the exec itself fails, the
/// child writes one line to `exec_failure_report` (a pipe the caller
/// reads) and exits with [`WORKER_BOOT_ERROR`]. Returns the child's pid.
pub fn start(
    program: &PythonProgram,
    handoff: &Handoff,
    inherit: &[RawFd],
    exec_failure_report: Option<RawFd>,
) -> io::Result<Pid> {
    let handoff_fd =
        crate::shared_memory::memfd_holding(c"rgunicorn-handoff", &handoff.to_bytes())?;
    let arguments = [
        CString::new(program.path.as_os_str().as_bytes())?,
        CString::new(HANDOFF_FD_FLAG)?,
        CString::new(handoff_fd.as_raw_fd().to_string())?,
    ];
    let argv: Vec<*const libc::c_char> = arguments
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let failure = format!(
        "cannot start the Python program {}\n",
        program.path.display()
    );
    let kept_open: Vec<RawFd> = inherit
        .iter()
        .copied()
        .chain(std::iter::once(handoff_fd.as_raw_fd()))
        .collect();

    let blocked = signals::block_for_fork()?;
    // SAFETY: the master is single-threaded. The child only makes
    // async-signal-safe calls (sigaction, fcntl, fexecve, write, _exit) on
    // memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        blocked.reset_in_child();
        exec_in_child(
            program.file.as_raw_fd(),
            &argv,
            &kept_open,
            exec_failure_report,
            failure.as_bytes(),
        );
    }
    blocked.restore();
    drop(handoff_fd);
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Pid::from_raw(pid))
}

/// The child side: clears close-on-exec on `kept_open` and execs the
/// program with the master's environment; on failure reports and exits.
fn exec_in_child(
    program: RawFd,
    argv: &[*const libc::c_char],
    kept_open: &[RawFd],
    report: Option<RawFd>,
    failure: &[u8],
) -> ! {
    extern "C" {
        /// glibc's current environment array.
        static environ: *const *const libc::c_char;
    }
    // SAFETY: fcntl on descriptors this process holds; fexecve with a
    // null-terminated argv of NUL-terminated strings and the process's own
    // environment, all of which outlive the call (it returns only on
    // failure); write of a prepared buffer; `_exit` ends the child without
    // running the master's destructors.
    unsafe {
        for fd in kept_open {
            let flags = libc::fcntl(*fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        libc::fexecve(program, argv.as_ptr(), environ);
        if let Some(report) = report {
            libc::write(report, failure.as_ptr().cast(), failure.len());
        }
        libc::_exit(WORKER_BOOT_ERROR)
    }
}

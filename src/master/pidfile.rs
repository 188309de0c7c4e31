//! `--pid FILE`: the master's pid, written (`PID\n`) once the workers are
//! forked and removed when it exits, whatever the way out (the [`PidFile`]
//! is dropped by the master only: workers `_exit` and never run its
//! destructor).
//!
//! * A file naming another live process whose command line mentions
//!   `rgunicorn` means a server is already running: the master refuses to
//!   start. Any other file (a dead pid, a recycled pid now used by another
//!   program, garbage) is stale and replaced.
//! * During a binary upgrade (USR2) the old master renames its file to
//!   `FILE.oldbin`, so the new master can write `FILE`; if the new master
//!   dies, the name is given back.
//! * The file is written to a temporary name and renamed into place, so a
//!   reader never sees it half written; it is removed only while it still
//!   names this process.

use crate::os_error::os_error_text;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Why the pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// The file names a running rgunicorn.
    #[error("--pid: '{}' names a running rgunicorn (pid {pid}); stop it or remove the file", .path.display())]
    AlreadyRunning { path: PathBuf, pid: i32 },
    /// The file could not be read or written.
    #[error("--pid: cannot write '{}': {reason}", .path.display())]
    Io { path: PathBuf, reason: String },
}

/// The master's pid file, removed on drop while it still names us.
#[derive(Debug)]
pub struct PidFile {
    /// Where the file is now (`FILE`, or `FILE.oldbin` during an upgrade).
    path: PathBuf,
    /// The `--pid` path as given.
    configured: PathBuf,
    pid: i32,
}

/// Checks, before binding anything, that the file can be written later:
/// creates and removes the temporary file [`PidFile::create`] will use.
pub fn check_writable(path: &Path) -> Result<(), PidFileError> {
    let temporary = temporary_path(path, std::process::id() as i32);
    std::fs::write(&temporary, b"").map_err(|e| io_error(path, &e))?;
    let _ = std::fs::remove_file(&temporary);
    Ok(())
}

/// Refuses when `path` names a live rgunicorn other than this process.
pub fn check_not_running(path: &Path) -> Result<(), PidFileError> {
    let content = match std::fs::read_to_string(path) {
        Ok(content) => content,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(()),
        Err(e) => return Err(io_error(path, &e)),
    };
    match parse_pid(&content) {
        Some(pid) if pid != std::process::id() as i32 && is_running_rgunicorn(pid) => {
            Err(PidFileError::AlreadyRunning {
                path: path.to_path_buf(),
                pid,
            })
        }
        _ => Ok(()),
    }
}

impl PidFile {
    /// Writes this process's pid to `path` (after [`check_not_running`]
    /// once more: the check and the write are close together).
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        check_not_running(path)?;
        let pid = std::process::id() as i32;
        write_atomically(path, pid).map_err(|e| io_error(path, &e))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            configured: path.to_path_buf(),
            pid,
        })
    }

    /// Where the file is now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// USR2: moves the file to `FILE.oldbin`, freeing `FILE` for the new
    /// master.
    pub fn move_to_oldbin(&mut self) -> io::Result<()> {
        let oldbin = oldbin_path(&self.configured);
        std::fs::rename(&self.path, &oldbin)?;
        self.path = oldbin;
        Ok(())
    }

    /// The new master died: takes `FILE` back (unless another process
    /// already wrote it).
    pub fn restore_from_oldbin(&mut self) -> io::Result<()> {
        if self.path == self.configured {
            return Ok(());
        }
        if std::fs::symlink_metadata(&self.configured).is_err() {
            std::fs::rename(&self.path, &self.configured)?;
            self.path = self.configured.clone();
        } else {
            write_atomically(&self.configured, self.pid)?;
            let _ = std::fs::remove_file(&self.path);
            self.path = self.configured.clone();
        }
        Ok(())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if std::process::id() as i32 != self.pid {
            return; // a forked child never removes the master's file
        }
        let still_ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|content| parse_pid(&content))
            == Some(self.pid);
        if still_ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!(
                    "cannot remove {}: {}",
                    self.path.display(),
                    os_error_text(&e)
                );
            }
        }
    }
}

/// `FILE` → `FILE.oldbin`.
pub fn oldbin_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".oldbin");
    PathBuf::from(name)
}

/// The pid in a pid file's text: one positive number, surrounding
/// whitespace allowed.
pub fn parse_pid(content: &str) -> Option<i32> {
    content.trim().parse::<i32>().ok().filter(|pid| *pid > 0)
}

/// Whether a process's NUL-separated command line mentions rgunicorn (the
/// program path, or our process title).
pub fn cmdline_is_rgunicorn(cmdline: &[u8]) -> bool {
    cmdline
        .windows(b"rgunicorn".len())
        .any(|w| w == b"rgunicorn")
}

/// Whether `pid` is alive and is an rgunicorn.
fn is_running_rgunicorn(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| cmdline_is_rgunicorn(&c))
}

/// Writes `PID\n` to a temporary file beside `path`, then renames it over
/// `path`.
fn write_atomically(path: &Path, pid: i32) -> io::Result<()> {
    let temporary = temporary_path(path, pid);
    std::fs::write(&temporary, format!("{pid}\n"))?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// `FILE.PID.tmp`, beside the pid file.
fn temporary_path(path: &Path, pid: i32) -> PathBuf {
    let mut temporary = OsString::from(path.as_os_str());
    temporary.push(format!(".{pid}.tmp"));
    PathBuf::from(temporary)
}

fn io_error(path: &Path, error: &io::Error) -> PidFileError {
    PidFileError::Io {
        path: path.to_path_buf(),
        reason: os_error_text(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rgunicorn-pidfile-{}-{name}", std::process::id()))
    }

    #[test]
    fn pid_text_is_one_positive_number() {
        let cases: &[(&str, Option<i32>)] = &[
            ("123\n", Some(123)),
            ("  42  ", Some(42)),
            ("0\n", None),
            ("-5", None),
            ("", None),
            ("12 34", None),
            ("abc", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_pid(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn only_rgunicorn_command_lines_count() {
        assert!(cmdline_is_rgunicorn(
            b"/usr/bin/rgunicorn\0-w\x004\0app:app\0"
        ));
        assert!(cmdline_is_rgunicorn(b"rgunicorn: master [app:app]\0"));
        assert!(!cmdline_is_rgunicorn(b"/usr/bin/gunicorn\0app:app\0"));
        assert!(!cmdline_is_rgunicorn(b""));
    }

    #[test]
    fn oldbin_appends_to_the_name() {
        assert_eq!(
            oldbin_path(Path::new("/run/app.pid")),
            PathBuf::from("/run/app.pid.oldbin")
        );
    }

    #[test]
    fn file_is_written_and_removed_on_drop() {
        let path = temp_path("written");
        let file = PidFile::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn stale_files_are_replaced() {
        // A pid no process can have, and text that is not a pid.
        for content in ["999999999\n", "garbage"] {
            let path = temp_path("stale");
            std::fs::write(&path, content).unwrap();
            let file = PidFile::create(&path).unwrap();
            assert_eq!(
                parse_pid(&std::fs::read_to_string(&path).unwrap()),
                Some(std::process::id() as i32)
            );
            drop(file);
        }
    }

    #[test]
    fn an_unwritable_place_is_found_before_start() {
        let err = check_writable(Path::new("/nonexistent-dir/app.pid")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--pid: cannot write '/nonexistent-dir/app.pid': No such file or directory"
        );
        let path = temp_path("writable");
        check_writable(&path).unwrap();
        assert!(!path.exists());
        assert!(!temporary_path(&path, std::process::id() as i32).exists());
    }

    #[test]
    fn a_file_naming_ourselves_is_not_a_conflict() {
        let path = temp_path("self");
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        check_not_running(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_rewritten_by_someone_else_is_left_alone() {
        let path = temp_path("taken");
        let file = PidFile::create(&path).unwrap();
        std::fs::write(&path, "77\n").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "77\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn upgrade_moves_the_file_to_oldbin_and_back() {
        let path = temp_path("upgrade");
        let oldbin = oldbin_path(&path);
        let mut file = PidFile::create(&path).unwrap();
        file.move_to_oldbin().unwrap();
        assert!(!path.exists());
        assert!(oldbin.exists());
        assert_eq!(file.path(), oldbin.as_path());
        file.restore_from_oldbin().unwrap();
        assert!(path.exists());
        assert!(!oldbin.exists());
        file.move_to_oldbin().unwrap();
        drop(file);
        assert!(!oldbin.exists());
        assert!(!path.exists());
    }
}

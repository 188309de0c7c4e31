//! The door between the two programs: what the master (no Python in it)
//! hands the Python program (`rgunicorn-python`, the only program that
//! links libpython) when it starts one, and the exit codes it reads back.
//!
//! A [`Handoff`] is the whole of it: the role (a worker, the `--preload`
//! zygote, the app check),
//! the master's effective settings (exactly the value the master acts on,
//! after its own changes such as HUP keeping the fixed settings; the
//! worker never reads the config file), the real command line for
//! `sys.argv`, the error log's path, the TLS material, and for a worker
//! the numbers of the descriptors it inherits (listening sockets, the
//! boot-report pipe, its heartbeat and metrics pages). It travels as JSON
//! in a memfd the Python program inherits, named on its command line by
//! [`HANDOFF_FD_FLAG`]. There is no version: both programs come from one
//! build, found side by side ([`PYTHON_PROGRAM`]), and the reading side
//! refuses anything it does not parse exactly (unknown or missing fields).
//!
//! Knows nothing of Python, of forking or of the worker: data and its
//! encoding only.

pub mod tickets;
pub mod tls;

use crate::config::Settings;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Exit code: the worker could not start (interpreter, sockets, signals).
pub const WORKER_BOOT_ERROR: i32 = 3;
/// Exit code: the application could not be imported or found.
pub const APP_LOAD_ERROR: i32 = 4;
/// Exit code of a Python program started without a usable handoff (by
/// hand, say): it says so in one line.
pub const NO_HANDOFF: i32 = 2;
/// What the dynamic loader exits with when it cannot start the Python
/// program (its libpython not found, say); the master takes it from a
/// booting worker as a boot error.
pub const PROGRAM_NOT_LOADED: i32 = 127;

/// The Python program's file name, beside the master's own executable
/// (`target/debug/`, or the wheel's scripts directory).
pub const PYTHON_PROGRAM: &str = "rgunicorn-python";
/// The argument that names the inherited handoff descriptor:
/// `rgunicorn-python --handoff-fd 7`.
pub const HANDOFF_FD_FLAG: &str = "--handoff-fd";

/// Everything a Python program is given at start.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    /// What the program is started to do.
    pub role: Role,
    /// The master's effective settings.
    pub settings: Settings,
    /// The command line rgunicorn was started with (the app's `sys.argv`,
    /// as gunicorn's workers see gunicorn's).
    pub argv: Vec<OsString>,
    /// `--error-logfile` as the master opened it, when the log goes to a
    /// file: fd 2 already is that file (inherited); the path is for USR1's
    /// reopen.
    pub log_file: Option<PathBuf>,
    /// With `--certfile`: the certificate files' bytes, read by the master.
    pub tls: Option<tls::TlsMaterial>,
}

/// What a Python program is started to do.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Role {
    /// Serve as a worker, supervised by the master.
    Worker(WorkerFacts),
    /// `--preload`: import the app once and fork workers on the master's
    /// requests (`zygote_channel`).
    Zygote(ZygoteFacts),
    /// `--check-config`: start the interpreter and import the app, then
    /// exit 0, or 1 with the reason (one line) written to `report`, the
    /// write end of a pipe to the master.
    Check { report: RawFd },
}

/// A worker's facts beyond the settings: the descriptors it inherits (by
/// number) and who it is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerFacts {
    /// The listening sockets to accept on (the master's, or with
    /// `--reuse-port` this worker's own).
    pub listeners: Vec<RawFd>,
    /// Whether each listener serves TLS.
    pub serves_tls: Vec<bool>,
    /// The write end of the boot-report pipe.
    pub boot_report: RawFd,
    /// The heartbeat page's memfd.
    pub heartbeat: RawFd,
    /// The metrics page's memfd (with `--metrics-bind` or `--statsd-host`).
    pub metrics: Option<RawFd>,
    /// The master's pid: if the parent changes, the master is gone.
    pub master_pid: i32,
    /// Spawn order (gunicorn's `worker.age`).
    pub age: u64,
}

/// The zygote's facts beyond the settings: the descriptors it inherits
/// (by number) and passes on to the workers it forks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZygoteFacts {
    /// The master's listening sockets (each worker gets them, unless a
    /// fork request brings its own `--reuse-port` ones).
    pub listeners: Vec<RawFd>,
    /// Whether each listener serves TLS.
    pub serves_tls: Vec<bool>,
    /// The write end of the zygote's boot-report pipe.
    pub boot_report: RawFd,
    /// The zygote's own heartbeat page (`Serving` once it is ready).
    pub heartbeat: RawFd,
    /// The zygote's end of its channel to the master.
    pub channel: RawFd,
    /// The master's pid (the workers' parent once adopted).
    pub master_pid: i32,
}

/// Why a Python program has no usable handoff. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Started without `--handoff-fd` (by hand).
    #[error("this program is started by rgunicorn (it runs the workers); run `rgunicorn` instead")]
    NotGiven,
    /// `--handoff-fd` names no open descriptor, or not a number.
    #[error("{HANDOFF_FD_FLAG}: '{0}' is not an inherited file descriptor")]
    BadFd(String),
    /// A descriptor the handoff names is not open in this process.
    #[error("the handoff names fd {0}, which is not open")]
    MissingFd(RawFd),
    /// The descriptor could not be read.
    #[error("cannot read the handoff: {0}")]
    Read(std::io::Error),
    /// The bytes are not a handoff of this build.
    #[error("the handoff is not one this program reads: {0}")]
    Malformed(String),
}

impl HandoffError {
    /// The exit code for it: [`NO_HANDOFF`] for a program started by hand
    /// (no handoff named), [`WORKER_BOOT_ERROR`] for a handoff that was
    /// named but cannot be used (the master then stops, as for any worker
    /// that cannot boot, rather than starting it again and again).
    pub fn exit_code(&self) -> i32 {
        match self {
            HandoffError::NotGiven | HandoffError::BadFd(_) => NO_HANDOFF,
            _ => WORKER_BOOT_ERROR,
        }
    }
}

impl Handoff {
    /// The handoff as bytes, for [`Handoff::read_from`] on the other side.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a handoff always serialises")
    }

    /// The handoff named by this program's arguments (`args[0]` is the
    /// program): `--handoff-fd N`, read to the end and closed.
    pub fn from_args(args: &[OsString]) -> Result<Handoff, HandoffError> {
        let number = match args.get(1..) {
            Some([flag, number]) if flag == HANDOFF_FD_FLAG => number.to_string_lossy(),
            _ => return Err(HandoffError::NotGiven),
        };
        let fd = number
            .parse::<RawFd>()
            .ok()
            .filter(|fd| *fd > 2)
            .ok_or_else(|| HandoffError::BadFd(number.to_string()))?;
        let fd = take_inherited_fd(fd).map_err(|_| HandoffError::BadFd(number.to_string()))?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(HandoffError::Read)?;
        Handoff::read_from(&bytes)
    }

    /// Parses what [`Handoff::to_bytes`] wrote.
    pub fn read_from(bytes: &[u8]) -> Result<Handoff, HandoffError> {
        serde_json::from_slice(bytes).map_err(|e| HandoffError::Malformed(e.to_string()))
    }
}

/// Takes ownership of inherited descriptor `fd`, checking that it is open,
/// and makes it close-on-exec again, so that nothing the app execs
/// inherits it.
pub fn take_inherited_fd(fd: RawFd) -> Result<OwnedFd, HandoffError> {
    // SAFETY: F_GETFD only reads the descriptor's flags; an fd that is not
    // open fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(HandoffError::MissingFd(fd));
    }
    // SAFETY: the descriptor is open and was handed to this process to own;
    // the handoff names each descriptor once, and this is the only place
    // that wraps them.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sets the close-on-exec flag of a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_handoff() -> Handoff {
        let settings = Settings::from_args([
            "rgunicorn",
            "-w",
            "3",
            "--ciphers",
            "TLS13_AES_128_GCM_SHA256",
            "app:a",
        ])
        .unwrap();
        Handoff {
            role: Role::Worker(WorkerFacts {
                listeners: vec![5, 6],
                serves_tls: vec![false, true],
                boot_report: 7,
                heartbeat: 8,
                metrics: None,
                master_pid: 42,
                age: 3,
            }),
            settings,
            argv: vec!["rgunicorn".into(), "app:a".into()],
            log_file: None,
            tls: None,
        }
    }

    #[test]
    fn a_handoff_reads_back_as_it_was_written() {
        let handoff = worker_handoff();
        let back = Handoff::read_from(&handoff.to_bytes()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{handoff:?}"));
    }

    #[test]
    fn without_the_flag_the_handoff_is_not_given() {
        let args: Vec<OsString> = vec!["rgunicorn-python".into()];
        assert!(matches!(
            Handoff::from_args(&args),
            Err(HandoffError::NotGiven)
        ));
        let args: Vec<OsString> = vec!["rgunicorn-python".into(), "app:app".into()];
        assert!(matches!(
            Handoff::from_args(&args),
            Err(HandoffError::NotGiven)
        ));
    }

    #[test]
    fn a_flag_naming_no_open_descriptor_is_refused() {
        for number in ["x", "-1", "1", "999999"] {
            let args: Vec<OsString> = vec![
                "rgunicorn-python".into(),
                HANDOFF_FD_FLAG.into(),
                number.into(),
            ];
            assert!(
                matches!(Handoff::from_args(&args), Err(HandoffError::BadFd(_))),
                "{number}"
            );
        }
    }

    #[test]
    fn by_hand_is_exit_2_and_an_unusable_handoff_a_boot_error() {
        assert_eq!(HandoffError::NotGiven.exit_code(), NO_HANDOFF);
        assert_eq!(HandoffError::BadFd("x".into()).exit_code(), NO_HANDOFF);
        let malformed = Handoff::read_from(b"{}").unwrap_err();
        assert_eq!(malformed.exit_code(), WORKER_BOOT_ERROR);
    }

    #[test]
    fn bytes_that_are_not_a_handoff_are_refused_in_one_line() {
        let mut text = String::from_utf8(worker_handoff().to_bytes()).unwrap();
        text = text.replacen("\"age\"", "\"birthday\"", 1);
        let err = Handoff::read_from(text.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with("the handoff is not one this program reads: "),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}

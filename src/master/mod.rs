//! The master process (gunicorn's arbiter): binds the sockets, forks the
//! workers and supervises them. It never initialises Python.
//!
//! [`run`] is the whole master: `--umask`, `--chdir`, the `--pid` check,
//! signal handlers, sockets (bound, or inherited from systemd or an old
//! master), the process title, then the [`arbiter::Arbiter`] loop until a
//! stop signal or a halt.

pub mod arbiter;
pub mod daemon;
mod exposition;
pub mod metrics_endpoint;
pub mod pidfile;
pub mod python_process;
mod reconfigure;
pub mod scoreboard;
pub mod signals;
pub mod sockets;
pub mod status_command;
pub mod systemd;
mod tls;
pub mod upgrade;

use crate::config::Settings;
use crate::listener::Listener;
use crate::os_error::os_error_text;
use arbiter::{Arbiter, ArbiterError, Lifecycle};
use metrics_endpoint::MetricsEndpoint;
use nix::unistd::getppid;
use pidfile::PidFileError;
use signals::SignalQueue;
use sockets::{BoundSockets, Inheritance, SocketError, SocketOptions};
use std::path::PathBuf;
use systemd::{Notifier, SystemdError};
use upgrade::{InheritedFds, LaunchCommand, UpgradeError};

/// The name workers report in `Using worker:`.
pub const WORKER_CLASS: &str = "mio";

/// Why the master stopped with an error. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// `--chdir` names a directory we cannot enter.
    #[error("--chdir: cannot change to '{}': {reason}", .path.display())]
    Chdir { path: PathBuf, reason: String },
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(String),
    /// A `--bind` address could not be bound.
    #[error(transparent)]
    Sockets(#[from] SocketError),
    /// `--metrics-bind` could not be bound.
    #[error("--metrics-bind: {0}")]
    MetricsBind(SocketError),
    /// `--statsd-host` does not resolve, or no UDP socket can reach it.
    #[error("--statsd-host: cannot send to {address}: {reason}")]
    Statsd { address: String, reason: String },
    /// `--pid` names a running server, or cannot be written.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// `LISTEN_FDS`/`LISTEN_PID` are malformed.
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    /// `RGUNICORN_FD`/`GUNICORN_FD` is malformed.
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// An inherited fd is not a listening socket we can use.
    #[error("cannot use inherited socket fd {fd}: {reason}")]
    InheritedSocket { fd: i32, reason: String },
    /// `--daemon`: the master could not detach.
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    /// The TLS certificates or settings are unusable.
    #[error(transparent)]
    Tls(#[from] crate::handoff::tls::TlsError),
    /// The Python program is missing.
    #[error(transparent)]
    PythonProgram(#[from] python_process::PythonProcessError),
    /// The arbiter halted (a worker could not boot or load the app) or failed.
    #[error(transparent)]
    Arbiter(#[from] ArbiterError),
}

impl MasterError {
    /// The process exit code: 3 or 4 when a worker could not boot or load
    /// the app (gunicorn's codes), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            MasterError::Arbiter(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// Runs the master until a stop signal (`Ok`) or an error.
pub fn run(mut settings: Settings) -> Result<(), MasterError> {
    // Before the title overwrites the memory the arguments are read from.
    let launch = LaunchCommand::capture();
    let python = python_process::PythonProgram::find()?;
    log::info!("Starting rgunicorn {}", env!("CARGO_PKG_VERSION"));
    if let Some(mask) = settings.umask {
        apply_umask(mask);
    }
    if let Some(dir) = settings.chdir.take() {
        settings.chdir = Some(change_directory(dir)?);
    }
    if let Some(path) = &settings.pid {
        pidfile::check_not_running(path)?;
        pidfile::check_writable(path)?;
    }
    let tls = tls::load(&settings)?;
    let upgrade_fds = upgrade::take_inherited_fds()?;
    let systemd_fds = systemd::take_listen_fds()?;
    if settings.daemon && upgrade_fds.fds.is_empty() {
        detach(&settings)?;
    }
    let signals = SignalQueue::install().map_err(|e| MasterError::Signals(os_error_text(&e)))?;
    let upgraded = !upgrade_fds.fds.is_empty();
    let inherited_metrics = upgrade_fds.metrics_fd;
    let sockets = open_sockets(&settings, upgrade_fds, systemd_fds)?;
    let metrics_endpoint = open_metrics_endpoint(&settings, inherited_metrics)?;
    connect_statsd(&settings)?;
    if let Some((uid, gid)) = crate::config::worker_owner(settings.user.as_ref(), settings.group) {
        sockets.chown_unix_socket_files(uid, gid);
    }
    let pid = std::process::id();
    for (listener, serves_tls) in sockets.listeners().iter().zip(sockets.serves_tls()) {
        let scheme = match serves_tls {
            true => crate::http::UrlScheme::Https,
            false => crate::http::UrlScheme::Http,
        };
        log::info!("Listening at: {} ({pid})", listener.url_as(scheme));
    }
    if let Some(endpoint) = &metrics_endpoint {
        log::info!("Serving metrics at: {}/metrics ({pid})", endpoint.url());
    }
    match settings.threads {
        1 => log::info!("Using worker: {WORKER_CLASS}"),
        n => log::info!("Using worker: {WORKER_CLASS} with {n} app threads"),
    }
    crate::proc_title::set(&format!("rgunicorn: master [{}]", settings.proc_name()));
    let lifecycle = Lifecycle {
        pid_file: settings.pid.clone(),
        notifier: Notifier::from_env(),
        launch: Some(launch),
        upgraded_from: upgraded.then(getppid),
    };
    let mut arbiter =
        Arbiter::new(settings, sockets, signals, tls, python).with_lifecycle(lifecycle);
    if let Some(endpoint) = metrics_endpoint {
        arbiter = arbiter
            .with_metrics_endpoint(endpoint)
            .map_err(|e| MasterError::Signals(os_error_text(&e)))?;
    }
    arbiter.run()?;
    Ok(())
}

/// `--metrics-bind`: the socket an old master handed over when it listens
/// on the same address (a USR2 upgrade), else a fresh one.
fn open_metrics_endpoint(
    settings: &Settings,
    inherited: Option<i32>,
) -> Result<Option<MetricsEndpoint>, MasterError> {
    let inherited = match inherited {
        Some(fd) => Some(
            Listener::adopt(fd).map_err(|e| MasterError::InheritedSocket {
                fd,
                reason: os_error_text(&e),
            })?,
        ),
        None => None,
    };
    let Some(address) = &settings.metrics_bind else {
        return Ok(None);
    };
    let inherited = inherited.filter(|listener| sockets::listens_on(listener, address));
    MetricsEndpoint::bind(address, inherited)
        .map(Some)
        .map_err(MasterError::MetricsBind)
}

/// `--statsd-host`: opens the client the master and its workers send on.
fn connect_statsd(settings: &Settings) -> Result<(), MasterError> {
    let Some(address) = &settings.statsd_host else {
        return Ok(());
    };
    let crate::config::BindAddress::Tcp { host, port } = address else {
        unreachable!("--statsd-host is never a unix socket (refused when parsed)")
    };
    let statsd = crate::statsd::Statsd::connect(
        host,
        *port,
        &settings.statsd_prefix,
        &settings.dogstatsd_tags,
    )
    .map_err(|e| MasterError::Statsd {
        address: address.to_string(),
        reason: os_error_text(&e),
    })?;
    crate::statsd::install(statsd);
    Ok(())
}

/// `--check-config`: whether the TLS files load, as they would at a real
/// start (relative paths taken from `--chdir`, which the master enters
/// before loading them).
pub fn check_tls(settings: &Settings) -> Result<(), MasterError> {
    let mut settings = settings.clone();
    if let Some(dir) = settings.chdir.clone() {
        for path in [
            &mut settings.certfile,
            &mut settings.keyfile,
            &mut settings.ca_certs,
        ]
        .into_iter()
        .flatten()
        {
            *path = dir.join(&*path);
        }
    }
    tls::load(&settings)?;
    Ok(())
}

/// `--daemon` (not when taking over from an old master, which already
/// is one): detaches, then applies `--umask` again over the daemon's 022.
fn detach(settings: &Settings) -> Result<(), MasterError> {
    daemon::daemonize()?;
    if let Some(mask) = settings.umask {
        apply_umask(mask);
    }
    Ok(())
}

/// `--umask`: the mask for every file the master creates and, inherited,
/// the workers.
fn apply_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        mask as libc::mode_t,
    ));
}

/// The listening sockets: those systemd passed (socket activation: they
/// replace `--bind`; also when an old master hands over systemd's sockets),
/// else those an old master passed (matched to `--bind` by address, the
/// rest bound), else freshly bound.
fn open_sockets(
    settings: &Settings,
    upgrade_fds: InheritedFds,
    systemd_fds: Vec<i32>,
) -> Result<BoundSockets, MasterError> {
    let options = SocketOptions {
        backlog: settings.backlog,
        reuse_port: settings.reuse_port,
        unix_umask: settings.umask.unwrap_or(0),
        tls_by_default: settings.certfile.is_some(),
    };
    let (systemd_fds, upgrade_fds) = match upgrade_fds {
        InheritedFds {
            fds,
            systemd_owned: true,
            ..
        } if systemd_fds.is_empty() => (fds, Vec::new()),
        InheritedFds { fds, .. } => (systemd_fds, fds),
    };
    if !systemd_fds.is_empty() {
        log::info!("Using systemd socket activation");
        let inherited = adopt_all(&systemd_fds)?;
        for (fd, listener) in systemd_fds.iter().zip(&inherited) {
            if !nix::sys::socket::getsockopt(listener, nix::sys::socket::sockopt::AcceptConn)
                .unwrap_or(false)
            {
                return Err(MasterError::InheritedSocket {
                    fd: *fd,
                    reason: "not a listening socket".to_string(),
                });
            }
        }
        return Ok(BoundSockets::open(
            &settings.bind,
            options,
            inherited,
            Inheritance::Systemd,
        )?);
    }
    let inherited = adopt_all(&upgrade_fds)?;
    if !inherited.is_empty() {
        log::info!(
            "Using {} socket(s) inherited from the old master",
            inherited.len()
        );
    }
    Ok(BoundSockets::open(
        &settings.bind,
        options,
        inherited,
        Inheritance::Upgrade,
    )?)
}

fn adopt_all(fds: &[i32]) -> Result<Vec<Listener>, MasterError> {
    fds.iter()
        .map(|fd| {
            Listener::adopt(*fd).map_err(|e| MasterError::InheritedSocket {
                fd: *fd,
                reason: os_error_text(&e),
            })
        })
        .collect()
}

/// `--chdir`: enters `dir` (before binding, so relative unix socket paths
/// and the app's imports are relative to it) and returns it absolute, so a
/// worker that changes directory again lands in the same place.
fn change_directory(dir: PathBuf) -> Result<PathBuf, MasterError> {
    let chdir_error = |dir: &PathBuf, e: std::io::Error| MasterError::Chdir {
        path: dir.clone(),
        reason: os_error_text(&e),
    };
    std::env::set_current_dir(&dir).map_err(|e| chdir_error(&dir, e))?;
    std::env::current_dir().map_err(|e| chdir_error(&dir, e))
}

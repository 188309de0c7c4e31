//! systemd integration, hand-written (no libsystemd):
//!
//! * Socket activation: systemd binds the sockets and starts us with
//!   `LISTEN_PID` (our pid) and `LISTEN_FDS` (how many), the sockets being
//!   fds 3, 4, ... [`take_listen_fds`] reads and unsets the variables so no
//!   child sees them.
//! * Readiness: [`Notifier`] sends `sd_notify` datagrams (`READY=1`,
//!   `RELOADING=1`, `STOPPING=1`) to the unix datagram socket named by
//!   `NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//!   `@`). Without the variable it does nothing.
//!
//! Nothing here decides when to notify: the arbiter does.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Why the socket-activation variables could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemdError {
    /// `LISTEN_FDS` or `LISTEN_PID` is not a number.
    #[error("{name}: '{value}' is not a number")]
    NotANumber { name: &'static str, value: String },
    /// `NOTIFY_SOCKET` names no usable address.
    #[error("NOTIFY_SOCKET: '{0}' is not a socket path or @abstract name")]
    BadNotifySocket(String),
}

/// The fds systemd passed to this process, from the values of
/// `LISTEN_PID` and `LISTEN_FDS`: empty when the variables are absent or
/// meant for another process.
pub fn listen_fds_from(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> Result<Vec<RawFd>, SystemdError> {
    let (Some(listen_pid), Some(listen_fds)) = (listen_pid, listen_fds) else {
        return Ok(Vec::new());
    };
    let number = |name: &'static str, value: &str| {
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| SystemdError::NotANumber {
                name,
                value: value.to_string(),
            })
    };
    if number("LISTEN_PID", listen_pid)? != our_pid {
        return Ok(Vec::new());
    }
    let count = number("LISTEN_FDS", listen_fds)?;
    Ok((0..count as RawFd).map(|i| LISTEN_FDS_START + i).collect())
}

/// Reads the socket-activation variables of this process and unsets them
/// (with `LISTEN_FDNAMES`), so workers and re-executed masters never take
/// them for their own. Call while the master is single-threaded.
pub fn take_listen_fds() -> Result<Vec<RawFd>, SystemdError> {
    let listen_pid = std::env::var("LISTEN_PID").ok();
    let listen_fds = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    listen_fds_from(
        listen_pid.as_deref(),
        listen_fds.as_deref(),
        std::process::id(),
    )
}

/// Where `sd_notify` datagrams go, parsed from `NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddress {
    /// A socket file.
    Path(String),
    /// An abstract socket (the `@` removed).
    Abstract(Vec<u8>),
}

impl NotifyAddress {
    /// Parses `NOTIFY_SOCKET`: `/run/systemd/notify` or `@name`.
    pub fn parse(value: &str) -> Result<NotifyAddress, SystemdError> {
        if let Some(name) = value.strip_prefix('@') {
            if name.is_empty() {
                return Err(SystemdError::BadNotifySocket(value.to_string()));
            }
            return Ok(NotifyAddress::Abstract(name.as_bytes().to_vec()));
        }
        if value.starts_with('/') {
            return Ok(NotifyAddress::Path(value.to_string()));
        }
        Err(SystemdError::BadNotifySocket(value.to_string()))
    }

    fn socket_address(&self) -> io::Result<SocketAddr> {
        match self {
            NotifyAddress::Path(path) => SocketAddr::from_pathname(path),
            NotifyAddress::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
        }
    }
}

/// A state change systemd is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// Start-up (or a reload) is finished: the server serves.
    Ready,
    /// A reload (HUP) began.
    Reloading,
    /// The server is stopping.
    Stopping,
    /// The service's main process is now `pid` (after a binary upgrade).
    MainPid(u32),
}

impl Notification {
    /// The datagram's text, in sd_notify's `KEY=VALUE` form.
    pub fn message(self) -> String {
        match self {
            Notification::Ready => "READY=1".to_string(),
            Notification::Reloading => "RELOADING=1".to_string(),
            Notification::Stopping => "STOPPING=1".to_string(),
            Notification::MainPid(pid) => format!("MAINPID={pid}"),
        }
    }
}

/// Sends notifications to `NOTIFY_SOCKET`; a no-op without it.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier for this process's `NOTIFY_SOCKET`. A bad value is
    /// logged and notifications are skipped: they must never stop the
    /// server.
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            return Notifier { target: None };
        };
        match Notifier::connect(&value) {
            Ok(notifier) => notifier,
            Err(e) => {
                log::warn!("NOTIFY_SOCKET: cannot use '{value}': {e}; not notifying systemd");
                Notifier { target: None }
            }
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    fn connect(value: &str) -> io::Result<Notifier> {
        let address = NotifyAddress::parse(value)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .socket_address()?;
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some((socket, address)),
        })
    }

    /// Sends one notification (errors are logged at debug level: systemd
    /// may be gone while we stop).
    pub fn notify(&self, notification: Notification) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        let message = notification.message();
        if let Err(e) = socket.send_to_addr(message.as_bytes(), address) {
            log::debug!("sd_notify {message}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_fds_start_at_three_for_our_pid_only() {
        type Case = (Option<&'static str>, Option<&'static str>, Vec<RawFd>);
        let cases: Vec<Case> = vec![
            (Some("100"), Some("2"), vec![3, 4]),
            (Some("100"), Some("1"), vec![3]),
            (Some("100"), Some("0"), vec![]),
            (Some("101"), Some("2"), vec![]),
            (None, Some("2"), vec![]),
            (Some("100"), None, vec![]),
            (None, None, vec![]),
            (Some(" 100 "), Some("3"), vec![3, 4, 5]),
        ];
        for (pid, fds, expected) in cases {
            assert_eq!(
                listen_fds_from(pid, fds, 100).unwrap(),
                expected,
                "{pid:?} {fds:?}"
            );
        }
    }

    #[test]
    fn malformed_listen_variables_are_errors() {
        assert_eq!(
            listen_fds_from(Some("x"), Some("1"), 1)
                .unwrap_err()
                .to_string(),
            "LISTEN_PID: 'x' is not a number"
        );
        assert_eq!(
            listen_fds_from(Some("1"), Some("-1"), 1)
                .unwrap_err()
                .to_string(),
            "LISTEN_FDS: '-1' is not a number"
        );
    }

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        assert_eq!(
            NotifyAddress::parse("/run/systemd/notify").unwrap(),
            NotifyAddress::Path("/run/systemd/notify".into())
        );
        assert_eq!(
            NotifyAddress::parse("@sd-notify").unwrap(),
            NotifyAddress::Abstract(b"sd-notify".to_vec())
        );
        assert!(NotifyAddress::parse("@").is_err());
        assert!(NotifyAddress::parse("relative").is_err());
        assert!(NotifyAddress::parse("").is_err());
    }

    #[test]
    fn messages_are_sd_notify_assignments() {
        assert_eq!(Notification::Ready.message(), "READY=1");
        assert_eq!(Notification::Reloading.message(), "RELOADING=1");
        assert_eq!(Notification::Stopping.message(), "STOPPING=1");
        assert_eq!(Notification::MainPid(42).message(), "MAINPID=42");
    }

    #[test]
    fn notifications_reach_a_path_socket_and_an_abstract_one() {
        let path = std::env::temp_dir().join(format!("rgunicorn-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(path.to_str().unwrap()).unwrap();
        notifier.notify(Notification::Ready);
        notifier.notify(Notification::Stopping);
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        std::fs::remove_file(&path).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("rgunicorn-notify-{}", std::process::id());
        let abstract_address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&abstract_address).unwrap();
        Notifier::connect(&format!("@{name}"))
            .unwrap()
            .notify(Notification::Reloading);
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"RELOADING=1");
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        Notifier { target: None }.notify(Notification::Ready);
    }
}

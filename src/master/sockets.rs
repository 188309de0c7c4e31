//! Binding the listening sockets, once, in the master before any fork; the
//! workers inherit them. Owns the unix socket files: a stale one is removed
//! before binding and ours is removed when the master lets go of it.
//!
//! TCP listeners get `SO_REUSEADDR`, `IPV6_V6ONLY` on v6, `TCP_NODELAY` (which
//! accepted connections inherit on Linux), the configured backlog, and are
//! non-blocking and close-on-exec.

use crate::config::BindAddress;
use crate::listener::Listener;
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
    UnixAddr,
};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Why a socket could not be bound. One line each:
/// `cannot bind 127.0.0.1:8000: Address already in use`.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The host name did not resolve to any address.
    #[error("cannot bind {address}: cannot resolve host '{host}': {reason}")]
    Resolve {
        address: BindAddress,
        host: String,
        reason: String,
    },
    /// socket(), setsockopt(), bind() or listen() failed.
    #[error("cannot bind {address}: {reason}")]
    Bind {
        address: BindAddress,
        reason: String,
    },
}

/// The master's listening sockets. Dropping it closes them (in this process)
/// and removes the unix socket files it created.
#[derive(Debug)]
pub struct BoundSockets {
    listeners: Vec<Listener>,
    unix_paths: Vec<PathBuf>,
}

impl BoundSockets {
    /// Binds every address, in order. On an error the sockets bound so far
    /// are closed (and their files removed) before returning.
    pub fn bind_all(addresses: &[BindAddress], backlog: u32) -> Result<BoundSockets, SocketError> {
        let mut bound = BoundSockets {
            listeners: Vec::with_capacity(addresses.len()),
            unix_paths: Vec::new(),
        };
        for address in addresses {
            let listener = match address {
                BindAddress::Tcp { host, port } => {
                    let addr = resolve(address, host, *port)?;
                    bind_tcp(addr, backlog).map(Listener::Tcp)
                }
                BindAddress::Unix(path) => {
                    let listener = bind_unix(path, backlog).map(Listener::Unix);
                    if listener.is_ok() {
                        bound.unix_paths.push(path.clone());
                    }
                    listener
                }
            };
            let listener = listener.map_err(|e| SocketError::Bind {
                address: address.clone(),
                reason: os_error_text(&e),
            })?;
            bound.listeners.push(listener);
        }
        Ok(bound)
    }

    /// The bound sockets, in `--bind` order.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }
}

impl Drop for BoundSockets {
    fn drop(&mut self) {
        self.listeners.clear();
        for path in &self.unix_paths {
            if is_socket(path) {
                if let Err(e) = std::fs::remove_file(path) {
                    log::warn!("cannot remove {}: {}", path.display(), os_error_text(&e));
                }
            }
        }
    }
}

/// The address to bind for `host:port`: an IP literal as is, an empty host as
/// `0.0.0.0`, a host name resolved (its first IPv4 address, as gunicorn binds
/// names with an IPv4 socket, else its first address).
fn resolve(address: &BindAddress, host: &str, port: u16) -> Result<SocketAddr, SocketError> {
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolve_error = |reason: String| SocketError::Resolve {
        address: address.clone(),
        host: host.to_string(),
        reason,
    };
    let candidates: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| resolve_error(os_error_text(&e)))?
        .collect();
    candidates
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| candidates.first())
        .copied()
        .ok_or_else(|| resolve_error("no address found".to_string()))
}

/// A new non-blocking, close-on-exec stream socket.
fn stream_socket(family: AddressFamily) -> io::Result<OwnedFd> {
    Ok(socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// `listen` with the configured backlog (the kernel caps it at somaxconn).
fn listen(fd: &OwnedFd, backlog: u32) -> io::Result<()> {
    let backlog = i32::try_from(backlog)
        .unwrap_or(i32::MAX)
        .min(libc::SOMAXCONN);
    socket::listen(fd, Backlog::new(backlog)?)?;
    Ok(())
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = stream_socket(family)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, backlog)?;
    Ok(std::net::TcpListener::from(fd))
}

fn bind_unix(path: &Path, backlog: u32) -> io::Result<std::os::unix::net::UnixListener> {
    remove_stale_socket(path)?;
    let fd = stream_socket(AddressFamily::Unix)?;
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    listen(&fd, backlog)?;
    Ok(std::os::unix::net::UnixListener::from(fd))
}

/// Removes a socket file left by a server that is gone. A socket someone
/// still accepts on is "in use"; a file that is not a socket is never
/// touched.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way",
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
    }
    std::fs::remove_file(path)
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// The OS error's text without Rust's ` (os error N)` suffix:
/// `Address already in use`.
pub(crate) fn os_error_text(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(index) if text.ends_with(')') => text[..index].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn tcp(host: &str, port: u16) -> BindAddress {
        BindAddress::Tcp {
            host: host.to_string(),
            port,
        }
    }

    fn temp_socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rgunicorn-test-{}-{name}.sock", std::process::id()))
    }

    #[test]
    fn tcp_port_zero_binds_a_real_port_that_accepts() {
        let sockets = BoundSockets::bind_all(&[tcp("127.0.0.1", 0)], 16).unwrap();
        let Listener::Tcp(listener) = &sockets.listeners()[0] else {
            panic!()
        };
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(sockets.listeners()[0].url(), format!("http://{addr}"));
        std::net::TcpStream::connect(addr).unwrap();
        let nodelay = socket::getsockopt(listener, sockopt::TcpNoDelay).unwrap();
        assert!(nodelay);
        let reuse = socket::getsockopt(listener, sockopt::ReuseAddr).unwrap();
        assert!(reuse);
        listener.accept().unwrap();
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn host_names_resolve() {
        let sockets = BoundSockets::bind_all(&[tcp("localhost", 0)], 16).unwrap();
        let Listener::Tcp(listener) = &sockets.listeners()[0] else {
            panic!()
        };
        assert!(listener.local_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn ipv6_sockets_are_v6_only() {
        let Ok(sockets) = BoundSockets::bind_all(&[tcp("::1", 0)], 16) else {
            return; // no IPv6 loopback on this machine
        };
        let Listener::Tcp(listener) = &sockets.listeners()[0] else {
            panic!()
        };
        assert!(socket::getsockopt(listener, sockopt::Ipv6V6Only).unwrap());
        assert!(sockets.listeners()[0].url().starts_with("http://[::1]:"));
    }

    #[test]
    fn address_in_use_is_one_line() {
        let first = BoundSockets::bind_all(&[tcp("127.0.0.1", 0)], 16).unwrap();
        let Listener::Tcp(listener) = &first.listeners()[0] else {
            panic!()
        };
        let port = listener.local_addr().unwrap().port();
        let err = BoundSockets::bind_all(&[tcp("127.0.0.1", port)], 16).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot bind 127.0.0.1:{port}: Address already in use")
        );
    }

    #[test]
    fn unresolvable_hosts_are_reported() {
        let err = BoundSockets::bind_all(&[tcp("no-such-host.invalid", 80)], 16).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cannot bind no-such-host.invalid:80: cannot resolve host"),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn unix_socket_is_bound_replacing_a_stale_one_and_removed_on_drop() {
        let path = temp_socket_path("stale");
        let _ = std::fs::remove_file(&path);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a stale file
        assert!(is_socket(&path));
        let sockets = BoundSockets::bind_all(&[BindAddress::Unix(path.clone())], 16).unwrap();
        assert_eq!(
            sockets.listeners()[0].url(),
            format!("unix:{}", path.display())
        );
        UnixStream::connect(&path).unwrap();
        drop(sockets);
        assert!(!path.exists());
    }

    #[test]
    fn unix_socket_in_use_or_not_a_socket_is_left_alone() {
        let path = temp_socket_path("live");
        let _ = std::fs::remove_file(&path);
        let live = BoundSockets::bind_all(&[BindAddress::Unix(path.clone())], 16).unwrap();
        let err = BoundSockets::bind_all(&[BindAddress::Unix(path.clone())], 16).unwrap_err();
        assert!(err.to_string().ends_with("Address already in use"), "{err}");
        assert!(is_socket(&path));
        drop(live);

        let file = temp_socket_path("regular");
        std::fs::write(&file, b"keep me").unwrap();
        let err = BoundSockets::bind_all(&[BindAddress::Unix(file.clone())], 16).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn a_failed_bind_releases_the_sockets_bound_before_it() {
        let path = temp_socket_path("partial");
        let _ = std::fs::remove_file(&path);
        let blocker = BoundSockets::bind_all(&[tcp("127.0.0.1", 0)], 16).unwrap();
        let Listener::Tcp(listener) = &blocker.listeners()[0] else {
            panic!()
        };
        let port = listener.local_addr().unwrap().port();
        let addresses = [BindAddress::Unix(path.clone()), tcp("127.0.0.1", port)];
        assert!(BoundSockets::bind_all(&addresses, 16).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn os_error_text_drops_the_code() {
        let error = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(os_error_text(&error), "Address already in use");
        let error = io::Error::other("plain");
        assert_eq!(os_error_text(&error), "plain");
    }
}

//! The socket types shared by the master and the workers: the listening
//! socket (the master binds it, the workers inherit it across fork and exec
//! and accept on it) and the [`Endpoint`] of an accepted connection.

use nix::sys::socket::{self, sockopt, AddressFamily, SockType, SockaddrStorage};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Where a connection came from and arrived at.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// A unix socket (REMOTE_ADDR is empty, as gunicorn's).
    Unix,
}

/// A bound, listening, non-blocking socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

impl Listener {
    /// `fd`, a socket of the same kind as this one (e.g. a worker's own
    /// `--reuse-port` socket for this address, received over a socket).
    pub fn same_kind(&self, fd: OwnedFd) -> Listener {
        match self {
            Listener::Tcp(_) => Listener::Tcp(std::net::TcpListener::from(fd)),
            Listener::Unix(_) => Listener::Unix(std::os::unix::net::UnixListener::from(fd)),
        }
    }

    /// Where this socket listens, as gunicorn logs it: `http://127.0.0.1:8000`,
    /// `http://[::1]:8000` (the real port when port 0 was asked) or
    /// `unix:/run/app.sock`.
    pub fn url(&self) -> String {
        self.url_as(crate::http::UrlScheme::Http)
    }

    /// Like [`Listener::url`], with `https://` for a TCP listener that
    /// serves TLS.
    pub fn url_as(&self, scheme: crate::http::UrlScheme) -> String {
        let scheme = scheme.as_str();
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("{scheme}://{addr}"),
                Err(_) => format!("{scheme}://?"),
            },
            Listener::Unix(l) => match l.local_addr() {
                Ok(addr) => match addr.as_pathname() {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "unix:?".to_string(),
                },
                Err(_) => "unix:?".to_string(),
            },
        }
    }

    /// Wraps an inherited listening fd (from an old master, systemd, or
    /// the master for a worker), making it non-blocking and close-on-exec.
    /// The fd is owned from now on.
    pub fn adopt(fd: RawFd) -> io::Result<Listener> {
        let address: SockaddrStorage = socket::getsockname(fd)?;
        let family = socket::SockaddrLike::family(&address);
        let socket_type = socket::getsockopt(
            // SAFETY: `fd` is open (getsockname just succeeded) and borrowed
            // only for this call.
            &unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            sockopt::SockType,
        )?;
        if socket_type != SockType::Stream {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is not a stream socket"),
            ));
        }
        // SAFETY: the fd was handed to this process to own (by the old master,
        // systemd or the master); nothing else in this process wraps it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        nix::fcntl::fcntl(
            &owned,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        let listener = match family {
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                Listener::Tcp(std::net::TcpListener::from(owned))
            }
            Some(AddressFamily::Unix) => {
                Listener::Unix(std::os::unix::net::UnixListener::from(owned))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("fd {fd} is neither a TCP nor a unix socket"),
                ))
            }
        };
        match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true)?,
            Listener::Unix(l) => l.set_nonblocking(true)?,
        }
        Ok(listener)
    }
}

//! The socket types shared by the master and the workers: the listening
//! socket (the master binds it, the workers inherit it across fork and
//! accept on it) and the [`Endpoint`] of an accepted connection.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
}

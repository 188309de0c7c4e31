//! Binding the listening sockets, once, in the master before any fork; the
//! workers inherit them. Owns the unix socket files: a stale one is removed
//! before binding and ours is removed when the master lets go of it.
//!
//! TCP listeners get `SO_REUSEADDR`, `IPV6_V6ONLY` on v6, `TCP_NODELAY` (which
//! accepted connections inherit on Linux), the configured backlog, and are
//! non-blocking and close-on-exec.
//!
//! Sockets can also be inherited instead of bound: from the old master of a
//! binary upgrade (`RGUNICORN_FD`) or from systemd (`LISTEN_FDS`). An
//! inherited socket is matched to the `--bind` address it listens on; the
//! addresses nothing was inherited for are bound as usual, and inherited
//! sockets no `--bind` names are used too. Systemd's sockets replace
//! `--bind`: a `--bind` naming one's address only says whether it is TLS.
//!
//! Each socket knows whether it serves TLS ([`BoundSockets::serves_tls`]):
//! as its `--bind` says (an inherited socket: the `--bind` matched to it),
//! else [`SocketOptions::tls_by_default`]. After an exec (USR2) the new
//! master finds the fact again the same way, from its own `--bind` list.
//!
//! With `--reuse-port` the TCP sockets get `SO_REUSEPORT`, and each worker
//! gets its own listening socket on the same address
//! ([`BoundSockets::worker_listeners`]) so the kernel spreads connections
//! over the workers. The master's own TCP socket is then bound but not
//! listening: it holds the address (and is what an upgrade hands over)
//! without joining the group, where connections would wait for an accept
//! that never comes.

use crate::config::{Bind, BindAddress};
use crate::listener::Listener;
use crate::os_error::os_error_text;
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
    UnixAddr,
};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
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
/// and removes the unix socket files it created or took over from an old
/// master (unless [`BoundSockets::keep_unix_socket_files`] was called).
#[derive(Debug)]
pub struct BoundSockets {
    listeners: Vec<Listener>,
    /// Whether `listeners[i]` serves TLS.
    serves_tls: Vec<bool>,
    unix_paths: Vec<PathBuf>,
    options: SocketOptions,
    /// The sockets are systemd's (socket activation).
    from_systemd: bool,
}

/// How sockets are set up.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// The listen backlog.
    pub backlog: u32,
    /// `--reuse-port`.
    pub reuse_port: bool,
    /// The umask unix socket files are created with (`--umask`, else 0:
    /// a socket anyone on the machine may connect to, as gunicorn's).
    pub unix_umask: u32,
    /// Whether a socket serves TLS when its `--bind` names no scheme or no
    /// `--bind` names it (`--certfile` is set).
    pub tls_by_default: bool,
}

/// Where inherited sockets come from, which decides who owns their files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inheritance {
    /// From the old master of a binary upgrade: its unix socket files
    /// become ours to remove.
    Upgrade,
    /// From systemd, which owns the socket files.
    Systemd,
}

impl BoundSockets {
    /// Binds every address, in order. On an error the sockets bound so far
    /// are closed (and their files removed) before returning.
    pub fn bind_all(addresses: &[BindAddress], backlog: u32) -> Result<BoundSockets, SocketError> {
        let options = SocketOptions {
            backlog,
            reuse_port: false,
            unix_umask: 0,
            tls_by_default: false,
        };
        let binds: Vec<Bind> = addresses.iter().cloned().map(Bind::unsaid).collect();
        BoundSockets::open(&binds, options, Vec::new(), Inheritance::Upgrade)
    }

    /// `--user`/`--group`: gives the unix socket files we bound to the
    /// workers' user and group (as gunicorn does). A failure is logged.
    pub fn chown_unix_socket_files(
        &self,
        uid: Option<nix::unistd::Uid>,
        gid: Option<nix::unistd::Gid>,
    ) {
        for path in &self.unix_paths {
            if let Err(e) = nix::unistd::chown(path, uid, gid) {
                log::warn!("cannot change the owner of {}: {e}", path.display());
            }
        }
    }

    /// Takes the `inherited` sockets, matching each `--bind` address to the
    /// inherited socket that listens there, and binds the addresses left
    /// (not from systemd, whose sockets replace `--bind`). Inherited
    /// sockets no address names are kept too (after the others).
    pub fn open(
        binds: &[Bind],
        options: SocketOptions,
        inherited: Vec<Listener>,
        inheritance: Inheritance,
    ) -> Result<BoundSockets, SocketError> {
        let mut bound = BoundSockets {
            listeners: Vec::with_capacity(binds.len() + inherited.len()),
            serves_tls: Vec::with_capacity(binds.len() + inherited.len()),
            unix_paths: Vec::new(),
            options,
            from_systemd: inheritance == Inheritance::Systemd && !inherited.is_empty(),
        };
        let mut inherited: Vec<Option<Listener>> = inherited.into_iter().map(Some).collect();
        for bind in binds {
            let serves_tls = bind.serves_tls(options.tls_by_default);
            let address = &bind.address;
            if let Some(listener) = take_matching(&mut inherited, address) {
                bound.adopt(listener, inheritance, serves_tls);
                continue;
            }
            if inheritance == Inheritance::Systemd {
                continue;
            }
            let listener = match address {
                BindAddress::Tcp { host, port } => {
                    let addr = resolve(address, host, *port)?;
                    bind_tcp(addr, options).map(Listener::Tcp)
                }
                BindAddress::Unix(path) => {
                    let listener = bind_unix(path, options).map(Listener::Unix);
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
            bound.serves_tls.push(serves_tls);
        }
        for listener in inherited.into_iter().flatten() {
            bound.adopt(listener, inheritance, options.tls_by_default);
        }
        Ok(bound)
    }

    /// Keeps an inherited socket (owning its file after an upgrade).
    fn adopt(&mut self, listener: Listener, inheritance: Inheritance, serves_tls: bool) {
        if let (Listener::Unix(unix), Inheritance::Upgrade) = (&listener, inheritance) {
            if let Some(path) = unix
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            {
                self.unix_paths.push(path);
            }
        }
        self.listeners.push(listener);
        self.serves_tls.push(serves_tls);
    }

    /// The bound sockets, in `--bind` order.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Whether each of [`BoundSockets::listeners`] (and of
    /// [`BoundSockets::worker_listeners`], in the same order) serves TLS.
    pub fn serves_tls(&self) -> &[bool] {
        &self.serves_tls
    }

    /// Whether the sockets came from systemd.
    pub fn from_systemd(&self) -> bool {
        self.from_systemd
    }

    /// The fds of the sockets, to hand to a new master.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.listeners.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// After a binary upgrade the new master serves on our unix sockets:
    /// leave their files in place when we exit.
    pub fn keep_unix_socket_files(&mut self) {
        self.unix_paths.clear();
    }

    /// With `--reuse-port`, one worker's own listening sockets: a new
    /// `SO_REUSEPORT` socket on the address of each TCP listener (or the
    /// shared socket when that fails, e.g. for a systemd socket without
    /// `SO_REUSEPORT`), and the shared unix sockets. `None` without
    /// `--reuse-port`: workers share the master's sockets.
    pub fn worker_listeners(&self) -> io::Result<Option<Vec<Listener>>> {
        if !self.options.reuse_port {
            return Ok(None);
        }
        let mut own = Vec::with_capacity(self.listeners.len());
        for listener in &self.listeners {
            own.push(match listener {
                Listener::Tcp(tcp) => {
                    let addr = tcp.local_addr()?;
                    match bind_tcp(addr, self.options).and_then(|l| listen_now(l, self.options)) {
                        Ok(listener) => Listener::Tcp(listener),
                        Err(e) => {
                            log::debug!(
                                "cannot open a SO_REUSEPORT socket on {addr} ({}); sharing the master's",
                                os_error_text(&e)
                            );
                            listen_now(tcp.try_clone()?, self.options).map(Listener::Tcp)?
                        }
                    }
                }
                Listener::Unix(unix) => Listener::Unix(unix.try_clone()?),
            });
        }
        Ok(Some(own))
    }
}

/// Removes and returns the inherited socket that listens on `address`.
fn take_matching(inherited: &mut [Option<Listener>], address: &BindAddress) -> Option<Listener> {
    let slot = inherited
        .iter_mut()
        .find(|slot| slot.as_ref().is_some_and(|l| listens_on(l, address)))?;
    slot.take()
}

/// Whether `listener` listens on `address`: the same path, or the same IP
/// and port (any port for port 0).
pub fn listens_on(listener: &Listener, address: &BindAddress) -> bool {
    let wanted = match address {
        BindAddress::Tcp { host, port } => resolve(address, host, *port).ok(),
        BindAddress::Unix(_) => None,
    };
    match (listener, address) {
        (Listener::Unix(unix), BindAddress::Unix(path)) => unix
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p == path.as_path()))
            .unwrap_or(false),
        (Listener::Tcp(tcp), BindAddress::Tcp { .. }) => match (tcp.local_addr().ok(), wanted) {
            (Some(have), Some(want)) => {
                have == want || (want.port() == 0 && have.ip() == want.ip())
            }
            _ => false,
        },
        _ => false,
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

/// Binds a TCP socket; it listens at once unless `--reuse-port` is on (then
/// the master's socket only holds the address; see the module comment).
fn bind_tcp(addr: SocketAddr, options: SocketOptions) -> io::Result<std::net::TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = stream_socket(family)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    if options.reuse_port {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    if !options.reuse_port {
        listen(&fd, options.backlog)?;
    }
    Ok(std::net::TcpListener::from(fd))
}

/// Puts a (worker's) socket in the listening state.
fn listen_now(
    listener: std::net::TcpListener,
    options: SocketOptions,
) -> io::Result<std::net::TcpListener> {
    let fd = OwnedFd::from(listener);
    listen(&fd, options.backlog)?;
    Ok(std::net::TcpListener::from(fd))
}

/// Binds a unix socket, its file created under `options.unix_umask`.
fn bind_unix(path: &Path, options: SocketOptions) -> io::Result<std::os::unix::net::UnixListener> {
    remove_stale_socket(path)?;
    let fd = stream_socket(AddressFamily::Unix)?;
    let mask = nix::sys::stat::Mode::from_bits_truncate(options.unix_umask as libc::mode_t);
    let previous = nix::sys::stat::umask(mask);
    let bound = socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?);
    nix::sys::stat::umask(previous);
    bound?;
    listen(&fd, options.backlog)?;
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

    fn binds(addresses: &[BindAddress]) -> Vec<Bind> {
        addresses.iter().cloned().map(Bind::unsaid).collect()
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

    fn options(reuse_port: bool) -> SocketOptions {
        SocketOptions {
            backlog: 16,
            reuse_port,
            unix_umask: 0,
            tls_by_default: true,
        }
    }

    fn tcp_addr(listener: &Listener) -> SocketAddr {
        let Listener::Tcp(tcp) = listener else {
            panic!("not TCP")
        };
        tcp.local_addr().unwrap()
    }

    /// A listening socket as another process would pass it: a raw fd.
    fn inherited_tcp() -> (RawFd, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (std::os::fd::IntoRawFd::into_raw_fd(listener), addr)
    }

    #[test]
    fn inherited_fds_are_adopted_non_blocking_and_close_on_exec() {
        let (fd, addr) = inherited_tcp();
        let listener = Listener::adopt(fd).unwrap();
        assert_eq!(tcp_addr(&listener), addr);
        let flags = nix::fcntl::fcntl(&listener, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        let Listener::Tcp(tcp) = &listener else {
            panic!()
        };
        assert_eq!(tcp.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);

        let file = std::fs::File::open("/dev/null").unwrap();
        let not_a_socket = std::os::fd::IntoRawFd::into_raw_fd(file);
        assert!(Listener::adopt(not_a_socket).is_err());
        // SAFETY: the fd is ours and `Listener::adopt` did not take it.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(not_a_socket) });
    }

    #[test]
    fn inherited_sockets_replace_binding_their_address_and_extras_are_kept() {
        let (matching_fd, matching) = inherited_tcp();
        let (extra_fd, extra) = inherited_tcp();
        let inherited = vec![
            Listener::adopt(extra_fd).unwrap(),
            Listener::adopt(matching_fd).unwrap(),
        ];
        let path = temp_socket_path("fresh");
        let _ = std::fs::remove_file(&path);
        let addresses = [
            tcp("127.0.0.1", matching.port()),
            BindAddress::Unix(path.clone()), // nothing inherited: freshly bound
        ];
        let sockets = BoundSockets::open(
            &binds(&addresses),
            options(false),
            inherited,
            Inheritance::Upgrade,
        )
        .unwrap();
        let listeners = sockets.listeners();
        assert_eq!(listeners.len(), 3);
        assert_eq!(tcp_addr(&listeners[0]), matching);
        assert_eq!(listeners[1].url(), format!("unix:{}", path.display()));
        assert_eq!(tcp_addr(&listeners[2]), extra);
        assert_eq!(sockets.raw_fds().len(), 3);
        drop(sockets);
        assert!(!path.exists());
    }

    #[test]
    fn each_socket_serves_tls_as_the_bind_matched_to_it_says() {
        use crate::config::BindScheme;
        let scheme = |scheme, port| Bind {
            scheme,
            address: tcp("127.0.0.1", port),
        };
        // After an upgrade: matched by address, fresh, and unnamed.
        let (plain_fd, plain) = inherited_tcp();
        let (extra_fd, _) = inherited_tcp();
        let inherited = vec![
            Listener::adopt(extra_fd).unwrap(),
            Listener::adopt(plain_fd).unwrap(),
        ];
        let path = temp_socket_path("tls-fresh");
        let _ = std::fs::remove_file(&path);
        let binds = [
            scheme(BindScheme::Http, plain.port()),
            Bind::unsaid(BindAddress::Unix(path.clone())),
        ];
        let sockets =
            BoundSockets::open(&binds, options(false), inherited, Inheritance::Upgrade).unwrap();
        assert_eq!(tcp_addr(&sockets.listeners()[0]), plain);
        assert_eq!(sockets.serves_tls(), [false, true, true]);
        drop(sockets);

        // From systemd: a bind only labels the socket it names; the
        // others are not bound.
        let (systemd_fd, systemd) = inherited_tcp();
        let (other_fd, _) = inherited_tcp();
        let inherited = vec![
            Listener::adopt(other_fd).unwrap(),
            Listener::adopt(systemd_fd).unwrap(),
        ];
        let binds = [
            scheme(BindScheme::Unsaid, 1),
            scheme(BindScheme::Http, systemd.port()),
        ];
        let sockets =
            BoundSockets::open(&binds, options(false), inherited, Inheritance::Systemd).unwrap();
        assert_eq!(sockets.listeners().len(), 2);
        assert_eq!(tcp_addr(&sockets.listeners()[0]), systemd);
        assert_eq!(sockets.serves_tls(), [false, true]);
    }

    #[test]
    fn port_zero_matches_an_inherited_socket_on_the_same_ip() {
        let (fd, addr) = inherited_tcp();
        let sockets = BoundSockets::open(
            &binds(&[tcp("127.0.0.1", 0)]),
            options(false),
            vec![Listener::adopt(fd).unwrap()],
            Inheritance::Upgrade,
        )
        .unwrap();
        assert_eq!(sockets.listeners().len(), 1);
        assert_eq!(tcp_addr(&sockets.listeners()[0]), addr);
    }

    #[test]
    fn unix_files_follow_their_owner() {
        // Inherited from an old master: ours to remove.
        let path = temp_socket_path("upgrade");
        let _ = std::fs::remove_file(&path);
        let old = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let inherited = Listener::Unix(old);
        let sockets = BoundSockets::open(
            &binds(&[BindAddress::Unix(path.clone())]),
            options(false),
            vec![inherited],
            Inheritance::Upgrade,
        )
        .unwrap();
        drop(sockets);
        assert!(!path.exists());

        // From systemd: its file stays.
        let old = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let sockets = BoundSockets::open(
            &[],
            options(false),
            vec![Listener::Unix(old)],
            Inheritance::Systemd,
        )
        .unwrap();
        drop(sockets);
        assert!(is_socket(&path));

        // Ours, but handed to a new master: left for it.
        std::fs::remove_file(&path).unwrap();
        let mut sockets = BoundSockets::bind_all(&[BindAddress::Unix(path.clone())], 16).unwrap();
        sockets.keep_unix_socket_files();
        drop(sockets);
        assert!(is_socket(&path));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn unix_socket_files_get_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_socket_path("umask");
        let _ = std::fs::remove_file(&path);
        let mut private = options(false);
        private.unix_umask = 0o077;
        let sockets = BoundSockets::open(
            &binds(&[BindAddress::Unix(path.clone())]),
            private,
            Vec::new(),
            Inheritance::Upgrade,
        )
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(sockets);
    }

    #[test]
    fn reuse_port_gives_each_worker_its_own_socket_on_the_same_address() {
        let sockets = BoundSockets::open(
            &binds(&[tcp("127.0.0.1", 0)]),
            options(true),
            Vec::new(),
            Inheritance::Upgrade,
        )
        .unwrap();
        let master = &sockets.listeners()[0];
        assert!(socket::getsockopt(master, sockopt::ReusePort).unwrap());
        assert!(!socket::getsockopt(master, sockopt::AcceptConn).unwrap());
        let addr = tcp_addr(master);
        let first = sockets.worker_listeners().unwrap().unwrap();
        let second = sockets.worker_listeners().unwrap().unwrap();
        assert_eq!(tcp_addr(&first[0]), addr);
        assert_eq!(tcp_addr(&second[0]), addr);
        assert_ne!(first[0].as_raw_fd(), second[0].as_raw_fd());
        assert!(socket::getsockopt(&first[0], sockopt::AcceptConn).unwrap());
        assert!(socket::getsockopt(&second[0], sockopt::AcceptConn).unwrap());

        let shared = BoundSockets::bind_all(&[tcp("127.0.0.1", 0)], 16).unwrap();
        assert!(shared.worker_listeners().unwrap().is_none());
    }
}

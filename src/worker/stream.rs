//! A client connection's byte stream: a TCP or unix socket, plain or with
//! TLS on top ([`super::tls_session`]), behind one type that the
//! connection reads, writes and registers with mio. The connection sees
//! plaintext either way; what TLS changes for it is said by
//! [`Stream::url_scheme`], [`Stream::tls_info`] and the pending records
//! ([`Stream::has_pending_output`], [`Stream::flush_pending`]). sendfile
//! cannot go through TLS (records are made in user space): a worker that
//! serves TLS turns it off, so file bodies are read and encrypted.

use super::tls_session::TlsSession;
use crate::http::UrlScheme;
use crate::tls_info::TlsInfo;
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// An accepted, non-blocking client socket.
#[derive(Debug)]
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A client socket, with its TLS session when the listener serves TLS.
pub struct Stream {
    socket: Socket,
    tls: Option<Box<TlsSession>>,
    /// Every further write is the end of the connection's last response:
    /// plain TCP writes go out with `MSG_MORE`, so the kernel holds their
    /// last partial segment and the FIN of the close (or shutdown) that
    /// follows leaves in it (one packet for the client to take, not two).
    last_writes: bool,
}

impl Stream {
    /// A plain-text stream.
    pub fn plain(socket: Socket) -> Stream {
        Stream {
            socket,
            tls: None,
            last_writes: false,
        }
    }

    /// A stream whose bytes are TLS records of `session`, which starts with
    /// the handshake.
    pub fn tls(socket: Socket, session: TlsSession) -> Stream {
        Stream {
            socket,
            tls: Some(Box::new(session)),
            last_writes: false,
        }
    }

    /// Shuts down one or both directions, ignoring "not connected". With
    /// TLS, shutting down writing first sends the close_notify alert and
    /// waits for the records queued before it.
    pub fn shutdown(&mut self, how: Shutdown) {
        match &mut self.tls {
            Some(tls) if how != Shutdown::Read => tls.close(&mut self.socket),
            _ => self.socket.shutdown(how),
        }
    }

    /// `https` over TLS, `http` otherwise (before any forwarded header
    /// has its say).
    pub fn url_scheme(&self) -> UrlScheme {
        match self.tls {
            Some(_) => UrlScheme::Https,
            None => UrlScheme::Http,
        }
    }

    /// The negotiated TLS parameters and client certificate, once the
    /// handshake is done.
    pub fn tls_info(&self) -> Option<&Arc<TlsInfo>> {
        self.tls.as_ref().and_then(|tls| tls.info())
    }

    /// Whether a read that returned less than asked for has emptied the
    /// socket's receive queue: true for plain text; with TLS the session
    /// may hold decrypted bytes it did not return.
    pub fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    /// Says that what is written from now on ends the connection: a close
    /// or shutdown follows once it is out (see [`Stream::last_writes`]).
    pub fn mark_last_writes(&mut self) {
        self.last_writes = true;
    }

    /// Whether the socket's receive queue is empty (`FIONREAD`), so closing
    /// it sends a FIN rather than a reset. Always false with TLS: its close
    /// goes through the session's close_notify.
    pub fn nothing_unread(&self) -> bool {
        if self.tls.is_some() {
            return false;
        }
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD on an open socket writes one c_int into
        // `unread`, which outlives the call.
        let result = unsafe { libc::ioctl(self.as_raw_fd(), libc::FIONREAD, &mut unread) };
        result == 0 && unread == 0
    }

    /// Whether TLS records are waiting to be written (the socket was full
    /// when they were made): keep writing even with nothing else queued,
    /// and do not close before they are out.
    pub fn has_pending_output(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.has_pending_output())
    }

    /// Whether the TLS session waits for [`Stream::start_tls`]: with
    /// `--proxy-protocol`, a TLS stream passes the PROXY header through as
    /// it came.
    pub fn awaits_tls(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.awaits_proxy_header())
    }

    /// Starts the TLS session after the PROXY header, with `received` (the
    /// bytes read after the header) as its first input.
    pub fn start_tls(&mut self, received: &[u8]) {
        if let Some(tls) = &mut self.tls {
            tls.start(&mut self.socket, received);
        }
    }

    /// Writes the waiting TLS records; `WouldBlock` when the socket is full.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => tls.flush(&mut self.socket),
            None => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.socket, buf),
            None => self.socket.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.write_vectored(&mut self.socket, &[IoSlice::new(buf)]),
            None if self.last_writes => self.socket.send_more(&[IoSlice::new(buf)]),
            None => self.socket.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.write_vectored(&mut self.socket, bufs),
            None if self.last_writes => self.socket.send_more(bufs),
            None => self.socket.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

impl Socket {
    /// Writes `bufs` with `MSG_MORE` on TCP (the kernel may hold a partial
    /// segment for what follows: more data, or the FIN); a unix socket
    /// writes them plainly.
    fn send_more(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Socket::Tcp(socket) = self else {
            return self.write_vectored(bufs);
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on unix (std guarantees it).
        message.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = bufs.len() as _;
        // SAFETY: the socket is open; `message` points at `bufs`' iovecs,
        // which outlive the call and are only read.
        let sent = unsafe {
            libc::sendmsg(
                socket.as_raw_fd(),
                &message,
                libc::MSG_NOSIGNAL | libc::MSG_MORE,
            )
        };
        match sent {
            n if n >= 0 => Ok(n as usize),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Shuts down one or both directions, ignoring "not connected".
    pub fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        };
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(registry, token, interests),
            Socket::Unix(s) => s.register(registry, token, interests),
        }
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(registry, token, interests),
            Socket::Unix(s) => s.reregister(registry, token, interests),
        }
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(registry),
            Socket::Unix(s) => s.deregister(registry),
        }
    }
}

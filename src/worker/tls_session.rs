//! One connection's TLS session over its non-blocking socket, in the
//! manner of rustls's `tlsserver-mio` example: records read from the
//! socket are fed to the `ServerConnection` (`read_tls`,
//! `process_new_packets`), plaintext is taken from and given to it, and
//! the records it makes are written out (`write_tls`) as far as the socket
//! takes them; the rest wait for the next writable edge
//! ([`TlsSession::flush`]). The handshake is part of reading: a client
//! that stalls it stays in the connection's first state, under the header
//! timeout, like any slow client.
//!
//! A plain HTTP request sent to the TLS port (its first byte is a letter,
//! never a TLS record type) is answered `400` in plain text and the
//! connection ends, as nginx does.

use super::stream::Socket;
use crate::http::{self, HttpDate};
use crate::tls_info::TlsInfo;
use rustls::{ProtocolVersion, ServerConfig, ServerConnection};
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Bytes of a plain HTTP request read and dropped before answering 400, so
/// the close is a FIN rather than a reset that could eat the answer.
const PLAIN_DRAIN_LIMIT: usize = 64 * 1024;

/// A server-side TLS session.
pub struct TlsSession {
    conn: ServerConnection,
    /// With `--proxy-protocol`: bytes pass through as they come until the
    /// PROXY header has been read ([`TlsSession::start`]).
    awaiting_proxy_header: bool,
    /// Why the records fed by [`TlsSession::start`] failed, for the next read.
    failed: Option<rustls::Error>,
    /// The socket reached end of file.
    eof: bool,
    /// Nothing has been read yet (the first byte is checked for plain HTTP).
    fresh: bool,
    /// close_notify is queued: shut the socket's writing once it is out.
    closing: bool,
    /// The handshake's facts, once it is done.
    info: Option<Arc<TlsInfo>>,
}

impl TlsSession {
    /// A session that starts with the handshake, or (`proxy_header_first`)
    /// with a PROXY protocol header that passes through in plain text.
    pub fn new(
        config: Arc<ServerConfig>,
        proxy_header_first: bool,
    ) -> Result<TlsSession, rustls::Error> {
        Ok(TlsSession {
            conn: ServerConnection::new(config)?,
            awaiting_proxy_header: proxy_header_first,
            failed: None,
            eof: false,
            fresh: true,
            closing: false,
            info: None,
        })
    }

    /// The handshake's facts, once it is done.
    pub fn info(&self) -> Option<&Arc<TlsInfo>> {
        self.info.as_ref()
    }

    /// Whether bytes still pass through until the PROXY header is read.
    pub fn awaits_proxy_header(&self) -> bool {
        self.awaiting_proxy_header
    }

    /// Whether records are waiting for the socket.
    pub fn has_pending_output(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes waiting records until done or `WouldBlock`; after
    /// [`TlsSession::close`], then shuts the socket's writing.
    pub fn flush(&mut self, socket: &mut Socket) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.closing {
            socket.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Queues close_notify and shuts writing once it (and everything before
    /// it) is written.
    pub fn close(&mut self, socket: &mut Socket) {
        if self.awaiting_proxy_header {
            socket.shutdown(Shutdown::Write);
            return;
        }
        if !self.closing {
            self.closing = true;
            self.conn.send_close_notify();
        }
        let _ = self.flush(socket);
    }

    /// The PROXY header has been read: TLS starts, with `received` (what
    /// came after the header) as its first records.
    pub fn start(&mut self, socket: &mut Socket, received: &[u8]) {
        if !self.awaiting_proxy_header {
            return;
        }
        self.awaiting_proxy_header = false;
        if received.is_empty() {
            return;
        }
        self.fresh = false;
        if received[0].is_ascii_alphabetic() {
            self.refuse_plain_http(socket);
            return;
        }
        let mut input = received;
        while !input.is_empty() {
            match self.conn.read_tls(&mut input) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Err(error) = self.conn.process_new_packets() {
                self.failed = Some(error);
                break;
            }
        }
        let _ = self.flush_quietly(socket);
    }

    /// Reads plaintext, driving the handshake as records arrive. `Ok(0)` is
    /// the end (close_notify, or EOF without it: a "ragged" EOF ends the
    /// connection the same way); `WouldBlock` when the socket has no more.
    pub fn read(&mut self, socket: &mut Socket, buf: &mut [u8]) -> io::Result<usize> {
        if self.awaiting_proxy_header {
            return socket.read(buf);
        }
        if let Some(error) = self.failed.take() {
            let _ = self.flush(socket);
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        if self.fresh {
            if looks_like_plain_http(socket)? {
                self.refuse_plain_http(socket);
                return Ok(0);
            }
            self.fresh = false;
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.conn.read_tls(socket) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.flush_quietly(socket)?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            if let Err(error) = self.conn.process_new_packets() {
                // Send the alert that says why, then end the connection.
                let _ = self.flush(socket);
                log::debug!("TLS handshake or record failed: {error}");
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            if self.info.is_none() && !self.conn.is_handshaking() {
                self.info = Some(Arc::new(self.handshake_info()));
            }
            self.flush_quietly(socket)?;
        }
    }

    /// Encrypts as much of `bufs` as the session buffers and writes what the
    /// socket takes. `WouldBlock` while older records still wait.
    pub fn write_vectored(
        &mut self,
        socket: &mut Socket,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        self.flush(socket)?;
        let accepted = self.conn.writer().write_vectored(bufs)?;
        self.flush_quietly(socket)?;
        if accepted == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(accepted)
    }

    /// [`TlsSession::flush`], where a full socket is not an error (the
    /// records wait for the next writable edge).
    fn flush_quietly(&mut self, socket: &mut Socket) -> io::Result<()> {
        match self.flush(socket) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    fn handshake_info(&self) -> TlsInfo {
        let protocol = match self.conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let cipher = self
            .conn
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str())
            .unwrap_or("");
        let client = self
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| crate::x509_name::certificate_names(leaf));
        TlsInfo {
            protocol,
            cipher,
            client,
        }
    }

    /// Answers a plain HTTP request with 400 and ends the connection: drops
    /// what has arrived, writes the answer, shuts writing.
    fn refuse_plain_http(&mut self, socket: &mut Socket) {
        log::debug!("Plain HTTP request on a TLS port; answering 400");
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < PLAIN_DRAIN_LIMIT {
            match socket.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
        let mut response = Vec::new();
        http::write_error_response(&mut response, 400, true, HttpDate::new().now());
        let _ = socket.write_all(&response);
        socket.shutdown(Shutdown::Write);
        self.eof = true;
        self.fresh = false;
    }
}

/// Whether the first byte waiting on `socket` starts an HTTP request line
/// (a method's letter) rather than a TLS record (type 20 to 24). Waits
/// (`WouldBlock`) until a byte is there.
fn looks_like_plain_http(socket: &Socket) -> io::Result<bool> {
    let mut first = [0u8; 1];
    match nix::sys::socket::recv(
        socket.as_raw_fd(),
        &mut first,
        nix::sys::socket::MsgFlags::MSG_PEEK,
    ) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(first[0].is_ascii_alphabetic()),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

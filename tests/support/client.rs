//! A raw-socket HTTP/1.1 client for the tests: it writes exactly the bytes a
//! test gives it and parses what comes back by hand, so framing mistakes
//! (a missing last chunk, a short Content-Length body, bytes after the end of
//! a response) are visible instead of papered over by a library.
//!
//! One [`Client`] is one connection; responses are read in order, which is
//! how pipelining is checked. Every read has a timeout.

use super::server::Address;
use super::READ_TIMEOUT;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How a response body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by definition (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Read until the server closed the connection.
    Close,
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header fields in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// The head exactly as received (status line and header fields).
    pub raw_head: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    pub framing: Framing,
    /// False when the connection ended before the framing said the body
    /// was over (short Content-Length body, missing last chunk).
    pub complete: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether header `name` has token `token` (comma-separated,
    /// case-insensitive), e.g. `Connection: close`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client socket to a test server, TCP or unix, read and written
/// directly (for tests that move tens of MiB, which [`Client`]'s
/// byte-by-byte parsing would make slow).
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to a test server with [`READ_TIMEOUT`] for reads and
    /// writes (panics on failure).
    pub fn connect(address: &Address) -> Stream {
        let stream = match address {
            Address::Tcp(addr) => Stream::Tcp(TcpStream::connect(addr).expect("connect")),
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path).expect("connect unix")),
        };
        stream.set_read_timeout(READ_TIMEOUT);
        stream.set_write_timeout(READ_TIMEOUT);
        stream
    }

    fn set_read_timeout(&self, timeout: Duration) {
        let result = match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Stream::Unix(s) => s.set_read_timeout(Some(timeout)),
        };
        result.expect("set_read_timeout");
    }

    fn set_write_timeout(&self, timeout: Duration) {
        let result = match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(timeout)),
            Stream::Unix(s) => s.set_write_timeout(Some(timeout)),
        };
        result.expect("set_write_timeout");
    }

    /// Half-closes the connection (no more request bytes).
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl std::os::fd::AsRawFd for Stream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why reading failed before a response head was complete.
#[derive(Debug)]
pub enum ReadError {
    /// The server closed the connection (or reset it).
    Closed { partial: Vec<u8> },
    /// No byte arrived within the read timeout.
    TimedOut { partial: Vec<u8> },
    /// The bytes are not an HTTP/1.x response head.
    Malformed(String),
}

/// One client connection.
pub struct Client {
    stream: Stream,
    /// Received bytes not yet consumed by a parsed response.
    pending: Vec<u8>,
    eof: bool,
}

impl Client {
    /// Connects to a test server (panics on failure).
    pub fn connect(address: &Address) -> Client {
        Client {
            stream: Stream::connect(address),
            pending: Vec::new(),
            eof: false,
        }
    }

    /// The client's own TCP port (what the server sees as REMOTE_PORT).
    pub fn local_port(&self) -> u16 {
        match &self.stream {
            Stream::Tcp(s) => s.local_addr().expect("local_addr").port(),
            Stream::Unix(_) => panic!("a unix-socket client has no port"),
        }
    }

    /// Changes the per-read timeout.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(timeout);
    }

    /// Writes all of `bytes` (panics on failure).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("send request bytes");
    }

    /// Writes all of `bytes`.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Half-closes the connection (no more request bytes).
    pub fn shutdown_write(&mut self) {
        self.stream.shutdown_write();
    }

    /// Reads one response to a non-HEAD request (panics on failure).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to("GET")
    }

    /// Reads one response to a request with `method` (HEAD responses have
    /// no body); panics with what was received if no full head arrives.
    pub fn read_response_to(&mut self, method: &str) -> Response {
        match self.try_read_response_to(method) {
            Ok(response) => response,
            Err(error) => panic!("no response: {}", describe(&error)),
        }
    }

    /// Reads one response to a request with `method`.
    pub fn try_read_response_to(&mut self, method: &str) -> Result<Response, ReadError> {
        let head_len = self.read_head()?;
        let raw_head: Vec<u8> = self.pending.drain(..head_len).collect();
        let mut response = parse_head(&String::from_utf8_lossy(&raw_head))?;
        response.raw_head = raw_head;
        self.read_body(method, &mut response);
        Ok(response)
    }

    /// Whether the server closes the connection within `timeout` (EOF or
    /// reset). Bytes that arrive instead are kept for the next response.
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(timeout);
        let result = self.fill();
        self.stream.set_read_timeout(READ_TIMEOUT);
        match result {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }

    /// Bytes received but not consumed by any parsed response.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Reads more bytes into `pending`; `Ok(0)` at EOF (a reset counts as
    /// EOF).
    fn fill(&mut self) -> std::io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    self.eof = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fills until `pending` holds a full head; returns its length.
    fn read_head(&mut self) -> Result<usize, ReadError> {
        loop {
            if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                return Ok(at + 4);
            }
            match self.fill() {
                Ok(0) => {
                    return Err(ReadError::Closed {
                        partial: self.pending.clone(),
                    })
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(ReadError::TimedOut {
                        partial: self.pending.clone(),
                    })
                }
            }
        }
    }

    /// Ensures `pending` holds at least `n` bytes; false if the connection
    /// ended first. Panics on a read timeout.
    fn want(&mut self, n: usize) -> bool {
        while self.pending.len() < n {
            match self.fill() {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) => panic!(
                    "timed out reading a response body ({e}); have {} bytes: {:?}",
                    self.pending.len(),
                    String::from_utf8_lossy(&self.pending)
                ),
            }
        }
        true
    }

    fn read_body(&mut self, method: &str, response: &mut Response) {
        let bodiless = method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&response.status)
            || response.status == 204
            || response.status == 304;
        if bodiless {
            response.framing = Framing::None;
        } else if response.header_has_token("Transfer-Encoding", "chunked") {
            response.framing = Framing::Chunked;
            response.complete = self.read_chunked(&mut response.body);
        } else if let Some(length) = response.header("Content-Length") {
            let length: usize = length.trim().parse().expect("numeric Content-Length");
            response.framing = Framing::Length;
            response.complete = self.want(length);
            let take = length.min(self.pending.len());
            response.body = self.pending.drain(..take).collect();
        } else {
            response.framing = Framing::Close;
            while self.want(self.pending.len() + 1) {}
            response.body = std::mem::take(&mut self.pending);
        }
    }

    /// Decodes a chunked body into `body`; false if the connection ended
    /// before the last chunk and trailer.
    fn read_chunked(&mut self, body: &mut Vec<u8>) -> bool {
        loop {
            let Some(line) = self.read_line() else {
                return false;
            };
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                loop {
                    match self.read_line() {
                        None => return false,
                        Some(trailer) if trailer.is_empty() => return true,
                        Some(_) => {}
                    }
                }
            }
            if !self.want(size + 2) {
                body.append(&mut self.pending);
                return false;
            }
            body.extend(self.pending.drain(..size));
            assert_eq!(
                &self.pending[..2],
                b"\r\n",
                "chunk data not followed by CRLF"
            );
            self.pending.drain(..2);
        }
    }

    /// One CRLF-terminated line (without the CRLF), or None at EOF.
    fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = find(&self.pending, b"\r\n") {
                let line = String::from_utf8_lossy(&self.pending[..at]).into_owned();
                self.pending.drain(..at + 2);
                return Some(line);
            }
            if !self.want(self.pending.len() + 1) {
                return None;
            }
        }
    }
}

fn describe(error: &ReadError) -> String {
    match error {
        ReadError::Closed { partial } => {
            format!(
                "connection closed after {:?}",
                String::from_utf8_lossy(partial)
            )
        }
        ReadError::TimedOut { partial } => {
            format!("timed out after {:?}", String::from_utf8_lossy(partial))
        }
        ReadError::Malformed(text) => format!("malformed head: {text}"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &str) -> Result<Response, ReadError> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts.next().and_then(|s| s.parse().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(ReadError::Malformed(head.to_string()));
    };
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed(head.to_string()));
        };
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Response {
        version,
        status,
        reason,
        headers,
        raw_head: Vec::new(),
        body: Vec::new(),
        framing: Framing::None,
        complete: true,
    })
}

/// Encodes `body` as chunks of at most `chunk_size` bytes plus the last
/// chunk.
pub fn chunked(body: &[u8], chunk_size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk_size.max(1) * 8 + 8);
    for piece in body.chunks(chunk_size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

//! `--metrics-bind`: the master's small HTTP server for `GET /metrics` and
//! `GET /status`. It runs inside the arbiter's loop, never in a thread of
//! its own: the master stays single-threaded, so a fork can never copy a
//! lock some other thread holds.
//!
//! Everything is non-blocking. The endpoint has its own mio `Poll` (its fd
//! is watched by the arbiter's signal poll, so a scrape wakes the loop at
//! once), and [`MetricsEndpoint::serve`] does only what is ready: accepts,
//! reads heads, answers from the numbers the arbiter hands it, writes what
//! the socket takes. A client that stalls costs a buffer until its deadline,
//! never the loop's time, and no worker is ever asked anything.
//!
//! One response per connection (`Connection: close`); heads are parsed by
//! `crate::http`, like every other request.

use super::sockets::{BoundSockets, Inheritance, SocketError, SocketOptions};
use crate::config::BindAddress;
use crate::http::{self, Limits, RequestHead, Status};
use crate::listener::Listener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
/// A scrape connection must be done in this time.
const DEADLINE: Duration = Duration::from_secs(10);
/// The most scrape connections at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;
/// The largest request head read (a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 8 * 1024;

/// What a path answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub content_type: &'static str,
    pub body: String,
}

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of `/status`.
pub const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// An accepted socket of either family.
enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
}

/// One scrape in progress.
struct Scrape {
    stream: Stream,
    head: RequestHead,
    request: Vec<u8>,
    /// The response, once the request is read; `written` of it is sent.
    response: Option<Vec<u8>>,
    written: usize,
    deadline: Instant,
}

/// What one readiness event left the connection at.
enum Next {
    Wait,
    Close,
}

/// The bound metrics socket and its scrapes.
pub struct MetricsEndpoint {
    socket: BoundSockets,
    poll: Poll,
    events: Events,
    scrapes: HashMap<Token, Scrape>,
    next_token: usize,
    limits: Limits,
}

impl MetricsEndpoint {
    /// Binds `address` (TCP or unix, like `--bind`), or takes `inherited`,
    /// the socket an old master served it on (a USR2 upgrade).
    pub fn bind(
        address: &BindAddress,
        inherited: Option<Listener>,
    ) -> Result<MetricsEndpoint, SocketError> {
        let options = SocketOptions {
            backlog: 128,
            reuse_port: false,
            unix_umask: 0,
            tls_by_default: false,
        };
        let socket = BoundSockets::open(
            &[crate::config::Bind::unsaid(address.clone())],
            options,
            inherited.into_iter().collect(),
            Inheritance::Upgrade,
        )?;
        let bind_error = |e: io::Error| SocketError::Bind {
            address: address.clone(),
            reason: crate::os_error::os_error_text(&e),
        };
        let poll = Poll::new().map_err(bind_error)?;
        let fd = socket.listeners()[0].as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)
            .map_err(bind_error)?;
        Ok(MetricsEndpoint {
            socket,
            poll,
            events: Events::with_capacity(64),
            scrapes: HashMap::new(),
            next_token: 1,
            limits: Limits::default(),
        })
    }

    /// Where it listens, as `Listening at:` writes it.
    pub fn url(&self) -> String {
        self.socket.listeners()[0].url()
    }

    /// The listening socket's fd, to hand to a new master (USR2).
    pub fn listener_fd(&self) -> RawFd {
        self.socket.listeners()[0].as_raw_fd()
    }

    /// A new master serves on the socket after us: leave its file.
    pub fn keep_unix_socket_file(&mut self) {
        self.socket.keep_unix_socket_files();
    }

    /// Does whatever is ready now (never waits): accepts, reads, answers
    /// each complete request with `answer(path)` (`None`: 404), writes, and
    /// drops scrapes past their deadline.
    pub fn serve(&mut self, mut answer: impl FnMut(&str) -> Option<Page>) {
        // A connection accepted in one round is usually readable in the
        // next: a few rounds answer a fresh scrape in one call.
        for _ in 0..3 {
            if !self.serve_ready(&mut answer) {
                break;
            }
        }
        let now = Instant::now();
        let expired: Vec<Token> = self
            .scrapes
            .iter()
            .filter(|(_, scrape)| scrape.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            self.close(token);
        }
    }

    /// One round of ready events; false when there were none.
    fn serve_ready(&mut self, answer: &mut dyn FnMut(&str) -> Option<Page>) -> bool {
        if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("metrics endpoint: poll failed: {e}");
            }
            return false;
        }
        let ready: Vec<Token> = self.events.iter().map(|event| event.token()).collect();
        for &token in &ready {
            if token == LISTENER {
                self.accept_all();
                continue;
            }
            let Some(scrape) = self.scrapes.get_mut(&token) else {
                continue;
            };
            if let Next::Close = scrape.advance(&self.limits, answer) {
                self.close(token);
            }
        }
        !ready.is_empty()
    }

    fn accept_all(&mut self) {
        loop {
            let accepted = match &self.socket.listeners()[0] {
                Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("metrics endpoint: accept failed: {e}");
                    return;
                }
            };
            if self.scrapes.len() >= MAX_CONNECTIONS {
                continue; // dropped: closed at once
            }
            let nonblocking = match &stream {
                Stream::Tcp(s) => s.set_nonblocking(true),
                Stream::Unix(s) => s.set_nonblocking(true),
            };
            let token = Token(self.next_token);
            self.next_token += 1;
            let fd = stream.fd();
            let registered = nonblocking.and_then(|()| {
                self.poll.registry().register(
                    &mut SourceFd(&fd),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
            });
            if registered.is_err() {
                continue;
            }
            // Registering reports the readiness it finds, so a request
            // that is already there is read on the next poll.
            let scrape = Scrape {
                stream,
                head: RequestHead::default(),
                request: Vec::new(),
                response: None,
                written: 0,
                deadline: Instant::now() + DEADLINE,
            };
            self.scrapes.insert(token, scrape);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(scrape) = self.scrapes.remove(&token) {
            let fd = scrape.stream.fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }
}

impl AsRawFd for MetricsEndpoint {
    /// The endpoint's poll: readable when something is ready to serve.
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

impl Scrape {
    /// Reads until the head is complete, answers, writes until the socket
    /// is full.
    fn advance(&mut self, limits: &Limits, answer: &mut dyn FnMut(&str) -> Option<Page>) -> Next {
        if self.response.is_none() {
            let mut chunk = [0u8; 2048];
            loop {
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Next::Close,
                    Ok(n) => {
                        self.request.extend_from_slice(&chunk[..n]);
                        if self.request.len() > MAX_HEAD {
                            self.response = Some(error_response(431));
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return Next::Close,
                }
            }
            if self.response.is_none() {
                match http::parse_head(&self.request, &mut self.head, limits) {
                    Ok(Status::Complete(_)) => {
                        self.response = Some(respond(&self.request, &self.head, answer))
                    }
                    Ok(Status::Partial) => return Next::Wait,
                    Err(e) => self.response = Some(error_response(e.status())),
                }
            }
        }
        self.write()
    }

    fn write(&mut self) -> Next {
        let Some(response) = &self.response else {
            return Next::Wait;
        };
        while self.written < response.len() {
            match self.stream.write(&response[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(_) => return Next::Close,
            }
        }
        Next::Close
    }
}

/// The response to a complete request head.
fn respond(
    buf: &[u8],
    head: &RequestHead,
    answer: &mut dyn FnMut(&str) -> Option<Page>,
) -> Vec<u8> {
    let method = head.method.get(buf);
    let is_head = method == b"HEAD";
    if method != b"GET" && !is_head {
        return error_response(405);
    }
    let path = String::from_utf8_lossy(head.path.get(buf));
    match answer(&path) {
        Some(page) => response(200, page.content_type, page.body.as_bytes(), is_head),
        None => error_response(404),
    }
}

fn error_response(status: u16) -> Vec<u8> {
    let body = format!("{status} {}\n", http::reason_phrase(status));
    response(status, PLAIN_TEXT, body.as_bytes(), false)
}

fn response(status: u16, content_type: &str, body: &[u8], is_head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        http::reason_phrase(status),
        body.len()
    )
    .into_bytes();
    if !is_head {
        out.extend_from_slice(body);
    }
    out
}

//! One client connection's state machine: waiting for a request, reading its
//! head, reading its body, running the app, writing the response, then
//! keep-alive (the next request, possibly already pipelined) or close. With
//! `--proxy-protocol` a connection first reads the PROXY header, whose client
//! address then stands for the peer of every request.
//!
//! Sockets are edge-triggered: the connection remembers whether the socket
//! was last seen readable/writable and keeps going until it would block, so
//! work is never left waiting for an event that will not come.

use super::access_log::AccessLog;
use super::app_response::{AppResponse, Pumped, RequestFacts, ResponseError, ResponseOptions};
use super::forwarded::SchemePolicy;
use super::out_queue::OutQueue;
use super::request_body::{BodyError, BodyReader};
use super::request_metrics::RequestMetrics;
use super::stream::Stream;
use super::wsgi::environ::{EnvironTemplate, RequestInfo};
use super::wsgi::hooks::{HookedRequest, Hooks, Outcome};
use super::wsgi::input::WsgiInput;
use super::wsgi::traceback::log_exception;
use crate::heartbeat::Heartbeat;
use crate::http::{self, BodyFraming, HttpDate, Limits, RequestHead, Status, UrlScheme};
use crate::ip_allow_list::IpAllowList;
use crate::listener::Endpoint;
use crate::proxy_protocol;
use pyo3::prelude::*;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes read and discarded while lingering before close.
const LINGER_DRAIN_LIMIT: usize = 256 * 1024;
/// How much work (bytes moved; a finished request counts as [`REQUEST_COST`])
/// one connection may do per turn before it yields to the others.
const TURN_BUDGET: usize = 1024 * 1024;
const REQUEST_COST: usize = 64 * 1024;
/// A body must have been arriving this long before its rate is judged.
const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// Time limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request to the end of its head (absolute).
    pub head: Duration,
    /// Waiting for the next request on a kept-alive connection.
    pub keepalive: Duration,
    /// Longest pause while receiving a body.
    pub body_idle: Duration,
    /// Longest pause of a client that does not read its response.
    pub send: Duration,
    /// After an error response: how long to drain the client before closing.
    pub linger: Duration,
}

/// What every connection of a worker shares.
pub struct Shared {
    pub app: Py<PyAny>,
    pub environ: EnvironTemplate,
    pub date: HttpDate,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// `--limit-request-body` (0 = unlimited).
    pub body_limit: u64,
    /// `--body-min-rate` in bytes per second (0 = no minimum).
    pub body_min_rate: u64,
    /// The worker is stopping gracefully: finish the current request, then close.
    pub stopping: bool,
    /// The liveness slot shared with the master.
    pub heartbeat: Heartbeat,
    /// Where requests are counted (`--metrics-bind`, `--statsd-host`).
    pub metrics: RequestMetrics,
    /// Requests answered so far.
    pub requests_done: u64,
    /// After this many requests the worker asks to be replaced (0 = never).
    pub max_requests: u64,
    /// Where access log lines go (`--access-logfile`), if anywhere.
    pub access_log: Option<AccessLog>,
    /// Whether `wsgi.file_wrapper` files go out with sendfile(2).
    pub sendfile: bool,
    /// Who may set the scheme, and through which headers.
    pub scheme_policy: SchemePolicy,
    /// With `--proxy-protocol`: the peers allowed to send a PROXY header
    /// (`--proxy-allow-from`); every connection must start with one.
    pub proxy_protocol: Option<IpAllowList>,
    /// The `--hooks` module's hooks, if one is configured.
    pub hooks: Option<Hooks>,
}

enum State {
    /// With `--proxy-protocol`: waiting for the PROXY header that must open
    /// the connection.
    ProxyHeader,
    /// Waiting for the first byte of the next request.
    Idle,
    /// Some bytes of a request head have arrived.
    ReadingHead,
    /// The head is parsed (its spans index `rbuf[..head_len]`); body bytes
    /// are taken from `rbuf[body_pos..]`.
    ReadingBody {
        reader: BodyReader,
        head_len: usize,
        body_pos: usize,
        started: Instant,
    },
    /// The app has been called; `request_end` is where the next request
    /// starts in `rbuf`.
    Responding {
        response: AppResponse,
        request_end: usize,
        /// The request as the `--hooks` see it, if any hook wants it.
        hooked: Option<HookedRequest>,
    },
    /// Flushing a final response, then half-closing and draining the client
    /// so it reads the response instead of a reset.
    Closing { half_closed: bool, drained: usize },
}

/// Whether the event loop should keep the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Wait for the next readiness event.
    Open,
    /// The connection used up its turn with work left: run it again soon,
    /// after the others have had theirs.
    Yield,
    /// Close and forget the connection.
    Close,
}

/// One client connection.
pub struct Connection {
    stream: Stream,
    peer: Endpoint,
    local: Endpoint,
    rbuf: Vec<u8>,
    head: RequestHead,
    state: State,
    out: OutQueue,
    readable: bool,
    writable: bool,
    peer_closed: bool,
    deadline: Instant,
    /// Work left in this turn (see [`TURN_BUDGET`]).
    budget: usize,
    /// Whether a response has been completed on this connection (a graceful
    /// stop closes such connections when idle; fresh ones get their request
    /// served).
    served_any: bool,
    /// When the current request's head was complete.
    request_started: Instant,
    /// Bytes in the kernel's send queue when the socket was last found full
    /// (see [`Connection::client_still_reading`]).
    unsent_when_full: Option<usize>,
    /// Whether the socket's peer may set the scheme (`--forwarded-allow-ips`).
    scheme_trusted: bool,
    /// The current request's `wsgi.url_scheme`.
    url_scheme: UrlScheme,
    /// Where this connection's requests are counted.
    metrics: RequestMetrics,
    /// Whether a request's head is complete and its response is not.
    in_flight: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.in_flight {
            self.metrics.request_ended();
        }
        self.metrics.connection_closed();
    }
}

impl Connection {
    /// A freshly accepted connection, waiting for its first request.
    pub fn new(stream: Stream, peer: Endpoint, local: Endpoint, shared: &Shared) -> Connection {
        let state = match shared.proxy_protocol {
            Some(_) => State::ProxyHeader,
            None => State::Idle,
        };
        Connection {
            scheme_trusted: shared.scheme_policy.trusts(&peer),
            url_scheme: UrlScheme::Http,
            stream,
            peer,
            local,
            rbuf: Vec::new(),
            head: RequestHead::default(),
            state,
            out: OutQueue::default(),
            readable: false,
            writable: false,
            peer_closed: false,
            deadline: Instant::now() + shared.timeouts.head,
            budget: TURN_BUDGET,
            served_any: false,
            request_started: Instant::now(),
            unsent_when_full: None,
            metrics: {
                shared.metrics.connection_opened();
                shared.metrics
            },
            in_flight: false,
        }
    }

    /// Counts a response that is complete (queued): the app's, with its
    /// duration, or the server's own (`duration` None).
    fn count_response(&mut self, status: u16, body_bytes: u64, duration: Option<Duration>) {
        let method = match self.in_flight {
            true => self.head.method.get(&self.rbuf),
            // The head did not parse: no method to trust.
            false => b"",
        };
        self.metrics
            .response_sent(method, status, body_bytes, duration);
        if std::mem::take(&mut self.in_flight) {
            self.metrics.request_ended();
        }
    }

    /// The socket, for (de)registration.
    pub fn stream(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// Whether the connection is between two requests (safe to close on a
    /// graceful stop): it has served one and nothing of the next has come.
    pub fn is_idle(&self) -> bool {
        self.served_any
            && matches!(self.state, State::Idle)
            && self.rbuf.is_empty()
            && self.out.is_empty()
    }

    /// Handles a readiness event.
    pub fn on_event(
        &mut self,
        py: Python<'_>,
        shared: &mut Shared,
        readable: bool,
        writable: bool,
    ) -> Keep {
        self.readable |= readable;
        self.writable |= writable;
        self.drive(py, shared)
    }

    /// Enforces the deadline and the minimum body rate.
    pub fn check_timers(&mut self, py: Python<'_>, shared: &mut Shared, now: Instant) -> Keep {
        if now >= self.deadline {
            return self.on_timeout(py, shared);
        }
        if let State::ReadingBody {
            reader, started, ..
        } = &self.state
        {
            let elapsed = now.duration_since(*started);
            if shared.body_min_rate > 0 && elapsed >= BODY_RATE_GRACE {
                let rate = reader.received() as f64 / elapsed.as_secs_f64();
                if rate < shared.body_min_rate as f64 {
                    log::info!("Request body arriving at {rate:.0} B/s, below --body-min-rate; answering 408");
                    self.fail(shared, 408);
                    return self.drive(py, shared);
                }
            }
        }
        Keep::Open
    }

    /// Handles the deadline having passed.
    fn on_timeout(&mut self, py: Python<'_>, shared: &mut Shared) -> Keep {
        // Queued output is a response still being sent, whatever the state
        // (an idle connection may still hold the end of its last response).
        let sending = matches!(self.state, State::Responding { .. }) || !self.out.is_empty();
        if sending && self.client_still_reading() {
            self.deadline = Instant::now() + shared.timeouts.send;
            return Keep::Open;
        }
        match &mut self.state {
            State::ProxyHeader if !self.rbuf.is_empty() => {
                self.reject_proxy_header(shared, "incomplete PROXY header at the timeout");
                self.drive(py, shared)
            }
            State::ProxyHeader | State::Idle | State::Closing { .. } => Keep::Close,
            State::ReadingHead | State::ReadingBody { .. } => {
                log::debug!("Request timed out before it was complete");
                self.fail(shared, 408);
                self.drive(py, shared)
            }
            State::Responding { response, .. } => {
                log::info!("Client stopped reading its response; closing the connection");
                response.close(py);
                Keep::Close
            }
        }
    }

    /// Whether the client has taken bytes from the kernel's send queue since
    /// the worker last found the socket full. The worker's own writes only
    /// resume once a third or so of a send buffer of megabytes has drained,
    /// so a slow but steady reader can go a whole send timeout without one;
    /// the shrinking queue tells it apart from a client that stopped.
    fn client_still_reading(&mut self) -> bool {
        let Some(unsent) = unsent_bytes(&self.stream) else {
            return false;
        };
        let progressed = unsent > 0 && self.unsent_when_full.is_some_and(|mark| unsent < mark);
        self.unsent_when_full = Some(unsent);
        progressed
    }

    /// The client took bytes: a response being sent gets a new send
    /// timeout; an idle connection whose last response has just been
    /// written out starts its keep-alive timeout.
    fn refresh_send_deadline(&mut self, shared: &Shared) {
        match self.state {
            State::Responding { .. } => self.deadline = Instant::now() + shared.timeouts.send,
            State::Idle if self.out.is_empty() => {
                self.deadline = Instant::now() + shared.timeouts.keepalive
            }
            State::Idle => self.deadline = Instant::now() + shared.timeouts.send,
            _ => {}
        }
    }

    /// Records the send queue size when the socket is found full.
    fn note_socket_full(&mut self) {
        self.writable = false;
        self.unsent_when_full = unsent_bytes(&self.stream);
    }

    /// Ends the connection now, closing any response iterable.
    pub fn abort(&mut self, py: Python<'_>) {
        if let State::Responding { response, .. } = &mut self.state {
            response.close(py);
        }
    }

    /// Runs the state machine until it must wait for the socket.
    fn drive(&mut self, py: Python<'_>, shared: &mut Shared) -> Keep {
        self.budget = TURN_BUDGET;
        loop {
            if !self.out.is_empty() && self.writable {
                match self.out.write_to(py, &mut self.stream) {
                    Ok(n) => {
                        self.budget = self.budget.saturating_sub(n);
                        if n > 0 {
                            self.refresh_send_deadline(shared);
                        }
                        if !self.out.is_empty() {
                            self.note_socket_full();
                        }
                    }
                    Err(e) => {
                        log::debug!("Client went away while writing: {e}");
                        self.abort(py);
                        return Keep::Close;
                    }
                }
            }
            let step = match self.state {
                State::ProxyHeader => self.step_proxy_header(shared),
                State::Idle | State::ReadingHead => self.step_head(py, shared),
                State::ReadingBody { .. } => self.step_body(py, shared),
                State::Responding { .. } => self.step_response(py, shared),
                State::Closing { .. } => self.step_closing(shared),
            };
            match step {
                Step::Continue if self.budget == 0 => return Keep::Yield,
                Step::Continue => continue,
                Step::Wait => {
                    if !self.out.is_empty() && self.writable {
                        continue;
                    }
                    return Keep::Open;
                }
                Step::Close => {
                    self.abort(py);
                    return Keep::Close;
                }
            }
        }
    }

    /// Checks the PROXY header that must open the connection, or reads
    /// more of it. A complete one replaces the peer with the client it names.
    fn step_proxy_header(&mut self, shared: &mut Shared) -> Step {
        if !self.rbuf.is_empty() {
            let allowed = shared
                .proxy_protocol
                .as_ref()
                .is_some_and(|allowed| match &self.peer {
                    Endpoint::Tcp(address) => allowed.allows(address.ip()),
                    Endpoint::Unix => true,
                });
            if !allowed {
                self.reject_proxy_header(shared, "peer not in --proxy-allow-from");
                return Step::Continue;
            }
            match proxy_protocol::parse(&self.rbuf) {
                Ok(proxy_protocol::Status::Complete(header)) => {
                    self.rbuf.drain(..header.len);
                    if let Some(addresses) = header.addresses {
                        self.peer = Endpoint::Tcp(addresses.source);
                    }
                    self.state = State::Idle;
                    return Step::Continue;
                }
                Ok(proxy_protocol::Status::Partial) => {}
                Err(error) => {
                    self.reject_proxy_header(shared, error);
                    return Step::Continue;
                }
            }
        }
        match self.read_more() {
            Ok(true) => Step::Continue,
            Ok(false) => Step::Wait,
            Err(()) => Step::Close,
        }
    }

    /// Logs why the connection's PROXY header is refused, answers 400 and
    /// closes.
    fn reject_proxy_header(&mut self, shared: &mut Shared, reason: impl std::fmt::Display) {
        match &self.peer {
            Endpoint::Tcp(address) => {
                log::warn!("Refused PROXY protocol connection from {address}: {reason}")
            }
            Endpoint::Unix => {
                log::warn!("Refused PROXY protocol connection from a unix socket: {reason}")
            }
        }
        self.fail(shared, 400);
    }

    /// Parses the head from what has arrived, or reads more.
    fn step_head(&mut self, py: Python<'_>, shared: &mut Shared) -> Step {
        if !self.rbuf.is_empty() {
            if matches!(self.state, State::Idle) {
                self.state = State::ReadingHead;
                self.deadline = Instant::now() + shared.timeouts.head;
            }
            match http::parse_head(&self.rbuf, &mut self.head, &shared.limits) {
                Ok(Status::Complete(head_len)) => return self.on_head(py, shared, head_len),
                Ok(Status::Partial) => {}
                Err(error) => {
                    log::debug!("Invalid request from {:?}: {error}", self.peer);
                    self.fail(shared, error.status());
                    return Step::Continue;
                }
            }
        } else if shared.stopping && self.served_any {
            return self.close_after_output(shared);
        }
        match self.read_more() {
            Ok(true) => Step::Continue,
            Ok(false) => Step::Wait,
            Err(()) => self.close_after_output(shared),
        }
    }

    /// Ends the connection between requests (client EOF, graceful stop):
    /// at once if nothing is queued, else once the end of the last response
    /// is written (or the send timeout gives up on the client).
    fn close_after_output(&mut self, shared: &Shared) -> Step {
        if self.out.is_empty() {
            return Step::Close;
        }
        self.begin_closing(shared);
        Step::Continue
    }

    /// A complete head: set up the body and answer `Expect: 100-continue`.
    fn on_head(&mut self, py: Python<'_>, shared: &mut Shared, head_len: usize) -> Step {
        self.request_started = Instant::now();
        self.in_flight = true;
        self.metrics.request_started();
        let scheme = shared
            .scheme_policy
            .scheme(self.scheme_trusted, &self.rbuf, &self.head);
        self.url_scheme = match scheme {
            Ok(scheme) => scheme,
            Err(error) => {
                log::debug!("Invalid request from {:?}: {error}", self.peer);
                self.fail(shared, 400);
                return Step::Continue;
            }
        };
        let reader = match BodyReader::new(self.head.framing, shared.body_limit) {
            Ok(reader) => reader,
            Err(error) => return self.body_failed(shared, error),
        };
        let announced_body = self.head.framing != BodyFraming::None;
        if self.head.expect_continue && announced_body && self.rbuf.len() == head_len {
            self.out.push_slice(http::CONTINUE_100);
        }
        self.state = State::ReadingBody {
            reader,
            head_len,
            body_pos: head_len,
            started: Instant::now(),
        };
        self.deadline = Instant::now() + shared.timeouts.body_idle;
        self.step_body(py, shared)
    }

    /// Feeds arrived bytes to the body reader, or reads more.
    fn step_body(&mut self, py: Python<'_>, shared: &mut Shared) -> Step {
        let State::ReadingBody {
            reader,
            head_len,
            body_pos,
            ..
        } = &mut self.state
        else {
            unreachable!("step_body outside ReadingBody")
        };
        match reader.feed(&self.rbuf[*body_pos..]) {
            Ok(consumed) => *body_pos += consumed,
            Err(error) => return self.body_failed(shared, error),
        }
        if reader.is_complete() {
            let body_pos = *body_pos;
            return self.call_app(py, shared, body_pos);
        }
        // An incomplete body consumed everything after the head: keep only
        // the head (its spans index the buffer) and read more.
        self.rbuf.truncate(*head_len);
        *body_pos = *head_len;
        match self.read_more() {
            Ok(true) => {
                self.deadline = Instant::now() + shared.timeouts.body_idle;
                Step::Continue
            }
            Ok(false) => Step::Wait,
            Err(()) => {
                log::debug!("Client closed the connection before sending the whole body");
                Step::Close
            }
        }
    }

    fn body_failed(&mut self, shared: &mut Shared, error: BodyError) -> Step {
        let status = match &error {
            BodyError::Framing(e) => e.status(),
            BodyError::TooLarge => 413,
            BodyError::Spool(_) => 500,
        };
        log::debug!("Request body rejected: {error}");
        self.fail(shared, status);
        Step::Continue
    }

    /// The whole request has arrived: build the environ and call the app.
    fn call_app(&mut self, py: Python<'_>, shared: &mut Shared, request_end: usize) -> Step {
        let State::ReadingBody { reader, .. } = std::mem::replace(&mut self.state, State::Idle)
        else {
            unreachable!("call_app outside ReadingBody")
        };
        let body = match reader.finish() {
            Ok(body) => body,
            Err(error) => return self.body_failed(shared, error),
        };
        let facts = RequestFacts {
            version: self.head.version,
            is_head: self.head.method.get(&self.rbuf) == b"HEAD",
            keep_alive: self.head.keep_alive && !shared.stopping,
        };
        shared.heartbeat.set_request(
            self.head.method.get(&self.rbuf),
            self.head.target.get(&self.rbuf),
        );
        shared.heartbeat.beat();
        let mut hooked = shared.hooks.as_ref().and_then(|hooks| {
            hooks.before_request(py, &self.rbuf, &self.head, &self.peer, self.url_scheme)
        });
        let environ = Bound::new(py, WsgiInput::new(body)).and_then(|input| {
            let request = RequestInfo {
                buf: &self.rbuf,
                head: &self.head,
                peer: &self.peer,
                local: &self.local,
                url_scheme: self.url_scheme,
            };
            shared.environ.build(py, &request, input)
        });
        let started = environ
            .map_err(ResponseError::AppRaised)
            .and_then(|environ| {
                if let Some(hooked) = hooked.as_mut() {
                    hooked.keep_environ(&environ);
                }
                let options = ResponseOptions {
                    keep_environ: shared
                        .access_log
                        .as_ref()
                        .is_some_and(|log| log.format().needs_environ()),
                    sendfile: shared.sendfile,
                };
                AppResponse::start(py, &shared.app, environ.into_any(), facts, options)
            });
        if let (Some(hooks), Some(hooked)) = (shared.hooks.as_ref(), hooked.as_mut()) {
            hooks.app_returned(hooked);
        }
        match started {
            Ok(response) => {
                self.state = State::Responding {
                    response,
                    request_end,
                    hooked,
                };
                self.deadline = Instant::now() + shared.timeouts.send;
                Step::Continue
            }
            Err(error) => {
                self.log_app_error(py, &error);
                self.fail(shared, 500);
                if let (Some(hooks), Some(hooked)) = (shared.hooks.as_ref(), hooked) {
                    hooks.after_request(py, hooked, Outcome::ServerError);
                }
                Step::Continue
            }
        }
    }

    /// Pulls more of the response from the app.
    fn step_response(&mut self, py: Python<'_>, shared: &mut Shared) -> Step {
        if !self.out.is_empty() {
            // Write what is queued before pulling more.
            return Step::Wait;
        }
        let State::Responding {
            response,
            request_end,
            hooked,
        } = &mut self.state
        else {
            unreachable!("step_response outside Responding")
        };
        let socket = self.stream.as_raw_fd();
        let sent_before = response.body_sent();
        let pumped = response.pump(py, &mut self.out, socket, shared.date.now());
        if response.body_sent() > sent_before {
            self.deadline = Instant::now() + shared.timeouts.send;
        }
        match pumped {
            Ok(Pumped::Queued) => Step::Continue,
            Ok(Pumped::WouldBlock) => {
                self.note_socket_full();
                Step::Wait
            }
            Ok(Pumped::Done { keep_alive }) => {
                let (status, body_sent) = (response.status_code(py), response.body_sent());
                let elapsed = self.request_started.elapsed();
                if let Some(log) = shared.access_log.as_mut() {
                    response.log_access(py, log, &self.peer, &self.rbuf, &self.head, elapsed);
                }
                if let (Some(hooks), Some(hooked)) = (shared.hooks.as_ref(), hooked.take()) {
                    let body_sent = response.body_sent();
                    hooks.after_request(py, hooked, Outcome::Completed { body_sent });
                }
                let request_end = *request_end;
                self.count_response(status, body_sent, Some(elapsed));
                self.finish_request(shared, request_end, keep_alive)
            }
            Err(error) => {
                let head_sent = response.head_sent();
                response.close(py);
                self.log_app_error(py, &error);
                if head_sent {
                    // The client has part of the response: send what is
                    // queued, then close so it sees the response end early.
                    self.begin_closing(shared);
                    Step::Continue
                } else {
                    self.fail(shared, 500);
                    Step::Continue
                }
            }
        }
    }

    /// A response is complete (queued): keep the connection for the next
    /// request, or close it.
    fn finish_request(
        &mut self,
        shared: &mut Shared,
        request_end: usize,
        keep_alive: bool,
    ) -> Step {
        self.rbuf.drain(..request_end.min(self.rbuf.len()));
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * READ_CHUNK {
            // A large head or burst: give the memory back while idle.
            self.rbuf = Vec::new();
        }
        self.budget = self.budget.saturating_sub(REQUEST_COST);
        shared.requests_done += 1;
        self.served_any = true;
        let keepalive_enabled = !shared.timeouts.keepalive.is_zero();
        if keep_alive && keepalive_enabled && !self.peer_closed && !shared.stopping {
            self.state = State::Idle;
            // Up to HIGH_WATER of the response may still be queued: the
            // keep-alive timeout starts once it is written.
            self.deadline = Instant::now()
                + match self.out.is_empty() {
                    true => shared.timeouts.keepalive,
                    false => shared.timeouts.send,
                };
        } else {
            self.begin_closing(shared);
        }
        Step::Continue
    }

    /// Queues an error response of the server's own and closes after it.
    fn fail(&mut self, shared: &mut Shared, status: u16) {
        if let State::Responding { response, .. } = &mut self.state {
            debug_assert!(!response.head_sent());
        }
        let date = shared.date.now();
        self.out
            .append_with(|buf| http::write_error_response(buf, status, true, date));
        self.count_response(status, 0, None);
        self.begin_closing(shared);
    }

    fn begin_closing(&mut self, shared: &Shared) {
        self.state = State::Closing {
            half_closed: false,
            drained: 0,
        };
        self.deadline = Instant::now() + shared.timeouts.send;
    }

    /// Flushes the final response, half-closes, drains what the client still
    /// sends, and closes on EOF or at the deadline.
    fn step_closing(&mut self, shared: &Shared) -> Step {
        if !self.out.is_empty() {
            return Step::Wait;
        }
        let State::Closing {
            half_closed,
            drained,
        } = &mut self.state
        else {
            unreachable!("step_closing outside Closing")
        };
        if !*half_closed {
            *half_closed = true;
            self.stream.shutdown(Shutdown::Write);
            self.deadline = Instant::now() + shared.timeouts.linger;
        }
        if self.peer_closed {
            return Step::Close;
        }
        let mut scratch = [0u8; 4096];
        while self.readable {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    *drained += n;
                    if *drained > LINGER_DRAIN_LIMIT {
                        return Step::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        Step::Wait
    }

    /// Reads what the socket has into `rbuf`. Ok(true): got bytes;
    /// Ok(false): would block; Err: EOF or error (the connection is over).
    fn read_more(&mut self) -> Result<bool, ()> {
        if !self.readable {
            return Ok(false);
        }
        let len = self.rbuf.len();
        self.rbuf.resize(len + READ_CHUNK, 0);
        let result = self.stream.read(&mut self.rbuf[len..]);
        match result {
            Ok(0) => {
                self.rbuf.truncate(len);
                self.peer_closed = true;
                Err(())
            }
            Ok(n) => {
                self.rbuf.truncate(len + n);
                self.budget = self.budget.saturating_sub(n);
                Ok(true)
            }
            Err(e) => {
                self.rbuf.truncate(len);
                match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.readable = false;
                        Ok(false)
                    }
                    io::ErrorKind::Interrupted => Ok(true),
                    _ => Err(()),
                }
            }
        }
    }

    fn log_app_error(&self, py: Python<'_>, error: &ResponseError) {
        let target = String::from_utf8_lossy(self.head.target.get(&self.rbuf));
        match error {
            ResponseError::AppRaised(e) => {
                log_exception(py, e, &format!("Error handling request {target}"))
            }
            other => log::error!("Error handling request {target}: {other}"),
        }
    }
}

/// The outcome of one state-machine step.
enum Step {
    /// Progress was made: run the machine again.
    Continue,
    /// Nothing more until the socket is ready.
    Wait,
    /// The connection is over.
    Close,
}

/// Bytes written to the socket that the peer has not yet acknowledged
/// (`SIOCOUTQ`), or None if the kernel will not say.
fn unsent_bytes(stream: &Stream) -> Option<usize> {
    let mut unsent: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) on an open socket writes one c_int into
    // `unsent`, which outlives the call.
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
    (result == 0 && unsent >= 0).then_some(unsent as usize)
}

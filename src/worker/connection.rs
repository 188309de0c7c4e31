//! One client connection's state machine: waiting for a request, reading its
//! head, reading its body, running the app, writing the response, then
//! keep-alive (the next request, possibly already pipelined) or close. With
//! `--proxy-protocol` a connection first reads the PROXY header, whose client
//! address then stands for the peer of every request.
//!
//! The connection owns bytes, framing and timeouts; what happens between a
//! complete request and its response's bytes is an exchange
//! (`exchange.rs`), run by the loop itself or, with `--threads`, by an app
//! thread. The two meet at one interface: a complete request handed over,
//! framed response bytes and how the response ended handed back.
//!
//! Sockets are edge-triggered: the connection remembers whether the socket
//! was last seen readable/writable and keeps going until it would block, so
//! work is never left waiting for an event that will not come.

use super::access_log::AccessLog;
use super::app_threads::{Collected, End};
use super::forwarded::SchemePolicy;
use super::request_body::{BodyError, BodyReader};
use super::request_metrics::RequestMetrics;
use super::stream::Stream;
use super::threaded_calls::{self, AppCallThreads, CallJob, CallTicket};
use super::wsgi::environ::RequestInfo;
use super::wsgi::exchange::{AppContext, Exchange, OwnedRequest, Progress, Request};
use super::wsgi::gil::Gil;
use super::wsgi::hooks::Hooks;
use super::wsgi::out_queue::OutQueue;
use super::wsgi::response::{PumpUntil, RequestFacts};
use crate::heartbeat::Heartbeat;
use crate::http::{self, BodyFraming, HttpDate, Limits, RequestHead, Status, UrlScheme};
use crate::ip_allow_list::IpAllowList;
use crate::listener::Endpoint;
use crate::proxy_protocol;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes read and discarded while lingering before close.
const LINGER_DRAIN_LIMIT: usize = 256 * 1024;
/// How much work (bytes moved; a finished request counts as [`REQUEST_COST`])
/// one connection may do per turn before it yields to the others.
const TURN_BUDGET: usize = 1024 * 1024;
const REQUEST_COST: usize = 64 * 1024;
/// Responses to pipelined requests are gathered for one write while they
/// come to less than this.
const COALESCE_BELOW: usize = 64 * 1024;
/// A body must have been arriving this long before its rate is judged.
const BODY_RATE_GRACE: Duration = Duration::from_secs(5);
/// The shortest time a graceful stop keeps a connection that waits for a
/// request (see [`Timeouts::stop_grace`]): what it waits with keep-alive off.
const MIN_STOP_GRACE: Duration = Duration::from_secs(1);

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

impl Timeouts {
    /// How long a graceful stop keeps a connection that waits for a
    /// request open: the keep-alive timeout (a kept-alive client gets the
    /// time it was promised, no more), at least [`MIN_STOP_GRACE`] (a
    /// request may be on its way on a connection just accepted).
    pub fn stop_grace(&self) -> Duration {
        self.keepalive.max(MIN_STOP_GRACE)
    }
}

/// Who runs a worker's exchanges.
pub enum AppCalls {
    /// The event loop itself, which holds the GIL (one app thread).
    Inline(AppContext),
    /// The app-thread pool (`--threads` > 1).
    Threads(AppCallThreads),
}

/// What every connection of a worker shares.
pub struct Shared {
    pub calls: AppCalls,
    /// The date cache for the server's own error responses.
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
    pub heartbeat: Arc<Heartbeat>,
    /// Where requests are counted (`--metrics-bind`, `--statsd-host`).
    pub metrics: RequestMetrics,
    /// Requests answered so far.
    pub requests_done: u64,
    /// After this many requests the worker asks to be replaced (0 = never).
    pub max_requests: u64,
    /// Where access log lines go (`--access-logfile`), if anywhere (the
    /// exchanges write them; the loop flushes them).
    pub access_log: Option<Arc<Mutex<AccessLog>>>,
    /// Who may set the scheme, and through which headers.
    pub scheme_policy: SchemePolicy,
    /// With `--proxy-protocol`: the peers allowed to send a PROXY header
    /// (`--proxy-allow-from`); every connection must start with one.
    pub proxy_protocol: Option<IpAllowList>,
    /// The `--hooks` module's hooks, if one is configured.
    pub hooks: Option<Arc<Hooks>>,
    /// With `--certfile`: the TLS configuration every accepted connection
    /// starts its session with.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The loop's clock: read once per loop turn (and when a request starts
    /// or ends, which need the precise time anyway), so that deadlines
    /// cost no clock read of their own.
    pub now: Instant,
    /// The chunk every connection reads into (one per worker, so a read
    /// neither zero-fills a buffer nor allocates for a connection that has
    /// nothing to say).
    pub read_chunk: ReadChunk,
}

/// The worker's read chunk (see [`Shared::read_chunk`]).
pub struct ReadChunk(Box<[u8; READ_CHUNK]>);

impl Default for ReadChunk {
    fn default() -> ReadChunk {
        ReadChunk(Box::new([0; READ_CHUNK]))
    }
}

/// Who is running the current exchange.
enum Running {
    /// The loop, with the GIL; `facts` are the request's.
    Inline {
        exchange: Exchange,
        facts: RequestFacts,
    },
    /// An app thread, meeting the connection at the ticket.
    Threaded(CallTicket),
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
    /// The request has been handed to an exchange; `request_end` is where
    /// the next request starts in `rbuf`.
    Responding {
        running: Running,
        request_end: usize,
    },
    /// Flushing a final response, then half-closing and draining the client
    /// so it reads the response instead of a reset. `linger` is false when
    /// the client has said it sends nothing more (`Connection: close`, or
    /// HTTP/1.0 without keep-alive) and everything it sent has been read:
    /// then the response is flushed and the socket closed at once, unless
    /// bytes turn out to be waiting unread (which would make the close a
    /// reset).
    Closing {
        half_closed: bool,
        drained: usize,
        linger: bool,
    },
}

/// What closing a waiting connection costs, in the order the connection
/// cap closes them (as nginx reuses its connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EvictionCost {
    /// Kept alive between requests: the client has had every response and
    /// reconnects when it needs to.
    KeptAlive,
    /// Accepted, but not one byte received yet.
    Silent,
}

/// What an event says about a connection's socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The client has closed its end (EPOLLRDHUP).
    pub read_closed: bool,
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
    /// Its slot in the event loop (named in its exchanges' tickets).
    slot: usize,
    stream: Stream,
    peer: Endpoint,
    local: Endpoint,
    rbuf: Vec<u8>,
    head: RequestHead,
    state: State,
    out: OutQueue,
    readable: bool,
    writable: bool,
    /// An event has reported the client's end of the stream (EPOLLRDHUP):
    /// read until EOF.
    read_closed: bool,
    peer_closed: bool,
    deadline: Instant,
    /// Work left in this turn (see [`TURN_BUDGET`]).
    budget: usize,
    /// Whether a response has been completed on this connection (the
    /// connection cap closes such connections first when they wait).
    served_any: bool,
    /// When the current request's head was complete.
    request_started: Instant,
    /// When the connection last began waiting for a request (accepted, or
    /// back to idle after a response): the age used to pick which cheap
    /// connection to close first at the connection cap.
    waiting_since: Instant,
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
    /// The queue holds only whole responses, and the next (pipelined)
    /// request is already in `rbuf`: the write waits for its response.
    gathering: bool,
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
    pub fn new(
        slot: usize,
        stream: Stream,
        peer: Endpoint,
        local: Endpoint,
        shared: &Shared,
    ) -> Connection {
        let state = match shared.proxy_protocol {
            Some(_) => State::ProxyHeader,
            None => State::Idle,
        };
        Connection {
            slot,
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
            read_closed: false,
            peer_closed: false,
            deadline: shared.now + shared.timeouts.head,
            budget: TURN_BUDGET,
            served_any: false,
            request_started: shared.now,
            waiting_since: shared.now,
            unsent_when_full: None,
            metrics: {
                shared.metrics.connection_opened();
                shared.metrics
            },
            in_flight: false,
            gathering: false,
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

    /// A graceful stop has begun. A connection waiting for a request stays
    /// open, since closing it would reset a request already on its way
    /// (the client picked the connection before it could see the close):
    /// the next request is served with `Connection: close`, and if none
    /// comes within the stop grace, the deadline closes the connection. A
    /// kept-alive connection's keep-alive deadline is never later than
    /// that; a silent one's header deadline is moved up to it.
    pub fn begin_graceful_stop(&mut self, shared: &Shared) {
        if self.eviction_cost().is_some() {
            let grace_end = Instant::now() + shared.timeouts.stop_grace();
            self.deadline = self.deadline.min(grace_end);
        }
    }

    /// What closing this connection now would cost, cheapest first, for
    /// the connection cap: `None` for a connection in the middle of a
    /// request or response (never closed to make room).
    pub fn eviction_cost(&self) -> Option<(EvictionCost, Instant)> {
        let waiting = matches!(self.state, State::Idle | State::ProxyHeader)
            && self.rbuf.is_empty()
            && !self.output_waiting();
        match (waiting, self.served_any) {
            (false, _) => None,
            (true, true) => Some((EvictionCost::KeptAlive, self.waiting_since)),
            (true, false) => Some((EvictionCost::Silent, self.waiting_since)),
        }
    }

    /// Whether the connection's current exchange is the one `ticket` is for.
    pub fn holds(&self, ticket: &CallTicket) -> bool {
        matches!(&self.state, State::Responding { running: Running::Threaded(t), .. } if Arc::ptr_eq(t, ticket))
    }

    /// Handles a readiness event (or news from its exchange).
    pub fn on_event(&mut self, gil: Gil<'_>, shared: &mut Shared, event: Readiness) -> Keep {
        self.readable |= event.readable;
        self.writable |= event.writable;
        self.read_closed |= event.read_closed;
        self.drive(gil, shared)
    }

    /// Enforces the deadline and the minimum body rate.
    pub fn check_timers(&mut self, gil: Gil<'_>, shared: &mut Shared, now: Instant) -> Keep {
        if now >= self.deadline {
            return self.on_timeout(gil, shared);
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
                    return self.drive(gil, shared);
                }
            }
        }
        Keep::Open
    }

    /// Handles the deadline having passed.
    fn on_timeout(&mut self, gil: Gil<'_>, shared: &mut Shared) -> Keep {
        let waiting_for_app_thread = matches!(
            self.state,
            State::Responding {
                running: Running::Threaded(_),
                ..
            }
        ) && !self.output_waiting();
        if waiting_for_app_thread {
            // The app's own time is --timeout's business (the master).
            self.deadline = shared.now + shared.timeouts.send;
            return Keep::Open;
        }
        // Queued output is a response still being sent, whatever the state
        // (an idle connection may still hold the end of its last response).
        let sending = matches!(self.state, State::Responding { .. }) || self.output_waiting();
        if sending && self.client_still_reading() {
            self.deadline = shared.now + shared.timeouts.send;
            return Keep::Open;
        }
        match &mut self.state {
            State::ProxyHeader if !self.rbuf.is_empty() => {
                self.reject_proxy_header(shared, "incomplete PROXY header at the timeout");
                self.drive(gil, shared)
            }
            State::ProxyHeader | State::Idle | State::Closing { .. } => Keep::Close,
            State::ReadingHead | State::ReadingBody { .. } => {
                log::debug!("Request timed out before it was complete");
                self.fail(shared, 408);
                self.drive(gil, shared)
            }
            State::Responding { .. } => {
                log::info!("Client stopped reading its response; closing the connection");
                self.abort(gil);
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
            State::Responding { .. } => self.deadline = shared.now + shared.timeouts.send,
            State::Idle if self.out.is_empty() => {
                self.deadline = shared.now + shared.timeouts.keepalive
            }
            State::Idle => self.deadline = shared.now + shared.timeouts.send,
            _ => {}
        }
    }

    /// Records the send queue size when the socket is found full.
    fn note_socket_full(&mut self) {
        self.writable = false;
        self.unsent_when_full = unsent_bytes(&self.stream);
    }

    /// Whether bytes of a response still wait: queued, or made into TLS
    /// records the socket has not taken yet.
    fn output_waiting(&self) -> bool {
        !self.out.is_empty() || self.stream.has_pending_output()
    }

    /// Ends the connection now, closing any response iterable (on an app
    /// thread: telling it to).
    pub fn abort(&mut self, gil: Gil<'_>) {
        if let State::Responding { running, .. } = &mut self.state {
            match running {
                Running::Inline { exchange, .. } => gil.with(|py| exchange.abort(py)),
                Running::Threaded(ticket) => ticket.cancel(),
            }
        }
    }

    /// Writes what is queued (and TLS records waiting) as far as the
    /// socket takes it; `Err` when the client has gone.
    fn write_out(&mut self, gil: Gil<'_>, shared: &Shared) -> Result<(), Keep> {
        if !self.out.is_empty() && self.writable {
            match self.out.write_to(&mut self.stream) {
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
                    self.abort(gil);
                    return Err(Keep::Close);
                }
            }
        }
        if self.writable && self.stream.has_pending_output() {
            match self.stream.flush_pending() {
                Ok(()) => self.refresh_send_deadline(shared),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.note_socket_full(),
                Err(e) => {
                    log::debug!("Client went away while writing: {e}");
                    self.abort(gil);
                    return Err(Keep::Close);
                }
            }
        }
        Ok(())
    }

    /// Runs the state machine until it must wait for the socket.
    fn drive(&mut self, gil: Gil<'_>, shared: &mut Shared) -> Keep {
        self.budget = TURN_BUDGET;
        loop {
            if !(self.gathering && self.budget > 0) {
                if let Err(keep) = self.write_out(gil, shared) {
                    return keep;
                }
            }
            let step = match self.state {
                State::ProxyHeader => self.step_proxy_header(shared),
                State::Idle | State::ReadingHead => self.step_head(gil, shared),
                State::ReadingBody { .. } => self.step_body(gil, shared),
                State::Responding { .. } => self.step_response(gil, shared),
                State::Closing { .. } => self.step_closing(shared),
            };
            match step {
                Step::Continue if self.budget == 0 => {
                    return match self.write_out(gil, shared) {
                        Ok(()) => Keep::Yield,
                        Err(keep) => keep,
                    };
                }
                Step::Continue => continue,
                Step::Wait => {
                    self.gathering = false;
                    if self.output_waiting() && self.writable {
                        continue;
                    }
                    return Keep::Open;
                }
                Step::Close => {
                    self.abort(gil);
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
                    // With TLS, what follows the header is the handshake.
                    if self.stream.awaits_tls() {
                        let after_header = std::mem::take(&mut self.rbuf);
                        self.stream.start_tls(&after_header);
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
        match self.read_more(&mut shared.read_chunk) {
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
    fn step_head(&mut self, gil: Gil<'_>, shared: &mut Shared) -> Step {
        if !self.rbuf.is_empty() {
            if matches!(self.state, State::Idle) {
                self.state = State::ReadingHead;
                self.deadline = shared.now + shared.timeouts.head;
            }
            match http::parse_head(&self.rbuf, &mut self.head, &shared.limits) {
                Ok(Status::Complete(head_len)) => return self.on_head(gil, shared, head_len),
                Ok(Status::Partial) => {}
                Err(error) => {
                    log::debug!("Invalid request from {:?}: {error}", self.peer);
                    self.fail(shared, error.status());
                    return Step::Continue;
                }
            }
        }
        match self.read_more(&mut shared.read_chunk) {
            Ok(true) => Step::Continue,
            Ok(false) => Step::Wait,
            Err(()) => self.close_after_output(shared),
        }
    }

    /// Ends the connection between requests (client EOF): at once if
    /// nothing is queued, else once the end of the last response is written
    /// (or the send timeout gives up on the client).
    fn close_after_output(&mut self, shared: &Shared) -> Step {
        if !self.output_waiting() {
            return Step::Close;
        }
        self.begin_closing(shared);
        Step::Continue
    }

    /// A complete head: set up the body and answer `Expect: 100-continue`.
    fn on_head(&mut self, gil: Gil<'_>, shared: &mut Shared, head_len: usize) -> Step {
        // The precise time, for the request's duration; it also brings the
        // loop's clock forward.
        shared.now = Instant::now();
        self.request_started = shared.now;
        self.in_flight = true;
        self.metrics.request_started();
        let scheme = shared.scheme_policy.scheme(
            self.scheme_trusted,
            &self.rbuf,
            &self.head,
            self.stream.url_scheme(),
        );
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
            started: shared.now,
        };
        self.deadline = shared.now + shared.timeouts.body_idle;
        self.step_body(gil, shared)
    }

    /// Feeds arrived bytes to the body reader, or reads more.
    fn step_body(&mut self, gil: Gil<'_>, shared: &mut Shared) -> Step {
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
            return self.call_app(gil, shared, body_pos);
        }
        // An incomplete body consumed everything after the head: keep only
        // the head (its spans index the buffer) and read more.
        self.rbuf.truncate(*head_len);
        *body_pos = *head_len;
        match self.read_more(&mut shared.read_chunk) {
            Ok(true) => {
                self.deadline = shared.now + shared.timeouts.body_idle;
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

    /// The whole request has arrived: hand it to an exchange, run here or
    /// on an app thread.
    fn call_app(&mut self, gil: Gil<'_>, shared: &mut Shared, request_end: usize) -> Step {
        let State::ReadingBody {
            reader, head_len, ..
        } = std::mem::replace(&mut self.state, State::Idle)
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
            keep_alive: self.head.keep_alive
                && !shared.stopping
                && !shared.timeouts.keepalive.is_zero(),
        };
        shared.heartbeat.set_request(
            self.head.method.get(&self.rbuf),
            self.head.target.get(&self.rbuf),
        );
        shared.heartbeat.beat();
        let running = match &mut shared.calls {
            AppCalls::Inline(context) => {
                let request = Request {
                    info: RequestInfo {
                        buf: &self.rbuf,
                        head: &self.head,
                        peer: &self.peer,
                        local: &self.local,
                        url_scheme: self.url_scheme,
                        tls: self.stream.tls_info().map(|info| &**info),
                    },
                    facts,
                    started: self.request_started,
                };
                match gil.with(|py| Exchange::start(py, context, &request, body)) {
                    Ok(exchange) => Running::Inline { exchange, facts },
                    Err(_) => {
                        self.fail(shared, 500);
                        return Step::Continue;
                    }
                }
            }
            AppCalls::Threads(threads) => {
                let ticket = threaded_calls::ticket(self.slot);
                threads.submit(CallJob {
                    ticket: Arc::clone(&ticket),
                    request: OwnedRequest {
                        buf: self.rbuf[..head_len].to_vec(),
                        head: self.head.clone(),
                        peer: self.peer.clone(),
                        local: self.local.clone(),
                        url_scheme: self.url_scheme,
                        tls: self.stream.tls_info().cloned(),
                        facts,
                        started: self.request_started,
                    },
                    body,
                });
                Running::Threaded(ticket)
            }
        };
        self.state = State::Responding {
            running,
            request_end,
        };
        self.deadline = shared.now + shared.timeouts.send;
        Step::Continue
    }

    /// Takes more of the response from the exchange: pumps it here, or
    /// collects what its app thread delivered.
    fn step_response(&mut self, gil: Gil<'_>, shared: &mut Shared) -> Step {
        if !self.out.is_empty() && !self.gathering {
            // Write what is queued before taking more.
            return Step::Wait;
        }
        let State::Responding {
            running,
            request_end,
        } = &mut self.state
        else {
            unreachable!("step_response outside Responding")
        };
        let request_end = *request_end;
        let end = match running {
            Running::Inline { exchange, facts } => {
                let AppCalls::Inline(context) = &mut shared.calls else {
                    unreachable!("an inline exchange without the inline context")
                };
                let request = Request {
                    info: RequestInfo {
                        buf: &self.rbuf,
                        head: &self.head,
                        peer: &self.peer,
                        local: &self.local,
                        url_scheme: self.url_scheme,
                        tls: self.stream.tls_info().map(|info| &**info),
                    },
                    facts: *facts,
                    started: self.request_started,
                };
                let out = &mut self.out;
                let pumped =
                    gil.with(|py| exchange.pump(py, context, &request, out, PumpUntil::HighWater));
                match pumped {
                    Ok(Progress::More) => {
                        // A response in parts: its parts go out as they come.
                        self.gathering = false;
                        self.deadline = shared.now + shared.timeouts.send;
                        return Step::Continue;
                    }
                    Ok(Progress::Complete {
                        keep_alive,
                        status,
                        body_bytes,
                    }) => End::Complete {
                        keep_alive,
                        status,
                        body_bytes,
                    },
                    Ok(Progress::Broken) => End::Broken,
                    Err(_) => End::ServerError,
                }
            }
            Running::Threaded(ticket) => match ticket.collect(&mut self.out) {
                Collected::Bytes => {
                    self.gathering = false;
                    self.deadline = shared.now + shared.timeouts.send;
                    return Step::Continue;
                }
                Collected::Nothing => return Step::Wait,
                Collected::End(end) => {
                    if let AppCalls::Threads(threads) = &mut shared.calls {
                        let method = self.head.method.get(&self.rbuf);
                        threads.finished(method, self.head.path.get(&self.rbuf), ticket);
                    }
                    end
                }
            },
        };
        match end {
            End::Complete {
                keep_alive,
                status,
                body_bytes,
            } => {
                shared.now = Instant::now();
                let duration = shared.now.saturating_duration_since(self.request_started);
                self.count_response(status, body_bytes, Some(duration));
                self.finish_request(shared, request_end, keep_alive)
            }
            End::Broken => {
                // The client has part of the response: send what is
                // queued, then close so it sees the response end early.
                self.begin_closing(shared);
                Step::Continue
            }
            End::ServerError => {
                self.fail(shared, 500);
                Step::Continue
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
        // A response that kept the connection alive (one begun before a
        // graceful stop included) lets the client send another request:
        // wait for it, and answer it with `Connection: close`.
        let keepalive_enabled = !shared.timeouts.keepalive.is_zero();
        if keep_alive && keepalive_enabled && !self.peer_closed {
            // The next request is already here (pipelined): answer it
            // before writing, so the responses leave in one write.
            self.gathering = !self.rbuf.is_empty() && self.out.len() < COALESCE_BELOW;
            self.state = State::Idle;
            self.waiting_since = shared.now;
            // Up to HIGH_WATER of the response may still be queued: the
            // keep-alive timeout starts once it is written.
            self.deadline = shared.now
                + match self.out.is_empty() {
                    true => shared.timeouts.keepalive,
                    false => shared.timeouts.send,
                };
        } else {
            self.begin_closing(shared);
            let client_is_done = !self.head.keep_alive && self.rbuf.is_empty();
            if let State::Closing { linger, .. } = &mut self.state {
                *linger = !client_is_done;
            }
            self.stream.mark_last_writes();
        }
        Step::Continue
    }

    /// Queues an error response of the server's own and closes after it.
    fn fail(&mut self, shared: &mut Shared, status: u16) {
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
            linger: true,
        };
        self.deadline = shared.now + shared.timeouts.send;
    }

    /// Flushes the final response, half-closes, drains what the client still
    /// sends, and closes on EOF or at the deadline.
    fn step_closing(&mut self, shared: &Shared) -> Step {
        if self.output_waiting() {
            return Step::Wait;
        }
        let State::Closing {
            half_closed,
            drained,
            linger,
        } = &mut self.state
        else {
            unreachable!("step_closing outside Closing")
        };
        if !*half_closed {
            if !*linger && self.stream.nothing_unread() {
                // The response is in the kernel's send queue, which a close
                // still delivers (then FIN); no shutdown, no wait for the
                // client's FIN.
                return Step::Close;
            }
            *half_closed = true;
            self.stream.shutdown(Shutdown::Write);
            self.deadline = shared.now + shared.timeouts.linger;
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
    fn read_more(&mut self, chunk: &mut ReadChunk) -> Result<bool, ()> {
        if !self.readable {
            return Ok(false);
        }
        // Read into the worker's chunk and keep only what arrived: a
        // connection that has nothing to say (an idle one, thousands of them
        // in a flood) never allocates a read buffer.
        let chunk = &mut chunk.0[..];
        match self.stream.read(chunk) {
            Ok(0) => {
                self.peer_closed = true;
                Err(())
            }
            Ok(n) => {
                self.rbuf.extend_from_slice(&chunk[..n]);
                self.budget = self.budget.saturating_sub(n);
                // Edge-triggered: a short read of the socket itself emptied
                // its queue, and what arrives next (the client's FIN too) is
                // a new event, so the read that would say EAGAIN is skipped.
                // Not when the event already said the client closed (no new
                // event would come for the EOF) or the bytes came through
                // TLS (the session may hold more than it gave).
                if n < chunk.len() && !self.read_closed && self.stream.short_read_drains() {
                    self.readable = false;
                }
                Ok(true)
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    Ok(false)
                }
                io::ErrorKind::Interrupted => Ok(true),
                _ => Err(()),
            },
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

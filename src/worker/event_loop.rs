//! The worker's mio event loop: accepts on the shared listening sockets,
//! hands readiness to each connection's state machine, enforces deadlines,
//! and acts on signals. The GIL is held throughout except around `poll`.

use super::accept_interest;
use super::connection::{Connection, Keep, Shared};
use super::signals::{SignalPipe, WorkerSignal};
use super::stream::{Socket, Stream};
use super::tls_session::TlsSession;
use crate::heartbeat::Phase;
use crate::listener::Endpoint;
use crate::listener::Listener;
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};
use pyo3::prelude::*;
use rustls::ServerConfig;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(0);
/// Listener `i` has token `LISTENER_BASE + i`.
const LISTENER_BASE: usize = 1;
/// Connection slot `i` has token `CONNECTION_BASE + i`.
const CONNECTION_BASE: usize = 1 << 16;
/// How often deadlines and the master's liveness are checked.
const TICK: Duration = Duration::from_millis(250);
/// The most connections accepted per wake-up: the listener is
/// level-triggered, so the rest are reported again (or go to a sibling).
const ACCEPT_BATCH: usize = 16;

/// A listening socket adopted by this worker.
enum Acceptor {
    Tcp {
        listener: TcpListener,
        /// The bound address, unless it is a wildcard (then each connection
        /// asks its own socket).
        local: Option<SocketAddr>,
    },
    Unix(UnixListener),
}

impl Acceptor {
    /// Adopts a duplicate of one of the master's listening sockets.
    fn adopt(listener: &Listener) -> io::Result<Acceptor> {
        Ok(match listener {
            Listener::Tcp(l) => {
                let l = l.try_clone()?;
                l.set_nonblocking(true)?;
                let local = l.local_addr().ok().filter(|a| !a.ip().is_unspecified());
                Acceptor::Tcp {
                    listener: TcpListener::from_std(l),
                    local,
                }
            }
            Listener::Unix(l) => {
                let l = l.try_clone()?;
                l.set_nonblocking(true)?;
                Acceptor::Unix(UnixListener::from_std(l))
            }
        })
    }

    /// Accepts one connection.
    fn accept(&self) -> io::Result<(Socket, Endpoint, Endpoint)> {
        match self {
            Acceptor::Tcp { listener, local } => {
                let (stream, peer) = listener.accept()?;
                let _ = stream.set_nodelay(true);
                let local = match local {
                    Some(addr) => *addr,
                    None => stream.local_addr()?,
                };
                Ok((
                    Socket::Tcp(stream),
                    Endpoint::Tcp(peer),
                    Endpoint::Tcp(local),
                ))
            }
            Acceptor::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                Ok((Socket::Unix(stream), Endpoint::Unix, Endpoint::Unix))
            }
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            Acceptor::Tcp { listener, .. } => listener.as_raw_fd(),
            Acceptor::Unix(listener) => listener.as_raw_fd(),
        }
    }
}

/// The worker's loop and everything it owns.
pub struct EventLoop {
    poll: Poll,
    acceptors: Vec<Acceptor>,
    slots: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    open: usize,
    max_connections: usize,
    /// Accepting paused at the connection cap (listeners out of the poll);
    /// resumed when a connection closes.
    accept_paused: bool,
    /// Connections that used up their turn with work left (see
    /// [`Keep::Yield`]), served again after the next poll.
    ready: VecDeque<usize>,
    signals: SignalPipe,
    shared: Shared,
    master_pid: i32,
    graceful_timeout: Duration,
    stop_deadline: Option<Instant>,
    /// With `--certfile`: every accepted connection speaks TLS.
    tls: Option<Arc<ServerConfig>>,
}

impl EventLoop {
    /// Adopts the listening sockets and registers everything with a new poll.
    pub fn new(
        listeners: &[Listener],
        mut signals: SignalPipe,
        shared: Shared,
        max_connections: usize,
        master_pid: i32,
        graceful_timeout: Duration,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        poll.registry()
            .register(signals.receiver(), SIGNALS, Interest::READABLE)?;
        let mut acceptors = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.iter().enumerate() {
            let acceptor = Acceptor::adopt(listener)?;
            accept_interest::add(&poll, acceptor.raw_fd(), Token(LISTENER_BASE + index))?;
            acceptors.push(acceptor);
        }
        Ok(EventLoop {
            poll,
            acceptors,
            slots: Vec::new(),
            free_slots: Vec::new(),
            open: 0,
            max_connections: max_connections.max(1),
            accept_paused: false,
            ready: VecDeque::new(),
            signals,
            shared,
            master_pid,
            graceful_timeout,
            stop_deadline: None,
            tls,
        })
    }

    /// Serves until stopped, then writes out the access log. Returns the
    /// worker's exit code.
    pub fn run(&mut self, py: Python<'_>) -> i32 {
        let code = self.serve(py);
        self.close_all(py);
        if let Some(log) = self.shared.access_log.as_mut() {
            log.flush_all();
        }
        if let Some(hooks) = &self.shared.hooks {
            hooks.worker_exit(py);
        }
        code
    }

    /// Closes every connection still open (a fast stop, or the graceful
    /// timeout expired), calling `close()` on the responses in flight.
    fn close_all(&mut self, py: Python<'_>) {
        if self.open > 0 {
            log::info!(
                "Worker (pid:{}) exiting with {} connection(s) still open",
                std::process::id(),
                self.open
            );
        }
        for slot in 0..self.slots.len() {
            self.close_slot(py, slot);
        }
    }

    /// USR1: reopens the log files (after logrotate moved them).
    fn reopen_logs(&mut self) {
        log::info!("Reopening logs");
        if let Some(log) = self.shared.access_log.as_mut() {
            log.reopen();
        }
    }

    fn serve(&mut self, py: Python<'_>) -> i32 {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wake_at = match self.stop_deadline {
                Some(deadline) => next_tick.min(deadline),
                None => next_tick,
            };
            let timeout = match self.ready.is_empty() {
                true => wake_at.saturating_duration_since(Instant::now()),
                false => Duration::ZERO,
            };
            let poll = &mut self.poll;
            let polled = py.detach(|| poll.poll(&mut events, Some(timeout)));
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    return 1;
                }
            }
            if let Some(hooks) = &self.shared.hooks {
                hooks.run_pending_signals(py);
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        if self.on_signals(py) {
                            return 0;
                        }
                    }
                    Token(t) if t >= CONNECTION_BASE => self.on_connection_event(
                        py,
                        t - CONNECTION_BASE,
                        event.is_readable(),
                        event.is_writable(),
                    ),
                    Token(t) => self.accept_from(py, t - LISTENER_BASE),
                }
            }
            self.serve_ready(py);
            self.shared.heartbeat.beat();
            self.check_max_requests();
            if let Some(log) = self.shared.access_log.as_mut() {
                log.flush();
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                self.expire_deadlines(py);
                super::reloader::on_tick(py, &self.shared.heartbeat);
                if !self.master_alive() {
                    log::info!(
                        "Parent changed, shutting down: worker {}",
                        std::process::id()
                    );
                    self.begin_graceful_stop(py);
                }
            }
            if let Some(deadline) = self.stop_deadline {
                if self.open == 0 || Instant::now() >= deadline {
                    return 0;
                }
            }
        }
    }

    /// Handles pending signals. Returns true to exit at once.
    fn on_signals(&mut self, py: Python<'_>) -> bool {
        let mut exit_now = false;
        for signal in self.signals.drain() {
            match signal {
                WorkerSignal::FastStop => {
                    if let Some(hooks) = &self.shared.hooks {
                        hooks.worker_int(py);
                    }
                    exit_now = true;
                }
                WorkerSignal::GracefulStop => {
                    self.begin_graceful_stop(py);
                }
                WorkerSignal::ReopenLogs => {
                    if let Err(e) = crate::logging::reopen() {
                        log::error!("{e}");
                    }
                    self.reopen_logs();
                }
            }
        }
        exit_now
    }

    /// Stops accepting, closes idle connections, and lets the others finish
    /// their current request within the graceful timeout.
    fn begin_graceful_stop(&mut self, py: Python<'_>) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(Instant::now() + self.graceful_timeout);
        self.shared.stopping = true;
        log::debug!(
            "Worker (pid:{}) stopping gracefully: {} connection(s) open",
            std::process::id(),
            self.open
        );
        if let Some(hooks) = &self.shared.hooks {
            hooks.stopping(py);
        }
        self.drain_backlog(py);
        for acceptor in self.acceptors.drain(..) {
            if !self.accept_paused {
                let _ = accept_interest::remove(&self.poll, acceptor.raw_fd());
            }
        }
        for slot in 0..self.slots.len() {
            if matches!(&self.slots[slot], Some(c) if c.is_idle()) {
                self.close_slot(py, slot);
            }
        }
    }

    /// Accepts every connection already waiting in the listen backlog, so a
    /// graceful stop serves the clients that were queued (on Kubernetes, the
    /// ones routed here before the endpoint was removed) instead of
    /// resetting them when the sockets close.
    fn drain_backlog(&mut self, py: Python<'_>) {
        for index in 0..self.acceptors.len() {
            loop {
                match self.acceptors[index].accept() {
                    Ok((socket, peer, local)) => self.add_connection(py, socket, peer, local),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
    }

    /// At `--max-requests`, asks the master for a successor; this worker
    /// keeps serving until the successor is ready and the master sends TERM.
    fn check_max_requests(&mut self) {
        let limit = self.shared.max_requests;
        if limit > 0
            && self.shared.requests_done >= limit
            && self.shared.heartbeat.phase() == Phase::Serving
        {
            log::info!(
                "Autorestarting worker after current request: served {} requests",
                self.shared.requests_done
            );
            self.shared.heartbeat.set_phase(Phase::Retiring);
        }
    }

    fn master_alive(&self) -> bool {
        // SAFETY: getppid has no preconditions and cannot fail.
        unsafe { libc::getppid() == self.master_pid }
    }

    /// Accepts a batch of pending connections on listener `index`, up to
    /// the connection cap; at the cap, stops polling the listeners so the
    /// backlog waits for a sibling or for a free slot here.
    fn accept_from(&mut self, py: Python<'_>, index: usize) {
        for _ in 0..ACCEPT_BATCH {
            if self.open >= self.max_connections {
                self.pause_accepting();
                return;
            }
            let Some(acceptor) = self.acceptors.get(index) else {
                return;
            };
            match acceptor.accept() {
                Ok((socket, peer, local)) => self.add_connection(py, socket, peer, local),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE, ECONNABORTED, ...: the loop keeps serving.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn pause_accepting(&mut self) {
        if !self.accept_paused {
            self.accept_paused = true;
            for acceptor in &self.acceptors {
                let _ = accept_interest::remove(&self.poll, acceptor.raw_fd());
            }
        }
    }

    fn resume_accepting(&mut self) {
        if self.accept_paused {
            self.accept_paused = false;
            for (index, acceptor) in self.acceptors.iter().enumerate() {
                if let Err(e) = accept_interest::add(
                    &self.poll,
                    acceptor.raw_fd(),
                    Token(LISTENER_BASE + index),
                ) {
                    log::error!("cannot resume accepting: {e}");
                }
            }
        }
    }

    /// Gives each connection that yielded its turn another one.
    fn serve_ready(&mut self, py: Python<'_>) {
        for _ in 0..self.ready.len() {
            let Some(slot) = self.ready.pop_front() else {
                break;
            };
            self.on_connection_event(py, slot, false, false);
        }
    }

    fn add_connection(&mut self, py: Python<'_>, socket: Socket, peer: Endpoint, local: Endpoint) {
        let stream = match &self.tls {
            None => Stream::plain(socket),
            Some(config) => match TlsSession::new(config.clone()) {
                Ok(session) => Stream::tls(socket, session),
                Err(e) => {
                    log::warn!("cannot start a TLS session: {e}");
                    return;
                }
            },
        };
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let mut connection = Connection::new(stream, peer, local, &self.shared);
        let token = Token(CONNECTION_BASE + slot);
        if let Err(e) = self.poll.registry().register(
            connection.stream(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register connection: {e}");
            self.free_slots.push(slot);
            return;
        }
        self.slots[slot] = Some(connection);
        self.open += 1;
        // Data may already be waiting: the edge came before registration.
        self.on_connection_event(py, slot, true, true);
    }

    fn on_connection_event(&mut self, py: Python<'_>, slot: usize, readable: bool, writable: bool) {
        let Some(Some(connection)) = self.slots.get_mut(slot) else {
            return;
        };
        match connection.on_event(py, &mut self.shared, readable, writable) {
            Keep::Open => {}
            Keep::Yield => self.ready.push_back(slot),
            Keep::Close => self.close_slot(py, slot),
        }
    }

    /// Times out connections whose deadline has passed.
    fn expire_deadlines(&mut self, py: Python<'_>) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let Some(connection) = self.slots[slot].as_mut() else {
                continue;
            };
            if connection.check_timers(py, &mut self.shared, now) == Keep::Close {
                self.close_slot(py, slot);
            }
        }
    }

    fn close_slot(&mut self, py: Python<'_>, slot: usize) {
        if let Some(mut connection) = self.slots[slot].take() {
            connection.abort(py);
            let _ = self.poll.registry().deregister(connection.stream());
            drop(connection);
            self.free_slots.push(slot);
            self.open -= 1;
            if self.open < self.max_connections {
                self.resume_accepting();
            }
        }
    }
}

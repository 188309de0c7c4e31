//! The worker's mio event loop: accepts on the shared listening sockets,
//! hands readiness to each connection's state machine, enforces deadlines,
//! and acts on signals. With one app thread it holds the GIL throughout
//! except around `poll`; with `--threads` it runs without it, and app
//! threads wake it when an exchange has news for a connection.

use super::accept_interest;
use super::connection::{AppCalls, Connection, EvictionCost, Keep, Readiness, Shared};
use super::recycling::{Ask, Recycling};
use super::signals::{SignalPipe, WorkerSignal};
use super::stream::{Socket, Stream};
use super::tls_session::TlsSession;
use super::wsgi::gil::Gil;
use crate::heartbeat::Phase;
use crate::listener::Endpoint;
use crate::listener::Listener;
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(0);
/// Listener `i` has token `LISTENER_BASE + i`.
const LISTENER_BASE: usize = 1;
/// Connection slot `i` has token `CONNECTION_BASE + i`.
const CONNECTION_BASE: usize = 1 << 16;
/// App threads wake the loop with this token (`--threads`).
pub const WAKER: Token = Token(CONNECTION_BASE - 1);
/// How often deadlines and the master's liveness are checked.
const TICK: Duration = Duration::from_millis(250);
/// A worker whose app threads have stayed full this long accepts a batch
/// anyway (and another each time this passes again): every polling sibling
/// is told about the waiting connections (the listeners are not
/// `EPOLLEXCLUSIVE` with app threads) and would have taken them if it had
/// room, so all are full, and a client waits better in a worker's queue
/// than unseen in the backlog (where it would time out behind keep-alive
/// connections that keep the threads busy).
const FULL_POOL_ACCEPT_AFTER: Duration = Duration::from_millis(20);
/// The most connections accepted per wake-up: the listener is
/// level-triggered, so the rest are reported again (or go to a sibling).
const ACCEPT_BATCH: usize = 16;
/// The same with app threads, where every polling worker is told about
/// every waiting connection: small batches deal a burst out among them in
/// turn. A keep-alive connection stays with the worker that accepted it and
/// its requests can use only that worker's threads, so a worker that took
/// most of a burst would queue more requests than its threads can serve
/// while a sibling idles.
const THREADED_ACCEPT_BATCH: usize = 4;
/// How long accepting pauses when the process (EMFILE) or the system
/// (ENFILE) is out of file descriptors: the pending connections wait in
/// the backlog (or go to a sibling) instead of waking this worker in a
/// loop of failing accepts.
const DESCRIPTOR_BACKOFF: Duration = Duration::from_millis(250);
/// How long the app threads get to call `close()` on the responses a stop
/// cancelled (a fast stop, or the graceful timeout expiring; at most the
/// graceful timeout). Well under the 1 s after the graceful timeout at
/// which the master kills the worker.
const CANCELLED_CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A listening socket adopted by this worker, and whether its connections
/// are TLS.
struct Acceptor {
    socket: AcceptSocket,
    serves_tls: bool,
}

/// A connection just accepted.
struct Accepted {
    socket: Socket,
    peer: Endpoint,
    local: Endpoint,
    /// It came in on a listener that serves TLS.
    tls: bool,
}

/// The listening socket of an [`Acceptor`].
enum AcceptSocket {
    Tcp {
        listener: TcpListener,
        /// The bound address, unless it is a wildcard (then each connection
        /// asks its own socket).
        local: Option<SocketAddr>,
        /// `TCP_NODELAY` is set on the listening socket, which Linux copies
        /// to every accepted one (no setsockopt per connection).
        nodelay_inherited: bool,
    },
    Unix(UnixListener),
}

impl Acceptor {
    /// Adopts a duplicate of one of the master's listening sockets.
    fn adopt(listener: &Listener, serves_tls: bool) -> io::Result<Acceptor> {
        let socket = match listener {
            Listener::Tcp(l) => {
                let l = l.try_clone()?;
                l.set_nonblocking(true)?;
                let local = l.local_addr().ok().filter(|a| !a.ip().is_unspecified());
                let nodelay_inherited = cfg!(target_os = "linux") && set_nodelay(&l);
                AcceptSocket::Tcp {
                    listener: TcpListener::from_std(l),
                    local,
                    nodelay_inherited,
                }
            }
            Listener::Unix(l) => {
                let l = l.try_clone()?;
                l.set_nonblocking(true)?;
                AcceptSocket::Unix(UnixListener::from_std(l))
            }
        };
        Ok(Acceptor { socket, serves_tls })
    }

    /// Accepts one connection.
    fn accept(&self) -> io::Result<Accepted> {
        let (socket, peer, local) = self.accept_socket()?;
        Ok(Accepted {
            socket,
            peer,
            local,
            tls: self.serves_tls,
        })
    }

    fn accept_socket(&self) -> io::Result<(Socket, Endpoint, Endpoint)> {
        match &self.socket {
            AcceptSocket::Tcp {
                listener,
                local,
                nodelay_inherited,
            } => {
                let (stream, peer) = listener.accept()?;
                if !nodelay_inherited {
                    let _ = stream.set_nodelay(true);
                }
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
            AcceptSocket::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                Ok((Socket::Unix(stream), Endpoint::Unix, Endpoint::Unix))
            }
        }
    }

    /// Whether a connection is waiting in the backlog (so closing one of
    /// ours to make room for it is worth it).
    fn has_pending(&self) -> bool {
        let mut listener = libc::pollfd {
            fd: self.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one valid pollfd for an open
        // socket; a zero timeout never blocks.
        let ready = unsafe { libc::poll(&mut listener, 1, 0) };
        ready > 0 && listener.revents & libc::POLLIN != 0
    }

    fn raw_fd(&self) -> RawFd {
        match &self.socket {
            AcceptSocket::Tcp { listener, .. } => listener.as_raw_fd(),
            AcceptSocket::Unix(listener) => listener.as_raw_fd(),
        }
    }
}

/// Sets `TCP_NODELAY` on a listening socket; false if it could not.
fn set_nodelay(listener: &std::net::TcpListener) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from `on`, which outlives the
    // call, on an open socket.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    result == 0
}

/// The worker's loop and everything it owns.
pub struct EventLoop {
    poll: Poll,
    acceptors: Vec<Acceptor>,
    slots: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    open: usize,
    max_connections: usize,
    /// Accepting paused (listeners out of the poll): at the connection cap
    /// with every connection busy, or while the app threads are full,
    /// resumed when there is room again; or out of file descriptors,
    /// resumed at `accept_resume_at` (or when a connection closes).
    accept_paused: bool,
    /// When a descriptor back-off ends.
    accept_resume_at: Option<Instant>,
    /// Listeners are registered with `EPOLLEXCLUSIVE` (not with app
    /// threads: see `accept_interest`).
    exclusive_accepts: bool,
    /// Since when accepting has been paused because the app threads are
    /// full (see [`FULL_POOL_ACCEPT_AFTER`]).
    full_pool_since: Option<Instant>,
    /// Whether the current run of descriptor back-offs has been logged
    /// (one warning per run, not one per failed accept).
    descriptor_shortage_logged: bool,
    /// Connections that used up their turn with work left (see
    /// [`Keep::Yield`]), served again after the next poll.
    ready: VecDeque<usize>,
    signals: SignalPipe,
    shared: Shared,
    master_pid: i32,
    graceful_timeout: Duration,
    stop_deadline: Option<Instant>,
    /// With `--max-requests`, from when the worker serves: its budget and
    /// when to ask for a successor.
    recycling: Option<Recycling>,
    /// The budget is used up and the successor is not serving yet: defer
    /// new connections to the other workers (see
    /// [`EventLoop::yield_accepts_to_siblings`]).
    deferring_accepts: bool,
}

impl EventLoop {
    /// Adopts the listening sockets (each with whether it serves TLS) and
    /// registers everything with `poll` (new, or holding only the app
    /// threads' waker).
    pub fn new(
        poll: Poll,
        listeners: &[(&Listener, bool)],
        mut signals: SignalPipe,
        shared: Shared,
        max_connections: usize,
        master_pid: i32,
        graceful_timeout: Duration,
    ) -> io::Result<EventLoop> {
        poll.registry()
            .register(signals.receiver(), SIGNALS, Interest::READABLE)?;
        // With app threads every worker hears of every waiting connection
        // (see accept_interest).
        let exclusive_accepts = matches!(shared.calls, AppCalls::Inline(_));
        let mut acceptors = Vec::with_capacity(listeners.len());
        for (index, (listener, serves_tls)) in listeners.iter().enumerate() {
            let acceptor = Acceptor::adopt(listener, *serves_tls)?;
            accept_interest::add(
                &poll,
                acceptor.raw_fd(),
                Token(LISTENER_BASE + index),
                exclusive_accepts,
            )?;
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
            accept_resume_at: None,
            exclusive_accepts,
            full_pool_since: None,
            descriptor_shortage_logged: false,
            ready: VecDeque::new(),
            signals,
            shared,
            master_pid,
            graceful_timeout,
            stop_deadline: None,
            recycling: None,
            deferring_accepts: false,
        })
    }

    /// Serves until stopped, lets the app threads finish (within the
    /// graceful timeout), then writes out the access log. Returns the
    /// worker's exit code.
    pub fn run(&mut self, gil: Gil<'_>) -> i32 {
        let code = self.serve(gil);
        self.close_all(gil);
        if let AppCalls::Threads(threads) = &mut self.shared.calls {
            // The responses `close_all` cancelled (a fast stop, or the
            // graceful timeout expiring) are closed on their app threads:
            // give those a moment to call `close()`, even past the graceful
            // deadline (a thread still inside the app is not waited for
            // longer).
            let now = Instant::now();
            let closing = now + self.graceful_timeout.min(CANCELLED_CLOSE_GRACE);
            let deadline = self.stop_deadline.map_or(closing, |d| d.max(closing));
            threads.pool.stop(deadline);
        }
        self.with_access_log(|log| log.flush_all());
        if let Some(hooks) = &self.shared.hooks {
            gil.with(|py| hooks.worker_exit(py));
        }
        code
    }

    fn with_access_log(&self, f: impl FnOnce(&mut super::access_log::AccessLog)) {
        if let Some(log) = &self.shared.access_log {
            if let Ok(mut log) = log.lock() {
                f(&mut log);
            }
        }
    }

    /// Closes every connection still open (a fast stop, or the graceful
    /// timeout expired), calling `close()` on the responses in flight (on
    /// an app thread: telling it to).
    fn close_all(&mut self, gil: Gil<'_>) {
        if self.open > 0 {
            log::info!(
                "Worker (pid:{}) exiting with {} connection(s) still open",
                std::process::id(),
                self.open
            );
        }
        for slot in 0..self.slots.len() {
            self.close_slot(gil, slot);
        }
    }

    /// USR1: reopens the log files (after logrotate moved them).
    fn reopen_logs(&mut self) {
        log::info!("Reopening logs");
        self.with_access_log(|log| log.reopen());
    }

    fn serve(&mut self, gil: Gil<'_>) -> i32 {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let queue_check_at = match &mut self.shared.calls {
                AppCalls::Threads(threads) => threads.wake_for_queued(),
                AppCalls::Inline(_) => None,
            };
            let accept_anyway_at = self
                .full_pool_since
                .map(|since| since + FULL_POOL_ACCEPT_AFTER);
            let wake_at = [
                self.stop_deadline,
                self.accept_resume_at,
                queue_check_at,
                accept_anyway_at,
            ]
            .into_iter()
            .flatten()
            .fold(next_tick, Instant::min);
            let timeout = match self.ready.is_empty() {
                true => wake_at.saturating_duration_since(Instant::now()),
                false => Duration::ZERO,
            };
            let poll = &mut self.poll;
            let polled = gil.without(|| poll.poll(&mut events, Some(timeout)));
            self.shared.now = Instant::now();
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    return 1;
                }
            }
            if let Some(hooks) = self.shared.hooks.as_ref().filter(|h| h.handles_signals()) {
                gil.with(|py| hooks.run_pending_signals(py));
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        if self.on_signals(gil) {
                            return 0;
                        }
                    }
                    WAKER => self.on_app_news(gil),
                    Token(t) if t >= CONNECTION_BASE => self.on_connection_event(
                        gil,
                        t - CONNECTION_BASE,
                        Readiness {
                            readable: event.is_readable(),
                            writable: event.is_writable(),
                            read_closed: event.is_read_closed(),
                        },
                    ),
                    Token(t) => self.accept_from(gil, t - LISTENER_BASE),
                }
            }
            self.serve_ready(gil);
            let now = Instant::now();
            self.shared.now = now;
            if self.accept_resume_at.is_some_and(|at| now >= at) {
                self.accept_resume_at = None;
                self.resume_accepting();
            }
            self.shared.heartbeat.beat();
            self.check_max_requests();
            self.with_access_log(|log| log.flush());
            if self
                .full_pool_since
                .is_some_and(|since| now.saturating_duration_since(since) >= FULL_POOL_ACCEPT_AFTER)
            {
                self.full_pool_since = Some(now);
                self.accept_despite_full_pool();
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.expire_deadlines(gil);
                if super::reloader::is_watching() {
                    let heartbeat = &self.shared.heartbeat;
                    gil.with(|py| super::reloader::on_tick(py, heartbeat));
                }
                if !self.master_alive() {
                    log::info!(
                        "Parent changed, shutting down: worker {}",
                        std::process::id()
                    );
                    self.begin_graceful_stop(gil);
                }
            }
            if let Some(deadline) = self.stop_deadline {
                if self.open == 0 || now >= deadline {
                    return 0;
                }
            }
        }
    }

    /// Handles pending signals. Returns true to exit at once.
    fn on_signals(&mut self, gil: Gil<'_>) -> bool {
        let mut exit_now = false;
        for signal in self.signals.drain() {
            match signal {
                WorkerSignal::FastStop => {
                    if let Some(hooks) = &self.shared.hooks {
                        gil.with(|py| hooks.worker_int(py));
                    }
                    exit_now = true;
                }
                WorkerSignal::GracefulStop => {
                    self.begin_graceful_stop(gil);
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

    /// Stops accepting and lets every connection finish within the graceful
    /// timeout: the requests in flight are answered, and a connection
    /// waiting for a request gets one more (answered with `Connection:
    /// close`) or, if none comes within the stop grace, is closed by its
    /// deadline (see [`Connection::begin_graceful_stop`]).
    fn begin_graceful_stop(&mut self, gil: Gil<'_>) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(Instant::now() + self.graceful_timeout);
        self.shared.stopping = true;
        if let Some(recycling) = self.recycling.as_ref().filter(|r| r.asked()) {
            log::info!(
                "Worker (pid:{}) retiring after {} requests (max requests {})",
                std::process::id(),
                self.shared.requests_done,
                recycling.limit()
            );
        }
        log::debug!(
            "Worker (pid:{}) stopping gracefully: {} connection(s) open",
            std::process::id(),
            self.open
        );
        if let Some(hooks) = &self.shared.hooks {
            gil.with(|py| hooks.stopping(py));
        }
        self.drain_backlog();
        for acceptor in self.acceptors.drain(..) {
            if !self.accept_paused {
                let _ = accept_interest::remove(&self.poll, acceptor.raw_fd());
            }
        }
        for connection in self.slots.iter_mut().flatten() {
            connection.begin_graceful_stop(&self.shared);
        }
    }

    /// Accepts every connection already waiting in the listen backlog, so a
    /// graceful stop serves the clients that were queued (on Kubernetes, the
    /// ones routed here before the endpoint was removed) instead of
    /// resetting them when the sockets close.
    fn drain_backlog(&mut self) {
        for index in 0..self.acceptors.len() {
            loop {
                match self.acceptors[index].accept() {
                    Ok(accepted) => self.add_connection(accepted),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
    }

    /// Tells the master this worker serves, records how long it took to
    /// boot (for the master, which passes the latest boot on to every
    /// worker), and starts counting towards `--max-requests`.
    pub fn start_serving(&mut self) {
        let boot = self.shared.heartbeat.record_boot();
        log::debug!(
            "Worker (pid:{}) serving, booted in {} ms",
            std::process::id(),
            boot.as_millis()
        );
        let limit = self.shared.max_requests;
        self.recycling = (limit > 0).then(|| Recycling::new(limit, boot));
        self.announce_phase(Phase::Serving);
    }

    /// `--max-requests`: asks the master for a successor once the requests
    /// left would take about one boot (see [`Recycling`]), and at the
    /// limit, if the successor is not serving yet, defers new connections
    /// to the other workers. The master stops this worker as soon as its
    /// successor serves.
    fn check_max_requests(&mut self) {
        let served = self.shared.requests_done;
        let (ask, at_limit) = match &mut self.recycling {
            Some(recycling) if self.stop_deadline.is_none() => (
                recycling.check(served, Instant::now(), self.shared.heartbeat.latest_boot()),
                recycling.reached_limit(served),
            ),
            _ => return,
        };
        if let Some(ask) = ask {
            log_ask(&ask);
            self.announce_phase(Phase::Retiring);
        }
        if at_limit && !self.deferring_accepts {
            self.deferring_accepts = true;
            log::debug!(
                "Worker (pid:{}) at its max requests; deferring connections until its successor serves",
                std::process::id()
            );
            self.yield_accepts_to_siblings();
        }
    }

    /// Moves to `phase` in the heartbeat and wakes the master (SIGCHLD: a
    /// child's state changed), so it acts now rather than at its next
    /// tick: boots a successor for a retiring worker, or retires the
    /// worker that a newly serving one replaces. A handover then takes one
    /// boot, not a boot plus up to two master ticks.
    fn announce_phase(&self, phase: Phase) {
        self.shared.heartbeat.set_phase(phase);
        // SAFETY: kill has no memory preconditions; a master that is gone
        // (ESRCH) is noticed by the tick's parent check.
        unsafe {
            libc::kill(self.master_pid, libc::SIGCHLD);
        }
    }

    fn master_alive(&self) -> bool {
        // SAFETY: getppid has no preconditions and cannot fail.
        unsafe { libc::getppid() == self.master_pid }
    }

    /// Accepts a batch of pending connections on listener `index`. While
    /// the app threads are full it stops polling the listeners, so the
    /// backlog waits for a sibling or for a free thread here. At the
    /// connection cap it first closes the cheapest waiting connections (see
    /// [`EventLoop::evict_waiting`]); only when every connection is busy
    /// does it stop polling the listeners, so the backlog waits for a
    /// sibling or for a free slot here. Out of file descriptors, it pauses
    /// accepting for [`DESCRIPTOR_BACKOFF`].
    fn accept_from(&mut self, gil: Gil<'_>, index: usize) {
        self.accept_batch(gil, index);
        if self.deferring_accepts {
            self.yield_accepts_to_siblings();
        }
    }

    /// A worker at its max requests (its successor still booting) goes to
    /// the back of each listener's queue of exclusive waiters
    /// after every batch it accepts: the kernel offers a new connection to
    /// the first waiting worker in that queue, so every other worker,
    /// including the successor once it polls, is offered it first. The
    /// retiring worker still accepts when all of them are busy, so
    /// capacity does not dip while the successor boots.
    ///
    /// With app threads there is no such queue (every polling worker is
    /// told about every connection, see `accept_interest`): the worker
    /// stops polling the listeners, as a full one does, and takes only
    /// what still waits after [`FULL_POOL_ACCEPT_AFTER`].
    fn yield_accepts_to_siblings(&mut self) {
        if self.accept_paused {
            return;
        }
        if !self.exclusive_accepts {
            self.full_pool_since.get_or_insert_with(Instant::now);
            self.pause_accepting();
            return;
        }
        for (index, acceptor) in self.acceptors.iter().enumerate() {
            let token = Token(LISTENER_BASE + index);
            let requeued = accept_interest::remove(&self.poll, acceptor.raw_fd()).and_then(|()| {
                accept_interest::add(&self.poll, acceptor.raw_fd(), token, self.exclusive_accepts)
            });
            if let Err(e) = requeued {
                log::error!("cannot requeue a listener: {e}");
            }
        }
    }

    fn accept_batch(&mut self, gil: Gil<'_>, index: usize) {
        for _ in 0..self.accept_batch_size() {
            if !self.app_threads_have_room() {
                self.full_pool_since.get_or_insert_with(Instant::now);
                self.pause_accepting();
                return;
            }
            let Some(acceptor) = self.acceptors.get(index) else {
                return;
            };
            if self.open >= self.max_connections {
                if !acceptor.has_pending() {
                    return;
                }
                if self.evict_waiting(gil, 1) == 0 {
                    self.pause_accepting();
                    return;
                }
            }
            let Some(acceptor) = self.acceptors.get(index) else {
                return;
            };
            match acceptor.accept() {
                Ok(accepted) => {
                    self.descriptor_shortage_logged = false;
                    self.add_connection(accepted)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.back_off_descriptors(&e);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED, ...: the loop keeps serving.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn accept_batch_size(&self) -> usize {
        match self.exclusive_accepts {
            true => ACCEPT_BATCH,
            false => THREADED_ACCEPT_BATCH,
        }
    }

    /// Accepts a batch from each listener although the app threads are full
    /// (see [`FULL_POOL_ACCEPT_AFTER`]); the requests queue.
    fn accept_despite_full_pool(&mut self) {
        for index in 0..self.acceptors.len() {
            for _ in 0..self.accept_batch_size() {
                if self.open >= self.max_connections {
                    return;
                }
                match self.acceptors[index].accept() {
                    Ok(accepted) => self.add_connection(accepted),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
    }

    /// Whether a new connection may be taken: below the connection cap, and
    /// the app threads (if any) not full nor deferring to the other workers
    /// (see [`EventLoop::yield_accepts_to_siblings`]).
    fn has_room(&self) -> bool {
        self.open < self.max_connections
            && self.app_threads_have_room()
            && (self.exclusive_accepts || !self.deferring_accepts)
    }

    /// Whether the app threads (if any) can take another request.
    fn app_threads_have_room(&self) -> bool {
        match &self.shared.calls {
            AppCalls::Inline(_) => true,
            AppCalls::Threads(threads) => threads.pool.has_room(),
        }
    }

    /// Closes up to `wanted` of the connections that cost least to close,
    /// to make room at the connection cap: first those kept alive between
    /// requests, then those that have sent nothing yet, the longest
    /// waiting first of each. A connection in the middle of a request or a
    /// response is never closed. Returns how many were closed.
    fn evict_waiting(&mut self, gil: Gil<'_>, wanted: usize) -> usize {
        let mut candidates: Vec<(EvictionCost, Instant, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, connection)| {
                let (cost, since) = connection.as_ref()?.eviction_cost()?;
                Some((cost, since, slot))
            })
            .collect();
        let evicted = wanted.min(candidates.len());
        if evicted == 0 {
            return 0;
        }
        if evicted < candidates.len() {
            candidates.select_nth_unstable(evicted - 1);
        }
        log::debug!(
            "At --worker-connections {}: closing {evicted} waiting connection(s)",
            self.max_connections
        );
        for (_, _, slot) in candidates.drain(..evicted) {
            self.close_slot(gil, slot);
        }
        evicted
    }

    /// Out of file descriptors: stops accepting for [`DESCRIPTOR_BACKOFF`]
    /// (the connections wait in the backlog, or a sibling takes them) and
    /// warns once per shortage, however many back-offs it lasts.
    fn back_off_descriptors(&mut self, error: &io::Error) {
        if !self.descriptor_shortage_logged {
            self.descriptor_shortage_logged = true;
            log::warn!(
                "accept failed: {error}; pausing accepting for {} ms at a time until descriptors free up",
                DESCRIPTOR_BACKOFF.as_millis()
            );
        }
        self.pause_accepting();
        self.accept_resume_at = Some(Instant::now() + DESCRIPTOR_BACKOFF);
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
        if self.accept_paused && self.has_room() {
            self.accept_paused = false;
            self.full_pool_since = None;
            for (index, acceptor) in self.acceptors.iter().enumerate() {
                if let Err(e) = accept_interest::add(
                    &self.poll,
                    acceptor.raw_fd(),
                    Token(LISTENER_BASE + index),
                    self.exclusive_accepts,
                ) {
                    log::error!("cannot resume accepting: {e}");
                }
            }
        }
    }

    /// Gives each connection that yielded its turn another one.
    fn serve_ready(&mut self, gil: Gil<'_>) {
        for _ in 0..self.ready.len() {
            let Some(slot) = self.ready.pop_front() else {
                break;
            };
            self.on_connection_event(gil, slot, Readiness::default());
        }
    }

    /// App threads have news: run the connections whose exchanges have
    /// bytes or ended, and accept again if the threads have room.
    fn on_app_news(&mut self, gil: Gil<'_>) {
        let AppCalls::Threads(threads) = &self.shared.calls else {
            return;
        };
        for ticket in threads.pool.take_news() {
            let slot = ticket.slot();
            if matches!(&self.slots.get(slot), Some(Some(c)) if c.holds(&ticket)) {
                self.on_connection_event(gil, slot, Readiness::default());
            }
        }
        self.resume_accepting();
    }

    fn add_connection(&mut self, accepted: Accepted) {
        let Accepted {
            socket,
            peer,
            local,
            tls,
        } = accepted;
        let stream = match &self.shared.tls {
            Some(config) if tls => {
                match TlsSession::new(config.clone(), self.shared.proxy_protocol.is_some()) {
                    Ok(session) => Stream::tls(socket, session),
                    Err(e) => {
                        log::warn!("cannot start a TLS session: {e}");
                        return;
                    }
                }
            }
            _ => Stream::plain(socket),
        };
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let mut connection = Connection::new(slot, stream, peer, local, &self.shared);
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
        // Registering polls the socket: what is already there (writable at
        // once, the request if it came before) is reported by the next
        // poll, so nothing is tried here (a read now would mostly find
        // the request not there yet).
    }

    fn on_connection_event(&mut self, gil: Gil<'_>, slot: usize, event: Readiness) {
        let Some(Some(connection)) = self.slots.get_mut(slot) else {
            return;
        };
        match connection.on_event(gil, &mut self.shared, event) {
            Keep::Open => {}
            Keep::Yield => self.ready.push_back(slot),
            Keep::Close => self.close_slot(gil, slot),
        }
    }

    /// Times out connections whose deadline has passed.
    fn expire_deadlines(&mut self, gil: Gil<'_>) {
        let now = self.shared.now;
        for slot in 0..self.slots.len() {
            let Some(connection) = self.slots[slot].as_mut() else {
                continue;
            };
            if connection.check_timers(gil, &mut self.shared, now) == Keep::Close {
                self.close_slot(gil, slot);
            }
        }
    }

    fn close_slot(&mut self, gil: Gil<'_>, slot: usize) {
        if let Some(mut connection) = self.slots[slot].take() {
            connection.abort(gil);
            // Closing the socket (its only descriptor) takes it out of the
            // epoll set: no deregistration call.
            drop(connection);
            self.free_slots.push(slot);
            self.open -= 1;
            self.resume_accepting();
        }
    }
}

/// The worker's line when it asks for its successor (`Autorestarting
/// worker` is gunicorn's word for it, which operators grep for).
fn log_ask(ask: &Ask) {
    log::info!(
        "Autorestarting worker (pid:{}): asking for its successor at {} of {} requests \
         ({:.0} requests/s, a boot takes about {} ms)",
        std::process::id(),
        ask.served,
        ask.limit,
        ask.rate,
        ask.boot.as_millis()
    );
}

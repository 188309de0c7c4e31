//! Slow-client defence: one worker keeps serving normal requests while
//! hundreds of clients trickle request heads (slowloris), trickle or stall
//! request bodies, refuse to read large responses, or sit idle; the
//! `--header-timeout`, `--body-timeout`, `--body-min-rate`, `--send-timeout`
//! and `--keep-alive` limits cut those clients off in bounded time; the
//! `--worker-connections` cap closes idle connections to make room, and
//! leaves extra connections in the backlog when every one is busy; and
//! `--limit-request-body` answers 413.
//!
//! Every server here has ONE worker, so a server that blocked on a slow
//! client would fail the "normal request within a second" checks. The
//! misbehaving clients are plain sockets driven by one background thread
//! (see [`Trickler`]), not processes. Figures worth reading (worker RSS,
//! per-client completion times) are printed: run with `--nocapture`.

mod support;

use nix::sys::socket::{
    connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
};
use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{wait_until, Client, Server, ServerBuilder};

const GREETING: &[u8] = b"Hello, World!\n";
/// The size of `/big-generator` and `/big-bytes` (see `slow_apps.py`).
const BIG_RESPONSE_SIZE: usize = 50 * 1024 * 1024;
/// A normal request must be answered within this, whatever the slow
/// clients do.
const NORMAL_LATENCY: Duration = Duration::from_secs(1);
/// How often a trickling client sends its next byte.
const TRICKLE_PERIOD: Duration = Duration::from_millis(200);
/// The worker checks deadlines every 250 ms; allow that plus scheduling
/// slack on a loaded machine.
const TIMER_SLACK: Duration = Duration::from_millis(2500);

/// Tests that bring a crowd of clients take turns, so two crowds do not
/// share the machine's cores and blur each other's latency figures.
static CROWD: Mutex<()> = Mutex::new(());

/// Waits for this test's turn to bring a crowd (held until dropped).
fn crowd_turn() -> MutexGuard<'static, ()> {
    CROWD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A one-worker server for `slow_apps:application` with `args`, returned
/// once its worker has served a request (so the worker's file descriptors
/// are those of a running loop, not of a boot in progress).
fn start_server(args: &[&str]) -> Server {
    let mut builder = ServerBuilder::new("slow_apps:application")
        .workers(1)
        .arg("--graceful-timeout")
        .arg("3");
    for arg in args {
        builder = builder.arg(*arg);
    }
    let server = builder.start();
    assert_eq!(server.get("/").status, 200, "the worker does not serve");
    let released = wait_until(Duration::from_secs(5), || held_connections(&server) == 0);
    assert!(released, "the worker still holds its warm-up connection");
    server
}

fn server_addr(server: &Server) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.port())
}

fn worker_pid(server: &Server) -> i32 {
    let pids = server.worker_pids();
    assert_eq!(pids.len(), 1, "expected one worker; log:\n{}", server.log());
    pids[0]
}

/// `GET /` on a fresh connection; returns how long the answer took.
fn timed_get(server: &Server) -> Duration {
    let started = Instant::now();
    let response = server.get("/");
    let took = started.elapsed();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, GREETING);
    took
}

/// Makes `count` normal requests and asserts each is answered within
/// [`NORMAL_LATENCY`].
fn assert_normal_requests_are_fast(server: &Server, count: usize, while_what: &str) {
    let mut slowest = Duration::ZERO;
    for _ in 0..count {
        let took = timed_get(server);
        assert!(
            took < NORMAL_LATENCY,
            "a normal GET took {took:?} while {while_what}"
        );
        slowest = slowest.max(took);
    }
    eprintln!("slowest of {count} normal GETs while {while_what}: {slowest:?}");
}

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM), in KiB.
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The inodes of the server-side TCP connections on local port `port`
/// (any state but LISTEN), from `/proc/net/tcp`.
fn connection_inodes(port: u16) -> HashSet<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            (local.ends_with(&local_port) && *state != "0A").then(|| inode.to_string())
        })
        .collect()
}

/// How many client connections the server's worker holds open (sockets
/// in its descriptor table), so a test sees what the worker accepted and
/// what it closed, whatever the client side believes.
fn held_connections(server: &Server) -> usize {
    let inodes = connection_inodes(server.port());
    let worker = worker_pid(server);
    let Ok(fds) = std::fs::read_dir(format!("/proc/{worker}/fd")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .filter(|inode| inodes.contains(inode))
        .count()
}

/// Connects `count` plain sockets and sends each `opening`.
fn connect_and_send(server: &Server, count: usize, opening: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(server_addr(server)).expect("connect");
            stream.write_all(opening).expect("send opening bytes");
            stream
        })
        .collect()
}

/// Connects `count` [`SlowClient`]s that send `opening`, then (if
/// `trickles`) one byte per [`TRICKLE_PERIOD`]; each client's clock starts
/// when its opening bytes are sent.
fn connect_slow_clients(
    server: &Server,
    count: usize,
    opening: &[u8],
    trickles: bool,
) -> Vec<SlowClient> {
    (0..count)
        .map(|_| {
            let stream = connect_and_send(server, 1, opening).remove(0);
            SlowClient::new(stream, trickles)
        })
        .collect()
}

/// `GET /` (kept alive) on a plain socket; reads the whole greeting.
fn raw_keep_alive_get(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set_read_timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send request");
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.ends_with(GREETING) {
        let n = stream.read(&mut buf).expect("read the response");
        assert!(
            n > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
}

/// How a slow client's connection ended.
#[derive(Debug, Clone)]
struct Cut {
    /// From the start of the server's clock for this client to the first
    /// sign of the cut (response bytes, EOF or reset).
    after: Duration,
    /// The first bytes the server sent (empty: closed without a word).
    received: Vec<u8>,
}

impl Cut {
    /// Whether the server answered 408 or just closed.
    fn is_408_or_silent_close(&self) -> bool {
        const TIMEOUT: &[u8] = b"HTTP/1.1 408";
        let shown = self.received.len().min(TIMEOUT.len());
        self.received[..shown] == TIMEOUT[..shown]
    }
}

/// One misbehaving client, driven by a [`Trickler`].
struct SlowClient {
    stream: TcpStream,
    /// When the server's clock for this client started: the first head
    /// byte (header timeout) or the end of the head (body timers).
    since: Instant,
    /// Send one more byte per tick (false: stall).
    trickles: bool,
    cut: Option<Cut>,
}

impl SlowClient {
    /// Wraps a socket that has just sent its opening bytes.
    fn new(stream: TcpStream, trickles: bool) -> SlowClient {
        stream.set_nonblocking(true).expect("set_nonblocking");
        SlowClient {
            stream,
            since: Instant::now(),
            trickles,
            cut: None,
        }
    }

    /// One tick: notice a response or close, else send the next byte.
    fn tick(&mut self, now: Instant) {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(n) => self.cut_at(now, &buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if self.trickles && self.stream.write(b"a").is_err() {
                    self.cut_at(now, &[]);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => self.cut_at(now, &[]),
        }
    }

    fn cut_at(&mut self, now: Instant, received: &[u8]) {
        self.cut = Some(Cut {
            after: now.duration_since(self.since),
            received: received.to_vec(),
        });
    }
}

/// A background thread that sends each of its clients one byte per
/// [`TRICKLE_PERIOD`] (or nothing, for stalling clients) and records when
/// the server cuts each one off. Bounded: it gives up after `limit`.
struct Trickler {
    stop: Arc<AtomicBool>,
    uncut: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Vec<SlowClient>>>,
}

impl Trickler {
    fn start(mut clients: Vec<SlowClient>, limit: Duration) -> Trickler {
        let stop = Arc::new(AtomicBool::new(false));
        let uncut = Arc::new(AtomicUsize::new(clients.len()));
        let thread = {
            let stop = Arc::clone(&stop);
            let uncut = Arc::clone(&uncut);
            std::thread::spawn(move || {
                let deadline = Instant::now() + limit;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let now = Instant::now();
                    let mut left = 0;
                    for client in clients.iter_mut().filter(|c| c.cut.is_none()) {
                        client.tick(now);
                        left += usize::from(client.cut.is_none());
                    }
                    uncut.store(left, Ordering::SeqCst);
                    if left == 0 {
                        break;
                    }
                    std::thread::sleep(TRICKLE_PERIOD);
                }
                clients
            })
        };
        Trickler {
            stop,
            uncut,
            thread: Some(thread),
        }
    }

    /// Clients the server has not cut off yet (as of the last tick).
    fn uncut(&self) -> usize {
        self.uncut.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for every client to be cut off.
    fn wait_all_cut(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.uncut() == 0)
    }

    /// Stops the thread and returns the clients (still open).
    fn finish(mut self) -> Vec<SlowClient> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("not finished twice");
        thread.join().expect("trickler thread panicked")
    }
}

impl Drop for Trickler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asserts every client was cut off within `[earliest, latest]` of its
/// clock starting, with a 408 or a silent close.
fn assert_cut_between(clients: &[SlowClient], earliest: Duration, latest: Duration, what: &str) {
    let cuts: Vec<&Cut> = clients
        .iter()
        .map(|c| {
            c.cut
                .as_ref()
                .unwrap_or_else(|| panic!("a {what} was never cut off"))
        })
        .collect();
    for cut in &cuts {
        assert!(
            cut.is_408_or_silent_close(),
            "a {what} got {:?} instead of 408 or a close",
            String::from_utf8_lossy(&cut.received)
        );
        assert!(
            cut.after >= earliest && cut.after <= latest,
            "a {what} was cut off after {:?}, expected between {earliest:?} and {latest:?}",
            cut.after
        );
    }
    let fastest = cuts.iter().map(|c| c.after).min().unwrap_or_default();
    let slowest = cuts.iter().map(|c| c.after).max().unwrap_or_default();
    let answered = cuts.iter().filter(|c| !c.received.is_empty()).count();
    eprintln!(
        "{} {what}s cut off after {fastest:?}..{slowest:?}; {answered} got a 408, the rest a bare close",
        cuts.len()
    );
}

#[test]
fn normal_requests_complete_while_hundreds_of_clients_trickle_headers() {
    let _turn = crowd_turn();
    const TRICKLERS: usize = 300;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    let server = start_server(&["--header-timeout", "5"]);
    let opening = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let clients = connect_slow_clients(&server, TRICKLERS, opening, true);
    let trickler = Trickler::start(clients, Duration::from_secs(30));
    let trickling_since = Instant::now();

    std::thread::sleep(Duration::from_millis(500));
    assert_normal_requests_are_fast(&server, 8, "300 clients trickle headers");
    assert_eq!(
        trickler.uncut(),
        TRICKLERS,
        "tricklers were cut off before the header timeout ({:?} after they started)",
        trickling_since.elapsed()
    );

    // They keep sending bytes, so only the absolute head deadline stops them.
    assert!(
        trickler.wait_all_cut(HEADER_TIMEOUT + TIMER_SLACK + Duration::from_secs(2)),
        "{} of {TRICKLERS} header tricklers still connected {:?} after they started",
        trickler.uncut(),
        trickling_since.elapsed()
    );
    let clients = trickler.finish();
    let minimum = HEADER_TIMEOUT - Duration::from_millis(300);
    assert_cut_between(
        &clients,
        minimum,
        HEADER_TIMEOUT + TIMER_SLACK,
        "header trickler",
    );
    drop(clients);
    assert_normal_requests_are_fast(&server, 2, "the tricklers are gone");
}

#[test]
fn normal_requests_complete_while_clients_trickle_bodies() {
    let _turn = crowd_turn();
    const TRICKLERS: usize = 150;
    const STALLERS: usize = 50;
    const BODY_TIMEOUT: Duration = Duration::from_secs(2);
    /// The worker judges a body's rate once it has been arriving 5 s.
    const RATE_GRACE: Duration = Duration::from_secs(5);
    let server = start_server(&["--body-timeout", "2", "--body-min-rate", "100"]);
    let head = b"POST /echo-length HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n";
    // Tricklers: a byte per 200 ms (5 B/s), never silent for 2 s, so only
    // the minimum rate can stop them. Stallers: a few bytes, then nothing.
    let mut clients = connect_slow_clients(&server, TRICKLERS, head, true);
    let mut staller_opening = head.to_vec();
    staller_opening.extend_from_slice(&[b'a'; 100]);
    clients.extend(connect_slow_clients(
        &server,
        STALLERS,
        &staller_opening,
        false,
    ));
    let trickler = Trickler::start(clients, Duration::from_secs(30));
    let started = Instant::now();

    std::thread::sleep(Duration::from_millis(300));
    assert_normal_requests_are_fast(&server, 8, "200 clients trickle or stall bodies");
    assert!(
        trickler.wait_all_cut(RATE_GRACE + TIMER_SLACK + Duration::from_secs(3)),
        "{} of {} body senders still connected {:?} after their head",
        trickler.uncut(),
        TRICKLERS + STALLERS,
        started.elapsed()
    );
    let clients = trickler.finish();
    let (tricklers, stallers) = clients.split_at(TRICKLERS);
    assert_cut_between(
        stallers,
        BODY_TIMEOUT - Duration::from_millis(300),
        BODY_TIMEOUT + TIMER_SLACK,
        "stalled body sender",
    );
    // Not by the idle timeout (they never pause for 2 s): by the rate.
    assert_cut_between(
        tricklers,
        RATE_GRACE - Duration::from_millis(300),
        RATE_GRACE + TIMER_SLACK,
        "body trickler",
    );
    drop(clients);
    assert_normal_requests_are_fast(&server, 2, "the body senders are gone");
}

#[test]
fn a_kept_alive_connection_trickling_its_next_head_gets_408() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    let server = start_server(&["--header-timeout", "2", "--keep-alive", "30"]);
    let mut stream = TcpStream::connect(server_addr(&server)).expect("connect");
    raw_keep_alive_get(&mut stream);
    // The keep-alive wait is over once a byte arrives: from then on the
    // head has its own absolute deadline, however steadily bytes come.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .expect("start the second head");
    let trickler = Trickler::start(vec![SlowClient::new(stream, true)], Duration::from_secs(20));
    assert!(
        trickler.wait_all_cut(HEADER_TIMEOUT + TIMER_SLACK + Duration::from_secs(1)),
        "a kept-alive client trickling its second head is still connected"
    );
    let clients = trickler.finish();
    assert_cut_between(
        &clients,
        HEADER_TIMEOUT - Duration::from_millis(300),
        HEADER_TIMEOUT + TIMER_SLACK,
        "second-head trickler",
    );
}

#[test]
fn a_steady_body_above_the_minimum_rate_is_not_cut_off() {
    const PIECE: usize = 512;
    const PIECES: usize = 24;
    let server = start_server(&["--body-timeout", "3", "--body-min-rate", "1024"]);
    let mut client = server.connect();
    client.send(
        format!(
            "POST /echo-length HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            PIECE * PIECES
        )
        .as_bytes(),
    );
    // 2 KiB/s for 6 s, with one 1.2 s pause: slow, but above
    // --body-min-rate and never idle for --body-timeout.
    let started = Instant::now();
    for piece in 0..PIECES {
        if client.try_send(&[b'a'; PIECE]).is_err() {
            // Cut off: the response read below says how.
            break;
        }
        let pause = if piece == PIECES / 2 { 1200 } else { 250 };
        std::thread::sleep(Duration::from_millis(pause));
    }
    let response = client.read_response();
    eprintln!(
        "a {} B body sent over {:?} was answered {}",
        PIECE * PIECES,
        started.elapsed(),
        response.status
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), (PIECE * PIECES).to_string());
}

/// The receive buffer of a client that never reads: small, so the server's
/// writes block early.
const NON_READER_RECEIVE_BUFFER: usize = 16 * 1024;

/// A TCP connection whose receive buffer is set before connecting (so the
/// window it advertises is small from the start).
fn connect_with_small_receive_buffer(addr: SocketAddrV4) -> TcpStream {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    setsockopt(&fd, sockopt::RcvBuf, &NON_READER_RECEIVE_BUFFER).expect("SO_RCVBUF");
    connect(fd.as_raw_fd(), &SockaddrIn::from(addr)).expect("connect");
    TcpStream::from(fd)
}

/// Whether some response bytes are waiting in `stream` (without reading).
fn has_response_bytes(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("set_nonblocking");
    let mut byte = [0u8; 1];
    let arrived = matches!(stream.peek(&mut byte), Ok(n) if n > 0);
    stream.set_nonblocking(false).expect("set_nonblocking");
    arrived
}

/// Reads `stream` until EOF or reset (true), a read timeout or more than
/// `cap` bytes (false); returns that and the byte count.
fn read_to_end_within(stream: &mut TcpStream, cap: usize) -> (bool, usize) {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("set_read_timeout");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    while total <= cap {
        match stream.read(&mut buf) {
            Ok(0) => return (true, total),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (true, total),
            Err(_) => return (false, total),
        }
    }
    (false, total)
}

#[test]
fn normal_requests_complete_while_clients_refuse_to_read_large_responses() {
    let _turn = crowd_turn();
    const PER_KIND: usize = 50;
    const SEND_TIMEOUT: Duration = Duration::from_secs(5);
    const PEAK_RSS_LIMIT_KIB: u64 = 300 * 1024;
    // One app thread: the loop pulls all 100 responses as their sockets
    // drain. (With --threads N a generator whose client stops reading
    // pauses its app thread until --send-timeout; tests/threads.rs shows a
    // list body does not.)
    let server = start_server(&["--send-timeout", "5", "--threads", "1"]);
    let worker = worker_pid(&server);
    let baseline_rss = status_kib(worker, "VmRSS");

    let mut non_readers = Vec::new();
    for target in ["/big-generator", "/big-bytes"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        for _ in 0..PER_KIND {
            let mut stream = connect_with_small_receive_buffer(server_addr(&server));
            stream.write_all(request.as_bytes()).expect("send request");
            non_readers.push(stream);
        }
    }
    let all_answering = wait_until(Duration::from_secs(10), || {
        non_readers.iter().all(has_response_bytes)
    });
    assert!(
        all_answering,
        "not every non-reader got the start of its response"
    );
    let stalled_since = Instant::now();
    assert!(
        held_connections(&server) >= non_readers.len(),
        "the worker does not hold the {} non-readers",
        non_readers.len()
    );

    assert_normal_requests_are_fast(&server, 8, "100 clients refuse to read 50 MiB responses");
    let rss = status_kib(worker, "VmRSS");
    let peak = status_kib(worker, "VmHWM");
    eprintln!(
        "worker RSS with 100 non-readers of 50 MiB responses: {} MiB (peak {} MiB, {} MiB before they came)",
        rss / 1024,
        peak / 1024,
        baseline_rss / 1024
    );
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "worker peak RSS {} MiB: responses are buffered per client",
        peak / 1024
    );
    assert!(
        held_connections(&server) >= non_readers.len(),
        "non-readers were disconnected {:?} after they stalled, before the send timeout",
        stalled_since.elapsed()
    );

    let disconnected = wait_until(SEND_TIMEOUT + TIMER_SLACK + Duration::from_secs(3), || {
        held_connections(&server) == 0
    });
    assert!(
        disconnected,
        "the worker still holds {} connections {:?} after the non-readers stalled",
        held_connections(&server),
        stalled_since.elapsed()
    );
    eprintln!(
        "non-readers disconnected within {:?} of stalling (--send-timeout 5)",
        stalled_since.elapsed()
    );
    // From the client's side: the response ends early (EOF or reset after
    // what was already in flight), it is not the whole 50 MiB.
    for stream in &mut non_readers {
        let (ended, received) = read_to_end_within(stream, BIG_RESPONSE_SIZE);
        assert!(
            ended && received < BIG_RESPONSE_SIZE,
            "a non-reader's response did not end early (EOF: {ended}, {received} bytes)"
        );
    }
    drop(non_readers);
    assert_normal_requests_are_fast(&server, 2, "the non-readers are gone");
}

/// Reads `stream` 16 KiB at a time, one read per [`TRICKLE_PERIOD`], for
/// `duration`; returns the bytes read, or why the reading stopped early.
/// (Bytes the server queued before it closed keep arriving for a while, so
/// the server's side is checked separately.)
fn read_slowly_for(stream: &mut TcpStream, duration: Duration) -> Result<usize, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("set_read_timeout");
    let started = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut received = 0;
    while started.elapsed() < duration {
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "disconnected after {:?} and {received} bytes",
                    started.elapsed()
                ))
            }
            Ok(n) => received += n,
            Err(e) => return Err(format!("read failed after {received} bytes: {e}")),
        }
        std::thread::sleep(TRICKLE_PERIOD);
    }
    Ok(received)
}

/// A slow reader's socket and how its reading went.
type SlowRead = (TcpStream, Result<usize, String>);

#[test]
fn clients_reading_slowly_are_not_disconnected_by_the_send_timeout() {
    const READ_FOR: Duration = Duration::from_secs(5);
    let server = start_server(&["--send-timeout", "2"]);
    let dir = support::TempDir::new("slow-reader");
    let file = dir.join("big.bin");
    std::fs::write(&file, vec![b'f'; 16 * 1024 * 1024]).expect("write the file");
    let targets = [
        "/big-generator".to_string(),
        "/big-bytes".to_string(),
        format!(
            "/file?path={}",
            support::query_escape(&file.to_string_lossy())
        ),
    ];
    // Slow (80 KiB/s), but never silent for 2 s: each must still be served
    // after 5 s, whichever way its body reaches the socket (iterable, one
    // bytes object, sendfile).
    let readers: Vec<(String, JoinHandle<SlowRead>)> = targets
        .into_iter()
        .map(|target| {
            let mut stream = connect_with_small_receive_buffer(server_addr(&server));
            let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("send request");
            let reader = std::thread::spawn(move || {
                let outcome = read_slowly_for(&mut stream, READ_FOR);
                (stream, outcome)
            });
            (target, reader)
        })
        .collect();
    let mut failures = Vec::new();
    let mut streams = Vec::new();
    for (target, reader) in readers {
        let (stream, outcome) = reader.join().expect("reader thread panicked");
        streams.push(stream);
        match outcome {
            Ok(received) => {
                eprintln!("a slow reader of {target} got {received} bytes in {READ_FOR:?}")
            }
            Err(why) => failures.push(format!("{target}: {why}")),
        }
    }
    assert!(
        failures.is_empty(),
        "slow readers cut off by --send-timeout 2: {failures:?}"
    );
    let held = held_connections(&server);
    assert_eq!(
        held,
        streams.len(),
        "the worker closed {} of the {} connections of clients reading 80 KiB/s within {READ_FOR:?} (--send-timeout 2)",
        streams.len().saturating_sub(held),
        streams.len()
    );
}

#[test]
fn connections_that_never_send_a_byte_are_closed_in_bounded_time() {
    const CAP: usize = 10;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let server = start_server(&[
        "--worker-connections",
        "10",
        "--header-timeout",
        "2",
        "--keep-alive",
        "2",
    ]);
    let mut silent: Vec<Client> = (0..CAP).map(|_| server.connect()).collect();
    let since = Instant::now();
    // The cap is full of silent clients; the next one is served (the worker
    // closes a silent connection to make room) and the rest are closed at
    // the header timeout.
    let mut waiting = server.connect();
    waiting.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    waiting.set_read_timeout(TIMEOUT + TIMER_SLACK + Duration::from_secs(2));
    let response = waiting.read_response();
    assert_eq!(response.status, 200);
    eprintln!(
        "a client behind {CAP} silent connections was served after {:?}",
        since.elapsed()
    );
    assert!(since.elapsed() <= TIMEOUT + TIMER_SLACK);
    for client in &mut silent {
        let left = (since + TIMEOUT + TIMER_SLACK).saturating_duration_since(Instant::now());
        assert!(
            client.is_closed_within(left.max(Duration::from_millis(100))),
            "a silent connection is still open {:?} after it connected",
            since.elapsed()
        );
    }
}

#[test]
fn a_client_pipelining_requests_without_reading_costs_bounded_memory() {
    const TIMEOUT: Duration = Duration::from_secs(3);
    const GROWTH_LIMIT_KIB: u64 = 32 * 1024;
    let _turn = crowd_turn();
    let server = start_server(&["--send-timeout", "3", "--keep-alive", "3"]);
    let worker = worker_pid(&server);
    let rss_before = status_kib(worker, "VmRSS");
    // Thousands of pipelined requests, written until the socket will take
    // no more; no response is ever read.
    let mut stream = connect_with_small_receive_buffer(server_addr(&server));
    stream.set_nonblocking(true).expect("set_nonblocking");
    let requests = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(1000);
    let mut written = 0usize;
    let writing_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < writing_until {
        match stream.write(&requests) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("the pipelining client was cut off while writing: {e}"),
        }
    }
    let stalled_since = Instant::now();
    assert_normal_requests_are_fast(&server, 5, "a client pipelines without reading");
    let growth = status_kib(worker, "VmHWM").saturating_sub(rss_before);
    eprintln!(
        "{} KiB of pipelined requests, never read: worker peak RSS grew {} KiB",
        written / 1024,
        growth
    );
    assert!(
        growth < GROWTH_LIMIT_KIB,
        "the worker's peak RSS grew {growth} KiB for one client that does not read"
    );
    let closed = wait_until(TIMEOUT + TIMER_SLACK + Duration::from_secs(2), || {
        held_connections(&server) == 0
    });
    assert!(
        closed,
        "the pipelining non-reader is still connected {:?} after it stalled",
        stalled_since.elapsed()
    );
}

/// Sends `GET /` on a kept-alive connection and checks the answer.
fn keep_alive_get(client: &mut Client) {
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, GREETING);
    assert!(!response.header_has_token("Connection", "close"));
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_keep_alive_timeout() {
    const CLIENTS: usize = 20;
    const KEEP_ALIVE: Duration = Duration::from_secs(2);
    let server = start_server(&["--keep-alive", "2"]);
    // Each client's clock starts when it has read its response; the
    // trickler thread only watches (these clients send nothing more).
    let clients = (0..CLIENTS)
        .map(|_| {
            let mut stream = TcpStream::connect(server_addr(&server)).expect("connect");
            raw_keep_alive_get(&mut stream);
            SlowClient::new(stream, false)
        })
        .collect();
    let watcher = Trickler::start(clients, Duration::from_secs(20));
    assert!(
        watcher.wait_all_cut(KEEP_ALIVE + TIMER_SLACK + Duration::from_secs(1)),
        "{} of {CLIENTS} idle keep-alive connections are still open",
        watcher.uncut()
    );
    let clients = watcher.finish();
    assert_cut_between(
        &clients,
        KEEP_ALIVE - Duration::from_millis(500),
        KEEP_ALIVE + TIMER_SLACK,
        "idle keep-alive connection",
    );
    for client in &clients {
        let cut = client.cut.as_ref().expect("checked above");
        assert!(
            cut.received.is_empty(),
            "an idle keep-alive connection got {:?} instead of a plain close",
            String::from_utf8_lossy(&cut.received)
        );
    }
}

#[test]
fn many_idle_connections_do_not_block_new_ones() {
    let _turn = crowd_turn();
    const SILENT: usize = 400;
    const KEPT_ALIVE: usize = 400;
    let server = start_server(&["--keep-alive", "60"]);
    // Connections that never send a byte, and connections idle between
    // requests.
    let silent = connect_and_send(&server, SILENT, b"");
    let mut kept_alive: Vec<Client> = (0..KEPT_ALIVE).map(|_| server.connect()).collect();
    for client in &mut kept_alive {
        keep_alive_get(client);
    }
    let held = wait_until(Duration::from_secs(5), || {
        held_connections(&server) >= SILENT + KEPT_ALIVE
    });
    assert!(held, "the worker does not hold the 800 idle connections");

    assert_normal_requests_are_fast(&server, 10, "800 connections sit idle");
    assert!(
        held_connections(&server) >= SILENT + KEPT_ALIVE,
        "idle connections were dropped to make room"
    );
    // The idle ones are still served when they wake up.
    for client in kept_alive.iter_mut().step_by(50) {
        keep_alive_get(client);
    }
    drop(silent);
    drop(kept_alive);
}

/// The start of a request head: the connection is busy (not one the cap
/// may close to make room) until the rest comes.
const PARTIAL_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n";

#[test]
fn worker_connections_cap_of_busy_connections_leaves_the_rest_in_the_backlog() {
    const CAP: usize = 10;
    let server = start_server(&[
        "--worker-connections",
        "10",
        "--keep-alive",
        "60",
        "--header-timeout",
        "60",
    ]);
    let mut held: Vec<Client> = (0..CAP).map(|_| server.connect()).collect();
    for client in &mut held {
        client.send(PARTIAL_HEAD);
    }
    assert!(
        wait_until(Duration::from_secs(5), || held_connections(&server) == CAP),
        "the worker did not take the {CAP} connections"
    );

    let mut waiting = server.connect();
    waiting.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    waiting.set_read_timeout(Duration::from_secs(1));
    match waiting.try_read_response_to("GET") {
        Err(support::client::ReadError::TimedOut { partial }) if partial.is_empty() => {}
        Ok(response) => panic!(
            "connection {} was served past --worker-connections 10: {}",
            CAP + 1,
            response.status
        ),
        Err(other) => panic!(
            "connection {} was refused or reset instead of waiting: {other:?}",
            CAP + 1
        ),
    }
    assert_eq!(
        held_connections(&server),
        CAP,
        "the worker accepted past its cap"
    );

    let freed = Instant::now();
    drop(held.pop());
    waiting.set_read_timeout(Duration::from_secs(3));
    let response = waiting.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, GREETING);
    eprintln!(
        "the backlogged connection was served {:?} after a slot freed",
        freed.elapsed()
    );
    assert!(freed.elapsed() < Duration::from_secs(2));
    // The ones still held are still served.
    for client in &mut held {
        client.send(b"\r\n");
        assert_eq!(client.read_response().status, 200);
    }
}

#[test]
fn concurrent_keep_alive_clients_all_make_progress() {
    let _turn = crowd_turn();
    const CLIENTS: usize = 50;
    const REQUESTS: usize = 50;
    const ALL_DONE_WITHIN: Duration = Duration::from_secs(30);
    let server = start_server(&["--keep-alive", "30"]);
    let start = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<JoinHandle<(Duration, Duration)>> = (0..CLIENTS)
        .map(|_| {
            let mut client = server.connect();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let mut slowest = Duration::ZERO;
                for _ in 0..REQUESTS {
                    let sent = Instant::now();
                    keep_alive_get(&mut client);
                    slowest = slowest.max(sent.elapsed());
                }
                (began.elapsed(), slowest)
            })
        })
        .collect();
    let results: Vec<(Duration, Duration)> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread failed"))
        .collect();
    let finished = results.iter().map(|r| r.0);
    let fastest = finished.clone().min().unwrap_or_default();
    let slowest = finished.max().unwrap_or_default();
    let worst_request = results.iter().map(|r| r.1).max().unwrap_or_default();
    eprintln!(
        "{CLIENTS} clients x {REQUESTS} keep-alive requests: clients finished in {fastest:?}..{slowest:?}, slowest single request {worst_request:?}"
    );
    assert!(slowest < ALL_DONE_WITHIN, "a client needed {slowest:?}");
    assert!(
        worst_request < Duration::from_secs(2),
        "a request waited {worst_request:?}: a client starved"
    );
}

#[test]
fn oversized_body_gets_413() {
    let server = start_server(&["--limit-request-body", "1000"]);

    let at_limit = server.post("/echo-length", &[b'a'; 1000]);
    assert_eq!(at_limit.status, 200);
    assert_eq!(at_limit.text(), "1000");

    let mut client = server.connect();
    let mut over =
        b"POST /echo-length HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1001\r\n\r\n".to_vec();
    over.extend_from_slice(&[b'a'; 1001]);
    client.send(&over);
    let response = client.read_response();
    assert_eq!(response.status, 413);
    assert!(response.header_has_token("Connection", "close"));
    assert!(client.is_closed_within(Duration::from_secs(5)));

    // Rejected on the head alone: the server does not wait for the body.
    let mut client = server.connect();
    let asked = Instant::now();
    client.send(
        b"POST /echo-length HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n",
    );
    let response = client.read_response();
    assert_eq!(response.status, 413);
    assert!(
        asked.elapsed() < NORMAL_LATENCY,
        "413 took {:?}",
        asked.elapsed()
    );
    assert!(client.is_closed_within(Duration::from_secs(5)));

    // A client that asks first is told no without a 100 Continue.
    let mut client = server.connect();
    client.send(
        b"POST /echo-length HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
    );
    let response = client.read_response();
    assert_eq!(response.status, 413, "expected 413 before any 100 Continue");
    assert!(client.is_closed_within(Duration::from_secs(5)));

    // Chunked bodies are counted as they arrive.
    let chunked_head =
        b"POST /echo-length HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut client = server.connect();
    client.send(chunked_head);
    client.send(&support::client::chunked(&[b'a'; 900], 300));
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "900");

    let mut client = server.connect();
    client.send(chunked_head);
    client.send(&support::client::chunked(&[b'a'; 1500], 500));
    let response = client.read_response();
    assert_eq!(response.status, 413);
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

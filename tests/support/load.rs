//! A load generator that counts every failed request: client threads
//! sending `GET /` to an app whose body is `pid N` (tests/apps/lifecycle_app.py,
//! tests/apps/preload_app.py), for the tests that reload or resize a server
//! under load and must see no failed request.

use super::wait_until;
use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the load may stall before the test fails.
const SLOW: Duration = Duration::from_secs(30);
/// The pause between two requests of one load thread (keeps the load modest
/// on a shared 2-core machine).
const LOAD_PACE: Duration = Duration::from_millis(8);

/// The pid a `pid N` body names.
pub fn served_pid(body: &[u8]) -> Option<i32> {
    std::str::from_utf8(body)
        .ok()?
        .strip_prefix("pid ")?
        .trim()
        .parse()
        .ok()
}

/// What one request came to.
pub enum Outcome {
    /// A complete 200 response; `close` when the server said
    /// `Connection: close`.
    Served { pid: i32, close: bool },
    /// The server closed (or reset) the connection before sending any byte
    /// of a response.
    ClosedBeforeResponse(String),
    /// Anything else: refused, reset mid-response, timeout, non-200.
    Failed(String),
}

/// Sends `GET /` on `stream` and reads the whole response.
pub fn exchange(stream: &mut TcpStream, keep_alive: bool) -> Outcome {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => {
                Outcome::ClosedBeforeResponse(format!("write: {e}"))
            }
            _ => Outcome::Failed(format!("write: {e}")),
        };
    }
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&received, b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) if received.is_empty() => {
                return Outcome::ClosedBeforeResponse("EOF before the response".into())
            }
            Err(e) if received.is_empty() && e.kind() == ErrorKind::ConnectionReset => {
                return Outcome::ClosedBeforeResponse(format!("read: {e}"))
            }
            Ok(0) => return Outcome::Failed(format!("EOF inside the head: {received:?}")),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) => return Outcome::Failed(format!("read: {e} after {received:?}")),
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        return Outcome::Failed(format!("not a 200: {head:?}"));
    }
    let Some(length) = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
    else {
        return Outcome::Failed(format!("no Content-Length: {head:?}"));
    };
    while received.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return Outcome::Failed("EOF inside the body".into()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) => return Outcome::Failed(format!("read body: {e}")),
        }
    }
    match served_pid(&received[head_end..head_end + length]) {
        Some(pid) => Outcome::Served {
            pid,
            close: head.contains("\r\nconnection: close"),
        },
        None => Outcome::Failed(format!("unexpected body {received:?}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn connect(address: SocketAddr) -> Result<TcpStream, Outcome> {
    let stream =
        TcpStream::connect(address).map_err(|e| Outcome::Failed(format!("connect: {e}")))?;
    let timeout = Some(Duration::from_secs(10));
    stream.set_read_timeout(timeout).expect("set_read_timeout");
    stream
        .set_write_timeout(timeout)
        .expect("set_write_timeout");
    Ok(stream)
}

/// What the load threads saw.
#[derive(Default)]
pub struct LoadReport {
    pub served: usize,
    pub failures: Vec<String>,
    pub pids: HashSet<i32>,
}

impl LoadReport {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Served { pid, .. } => {
                self.served += 1;
                self.pids.insert(pid);
            }
            Outcome::ClosedBeforeResponse(why) | Outcome::Failed(why) => {
                self.failures.push(why);
            }
        }
    }

    fn merge(&mut self, other: LoadReport) {
        self.served += other.served;
        self.failures.extend(other.failures);
        self.pids.extend(other.pids);
    }
}

/// Client threads sending `GET /` continuously until stopped: some open a
/// new connection per request, some keep one connection alive (until a
/// response says `Connection: close`).
///
/// Every failure counts, a request on a reused keep-alive connection that
/// meets a closed connection included: the load never leaves a connection
/// idle for longer than the keep-alive timeout, so only a stopping worker
/// closing a connection under a request on its way can do that (real
/// clients retry an idempotent request then, RFC 9110 §9.2.2; wrk does
/// not).
pub struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    pub fn start(
        address: SocketAddr,
        new_connection_threads: usize,
        keep_alive_threads: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for index in 0..new_connection_threads + keep_alive_threads {
            let keep_alive = index >= new_connection_threads;
            let stop = Arc::clone(&stop);
            let served = Arc::clone(&served);
            threads.push(std::thread::spawn(move || {
                if keep_alive {
                    keep_alive_loop(address, &stop, &served)
                } else {
                    new_connection_loop(address, &stop, &served)
                }
            }));
        }
        Load {
            stop,
            served,
            threads,
        }
    }

    /// How many requests were served so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Waits until `count` more requests than now were served.
    pub fn wait_for_more(&self, count: usize) {
        let target = self.served() + count;
        assert!(
            wait_until(SLOW, || self.served() >= target),
            "the load stalled at {} requests",
            self.served()
        );
    }

    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = LoadReport::default();
        for thread in self.threads {
            report.merge(thread.join().expect("load thread"));
        }
        report
    }
}

fn new_connection_loop(address: SocketAddr, stop: &AtomicBool, served: &AtomicUsize) -> LoadReport {
    let mut report = LoadReport::default();
    while !stop.load(Ordering::SeqCst) {
        let outcome = match connect(address) {
            Ok(mut stream) => exchange(&mut stream, false),
            Err(failed) => failed,
        };
        if matches!(outcome, Outcome::Served { .. }) {
            served.fetch_add(1, Ordering::SeqCst);
        }
        report.record(outcome);
        std::thread::sleep(LOAD_PACE);
    }
    report
}

fn keep_alive_loop(address: SocketAddr, stop: &AtomicBool, served: &AtomicUsize) -> LoadReport {
    let mut report = LoadReport::default();
    let mut open: Option<TcpStream> = None;
    while !stop.load(Ordering::SeqCst) {
        let outcome = match open.take().map_or_else(|| connect(address), Ok) {
            Ok(mut stream) => {
                let outcome = exchange(&mut stream, true);
                open = Some(stream);
                outcome
            }
            Err(failed) => failed,
        };
        match outcome {
            Outcome::Served { close: false, .. } => {}
            _ => open = None,
        }
        if matches!(outcome, Outcome::Served { .. }) {
            served.fetch_add(1, Ordering::SeqCst);
        }
        report.record(outcome);
        std::thread::sleep(LOAD_PACE);
    }
    report
}

/// Asserts the load saw no failed request.
pub fn assert_no_failures(report: &LoadReport, server_log: &str) {
    eprintln!(
        "load: {} served by {} workers, {} failed",
        report.served,
        report.pids.len(),
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}\nlog:\n{server_log}",
        report.failures.len(),
        report.failures.len() + report.served,
        &report.failures[..report.failures.len().min(10)]
    );
}

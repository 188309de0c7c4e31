//! `--threads N`: each worker calls the app from N Python threads while its
//! event loop keeps serving. Concurrency is real, `wsgi.multithread` says
//! so, thread-local data stays with its thread, a stuck thread is timed out
//! with its traceback, streams and slow requests hold one thread each, and
//! a graceful stop, max-requests and HUP lose no request.
//!
//! The other functional test files also run against the pool: `.ci/run`
//! runs them again with `RGUNICORN_TEST_EXTRA_ARGS="--threads 4"`.

mod support;

use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::server::Address;
use support::{wait_until, Client, Response, Server, ServerBuilder};

const APP: &str = "threaded:application";
const SLOW: Duration = Duration::from_secs(30);

fn threaded(threads: usize) -> ServerBuilder {
    ServerBuilder::new(APP)
        .arg("--threads")
        .arg(threads.to_string())
}

fn get_on(address: &Address, target: &str) -> Response {
    let mut client = Client::connect(address);
    client.send(
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    client.read_response()
}

/// `count` simultaneous `GET target`s, each on its own connection.
fn in_parallel(server: &Server, target: &str, count: usize) -> Vec<JoinHandle<Response>> {
    (0..count)
        .map(|_| {
            let address = server.address().clone();
            let target = target.to_string();
            std::thread::spawn(move || get_on(&address, &target))
        })
        .collect()
}

#[test]
fn eight_slow_requests_run_at_once_on_eight_threads() {
    let server = threaded(8).start();
    let started = Instant::now();
    let responses: Vec<Response> = in_parallel(&server, "/sleep?s=0.5", 8)
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    for response in &responses {
        assert_eq!(response.status, 200, "{}", server.log());
        assert_eq!(response.text(), "slept\n");
    }
    // One after another they would take 4 s.
    assert!(
        elapsed < Duration::from_secs(3),
        "8 × 0.5 s took {elapsed:?}"
    );
}

#[test]
fn wsgi_multithread_is_true_with_threads_and_false_without() {
    let server = threaded(4).start();
    assert_eq!(server.get("/flags").text(), "True True");
    let single = threaded(1).start();
    assert_eq!(single.get("/flags").text(), "False True");
}

#[test]
fn thread_local_state_stays_with_its_thread() {
    let server = threaded(4).start();
    let handles: Vec<_> = (0..16)
        .map(|id| {
            let address = server.address().clone();
            std::thread::spawn(move || (id, get_on(&address, &format!("/local?id={id}"))))
        })
        .collect();
    let mut threads = std::collections::HashSet::new();
    for handle in handles {
        let (id, response) = handle.join().unwrap();
        let text = response.text();
        let mut words = text.split_whitespace();
        assert_eq!(words.next(), Some(id.to_string().as_str()), "{text}");
        threads.insert(words.next().unwrap().to_string());
    }
    assert!(
        threads.len() > 1,
        "all 16 requests on one thread: {threads:?}"
    );
    assert!(
        threads.len() <= 4,
        "more threads than --threads: {threads:?}"
    );
}

#[test]
fn a_slow_request_holds_one_thread_while_the_others_serve() {
    let server = threaded(2).start();
    let slow = in_parallel(&server, "/sleep?s=3&announce", 1);
    assert!(server.wait_for_log("threaded: sleeping", SLOW));
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(server.get("/").status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fast requests waited for the slow one: {:?}",
        started.elapsed()
    );
    assert_eq!(slow.into_iter().next().unwrap().join().unwrap().status, 200);
}

#[test]
fn slow_routes_leave_a_thread_to_the_fast_ones() {
    let server = threaded(2).start();
    // One slow request teaches the worker that /sleep runs long.
    assert_eq!(server.get("/sleep?s=0.3").status, 200);
    let slow = in_parallel(&server, "/sleep?s=2&announce", 3);
    assert!(server.wait_for_log("threaded: sleeping", SLOW));
    // Two threads, three slow requests: without a reserve both threads
    // would sleep and the fast request would wait 2 s behind them.
    let started = Instant::now();
    assert_eq!(server.get("/").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the fast request waited {:?} behind slow ones",
        started.elapsed()
    );
    for handle in slow {
        assert_eq!(handle.join().unwrap().status, 200);
    }
}

#[test]
fn a_quick_route_that_turns_slow_does_not_hold_up_the_requests_behind_it() {
    let server = threaded(4).start();
    // Requests that answer at once teach the worker that /sleep is quick:
    // requests queued while one runs wait for its thread, not a new one.
    for _ in 0..8 {
        assert_eq!(server.get("/sleep?s=0").status, 200);
    }
    // This time the quick route does not end quickly.
    let slow = in_parallel(&server, "/sleep?s=4&announce", 1);
    assert!(server.wait_for_log("threaded: sleeping", SLOW));
    let started = Instant::now();
    assert_eq!(server.get("/sleep?s=0").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the request waited {:?} for the thread of a slow quick request",
        started.elapsed()
    );
    for handle in slow {
        assert_eq!(handle.join().unwrap().status, 200);
    }
}

#[test]
fn a_new_connection_is_served_while_keep_alive_clients_keep_every_thread_busy() {
    let server = threaded(2).start();
    let Address::Tcp(address) = server.address().clone() else {
        unreachable!("the default server listens on TCP")
    };
    // 4 keep-alive clients with 2 requests in flight each: a request is
    // always queued behind each of them, so the pool never has room and
    // the worker stops accepting.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut client = Client::connect(&Address::Tcp(address));
                let request = b"GET /sleep?s=0.1 HTTP/1.1\r\nHost: x\r\n\r\n";
                client.send(request);
                client.send(request);
                while !stop.load(Ordering::SeqCst) {
                    assert_eq!(client.read_response().status, 200);
                    client.send(request);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Every worker (the only one) is full: the new client is accepted
    // anyway after a moment and its request waits in the queue.
    let started = Instant::now();
    let mut client = Client::connect(&Address::Tcp(address));
    client.set_read_timeout(Duration::from_secs(10));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = client.try_read_response_to("GET");
    let waited = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for handle in busy {
        let _ = handle.join();
    }
    assert_eq!(
        response.map(|r| r.status).ok(),
        Some(200),
        "after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "the new client waited {waited:?}"
    );
}

#[test]
fn a_slow_stream_sends_each_part_as_it_comes() {
    let server = threaded(2).start();
    let Address::Tcp(address) = server.address().clone() else {
        unreachable!("the default server listens on TCP")
    };
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(SLOW)).unwrap();
    stream
        .write_all(b"GET /stream?n=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // 30 lines 100 ms apart (3 s): the first arrives long before the last
    // is made.
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("line 0") {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the first line waited {:?}",
        started.elapsed()
    );
    // Meanwhile the other thread serves.
    assert_eq!(server.get("/").status, 200);
    stream.read_to_end(&mut received).unwrap();
    assert!(String::from_utf8_lossy(&received).contains("line 29\n"));
}

/// Clients that request `target` and then never read.
fn non_readers(server: &Server, target: &str, count: usize) -> Vec<std::net::TcpStream> {
    let Address::Tcp(address) = server.address().clone() else {
        unreachable!("the default server listens on TCP")
    };
    (0..count)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream
                .write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            stream
        })
        .collect::<Vec<_>>()
        .into_iter()
        .inspect(|stream| {
            // Its response has started: the app was called for it.
            stream.set_read_timeout(Some(SLOW)).unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(stream.peek(&mut byte).unwrap(), 1);
        })
        .collect()
}

#[test]
fn clients_that_stop_reading_a_finished_body_hold_no_thread() {
    // 32 MiB lists: each thread queues the whole body by reference and is
    // free at once, whatever the clients do.
    let server = threaded(2).start();
    let stalled = non_readers(&server, "/big", 6);
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(server.get("/").status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests waited behind clients that do not read: {:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn a_stream_whose_client_stops_reading_pauses_only_its_own_thread() {
    let server = threaded(2).start();
    let stalled = non_readers(&server, "/big-stream", 1);
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(server.get("/").status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests waited behind a stalled stream: {:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn a_stuck_thread_gets_the_timeout_with_its_traceback() {
    let server = threaded(4).arg("--timeout").arg("2").start();
    let stuck_pid = server.worker_pids()[0];
    let stuck = in_parallel(&server, "/stuck", 1);
    assert!(server.wait_for_log("threaded: stuck", SLOW));
    // The loop and the other threads still serve, so the worker beats on:
    // only the thread's own entry tells the master it is stuck.
    assert_eq!(server.get("/").status, 200);
    assert!(
        server.wait_for_log("WORKER TIMEOUT", Duration::from_secs(20)),
        "no timeout; log:\n{}",
        server.log()
    );
    assert!(
        server.wait_for_log("in stuck_here", Duration::from_secs(10)),
        "no traceback naming the stuck frame; log:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains(&format!(
            "WORKER TIMEOUT (pid:{stuck_pid}) while serving GET /stuck (app thread "
        )),
        "{log}"
    );
    let _ = stuck.into_iter().next().unwrap().join();
    assert!(server.wait_for_log_count("Booting worker with pid", 2, SLOW));
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn graceful_stop_with_busy_threads_loses_no_response() {
    let mut server = threaded(4).arg("--graceful-timeout").arg("20").start();
    let busy = in_parallel(&server, "/sleep?s=1.5&announce", 4);
    assert!(server.wait_for_log_count("threaded: sleeping", 4, SLOW));
    server.signal(Signal::SIGTERM);
    for handle in busy {
        let response = handle.join().unwrap();
        assert_eq!(response.status, 200, "{}", server.log());
        assert_eq!(response.text(), "slept\n");
    }
    let status = server.wait_exit(SLOW).expect("the server exits");
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn max_requests_counts_the_requests_of_every_thread() {
    let server = threaded(4).arg("--max-requests").arg("12").start();
    let first = server.worker_pids()[0];
    for handle in in_parallel(&server, "/sleep?s=0.05", 12) {
        assert_eq!(handle.join().unwrap().status, 200);
    }
    // If only one thread's requests counted, 3 of 12 would be too few to
    // ask for a successor at all (never before half the budget).
    let line = server
        .wait_for_log_line("asking for its successor at ", SLOW)
        .unwrap_or_else(|| panic!("no successor asked for after 12 requests: {}", server.log()));
    let served: u64 = line
        .split("asking for its successor at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(line.contains(" of 12 requests"), "{line}");
    assert!((6..=12).contains(&served), "{line}");
    assert!(server.wait_for_log_count("Booting worker with pid", 2, SLOW));
    assert!(wait_until(SLOW, || {
        get_on(server.address(), "/pid").text() != first.to_string()
    }));
}

/// Client threads sending requests on fresh connections until stopped,
/// counting every failure.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(server: &Server, clients: usize, target: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
                let address = server.address().clone();
                let target = target.to_string();
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let mut client = Client::connect(&address);
                        client.send(
                            format!(
                                "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                            )
                            .as_bytes(),
                        );
                        match client.try_read_response_to("GET") {
                            Ok(response) if response.status == 200 => {
                                served.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(response) => failures.push(format!("status {}", response.status)),
                            Err(_) => failures.push("no response".to_string()),
                        }
                    }
                    failures
                })
            })
            .collect();
        Load {
            stop,
            served,
            threads,
        }
    }

    fn wait_for_more(&self, count: usize) {
        let target = self.served.load(Ordering::SeqCst) + count;
        assert!(
            wait_until(SLOW, || self.served.load(Ordering::SeqCst) >= target),
            "the load stalled"
        );
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect()
    }
}

#[test]
fn hup_under_threaded_load_fails_no_request() {
    let server = threaded(4).workers(2).start();
    let load = Load::start(&server, 6, "/sleep?s=0.02");
    load.wait_for_more(50);
    server.signal(Signal::SIGHUP);
    assert!(server.wait_for_log_count("Booting worker with pid", 4, SLOW));
    load.wait_for_more(100);
    let failures = load.finish();
    assert!(failures.is_empty(), "{failures:?}; log:\n{}", server.log());
}

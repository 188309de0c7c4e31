//! Graceful stops (HUP, max-requests retirement, TERM) and the keep-alive
//! connections they find waiting, through the real binary.
//!
//! A client reuses a kept-alive connection whenever it likes: a request it
//! sends may be on its way when the worker begins to stop. So a stopping
//! worker must not close a waiting connection at once (the request would
//! meet a reset); it answers the next request with `Connection: close`, and
//! closes the connection only when no request came within the stop grace
//! (the keep-alive timeout). The tests make that race certain rather than
//! likely: each holds its connection idle until the worker has logged that
//! it is stopping, then sends. They also check that waiting connections do
//! not hold a stop up to the graceful timeout.
//!
//! Every server binds 127.0.0.1 only and is held by a guard that stops it
//! by PID; every wait is a condition with a deadline.

mod support;

use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use support::load::served_pid;
use support::{Client, Server, ServerBuilder};

/// The app: every body is `pid N`, and `/sleep?S` answers after S seconds.
const APP: &str = "lifecycle_app:application";
/// How long a boot, a reload or a retirement may take on a busy machine.
const SLOW: Duration = Duration::from_secs(30);
/// A keep-alive timeout no step of a test comes near on a loaded machine,
/// so only a graceful stop can be what closes a waiting connection.
const LONG_KEEP_ALIVE: &str = "120";

/// A one-worker server with the worker's debug lines in the log (where it
/// says that it is stopping) and `args`.
fn server(args: &[&str]) -> Server {
    let mut builder = ServerBuilder::new(APP)
        .workers(1)
        .arg("--log-level")
        .arg("debug");
    for arg in args {
        builder = builder.arg(*arg);
    }
    builder.start()
}

/// Sends a keep-alive `GET target` on `client` and reads the response,
/// which must be a complete 200; returns the pid that served it and whether
/// it said `Connection: close`.
fn get(client: &mut Client, target: &str, server: &Server) -> (i32, bool) {
    client.send(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    let response = match client.try_read_response_to("GET") {
        Ok(response) => response,
        Err(_) => panic!(
            "GET {target}: the connection ended without a response; log:\n{}",
            server.log()
        ),
    };
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.complete, "truncated: {}", response.text());
    let pid = served_pid(&response.body).expect("a `pid N` body");
    (pid, response.header_has_token("Connection", "close"))
}

/// Opens `count` connections and has each served one request, so each is
/// kept alive, waiting for its next one. Returns them with the worker's pid.
fn kept_alive_connections(server: &Server, count: usize) -> (Vec<Client>, i32) {
    let mut clients = Vec::new();
    let mut worker = None;
    for _ in 0..count {
        let mut client = server.connect();
        let (pid, close) = get(&mut client, "/", server);
        assert!(!close, "the first response closed the connection");
        assert!(worker.is_none_or(|w| w == pid), "two workers served");
        worker = Some(pid);
        clients.push(client);
    }
    (clients, worker.expect("at least one connection"))
}

/// Waits until worker `pid` has logged that it begins a graceful stop.
fn wait_until_stopping(server: &Server, pid: i32) {
    assert!(
        server.wait_for_log(&format!("Worker (pid:{pid}) stopping gracefully"), SLOW),
        "worker {pid} did not begin a graceful stop; log:\n{}",
        server.log()
    );
}

/// Sends the next request on each connection (all waiting on `worker`,
/// which is stopping): each must be answered in full by that worker with
/// `Connection: close`, and the connection closed after it.
fn assert_next_requests_served_then_closed(server: &Server, clients: &mut [Client], worker: i32) {
    for client in clients.iter_mut() {
        client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    }
    for client in clients.iter_mut() {
        let response = match client.try_read_response_to("GET") {
            Ok(response) => response,
            Err(_) => panic!(
                "a request sent on a kept-alive connection as its worker began to stop \
                 got no response; log:\n{}",
                server.log()
            ),
        };
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(response.complete, "truncated: {}", response.text());
        assert_eq!(
            served_pid(&response.body),
            Some(worker),
            "{}",
            response.text()
        );
        assert!(
            response.header_has_token("Connection", "close"),
            "a stopping worker kept the connection alive: {:?}",
            response.headers
        );
        assert!(
            client.is_closed_within(SLOW),
            "the connection stayed open after its `Connection: close` response"
        );
    }
}

#[test]
fn a_request_sent_on_a_kept_alive_connection_as_a_hup_begins_is_served() {
    let server = server(&["--keep-alive", LONG_KEEP_ALIVE]);
    let (mut clients, worker) = kept_alive_connections(&server, 4);
    server.signal(Signal::SIGHUP);
    wait_until_stopping(&server, worker);
    assert_next_requests_served_then_closed(&server, &mut clients, worker);
}

#[test]
fn a_request_sent_on_a_kept_alive_connection_as_max_requests_retires_its_worker_is_served() {
    let server = server(&["--keep-alive", LONG_KEEP_ALIVE, "--max-requests", "4"]);
    // Three kept-alive connections use 3 of the 4 requests; a fourth,
    // closed at once, uses up the budget, and the worker retires once its
    // successor serves.
    let (mut clients, worker) = kept_alive_connections(&server, 3);
    let last = server.get("/");
    assert_eq!(served_pid(&last.body), Some(worker), "{}", last.text());
    wait_until_stopping(&server, worker);
    assert_next_requests_served_then_closed(&server, &mut clients, worker);
}

#[test]
fn a_response_in_flight_as_a_stop_begins_may_be_followed_by_one_more_request() {
    let mut server = server(&["--keep-alive", LONG_KEEP_ALIVE]);
    let mut client = server.connect();
    let (worker, _) = get(&mut client, "/", &server);
    // The response to this request is under way (its head not yet
    // written) when the worker begins to stop: it still keeps the
    // connection alive, so the client may send another request, and gets
    // it answered.
    client.send(b"GET /sleep?1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        server.wait_for_log(&format!("lifecycle_app: sleeping in pid {worker}"), SLOW),
        "the app did not start the request; log:\n{}",
        server.log()
    );
    server.signal(Signal::SIGTERM);
    let response = match client.try_read_response_to("GET") {
        Ok(response) => response,
        Err(_) => panic!(
            "the request in flight got no response; log:\n{}",
            server.log()
        ),
    };
    assert_eq!(response.status, 200, "{}", response.text());
    wait_until_stopping(&server, worker);
    if response.header_has_token("Connection", "close") {
        // Nothing to test: the response was begun after the stop.
        return;
    }
    assert_next_requests_served_then_closed(&server, std::slice::from_mut(&mut client), worker);
    assert!(server.wait_exit(SLOW).is_some(), "the server did not exit");
}

#[test]
fn a_graceful_stop_waits_for_waiting_connections_only_as_long_as_the_keep_alive_timeout() {
    // The graceful and header timeouts are far longer than the bound below:
    // only a stop that closes waiting connections after the keep-alive
    // timeout (2 s) ends within it.
    let mut server = server(&[
        "--keep-alive",
        "2",
        "--graceful-timeout",
        "120",
        "--header-timeout",
        "120",
    ]);
    let (mut kept_alive, _) = kept_alive_connections(&server, 2);
    // Connected, never a byte sent (a request that never comes).
    let mut silent = server.connect();
    let stop_began = Instant::now();
    server.signal(Signal::SIGTERM);
    let bound = Duration::from_secs(40);
    let status = server.wait_exit(bound);
    assert!(
        status.is_some_and(|s| s.success()),
        "the stop did not end with code 0 within {bound:?} of TERM (exit: {status:?}); log:\n{}",
        server.log()
    );
    eprintln!("stopped {:?} after TERM", stop_began.elapsed());
    for client in kept_alive.iter_mut().chain(std::iter::once(&mut silent)) {
        assert!(
            client.is_closed_within(Duration::from_secs(5)),
            "a connection is still open after the server exited"
        );
    }
}

//! HTTP/1.1 features around the app: `Expect: 100-continue`, chunked
//! request bodies (small and spooled), response framing (Content-Length
//! honoured, truncation closes, chunked when unsized), `wsgi.file_wrapper`
//! with a real file, and hop-by-hop header filtering.

mod support;

use std::time::Duration;
use support::client::{chunked, Framing};
use support::{query_escape, read_lines, wait_until, Server, TempDir};

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// `LENGTH SHA256` of `data`, computed by Python's hashlib so the test
/// needs no hashing crate.
fn python_digest(data: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(support::python())
        .args(["-c", "import sys,hashlib; d=sys.stdin.buffer.read(); print(len(d), hashlib.sha256(d).hexdigest(), end='')"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn expect_continue_sends_100_before_the_body_is_read() {
    let server = Server::start("input_methods:application");
    let mut client = server.connect();
    client.send(b"POST /?method=read HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let interim = client.read_response();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before sending the body"
    );
    assert_eq!(interim.version, "HTTP/1.1");
    client.send(b"hello world");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello world");
}

#[test]
fn expect_continue_with_chunked_body_works() {
    let server = Server::start("input_methods:application");
    let mut client = server.connect();
    client.send(b"POST /?method=read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(client.read_response().status, 100);
    client.send(&chunked(b"chunked after continue", 5));
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "chunked after continue");
}

#[test]
fn http10_expect_continue_gets_no_interim_response() {
    let server = Server::start("input_methods:application");
    let mut client = server.connect();
    client.send(
        b"POST /?method=read HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
    );
    let response = client.read_response();
    assert_eq!(
        response.status, 200,
        "a 1.0 client must not get 100 Continue"
    );
    assert_eq!(response.text(), "ok");
}

#[test]
fn chunked_request_body_is_decoded_for_the_app() {
    let server = Server::start("input_methods:application");
    let mut raw =
        b"POST /?method=read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n");
    raw.extend_from_slice(b"GET /?method=read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut client = server.connect();
    client.send(&raw);
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.text(), "hello world");
    assert_eq!(
        client.read_response().status,
        200,
        "request after a chunked body misframed"
    );
}

#[test]
fn large_chunked_upload_is_spooled_and_read_intact() {
    let server = Server::start("input_methods:digest");
    let body = pattern(20 * 1024 * 1024);
    let expected = python_digest(&body);
    let mut raw =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(&chunked(&body, 100_000));
    let response = server.request(&raw);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.text(), expected);
}

#[test]
fn large_content_length_upload_is_read_intact() {
    let server = Server::start("input_methods:digest");
    let body = pattern(12 * 1024 * 1024 + 7);
    let response = server.post("/", &body);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.text(), python_digest(&body));
}

#[test]
fn unsized_response_is_chunked_on_http11() {
    let server = Server::start("responses:many_chunks");
    let mut client = server.connect();
    client.send(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    for _ in 0..2 {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(response.framing, Framing::Chunked);
        assert!(response.complete);
        assert_eq!(response.text(), expected);
    }
}

#[test]
fn empty_body_items_do_not_end_a_chunked_response_early() {
    let server = Server::start("hello:no_length");
    let response = server.get("/");
    assert_eq!(response.framing, Framing::Chunked);
    assert!(response.complete);
    assert_eq!(response.text(), "Hello, World!\n");
}

#[test]
fn response_shorter_than_its_content_length_closes_the_connection() {
    let server = Server::start("responses:short_body");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Length"), Some("100"));
    assert!(!response.complete, "server padded or kept the connection");
    assert_eq!(response.text(), "0123456789");
}

#[test]
fn response_longer_than_its_content_length_is_cut_at_the_length() {
    let server = Server::start("responses:long_body");
    let mut client = server.connect();
    client.send(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let first = client.read_response();
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "01234");
    // The excess bytes must not be taken as the start of the next response.
    match client.try_read_response_to("GET") {
        Ok(second) => {
            assert_eq!(second.status, 200);
            assert_eq!(second.text(), "01234");
        }
        Err(support::client::ReadError::Closed { partial }) => {
            assert!(
                partial.is_empty(),
                "excess body bytes on the wire: {:?}",
                String::from_utf8_lossy(&partial)
            );
        }
        Err(other) => panic!("after a cut response: {other:?}"),
    }
}

#[test]
fn file_wrapper_sends_the_whole_file() {
    let dir = TempDir::new("file-wrapper");
    let path = dir.join("payload.bin");
    let content = pattern(3 * 1024 * 1024 + 123);
    std::fs::write(&path, &content).unwrap();
    let log = dir.join("close.log");
    let server = Server::start("responses:file_wrapper");
    let target = format!(
        "/?length=1&path={}&log={}",
        query_escape(&path.display().to_string()),
        query_escape(&log.display().to_string())
    );
    let response = server.get(&target);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.framing, Framing::Length);
    assert_eq!(response.body.len(), content.len());
    assert!(response.body == content, "file content differs");
    assert!(
        wait_until(Duration::from_secs(5), || read_lines(&log)
            == ["file closed"]),
        "file not closed once: {:?}",
        read_lines(&log)
    );
}

#[test]
fn file_wrapper_without_length_is_chunked_and_keeps_the_connection() {
    let dir = TempDir::new("file-wrapper-chunked");
    let path = dir.join("payload.bin");
    let content = pattern(200_000);
    std::fs::write(&path, &content).unwrap();
    let server = Server::start("responses:file_wrapper");
    let mut client = server.connect();
    let request = format!(
        "GET /?path={} HTTP/1.1\r\nHost: x\r\n\r\n",
        query_escape(&path.display().to_string())
    );
    for _ in 0..2 {
        client.send(request.as_bytes());
        let response = client.read_response();
        assert_eq!(response.status, 200, "{}", server.log());
        assert!(response.complete);
        assert!(response.body == content, "file content differs");
    }
}

/// Hop-by-hop as PEP 3333 means it (RFC 2616 §13.5.1, `wsgiref.util.is_hop_by_hop`,
/// gunicorn's `is_hoppish`) together with RFC 9110 §7.6.1.
#[test]
fn hop_by_hop_headers_from_the_app_are_not_passed_through() {
    let server = Server::start("responses:hop_by_hop");
    let response = server.get("/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hop");
    assert_eq!(response.header("X-End-To-End"), Some("kept"));
    for name in ["Proxy-Authenticate", "TE", "Trailer", "Upgrade"] {
        assert_eq!(response.header(name), None, "{name} passed through");
    }
    assert!(
        !response
            .headers_named("Keep-Alive")
            .contains(&"timeout=999"),
        "app's Keep-Alive passed through"
    );
}

#[test]
fn many_pipelined_requests_in_one_write_are_all_answered() {
    let server = Server::start("hello:application");
    let mut client = server.connect();
    let count = 200;
    let batch = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(count);
    client.send(&batch);
    for i in 0..count {
        let response = client.read_response();
        assert_eq!(response.status, 200, "response {i}");
        assert_eq!(response.text(), "Hello, World!\n");
    }
}

#[test]
fn request_split_across_many_writes_is_assembled() {
    let server = Server::start("input_methods:application");
    let mut client = server.connect();
    let raw = b"POST /?method=read HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789";
    for byte in raw.iter() {
        client.send(std::slice::from_ref(byte));
        // Pacing, so the bytes arrive in separate segments.
        std::thread::sleep(Duration::from_millis(1));
    }
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "0123456789");
}

// --- one worker, many clients ------------------------------------------------

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("worker status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS")
}

#[test]
fn large_upload_is_spooled_not_held_in_memory() {
    let server = Server::start("input_methods:digest");
    let worker = server.worker_pids()[0];
    assert_eq!(server.post("/", b"warm up").status, 200);
    let peak_before = status_kib(worker, "VmHWM");
    let body = pattern(48 * 1024 * 1024);
    let expected = python_digest(&body);
    let response = server.post("/", &body);
    assert_eq!(response.text(), expected);
    let grown_mib = status_kib(worker, "VmHWM").saturating_sub(peak_before) / 1024;
    assert!(
        grown_mib < 24,
        "worker peak memory grew by {grown_mib} MiB for a 48 MiB body: not spooled"
    );
}

#[test]
fn slow_reader_does_not_block_the_worker_or_grow_it_unboundedly() {
    let dir = TempDir::new("slow-reader");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    let worker = server.worker_pids()[0];
    let before = rss_kib(worker);
    // Ask for 64 MiB and read none of it.
    let mut stalled = server.connect();
    let request = format!(
        "GET /?mode=big&log={} HTTP/1.1\r\nHost: x\r\n\r\n",
        query_escape(&log.display().to_string())
    );
    stalled.send(request.as_bytes());
    assert!(
        !stalled.is_closed_within(Duration::from_secs(10)),
        "no response started"
    );
    // The single worker still answers others.
    let other_log = dir.join("other.log");
    let other = server.get(&format!(
        "/?mode=length&log={}",
        query_escape(&other_log.display().to_string())
    ));
    assert_eq!(other.status, 200, "worker blocked by a slow reader");
    let grown_mib = rss_kib(worker).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 32,
        "worker grew by {grown_mib} MiB for a reader that reads nothing"
    );
    assert!(
        read_lines(&log).is_empty(),
        "close() called before the body was sent"
    );
    drop(stalled);
    assert!(
        wait_until(Duration::from_secs(10), || read_lines(&log) == ["closed"]),
        "close() not called once after the reader left"
    );
}

#[test]
fn partial_request_does_not_block_the_worker() {
    let server = Server::start("hello:application");
    let mut partial = server.connect();
    partial.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ");
    let mut half_body = server.connect();
    half_body.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part");
    for _ in 0..3 {
        assert_eq!(
            server.get("/").status,
            200,
            "worker blocked by an incomplete request"
        );
    }
    partial.send(b"done\r\n\r\n");
    assert_eq!(partial.read_response().status, 200);
}

#[test]
fn client_disconnect_during_the_body_leaves_the_worker_serving() {
    let server = Server::start("input_methods:digest");
    {
        let mut client = server.connect();
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
        client.send(&pattern(300_000));
    }
    {
        let mut client = server.connect();
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n");
        client.send(&pattern(1000));
    }
    let response = server.post("/", b"after the disconnects");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), python_digest(b"after the disconnects"));
    assert_eq!(
        server.log_count("Booting worker with pid"),
        1,
        "the worker died:\n{}",
        server.log()
    );
}

#[test]
fn hundred_concurrent_connections_are_all_served_by_one_worker() {
    let server = Server::start("hello:application");
    let mut clients: Vec<_> = (0..100).map(|_| server.connect()).collect();
    for client in clients.iter_mut() {
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let response = client.read_response();
        assert_eq!(response.status, 200, "client {i}");
        assert_eq!(response.text(), "Hello, World!\n");
    }
}

// --- more response shapes -----------------------------------------------------

#[test]
fn file_wrapper_over_a_file_like_object_without_fileno_is_iterated() {
    let server = Server::start("responses:file_wrapper_bytesio");
    let response = server.get("/");
    assert_eq!(response.status, 200, "{}", server.log());
    let expected: String = (0..500).map(|i| format!("block {i}\n")).collect();
    assert_eq!(response.text(), expected);
}

#[test]
fn no_content_and_not_modified_responses_have_no_body_or_framing() {
    let server = Server::start("responses:status_from_query");
    let mut client = server.connect();
    client.send(
        b"GET /?status=204+No+Content HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /?status=304+Not+Modified HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /?status=200+OK HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    for status in [204, 304] {
        let response = client.read_response();
        assert_eq!(response.status, status);
        assert_eq!(
            response.header("Transfer-Encoding"),
            None,
            "{status} must not be chunked"
        );
    }
    let last = client.read_response();
    assert_eq!(last.status, 200, "bytes after a 204/304 head");
    assert_eq!(last.text(), "status body");
}

#[test]
fn app_status_line_is_sent_as_given() {
    let server = Server::start("responses:status_from_query");
    let response = server.get("/?status=299+Quite+Unusual+Reason");
    assert_eq!(response.status, 299);
    assert_eq!(response.reason, "Quite Unusual Reason");
    assert_eq!(response.text(), "status body");
}

#[test]
fn latin1_header_value_is_sent_as_latin1_bytes() {
    let server = Server::start("responses:latin1_header");
    let response = server.get("/");
    assert_eq!(response.status, 200, "{}", server.log());
    let needle = b"X-Latin: caf\xe9\r\n";
    assert!(
        response.raw_head.windows(needle.len()).any(|w| w == needle),
        "{:?}",
        String::from_utf8_lossy(&response.raw_head)
    );
}

#[test]
fn header_value_outside_latin1_gives_500() {
    let server = Server::start("responses:non_latin1_header");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(!response.text().contains("should never be sent"));
}

#[test]
fn app_connection_close_header_closes_the_connection() {
    let server = Server::start("responses:connection_close");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.text(), "bye");
    assert!(
        response.header_has_token("Connection", "close"),
        "{:?}",
        response.headers
    );
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn chunked_body_is_read_correctly_by_every_input_method() {
    let server = Server::start("input_methods:application");
    let body = b"alpha\nbeta beta beta\n\ngamma\nlast line without newline";
    for method in [
        "read",
        "read_n",
        "readline",
        "readline_n",
        "readlines",
        "iter",
        "mixed",
    ] {
        let mut raw = format!(
            "POST /?method={method}&n=4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(&chunked(body, 3));
        let response = server.request(&raw);
        assert_eq!(response.status, 200, "{method}: {}", server.log());
        assert_eq!(response.body, body, "{method}");
    }
}

#[test]
fn spooled_body_is_read_correctly_line_by_line() {
    let server = Server::start("input_methods:application");
    let body: Vec<u8> = (0..120_000)
        .flat_map(|i| format!("line number {i}\n").into_bytes())
        .collect();
    assert!(body.len() > 2 * 1024 * 1024);
    for method in ["readline", "readline_n", "mixed"] {
        let mut raw = format!(
            "POST /?method={method}&n=5000 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let mut client = server.connect();
        client.send(&raw);
        let response = client.read_response();
        assert_eq!(response.status, 200, "{method}: {}", server.log());
        assert!(response.body == body, "{method}: body differs");
        client.send(b"GET /?method=read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(
            client.read_response().status,
            200,
            "{method}: request after a spooled body"
        );
    }
}

#[test]
fn expect_continue_with_a_spooled_body_works() {
    let server = Server::start("input_methods:digest");
    let body = pattern(5 * 1024 * 1024);
    let mut client = server.connect();
    client.send(
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(client.read_response().status, 100);
    client.send(&body);
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), python_digest(&body));
}

#[test]
fn large_unread_body_is_discarded_or_the_connection_closed_cleanly() {
    let server = Server::start("input_methods:ignore_body");
    let body = pattern(3 * 1024 * 1024);
    let mut raw = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    raw.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut client = server.connect();
    // The server may answer before the whole body is sent and close: a
    // failed write is then fine.
    let _ = client.try_send(&raw);
    assert_eq!(client.read_response().text(), "ignored");
    match client.try_read_response_to("GET") {
        Ok(second) => assert_eq!(second.text(), "ignored", "body bytes taken as a request"),
        Err(support::client::ReadError::Closed { partial }) => {
            assert!(
                partial.is_empty(),
                "garbage after the response: {:?}",
                String::from_utf8_lossy(&partial)
            )
        }
        Err(other) => panic!("{other:?}"),
    }
}

#[test]
fn post_with_empty_body_is_served() {
    let server = Server::start("input_methods:application");
    let response = server.post("/?method=read", b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"");
}

#[test]
fn head_request_to_a_write_callable_app_sends_no_body() {
    let server = Server::start("responses:write_callable");
    let mut client = server.connect();
    client.send(
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(client.read_response_to("HEAD").status, 200);
    let get = client.read_response();
    assert_eq!(get.status, 200, "HEAD left body bytes on the wire");
    assert_eq!(get.text(), "Hello, write() world\n");
}

#[test]
fn body_over_the_limit_gets_413_and_the_worker_keeps_serving() {
    let server = support::ServerBuilder::new("input_methods:digest")
        .arg("--limit-request-body")
        .arg("1000")
        .start();
    let response = server.post("/", &pattern(5000));
    assert_eq!(response.status, 413);
    let small = server.post("/", b"small");
    assert_eq!(small.status, 200);
    assert_eq!(small.text(), python_digest(b"small"));
}

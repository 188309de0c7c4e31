//! HTTP/1.1 strictness at the server level: every vector of
//! `tests/requests` replayed against a running server over real sockets,
//! and the behaviours a parser test cannot show (what is answered, what is
//! never answered, when the connection is closed, what the app sees).
//!
//! An invalid request is answered with its status and `Connection: close`,
//! and the server then closes the connection: nothing the client sent after
//! the error is ever parsed as a request. The worker survives all of it.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Client, Response, Server, ServerBuilder};

/// How long the server may take to close a connection after an error.
const CLOSE_WITHIN: Duration = Duration::from_secs(3);

/// One request vector: its name, raw bytes and `.expect` text.
struct Vector {
    name: String,
    bytes: Vec<u8>,
    expect: String,
}

fn vectors(kind: &str) -> Vec<Vector> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/requests")
        .join(kind);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "http"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| Vector {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            bytes: fs::read(&path).unwrap(),
            expect: fs::read_to_string(path.with_extension("expect"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        })
        .collect()
}

/// The `key=value` pairs of an `.expect` text (or one block of it).
fn key_values(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_once('='))
}

/// What an invalid vector's `.expect` says: (status, valid requests first).
fn invalid_expectation(vector: &Vector) -> (u16, usize) {
    let mut status = None;
    let mut valid_before = 0;
    for (key, value) in key_values(&vector.expect) {
        match key {
            "status" => status = value.parse().ok(),
            "valid_before" => valid_before = value.parse().unwrap(),
            _ => {}
        }
    }
    let status = status.unwrap_or_else(|| panic!("{}.expect has no status=", vector.name));
    (status, valid_before)
}

/// One expected request of a valid vector: (method, keep_alive).
fn valid_requests(vector: &Vector) -> Vec<(String, bool)> {
    vector
        .expect
        .split("\n---\n")
        .map(|block| {
            let mut method = None;
            let mut keep_alive = None;
            for (key, value) in key_values(block) {
                match key {
                    "method" => method = Some(value.to_owned()),
                    "keep_alive" => keep_alive = Some(value == "true"),
                    _ => {}
                }
            }
            (
                method.unwrap_or_else(|| panic!("{}.expect: a block without method=", vector.name)),
                keep_alive.unwrap_or_else(|| {
                    panic!("{}.expect: a block without keep_alive=", vector.name)
                }),
            )
        })
        .collect()
}

fn echo_server() -> Server {
    ServerBuilder::new("echo:application").workers(1).start()
}

/// The echo app's `KEY<TAB>TYPE<TAB>ascii(value)` line for `key`, if any.
fn environ_line(response: &Response, key: &str) -> Option<String> {
    let prefix = format!("{key}\t");
    response
        .text()
        .lines()
        .find(|line| line.starts_with(&prefix))
        .map(str::to_owned)
}

/// The worker PID the echo app reports.
fn worker_pid(server: &Server) -> String {
    let response = server.get("/");
    assert_eq!(response.status, 200);
    environ_line(&response, "PID").expect("the echo app reports its PID")
}

/// Reads the server's own error response and checks it and the close that
/// must follow.
fn expect_error_and_close(client: &mut Client, status: u16, context: &str) {
    let response = client
        .try_read_response_to("GET")
        .unwrap_or_else(|e| panic!("{context}: no {status} response: {e:?}"));
    assert_eq!(
        response.status,
        status,
        "{context}: status (body {:?})",
        response.text()
    );
    assert!(
        response.header_has_token("Connection", "close"),
        "{context}: no Connection: close in {:?}",
        String::from_utf8_lossy(&response.raw_head)
    );
    assert!(response.complete, "{context}: error response cut short");
    assert!(
        client.is_closed_within(CLOSE_WITHIN),
        "{context}: connection not closed after the {status}; extra bytes {:?}",
        String::from_utf8_lossy(client.pending())
    );
}

#[test]
fn every_invalid_vector_is_answered_with_its_status_and_the_connection_closed() {
    let server = echo_server();
    let pid_before = worker_pid(&server);
    let invalid = vectors("invalid");
    assert!(
        invalid.len() >= 40,
        "only {} invalid vectors",
        invalid.len()
    );
    for vector in &invalid {
        let (status, valid_before) = invalid_expectation(vector);
        let mut client = server.connect();
        client.send(&vector.bytes);
        for n in 0..valid_before {
            let response = client.read_response();
            assert!(
                (200..300).contains(&response.status),
                "{}: request {n} before the bad one got {}",
                vector.name,
                response.status
            );
            assert!(
                !response.header_has_token("Connection", "close"),
                "{}: the valid request before the bad one closed the connection",
                vector.name
            );
        }
        expect_error_and_close(&mut client, status, &vector.name);
    }
    assert_eq!(
        worker_pid(&server),
        pid_before,
        "the worker did not survive the invalid vectors"
    );
}

#[test]
fn every_valid_vector_is_answered_once_per_request() {
    let server = echo_server();
    let valid = vectors("valid");
    assert!(valid.len() >= 15, "only {} valid vectors", valid.len());
    for vector in &valid {
        let requests = valid_requests(vector);
        let mut client = server.connect();
        client.send(&vector.bytes);
        for (n, (method, _)) in requests.iter().enumerate() {
            let response = client
                .try_read_response_to(method)
                .unwrap_or_else(|e| panic!("{}: no response {n}: {e:?}", vector.name));
            assert_ne!(
                response.status, 100,
                "{}: 100 Continue though the body came with the head",
                vector.name
            );
            assert!(
                (200..300).contains(&response.status),
                "{}: response {n} is {} {:?}",
                vector.name,
                response.status,
                response.text()
            );
            assert!(response.complete, "{}: response {n} cut short", vector.name);
        }
        let last_keeps_alive = requests.last().is_some_and(|&(_, keep_alive)| keep_alive);
        if last_keeps_alive {
            // Still open and idle: no stray bytes, no close.
            assert!(
                !client.is_closed_within(Duration::from_millis(200)),
                "{}: closed though the last request keeps alive",
                vector.name
            );
            assert!(
                client.pending().is_empty(),
                "{}: bytes after the last response: {:?}",
                vector.name,
                String::from_utf8_lossy(client.pending())
            );
        } else {
            assert!(
                client.is_closed_within(CLOSE_WITHIN),
                "{}: not closed after a request without keep-alive",
                vector.name
            );
        }
    }
}

#[test]
fn a_request_hidden_in_a_smuggling_attempt_is_never_answered() {
    let server = echo_server();
    // Content-Length and Transfer-Encoding together: a front end that uses
    // Content-Length sees one request; one that uses chunked sees two.
    let attempts: &[(&str, &[u8])] = &[
        (
            "CL then TE",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "TE then CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "obfuscated TE",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              Z\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              1\r\nabGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n0\r\n\r\n",
        ),
    ];
    for &(what, bytes) in attempts {
        let mut client = server.connect();
        client.send(bytes);
        let response = client.read_response();
        assert!(
            matches!(response.status, 400 | 501),
            "{what}: answered {}",
            response.status
        );
        assert!(
            !response.text().contains("smuggled"),
            "{what}: the hidden request reached the app"
        );
        assert!(
            response.header_has_token("Connection", "close"),
            "{what}: no Connection: close"
        );
        assert!(
            client.is_closed_within(CLOSE_WITHIN),
            "{what}: a second response or no close: {:?}",
            String::from_utf8_lossy(client.pending())
        );
    }
}

#[test]
fn content_length_and_transfer_encoding_together_get_exactly_one_400() {
    let server = echo_server();
    let mut client = server.connect();
    client.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    expect_error_and_close(&mut client, 400, "CL + TE");
}

#[test]
fn expect_continue_on_http10_gets_no_100() {
    let server = echo_server();
    let mut client = server.connect();
    client.send(b"POST /ten HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    // An HTTP/1.0 client does not know 100 Continue: nothing may come back
    // before the body is sent.
    assert!(
        !client.is_closed_within(Duration::from_millis(500)),
        "closed while waiting for the body"
    );
    assert!(
        client.pending().is_empty(),
        "sent {:?} before the body",
        String::from_utf8_lossy(client.pending())
    );
    client.send(b"hello");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(
        environ_line(&response, "BODY").as_deref(),
        Some("BODY\tbytes\tb'hello'")
    );
}

#[test]
fn expect_continue_with_the_body_in_the_same_packet_gets_no_100() {
    let server = echo_server();
    let mut client = server.connect();
    client.send(
        b"POST /now HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    let response = client.read_response();
    assert_eq!(response.status, 200, "first response must be the final one");
    assert_eq!(
        environ_line(&response, "BODY").as_deref(),
        Some("BODY\tbytes\tb'hello'")
    );
}

#[test]
fn an_unknown_expectation_is_answered_417() {
    let server = echo_server();
    for expect in ["100-continue-please", "200-ok", "100-continue, x"] {
        let mut client = server.connect();
        client.send(
            format!("POST / HTTP/1.1\r\nHost: a\r\nExpect: {expect}\r\nContent-Length: 1\r\n\r\nx")
                .as_bytes(),
        );
        expect_error_and_close(&mut client, 417, expect);
    }
}

#[test]
fn an_http2_request_line_is_answered_505() {
    let server = echo_server();
    for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9"] {
        let mut client = server.connect();
        client.send(format!("GET / {version}\r\nHost: a\r\n\r\n").as_bytes());
        expect_error_and_close(&mut client, 505, version);
    }
}

#[test]
fn header_names_with_underscores_never_reach_the_environ() {
    let server = echo_server();
    let response = server.request(
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n\
          X_Only_Underscores: y\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        environ_line(&response, "HTTP_X_FORWARDED_FOR").as_deref(),
        Some("HTTP_X_FORWARDED_FOR\tstr\t'1.2.3.4'")
    );
    assert_eq!(environ_line(&response, "HTTP_X_ONLY_UNDERSCORES"), None);
    assert!(
        !response.text().contains("6.6.6.6"),
        "the underscored header reached the app"
    );
}

#[test]
fn limits_from_the_command_line_are_enforced() {
    let server = ServerBuilder::new("echo:application")
        .arg("--limit-request-line")
        .arg("40")
        .arg("--limit-request-fields")
        .arg("3")
        .arg("--limit-request-field_size")
        .arg("30")
        .start();
    let cases: &[(&str, String, u16)] = &[
        (
            "request line of 40 bytes",
            format!(
                "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                "a".repeat(26)
            ),
            200,
        ),
        (
            "request line of 41 bytes",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(27)),
            414,
        ),
        (
            "3 fields",
            "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nConnection: close\r\n\r\n".to_owned(),
            200,
        ),
        (
            "4 fields",
            "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n".to_owned(),
            431,
        ),
        (
            "field line of 31 bytes",
            format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(28)),
            431,
        ),
    ];
    for (what, request, status) in cases {
        let mut client = server.connect();
        client.send(request.as_bytes());
        if *status == 200 {
            let response = client.read_response();
            assert_eq!(response.status, 200, "{what}");
        } else {
            expect_error_and_close(&mut client, *status, what);
        }
    }
}

#[test]
fn an_error_in_a_pipelined_request_leaves_the_earlier_responses_intact() {
    let server = echo_server();
    let mut client = server.connect();
    client.send(
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /second HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /third HTTP/1.1\r\nHost a\r\n\r\n\
          GET /fourth HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    for path in ["/first", "/second"] {
        let response = client.read_response();
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            environ_line(&response, "PATH_INFO"),
            Some(format!("PATH_INFO\tstr\t'{path}'"))
        );
    }
    expect_error_and_close(&mut client, 400, "third request");
}

#[test]
fn a_head_trickled_past_the_header_timeout_gets_408() {
    let server = ServerBuilder::new("echo:application")
        .arg("--header-timeout")
        .arg("1")
        .start();
    let mut client = server.connect();
    let started = std::time::Instant::now();
    // One byte every 200 ms: each byte is progress, but the deadline for
    // the whole head is absolute.
    for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 0123456789" {
        if client.try_send(&[*byte]).is_err()
            || client.is_closed_within(Duration::from_millis(200))
            || !client.pending().is_empty()
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    expect_error_and_close(&mut client, 408, "trickled head");
    assert!(
        elapsed < Duration::from_secs(4),
        "408 came after {elapsed:?}, not about 1 s"
    );
}

#[test]
fn a_stalled_body_gets_408_after_the_body_timeout() {
    let server = ServerBuilder::new("echo:application")
        .arg("--body-timeout")
        .arg("1")
        .start();
    let mut client = server.connect();
    client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    let started = std::time::Instant::now();
    expect_error_and_close(&mut client, 408, "stalled body");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "408 came after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_connection_that_sends_nothing_is_closed_without_a_response() {
    let server = ServerBuilder::new("echo:application")
        .arg("--header-timeout")
        .arg("1")
        .start();
    let mut client = server.connect();
    assert!(
        client.is_closed_within(Duration::from_secs(4)),
        "an idle new connection was kept open"
    );
    assert!(
        client.pending().is_empty(),
        "sent {:?} to a connection that asked nothing",
        String::from_utf8_lossy(client.pending())
    );
}

#[test]
fn a_body_over_the_limit_gets_413_whether_announced_or_chunked() {
    let server = ServerBuilder::new("echo:application")
        .arg("--limit-request-body")
        .arg("10")
        .start();
    let at_limit = server.post("/", b"0123456789");
    assert_eq!(at_limit.status, 200);
    let cases: &[(&str, &[u8])] = &[
        (
            "Content-Length 11",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
        ),
        (
            "11 chunked bytes",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              6\r\n012345\r\n5\r\n6789a\r\n0\r\n\r\n",
        ),
    ];
    for &(what, bytes) in cases {
        let mut client = server.connect();
        client.send(bytes);
        expect_error_and_close(&mut client, 413, what);
    }
}

#[test]
fn a_size_too_large_to_represent_gets_400_not_413_even_under_a_body_limit() {
    let server = ServerBuilder::new("echo:application")
        .arg("--limit-request-body")
        .arg("10")
        .start();
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "Content-Length 2^64",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            400,
        ),
        (
            "chunk size 2^64",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              10000000000000000\r\n",
            400,
        ),
        (
            "Content-Length 2^64-1, well-formed but over the limit",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            413,
        ),
    ];
    for &(what, bytes, status) in cases {
        let mut client = server.connect();
        client.send(bytes);
        expect_error_and_close(&mut client, status, what);
    }
}

#[test]
fn nothing_after_a_connection_close_request_is_answered() {
    let server = echo_server();
    let mut client = server.connect();
    client.send(
        b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
          GET /ignored HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response.header_has_token("Connection", "close"));
    assert!(
        client.is_closed_within(CLOSE_WITHIN),
        "the request after Connection: close was answered: {:?}",
        String::from_utf8_lossy(client.pending())
    );
}

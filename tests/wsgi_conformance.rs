//! PEP 3333 conformance: the environ the app sees (every required key, the
//! right types and values, latin-1 PATH_INFO, joined repeated headers), the
//! `wsgi.input` stream methods, `wsgi.errors`, the `write()` callable and
//! `start_response` validation. An app wrapped in `wsgiref.validate` turns
//! any violation by the server into a 500.

mod support;

use std::collections::HashMap;
use std::time::Duration;
use support::client::chunked;
use support::{Server, ServerBuilder};

/// The environ as the `echo` app reports it: key → (type name, ascii repr).
struct Environ(HashMap<String, (String, String)>);

impl Environ {
    fn parse(text: &str) -> Environ {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, '\t');
                let key = fields.next()?.to_string();
                let kind = fields.next()?.to_string();
                let value = fields.next()?.to_string();
                Some((key, (kind, value)))
            })
            .collect();
        Environ(entries)
    }

    /// The ascii() repr of a value; panics if the key is missing.
    fn repr(&self, key: &str) -> &str {
        &self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("environ lacks {key}"))
            .1
    }

    fn kind(&self, key: &str) -> &str {
        &self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("environ lacks {key}"))
            .0
    }

    fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Asserts `key` is a str equal to `value` (ASCII, no quotes).
    fn assert_str(&self, key: &str, value: &str) {
        assert_eq!(self.kind(key), "str", "{key} is not a str");
        assert_eq!(self.repr(key), format!("'{value}'"), "{key}");
    }
}

fn environ_for(server: &Server, raw: &[u8]) -> Environ {
    let response = server.request(raw);
    assert_eq!(response.status, 200, "{}", response.text());
    Environ::parse(&response.text())
}

#[test]
fn environ_has_every_pep3333_key_with_the_right_type() {
    let server = Server::start("echo:application");
    let env = environ_for(
        &server,
        b"GET /path?q=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    for key in [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "RAW_URI",
        "wsgi.url_scheme",
    ] {
        assert_eq!(env.kind(key), "str", "{key}");
    }
    assert_eq!(env.repr("wsgi.version"), "(1, 0)");
    assert_eq!(env.kind("wsgi.version"), "tuple");
    env.assert_str("wsgi.url_scheme", "http");
    // True only with app threads (tests/threads.rs checks both; this file
    // also runs under RGUNICORN_TEST_EXTRA_ARGS="--threads 4").
    let threaded = std::env::var("RGUNICORN_TEST_EXTRA_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .skip_while(|word| *word != "--threads")
        .nth(1)
        .is_some_and(|count| count != "1");
    let multithread = if threaded { "True" } else { "False" };
    assert_eq!(env.repr("wsgi.multithread"), multithread);
    assert_eq!(env.repr("wsgi.multiprocess"), "True");
    assert_eq!(env.repr("wsgi.run_once"), "False");
    assert_eq!(env.repr("wsgi.input_terminated"), "True");
    for key in ["wsgi.input", "wsgi.errors", "wsgi.file_wrapper"] {
        assert!(env.has(key), "environ lacks {key}");
    }
}

#[test]
fn environ_describes_the_request_and_the_connection() {
    let server = Server::start("echo:application");
    let mut client = server.connect();
    let request = format!(
        "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        server.port()
    );
    client.send(request.as_bytes());
    let response = client.read_response();
    let env = Environ::parse(&response.text());
    env.assert_str("REQUEST_METHOD", "GET");
    env.assert_str("SCRIPT_NAME", "");
    env.assert_str("PATH_INFO", "/a/b");
    env.assert_str("QUERY_STRING", "x=1&y=%20");
    env.assert_str("RAW_URI", "/a/b?x=1&y=%20");
    env.assert_str("SERVER_PROTOCOL", "HTTP/1.1");
    env.assert_str("SERVER_PORT", &server.port().to_string());
    assert!(
        ["'localhost'", "'127.0.0.1'"].contains(&env.repr("SERVER_NAME")),
        "{}",
        env.repr("SERVER_NAME")
    );
    env.assert_str("REMOTE_ADDR", "127.0.0.1");
    env.assert_str("REMOTE_PORT", &client.local_port().to_string());
    assert!(
        env.repr("SERVER_SOFTWARE").starts_with("'rgunicorn"),
        "{}",
        env.repr("SERVER_SOFTWARE")
    );
    env.assert_str("HTTP_HOST", &format!("localhost:{}", server.port()));
    assert!(!env.has("CONTENT_LENGTH") || env.repr("CONTENT_LENGTH") == "''");
}

#[test]
fn path_info_is_percent_decoded_then_latin1() {
    let server = Server::start("echo:application");
    let env = environ_for(
        &server,
        b"GET /caf%C3%A9/%E9/a%20b?k=%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    env.assert_str("PATH_INFO", "/caf\\xc3\\xa9/\\xe9/a b");
    env.assert_str("QUERY_STRING", "k=%C3%A9");
    env.assert_str("RAW_URI", "/caf%C3%A9/%E9/a%20b?k=%C3%A9");
}

#[test]
fn header_values_are_latin1_strings() {
    let server = Server::start("echo:application");
    let env = environ_for(
        &server,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\nConnection: close\r\n\r\n",
    );
    env.assert_str("HTTP_X_LATIN", "caf\\xe9");
}

#[test]
fn repeated_headers_are_joined_with_commas() {
    let server = Server::start("echo:application");
    let env = environ_for(
        &server,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Multi: a\r\nx-multi: b\r\nX-MULTI: c\r\nX-Dashed-Name: d\r\nConnection: close\r\n\r\n",
    );
    env.assert_str("HTTP_X_MULTI", "a,b,c");
    env.assert_str("HTTP_X_DASHED_NAME", "d");
}

#[test]
fn content_type_and_length_are_not_http_prefixed() {
    let server = Server::start("echo:application");
    let env = environ_for(
        &server,
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}",
    );
    env.assert_str("REQUEST_METHOD", "POST");
    env.assert_str("CONTENT_TYPE", "application/json");
    env.assert_str("CONTENT_LENGTH", "7");
    assert!(!env.has("HTTP_CONTENT_TYPE"));
    assert!(!env.has("HTTP_CONTENT_LENGTH"));
    assert_eq!(env.repr("BODY"), "b'{\"a\":1}'");
}

#[test]
fn http10_request_reports_its_protocol() {
    let server = Server::start("echo:application");
    let env = environ_for(&server, b"GET /old HTTP/1.0\r\n\r\n");
    env.assert_str("SERVER_PROTOCOL", "HTTP/1.0");
}

#[test]
fn script_name_comes_from_the_environment_and_is_stripped_from_path_info() {
    let server = ServerBuilder::new("echo:application")
        .env("SCRIPT_NAME", "/prefix")
        .start();
    let env = environ_for(
        &server,
        b"GET /prefix/page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    env.assert_str("SCRIPT_NAME", "/prefix");
    env.assert_str("PATH_INFO", "/page");
}

#[test]
fn wsgi_errors_writes_reach_the_error_log() {
    let server = Server::start("echo:application");
    let response = server.get("/?errors=marker-written-to-wsgi-errors");
    assert_eq!(response.status, 200);
    assert!(
        server.wait_for_log("marker-written-to-wsgi-errors", Duration::from_secs(5)),
        "log:\n{}",
        server.log()
    );
}

// --- wsgiref.validate -------------------------------------------------------

#[test]
fn validator_wrapped_app_accepts_a_get() {
    let server = Server::start("validated:application");
    let response = server.get("/check");
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        server.log()
    );
    assert_eq!(response.text(), "GET /check 0\n");
}

#[test]
fn validator_wrapped_app_accepts_a_post_with_content_length() {
    let server = Server::start("validated:application");
    let response = server.post("/upload", b"some posted bytes");
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        server.log()
    );
    assert_eq!(response.text(), "POST /upload 17\nsome posted bytes");
}

#[test]
fn validator_wrapped_app_accepts_a_chunked_post() {
    let server = Server::start("validated:application");
    let mut raw = b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend_from_slice(&chunked(b"chunked request body", 6));
    let response = server.request(&raw);
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        server.log()
    );
    assert_eq!(response.text(), "POST /chunks 20\nchunked request body");
}

#[test]
fn validator_wrapped_app_accepts_a_head() {
    let server = Server::start("validated:application");
    let mut client = server.connect();
    client.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let head = client.read_response_to("HEAD");
    assert_eq!(head.status, 200, "{}", server.log());
    let get = client.read_response();
    assert_eq!(get.status, 200, "{}", server.log());
    assert_eq!(get.text(), "GET /g 0\n");
}

#[test]
fn validator_wrapped_app_accepts_keep_alive_and_pipelining() {
    let server = Server::start("validated:application");
    let mut client = server.connect();
    client.send(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.read_response().text(), "POST /1 3\nabc");
    assert_eq!(client.read_response().text(), "GET /2 0\n");
}

// --- wsgi.input -------------------------------------------------------------

const LINES: &[u8] = b"first line\nsecond, longer line\n\nfourth\nno newline at the end";

/// Posts `body` to `input_methods` with `query` on a keep-alive connection,
/// then checks the connection still frames a second request correctly
/// (the stream must stop at the end of the body, not block for more).
fn read_input(server: &Server, query: &str, body: &[u8]) -> support::Response {
    let mut client = server.connect();
    let mut raw = format!(
        "POST /?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    client.send(&raw);
    let response = client.read_response();
    client.send(b"GET /?method=read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let next = client.read_response();
    assert_eq!(next.status, 200, "request after the body was misframed");
    assert_eq!(next.text(), "");
    response
}

#[test]
fn wsgi_input_read_returns_the_whole_body_without_blocking() {
    let server = Server::start("input_methods:application");
    let response = read_input(&server, "method=read", LINES);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, LINES);
}

#[test]
fn wsgi_input_read_n_returns_at_most_n_bytes() {
    let server = Server::start("input_methods:application");
    let response = read_input(&server, "method=read_n&n=7", LINES);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, LINES);
    assert_eq!(
        response.header("X-Pieces"),
        Some(LINES.len().div_ceil(7).to_string().as_str())
    );
}

#[test]
fn wsgi_input_readline_returns_one_line_at_a_time() {
    let server = Server::start("input_methods:application");
    let response = read_input(&server, "method=readline", LINES);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, LINES);
    assert_eq!(response.header("X-Pieces"), Some("5"));
}

#[test]
fn wsgi_input_readline_n_stops_at_n_bytes() {
    let server = Server::start("input_methods:application");
    let response = read_input(&server, "method=readline_n&n=8", LINES);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, LINES);
    // "first li|ne\n|second, |longer l|ine\n|\n|fourth\n|no newli|ne at th|e end"
    assert_eq!(response.header("X-Pieces"), Some("10"));
}

#[test]
fn wsgi_input_readlines_returns_every_line() {
    let server = Server::start("input_methods:application");
    let response = read_input(&server, "method=readlines", LINES);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, LINES);
    assert_eq!(response.header("X-Pieces"), Some("5"));
}

#[test]
fn wsgi_input_iteration_yields_lines() {
    let server = Server::start("input_methods:application");
    let response = read_input(&server, "method=iter", LINES);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, LINES);
    assert_eq!(response.header("X-Pieces"), Some("5"));
}

#[test]
fn wsgi_input_methods_can_be_mixed() {
    let server = Server::start("input_methods:application");
    let response = read_input(&server, "method=mixed&n=4", LINES);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, LINES);
    assert_eq!(response.header("X-Pieces"), Some("3"));
}

#[test]
fn wsgi_input_of_a_bodiless_request_is_empty() {
    let server = Server::start("input_methods:application");
    let response = server.get("/?method=read");
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.body, b"");
    assert_eq!(response.header("X-Pieces"), Some("0"));
}

#[test]
fn unread_request_body_does_not_leak_into_the_next_request() {
    let server = Server::start("input_methods:ignore_body");
    let mut client = server.connect();
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\nGET /smuggled HTTP");
    assert_eq!(client.read_response().text(), "ignored");
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let second = client.read_response();
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), "ignored");
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

// --- start_response and write() ----------------------------------------------

#[test]
fn write_callable_output_precedes_the_returned_iterable() {
    let server = Server::start("responses:write_callable");
    let response = server.get("/");
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.text(), "Hello, write() world\n");
}

#[test]
fn header_value_with_newline_gives_500_not_response_splitting() {
    let server = Server::start("failing:bad_header_value");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(
        response.header("X-Injected").is_none(),
        "response splitting: {:?}",
        response.headers
    );
    assert!(!response.text().contains("should never be sent"));
    assert!(
        server.wait_for_log("[ERROR]", Duration::from_secs(5)),
        "no error logged:\n{}",
        server.log()
    );
}

#[test]
fn invalid_header_name_gives_500() {
    let server = Server::start("failing:bad_header_name");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(!response.text().contains("should never be sent"));
}

#[test]
fn bytes_status_gives_500() {
    let server = Server::start("failing:bytes_status");
    assert_eq!(server.get("/").status, 500);
}

#[test]
fn start_response_twice_without_exc_info_gives_500() {
    let server = Server::start("failing:start_response_twice");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(!response.text().contains("should never be sent"));
}

#[test]
fn exc_info_before_output_replaces_the_headers() {
    let server = Server::start("failing:exc_info_replaces_headers");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert_eq!(response.header("X-Replaced"), Some("yes"));
    assert_eq!(response.header("X-Original"), None);
    assert_eq!(response.text(), "replaced");
}

#[test]
fn exc_info_after_output_closes_the_connection() {
    let server = Server::start("failing:exc_info_after_output");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = client.try_read_response_to("GET").unwrap_or_else(|e| {
        panic!("the yielded block was never sent (PEP 3333: a server must not delay the transmission of a block): {e:?}")
    });
    assert_eq!(response.status, 200);
    assert!(
        !response.complete,
        "body was terminated as if complete: {:?}",
        response.text()
    );
    assert!(response.text().starts_with("partial output\n"));
    assert!(!response.text().contains("must not be reached"));
    assert_eq!(server.get("/").status, 200, "worker stopped serving");
}

#[test]
fn absolute_form_request_target_gives_path_and_query() {
    let server = Server::start("echo:application");
    let env = environ_for(
        &server,
        b"GET http://example.com/abs/path?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    );
    env.assert_str("PATH_INFO", "/abs/path");
    env.assert_str("QUERY_STRING", "q=1");
}

#[test]
fn wsgi_input_accepts_io_style_size_arguments() {
    let server = Server::start("input_methods:application");
    for method in [
        "read_minus_one",
        "read_none",
        "readline_minus_one",
        "readlines_hint",
    ] {
        let response = read_input(&server, &format!("method={method}&n=10"), LINES);
        assert_eq!(response.status, 200, "{method}: {}", server.log());
        assert_eq!(response.body, LINES, "{method}");
    }
}

//! What happens when the application misbehaves or cannot be loaded: 500
//! with the traceback in the error log, closed connections once headers are
//! out, non-bytes body items, `close()` called exactly once on every path,
//! and the exit code 4 on import failure.

mod support;

use std::path::Path;
use std::time::Duration;
use support::{query_escape, read_lines, wait_until, Server, ServerBuilder, TempDir};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
const BLOCK_NOT_SENT: &str =
    "the yielded block was never sent (PEP 3333: a server must not delay the transmission of a block)";

/// Waits until the close log holds exactly one `closed` line and checks it
/// stays that way while the worker serves another request.
fn assert_closed_exactly_once(server: &Server, log: &Path) {
    let closed = wait_until(Duration::from_secs(10), || !read_lines(log).is_empty());
    assert!(closed, "close() was never called\n{}", server.log());
    let ok_log = log.with_extension("other");
    let next = server.get(&format!(
        "/?mode=length&log={}",
        query_escape(&ok_log.display().to_string())
    ));
    assert_eq!(next.status, 200, "worker stopped serving");
    // A second close() would come from the same worker right after the
    // first: give it a moment to show up (an absence cannot be awaited).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        read_lines(log),
        ["closed"],
        "close() not called exactly once"
    );
}

fn closing_target(mode: &str, log: &Path) -> String {
    format!(
        "/?mode={mode}&log={}",
        query_escape(&log.display().to_string())
    )
}

#[test]
fn exception_before_headers_gives_500_logs_the_traceback_and_keeps_serving() {
    let server = Server::start("failing:raise_before_headers");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(
        !response.text().contains("boom before headers"),
        "traceback leaked to the client"
    );
    assert!(
        server.wait_for_log("Traceback (most recent call last)", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(
        server.wait_for_log("ValueError: boom before headers", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert_eq!(server.get("/").status, 500, "the worker stopped serving");
    assert_eq!(
        server.log_count("Booting worker with pid"),
        1,
        "the worker died:\n{}",
        server.log()
    );
}

#[test]
fn exception_after_start_response_before_output_gives_500() {
    let server = Server::start("failing:raise_after_start_response");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.read_response().status, 500);
    assert!(
        server.wait_for_log(
            "ValueError: boom after start_response",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
}

#[test]
fn error_500_keeps_a_keep_alive_connection_usable_or_closes_it_cleanly() {
    let server = Server::start("failing:raise_before_headers");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let first = client.read_response();
    assert_eq!(first.status, 500);
    assert!(first.complete, "the 500 response was not framed");
    if !first.header_has_token("Connection", "close") {
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(client.read_response().status, 500);
    }
}

#[test]
fn exception_after_headers_closes_the_connection() {
    let server = Server::start("failing:raise_in_iteration");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = client
        .try_read_response_to("GET")
        .unwrap_or_else(|e| panic!("{BLOCK_NOT_SENT}: {e:?}"));
    assert_eq!(response.status, 200);
    assert!(response.text().starts_with("first chunk\n"));
    assert!(
        !response.complete,
        "a failed body was terminated as if complete"
    );
    assert!(
        server.wait_for_log("ValueError: boom mid-body", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert_eq!(server.get("/").status, 200, "the worker stopped serving");
}

#[test]
fn str_body_item_gives_500() {
    let server = Server::start("failing:str_item");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(!response.text().contains("a str is not bytes"));
    assert!(
        server.wait_for_log("[ERROR]", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

#[test]
fn non_bytes_body_item_gives_500_and_a_log_line_naming_its_type() {
    let server = Server::start("failing:marker_item");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(
        server.wait_for_log("NotBytesMarker", Duration::from_secs(5)),
        "type not named:\n{}",
        server.log()
    );
}

#[test]
fn iterable_close_is_called_once_after_a_normal_response() {
    let dir = TempDir::new("close-ok");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    let response = server.get(&closing_target("ok", &log));
    assert_eq!(response.text(), "one,two,three");
    assert_closed_exactly_once(&server, &log);
}

#[test]
fn iterable_close_is_called_once_on_keep_alive() {
    let dir = TempDir::new("close-keepalive");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    let mut client = server.connect();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        closing_target("length", &log)
    );
    client.send(request.as_bytes());
    assert_eq!(client.read_response().text(), "one,two,three");
    assert_closed_exactly_once(&server, &log);
}

#[test]
fn iterable_close_is_called_once_when_iteration_raises() {
    let dir = TempDir::new("close-raise");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    let mut client = server.connect();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        closing_target("raise", &log)
    );
    client.send(request.as_bytes());
    let response = client
        .try_read_response_to("GET")
        .unwrap_or_else(|e| panic!("{BLOCK_NOT_SENT}: {e:?}"));
    assert_eq!(response.text(), "one,");
    assert!(!response.complete);
    assert_closed_exactly_once(&server, &log);
}

#[test]
fn iterable_close_is_called_once_when_iteration_raises_before_output() {
    let dir = TempDir::new("close-raise-first");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    assert_eq!(server.get(&closing_target("raise_first", &log)).status, 500);
    assert_closed_exactly_once(&server, &log);
}

#[test]
fn iterable_close_is_called_once_after_a_non_bytes_item() {
    let dir = TempDir::new("close-str");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    assert_eq!(server.get(&closing_target("str_item", &log)).status, 500);
    assert_closed_exactly_once(&server, &log);
}

#[test]
fn iterable_close_is_called_once_for_a_head_request() {
    let dir = TempDir::new("close-head");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    let mut client = server.connect();
    let request = format!(
        "HEAD {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        closing_target("ok", &log)
    );
    client.send(request.as_bytes());
    assert_eq!(client.read_response_to("HEAD").status, 200);
    assert_closed_exactly_once(&server, &log);
}

#[test]
fn iterable_close_is_called_once_when_the_client_disconnects() {
    let dir = TempDir::new("close-disconnect");
    let log = dir.join("close.log");
    let server = Server::start("closing:application");
    {
        let mut client = server.connect();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            closing_target("big", &log)
        );
        client.send(request.as_bytes());
        // Read only a little of the 64 MiB body, then hang up.
        client.set_read_timeout(Duration::from_secs(10));
        assert!(
            !client.is_closed_within(Duration::from_secs(10)),
            "no response started"
        );
    }
    assert_closed_exactly_once(&server, &log);
}

#[test]
fn app_import_failure_exits_4_naming_the_exception() {
    let mut server = ServerBuilder::new("broken_import:application").spawn();
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .expect("master did not exit after the app failed to load");
    assert_eq!(status.code(), Some(4), "log:\n{}", server.log());
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("RuntimeError") && l.contains("boom at import time")),
        "no one-line error naming the exception:\n{log}"
    );
}

#[test]
fn missing_module_exits_4_naming_the_module() {
    let mut server = ServerBuilder::new("no_such_module_here:application").spawn();
    let status = server.wait_exit(EXIT_TIMEOUT).expect("master did not exit");
    assert_eq!(status.code(), Some(4), "log:\n{}", server.log());
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ModuleNotFoundError") && l.contains("no_such_module_here")),
        "no one-line error naming the module:\n{log}"
    );
}

#[test]
fn missing_app_variable_exits_4_naming_it() {
    let mut server = ServerBuilder::new("hello:no_such_callable").spawn();
    let status = server.wait_exit(EXIT_TIMEOUT).expect("master did not exit");
    assert_eq!(status.code(), Some(4), "log:\n{}", server.log());
    assert!(
        server.log().contains("no_such_callable"),
        "log:\n{}",
        server.log()
    );
}

#[test]
fn bad_module_name_is_a_usage_error() {
    let mut server = ServerBuilder::new("not a module:app").spawn();
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .expect("rgunicorn did not exit");
    assert!(!status.success());
    assert_ne!(
        status.code(),
        Some(4),
        "a malformed APP_MODULE is caught before any worker starts"
    );
    assert!(
        server.log().contains("not a module"),
        "log:\n{}",
        server.log()
    );
    assert_eq!(server.log_count("Booting worker"), 0);
}

#[test]
fn app_returning_bare_bytes_gives_500() {
    let server = Server::start("failing:returns_bytes");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert_eq!(server.get("/").status, 500, "the worker stopped serving");
}

#[test]
fn app_returning_none_gives_500() {
    let server = Server::start("failing:returns_none");
    assert_eq!(server.get("/").status, 500);
    assert!(
        server.wait_for_log("[ERROR]", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

#[test]
fn app_that_never_calls_start_response_gives_500() {
    let server = Server::start("failing:never_starts_response");
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(!response.text().contains("no start_response call"));
}

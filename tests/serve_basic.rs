//! Basic serving: one request, keep-alive, HTTP/1.0, pipelining, HEAD,
//! Date/Server headers, several workers, unix sockets, recovery from a
//! malformed request, and the command line itself.

mod support;

use std::time::{Duration, Instant};
use support::{Server, ServerBuilder, TempDir};

const HELLO: &str = "Hello, World!\n";

#[test]
fn hello_app_answers_200_with_its_body() {
    let server = Server::start("hello:application");
    let response = server.get("/");
    assert_eq!(response.version, "HTTP/1.1");
    assert_eq!(response.status, 200);
    assert_eq!(response.reason, "OK");
    assert_eq!(response.header("Content-Type"), Some("text/plain"));
    assert_eq!(response.header("Content-Length"), Some("14"));
    assert_eq!(response.text(), HELLO);
}

#[test]
fn master_logs_listening_address_and_booted_workers() {
    let server = Server::start("hello:application");
    let listening = format!(
        "Listening at: http://127.0.0.1:{} ({})",
        server.port(),
        server.pid()
    );
    assert!(
        server.wait_for_log(&listening, Duration::from_secs(5)),
        "log:\n{}",
        server.log()
    );
    assert_eq!(server.worker_pids().len(), 1, "log:\n{}", server.log());
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("Listening at:"))
        .unwrap()
        .to_string();
    assert!(
        is_gunicorn_log_line(&line, "INFO"),
        "not gunicorn's log format: {line:?}"
    );
}

/// `[2026-11-23 10:00:00 +0000] [PID] [LEVEL] message`
fn is_gunicorn_log_line(line: &str, level: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((date, rest)) = rest.split_once("] [") else {
        return false;
    };
    let Some((pid, rest)) = rest.split_once("] [") else {
        return false;
    };
    date.len() == "2026-11-23 10:00:00 +0000".len()
        && pid.parse::<u32>().is_ok()
        && rest.starts_with(&format!("{level}] "))
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start("hello:application");
    let mut client = server.connect();
    for _ in 0..5 {
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), HELLO);
        assert!(!response.header_has_token("Connection", "close"));
    }
    assert!(
        !client.is_closed_within(Duration::from_millis(300)),
        "1.1 connection closed without reason"
    );
}

#[test]
fn connection_close_request_header_closes_after_the_response() {
    let server = Server::start("hello:application");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response.header_has_token("Connection", "close"));
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn http10_request_is_answered_then_the_connection_closes() {
    let server = Server::start("hello:application");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), HELLO);
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn http10_keep_alive_request_keeps_the_connection_open() {
    let server = Server::start("hello:application");
    let mut client = server.connect();
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), HELLO);
        assert!(
            response.header_has_token("Connection", "keep-alive"),
            "{:?}",
            response.headers
        );
    }
}

#[test]
fn http10_response_without_length_is_delimited_by_close() {
    let server = Server::start("hello:no_length");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Transfer-Encoding"),
        None,
        "no chunking on 1.0"
    );
    assert_eq!(response.text(), HELLO);
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start("echo:application");
    let mut client = server.connect();
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.extend_from_slice(format!("GET /req/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"POST /req/post HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
    batch.extend_from_slice(b"GET /req/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    client.send(&batch);
    for i in 0..10 {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert!(
            response
                .text()
                .contains(&format!("PATH_INFO\tstr\t'/req/{i}'\n")),
            "response {i} out of order"
        );
    }
    let post = client.read_response();
    assert!(post.text().contains("PATH_INFO\tstr\t'/req/post'\n"));
    assert!(post.text().contains("BODY\tbytes\tb'body'\n"));
    let last = client.read_response();
    assert!(last.text().contains("PATH_INFO\tstr\t'/req/last'\n"));
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn head_response_has_headers_but_no_body() {
    let server = Server::start("hello:application");
    let mut client = server.connect();
    client.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = client.read_response_to("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("14"));
    // No body bytes: the next response on the connection starts right away.
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let get = client.read_response();
    assert_eq!(get.status, 200);
    assert_eq!(get.text(), HELLO);
}

#[test]
fn head_response_of_unsized_app_sends_no_chunks() {
    let server = Server::start("hello:no_length");
    let mut client = server.connect();
    client.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = client.read_response_to("HEAD");
    assert_eq!(head.status, 200);
    let get = client.read_response();
    assert_eq!(get.status, 200, "HEAD left body bytes on the wire");
    assert_eq!(get.text(), HELLO);
}

#[test]
fn responses_carry_date_and_server_headers() {
    let server = Server::start("hello:application");
    let response = server.get("/");
    let date = response.header("Date").expect("Date header");
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    assert_eq!(date.len(), 29, "{date:?}");
    assert!(date.ends_with(" GMT"), "{date:?}");
    assert_eq!(&date[3..5], ", ", "{date:?}");
    let server_header = response.header("Server").expect("Server header");
    assert!(!server_header.is_empty());
}

#[test]
fn two_workers_serve_concurrently() {
    // One app thread per worker (also under RGUNICORN_TEST_EXTRA_ARGS=
    // --threads N), so only the other worker can answer meanwhile.
    let server = ServerBuilder::new("echo:application")
        .workers(2)
        .arg("--threads")
        .arg("1")
        .start();
    let pids = server.worker_pids();
    assert_eq!(pids.len(), 2);
    assert_ne!(pids[0], pids[1]);
    // Keep one worker busy in the app; the other must answer meanwhile.
    let mut slow = server.connect();
    slow.send(b"GET /?errors=slow-request-started&sleep=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(server.wait_for_log("slow-request-started", Duration::from_secs(10)));
    let started = Instant::now();
    let fast = server.get("/fast");
    assert_eq!(fast.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "second worker did not answer while the first was busy"
    );
    let slow_response = slow.read_response();
    assert_eq!(slow_response.status, 200);
    let pid_of = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("PID\tint\t"))
            .unwrap()
            .to_string()
    };
    assert_ne!(pid_of(&fast.text()), pid_of(&slow_response.text()));
}

#[test]
fn unix_socket_bind_serves() {
    let dir = TempDir::new("unix-bind");
    let socket = dir.join("rgunicorn.sock");
    let server = ServerBuilder::new("hello:application")
        .unix_socket(&socket)
        .start();
    let response = server.get("/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), HELLO);
    assert!(
        server
            .log()
            .contains(&format!("Listening at: unix:{}", socket.display())),
        "log:\n{}",
        server.log()
    );
}

#[test]
fn malformed_request_gets_400_and_the_worker_keeps_serving() {
    let server = Server::start("hello:application");
    let mut client = server.connect();
    client.send(b"THIS IS NOT HTTP\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 400);
    assert!(
        response.header_has_token("Connection", "close"),
        "{:?}",
        response.headers
    );
    assert!(client.is_closed_within(Duration::from_secs(5)));
    for _ in 0..3 {
        assert_eq!(server.get("/").status, 200);
    }
    assert_eq!(
        server.log_count("Booting worker with pid"),
        1,
        "the worker was replaced:\n{}",
        server.log()
    );
}

#[test]
fn header_without_colon_gets_400() {
    let server = Server::start("hello:application");
    let response = server.request(b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n");
    assert_eq!(response.status, 400);
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn factory_call_app_spec_is_served() {
    let server = Server::start("hello:create_app('Factory made', excited=True)");
    assert_eq!(server.get("/").text(), "Factory made!");
}

#[test]
fn pythonpath_directories_are_importable() {
    let dir = TempDir::new("pythonpath");
    std::fs::write(
        dir.join("elsewhere_app.py"),
        "def application(environ, start_response):\n    start_response('200 OK', [('Content-Length', '9')])\n    return [b'elsewhere']\n",
    )
    .unwrap();
    let server = ServerBuilder::new("elsewhere_app:application")
        .arg("--pythonpath")
        .arg(format!(
            "/nonexistent-rgunicorn-dir,{}",
            dir.path().display()
        ))
        .start();
    assert_eq!(server.get("/").text(), "elsewhere");
}

#[test]
fn version_flag_prints_the_version() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .arg("--version")
        .output()
        .expect("run rgunicorn --version");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text:?}");
}

#[test]
fn help_flag_lists_the_main_options() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .arg("--help")
        .output()
        .expect("run rgunicorn --help");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--workers",
        "--bind",
        "--chdir",
        "--pythonpath",
        "--virtualenv",
        "--log-level",
        "--keep-alive",
    ] {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_timeout() {
    let server = ServerBuilder::new("hello:application")
        .arg("--keep-alive")
        .arg("1")
        .start();
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
    assert!(
        client.is_closed_within(Duration::from_secs(5)),
        "idle connection outlived --keep-alive 1"
    );
}

#[test]
fn ipv6_loopback_bind_serves() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    };
    let address = probe.local_addr().unwrap();
    drop(probe);
    let server = ServerBuilder::new("echo:application").tcp(address).start();
    let response = server.get("/v6");
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("REMOTE_ADDR\tstr\t'::1'\n"),
        "{}",
        response.text()
    );
}

#[test]
fn several_binds_all_serve() {
    let dir = TempDir::new("multi-bind");
    let socket = dir.join("second.sock");
    let server = ServerBuilder::new("hello:application")
        .arg("--bind")
        .arg(format!("unix:{}", socket.display()))
        .start();
    assert_eq!(server.get("/").text(), HELLO);
    assert!(support::wait_until(Duration::from_secs(5), || socket.exists()));
    let mut unix = support::Client::connect(&support::server::Address::Unix(socket.clone()));
    unix.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(unix.read_response().text(), HELLO);
}

#[test]
fn log_level_warning_hides_info_lines() {
    let server = ServerBuilder::new("hello:application")
        .arg("--log-level")
        .arg("warning")
        .spawn();
    let address = server.address().clone();
    let served = support::wait_until(support::BOOT_TIMEOUT, || {
        let support::server::Address::Tcp(addr) = &address else {
            return false;
        };
        std::net::TcpStream::connect(addr).is_ok()
    });
    assert!(served, "server did not come up; log:\n{}", server.log());
    assert_eq!(server.get("/").text(), HELLO);
    assert!(
        !server.log().contains("[INFO]"),
        "INFO lines at --log-level warning:\n{}",
        server.log()
    );
}

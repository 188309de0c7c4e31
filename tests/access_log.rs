//! The access log through the real binary: gunicorn's default line, custom
//! formats with every kind of atom, and reopening after logrotate (USR1).

mod support;

use std::time::Duration;
use support::{wait_until, ServerBuilder, TempDir};

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for_lines(path: &std::path::Path, count: usize) -> Vec<String> {
    assert!(
        wait_until(Duration::from_secs(10), || lines(path).len() >= count),
        "access log has {:?}, wanted {count} lines",
        lines(path)
    );
    lines(path)
}

#[test]
fn default_access_log_line_is_gunicorns() {
    let dir = TempDir::new("access-default");
    let log = dir.join("access.log");
    let server = ServerBuilder::new("hello:application")
        .arg("--access-logfile")
        .arg(log.display().to_string())
        .start();
    let response = server.request(
        b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nReferer: http://ref/\r\nUser-Agent: agent/1\r\nAuthorization: Basic YWxpY2U6cHc=\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let line = &wait_for_lines(&log, 1)[0];
    let (start, rest) = line.split_once(" [").expect("time field");
    assert_eq!(start, "127.0.0.1 - alice");
    let (time, rest) = rest.split_once("] ").expect("time field end");
    assert!(
        time.len() == 26 && time.as_bytes()[2] == b'/' && time.contains(':'),
        "time {time:?} is not [dd/Mon/yyyy:hh:mm:ss +zzzz]"
    );
    assert_eq!(
        rest,
        r#""GET /a/b?x=1 HTTP/1.1" 200 14 "http://ref/" "agent/1""#
    );
}

#[test]
fn custom_formats_render_headers_environ_and_timing() {
    let dir = TempDir::new("access-custom");
    let log = dir.join("access.log");
    let server = ServerBuilder::new("hello:application")
        .arg("--access-logfile")
        .arg(log.display().to_string())
        .arg("--access-logformat")
        .arg("%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%({x-trace}i)s|%({content-type}o)s|%({SERVER_PROTOCOL}e)s|%(M)s|%(p)s|%(nonsense)s|100%%")
        .start();
    let response = server.request(b"HEAD /p?q=2 HTTP/1.0\r\nX-Trace: t-1\r\n\r\n");
    assert_eq!(response.status, 200);
    let line = &wait_for_lines(&log, 1)[0];
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(
        &fields[..9],
        &[
            "HEAD",
            "/p",
            "q=2",
            "HTTP/1.0",
            "200",
            "0",
            "t-1",
            "text/plain",
            "HTTP/1.0"
        ]
    );
    assert!(fields[9].parse::<u64>().is_ok(), "M atom {:?}", fields[9]);
    let pids = server.worker_pids();
    assert_eq!(fields[10], format!("<{}>", pids[0]));
    assert_eq!(&fields[11..], &["-", "100%"]);
}

#[test]
fn usr1_reopens_the_access_log_after_rotation() {
    let dir = TempDir::new("access-rotate");
    let log = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let server = ServerBuilder::new("hello:application")
        .arg("--access-logfile")
        .arg(log.display().to_string())
        .start();
    assert_eq!(server.get("/before").status, 200);
    wait_for_lines(&log, 1);
    std::fs::rename(&log, &rotated).unwrap();
    for pid in server.worker_pids() {
        // SAFETY: sends a signal to the worker this test started.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    }
    assert!(
        wait_until(Duration::from_secs(10), || log.exists()),
        "the worker did not reopen the log: {}",
        server.log()
    );
    assert_eq!(server.get("/after").status, 200);
    let new_lines = wait_for_lines(&log, 1);
    assert!(new_lines[0].contains("GET /after"), "{new_lines:?}");
    assert!(lines(&rotated).iter().all(|l| !l.contains("/after")));
}

#[test]
fn a_malformed_access_log_format_stops_the_server_naming_the_setting() {
    let mut server = ServerBuilder::new("hello:application")
        .arg("--access-logfile")
        .arg("-")
        .arg("--access-logformat")
        .arg("%(h")
        .spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("server exits");
    assert!(!status.success());
    assert!(
        server.log().contains("--access-logformat"),
        "{}",
        server.log()
    );
}

#[test]
fn a_graceful_stop_loses_no_access_log_line() {
    let dir = TempDir::new("access-stop");
    let log = dir.join("access.log");
    let mut server = ServerBuilder::new("hello:application")
        .arg("--access-logfile")
        .arg(log.display().to_string())
        .start();
    let mut client = server.connect();
    for _ in 0..300 {
        client.send(b"GET /burst HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    for _ in 0..300 {
        assert_eq!(client.read_response().status, 200);
    }
    // Stop at once: the lines still buffered in the worker must be written.
    let status = server.stop().expect("server stopped");
    assert!(status.success(), "{}", server.log());
    assert_eq!(
        lines(&log)
            .iter()
            .filter(|l| l.contains("GET /burst"))
            .count(),
        300
    );
}

//! gunicorn settings carried over, through the real binary: `-e/--env`
//! (raw_env), `--capture-output`, `--no-sendfile` and `SENDFILE`, and
//! `--header-map`.

mod support;

use std::time::Duration;
use support::{wait_until, ServerBuilder, TempDir};

#[test]
fn env_settings_reach_the_application_environment() {
    let server = ServerBuilder::new("settings_app:application")
        .arg("-e")
        .arg("RG_TEST_FLAVOUR=mint")
        .arg("--env")
        .arg("RG_TEST_EMPTY=")
        .start();
    assert_eq!(server.get("/env?RG_TEST_FLAVOUR").text(), "mint");
    assert_eq!(server.get("/env?RG_TEST_EMPTY").text(), "");
    assert_eq!(server.get("/env?RG_TEST_MISSING").text(), "-");
}

#[test]
fn a_malformed_env_setting_is_a_one_line_error() {
    let mut server = ServerBuilder::new("settings_app:application")
        .arg("-e")
        .arg("NOEQUALS")
        .spawn();
    let status = server.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(!status.success());
    assert!(
        server.log().contains("'NOEQUALS' is not KEY=VALUE"),
        "{}",
        server.log()
    );
}

#[test]
fn capture_output_sends_prints_to_the_error_log() {
    let dir = TempDir::new("capture");
    let log = dir.join("error.log");
    let server = ServerBuilder::new("settings_app:application")
        .arg("--error-logfile")
        .arg(log.display().to_string())
        .arg("--capture-output")
        .spawn();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // The boot lines go to the log file, not to the output the harness reads.
    assert!(
        wait_until(Duration::from_secs(30), || read()
            .contains("Booting worker")),
        "no boot line in the error log: {}",
        read()
    );
    assert_eq!(server.get("/print").text(), "printed");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let text = read();
            text.contains("stdout-marker from the app")
                && text.contains("stderr-marker from the app")
        }),
        "prints not in the error log: {}",
        read()
    );
    assert!(
        !server.log().contains("stdout-marker"),
        "stdout was not captured"
    );
}

fn reads_for_file(extra: &[&str], env: &[(&str, &str)]) -> String {
    let dir = TempDir::new("sendfile");
    let file = dir.join("data.bin");
    std::fs::write(&file, vec![b'x'; 100_000]).unwrap();
    let mut builder = ServerBuilder::new("settings_app:application");
    for arg in extra {
        builder = builder.arg(*arg);
    }
    for (key, value) in env {
        builder = builder.env(key, *value);
    }
    let server = builder.start();
    let response = server.get(&format!("/file?{}", file.display()));
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 100_000);
    server.get("/reads").text()
}

#[test]
fn file_wrapper_uses_sendfile_unless_told_not_to() {
    assert_eq!(
        reads_for_file(&[], &[]),
        "0",
        "sendfile should not call read()"
    );
    assert_ne!(reads_for_file(&["--no-sendfile"], &[]), "0");
    assert_ne!(reads_for_file(&[], &[("SENDFILE", "0")]), "0");
}

fn underscore_request(mode: &str) -> (u16, String) {
    let server = ServerBuilder::new("echo:application")
        .arg("--header-map")
        .arg(mode)
        .start();
    let response =
        server.request(b"GET / HTTP/1.1\r\nHost: x\r\nX_Spoofed: 1\r\nConnection: close\r\n\r\n");
    (response.status, response.text())
}

#[test]
fn header_map_drops_refuses_or_passes_underscored_names() {
    let (status, text) = underscore_request("drop");
    assert_eq!(status, 200);
    assert!(!text.contains("HTTP_X_SPOOFED"), "{text}");

    let (status, _) = underscore_request("refuse");
    assert_eq!(status, 400);

    let (status, text) = underscore_request("dangerous");
    assert_eq!(status, 200);
    assert!(text.contains("HTTP_X_SPOOFED\tstr\t'1'"), "{text}");
}

#[test]
fn an_unknown_header_map_value_names_the_setting() {
    let mut server = ServerBuilder::new("echo:application")
        .arg("--header-map")
        .arg("sometimes")
        .spawn();
    let status = server.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(!status.success());
    assert!(server.log().contains("--header-map"), "{}", server.log());
}

/// The listen queue length `ss` reports for the server's port (Send-Q of
/// a listening socket is its backlog).
fn listen_backlog(port: u16) -> Option<u32> {
    let output = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("run ss (iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().next()?.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn backlog_sets_the_listen_queue_length() {
    let server = ServerBuilder::new("settings_app:application").start();
    assert_eq!(
        listen_backlog(server.port()),
        Some(2048),
        "gunicorn's default"
    );
    let server = ServerBuilder::new("settings_app:application")
        .arg("--backlog")
        .arg("64")
        .start();
    assert_eq!(listen_backlog(server.port()), Some(64));
}

#[test]
fn workers_run_the_apps_atexit_handlers_when_they_stop() {
    let dir = TempDir::new("atexit");
    let marker = dir.join("atexit");
    let mut server = ServerBuilder::new("settings_app:application")
        .workers(2)
        .env("RG_ATEXIT_FILE", marker.display().to_string())
        .start();
    assert_eq!(server.get("/").text(), "ok");
    let workers = server.worker_pids();
    assert!(server.stop().expect("stopped").success());
    let written = std::fs::read_to_string(&marker).unwrap_or_default();
    let mut pids: Vec<i32> = written.lines().filter_map(|l| l.parse().ok()).collect();
    pids.sort_unstable();
    let mut expected = workers.clone();
    expected.sort_unstable();
    assert_eq!(pids, expected, "each worker runs its atexit handlers once");
}

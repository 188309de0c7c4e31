//! The master's life cycle through the real binary: start and serve, replace
//! a killed worker, stop on TERM/INT without leaving a process behind, halt
//! with code 4 when the app cannot load, reject bad settings with one line,
//! resize on TTIN/TTOU and reload on HUP.
//!
//! Every server binds 127.0.0.1 on a free port, is held by a
//! [`support::Server`] guard (SIGTERM, then SIGKILL on drop), and every wait
//! has a deadline.

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::server::{free_port, process_alive, Address};
use support::{wait_until, Server, ServerBuilder, TempDir, BOOT_TIMEOUT};

/// How long a stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The app every server here serves unless a test says otherwise.
const HELLO_APP: &str = "hello_master:application";

/// `hello_master` with `workers` workers and a 5 s graceful timeout; `args`
/// go before the app.
fn hello(workers: u32, args: &[&str]) -> ServerBuilder {
    let builder = ServerBuilder::new(HELLO_APP)
        .workers(workers)
        .arg("--graceful-timeout")
        .arg("5");
    args.iter().fold(builder, |builder, arg| builder.arg(*arg))
}

/// The pids of the first `count` `Booting worker with pid:` lines.
fn wait_for_boots(server: &Server, count: usize) -> Vec<i32> {
    let booted = server.wait_for_log_count("Booting worker with pid: ", count, BOOT_TIMEOUT);
    assert!(booted, "{count} worker boots not logged:\n{}", server.log());
    server.worker_pids()[..count].to_vec()
}

/// The first log line containing `needle` (panics if none appears).
fn wait_for_line(server: &Server, needle: &str) -> String {
    server
        .wait_for_log_line(needle, BOOT_TIMEOUT)
        .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{}", server.log()))
}

/// Waits for the master to exit (panics with the log if it does not).
fn wait_for_exit(server: &mut Server, timeout: Duration) -> ExitStatus {
    server
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("rgunicorn did not exit:\n{}", server.log()))
}

/// The pid of the worker that answered a GET.
fn serving_pid(server: &Server) -> i32 {
    let response = server.get("/");
    let body = response.text();
    assert_eq!(
        (
            response.version.as_str(),
            response.status,
            response.reason.as_str()
        ),
        ("HTTP/1.1", 200, "OK"),
        "{body}\n{}",
        server.log()
    );
    let pid = body.trim().strip_prefix("hello from pid ").expect(&body);
    pid.parse().unwrap()
}

/// Waits until `pid` no longer exists (reaped by its parent).
fn wait_until_gone(pid: i32, server: &Server) {
    let gone = wait_until(STOP_TIMEOUT, || !process_alive(pid));
    assert!(gone, "worker {pid} still exists:\n{}", server.log());
}

fn sigkill(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
}

/// Runs rgunicorn to completion with `args` (no server expected to start).
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rgunicorn"));
    command
        .args(args)
        .env_remove("WEB_CONCURRENCY")
        .env_remove("PORT");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rgunicorn {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

#[test]
fn server_starts_and_serves() {
    let server = hello(2, &[]).start();
    let line = wait_for_line(&server, "Listening at: ");
    assert!(
        line.contains(&format!(
            "http://127.0.0.1:{} ({})",
            server.port(),
            server.pid()
        )),
        "{line}"
    );
    wait_for_line(&server, "Using worker: mio");
    let workers = wait_for_boots(&server, 2);
    assert!(workers.contains(&serving_pid(&server)));
}

#[test]
fn log_lines_have_gunicorns_format() {
    let server = hello(1, &[]).start();
    let line = wait_for_line(&server, "Starting rgunicorn 0.1.0");
    // [2026-11-23 09:30:00 +0000] [PID] [INFO] Starting rgunicorn 0.1.0
    let expected_tail = format!("] [{}] [INFO] Starting rgunicorn 0.1.0", server.pid());
    assert!(
        line.starts_with('[') && line.ends_with(&expected_tail),
        "{line}"
    );
    assert_eq!(line.find(']'), Some(26), "{line}");
}

#[test]
fn killed_worker_is_replaced() {
    let server = hello(1, &[]).start();
    let first = wait_for_boots(&server, 1)[0];
    assert_eq!(serving_pid(&server), first);
    sigkill(first);
    wait_for_line(
        &server,
        &format!("Worker (pid:{first}) was sent SIGKILL! Perhaps out of memory?"),
    );
    let second = wait_for_boots(&server, 2)[1];
    assert_ne!(second, first);
    assert_eq!(serving_pid(&server), second);
}

#[test]
fn term_stops_gracefully_with_code_0_and_no_process_left() {
    let mut server = hello(2, &[]).start();
    let workers = wait_for_boots(&server, 2);
    serving_pid(&server);
    server.signal(Signal::SIGTERM);
    let status = wait_for_exit(&mut server, STOP_TIMEOUT);
    let log = server.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("Handling signal: term"), "{log}");
    assert!(log.contains("Shutting down: Master"), "{log}");
    for pid in workers {
        assert!(!process_alive(pid), "worker {pid} outlived the master");
    }
}

#[test]
fn int_and_quit_stop_fast_with_code_0() {
    for signal in [Signal::SIGINT, Signal::SIGQUIT] {
        let mut server = hello(1, &[]).start();
        let workers = wait_for_boots(&server, 1);
        serving_pid(&server);
        server.signal(signal);
        let status = wait_for_exit(&mut server, Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{signal}: {}", server.log());
        assert!(
            !process_alive(workers[0]),
            "{signal}: worker outlived the master"
        );
    }
}

#[test]
fn app_load_failure_exits_4_quoting_the_exception() {
    let mut server = ServerBuilder::new("no_such_module_rg:application")
        .workers(2)
        .arg("--graceful-timeout")
        .arg("5")
        .spawn();
    let status = wait_for_exit(&mut server, BOOT_TIMEOUT);
    let log = server.log();
    assert_eq!(status.code(), Some(4), "{log}");
    assert!(log.contains("Reason: App failed to load."), "{log}");
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.starts_with("Error: worker failed to load the app: ModuleNotFoundError")
            && last.contains("no_such_module_rg"),
        "{log}"
    );
}

/// One bad-settings case: arguments, environment, expected message start.
type BadSettingsCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_settings_exit_non_zero_with_one_line_naming_the_setting() {
    let cases: &[BadSettingsCase] = &[
        (
            &["--bind", "x:y", "app:application"],
            &[],
            "Error: --bind: 'x:y'",
        ),
        (
            &["--bind", "unix:", "app:application"],
            &[],
            "Error: --bind: ",
        ),
        (
            &["-w", "0", "app:application"],
            &[],
            "Error: --workers: '0'",
        ),
        (
            &["-w", "lots", "app:application"],
            &[],
            "Error: --workers: 'lots'",
        ),
        (
            &["app:application"],
            &[("WEB_CONCURRENCY", "x")],
            "Error: WEB_CONCURRENCY: 'x'",
        ),
        (&["app:application"], &[("PORT", "x")], "Error: PORT: 'x'"),
        (
            &["--log-level", "loud", "app:application"],
            &[],
            "Error: --log-level: 'loud'",
        ),
        (
            &["9app:application"],
            &[],
            "Error: APP_MODULE: '9app:application'",
        ),
    ];
    for (args, env, expected) in cases {
        let (status, output) = run_to_exit(args, env);
        assert_eq!(status.code(), Some(1), "{args:?}: {output}");
        assert_eq!(output.lines().count(), 1, "{args:?}: {output}");
        assert!(output.starts_with(expected), "{args:?}: {output}");
    }
}

#[test]
fn malformed_command_lines_get_clap_usage_and_code_2() {
    for args in [&[][..], &["app:application", "--no-such-flag"][..]] {
        let (status, output) = run_to_exit(args, &[]);
        assert_eq!(status.code(), Some(2), "{args:?}: {output}");
        assert!(output.contains("Usage:"), "{args:?}: {output}");
    }
}

#[test]
fn version_flag_prints_the_version() {
    let (status, output) = run_to_exit(&["--version"], &[]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(output.trim(), "rgunicorn 0.1.0");
}

#[test]
fn address_in_use_exits_1_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    let (status, output) = run_to_exit(&["--bind", &bind, "app:application"], &[]);
    assert_eq!(status.code(), Some(1), "{output}");
    let last = output.lines().last().unwrap_or("");
    assert_eq!(
        last,
        format!("Error: cannot bind {bind}: Address already in use"),
        "{output}"
    );
    assert!(!output.contains("Booting worker"), "{output}");
}

#[test]
fn ttin_and_ttou_change_the_worker_count() {
    let server = hello(2, &[]).start();
    let boots = wait_for_boots(&server, 2);
    server.signal(Signal::SIGTTIN);
    let third = wait_for_boots(&server, 3)[2];

    server.signal(Signal::SIGTTOU);
    wait_until_gone(boots[0], &server);
    assert!(
        process_alive(boots[1]) && process_alive(third),
        "{}",
        server.log()
    );

    server.signal(Signal::SIGTTOU);
    wait_until_gone(boots[1], &server);
    assert!(process_alive(third), "{}", server.log());

    server.signal(Signal::SIGTTOU);
    wait_for_line(&server, "Keeping the last worker");
    assert!(process_alive(third), "{}", server.log());
    assert_eq!(server.worker_pids().len(), 3);
    assert_eq!(serving_pid(&server), third);
}

#[test]
fn hup_replaces_every_worker() {
    let server = hello(1, &[]).start();
    let old = wait_for_boots(&server, 1)[0];
    serving_pid(&server);
    server.signal(Signal::SIGHUP);
    let new = wait_for_boots(&server, 2)[1];
    wait_until_gone(old, &server);
    assert_eq!(serving_pid(&server), new);
}

#[test]
fn unix_socket_is_served_and_removed_at_exit() {
    let dir = TempDir::new("lifecycle");
    let path = dir.join("rgunicorn.sock");
    let bind = format!("unix:{}", path.display());
    let mut server = ServerBuilder::new(HELLO_APP).unix_socket(&path).start();
    wait_for_line(&server, &format!("Listening at: {bind} ("));
    wait_for_boots(&server, 1);
    serving_pid(&server);
    server.signal(Signal::SIGTERM);
    assert_eq!(wait_for_exit(&mut server, STOP_TIMEOUT).code(), Some(0));
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn web_concurrency_sets_the_default_worker_count() {
    let server = hello(2, &[])
        .without_workers_flag()
        .env("WEB_CONCURRENCY", "2")
        .start();
    wait_for_boots(&server, 2);
    serving_pid(&server);
}

#[test]
fn every_bound_address_is_served() {
    let second = free_port();
    let server = hello(1, &["--bind", &second.to_string()]).start();
    wait_for_line(&server, &format!("Listening at: http://{second} ("));
    let worker = wait_for_boots(&server, 1)[0];
    assert_eq!(serving_pid(&server), worker);
    let mut client = support::Client::connect(&Address::Tcp(second));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    let body = response.text();
    assert!(
        body.ends_with(&format!("hello from pid {worker}\n")),
        "{body}"
    );
}

#[test]
fn crash_looping_workers_are_respawned_with_a_growing_delay() {
    let mut server = hello(1, &[])
        .env("HELLO_MASTER_EXIT_AT_IMPORT", "1")
        .spawn();
    wait_for_line(&server, "exited with code 1");
    wait_for_line(&server, "waiting 0.1s before booting another");
    wait_for_line(&server, "waiting 0.2s before booting another");
    wait_for_line(&server, "waiting 0.4s before booting another");
    server.signal(Signal::SIGTERM);
    let status = wait_for_exit(&mut server, STOP_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn missing_chdir_exits_1_naming_the_setting() {
    let (status, output) = run_to_exit(&["--chdir", "/no/such/dir", "app:application"], &[]);
    assert_eq!(status.code(), Some(1), "{output}");
    let last = output.lines().last().unwrap_or("");
    assert_eq!(
        last, "Error: --chdir: cannot change to '/no/such/dir': No such file or directory",
        "{output}"
    );
}

#[test]
fn workers_die_with_a_killed_master() {
    let mut server = hello(2, &[]).start();
    let workers = wait_for_boots(&server, 2);
    serving_pid(&server);
    server.signal(Signal::SIGKILL);
    wait_for_exit(&mut server, STOP_TIMEOUT);
    for pid in workers {
        wait_until_gone(pid, &server);
    }
}

/// Starts `GET /sleep?SECONDS` on its own thread and returns once the app
/// says it is sleeping (the worker is then busy in the app).
fn start_slow_request(server: &Server, seconds: u32) -> std::thread::JoinHandle<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    write!(
        stream,
        "GET /sleep?{seconds} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let reader = std::thread::spawn(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    });
    wait_for_line(server, "hello_master: sleeping in pid");
    reader
}

#[test]
fn graceful_stop_kills_workers_that_outlive_the_graceful_timeout() {
    let mut server = hello(1, &["--graceful-timeout", "1"]).start();
    let worker = wait_for_boots(&server, 1)[0];
    serving_pid(&server);
    let request = start_slow_request(&server, 20);
    let stopping = Instant::now();
    server.signal(Signal::SIGTERM);
    assert_eq!(
        wait_for_exit(&mut server, STOP_TIMEOUT).code(),
        Some(0),
        "{}",
        server.log()
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
    assert!(server.log().contains("sending SIGKILL"), "{}", server.log());
    assert!(!process_alive(worker));
    request.join().unwrap();
}

#[test]
fn int_during_a_graceful_stop_makes_it_fast() {
    let mut server = hello(1, &["--graceful-timeout", "60"]).start();
    wait_for_boots(&server, 1);
    serving_pid(&server);
    let request = start_slow_request(&server, 20);
    let stopping = Instant::now();
    server.signal(Signal::SIGTERM);
    wait_for_line(&server, "Handling signal: term");
    server.signal(Signal::SIGINT);
    assert_eq!(
        wait_for_exit(&mut server, STOP_TIMEOUT).code(),
        Some(0),
        "{}",
        server.log()
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
    request.join().unwrap();
}

#[test]
fn a_retired_worker_that_outlives_the_graceful_timeout_is_killed() {
    let server = hello(1, &["--graceful-timeout", "1"]).start();
    let busy = wait_for_boots(&server, 1)[0];
    let request = start_slow_request(&server, 20);
    server.signal(Signal::SIGTTIN);
    let fresh = wait_for_boots(&server, 2)[1];
    server.signal(Signal::SIGTTOU);
    wait_for_line(
        &server,
        &format!("Worker (pid:{busy}) did not stop in 1s; killing it"),
    );
    wait_until_gone(busy, &server);
    assert!(process_alive(fresh));
    assert_eq!(serving_pid(&server), fresh);
    request.join().unwrap();
}

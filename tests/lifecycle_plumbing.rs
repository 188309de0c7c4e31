//! The master's life-cycle plumbing through the real binary: the pid file,
//! USR2 binary upgrade, systemd socket activation and readiness
//! notifications, `--reuse-port`, process titles and the error log file.
//!
//! Every server binds 127.0.0.1 (or a unix socket in a temp dir), is held by
//! a guard that TERMs then KILLs it by pid, and every wait has a deadline.

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::server::process_alive;
use support::server::Address;
use support::{wait_until, Server, ServerBuilder, TempDir, BOOT_TIMEOUT};

const APP: &str = "hello_master:application";
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("send signal");
}

/// One `GET /` over a fresh connection: the body, or `None` when the
/// connection was refused or broken.
fn get(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}

/// The pid a `hello_master` response names.
fn served_by(response: &str) -> Option<i32> {
    response
        .split("hello from pid ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A process the test started by other means than [`ServerBuilder`] (a
/// master started by USR2, or one started with inherited fds), stopped by
/// its pid on drop.
struct PidGuard(i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.0);
        let _ = kill(pid, Signal::SIGTERM);
        if !wait_until(STOP_TIMEOUT, || !process_alive(self.0)) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

#[test]
fn pid_file_is_written_while_serving_and_removed_at_exit() {
    let dir = TempDir::new("pidfile");
    let pid_file = dir.join("app.pid");
    let mut server = ServerBuilder::new(APP)
        .arg("--pid")
        .arg(pid_file.to_str().unwrap())
        .start();
    assert!(wait_until(BOOT_TIMEOUT, || read_pid(&pid_file).is_some()));
    let content = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(content, format!("{}\n", server.pid()));

    // A second server with the same pid file refuses to start.
    let mut second = ServerBuilder::new(APP)
        .arg("-p")
        .arg(pid_file.to_str().unwrap())
        .spawn();
    let status = second.wait_exit(BOOT_TIMEOUT).expect("second server exits");
    assert_eq!(status.code(), Some(1), "{}", second.log());
    assert!(second.log().contains("--pid"), "{}", second.log());
    assert_eq!(read_pid(&pid_file), Some(server.pid() as i32));

    server.stop();
    assert!(!pid_file.exists(), "{}", server.log());
}

#[test]
fn a_stale_pid_file_is_replaced() {
    let dir = TempDir::new("stalepid");
    let pid_file = dir.join("app.pid");
    std::fs::write(&pid_file, "999999999\n").unwrap();
    let server = ServerBuilder::new(APP)
        .arg("--pid")
        .arg(pid_file.to_str().unwrap())
        .start();
    let master = server.pid() as i32;
    assert!(wait_until(BOOT_TIMEOUT, || read_pid(&pid_file) == Some(master)));
}

#[test]
fn usr2_starts_a_new_master_on_the_same_socket_without_refusing_connections() {
    let dir = TempDir::new("usr2");
    let pid_file = dir.join("app.pid");
    let oldbin = dir.join("app.pid.oldbin");
    let mut old = ServerBuilder::new(APP)
        .workers(2)
        .arg("--pid")
        .arg(pid_file.to_str().unwrap())
        .start();
    let addr = format!("127.0.0.1:{}", old.port());
    let old_pid = old.pid() as i32;
    assert!(wait_until(BOOT_TIMEOUT, || read_pid(&pid_file) == Some(old_pid)));

    signal(old.pid(), Signal::SIGUSR2);
    assert!(
        old.wait_for_log("Booting new master with pid: ", BOOT_TIMEOUT),
        "{}",
        old.log()
    );
    let new_pid: i32 = old
        .log()
        .split("Booting new master with pid: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("new master pid");
    let _new_master = PidGuard(new_pid);
    assert!(old.log().contains("Handling signal: usr2"));
    let new_worker_line = format!("[{new_pid}] [INFO] Booting worker with pid: ");
    assert!(
        old.wait_for_log_count(&new_worker_line, 2, BOOT_TIMEOUT),
        "{}",
        old.log()
    );
    assert!(wait_until(BOOT_TIMEOUT, || read_pid(&pid_file) == Some(new_pid)));
    assert_eq!(read_pid(&oldbin), Some(old_pid));

    // Both masters' workers serve on the one socket; stop the old master
    // while a client keeps connecting: no request may fail.
    let failures = Arc::new(Mutex::new(0usize));
    let served = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (failures, served, stop, addr) = (
            Arc::clone(&failures),
            Arc::clone(&served),
            Arc::clone(&stop),
            addr.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match get(&addr) {
                    Some(response) => served.lock().unwrap().extend(served_by(&response)),
                    None => *failures.lock().unwrap() += 1,
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // Not `old.stop()`: it also kills the workers the log names, which
    // include the new master's.
    signal(old.pid(), Signal::SIGTERM);
    assert!(old.wait_exit(STOP_TIMEOUT).is_some());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(*failures.lock().unwrap(), 0, "{}", old.log());
    assert!(!served.lock().unwrap().is_empty());

    // The new master serves alone, owns the pid file; the old one removed
    // only its `.oldbin`.
    let response = get(&addr).expect("new master serves");
    let worker = served_by(&response).unwrap();
    assert!(old.log().contains(&format!(
        "[{new_pid}] [INFO] Booting worker with pid: {worker}"
    )));
    assert_eq!(read_pid(&pid_file), Some(new_pid));
    assert!(!oldbin.exists());

    signal(new_pid as u32, Signal::SIGTERM);
    assert!(wait_until(STOP_TIMEOUT, || !process_alive(new_pid)));
    assert!(wait_until(STOP_TIMEOUT, || !pid_file.exists()));
}

#[test]
fn usr2_with_a_unix_socket_leaves_the_file_to_the_new_master() {
    let dir = TempDir::new("usr2unix");
    let socket = dir.join("app.sock");
    let mut old = ServerBuilder::new(APP).unix_socket(&socket).start();
    signal(old.pid(), Signal::SIGUSR2);
    assert!(old.wait_for_log("Booting new master with pid: ", BOOT_TIMEOUT));
    let new_pid: i32 = old
        .log()
        .split("Booting new master with pid: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap();
    let _new_master = PidGuard(new_pid);
    let new_worker_line = format!("[{new_pid}] [INFO] Booting worker with pid: ");
    assert!(old.wait_for_log(&new_worker_line, BOOT_TIMEOUT));
    signal(old.pid(), Signal::SIGTERM);
    assert!(old.wait_exit(STOP_TIMEOUT).is_some());
    assert!(socket.exists(), "{}", old.log());
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    signal(new_pid as u32, Signal::SIGTERM);
    assert!(wait_until(STOP_TIMEOUT, || !process_alive(new_pid)));
    assert!(!socket.exists());
}

#[test]
fn gunicorn_fd_sockets_are_adopted_for_the_bind_address_they_listen_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rgunicorn"));
    command
        .args(["--bind", &addr.to_string(), "--chdir"])
        .arg(support::apps_dir())
        .arg(APP)
        .env("GUNICORN_FD", "3");
    // Binding the address again would fail: the server must adopt fd 3.
    let server = Server::spawn_command(command, Address::Tcp(addr), Some(listener.as_raw_fd()));
    drop(listener);
    assert!(
        server.wait_for_log("Booting worker", BOOT_TIMEOUT),
        "{}",
        server.log()
    );
    assert!(server
        .log()
        .contains("Using 1 socket(s) inherited from the old master"));
    assert_eq!(server.log().matches("Listening at:").count(), 1);
    let response = wait_for_response(&addr.to_string());
    assert!(response.contains("hello from pid"), "{response}");
}

#[test]
fn usr2_with_the_binary_gone_keeps_the_old_master_and_its_pid_file() {
    let dir = TempDir::new("usr2gone");
    let binary = dir.join("rgunicorn");
    // The master and, beside it, the Python program it runs for workers.
    for (from, to) in [
        (env!("CARGO_BIN_EXE_rgunicorn"), binary.clone()),
        (
            env!("CARGO_BIN_EXE_rgunicorn-python"),
            dir.join("rgunicorn-python"),
        ),
    ] {
        if std::fs::hard_link(from, &to).is_err() {
            std::fs::copy(from, &to).unwrap();
        }
    }
    let pid_file = dir.join("app.pid");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut command = Command::new(&binary);
    command
        .args(["--bind", &addr.to_string(), "--pid"])
        .arg(&pid_file)
        .arg("--chdir")
        .arg(support::apps_dir())
        .arg(APP);
    let server = Server::spawn_command(command, Address::Tcp(addr), None);
    assert!(
        server.wait_for_log("Booting worker", BOOT_TIMEOUT),
        "{}",
        server.log()
    );
    let master = server.pid() as i32;
    assert!(wait_until(BOOT_TIMEOUT, || read_pid(&pid_file) == Some(master)));

    std::fs::remove_file(&binary).unwrap();
    signal(server.pid(), Signal::SIGUSR2);
    assert!(
        server.wait_for_log("exited with code 127", BOOT_TIMEOUT),
        "{}",
        server.log()
    );
    assert!(server.wait_for_log("Upgrade abandoned", BOOT_TIMEOUT));
    assert_eq!(read_pid(&pid_file), Some(master));
    assert!(!dir.join("app.pid.oldbin").exists());
    let response = wait_for_response(&addr.to_string());
    assert!(response.contains("hello from pid"), "{response}");
}

#[test]
fn systemd_socket_activation_serves_on_the_passed_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::socket_activated(&listener, &[], APP);
    drop(listener); // only the server holds it now
    assert!(
        wait_until(BOOT_TIMEOUT, || server.log().contains("Booting worker")),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("Using systemd socket activation"), "{log}");
    assert!(
        log.contains(&format!("Listening at: http://{addr}")),
        "{log}"
    );
    assert!(!log.contains("127.0.0.1:8000"), "{log}");
    let response = wait_for_response(&addr.to_string());
    assert!(response.contains("hello from pid"), "{response}");
}

#[test]
fn usr2_hands_systemd_sockets_over_as_systemd_sockets() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::socket_activated(&listener, &[], APP);
    drop(listener);
    assert!(wait_until(BOOT_TIMEOUT, || server
        .log()
        .contains("Booting worker")));
    signal(server.pid(), Signal::SIGUSR2);
    assert!(wait_until(BOOT_TIMEOUT, || server
        .log()
        .contains("Booting new master with pid: ")));
    let new_pid: i32 = server
        .log()
        .split("Booting new master with pid: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap();
    let _new_master = PidGuard(new_pid);
    let line = format!("[{new_pid}] [INFO] Using systemd socket activation");
    assert!(
        wait_until(BOOT_TIMEOUT, || server.log().contains(&line)),
        "{}",
        server.log()
    );
    let listening = format!("[{new_pid}] [INFO] Listening at: http://{addr}");
    assert!(server.log().contains(&listening), "{}", server.log());
    // The new master refuses a second upgrade while its old master runs.
    let booted = format!("[{new_pid}] [INFO] Booting worker");
    assert!(wait_until(BOOT_TIMEOUT, || server.log().contains(&booted)));
    signal(new_pid as u32, Signal::SIGUSR2);
    let ignored = format!("[{new_pid}] [WARNING] USR2 signal ignored");
    assert!(
        wait_until(BOOT_TIMEOUT, || server.log().contains(&ignored)),
        "{}",
        server.log()
    );
}

fn wait_for_response(addr: &str) -> String {
    let mut response = None;
    wait_until(BOOT_TIMEOUT, || {
        response = get(addr);
        response.is_some()
    });
    response.expect("a response")
}

/// Receives one datagram, or `None` after `timeout`.
fn receive(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn notify_socket_hears_ready_reloading_and_stopping() {
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    let mut server = ServerBuilder::new(APP)
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .start();
    assert_eq!(
        receive(&receiver, BOOT_TIMEOUT).as_deref(),
        Some("READY=1"),
        "{}",
        server.log()
    );
    signal(server.pid(), Signal::SIGHUP);
    assert_eq!(
        receive(&receiver, BOOT_TIMEOUT).as_deref(),
        Some("RELOADING=1")
    );
    assert_eq!(receive(&receiver, BOOT_TIMEOUT).as_deref(), Some("READY=1"));
    server.stop();
    assert_eq!(
        receive(&receiver, Duration::from_secs(5)).as_deref(),
        Some("STOPPING=1")
    );
}

#[test]
fn reuse_port_serves_with_two_workers_each_on_its_own_socket() {
    let server = ServerBuilder::new(APP)
        .workers(2)
        .arg("--reuse-port")
        .start();
    let addr = format!("127.0.0.1:{}", server.port());
    let workers = server.worker_pids();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let response = get(&addr).expect("served");
        seen.insert(served_by(&response).unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    // New connections are hashed over both workers' sockets.
    assert_eq!(seen.len(), 2, "only {seen:?} of {workers:?} served");
}

#[test]
fn ps_shows_the_master_and_worker_titles() {
    let server = ServerBuilder::new(APP).workers(1).start();
    let cmdline = |pid: i32| {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " ")
            .trim_end()
            .to_string()
    };
    let comm = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim_end()
            .to_string()
    };
    let master = server.pid() as i32;
    assert!(wait_until(BOOT_TIMEOUT, || cmdline(master)
        .starts_with("rgunicorn: master [")));
    assert_eq!(cmdline(master), format!("rgunicorn: master [{APP}]"));
    assert_eq!(comm(master), "rgunicorn: mast");
    let worker = server.worker_pids()[0];
    // A worker shows the master's title from the fork until it sets its own.
    assert!(wait_until(BOOT_TIMEOUT, || cmdline(worker)
        .starts_with("rgunicorn: worker [")));
    assert_eq!(cmdline(worker), format!("rgunicorn: worker [{APP}]"));
    assert_eq!(comm(worker), "rgunicorn: work");

    let output = Command::new("ps")
        .args(["-o", "args=", "-p", &master.to_string()])
        .output();
    if let Ok(output) = output {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("rgunicorn: master ["), "{text}");
    }

    let named = ServerBuilder::new(APP).arg("--name").arg("shop").start();
    let master = named.pid() as i32;
    assert!(wait_until(BOOT_TIMEOUT, || cmdline(master)
        == "rgunicorn: master [shop]"));
}

#[test]
fn error_log_file_is_reopened_on_usr1_by_master_and_workers() {
    let dir = TempDir::new("errorlog");
    let log_path = dir.join("error.log");
    let rotated = dir.join("error.log.1");
    let server = ServerBuilder::new(APP)
        .arg("--error-logfile")
        .arg(log_path.to_str().unwrap())
        .spawn();
    let contents = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        wait_until(BOOT_TIMEOUT, || contents(&log_path)
            .contains("Booting worker with pid: ")),
        "{}",
        contents(&log_path)
    );
    let addr = match server.address() {
        support::server::Address::Tcp(addr) => addr.to_string(),
        support::server::Address::Unix(_) => unreachable!(),
    };
    wait_for_response(&addr);
    assert!(!server.log().contains("Booting worker"), "{}", server.log());

    std::fs::rename(&log_path, &rotated).unwrap();
    signal(server.pid(), Signal::SIGUSR1);
    assert!(wait_until(BOOT_TIMEOUT, || log_path.exists()));
    // The worker's stderr (where the app prints) moved to the new file too.
    assert!(wait_until(BOOT_TIMEOUT, || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        let _ = stream.write_all(b"GET /sleep?0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let _ = stream.read_to_end(&mut Vec::new());
        contents(&log_path).contains("hello_master: sleeping in pid")
    }));
    assert!(contents(&rotated).contains("Handling signal: usr1"));
}

#[test]
fn unusable_log_and_pid_paths_fail_before_binding_with_one_line() {
    let cases = [
        ("--error-logfile", "Error: --error-logfile: cannot open"),
        ("--pid", "Error: --pid: cannot write"),
    ];
    for (flag, expected) in cases {
        let mut server = ServerBuilder::new(APP)
            .arg(flag)
            .arg("/nonexistent-rgunicorn-dir/file")
            .spawn();
        let status = server.wait_exit(BOOT_TIMEOUT).expect("exits");
        assert_eq!(status.code(), Some(1), "{}", server.log());
        let log = server.log();
        assert_eq!(log.matches(expected).count(), 1, "{log}");
        assert!(!log.contains("Listening at"), "{log}");
    }
}

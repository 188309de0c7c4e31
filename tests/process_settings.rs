//! The process settings, through the real binary: `--user`/`--group`/
//! `--initgroups` (the workers switch identity, the master stays as
//! started, unix socket files are given to the user, unknown names are
//! config errors), `--daemon` (the command returns, the daemon writes its
//! own pid, serves, stops on TERM; WINCH stops only the workers, HUP brings
//! them back) and `--reload`/`--reload-extra-file` (changed files are
//! served without any signal from the test).
//!
//! The identity tests need root (CI runs as root) and say so when skipped.
//! Every server binds 127.0.0.1 only and is stopped by its PID; every wait
//! has a deadline.

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};
use support::server::{free_port, process_alive};
use support::{wait_until, ServerBuilder, TempDir, BOOT_TIMEOUT, READ_TIMEOUT};

const IDENTITY_APP: &str = "identity:application";
/// How long a reload, a boot or a stop may take on a busy machine.
const SLOW: Duration = Duration::from_secs(30);

fn running_as_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: switching identity needs root");
    false
}

/// `GET /` on a new connection; the body of a 200, else `None` (never
/// panics, so it can be polled while a server starts or reloads).
fn try_get(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, READ_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The `Uid:` line of `/proc/PID/status`: real, effective, saved, fs.
fn proc_uids(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .map(|uids| uids.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Whether a user other than root can reach the interpreter's files (every
/// directory above the Python library searchable by others). When not
/// (e.g. a pyenv under /root), a worker that dropped root cannot start
/// Python: the tests then check exactly that failure instead.
fn interpreter_readable_by_others() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let libdir = PathBuf::from(option_env!("RGUNICORN_PYTHON_LIBDIR").unwrap_or("/usr/lib"));
    libdir
        .ancestors()
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// What the identity app reports when the worker runs with `args`, and the
/// master's uids; `None` when the worker, having dropped root, could not
/// read the interpreter (asserted: exit code 3, `Permission denied`).
fn identity_of_worker(args: &[&str]) -> Option<(String, String)> {
    let mut builder = ServerBuilder::new(IDENTITY_APP);
    for arg in args {
        builder = builder.arg(*arg);
    }
    if !interpreter_readable_by_others() {
        let mut server = builder.spawn();
        let status = server.wait_exit(BOOT_TIMEOUT).expect("halts");
        assert_eq!(status.code(), Some(3), "{}", server.log());
        assert!(
            server.log().contains("Permission denied"),
            "{}",
            server.log()
        );
        eprintln!("the interpreter is unreadable once root is dropped: checked the boot failure");
        return None;
    }
    let server = builder.start();
    let response = server.get("/");
    assert_eq!(response.status, 200, "{}", server.log());
    Some((response.text(), proc_uids(server.pid())))
}

#[test]
fn user_runs_the_workers_as_that_user_while_the_master_stays_root() {
    if !running_as_root() {
        return;
    }
    let Some((worker, master)) = identity_of_worker(&["--user", "nobody"]) else {
        return;
    };
    // gunicorn's default group is the master's own.
    assert_eq!(worker, "uid=65534 gid=0 euid=65534 groups=0");
    assert_eq!(master, "0 0 0 0");
}

#[test]
fn numeric_user_and_group_are_taken_as_ids() {
    if !running_as_root() {
        return;
    }
    let Some((worker, _)) = identity_of_worker(&["-u", "65534", "-g", "65534"]) else {
        return;
    };
    assert_eq!(worker, "uid=65534 gid=65534 euid=65534 groups=65534");
}

#[test]
fn group_alone_switches_the_group_and_drops_roots_other_groups() {
    if !running_as_root() {
        return;
    }
    // uid 0 keeps the interpreter readable wherever it is installed.
    let server = ServerBuilder::new(IDENTITY_APP)
        .arg("--user")
        .arg("0")
        .arg("--group")
        .arg("65534")
        .start();
    let response = server.get("/");
    assert_eq!(
        response.text(),
        "uid=0 gid=65534 euid=0 groups=65534",
        "{}",
        server.log()
    );
    assert_eq!(proc_uids(server.pid()), "0 0 0 0");
}

/// An account that is a member of some group besides its own (`name`,
/// primary gid, sorted expected groups), from /etc/passwd and /etc/group;
/// `nobody` when there is none.
fn account_with_supplementary_groups() -> (String, u32, Vec<u32>) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let primary_gid = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name).then(|| fields[3].parse::<u32>().ok())?
        })
    };
    let member_of = |name: &str| -> Vec<u32> {
        groups
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let members = fields.get(3)?;
                members
                    .split(',')
                    .any(|m| m == name)
                    .then(|| fields[2].parse().ok())?
            })
            .collect()
    };
    let candidate = groups.lines().find_map(|line| {
        let member = line.split(':').nth(3)?.split(',').next()?;
        let gid = primary_gid(member)?;
        Some((member.to_string(), gid))
    });
    let (name, gid) = candidate.unwrap_or(("nobody".to_string(), 65534));
    let mut expected = member_of(&name);
    expected.push(gid);
    expected.sort();
    expected.dedup();
    (name, gid, expected)
}

#[test]
fn initgroups_gives_the_workers_the_accounts_supplementary_groups() {
    if !running_as_root() {
        return;
    }
    let (name, gid, expected) = account_with_supplementary_groups();
    let gid_text = gid.to_string();
    let Some((with, _)) =
        identity_of_worker(&["--user", &name, "--group", &gid_text, "--initgroups"])
    else {
        return;
    };
    let groups: Vec<String> = expected.iter().map(u32::to_string).collect();
    assert!(
        with.ends_with(&format!("groups={}", groups.join(","))),
        "{name}: {with}"
    );
    // Without --initgroups only the target group is kept.
    let Some((without, _)) = identity_of_worker(&["--user", &name, "--group", &gid_text]) else {
        return;
    };
    assert!(
        without.ends_with(&format!("groups={gid}")),
        "{name}: {without}"
    );
}

#[test]
fn unknown_user_or_group_is_a_config_error_naming_the_flag() {
    for (flag, name, message) in [
        ("--user", "no-such-user-rg", "no such user"),
        ("--group", "no-such-group-rg", "no such group"),
    ] {
        let mut server = ServerBuilder::new(IDENTITY_APP).arg(flag).arg(name).spawn();
        let status = server.wait_exit(BOOT_TIMEOUT).expect("exits");
        assert_eq!(status.code(), Some(1), "{}", server.log());
        let log = server.log();
        let line = log.lines().find(|l| l.contains(message)).unwrap_or("");
        assert!(line.contains(flag) && line.contains(name), "{log}");
    }
}

#[test]
fn unix_socket_file_belongs_to_the_workers_user() {
    if !running_as_root() {
        return;
    }
    let dir = TempDir::new("identity-unix");
    let socket = dir.join("app.sock");
    let server = ServerBuilder::new(IDENTITY_APP)
        .unix_socket(&socket)
        .arg("--user")
        .arg("0")
        .arg("--group")
        .arg("65534")
        .start();
    let metadata = std::fs::metadata(&socket).expect("socket file");
    assert_eq!((metadata.uid(), metadata.gid()), (0, 65534));
    assert_eq!(server.get("/").status, 200, "{}", server.log());
}

/// A daemon started by a test: stopped (TERM, then KILL) with its workers
/// when dropped.
struct Daemon {
    pid: i32,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn worker_pids(&self) -> Vec<i32> {
        self.log()
            .lines()
            .filter_map(|line| line.split("Booting worker with pid: ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal).expect("signal the daemon");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        if !wait_until(SLOW, || !process_alive(self.pid)) {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        for worker in self.worker_pids() {
            if !wait_until(Duration::from_secs(2), || !process_alive(worker)) {
                let _ = kill(Pid::from_raw(worker), Signal::SIGKILL);
            }
        }
    }
}

fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// The launcher of a daemon in `dir` (its working directory) with
/// relative `--pid app.pid` and `--error-logfile error.log`, which must
/// mean files in `dir` although the daemon detached.
fn daemon_command(dir: &TempDir, address: SocketAddr) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rgunicorn"));
    command
        .current_dir(dir.path())
        .arg("--bind")
        .arg(address.to_string())
        .arg("--pythonpath")
        .arg(support::apps_dir())
        .args([
            "--daemon",
            "--pid",
            "app.pid",
            "--error-logfile",
            "error.log",
        ])
        .arg("hello:application")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts `--daemon` on `address` in `dir`; asserts the command returns 0
/// at once, having let go of its stdout and stderr (they reach end of
/// file), and that `dir/app.pid` names another process, which serves.
fn start_daemon(dir: &TempDir, address: SocketAddr) -> Daemon {
    let log = dir.join("error.log");
    let pid_file = &dir.join("app.pid");
    let mut launcher = daemon_command(dir, address)
        .spawn()
        .expect("spawn rgunicorn");
    let launcher_pid = launcher.id();
    let (sender, streams_closed) = std::sync::mpsc::channel();
    for mut stream in [
        Box::new(launcher.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(launcher.stderr.take().unwrap()),
    ] {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            let _ = sender.send(text);
        });
    }
    let exited = wait_until(Duration::from_secs(5), || {
        launcher.try_wait().ok().flatten().is_some()
    });
    let status = launcher.try_wait().ok().flatten();
    assert!(
        wait_until(BOOT_TIMEOUT, || read_pid(pid_file).is_some()),
        "no pid file: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let daemon = Daemon {
        pid: read_pid(pid_file).unwrap(),
        log,
    };
    assert!(exited && status.is_some_and(|s| s.success()), "{status:?}");
    for _ in 0..2 {
        let text = streams_closed.recv_timeout(READ_TIMEOUT);
        assert!(text.is_ok(), "the daemon holds its launcher's output");
    }
    assert_ne!(daemon.pid as u32, launcher_pid);
    assert!(process_alive(daemon.pid));
    assert!(
        wait_until(BOOT_TIMEOUT, || try_get(address).is_some()),
        "{}",
        daemon.log()
    );
    daemon
}

#[test]
fn daemon_detaches_writes_its_pid_serves_and_stops_on_term() {
    let dir = TempDir::new("daemon");
    let pid_file = dir.join("app.pid");
    let address = free_port();
    let daemon = start_daemon(&dir, address);
    // A new session: the daemon leads no session and has no terminal.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid)).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (session, tty) = (fields[3], fields[4]);
    assert_ne!(session, daemon.pid.to_string());
    assert_eq!(tty, "0");
    assert!(daemon.log().contains("Listening at: http://"));
    // A second start with the same pid file is refused in the foreground.
    let second = daemon_command(&dir, free_port()).output().expect("run");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("app.pid"), "{stderr}");
    assert_eq!(read_pid(&pid_file), Some(daemon.pid));
    daemon.signal(Signal::SIGTERM);
    assert!(
        wait_until(SLOW, || !process_alive(daemon.pid)),
        "{}",
        daemon.log()
    );
    assert!(wait_until(Duration::from_secs(2), || !pid_file.exists()));
}

#[test]
fn winch_stops_a_daemons_workers_and_hup_brings_them_back() {
    let dir = TempDir::new("daemon-winch");
    let address = free_port();
    let daemon = start_daemon(&dir, address);
    let first = daemon.worker_pids();
    assert_eq!(first.len(), 1, "{}", daemon.log());
    daemon.signal(Signal::SIGWINCH);
    assert!(
        wait_until(SLOW, || !process_alive(first[0])),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("graceful stop of workers"));
    assert!(process_alive(daemon.pid));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(daemon.worker_pids().len(), 1, "no worker while stopped");
    daemon.signal(Signal::SIGHUP);
    assert!(
        wait_until(SLOW, || try_get(address).is_some()),
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.worker_pids().len(), 2);
}

fn write_with_mtime(path: &Path, text: &str, mtime: SystemTime) {
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

const RELOAD_APP: &str = r#"
import os

with open(os.path.join(os.path.dirname(__file__), "extra.txt")) as extra:
    EXTRA = extra.read().strip()


def application(environ, start_response):
    body = ("VERSION " + EXTRA).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"#;

fn start_reloading(dir: &TempDir, extra_arg: bool) -> support::Server {
    let mut builder = ServerBuilder::new("reload_app:application")
        .without_chdir()
        .arg("--chdir")
        .arg(dir.path().display().to_string())
        .arg("--reload");
    if extra_arg {
        builder = builder
            .arg("--reload-extra-file")
            .arg(dir.join("extra.txt").display().to_string());
    }
    builder.start()
}

fn body_becomes(server: &support::Server, expected: &str) -> bool {
    let support::server::Address::Tcp(address) = server.address().clone() else {
        panic!("tcp server");
    };
    wait_until(SLOW, || try_get(address).as_deref() == Some(expected))
}

#[test]
fn reload_serves_a_changed_app_file_without_any_signal() {
    let dir = TempDir::new("reload");
    let app = dir.join("reload_app.py");
    let start = SystemTime::now();
    write_with_mtime(&app, &RELOAD_APP.replace("VERSION", "v1"), start);
    std::fs::write(dir.join("extra.txt"), "x").unwrap();
    let server = start_reloading(&dir, false);
    assert!(body_becomes(&server, "v1 x"), "{}", server.log());
    write_with_mtime(
        &app,
        &RELOAD_APP.replace("VERSION", "v2"),
        start + Duration::from_secs(10),
    );
    assert!(body_becomes(&server, "v2 x"), "{}", server.log());
    let modified = format!("Worker reloading: {} modified", app.display());
    assert!(server.log().contains(&modified), "{}", server.log());
}

#[test]
fn one_change_seen_by_several_workers_is_one_reload() {
    let dir = TempDir::new("reload-once");
    let app = dir.join("reload_app.py");
    let start = SystemTime::now();
    write_with_mtime(&app, &RELOAD_APP.replace("VERSION", "v1"), start);
    std::fs::write(dir.join("extra.txt"), "x").unwrap();
    let server = ServerBuilder::new("reload_app:application")
        .without_chdir()
        .arg("--chdir")
        .arg(dir.path().display().to_string())
        .arg("--reload")
        .workers(3)
        .start();
    assert!(body_becomes(&server, "v1 x"), "{}", server.log());
    write_with_mtime(
        &app,
        &RELOAD_APP.replace("VERSION", "v2"),
        start + Duration::from_secs(10),
    );
    assert!(body_becomes(&server, "v2 x"), "{}", server.log());
    // Every old worker notices the change; the master reloads once, so
    // three old workers are followed by exactly three new ones.
    assert!(
        wait_until(SLOW, || server.worker_pids().len() >= 6),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.log_count("Hang up: Master"), 1, "{}", server.log());
    assert_eq!(server.worker_pids().len(), 6, "{}", server.log());
}

#[test]
fn reload_extra_file_change_reloads_too() {
    let dir = TempDir::new("reload-extra");
    let start = SystemTime::now();
    write_with_mtime(
        &dir.join("reload_app.py"),
        &RELOAD_APP.replace("VERSION", "v1"),
        start,
    );
    let extra = dir.join("extra.txt");
    write_with_mtime(&extra, "before", start);
    let server = start_reloading(&dir, true);
    assert!(body_becomes(&server, "v1 before"), "{}", server.log());
    write_with_mtime(&extra, "after", start + Duration::from_secs(10));
    assert!(body_becomes(&server, "v1 after"), "{}", server.log());
}

#[test]
fn reload_of_a_broken_file_keeps_the_old_workers_until_it_is_fixed() {
    let dir = TempDir::new("reload-broken");
    let app = dir.join("reload_app.py");
    let start = SystemTime::now();
    write_with_mtime(&app, &RELOAD_APP.replace("VERSION", "v1"), start);
    std::fs::write(dir.join("extra.txt"), "x").unwrap();
    let server = start_reloading(&dir, false);
    assert!(body_becomes(&server, "v1 x"), "{}", server.log());
    write_with_mtime(&app, "def broken(:\n", start + Duration::from_secs(10));
    assert!(
        server.wait_for_log("Reload failed", SLOW),
        "{}",
        server.log()
    );
    assert_eq!(server.get("/").text(), "v1 x");
    write_with_mtime(
        &app,
        &RELOAD_APP.replace("VERSION", "v3"),
        start + Duration::from_secs(20),
    );
    assert!(body_becomes(&server, "v3 x"), "{}", server.log());
}

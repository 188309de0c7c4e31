//! The master's life cycle through the real binary: start and serve, replace
//! a killed worker, stop on TERM/INT without leaving a process behind, halt
//! with code 4 when the app cannot load, reject bad settings with one line,
//! resize on TTIN/TTOU and reload on HUP.
//!
//! Every server binds 127.0.0.1 on a free port, is held by a [`Server`] guard
//! (SIGTERM, then SIGKILL on drop), and every wait has a deadline.

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to boot its workers (Python start-up included).
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The app every server here serves unless a test says otherwise.
const HELLO_APP: &str = "hello_master:application";

fn apps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The master's stderr, collected line by line by a reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Log {
    fn collect(self: Arc<Self>, stream: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                self.lines.lock().unwrap().0.push(line);
                self.changed.notify_all();
            }
            self.lines.lock().unwrap().1 = true;
            self.changed.notify_all();
        });
    }

    /// Waits until `found` returns `Some` on the lines so far (or the stream
    /// ends, or the deadline passes).
    fn wait_until<T>(
        &self,
        timeout: Duration,
        found: impl Fn(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lock().unwrap();
        loop {
            if let Some(value) = found(&guard.0) {
                return Some(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if guard.1 || left.is_zero() {
                return None;
            }
            guard = self.changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().0.join("\n")
    }
}

/// A running `rgunicorn`: SIGTERM then SIGKILL on drop.
struct Server {
    child: Child,
    log: Arc<Log>,
    port: u16,
}

impl Server {
    /// Starts `rgunicorn ARGS hello_master:application` (from the apps
    /// directory) on a free port.
    fn start(args: &[&str]) -> Server {
        Server::launch(args, &[], HELLO_APP)
    }

    /// [`Server::start`] with extra environment variables.
    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(args, env, HELLO_APP)
    }

    /// `rgunicorn ARGS APP` on a free port with extra environment variables.
    fn launch(args: &[&str], env: &[(&str, &str)], app: &str) -> Server {
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let mut full: Vec<&str> = vec!["--bind", &bind, "--graceful-timeout", "5"];
        full.extend_from_slice(args);
        full.push(app);
        Server::spawn(&full, env, port)
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], port: u16) -> Server {
        let apps = apps_dir();
        let apps = apps.to_str().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_rgunicorn"));
        command
            .args(["--chdir", apps, "--pythonpath", apps])
            .args(args)
            .env_remove("WEB_CONCURRENCY")
            .env_remove("PORT")
            .env_remove("HELLO_MASTER_EXIT_AT_IMPORT");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rgunicorn");
        let log = Arc::new(Log::default());
        log.clone().collect(child.stderr.take().unwrap());
        Server { child, log, port }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// The pids of the first `count` `Booting worker with pid:` lines.
    fn wait_for_boots(&self, count: usize) -> Vec<Pid> {
        self.log
            .wait_until(BOOT_TIMEOUT, |lines| {
                let pids = booted_pids(lines);
                (pids.len() >= count).then(|| pids[..count].to_vec())
            })
            .unwrap_or_else(|| panic!("{count} worker boots not logged:\n{}", self.log.text()))
    }

    fn wait_for_line(&self, needle: &str) -> String {
        self.log
            .wait_until(BOOT_TIMEOUT, |lines| {
                lines.iter().find(|l| l.contains(needle)).cloned()
            })
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{}", self.log.text()))
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread sees EOF once every holder of stderr is gone.
                self.log.wait_until(Duration::from_secs(5), |_| None::<()>);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rgunicorn did not exit:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` over a fresh connection; returns (status line, body).
    fn get(&self, path: &str) -> (String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("reading the response: {e}\n{}", self.log.text()));
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    /// The pid of the worker that answered a GET.
    fn serving_pid(&self) -> Pid {
        let (status, body) = self.get("/");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}\n{}", self.log.text());
        let pid = body.trim().strip_prefix("hello from pid ").expect(&body);
        Pid::from_raw(pid.parse().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- rgunicorn log ---\n{}", self.log.text());
        }
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn booted_pids(lines: &[String]) -> Vec<Pid> {
    lines
        .iter()
        .filter_map(|line| line.split("Booting worker with pid: ").nth(1))
        .filter_map(|pid| pid.trim().parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// Whether `pid` exists and is not a zombie (an orphan's zombie waits for
/// whatever reaps orphans here, which may be slow or nothing at all).
fn is_alive(pid: Pid) -> bool {
    if kill(pid, None) == Err(Errno::ESRCH) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` no longer exists (reaped by its parent).
fn wait_until_gone(pid: Pid, log: &Log) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while is_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "worker {pid} still exists:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let server = Server::start(&["-w", "2"]);
    let line = server.wait_for_line("Listening at: ");
    assert!(
        line.contains(&format!(
            "http://127.0.0.1:{} ({})",
            server.port,
            server.pid()
        )),
        "{line}"
    );
    server.wait_for_line("Using worker: mio");
    let workers = server.wait_for_boots(2);
    assert!(workers.contains(&server.serving_pid()));
}

#[test]
fn log_lines_have_gunicorns_format() {
    let server = Server::start(&[]);
    let line = server.wait_for_line("Starting rgunicorn 0.1.0");
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
    let server = Server::start(&["-w", "1"]);
    let first = server.wait_for_boots(1)[0];
    assert_eq!(server.serving_pid(), first);
    kill(first, Signal::SIGKILL).unwrap();
    server.wait_for_line(&format!(
        "Worker (pid:{first}) was sent SIGKILL! Perhaps out of memory?"
    ));
    let second = server.wait_for_boots(2)[1];
    assert_ne!(second, first);
    assert_eq!(server.serving_pid(), second);
}

#[test]
fn term_stops_gracefully_with_code_0_and_no_process_left() {
    let mut server = Server::start(&["-w", "2"]);
    let workers = server.wait_for_boots(2);
    server.serving_pid();
    server.signal(Signal::SIGTERM);
    let status = server.wait_for_exit(STOP_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.log.text());
    let log = server.log.text();
    assert!(log.contains("Handling signal: term"), "{log}");
    assert!(log.contains("Shutting down: Master"), "{log}");
    for pid in workers {
        assert!(!is_alive(pid), "worker {pid} outlived the master");
    }
}

#[test]
fn int_and_quit_stop_fast_with_code_0() {
    for signal in [Signal::SIGINT, Signal::SIGQUIT] {
        let mut server = Server::start(&["-w", "1"]);
        let workers = server.wait_for_boots(1);
        server.serving_pid();
        server.signal(signal);
        let status = server.wait_for_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{signal}: {}", server.log.text());
        assert!(
            !is_alive(workers[0]),
            "{signal}: worker outlived the master"
        );
    }
}

#[test]
fn app_load_failure_exits_4_quoting_the_exception() {
    let mut server = Server::launch(&["-w", "2"], &[], "no_such_module_rg:application");
    let status = server.wait_for_exit(BOOT_TIMEOUT);
    let log = server.log.text();
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
    let server = Server::start(&["-w", "2"]);
    let boots = server.wait_for_boots(2);
    server.signal(Signal::SIGTTIN);
    let third = server.wait_for_boots(3)[2];

    server.signal(Signal::SIGTTOU);
    wait_until_gone(boots[0], &server.log);
    assert!(
        is_alive(boots[1]) && is_alive(third),
        "{}",
        server.log.text()
    );

    server.signal(Signal::SIGTTOU);
    wait_until_gone(boots[1], &server.log);
    assert!(is_alive(third), "{}", server.log.text());

    server.signal(Signal::SIGTTOU);
    server.wait_for_line("Keeping the last worker");
    assert!(is_alive(third), "{}", server.log.text());
    assert_eq!(booted_pids(&server.log.lines.lock().unwrap().0).len(), 3);
    assert_eq!(server.serving_pid(), third);
}

#[test]
fn hup_replaces_every_worker() {
    let server = Server::start(&["-w", "1"]);
    let old = server.wait_for_boots(1)[0];
    server.serving_pid();
    server.signal(Signal::SIGHUP);
    let new = server.wait_for_boots(2)[1];
    wait_until_gone(old, &server.log);
    assert_eq!(server.serving_pid(), new);
}

#[test]
fn unix_socket_is_served_and_removed_at_exit() {
    let path =
        std::env::temp_dir().join(format!("rgunicorn-lifecycle-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let bind = format!("unix:{}", path.display());
    let mut server = Server::spawn(&["--bind", &bind, HELLO_APP], &[], 0);
    server.wait_for_line(&format!("Listening at: {bind} ("));
    server.wait_for_boots(1);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_for_exit(STOP_TIMEOUT).code(), Some(0));
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn web_concurrency_sets_the_default_worker_count() {
    let server = Server::start_with_env(&[], &[("WEB_CONCURRENCY", "2")]);
    server.wait_for_boots(2);
    server.serving_pid();
}

#[test]
fn every_bound_address_is_served() {
    let second_port = free_port();
    let second = format!("127.0.0.1:{second_port}");
    let server = Server::start(&["--bind", &second]);
    server.wait_for_line(&format!("Listening at: http://{second} ("));
    let worker = server.wait_for_boots(1)[0];
    assert_eq!(server.serving_pid(), worker);
    let mut stream = TcpStream::connect(("127.0.0.1", second_port)).unwrap();
    stream.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.ends_with(&format!("hello from pid {worker}\n")),
        "{response}"
    );
}

#[test]
fn crash_looping_workers_are_respawned_with_a_growing_delay() {
    let mut server = Server::start_with_env(&["-w", "1"], &[("HELLO_MASTER_EXIT_AT_IMPORT", "1")]);
    server.wait_for_line("exited with code 1");
    server.wait_for_line("waiting 0.1s before booting another");
    server.wait_for_line("waiting 0.2s before booting another");
    server.wait_for_line("waiting 0.4s before booting another");
    server.signal(Signal::SIGTERM);
    assert_eq!(
        server.wait_for_exit(STOP_TIMEOUT).code(),
        Some(0),
        "{}",
        server.log.text()
    );
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
    let mut server = Server::start(&["-w", "2"]);
    let workers = server.wait_for_boots(2);
    server.serving_pid();
    server.signal(Signal::SIGKILL);
    server.wait_for_exit(STOP_TIMEOUT);
    for pid in workers {
        wait_until_gone(pid, &server.log);
    }
}

/// Starts `GET /sleep?SECONDS` on its own thread and returns once the app
/// says it is sleeping (the worker is then busy in the app).
fn start_slow_request(server: &Server, seconds: u32) -> std::thread::JoinHandle<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
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
    server.wait_for_line("hello_master: sleeping in pid");
    reader
}

#[test]
fn graceful_stop_kills_workers_that_outlive_the_graceful_timeout() {
    let mut server = Server::start(&["-w", "1", "--graceful-timeout", "1"]);
    let worker = server.wait_for_boots(1)[0];
    server.serving_pid();
    let request = start_slow_request(&server, 20);
    let stopping = Instant::now();
    server.signal(Signal::SIGTERM);
    assert_eq!(
        server.wait_for_exit(STOP_TIMEOUT).code(),
        Some(0),
        "{}",
        server.log.text()
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
    assert!(
        server.log.text().contains("sending SIGKILL"),
        "{}",
        server.log.text()
    );
    assert!(!is_alive(worker));
    request.join().unwrap();
}

#[test]
fn int_during_a_graceful_stop_makes_it_fast() {
    let mut server = Server::start(&["-w", "1", "--graceful-timeout", "60"]);
    server.wait_for_boots(1);
    server.serving_pid();
    let request = start_slow_request(&server, 20);
    let stopping = Instant::now();
    server.signal(Signal::SIGTERM);
    server.wait_for_line("Handling signal: term");
    server.signal(Signal::SIGINT);
    assert_eq!(
        server.wait_for_exit(STOP_TIMEOUT).code(),
        Some(0),
        "{}",
        server.log.text()
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
    let server = Server::start(&["-w", "1", "--graceful-timeout", "1"]);
    let busy = server.wait_for_boots(1)[0];
    let request = start_slow_request(&server, 20);
    server.signal(Signal::SIGTTIN);
    let fresh = server.wait_for_boots(2)[1];
    server.signal(Signal::SIGTTOU);
    server.wait_for_line(&format!(
        "Worker (pid:{busy}) did not stop in 1s; killing it"
    ));
    wait_until_gone(busy, &server.log);
    assert!(is_alive(fresh));
    assert_eq!(server.serving_pid(), fresh);
    request.join().unwrap();
}

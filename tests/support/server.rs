//! Spawning the real `rgunicorn` binary and holding it in a guard.
//!
//! [`ServerBuilder::start`] picks a free 127.0.0.1 port (bind `:0`, read the
//! port, drop the socket), runs the binary with `--chdir` set to the test
//! apps (or the repository root for `examples.*`), collects stdout and stderr
//! into one shared log from two reader threads, and returns once every
//! worker has logged `Booting worker with pid` and a connection succeeds.
//! Dropping the [`Server`] sends SIGTERM, then SIGKILL after a deadline, and
//! reaps the process; workers the log named are killed by PID if they
//! outlive their master.

use super::client::{Client, Response};
use super::{apps_dir, repo_root, wait_until, BOOT_TIMEOUT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a stopping server gets between SIGTERM and SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a test server listens.
#[derive(Debug, Clone)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The server's combined stdout + stderr, appended to by reader threads.
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    grew: Condvar,
    /// How many reader threads reached EOF.
    streams_ended: std::sync::atomic::AtomicUsize,
}

impl Log {
    fn append(&self, line: &str) {
        let mut text = self.text.lock().unwrap();
        text.push_str(line);
        text.push('\n');
        self.grew.notify_all();
    }

    /// Waits until `holds(text)` or `timeout` passes; returns whether it held.
    fn wait(&self, timeout: Duration, holds: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self.text.lock().unwrap();
        loop {
            if holds(&text) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = self.grew.wait_timeout(text, deadline - now).unwrap().0;
        }
    }
}

/// Options for one server run.
#[derive(Clone)]
pub struct ServerBuilder {
    app: String,
    dir: PathBuf,
    workers: u32,
    workers_flag: bool,
    address: Option<Address>,
    chdir: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ServerBuilder {
    /// A server for `app` (e.g. `hello:application`) from `tests/apps`, one
    /// worker, on a free TCP port.
    pub fn new(app: &str) -> ServerBuilder {
        ServerBuilder {
            app: app.to_string(),
            dir: apps_dir(),
            workers: 1,
            workers_flag: true,
            address: None,
            chdir: true,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Serve from the repository root (for `examples.*` apps).
    pub fn in_repo_root(mut self) -> ServerBuilder {
        self.dir = repo_root();
        self
    }

    /// Pass no `--chdir`: the server only inherits its working directory.
    pub fn without_chdir(mut self) -> ServerBuilder {
        self.chdir = false;
        self
    }

    /// The number of workers (`-w`).
    pub fn workers(mut self, workers: u32) -> ServerBuilder {
        self.workers = workers;
        self
    }

    /// Pass no `--workers`: the server picks its own count (e.g. from
    /// `WEB_CONCURRENCY`); [`ServerBuilder::workers`] still says how many
    /// boots [`ServerBuilder::start`] waits for.
    pub fn without_workers_flag(mut self) -> ServerBuilder {
        self.workers_flag = false;
        self
    }

    /// Bind a unix socket at `path` instead of a TCP port.
    pub fn unix_socket(mut self, path: &Path) -> ServerBuilder {
        self.address = Some(Address::Unix(path.to_path_buf()));
        self
    }

    /// Bind this TCP address instead of a free 127.0.0.1 port.
    pub fn tcp(mut self, address: SocketAddr) -> ServerBuilder {
        self.address = Some(Address::Tcp(address));
        self
    }

    /// One more command-line argument, placed before the app.
    pub fn arg(mut self, arg: impl Into<String>) -> ServerBuilder {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for the server.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> ServerBuilder {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Spawns the server and returns at once (for tests of failing starts).
    pub fn spawn(self) -> Server {
        let address = self
            .address
            .clone()
            .unwrap_or_else(|| Address::Tcp(free_port()));
        let bind = match &address {
            Address::Tcp(addr) => addr.to_string(),
            Address::Unix(path) => format!("unix:{}", path.display()),
        };
        let mut command = server_command();
        command
            .arg("--bind")
            .arg(&bind)
            .args(self.workers_flag.then_some("--workers"))
            .args(self.workers_flag.then(|| self.workers.to_string()))
            .args(self.chdir.then_some("--chdir"))
            .args(self.chdir.then_some(&self.dir))
            .args(&self.args)
            .arg(&self.app)
            .current_dir(&self.dir)
            .env_remove("VIRTUAL_ENV")
            .env_remove("WEB_CONCURRENCY")
            .env_remove("PORT")
            .env_remove("SCRIPT_NAME")
            .env_remove("RGUNICORN_CMD_ARGS")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn rgunicorn");
        let log = Arc::new(Log::default());
        spawn_log_reader(child.stdout.take().expect("stdout"), Arc::clone(&log));
        spawn_log_reader(child.stderr.take().expect("stderr"), Arc::clone(&log));
        Server {
            child,
            exit: None,
            address,
            workers: self.workers,
            log,
        }
    }

    /// Spawns the server and waits until it serves (panics with the log if
    /// it does not within [`BOOT_TIMEOUT`]).
    pub fn start(self) -> Server {
        // A free port can be taken by another test between our probe and
        // the server's bind: retry that case with a new port.
        for _ in 0..3 {
            let mut server = self.clone().spawn();
            let port_taken =
                self.address.is_none() && !server.wait_booted() && server.lost_port_race();
            if !port_taken {
                server.wait_ready();
                return server;
            }
        }
        panic!("no free port after 3 tries");
    }
}

/// The command under test: the freshly built `rgunicorn`, or the program
/// named by `RGUNICORN_TEST_BIN` (e.g. a `gunicorn` executable, to check
/// that a test encodes gunicorn's behaviour), with the extra arguments in
/// `RGUNICORN_TEST_EXTRA_ARGS` first (e.g. `--threads 4`, to run a test
/// file against the app-thread pool; a test's own arguments come later and
/// win).
fn server_command() -> Command {
    let mut command = match std::env::var_os("RGUNICORN_TEST_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_rgunicorn")),
    };
    let extra = std::env::var("RGUNICORN_TEST_EXTRA_ARGS").unwrap_or_default();
    command.args(extra.split_whitespace());
    command
}

/// A free 127.0.0.1 port: bind `:0`, read the port, release it.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

fn spawn_log_reader(stream: impl Read + Send + 'static, log: Arc<Log>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            log.append(text.trim_end_matches(['\r', '\n']));
            line.clear();
        }
        let _text = log.text.lock().unwrap();
        log.streams_ended
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        log.grew.notify_all();
    });
}

/// A running (or exited) rgunicorn master, stopped on drop.
pub struct Server {
    child: Child,
    exit: Option<ExitStatus>,
    address: Address,
    workers: u32,
    log: Arc<Log>,
}

impl Server {
    /// Spawns a command the test built itself (a shell that sets
    /// `LISTEN_PID`, extra environment, ...) with the usual log capture and
    /// stop-on-drop guard; `fd3`, when given, becomes the child's fd 3
    /// (without close-on-exec), as systemd and inherited sockets need. The
    /// server is expected to listen at `address`. Returns at once.
    pub fn spawn_command(
        mut command: Command,
        address: Address,
        fd3: Option<std::os::fd::RawFd>,
    ) -> Server {
        use std::os::unix::process::CommandExt;
        command
            .env_remove("PORT")
            .env_remove("WEB_CONCURRENCY")
            .env_remove("VIRTUAL_ENV")
            .env_remove("RGUNICORN_CMD_ARGS")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(fd) = fd3 {
            // SAFETY: runs in the forked child before exec and only calls
            // fcntl and dup2, which are async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    let result = if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, 3)
                    };
                    if result < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("spawn rgunicorn");
        let log = Arc::new(Log::default());
        spawn_log_reader(child.stdout.take().expect("stdout"), Arc::clone(&log));
        spawn_log_reader(child.stderr.take().expect("stderr"), Arc::clone(&log));
        Server {
            child,
            exit: None,
            address,
            workers: 1,
            log,
        }
    }

    /// Started the way systemd starts a socket-activated service: the
    /// socket as fd 3, `LISTEN_FDS=1`, and `LISTEN_PID` the server's own pid,
    /// which only the child knows: a shell sets it (`$$`) and `exec`s the
    /// server, keeping the pid. `args` go before the app.
    pub fn socket_activated(listener: &TcpListener, args: &[&str], app: &str) -> Server {
        use std::os::fd::AsRawFd;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"")
            .arg(server_command().get_program())
            .args(server_command().get_args())
            .arg("--chdir")
            .arg(apps_dir())
            .args(args)
            .arg(app)
            .env("LISTEN_FDS", "1")
            .env_remove("LISTEN_PID");
        let address = Address::Tcp(listener.local_addr().expect("listener address"));
        Server::spawn_command(command, address, Some(listener.as_raw_fd()))
    }

    /// Starts `app` from `tests/apps` with default options.
    pub fn start(app: &str) -> Server {
        ServerBuilder::new(app).start()
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The TCP port (panics for a unix-socket server).
    pub fn port(&self) -> u16 {
        match &self.address {
            Address::Tcp(addr) => addr.port(),
            Address::Unix(path) => panic!("server listens on unix:{}", path.display()),
        }
    }

    /// The master's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has printed so far.
    pub fn log(&self) -> String {
        self.log.text.lock().unwrap().clone()
    }

    /// Waits until the log contains `pattern`.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> bool {
        self.log.wait(timeout, |text| text.contains(pattern))
    }

    /// Waits until the log contains `pattern` at least `count` times.
    pub fn wait_for_log_count(&self, pattern: &str, count: usize, timeout: Duration) -> bool {
        self.log
            .wait(timeout, |text| text.matches(pattern).count() >= count)
    }

    /// Waits until a log line contains `pattern` and returns the first such
    /// line (`None` if none appeared within `timeout`).
    pub fn wait_for_log_line(&self, pattern: &str, timeout: Duration) -> Option<String> {
        self.wait_for_log(pattern, timeout).then(|| {
            let log = self.log();
            let line = log.lines().find(|line| line.contains(pattern));
            line.unwrap_or_default().to_string()
        })
    }

    /// Sends `signal` to the master (panics if it cannot be delivered).
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to the master: {e}"));
    }

    /// How many times the log contains `pattern`.
    pub fn log_count(&self, pattern: &str) -> usize {
        self.log().matches(pattern).count()
    }

    /// The worker PIDs announced by `Booting worker with pid: N` lines.
    pub fn worker_pids(&self) -> Vec<i32> {
        self.log()
            .lines()
            .filter_map(|line| line.split("Booting worker with pid: ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// Waits for every worker's boot line and for a successful connect;
    /// panics with the log otherwise.
    pub fn wait_ready(&mut self) {
        if !self.wait_booted() {
            let status = self.try_exit_status();
            panic!(
                "rgunicorn did not boot {} worker(s) within {:?} (exit: {status:?}); log:\n{}",
                self.workers,
                BOOT_TIMEOUT,
                self.log()
            );
        }
        let connected = wait_until(BOOT_TIMEOUT, || self.try_connect().is_ok());
        assert!(
            connected,
            "cannot connect to {:?}; log:\n{}",
            self.address,
            self.log()
        );
    }

    /// Waits until every worker logged its boot line; false if the master
    /// exited or [`BOOT_TIMEOUT`] passed first.
    fn wait_booted(&mut self) -> bool {
        let workers = self.workers as usize;
        wait_until(BOOT_TIMEOUT, || {
            self.log_count("Booting worker with pid") >= workers || self.try_exit_status().is_some()
        }) && self.log_count("Booting worker with pid") >= workers
    }

    /// Whether the server exited because its port was already in use.
    fn lost_port_race(&mut self) -> bool {
        self.wait_exit(Duration::from_secs(5)).is_some() && self.log().contains("in use")
    }

    fn try_connect(&self) -> std::io::Result<()> {
        match &self.address {
            Address::Tcp(addr) => TcpStream::connect(addr).map(drop),
            Address::Unix(path) => std::os::unix::net::UnixStream::connect(path).map(drop),
        }
    }

    /// A new client connection (panics if the connect fails).
    pub fn connect(&self) -> Client {
        Client::connect(&self.address)
    }

    /// Sends `raw` on a new connection and reads one response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut client = self.connect();
        client.send(raw);
        client.read_response()
    }

    /// `GET target` (HTTP/1.1, `Connection: close`) on a new connection.
    pub fn get(&self, target: &str) -> Response {
        self.request(
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    }

    /// `POST target` with `body` (Content-Length, `Connection: close`).
    pub fn post(&self, target: &str, body: &[u8]) -> Response {
        let mut raw = format!(
            "POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        self.request(&raw)
    }

    /// The exit status, if the master has exited.
    /// Once it has, the log holds everything it printed (unless workers
    /// that outlived it still hold its stdout/stderr).
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
            if self.exit.is_some() {
                self.wait_for_log_streams_to_end();
            }
        }
        self.exit
    }

    fn wait_for_log_streams_to_end(&self) {
        let ended = || {
            self.log
                .streams_ended
                .load(std::sync::atomic::Ordering::SeqCst)
                == 2
        };
        self.log.wait(Duration::from_secs(2), |_| ended());
    }

    /// Waits up to `timeout` for the master to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.try_exit_status()
    }

    /// Stops the server: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`];
    /// returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let pid = Pid::from_raw(self.child.id() as i32);
        if self.try_exit_status().is_none() {
            let _ = kill(pid, Signal::SIGTERM);
            if self.wait_exit(STOP_TIMEOUT).is_none() {
                let _ = kill(pid, Signal::SIGKILL);
                self.exit = self.child.wait().ok();
            }
        }
        self.kill_orphaned_workers();
        self.exit
    }

    /// Workers that outlived their master (a bug the tests should not hide,
    /// but must not leave running either).
    fn kill_orphaned_workers(&self) {
        for worker in self.worker_pids() {
            let exited = wait_until(Duration::from_secs(2), || !process_alive(worker));
            if !exited {
                let _ = kill(Pid::from_raw(worker), Signal::SIGKILL);
            }
        }
    }
}

/// Whether `pid` names a live (not zombie) process.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- rgunicorn log ----\n{}---- end of log ----",
                self.log()
            );
        }
    }
}

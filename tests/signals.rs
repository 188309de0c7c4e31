//! Signals and worker supervision under load, through the real binary: HUP
//! reloads (twice in a row, and picking up changed code) and max-requests
//! recycling without a single failed request, the `--timeout` watchdog
//! killing a stuck worker with its Python frame in the log (and leaving a
//! slow boot alone), graceful TERM finishing requests in flight and in the
//! listen backlog, fast QUIT, and the operator features: pid file, a USR2
//! binary upgrade under load (and what systemd hears during it), USR1
//! reopening the access and error logs, systemd socket activation,
//! `--reuse-port` across two servers and `--umask`.
//!
//! What `tests/master_lifecycle.rs` (serving, a killed worker replaced,
//! exit codes, TTIN/TTOU, a HUP replacing workers, unix socket removed after
//! TERM) and `tests/lifecycle_plumbing.rs` (USR2 on a unix socket, notify
//! messages, process titles) already prove is not repeated here.
//!
//! Every server binds 127.0.0.1 only, is held by a guard that stops it by
//! PID, and every wait is a condition with a deadline; the only sleeps pace
//! the load loops.

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::load::{assert_no_failures, connect, exchange, served_pid, Load, Outcome};
use support::server::{process_alive, Address};
use support::{wait_until, Server, ServerBuilder, TempDir};

/// The app of every test here unless one says otherwise.
const APP: &str = "lifecycle_app:application";
/// How long a reload, a recycle or a boot may take on a busy machine.
const SLOW: Duration = Duration::from_secs(30);
/// How long a stop may take.
const STOP: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Signals and processes
// ---------------------------------------------------------------------------

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("send signal");
}

/// The TCP address of a server started by [`ServerBuilder`].
fn tcp_address(server: &Server) -> SocketAddr {
    match server.address() {
        Address::Tcp(addr) => *addr,
        Address::Unix(path) => panic!("server listens on unix:{}", path.display()),
    }
}

/// Sends HUP and waits until the reload completed: `workers` new workers
/// booted and every worker of `old` is gone. Returns the new workers' pids.
fn reload_and_wait(server: &Server, old: &[i32], workers: usize) -> Vec<i32> {
    let booted_before = server.worker_pids().len();
    signal(server.pid(), Signal::SIGHUP);
    let completed = wait_until(SLOW, || {
        server.worker_pids().len() >= booted_before + workers
            && old.iter().all(|pid| !process_alive(*pid))
    });
    assert!(completed, "HUP did not complete; log:\n{}", server.log());
    server.worker_pids()[booted_before..].to_vec()
}

/// Stops, when dropped, the master a USR2 upgrade started (not our child,
/// so the [`Server`] guard cannot): whatever pid the pid file names other
/// than the old master is TERMed, then KILLed after a deadline.
struct UpgradedMasterGuard<'a> {
    pid_file: &'a Path,
    old_master: i32,
}

impl Drop for UpgradedMasterGuard<'_> {
    fn drop(&mut self) {
        // `FILE.2` is where gunicorn's new master writes its pid.
        let mut gunicorn_style = self.pid_file.as_os_str().to_owned();
        gunicorn_style.push(".2");
        for path in [self.pid_file, Path::new(&gunicorn_style)] {
            let Some(new_master) = read_pid_file(path) else {
                continue;
            };
            if new_master == self.old_master {
                continue;
            }
            let pid = Pid::from_raw(new_master);
            let _ = kill(pid, Signal::SIGTERM);
            if !wait_until(STOP, || !process_alive(new_master)) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Reads a pid file (`None` while absent or half written).
fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Starts a request for `target` on its own thread and returns its handle;
/// the thread yields the response, or `None` if the connection ended first.
fn request_in_background(server: &Server, target: &str) -> JoinHandle<Option<support::Response>> {
    let mut client = server.connect();
    client.set_read_timeout(Duration::from_secs(40));
    client.send(
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    std::thread::spawn(move || client.try_read_response_to("GET").ok())
}

fn assert_served(response: Option<support::Response>) -> support::Response {
    let response = response.expect("the connection closed without a response");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.complete, "truncated: {}", response.text());
    assert!(response.text().starts_with("pid "), "{}", response.text());
    response
}

// ---------------------------------------------------------------------------
// Reloads and recycling under load
// ---------------------------------------------------------------------------

#[test]
fn reload_under_continuous_load_fails_no_request_and_replaces_every_worker() {
    let server = ServerBuilder::new(APP).workers(2).start();
    let first = server.worker_pids();
    let load = Load::start(tcp_address(&server), 2, 2);
    load.wait_for_more(20);

    let second = reload_and_wait(&server, &first, 2);
    load.wait_for_more(20);
    let third = reload_and_wait(&server, &second, 2);
    load.wait_for_more(20);
    let report = load.finish();

    assert_no_failures(&report, &server.log());
    let generations: Vec<HashSet<i32>> = [&first, &second, &third]
        .iter()
        .map(|pids| pids.iter().copied().collect())
        .collect();
    assert!(generations[0].is_disjoint(&generations[1]));
    assert!(generations[1].is_disjoint(&generations[2]));
    assert!(generations[0].is_disjoint(&generations[2]));
    for pid in first.iter().chain(&second) {
        assert!(!process_alive(*pid), "old worker {pid} still runs");
    }
    for _ in 0..4 {
        let pid = served_pid(&server.get("/").body).expect("pid body");
        assert!(
            generations[2].contains(&pid),
            "{pid} is not a new worker {third:?}"
        );
    }
    assert!(
        generations
            .iter()
            .all(|pids| !pids.is_disjoint(&report.pids)),
        "every generation served the load: {:?} vs {:?}",
        report.pids,
        generations
    );
}

#[test]
fn two_hups_in_quick_succession_settle_on_one_new_set_of_workers() {
    let server = ServerBuilder::new(APP).workers(2).start();
    let first = server.worker_pids();
    let load = Load::start(tcp_address(&server), 1, 1);
    load.wait_for_more(10);

    signal(server.pid(), Signal::SIGHUP);
    signal(server.pid(), Signal::SIGHUP);
    let live = || -> Vec<i32> {
        server
            .worker_pids()
            .into_iter()
            .filter(|pid| process_alive(*pid))
            .collect()
    };
    let settled = wait_until(SLOW, || {
        let live = live();
        live.len() == 2 && live.iter().all(|pid| !first.contains(pid))
    });
    assert!(settled, "live workers {:?}; log:\n{}", live(), server.log());
    load.wait_for_more(10);
    let report = load.finish();

    assert_no_failures(&report, &server.log());
    let now = live();
    for _ in 0..4 {
        let pid = served_pid(&server.get("/").body).expect("pid body");
        assert!(now.contains(&pid), "{pid} is not one of {now:?}");
    }
}

#[test]
fn resizing_with_ttin_and_ttou_under_load_fails_no_request() {
    let server = ServerBuilder::new(APP).workers(2).start();
    let live = || -> usize {
        server
            .worker_pids()
            .into_iter()
            .filter(|pid| process_alive(*pid))
            .count()
    };
    let load = Load::start(tcp_address(&server), 2, 2);
    load.wait_for_more(10);
    for (signal_to_send, workers) in [
        (Signal::SIGTTIN, 3),
        (Signal::SIGTTOU, 2),
        (Signal::SIGTTOU, 1),
    ] {
        signal(server.pid(), signal_to_send);
        assert!(
            wait_until(SLOW, || live() == workers),
            "{} live workers, expected {workers}; log:\n{}",
            live(),
            server.log()
        );
        load.wait_for_more(10);
    }
    let report = load.finish();
    assert_no_failures(&report, &server.log());
}

#[test]
fn reload_picks_up_changed_application_code() {
    let dir = TempDir::new("reload-code");
    let module = dir.join("versioned_app.py");
    let write_version = |version: &str| {
        let source = format!(
            "def application(environ, start_response):\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
             return [b'{version}']\n"
        );
        std::fs::write(&module, source).expect("write app");
    };
    write_version("v1");
    let server = ServerBuilder::new("versioned_app:application")
        .arg("--pythonpath")
        .arg(dir.path().to_str().unwrap())
        .start();
    assert_eq!(server.get("/").text(), "v1");

    write_version("v2");
    let old = server.worker_pids();
    signal(server.pid(), Signal::SIGHUP);
    assert!(
        wait_until(SLOW, || server.get("/").text() == "v2"),
        "still serving v1 after HUP; log:\n{}",
        server.log()
    );
    assert!(wait_until(SLOW, || old
        .iter()
        .all(|pid| !process_alive(*pid))));
    for _ in 0..3 {
        assert_eq!(server.get("/").text(), "v2");
    }
}

#[test]
fn reload_onto_broken_code_keeps_the_old_workers_serving() {
    let dir = TempDir::new("reload-broken");
    let module = dir.join("breakable_app.py");
    std::fs::write(
        &module,
        "import os, sys\n\
         print('breakable_app imported in', os.getpid(), file=sys.stderr, flush=True)\n\
         def application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [b'good']\n",
    )
    .expect("write app");
    let mut server = ServerBuilder::new("breakable_app:application")
        .workers(2)
        .arg("--pythonpath")
        .arg(dir.path().to_str().unwrap())
        .start();
    // Both workers must have imported the good code before it breaks.
    assert!(server.wait_for_log_count("breakable_app imported in", 2, SLOW));
    assert_eq!(server.get("/").text(), "good");
    let old = server.worker_pids();

    std::fs::write(&module, "raise RuntimeError('deployed a typo')\n").expect("break app");
    signal(server.pid(), Signal::SIGHUP);
    assert!(
        server.wait_for_log("Reload failed, the old workers keep serving", SLOW),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("RuntimeError: deployed a typo"),
        "{}",
        server.log()
    );
    for _ in 0..5 {
        assert_eq!(server.get("/").text(), "good");
    }
    assert!(
        old.iter().all(|pid| process_alive(*pid)),
        "old workers stopped: {}",
        server.log()
    );
    assert_eq!(
        server.try_exit_status(),
        None,
        "the master halted: {}",
        server.log()
    );
}

#[test]
fn max_requests_recycles_workers_under_load_without_failed_requests() {
    let server = ServerBuilder::new(APP)
        .workers(2)
        .arg("--max-requests")
        .arg("20")
        .arg("--max-requests-jitter")
        .arg("5")
        .start();
    let load = Load::start(tcp_address(&server), 2, 2);
    load.wait_for_more(300);
    // A retiring worker serves on until its successor boots, so the number
    // of generations depends on boot time, not only on the request count:
    // keep the load on until three generations booted.
    assert!(
        wait_until(SLOW, || server.worker_pids().len() >= 6),
        "no third generation of workers; log:\n{}",
        server.log()
    );
    assert!(
        server.wait_for_log_count(") retiring after ", 4, SLOW),
        "four workers were not retired; log:\n{}",
        server.log()
    );
    load.wait_for_more(20);
    let report = load.finish();

    assert_no_failures(&report, &server.log());
    assert!(
        report.pids.len() >= 4,
        "only {} workers served {} requests: {:?}",
        report.pids.len(),
        report.served,
        report.pids
    );
    // Each worker asks for its successor at "N of M requests": M is its
    // budget, max-requests + jitter (20..=25), and N at least half of M
    // (under this load it asks well before M) and at most M plus what one
    // event-loop turn finishes on the 4 load connections (the count is
    // checked once per turn). It is stopped once its successor serves, so
    // after at least half of M too.
    let log = server.log();
    let asks: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|line| line.split("asking for its successor at ").nth(1))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            let served = words.next()?.parse().ok()?;
            let budget = words.nth(1)?.parse().ok()?;
            Some((served, budget))
        })
        .collect();
    assert!(asks.len() >= 4, "{asks:?}");
    assert!(
        asks.iter()
            .all(|&(served, budget)| (20..=25).contains(&budget)
                && (budget.div_ceil(2)..=budget + 3).contains(&served)),
        "a worker asked before half its budget or past it, or its budget is outside \
         max-requests + jitter: {asks:?}"
    );
    let retirements: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|line| line.split(") retiring after ").nth(1))
        .filter_map(|rest| {
            let mut words = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty());
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect();
    assert!(retirements.len() >= 4, "{retirements:?}");
    assert!(
        retirements
            .iter()
            .all(|&(served, budget)| served >= budget.div_ceil(2)),
        "a worker retired before half its budget: {retirements:?}"
    );
}

#[test]
fn reload_lets_a_request_in_flight_on_an_old_worker_finish() {
    let server = ServerBuilder::new(APP)
        .arg("--graceful-timeout")
        .arg("20")
        .start();
    let old = server.worker_pids()[0];
    let in_flight = request_in_background(&server, "/sleep?3");
    assert!(server.wait_for_log("lifecycle_app: sleeping in pid", SLOW));

    signal(server.pid(), Signal::SIGHUP);
    assert!(server.wait_for_log_count("Booting worker with pid", 2, SLOW));
    let response = assert_served(in_flight.join().unwrap());
    assert_eq!(served_pid(&response.body), Some(old));
    assert!(wait_until(SLOW, || !process_alive(old)));
    let new = server.worker_pids()[1];
    assert_eq!(served_pid(&server.get("/").body), Some(new));
}

#[test]
fn term_during_a_reload_leaves_no_worker_behind() {
    let mut server = ServerBuilder::new(APP)
        .workers(2)
        .env("LIFECYCLE_IMPORT_SLEEP", "1")
        .start();
    assert_served(Some(server.get("/")));
    signal(server.pid(), Signal::SIGHUP);
    // TERM while the new workers are still importing the app.
    assert!(server.wait_for_log_count("Booting worker with pid", 4, SLOW));
    signal(server.pid(), Signal::SIGTERM);

    let status = server.wait_exit(STOP).expect("the master did not exit");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    for pid in server.worker_pids() {
        assert!(
            wait_until(Duration::from_secs(2), || !process_alive(pid)),
            "worker {pid} outlived its master; log:\n{}",
            server.log()
        );
    }
}

// ---------------------------------------------------------------------------
// The --timeout watchdog
// ---------------------------------------------------------------------------

#[test]
fn a_stuck_worker_is_killed_after_the_timeout_with_the_app_frame_in_the_log() {
    let server = ServerBuilder::new(APP).arg("-t").arg("2").start();
    let stuck_pid = server.worker_pids()[0];
    let stuck = request_in_background(&server, "/stuck");
    assert!(server.wait_for_log("lifecycle_app: stuck in pid", SLOW));

    assert!(
        server.wait_for_log("WORKER TIMEOUT", Duration::from_secs(15)),
        "no timeout; log:\n{}",
        server.log()
    );
    assert!(
        server.wait_for_log("in stuck_forever", Duration::from_secs(10)),
        "no traceback naming the stuck frame; log:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains(&format!(
            "WORKER TIMEOUT (pid:{stuck_pid}) while serving GET /stuck"
        )),
        "{log}"
    );
    assert!(log.contains("lifecycle_app.py\", line "), "{log}");
    assert!(
        stuck.join().unwrap().is_none(),
        "the stuck request got a response"
    );

    assert!(wait_until(SLOW, || !process_alive(stuck_pid)));
    assert!(server.wait_for_log_count("Booting worker with pid", 2, SLOW));
    let replacement = server.worker_pids()[1];
    let response = assert_served(Some(server.get("/")));
    assert_eq!(served_pid(&response.body), Some(replacement));
}

#[test]
fn booting_slowly_does_not_count_against_the_timeout() {
    let started = Instant::now();
    let server = ServerBuilder::new(APP)
        .arg("-t")
        .arg("1")
        .env("LIFECYCLE_IMPORT_SLEEP", "4")
        .start();
    let worker = server.worker_pids()[0];
    let response = assert_served(Some(server.get("/")));
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(served_pid(&response.body), Some(worker));
    assert_served(Some(server.get("/")));
    let log = server.log();
    assert!(!log.contains("WORKER TIMEOUT"), "{log}");
    assert_eq!(server.log_count("Booting worker with pid"), 1, "{log}");
}

#[test]
fn timeout_zero_lets_a_request_run_past_any_limit() {
    let server = ServerBuilder::new(APP).arg("-t").arg("0").start();
    let in_flight = request_in_background(&server, "/sleep?3");
    assert_served(in_flight.join().unwrap());
    assert!(!server.log().contains("WORKER TIMEOUT"), "{}", server.log());
    assert_eq!(server.log_count("Booting worker with pid"), 1);
}

// ---------------------------------------------------------------------------
// Stopping
// ---------------------------------------------------------------------------

#[test]
fn graceful_stop_finishes_the_request_in_flight() {
    let mut server = ServerBuilder::new(APP)
        .arg("--graceful-timeout")
        .arg("20")
        .start();
    let in_flight = request_in_background(&server, "/sleep?2");
    assert!(server.wait_for_log("lifecycle_app: sleeping in pid", SLOW));
    signal(server.pid(), Signal::SIGTERM);

    assert_served(in_flight.join().unwrap());
    let status = server.wait_exit(STOP).expect("the master did not exit");
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn graceful_stop_serves_connections_already_queued_in_the_backlog() {
    let mut server = ServerBuilder::new(APP)
        .arg("--graceful-timeout")
        .arg("20")
        .start();
    let in_flight = request_in_background(&server, "/sleep?2");
    assert!(server.wait_for_log("lifecycle_app: sleeping in pid", SLOW));
    // The only worker is busy in the app: these connections complete their
    // handshake in the kernel and wait in the listen backlog.
    let queued: Vec<_> = (0..3)
        .map(|_| request_in_background(&server, "/"))
        .collect();
    signal(server.pid(), Signal::SIGTERM);

    assert_served(in_flight.join().unwrap());
    for request in queued {
        assert_served(request.join().unwrap());
    }
    let status = server.wait_exit(STOP).expect("the master did not exit");
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn fast_stop_with_quit_ends_in_flight_requests_at_once() {
    let mut server = ServerBuilder::new(APP)
        .arg("--graceful-timeout")
        .arg("30")
        .start();
    let worker = server.worker_pids()[0];
    let in_flight = request_in_background(&server, "/sleep?30");
    assert!(server.wait_for_log("lifecycle_app: sleeping in pid", SLOW));
    let stopping = Instant::now();
    signal(server.pid(), Signal::SIGQUIT);

    let status = server
        .wait_exit(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("still running 3 s after QUIT; log:\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(stopping.elapsed() < Duration::from_secs(3));
    assert!(wait_until(Duration::from_secs(2), || !process_alive(
        worker
    )));
    // Cut short: no response at all, or an error (gunicorn answers 500
    // when SystemExit interrupts the app), never the app's 200.
    let cut = in_flight.join().unwrap();
    assert!(
        cut.as_ref().is_none_or(|response| response.status != 200),
        "the 30 s request was answered: {:?}",
        cut.map(|response| response.text())
    );
}

// ---------------------------------------------------------------------------
// Operator features: pid file, USR2 upgrade, USR1 reopen, socket activation
// ---------------------------------------------------------------------------

#[test]
fn pid_file_is_written_when_ready_and_removed_at_exit() {
    let dir = TempDir::new("pidfile");
    let pid_file = dir.join("rgunicorn.pid");
    let mut server = ServerBuilder::new(APP)
        .arg("--pid")
        .arg(pid_file.to_str().unwrap())
        .spawn();
    assert!(
        wait_until(SLOW, || read_pid_file(&pid_file).is_some()),
        "no pid file; log:\n{}",
        server.log()
    );
    // Ready: once the file names the master, its socket accepts.
    assert!(TcpStream::connect(tcp_address(&server)).is_ok());
    assert_eq!(read_pid_file(&pid_file), Some(server.pid() as i32));
    assert_served(Some(server.get("/")));

    let status = server.stop().expect("exit status");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(!pid_file.exists(), "pid file left behind");
}

#[test]
fn usr2_upgrade_serves_throughout_and_the_old_master_can_be_stopped() {
    let dir = TempDir::new("usr2");
    let pid_file = dir.join("rgunicorn.pid");
    let old_bin = dir.join("rgunicorn.pid.oldbin");
    let mut server = ServerBuilder::new(APP)
        .workers(2)
        .arg("--pid")
        .arg(pid_file.to_str().unwrap())
        .start();
    let old_master = server.pid() as i32;
    let old_workers = server.worker_pids();
    assert!(wait_until(SLOW, || read_pid_file(&pid_file) == Some(old_master)));
    let _new_master_guard = UpgradedMasterGuard {
        pid_file: &pid_file,
        old_master,
    };
    let load = Load::start(tcp_address(&server), 2, 2);
    load.wait_for_more(20);

    signal(server.pid(), Signal::SIGUSR2);
    assert!(
        wait_until(SLOW, || read_pid_file(&old_bin) == Some(old_master)),
        "no {}; log:\n{}",
        old_bin.display(),
        server.log()
    );
    assert!(
        wait_until(SLOW, || read_pid_file(&pid_file)
            .is_some_and(|pid| pid != old_master)),
        "the new master wrote no pid file; log:\n{}",
        server.log()
    );
    let new_master = read_pid_file(&pid_file).unwrap();
    assert!(server.wait_for_log_count("Booting worker with pid", 4, SLOW));
    load.wait_for_more(20);

    signal(server.pid(), Signal::SIGTERM);
    let status = server.wait_exit(STOP).expect("the old master did not exit");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(wait_until(STOP, || old_workers
        .iter()
        .all(|pid| !process_alive(*pid))));
    // The old master removed its (renamed) pid file; the new one's stays.
    assert!(wait_until(STOP, || !old_bin.exists()));
    assert_eq!(read_pid_file(&pid_file), Some(new_master));
    load.wait_for_more(20);
    let report = load.finish();

    assert_no_failures(&report, &server.log());
    assert!(process_alive(new_master));
    let pid = served_pid(&server.get("/").body).expect("pid body");
    assert!(!old_workers.contains(&pid), "{pid} is an old worker");
}

#[test]
fn usr1_reopens_the_error_log() {
    let dir = TempDir::new("usr1");
    let error_log = dir.join("error.log");
    let rotated = dir.join("error.log.1");
    let server = ServerBuilder::new(APP)
        .arg("--error-logfile")
        .arg(error_log.to_str().unwrap())
        .spawn();
    let file_says = |path: &Path, text: &str| {
        std::fs::read_to_string(path).is_ok_and(|content| content.contains(text))
    };
    assert!(
        wait_until(SLOW, || file_says(&error_log, "Booting worker with pid")),
        "nothing logged to {}; stdout/stderr:\n{}",
        error_log.display(),
        server.log()
    );
    assert!(wait_until(SLOW, || TcpStream::connect(tcp_address(
        &server
    ))
    .is_ok()));
    let worker = served_pid(&assert_served(Some(server.get("/"))).body).unwrap();

    std::fs::rename(&error_log, &rotated).expect("rotate the log");
    signal(server.pid(), Signal::SIGUSR1);
    assert!(
        wait_until(SLOW, || error_log.exists()),
        "USR1 did not reopen the log; rotated file:\n{}",
        std::fs::read_to_string(&rotated).unwrap_or_default()
    );
    // The master reopens its file at once, the worker when its loop reads
    // the forwarded signal; it says so in the file it reopened.
    let worker_reopened = format!("[{worker}] [INFO] Reopening logs");
    assert!(
        wait_until(SLOW, || file_says(&error_log, &worker_reopened)),
        "the worker did not reopen the log; new file:\n{}",
        std::fs::read_to_string(&error_log).unwrap_or_default()
    );
    // The worker's own log lines go to the new file too: an app error.
    let failed = server.get("/raise");
    assert_eq!(failed.status, 500);
    assert!(
        wait_until(SLOW, || file_says(
            &error_log,
            "lifecycle_app: raised on purpose"
        )),
        "the worker still writes elsewhere; new file:\n{}",
        std::fs::read_to_string(&error_log).unwrap_or_default()
    );
    // And the master's: a new worker's boot line.
    signal(server.pid(), Signal::SIGTTIN);
    assert!(wait_until(SLOW, || file_says(
        &error_log,
        "Booting worker with pid"
    )));
    assert!(!file_says(&rotated, "raised on purpose"));
    assert!(file_says(
        &rotated,
        &format!("Booting worker with pid: {}", worker)
    ));
}

#[test]
fn usr1_reopens_the_access_log() {
    rotate_the_access_log_and_reopen_it_with_usr1_to(|server| server.pid());
}

#[test]
fn a_worker_reopens_the_access_log_on_usr1() {
    rotate_the_access_log_and_reopen_it_with_usr1_to(|server| server.worker_pids()[0] as u32);
}

/// Logs a request, renames the access log as logrotate does, sends USR1 to
/// the process `target` picks, and checks that the next request is logged
/// to a new file at the configured path (and not to the rotated one).
fn rotate_the_access_log_and_reopen_it_with_usr1_to(target: impl Fn(&Server) -> u32) {
    let dir = TempDir::new("usr1-access");
    let access_log = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let server = ServerBuilder::new(APP)
        .arg("--access-logfile")
        .arg(access_log.to_str().unwrap())
        .start();
    let file_says = |path: &Path, text: &str| {
        std::fs::read_to_string(path).is_ok_and(|content| content.contains(text))
    };
    assert_served(Some(server.get("/before-rotation")));
    assert!(wait_until(SLOW, || file_says(
        &access_log,
        "GET /before-rotation"
    )));

    std::fs::rename(&access_log, &rotated).expect("rotate the log");
    signal(target(&server), Signal::SIGUSR1);
    assert!(
        wait_until(SLOW, || access_log.exists()),
        "USR1 did not reopen the access log; log:\n{}",
        server.log()
    );
    assert_served(Some(server.get("/after-rotation")));
    assert!(wait_until(SLOW, || file_says(
        &access_log,
        "GET /after-rotation"
    )));
    assert!(!file_says(&rotated, "/after-rotation"));
    assert!(!file_says(&access_log, "/before-rotation"));
}

#[test]
fn socket_activation_serves_on_the_inherited_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let address = listener.local_addr().unwrap();
    let mut master = Server::socket_activated(&listener, &["-w", "1"], APP);
    assert!(
        wait_until(SLOW, || master.log().contains("Booting worker with pid")),
        "no worker booted; log:\n{}",
        master.log()
    );
    let listening: Vec<String> = master
        .log()
        .lines()
        .filter(|line| line.contains("Listening at"))
        .map(str::to_string)
        .collect();
    assert!(
        !listening.is_empty()
            && listening
                .iter()
                .all(|line| line.contains(&address.to_string())),
        "not listening on the inherited {address} only: {listening:?}"
    );
    let served = wait_until(SLOW, || {
        connect(address).ok().is_some_and(|mut stream| {
            matches!(exchange(&mut stream, false), Outcome::Served { .. })
        })
    });
    assert!(
        served,
        "nothing served on the inherited socket; log:\n{}",
        master.log()
    );

    signal(master.pid(), Signal::SIGTERM);
    assert!(master.wait_exit(STOP).is_some(), "no exit after TERM");
}

#[test]
fn reuse_port_lets_two_servers_share_one_port() {
    let address = support::server::free_port();
    let first = ServerBuilder::new(APP)
        .tcp(address)
        .arg("--reuse-port")
        .start();
    let second = ServerBuilder::new(APP)
        .tcp(address)
        .arg("--reuse-port")
        .start();
    let first_workers: HashSet<i32> = first.worker_pids().into_iter().collect();
    let second_workers: HashSet<i32> = second.worker_pids().into_iter().collect();
    let mut served_by = HashSet::new();
    let both_served = wait_until(SLOW, || {
        if let Some(pid) = served_pid(&first.get("/").body) {
            served_by.insert(pid);
        }
        !served_by.is_disjoint(&first_workers) && !served_by.is_disjoint(&second_workers)
    });
    assert!(
        both_served,
        "one server got every connection: {served_by:?}; logs:\n{}\n{}",
        first.log(),
        second.log()
    );
}

#[test]
fn umask_sets_the_mode_of_the_unix_socket_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("umask");
    let socket = dir.join("server.sock");
    let server = ServerBuilder::new(APP)
        .unix_socket(&socket)
        .arg("--umask")
        .arg("077")
        .start();
    let mode = std::fs::metadata(&socket)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "mode {:o}", mode & 0o777);
    assert_served(Some(server.get("/")));
}

/// The receiving end of `NOTIFY_SOCKET`, as systemd holds it.
struct NotifyListener {
    socket: std::os::unix::net::UnixDatagram,
}

impl NotifyListener {
    fn bind(path: &Path) -> NotifyListener {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("bind notify socket");
        NotifyListener { socket }
    }

    /// Reads datagrams until one has a line `wanted` (e.g. `READY=1`);
    /// panics with what came instead if none arrives within [`SLOW`].
    fn wait_for(&self, wanted: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + SLOW;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {what} among {seen:?}");
            self.socket
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut buffer = [0u8; 4096];
            let Ok(length) = self.socket.recv(&mut buffer) else {
                panic!("no {what} among {seen:?}");
            };
            let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
            if let Some(line) = message.lines().find(|line| wanted(line)) {
                return line.to_string();
            }
            seen.push(message);
        }
    }

    /// The datagrams already queued (senders that exited sent theirs).
    fn drain(&self) -> Vec<String> {
        self.socket.set_nonblocking(true).expect("set_nonblocking");
        let mut queued = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(length) = self.socket.recv(&mut buffer) {
            queued.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
        self.socket.set_nonblocking(false).expect("set_nonblocking");
        queued
    }
}

#[test]
fn after_usr2_systemd_hears_the_new_main_pid_and_nothing_from_the_old_masters_exit() {
    let dir = TempDir::new("usr2-notify");
    let pid_file = dir.join("rgunicorn.pid");
    let notify = NotifyListener::bind(&dir.join("notify.sock"));
    let mut server = ServerBuilder::new(APP)
        .arg("--pid")
        .arg(pid_file.to_str().unwrap())
        .env("NOTIFY_SOCKET", dir.join("notify.sock").to_str().unwrap())
        .start();
    let old_master = server.pid() as i32;
    let _new_master_guard = UpgradedMasterGuard {
        pid_file: &pid_file,
        old_master,
    };
    notify.wait_for(|line| line == "READY=1", "READY=1");

    signal(server.pid(), Signal::SIGUSR2);
    assert!(wait_until(SLOW, || read_pid_file(&pid_file)
        .is_some_and(|pid| pid != old_master)));
    let new_master = read_pid_file(&pid_file).unwrap();
    let main_pid = format!("MAINPID={new_master}");
    notify.wait_for(|line| line == main_pid, &main_pid);

    // The service goes on in the new master: the old one's exit must not
    // tell systemd it stops.
    signal(server.pid(), Signal::SIGTERM);
    let status = server.wait_exit(STOP).expect("the old master did not exit");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let queued = notify.drain();
    assert!(
        !queued
            .iter()
            .any(|message| message.lines().any(|line| line == "STOPPING=1")),
        "the old master said STOPPING=1: {queued:?}"
    );
    assert_served(Some(server.get("/")));

    signal(new_master as u32, Signal::SIGTERM);
    notify.wait_for(
        |line| line == "STOPPING=1",
        "STOPPING=1 from the new master",
    );
    assert!(wait_until(STOP, || !process_alive(new_master)));
}

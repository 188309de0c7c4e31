//! Connection pressure: an idle flood (thousands of connections that send
//! nothing) does not starve real clients, because at `--worker-connections`
//! a worker closes its cheapest connections (kept alive between requests,
//! then silent ones, the longest waiting first) and keeps accepting; and a
//! worker out of file descriptors (EMFILE) backs off instead of spinning on
//! a listener that stays readable, then serves again once descriptors free.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::server::Address;
use support::{apps_dir, Client, Server, ServerBuilder};

/// The bound for a normal request during an idle flood (generous:
/// with room to accept, the request takes milliseconds).
const NORMAL_LATENCY: Duration = Duration::from_secs(1);

/// The tests here bring crowds of sockets; they take turns, so one crowd
/// does not slow the other's server down.
static CROWD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn crowd_turn() -> std::sync::MutexGuard<'static, ()> {
    CROWD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises this test process's open-files limit to its hard limit (a flood
/// of thousands of sockets needs it) and returns the new limit.
fn raise_own_open_files_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    hard
}

fn tcp_address(server: &Server) -> SocketAddr {
    match server.address() {
        Address::Tcp(addr) => *addr,
        Address::Unix(_) => unreachable!("these servers listen on TCP"),
    }
}

/// Opens `count` connections that send nothing (each connect bounded: a
/// full backlog must not hang the test). Returns those that connected.
fn idle_flood(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect()
}

/// How long one normal request takes, connect included; panics if it gets
/// no 200 within `NORMAL_LATENCY` plus a margin.
fn timed_get(server: &Server) -> Duration {
    let started = Instant::now();
    let mut client = server.connect();
    client.set_read_timeout(NORMAL_LATENCY * 3);
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    match client.try_read_response_to("GET") {
        Ok(response) => assert_eq!(response.status, 200),
        Err(e) => panic!("no response after {:?}: {e:?}", started.elapsed()),
    }
    started.elapsed()
}

#[test]
fn a_normal_request_is_served_at_once_during_an_idle_flood_of_thousands() {
    const FLOOD: usize = 5000;
    let _turn = crowd_turn();
    let limit = raise_own_open_files_limit();
    assert!(
        limit as usize > FLOOD + 200,
        "the open-files hard limit ({limit}) is too low for this test"
    );
    // The default --worker-connections: the flood is the default case.
    let server = ServerBuilder::new("serving:application")
        .workers(2)
        .arg("--log-level")
        .arg("debug")
        .start();
    let flood = idle_flood(tcp_address(&server), FLOOD);
    eprintln!("{} idle connections open", flood.len());
    for attempt in 0..5 {
        let took = timed_get(&server);
        eprintln!("normal request {attempt}: {took:?}");
        assert!(
            took < NORMAL_LATENCY,
            "a normal request took {took:?} behind {} idle connections",
            flood.len()
        );
    }
    assert!(
        server.log().contains("Open files limit: "),
        "{}",
        server.log()
    );
}

#[test]
fn at_the_cap_idle_connections_make_room_for_new_clients() {
    const CAP: usize = 50;
    // Ten times the cap: the request waits behind them in the backlog, so
    // the worker must take and close them all before it reaches it.
    const FLOOD: usize = 500;
    let _turn = crowd_turn();
    raise_own_open_files_limit();
    let server = ServerBuilder::new("serving:application")
        .arg("--worker-connections")
        .arg(CAP.to_string())
        .start();
    let flood = idle_flood(tcp_address(&server), FLOOD);
    for attempt in 0..5 {
        let took = timed_get(&server);
        eprintln!("normal request {attempt} at a cap of {CAP}: {took:?}");
        assert!(
            took < NORMAL_LATENCY,
            "a normal request took {took:?} behind {} idle connections at --worker-connections {CAP}",
            flood.len()
        );
    }
}

/// One keep-alive request on `client`.
fn keep_alive_get(client: &mut Client) {
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn the_cap_closes_the_longest_idle_kept_alive_connection_first() {
    const CAP: usize = 10;
    let _turn = crowd_turn();
    let server = ServerBuilder::new("serving:application")
        .arg("--worker-connections")
        .arg(CAP.to_string())
        .arg("--keep-alive")
        .arg("60")
        .arg("--log-level")
        .arg("debug")
        .spawn();
    // Not `start()`: its probe connection would be one more for the cap.
    // Connections made while the worker boots wait in the backlog.
    assert!(server.wait_for_log("Booting worker with pid", support::BOOT_TIMEOUT));
    // Half the cap silent, half kept alive between requests. The silent
    // ones have waited longer (they connected before the kept-alive ones
    // had their responses), so closing one of the kept-alive ones first is
    // the cost order, not the age.
    let mut silent: Vec<Client> = (0..CAP / 2).map(|_| server.connect()).collect();
    let mut kept: Vec<Client> = (0..CAP / 2).map(|_| server.connect()).collect();
    for client in &mut kept {
        keep_alive_get(client);
    }
    let mut newcomer = server.connect();
    keep_alive_get(&mut newcomer);
    // Exactly the longest-idle kept-alive connection made room.
    assert!(
        kept[0].is_closed_within(Duration::from_secs(2)),
        "the longest-idle kept-alive connection is still open"
    );
    for (i, client) in kept.iter_mut().enumerate().skip(1) {
        assert!(
            !client.is_closed_within(Duration::from_millis(100)),
            "kept-alive connection {i} was closed too; log:\n{}",
            server.log()
        );
    }
    for (i, client) in silent.iter_mut().enumerate() {
        assert!(
            !client.is_closed_within(Duration::from_millis(100)),
            "silent connection {i} was closed while a kept-alive one could go"
        );
    }
}

/// CPU time (user + system) a process has used so far, from /proc/PID/stat.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat has a comm field")
        .1
        .split_whitespace()
        .collect();
    // After the comm field: state is field 3, utime 14 and stime 15.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn a_worker_out_of_descriptors_backs_off_and_serves_again_once_they_free() {
    const DESCRIPTORS: usize = 64;
    const WATCH: Duration = Duration::from_secs(3);
    let _turn = crowd_turn();
    let addr = support::server::free_port();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {DESCRIPTORS} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_rgunicorn"))
        .arg("--bind")
        .arg(addr.to_string())
        .arg("--chdir")
        .arg(apps_dir())
        .arg("--header-timeout")
        .arg("60")
        .arg("serving:application");
    let mut server = Server::spawn_command(command, Address::Tcp(addr), None);
    server.wait_ready();
    let worker: i32 = server.get("/pid").text().parse().expect("a pid");

    // More idle connections than the worker has descriptors left: it
    // accepts until EMFILE, the rest wait in the backlog.
    let flood = idle_flood(addr, DESCRIPTORS * 2);
    assert!(
        server.wait_for_log("Too many open files", Duration::from_secs(10)),
        "the worker never ran out of descriptors; log:\n{}",
        server.log()
    );
    let cpu_before = cpu_time(worker);
    let lines_before = server.log_count("accept failed");
    std::thread::sleep(WATCH);
    let cpu_used = cpu_time(worker).saturating_sub(cpu_before);
    let lines = server.log_count("accept failed");
    eprintln!(
        "out of descriptors for {WATCH:?}: {cpu_used:?} of CPU, {lines} accept-failure lines ({lines_before} at the start)"
    );
    assert!(
        lines <= 5,
        "{lines} accept-failure lines: logged per attempt, not per back-off"
    );
    assert!(
        cpu_used < WATCH / 4,
        "the worker used {cpu_used:?} of CPU in {WATCH:?} while out of descriptors: spinning"
    );

    drop(flood);
    let mut served = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served && Instant::now() < deadline {
        let mut client = server.connect();
        client.set_read_timeout(Duration::from_secs(2));
        client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        served = client
            .try_read_response_to("GET")
            .is_ok_and(|r| r.status == 200);
    }
    assert!(
        served,
        "not served again once descriptors were free; log:\n{}",
        server.log()
    );
}

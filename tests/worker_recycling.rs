//! Worker recycling under load: with `--max-requests` a worker asks for
//! its successor about one boot before its limit (once the requests it has
//! left would take no longer than its own boot did, never before half its
//! limit, and at the limit whatever the rate), defers new connections to
//! the others once at its limit, and is stopped as soon as the successor
//! serves; a HUP retires each old worker as soon as a new one serves.
//! Capacity never dips: the successor boots first.
//!
//! The max-requests load is paced like the issue's: four clients, one
//! request each every 20 ms, each on a new connection, to
//! `serving:application`'s `/pid`, which answers with the pid of the worker
//! that served it. Which worker served what is counted on the client side;
//! each worker's budget (`--max-requests` plus its jitter share), when it
//! asked, and how many it had served when it was stopped come from its log
//! lines.

mod support;

use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::server::Address;
use support::{Server, ServerBuilder};

/// The tests here boot workers in quick succession; they take turns, so
/// one does not slow the other's boots down.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const CLIENTS: usize = 4;
const MAX_REQUESTS: u64 = 20;
const JITTER: u64 = 4;
const WAIT: Duration = Duration::from_secs(30);

/// Asks `/pid` on a new connection; returns the pid that served it.
fn served_by(address: &Address) -> i32 {
    let mut client = support::Client::connect(address);
    client.send(b"GET /pid HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    response.text().parse().expect("a pid")
}

/// Four clients, each asking `/pid` one request every `period` (zero: as
/// fast as it can), until each has sent `count` or `stop` is set.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<i32>>>,
}

impl Load {
    fn start(server: &Server, count: usize, period: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|_| {
                let address = server.address().clone();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut served = Vec::new();
                    let mut next = Instant::now();
                    while served.len() < count && !stop.load(Ordering::Relaxed) {
                        served.push(served_by(&address));
                        // A late client does not catch up in a burst.
                        next = (next + period).max(Instant::now());
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    served
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Waits until every client has sent its `count`; returns how many
    /// requests each worker served.
    fn finish_when_done(self) -> BTreeMap<i32, u64> {
        self.collect()
    }

    /// Stops the clients (once they are done with their request) and
    /// returns how many requests each worker served.
    fn finish(self) -> BTreeMap<i32, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.collect()
    }

    fn collect(self) -> BTreeMap<i32, u64> {
        let mut counts = BTreeMap::new();
        for client in self.clients {
            for pid in client.join().expect("a client failed") {
                *counts.entry(pid).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// A server of `workers` workers with `--max-requests` and its jitter,
/// logging at debug (the "serving" lines), once every worker serves.
fn recycling_server(workers: u32, max_requests: u64, jitter: u64) -> Server {
    let server = ServerBuilder::new("serving:application")
        .workers(workers)
        .arg("--max-requests")
        .arg(max_requests.to_string())
        .arg("--max-requests-jitter")
        .arg(jitter.to_string())
        .arg("--log-level")
        .arg("debug")
        .start();
    wait_until_serving(&server, workers as usize);
    server
}

/// Waits until `count` workers have said they serve (debug log).
fn wait_until_serving(server: &Server, count: usize) {
    assert!(
        server.wait_for_log_count(") serving", count, WAIT),
        "{count} workers did not start serving; log:\n{}",
        server.log()
    );
}

/// The number after `prefix` on `line`, up to the next non-digit.
fn number_after(line: &str, prefix: &str) -> Option<u64> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What one worker said about its budget.
#[derive(Debug, Clone, Copy, Default)]
struct Recycled {
    /// Its budget (`--max-requests` plus its jitter share), from its ask.
    limit: Option<u64>,
    /// How many it had served when it asked for its successor.
    asked_at: Option<u64>,
    /// How many it had served when it was told to stop.
    retired_after: Option<u64>,
}

/// Each worker's asks ("Autorestarting worker (pid:P): asking for its
/// successor at N of M requests") and retirements ("Worker (pid:P)
/// retiring after N requests"), by pid.
fn recycled(log: &str) -> BTreeMap<i32, Recycled> {
    let mut workers: BTreeMap<i32, Recycled> = BTreeMap::new();
    for line in log.lines() {
        let Some(pid) = number_after(line, "(pid:") else {
            continue;
        };
        let worker = workers.entry(pid as i32);
        if line.contains("asking for its successor at ") {
            let worker = worker.or_default();
            worker.asked_at = number_after(line, "successor at ");
            worker.limit = number_after(line, " of ");
        } else if line.contains(") retiring after ") {
            worker.or_default().retired_after = number_after(line, "retiring after ");
        }
    }
    workers
}

/// How long the worker with `pid` took to boot, from its "serving, booted
/// in N ms" line.
fn boot_of(log: &str, pid: i32) -> Option<Duration> {
    let pattern = format!("(pid:{pid}) serving, booted in ");
    let line = log.lines().find(|line| line.contains(&pattern))?;
    number_after(line, "booted in ").map(Duration::from_millis)
}

#[test]
fn under_paced_load_no_worker_serves_more_than_twice_its_max_requests() {
    let _turn = take_turn();
    let server = recycling_server(2, MAX_REQUESTS, JITTER);
    let counts = Load::start(&server, 100, Duration::from_millis(20)).finish_when_done();
    let log = server.log();
    let recycled = recycled(&log);
    let worst = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, n)| (*p, *n));
    eprintln!(
        "{} requests over {} workers, worst {worst:?}: {counts:?}",
        counts.values().sum::<u64>(),
        counts.len()
    );
    let boots: Vec<u128> = counts
        .keys()
        .filter_map(|pid| boot_of(&log, *pid))
        .map(|boot| boot.as_millis())
        .collect();
    eprintln!("boots (ms): {boots:?}");
    if let Some((pid, _)) = worst {
        eprintln!("worst worker: {:?}", recycled.get(&pid));
    }
    for (pid, served) in &counts {
        // A worker that never asked is below its budget, which is at most
        // the limit plus the whole jitter.
        let limit = recycled
            .get(pid)
            .and_then(|r| r.limit)
            .unwrap_or(MAX_REQUESTS + JITTER);
        assert!(
            *served <= 2 * limit,
            "worker {pid} served {served} requests with a budget of {limit}: {counts:?}, \
             {recycled:?}; log:\n{log}"
        );
    }
    // Asking early does not retire a worker far below its budget either.
    for (pid, worker) in &recycled {
        if let (Some(limit), Some(after)) = (worker.limit, worker.retired_after) {
            assert!(
                after >= limit.div_ceil(2),
                "worker {pid} retired after {after} requests with a budget of {limit}; log:\n{log}"
            );
        }
    }
    assert!(
        recycled
            .values()
            .filter(|r| r.retired_after.is_some())
            .count()
            >= 5,
        "too few workers were recycled: {recycled:?}; log:\n{log}"
    );
}

#[test]
fn under_heavy_load_no_worker_retires_before_half_its_max_requests() {
    let _turn = take_turn();
    let server = recycling_server(2, MAX_REQUESTS, JITTER);
    let load = Load::start(&server, usize::MAX, Duration::ZERO);
    // However long the boots take under this load: until six workers
    // were retired.
    let retired = server.wait_for_log_count(") retiring after ", 6, WAIT);
    let counts = load.finish();
    assert!(retired, "workers were not recycled; log:\n{}", server.log());
    let log = server.log();
    let recycled = recycled(&log);
    eprintln!("served: {counts:?}");
    eprintln!("asked at / retired after: {recycled:?}");
    let retired: Vec<_> = recycled
        .iter()
        .filter_map(|(pid, r)| Some((*pid, r.limit?, r.asked_at?, r.retired_after?)))
        .collect();
    assert!(
        retired.len() >= 5,
        "too few workers were recycled: {recycled:?}; log:\n{log}"
    );
    for (pid, limit, asked_at, retired_after) in retired {
        assert!(
            (MAX_REQUESTS..=MAX_REQUESTS + JITTER).contains(&limit),
            "worker {pid} had a budget of {limit}; log:\n{log}"
        );
        let half = limit.div_ceil(2);
        assert!(
            asked_at >= half && retired_after >= half,
            "worker {pid} asked at {asked_at} and retired after {retired_after} requests \
             with a budget of {limit}; log:\n{log}"
        );
        // The client side saw at least as many (a request in flight at
        // the stop is still answered).
        assert!(
            counts.get(&pid).copied().unwrap_or(0) >= retired_after,
            "worker {pid}: {counts:?}; log:\n{log}"
        );
    }
}

#[test]
fn a_worker_with_requests_further_apart_than_a_boot_asks_exactly_at_its_limit() {
    const LIMIT: u64 = 4;
    let _turn = take_turn();
    let server = recycling_server(1, LIMIT, 0);
    let first = served_by(server.address());
    let log = server.log();
    let boot = boot_of(&log, first).unwrap_or_else(|| panic!("no boot time; log:\n{log}"));
    // No rate to speak of: the next request comes later than a whole boot.
    let gap = (boot * 3).max(Duration::from_millis(300));
    for _ in 1..LIMIT {
        std::thread::sleep(gap);
        assert_eq!(served_by(server.address()), first, "log:\n{}", server.log());
    }
    let retired = format!("Worker (pid:{first}) retiring after ");
    assert!(
        server.wait_for_log(&retired, WAIT),
        "the worker was not retired; log:\n{}",
        server.log()
    );
    let log = server.log();
    let worker = recycled(&log).get(&first).copied().unwrap_or_default();
    assert_eq!(
        (worker.asked_at, worker.limit, worker.retired_after),
        (Some(LIMIT), Some(LIMIT), Some(LIMIT)),
        "booted in {boot:?}, requests {gap:?} apart; log:\n{log}"
    );
    assert_ne!(served_by(server.address()), first, "log:\n{}", server.log());
}

/// How soon after a new worker says it serves the master must retire an
/// old one. The master acts on the worker's wake-up in milliseconds; a
/// master that only looked at its next tick would take up to a second.
const HANDOVER_LAG: Duration = Duration::from_millis(300);

#[test]
fn on_hup_each_old_worker_is_retired_as_soon_as_a_new_one_serves() {
    let _turn = take_turn();
    let server = ServerBuilder::new("serving:application")
        .workers(2)
        .arg("--log-level")
        .arg("debug")
        .start();
    wait_until_serving(&server, 2);
    for round in 1..=3 {
        let retired_before = server.log_count("Retiring worker (pid:");
        let serving_before = server.log_count(") serving");
        server.signal(Signal::SIGHUP);
        // The first of the new workers to serve...
        assert!(
            server.wait_for_log_count(") serving", serving_before + 1, Duration::from_secs(30)),
            "round {round}: no new worker served; log:\n{}",
            server.log()
        );
        let serving_at = Instant::now();
        // ...lets the master retire one old worker at once.
        assert!(
            server.wait_for_log_count(
                "Retiring worker (pid:",
                retired_before + 1,
                Duration::from_secs(30)
            ),
            "round {round}: no old worker retired; log:\n{}",
            server.log()
        );
        let lag = serving_at.elapsed();
        eprintln!("round {round}: an old worker retired {lag:?} after a new one served");
        assert!(
            lag < HANDOVER_LAG,
            "round {round}: an old worker was retired {lag:?} after a new one served; log:\n{}",
            server.log()
        );
        // The rest of the handover, before the next round.
        assert!(
            server.wait_for_log_count(
                "Retiring worker (pid:",
                retired_before + 2,
                Duration::from_secs(30)
            ),
            "round {round}: the second old worker was not retired; log:\n{}",
            server.log()
        );
    }
}

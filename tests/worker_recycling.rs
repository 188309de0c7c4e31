//! Worker recycling under load: with `--max-requests` a worker asks for
//! its successor about one boot before its limit (once the requests it has
//! left would take no longer than a boot, never before half its limit, and
//! at the limit whatever the rate), defers new connections to the others
//! once at its limit, and is stopped as soon as the successor serves; a HUP
//! retires each old worker as soon as a new one serves. Capacity never
//! dips: the successor boots first.
//!
//! The max-requests load is paced like the issue's: four clients, one
//! request each every 20 ms, each on a new connection, to
//! `serving:application`'s `/pid`, which answers with the pid of the worker
//! that served it. Which worker served what is counted on the client side;
//! each worker's budget (`--max-requests` plus its jitter share), boot,
//! ask, and how many it had served when it was stopped come from the log.
//!
//! At this load a budget of 20 lasts about 0.2 s, about one boot: no worker
//! serves more than twice its budget as long as its successor boots within
//! about one and a half budgets' time. A machine that boots slower than
//! that (we saw 0.4–2.5 s while other builds loaded both cores) makes the
//! bound unreachable for any handover that keeps capacity; the test then
//! says so for the workers concerned instead of failing.

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
/// How soon after a new worker says it serves the master must retire an
/// old one (and the old one stop taking requests). The master acts on the worker's wake-up in milliseconds; a
/// master that only looked at its next tick would take up to a second.
const HANDOVER_LAG: Duration = Duration::from_millis(300);

/// Asks `/pid` on a new connection; returns the pid that served it.
fn served_by(address: &Address) -> i32 {
    let mut client = support::Client::connect(address);
    client.send(b"GET /pid HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    response.text().parse().expect("a pid")
}

/// One request of the load: when its answer came, and which worker served
/// it.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    answered: Instant,
    pid: i32,
}

/// Four clients, each asking `/pid` one request every `period` (zero: as
/// fast as it can), until each has sent `count` or `stop` is set.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Exchange>>>,
}

impl Load {
    fn start(server: &Server, count: usize, period: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|_| {
                let address = server.address().clone();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut exchanges = Vec::new();
                    let mut next = Instant::now();
                    while exchanges.len() < count && !stop.load(Ordering::Relaxed) {
                        let pid = served_by(&address);
                        exchanges.push(Exchange {
                            answered: Instant::now(),
                            pid,
                        });
                        // A late client does not catch up in a burst.
                        next = (next + period).max(Instant::now());
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    exchanges
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Waits until every client has sent its `count`; returns every
    /// exchange, in the order the answers came.
    fn finish_when_done(self) -> Vec<Exchange> {
        self.collect()
    }

    /// Stops the clients (once they are done with their request) and
    /// returns every exchange, in the order the answers came.
    fn finish(self) -> Vec<Exchange> {
        self.stop.store(true, Ordering::Relaxed);
        self.collect()
    }

    fn collect(self) -> Vec<Exchange> {
        let mut exchanges: Vec<Exchange> = self
            .clients
            .into_iter()
            .flat_map(|client| client.join().expect("a client failed"))
            .collect();
        exchanges.sort_by_key(|exchange| exchange.answered);
        exchanges
    }
}

/// How many requests each worker served.
fn counts(exchanges: &[Exchange]) -> BTreeMap<i32, u64> {
    let mut counts = BTreeMap::new();
    for exchange in exchanges {
        *counts.entry(exchange.pid).or_insert(0) += 1;
    }
    counts
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
#[derive(Debug, Clone, Default)]
struct Recycled {
    /// Its budget (`--max-requests` plus its jitter share), from its ask.
    limit: Option<u64>,
    /// How many it had served when it asked for its successor.
    asked_at: Option<u64>,
    /// How many it had served when it was told to stop.
    retired_after: Option<u64>,
    /// How long it took to boot.
    boot: Option<Duration>,
    /// The workers booted while it waited for its successor: its own, and
    /// those of the workers that asked at about the same time (the master
    /// retires the one that asked first when the first of them serves).
    successors: Vec<i32>,
}

/// Each worker's boot ("Worker (pid:P) serving, booted in B ms"), ask
/// ("Autorestarting worker (pid:P): asking for its successor at N of M
/// requests"), retirement ("Worker (pid:P) retiring after N requests"),
/// and the workers booted between the master answering its ask and its
/// retirement ("Booting worker with pid: S"), by pid.
fn recycled(log: &str) -> BTreeMap<i32, Recycled> {
    let mut recycled: BTreeMap<i32, Recycled> = BTreeMap::new();
    // Workers that asked and are not retired yet.
    let mut waiting: Vec<i32> = Vec::new();
    for line in log.lines() {
        if let Some(booted) = number_after(line, "Booting worker with pid: ") {
            for pid in &waiting {
                recycled
                    .entry(*pid)
                    .or_default()
                    .successors
                    .push(booted as i32);
            }
            continue;
        }
        let Some(pid) = number_after(line, "(pid:") else {
            continue;
        };
        let pid = pid as i32;
        let worker = recycled.entry(pid).or_default();
        if line.contains(") serving, booted in ") {
            worker.boot = number_after(line, "booted in ").map(Duration::from_millis);
        } else if line.contains("asking for its successor at ") {
            worker.asked_at = number_after(line, "successor at ");
            worker.limit = number_after(line, " of ");
        } else if line.contains(") asked for its successor") {
            waiting.push(pid);
        } else if line.contains(") retiring after ") {
            worker.retired_after = number_after(line, "retiring after ");
            waiting.retain(|waiting| *waiting != pid);
        }
    }
    recycled
}

/// How much of twice its budget a worker may have used when its successor
/// serves, for the bound to count as within reach; the rest is for the
/// requests in flight and a request rate that varies.
const REACH: f64 = 0.8;

/// How long a successor may take to boot for `2 × limit` to be within
/// reach of a worker that booted in `boot` and got `rate` requests a
/// second: it asks about one boot (its own at least) before its limit, but
/// not before half of it, and serves on until its successor serves.
fn boot_within_reach(limit: u64, boot: Duration, rate: f64) -> Duration {
    let ask = (limit as f64 - rate * boot.as_secs_f64()).max(limit.div_ceil(2) as f64);
    let spare = REACH * (2 * limit) as f64 - CLIENTS as f64 - ask;
    Duration::from_secs_f64((spare / rate).max(0.0))
}

#[test]
fn under_paced_load_no_worker_serves_more_than_twice_its_max_requests() {
    let _turn = take_turn();
    let server = recycling_server(2, MAX_REQUESTS, JITTER);
    let exchanges = Load::start(&server, 100, Duration::from_millis(20)).finish_when_done();
    let counts = counts(&exchanges);
    // Every worker that asked for a successor is retired once it serves,
    // load or not: wait for that, so each retirement is in the log.
    let all_retired = support::wait_until(WAIT, || {
        let log = server.log();
        log.matches(") retiring after ").count() >= log.matches(") asked for its successor").count()
    });
    assert!(
        all_retired,
        "workers that asked were not retired; log:\n{}",
        server.log()
    );
    let log = server.log();
    let recycled = recycled(&log);
    // The worker that served most for its budget.
    let worst = counts
        .iter()
        .map(|(pid, served)| {
            let limit = recycled.get(pid).and_then(|r| r.limit);
            (
                *served as f64 / limit.unwrap_or(MAX_REQUESTS) as f64,
                *pid,
                *served,
                limit,
            )
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, pid, served, limit)| (pid, served, limit));
    eprintln!(
        "{} requests over {} workers; worst (pid, served, budget): {worst:?}; {counts:?}",
        exchanges.len(),
        counts.len()
    );
    let boots: Vec<u128> = recycled
        .values()
        .filter_map(|r| Some(r.boot?.as_millis()))
        .collect();
    eprintln!("boots (ms): {boots:?}");
    let mut out_of_reach = Vec::new();
    for (&pid, &served) in &counts {
        let worker = recycled.get(&pid).cloned().unwrap_or_default();
        // A worker that never asked is below its budget, which is at most
        // the limit plus the whole jitter.
        let limit = worker.limit.unwrap_or(MAX_REQUESTS + JITTER);
        let bound = 2 * limit;
        if served <= bound {
            continue;
        }
        let context = format!(
            "worker {pid} served {served} requests with a budget of {limit}: {worker:?}, \
             {counts:?}; log:\n{log}"
        );
        let theirs: Vec<&Exchange> = exchanges.iter().filter(|e| e.pid == pid).collect();
        let took = theirs[bound as usize - 1].answered - theirs[0].answered;
        let rate = (bound - 1) as f64 / took.as_secs_f64();
        let boot = worker
            .boot
            .unwrap_or_else(|| panic!("no boot time; {context}"));
        assert!(
            !worker.successors.is_empty(),
            "no successor was booted; {context}"
        );
        // The slowest of the successors that could have released it (one
        // that never served took longer than the whole load).
        let successor_boot = worker
            .successors
            .iter()
            .map(|s| recycled.get(s).and_then(|s| s.boot))
            .max_by_key(|boot| boot.unwrap_or(Duration::MAX))
            .flatten();
        let within_reach = boot_within_reach(limit, boot, rate);
        assert!(
            successor_boot.is_none_or(|b| b > within_reach),
            "its successor booted in {successor_boot:?}, within reach ({within_reach:?} at \
             {rate:.0} requests/s); {context}"
        );
        // The machine booted the successor too slowly for the bound (as
        // when other builds load both cores): no handover could have kept
        // it without a dip in capacity.
        out_of_reach.push((pid, served, successor_boot, within_reach));
    }
    if !out_of_reach.is_empty() {
        eprintln!(
            "over the bound because the successor booted too slowly for any handover \
             (pid, served, successor's boot, the boot that was needed): {out_of_reach:?}"
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
    // At least the first two workers were recycled (400 requests, budgets
    // of at most 24; how many generations depends on how fast they boot).
    let retired = recycled.values().filter(|r| r.retired_after.is_some());
    assert!(
        retired.count() >= 2,
        "the first workers were not recycled: {recycled:?}; log:\n{log}"
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
    let counts = counts(&load.finish());
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
        // However fast the requests come, it neither asks nor is stopped
        // before it served half its budget.
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
    // Past half of it, the worker has the requests a rate takes.
    const LIMIT: u64 = 8;
    let _turn = take_turn();
    let server = recycling_server(1, LIMIT, 0);
    let first = served_by(server.address());
    let log = server.log();
    let boot = recycled(&log)
        .get(&first)
        .and_then(|worker| worker.boot)
        .unwrap_or_else(|| panic!("no boot time; log:\n{log}"));
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
    let worker = recycled(&log).get(&first).cloned().unwrap_or_default();
    assert_eq!(
        (worker.asked_at, worker.limit, worker.retired_after),
        (Some(LIMIT), Some(LIMIT), Some(LIMIT)),
        "booted in {boot:?}, requests {gap:?} apart; log:\n{log}"
    );
    // The retiring worker may still take a connection already queued when
    // it logged; once it has exited, its successor serves.
    assert!(
        support::wait_until(WAIT, || !support::server::process_alive(first)),
        "the retired worker did not exit; log:\n{}",
        server.log()
    );
    assert_ne!(served_by(server.address()), first, "log:\n{}", server.log());
}

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

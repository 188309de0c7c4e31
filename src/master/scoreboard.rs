//! What the master knows for `/metrics` and `/status` beyond the live
//! workers' pages: the counts of the workers that are gone (folded in when
//! each is reaped, so no counter goes down), why workers were restarted,
//! and when the master started. [`Scoreboard::snapshot`] adds the live
//! workers and the kernel's figures (RSS, listen queues) into one
//! [`Snapshot`] that the renderers read.

use crate::heartbeat::Phase;
use crate::listener::Listener;
use crate::metrics::{Counts, Gauges, WorkerMetrics};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

/// Why a worker was replaced (`rgunicorn_worker_restarts_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// It died on its own: an exit code, a signal nobody in rgunicorn sent.
    Crash,
    /// The master aborted it for exceeding `--timeout`.
    Timeout,
    /// It reached `--max-requests`.
    MaxRequests,
    /// HUP or `--reload` replaced it.
    Reload,
    /// SIGKILL while the kernel's OOM-kill counter went up.
    OomKill,
}

impl RestartReason {
    const ALL: [RestartReason; 5] = [
        RestartReason::Crash,
        RestartReason::Timeout,
        RestartReason::MaxRequests,
        RestartReason::Reload,
        RestartReason::OomKill,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Timeout => "timeout",
            RestartReason::MaxRequests => "max_requests",
            RestartReason::Reload => "reload",
            RestartReason::OomKill => "oom_kill",
        }
    }
}

/// How a reaped worker ended, as the arbiter saw it.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// It was sent SIGABRT for exceeding `--timeout`.
    pub timed_out: bool,
    /// A successor was wanted (HUP, `--reload`, max-requests).
    pub replaced: bool,
    /// Its own heartbeat said it reached `--max-requests`.
    pub reached_max_requests: bool,
    /// The master asked it to stop (TTOU, shutdown, a reload's failure).
    pub asked_to_stop: bool,
    /// It died of a SIGKILL the master did not send.
    pub killed_by_someone_else: bool,
}

/// A worker's state (`rgunicorn_workers{state}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Booting,
    Serving,
    Retiring,
}

impl WorkerState {
    pub const ALL: [WorkerState; 3] = [
        WorkerState::Booting,
        WorkerState::Serving,
        WorkerState::Retiring,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Booting => "booting",
            WorkerState::Serving => "serving",
            WorkerState::Retiring => "retiring",
        }
    }
}

/// One live worker as the arbiter hands it over.
pub struct LiveWorker<'a> {
    pub pid: i32,
    pub slot: u32,
    pub phase: Phase,
    /// Being replaced or asked to stop.
    pub leaving: bool,
    pub booted_at: Instant,
    /// Its current request, if it is in one (`GET /path`).
    pub request: String,
    pub metrics: &'a WorkerMetrics,
}

/// One live worker in a snapshot.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub pid: i32,
    pub slot: u32,
    pub state: WorkerState,
    pub age: Duration,
    pub requests: u64,
    pub in_flight: u64,
    pub rss_bytes: Option<u64>,
    pub request: String,
}

/// One listening TCP socket's accept queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenQueue {
    /// `127.0.0.1:8000`, `[::1]:8000`.
    pub listener: String,
    /// Connections waiting to be accepted.
    pub length: u32,
    /// The most the kernel queues (the effective backlog).
    pub max: u32,
}

/// Everything one scrape reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Retired plus live counters.
    pub counts: Counts,
    pub gauges: Gauges,
    pub workers: Vec<WorkerView>,
    pub restarts: Vec<(&'static str, u64)>,
    pub listen_queues: Vec<ListenQueue>,
    /// The master's start, in seconds since the epoch.
    pub start_time_seconds: f64,
}

/// The master's retired totals and restart counts.
#[derive(Debug)]
pub struct Scoreboard {
    retired: Counts,
    restarts: [u64; 5],
    start_time_seconds: f64,
    /// The kernel's OOM-kill counter when last read.
    oom_kills: Option<u64>,
}

impl Default for Scoreboard {
    fn default() -> Scoreboard {
        Scoreboard::new()
    }
}

impl Scoreboard {
    /// An empty board; the master's start time is now.
    pub fn new() -> Scoreboard {
        Scoreboard {
            retired: Counts::default(),
            restarts: [0; 5],
            start_time_seconds: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            oom_kills: oom_kill_count(),
        }
    }

    /// A reaped worker: folds its final counts into the retired total and
    /// counts its restart, if it was one.
    pub fn retire(&mut self, metrics: &WorkerMetrics, ending: Ending) -> Option<RestartReason> {
        self.retired.add_page(metrics);
        let reason = self.restart_reason(ending)?;
        let index = RestartReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.restarts[index] += 1;
        Some(reason)
    }

    fn restart_reason(&mut self, ending: Ending) -> Option<RestartReason> {
        if ending.timed_out {
            return Some(RestartReason::Timeout);
        }
        if ending.replaced {
            return Some(match ending.reached_max_requests {
                true => RestartReason::MaxRequests,
                false => RestartReason::Reload,
            });
        }
        if ending.asked_to_stop {
            return None;
        }
        if ending.killed_by_someone_else {
            let now = oom_kill_count();
            let grew = matches!((self.oom_kills, now), (Some(before), Some(now)) if now > before);
            self.oom_kills = now.or(self.oom_kills);
            if grew {
                return Some(RestartReason::OomKill);
            }
        }
        Some(RestartReason::Crash)
    }

    /// Adds the live workers and the listening sockets to the board.
    pub fn snapshot<'a>(
        &self,
        workers: impl IntoIterator<Item = LiveWorker<'a>>,
        listeners: &[Listener],
    ) -> Snapshot {
        let mut counts = self.retired.clone();
        let mut gauges = Gauges::default();
        let mut views = Vec::new();
        for worker in workers {
            counts.add_page(worker.metrics);
            let worker_gauges = worker.metrics.gauges();
            gauges += worker_gauges;
            let state = match (worker.leaving, worker.phase) {
                (true, _) | (_, Phase::Retiring) => WorkerState::Retiring,
                (false, Phase::Booting) => WorkerState::Booting,
                (false, Phase::Serving) => WorkerState::Serving,
            };
            views.push(WorkerView {
                pid: worker.pid,
                slot: worker.slot,
                state,
                age: worker.booted_at.elapsed(),
                requests: worker.metrics.requests_served(),
                in_flight: worker_gauges.requests_in_flight,
                rss_bytes: rss_bytes(worker.pid),
                request: match worker_gauges.requests_in_flight {
                    0 => String::new(),
                    _ => worker.request,
                },
            });
        }
        views.sort_by_key(|view| view.slot);
        Snapshot {
            counts,
            gauges,
            workers: views,
            restarts: RestartReason::ALL
                .iter()
                .zip(self.restarts)
                .map(|(reason, count)| (reason.name(), count))
                .collect(),
            listen_queues: listeners.iter().filter_map(listen_queue).collect(),
            start_time_seconds: self.start_time_seconds,
        }
    }
}

/// Resident memory of `pid` (`/proc/PID/statm`, resident pages).
fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// The accept queue of a listening TCP socket, from `TCP_INFO`: on a
/// listener the kernel reports the queued connections as `tcpi_unacked`
/// and the backlog as `tcpi_sacked`.
fn listen_queue(listener: &Listener) -> Option<ListenQueue> {
    let Listener::Tcp(tcp) = listener else {
        return None;
    };
    let address = tcp.local_addr().ok()?;
    // SAFETY: `tcp_info` is plain old data; zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which
    // lives across the call; the fd is a live socket.
    let result = unsafe {
        libc::getsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (result == 0).then(|| ListenQueue {
        listener: address.to_string(),
        length: info.tcpi_unacked,
        max: info.tcpi_sacked,
    })
}

/// The kernel's count of OOM kills: this cgroup's (`memory.events`, cgroup
/// v2) when readable, else the machine's (`/proc/vmstat`).
fn oom_kill_count() -> Option<u64> {
    let field = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    };
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
            std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.events", path.trim())).ok()
        });
    cgroup
        .as_deref()
        .and_then(field)
        .or_else(|| field(&std::fs::read_to_string("/proc/vmstat").ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending() -> Ending {
        Ending {
            timed_out: false,
            replaced: false,
            reached_max_requests: false,
            asked_to_stop: false,
            killed_by_someone_else: false,
        }
    }

    #[test]
    fn restarts_are_classified() {
        let mut board = Scoreboard::new();
        board.oom_kills = None; // the kernel counter cannot be faked here
        let cases = [
            (ending(), Some(RestartReason::Crash)),
            (
                Ending {
                    timed_out: true,
                    asked_to_stop: true,
                    ..ending()
                },
                Some(RestartReason::Timeout),
            ),
            (
                Ending {
                    replaced: true,
                    reached_max_requests: true,
                    asked_to_stop: true,
                    ..ending()
                },
                Some(RestartReason::MaxRequests),
            ),
            (
                Ending {
                    replaced: true,
                    asked_to_stop: true,
                    ..ending()
                },
                Some(RestartReason::Reload),
            ),
            (
                Ending {
                    asked_to_stop: true,
                    ..ending()
                },
                None,
            ),
            (
                Ending {
                    killed_by_someone_else: true,
                    ..ending()
                },
                Some(RestartReason::Crash),
            ),
        ];
        for (ending, reason) in cases {
            assert_eq!(board.restart_reason(ending), reason, "{ending:?}");
        }
    }

    #[test]
    fn retired_counts_stay_in_the_snapshot() {
        let mut board = Scoreboard::new();
        let dead = WorkerMetrics::new().unwrap();
        dead.response_sent(0, 200, 5);
        board.retire(&dead, ending());
        let live = WorkerMetrics::new().unwrap();
        live.response_sent(0, 200, 5);
        let snapshot = board.snapshot(
            [LiveWorker {
                pid: std::process::id() as i32,
                slot: 1,
                phase: Phase::Serving,
                leaving: false,
                booted_at: Instant::now(),
                request: String::new(),
                metrics: &live,
            }],
            &[],
        );
        assert_eq!(
            snapshot.counts.requests().collect::<Vec<_>>(),
            [("GET", 200, 2)]
        );
        assert_eq!(snapshot.restarts[0], ("crash", 1));
        assert_eq!(snapshot.workers[0].state, WorkerState::Serving);
        assert!(snapshot.workers[0].rss_bytes.unwrap() > 0);
    }

    #[test]
    fn a_listening_socket_reports_its_queue() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _waiting = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let queue = listen_queue(&Listener::Tcp(listener)).unwrap();
        assert_eq!(queue.length, 1);
        assert!(queue.max >= 1);
    }
}

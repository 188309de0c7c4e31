//! The request counters a worker shares with its master: one shared mapping
//! per worker (a memfd, `shared_memory`), created by the master before it
//! starts the worker and mapped again by the worker from the descriptor it
//! inherits (as the heartbeat is), so counting a request costs the worker a handful
//! of relaxed atomic adds: no lock, no syscall, no allocation.
//!
//! The worker only adds; the master only reads, sums the pages of the live
//! workers when scraped, and folds a dead worker's page into a retired
//! total ([`Counts::add_page`]) so that no counter ever goes down. Gauges
//! (requests in flight, open connections) are differences of two counters
//! of a live page and are not retired.
//!
//! Knows nothing of Prometheus or statsd: the master renders these numbers.

use crate::shared_memory::{SharedMemoryError, SharedRegion};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The methods counted by name; any other counts as `OTHER`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// The lowest status code counted; codes run to 999 (three digits).
const FIRST_STATUS: u16 = 100;
const STATUSES: usize = 900;

/// Upper bounds (seconds) of the request-duration buckets: OpenTelemetry's
/// defaults for `http.server.request.duration`. One more bucket, +Inf,
/// follows.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKETS: usize = DURATION_BUCKETS.len() + 1;
/// The bucket bounds in nanoseconds, for the worker's comparison.
const BUCKET_BOUNDS_NS: [u64; 11] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The index of `method` in [`METHODS`].
pub fn method_index(method: &[u8]) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|name| name.as_bytes() == method)
        .unwrap_or(METHODS.len() - 1)
}

/// The shared page. Every field is a counter that only grows.
#[repr(C)]
struct Page {
    /// Responses sent, by method and status (`status - 100`).
    requests: [[AtomicU64; STATUSES]; METHODS.len()],
    /// Requests the app answered, by duration bucket (not cumulative).
    duration_buckets: [AtomicU64; BUCKETS],
    duration_sum_ns: AtomicU64,
    response_body_bytes: AtomicU64,
    /// Heads complete; minus `requests_ended`: requests in flight.
    requests_started: AtomicU64,
    requests_ended: AtomicU64,
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    /// statsd datagrams dropped because the socket would block.
    statsd_dropped: AtomicU64,
}

/// One worker's counters. Created by the master; inherited by the worker.
pub struct WorkerMetrics {
    region: SharedRegion,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics")
            .field("requests", &self.requests_served())
            .finish()
    }
}

fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl WorkerMetrics {
    /// Maps a fresh page of zeros. The kernel gives the pages only as they
    /// are first written, so the unused statuses cost no memory.
    pub fn new() -> io::Result<WorkerMetrics> {
        let region = SharedRegion::create(c"rgunicorn-metrics", std::mem::size_of::<Page>())?;
        Ok(WorkerMetrics { region })
    }

    /// Maps the page the master created, from the descriptor the worker
    /// inherited ([`WorkerMetrics::fd`] in the master).
    pub fn from_inherited(fd: OwnedFd) -> Result<WorkerMetrics, SharedMemoryError> {
        let region = SharedRegion::from_inherited(fd, std::mem::size_of::<Page>())?;
        Ok(WorkerMetrics { region })
    }

    /// The page's memfd, to hand to the worker.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    fn page(&self) -> &Page {
        let page: NonNull<Page> = self.region.as_ptr().cast();
        // SAFETY: the mapping is live, `size_of::<Page>()` bytes and
        // page-aligned for as long as `self` exists; zeroed memory is a
        // valid `Page` (atomics of zero), only accessed through atomics.
        unsafe { page.as_ref() }
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        add(&self.page().connections_opened, 1);
    }

    /// A connection was closed.
    pub fn connection_closed(&self) {
        add(&self.page().connections_closed, 1);
    }

    /// A request head is complete: the request is in flight.
    pub fn request_started(&self) {
        add(&self.page().requests_started, 1);
    }

    /// A request in flight ended (answered, failed, or its client left).
    pub fn request_ended(&self) {
        add(&self.page().requests_ended, 1);
    }

    /// A response was sent (queued in full): `method` as
    /// [`method_index`], the status code sent, and the body bytes.
    pub fn response_sent(&self, method: usize, status: u16, body_bytes: u64) {
        let page = self.page();
        let status = usize::from(status.clamp(FIRST_STATUS, FIRST_STATUS + STATUSES as u16 - 1));
        add(
            &page.requests[method.min(METHODS.len() - 1)][status - usize::from(FIRST_STATUS)],
            1,
        );
        if body_bytes > 0 {
            add(&page.response_body_bytes, body_bytes);
        }
    }

    /// The app answered a request in `duration` (head complete to last
    /// byte queued).
    pub fn observe_duration(&self, duration: Duration) {
        let page = self.page();
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(BUCKETS - 1);
        add(&page.duration_buckets[bucket], 1);
        add(&page.duration_sum_ns, ns);
    }

    /// A statsd datagram was dropped.
    pub fn statsd_dropped(&self) {
        add(&self.page().statsd_dropped, 1);
    }

    /// Requests answered so far (every status).
    pub fn requests_served(&self) -> u64 {
        self.page()
            .requests
            .iter()
            .flat_map(|by_status| by_status.iter())
            .map(read)
            .sum()
    }

    /// The gauges of this live worker.
    pub fn gauges(&self) -> Gauges {
        let page = self.page();
        Gauges {
            requests_in_flight: read(&page.requests_started)
                .saturating_sub(read(&page.requests_ended)),
            connections_open: read(&page.connections_opened)
                .saturating_sub(read(&page.connections_closed)),
        }
    }
}

/// Point-in-time values of a live worker, summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub requests_in_flight: u64,
    pub connections_open: u64,
}

impl std::ops::AddAssign for Gauges {
    fn add_assign(&mut self, other: Gauges) {
        self.requests_in_flight += other.requests_in_flight;
        self.connections_open += other.connections_open;
    }
}

/// Plain copies of the counters, summed over pages: the master's retired
/// total, and the total of a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    requests: Box<[[u64; STATUSES]; METHODS.len()]>,
    duration_buckets: [u64; BUCKETS],
    duration_sum_ns: u64,
    pub response_body_bytes: u64,
    pub connections: u64,
    pub statsd_dropped: u64,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            requests: Box::new([[0; STATUSES]; METHODS.len()]),
            duration_buckets: [0; BUCKETS],
            duration_sum_ns: 0,
            response_body_bytes: 0,
            connections: 0,
            statsd_dropped: 0,
        }
    }
}

impl Counts {
    /// Adds the counters of `metrics` (a live or a dead worker's page).
    pub fn add_page(&mut self, metrics: &WorkerMetrics) {
        let page = metrics.page();
        for (sum, counters) in self.requests.iter_mut().zip(page.requests.iter()) {
            for (sum, counter) in sum.iter_mut().zip(counters.iter()) {
                *sum += read(counter);
            }
        }
        for (sum, counter) in self
            .duration_buckets
            .iter_mut()
            .zip(page.duration_buckets.iter())
        {
            *sum += read(counter);
        }
        self.duration_sum_ns += read(&page.duration_sum_ns);
        self.response_body_bytes += read(&page.response_body_bytes);
        self.connections += read(&page.connections_opened);
        self.statsd_dropped += read(&page.statsd_dropped);
    }

    /// Adds another total.
    pub fn add(&mut self, other: &Counts) {
        for (sum, counters) in self.requests.iter_mut().zip(other.requests.iter()) {
            for (sum, counter) in sum.iter_mut().zip(counters.iter()) {
                *sum += counter;
            }
        }
        for (sum, count) in self.duration_buckets.iter_mut().zip(other.duration_buckets) {
            *sum += count;
        }
        self.duration_sum_ns += other.duration_sum_ns;
        self.response_body_bytes += other.response_body_bytes;
        self.connections += other.connections;
        self.statsd_dropped += other.statsd_dropped;
    }

    /// Every `(method, status, count)` with a count above zero, in method
    /// then status order.
    pub fn requests(&self) -> impl Iterator<Item = (&'static str, u16, u64)> + '_ {
        self.requests
            .iter()
            .enumerate()
            .flat_map(|(method, by_status)| {
                by_status
                    .iter()
                    .enumerate()
                    .filter(|(_, count)| **count > 0)
                    .map(move |(status, count)| {
                        (METHODS[method], FIRST_STATUS + status as u16, *count)
                    })
            })
    }

    /// The duration histogram as Prometheus wants it: the count at or
    /// below each bound of [`DURATION_BUCKETS`] (cumulative), then the
    /// total count (the +Inf bucket).
    pub fn duration_cumulative(&self) -> [u64; BUCKETS] {
        let mut running = 0;
        self.duration_buckets.map(|count| {
            running += count;
            running
        })
    }

    /// The sum of the observed durations, in seconds.
    pub fn duration_sum_seconds(&self) -> f64 {
        self.duration_sum_ns as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_named_or_other() {
        let cases: &[(&[u8], &str)] = &[
            (b"GET", "GET"),
            (b"HEAD", "HEAD"),
            (b"OPTIONS", "OPTIONS"),
            (b"PROPFIND", "OTHER"),
            (b"get", "OTHER"),
            (b"", "OTHER"),
        ];
        for (method, name) in cases {
            assert_eq!(METHODS[method_index(method)], *name);
        }
    }

    #[test]
    fn responses_are_counted_by_method_and_status() {
        let metrics = WorkerMetrics::new().unwrap();
        metrics.response_sent(method_index(b"GET"), 200, 12);
        metrics.response_sent(method_index(b"GET"), 200, 12);
        metrics.response_sent(method_index(b"POST"), 404, 0);
        metrics.response_sent(method_index(b"GET"), 999, 0);
        let mut counts = Counts::default();
        counts.add_page(&metrics);
        let requests: Vec<_> = counts.requests().collect();
        assert_eq!(
            requests,
            [("GET", 200, 2), ("GET", 999, 1), ("POST", 404, 1)]
        );
        assert_eq!(counts.response_body_bytes, 24);
        assert_eq!(metrics.requests_served(), 4);
    }

    #[test]
    fn durations_fall_in_their_buckets_inclusively() {
        let metrics = WorkerMetrics::new().unwrap();
        for millis in [1, 5, 6, 10_000, 60_000] {
            metrics.observe_duration(Duration::from_millis(millis));
        }
        let mut counts = Counts::default();
        counts.add_page(&metrics);
        assert_eq!(
            counts.duration_cumulative(),
            [2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5]
        );
        assert!((counts.duration_sum_seconds() - 70.012).abs() < 1e-9);
    }

    #[test]
    fn gauges_are_differences_and_totals_add_up() {
        let metrics = WorkerMetrics::new().unwrap();
        metrics.connection_opened();
        metrics.connection_opened();
        metrics.connection_closed();
        metrics.request_started();
        assert_eq!(
            metrics.gauges(),
            Gauges {
                requests_in_flight: 1,
                connections_open: 1
            }
        );
        let mut retired = Counts::default();
        retired.add_page(&metrics);
        let mut total = Counts::default();
        total.add(&retired);
        total.add_page(&metrics);
        assert_eq!(total.connections, 4);
    }

    #[test]
    fn a_page_mapped_from_its_descriptor_is_the_same_page() {
        let metrics = WorkerMetrics::new().unwrap();
        let fd = metrics.fd().try_clone_to_owned().unwrap();
        WorkerMetrics::from_inherited(fd)
            .unwrap()
            .response_sent(0, 200, 5);
        assert_eq!(metrics.requests_served(), 1);
    }

    #[test]
    fn a_forked_child_counts_are_seen_by_the_parent() {
        let metrics = WorkerMetrics::new().unwrap();
        // SAFETY: the child only touches the shared page and `_exit`s.
        match unsafe { libc::fork() } {
            0 => {
                metrics.response_sent(0, 204, 0);
                // SAFETY: ends the child without running the test harness.
                unsafe { libc::_exit(0) }
            }
            child => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(child, &mut status, 0) };
                assert_eq!(metrics.requests_served(), 1);
            }
        }
    }
}

//! `--max-requests`: this worker's request budget (the limit plus its share
//! of `--max-requests-jitter`) and when to ask the master for a successor.
//!
//! The successor boots while this worker serves, so capacity never dips.
//! Asking only at the limit would make the worker serve on for a whole
//! boot; under load that is request rate × boot time past its limit. So the
//! worker asks early: as soon as the requests it has left would take no
//! longer than a boot (`remaining ≤ rate × boot`), but never before half
//! its budget, and at the limit whatever the rate. The boot it expects is
//! the longer of its own and the latest among its siblings (the master
//! passes that on): its own may date from a quieter machine. The master
//! stops it as soon as the successor serves, so it retires close to its
//! limit however long a boot takes, and never below half of it.
//!
//! The rate is over about the last second (or the worker's life, if that is
//! shorter), so a short burst does not pass for a load; with fewer than
//! [`RATE_REQUESTS`] requests, or requests further apart than a boot, the
//! worker asks exactly at its limit.
//!
//! Knows nothing of sockets, the event loop or the master: it is told the
//! count and the time, and answers.

use std::time::{Duration, Instant};

/// The fewest requests that give a rate.
pub const RATE_REQUESTS: u64 = 4;
/// How far back the rate looks: requests count less the longer ago they
/// came, by e⁻¹ per `RATE_HORIZON`.
const RATE_HORIZON: Duration = Duration::from_secs(1);

/// A worker's request budget and the measure of its recent request rate.
#[derive(Debug)]
pub struct Recycling {
    limit: u64,
    /// How long this worker took from fork to serving.
    boot: Duration,
    rate: RequestRate,
    asked: bool,
}

/// The facts of an ask, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ask {
    /// Requests served so far.
    pub served: u64,
    /// The worker's budget.
    pub limit: u64,
    /// Requests per second, recently.
    pub rate: f64,
    /// How long the successor is expected to take to boot.
    pub boot: Duration,
}

impl Recycling {
    /// A budget of `limit` requests (`--max-requests` with its jitter
    /// share, not 0) for a worker that booted in `boot`.
    pub fn new(limit: u64, boot: Duration) -> Recycling {
        Recycling {
            limit,
            boot,
            rate: RequestRate::default(),
            asked: false,
        }
    }

    /// The budget.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether the worker has asked for its successor.
    pub fn asked(&self) -> bool {
        self.asked
    }

    /// Whether `served` requests use up the budget.
    pub fn reached_limit(&self, served: u64) -> bool {
        served >= self.limit
    }

    /// Takes in the count of requests served by `now` (and the latest boot
    /// time among the sibling workers, if known) and says whether to ask
    /// for the successor now (once; never again after).
    pub fn check(
        &mut self,
        served: u64,
        now: Instant,
        latest_boot: Option<Duration>,
    ) -> Option<Ask> {
        self.rate.count(served, now);
        if self.asked {
            return None;
        }
        let boot = latest_boot.map_or(self.boot, |latest| latest.max(self.boot));
        let rate = self.rate.per_second(now);
        let remaining = self.limit.saturating_sub(served);
        let half_spent = served >= self.limit.div_ceil(2);
        let due = remaining == 0 || (half_spent && remaining as f64 <= rate * boot.as_secs_f64());
        if !due {
            return None;
        }
        self.asked = true;
        Some(Ask {
            served,
            limit: self.limit,
            rate,
            boot,
        })
    }
}

/// Requests per second over about the last [`RATE_HORIZON`]: an
/// exponentially decaying count, divided by the share of the horizon the
/// worker has been counting for (so a young worker's rate is its rate so
/// far, not diluted by the time before its first request).
#[derive(Debug, Default)]
struct RequestRate {
    /// The decayed count, as of `updated`, over the horizon in seconds.
    decayed: f64,
    updated: Option<Instant>,
    /// When the first request was counted: the measure starts there (that
    /// request itself only marks the start).
    since: Option<Instant>,
    counted: u64,
}

impl RequestRate {
    /// Records that `served` requests have been served by `now`.
    fn count(&mut self, served: u64, now: Instant) {
        let new = served.saturating_sub(self.counted);
        if new == 0 {
            return;
        }
        let since = *self.since.get_or_insert(now);
        let counted = match self.counted {
            // The first request starts the measure.
            0 => new - 1,
            _ => new,
        };
        self.counted = served;
        self.decayed = self.decayed_at(now) + counted as f64 / RATE_HORIZON.as_secs_f64();
        self.updated = Some(now.max(since));
    }

    fn decayed_at(&self, now: Instant) -> f64 {
        match self.updated {
            Some(updated) => {
                let elapsed = now.saturating_duration_since(updated);
                self.decayed * (-elapsed.as_secs_f64() / RATE_HORIZON.as_secs_f64()).exp()
            }
            None => 0.0,
        }
    }

    /// The rate at `now` (0 before [`RATE_REQUESTS`] requests).
    fn per_second(&self, now: Instant) -> f64 {
        let Some(since) = self.since.filter(|_| self.counted >= RATE_REQUESTS) else {
            return 0.0;
        };
        let age = now.saturating_duration_since(since).as_secs_f64();
        let share = 1.0 - (-age / RATE_HORIZON.as_secs_f64()).exp();
        self.decayed_at(now) / share.max(1e-6)
    }
}

/// This worker's request budget: `--max-requests` plus a random share of
/// `--max-requests-jitter`, so workers do not all leave together
/// (0 = unlimited).
pub fn max_requests_with_jitter(max_requests: u64, jitter: u64) -> u64 {
    if max_requests == 0 {
        return 0;
    }
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
    max_requests + seed % (jitter + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Serves requests `range`, `gap` apart after `start`, checking after
    /// each; returns the count at which the worker asked, if it did.
    fn ask_at(
        recycling: &mut Recycling,
        start: Instant,
        gap: Duration,
        range: std::ops::RangeInclusive<u64>,
        latest_boot: Option<Duration>,
    ) -> Option<u64> {
        range.into_iter().find(|&served| {
            let now = start + gap * served as u32;
            recycling.check(served, now, latest_boot).is_some()
        })
    }

    #[test]
    fn with_requests_further_apart_than_a_boot_it_asks_exactly_at_the_limit() {
        let start = Instant::now();
        let mut recycling = Recycling::new(20, 100 * MS);
        assert_eq!(
            ask_at(&mut recycling, start, 150 * MS, 1..=25, None),
            Some(20)
        );
    }

    #[test]
    fn under_load_it_asks_one_boot_before_the_limit() {
        let start = Instant::now();
        // 100 requests/s and a 55 ms boot: 5.5 requests before the limit.
        let mut recycling = Recycling::new(20, 55 * MS);
        assert_eq!(
            ask_at(&mut recycling, start, 10 * MS, 1..=25, None),
            Some(15)
        );
    }

    #[test]
    fn a_wait_before_the_first_request_does_not_lower_the_rate() {
        // Serving for 10 s before the load starts, then 100 requests/s.
        let start = Instant::now() + Duration::from_secs(10);
        let mut recycling = Recycling::new(20, 55 * MS);
        assert_eq!(
            ask_at(&mut recycling, start, 10 * MS, 1..=25, None),
            Some(15)
        );
    }

    #[test]
    fn a_slower_latest_boot_of_a_sibling_makes_it_ask_earlier_a_faster_one_not_later() {
        let start = Instant::now();
        // 100 requests/s: a 75 ms boot is 7.5 requests, a 55 ms one 5.5.
        let mut recycling = Recycling::new(20, 55 * MS);
        let slower = Some(75 * MS);
        assert_eq!(
            ask_at(&mut recycling, start, 10 * MS, 1..=25, slower),
            Some(13)
        );
        let mut recycling = Recycling::new(20, 55 * MS);
        let faster = Some(10 * MS);
        assert_eq!(
            ask_at(&mut recycling, start, 10 * MS, 1..=25, faster),
            Some(15)
        );
    }

    #[test]
    fn it_never_asks_before_half_its_budget() {
        let start = Instant::now();
        // 1000 requests/s and a 400 ms boot would mean 400 requests early.
        let mut recycling = Recycling::new(21, 400 * MS);
        assert_eq!(ask_at(&mut recycling, start, MS, 1..=25, None), Some(11));
    }

    #[test]
    fn there_is_no_rate_before_a_few_requests() {
        let start = Instant::now();
        let mut recycling = Recycling::new(3, Duration::from_secs(10));
        assert_eq!(ask_at(&mut recycling, start, MS, 1..=3, None), Some(3));
    }

    #[test]
    fn it_asks_once() {
        let start = Instant::now();
        let mut recycling = Recycling::new(2, 10 * MS);
        assert!(recycling.check(2, start + MS, None).is_some());
        assert!(recycling.asked());
        assert_eq!(recycling.check(3, start + 2 * MS, None), None);
    }

    #[test]
    fn a_short_burst_in_an_old_worker_is_not_a_load() {
        let start = Instant::now();
        let mut recycling = Recycling::new(1000, Duration::from_secs(2));
        // Ten minutes at a request a second...
        assert_eq!(
            ask_at(&mut recycling, start, 1000 * MS, 1..=600, None),
            None
        );
        // ...then 16 requests in 32 ms: about 16/s over the last second,
        // not 500/s; 384 left take far longer than a boot.
        let burst = start + Duration::from_secs(601);
        assert_eq!(ask_at(&mut recycling, burst, 2 * MS, 601..=616, None), None);
        let rate = recycling.rate.per_second(burst + 1232 * MS);
        assert!((10.0..25.0).contains(&rate), "{rate}");
    }

    #[test]
    fn the_rate_follows_the_load_and_falls_while_no_request_comes() {
        let start = Instant::now();
        let mut rate = RequestRate::default();
        for served in 1..=300 {
            rate.count(served, start + 10 * MS * served as u32);
        }
        let busy = start + 3000 * MS;
        assert!(
            (95.0..105.0).contains(&rate.per_second(busy)),
            "{}",
            rate.per_second(busy)
        );
        let quiet = busy + Duration::from_secs(3);
        assert!(rate.per_second(quiet) < 6.0, "{}", rate.per_second(quiet));
    }

    #[test]
    fn a_budget_is_the_limit_plus_at_most_the_jitter() {
        assert_eq!(max_requests_with_jitter(0, 5), 0);
        assert_eq!(max_requests_with_jitter(20, 0), 20);
        assert!((20..=25).contains(&max_requests_with_jitter(20, 5)));
    }
}

//! `--max-requests`: this worker's request budget (the limit plus its share
//! of `--max-requests-jitter`) and when to ask the master for a successor.
//!
//! The successor boots while this worker serves, so capacity never dips.
//! Asking only at the limit would make the worker serve on for a whole
//! boot; under load that is request rate × boot time past its limit. So the
//! worker asks early: as soon as the requests it has left would take no
//! longer than its own boot took (`remaining ≤ rate × boot`), never before
//! half its budget, and at the limit whatever the rate. The master stops
//! it as soon as the successor serves, so it retires close to its limit
//! however long a boot takes. With no recent requests there is no rate, so
//! an idle worker asks exactly at its limit.
//!
//! Knows nothing of sockets, the event loop or the master: it is told the
//! count and the time, and answers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many of the latest requests the rate is measured over: enough to
/// smooth one slow request out, few enough to follow a change of load.
const RATE_WINDOW: usize = 16;

/// A worker's request budget and the measure of its recent request rate.
#[derive(Debug)]
pub struct Recycling {
    limit: u64,
    /// How long this worker took from fork to serving: the best guess of
    /// how long its successor will take.
    boot: Duration,
    /// When each of the latest requests (up to [`RATE_WINDOW`] + 1) was
    /// counted.
    window: VecDeque<Instant>,
    /// Requests counted into `window` so far.
    counted: u64,
    asked: bool,
}

/// The worker should ask for its successor now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ask {
    /// Requests served so far.
    pub served: u64,
    /// The worker's budget.
    pub limit: u64,
    /// Requests per second over the latest requests.
    pub rate: f64,
    /// How long this worker took to boot.
    pub boot: Duration,
}

impl Recycling {
    /// A budget of `limit` requests (`--max-requests` with its jitter
    /// share, not 0) for a worker that booted in `boot`.
    pub fn new(limit: u64, boot: Duration) -> Recycling {
        Recycling {
            limit,
            boot,
            window: VecDeque::with_capacity(RATE_WINDOW + 1),
            counted: 0,
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

    /// Takes in the count of requests served by `now` and says whether to
    /// ask for the successor now (once; never again after).
    pub fn check(&mut self, served: u64, now: Instant) -> Option<Ask> {
        self.count(served, now);
        if self.asked {
            return None;
        }
        let rate = self.rate(now);
        let remaining = self.limit.saturating_sub(served);
        let half_spent = served >= self.limit.div_ceil(2);
        let due =
            remaining == 0 || (half_spent && remaining as f64 <= rate * self.boot.as_secs_f64());
        if !due {
            return None;
        }
        self.asked = true;
        Some(Ask {
            served,
            limit: self.limit,
            rate,
            boot: self.boot,
        })
    }

    /// Records the requests served since the last call as counted at `now`.
    fn count(&mut self, served: u64, now: Instant) {
        let new = served.saturating_sub(self.counted);
        self.counted = served.max(self.counted);
        for _ in 0..new.min(RATE_WINDOW as u64) {
            self.window.push_back(now);
            if self.window.len() > RATE_WINDOW + 1 {
                self.window.pop_front();
            }
        }
    }

    /// Requests per second since the oldest request in the window: the
    /// requests after it over the time from it until `now` (so the rate
    /// falls while no request comes; a worker idle before its first
    /// request is not slowed by that wait). No rate before two requests.
    fn rate(&self, now: Instant) -> f64 {
        match self.window.front() {
            Some(oldest) if self.window.len() > 1 => {
                let span = now.saturating_duration_since(*oldest).as_secs_f64();
                (self.window.len() - 1) as f64 / span.max(1e-3)
            }
            _ => 0.0,
        }
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

    /// Serves `count` requests `gap` apart from `start`, checking after
    /// each; returns the count at which the worker asked, if it did.
    fn serve(recycling: &mut Recycling, start: Instant, gap: Duration, count: u64) -> Option<u64> {
        (1..=count).find_map(|served| {
            let now = start + gap * served as u32;
            recycling.check(served, now).map(|ask| ask.served)
        })
    }

    #[test]
    fn with_requests_further_apart_than_a_boot_it_asks_exactly_at_the_limit() {
        let start = Instant::now();
        let mut recycling = Recycling::new(20, 100 * MS);
        assert_eq!(serve(&mut recycling, start, 150 * MS, 25), Some(20));
    }

    #[test]
    fn under_load_it_asks_one_boot_before_the_limit() {
        let start = Instant::now();
        // 100 requests/s and a 55 ms boot: 5 requests before the limit.
        let mut recycling = Recycling::new(20, 55 * MS);
        assert_eq!(serve(&mut recycling, start, 10 * MS, 25), Some(15));
    }

    #[test]
    fn a_wait_before_the_first_request_does_not_lower_the_rate() {
        // Serving for 10 s before the load starts, then 100 requests/s.
        let start = Instant::now() + Duration::from_secs(10);
        let mut recycling = Recycling::new(20, 55 * MS);
        assert_eq!(serve(&mut recycling, start, 10 * MS, 25), Some(15));
    }

    #[test]
    fn it_never_asks_before_half_its_budget() {
        let start = Instant::now();
        // 1000 requests/s and a 400 ms boot would mean 400 requests early.
        let mut recycling = Recycling::new(21, 400 * MS);
        assert_eq!(serve(&mut recycling, start, MS, 25), Some(11));
    }

    #[test]
    fn it_asks_once() {
        let start = Instant::now();
        let mut recycling = Recycling::new(2, 10 * MS);
        assert!(recycling.check(2, start + MS).is_some());
        assert!(recycling.asked());
        assert_eq!(recycling.check(3, start + 2 * MS), None);
    }

    #[test]
    fn the_rate_falls_while_no_request_comes() {
        let start = Instant::now();
        let mut recycling = Recycling::new(100, 100 * MS);
        // A burst of 40 at 1000/s (below half the budget, so no ask)...
        assert_eq!(serve(&mut recycling, start, MS, 40), None);
        assert!(recycling.rate(start + 41 * MS) > 500.0);
        // ...then quiet: a second later the latest 16 came at under 20/s,
        // and 50 remaining take longer than a boot.
        assert!(recycling.rate(start + 1041 * MS) < 20.0);
        assert_eq!(recycling.check(50, start + 1041 * MS), None);
    }

    #[test]
    fn the_rate_is_over_the_latest_requests() {
        let start = Instant::now();
        let mut recycling = Recycling::new(1000, Duration::ZERO);
        serve(&mut recycling, start, 100 * MS, 20);
        // Then 16 requests in one turn, 1 ms later: the window is them.
        recycling.check(36, start + 2001 * MS);
        assert_eq!(recycling.window.len(), RATE_WINDOW + 1);
        assert!(recycling.rate(start + 2002 * MS) > 1000.0);
    }

    #[test]
    fn a_budget_is_the_limit_plus_at_most_the_jitter() {
        assert_eq!(max_requests_with_jitter(0, 5), 0);
        assert_eq!(max_requests_with_jitter(20, 0), 20);
        assert!((20..=25).contains(&max_requests_with_jitter(20, 5)));
    }
}

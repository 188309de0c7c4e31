//! `--max-requests`: this worker's request budget (the limit plus its share
//! of `--max-requests-jitter`) and when to ask the master for a successor.
//!
//! The successor boots while this worker serves, so capacity never dips.
//! Asking only at the limit would make the worker serve on for a whole
//! boot; under load that is request rate × boot time past its limit. So the
//! worker asks early: as soon as the requests it has left would take no
//! longer than a boot (`remaining ≤ rate × boot`), and at the limit
//! whatever the rate. The boot it expects is the longer of its own and the
//! latest among its siblings (the master passes that on): its own may date
//! from a quieter machine. The master stops it as soon as the successor
//! serves, so it retires close to its limit however long a boot takes.
//! With fewer than [`RATE_REQUESTS`] recent requests there is no rate, so
//! a worker whose requests come further apart than a boot asks exactly at
//! its limit.
//!
//! When requests come so fast that a whole budget takes less than a boot,
//! the worker asks before it has served half its budget (an early ask): the
//! successor boots at once, but the worker must not be stopped yet, or a
//! successor that boots faster than this worker did would retire it far
//! below its limit. It tells the master it may be stopped once it has
//! served half its budget, or two of its boots after asking if its requests
//! dried up meanwhile (so it does not stay on beside its successor).
//!
//! Knows nothing of sockets, the event loop or the master: it is told the
//! count and the time, and answers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many of the latest requests the rate is measured over: enough to
/// smooth one slow request out, few enough to follow a change of load.
const RATE_WINDOW: usize = 16;
/// The fewest recent requests that give a rate.
pub const RATE_REQUESTS: usize = 4;

/// A worker's request budget and the measure of its recent request rate.
#[derive(Debug)]
pub struct Recycling {
    limit: u64,
    /// How long this worker took from fork to serving.
    boot: Duration,
    /// When each of the latest requests (up to [`RATE_WINDOW`] + 1) was
    /// counted.
    window: VecDeque<Instant>,
    /// Requests counted into `window` so far.
    counted: u64,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Not asked yet.
    Counting,
    /// Asked before half the budget, at this time; not to be stopped yet.
    AskedEarly(Instant),
    /// Asked; may be stopped as soon as the successor serves.
    Asked,
}

/// What the worker should tell the master.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Ask for a successor now, and be stopped as soon as it serves.
    Ask(Ask),
    /// Ask for a successor now, but do not be stopped until [`Step::Retire`].
    AskEarly(Ask),
    /// After an early ask: be stopped as soon as the successor serves.
    Retire,
}

/// The facts of an ask, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ask {
    /// Requests served so far.
    pub served: u64,
    /// The worker's budget.
    pub limit: u64,
    /// Requests per second over the latest requests.
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
            window: VecDeque::with_capacity(RATE_WINDOW + 1),
            counted: 0,
            state: State::Counting,
        }
    }

    /// The budget.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether the worker has asked for its successor.
    pub fn asked(&self) -> bool {
        self.state != State::Counting
    }

    /// Whether `served` requests use up the budget.
    pub fn reached_limit(&self, served: u64) -> bool {
        served >= self.limit
    }

    /// Takes in the count of requests served by `now` (and the latest boot
    /// time among the sibling workers, if known) and says what to tell the
    /// master, if anything: each step comes once.
    pub fn check(
        &mut self,
        served: u64,
        now: Instant,
        latest_boot: Option<Duration>,
    ) -> Option<Step> {
        self.count(served, now);
        let half = self.limit.div_ceil(2);
        let boot = latest_boot.map_or(self.boot, |latest| latest.max(self.boot));
        match self.state {
            State::Counting => {
                let rate = self.rate(now);
                let remaining = self.limit.saturating_sub(served);
                let due = remaining == 0 || remaining as f64 <= rate * boot.as_secs_f64();
                if !due {
                    return None;
                }
                let ask = Ask {
                    served,
                    limit: self.limit,
                    rate,
                    boot,
                };
                if served >= half {
                    self.state = State::Asked;
                    Some(Step::Ask(ask))
                } else {
                    self.state = State::AskedEarly(now);
                    Some(Step::AskEarly(ask))
                }
            }
            State::AskedEarly(at) if served >= half || now >= at + 2 * boot => {
                self.state = State::Asked;
                Some(Step::Retire)
            }
            State::AskedEarly(_) | State::Asked => None,
        }
    }

    /// Records the requests served since the last call as counted at `now`.
    fn count(&mut self, served: u64, now: Instant) {
        let new = served.saturating_sub(self.counted);
        self.counted = served.max(self.counted);
        for _ in 0..new.min(RATE_WINDOW as u64 + 1) {
            self.window.push_back(now);
            if self.window.len() > RATE_WINDOW + 1 {
                self.window.pop_front();
            }
        }
    }

    /// Requests per second since the oldest request in the window: the
    /// requests after it over the time from it until `now` (so the rate
    /// falls while no request comes; a worker idle before its first
    /// request is not slowed by that wait). No rate before
    /// [`RATE_REQUESTS`] requests.
    fn rate(&self, now: Instant) -> f64 {
        match self.window.front() {
            Some(oldest) if self.window.len() >= RATE_REQUESTS => {
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

    /// Serves requests `from..=to`, `gap` apart after `start`, checking
    /// after each; returns each step with the count it came at.
    fn serve(
        recycling: &mut Recycling,
        start: Instant,
        gap: Duration,
        range: std::ops::RangeInclusive<u64>,
    ) -> Vec<(u64, Step)> {
        range
            .filter_map(|served| {
                let now = start + gap * served as u32;
                recycling
                    .check(served, now, None)
                    .map(|step| (served, step))
            })
            .collect()
    }

    fn kinds(steps: &[(u64, Step)]) -> Vec<(u64, &'static str)> {
        steps
            .iter()
            .map(|(served, step)| {
                let kind = match step {
                    Step::Ask(_) => "ask",
                    Step::AskEarly(_) => "ask early",
                    Step::Retire => "retire",
                };
                (*served, kind)
            })
            .collect()
    }

    #[test]
    fn with_requests_further_apart_than_a_boot_it_asks_exactly_at_the_limit() {
        let start = Instant::now();
        let mut recycling = Recycling::new(20, 100 * MS);
        let steps = serve(&mut recycling, start, 150 * MS, 1..=25);
        assert_eq!(kinds(&steps), [(20, "ask")]);
    }

    #[test]
    fn under_load_it_asks_one_boot_before_the_limit() {
        let start = Instant::now();
        // 100 requests/s and a 55 ms boot: 5 requests before the limit.
        let mut recycling = Recycling::new(20, 55 * MS);
        let steps = serve(&mut recycling, start, 10 * MS, 1..=25);
        assert_eq!(kinds(&steps), [(15, "ask")]);
        let Step::Ask(ask) = steps[0].1 else {
            unreachable!()
        };
        assert!((ask.rate - 100.0).abs() < 1.0, "{ask:?}");
        assert_eq!((ask.limit, ask.boot), (20, 55 * MS));
    }

    #[test]
    fn a_slower_latest_boot_of_a_sibling_makes_it_ask_earlier_a_faster_one_not_later() {
        let start = Instant::now();
        let ask_at = |latest: Duration| {
            let mut recycling = Recycling::new(20, 55 * MS);
            (1..=25).find(|&served| {
                let now = start + 10 * MS * served as u32;
                recycling.check(served, now, Some(latest)).is_some()
            })
        };
        // 100 requests/s: a 105 ms boot is 10.5 requests, a 55 ms one 5.5.
        assert_eq!(ask_at(105 * MS), Some(10));
        assert_eq!(ask_at(10 * MS), Some(15));
    }

    #[test]
    fn a_wait_before_the_first_request_does_not_lower_the_rate() {
        // Serving for 10 s before the load starts, then 100 requests/s.
        let start = Instant::now() + Duration::from_secs(10);
        let mut recycling = Recycling::new(20, 55 * MS);
        let steps = serve(&mut recycling, start, 10 * MS, 1..=25);
        assert_eq!(kinds(&steps), [(15, "ask")]);
    }

    #[test]
    fn when_a_budget_takes_less_than_a_boot_it_asks_at_once_and_retires_at_half() {
        let start = Instant::now();
        // 1000 requests/s and a 400 ms boot: 400 requests in one boot.
        let mut recycling = Recycling::new(21, 400 * MS);
        let steps = serve(&mut recycling, start, MS, 1..=25);
        assert_eq!(
            kinds(&steps),
            [(RATE_REQUESTS as u64, "ask early"), (11, "retire")]
        );
    }

    #[test]
    fn after_an_early_ask_it_retires_two_boots_later_if_requests_dry_up() {
        let start = Instant::now();
        // 1000 requests/s and a 200 ms boot: 200 requests in one boot.
        let mut recycling = Recycling::new(100, 200 * MS);
        let steps = serve(&mut recycling, start, MS, 1..=10);
        assert_eq!(kinds(&steps), [(RATE_REQUESTS as u64, "ask early")]);
        let asked_at = start + RATE_REQUESTS as u32 * MS;
        assert_eq!(recycling.check(10, asked_at + 399 * MS, None), None);
        assert_eq!(
            recycling.check(10, asked_at + 400 * MS, None),
            Some(Step::Retire)
        );
        assert_eq!(recycling.check(11, asked_at + 500 * MS, None), None);
    }

    #[test]
    fn there_is_no_rate_before_a_few_requests() {
        let start = Instant::now();
        let mut recycling = Recycling::new(3, Duration::from_secs(10));
        let steps = serve(&mut recycling, start, MS, 1..=3);
        assert_eq!(kinds(&steps), [(3, "ask")]);
    }

    #[test]
    fn it_asks_once() {
        let start = Instant::now();
        let mut recycling = Recycling::new(2, 10 * MS);
        assert!(matches!(
            recycling.check(2, start + MS, None),
            Some(Step::Ask(_))
        ));
        assert!(recycling.asked());
        assert_eq!(recycling.check(3, start + 2 * MS, None), None);
    }

    #[test]
    fn the_rate_falls_while_no_request_comes() {
        let start = Instant::now();
        let mut recycling = Recycling::new(100, 10 * MS);
        // A burst of 40 at 1000/s: 10 in a boot, fewer than the 60 left...
        assert_eq!(serve(&mut recycling, start, MS, 1..=40), []);
        assert!(recycling.rate(start + 41 * MS) > 500.0);
        // ...then quiet: a second later the latest 16 came at under 20/s.
        assert!(recycling.rate(start + 1041 * MS) < 20.0);
        assert_eq!(recycling.check(50, start + 1041 * MS, None), None);
    }

    #[test]
    fn the_rate_is_over_the_latest_requests() {
        let start = Instant::now();
        let mut recycling = Recycling::new(1000, Duration::ZERO);
        serve(&mut recycling, start, 100 * MS, 1..=20);
        // Then 16 requests in one turn, 1 ms later: the window is them.
        recycling.check(36, start + 2001 * MS, None);
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

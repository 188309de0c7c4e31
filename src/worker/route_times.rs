//! How long each route (method and path) recently held an app thread, so
//! the worker can mark requests to long-running routes (a slow endpoint, a
//! stream) as long: the app-thread pool keeps a reserve of threads they
//! may not take; and requests to routes that answer at once as quick: the
//! pool wakes no extra thread for them (see `app_threads`). Bounded: past
//! [`MAX_ROUTES`] routes the memory starts over.

use super::app_threads::Class;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

/// A route whose recent requests held a thread this long is long.
pub const LONG: Duration = Duration::from_millis(200);
/// A route whose recent requests held a thread less than this is quick.
pub const QUICK: Duration = Duration::from_millis(1);
/// The most routes remembered.
const MAX_ROUTES: usize = 4096;

/// Recent thread time per route (an exponential moving average, weight ¼).
#[derive(Debug, Default)]
pub struct RouteTimes {
    recent: HashMap<u64, Duration>,
}

fn key(method: &[u8], path: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    method.hash(&mut hasher);
    path.hash(&mut hasher);
    hasher.finish()
}

impl RouteTimes {
    /// How requests to this route have recently held their thread
    /// (normal if the route is unknown).
    pub fn class(&self, method: &[u8], path: &[u8]) -> Class {
        match self.recent.get(&key(method, path)) {
            Some(recent) if *recent >= LONG => Class::Long,
            Some(recent) if *recent < QUICK => Class::Quick,
            _ => Class::Normal,
        }
    }

    /// Records that a request to this route held a thread for `held`.
    pub fn record(&mut self, method: &[u8], path: &[u8], held: Duration) {
        if self.recent.len() >= MAX_ROUTES {
            self.recent.clear();
        }
        self.recent
            .entry(key(method, path))
            .and_modify(|recent| *recent = (*recent * 3 + held) / 4)
            .or_insert(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_long_once_its_requests_run_long_and_short_again_after() {
        let mut times = RouteTimes::default();
        assert_eq!(times.class(b"GET", b"/slow"), Class::Normal);
        times.record(b"GET", b"/slow", Duration::from_secs(1));
        assert_eq!(times.class(b"GET", b"/slow"), Class::Long);
        assert_eq!(times.class(b"POST", b"/slow"), Class::Normal);
        assert_eq!(times.class(b"GET", b"/fast"), Class::Normal);
        for _ in 0..10 {
            times.record(b"GET", b"/slow", Duration::from_millis(5));
        }
        assert_eq!(times.class(b"GET", b"/slow"), Class::Normal);
    }

    #[test]
    fn a_route_is_quick_while_its_requests_end_within_a_millisecond() {
        let mut times = RouteTimes::default();
        times.record(b"GET", b"/", Duration::from_micros(30));
        assert_eq!(times.class(b"GET", b"/"), Class::Quick);
        for _ in 0..3 {
            times.record(b"GET", b"/", Duration::from_millis(20));
        }
        assert_eq!(times.class(b"GET", b"/"), Class::Normal);
    }
}

//! How long each route (method and path) recently held an app thread, so
//! the worker can mark requests to long-running routes (a slow endpoint, a
//! stream) as long: the app-thread pool keeps a reserve of threads they
//! may not take (see `app_threads`). Bounded: past [`MAX_ROUTES`] routes
//! the memory starts over.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

/// A route whose recent requests held a thread this long is long.
pub const LONG: Duration = Duration::from_millis(200);
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
    /// Whether requests to this route have recently run long.
    pub fn is_long(&self, method: &[u8], path: &[u8]) -> bool {
        self.recent
            .get(&key(method, path))
            .is_some_and(|recent| *recent >= LONG)
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
        assert!(!times.is_long(b"GET", b"/slow"));
        times.record(b"GET", b"/slow", Duration::from_secs(1));
        assert!(times.is_long(b"GET", b"/slow"));
        assert!(!times.is_long(b"POST", b"/slow"));
        assert!(!times.is_long(b"GET", b"/fast"));
        for _ in 0..10 {
            times.record(b"GET", b"/slow", Duration::from_millis(5));
        }
        assert!(!times.is_long(b"GET", b"/slow"));
    }
}

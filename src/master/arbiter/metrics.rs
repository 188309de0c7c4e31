//! The arbiter's side of `--metrics-bind` and `--statsd-host`: the endpoint
//! is served from the loop (a scrape wakes it through the signal poll), the
//! live workers' pages are summed with the retired totals on each scrape,
//! and `gunicorn.workers` goes to statsd once per turn.

use super::Arbiter;
use crate::master::exposition;
use crate::master::metrics_endpoint::{MetricsEndpoint, Page, PLAIN_TEXT, PROMETHEUS_TEXT};
use crate::master::scoreboard::{LiveWorker, Snapshot};
use crate::statsd::{self, Kind};
use std::io;
use std::os::fd::AsRawFd;

impl Arbiter {
    /// Serves `--metrics-bind` from the loop: a scrape wakes it.
    pub fn with_metrics_endpoint(mut self, endpoint: MetricsEndpoint) -> io::Result<Arbiter> {
        if let Some(signals) = self.signals.as_mut() {
            signals.watch(endpoint.as_raw_fd())?;
        }
        self.metrics_endpoint = Some(endpoint);
        Ok(self)
    }

    /// Answers the scrapes that are ready, from the workers' pages.
    pub(super) fn serve_metrics(&mut self) {
        let Some(mut endpoint) = self.metrics_endpoint.take() else {
            return;
        };
        endpoint.serve(|path| {
            let page = |content_type, body| Some(Page { content_type, body });
            match path {
                "/metrics" => page(
                    PROMETHEUS_TEXT,
                    exposition::prometheus_text(&self.snapshot()),
                ),
                "/status" => page(PLAIN_TEXT, exposition::status_table(&self.snapshot())),
                _ => None,
            }
        });
        self.metrics_endpoint = Some(endpoint);
    }

    fn snapshot(&self) -> Snapshot {
        let live = self.workers.iter().filter_map(|(pid, w)| {
            Some(LiveWorker {
                pid: pid.as_raw(),
                slot: w.slot,
                phase: w.heartbeat.phase(),
                leaving: w.replaced || w.stopping_since.is_some(),
                booted_at: w.booted_at,
                request: w.heartbeat.request(),
                metrics: w.metrics.as_ref()?,
            })
        });
        self.scoreboard.snapshot(live, self.sockets.listeners())
    }

    /// gunicorn's `gunicorn.workers` gauge, once per turn of the loop.
    pub(super) fn send_statsd_gauges(&self) {
        if let Some(statsd) = statsd::client() {
            statsd.send_one("gunicorn.workers", self.workers.len(), Kind::Gauge);
        }
    }
}
